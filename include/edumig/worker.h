/*
 * include/edumig/worker.h — one entity's batch loop: read, transform, write, checkpoint.
 */
#ifndef EDUMIG_WORKER_H
#define EDUMIG_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/config.h"
#include "edumig/pg.h"

typedef struct WorkerOptions {
	int batch_size;
	bool max_skips_set;
	bool max_skips_pct;       /* max_skips is a percentage of rows read */
	double max_skips;
	bool dry_run;             /* batches are savepoints of one transaction rolled back at the end */
	int retries;              /* transient target failures retried per batch, with backoff */
	bool update;              /* delta runs: rewrite rows whose source changed since they moved */
	bool apply_deletes;       /* delta runs: remove target rows whose legacy row is gone */
	int jobs;                 /* >1: entities side by side, a writer thread, bcrypt on N threads */
	bool lock_elsewhere;      /* a child process: the parent holds the phase lock (no re-lock) */
	int go_fd;                /* >= 0: start the source stream, then wait for a byte here (the
	                           * parents it refers to are done) before loading their id sets */
} WorkerOptions;

typedef enum WorkResult {
	WORK_OK = 0,
	WORK_STOPPED = 1,         /* --max-skips exceeded: the batch committed, the run stops */
	WORK_FAILED = 3,          /* server or connection error: the batch rolled back */
} WorkResult;

WorkResult worker_run_entity(PgConn *src, PgConn *tgt, const Config *cfg, int entity, int64_t run_id,
			     const WorkerOptions *o);

/**
 * worker_retry_entity - re-read the entity's skipped rows from the current source and
 * migrate those that now pass; their older skip rows are kept, marked resolved by this run.
 * @reason:  only rows skipped for this reason (NULL: any retryable reason)
 * @cascade: only rows whose skip names a cause (parent) that is migrated by now
 * @retried, @migrated: how many keys were re-read, and how many of them moved
 */
WorkResult worker_retry_entity(PgConn *src, PgConn *tgt, const Config *cfg, int entity, int64_t run_id,
			       const WorkerOptions *o, const char *reason, bool cascade, int64_t *retried,
			       int64_t *migrated);

#endif /* EDUMIG_WORKER_H */
