/*
 * include/edumig/batch.h — one batch of transformed rows on its way to the target.
 *
 * Target rows are kept as one COPY text buffer with each row's offset, so a batch the
 * target rejects can be re-sent in halves (bisection) without transforming it again.
 */
#ifndef EDUMIG_BATCH_H
#define EDUMIG_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/config.h"
#include "edumig/idmap.h"
#include "edumig/skiplog.h"
#include "edumig/strbuf.h"

typedef struct BatchRow {
	size_t off, len;          /* its line in Batch.lines; len 0 for a merged row */
	Key key;
	unsigned char uuid[16];
	IdKind kind;              /* ID_ROW or ID_MERGED */
	uint64_t hash;            /* of the source row's COPY text, for change detection */
	Key merged_into;
	char owner[KEY_TEXT_MAX]; /* owning unit's legacy key, "" when none (for reports) */
	bool rejected;            /* the target refused it (set by bisection) */
	bool warned;
	bool upgrade;             /* update batches: a placeholder the real legacy row now replaces */
} BatchRow;

/* A placeholder parent created for a missing reference. */
typedef struct Stub {
	const ColumnRule *rule;   /* whose "stub" spec made it (gives the column list) */
	int entity;               /* parent entity index */
	Key key;
	unsigned char uuid[16];
	char *line;               /* COPY text line for the parent table */
	/* Set while writing: the target refused it (its rows are rejected with it), or no row
	 * of the batch that needed it landed (it is removed again). */
	bool rejected;
	bool dropped;
	char *error;              /* why the target refused it */
	char sqlstate[6];
} Stub;

/* A self-reference to resolve once the whole entity is in. */
typedef struct Deferred {
	int row;
	const ColumnRule *rule;
	Key ref;
} Deferred;

typedef struct Batch {
	StrBuf lines;
	BatchRow *rows;
	size_t n_rows, cap_rows;
	Issue *issues;
	size_t n_issues, cap_issues;
	char **issue_keys;        /* old_key text of each issue (parallel to issues) */
	Stub *stubs;
	size_t n_stubs, cap_stubs;
	Deferred *deferred;
	size_t n_deferred, cap_deferred;
	/* Counters of the rows read into this batch. */
	int64_t read, skipped;
	int64_t reread_skipped;   /* rows skipped earlier and read again: their old count goes */
	int64_t *filtered;        /* per filter of the mapping */
	size_t n_filters;
	Key last_key;
	bool has_last;
} Batch;

void batch_init(Batch *b, size_t n_filters);
void batch_reset(Batch *b);
void batch_free(Batch *b);
/* Adds an issue for the row with key text @old_key (may be NULL); returns it zeroed. */
Issue *batch_add_issue(Batch *b, const char *old_key, int row);

#endif /* EDUMIG_BATCH_H */
