/*
 * tests/fuzz/fuzz_jsonpos.c — libFuzzer harness for the JSON position scanner (src/jsonpos.c).
 *
 * The input is any text, passed with its exact length (no terminator: config.c happens to
 * pass a terminated buffer, the interface does not ask for one). Lines are then looked up for
 * a few fixed pointers, for every duplicate key found, and for a pointer taken from the
 * input's first line. Every line must lie between 1 and the text's line count.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/jsonpos.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(int line, int lines)
{
	if (line < 1 || line > lines)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	int lines = 1;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';

	JsonPos *p = jsonpos_build(text, size);
	if (!p)
		abort();
	static const char *const pointers[] = {
		"", "/", "//", "/0", "/columns", "/columns/id/rule", "/columns/email/transforms/1/fn",
		"/source/key/0", "/phases/0/entities/1", "/a~1b/~0", "/~", "/0/0/0/0/0/0/0/0",
	};
	for (size_t i = 0; i < sizeof pointers / sizeof *pointers; i++)
		check_line(jsonpos_line(p, pointers[i]), lines);
	for (size_t i = 0; i < jsonpos_duplicates(p); i++) {
		int dline = 0;
		const char *ptr = jsonpos_duplicate(p, i, &dline);
		if (!ptr || ptr[0] != '/')
			abort();
		check_line(dline, lines);
		check_line(jsonpos_line(p, ptr), lines);
	}

	/* A pointer from the input itself: its first line, at most 256 bytes. */
	char own[257];
	size_t n = 0;
	while (n < size && n < sizeof own - 1 && data[n] != '\n' && data[n] != '\0')
		n++;
	memcpy(own, data, n);
	own[n] = '\0';
	check_line(jsonpos_line(p, own), lines);
	jsonpos_free(p);

	/* json_offset_line reads up to a NUL or @offset: give it a terminated copy. */
	char *copy = malloc(size + 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	check_line(json_offset_line(copy, size), lines);
	check_line(json_offset_line(copy, size / 2), lines);
	free(copy);
	return 0;
}
