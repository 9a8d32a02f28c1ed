/*
 * include/edumig/hashpool.h — bcrypt on every core (run --jobs N).
 *
 * bcrypt is slow on purpose (cost 12: ~0.25 s a hash). With a pool, the bcrypt transform
 * does not hash: it queues the secret with its salt setting and writes a placeholder of the
 * hash's exact length (the setting, then '~', which no bcrypt hash contains). When the batch
 * is complete, the pool hashes the queue on N threads and writes each hash over its
 * placeholder in the batch's COPY text, before anything reaches the target.
 */
#ifndef EDUMIG_HASHPOOL_H
#define EDUMIG_HASHPOOL_H

#include <stdbool.h>
#include <stddef.h>

#define HASHPOOL_HASH_LEN 60   /* "$2b$NN$" + 22 salt + 31 hash characters */

typedef struct HashPool HashPool;

HashPool *hashpool_create(int threads);
void hashpool_destroy(HashPool *p);
/**
 * hashpool_add - queue @phrase (NUL-terminated, at most 72 bytes) for @setting (a "$2b$"
 * setting of 29 characters); @placeholder receives the 60 characters to write in the hash's
 * place. False when @setting is not one.
 */
bool hashpool_add(HashPool *p, const char *setting, const char *phrase, char placeholder[HASHPOOL_HASH_LEN + 1]);
size_t hashpool_pending(const HashPool *p);
/**
 * hashpool_run - hash every queued secret, N at a time, and write each hash over its
 * placeholder in @buf (a placeholder not found belongs to a row that was dropped). The
 * secrets are wiped and the queue emptied. False (logged) when libcrypt fails.
 */
bool hashpool_run(HashPool *p, char *buf, size_t len);

#endif /* EDUMIG_HASHPOOL_H */
