/*
 * src/copytext.c — COPY text format codec (see copytext.h).
 */
#include "edumig/copytext.h"

#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Unescapes s[0..n) in place; returns the new length. */
static size_t unescape(char *s, size_t n)
{
	size_t w = 0;
	for (size_t r = 0; r < n; r++) {
		char c = s[r];
		if (c != '\\' || r + 1 >= n) {
			s[w++] = c;
			continue;
		}
		char e = s[++r];
		switch (e) {
		case 'b': s[w++] = '\b'; break;
		case 'f': s[w++] = '\f'; break;
		case 'n': s[w++] = '\n'; break;
		case 'r': s[w++] = '\r'; break;
		case 't': s[w++] = '\t'; break;
		case 'v': s[w++] = '\v'; break;
		case 'x': {
			int v = 0, k = 0;
			while (k < 2 && r + 1 < n && hexval(s[r + 1]) >= 0) {
				v = v * 16 + hexval(s[++r]);
				k++;
			}
			s[w++] = k ? (char)v : 'x';
			break;
		}
		default:
			if (e >= '0' && e <= '7') {
				int v = e - '0', k = 1;
				while (k < 3 && r + 1 < n && s[r + 1] >= '0' && s[r + 1] <= '7') {
					v = v * 8 + (s[++r] - '0');
					k++;
				}
				s[w++] = (char)v;
			} else {
				s[w++] = e;
			}
		}
	}
	s[w] = '\0';
	return w;
}

int copytext_split(char *line, size_t len, char **fields, size_t *lens, int max)
{
	if (len && line[len - 1] == '\n')
		len--;
	int nf = 0;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != '\t')
			continue;
		if (nf >= max)
			return -1;
		size_t flen = i - start;
		char *f = line + start;
		if (flen == 2 && f[0] == '\\' && f[1] == 'N') {
			fields[nf] = NULL;
			lens[nf] = 0;
		} else {
			/* Terminating here is safe: the tab (or end) is consumed already. */
			bool esc = memchr(f, '\\', flen) != NULL;
			if (esc) {
				lens[nf] = unescape(f, flen);
			} else {
				f[flen] = '\0';
				lens[nf] = flen;
			}
			fields[nf] = f;
		}
		nf++;
		start = i + 1;
	}
	return nf;
}

void copytext_put(StrBuf *b, const char *s, size_t n)
{
	if (!s) {
		sb_put(b, "\\N", 2);
		return;
	}
	sb_reserve(b, n + 8);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		const char *rep = NULL;
		switch (c) {
		case '\\': rep = "\\\\"; break;
		case '\t': rep = "\\t"; break;
		case '\n': rep = "\\n"; break;
		case '\r': rep = "\\r"; break;
		default: break;
		}
		if (rep) {
			sb_put(b, rep, 2);
		} else {
			if (b->len + 2 > b->cap)
				sb_reserve(b, 16);
			b->data[b->len++] = c;
		}
	}
	b->data[b->len] = '\0';
}
