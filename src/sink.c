/*
 * src/sink.c — the target side of a batch (see sink.h).
 *
 * Exactly-once rests on one rule: the batch's rows, its id-map rows, its skip rows and the
 * checkpoint that moves past it are committed by the same COMMIT. A crash before it loses
 * the batch entirely (resume re-reads it); after it, the checkpoint says it is done.
 */
#include "edumig/sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "edumig/copytext.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/rules.h"
#include "edumig/testhook.h"

/*
 * A batch's transaction. In a dry run the whole run is one transaction that is rolled back
 * at the end, so a batch is a savepoint inside it: later entities still see the rows a real
 * run would have committed.
 */
static bool tx_begin(Sink *s)
{
	return pg_exec(s->t, s->dry_run ? "SAVEPOINT edumig_batch" : "BEGIN", NULL);
}

static void tx_abort(Sink *s)
{
	if (s->dry_run) {
		pg_exec(s->t, "ROLLBACK TO SAVEPOINT edumig_batch", NULL);
		pg_exec(s->t, "RELEASE SAVEPOINT edumig_batch", NULL);
	} else {
		pg_exec(s->t, "ROLLBACK", NULL);
	}
}

static char *copy_sql(PgConn *t, const char *schema, const char *table, const char *const *cols, size_t n)
{
	StrBuf b = {0};
	AUTOFREE char *qt = pg_qualified(t, schema, table);
	sb_printf(&b, "COPY %s (", qt);
	for (size_t i = 0; i < n; i++) {
		AUTOFREE char *q = pg_ident(t, cols[i]);
		sb_printf(&b, "%s%s", i ? ", " : "", q);
	}
	sb_puts(&b, ") FROM STDIN");
	return sb_steal(&b);
}

void sink_init(Sink *s, PgConn *t, const Config *cfg, int entity, int part, int64_t run_id)
{
	memset(s, 0, sizeof *s);
	s->t = t;
	s->cfg = cfg;
	s->m = &cfg->mappings[entity];
	s->entity = entity;
	s->part = part;
	s->run_id = run_id;
	const char **cols = xcalloc(s->m->n_cols + 1, sizeof *cols);
	size_t n = rules_target_columns(s->m, cols, s->m->n_cols);
	s->copy_rows = copy_sql(t, s->m->target_schema, s->m->target_table, cols, n);
	free(cols);
}

void sink_init_update(Sink *s)
{
	s->update = true;
	const char **cols = xcalloc(s->m->n_cols + 1, sizeof *cols);
	size_t n = rules_target_columns(s->m, cols, s->m->n_cols);
	AUTOFREE char *qt = pg_qualified(s->t, s->m->target_schema, s->m->target_table);
	AUTOFREE char *stage_name = xasprintf("edumig_stage_%d", s->entity);
	AUTOFREE char *stage = pg_qualified(s->t, "pg_temp", stage_name);
	AUTOFREE char *qid = pg_ident(s->t, s->m->id_column);
	StrBuf list = {0}, set = {0};
	for (size_t i = 0; i < n; i++) {
		AUTOFREE char *q = pg_ident(s->t, cols[i]);
		sb_printf(&list, "%s%s", i ? ", " : "", q);
		if (strcmp(cols[i], s->m->id_column) != 0)
			sb_printf(&set, "%s%s = EXCLUDED.%s", set.len ? ", " : "", q, q);
	}
	/* The stage has exactly the mapped columns, with the target's types and no constraints. */
	s->stage_setup = xasprintf("CREATE TEMP TABLE IF NOT EXISTS %s ON COMMIT DELETE ROWS AS SELECT %s FROM %s "
				   "WITH NO DATA; CREATE TEMP TABLE IF NOT EXISTS edumig_idmap_stage ON COMMIT DELETE ROWS "
				   "AS SELECT entity, old_key, new_id, kind, merged_into, phase, run_id, row_hash "
				   "FROM edumig.id_map WITH NO DATA",
				   stage, sb_str(&list), qt);
	s->copy_stage = copy_sql(s->t, "pg_temp", stage_name, cols, n);
	s->upsert_rows = xasprintf("INSERT INTO %s (%s) SELECT %s FROM %s ON CONFLICT (%s) DO %s%s", qt, sb_str(&list),
				   sb_str(&list), stage, qid, set.len ? "UPDATE SET " : "NOTHING", sb_str(&set));
	s->clear_stage = xasprintf("DELETE FROM %s", stage);
	sb_free(&list);
	sb_free(&set);
	free(cols);
}

void sink_free(Sink *s)
{
	free(s->stage_setup);
	free(s->copy_stage);
	free(s->upsert_rows);
	free(s->clear_stage);
	sb_free(&s->resolved);
	free(s->copy_rows);
	sb_free(&s->buf);
	sb_free(&s->log);
}

static bool copy_data(Sink *s, const char *sql, const char *data, size_t len, PgError *err)
{
	if (!pg_copy_in_start(s->t, sql, err))
		return false;
	if (!pg_copy_in_put(s->t, data, len)) {
		pg_copy_in_end(s->t, err);
		return false;
	}
	return pg_copy_in_end(s->t, err);
}

/* The COPY statement for placeholders made by @r (the parent's id column, then the stub's). */
static char *stub_copy_sql(Sink *s, const ColumnRule *r)
{
	const Mapping *pm = &s->cfg->mappings[r->ref_entity_index];
	const char **cols = xcalloc(r->n_stub_cols + 1, sizeof *cols);
	cols[0] = pm->id_column;
	for (size_t c = 0; c < r->n_stub_cols; c++)
		cols[c + 1] = r->stub_cols[c].name;
	char *sql = copy_sql(s->t, pm->target_schema, pm->target_table, cols, r->n_stub_cols + 1);
	free(cols);
	return sql;
}

/* The server's DETAIL may quote a whole row ("Failing row contains (...)") or key values:
 * for mappings with sensitive columns only what names no value survives. */
static char *safe_detail(const Sink *s, const PgError *err)
{
	if (!err->detail)
		return xstrdup(err->message);
	if (s->m->sensitive_any && (strstr(err->detail, "Failing row contains") || strncmp(err->detail, "Key (", 5) == 0))
		return xasprintf("%s (details withheld: the mapping has sensitive columns)", err->message);
	return xasprintf("%s: %s", err->message, err->detail);
}

/* Tries one COPY in a savepoint; true when it went in. *fatal is set when the failure is
 * not the data's fault. */
static bool copy_in_savepoint(Sink *s, const char *sql, const char *data, size_t len, PgError *err, bool *fatal,
			      bool staged)
{
	*fatal = false;
	if (!pg_exec(s->t, "SAVEPOINT edumig_rows", NULL)) {
		*fatal = true;
		return false;
	}
	/* An update batch lands in the stage table first; the upsert is where the target's
	 * constraints speak, so it belongs to the same savepoint. */
	if (copy_data(s, sql, data, len, err) &&
	    (!staged || (pg_exec_params(s->t, s->upsert_rows, 0, NULL, err) &&
			 pg_exec_params(s->t, s->clear_stage, 0, NULL, err)))) {
		if (!pg_exec(s->t, "RELEASE SAVEPOINT edumig_rows", NULL))
			*fatal = true;
		return !*fatal;
	}
	if (!pg_exec(s->t, "ROLLBACK TO SAVEPOINT edumig_rows", NULL) ||
	    !pg_exec(s->t, "RELEASE SAVEPOINT edumig_rows", NULL) || !pg_error_is_data(err)) {
		if (!pg_error_is_data(err))
			log_error("[TARGET] [%s] %s: %s", err->sqlstate, s->m->entity, err->message);
		*fatal = true;
	}
	return false;
}

static Issue *reject_row(Sink *s, Batch *b, size_t row)
{
	BatchRow *br = &b->rows[row];
	br->rejected = true;
	char kt[KEY_TEXT_MAX];
	key_format(&br->key, kt);
	Issue *i = batch_add_issue(b, kt, (int)row);
	i->reason = skip_reason_code(REASON_TARGET_REJECTED);
	i->severity = SEV_ERROR;
	i->row_hash = br->hash;
	i->has_row_hash = true;
	if (br->owner[0]) {
		i->owner_entity = s->m->owner_entity;
		i->owner_key = xstrdup(br->owner);
	}
	return i;
}

/* Rows of the batch whose line carries the placeholder's UUID (they refer to it). */
static bool row_uses(const Batch *b, size_t row, const char *uuid_text)
{
	const BatchRow *r = &b->rows[row];
	return r->len && memmem(b->lines.data + r->off, r->len, uuid_text, 36) != NULL;
}

/*
 * Writes the placeholder parents the batch created. A group the target refuses is retried
 * one placeholder at a time; a refused placeholder takes the rows that needed it with it
 * (rejected with the reason), the others land. false = a failure that is not the data's.
 */
static bool write_stubs(Sink *s, Batch *b)
{
	for (size_t i = 0; i < b->n_stubs; i++) {
		const ColumnRule *r = b->stubs[i].rule;
		bool first = true;
		for (size_t k = 0; k < i; k++)
			if (b->stubs[k].rule == r)
				first = false;
		if (!first)
			continue;
		AUTOFREE char *sql = stub_copy_sql(s, r);
		sb_reset(&s->buf);
		for (size_t k = i; k < b->n_stubs; k++)
			if (b->stubs[k].rule == r)
				sb_puts(&s->buf, b->stubs[k].line);
		PgError err = {0};
		bool fatal;
		if (copy_in_savepoint(s, sql, s->buf.data, s->buf.len, &err, &fatal, false)) {
			pg_error_clear(&err);
			continue;
		}
		pg_error_clear(&err);
		if (fatal)
			return false;
		for (size_t k = i; k < b->n_stubs; k++) {
			Stub *st = &b->stubs[k];
			if (st->rule != r)
				continue;
			if (copy_in_savepoint(s, sql, st->line, strlen(st->line), &err, &fatal, false)) {
				pg_error_clear(&err);
				continue;
			}
			if (fatal) {
				pg_error_clear(&err);
				return false;
			}
			st->rejected = true;
			snprintf(st->sqlstate, sizeof st->sqlstate, "%s", err.sqlstate);
			st->error = err.detail ? xasprintf("%s: %s", err.message, err.detail) : xstrdup(err.message);
			if (err.constraint) {
				char *e = xasprintf("%s (constraint %s)", st->error, err.constraint);
				free(st->error);
				st->error = e;
			}
			pg_error_clear(&err);
			char ut[37], kt[KEY_TEXT_MAX];
			uuid_unparse_lower(st->uuid, ut);
			key_format(&st->key, kt);
			const Mapping *pm = &s->cfg->mappings[st->entity];
			for (size_t row = 0; row < b->n_rows; row++) {
				if (b->rows[row].rejected || !row_uses(b, row, ut))
					continue;
				Issue *is = reject_row(s, b, row);
				is->column = r->name;
				is->sqlstate = xstrdup(st->sqlstate);
				is->detail = xasprintf("the placeholder %s %s it needs was rejected: %s", pm->entity, kt, st->error);
				is->cause_entity = pm->entity;
				is->cause_key = xstrdup(kt);
			}
		}
	}
	return true;
}

/* Sends rows [lo, hi) in one COPY inside a savepoint; on a data error splits the range
 * until single rows are left, which are marked rejected. Rows rejected already (their
 * placeholder was refused) are left out. false = not the rows' fault. */
static bool copy_range(Sink *s, Batch *b, size_t lo, size_t hi)
{
	size_t start = b->rows[lo].off;
	size_t end = b->rows[hi - 1].off + b->rows[hi - 1].len;
	const char *data = b->lines.data + start;
	size_t len = end - start;
	StrBuf sel = {0};
	bool gaps = false;
	for (size_t i = lo; i < hi && !gaps; i++)
		gaps = b->rows[i].rejected;
	if (gaps) {
		for (size_t i = lo; i < hi; i++)
			if (!b->rows[i].rejected)
				sb_put(&sel, b->lines.data + b->rows[i].off, b->rows[i].len);
		data = sel.data;
		len = sel.len;
	}
	if (len == 0) {
		sb_free(&sel);
		return true;
	}
	PgError err = {0};
	bool fatal;
	bool in = copy_in_savepoint(s, s->update ? s->copy_stage : s->copy_rows, data, len, &err, &fatal, s->update);
	sb_free(&sel);
	if (in || fatal) {
		pg_error_clear(&err);
		return in;
	}
	size_t live = 0, only = lo;
	for (size_t i = lo; i < hi; i++)
		if (!b->rows[i].rejected && b->rows[i].len) {
			live++;
			only = i;
		}
	if (live == 1) {
		Issue *i = reject_row(s, b, only);
		if (err.column) {
			/* Point at the mapping's own column name when the server names one. */
			for (size_t c = 0; c < s->m->n_cols; c++)
				if (strcmp(s->m->cols[c].name, err.column) == 0)
					i->column = s->m->cols[c].name;
		}
		i->sqlstate = xstrdup(err.sqlstate);
		i->constraint_name = err.constraint ? xstrdup(err.constraint) : NULL;
		i->detail = safe_detail(s, &err);
		pg_error_clear(&err);
		return true;
	}
	pg_error_clear(&err);
	size_t mid = lo + (hi - lo) / 2;
	return copy_range(s, b, lo, mid) && copy_range(s, b, mid, hi);
}

/*
 * A placeholder made for this batch whose rows were all refused is removed again: nothing
 * would refer to it. Its parent set entry is turned back, so a later row recreates it.
 */
static bool drop_unused_stubs(Sink *s, Batch *b, IdSet **sets)
{
	for (size_t k = 0; k < b->n_stubs; k++) {
		Stub *st = &b->stubs[k];
		if (st->rejected)
			continue;
		char ut[37];
		uuid_unparse_lower(st->uuid, ut);
		bool used = false;
		for (size_t row = 0; row < b->n_rows && !used; row++)
			used = !b->rows[row].rejected && row_uses(b, row, ut);
		if (used)
			continue;
		const Mapping *pm = &s->cfg->mappings[st->entity];
		AUTOFREE char *qt = pg_qualified(s->t, pm->target_schema, pm->target_table);
		AUTOFREE char *qid = pg_ident(s->t, pm->id_column);
		AUTOFREE char *sql = xasprintf("DELETE FROM %s WHERE %s = $1::uuid", qt, qid);
		const char *p[] = {ut};
		if (!pg_exec_params(s->t, sql, 1, p, NULL))
			return false;
		st->dropped = true;
		if (sets && sets[st->entity])
			idset_put(sets[st->entity], &st->key, st->uuid, ID_SKIPPED);
	}
	return true;
}

static void idmap_line(StrBuf *o, const char *entity, const Key *k, const unsigned char uuid[16], IdKind kind,
		       const Key *merged_into, int phase, int64_t run_id, const uint64_t *hash)
{
	char kt[KEY_TEXT_MAX], ut[37];
	key_format(k, kt);
	uuid_unparse_lower(uuid, ut);
	copytext_put(o, entity, strlen(entity));
	sb_printf(o, "\t%s\t%s\t%s\t", kt, ut, id_kind_name(kind));
	if (merged_into) {
		char mt[KEY_TEXT_MAX];
		key_format(merged_into, mt);
		sb_puts(o, mt);
	} else {
		sb_puts(o, "\\N");
	}
	sb_printf(o, "\t%d\t%lld\t", phase, (long long)run_id);
	if (hash)
		sb_printf(o, "%016llx\n", (unsigned long long)*hash);
	else
		sb_puts(o, "\\N\n");
}

static bool write_idmap(Sink *s, Batch *b)
{
	sb_reset(&s->buf);
	for (size_t i = 0; i < b->n_stubs; i++) {
		if (b->stubs[i].rejected || b->stubs[i].dropped)
			continue;
		const Mapping *pm = &s->cfg->mappings[b->stubs[i].entity];
		idmap_line(&s->buf, pm->entity, &b->stubs[i].key, b->stubs[i].uuid, ID_STUB, NULL, s->m->phase,
			   s->run_id, NULL);
	}
	for (size_t i = 0; i < b->n_rows; i++) {
		BatchRow *r = &b->rows[i];
		if (r->rejected)
			continue;
		idmap_line(&s->buf, s->m->entity, &r->key, r->uuid, r->kind,
			   r->kind == ID_MERGED ? &r->merged_into : NULL, s->m->phase, s->run_id, &r->hash);
	}
	if (s->buf.len == 0)
		return true;
	PgError err = {0};
	bool ok;
	if (s->update) {
		/* Rewritten rows keep their id-map row and its first run; hash, kind (a placeholder
		 * becomes a row) and the updating run change. */
		char run[32];
		snprintf(run, sizeof run, "%lld", (long long)s->run_id);
		const char *p[] = {run};
		ok = copy_data(s,
			       "COPY pg_temp.edumig_idmap_stage (entity, old_key, new_id, kind, merged_into, phase, run_id, "
			       "row_hash) FROM STDIN",
			       s->buf.data, s->buf.len, &err) &&
		     pg_exec_params(s->t,
				    "INSERT INTO edumig.id_map (entity, old_key, new_id, kind, merged_into, phase, run_id, row_hash) "
				    "SELECT entity, old_key, new_id, kind, merged_into, phase, run_id, row_hash "
				    "FROM pg_temp.edumig_idmap_stage ON CONFLICT (entity, old_key) DO UPDATE SET "
				    "new_id = EXCLUDED.new_id, kind = EXCLUDED.kind, merged_into = EXCLUDED.merged_into, "
				    "phase = EXCLUDED.phase, row_hash = EXCLUDED.row_hash, updated_by_run = $1::bigint",
				    1, p, &err) &&
		     pg_exec_params(s->t, "DELETE FROM pg_temp.edumig_idmap_stage", 0, NULL, &err);
	} else {
		ok = copy_data(s,
			       "COPY edumig.id_map (entity, old_key, new_id, kind, merged_into, phase, run_id, row_hash) "
			       "FROM STDIN",
			       s->buf.data, s->buf.len, &err);
	}
	if (!ok) {
		log_error("[TARGET] [%s] %s: writing the id map: %s%s%s", err.sqlstate, s->m->entity, err.message,
			  err.detail ? " — " : "", err.detail ? err.detail : "");
		pg_error_clear(&err);
	}
	return ok;
}

static bool write_deferred(Sink *s, Batch *b)
{
	sb_reset(&s->buf);
	for (size_t i = 0; i < b->n_deferred; i++) {
		const Deferred *d = &b->deferred[i];
		const BatchRow *r = &b->rows[d->row];
		if (r->rejected)
			continue;
		char kt[KEY_TEXT_MAX], rt[KEY_TEXT_MAX];
		key_format(&r->key, kt);
		key_format(&d->ref, rt);
		copytext_put(&s->buf, s->m->entity, strlen(s->m->entity));
		sb_printf(&s->buf, "\t%s\t", kt);
		copytext_put(&s->buf, d->rule->name, strlen(d->rule->name));
		sb_printf(&s->buf, "\t%s\t%lld\n", rt, (long long)s->run_id);
	}
	if (s->buf.len == 0)
		return true;
	PgError err = {0};
	bool ok = copy_data(s, "COPY edumig.deferred_refs (entity, old_key, column_name, ref_key, run_id) FROM STDIN",
			    s->buf.data, s->buf.len, &err);
	if (!ok) {
		log_error("[TARGET] [%s] %s: writing deferred references: %s", err.sqlstate, s->m->entity, err.message);
		pg_error_clear(&err);
	}
	return ok;
}

static bool issue_live(const Batch *b, const Issue *i)
{
	if (i->dropped)
		return false;
	/* A warning about a row the target then rejected no longer describes anything. */
	if (i->severity == SEV_WARNING && i->row >= 0 && b->rows[i->row].rejected && !i->update_refused)
		return false;
	return true;
}

static bool resolve_keys(Sink *s, const char *keys);

static bool resolve_old_skips(Sink *s, const Batch *b)
{
	const char *keys = s->resolve_keys;
	if (s->update) {
		/* Placeholders' skipped rows read again: their old skips go whatever became of them. */
		if (keys && !resolve_keys(s, keys))
			return false;
		/* What was recorded about a row the update rewrote describes a version that is gone. */
		sb_reset(&s->resolved);
		sb_putc(&s->resolved, '{');
		for (size_t i = 0; i < b->n_rows; i++) {
			if (b->rows[i].rejected)
				continue;
			char kt[KEY_TEXT_MAX];
			key_format(&b->rows[i].key, kt);
			sb_array_item(&s->resolved, kt);
		}
		sb_putc(&s->resolved, '}');
		keys = s->resolved.len > 2 ? s->resolved.data : NULL;
	}
	return !keys || resolve_keys(s, keys);
}

/* Marks the open skips of @keys (a text[] literal) resolved by this run. */
static bool resolve_keys(Sink *s, const char *keys)
{
	char run[32];
	snprintf(run, sizeof run, "%lld", (long long)s->run_id);
	const char *p[] = {run, s->m->entity, keys};
	PgError err = {0};
	bool ok = pg_exec_params(s->t,
				 "UPDATE edumig.skips s SET resolved_at = now(), resolved_by_run = $1::bigint, "
				 "resolution = CASE WHEN EXISTS (SELECT 1 FROM edumig.id_map m WHERE m.entity = s.entity "
				 "AND m.old_key = s.old_key AND m.kind <> 'stub') THEN 'migrated' ELSE 'superseded' END "
				 "WHERE s.entity = $2 AND s.old_key = ANY($3::text[]) AND s.resolved_at IS NULL "
				 "AND s.reason NOT IN ('duplicate_source_key', 'null_source_key')",
				 3, p, &err);
	if (!ok) {
		log_error("[TARGET] [%s] %s: resolving retried skips: %s", err.sqlstate, s->m->entity, err.message);
		pg_error_clear(&err);
	}
	return ok;
}

static bool write_skips(Sink *s, Batch *b)
{
	if (!resolve_old_skips(s, b))
		return false;
	sb_reset(&s->buf);
	sb_reset(&s->log);
	for (size_t k = 0; k < b->n_issues; k++) {
		const Issue *i = &b->issues[k];
		if (!issue_live(b, i))
			continue;
		issue_copy_line(&s->buf, i, s->run_id, s->m->phase, s->m->entity, b->issue_keys[k]);
		issue_json(&s->log, i, s->run_id, s->m->phase, s->m->entity, b->issue_keys[k]);
		sb_putc(&s->log, '\n');
	}
	if (s->buf.len == 0)
		return true;
	PgError err = {0};
	bool ok = copy_data(s,
			    "COPY edumig.skips (run_id, phase, entity, old_key, reason, severity, column_name, "
			    "source_value, detail, sqlstate, constraint_name, cause_entity, cause_key, owner_entity, owner_key, "
			    "row_hash) FROM STDIN",
			    s->buf.data, s->buf.len, &err);
	if (!ok) {
		log_error("[TARGET] [%s] %s: writing the skip log: %s", err.sqlstate, s->m->entity, err.message);
		pg_error_clear(&err);
	}
	return ok;
}

/*
 * In an update batch, a rewrite the target refuses leaves the row as an earlier run wrote it:
 * the refusal is a warning on a migrated row, not a skip (a placeholder being replaced by its
 * real row is the exception: that row did not migrate).
 */
static void keep_old_versions(Batch *b, size_t from)
{
	for (size_t k = from; k < b->n_issues; k++) {
		Issue *i = &b->issues[k];
		if (i->row >= 0 && !b->rows[i->row].upgrade && i->severity == SEV_ERROR)
			issue_refuse_update(i);
	}
}

static bool write_attempt(Sink *s, Batch *b, Checkpoint *cp)
{
	testhook_point("batch_begin");
	if (!tx_begin(s))
		return false;
	size_t n_issues = b->n_issues;
	bool ok = (!s->update || pg_exec(s->t, s->stage_setup, NULL)) && write_stubs(s, b) &&
		  (b->n_rows == 0 || copy_range(s, b, 0, b->n_rows)) && drop_unused_stubs(s, b, s->sets);
	if (ok && s->update)
		keep_old_versions(b, n_issues);
	testhook_point("batch_after_rows");
	ok = ok && write_idmap(s, b) && write_deferred(s, b);
	testhook_point("batch_after_idmap");
	ok = ok && write_skips(s, b);
	if (ok) {
		int64_t migrated = 0, warned = 0, merged = 0, rejected = 0;
		for (size_t i = 0; i < b->n_rows; i++) {
			const BatchRow *r = &b->rows[i];
			if (r->rejected) {
				rejected++;
				continue;
			}
			if (s->update && !r->upgrade) {
				/* A rewrite of a row counted as migrated already; warnings are
				 * recounted at the end of the delta run. */
				cp->updated++;
				continue;
			}
			migrated++;
			if (r->warned)
				warned++;
			if (r->kind == ID_MERGED)
				merged++;
		}
		if (s->update)
			for (size_t i = 0; i < b->n_rows; i++)
				if (b->rows[i].rejected && !b->rows[i].upgrade)
					rejected--;
		cp->read += b->read;
		cp->migrated += migrated;
		cp->warned += warned;
		cp->merged += merged;
		cp->skipped += b->skipped + rejected - b->reread_skipped;
		for (size_t k = 0; k < b->n_stubs; k++)
			if (!b->stubs[k].rejected && !b->stubs[k].dropped)
				cp->stubs++;
		for (size_t f = 0; f < cp->n_filters && f < b->n_filters; f++)
			cp->filtered[f] += b->filtered[f];
		cp->batches++;
		if (b->has_last) {
			cp->has_last_key = true;
			key_format(&b->last_key, cp->last_key);
		}
		ok = checkpoint_store(s->t, s->m, s->part, cp);
	}
	if (!ok) {
		tx_abort(s);
		return false;
	}
	testhook_point("batch_before_commit");
	/* Sent without waiting, so a kill can land while the server commits. */
	if (PQsendQuery(s->t->conn, s->dry_run ? "RELEASE SAVEPOINT edumig_batch" : "COMMIT") != 1)
		return false;
	testhook_point("batch_during_commit");
	PGresult *r;
	bool committed = true;
	while ((r = PQgetResult(s->t->conn)) != NULL) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			pg_log_result(s->t, r, "COMMIT");
			committed = false;
		}
		PQclear(r);
	}
	if (!committed)
		return false;
	testhook_point("batch_after_commit");
	if (s->log.len)
		log_jsonl_write_block(s->log.data, s->log.len);
	return true;
}

/* Puts the batch back as it was before an attempt: bisection marks and its issues go. */
static void undo_attempt(Batch *b, size_t n_issues, IdSet **sets)
{
	for (size_t k = 0; k < b->n_stubs; k++) {
		Stub *st = &b->stubs[k];
		if (st->dropped && sets && sets[st->entity])
			idset_put(sets[st->entity], &st->key, st->uuid, ID_STUB);
		st->rejected = st->dropped = false;
		free(st->error);
		st->error = NULL;
	}
	for (size_t k = n_issues; k < b->n_issues; k++) {
		issue_clear(&b->issues[k]);
		free(b->issue_keys[k]);
	}
	b->n_issues = n_issues;
	for (size_t i = 0; i < b->n_rows; i++)
		b->rows[i].rejected = false;
}

bool sink_write_batch(Sink *s, Batch *b, Checkpoint *cp)
{
	size_t n_issues = b->n_issues;
	/* The checkpoint advances on a copy: a failed attempt must leave it as it was. */
	Checkpoint next = *cp;
	next.filtered = xcalloc(cp->n_filters ? cp->n_filters : 1, sizeof *next.filtered);
	memcpy(next.filtered, cp->filtered, cp->n_filters * sizeof *next.filtered);
	bool ok = write_attempt(s, b, &next);
	if (ok) {
		free(cp->filtered);
		*cp = next;
	} else {
		free(next.filtered);
		undo_attempt(b, n_issues, s->sets);
	}
	return ok;
}

/* Runs one statement of the deferred pass with the pass's parameters; false after logging. */
static bool dexec(Sink *s, const char *sql, const char *const *p, int n)
{
	PgError err = {0};
	if (pg_exec_params(s->t, sql, n, p, &err))
		return true;
	log_error("[TARGET] [%s] %s: resolving deferred references: %s%s%s", err.sqlstate, s->m->entity, err.message,
		  err.detail ? " — " : "", err.detail ? err.detail : "");
	pg_error_clear(&err);
	return false;
}

/*
 * Cuts every cycle of @col: the member with the lowest legacy key (in id-map order) loses
 * its parent and warns parent_cycle, then the search starts again (cycles are rare and
 * short; the loop is bounded).
 */
static bool break_cycles(Sink *s, const ColumnRule *r, const char *qt, const char *qid, const char *qcol)
{
	char ph[16], run[32];
	snprintf(ph, sizeof ph, "%d", s->m->phase);
	snprintf(run, sizeof run, "%lld", (long long)s->run_id);
	AUTOFREE char *find = xasprintf(
		"WITH RECURSIVE walk (start, cur, depth) AS ("
		" SELECT t.%s, t.%s, 1 FROM %s t JOIN edumig.id_map m ON m.new_id = t.%s AND m.entity = $1"
		" WHERE t.%s IS NOT NULL"
		" UNION ALL SELECT w.start, t.%s, w.depth + 1 FROM walk w JOIN %s t ON t.%s = w.cur"
		" WHERE w.cur <> w.start AND t.%s IS NOT NULL AND w.depth < 100000)"
		" SELECT m.old_key, m.new_id, p.old_key FROM walk w"
		" JOIN edumig.id_map m ON m.entity = $1 AND m.new_id = w.start AND m.kind = 'row'"
		" JOIN %s t ON t.%s = w.start LEFT JOIN edumig.id_map p ON p.entity = $1 AND p.new_id = t.%s AND p.kind = 'row'"
		" WHERE w.cur = w.start ORDER BY length(m.old_key), m.old_key LIMIT 1",
		qid, qcol, qt, qid, qcol, qcol, qt, qid, qcol, qt, qid, qcol);
	AUTOFREE char *cut = xasprintf("UPDATE %s SET %s = NULL WHERE %s = $1::uuid", qt, qcol, qid);
	const char *pe[] = {s->m->entity};
	for (int guard = 0; guard < 100000; guard++) {
		PGresult *res = pg_query(s->t, find, 1, pe);
		if (!res)
			return false;
		if (PQntuples(res) == 0) {
			PQclear(res);
			return true;
		}
		AUTOFREE char *key = xstrdup(PQgetvalue(res, 0, 0));
		AUTOFREE char *uuid = xstrdup(PQgetvalue(res, 0, 1));
		AUTOFREE char *pkey = xstrdup(PQgetvalue(res, 0, 2));
		PQclear(res);
		const char *pu[] = {uuid};
		if (!dexec(s, cut, pu, 1))
			return false;
		AUTOFREE char *detail = xasprintf("%s %s is on a cycle of %s; its parent (%s %s) was cut, making it a root",
						  s->m->entity, key, r->name, s->m->entity, pkey);
		const char *pw[] = {run, ph, s->m->entity, key, r->name, pkey, detail};
		if (!dexec(s,
			   "INSERT INTO edumig.skips (run_id, phase, entity, old_key, reason, severity, column_name, "
			   "source_value, detail, cause_entity, cause_key) "
			   "VALUES ($1::bigint, $2::int, $3, $4, 'parent_cycle', 'warning', $5, $6, $7, $3, $6)",
			   pw, 7))
			return false;
	}
	log_error("%s: more than 100000 parent cycles in %s; giving up", s->m->entity, r->name);
	return false;
}

bool sink_finish_deferred(Sink *s, Checkpoint *cp)
{
	char ph[16], run[32];
	snprintf(ph, sizeof ph, "%d", s->m->phase);
	snprintf(run, sizeof run, "%lld", (long long)s->run_id);
	AUTOFREE char *qt = pg_qualified(s->t, s->m->target_schema, s->m->target_table);
	AUTOFREE char *qid = pg_ident(s->t, s->m->id_column);
	if (!tx_begin(s))
		return false;
	bool ok = true;
	for (size_t c = 0; ok && c < s->m->n_cols; c++) {
		const ColumnRule *r = &s->m->cols[c];
		if (r->kind != RULE_REF || !r->deferred)
			continue;
		AUTOFREE char *qcol = pg_ident(s->t, r->name);
		AUTOFREE char *upd = xasprintf(
			"UPDATE %s t SET %s = p.new_id FROM edumig.deferred_refs d"
			" JOIN edumig.id_map c ON c.entity = d.entity AND c.old_key = d.old_key AND c.kind = 'row'"
			" JOIN edumig.id_map p ON p.entity = d.entity AND p.old_key = d.ref_key"
			" WHERE d.entity = $1 AND d.column_name = $2 AND t.%s = c.new_id",
			qt, qcol, qid);
		const char *pu[] = {s->m->entity, r->name};
		ok = dexec(s, upd, pu, 2);
		/* Parents that never arrived: the row keeps NULL, the data owners are told. */
		const char *pw[] = {run, ph, s->m->entity, r->name};
		ok = ok && dexec(s,
				 "INSERT INTO edumig.skips (run_id, phase, entity, old_key, reason, severity, column_name, "
				 "source_value, detail, cause_entity, cause_key) "
				 "SELECT $1::bigint, $2::int, d.entity, d.old_key, "
				 "CASE WHEN k.old_key IS NULL THEN 'missing_reference' ELSE 'parent_skipped' END, 'warning', "
				 "d.column_name, d.ref_key, "
				 "format('%s %s %s; stored as NULL (on_missing: null)', d.entity, d.ref_key, "
				 "CASE WHEN k.old_key IS NULL THEN 'not migrated (absent from the source or filtered out)' "
				 "ELSE 'was skipped' END), d.entity, d.ref_key "
				 "FROM edumig.deferred_refs d "
				 "LEFT JOIN (SELECT DISTINCT old_key FROM edumig.skips WHERE entity = $3 AND severity = 'error' "
				 "AND resolved_at IS NULL) k ON k.old_key = d.ref_key "
				 "WHERE d.entity = $3 AND d.column_name = $4 AND NOT EXISTS "
				 "(SELECT 1 FROM edumig.id_map p WHERE p.entity = d.entity AND p.old_key = d.ref_key)",
				 pw, 4);
		ok = ok && break_cycles(s, r, qt, qid, qcol);
	}
	const char *pe[] = {s->m->entity};
	ok = ok && dexec(s, "DELETE FROM edumig.deferred_refs WHERE entity = $1", pe, 1);
	if (ok) {
		AUTOFREE char *w = NULL;
		ok = pg_query_value(s->t,
				    "SELECT count(DISTINCT old_key) FROM edumig.skips WHERE entity = $1 AND severity = 'warning' "
				    "AND resolved_at IS NULL",
				    1, pe, &w);
		if (ok)
			cp->warned = strtoll(w, NULL, 10);
		cp->done = true;
		ok = ok && checkpoint_store(s->t, s->m, s->part, cp);
	}
	testhook_point("deferred_before_commit");
	if (!ok || !pg_exec(s->t, s->dry_run ? "RELEASE SAVEPOINT edumig_batch" : "COMMIT", NULL)) {
		tx_abort(s);
		return false;
	}
	return true;
}
