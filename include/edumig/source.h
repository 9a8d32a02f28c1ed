/*
 * include/edumig/source.h — reading the legacy database: one read-only snapshot per phase,
 * rows streamed with COPY in key order (never OFFSET, never a whole table in memory).
 *
 * The stream's columns are the mapping's source columns (Mapping.src_cols) followed by one
 * column giving the index of the first filter the row matches (NULL when none): filtered
 * rows are streamed too, so they are counted, never hidden.
 */
#ifndef EDUMIG_SOURCE_H
#define EDUMIG_SOURCE_H

#include <stdbool.h>

#include "edumig/config.h"
#include "edumig/idmap.h"
#include "edumig/pg.h"

/* BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY: the phase's snapshot. */
bool source_begin(PgConn *s);
/* "(query) AS src" or "schema"."table" AS src */
char *source_from(PgConn *s, const Mapping *m);
/* SELECT count(*) over the whole source of @m. */
char *source_count_sql(PgConn *s, const Mapping *m);
/* Which rows of an entity with filters a stream statement reads. */
typedef enum StreamPart {
	STREAM_ALL,        /* every row: filtered ones with their non-key columns NULL */
	STREAM_KEPT,       /* the rows no filter matches, whole */
	STREAM_FILTERED,   /* the filtered rows: key columns and filter index only */
} StreamPart;

/**
 * source_stream_sql - the COPY statement streaming @m's rows.
 * @resume:    continue after the key stored in settings edumig.k1..k3 (source_set_resume)
 * @null_keys: stream only rows whose key has a NULL (they are skipped, but accounted)
 * @unique:    the key is unique at the source, so no tie-break ordering is needed
 * @part:      STREAM_ALL, or one of the two parts of a split stream (mappings with filters)
 */
char *source_stream_sql(PgConn *s, const Mapping *m, bool resume, bool null_keys, bool unique, StreamPart part);
bool source_set_resume(PgConn *s, const Key *k);
/* True when @m's source is a table with a unique index on exactly its key columns. */
bool source_key_unique(PgConn *s, const Mapping *m, bool *unique);
/**
 * source_check_columns - every column the mapping reads exists in the source, keys are
 * integers; each problem printed as "file:line: ..." and counted in @errors.
 */
bool source_check_columns(PgConn *s, const Mapping *m, int *errors);

#endif /* EDUMIG_SOURCE_H */
