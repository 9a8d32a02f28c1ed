/*
 * src/strbuf.c — growable byte buffer.
 */
#include "edumig/strbuf.h"

#include <stdio.h>
#include <string.h>

#include "edumig/mem.h"

void sb_reserve(StrBuf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void sb_put(StrBuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void sb_puts(StrBuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

void sb_putc(StrBuf *b, char c)
{
	sb_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void sb_array_item(StrBuf *b, const char *s)
{
	if (b->len == 0)
		sb_putc(b, '{');
	else if (b->data[b->len - 1] != '{')
		sb_putc(b, ',');
	sb_putc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sb_putc(b, '\\');
		sb_putc(b, *s);
	}
	sb_putc(b, '"');
}

void sb_vprintf(StrBuf *b, const char *fmt, va_list ap)
{
	/* Format into the free space first; grow and format again only when it did not fit. */
	sb_reserve(b, 64);
	va_list ap2;
	va_copy(ap2, ap);
	size_t avail = b->cap - b->len;
	int n = vsnprintf(b->data + b->len, avail, fmt, ap2);
	va_end(ap2);
	if (n < 0) {
		b->data[b->len] = '\0';
		return;
	}
	if ((size_t)n >= avail) {
		sb_reserve(b, (size_t)n);
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	}
	b->len += (size_t)n;
}

void sb_printf(StrBuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sb_vprintf(b, fmt, ap);
	va_end(ap);
}

void sb_reset(StrBuf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void sb_truncate(StrBuf *b, size_t len)
{
	if (len < b->len) {
		b->len = len;
		b->data[len] = '\0';
	}
}

void sb_free(StrBuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

const char *sb_str(const StrBuf *b)
{
	return b->data ? b->data : "";
}

char *sb_steal(StrBuf *b)
{
	char *s = b->data ? b->data : xstrdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return s;
}
