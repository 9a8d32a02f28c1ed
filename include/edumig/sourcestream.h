/*
 * include/edumig/sourcestream.h — an entity's source rows, in key order, as the worker reads
 * them: one COPY, or two merged by key.
 *
 * A mapping with filters and a unique key is read in two parts at once: the rows no filter
 * matches, whole, on the phase's source connection, and the filtered rows' keys and filter
 * index on a second connection inside the same snapshot. One statement would have to give a
 * filtered row every column (NULL), and those columns are what the server spends its time
 * on: grades' 3.0M attendance rows of 3.2M took 18 s as one statement against 5 s and 5 s,
 * on two backends side by side, as two. A filtered row is handed out rebuilt exactly as the
 * single statement would give it (key columns in place, \N elsewhere, the filter index
 * last), so row hashes, checkpoints and delta runs cannot tell the two ways apart.
 * Rows sharing a key (no unique key) keep the one statement: their order among themselves
 * is the row text's, which only the server can compare.
 */
#ifndef EDUMIG_SOURCESTREAM_H
#define EDUMIG_SOURCESTREAM_H

#include <stdbool.h>

#include "edumig/config.h"
#include "edumig/idmap.h"
#include "edumig/pg.h"
#include "edumig/strbuf.h"

typedef struct SourceStream {
	PgConn *src;
	PgConn side;              /* the filtered rows' part (split streams only) */
	bool split;
	const Mapping *m;
	char *kept;               /* the head of each part, waiting for its turn, with its key */
	int kept_len;
	Key kept_key;
	bool kept_end;
	char *filt;
	int filt_len;
	Key filt_key;
	bool filt_end;
	char *kept_sql, *filt_sql;
	bool pending;             /* sent, not yet begun: the first row waits for it */
	bool lost;                /* a part failed because its connection is gone */
	char *given;              /* the libpq row handed out last: freed at the next call */
	StrBuf synth;             /* a filtered row, rebuilt */
	int filt_pos[EDUMIG_MAX_KEY_COLS]; /* where each key column is in a filtered row */
	int *col_key;             /* per source column: its place in a filtered row, or -1 */
	/* Set by the caller after opening: a filtered row is handed out as its key and filter
	 * index only (source_stream_next returns it with *row NULL), not rebuilt. A first run has
	 * no use for the rest: the row is only counted, and its hash is never stored. */
	bool counted_only;
	Key filt_given_key;       /* the filtered row handed out last (counted_only) */
	int filt_given_index;
} SourceStream;

/**
 * source_stream_open - start streaming @m's rows from @src (in the phase's snapshot).
 * @resume:    only keys after this one (NULL: from the start)
 * @null_keys: only the rows with a NULL key column (always one statement)
 * @unique:    the key is unique at the source
 * The statements are sent, not waited for: the server computes them while the caller goes
 * on (with --jobs, while the entities this one refers to finish). Logs them at debug level.
 * False (logged) when one cannot be sent; source_stream_close is then done already.
 */
bool source_stream_open(SourceStream *ss, PgConn *src, const Mapping *m, const Key *resume, bool null_keys,
			bool unique);
/* The next row's length with *row set, 0 at the end, -1 on error (logged). The row is valid
 * until the next call, with a NUL after it, so it can be split in place. The first call waits
 * for the statements to begin. With counted_only, a filtered row comes back as 1 with *row
 * NULL, its key and filter index in filt_given_key and filt_given_index. */
int source_stream_next(SourceStream *ss, char **row);
/* Drains whatever is left (an interrupted COPY), closes the second connection. */
void source_stream_close(SourceStream *ss);

#endif /* EDUMIG_SOURCESTREAM_H */
