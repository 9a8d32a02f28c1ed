/*
 * include/edumig/bulk.h — `run --bulk`: the foreign keys and non-unique indexes of a phase's
 * empty target tables are set aside for its load and rebuilt once the phase has finished.
 *
 * What stays live: primary keys, unique constraints and unique indexes, CHECK and NOT NULL
 * (the batch writer relies on the server rejecting duplicates and bad values to isolate
 * rows), and any foreign key whose column edumig does not fill from its own id map (a
 * column written by a rule other than `ref`, by a placeholder template, or by a default).
 *
 * Each definition is saved in edumig.bulk_set_aside in the transaction that drops it, and
 * deleted in the transaction that rebuilds it, so a crash at any instant leaves it either
 * live in the catalog or saved, and it is rebuilt exactly once. A foreign key comes back in
 * two steps: ADD ... NOT VALID (short locks; from then on it checks new rows), then
 * VALIDATE CONSTRAINT; between the two its saved row has state 'not_valid'.
 */
#ifndef EDUMIG_BULK_H
#define EDUMIG_BULK_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/config.h"
#include "edumig/pg.h"

/**
 * bulk_fk_keep_reason - why the single-column foreign key on @column of @schema.@table,
 * referring to @ref_schema.@ref_table (@ref_column), must stay live while edumig loads the
 * table; NULL when every row edumig writes satisfies it by construction (the column is a
 * `ref` rule to an entity whose rows go to the referenced table in every mapping that writes
 * the table, or it is written by none and has no default, so it stays NULL).
 * @has_default: the column has a default value in the target.
 * Returns a malloc'd sentence naming the mapping file and line at fault.
 */
char *bulk_fk_keep_reason(const Config *cfg, const char *schema, const char *table, const char *column,
			  bool has_default, const char *ref_schema, const char *ref_table, const char *ref_column);

/**
 * bulk_set_aside - at the start of phase @ph: for each of its target tables that is empty,
 * save and drop, in one transaction, the foreign keys and indexes that may be set aside;
 * log which tables were set aside, and why the others were not.
 * Returns false only when the target connection is lost. A failure of the transaction
 * itself (a lock not granted in time) is logged; the load then runs with everything live.
 */
bool bulk_set_aside(PgConn *t, const Config *cfg, const Phase *ph, int64_t run_id);

/* Definitions saved for phases @from..@to that wait to be rebuilt; -1 after logging on
 * error; 0 when the control table does not exist (a control schema of an older edumig). */
long long bulk_pending(PgConn *t, int from, int to);

/**
 * bulk_rebuild - rebuild every definition saved for phases @from..@to, one transaction
 * each: indexes with their CREATE INDEX, then foreign keys ADD ... NOT VALID and VALIDATE.
 * A failure is logged with the constraint or index, its table and the server's message;
 * the definition stays saved (its last_error recorded) and the others are still rebuilt.
 * Returns how many could not be rebuilt, or -1 when the connection was lost.
 */
int bulk_rebuild(PgConn *t, int from, int to);

/**
 * bulk_print_pending - one line per saved definition on stdout (verify, status): kind,
 * name, table, phase, state and the last rebuild error. Returns how many, -1 on error.
 */
long long bulk_print_pending(PgConn *t, const char *indent);

#endif /* EDUMIG_BULK_H */
