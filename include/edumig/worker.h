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
} WorkerOptions;

typedef enum WorkResult {
	WORK_OK = 0,
	WORK_STOPPED = 1,         /* --max-skips exceeded: the batch committed, the run stops */
	WORK_FAILED = 3,          /* server or connection error: the batch rolled back */
} WorkResult;

WorkResult worker_run_entity(PgConn *src, PgConn *tgt, const Config *cfg, int entity, int64_t run_id,
			     const WorkerOptions *o);

#endif /* EDUMIG_WORKER_H */
