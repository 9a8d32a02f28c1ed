/*
 * src/worker.c — one entity's batch loop (see worker.h).
 *
 * Memory holds one batch plus the id sets of the entity's parents; the source is a COPY
 * stream, so the size of the table being copied never matters. Rows of one key are never
 * split across batches: a batch closes only where the key changes, which is what makes
 * "resume after the last committed key" exact.
 */
#include "edumig/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "edumig/batch.h"
#include "edumig/control.h"
#include "edumig/copytext.h"
#include "edumig/delta.h"
#include "edumig/hashpool.h"
#include "edumig/idmap.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/rules.h"
#include "edumig/sink.h"
#include "edumig/source.h"
#include "edumig/sourcestream.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
	/* Delta runs (an entity done before): every source row is compared with the id map. */
	bool delta;
	Batch ub;                 /* rewrites of changed rows and replaced placeholders */
	Sink usink;
	StrBuf reread;            /* text[] of the earlier-skipped keys the insert batch re-reads */
	int64_t *scan_filtered;   /* rows of unknown keys that match each filter, this scan */
	int64_t changed;          /* changed rows left as they are (no --update) */
	int64_t updated_before;
	SeenInfo seen;            /* what the id map said about the row being classified */
	int64_t b_filtered;       /* rows of the open batch left out by a filter */
	bool unique;              /* the source key is declared unique */
	StrBuf ureread;           /* text[] of the skipped keys behind placeholders the update batch re-reads */
	HashPool *pool, *upool;   /* --jobs: bcrypt secrets of the insert and update batches */
	struct Writer *w;         /* --jobs: the thread writing the previous batch, or NULL */
	bool sets_loaded;
	bool source_lost;         /* a part of the last stream lost its connection */
} Loop;

/*
 * run --jobs N (N > 1): while batch k is written to the target by a thread of its own, the
 * reader goes on with batch k+1. Batches still commit one at a time and in key order, each
 * with its checkpoint, so exactly-once and resume are what they are without it; the reader
 * touches the target connection and the checkpoint only after joining the writer.
 */
typedef struct Writer {
	pthread_t tid;
	bool running;
	bool ok;
	Batch b;
	HashPool *pool;
} Writer;

/* Releases what an entity's loop holds (run and retry alike). */
static bool writer_join(Loop *l);

static void loop_free(Loop *l)
{
	if (l->w) {
		writer_join(l);
		batch_free(&l->w->b);
		hashpool_destroy(l->w->pool);
		free(l->w);
		idset_locking(false);
	}
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
	if (l->delta) {
		batch_free(&l->ub);
		sink_free(&l->usink);
	}
	sb_free(&l->reread);
	sb_free(&l->ureread);
	hashpool_destroy(l->pool);
	hashpool_destroy(l->upool);
	free(l->scan_filtered);
	checkpoint_free(&l->cp);
}

/* Loads the id sets the mapping's references (and merges, and delta runs) need. */
static bool load_sets(Loop *l)
{
	l->sets_loaded = true;
	/* The entity's own set first: a delta run needs its hashes, which a self-reference's
	 * load would leave out. */
	if ((l->m->merge || l->delta) && !l->sets[l->entity]) {
		l->sets[l->entity] = control_load_idset(l->tgt, l->m->entity, l->delta);
		if (!l->sets[l->entity])
			return false;
	}
	for (size_t c = 0; c < l->m->n_cols; c++) {
		const ColumnRule *r = &l->m->cols[c];
		if (r->kind != RULE_REF || l->sets[r->ref_entity_index])
			continue;
		const char *pe = l->cfg->mappings[r->ref_entity_index].entity;
		l->sets[r->ref_entity_index] = control_load_idset(l->tgt, pe, false);
		if (!l->sets[r->ref_entity_index])
			return false;
		log_debug("%s: %zu keys of %s loaded (%zu KiB)", l->m->entity,
			  idset_count(l->sets[r->ref_entity_index]), pe,
			  idset_bytes(l->sets[r->ref_entity_index]) / 1024);
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
static bool write_batch_to(Loop *l, Sink *sink, Batch *b)
{
	int64_t batches = l->cp.batches;
	for (int attempt = 0;; attempt++) {
		if (sink_write_batch(sink, b, &l->cp))
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
			if (!l->o->lock_elsewhere && !control_lock_phase(l->tgt, l->m->phase))
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

/* Writes the insert batch and, in a delta run, the update batch (each its own transaction:
 * a delta run is idempotent, so what one of them committed is simply not found changed
 * again). */
/*
 * Writes @b through @sink. @keys is an open text[] literal ("{\"1\",\"2\"", or empty) of the
 * earlier-skipped keys the batch reads again: their old skips are resolved with it. Emptied
 * once written; left open for the next attempt otherwise.
 */
static bool write_resolving(Loop *l, Sink *sink, Batch *b, StrBuf *keys)
{
	if (keys->len) {
		sb_putc(keys, '}');
		sink->resolve_keys = keys->data;
	}
	bool ok = write_batch_to(l, sink, b);
	sink->resolve_keys = NULL;
	if (ok)
		sb_reset(keys);
	else if (keys->len)
		keys->data[--keys->len] = '\0';
	return ok;
}

static bool write_batch(Loop *l)
{
	/* Every bcrypt hash of the batch, on every core, before any of it is sent. */
	if (l->pool) {
		if (!hashpool_run(l->pool, l->b.lines.data, l->b.lines.len) ||
		    !hashpool_run(l->upool, l->ub.lines.data, l->ub.lines.len))
			return false;
		/* The hashing is the entity's work: the seconds stored with the batch include it. */
		l->cp.seconds = l->secs_before + (now_s() - l->t0);
	}
	bool ok = (l->b.read == 0 && l->b.n_rows == 0 && l->b.n_issues == 0 && l->b.reread_skipped == 0 && l->delta) ||
		  write_resolving(l, &l->sink, &l->b, &l->reread);
	if (ok && l->delta && (l->ub.n_rows || l->ub.n_issues || l->ub.reread_skipped)) {
		ok = write_resolving(l, &l->usink, &l->ub, &l->ureread);
		if (ok)
			batch_reset(&l->ub);
	}
	return ok;
}

static void *writer_main(void *arg)
{
	Loop *l = arg;
	Writer *w = l->w;
	w->ok = !w->pool || hashpool_run(w->pool, w->b.lines.data, w->b.lines.len);
	if (w->ok) {
		l->cp.seconds = l->secs_before + (now_s() - l->t0);
		w->ok = write_batch_to(l, &l->sink, &w->b);
	}
	return NULL;
}

/*
 * Waits for the writer. A placeholder it removed again (no row of its batch that needed it
 * landed) may be needed by a row of the batch read meanwhile: that batch gets it back.
 */
static bool writer_join(Loop *l)
{
	Writer *w = l->w;
	if (!w || !w->running)
		return true;
	pthread_join(w->tid, NULL);
	w->running = false;
	for (size_t k = 0; w->ok && k < w->b.n_stubs; k++) {
		Stub *st = &w->b.stubs[k];
		if (!st->dropped || st->rejected)
			continue;
		char ut[37];
		uuid_unparse_lower(st->uuid, ut);
		if (!l->b.lines.len || !memmem(l->b.lines.data, l->b.lines.len, ut, 36))
			continue;
		bool have = false;
		for (size_t j = 0; j < l->b.n_stubs && !have; j++)
			have = l->b.stubs[j].entity == st->entity && key_equal(&l->b.stubs[j].key, &st->key);
		if (!have) {
			l->b.stubs = xgrow(l->b.stubs, &l->b.cap_stubs, l->b.n_stubs + 1, sizeof *l->b.stubs);
			Stub *n = &l->b.stubs[l->b.n_stubs++];
			memset(n, 0, sizeof *n);
			n->rule = st->rule;
			n->entity = st->entity;
			n->key = st->key;
			memcpy(n->uuid, st->uuid, 16);
			n->line = xstrdup(st->line);
		}
		idset_put(l->sets[st->entity], &st->key, st->uuid, ID_STUB);
	}
	batch_reset(&w->b);
	return w->ok;
}

/* Hands the open batch to the writer thread (after the previous one is in). */
static int flush_async(Loop *l)
{
	Writer *w = l->w;
	if (!writer_join(l))
		return 0;
	progress(l, false);
	if (over_threshold(l)) {
		stop_message(l);
		return 2;
	}
	Batch t = w->b;
	w->b = l->b;
	l->b = t;
	HashPool *p = w->pool;
	w->pool = l->pool;
	l->pool = p;
	if (l->pool)
		txenv_set_hashpool(l->env, l->pool);
	l->b_filtered = 0;
	w->running = true;
	if (pthread_create(&w->tid, NULL, writer_main, l) != 0) {
		/* No thread: written here, as without --jobs. */
		writer_main(l);
		w->running = false;
		bool ok = w->ok;
		batch_reset(&w->b);
		return ok ? 1 : 0;
	}
	return 1;
}

/* Commits the batch. Returns 1 committed, 0 failed, 2 committed but --max-skips exceeded. */
static int flush(Loop *l)
{
	if (l->w)
		return flush_async(l);
	l->cp.seconds = l->secs_before + (now_s() - l->t0);
	if (!write_batch(l))
		return 0;
	batch_reset(&l->b);
	l->b_filtered = 0;
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

typedef enum DeltaClass {
	DELTA_NEW,                /* a key the id map has never heard of: migrated as in any run */
	DELTA_SAME,               /* met before and unchanged (or a further row of such a key) */
	DELTA_UPDATE,             /* changed since it migrated, or a placeholder's real row: rewritten */
	DELTA_REREAD,             /* skipped before and changed since (or its cause moved): read again */
	DELTA_MAYBE,              /* migrated, and this row differs; with a non-unique key a later row
	                           * of the key may be the one that migrated: decided at the next key */
} DeltaClass;

/* Where a source row of a delta run goes, from its key's state in the id map and skip log. */
static DeltaClass delta_class(Loop *l, const Key *key, uint64_t h, int filter)
{
	SeenInfo si;
	SeenState st = idset_see(l->sets[l->entity], key, &si);
	l->seen = si;
	if (st == SEEN_ABSENT)
		return DELTA_NEW;
	if (st == SEEN_AGAIN)
		return DELTA_SAME;
	if (si.kind == ID_STUB && !si.skipped_too)
		/* The legacy row a placeholder stood for has arrived. */
		return filter >= 0 ? DELTA_SAME : DELTA_UPDATE;
	if (si.has_hash && si.row_hash == h)
		return DELTA_SAME;
	if (si.kind == ID_SKIPPED || si.kind == ID_STUB) {
		/* Skipped before (a placeholder may stand in for it); changed, or its cause moved. */
		if (!l->o->update) {
			l->changed++;
			return DELTA_SAME;
		}
		return si.kind == ID_STUB ? DELTA_UPDATE : DELTA_REREAD;
	}
	if (!l->unique)
		return DELTA_MAYBE;
	/* A migrated row that now matches a filter stays as it is, counted as changed. */
	if (!l->o->update || filter >= 0) {
		l->changed++;
		return DELTA_SAME;
	}
	return DELTA_UPDATE;
}

/* Runs the rules on a changed row into the update batch. */
static void apply_update(Loop *l, const RowInput *in)
{
	size_t rows_before = l->ub.n_rows, issues_before = l->ub.n_issues;
	bool upgrade = l->seen.kind == ID_STUB;
	bool ok = rules_apply(&l->rc, in, &l->ub);
	if (l->ub.n_rows > rows_before)
		l->ub.rows[rows_before].upgrade = upgrade;
	if (upgrade) {
		/* The legacy row a placeholder stood for: a new row in every respect, or one
		 * skipped before and read again. */
		if (l->seen.skipped_too) {
			sb_array_item(&l->ureread, in->key_text);
			l->ub.reread_skipped++;
		} else {
			l->ub.read++;
			l->read_this_run++;
		}
		if (!ok)
			l->ub.skipped++;
		return;
	}
	if (ok)
		return;
	/* The new version does not pass: the target keeps the old one, and the owners hear why. */
	for (size_t k = issues_before; k < l->ub.n_issues; k++) {
		Issue *i = &l->ub.issues[k];
		if (i->severity == SEV_ERROR)
			issue_refuse_update(i);
		else
			i->dropped = true;
	}
}

/* Tags the issues and row just added to @b with the row's owning unit (for split reports). */
static void tag_owner(Loop *l, Batch *b, size_t issues_before, size_t rows_before)
{
	if (l->m->owner_col < 0)
		return;
	const char *ov = l->val[l->m->owner_col];
	int64_t ok_;
	if (!ov || !key_int(ov, &ok_))
		return;
	for (size_t k = issues_before; k < b->n_issues; k++) {
		b->issues[k].owner_entity = l->m->owner_entity;
		b->issues[k].owner_key = xstrdup(ov);
	}
	if (b->n_rows > rows_before)
		snprintf(b->rows[rows_before].owner, sizeof b->rows[rows_before].owner, "%s", ov);
}

/*
 * A DELTA_MAYBE row whose key's other rows did not include the migrated one: it is the
 * changed row. @raw is its COPY text, split here again.
 */
static void settle_changed(Loop *l, StrBuf *raw, const Key *key, uint64_t h, const SeenInfo *seen)
{
	copytext_split(raw->data, raw->len, l->val, l->len, l->ncols);
	int f = row_filter(l);
	if (!l->o->update || f >= 0) {
		l->changed++;
		return;
	}
	char kt[KEY_TEXT_MAX];
	key_format(key, kt);
	RowInput in = {.val = l->val, .len = l->len, .key = key, .key_text = kt, .hash = h};
	size_t issues_before = l->ub.n_issues, rows_before = l->ub.n_rows;
	l->seen = *seen;
	if (l->pool)
		txenv_set_hashpool(l->env, l->upool);
	apply_update(l, &in);
	for (size_t k = issues_before; k < l->ub.n_issues; k++) {
		l->ub.issues[k].row_hash = h;
		l->ub.issues[k].has_row_hash = true;
	}
	tag_owner(l, &l->ub, issues_before, rows_before);
}

/* Close the batch only between two keys, so resume never splits a key. Filtered rows are only
 * counted, so they do not fill a batch (a commit per 5000 rows of a stream that is 94% filtered
 * cost grades 10 s), up to 50 batches' worth of them. */
static bool batch_due(const Loop *l, const Key *key, bool has_last, const Key *last)
{
	return (l->b.read - l->b_filtered >= l->o->batch_size || l->b.read >= 50 * (int64_t)l->o->batch_size ||
		(l->delta && l->ub.n_rows >= (size_t)l->o->batch_size)) &&
	       !(has_last && key_equal(key, last));
}

/* Streams the rows; returns 1 done, 0 failed, 2 stopped by --max-skips. */
static int stream(Loop *l, bool null_keys, bool unique)
{
	bool resume = !null_keys && !l->delta && l->cp.has_last_key;
	Key from;
	if (resume && (!key_parse(l->cp.last_key, &from) || from.n != l->m->n_key)) {
		log_error("%s: checkpoint key '%s' does not fit the mapping's %d-column key "
			  "(was the key changed since the last run?)",
			  l->m->entity, l->cp.last_key, l->m->n_key);
		return 0;
	}
	char *row;
	SourceStream ss;
	if (!source_stream_open(&ss, l->src, l->m, resume ? &from : NULL, null_keys, unique))
		return 0;
	/* A delta run compares a filtered row's hash with the id map (it may have moved before);
	 * a first run only counts it: 3.0M of grades' 3.2M rows, neither rebuilt nor hashed. */
	ss.counted_only = !l->delta;
	if (l->o->go_fd >= 0 && !l->sets_loaded) {
		/* The server computes the stream (for grades, 12 s before its first row) while the
		 * entities this one refers to finish; their keys are loaded once they are done. */
		char go;
		ssize_t r;
		double waited = now_s();
		while ((r = read(l->o->go_fd, &go, 1)) < 0 && errno == EINTR)
			;
		/* Waiting for the others is not this entity's work: its seconds leave it out. */
		l->t0 += now_s() - waited;
		if (r != 1) {
			log_error("%s: the run stopped before the entities it refers to were done", l->m->entity);
			source_stream_close(&ss);
			return 0;
		}
		if (!load_sets(l)) {
			source_stream_close(&ss);
			return 0;
		}
	}
	int n;
	int st = 1;
	/* The last key that went through the rules: a second row with it is a duplicate. */
	Key processed = {0}, last = {0};
	bool has_processed = false, has_last = false;
	StrBuf raw = {0};
	/* Delta runs over a non-unique key: the pristine text of the row (splitting is in place),
	 * and a DELTA_MAYBE row waiting for the other rows of its key. */
	bool keep = l->delta && !l->unique && !null_keys;
	StrBuf cur = {0}, pend_raw = {0}, work = {0};
	bool pend = false;
	Key pend_key = {0};
	uint64_t pend_h = 0;
	SeenInfo pend_seen = {0};
	while ((n = source_stream_next(&ss, &row)) > 0) {
		if (!row) {
			Key fk = ss.filt_given_key;
			if (batch_due(l, &fk, has_last, &last)) {
				st = flush(l);
				if (st != 1)
					break;
			}
			l->b.read++;
			l->read_this_run++;
			l->b.filtered[ss.filt_given_index]++;
			l->b_filtered++;
			last = fk;
			has_last = true;
			l->b.last_key = fk;
			l->b.has_last = true;
			continue;
		}
		uint64_t h = delta_row_hash(row, (size_t)n);
		if (null_keys) {
			sb_reset(&raw);
			sb_put(&raw, row, (size_t)n > 500 ? 500 : (size_t)n);
		}
		if (keep) {
			sb_reset(&cur);
			sb_put(&cur, row, (size_t)n);
		}
		int nf = copytext_split(row, (size_t)n, l->val, l->len, l->ncols);
		if (nf != l->ncols) {
			log_error("%s: the source stream has %d columns, expected %d", l->m->entity, nf, l->ncols);
			st = 0;
			break;
		}
		Key key;
		bool has_key = !null_keys && row_key(l, &key);
		int f = row_filter(l);
		DeltaClass dc = DELTA_NEW;
		if (l->delta && !has_key) {
			/* NULL-key rows were accounted by the run that met them (skipped, or filtered:
			 * the filter counts are recounted here); they cannot be told apart. */
			if (f >= 0)
				l->scan_filtered[f]++;
			continue;
		}
		if (pend) {
			if (has_key && key_equal(&key, &pend_key)) {
				/* The key's migrated row is still there, unchanged: nothing changed. */
				if (h == pend_seen.row_hash)
					pend = false;
				continue;
			}
			settle_changed(l, &pend_raw, &pend_key, pend_h, &pend_seen);
			pend = false;
			/* The current row again, split from a copy: cur must stay pristine. */
			sb_reset(&work);
			sb_put(&work, cur.data, cur.len);
			copytext_split(work.data, work.len, l->val, l->len, l->ncols);
		}
		/* A further row of a key this scan just migrated is the duplicate a full run would
		 * find: the normal path records it. */
		if (l->delta && has_key && !(has_processed && key_equal(&key, &processed))) {
			dc = delta_class(l, &key, h, f);
			if (dc == DELTA_MAYBE) {
				StrBuf t = pend_raw;
				pend_raw = cur;
				cur = t;
				pend = true;
				pend_key = key;
				pend_h = h;
				pend_seen = l->seen;
			}
			if (dc == DELTA_SAME || dc == DELTA_MAYBE) {
				continue;
			}
		}
		if (has_key && batch_due(l, &key, has_last, &last)) {
			st = flush(l);
			if (st != 1)
				break;
		}
		Batch *tb = dc == DELTA_UPDATE ? &l->ub : &l->b;
		if (l->pool)
			txenv_set_hashpool(l->env, dc == DELTA_UPDATE ? l->upool : l->pool);
		size_t issues_before = tb->n_issues, rows_before = tb->n_rows;
		char kt[KEY_TEXT_MAX];
		if (has_key)
			key_format(&key, kt);
		RowInput in = {.val = l->val, .len = l->len, .key = &key, .key_text = kt, .hash = h};
		if (dc == DELTA_UPDATE) {
			apply_update(l, &in);
		} else if (dc == DELTA_REREAD) {
			/* Counted as skipped by an earlier run: the batch says what it is now. */
			sb_array_item(&l->reread, kt);
			l->b.reread_skipped++;
			if (f >= 0)
				l->scan_filtered[f]++;
			else if (!rules_apply(&l->rc, &in, &l->b))
				l->b.skipped++;
		} else if (l->delta && f >= 0) {
			/* Filtered rows are not in the id map: a delta run counts them afresh. */
			l->scan_filtered[f]++;
		} else {
			l->b.read++;
			l->read_this_run++;
			if (f >= 0) {
				l->b.filtered[f]++;
				l->b_filtered++;
			} else if (!has_key) {
				add_null_key_row(l, raw.data ? raw.data : "", raw.len);
			} else if (has_processed && key_equal(&key, &processed)) {
				/* A key already migrated: this further row is a duplicate. */
				Issue *i = batch_add_issue(&l->b, kt, -1);
				i->reason = skip_reason_code(REASON_DUPLICATE_SOURCE_KEY);
				i->severity = SEV_ERROR;
				i->detail = xasprintf("%s %s appears on more than one source row; an earlier one migrated",
						      l->m->entity, kt);
				l->b.skipped++;
			} else if (rules_apply(&l->rc, &in, &l->b)) {
				/* Only a row that moves claims its key: when it is skipped, the next
				 * row with the same key still gets its chance. */
				processed = key;
				has_processed = true;
				if (l->delta) {
					/* The rules put it in the entity's set: it is no gone key. */
					SeenInfo si;
					idset_see(l->sets[l->entity], &key, &si);
				}
			} else {
				l->b.skipped++;
			}
		}
		/* The row's hash goes with what is said about it: a delta run re-reads a skipped
		 * row only when its hash changes. */
		for (size_t k = issues_before; k < tb->n_issues; k++) {
			tb->issues[k].row_hash = h;
			tb->issues[k].has_row_hash = true;
		}
		tag_owner(l, tb, issues_before, rows_before);
		if (has_key) {
			last = key;
			has_last = true;
			if (!l->delta) {
				l->b.last_key = key;
				l->b.has_last = true;
			}
		}
	}
	if (n < 0)
		st = 0;
	if (st == 1 && pend)
		settle_changed(l, &pend_raw, &pend_key, pend_h, &pend_seen);
	sb_free(&raw);
	sb_free(&cur);
	sb_free(&pend_raw);
	sb_free(&work);
	l->source_lost = ss.lost;
	/* Drains an interrupted COPY so the connection stays usable. */
	source_stream_close(&ss);
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

/*
 * The end of a delta scan: deferred references of the rows it wrote are resolved, the keys
 * the source no longer has are listed in edumig.source_gone, and the checkpoint takes the
 * scan's filter counts, the gone and changed figures and the recounted warnings. Nothing is
 * written when nothing differs, so a delta run over an unchanged source writes nothing.
 */
static bool delta_finish(Loop *l, bool deferred)
{
	if (deferred) {
		const char *p[] = {l->m->entity};
		AUTOFREE char *pending = NULL;
		if (!pg_query_value(l->tgt, "SELECT count(*) FROM edumig.deferred_refs WHERE entity = $1", 1, p, &pending))
			return false;
		if (strcmp(pending, "0") != 0 && !sink_finish_deferred(&l->sink, &l->cp))
			return false;
	}
	StrBuf gone = {0};
	int64_t n_gone = 0;
	uint64_t digest = 0;
	size_t pos = 0;
	Key k;
	unsigned char u[16];
	IdKind kind;
	while (idset_next_unseen(l->sets[l->entity], &pos, &k, u, &kind)) {
		if (kind == ID_STUB)
			continue;
		char kt[KEY_TEXT_MAX], ut[37];
		key_format(&k, kt);
		uuid_unparse_lower(u, ut);
		sb_printf(&gone, "%s\t%s\t%s\n", kt, id_kind_name(kind), kind == ID_SKIPPED ? "\\N" : ut);
		digest += delta_key_digest(kt);
		n_gone++;
	}
	/* The same gone keys as recorded already need no write. */
	uint64_t stored = 0;
	int64_t n_stored = 0;
	if (!delta_stored_gone(l->tgt, l->m, &stored, &n_stored)) {
		sb_free(&gone);
		return false;
	}
	bool same_filters = true;
	for (size_t f = 0; f < l->m->n_filters; f++)
		same_filters = same_filters && l->scan_filtered[f] == l->cp.filtered[f];
	int64_t changed = l->changed;
	bool ok = true;
	if (!same_filters || n_gone != n_stored || digest != stored || n_gone != l->cp.gone || changed != l->cp.changed ||
	    l->read_this_run || l->cp.updated != l->updated_before) {
		memcpy(l->cp.filtered, l->scan_filtered, l->m->n_filters * sizeof *l->cp.filtered);
		l->cp.gone = n_gone;
		l->cp.changed = changed;
		l->cp.seconds = l->secs_before + (now_s() - l->t0);
		ok = delta_record(l->tgt, l->m, l->sink.run_id, &gone, &l->cp, l->o->dry_run);
	}
	sb_free(&gone);
	if (ok)
		log_info("%s: delta: %" PRId64 " rows read as new (now %" PRId64 " migrated, %" PRId64 " skipped in all), "
			 "%" PRId64 " updated, %" PRId64 " changed and left as they are%s, %" PRId64
			 " gone from the source%s",
			 l->m->entity, l->read_this_run, l->cp.migrated, l->cp.skipped, l->cp.updated - l->updated_before,
			 changed, changed && !l->o->update ? " (run with --update)" : "", n_gone,
			 n_gone ? " (listed by status; removed only by --apply-deletes)" : "");
	return ok;
}

WorkResult worker_run_entity(PgConn *src, PgConn *tgt, const Config *cfg, int entity, int64_t run_id,
			     const WorkerOptions *o)
{
	Loop l = {.src = src, .tgt = tgt, .cfg = cfg, .m = &cfg->mappings[entity], .entity = entity, .o = o,
		  .total = -1};
	WorkResult res = WORK_FAILED;
	if (!checkpoint_load(tgt, l.m, 0, &l.cp))
		return WORK_FAILED;
	if (l.cp.done) {
		/* A delta run: every source row is compared with the id map; new keys migrate,
		 * changed rows are rewritten with --update, keys gone from the source are listed. */
		log_info("%s: done on a previous run (%" PRId64 " migrated, %" PRId64 " skipped); comparing the source "
			 "with the id map%s",
			 l.m->entity, l.cp.migrated, l.cp.skipped, o->update ? " (--update: changed rows are rewritten)" : "");
		l.delta = true;
	}
	if (!l.cp.exists && !checkpoint_create(tgt, l.m, 0)) {
		checkpoint_free(&l.cp);
		return WORK_FAILED;
	}
	if (l.cp.has_last_key && !l.delta)
		log_info("%s: resuming after key %s (batch %" PRId64 ")", l.m->entity, l.cp.last_key, l.cp.batches + 1);
	l.sets = xcalloc(cfg->n_mappings, sizeof *l.sets);
	l.ncols = (int)l.m->n_src_cols + 1;
	l.val = xcalloc((size_t)l.ncols, sizeof *l.val);
	l.len = xcalloc((size_t)l.ncols, sizeof *l.len);
	batch_init(&l.b, l.m->n_filters);
	sink_init(&l.sink, tgt, cfg, entity, 0, run_id);
	l.sink.dry_run = o->dry_run;
	l.sink.sets = l.sets;
	if (l.delta) {
		batch_init(&l.ub, l.m->n_filters);
		sink_init(&l.usink, tgt, cfg, entity, 0, run_id);
		sink_init_update(&l.usink);
		l.usink.dry_run = o->dry_run;
		l.usink.sets = l.sets;
		l.scan_filtered = xcalloc(l.m->n_filters ? l.m->n_filters : 1, sizeof *l.scan_filtered);
	}
	bool unique = false;
	/* With a go signal to wait for, the parents' keys are loaded once the stream is started. */
	bool wait_go = o->go_fd >= 0 && !(l.cp.streamed && !l.cp.done);
	if ((!wait_go && !load_sets(&l)) || !source_key_unique(src, l.m, &unique))
		goto out;
	l.unique = unique;
	l.env = txenv_create(cfg->lookups, cfg->namespace_uuid);
	rulectx_init(&l.rc, cfg, entity, l.sets, l.env);
	if (o->jobs > 1) {
		l.pool = hashpool_create(o->jobs);
		l.upool = hashpool_create(o->jobs);
		if (!l.delta && !o->dry_run) {
			l.w = xcalloc(1, sizeof *l.w);
			batch_init(&l.w->b, l.m->n_filters);
			l.w->pool = hashpool_create(o->jobs);
			idset_locking(true);
		}
	}
	if (log_is_tty() && !l.delta) {
		AUTOFREE char *csql = source_count_sql(src, l.m);
		AUTOFREE char *cnt = NULL;
		if (pg_query_value(src, csql, 0, NULL, &cnt))
			l.total = strtoll(cnt, NULL, 10);
	}
	l.t0 = now_s();
	l.secs_before = l.cp.seconds;
	l.updated_before = l.cp.updated;
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
	/* The last batch handed to the writer is in before anything else happens. */
	if (!writer_join(&l) && st == 1)
		st = 0;
	if (st == 1 && l.delta)
		st = stream(&l, true, unique);
	if (st == 1 && l.delta) {
		l.cp.seconds = l.secs_before + (now_s() - l.t0);
		if (!write_batch(&l) || !delta_finish(&l, deferred))
			goto out;
		res = WORK_OK;
		goto out;
	}
	if (st == 1)
		st = stream(&l, true, unique);
	if (!writer_join(&l) && st == 1)
		st = 0;
	if (st == 0) {
		if (PQstatus(src->conn) != CONNECTION_OK || l.source_lost)
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

/* Keys to retry for the entity, as text (in no particular order). */
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

/* Keys in one retry statement's key list (a setting of some 20 bytes a key). */
#define RETRY_KEYS_PER_STATEMENT 100000

/* Writes the retry batch read so far; @res (an open text[] literal) names the keys whose old
 * skips it resolves: those read into it, and those passed over because the source no longer
 * has them. */
static bool retry_flush(Loop *l, StrBuf *res, int64_t *seen, int64_t *moved)
{
	if (*seen == 0 && res->len == 0)
		return true;
	/* Every re-read key was counted as skipped; the batch now says what each became. */
	int64_t before = l->cp.migrated;
	l->cp.skipped -= *seen;
	if (res->len)
		sb_putc(res, '}');
	l->sink.resolve_keys = res->len ? sb_str(res) : NULL;
	bool ok = sink_write_batch(&l->sink, &l->b, &l->cp);
	l->sink.resolve_keys = NULL;
	*moved += l->cp.migrated - before;
	batch_reset(&l->b);
	sb_reset(res);
	*seen = 0;
	return ok;
}

/* @k as the next element of the text[] literal in @b. */
static void array_key(StrBuf *b, const Key *k)
{
	char kt[KEY_TEXT_MAX];
	key_format(k, kt);
	sb_array_item(b, kt);
}

/*
 * Streams the rows of @keys[0..n) (in key order) in one statement, written in batches of
 * --batch-size keys. One statement per batch ran grades' whole source query again for every
 * 5,000 keys: 52 s for its 15,000 skips at scale 1.0.
 */
static int retry_stream(Loop *l, const Key *keys, size_t n, bool unique, int64_t *moved)
{
	StrBuf arr = {0};
	sb_putc(&arr, '{');
	for (size_t i = 0; i < n; i++)
		array_key(&arr, &keys[i]);
	sb_putc(&arr, '}');
	AUTOFREE char *base = source_stream_sql(l->src, l->m, false, false, unique, STREAM_ALL);
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
	/* The stream's own WHERE is the last one: a source query before it may have its own. */
	const char *where = NULL;
	for (const char *w = base; (w = strstr(w, " WHERE ")) != NULL; w++)
		where = w;
	StrBuf sql = {0}, res = {0};
	sb_put(&sql, base, (size_t)(where - base) + 7);
	/* IN (SELECT unnest ...) is hashed; "= ANY(array)" compared each source row with every
	 * key: hours for grades' 15,000 skips at scale 1.0. */
	sb_printf(&sql, "%s IN (SELECT unnest(current_setting('edumig.retry_keys')::text[])) AND %s", sb_str(&kx),
		  where + 7);
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
	size_t next = 0;          /* keys[next] is the first key not yet met nor passed over */
	while ((len = pg_copy_out_row(l->src, &row)) > 0) {
		uint64_t h = delta_row_hash(row, (size_t)len);
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
		/* A batch closes between two keys. */
		if (seen >= l->o->batch_size && !retry_flush(l, &res, &seen, moved)) {
			PQfreemem(row);
			st = 0;
			break;
		}
		while (next < n && key_compare(&keys[next], &key) < 0)
			array_key(&res, &keys[next++]);
		if (next < n && key_equal(&keys[next], &key))
			next++;
		array_key(&res, &key);
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
	if (st == 0) {
		/* A batch failed: the rest of the stream is drained so the connection stays usable. */
		while (pg_copy_out_row(l->src, &row) > 0)
			PQfreemem(row);
		goto out;
	}
	if (len < 0) {
		st = 0;
		goto out;
	}
	while (next < n)
		array_key(&res, &keys[next++]);
	if (!retry_flush(l, &res, &seen, moved))
		st = 0;
out:
	sb_free(&arr);
	sb_free(&kx);
	sb_free(&sql);
	sb_free(&res);
	return st;
}

static int key_cmp_qsort(const void *a, const void *b)
{
	return key_compare(a, b);
}

WorkResult worker_retry_entity(PgConn *src, PgConn *tgt, const Config *cfg, int entity, int64_t run_id,
			       const WorkerOptions *o, const char *reason, bool cascade, int64_t *retried,
			       int64_t *migrated)
{
	Loop l = {.src = src, .tgt = tgt, .cfg = cfg, .m = &cfg->mappings[entity], .entity = entity, .o = o,
		  .total = -1};
	WorkResult res = WORK_FAILED;
	Key *kv = NULL;
	size_t nk = 0;
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
	/* In the stream's order, so the keys the source no longer has are found in passing; at
	 * most RETRY_KEYS_PER_STATEMENT keys in one statement's key list (a setting). */
	kv = xcalloc(n, sizeof *kv);
	for (size_t i = 0; i < n; i++)
		if (!key_parse(keys[i], &kv[nk]) || kv[nk].n != l.m->n_key)
			log_warn("%s: skipped key '%s' does not fit the mapping's key: not retried", l.m->entity, keys[i]);
		else
			nk++;
	qsort(kv, nk, sizeof *kv, key_cmp_qsort);
	for (size_t i = 0; i < nk; i += RETRY_KEYS_PER_STATEMENT) {
		size_t k = nk - i < RETRY_KEYS_PER_STATEMENT ? nk - i : RETRY_KEYS_PER_STATEMENT;
		if (!retry_stream(&l, kv + i, k, unique, migrated))
			goto out;
	}
	*retried = (int64_t)nk;
	log_info("%s: %zu skipped row%s re-read, %" PRId64 " now migrated", l.m->entity, nk, nk == 1 ? "" : "s",
		 *migrated);
	res = WORK_OK;
out:
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	free(kv);
	loop_free(&l);
	return res;
}
