/*
 * include/edumig/testhook.h — deterministic crash points for the fault-injection tests.
 *
 * EDUMIG_TEST_KILL="point:N" makes the process SIGKILL itself the N-th time it passes the
 * named point (e.g. "batch_before_commit:3"); EDUMIG_TEST_PAUSE="point:N:S" makes it sleep S
 * seconds there (to hold a run mid-way while a test does something to it; SIGUSR1 ends the
 * pause early). Unset, a point costs one comparison.
 */
#ifndef EDUMIG_TESTHOOK_H
#define EDUMIG_TESTHOOK_H

void testhook_point(const char *name);

#endif /* EDUMIG_TESTHOOK_H */
