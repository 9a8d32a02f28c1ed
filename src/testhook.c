/*
 * src/testhook.c — SIGKILL at a named point, for crash tests (see testhook.h).
 */
#include "edumig/testhook.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int inited;
static char point[64];
static long target_n;
static long seen;

void testhook_point(const char *name)
{
	if (!inited) {
		inited = 1;
		const char *spec = getenv("EDUMIG_TEST_KILL");
		const char *colon = spec ? strrchr(spec, ':') : NULL;
		if (colon && (size_t)(colon - spec) < sizeof point) {
			memcpy(point, spec, (size_t)(colon - spec));
			point[colon - spec] = '\0';
			target_n = strtol(colon + 1, NULL, 10);
		}
	}
	if (!point[0] || strcmp(point, name) != 0)
		return;
	if (++seen == target_n) {
		fprintf(stderr, "test hook: SIGKILL at %s #%ld\n", name, seen);
		fflush(NULL);
		kill(getpid(), SIGKILL);
		pause();
	}
}
