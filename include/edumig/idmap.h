/*
 * include/edumig/idmap.h — legacy keys, their stable UUIDs, and in-memory id sets.
 *
 * A legacy key is 1 to 3 integers (bigint ids; a composite such as (course_id, eva_id) for
 * groups). Its UUID is UUIDv5(namespace, "entity:key") unless the persistent id map says
 * otherwise (merges), so the id map, not the generator, is the truth. Parent entities'
 * keys are held in IdSets so references resolve without a query per row; an IdSet costs
 * about 48 bytes per key.
 */
#ifndef EDUMIG_IDMAP_H
#define EDUMIG_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edumig/config.h"

/* n == 0 is the "unknown" key: a placeholder parent for rows whose reference is NULL. */
typedef struct Key {
	int64_t v[EDUMIG_MAX_KEY_COLS];
	uint8_t n;
} Key;

#define KEY_TEXT_MAX 72

/* Parses "12", "12/3", or "unknown"; false when malformed. */
bool key_parse(const char *text, Key *out);
/* Formats as key_parse reads it. */
void key_format(const Key *k, char out[KEY_TEXT_MAX]);
/* Parses one integer column value (COPY text); false when not an integer. */
bool key_int(const char *s, int64_t *out);
bool key_equal(const Key *a, const Key *b);
int key_compare(const Key *a, const Key *b);

typedef enum IdKind {
	ID_ROW = 0,      /* migrated row */
	ID_MERGED = 1,   /* folded onto another row's UUID */
	ID_STUB = 2,     /* placeholder created for missing parent */
	ID_SKIPPED = 3,  /* not migrated: skipped with an error (used to name cascade causes) */
} IdKind;

const char *id_kind_name(IdKind k);
bool id_kind_parse(const char *s, IdKind *out);

typedef struct IdSet IdSet;

IdSet *idset_create(size_t expected);
void idset_destroy(IdSet *s);
/* Inserts or replaces. */
void idset_put(IdSet *s, const Key *k, const unsigned char uuid[16], IdKind kind);
/* True when present; fills @uuid / @kind when not NULL. */
bool idset_get(const IdSet *s, const Key *k, unsigned char uuid[16], IdKind *kind);
/* Delta runs: the hash of the key's source row as last written (no-op for an absent key). */
void idset_set_hash(IdSet *s, const Key *k, uint64_t row_hash);
typedef enum SeenState {
	SEEN_ABSENT = 0,          /* not in the set: a key the id map has never heard of */
	SEEN_FIRST = 1,
	SEEN_AGAIN = 2,           /* a further source row of a key met already */
} SeenState;

typedef struct SeenInfo {
	IdKind kind;
	uint64_t row_hash;
	bool has_hash;
	bool skipped_too;         /* a placeholder stands in for the key's own skipped row */
} SeenInfo;

/* Marks @k as met in the source; fills @info unless SEEN_ABSENT. */
SeenState idset_see(IdSet *s, const Key *k, SeenInfo *info);
/* Delta runs: @k (a placeholder) also has an open skip of its own legacy row. */
void idset_mark_skipped(IdSet *s, const Key *k);
/* Iterates over the keys never marked by idset_see; start with *pos = 0. */
bool idset_next_unseen(const IdSet *s, size_t *pos, Key *k, unsigned char uuid[16], IdKind *kind);
size_t idset_count(const IdSet *s);
/* While on, idset_put and idset_get take one process-wide lock (run --jobs: a writer thread). */
void idset_locking(bool on);
size_t idset_bytes(const IdSet *s);

/* UUIDv5(@ns, "@entity:@key"). */
void idmap_uuid(const unsigned char ns[16], const char *entity, const Key *k, unsigned char out[16]);

#endif /* EDUMIG_IDMAP_H */
