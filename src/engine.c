/*
 * src/engine.c — plan, run, status and verify (see engine.h).
 */
#include "edumig/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/wait.h>
#include <signal.h>

#include "edumig/bulk.h"
#include "edumig/config.h"
#include "edumig/control.h"
#include "edumig/delta.h"
#include "edumig/copytext.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/pg.h"
#include "edumig/rollback.h"
#include "edumig/skiplog.h"
#include "edumig/source.h"
#include "edumig/status.h"
#include "edumig/strbuf.h"
#include "edumig/worker.h"

static const char *conninfo(const char *given, const char *env)
{
	if (given && *given)
		return given;
	const char *e = getenv(env);
	return e && *e ? e : NULL;
}

static Config *load_config(const EngineOptions *o)
{
	config_set_bcrypt_cost(o->bcrypt_cost);
	return config_load(o->config_dir ? o->config_dir : ".");
}

static bool connect_both(const EngineOptions *o, PgConn *s, PgConn *t)
{
	if (!pg_connect(s, conninfo(o->source, "EDUMIG_SOURCE"), "SOURCE"))
		return false;
	if (!pg_connect(t, conninfo(o->target, "EDUMIG_TARGET"), "TARGET")) {
		pg_close(s);
		return false;
	}
	log_debug("source %s, target %s", s->safe_name, t->safe_name);
	return true;
}

/* Target columns of @schema.@table, as a NULL-terminated list; NULL when the table is absent. */
static char **target_columns(PgConn *t, const char *schema, const char *table)
{
	AUTOFREE char *q = pg_qualified(t, schema, table);
	const char *p[] = {q};
	PGresult *r = PQexecParams(t->conn,
				   "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
				   "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
				   1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
		PQclear(r);
		return NULL;
	}
	int n = PQntuples(r);
	char **cols = xcalloc((size_t)n + 1, sizeof *cols);
	for (int i = 0; i < n; i++)
		cols[i] = xstrdup(PQgetvalue(r, i, 0));
	PQclear(r);
	return cols;
}

static void free_list(char **l)
{
	for (char **p = l; p && *p; p++)
		free(*p);
	free(l);
}

static bool in_list(char **l, const char *s)
{
	for (char **p = l; p && *p; p++)
		if (strcmp(*p, s) == 0)
			return true;
	return false;
}

/* Every target column a mapping writes exists; errors counted in @errors. */
static void check_target(PgConn *t, const Config *cfg, const Mapping *m, int *errors)
{
	char **cols = target_columns(t, m->target_schema, m->target_table);
	if (!cols) {
		fprintf(stderr, "%s:1: /target/table: target table %s.%s does not exist\n", m->file, m->target_schema,
			m->target_table);
		(*errors)++;
		return;
	}
	for (size_t c = 0; c < m->n_cols; c++) {
		const ColumnRule *r = &m->cols[c];
		if (!in_list(cols, r->name)) {
			fprintf(stderr, "%s:%d: %s: target column \"%s\" does not exist in %s.%s\n", m->file, r->line,
				r->path, r->name, m->target_schema, m->target_table);
			(*errors)++;
		}
		if (r->kind == RULE_ID && strcmp(r->name, m->id_column) != 0) {
			fprintf(stderr, "%s:%d: %s: the id rule is on \"%s\" but target.id_column is \"%s\"\n", m->file,
				r->line, r->path, r->name, m->id_column);
			(*errors)++;
		}
		if (r->kind == RULE_REF && r->n_stub_cols && r->ref_entity_index >= 0) {
			const Mapping *pm = &cfg->mappings[r->ref_entity_index];
			char **pc = target_columns(t, pm->target_schema, pm->target_table);
			for (size_t s = 0; pc && s < r->n_stub_cols; s++)
				if (!in_list(pc, r->stub_cols[s].name)) {
					fprintf(stderr, "%s:%d: %s/stub/%s: column does not exist in %s.%s\n", m->file, r->line,
						r->path, r->stub_cols[s].name, pm->target_schema, pm->target_table);
					(*errors)++;
				}
			free_list(pc);
		}
	}
	free_list(cols);
}

/* Lookups of @m filled from the source snapshot. */
static bool load_lookups(PgConn *s, Config *cfg, const Mapping *m)
{
	if (!cfg->lookups)
		cfg->lookups = txlookups_create();
	for (size_t i = 0; i < m->n_lookups; i++) {
		PGresult *r = pg_query(s, m->lookups[i].query, 0, NULL);
		if (!r) {
			log_error("%s: lookup \"%s\" failed (see above)", m->file, m->lookups[i].name);
			return false;
		}
		if (PQnfields(r) != 2) {
			log_error("%s: lookup \"%s\" must return 2 columns (key, value), not %d", m->file,
				  m->lookups[i].name, PQnfields(r));
			PQclear(r);
			return false;
		}
		for (int k = 0; k < PQntuples(r); k++) {
			if (PQgetisnull(r, k, 0))
				continue;
			txlookups_put(cfg->lookups, m->lookups[i].name, PQgetvalue(r, k, 0),
				      PQgetisnull(r, k, 1) ? NULL : PQgetvalue(r, k, 1));
		}
		/* An empty table must still exist so steps can tell "missing key" from "no table". */
		if (!txlookups_has_table(cfg->lookups, m->lookups[i].name))
			txlookups_put(cfg->lookups, m->lookups[i].name, "\x01" "edumig-empty", NULL);
		log_debug("%s: lookup %s: %d entries", m->entity, m->lookups[i].name, PQntuples(r));
		PQclear(r);
	}
	return true;
}

static int check_all(PgConn *s, PgConn *t, const Config *cfg)
{
	int errors = 0;
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		source_check_columns(s, &cfg->mappings[i], &errors);
		check_target(t, cfg, &cfg->mappings[i], &errors);
	}
	return errors;
}

/*
 * Connects to both databases, makes the source session read-only, and checks every mapping
 * against both catalogs. EXIT_SERVER: nothing is open; EXIT_USAGE: both are open (the caller
 * closes them) and the errors were printed; EXIT_OK_: ready.
 */
static int open_checked(const EngineOptions *o, const Config *cfg, PgConn *s, PgConn *t)
{
	if (!connect_both(o, s, t))
		return EXIT_SERVER;
	pg_exec(s, "SET default_transaction_read_only = on", NULL);
	int errors = check_all(s, t, cfg);
	if (errors) {
		fprintf(stderr, "edumig: %d error%s against the databases; nothing was run\n", errors,
			errors == 1 ? "" : "s");
		return EXIT_USAGE;
	}
	return EXIT_OK_;
}

int engine_plan(const EngineOptions *o)
{
	Config *cfg = load_config(o);
	if (!cfg)
		return EXIT_USAGE;
	PgConn s, t;
	int rc = open_checked(o, cfg, &s, &t);
	if (rc == EXIT_SERVER) {
		config_free(cfg);
		return rc;
	}
	if (rc != EXIT_OK_)
		goto out;
	printf("migration namespace %s, configuration %s\n", cfg->namespace_text, config_hash(cfg));
	printf("source %s\ntarget %s\n\n", s.safe_name, t.safe_name);
	for (size_t p = 0; p < cfg->n_phases; p++) {
		const Phase *ph = &cfg->phases[p];
		printf("phase %d: %s\n", ph->number, ph->name);
		for (size_t e = 0; e < ph->n_entities; e++) {
			const Mapping *m = &cfg->mappings[ph->entities[e]];
			AUTOFREE char *sql = source_count_sql(&s, m);
			AUTOFREE char *cnt = NULL;
			if (!pg_query_value(&s, sql, 0, NULL, &cnt)) {
				rc = EXIT_SERVER;
				goto out;
			}
			printf("  %-22s %10s source rows  %s -> %s.%s", m->entity, cnt,
			       m->source_table ? m->source_table : "(query)", m->target_schema, m->target_table);
			if (m->n_filters) {
				printf("  filters:");
				for (size_t f = 0; f < m->n_filters; f++)
					printf(" %s", m->filters[f].name);
			}
			printf("\n");
		}
	}
out:
	pg_close(&s);
	pg_close(&t);
	config_free(cfg);
	return rc;
}

static bool open_run_log(const EngineOptions *o, int64_t run_id)
{
	const char *dir = o->log_dir ? o->log_dir : "logs";
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		log_warn("cannot create log directory %s: %s; the skip log stays in the target only", dir,
			 strerror(errno));
		return false;
	}
	AUTOFREE char *path = xasprintf("%s/run-%06" PRId64 ".jsonl", dir, run_id);
	return log_jsonl_open(path);
}

/* An entity's state in run_entities_side_by_side. */
enum { ENT_NEW, ENT_WAITING_GO, ENT_WORKING, ENT_DONE, ENT_FAILED, ENT_CANCELLED };

/* One entity in a child process of run --jobs: its own connections, the phase's snapshot. */
static int child_entity(const EngineOptions *o, const Config *cfg, const char *snapshot, int entity, int64_t run_id,
			int go_fd)
{
	PgConn s, t;
	if (!connect_both(o, &s, &t))
		return EXIT_SERVER;
	WorkerOptions w = o->w;
	w.lock_elsewhere = true;
	w.go_fd = go_fd;
	int rc = EXIT_SERVER;
	if (pg_join_snapshot(&s, snapshot)) {
		WorkResult r = worker_run_entity(&s, &t, cfg, entity, run_id, &w);
		rc = r == WORK_OK ? EXIT_OK_ : r == WORK_STOPPED ? EXIT_SKIPS : EXIT_SERVER;
		pg_exec(&s, "COMMIT", NULL);
	}
	pg_close(&s);
	pg_close(&t);
	return rc;
}

/* True when a column of @m refers to (or takes placeholders from) entity @entity. */
static bool refers_to(const Mapping *m, int entity)
{
	for (size_t c = 0; c < m->n_cols; c++)
		if (m->cols[c].kind == RULE_REF && m->cols[c].ref_entity_index == entity)
			return true;
	return false;
}

/* True when every other entity of the phase that @e refers to is done. */
static bool deps_done(const Config *cfg, const Phase *ph, size_t e, const int *state)
{
	const Mapping *m = &cfg->mappings[ph->entities[e]];
	for (size_t f = 0; f < ph->n_entities; f++)
		if (f != e && state[f] != ENT_DONE && refers_to(m, ph->entities[f]))
			return false;
	return true;
}

/* How many other entities of the phase refer to @e (wait for it before they can work). */
static int dependants(const Config *cfg, const Phase *ph, size_t e)
{
	int n = 0;
	for (size_t f = 0; f < ph->n_entities; f++)
		n += f != e && refers_to(&cfg->mappings[ph->entities[f]], ph->entities[e]);
	return n;
}

/*
 * run --jobs N: the entities of a phase run side by side, each in a child process with its
 * own connections inside the phase's exported snapshot (so all of them read the same
 * source), at most N of them working at a time. An entity whose phase-mates it refers to are
 * not done yet starts early all the same, to have the server compute its stream meanwhile,
 * and loads their keys once the parent says they are done (a byte on a pipe). A child killed
 * by a signal takes the run with it, as a crash of a single process would (the others are
 * killed, the same signal ends this one): every entity then resumes from its own checkpoint.
 */
static int run_entities_side_by_side(const EngineOptions *o, Config *cfg, PgConn *s, const Phase *ph, int64_t run_id)
{
	AUTOFREE char *snap = NULL;
	if (!pg_query_value(s, "SELECT pg_export_snapshot()", 0, NULL, &snap))
		return EXIT_SERVER;
	size_t n = ph->n_entities;
	int *state = xcalloc(n, sizeof *state);
	pid_t *pid = xcalloc(n, sizeof *pid);
	int *go = xcalloc(n, sizeof *go);     /* write end of a waiting child's pipe, or -1 */
	for (size_t e = 0; e < n; e++)
		go[e] = -1;
	/* Entities others wait for start first (then phase order): in phase 5, assessments and
	 * exam_assessments before course_enrollments, which nothing waits for, so grades and
	 * assessment_submissions can go to work sooner. */
	size_t *order = xcalloc(n, sizeof *order);
	int *deps = xcalloc(n, sizeof *deps);
	for (size_t e = 0; e < n; e++) {
		deps[e] = dependants(cfg, ph, e);
		size_t i = e;
		while (i > 0 && deps[order[i - 1]] < deps[e]) {
			order[i] = order[i - 1];
			i--;
		}
		order[i] = e;
	}
	free(deps);
	int working = 0, alive = 0, rc = EXIT_OK_;
	for (;;) {
		/* Waiting children whose phase-mates are done go to work. */
		for (size_t e = 0; e < n && rc == EXIT_OK_; e++) {
			if (state[e] != ENT_WAITING_GO || !deps_done(cfg, ph, e, state) || working >= o->w.jobs)
				continue;
			if (write(go[e], "g", 1) != 1)
				log_warn("%s: could not tell its process to go on", cfg->mappings[ph->entities[e]].entity);
			close(go[e]);
			go[e] = -1;
			state[e] = ENT_WORKING;
			working++;
		}
		for (size_t i = 0; i < n && rc == EXIT_OK_; i++) {
			size_t e = order[i];
			if (state[e] != ENT_NEW)
				continue;
			bool ready = deps_done(cfg, ph, e, state);
			if (ready && working >= o->w.jobs)
				continue;
			int fds[2] = {-1, -1};
			if (!ready && pipe(fds) != 0) {
				log_error("cannot make a pipe for %s: %s", cfg->mappings[ph->entities[e]].entity, strerror(errno));
				rc = EXIT_SERVER;
				break;
			}
			fflush(NULL);
			pid_t p = fork();
			if (p == 0) {
				for (size_t k = 0; k < n; k++)
					if (go[k] >= 0)
						close(go[k]);
				if (fds[1] >= 0)
					close(fds[1]);
				int code = child_entity(o, cfg, snap, ph->entities[e], run_id, fds[0]);
				fflush(NULL);
				_exit(code);
			}
			if (fds[0] >= 0)
				close(fds[0]);
			if (p < 0) {
				log_error("cannot start a process for %s: %s", cfg->mappings[ph->entities[e]].entity,
					  strerror(errno));
				if (fds[1] >= 0)
					close(fds[1]);
				rc = EXIT_SERVER;
				break;
			}
			pid[e] = p;
			alive++;
			if (ready) {
				state[e] = ENT_WORKING;
				working++;
			} else {
				state[e] = ENT_WAITING_GO;
				go[e] = fds[1];
			}
		}
		if (rc != EXIT_OK_) {
			/* Children still waiting to go are told the run stops (end of file). */
			for (size_t e = 0; e < n; e++)
				if (go[e] >= 0) {
					close(go[e]);
					go[e] = -1;
					state[e] = ENT_CANCELLED;
				}
		}
		if (alive == 0)
			break;
		int status;
		pid_t p = waitpid(-1, &status, 0);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		size_t e = 0;
		while (e < n && pid[e] != p)
			e++;
		if (e == n)
			continue;
		alive--;
		if (state[e] == ENT_WORKING)
			working--;
		if (WIFSIGNALED(status)) {
			int sig = WTERMSIG(status);
			log_error("%s: its process ended by signal %d; stopping the run", cfg->mappings[ph->entities[e]].entity,
				  sig);
			for (size_t k = 0; k < n; k++)
				if (k != e && (state[k] == ENT_WORKING || state[k] == ENT_WAITING_GO || state[k] == ENT_CANCELLED))
					kill(pid[k], SIGKILL);
			while (waitpid(-1, NULL, 0) > 0)
				;
			signal(sig, SIG_DFL);
			raise(sig);
			rc = EXIT_SERVER;
			state[e] = ENT_FAILED;
			alive = 0;
			break;
		}
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_SERVER;
		bool cancelled = state[e] == ENT_CANCELLED;
		state[e] = code == EXIT_OK_ ? ENT_DONE : ENT_FAILED;
		/* A child stopped because the run stopped says nothing of its own. */
		if (!cancelled && code != EXIT_OK_ && (rc == EXIT_OK_ || code == EXIT_SERVER))
			rc = code == EXIT_SKIPS ? EXIT_SKIPS : EXIT_SERVER;
	}
	for (size_t e = 0; e < n; e++)
		if (go[e] >= 0)
			close(go[e]);
	free(go);
	free(state);
	free(pid);
	free(order);
	return rc;
}

static int run_phase(const EngineOptions *o, Config *cfg, PgConn *s, PgConn *t, const Phase *ph)
{
	if (!control_lock_phase(t, ph->number))
		return EXIT_SERVER;
	int64_t run_id = 0;
	int rc = EXIT_OK_;
	bool in_snapshot = true;  /* the source transaction may be open: COMMIT at the end */
	if (!control_run_start(t, o->command_line ? o->command_line : "run", ph->number, config_hash(cfg), &run_id)) {
		control_unlock_phase(t, ph->number);
		return EXIT_SERVER;
	}
	open_run_log(o, run_id);
	log_info("phase %d (%s): run %" PRId64 ", %zu entit%s", ph->number, ph->name, run_id, ph->n_entities,
		 ph->n_entities == 1 ? "y" : "ies");
	/* Definitions an earlier run set aside come back only once the load is complete, so a
	 * run that finds them resumes the load first, whether it was asked for --bulk or not;
	 * and it sets nothing more aside (the tables are no longer as they were at the start). */
	long long pending = o->w.dry_run ? 0 : bulk_pending(t, ph->number, ph->number);
	if (pending < 0) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (pending > 0)
		log_info("bulk: phase %d has %lld foreign key%s and index%s set aside by an earlier run: the load "
			 "resumes first, then they are rebuilt",
			 ph->number, pending, pending == 1 ? "" : "s", pending == 1 ? "" : "es");
	else if (o->bulk && !bulk_set_aside(t, cfg, ph, run_id)) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (!control_refresh_stats(t, ph->number)) {
		rc = EXIT_SERVER;
		goto out;
	}
	/* One snapshot for the whole phase: every entity sees the same source. */
	if (!source_begin(s)) {
		rc = EXIT_SERVER;
		goto out;
	}
	for (size_t e = 0; e < ph->n_entities; e++)
		if (!load_lookups(s, cfg, &cfg->mappings[ph->entities[e]])) {
			rc = EXIT_SERVER;
			goto out;
		}
	if (o->w.jobs > 1 && !o->w.dry_run && ph->n_entities > 1) {
		rc = run_entities_side_by_side(o, cfg, s, ph, run_id);
		goto entities_done;
	}
	for (size_t e = 0; e < ph->n_entities; e++) {
		WorkResult w = worker_run_entity(s, t, cfg, ph->entities[e], run_id, &o->w);
		if (w == WORK_FAILED) {
			rc = EXIT_SERVER;
			break;
		}
		if (w == WORK_STOPPED) {
			rc = EXIT_SKIPS;
			break;
		}
	}
entities_done:
	/* Rebuilt only after every entity of the phase is in, its deferred pass included; the
	 * source snapshot is not needed for it, and is not held meanwhile. */
	pg_exec(s, "COMMIT", NULL);
	in_snapshot = false;
	if (!o->w.dry_run && pg_ok(t)) {
		pending = bulk_pending(t, ph->number, ph->number);
		if (pending < 0)
			rc = EXIT_SERVER;
		else if (pending > 0 && rc != EXIT_OK_)
			log_warn("bulk: phase %d did not finish: its %lld set-aside foreign key%s and index%s stay in "
				 "edumig.bulk_set_aside until a run of the phase completes it",
				 ph->number, pending, pending == 1 ? "" : "s", pending == 1 ? "" : "es");
		else if (pending > 0 && bulk_rebuild(t, ph->number, ph->number) != 0)
			rc = EXIT_SERVER;
	}
out:
	if (in_snapshot)
		pg_exec(s, "COMMIT", NULL);
	if (pg_ok(t)) {
		control_run_finish(t, run_id, rc == EXIT_OK_ ? "done" : rc == EXIT_SKIPS ? "stopped" : "failed", NULL);
		control_unlock_phase(t, ph->number);
	}
	log_jsonl_close();
	return rc;
}

/*
 * --apply-deletes, once every phase of the run is through: children before parents, under
 * the locks of every phase it touches, recorded as a run of its own.
 */
static int apply_deletes(const EngineOptions *o, const Config *cfg, PgConn *t)
{
	int from = o->all ? cfg->phases[0].number : o->phase;
	int to = o->all ? cfg->phases[cfg->n_phases - 1].number : o->phase;
	int locked = 0, rc = EXIT_OK_;
	int64_t run_id = 0;
	for (size_t p = 0; p < cfg->n_phases; p++) {
		int n = cfg->phases[p].number;
		if (n < from || n > to)
			continue;
		if (!control_lock_phase(t, n)) {
			rc = EXIT_SERVER;
			goto out;
		}
		locked = n;
	}
	if (!control_run_start(t, "run --apply-deletes", o->all ? 0 : o->phase, config_hash(cfg), &run_id)) {
		rc = EXIT_SERVER;
		goto out;
	}
	int64_t blocked = delta_apply_deletes(t, cfg, from, to, run_id);
	if (blocked < 0)
		rc = EXIT_SERVER;
	control_run_finish(t, run_id, rc == EXIT_OK_ ? "done" : "failed", NULL);
out:
	for (size_t p = 0; p < cfg->n_phases && locked; p++) {
		int n = cfg->phases[p].number;
		if (n >= from && n <= locked)
			control_unlock_phase(t, n);
	}
	return rc;
}

/*
 * What a real run would do, read back before the dry run's transaction is rolled back:
 * per entity and per reason, and the skip rows as CSV for the data owners.
 */
static void dry_run_report(const EngineOptions *o, const Config *cfg, PgConn *t, int64_t first_run)
{
	printf("dry run: projected result\n%-22s %10s %10s %10s %10s %10s %10s\n", "entity", "read", "filtered",
	       "migrated", "warned", "skipped", "placeholders");
	for (size_t p = 0; p < cfg->n_phases; p++) {
		const Phase *ph = &cfg->phases[p];
		if (!o->all && ph->number != o->phase)
			continue;
		for (size_t e = 0; e < ph->n_entities; e++) {
			const Mapping *m = &cfg->mappings[ph->entities[e]];
			Checkpoint cp;
			if (!checkpoint_load(t, m, 0, &cp))
				return;
			int64_t filtered = 0;
			for (size_t f = 0; f < m->n_filters; f++)
				filtered += cp.filtered[f];
			printf("%-22s %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64 "\n",
			       m->entity, cp.read, filtered, cp.migrated, cp.warned, cp.skipped, cp.stubs);
			checkpoint_free(&cp);
		}
	}
	char run[32];
	snprintf(run, sizeof run, "%lld", (long long)first_run);
	const char *p[] = {run};
	PGresult *r = pg_query(t,
			       "SELECT entity, reason, severity, count(*) FROM edumig.skips WHERE run_id >= $1::bigint "
			       "GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC, 2",
			       1, p);
	if (!r)
		return;
	printf("\nprojected skips and warnings by reason:\n");
	for (int i = 0; i < PQntuples(r); i++)
		printf("  %-22s %-30s %-8s %10s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
		       PQgetvalue(r, i, 3));
	PQclear(r);
	const char *dir = o->log_dir ? o->log_dir : "logs";
	mkdir(dir, 0755);
	AUTOFREE char *path = xasprintf("%s/dry-run-%06lld.csv", dir, (long long)first_run);
	FILE *f = fopen(path, "w");
	if (!f) {
		log_error("cannot write %s: %s", path, strerror(errno));
		return;
	}
	if (pg_set_setting(t, "edumig.first_run", run) &&
	    pg_copy_out_start(t,
			      "COPY (SELECT entity, old_key, severity, reason, column_name, source_value, detail, sqlstate, "
			      "constraint_name, cause_entity, cause_key, owner_entity, owner_key FROM edumig.skips "
			      "WHERE run_id >= current_setting('edumig.first_run')::bigint ORDER BY entity, old_key, reason) "
			      "TO STDOUT WITH (FORMAT csv, HEADER)")) {
		char *row;
		int n;
		while ((n = pg_copy_out_row(t, &row)) > 0) {
			fwrite(row, 1, (size_t)n, f);
			PQfreemem(row);
		}
	}
	fclose(f);
	printf("\nprojected skip report: %s\n", path);
}

int engine_run(const EngineOptions *o)
{
	Config *cfg = load_config(o);
	if (!cfg)
		return EXIT_USAGE;
	if (!o->all && !config_find_phase(cfg, o->phase)) {
		fprintf(stderr, "edumig: no phase %d in %s/phases/phases.json (phases 1 to %zu)\n", o->phase,
			cfg->dir, cfg->n_phases);
		config_free(cfg);
		return EXIT_USAGE;
	}
	if (o->w.dry_run && o->w.apply_deletes) {
		fprintf(stderr, "edumig run: --apply-deletes cannot be combined with --dry-run (a dry run deletes nothing; "
				"`edumig status` lists the rows gone from the source)\n");
		config_free(cfg);
		return EXIT_USAGE;
	}
	PgConn s, t;
	int rc = open_checked(o, cfg, &s, &t);
	if (rc == EXIT_SERVER) {
		config_free(cfg);
		return rc;
	}
	if (rc != EXIT_OK_)
		goto out;
	/* A dry run is one transaction, rolled back once its projection is printed. */
	if (o->w.dry_run && !pg_exec(&t, "BEGIN", NULL)) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (!control_ensure(&t)) {
		rc = EXIT_SERVER;
		goto out;
	}
	int64_t first_run = 0;
	if (o->w.dry_run) {
		AUTOFREE char *v = NULL;
		if (!pg_query_value(&t, "SELECT coalesce(max(run_id), 0) + 1 FROM edumig.runs", 0, NULL, &v)) {
			rc = EXIT_SERVER;
			goto out;
		}
		first_run = strtoll(v, NULL, 10);
	}
	/* Only a run of their phase rebuilds set-aside definitions: it knows the load is complete. */
	for (size_t p = 0; p < cfg->n_phases && !o->all && !o->w.dry_run; p++) {
		int n = cfg->phases[p].number;
		long long pending = n == o->phase ? 0 : bulk_pending(&t, n, n);
		if (pending > 0)
			log_warn("bulk: phase %d has %lld foreign key%s and index%s set aside and not rebuilt yet: "
				 "edumig run --phase %d completes its load and rebuilds them",
				 n, pending, pending == 1 ? "" : "s", pending == 1 ? "" : "es", n);
	}
	for (size_t p = 0; p < cfg->n_phases && rc == EXIT_OK_; p++) {
		const Phase *ph = &cfg->phases[p];
		if (!o->all && ph->number != o->phase)
			continue;
		rc = run_phase(o, cfg, &s, &t, ph);
	}
	if (rc == EXIT_OK_ && o->w.apply_deletes)
		rc = apply_deletes(o, cfg, &t);
	if (o->w.dry_run) {
		if (rc == EXIT_OK_ || rc == EXIT_SKIPS)
			dry_run_report(o, cfg, &t, first_run);
		pg_exec(&t, "ROLLBACK", NULL);
		log_info("dry run: nothing was written to the target (everything rolled back)");
	}
out:
	pg_close(&s);
	pg_close(&t);
	config_free(cfg);
	return rc;
}

static void print_status_table(const EntityStatus *st, size_t n)
{
	printf("%-22s %5s %10s %10s %10s %10s %10s %11s  %s\n", "entity", "phase", "source", "filtered", "migrated",
	       "warned", "skipped", "unaccounted", "state");
	for (size_t i = 0; i < n; i++) {
		const EntityStatus *es = &st[i];
		printf("%-22s %5d %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64 " %11" PRId64
		       "  %s\n",
		       es->m->entity, es->m->phase, es->source, es->filtered, es->cp.migrated, es->cp.warned,
		       es->cp.skipped, es->unaccounted, es->state);
	}
	bool any = false;
	for (size_t i = 0; i < n; i++)
		for (size_t f = 0; f < st[i].m->n_filters; f++) {
			if (!any)
				printf("\nfiltered out (by the mappings' named filters):\n");
			any = true;
			printf("  %-22s %-28s %10" PRId64 "  %s\n", st[i].m->entity, st[i].m->filters[f].name,
			       st[i].cp.filtered[f], st[i].m->filters[f].description ? st[i].m->filters[f].description : "");
		}
	any = false;
	for (size_t i = 0; i < n; i++) {
		const Checkpoint *cp = &st[i].cp;
		if (!cp->gone && !cp->changed && !cp->updated)
			continue;
		if (!any)
			printf("\ndelta runs:\n  %-22s %10s %10s %10s\n", "entity", "gone", "changed", "updated");
		any = true;
		printf("  %-22s %10" PRId64 " %10" PRId64 " %10" PRId64 "\n", st[i].m->entity, cp->gone, cp->changed,
		       cp->updated);
	}
	if (any)
		printf("  gone: legacy rows no longer in the source, still in the target (edumig.source_gone lists them;\n"
		       "        `run --apply-deletes` removes them); changed: source rows changed since they moved,\n"
		       "        left as they are (`run --update` rewrites them); updated: rows rewritten so far\n");
	/* unaccounted compares today's source count with the counters of the last run, so it
	 * cannot tell a deleted row from a lost one; the sign says which way the source moved. */
	bool fewer = false, more = false;
	for (size_t i = 0; i < n; i++) {
		fewer |= st[i].has_cp && st[i].unaccounted < 0;
		more |= st[i].has_cp && st[i].cp.done && st[i].unaccounted > 0;
	}
	if (fewer)
		printf("\nunaccounted below 0: the source holds fewer rows than the last run accounted for (rows\n"
		       "deleted at the source since then). Running the phase again records them as gone and\n"
		       "brings the figure back to 0; `run --apply-deletes` then removes them from the target.\n");
	if (more)
		printf("\nunaccounted above 0 on a finished entity: the source holds rows no run has read (added at\n"
		       "the source since the last run). Running the phase again moves them.\n");
}

/* A count from @sql with one text parameter; -1 after logging on failure. */
static long long count1(PgConn *t, const char *sql, const char *param)
{
	const char *p[] = {param};
	AUTOFREE char *v = NULL;
	if (!pg_query_value(t, sql, param ? 1 : 0, param ? p : NULL, &v))
		return -1;
	return strtoll(v, NULL, 10);
}

/* Prints one check's line; returns 1 when it failed, 0 when it held, -1 on error. */
static int report_check(const char *name, const char *what, long long n)
{
	if (n < 0)
		return -1;
	printf("  %-58s %-40s %s\n", name, what, n == 0 ? "ok" : "FAIL");
	if (n)
		printf("      %lld row%s\n", n, n == 1 ? "" : "s");
	return n ? 1 : 0;
}

/*
 * The id map against the target, both ways, and foreign keys of every table the mappings
 * write. Returns the number of failed checks, or -1 on a server error.
 */
static int verify_links(PgConn *t, const Config *cfg)
{
	bool control = false;
	if (!control_exists(t, &control))
		return -1;
	if (!control)
		return 0;
	printf("\nid map and target:\n");
	int failed = 0;
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		const Mapping *m = &cfg->mappings[i];
		AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
		AUTOFREE char *qid = pg_ident(t, m->id_column);
		AUTOFREE char *sql = xasprintf(
			"SELECT count(*) FROM edumig.id_map m WHERE m.entity = $1 AND m.kind IN ('row', 'stub') "
			"AND NOT EXISTS (SELECT 1 FROM %s x WHERE x.%s = m.new_id)", qt, qid);
		AUTOFREE char *name = xasprintf("%s: every id-map row has its target row", m->entity);
		int r = report_check(name, m->target_table, count1(t, sql, m->entity));
		if (r < 0)
			return -1;
		failed += r;
	}
	/* Each written table once: its rows must all come from edumig (an id-map row of one of
	 * the entities that write it). */
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		const Mapping *m = &cfg->mappings[i];
		bool first = true;
		StrBuf ents = {0};
		sb_putc(&ents, '{');
		for (size_t k = 0; k < cfg->n_mappings; k++) {
			const Mapping *o = &cfg->mappings[k];
			if (strcmp(o->target_schema, m->target_schema) || strcmp(o->target_table, m->target_table))
				continue;
			if (k < i)
				first = false;
			sb_array_item(&ents, o->entity);
		}
		sb_putc(&ents, '}');
		if (!first) {
			sb_free(&ents);
			continue;
		}
		AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
		AUTOFREE char *qid = pg_ident(t, m->id_column);
		AUTOFREE char *sql = xasprintf(
			"SELECT count(*) FROM %s x WHERE NOT EXISTS (SELECT 1 FROM edumig.id_map m "
			"WHERE m.new_id = x.%s AND m.kind IN ('row', 'stub') AND m.entity = ANY($1::text[]))", qt, qid);
		AUTOFREE char *name = xasprintf("%s: every row has an id-map row", m->target_table);
		int r = report_check(name, sb_str(&ents), count1(t, sql, sb_str(&ents)));
		sb_free(&ents);
		if (r < 0)
			return -1;
		failed += r;
	}
	/* Foreign keys: enforced ones cannot dangle, but bulk loads and hand edits can leave
	 * NOT VALID or disabled constraints behind, so every single-column one is counted. */
	printf("\nforeign keys of the tables the mappings write:\n");
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		const Mapping *m = &cfg->mappings[i];
		bool first = true;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(cfg->mappings[k].target_schema, m->target_schema) &&
			    !strcmp(cfg->mappings[k].target_table, m->target_table))
				first = false;
		if (!first)
			continue;
		AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
		const char *p[] = {qt};
		PGresult *fk = pg_query(t,
					"SELECT c.conname, a.attname, format('%I.%I', fn.nspname, f.relname), fa.attname "
					"FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
					"JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace "
					"JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1] "
					"WHERE c.contype = 'f' AND c.conrelid = $1::regclass AND cardinality(c.conkey) = 1 "
					"ORDER BY c.conname",
					1, p);
		if (!fk)
			return -1;
		for (int r = 0; r < PQntuples(fk); r++) {
			AUTOFREE char *col = pg_ident(t, PQgetvalue(fk, r, 1));
			AUTOFREE char *fcol = pg_ident(t, PQgetvalue(fk, r, 3));
			AUTOFREE char *sql = xasprintf(
				"SELECT count(*) FROM %s x WHERE x.%s IS NOT NULL AND NOT EXISTS "
				"(SELECT 1 FROM %s y WHERE y.%s = x.%s)",
				qt, col, PQgetvalue(fk, r, 2), fcol, col);
			AUTOFREE char *name = xasprintf("%s: no orphans", PQgetvalue(fk, r, 0));
			int res = report_check(name, m->target_table, count1(t, sql, NULL));
			if (res < 0) {
				PQclear(fk);
				return -1;
			}
			failed += res;
		}
		PQclear(fk);
	}
	return failed;
}

static int with_status(const EngineOptions *o, bool verify)
{
	Config *cfg = load_config(o);
	if (!cfg)
		return EXIT_USAGE;
	PgConn s, t;
	if (!connect_both(o, &s, &t)) {
		config_free(cfg);
		return EXIT_SERVER;
	}
	int rc = EXIT_OK_;
	bool control = false;
	size_t n = status_entity_count(cfg);
	EntityStatus *st = xcalloc(n ? n : 1, sizeof *st);
	pg_exec(&s, "SET default_transaction_read_only = on", NULL);
	if (!control_exists(&t, &control) || !status_collect(&s, &t, cfg, st, control)) {
		rc = EXIT_SERVER;
		goto out;
	}
	long long aside = bulk_pending(&t, 1, INT_MAX);
	if (aside < 0) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (!verify) {
		if (o->json) {
			StrBuf b = {0};
			status_json(st, n, &b);
			fputs(sb_str(&b), stdout);
			sb_free(&b);
			/* The JSON keeps its shape (reports embed it); the warning goes to stderr. */
			if (aside > 0)
				log_warn("bulk: %lld foreign key%s and index%s set aside by run --bulk, not rebuilt yet", aside,
					 aside == 1 ? "" : "s", aside == 1 ? "" : "es");
		} else {
			print_status_table(st, n);
			if (aside > 0) {
				printf("\nset aside by run --bulk and not rebuilt yet (a run of the phase rebuilds them; "
				       "verify fails until then):\n");
				if (bulk_print_pending(&t, "  ") < 0)
					rc = EXIT_SERVER;
			}
		}
		goto out;
	}
	int failed = 0;
	printf("%-22s %10s %10s %10s %10s %11s  %s\n", "entity", "source", "filtered", "migrated", "skipped",
	       "unaccounted", "check");
	for (size_t i = 0; i < n; i++) {
		const EntityStatus *es = &st[i];
		const char *verdict = "ok";
		if (!es->has_cp || !es->cp.done)
			verdict = "FAIL: not finished";
		else if (es->unaccounted > 0)
			verdict = "FAIL: rows unaccounted (added at the source since the last run? run the phase again)";
		else if (es->unaccounted < 0)
			verdict = "FAIL: fewer source rows than accounted for (deleted at the source since the last run? "
				  "run the phase again: it records them as gone)";
		if (strcmp(verdict, "ok") != 0)
			failed++;
		printf("%-22s %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64 " %11" PRId64 "  %s\n", es->m->entity,
		       es->source, es->filtered, es->cp.migrated, es->cp.skipped, es->unaccounted, verdict);
	}
	printf("\naccounting identity (source = filtered + migrated + skipped - gone from the source): %s\n",
	       failed ? "FAILED" : "holds for every entity");
	int bad = verify_links(&t, cfg);
	if (bad < 0) {
		rc = EXIT_SERVER;
		goto out;
	}
	/* A definition still set aside is a constraint the target does not enforce (or an index
	 * it lacks): nobody should cut over like that. */
	printf("\nforeign keys and indexes set aside by run --bulk:\n");
	bad += report_check("bulk: every set-aside definition is rebuilt", "edumig.bulk_set_aside", aside);
	if (aside > 0 && bulk_print_pending(&t, "      ") < 0) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (failed || bad) {
		printf("verify: FAILED (%d check%s)\n", failed + bad, failed + bad == 1 ? "" : "s");
		rc = EXIT_SKIPS;
	} else {
		printf("verify: every check holds\n");
	}
out:
	status_free(st, n);
	free(st);
	pg_close(&s);
	pg_close(&t);
	config_free(cfg);
	return rc;
}

int engine_status(const EngineOptions *o)
{
	return with_status(o, false);
}

int engine_verify(const EngineOptions *o)
{
	return with_status(o, true);
}

/*
 * Takes the run locks of phase @from and every later phase (rollback and retry touch them
 * all); *@locked is the last phase locked, for the unlock loop. False once one is held by
 * another run (named by control_lock_phase).
 */
static bool lock_phases_from(PgConn *t, const Config *cfg, int from, int *locked)
{
	for (size_t p = 0; p < cfg->n_phases; p++) {
		if (cfg->phases[p].number < from)
			continue;
		if (!control_lock_phase(t, cfg->phases[p].number))
			return false;
		*locked = cfg->phases[p].number;
	}
	return true;
}

int engine_rollback(const EngineOptions *o)
{
	Config *cfg = load_config(o);
	if (!cfg)
		return EXIT_USAGE;
	if (!config_find_phase(cfg, o->phase)) {
		fprintf(stderr, "edumig: no phase %d in %s/phases/phases.json (phases 1 to %zu)\n", o->phase, cfg->dir,
			cfg->n_phases);
		config_free(cfg);
		return EXIT_USAGE;
	}
	PgConn t;
	if (!pg_connect(&t, conninfo(o->target, "EDUMIG_TARGET"), "TARGET")) {
		config_free(cfg);
		return EXIT_SERVER;
	}
	int rc = EXIT_OK_;
	bool control = false;
	int locked = 0;
	int64_t run_id = 0;
	if (!control_exists(&t, &control)) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (!control) {
		log_info("rollback: nothing to undo (edumig never ran on this target)");
		goto out;
	}
	/* No run of an affected phase may write while its rows are being removed. */
	if (!lock_phases_from(&t, cfg, o->phase, &locked)) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (!control_run_start(&t, "rollback", o->phase, config_hash(cfg), &run_id)) {
		rc = EXIT_SERVER;
		goto out;
	}
	/* What run --bulk set aside comes back first, so that the check for rows referring to
	 * what goes, and --force, see every foreign key; a failed rebuild removes nothing. */
	int unbuilt = bulk_rebuild(&t, o->phase, INT_MAX);
	if (unbuilt != 0) {
		if (unbuilt > 0)
			log_error("rollback refused: %d foreign key%s or index%s set aside by run --bulk for phase %d or "
				  "later could not be rebuilt (see above); nothing was removed",
				  unbuilt, unbuilt == 1 ? "" : "s", unbuilt == 1 ? "" : "es", o->phase);
		control_run_finish(&t, run_id, "failed", NULL);
		rc = EXIT_SERVER;
		goto out;
	}
	rc = rollback_run(&t, cfg, o->phase, o->force);
	control_run_finish(&t, run_id, rc == 0 ? "done" : rc == 1 ? "stopped" : "failed", NULL);
	if (rc == 0)
		log_info("rollback: phases %d to %zu undone", o->phase, cfg->n_phases);
out:
	for (int p = o->phase; p <= locked; p++)
		control_unlock_phase(&t, p);
	pg_close(&t);
	config_free(cfg);
	return rc;
}

int engine_retry(const EngineOptions *o)
{
	Config *cfg = load_config(o);
	if (!cfg)
		return EXIT_USAGE;
	const Phase *ph = config_find_phase(cfg, o->phase);
	int only = o->entity ? config_find_entity(cfg, o->entity) : -1;
	if (!ph || (o->entity && (only < 0 || cfg->mappings[only].phase != o->phase))) {
		if (!ph)
			fprintf(stderr, "edumig: no phase %d in %s/phases/phases.json\n", o->phase, cfg->dir);
		else
			fprintf(stderr, "edumig: entity \"%s\" is not in phase %d\n", o->entity, o->phase);
		config_free(cfg);
		return EXIT_USAGE;
	}
	PgConn s, t;
	int64_t run_id = 0;
	int locked = 0;
	int rc = open_checked(o, cfg, &s, &t);
	if (rc == EXIT_SERVER) {
		config_free(cfg);
		return rc;
	}
	if (rc != EXIT_OK_)
		goto out;
	if (!control_ensure(&t)) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (!lock_phases_from(&t, cfg, o->phase, &locked)) {
		rc = EXIT_SERVER;
		goto out;
	}
	if (!control_refresh_stats(&t, o->phase) || !control_run_start(&t, "retry", o->phase, config_hash(cfg), &run_id) ||
	    !source_begin(&s)) {
		rc = EXIT_SERVER;
		goto out;
	}
	open_run_log(o, run_id);
	/* The phase's entities re-read their skipped rows; every later entity then re-reads
	 * the rows whose skipped parent has moved since (the cascade). */
	bool started = false;
	for (size_t p = 0; p < cfg->n_phases && rc == EXIT_OK_; p++) {
		const Phase *cur = &cfg->phases[p];
		if (cur->number < o->phase)
			continue;
		for (size_t e = 0; e < cur->n_entities && rc == EXIT_OK_; e++) {
			int ent = cur->entities[e];
			bool direct = cur->number == o->phase && (only < 0 || ent == only);
			if (!direct && !started)
				continue;
			started = true;
			if (!load_lookups(&s, cfg, &cfg->mappings[ent])) {
				rc = EXIT_SERVER;
				break;
			}
			int64_t retried = 0, moved = 0;
			WorkResult w = worker_retry_entity(&s, &t, cfg, ent, run_id, &o->w, direct ? o->reason : NULL, !direct,
							   &retried, &moved);
			if (w != WORK_OK)
				rc = EXIT_SERVER;
		}
	}
	pg_exec(&s, "COMMIT", NULL);
	control_run_finish(&t, run_id, rc == EXIT_OK_ ? "done" : "failed", NULL);
	log_jsonl_close();
out:
	for (int p = o->phase; p <= locked; p++)
		control_unlock_phase(&t, p);
	pg_close(&s);
	pg_close(&t);
	config_free(cfg);
	return rc;
}
