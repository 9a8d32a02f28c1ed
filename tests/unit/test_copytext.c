/*
 * tests/unit/test_copytext.c — unit tests of the COPY text codec (src/copytext.c): splitting
 * rows into unescaped fields (NULLs, every escape PostgreSQL writes or reads, empty fields,
 * too many fields) and escaping values back, checked by exact bytes and by round trips.
 */
#include "edumig/copytext.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/strbuf.h"
#include "tap.h"

#define MAXF 8

static char *g_f[MAXF];
static size_t g_l[MAXF];
static char g_line[4096];

/* Splits a copy of @row (NUL-terminated text) into g_f/g_l; returns the field count. */
static int split(const char *row, int max)
{
	size_t n = strlen(row);

	memcpy(g_line, row, n + 1);
	for (int i = 0; i < MAXF; i++) {
		g_f[i] = (char *)"(unset)";
		g_l[i] = 999;
	}
	return copytext_split(g_line, n, g_f, g_l, max);
}

/* True when field @i holds exactly @n bytes equal to @want. */
static bool field_is(int i, const char *want, size_t n)
{
	return g_f[i] != NULL && g_l[i] == n && memcmp(g_f[i], want, n) == 0;
}

static void test_plain(void)
{
	TAP_INT_EQ(split("1\tabc\tdef", MAXF), 3, "plain row: 3 fields");
	TAP_STR_EQ(g_f[0], "1", "plain row: field 0");
	TAP_STR_EQ(g_f[1], "abc", "plain row: field 1");
	TAP_STR_EQ(g_f[2], "def", "plain row: field 2");
	TAP_INT_EQ(g_l[1], 3, "plain row: length of field 1");
	TAP_OK(g_f[0] >= g_line && g_f[2] < g_line + sizeof g_line, "plain row: fields point into the line (in place)");

	TAP_INT_EQ(split("42", MAXF), 1, "single field row");
	TAP_STR_EQ(g_f[0], "42", "single field value");

	TAP_INT_EQ(split("a\tb\n", MAXF), 2, "trailing newline is not a field");
	TAP_STR_EQ(g_f[1], "b", "trailing newline is not part of the last field");
	TAP_INT_EQ(g_l[1], 1, "trailing newline: last field length 1");
}

static void test_nulls(void)
{
	TAP_INT_EQ(split("1\t\\N\tx\n", MAXF), 3, "\\N row: 3 fields");
	TAP_OK(g_f[1] == NULL, "\\N is SQL NULL (NULL pointer)");
	TAP_INT_EQ(g_l[1], 0, "\\N has length 0");
	TAP_STR_EQ(g_f[2], "x", "field after \\N");

	TAP_INT_EQ(split("\\N", MAXF), 1, "row that is only \\N");
	TAP_OK(g_f[0] == NULL, "only-\\N row: the field is NULL");

	TAP_INT_EQ(split("a\t\\N\n", MAXF), 2, "\\N as last field before newline");
	TAP_OK(g_f[1] == NULL, "\\N last field is NULL");

	TAP_INT_EQ(split("\\\\N", MAXF), 1, "escaped backslash + N");
	TAP_OK(field_is(0, "\\N", 2), "\\\\N is the 2-byte text \\N, not NULL");

	TAP_INT_EQ(split("\\Nx", MAXF), 1, "\\Nx: one field");
	TAP_OK(field_is(0, "Nx", 2), "\\Nx is text 'Nx', not NULL");
}

static void test_empty_fields(void)
{
	TAP_INT_EQ(split("\t\t", MAXF), 3, "two tabs make three empty fields");
	TAP_OK(field_is(0, "", 0) && field_is(1, "", 0) && field_is(2, "", 0),
	       "three empty (non-NULL) fields");
	TAP_INT_EQ(split("", MAXF), 1, "empty row: one empty field");
	TAP_OK(field_is(0, "", 0), "empty row: field is empty text, not NULL");
	TAP_INT_EQ(split("\n", MAXF), 1, "newline-only row: one empty field");
	TAP_OK(field_is(0, "", 0), "newline-only row: empty text");
	TAP_INT_EQ(split("a\t\tc\t", MAXF), 4, "empty middle and last fields");
	TAP_OK(field_is(1, "", 0) && field_is(3, "", 0), "empty middle and last fields are empty text");
}

static void test_escapes(void)
{
	TAP_INT_EQ(split("a\\\\b\tx\\ty\tl1\\nl2\tc\\rr", MAXF), 4, "escapes row: 4 fields");
	TAP_OK(field_is(0, "a\\b", 3), "\\\\ is one backslash");
	TAP_OK(field_is(1, "x\ty", 3), "\\t is a tab, and does not split");
	TAP_OK(field_is(2, "l1\nl2", 5), "\\n is a newline");
	TAP_OK(field_is(3, "c\rr", 3), "\\r is a carriage return");

	TAP_INT_EQ(split("\\b\\f\\v", MAXF), 1, "\\b\\f\\v: one field");
	TAP_OK(field_is(0, "\b\f\v", 3), "\\b \\f \\v unescape to BS FF VT");

	TAP_INT_EQ(split("\\101\\102C", MAXF), 1, "octal: one field");
	TAP_OK(field_is(0, "ABC", 3), "\\101 \\102 are A B");
	TAP_INT_EQ(split("\\1010", MAXF), 1, "octal takes at most 3 digits");
	TAP_OK(field_is(0, "A0", 2), "\\1010 is 'A' then '0'");
	TAP_INT_EQ(split("x\\0y", MAXF), 1, "octal \\0");
	TAP_OK(field_is(0, "x\0y", 3), "\\0 is a NUL byte counted in the length");
	TAP_INT_EQ(split("\\7a", MAXF), 1, "short octal");
	TAP_OK(field_is(0, "\007a", 2), "\\7 then a non-octal char");

	TAP_INT_EQ(split("\\x41\\x62c", MAXF), 1, "hex: one field");
	TAP_OK(field_is(0, "Abc", 3), "\\x41 \\x62 are A b");
	TAP_INT_EQ(split("\\x4g", MAXF), 1, "hex with one digit");
	TAP_OK(field_is(0, "\004g", 2), "\\x4 takes one hex digit");
	TAP_INT_EQ(split("\\x414", MAXF), 1, "hex takes at most 2 digits");
	TAP_OK(field_is(0, "A4", 2), "\\x414 is 'A' then '4'");
	TAP_INT_EQ(split("\\xg", MAXF), 1, "\\x without hex digits");
	TAP_OK(field_is(0, "xg", 2), "\\x without hex digits is a plain 'x' (as PostgreSQL reads it)");

	TAP_INT_EQ(split("\\q\\.", MAXF), 1, "other escaped chars");
	TAP_OK(field_is(0, "q.", 2), "a backslash before another char yields that char");

	TAP_INT_EQ(split("\\\\\t\\\\\\\\\n", MAXF), 2, "backslash-only fields");
	TAP_OK(field_is(0, "\\", 1), "field of one escaped backslash");
	TAP_OK(field_is(1, "\\\\", 2), "field of two escaped backslashes");
}

static void test_max(void)
{
	TAP_INT_EQ(split("a\tb\tc", 2), -1, "3 fields with max 2: -1");
	TAP_INT_EQ(split("a\tb\tc\n", 3), 3, "3 fields with max 3: 3");
	TAP_INT_EQ(split("a\tb\t", 2), -1, "trailing tab adds a field beyond max: -1");
	TAP_INT_EQ(split("a", 0), -1, "any row with max 0: -1");
}

static void test_put(void)
{
	StrBuf b = {0};

	copytext_put(&b, NULL, 0);
	TAP_STR_EQ(sb_str(&b), "\\N", "put NULL writes \\N");
	sb_reset(&b);
	copytext_put(&b, "", 0);
	TAP_STR_EQ(sb_str(&b), "", "put empty string writes nothing");
	TAP_INT_EQ(b.len, 0, "put empty string: length 0");
	copytext_put(&b, "plain", 5);
	TAP_STR_EQ(sb_str(&b), "plain", "put plain text");
	sb_reset(&b);
	copytext_put(&b, "a\tb\nc\rd\\e", 9);
	TAP_STR_EQ(sb_str(&b), "a\\tb\\nc\\rd\\\\e", "put escapes tab, newline, CR, backslash");
	sb_reset(&b);
	copytext_put(&b, "\\N", 2);
	TAP_STR_EQ(sb_str(&b), "\\\\N", "put of the text \\N is not a NULL marker");
	sb_reset(&b);
	copytext_put(&b, "xyz", 2);
	TAP_STR_EQ(sb_str(&b), "xy", "put writes exactly n bytes");
	sb_puts(&b, "|");
	copytext_put(&b, "\t", 1);
	TAP_STR_EQ(sb_str(&b), "xy|\\t", "put appends to what the buffer holds");

	/* Growth: a long value made of characters that all need escaping. */
	char big[3000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = "\\\t\n\rz"[i % 5];
	sb_reset(&b);
	copytext_put(&b, big, sizeof big);
	TAP_INT_EQ(b.len, 3000 / 5 * 9, "long escaped value has the exact escaped length");
	TAP_INT_EQ(strlen(sb_str(&b)), b.len, "long escaped value is NUL-terminated at len");
	TAP_OK(memcmp(b.data, "\\\\\\t\\n\\rz\\\\", 11) == 0, "long escaped value starts right");
	sb_free(&b);
}

static void test_round_trip(void)
{
	static const char *const vals[] = {
		"tab\there", "new\nline", "back\\slash", "cr\rlf\n", NULL, "", "\\N", "\b\f\v raw",
	};
	size_t nv = sizeof vals / sizeof *vals;
	StrBuf b = {0};

	for (size_t i = 0; i < nv; i++) {
		if (i)
			sb_putc(&b, '\t');
		copytext_put(&b, vals[i], vals[i] ? strlen(vals[i]) : 0);
	}
	sb_putc(&b, '\n');
	char *line = sb_steal(&b);
	char *f[MAXF];
	size_t l[MAXF];
	int n = copytext_split(line, strlen(line), f, l, MAXF);
	TAP_INT_EQ(n, (int)nv, "round trip: field count");
	for (size_t i = 0; i < nv && (int)i < n; i++) {
		char what[64];
		snprintf(what, sizeof what, "round trip: field %zu", i);
		if (vals[i] == NULL)
			TAP_OK(f[i] == NULL, what);
		else
			TAP_OK(f[i] != NULL && l[i] == strlen(vals[i]) && memcmp(f[i], vals[i], l[i]) == 0, what);
	}
	free(line);

	/* Every byte value 1..255 survives put + split. */
	char all[255];
	for (int i = 0; i < 255; i++)
		all[i] = (char)(i + 1);
	copytext_put(&b, all, sizeof all);
	line = sb_steal(&b);
	n = copytext_split(line, strlen(line), f, l, MAXF);
	TAP_INT_EQ(n, 1, "all bytes: one field (tabs escaped)");
	TAP_OK(n == 1 && l[0] == 255 && memcmp(f[0], all, 255) == 0, "all bytes 1..255 round-trip");
	free(line);
}

/* Retry hands its keys to the source as a text[] literal: a key with a quote, a backslash,
 * a comma or a brace must come back as itself. */
static void test_array_item(void)
{
	StrBuf b = {0};
	sb_putc(&b, '{');
	sb_array_item(&b, "42");
	sb_array_item(&b, "a\"b\\c");
	sb_array_item(&b, "x,{y}");
	sb_array_item(&b, "");
	sb_putc(&b, '}');
	TAP_STR_EQ(sb_str(&b), "{\"42\",\"a\\\"b\\\\c\",\"x,{y}\",\"\"}", "array literal quotes and escapes each key");
	sb_free(&b);
	StrBuf c = {0};
	sb_array_item(&c, "7");
	sb_array_item(&c, "8");
	sb_putc(&c, '}');
	TAP_STR_EQ(sb_str(&c), "{\"7\",\"8\"}", "array literal opened by its first item on an empty buffer");
	sb_free(&c);
}

int main(void)
{
	test_array_item();
	test_plain();
	test_nulls();
	test_empty_fields();
	test_escapes();
	test_max();
	test_put();
	test_round_trip();
	return tap_done();
}
