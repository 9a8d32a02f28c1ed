/*
 * include/edumig/rollback.h — undo phase N and every later phase.
 */
#ifndef EDUMIG_ROLLBACK_H
#define EDUMIG_ROLLBACK_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/config.h"
#include "edumig/pg.h"

/**
 * rollback_run - remove the target rows, placeholders, id-map rows, skip rows and
 * checkpoints of phases >= @phase, entity by entity in reverse run order.
 * Refuses (returns 1, names them) when rows edumig did not write refer to rows it would
 * remove, unless @force. Returns an exit code: 0 done, 1 refused, 3 server error.
 */
int rollback_run(PgConn *t, const Config *cfg, int phase, bool force);

#endif /* EDUMIG_ROLLBACK_H */
