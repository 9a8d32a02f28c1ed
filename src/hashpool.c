/*
 * src/hashpool.c — bcrypt hashes of a batch on N threads (see hashpool.h).
 */
#include "edumig/hashpool.h"

#include <crypt.h>
#include <pthread.h>
#include <string.h>

#include "edumig/log.h"
#include "edumig/mem.h"

#define SETTING_LEN 29

typedef struct Job {
	char setting[SETTING_LEN + 1];
	char phrase[73];
	char placeholder[HASHPOOL_HASH_LEN + 1];
	char hash[HASHPOOL_HASH_LEN + 1];
	bool ok;
} Job;

struct HashPool {
	int threads;
	Job *jobs;
	size_t n, cap;
};

typedef struct Worker {
	HashPool *p;
	size_t first, step;
} Worker;

HashPool *hashpool_create(int threads)
{
	HashPool *p = znew(HashPool);
	p->threads = threads < 1 ? 1 : threads;
	return p;
}

static void wipe(HashPool *p)
{
	if (p->jobs)
		explicit_bzero(p->jobs, p->cap * sizeof *p->jobs);
	p->n = 0;
}

void hashpool_destroy(HashPool *p)
{
	if (!p)
		return;
	wipe(p);
	free(p->jobs);
	free(p);
}

bool hashpool_add(HashPool *p, const char *setting, const char *phrase, char placeholder[HASHPOOL_HASH_LEN + 1])
{
	if (strlen(setting) != SETTING_LEN || strncmp(setting, "$2b$", 4) != 0 || strlen(phrase) > 72)
		return false;
	p->jobs = xgrow(p->jobs, &p->cap, p->n + 1, sizeof *p->jobs);
	Job *j = &p->jobs[p->n++];
	memset(j, 0, sizeof *j);
	memcpy(j->setting, setting, SETTING_LEN);
	strcpy(j->phrase, phrase);
	memcpy(j->placeholder, setting, SETTING_LEN);
	memset(j->placeholder + SETTING_LEN, '~', HASHPOOL_HASH_LEN - SETTING_LEN);
	memcpy(placeholder, j->placeholder, HASHPOOL_HASH_LEN + 1);
	return true;
}

size_t hashpool_pending(const HashPool *p)
{
	return p->n;
}

static void *hash_some(void *arg)
{
	Worker *w = arg;
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	for (size_t i = w->first; i < w->p->n; i += w->step) {
		Job *j = &w->p->jobs[i];
		const char *h = crypt_rn(j->phrase, j->setting, cd, (int)sizeof *cd);
		j->ok = h && strlen(h) == HASHPOOL_HASH_LEN && strncmp(h, "$2b$", 4) == 0;
		if (j->ok)
			memcpy(j->hash, h, HASHPOOL_HASH_LEN);
		explicit_bzero(j->phrase, sizeof j->phrase);
	}
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return NULL;
}

bool hashpool_run(HashPool *p, char *buf, size_t len)
{
	if (p->n == 0)
		return true;
	size_t nt = (size_t)p->threads < p->n ? (size_t)p->threads : p->n;
	pthread_t *tid = xcalloc(nt, sizeof *tid);
	Worker *w = xcalloc(nt, sizeof *w);
	size_t started = 0;
	for (size_t t = 0; t < nt; t++) {
		w[t] = (Worker){.p = p, .first = t, .step = nt};
		/* The calling thread takes the last share itself. */
		if (t + 1 < nt && pthread_create(&tid[t], NULL, hash_some, &w[t]) == 0)
			started = t + 1;
		else if (t + 1 < nt)
			break;
	}
	/* Shares whose thread could not start are done here too. */
	for (size_t t = started; t < nt; t++)
		hash_some(&w[t]);
	for (size_t t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	free(tid);
	free(w);
	bool ok = true;
	/* Placeholders come in queue order: one forward scan finds them all. */
	size_t pos = 0;
	for (size_t i = 0; i < p->n; i++) {
		Job *j = &p->jobs[i];
		if (!j->ok) {
			log_error("bcrypt: libcrypt could not hash a secret with setting %.7s…", j->setting);
			ok = false;
			continue;
		}
		char *at = pos < len ? memmem(buf + pos, len - pos, j->placeholder, HASHPOOL_HASH_LEN) : NULL;
		if (!at)
			at = memmem(buf, len, j->placeholder, HASHPOOL_HASH_LEN);
		if (!at)
			continue;
		memcpy(at, j->hash, HASHPOOL_HASH_LEN);
		pos = (size_t)(at - buf) + HASHPOOL_HASH_LEN;
	}
	wipe(p);
	return ok;
}
