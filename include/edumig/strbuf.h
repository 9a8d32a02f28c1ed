/*
 * include/edumig/strbuf.h — a growable byte buffer, reused across rows and batches.
 */
#ifndef EDUMIG_STRBUF_H
#define EDUMIG_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

/**
 * StrBuf - growable buffer, always NUL-terminated once anything was written.
 * Zero-initialise (StrBuf b = {0}); release with sb_free().
 */
typedef struct StrBuf {
	char *data;
	size_t len;
	size_t cap;
} StrBuf;

void sb_reserve(StrBuf *b, size_t extra);
void sb_put(StrBuf *b, const char *s, size_t n);
void sb_puts(StrBuf *b, const char *s);
void sb_putc(StrBuf *b, char c);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(StrBuf *b, const char *fmt, va_list ap);
/* One element of a PostgreSQL array literal: '{' first when @b is empty, a comma unless it is
 * the first element, then @s double-quoted with '"' and '\\' escaped (keys may hold either).
 * The caller closes it with '}'. */
void sb_array_item(StrBuf *b, const char *s);
void sb_reset(StrBuf *b);          /* len = 0, keeps the allocation */
void sb_truncate(StrBuf *b, size_t len);
void sb_free(StrBuf *b);
/* Returns the contents as a C string ("" when nothing was written yet). */
const char *sb_str(const StrBuf *b);
/* Takes the buffer's string out; the caller frees it; the buffer is left empty. */
char *sb_steal(StrBuf *b);

#endif /* EDUMIG_STRBUF_H */
