/*
 * src/sourcestream.c — one COPY, or the kept and filtered parts merged by key (see the header).
 */
#include "edumig/sourcestream.h"

#include <stdlib.h>
#include <string.h>

#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/source.h"
#include "edumig/testhook.h"

/* Integer field @pos of a COPY text row (keys are integers: no escapes to undo). */
static bool field_int(const char *row, int len, int pos, int64_t *v)
{
	int i = 0;
	for (int f = 0; f < pos; f++) {
		while (i < len && row[i] != '\t')
			i++;
		if (i++ >= len)
			return false;
	}
	int j = i;
	while (j < len && row[j] != '\t' && row[j] != '\n')
		j++;
	char buf[32];
	if (j - i <= 0 || j - i >= (int)sizeof buf)
		return false;
	memcpy(buf, row + i, (size_t)(j - i));
	buf[j - i] = '\0';
	return key_int(buf, v);
}

/* The key of a row whose key columns are at @pos (a kept row: the mapping's positions; a
 * filtered row: ss->filt_pos). */
static bool row_key_at(const int *pos, int n_key, const char *row, int len, Key *k)
{
	memset(k, 0, sizeof *k);
	k->n = (uint8_t)n_key;
	for (int i = 0; i < n_key; i++)
		if (!field_int(row, len, pos[i], &k->v[i]))
			return false;
	return true;
}

/* A filtered row is "k1 .. kn index", key columns in source-column order: where each one
 * is, worked out once rather than for each of millions of rows. */
static void filtered_layout(SourceStream *ss)
{
	const Mapping *m = ss->m;
	ss->col_key = xcalloc(m->n_src_cols + 1, sizeof *ss->col_key);
	for (size_t c = 0; c < m->n_src_cols; c++)
		ss->col_key[c] = -1;
	for (int i = 0; i < m->n_key; i++) {
		int rank = 0;
		for (int j = 0; j < m->n_key; j++)
			rank += m->key_idx[j] < m->key_idx[i];
		ss->filt_pos[i] = rank;
		ss->col_key[m->key_idx[i]] = rank;
	}
}

/* Sends the statement of one part; the server computes it while the caller goes on. */
static bool send_part(PgConn *c, const Mapping *m, const Key *resume, bool null_keys, bool unique, StreamPart part,
		      char **sql)
{
	if (resume && !source_set_resume(c, resume))
		return false;
	*sql = source_stream_sql(c, m, resume != NULL, null_keys, unique, part);
	log_debug("%s: %s", m->entity, *sql);
	return pg_copy_out_send(c, *sql);
}

bool source_stream_open(SourceStream *ss, PgConn *src, const Mapping *m, const Key *resume, bool null_keys,
			bool unique)
{
	memset(ss, 0, sizeof *ss);
	ss->src = src;
	ss->m = m;
	ss->split = m->n_filters > 0 && unique && !null_keys;
	ss->kept_end = ss->filt_end = true;  /* nothing to drain until a part is under way */
	if (!ss->split) {
		if (!send_part(src, m, resume, null_keys, unique, STREAM_ALL, &ss->kept_sql)) {
			source_stream_close(ss);
			return false;
		}
		ss->kept_end = false;
		ss->pending = true;
		return true;
	}
	filtered_layout(ss);
	AUTOFREE char *snap = NULL;
	if (!pg_query_value(src, "SELECT pg_export_snapshot()", 0, NULL, &snap) || !pg_connect_like(&ss->side, src) ||
	    !pg_join_snapshot(&ss->side, snap) ||
	    !send_part(src, m, resume, false, unique, STREAM_KEPT, &ss->kept_sql)) {
		source_stream_close(ss);
		return false;
	}
	ss->kept_end = false;
	ss->pending = true;
	if (!send_part(&ss->side, m, resume, false, unique, STREAM_FILTERED, &ss->filt_sql)) {
		source_stream_close(ss);
		return false;
	}
	ss->filt_end = false;
	return true;
}

/* Waits for the parts sent by source_stream_open to begin. */
static bool started(SourceStream *ss)
{
	if (!ss->pending)
		return true;
	ss->pending = false;
	bool ok = pg_copy_out_started(ss->src, ss->kept_sql);
	if (!ok)
		ss->kept_end = true;
	if (ss->split && !ss->filt_end && !pg_copy_out_started(&ss->side, ss->filt_sql)) {
		ss->filt_end = true;
		ok = false;
	}
	/* Both parts are sending: a test ends the second one's backend here. */
	if (ss->split)
		testhook_point("stream_parts_started");
	ss->lost = ss->lost || !pg_ok(ss->src) || (ss->split && !pg_ok(&ss->side));
	return ok;
}

/* Fills the head of one part; false on error. */
static bool fill(SourceStream *ss, PgConn *c, char **row, int *len, Key *key, bool *end, bool filtered)
{
	if (*row || *end)
		return true;
	int n = pg_copy_out_row(c, row);
	if (n < 0) {
		*end = true;
		ss->lost = ss->lost || !pg_ok(c);
		return false;
	}
	if (n == 0) {
		*end = true;
		return true;
	}
	*len = n;
	if (!row_key_at(filtered ? ss->filt_pos : ss->m->key_idx, ss->m->n_key, *row, n, key)) {
		log_error("%s: a %s row of the source stream has no integer key: %.80s", ss->m->entity,
			  filtered ? "filtered" : "kept", *row);
		return false;
	}
	return true;
}

/* The row the one statement would give for a filtered row "k1 .. kn index". */
static int rebuild(SourceStream *ss, char **row)
{
	const Mapping *m = ss->m;
	const char *f[EDUMIG_MAX_KEY_COLS + 1];
	int fl[EDUMIG_MAX_KEY_COLS + 1];
	const char *p = ss->filt, *end = ss->filt + ss->filt_len;
	if (end > p && end[-1] == '\n')
		end--;
	for (int i = 0; i <= m->n_key; i++) {
		const char *t = memchr(p, '\t', (size_t)(end - p));
		if (!t)
			t = end;
		f[i] = p;
		fl[i] = (int)(t - p);
		p = t < end ? t + 1 : end;
	}
	sb_reset(&ss->synth);
	for (size_t i = 0; i < m->n_src_cols; i++) {
		int k = ss->col_key[i];
		if (k >= 0)
			sb_put(&ss->synth, f[k], (size_t)fl[k]);
		else
			sb_puts(&ss->synth, "\\N");
		sb_putc(&ss->synth, '\t');
	}
	sb_put(&ss->synth, f[m->n_key], (size_t)fl[m->n_key]);
	sb_putc(&ss->synth, '\n');
	PQfreemem(ss->filt);
	ss->filt = NULL;
	*row = ss->synth.data;
	return (int)ss->synth.len;
}

/* counted_only: the filtered head as its key and filter index, not rebuilt. */
static int hand_out_counted(SourceStream *ss)
{
	int64_t fi;
	if (!field_int(ss->filt, ss->filt_len, ss->m->n_key, &fi) || fi < 0 || (size_t)fi >= ss->m->n_filters) {
		log_error("%s: a filtered row of the source stream has no filter index: %.80s", ss->m->entity, ss->filt);
		return -1;
	}
	ss->filt_given_key = ss->filt_key;
	ss->filt_given_index = (int)fi;
	PQfreemem(ss->filt);
	ss->filt = NULL;
	return 1;
}

int source_stream_next(SourceStream *ss, char **row)
{
	if (ss->given) {
		PQfreemem(ss->given);
		ss->given = NULL;
	}
	*row = NULL;
	if (!started(ss))
		return -1;
	if (!ss->split) {
		int n = pg_copy_out_row(ss->src, row);
		if (n > 0)
			ss->given = *row;
		else
			ss->kept_end = true;
		ss->lost = ss->lost || (n < 0 && !pg_ok(ss->src));
		return n;
	}
	if (!fill(ss, ss->src, &ss->kept, &ss->kept_len, &ss->kept_key, &ss->kept_end, false) ||
	    !fill(ss, &ss->side, &ss->filt, &ss->filt_len, &ss->filt_key, &ss->filt_end, true))
		return -1;
	if (ss->kept_end && ss->filt_end)
		return 0;
	if (ss->filt_end || (!ss->kept_end && key_compare(&ss->kept_key, &ss->filt_key) <= 0)) {
		*row = ss->given = ss->kept;
		ss->kept = NULL;
		return ss->kept_len;
	}
	return ss->counted_only ? hand_out_counted(ss) : rebuild(ss, row);
}

static void drain(PgConn *c)
{
	char *row;
	while (c->conn && pg_copy_out_row(c, &row) > 0)
		PQfreemem(row);
}

void source_stream_close(SourceStream *ss)
{
	started(ss);
	PQfreemem(ss->given);
	PQfreemem(ss->kept);
	PQfreemem(ss->filt);
	ss->given = ss->kept = ss->filt = NULL;
	if (!ss->kept_end)
		drain(ss->src);
	if (ss->split) {
		if (!ss->filt_end)
			drain(&ss->side);
		pg_close(&ss->side);
	}
	ss->kept_end = ss->filt_end = true;
	sb_free(&ss->synth);
	free(ss->col_key);
	ss->col_key = NULL;
	free(ss->kept_sql);
	free(ss->filt_sql);
	ss->kept_sql = ss->filt_sql = NULL;
}
