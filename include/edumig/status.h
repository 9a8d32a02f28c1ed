/*
 * include/edumig/status.h — the per-entity figures that status, verify and report share.
 */
#ifndef EDUMIG_STATUS_H
#define EDUMIG_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/config.h"
#include "edumig/control.h"
#include "edumig/pg.h"
#include "edumig/strbuf.h"

/**
 * EntityStatus - one entity, as its checkpoint and the live source count say.
 * @source:      rows at the source now (SELECT count(*) over the mapping's source)
 * @filtered:    rows left out by the mapping's named filters (per filter in @cp.filtered)
 * @unaccounted: source - filtered - migrated - skipped + gone (cp.gone: rows gone from the source,
 *               still counted as migrated or skipped); 0 when every row is accounted for
 * @state:       "not started", "in progress" or "done"
 */
typedef struct EntityStatus {
	const Mapping *m;
	bool has_cp;
	Checkpoint cp;
	int64_t source;
	int64_t filtered;
	int64_t unaccounted;
	const char *state;
} EntityStatus;

/* Number of entities in the phases, i.e. the length status_collect fills. */
size_t status_entity_count(const Config *cfg);
/* Fills @st (status_entity_count entries, phase order); @control says whether the control
 * schema exists (when it does not, nothing has run yet). Free with status_free. */
bool status_collect(PgConn *s, PgConn *t, const Config *cfg, EntityStatus *st, bool control);
void status_free(EntityStatus *st, size_t n);
/* The figures as the JSON object `status --json` prints (newline-terminated). */
void status_json(const EntityStatus *st, size_t n, StrBuf *out);

#endif /* EDUMIG_STATUS_H */
