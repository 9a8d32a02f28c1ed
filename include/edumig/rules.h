/*
 * include/edumig/rules.h — apply a mapping's column rules to one source row.
 *
 * Produces the target row as a COPY text line in the batch, or skip-log issues that say
 * why it cannot move; warnings for values that moved changed. No I/O: references resolve
 * from the in-memory id sets, lookups from the TxLookups registry.
 */
#ifndef EDUMIG_RULES_H
#define EDUMIG_RULES_H

#include <stdbool.h>

#include "edumig/batch.h"
#include "edumig/config.h"
#include "edumig/idmap.h"
#include "edumig/strbuf.h"
#include "edumig/transform.h"

typedef struct RuleCtx {
	const Config *cfg;
	const Mapping *m;
	int entity;               /* index of m in cfg->mappings */
	IdSet **sets;             /* per entity index: loaded id sets (parents, and own for merges) */
	TxEnv *env;
	/* scratch, reused per row */
	TxValue v;
	TxValue raw;
	StrBuf tmp;
	StrBuf json;
} RuleCtx;

/* One source row: values by source column index (NULL pointer = SQL NULL). */
typedef struct RowInput {
	char **val;
	size_t *len;
	const Key *key;
	const char *key_text;
	uint64_t hash;
} RowInput;

void rulectx_init(RuleCtx *rc, const Config *cfg, int entity, IdSet **sets, TxEnv *env);
void rulectx_free(RuleCtx *rc);

/**
 * rules_apply - transform @in and add it to @b: a target line and id-map row, or issues.
 * Returns true when the row is migrated (possibly merged, possibly with warnings), false
 * when it is skipped (its issues say why). Stubs it needed are added to @b and to the
 * parent's id set.
 */
bool rules_apply(RuleCtx *rc, const RowInput *in, Batch *b);

/* Columns of the target COPY, in line order: "id", then the rule columns (quoted by caller). */
size_t rules_target_columns(const Mapping *m, const char **out, size_t max);

#endif /* EDUMIG_RULES_H */
