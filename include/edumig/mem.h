/*
 * include/edumig/mem.h — allocation that never returns NULL, and scoped cleanup.
 *
 * Out of memory is the one failure we do not try to recover from: a half-built batch is
 * rolled back by the server when the process dies, and a resume starts from the last
 * committed checkpoint, so aborting loses nothing.
 */
#ifndef EDUMIG_MEM_H
#define EDUMIG_MEM_H

#include <stddef.h>
#include <stdlib.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/* Grows an array of @count elements of @size bytes to hold at least @need; returns it. */
void *xgrow(void *p, size_t *cap, size_t need, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string; free with free(). */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define znew(type) ((type *)xcalloc(1, sizeof(type)))
#define zfree(p) do { free(p); (p) = NULL; } while (0)

static inline void autofree_cleanup(void *p) { free(*(void **)p); }
/* A char * (or any heap pointer) freed when it goes out of scope. */
#define AUTOFREE __attribute__((cleanup(autofree_cleanup)))

/* Hands a scoped pointer out: the scope will then free NULL. */
static inline void *steal_pointer(void *pp)
{
	void **p = (void **)pp;
	void *r = *p;
	*p = NULL;
	return r;
}

#endif /* EDUMIG_MEM_H */
