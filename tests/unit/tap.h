/*
 * tests/unit/tap.h — a tiny TAP producer for the unit tests (meson protocol: 'tap').
 * Each check prints "ok N - what" or "not ok N - what" with the values at fault.
 */
#ifndef EDUMIG_TAP_H
#define EDUMIG_TAP_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int tap_n;
static int tap_failed;

static inline void tap_result(int pass, const char *file, int line, const char *what)
{
	tap_n++;
	if (!pass)
		tap_failed++;
	printf("%s %d - %s\n", pass ? "ok" : "not ok", tap_n, what);
	if (!pass)
		printf("#   at %s:%d\n", file, line);
}

#define TAP_OK(cond, what) tap_result((cond) ? 1 : 0, __FILE__, __LINE__, (what))

#define TAP_STR_EQ(actual, expected, what) do { \
	const char *tap_a_ = (actual), *tap_e_ = (expected); \
	int tap_p_ = (tap_a_ == NULL && tap_e_ == NULL) || \
		(tap_a_ != NULL && tap_e_ != NULL && strcmp(tap_a_, tap_e_) == 0); \
	tap_result(tap_p_, __FILE__, __LINE__, (what)); \
	if (!tap_p_) \
		printf("#   expected: [%s]\n#   actual:   [%s]\n", tap_e_ ? tap_e_ : "(null)", \
		       tap_a_ ? tap_a_ : "(null)"); \
} while (0)

#define TAP_INT_EQ(actual, expected, what) do { \
	long long tap_a_ = (long long)(actual), tap_e_ = (long long)(expected); \
	tap_result(tap_a_ == tap_e_, __FILE__, __LINE__, (what)); \
	if (tap_a_ != tap_e_) \
		printf("#   expected: %lld\n#   actual:   %lld\n", tap_e_, tap_a_); \
} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed == 0 ? 0 : 1;
}

#endif /* EDUMIG_TAP_H */
