/*
 * src/bulk.c — run --bulk: foreign keys and non-unique indexes set aside for the load of a
 * phase and rebuilt at its end (see bulk.h).
 *
 * Why it is safe: edumig resolves every `ref` column through the id sets of the parent
 * entity, which hold only keys whose rows (or placeholders, or merge survivors) are in the
 * target, so the rows it writes satisfy those foreign keys by construction; the constraints
 * the batch writer needs the server to enforce (unique, CHECK, NOT NULL) are never touched.
 * What edumig cannot vouch for (a foreign-key column filled any other way) stays live.
 */
#include "edumig/bulk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/strbuf.h"
#include "edumig/testhook.h"

static bool writes_table(const Mapping *m, const char *schema, const char *table)
{
	return strcmp(m->target_schema, schema) == 0 && strcmp(m->target_table, table) == 0;
}

char *bulk_fk_keep_reason(const Config *cfg, const char *schema, const char *table, const char *column,
			  bool has_default, const char *ref_schema, const char *ref_table, const char *ref_column)
{
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		const Mapping *m = &cfg->mappings[i];
		/* Placeholders another mapping creates in this table take their columns from the
		 * mapping's templates, not from an id map. */
		for (size_t c = 0; c < m->n_cols; c++) {
			const ColumnRule *r = &m->cols[c];
			if (r->kind != RULE_REF || r->ref_entity_index < 0 ||
			    !writes_table(&cfg->mappings[r->ref_entity_index], schema, table))
				continue;
			for (size_t s = 0; s < r->n_stub_cols; s++) {
				const StubColumn *sc = &r->stub_cols[s];
				if (strcmp(sc->name, column) == 0 && !(sc->is_null && !sc->tmpl))
					return xasprintf("%s:%d: %s/stub/%s: the placeholders of this reference fill the "
							 "column from the mapping, which edumig does not check against %s.%s",
							 m->file, r->line, r->path, column, ref_schema, ref_table);
			}
		}
		if (!writes_table(m, schema, table))
			continue;
		const ColumnRule *w = NULL;
		for (size_t c = 0; c < m->n_cols && !w; c++)
			if (strcmp(m->cols[c].name, column) == 0)
				w = &m->cols[c];
		if (!w) {
			/* Not written: NULL, unless the table fills it in. */
			if (has_default)
				return xasprintf("%s: %s does not write column \"%s\", which takes the table's default; "
						 "edumig does not check it against %s.%s",
						 m->file, m->entity, column, ref_schema, ref_table);
			continue;
		}
		if (w->kind != RULE_REF)
			return xasprintf("%s:%d: %s: column \"%s\" is filled by its \"%s\" rule, not by a ref, so "
					 "edumig does not check its values against %s.%s",
					 m->file, w->line, w->path, column, rule_kind_name(w->kind), ref_schema, ref_table);
		const Mapping *pm = w->ref_entity_index >= 0 ? &cfg->mappings[w->ref_entity_index] : NULL;
		if (!pm || !writes_table(pm, ref_schema, ref_table) || strcmp(pm->id_column, ref_column) != 0)
			return xasprintf("%s:%d: %s: column \"%s\" refers to %s, whose rows go to %s.%s (%s), "
					 "not to %s.%s (%s)",
					 m->file, w->line, w->path, column, w->ref_entity,
					 pm ? pm->target_schema : "?", pm ? pm->target_table : "?",
					 pm ? pm->id_column : "?", ref_schema, ref_table, ref_column);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "true"/"false" of a one-value query; false after logging on error. */
static bool query_bool(PgConn *t, const char *sql, int n, const char *const *p, bool *out)
{
	AUTOFREE char *v = NULL;
	if (!pg_query_value(t, sql, n, p, &v))
		return false;
	*out = strcmp(v, "true") == 0 || strcmp(v, "t") == 0;
	return true;
}

static bool table_empty(PgConn *t, const char *qt, bool *empty)
{
	AUTOFREE char *sql = xasprintf("SELECT (NOT EXISTS (SELECT 1 FROM %s))::text", qt);
	return query_bool(t, sql, 0, NULL, empty);
}

/* The control table is created by run and retry only: status, verify and rollback may meet
 * a control schema of an older edumig without it. */
static bool control_table_exists(PgConn *t, bool *exists)
{
	return query_bool(t, "SELECT (to_regclass('edumig.bulk_set_aside') IS NOT NULL)::text", 0, NULL, exists);
}

static bool save(PgConn *t, int phase, const char *schema, const char *table, const char *kind, const char *name,
		 const char *def, bool validated, const char *run)
{
	char ph[16];
	snprintf(ph, sizeof ph, "%d", phase);
	const char *p[] = {ph, schema, table, kind, name, def, validated ? "true" : "false", run};
	return pg_exec_params(t,
			      "INSERT INTO edumig.bulk_set_aside (phase, schema_name, table_name, kind, name, definition, "
			      "validated, run_id) VALUES ($1::int, $2, $3, $4, $5, $6, $7::bool, $8::bigint)",
			      8, p, NULL);
}

/*
 * One table, inside the phase's set-aside transaction. Log lines go to @msgs, to be printed
 * once the transaction has committed (before, they might describe something undone).
 */
static bool set_aside_table(PgConn *t, const Config *cfg, int phase, const char *schema, const char *table,
			    const char *run, StrBuf *msgs, int *n_fk, int *n_idx)
{
	AUTOFREE char *qt = pg_qualified(t, schema, table);
	bool empty = false;
	if (!table_empty(t, qt, &empty))
		return false;
	/* Checked again under the lock: a row may have come in meanwhile. */
	if (empty) {
		AUTOFREE char *lock = xasprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", qt);
		if (!pg_exec(t, lock, NULL) || !table_empty(t, qt, &empty))
			return false;
	}
	if (!empty) {
		sb_printf(msgs, "bulk: %s.%s is not empty at the start of phase %d, so it is not set aside: its "
			  "foreign keys and indexes stay live (only an empty table is loaded in bulk)\n",
			  schema, table, phase);
		return true;
	}
	const char *p[] = {qt};
	bool plain = false;
	if (!query_bool(t,
			"SELECT (c.relkind = 'r' AND NOT c.relispartition AND NOT EXISTS (SELECT 1 FROM pg_inherits h "
			"WHERE h.inhrelid = c.oid OR h.inhparent = c.oid))::text FROM pg_class c WHERE c.oid = $1::regclass",
			1, p, &plain))
		return false;
	if (!plain) {
		sb_printf(msgs, "bulk: %s.%s is partitioned or inherits: it is not set aside (its constraints and "
			  "indexes have per-partition copies a rebuild would not restore as they were)\n", schema, table);
		return true;
	}
	StrBuf fks = {0}, idx = {0};
	int nf = 0, ni = 0;
	bool ok = true;
	PGresult *fk = pg_query(t,
				"SELECT c.conname, pg_get_constraintdef(c.oid), c.convalidated::text, cardinality(c.conkey), "
				"a.attname, a.atthasdef::text, fn.nspname, f.relname, fa.attname, "
				"(obj_description(c.oid, 'pg_constraint') IS NOT NULL)::text "
				"FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
				"JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace "
				"JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1] "
				"WHERE c.contype = 'f' AND c.conrelid = $1::regclass ORDER BY c.conname",
				1, p);
	if (!fk)
		return false;
	for (int r = 0; ok && r < PQntuples(fk); r++) {
		const char *name = PQgetvalue(fk, r, 0);
		AUTOFREE char *why = NULL;
		if (strcmp(PQgetvalue(fk, r, 3), "1") != 0)
			why = xasprintf("it spans %s columns, and edumig's references are single columns",
					PQgetvalue(fk, r, 3));
		else if (strcmp(PQgetvalue(fk, r, 9), "true") == 0)
			why = xstrdup("it has a comment, which dropping it would lose");
		else
			why = bulk_fk_keep_reason(cfg, schema, table, PQgetvalue(fk, r, 4),
						  strcmp(PQgetvalue(fk, r, 5), "true") == 0, PQgetvalue(fk, r, 6),
						  PQgetvalue(fk, r, 7), PQgetvalue(fk, r, 8));
		if (why) {
			sb_printf(msgs, "bulk: %s.%s: foreign key %s stays live: %s\n", schema, table, name, why);
			continue;
		}
		AUTOFREE char *qn = pg_ident(t, name);
		AUTOFREE char *drop = xasprintf("ALTER TABLE %s DROP CONSTRAINT %s", qt, qn);
		ok = save(t, phase, schema, table, "foreign_key", name, PQgetvalue(fk, r, 1),
			  strcmp(PQgetvalue(fk, r, 2), "true") == 0, run) &&
		     pg_exec(t, drop, NULL);
		sb_printf(&fks, "%s%s", fks.len ? ", " : "", name);
		nf++;
	}
	PQclear(fk);
	/* Unique and primary-key indexes never appear here; an index behind an exclusion
	 * constraint is the constraint itself, and the others would not come back as they were. */
	PGresult *ix = ok ? pg_query(t,
				     "SELECT ic.relname, pg_get_indexdef(i.indexrelid), CASE "
				     "WHEN EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype <> 'f') "
				     "THEN 'it enforces a constraint' "
				     "WHEN NOT (i.indisvalid AND i.indisready AND i.indislive) THEN 'it is not valid' "
				     "WHEN i.indisreplident THEN 'it is the replica identity' "
				     "WHEN i.indisclustered THEN 'the table is clustered on it' "
				     "WHEN ic.reltablespace <> 0 THEN 'it has a tablespace of its own' "
				     "WHEN obj_description(i.indexrelid, 'pg_class') IS NOT NULL "
				     "THEN 'it has a comment, which dropping it would lose' END "
				     "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
				     "WHERE i.indrelid = $1::regclass AND NOT i.indisunique AND NOT i.indisprimary "
				     "ORDER BY ic.relname",
				     1, p)
			       : NULL;
	if (!ix)
		ok = false;
	for (int r = 0; ok && r < PQntuples(ix); r++) {
		const char *name = PQgetvalue(ix, r, 0);
		if (!PQgetisnull(ix, r, 2)) {
			sb_printf(msgs, "bulk: %s.%s: index %s stays live: %s\n", schema, table, name, PQgetvalue(ix, r, 2));
			continue;
		}
		AUTOFREE char *qi = pg_qualified(t, schema, name);
		AUTOFREE char *drop = xasprintf("DROP INDEX %s", qi);
		ok = save(t, phase, schema, table, "index", name, PQgetvalue(ix, r, 1), true, run) && pg_exec(t, drop, NULL);
		sb_printf(&idx, "%s%s", idx.len ? ", " : "", name);
		ni++;
	}
	PQclear(ix);
	if (ok && nf + ni)
		sb_printf(msgs, "bulk: %s.%s is empty: set aside for the load of phase %d: %s%s%s%s%s\n", schema, table,
			  phase, nf == 0 ? "" : nf == 1 ? "foreign key " : "foreign keys ", sb_str(&fks),
			  nf && ni ? "; " : "", ni == 0 ? "" : ni == 1 ? "index " : "indexes ", sb_str(&idx));
	else if (ok)
		sb_printf(msgs, "bulk: %s.%s is empty, but has no foreign key or index to set aside\n", schema, table);
	sb_free(&fks);
	sb_free(&idx);
	*n_fk += nf;
	*n_idx += ni;
	return ok;
}

bool bulk_set_aside(PgConn *t, const Config *cfg, const Phase *ph, int64_t run_id)
{
	char run[32];
	snprintf(run, sizeof run, "%" PRId64, run_id);
	StrBuf msgs = {0};
	int n_fk = 0, n_idx = 0;
	bool ok = pg_exec(t, "BEGIN", NULL);
	/* Every table of the phase in one transaction: a crash leaves all of it set aside, with
	 * its definitions saved, or none of it. */
	for (size_t e = 0; ok && e < ph->n_entities; e++) {
		const Mapping *m = &cfg->mappings[ph->entities[e]];
		bool seen = false;
		for (size_t k = 0; k < e && !seen; k++)
			seen = writes_table(&cfg->mappings[ph->entities[k]], m->target_schema, m->target_table);
		if (!seen)
			ok = set_aside_table(t, cfg, ph->number, m->target_schema, m->target_table, run, &msgs, &n_fk, &n_idx);
	}
	if (ok && pg_exec(t, "COMMIT", NULL)) {
		for (const char *l = sb_str(&msgs), *nl; *l; l = nl + 1) {
			nl = strchr(l, '\n');
			log_info("%.*s", (int)(nl - l), l);
		}
		if (n_fk + n_idx)
			log_info("bulk: phase %d: %d foreign key%s and %d index%s set aside (saved in "
				 "edumig.bulk_set_aside); they are rebuilt once every entity of the phase is in",
				 ph->number, n_fk, n_fk == 1 ? "" : "s", n_idx, n_idx == 1 ? "" : "es");
		sb_free(&msgs);
		testhook_point("bulk_after_set_aside");
		return true;
	}
	sb_free(&msgs);
	pg_exec(t, "ROLLBACK", NULL);
	if (!pg_ok(t))
		return false;
	log_warn("bulk: phase %d: could not set aside foreign keys and indexes (see above); nothing was set aside "
		 "and the phase loads with every constraint and index live",
		 ph->number);
	return true;
}

/*
 * The phases from..to as query parameters in @f and @l. 1 when edumig.bulk_set_aside exists,
 * 0 when it does not (an older control schema: nothing was ever set aside), -1 on error.
 */
static int phase_range(PgConn *t, int from, int to, char f[16], char l[16])
{
	bool exists = false;
	if (!control_table_exists(t, &exists))
		return -1;
	snprintf(f, 16, "%d", from);
	snprintf(l, 16, "%d", to);
	return exists ? 1 : 0;
}

long long bulk_pending(PgConn *t, int from, int to)
{
	char f[16], l[16];
	int range = phase_range(t, from, to, f, l);
	if (range <= 0)
		return range;
	const char *p[] = {f, l};
	AUTOFREE char *v = NULL;
	if (!pg_query_value(t, "SELECT count(*) FROM edumig.bulk_set_aside WHERE phase BETWEEN $1::int AND $2::int", 2, p,
			    &v))
		return -1;
	return strtoll(v, NULL, 10);
}

/* A saved definition, as read back for its rebuild. */
typedef struct Saved {
	const char *schema, *table, *kind, *name, *def;
	bool validated, not_valid;
} Saved;

/* Runs @sql (the rebuild step) and then @after (with the saved row's key as $1..$4) in one
 * transaction. false with @err filled on failure; the transaction is then rolled back. */
static bool step(PgConn *t, const Saved *s, const char *sql, const char *after, PgError *err)
{
	const char *key[] = {s->schema, s->table, s->kind, s->name};
	if (!pg_exec(t, "BEGIN", err))
		return false;
	bool ok = pg_exec(t, sql, err) && pg_exec_params(t, after, 4, key, err);
	testhook_point("bulk_rebuild_before_commit");
	if (ok && pg_exec(t, "COMMIT", err))
		return true;
	pg_exec(t, "ROLLBACK", NULL);
	return false;
}

#define DELETE_SAVED \
	"DELETE FROM edumig.bulk_set_aside WHERE schema_name = $1 AND table_name = $2 AND kind = $3 AND name = $4"

/* 1 rebuilt, 0 failed (logged, error recorded), -1 connection lost. */
static int rebuild_one(PgConn *t, const Saved *s)
{
	AUTOFREE char *qt = pg_qualified(t, s->schema, s->table);
	AUTOFREE char *qn = pg_ident(t, s->name);
	PgError err = {0};
	bool is_fk = strcmp(s->kind, "foreign_key") == 0;
	bool ok;
	double t0 = now_s();
	if (!is_fk) {
		/* The definition is the server's own CREATE INDEX text, identifiers quoted. */
		ok = step(t, s, s->def, DELETE_SAVED, &err);
	} else {
		ok = true;
		if (!s->not_valid) {
			/* A constraint that was NOT VALID already says so in its definition. */
			AUTOFREE char *add = xasprintf("ALTER TABLE %s ADD CONSTRAINT %s %s%s", qt, qn, s->def,
						       s->validated ? " NOT VALID" : "");
			ok = step(t, s, add,
				  s->validated ? "UPDATE edumig.bulk_set_aside SET state = 'not_valid' WHERE schema_name = $1 "
						 "AND table_name = $2 AND kind = $3 AND name = $4"
					       : DELETE_SAVED,
				  &err);
		}
		if (ok && s->validated) {
			AUTOFREE char *val = xasprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", qt, qn);
			ok = step(t, s, val, DELETE_SAVED, &err);
		}
	}
	if (ok) {
		log_info("bulk: %s.%s: rebuilt %s %s (%.1f s)", s->schema, s->table, is_fk ? "foreign key" : "index",
			 s->name, now_s() - t0);
		return 1;
	}
	if (!pg_ok(t)) {
		log_error("bulk: the target connection was lost while rebuilding %s %s of %s.%s; it stays in "
			  "edumig.bulk_set_aside: run the phase again",
			  is_fk ? "foreign key" : "index", s->name, s->schema, s->table);
		pg_error_clear(&err);
		return -1;
	}
	AUTOFREE char *msg = xasprintf("[%s] %s%s%s", err.sqlstate, err.message ? err.message : "",
				       err.detail ? ": " : "", err.detail ? err.detail : "");
	log_error("bulk: %s %s of %s.%s could not be rebuilt: %s; its definition stays in edumig.bulk_set_aside%s",
		  is_fk ? "foreign key" : "index", s->name, s->schema, s->table, msg,
		  is_fk ? " (fix the rows at fault, then run the phase again)" : "");
	pg_error_clear(&err);
	const char *p[] = {s->schema, s->table, s->kind, s->name, msg};
	pg_exec_params(t,
		       "UPDATE edumig.bulk_set_aside SET last_error = $5 WHERE schema_name = $1 AND table_name = $2 "
		       "AND kind = $3 AND name = $4",
		       5, p, NULL);
	return 0;
}

int bulk_rebuild(PgConn *t, int from, int to)
{
	char f[16], l[16];
	int range = phase_range(t, from, to, f, l);
	if (range <= 0)
		return range;
	const char *p[] = {f, l};
	/* Indexes first: cheap, and nothing depends on the order. */
	PGresult *r = pg_query(t,
			       "SELECT schema_name, table_name, kind, name, definition, validated::text, state "
			       "FROM edumig.bulk_set_aside WHERE phase BETWEEN $1::int AND $2::int "
			       "ORDER BY phase, kind = 'foreign_key', schema_name, table_name, name",
			       2, p);
	if (!r)
		return -1;
	int n = PQntuples(r), failed = 0, rebuilt = 0;
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		Saved s = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
			   PQgetvalue(r, i, 4), strcmp(PQgetvalue(r, i, 5), "true") == 0,
			   strcmp(PQgetvalue(r, i, 6), "not_valid") == 0};
		int res = rebuild_one(t, &s);
		if (res < 0) {
			PQclear(r);
			return -1;
		}
		if (res)
			rebuilt++;
		else
			failed++;
	}
	PQclear(r);
	if (n && !failed)
		log_info("bulk: %d foreign key%s and index%s rebuilt in %.1f s", rebuilt, rebuilt == 1 ? "" : "s",
			 rebuilt == 1 ? "" : "es", now_s() - t0);
	else if (failed)
		log_error("bulk: %d of %d definitions could not be rebuilt and stay in edumig.bulk_set_aside; "
			  "verify fails until they are rebuilt",
			  failed, n);
	return failed;
}

long long bulk_print_pending(PgConn *t, const char *indent)
{
	bool exists = false;
	if (!control_table_exists(t, &exists))
		return -1;
	if (!exists)
		return 0;
	PGresult *r = pg_query(t,
			       "SELECT kind, name, format('%I.%I', schema_name, table_name), phase, run_id, state, "
			       "coalesce(last_error, '') FROM edumig.bulk_set_aside ORDER BY phase, schema_name, table_name, "
			       "kind, name",
			       0, NULL);
	if (!r)
		return -1;
	int n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		const char *err = PQgetvalue(r, i, 6);
		printf("%s%s %s of %s (phase %s, set aside by run %s; %s)%s%s\n", indent,
		       strcmp(PQgetvalue(r, i, 0), "index") == 0 ? "index" : "foreign key", PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
		       strcmp(PQgetvalue(r, i, 5), "not_valid") == 0 ? "added back NOT VALID, not validated" : "absent",
		       *err ? ": last rebuild failed: " : "", err);
	}
	PQclear(r);
	return n;
}
