/*
 * src/batch.c — batch buffers, reused from one batch to the next.
 */
#include "edumig/batch.h"

#include <string.h>

#include "edumig/mem.h"

void batch_init(Batch *b, size_t n_filters)
{
	memset(b, 0, sizeof *b);
	b->n_filters = n_filters;
	b->filtered = xcalloc(n_filters ? n_filters : 1, sizeof *b->filtered);
}

void batch_reset(Batch *b)
{
	sb_reset(&b->lines);
	b->n_rows = 0;
	for (size_t i = 0; i < b->n_issues; i++) {
		issue_clear(&b->issues[i]);
		free(b->issue_keys[i]);
	}
	b->n_issues = 0;
	for (size_t i = 0; i < b->n_stubs; i++) {
		free(b->stubs[i].line);
		free(b->stubs[i].error);
	}
	b->n_stubs = 0;
	b->n_deferred = 0;
	b->read = b->skipped = b->reread_skipped = 0;
	memset(b->filtered, 0, (b->n_filters ? b->n_filters : 1) * sizeof *b->filtered);
	b->has_last = false;
}

void batch_free(Batch *b)
{
	batch_reset(b);
	sb_free(&b->lines);
	free(b->rows);
	free(b->issues);
	free(b->issue_keys);
	free(b->stubs);
	free(b->deferred);
	free(b->filtered);
	memset(b, 0, sizeof *b);
}

Issue *batch_add_issue(Batch *b, const char *old_key, int row)
{
	size_t cap = b->cap_issues;
	b->issues = xgrow(b->issues, &b->cap_issues, b->n_issues + 1, sizeof *b->issues);
	b->issue_keys = xgrow(b->issue_keys, &cap, b->n_issues + 1, sizeof *b->issue_keys);
	Issue *i = &b->issues[b->n_issues];
	memset(i, 0, sizeof *i);
	i->row = row;
	b->issue_keys[b->n_issues] = old_key ? xstrdup(old_key) : NULL;
	b->n_issues++;
	return i;
}
