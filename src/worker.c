/*
 * src/worker.c — one entity's batch loop (see worker.h).
 *
 * Memory holds one batch plus the id sets of the entity's parents; the source is a COPY
 * stream, so the size of the table being copied never matters. Rows of one key are never
 * split across batches: a batch closes only where the key changes, which is what makes
 * "resume after the last committed key" exact.
 */
#include "edumig/worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edumig/batch.h"
#include "edumig/control.h"
#include "edumig/copytext.h"
#include "edumig/idmap.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/rules.h"
#include "edumig/sink.h"
#include "edumig/source.h"


static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

typedef struct Loop {
	PgConn *src, *tgt;
	const Config *cfg;
	const Mapping *m;
	int entity;
	const WorkerOptions *o;
	IdSet **sets;
	Batch b;
	Sink sink;
	Checkpoint cp;
	RuleCtx rc;
	TxEnv *env;
	char **val;
	size_t *len;
	int ncols;
	double t0, last_progress;
	int64_t total;            /* source rows, when counted for the ETA; -1 otherwise */
	int64_t read_this_run;
	double secs_before;
} Loop;

/* Releases what an entity's loop holds (run and retry alike). */
static void loop_free(Loop *l)
{
	if (l->env) {
		rulectx_free(&l->rc);
		txenv_destroy(l->env);
	}
	for (size_t i = 0; l->sets && i < l->cfg->n_mappings; i++)
		idset_destroy(l->sets[i]);
	free(l->sets);
	free(l->val);
	free(l->len);
	batch_free(&l->b);
	sink_free(&l->sink);
	checkpoint_free(&l->cp);
}

/* Loads the id sets the mapping's references (and merges) need. */
static bool load_sets(Loop *l)
{
	for (size_t c = 0; c < l->m->n_cols; c++) {
		const ColumnRule *r = &l->m->cols[c];
		if (r->kind != RULE_REF || l->sets[r->ref_entity_index])
			continue;
		const char *pe = l->cfg->mappings[r->ref_entity_index].entity;
		l->sets[r->ref_entity_index] = control_load_idset(l->tgt, pe);
		if (!l->sets[r->ref_entity_index])
			return false;
		log_debug("%s: %zu keys of %s loaded (%zu KiB)", l->m->entity,
			  idset_count(l->sets[r->ref_entity_index]), pe,
			  idset_bytes(l->sets[r->ref_entity_index]) / 1024);
	}
	if (l->m->merge && !l->sets[l->entity]) {
		l->sets[l->entity] = control_load_idset(l->tgt, l->m->entity);
		if (!l->sets[l->entity])
			return false;
	}
	return true;
}

static void progress(Loop *l, bool force)
{
	double t = now_s();
	if (!force && t - l->last_progress < (log_is_tty() ? 0.5 : 10.0))
		return;
	l->last_progress = t;
	double el = t - l->t0;
	double rate = el > 0 ? (double)l->read_this_run / el : 0;
	int64_t done = l->cp.read + l->b.read;
	if (l->total > 0 && rate > 0) {
		double eta = (double)(l->total - done) / rate;
		log_progress("%s: %" PRId64 "/%" PRId64 " rows read, %" PRId64 " migrated, %" PRId64
			     " skipped, %.0f rows/s, ETA %.0fs",
			     l->m->entity, done, l->total, l->cp.migrated, l->cp.skipped, rate, eta < 0 ? 0 : eta);
	} else {
		log_progress("%s: %" PRId64 " rows read, %" PRId64 " migrated, %" PRId64 " skipped, %.0f rows/s",
			     l->m->entity, done, l->cp.migrated, l->cp.skipped, rate);
	}
}

static bool over_threshold(const Loop *l);
static void stop_message(Loop *l);

/*
 * Writes the batch, retrying transient failures with exponential backoff (1, 2, 4 ... s,
 * at most o->retries times). After a lost connection it reconnects, takes the phase's lock
 * again, and reads the checkpoint back: if the interrupted COMMIT landed, the batch is done.
 */
static bool write_batch(Loop *l)
{
	int64_t batches = l->cp.batches;
	for (int attempt = 0;; attempt++) {
		if (sink_write_batch(&l->sink, &l->b, &l->cp))
			return true;
		if (!pg_failure_transient(l->tgt) || attempt >= l->o->retries) {
			if (attempt >= l->o->retries && pg_failure_transient(l->tgt))
				log_error("%s: giving up after %d retries; run again to resume after the last committed batch",
					  l->m->entity, attempt);
			return false;
		}
		unsigned wait = 1u << (attempt < 5 ? attempt : 5);
		log_warn("%s: the target failed transiently ([%s]); retry %d of %d in %us", l->m->entity,
			 l->tgt->last_sqlstate, attempt + 1, l->o->retries, wait);
		sleep(wait);
		if (PQstatus(l->tgt->conn) != CONNECTION_OK) {
			if (!pg_reconnect(l->tgt))
				continue;
			if (!control_lock_phase(l->tgt, l->m->phase))
				return false;
			Checkpoint now;
			if (!checkpoint_load(l->tgt, l->m, 0, &now))
				continue;
			if (now.batches > batches) {
				/* The COMMIT went through before the connection broke. */
				log_info("%s: the interrupted batch had committed", l->m->entity);
				checkpoint_free(&l->cp);
				l->cp = now;
				return true;
			}
			checkpoint_free(&now);
		}
	}
}

/* Commits the batch. Returns 1 committed, 0 failed, 2 committed but --max-skips exceeded. */
static int flush(Loop *l)
{
	l->cp.seconds = l->secs_before + (now_s() - l->t0);
	if (!write_batch(l))
		return 0;
	batch_reset(&l->b);
	progress(l, false);
	if (over_threshold(l)) {
		stop_message(l);
		return 2;
	}
	return 1;
}

/* A row whose key has a NULL can't be identified: skipped, with its content as evidence. */
static void add_null_key_row(Loop *l, const char *raw, size_t n)
{
	Issue *i = batch_add_issue(&l->b, NULL, -1);
	i->reason = skip_reason_code(REASON_NULL_SOURCE_KEY);
	i->severity = SEV_ERROR;
	StrBuf d = {0};
	sb_puts(&d, "key (");
	for (int k = 0; k < l->m->n_key; k++)
		sb_printf(&d, "%s%s", k ? ", " : "", l->m->key_cols[k]);
	sb_puts(&d, ") is NULL");
	i->detail = sb_steal(&d);
	/* The row's own columns are the evidence: not the newline, nor the filter column
	 * edumig adds at the end of the stream. */
	while (n && raw[n - 1] == '\n')
		n--;
	const char *tab = memrchr(raw, '\t', n);
	if (tab)
		n = (size_t)(tab - raw);
	if (!l->m->sensitive_any)
		i->source_value = xstrndup(raw, n > 500 ? 500 : n);
	l->b.skipped++;
}

/* Index of the filter the row matched, or -1. */
static int row_filter(const Loop *l)
{
	const char *fv = l->val[l->ncols - 1];
	int64_t fi;
	if (fv && key_int(fv, &fi) && fi >= 0 && (size_t)fi < l->m->n_filters)
		return (int)fi;
	return -1;
}

static bool row_key(const Loop *l, Key *key)
{
	memset(key, 0, sizeof *key);
	key->n = (uint8_t)l->m->n_key;
	for (int k = 0; k < l->m->n_key; k++) {
		const char *v = l->val[l->m->key_idx[k]];
		if (!v || !key_int(v, &key->v[k]))
			return false;
	}
	return true;
}

/* Streams the rows; returns 1 done, 0 failed, 2 stopped by --max-skips. */
static int stream(Loop *l, bool null_keys, bool unique)
{
	bool resume = !null_keys && l->cp.has_last_key;
	if (resume) {
		Key k;
		if (!key_parse(l->cp.last_key, &k) || k.n != l->m->n_key) {
			log_error("%s: checkpoint key '%s' does not fit the mapping's %d-column key "
				  "(was the key changed since the last run?)",
				  l->m->entity, l->cp.last_key, l->m->n_key);
			return 0;
		}
		if (!source_set_resume(l->src, &k))
			return 0;
	}
	AUTOFREE char *sql = source_stream_sql(l->src, l->m, resume, null_keys, unique);
	log_debug("%s: %s", l->m->entity, sql);
	if (!pg_copy_out_start(l->src, sql))
		return 0;
	char *row;
	int n;
	int st = 1;
	/* The last key that went through the rules: a second row with it is a duplicate. */
	Key processed = {0};
	bool has_processed = false;
	StrBuf raw = {0};
	while ((n = pg_copy_out_row(l->src, &row)) > 0) {
		uint64_t h = fnv1a(row, (size_t)n);
		if (null_keys) {
			sb_reset(&raw);
			sb_put(&raw, row, (size_t)n > 500 ? 500 : (size_t)n);
		}
		int nf = copytext_split(row, (size_t)n, l->val, l->len, l->ncols);
		if (nf != l->ncols) {
			log_error("%s: the source stream has %d columns, expected %d", l->m->entity, nf, l->ncols);
			PQfreemem(row);
			st = 0;
			break;
		}
		Key key;
		bool has_key = !null_keys && row_key(l, &key);
		/* Close the batch only between two keys, so resume never splits a key. */
		if (has_key && l->b.read >= l->o->batch_size && !(l->b.has_last && key_equal(&key, &l->b.last_key))) {
			st = flush(l);
			if (st != 1) {
				PQfreemem(row);
				break;
			}
		}
		l->b.read++;
		l->read_this_run++;
		size_t issues_before = l->b.n_issues, rows_before = l->b.n_rows;
		int f = row_filter(l);
		if (f >= 0) {
			l->b.filtered[f]++;
		} else if (!has_key) {
			add_null_key_row(l, raw.data ? raw.data : "", raw.len);
		} else if (has_processed && key_equal(&key, &processed)) {
			/* A key already migrated: this further row is a duplicate. */
			char kt[KEY_TEXT_MAX];
			key_format(&key, kt);
			Issue *i = batch_add_issue(&l->b, kt, -1);
			i->reason = skip_reason_code(REASON_DUPLICATE_SOURCE_KEY);
			i->severity = SEV_ERROR;
			i->detail = xasprintf("%s %s appears on more than one source row; an earlier one migrated",
					      l->m->entity, kt);
			l->b.skipped++;
		} else {
			char kt[KEY_TEXT_MAX];
			key_format(&key, kt);
			RowInput in = {.val = l->val, .len = l->len, .key = &key, .key_text = kt, .hash = h};
			/* Only a row that moves claims its key: when it is skipped, the next row with
			 * the same key still gets its chance. */
			if (rules_apply(&l->rc, &in, &l->b)) {
				processed = key;
				has_processed = true;
			} else {
				l->b.skipped++;
			}
		}
		if (l->m->owner_col >= 0) {
			/* The row's owning unit, so reports can go to each office separately. */
			const char *ov = l->val[l->m->owner_col];
			int64_t ok_;
			if (ov && key_int(ov, &ok_)) {
				for (size_t k = issues_before; k < l->b.n_issues; k++) {
					l->b.issues[k].owner_entity = l->m->owner_entity;
					l->b.issues[k].owner_key = xstrdup(ov);
				}
				if (l->b.n_rows > rows_before)
					snprintf(l->b.rows[rows_before].owner, sizeof l->b.rows[rows_before].owner, "%s", ov);
			}
		}
		if (has_key) {
			l->b.last_key = key;
			l->b.has_last = true;
		}
		PQfreemem(row);
	}
	sb_free(&raw);
	if (n < 0)
		st = 0;
	if (st != 1) {
		/* Drain an interrupted COPY so the connection stays usable. */
		while (pg_copy_out_row(l->src, &row) > 0)
			PQfreemem(row);
	}
	return st;
}

static void stop_message(Loop *l)
{
	const char *p[] = {l->m->entity};
	PGresult *r = pg_query(l->tgt,
			       "SELECT reason, count(*) FROM edumig.skips WHERE entity = $1 AND severity = 'error' "
			       "AND resolved_at IS NULL GROUP BY reason ORDER BY 2 DESC, 1 LIMIT 3",
			       1, p);
	StrBuf top = {0};
	for (int i = 0; r && i < PQntuples(r); i++)
		sb_printf(&top, "%s%s (%s)", i ? ", " : "", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
	PQclear(r);
	log_error("%s: %" PRId64 " rows skipped of %" PRId64 " read exceeds --max-skips %g%s; stopping after the "
		  "committed batch. Top reasons: %s",
		  l->m->entity, l->cp.skipped, l->cp.read, l->o->max_skips, l->o->max_skips_pct ? "%" : "",
		  sb_str(&top));
	sb_free(&top);
}

static bool over_threshold(const Loop *l)
{
	if (!l->o->max_skips_set)
		return false;
	if (l->o->max_skips_pct)
		return l->cp.read > 0 && (double)l->cp.skipped * 100.0 > l->o->max_skips * (double)l->cp.read;
	return (double)l->cp.skipped > l->o->max_skips;
}

WorkResult worker_run_entity(PgConn *src, PgConn *tgt, const Config *cfg, int entity, int64_t run_id,
			     const WorkerOptions *o)
{
	Loop l = {.src = src, .tgt = tgt, .cfg = cfg, .m = &cfg->mappings[entity], .entity = entity, .o = o,
		  .total = -1};
	WorkResult res = WORK_FAILED;
	if (!checkpoint_load(tgt, l.m, 0, &l.cp))
		return WORK_FAILED;
	bool appended = false;
	if (l.cp.done) {
		/* Legacy ids grow with time: rows added since the last run have keys above the
		 * checkpoint, and a run of a finished entity picks them up (and writes nothing
		 * when there are none). */
		log_info("%s: done on a previous run (%" PRId64 " migrated, %" PRId64 " skipped); looking for rows added since",
			 l.m->entity, l.cp.migrated, l.cp.skipped);
		appended = true;
	}
	if (!l.cp.exists && !checkpoint_create(tgt, l.m, 0)) {
		checkpoint_free(&l.cp);
		return WORK_FAILED;
	}
	if (l.cp.has_last_key)
		log_info("%s: resuming after key %s (batch %" PRId64 ")", l.m->entity, l.cp.last_key, l.cp.batches + 1);
	l.sets = xcalloc(cfg->n_mappings, sizeof *l.sets);
	l.ncols = (int)l.m->n_src_cols + 1;
	l.val = xcalloc((size_t)l.ncols, sizeof *l.val);
	l.len = xcalloc((size_t)l.ncols, sizeof *l.len);
	batch_init(&l.b, l.m->n_filters);
	sink_init(&l.sink, tgt, cfg, entity, 0, run_id);
	l.sink.dry_run = o->dry_run;
	l.sink.sets = l.sets;
	bool unique = false;
	if (!load_sets(&l) || !source_key_unique(src, l.m, &unique))
		goto out;
	l.env = txenv_create(cfg->lookups, cfg->namespace_uuid);
	rulectx_init(&l.rc, cfg, entity, l.sets, l.env);
	if (log_is_tty()) {
		AUTOFREE char *csql = source_count_sql(src, l.m);
		AUTOFREE char *cnt = NULL;
		if (pg_query_value(src, csql, 0, NULL, &cnt))
			l.total = strtoll(cnt, NULL, 10);
	}
	l.t0 = now_s();
	l.secs_before = l.cp.seconds;
	bool deferred = false;
	for (size_t c = 0; c < l.m->n_cols; c++)
		deferred = deferred || (l.m->cols[c].kind == RULE_REF && l.m->cols[c].deferred);
	if (l.cp.streamed && !l.cp.done) {
		log_info("%s: every row is in; resolving its deferred references", l.m->entity);
		if (!sink_finish_deferred(&l.sink, &l.cp))
			goto out;
		res = WORK_OK;
		goto out;
	}
	int st = stream(&l, false, unique);
	if (st == 1 && appended) {
		if (l.b.read > 0) {
			l.cp.seconds = l.secs_before + (now_s() - l.t0);
			if (!write_batch(&l))
				goto out;
			log_info("%s: %" PRId64 " rows added since the last run read", l.m->entity, l.read_this_run);
		}
		if (l.read_this_run > 0 && deferred && !sink_finish_deferred(&l.sink, &l.cp))
			goto out;
		res = WORK_OK;
		goto out;
	}
	if (st == 1)
		st = stream(&l, true, unique);
	if (st == 0) {
		if (PQstatus(src->conn) != CONNECTION_OK)
			log_error("%s: the source connection was lost; nothing after the last committed batch (key %s) "
				  "was kept: run the phase again to resume there",
				  l.m->entity, l.cp.has_last_key ? l.cp.last_key : "none yet");
		goto out;
	}
	if (st == 2) {
		res = WORK_STOPPED;
		goto out;
	}
	/* The last batch carries the "done" state in the same transaction, unless deferred
	 * references still wait: then the pass that resolves them marks it done. */
	l.cp.streamed = true;
	l.cp.done = !deferred;
	l.cp.seconds = l.secs_before + (now_s() - l.t0);
	if (!write_batch(&l))
		goto out;
	batch_reset(&l.b);
	if (deferred && !sink_finish_deferred(&l.sink, &l.cp))
		goto out;
	progress(&l, true);
	{
		int64_t filtered = 0;
		for (size_t f = 0; f < l.m->n_filters; f++)
			filtered += l.cp.filtered[f];
		log_info("%s: done: %" PRId64 " read, %" PRId64 " filtered, %" PRId64 " migrated (%" PRId64
			 " with warnings, %" PRId64 " merged), %" PRId64 " skipped, %" PRId64 " placeholders",
			 l.m->entity, l.cp.read, filtered, l.cp.migrated, l.cp.warned, l.cp.merged, l.cp.skipped,
			 l.cp.stubs);
	}
	res = WORK_OK;
	if (over_threshold(&l)) {
		stop_message(&l);
		res = WORK_STOPPED;
	}
out:
	loop_free(&l);
	return res;
}

/* Keys to retry for the entity, as text, in key order. */
static char **retry_keys(Loop *l, const char *reason, bool cascade, size_t *n)
{
	*n = 0;
	/* In a cascade, only children whose recorded cause has been migrated since. */
	const char *p[] = {l->m->entity, reason, cascade ? "t" : "f"};
	PGresult *r = pg_query(l->tgt,
			       "SELECT DISTINCT s.old_key FROM edumig.skips s WHERE s.entity = $1 AND s.severity = 'error' "
			       "AND s.resolved_at IS NULL AND s.old_key IS NOT NULL "
			       "AND s.reason NOT IN ('duplicate_source_key', 'null_source_key') "
			       "AND ($2::text IS NULL OR s.reason = $2) "
			       "AND NOT EXISTS (SELECT 1 FROM edumig.id_map m WHERE m.entity = s.entity AND m.old_key = s.old_key) "
			       "AND (NOT $3::bool OR EXISTS (SELECT 1 FROM edumig.skips c JOIN edumig.id_map pm "
			       "ON pm.entity = c.cause_entity AND pm.old_key = c.cause_key WHERE c.entity = s.entity "
			       "AND c.old_key = s.old_key AND c.resolved_at IS NULL AND c.severity = 'error'))",
			       3, p);
	if (!r)
		return NULL;
	size_t cap = 0;
	char **keys = NULL;
	for (int i = 0; i < PQntuples(r); i++) {
		keys = xgrow(keys, &cap, *n + 1, sizeof *keys);
		keys[(*n)++] = xstrdup(PQgetvalue(r, i, 0));
	}
	PQclear(r);
	return keys;
}

/* Streams the rows of @keys[0..n) (one chunk) and writes them as one batch. */
static int retry_chunk(Loop *l, char **keys, size_t n, bool unique, int64_t *moved)
{
	StrBuf arr = {0};
	sb_putc(&arr, '{');
	for (size_t i = 0; i < n; i++)
		sb_printf(&arr, "%s\"%s\"", i ? "," : "", keys[i]);
	sb_putc(&arr, '}');
	AUTOFREE char *base = source_stream_sql(l->src, l->m, false, false, unique);
	/* The stream statement with its WHERE narrowed to the keys being retried. */
	StrBuf kx = {0};
	if (l->m->n_key == 1) {
		AUTOFREE char *q = pg_ident(l->src, l->m->key_cols[0]);
		sb_printf(&kx, "src.%s::text", q);
	} else {
		sb_puts(&kx, "concat_ws('/'");
		for (int k = 0; k < l->m->n_key; k++) {
			AUTOFREE char *q = pg_ident(l->src, l->m->key_cols[k]);
			sb_printf(&kx, ", src.%s", q);
		}
		sb_puts(&kx, ")");
	}
	const char *where = strstr(base, " WHERE ");
	StrBuf sql = {0};
	sb_put(&sql, base, (size_t)(where - base) + 7);
	sb_printf(&sql, "%s = ANY(current_setting('edumig.retry_keys')::text[]) AND %s", sb_str(&kx), where + 7);
	int st = 1;
	if (!pg_set_setting(l->src, "edumig.retry_keys", sb_str(&arr)) || !pg_copy_out_start(l->src, sb_str(&sql))) {
		st = 0;
		goto out;
	}
	char *row;
	int len;
	Key prev = {0};
	bool has_prev = false;
	int64_t seen = 0;
	while ((len = pg_copy_out_row(l->src, &row)) > 0) {
		uint64_t h = fnv1a(row, (size_t)len);
		int nf = copytext_split(row, (size_t)len, l->val, l->len, l->ncols);
		Key key;
		if (nf != l->ncols || !row_key(l, &key)) {
			PQfreemem(row);
			continue;
		}
		/* Extra rows of a duplicated key are accounted as duplicates already. */
		if (has_prev && key_equal(&key, &prev)) {
			PQfreemem(row);
			continue;
		}
		prev = key;
		has_prev = true;
		seen++;
		int f = row_filter(l);
		if (f >= 0) {
			l->b.filtered[f]++;
		} else {
			char kt[KEY_TEXT_MAX];
			key_format(&key, kt);
			RowInput in = {.val = l->val, .len = l->len, .key = &key, .key_text = kt, .hash = h};
			if (!rules_apply(&l->rc, &in, &l->b))
				l->b.skipped++;
		}
		PQfreemem(row);
	}
	if (len < 0) {
		st = 0;
		goto out;
	}
	/* Every re-read key was counted as skipped; the batch now says what each became. */
	int64_t before = l->cp.migrated;
	l->cp.skipped -= seen;
	l->sink.resolve_keys = sb_str(&arr);
	if (!sink_write_batch(&l->sink, &l->b, &l->cp))
		st = 0;
	l->sink.resolve_keys = NULL;
	*moved += l->cp.migrated - before;
	batch_reset(&l->b);
out:
	sb_free(&arr);
	sb_free(&kx);
	sb_free(&sql);
	return st;
}

WorkResult worker_retry_entity(PgConn *src, PgConn *tgt, const Config *cfg, int entity, int64_t run_id,
			       const WorkerOptions *o, const char *reason, bool cascade, int64_t *retried,
			       int64_t *migrated)
{
	Loop l = {.src = src, .tgt = tgt, .cfg = cfg, .m = &cfg->mappings[entity], .entity = entity, .o = o,
		  .total = -1};
	WorkResult res = WORK_FAILED;
	*retried = *migrated = 0;
	if (!checkpoint_load(tgt, l.m, 0, &l.cp))
		return WORK_FAILED;
	if (!l.cp.done) {
		log_info("%s: not finished yet: run it first (retry re-reads rows of finished entities)", l.m->entity);
		checkpoint_free(&l.cp);
		return WORK_OK;
	}
	size_t n = 0;
	char **keys = retry_keys(&l, reason, cascade, &n);
	if (!keys && n) {
		checkpoint_free(&l.cp);
		return WORK_FAILED;
	}
	l.sets = xcalloc(cfg->n_mappings, sizeof *l.sets);
	l.ncols = (int)l.m->n_src_cols + 1;
	l.val = xcalloc((size_t)l.ncols, sizeof *l.val);
	l.len = xcalloc((size_t)l.ncols, sizeof *l.len);
	batch_init(&l.b, l.m->n_filters);
	sink_init(&l.sink, tgt, cfg, entity, 0, run_id);
	l.sink.dry_run = o->dry_run;
	l.sink.sets = l.sets;
	bool unique = false;
	if (n == 0) {
		res = WORK_OK;
		goto out;
	}
	if (!load_sets(&l) || !source_key_unique(src, l.m, &unique))
		goto out;
	l.env = txenv_create(cfg->lookups, cfg->namespace_uuid);
	rulectx_init(&l.rc, cfg, entity, l.sets, l.env);
	l.t0 = now_s();
	l.secs_before = l.cp.seconds;
	/* Chunks keep the key list handed to the source (a setting) small. */
	for (size_t i = 0; i < n; i += 5000) {
		size_t k = n - i < 5000 ? n - i : 5000;
		if (!retry_chunk(&l, keys + i, k, unique, migrated))
			goto out;
	}
	*retried = (int64_t)n;
	log_info("%s: %zu skipped row%s re-read, %" PRId64 " now migrated", l.m->entity, n, n == 1 ? "" : "s",
		 *migrated);
	res = WORK_OK;
out:
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	loop_free(&l);
	return res;
}
