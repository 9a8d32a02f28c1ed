/*
 * src/delta.c — keys gone from the source, and --apply-deletes (see delta.h).
 *
 * A delete is never cascaded: ON DELETE CASCADE in the target would remove rows edumig
 * accounts as migrated without a word, so every referring foreign key is asked first and a
 * referred-to row stays, with the reason in edumig.source_gone.outcome.
 */
#include "edumig/delta.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/log.h"
#include "edumig/mem.h"

uint64_t delta_row_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

uint64_t delta_key_digest(const char *key_text)
{
	return delta_row_hash(key_text, strlen(key_text));
}

bool delta_stored_gone(PgConn *t, const Mapping *m, uint64_t *digest, int64_t *n)
{
	*digest = 0;
	*n = 0;
	const char *p[] = {m->entity};
	PGresult *r = pg_query(t, "SELECT old_key FROM edumig.source_gone WHERE entity = $1 AND applied_by_run IS NULL", 1, p);
	if (!r)
		return false;
	for (int i = 0; i < PQntuples(r); i++)
		*digest += delta_key_digest(PQgetvalue(r, i, 0));
	*n = PQntuples(r);
	PQclear(r);
	return true;
}

static bool recount_warned(PgConn *t, const Mapping *m, Checkpoint *cp)
{
	const char *p[] = {m->entity};
	AUTOFREE char *w = NULL;
	if (!pg_query_value(t,
			    "SELECT count(DISTINCT old_key) FROM edumig.skips WHERE entity = $1 AND severity = 'warning' "
			    "AND resolved_at IS NULL",
			    1, p, &w))
		return false;
	cp->warned = strtoll(w, NULL, 10);
	return true;
}

bool delta_record(PgConn *t, const Mapping *m, int64_t run_id, const StrBuf *gone, Checkpoint *cp, bool dry_run)
{
	char run[32], ph[16];
	snprintf(run, sizeof run, "%lld", (long long)run_id);
	snprintf(ph, sizeof ph, "%d", m->phase);
	const char *p1[] = {m->entity};
	const char *p3[] = {m->entity, ph, run};
	PgError err = {0};
	if (!pg_exec(t, dry_run ? "SAVEPOINT edumig_batch" : "BEGIN", NULL))
		return false;
	bool ok = pg_exec_params(t, "DELETE FROM edumig.source_gone WHERE entity = $1 AND applied_by_run IS NULL", 1, p1,
				 &err);
	if (ok && gone->len) {
		ok = pg_exec(t,
			     "CREATE TEMP TABLE IF NOT EXISTS edumig_gone_stage (old_key text, kind text, new_id uuid) "
			     "ON COMMIT DELETE ROWS",
			     &err) &&
		     pg_copy_in_start(t, "COPY pg_temp.edumig_gone_stage (old_key, kind, new_id) FROM STDIN", &err);
		if (ok) {
			bool put = pg_copy_in_put(t, gone->data, gone->len);
			ok = pg_copy_in_end(t, &err) && put;
		}
		/* A key deleted, migrated again when it came back, and gone once more. */
		ok = ok && pg_exec_params(t,
					  "INSERT INTO edumig.source_gone (entity, old_key, kind, new_id, phase, detected_by_run) "
					  "SELECT $1, old_key, kind, new_id, $2::int, $3::bigint FROM pg_temp.edumig_gone_stage "
					  "ON CONFLICT (entity, old_key) DO UPDATE SET kind = EXCLUDED.kind, new_id = EXCLUDED.new_id, "
					  "phase = EXCLUDED.phase, detected_by_run = EXCLUDED.detected_by_run, detected_at = now(), "
					  "applied_by_run = NULL, applied_at = NULL, outcome = NULL",
					  3, p3, &err);
	}
	if (!ok && err.message)
		log_error("[TARGET] [%s] %s: recording rows gone from the source: %s", err.sqlstate, m->entity, err.message);
	pg_error_clear(&err);
	ok = ok && recount_warned(t, m, cp) && checkpoint_store(t, m, 0, cp);
	if (!ok || !pg_exec(t, dry_run ? "RELEASE SAVEPOINT edumig_batch" : "COMMIT", NULL)) {
		if (dry_run) {
			pg_exec(t, "ROLLBACK TO SAVEPOINT edumig_batch", NULL);
			pg_exec(t, "RELEASE SAVEPOINT edumig_batch", NULL);
		} else {
			pg_exec(t, "ROLLBACK", NULL);
		}
		return false;
	}
	return true;
}

/* The single-column foreign keys that point at @m's target table: (SQL probing one id, name). */
typedef struct Referrer {
	char *probe;              /* SELECT 1 FROM child WHERE col = $1::uuid LIMIT 1 */
	char *name;               /* child.column (constraint) */
} Referrer;

static Referrer *referrers(PgConn *t, const Mapping *m, size_t *n)
{
	*n = 0;
	AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
	const char *p[] = {qt};
	PGresult *r = pg_query(t,
			       "SELECT n.nspname, c.relname, a.attname, con.conname FROM pg_constraint con "
			       "JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
			       "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] "
			       "WHERE con.contype = 'f' AND con.confrelid = $1::regclass AND cardinality(con.conkey) = 1 "
			       "ORDER BY 1, 2, 4",
			       1, p);
	if (!r)
		return NULL;
	Referrer *out = xcalloc((size_t)PQntuples(r) + 1, sizeof *out);
	for (int i = 0; i < PQntuples(r); i++) {
		AUTOFREE char *child = pg_qualified(t, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
		AUTOFREE char *col = pg_ident(t, PQgetvalue(r, i, 2));
		out[i].probe = xasprintf("SELECT 1 FROM %s WHERE %s = $1::uuid LIMIT 1", child, col);
		out[i].name = xasprintf("%s.%s (constraint %s)", PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
					PQgetvalue(r, i, 3));
	}
	*n = (size_t)PQntuples(r);
	PQclear(r);
	return out;
}

static void referrers_free(Referrer *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++) {
		free(r[i].probe);
		free(r[i].name);
	}
	free(r);
}

/* Why the row must stay ("" when nothing refers to it), or NULL on a server error. @merged: the
 * least key of a row merged onto it that is still in the source ("" for none). */
static char *blocker(PgConn *t, const Mapping *m, const Referrer *refs, size_t n, const char *uuid, const char *merged)
{
	for (size_t i = 0; i < n; i++) {
		const char *p[] = {uuid};
		PGresult *r = pg_query(t, refs[i].probe, 1, p);
		if (!r)
			return NULL;
		bool used = PQntuples(r) > 0;
		PQclear(r);
		if (used)
			return xasprintf("blocked: %s still refers to it", refs[i].name);
	}
	if (*merged)
		return xasprintf("blocked: %s %s and maybe others were merged onto it and are still in the source",
				 m->entity, merged);
	return xstrdup("");
}

/* Applies one entity's pending deletes in one transaction; returns the number blocked or -1. */
static int64_t apply_entity(PgConn *t, const Mapping *m, int64_t run_id)
{
	char run[32];
	snprintf(run, sizeof run, "%lld", (long long)run_id);
	const char *pe[] = {m->entity};
	/* Merged rows and skipped rows first: a survivor is blocked by its merged rows that stay
	 * in the source (those gone too are deleted before it). They are found for all gone rows
	 * in one pass: a query per row scanned the entity's whole id map each time (35 s for
	 * 2,000 gone grades at scale 1.0; id_map has no index on merged_into). */
	PGresult *g = pg_query(t,
			       "SELECT g.old_key, g.kind, g.new_id, coalesce(mm.merged, '') FROM edumig.source_gone g "
			       "LEFT JOIN (SELECT m.merged_into, min(m.old_key) AS merged FROM edumig.id_map m "
			       "WHERE m.entity = $1 AND m.kind = 'merged' AND NOT EXISTS (SELECT 1 FROM edumig.source_gone x "
			       "WHERE x.entity = m.entity AND x.old_key = m.old_key AND x.applied_by_run IS NULL) "
			       "GROUP BY m.merged_into) mm ON mm.merged_into = g.old_key "
			       "WHERE g.entity = $1 AND g.applied_by_run IS NULL "
			       "ORDER BY g.kind = 'row', length(g.old_key), g.old_key",
			       1, pe);
	if (!g)
		return -1;
	if (PQntuples(g) == 0) {
		PQclear(g);
		return 0;
	}
	size_t n_refs = 0;
	Referrer *refs = referrers(t, m, &n_refs);
	AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
	AUTOFREE char *qid = pg_ident(t, m->id_column);
	AUTOFREE char *del = xasprintf("DELETE FROM %s WHERE %s = $1::uuid", qt, qid);
	Checkpoint cp = {0};
	int64_t blocked = 0, deleted = 0;
	bool ok = refs && pg_exec(t, "BEGIN", NULL) && checkpoint_load(t, m, 0, &cp);
	const char *first_block = NULL;
	for (int i = 0; ok && i < PQntuples(g); i++) {
		const char *key = PQgetvalue(g, i, 0), *kind = PQgetvalue(g, i, 1), *uuid = PQgetvalue(g, i, 2);
		AUTOFREE char *why =
			strcmp(kind, "row") == 0 ? blocker(t, m, refs, n_refs, uuid, PQgetvalue(g, i, 3)) : xstrdup("");
		if (!why) {
			ok = false;
			break;
		}
		const char *pk[] = {m->entity, key, run, *why ? why : "deleted"};
		if (*why) {
			blocked++;
			if (!first_block)
				first_block = PQgetvalue(g, i, 0);
			const char *pb[] = {m->entity, key, why};
			ok = pg_exec_params(t, "UPDATE edumig.source_gone SET outcome = $3 WHERE entity = $1 AND old_key = $2",
					    3, pb, NULL);
			continue;
		}
		if (strcmp(kind, "row") == 0) {
			const char *pu[] = {uuid};
			ok = pg_exec_params(t, del, 1, pu, NULL);
		}
		ok = ok &&
		     pg_exec_params(t, "DELETE FROM edumig.id_map WHERE entity = $1 AND old_key = $2", 2, pk, NULL) &&
		     pg_exec_params(t,
				    "UPDATE edumig.skips SET resolved_at = now(), resolved_by_run = $3::bigint, "
				    "resolution = 'source_deleted' WHERE entity = $1 AND old_key = $2 AND resolved_at IS NULL",
				    3, pk, NULL) &&
		     pg_exec_params(t,
				    "UPDATE edumig.source_gone SET applied_by_run = $3::bigint, applied_at = now(), outcome = $4 "
				    "WHERE entity = $1 AND old_key = $2",
				    4, pk, NULL);
		if (strcmp(kind, "skipped") == 0) {
			cp.skipped--;
		} else {
			cp.migrated--;
			if (strcmp(kind, "merged") == 0)
				cp.merged--;
		}
		cp.gone--;
		deleted++;
	}
	ok = ok && recount_warned(t, m, &cp) && checkpoint_store(t, m, 0, &cp) && pg_exec(t, "COMMIT", NULL);
	if (!ok) {
		pg_exec(t, "ROLLBACK", NULL);
		blocked = -1;
	} else {
		log_info("%s: %" PRId64 " row%s gone from the source deleted from the target", m->entity, deleted,
			 deleted == 1 ? "" : "s");
		if (blocked)
			log_warn("%s: %" PRId64 " gone row%s kept: target rows still refer to them (first: key %s; "
				 "edumig.source_gone.outcome says why for each)",
				 m->entity, blocked, blocked == 1 ? "" : "s", first_block);
	}
	checkpoint_free(&cp);
	referrers_free(refs, n_refs);
	PQclear(g);
	return blocked;
}

int64_t delta_apply_deletes(PgConn *t, const Config *cfg, int phase_from, int phase_to, int64_t run_id)
{
	/* The delta pass has just filled source_gone: planned on its old statistics (no rows),
	 * the survivors' check below ran as a nested loop, 20 s for 2,000 gone grades. */
	if (!pg_exec(t, "ANALYZE edumig.source_gone", NULL))
		return -1;
	int64_t blocked = 0;
	for (size_t p = cfg->n_phases; p-- > 0;) {
		const Phase *ph = &cfg->phases[p];
		if (ph->number < phase_from || ph->number > phase_to)
			continue;
		for (size_t e = ph->n_entities; e-- > 0;) {
			int64_t b = apply_entity(t, &cfg->mappings[ph->entities[e]], run_id);
			if (b < 0)
				return -1;
			blocked += b;
		}
	}
	return blocked;
}
