/*
 * src/idmap.c — keys, UUIDv5 and the open-addressing id sets (see idmap.h).
 */
#include "edumig/idmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "edumig/mem.h"

bool key_int(const char *s, int64_t *out)
{
	/* Strict: an optional minus and digits only, so a key's text always round-trips. */
	if (!s || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end != '\0')
		return false;
	*out = (int64_t)v;
	return true;
}

bool key_parse(const char *text, Key *out)
{
	memset(out, 0, sizeof *out);
	if (strcmp(text, "unknown") == 0)
		return true;
	char buf[KEY_TEXT_MAX];
	if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf)
		return false;
	/* Every '/'-separated piece must be an integer: "1/", "/1" and "1//2" are malformed
	 * (strtok_r would skip the empty pieces and accept them). */
	for (char *tok = buf;;) {
		char *slash = strchr(tok, '/');
		if (slash)
			*slash = '\0';
		if (out->n >= EDUMIG_MAX_KEY_COLS || !key_int(tok, &out->v[out->n]))
			return false;
		out->n++;
		if (!slash)
			return true;
		tok = slash + 1;
	}
}

void key_format(const Key *k, char out[KEY_TEXT_MAX])
{
	if (k->n == 0) {
		snprintf(out, KEY_TEXT_MAX, "unknown");
		return;
	}
	size_t off = 0;
	for (int i = 0; i < k->n; i++)
		off += (size_t)snprintf(out + off, KEY_TEXT_MAX - off, "%s%lld", i ? "/" : "",
					(long long)k->v[i]);
}

bool key_equal(const Key *a, const Key *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (a->v[i] != b->v[i])
			return false;
	return true;
}

int key_compare(const Key *a, const Key *b)
{
	for (int i = 0; i < a->n && i < b->n; i++)
		if (a->v[i] != b->v[i])
			return a->v[i] < b->v[i] ? -1 : 1;
	return (int)a->n - (int)b->n;
}

static const char *const kind_names[] = {"row", "merged", "stub", "skipped"};

const char *id_kind_name(IdKind k)
{
	return kind_names[k];
}

bool id_kind_parse(const char *s, IdKind *out)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, kind_names[i]) == 0) {
			*out = (IdKind)i;
			return true;
		}
	return false;
}

typedef struct Slot {
	Key key;
	unsigned char uuid[16];
	uint64_t row_hash;        /* delta runs: the source row's hash as last migrated/skipped */
	uint8_t kind;
	uint8_t used;
	uint8_t has_hash;
	uint8_t seen;             /* delta runs: the key was met in the source */
	uint8_t skipped_too;      /* a placeholder whose own legacy row was skipped */
} Slot;

struct IdSet {
	Slot *slots;
	size_t cap;   /* power of two */
	size_t count;
};

static uint64_t key_hash(const Key *k)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ k->n;
	for (int i = 0; i < k->n; i++) {
		uint64_t x = (uint64_t)k->v[i] + h;
		x ^= x >> 30;
		x *= 0xbf58476d1ce4e5b9ULL;
		x ^= x >> 27;
		x *= 0x94d049bb133111ebULL;
		x ^= x >> 31;
		h = x;
	}
	return h;
}

IdSet *idset_create(size_t expected)
{
	IdSet *s = znew(IdSet);
	size_t cap = 64;
	while (cap < expected * 2)
		cap *= 2;
	s->cap = cap;
	s->slots = xcalloc(cap, sizeof *s->slots);
	return s;
}

void idset_destroy(IdSet *s)
{
	if (!s)
		return;
	free(s->slots);
	free(s);
}

/* run --jobs: the batch writer thread turns placeholders back while the reader thread looks
 * keys up; one lock for every set then (uncontended, it costs little). */
static bool locking;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void idset_locking(bool on)
{
	locking = on;
}

#define LOCK()                                   \
	do {                                     \
		if (locking)                     \
			pthread_mutex_lock(&lock); \
	} while (0)
#define UNLOCK()                                   \
	do {                                       \
		if (locking)                       \
			pthread_mutex_unlock(&lock); \
	} while (0)

static Slot *find(const IdSet *s, const Key *k)
{
	size_t i = key_hash(k) & (s->cap - 1);
	for (;;) {
		Slot *sl = &s->slots[i];
		if (!sl->used || key_equal(&sl->key, k))
			return sl;
		i = (i + 1) & (s->cap - 1);
	}
}

static void grow(IdSet *s)
{
	Slot *old = s->slots;
	size_t oldcap = s->cap;
	s->cap *= 2;
	s->slots = xcalloc(s->cap, sizeof *s->slots);
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].used)
			*find(s, &old[i].key) = old[i];
	free(old);
}

void idset_put(IdSet *s, const Key *k, const unsigned char uuid[16], IdKind kind)
{
	LOCK();
	if ((s->count + 1) * 10 > s->cap * 7)
		grow(s);
	Slot *sl = find(s, k);
	if (!sl->used) {
		sl->used = 1;
		sl->key = *k;
		s->count++;
	}
	memcpy(sl->uuid, uuid, 16);
	sl->kind = (uint8_t)kind;
	UNLOCK();
}

bool idset_get(const IdSet *s, const Key *k, unsigned char uuid[16], IdKind *kind)
{
	LOCK();
	const Slot *sl = find(s, k);
	bool found = sl->used;
	if (found && uuid)
		memcpy(uuid, sl->uuid, 16);
	if (found && kind)
		*kind = (IdKind)sl->kind;
	UNLOCK();
	return found;
}

void idset_set_hash(IdSet *s, const Key *k, uint64_t row_hash)
{
	Slot *sl = find(s, k);
	if (sl->used) {
		sl->row_hash = row_hash;
		sl->has_hash = 1;
	}
}

void idset_mark_skipped(IdSet *s, const Key *k)
{
	Slot *sl = find(s, k);
	if (sl->used)
		sl->skipped_too = 1;
}

SeenState idset_see(IdSet *s, const Key *k, SeenInfo *info)
{
	Slot *sl = find(s, k);
	if (!sl->used)
		return SEEN_ABSENT;
	SeenState st = sl->seen ? SEEN_AGAIN : SEEN_FIRST;
	sl->seen = 1;
	info->kind = (IdKind)sl->kind;
	info->row_hash = sl->row_hash;
	info->has_hash = sl->has_hash;
	info->skipped_too = sl->skipped_too;
	return st;
}

bool idset_next_unseen(const IdSet *s, size_t *pos, Key *k, unsigned char uuid[16], IdKind *kind)
{
	for (; *pos < s->cap; (*pos)++) {
		const Slot *sl = &s->slots[*pos];
		if (sl->used && !sl->seen) {
			*k = sl->key;
			memcpy(uuid, sl->uuid, 16);
			*kind = (IdKind)sl->kind;
			(*pos)++;
			return true;
		}
	}
	return false;
}

size_t idset_count(const IdSet *s)
{
	return s->count;
}

size_t idset_bytes(const IdSet *s)
{
	return s->cap * sizeof(Slot);
}

void idmap_uuid(const unsigned char ns[16], const char *entity, const Key *k, unsigned char out[16])
{
	char buf[256];
	char kt[KEY_TEXT_MAX];
	key_format(k, kt);
	char *name = buf;
	int n = snprintf(buf, sizeof buf, "%s:%s", entity, kt);
	/* A long entity name must not be cut (nor read past the buffer). */
	if (n >= (int)sizeof buf)
		name = xasprintf("%s:%s", entity, kt);
	uuid_generate_sha1(out, ns, name, (size_t)n);
	if (name != buf)
		free(name);
}
