/*
 * include/edumig/transform.h — value transforms applied to one source value.
 *
 * A mapping column may name a chain of transforms ("trim", {"fn": "date", ...}). A chain is
 * compiled once from its JSON spec and then applied to millions of values, possibly from
 * several worker threads at once: a compiled chain is immutable, and all per-call mutable
 * state (scratch buffers, iconv handles) lives in a TxEnv that belongs to one worker.
 *
 * Pure module: no libpq, no I/O. Lookup tables (e.g. dictionaries) are filled by the engine
 * into a TxLookups registry before the chain runs.
 */
#ifndef EDUMIG_TRANSFORM_H
#define EDUMIG_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edumig/hashpool.h"

struct json_object;

/**
 * TxValue - a growable byte buffer holding one value, or SQL NULL.
 * @data: bytes, always NUL-terminated at data[len] when not null (data may contain NULs
 *        only after base64_decode)
 * @len:  byte length
 * @cap:  allocated size of data
 * @null: true for SQL NULL (data/len are then meaningless)
 *
 * Reused across rows so the hot loop does not allocate; free with txvalue_free().
 */
typedef struct TxValue {
	char *data;
	size_t len;
	size_t cap;
	bool null;
} TxValue;

void txvalue_set(TxValue *v, const char *s, size_t len);   /* copy bytes in, not null */
void txvalue_set_null(TxValue *v);
void txvalue_free(TxValue *v);                            /* frees data, leaves it empty */

/* Outcome of a chain on one value. */
typedef enum TxStatus {
	TX_OK = 0,      /* value produced (may be NULL) */
	TX_WARN = 1,    /* value produced, but changed in a way the data owners must be told */
	TX_INVALID = 2, /* value rejected: the column's on_invalid policy decides what happens */
} TxStatus;

/**
 * TxOutcome - why a chain warned or rejected.
 * @code:   stable snake_case reason code (static string), e.g. "invalid_date",
 *          "not_base64", "map_default", "recoded_text", "control_chars_removed"
 * @step:   index of the step that warned / rejected
 * @detail: human-readable text naming the raw value where that is safe, e.g.
 *          "impossible date '31/02/2001' (formats DD/MM/YYYY, YYYY-MM-DD)". Steps that
 *          handle secrets (base64_decode, bcrypt) never include the value in the detail.
 * Only the first warning of a chain is kept; an INVALID overrides a warning.
 */
typedef struct TxOutcome {
	TxStatus status;
	const char *code;
	int step;
	char detail[512];
} TxOutcome;

/* Lookup tables (name -> key -> value), loaded once per phase by the engine. */
typedef struct TxLookups TxLookups;
TxLookups *txlookups_create(void);
void txlookups_destroy(TxLookups *l);
/* Adds or replaces one entry (value NULL = maps to SQL NULL); false on allocation failure. */
bool txlookups_put(TxLookups *l, const char *table, const char *key, const char *value);
bool txlookups_has_table(const TxLookups *l, const char *table);

/* Per-worker mutable state. */
typedef struct TxEnv TxEnv;
/**
 * txenv_create - state for one worker thread.
 * @lookups:  registry used by "lookup" steps (may be NULL if no chain uses lookups); borrowed
 * @salt_ns:  16-byte namespace from which bcrypt salts are derived (see bcrypt below); copied
 * Free with txenv_destroy().
 */
TxEnv *txenv_create(const TxLookups *lookups, const unsigned char salt_ns[16]);
void txenv_destroy(TxEnv *env);
/* run --jobs: bcrypt steps that end their chain queue their secret in @pool (see
 * hashpool.h) instead of hashing; NULL hashes in place again. */
void txenv_set_hashpool(TxEnv *env, HashPool *pool);
/* The row being transformed, e.g. "users:220215064909145438"; used to derive bcrypt salts. */
void txenv_set_row_key(TxEnv *env, const char *row_key);

typedef struct TxChain TxChain;

/**
 * txchain_compile - compile a chain from its JSON spec.
 * @spec:   a JSON array of steps; a step is a string ("trim") or an object {"fn": ..., args}
 * @err:    on failure, receives a message starting with the JSON path of the fault relative
 *          to @spec, e.g. `/1/fn: unknown transform "datee"` or `/0/formats/2: unknown date
 *          format token "DDD"`; unknown argument keys are errors too
 * Returns NULL on failure. Free with txchain_free().
 */
TxChain *txchain_compile(struct json_object *spec, char *err, size_t errlen);
void txchain_free(TxChain *c);
size_t txchain_length(const TxChain *c);
/* Lookup table names the chain uses, so `plan` can check they are defined (NULL-terminated,
 * owned by the chain). */
const char *const *txchain_lookup_tables(const TxChain *c);
/* True when a step of the chain handles secrets (base64_decode, bcrypt): callers redact. */
bool txchain_is_sensitive(const TxChain *c);

/**
 * txchain_apply - run the chain on @v in place.
 * Returns the status, also stored in @out. On TX_INVALID, @v is unspecified.
 */
TxStatus txchain_apply(const TxChain *c, TxEnv *env, TxValue *v, TxOutcome *out);

/* Helpers also used by the engine. */
bool tx_utf8_valid(const char *s, size_t len);

#endif /* EDUMIG_TRANSFORM_H */
