/*
 * tests/fuzz/fuzz_copytext.c — libFuzzer harness for the COPY text codec (src/copytext.c).
 *
 * The input is one COPY row. It is split; each field is escaped again with copytext_put (tabs
 * between, a newline at the end) and that line is split again: the fields must come back
 * identical (same count, same NULLs, same bytes), and escaping them once more must give the
 * same line byte for byte. A split with room for fewer fields must fail exactly when the row
 * has more.
 *
 * Rows are handed over in a buffer one byte longer than the row, ending in NUL, as libpq's
 * PQgetCopyData gives them: copytext_split terminates the last field at line[len].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/copytext.h"
#include "edumig/strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 64

static char *terminated_copy(const void *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Escapes @n fields into @b as one row, newline-terminated. */
static void put_row(StrBuf *b, char **f, const size_t *l, int n)
{
	sb_reset(b);
	for (int i = 0; i < n; i++) {
		if (i)
			sb_putc(b, '\t');
		copytext_put(b, f[i], l[i]);
	}
	sb_putc(b, '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *f1[MAX_FIELDS], *f2[MAX_FIELDS];
	size_t l1[MAX_FIELDS], l2[MAX_FIELDS];

	char *line = terminated_copy(data, size);
	int n1 = copytext_split(line, size, f1, l1, MAX_FIELDS);

	/* Field count and the -1 of too many fields, with a smaller limit. */
	char *small = terminated_copy(data, size);
	char *fs[2];
	size_t ls[2];
	int ns = copytext_split(small, size, fs, ls, 2);
	if (n1 >= 0 && n1 <= 2 && ns != n1)
		abort();
	if ((n1 < 0 || n1 > 2) && ns != -1)
		abort();
	free(small);

	if (n1 < 0) {
		free(line);
		return 0;
	}
	if (n1 == 0)
		abort();   /* even an empty row has one (empty) field */

	StrBuf b1 = {0}, b2 = {0};
	put_row(&b1, f1, l1, n1);
	char *again = terminated_copy(b1.data, b1.len);
	int n2 = copytext_split(again, b1.len, f2, l2, MAX_FIELDS);
	if (n2 != n1)
		abort();
	for (int i = 0; i < n1; i++) {
		if ((f1[i] == NULL) != (f2[i] == NULL))
			abort();
		if (f1[i] && (l1[i] != l2[i] || memcmp(f1[i], f2[i], l1[i]) != 0))
			abort();
		if (f2[i] && f2[i][l2[i]] != '\0')
			abort();
	}
	put_row(&b2, f2, l2, n2);
	if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
		abort();

	sb_free(&b1);
	sb_free(&b2);
	free(again);
	free(line);
	return 0;
}
