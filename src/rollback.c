/*
 * src/rollback.c — remove what phase N and every later phase wrote.
 *
 * Entities are undone in reverse run order, referencing tables first, one transaction each:
 * their target rows (by the id map), the placeholder parents their rows created, their id-map
 * rows, skip rows, deferred references and checkpoints. A crash midway leaves whole entities
 * done or not, and running the command again finishes the job. Before touching anything, every foreign
 * key pointing at a row to be removed is checked: rows edumig did not write that refer to
 * them stop the rollback (named), unless --force.
 */
#include "edumig/rollback.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/control.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/strbuf.h"

static bool same_table(const char *nsp, const char *rel, const Mapping *m)
{
	return strcmp(nsp, m->target_schema) == 0 && strcmp(rel, m->target_table) == 0;
}

/* Two mappings writing one table (assessments and exam_assessments). */
static bool same_target(const Mapping *a, const Mapping *b)
{
	return same_table(a->target_schema, a->target_table, b);
}

/* True when @a's target table has a foreign key to @b's (another table). */
static bool refers_to(const PGresult *fks, const Mapping *a, const Mapping *b)
{
	if (same_target(a, b))
		return false;
	for (int r = 0; r < PQntuples(fks); r++)
		if (same_table(PQgetvalue(fks, r, 0), PQgetvalue(fks, r, 1), a) &&
		    same_table(PQgetvalue(fks, r, 2), PQgetvalue(fks, r, 3), b))
			return true;
	return false;
}

/*
 * Entities of phases >= @phase as indexes, in the order they are undone; returns the count,
 * or -1 on error. Reverse run order, except that an entity whose table has a foreign key to
 * another undone entity's table goes before it: each row removed from the referenced table
 * has the referencing column searched, and that column may have no index (grades'
 * submission_id: 63k submissions times a scan of 57k grades, hours at scale 1.0).
 */
static long undo_order(PgConn *t, const Config *cfg, int phase, int *out)
{
	size_t n = 0;
	int *base = xcalloc(cfg->n_mappings + 1, sizeof *base);
	for (size_t p = cfg->n_phases; p-- > 0;) {
		const Phase *ph = &cfg->phases[p];
		if (ph->number < phase)
			continue;
		for (size_t e = ph->n_entities; e-- > 0;)
			base[n++] = ph->entities[e];
	}
	PGresult *fks = pg_query(t,
				 "SELECT sn.nspname, sr.relname, dn.nspname, dr.relname FROM pg_constraint c "
				 "JOIN pg_class sr ON sr.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = sr.relnamespace "
				 "JOIN pg_class dr ON dr.oid = c.confrelid JOIN pg_namespace dn ON dn.oid = dr.relnamespace "
				 "WHERE c.contype = 'f'",
				 0, NULL);
	if (!fks) {
		free(base);
		return -1;
	}
	bool *taken = xcalloc(n + 1, sizeof *taken);
	for (size_t k = 0; k < n; k++) {
		/* The first entity left that no other entity left refers to (a cycle: the first). */
		size_t pick = n;
		for (size_t i = 0; i < n && pick == n; i++) {
			if (taken[i])
				continue;
			bool referred = false;
			for (size_t j = 0; j < n && !referred; j++)
				referred = !taken[j] && j != i &&
					   refers_to(fks, &cfg->mappings[base[j]], &cfg->mappings[base[i]]);
			if (!referred)
				pick = i;
		}
		for (size_t i = 0; i < n && pick == n; i++)
			if (!taken[i])
				pick = i;
		taken[pick] = true;
		out[k] = base[pick];
	}
	PQclear(fks);
	free(taken);
	free(base);
	return (long)n;
}

/* The text[] literal of the undone entities, for "entity = ANY($1)". */
static char *entity_array(const Config *cfg, const int *ents, size_t n)
{
	StrBuf b = {0};
	sb_putc(&b, '{');
	for (size_t i = 0; i < n; i++)
		sb_array_item(&b, cfg->mappings[ents[i]].entity);
	sb_putc(&b, '}');
	return sb_steal(&b);
}

/*
 * Rows that edumig did not write (or wrote for an entity that stays) and that refer to a
 * row about to go. Returns how many were found (each group printed), -1 on error.
 */
static long long foreign_referrers(PgConn *t, const Config *cfg, const char *ents, int phase)
{
	long long total = 0;
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		const Mapping *m = &cfg->mappings[i];
		AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
		const char *p[] = {qt};
		PGresult *fk = pg_query(t,
					"SELECT c.conname, format('%I.%I', n.nspname, r.relname), a.attname, fa.attname "
					"FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
					"JOIN pg_namespace n ON n.oid = r.relnamespace "
					"JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
					"JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1] "
					"WHERE c.contype = 'f' AND c.confrelid = $1::regclass AND cardinality(c.conkey) = 1 "
					"ORDER BY c.conname",
					1, p);
		if (!fk)
			return -1;
		for (int r = 0; r < PQntuples(fk); r++) {
			AUTOFREE char *col = pg_ident(t, PQgetvalue(fk, r, 2));
			AUTOFREE char *fcol = pg_ident(t, PQgetvalue(fk, r, 3));
			/* The referrer's single-column primary key tells whether edumig wrote it. */
			const char *pk[] = {PQgetvalue(fk, r, 1)};
			PGresult *pr = pg_query(t,
						"SELECT a.attname, a.atttypid = 'uuid'::regtype FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
						"AND a.attnum = i.indkey[0] WHERE i.indrelid = $1::regclass AND i.indisprimary "
						"AND i.indnatts = 1",
						1, pk);
			if (!pr) {
				PQclear(fk);
				return -1;
			}
			AUTOFREE char *mine = NULL;
			if (PQntuples(pr) == 1) {
				AUTOFREE char *qpk = pg_ident(t, PQgetvalue(pr, 0, 0));
				/* A uuid key is compared as such, so the id map's new_id index serves. */
				bool uuid = strcmp(PQgetvalue(pr, 0, 1), "t") == 0;
				mine = xasprintf("AND NOT EXISTS (SELECT 1 FROM edumig.id_map w WHERE w.entity = ANY($2::text[]) "
						 "AND w.kind = 'row' AND w.new_id%s = x.%s%s)", uuid ? "" : "::text", qpk,
						 uuid ? "" : "::text");
			}
			PQclear(pr);
			/* Doomed: a row of this mapping's entity if it is undone, or a placeholder an
			 * undone phase created. A referrer is fine only when it is doomed itself. */
			AUTOFREE char *sql = xasprintf(
				"SELECT count(*), min(x::text) FROM %s x JOIN %s d ON d.%s = x.%s "
				"WHERE EXISTS (SELECT 1 FROM edumig.id_map g WHERE g.new_id = d.%s AND g.entity = $1 "
				"AND ((g.kind = 'row' AND g.entity = ANY($2::text[])) OR (g.kind = 'stub' AND g.phase >= $3::int))) %s",
				PQgetvalue(fk, r, 1), qt, fcol, col, fcol, mine ? mine : "");
			char ph[16];
			snprintf(ph, sizeof ph, "%d", phase);
			const char *pp[] = {m->entity, ents, ph};
			PGresult *c = pg_query(t, sql, 3, pp);
			if (!c) {
				PQclear(fk);
				return -1;
			}
			long long n = strtoll(PQgetvalue(c, 0, 0), NULL, 10);
			if (n > 0) {
				log_error("rollback: %lld row%s of %s (not written by the phases being undone) refer to %s rows "
					  "it would remove, through %s; e.g. %.200s",
					  n, n == 1 ? "" : "s", PQgetvalue(fk, r, 1), m->entity, PQgetvalue(fk, r, 0),
					  PQgetvalue(c, 0, 1));
				total += n;
			}
			PQclear(c);
		}
		PQclear(fk);
	}
	return total;
}

static bool exec1(PgConn *t, const char *sql, int n, const char *const *p)
{
	return pg_exec_params(t, sql, n, p, NULL);
}

/* Undoes one entity in one transaction. */
static bool undo_entity(PgConn *t, const Mapping *m, int phase, int64_t *rows)
{
	AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
	AUTOFREE char *qid = pg_ident(t, m->id_column);
	char ph[16];
	snprintf(ph, sizeof ph, "%d", phase);
	const char *pe[] = {m->entity};
	if (!pg_exec(t, "BEGIN", NULL))
		return false;
	AUTOFREE char *del = xasprintf(
		"WITH gone AS (DELETE FROM %s x USING edumig.id_map g WHERE g.entity = $1 AND g.kind = 'row' "
		"AND x.%s = g.new_id RETURNING 1) SELECT count(*) FROM gone", qt, qid);
	AUTOFREE char *n = NULL;
	bool ok = pg_query_value(t, del, 1, pe, &n);
	if (ok)
		*rows = strtoll(n, NULL, 10);
	ok = ok && exec1(t, "DELETE FROM edumig.id_map WHERE entity = $1 AND kind <> 'stub'", 1, pe) &&
	     exec1(t, "DELETE FROM edumig.skips WHERE entity = $1", 1, pe) &&
	     exec1(t, "DELETE FROM edumig.deferred_refs WHERE entity = $1", 1, pe) &&
	     exec1(t, "DELETE FROM edumig.source_gone WHERE entity = $1", 1, pe) &&
	     exec1(t, "DELETE FROM edumig.checkpoints WHERE entity = $1", 1, pe);
	/* Placeholders that undone phases created in this entity's table (this entity may
	 * itself stay: they go with the phase whose rows needed them). */
	AUTOFREE char *dstub = xasprintf(
		"DELETE FROM %s x USING edumig.id_map g WHERE g.entity = $1 AND g.kind = 'stub' "
		"AND g.phase >= $2::int AND x.%s = g.new_id", qt, qid);
	const char *ps[] = {m->entity, ph};
	ok = ok && exec1(t, dstub, 2, ps) &&
	     exec1(t, "DELETE FROM edumig.id_map WHERE entity = $1 AND kind = 'stub' AND phase >= $2::int", 2, ps);
	if (!ok || !pg_exec(t, "COMMIT", NULL)) {
		pg_exec(t, "ROLLBACK", NULL);
		log_error("rollback of %s failed (see above); nothing of %s was removed", m->entity, m->entity);
		return false;
	}
	return true;
}

/*
 * Right after a load the planner has no statistics for the tables edumig filled (autovacuum
 * comes later), and the referrer checks then run as nested loops over whole tables: more than
 * 10 minutes for phase 5 at scale 1.0. Fresh statistics take well under a second.
 */
static bool analyze_targets(PgConn *t, const Config *cfg)
{
	if (!pg_exec(t, "ANALYZE edumig.id_map", NULL))
		return false;
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		const Mapping *m = &cfg->mappings[i];
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = same_target(&cfg->mappings[j], m);
		if (seen)
			continue;
		AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
		AUTOFREE char *sql = xasprintf("ANALYZE %s", qt);
		if (!pg_exec(t, sql, NULL))
			return false;
	}
	return true;
}

int rollback_run(PgConn *t, const Config *cfg, int phase, bool force)
{
	int *ents = xcalloc(cfg->n_mappings + 1, sizeof *ents);
	long order = undo_order(t, cfg, phase, ents);
	if (order < 0) {
		free(ents);
		return 3;
	}
	size_t n = (size_t)order;
	AUTOFREE char *arr = entity_array(cfg, ents, n);
	int rc = 0;
	long long refs = analyze_targets(t, cfg) ? foreign_referrers(t, cfg, arr, phase) : -1;
	if (refs < 0) {
		rc = 3;
		goto out;
	}
	if (refs > 0 && !force) {
		log_error("rollback refused: %lld row%s that phase %d and later did not write refer%s to rows it would "
			  "remove (listed above); remove those references first, or use --force to let the target's "
			  "foreign keys decide",
			  refs, refs == 1 ? "" : "s", phase, refs == 1 ? "s" : "");
		rc = 1;
		goto out;
	}
	/* Every mapping gets a pass for the placeholders, the undone ones for their rows too. */
	for (size_t i = 0; i < n; i++) {
		const Mapping *m = &cfg->mappings[ents[i]];
		int64_t rows = 0;
		if (!undo_entity(t, m, phase, &rows)) {
			rc = 3;
			goto out;
		}
		log_info("rollback: %s: %" PRId64 " rows removed", m->entity, rows);
		/* The dead rows go at once: the foreign key checks of the entities undone next
		 * may scan this table (an unindexed referencing column), empty by now. */
		AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
		AUTOFREE char *vac = xasprintf("VACUUM %s", qt);
		if (rows > 0 && !pg_exec(t, vac, NULL)) {
			rc = 3;
			goto out;
		}
	}
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		const Mapping *m = &cfg->mappings[i];
		if (m->phase >= phase)
			continue;
		AUTOFREE char *qt = pg_qualified(t, m->target_schema, m->target_table);
		AUTOFREE char *qid = pg_ident(t, m->id_column);
		char ph[16];
		snprintf(ph, sizeof ph, "%d", phase);
		AUTOFREE char *dstub = xasprintf(
			"WITH gone AS (DELETE FROM %s x USING edumig.id_map g WHERE g.entity = $1 AND g.kind = 'stub' "
			"AND g.phase >= $2::int AND x.%s = g.new_id RETURNING 1) SELECT count(*) FROM gone", qt, qid);
		const char *ps[] = {m->entity, ph};
		AUTOFREE char *cnt = NULL;
		if (!pg_exec(t, "BEGIN", NULL) || !pg_query_value(t, dstub, 2, ps, &cnt) ||
		    !exec1(t, "DELETE FROM edumig.id_map WHERE entity = $1 AND kind = 'stub' AND phase >= $2::int", 2, ps) ||
		    !pg_exec(t, "COMMIT", NULL)) {
			pg_exec(t, "ROLLBACK", NULL);
			rc = 3;
			goto out;
		}
		if (strcmp(cnt, "0") != 0)
			log_info("rollback: %s: %s placeholder rows removed", m->entity, cnt);
	}
out:
	free(ents);
	return rc;
}
