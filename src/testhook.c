/*
 * src/testhook.c — SIGKILL at a named point, for crash tests (see testhook.h).
 */
#include "edumig/testhook.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int inited;
static volatile sig_atomic_t woken;
static char point[64];
static long target_n;
static long seen;
static char pause_point[64];
static long pause_n, pause_seen, pause_secs;

/* "point:N" or "point:N:S" into its parts; false when malformed. */
static bool parse_spec(const char *spec, char *name, size_t cap, long *n, long *secs)
{
	const char *c1 = spec ? strchr(spec, ':') : NULL;
	if (!c1 || (size_t)(c1 - spec) >= cap)
		return false;
	memcpy(name, spec, (size_t)(c1 - spec));
	name[c1 - spec] = '\0';
	char *end;
	*n = strtol(c1 + 1, &end, 10);
	*secs = *end == ':' ? strtol(end + 1, NULL, 10) : 0;
	return true;
}

static void wake(int sig)
{
	(void)sig;
	woken = 1;
}

void testhook_point(const char *name)
{
	if (!inited) {
		inited = 1;
		long unused;
		if (!parse_spec(getenv("EDUMIG_TEST_KILL"), point, sizeof point, &target_n, &unused))
			point[0] = '\0';
		if (!parse_spec(getenv("EDUMIG_TEST_PAUSE"), pause_point, sizeof pause_point, &pause_n, &pause_secs))
			pause_point[0] = '\0';
		if (pause_point[0]) {
			/* A test holds the run as long as its checks take, then ends the pause with
			 * SIGUSR1 (no SA_RESTART: the signal interrupts sleep). */
			struct sigaction sa = {0};
			sa.sa_handler = wake;
			sigemptyset(&sa.sa_mask);
			sigaction(SIGUSR1, &sa, NULL);
		}
	}
	if (pause_point[0] && strcmp(pause_point, name) == 0 && ++pause_seen == pause_n) {
		fprintf(stderr, "test hook: pausing %lds at %s #%ld\n", pause_secs, name, pause_seen);
		for (unsigned left = (unsigned)pause_secs; left && !woken;)
			left = sleep(left);
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
