/*
 * include/edumig/control.h — edumig's own tables in the target (schema "edumig"): runs,
 * checkpoints, the persistent id map and the skip log.
 */
#ifndef EDUMIG_CONTROL_H
#define EDUMIG_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/config.h"
#include "edumig/idmap.h"
#include "edumig/pg.h"

/**
 * Checkpoint - progress of one entity partition, as committed with its last batch.
 * @filtered: rows per filter of the mapping (same order as Mapping.filters)
 */
typedef struct Checkpoint {
	bool exists;
	bool streamed;            /* every source row is in; only deferred references remain */
	bool done;
	bool has_last_key;
	char last_key[KEY_TEXT_MAX];
	int64_t read, migrated, warned, merged, skipped, stubs, batches;
	/* Delta runs: migrated/skipped rows the source no longer has (until --apply-deletes),
	 * changed rows waiting for --update, rows rewritten by --update so far. */
	int64_t gone, changed, updated;
	int64_t *filtered;
	size_t n_filters;
	double seconds;
} Checkpoint;

/* Creates or upgrades the control schema; idempotent. */
bool control_ensure(PgConn *t);
/* True when the control schema exists (status/verify/report must not create it). */
bool control_exists(PgConn *t, bool *exists);

/* Registers a run; its id goes to @run_id. */
bool control_run_start(PgConn *t, const char *command, int phase, const char *config_hash, int64_t *run_id);
bool control_run_finish(PgConn *t, int64_t run_id, const char *status, const char *message);

/* ANALYZE the id map and skips when @phase has checkpoints (a resume or delta run). */
bool control_refresh_stats(PgConn *t, int phase);
/* Takes the per-phase advisory lock on the target session, or names who holds it. */
bool control_lock_phase(PgConn *t, int phase);
void control_unlock_phase(PgConn *t, int phase);

void checkpoint_init(Checkpoint *cp, size_t n_filters);
void checkpoint_free(Checkpoint *cp);
bool checkpoint_load(PgConn *t, const Mapping *m, int part, Checkpoint *cp);
bool checkpoint_create(PgConn *t, const Mapping *m, int part);
/* The UPDATE that advances a checkpoint, run inside the batch's transaction. */
bool checkpoint_store(PgConn *t, const Mapping *m, int part, const Checkpoint *cp);
/* Filter counts as a JSON object text, e.g. {"inactive":12}. */
char *checkpoint_filtered_json(const Mapping *m, const Checkpoint *cp);

/**
 * control_load_idset - the id map of @entity (rows, merges, stubs) plus its unresolved error
 * skips (as ID_SKIPPED), streamed with COPY into a new IdSet; with @hashes, each key's
 * source-row hash too (for delta runs).
 */
IdSet *control_load_idset(PgConn *t, const char *entity, bool hashes);

#endif /* EDUMIG_CONTROL_H */
