/*
 * include/edumig/sink.h — write one batch to the target in one transaction: placeholder
 * parents, target rows (bisected on rejection), id-map rows, skip rows, checkpoint, COMMIT.
 */
#ifndef EDUMIG_SINK_H
#define EDUMIG_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/batch.h"
#include "edumig/config.h"
#include "edumig/control.h"
#include "edumig/idmap.h"
#include "edumig/pg.h"

typedef struct Sink {
	PgConn *t;
	const Config *cfg;
	const Mapping *m;
	int entity;
	int part;
	int64_t run_id;
	bool dry_run;
	char *copy_rows;          /* COPY "schema"."table" ("c1", ...) FROM STDIN */
	StrBuf buf;               /* id-map and skip COPY data */
	StrBuf log;               /* JSON lines for the run log */
	/* Retry: the legacy keys the batch re-reads, as a text[] literal; their older skip rows
	 * are marked resolved by this run in the batch's transaction. NULL outside retry. */
	const char *resolve_keys;
	/* The worker's id sets: placeholders removed again are taken out of their parent's set. */
	IdSet **sets;
	/* Update batches (delta runs with --update): rows rewrite existing target rows (or the
	 * placeholders they replace) through a stage table and an upsert on the id column. */
	bool update;
	char *stage_setup;        /* CREATE TEMP TABLE IF NOT EXISTS ... for rows and id-map rows */
	char *copy_stage;         /* COPY into the rows' stage table */
	char *upsert_rows;        /* INSERT ... SELECT FROM stage ON CONFLICT (id) DO UPDATE */
	char *clear_stage;
	StrBuf resolved;          /* text[] literal of the keys an update batch rewrote */
} Sink;

void sink_init(Sink *s, PgConn *t, const Config *cfg, int entity, int part, int64_t run_id);
/* Turns @s into an update sink (see Sink.update); call after sink_init. */
void sink_init_update(Sink *s);
void sink_free(Sink *s);

/**
 * sink_write_batch - commit @b and the advanced checkpoint @cp atomically.
 * Rows the target rejects are isolated by bisection and become target_rejected skips;
 * @cp's counters are updated from the batch's outcome before it is stored.
 * Returns false on a failure that is not the rows' fault (connection, permissions): the
 * transaction is then rolled back and nothing of the batch is kept.
 */
bool sink_write_batch(Sink *s, Batch *b, Checkpoint *cp);

/**
 * sink_finish_deferred - resolve the entity's deferred self-references in one transaction
 * that also marks @cp done: parents are set from the id map, parents that never arrived
 * warn (missing_reference / parent_skipped), and parent cycles are cut at their lowest key
 * (warning parent_cycle).
 */
bool sink_finish_deferred(Sink *s, Checkpoint *cp);

#endif /* EDUMIG_SINK_H */
