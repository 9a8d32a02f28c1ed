/*
 * include/edumig/delta.h — what a delta run leaves behind besides rows: the legacy keys
 * the source no longer has (edumig.source_gone), and --apply-deletes, which removes their
 * target rows only when nothing in the target still refers to them.
 */
#ifndef EDUMIG_DELTA_H
#define EDUMIG_DELTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edumig/config.h"
#include "edumig/control.h"
#include "edumig/pg.h"
#include "edumig/strbuf.h"

/**
 * delta_record - in one transaction: replaces the entity's pending rows of
 * edumig.source_gone with @gone (COPY text lines "old_key \t kind \t new_id"), recounts the
 * warned rows into @cp and stores @cp. In a dry run the transaction is a savepoint.
 */
bool delta_record(PgConn *t, const Mapping *m, int64_t run_id, const StrBuf *gone, Checkpoint *cp, bool dry_run);

/* FNV-1a of a source row's COPY text: what id_map.row_hash and skips.row_hash keep. */
uint64_t delta_row_hash(const char *s, size_t n);
/* Order-independent digest of a set of gone keys: the sum of each key text's hash. */
uint64_t delta_key_digest(const char *key_text);
/* The digest and number of the entity's pending gone keys as stored. */
bool delta_stored_gone(PgConn *t, const Mapping *m, uint64_t *digest, int64_t *n);

/**
 * delta_apply_deletes - for the entities of phases @phase_from..@phase_to, children before
 * parents (reverse phase and entity order): removes the target row and id-map row of each
 * pending gone key (merged rows: the id-map row; skipped rows: their skip records are
 * resolved as source_deleted). A row that other target rows still refer to is kept and
 * its outcome says which table and constraint block it. Returns the number blocked, or -1
 * on a server error.
 */
int64_t delta_apply_deletes(PgConn *t, const Config *cfg, int phase_from, int phase_to, int64_t run_id);

#endif /* EDUMIG_DELTA_H */
