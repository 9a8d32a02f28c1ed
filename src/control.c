/*
 * src/control.c — the control schema, runs, locks, checkpoints and id-set loading.
 */
#include "edumig/control.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "edumig/copytext.h"
#include "edumig/skiplog.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/strbuf.h"
#include "edumig_version.h"
#include "sql.h"

/* Advisory-lock class for "edumig run of phase N" (an arbitrary constant: 'edum'). */
#define EDUMIG_LOCK_CLASS 1701082477

bool control_ensure(PgConn *t)
{
	/* Serialise concurrent first runs creating the schema. */
	if (!pg_exec(t, "SELECT pg_advisory_lock(1701082477, 0)", NULL))
		return false;
	bool ok = pg_exec(t, sql_control, NULL);
	pg_exec(t, "SELECT pg_advisory_unlock(1701082477, 0)", NULL);
	return ok;
}

bool control_exists(PgConn *t, bool *exists)
{
	AUTOFREE char *v = NULL;
	if (!pg_query_value(t, "SELECT (to_regclass('edumig.checkpoints') IS NOT NULL)::text", 0, NULL, &v))
		return false;
	*exists = strcmp(v, "true") == 0;
	return true;
}

bool control_run_start(PgConn *t, const char *command, int phase, const char *config_hash, int64_t *run_id)
{
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	char ph[16], pid[16];
	snprintf(ph, sizeof ph, "%d", phase);
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	const char *p[] = {command, phase > 0 ? ph : NULL, config_hash, EDUMIG_VERSION, host, pid};
	AUTOFREE char *v = NULL;
	if (!pg_query_value(t,
			    "INSERT INTO edumig.runs (command, phase, config_hash, version, host, pid) "
			    "VALUES ($1, $2, $3, $4, $5, $6) RETURNING run_id",
			    6, p, &v))
		return false;
	*run_id = strtoll(v, NULL, 10);
	return true;
}

/*
 * A phase that has run before finds edumig.id_map and edumig.skips grown by the earlier run
 * faster than autovacuum analyzes them: planned on the old statistics, the delta pass's
 * join of skips with the id map ran for over 10 minutes on phase 5 at scale 1.0 (it takes
 * 1 s on fresh statistics, and ANALYZE of both about 0.6 s). A fresh phase skips this.
 */
bool control_refresh_stats(PgConn *t, int phase)
{
	char ph[16];
	snprintf(ph, sizeof ph, "%d", phase);
	const char *p[] = {ph};
	AUTOFREE char *v = NULL;
	if (!pg_query_value(t, "SELECT EXISTS (SELECT 1 FROM edumig.checkpoints WHERE phase = $1::int)::text", 1, p,
			    &v))
		return false;
	if (strcmp(v, "true") != 0)
		return true;
	log_debug("phase %d ran before: ANALYZE edumig.id_map, edumig.skips", phase);
	return pg_exec(t, "ANALYZE edumig.id_map, edumig.skips", NULL);
}

bool control_run_finish(PgConn *t, int64_t run_id, const char *status, const char *message)
{
	char id[32];
	snprintf(id, sizeof id, "%lld", (long long)run_id);
	const char *p[] = {id, status, message};
	return pg_exec_params(t,
			      "UPDATE edumig.runs SET finished_at = now(), status = $2, message = $3 "
			      "WHERE run_id = $1",
			      3, p, NULL);
}

bool control_lock_phase(PgConn *t, int phase)
{
	char ph[16];
	snprintf(ph, sizeof ph, "%d", phase);
	const char *p[] = {ph};
	AUTOFREE char *v = NULL;
	if (!pg_query_value(t, "SELECT pg_try_advisory_lock(1701082477, $1::int)::text", 1, p, &v))
		return false;
	if (strcmp(v, "true") == 0)
		return true;
	PGresult *r = pg_query(t,
			       "SELECT r.run_id, r.host, r.pid, to_char(r.started_at, 'YYYY-MM-DD HH24:MI:SS') "
			       "FROM edumig.runs r WHERE r.status = 'running' AND (r.phase = $1::int OR r.phase IS NULL) "
			       "ORDER BY r.run_id DESC LIMIT 1",
			       1, p);
	if (r && PQntuples(r) == 1)
		log_error("phase %d is being run by another edumig on this target: run %s on host %s, pid %s, started %s",
			  phase, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
	else
		log_error("phase %d is being run by another edumig on this target (advisory lock %d/%d held)",
			  phase, EDUMIG_LOCK_CLASS, phase);
	PQclear(r);
	return false;
}

void control_unlock_phase(PgConn *t, int phase)
{
	char ph[16];
	snprintf(ph, sizeof ph, "%d", phase);
	const char *p[] = {ph};
	pg_exec_params(t, "SELECT pg_advisory_unlock(1701082477, $1::int)", 1, p, NULL);
}

void checkpoint_init(Checkpoint *cp, size_t n_filters)
{
	memset(cp, 0, sizeof *cp);
	cp->n_filters = n_filters;
	cp->filtered = xcalloc(n_filters ? n_filters : 1, sizeof *cp->filtered);
}

void checkpoint_free(Checkpoint *cp)
{
	free(cp->filtered);
	memset(cp, 0, sizeof *cp);
}

bool checkpoint_load(PgConn *t, const Mapping *m, int part, Checkpoint *cp)
{
	checkpoint_init(cp, m->n_filters);
	char pt[16];
	snprintf(pt, sizeof pt, "%d", part);
	const char *p[] = {m->entity, pt};
	PGresult *r = pg_query(t,
			       "SELECT last_key, rows_read, rows_migrated, rows_warned, rows_merged, rows_skipped, "
			       "stubs, batches, seconds, state, rows_filtered::text, rows_gone, rows_changed, rows_updated "
			       "FROM edumig.checkpoints WHERE entity = $1 AND part = $2::int",
			       2, p);
	if (!r)
		return false;
	if (PQntuples(r) == 1) {
		cp->exists = true;
		if (!PQgetisnull(r, 0, 0)) {
			cp->has_last_key = true;
			snprintf(cp->last_key, sizeof cp->last_key, "%s", PQgetvalue(r, 0, 0));
		}
		cp->read = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		cp->migrated = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		cp->warned = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
		cp->merged = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
		cp->skipped = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
		cp->stubs = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
		cp->batches = strtoll(PQgetvalue(r, 0, 7), NULL, 10);
		cp->seconds = strtod(PQgetvalue(r, 0, 8), NULL);
		cp->done = strcmp(PQgetvalue(r, 0, 9), "done") == 0;
		cp->streamed = cp->done || strcmp(PQgetvalue(r, 0, 9), "streamed") == 0;
		json_object *f = json_tokener_parse(PQgetvalue(r, 0, 10));
		for (size_t i = 0; f && i < m->n_filters; i++) {
			json_object *v;
			if (json_object_object_get_ex(f, m->filters[i].name, &v))
				cp->filtered[i] = json_object_get_int64(v);
		}
		json_object_put(f);
		cp->gone = strtoll(PQgetvalue(r, 0, 11), NULL, 10);
		cp->changed = strtoll(PQgetvalue(r, 0, 12), NULL, 10);
		cp->updated = strtoll(PQgetvalue(r, 0, 13), NULL, 10);
	}
	PQclear(r);
	return true;
}

bool checkpoint_create(PgConn *t, const Mapping *m, int part)
{
	char pt[16], ph[16];
	snprintf(pt, sizeof pt, "%d", part);
	snprintf(ph, sizeof ph, "%d", m->phase);
	const char *p[] = {m->entity, pt, ph};
	return pg_exec_params(t,
			      "INSERT INTO edumig.checkpoints (entity, part, phase) VALUES ($1, $2::int, $3::int) "
			      "ON CONFLICT (entity, part) DO NOTHING",
			      3, p, NULL);
}

char *checkpoint_filtered_json(const Mapping *m, const Checkpoint *cp)
{
	StrBuf b = {0};
	sb_putc(&b, '{');
	for (size_t i = 0; i < m->n_filters; i++) {
		if (i)
			sb_putc(&b, ',');
		json_put_string(&b, m->filters[i].name, strlen(m->filters[i].name));
		sb_printf(&b, ":%lld", (long long)cp->filtered[i]);
	}
	sb_putc(&b, '}');
	return sb_steal(&b);
}

bool checkpoint_store(PgConn *t, const Mapping *m, int part, const Checkpoint *cp)
{
	char pt[16], n[10][32], secs[64];
	snprintf(pt, sizeof pt, "%d", part);
	int64_t v[] = {cp->read,  cp->migrated, cp->warned, cp->merged,  cp->skipped,
		       cp->stubs, cp->batches,  cp->gone,   cp->changed, cp->updated};
	for (int i = 0; i < 10; i++)
		snprintf(n[i], sizeof n[i], "%lld", (long long)v[i]);
	snprintf(secs, sizeof secs, "%.3f", cp->seconds);
	AUTOFREE char *filtered = checkpoint_filtered_json(m, cp);
	const char *p[] = {m->entity, pt, cp->has_last_key ? cp->last_key : NULL, n[0], n[1], n[2], n[3],
			   n[4], n[5], n[6], secs, cp->done ? "done" : cp->streamed ? "streamed" : "running", filtered,
			   n[7], n[8], n[9]};
	return pg_exec_params(t,
			      "UPDATE edumig.checkpoints SET last_key = $3, rows_read = $4, rows_migrated = $5, "
			      "rows_warned = $6, rows_merged = $7, rows_skipped = $8, stubs = $9, batches = $10, "
			      "seconds = $11, state = $12, rows_filtered = $13::jsonb, rows_gone = $14, "
			      "rows_changed = $15, rows_updated = $16, updated_at = now() "
			      "WHERE entity = $1 AND part = $2::int",
			      16, p, NULL);
}

/* Rows of (old_key[, new_id, kind][, row_hash]) into @s; @skipped rows carry no id. */
static bool load_into(PgConn *t, IdSet *s, const char *sql, bool skipped, bool hashes)
{
	if (!pg_copy_out_start(t, sql))
		return false;
	char *row;
	int n;
	while ((n = pg_copy_out_row(t, &row)) > 0) {
		char *f[4];
		size_t l[4];
		int nf = copytext_split(row, (size_t)n, f, l, 4);
		Key k;
		unsigned char u[16] = {0};
		IdKind kind = skipped ? ID_SKIPPED : ID_ROW;
		int hi = skipped ? 1 : 3;
		if (nf >= 1 && f[0] && key_parse(f[0], &k)) {
			if (!skipped && nf >= 3 && f[1] && f[2]) {
				uuid_parse(f[1], u);
				id_kind_parse(f[2], &kind);
			}
			/* A skip never hides a migrated row: merged/retried keys stay migrated. A
			 * placeholder standing in for a skipped row keeps the skip's hash. */
			IdKind have;
			bool present = skipped && idset_get(s, &k, NULL, &have);
			if (!present)
				idset_put(s, &k, u, kind);
			else if (hashes && have == ID_STUB)
				idset_mark_skipped(s, &k);
			unsigned long long h;
			if ((!present || (hashes && have == ID_STUB)) && hashes && nf > hi && f[hi] &&
			    sscanf(f[hi], "%16llx", &h) == 1)
				idset_set_hash(s, &k, (uint64_t)h);
		}
		PQfreemem(row);
	}
	return n == 0;
}

/* Keys of the entity with an open skip or warning about a parent that is now migrated. */
#define CAUSE_MOVED                                                                                          \
	"SELECT DISTINCT w.old_key FROM edumig.skips w JOIN edumig.id_map pm ON pm.entity = w.cause_entity "   \
	"AND pm.old_key = w.cause_key AND pm.kind <> 'stub' WHERE w.entity = current_setting('edumig.entity') " \
	"AND w.resolved_at IS NULL AND w.reason IN ('missing_reference', 'parent_skipped', 'parent_stubbed')"

IdSet *control_load_idset(PgConn *t, const char *entity, bool hashes)
{
	if (!pg_set_setting(t, "edumig.entity", entity))
		return NULL;
	/* Sized up front: growing by rehashing would hold two tables at once at the peak. */
	const char *p[] = {entity};
	AUTOFREE char *n = NULL;
	if (!pg_query_value(t,
			    "SELECT (SELECT count(*) FROM edumig.id_map WHERE entity = $1) + "
			    "(SELECT count(DISTINCT old_key) FROM edumig.skips WHERE entity = $1 AND severity = 'error' "
			    "AND resolved_at IS NULL)",
			    1, p, &n))
		return NULL;
	IdSet *s = idset_create((size_t)strtoll(n, NULL, 10) + 64);
	/* With @hashes, a row skipped or warned about because of a parent that has been
	 * migrated since gets no hash: a delta run then takes it as changed (--update re-reads
	 * it, so the dependants of a late parent move or get their reference). */
	if (!load_into(t, s,
		       hashes ? "COPY (SELECT m.old_key, m.new_id, m.kind, CASE WHEN c.old_key IS NULL THEN m.row_hash END "
				"FROM edumig.id_map m LEFT JOIN (" CAUSE_MOVED ") c ON c.old_key = m.old_key "
				"WHERE m.entity = current_setting('edumig.entity')) TO STDOUT"
			      : "COPY (SELECT old_key, new_id, kind FROM edumig.id_map "
				"WHERE entity = current_setting('edumig.entity')) TO STDOUT",
		       false, hashes) ||
	    !load_into(t, s,
		       !hashes ? "COPY (SELECT DISTINCT old_key FROM edumig.skips "
				 "WHERE entity = current_setting('edumig.entity') AND severity = 'error' "
				 "AND resolved_at IS NULL AND old_key IS NOT NULL) TO STDOUT" :
		       "COPY (SELECT s.old_key, CASE WHEN bool_or(c.old_key IS NOT NULL) THEN NULL "
		       "ELSE max(s.row_hash) END FROM edumig.skips s LEFT JOIN (" CAUSE_MOVED ") c ON c.old_key = s.old_key "
		       "WHERE s.entity = current_setting('edumig.entity') AND s.severity = 'error' "
		       "AND s.resolved_at IS NULL AND s.old_key IS NOT NULL GROUP BY s.old_key) TO STDOUT",
		       true, hashes)) {
		idset_destroy(s);
		return NULL;
	}
	return s;
}
