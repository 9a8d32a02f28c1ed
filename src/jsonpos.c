/*
 * src/jsonpos.c — record the line of every JSON value by pointer (see jsonpos.h).
 */
#include "edumig/jsonpos.h"

#include <stdbool.h>
#include <string.h>

#include "edumig/mem.h"
#include "edumig/strbuf.h"

typedef struct Entry {
	char *ptr;
	int line;
} Entry;

struct JsonPos {
	Entry *e;
	size_t n, cap;
	Entry *dup;
	size_t ndup, capdup;
};

typedef struct Scan {
	const char *s;
	size_t len, i;
	int line;
	JsonPos *p;
	int depth;
	int in_dup;   /* > 0 inside the value of a duplicate key: its members are no new keys */
} Scan;

static void add(JsonPos *p, const char *ptr, int line)
{
	p->e = xgrow(p->e, &p->cap, p->n + 1, sizeof *p->e);
	p->e[p->n].ptr = xstrdup(ptr);
	p->e[p->n].line = line;
	p->n++;
}

static bool has(const JsonPos *p, const char *ptr)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->e[i].ptr, ptr) == 0)
			return true;
	return false;
}

/* Skips white space and the comments json-c accepts (slash-star and double-slash). */
static void skip_ws(Scan *sc)
{
	while (sc->i < sc->len) {
		char c = sc->s[sc->i];
		if (c == '/' && sc->i + 1 < sc->len && (sc->s[sc->i + 1] == '/' || sc->s[sc->i + 1] == '*')) {
			bool block = sc->s[sc->i + 1] == '*';
			for (sc->i += 2; sc->i < sc->len; sc->i++) {
				if (block && sc->s[sc->i] == '*' && sc->i + 1 < sc->len && sc->s[sc->i + 1] == '/') {
					sc->i += 2;
					break;
				}
				if (sc->s[sc->i] == '\n') {
					if (!block)
						break;   /* the loop below counts it */
					sc->line++;
				}
			}
			continue;
		}
		if (c == '\n')
			sc->line++;
		else if (c != ' ' && c != '\t' && c != '\r')
			return;
		sc->i++;
	}
}

/* Four hex digits at the scan position, consumed; -1 (nothing consumed) when absent. */
static long read_hex4(Scan *sc)
{
	long v = 0;
	if (sc->i + 4 > sc->len)
		return -1;
	for (size_t k = 0; k < 4; k++) {
		char h = sc->s[sc->i + k];
		int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 :
			h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	sc->i += 4;
	return v;
}

static void put_utf8(StrBuf *b, unsigned long cp)
{
	if (cp < 0x80) {
		sb_putc(b, (char)cp);
	} else if (cp < 0x800) {
		sb_putc(b, (char)(0xc0 | (cp >> 6)));
		sb_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		sb_putc(b, (char)(0xe0 | (cp >> 12)));
		sb_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		sb_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		sb_putc(b, (char)(0xf0 | (cp >> 18)));
		sb_putc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
		sb_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		sb_putc(b, (char)(0x80 | (cp & 0x3f)));
	}
}

/* Reads a string token into @out, unescaped as json-c does, so pointers match its keys
 * (json-c also accepts single-quoted strings). */
static bool scan_string(Scan *sc, StrBuf *out)
{
	if (sc->i >= sc->len || (sc->s[sc->i] != '"' && sc->s[sc->i] != '\''))
		return false;
	char quote = sc->s[sc->i++];
	while (sc->i < sc->len) {
		char c = sc->s[sc->i++];
		if (c == quote)
			return true;
		if (c == '\n')
			sc->line++;
		if (c == '\\' && sc->i < sc->len) {
			char e = sc->s[sc->i++];
			long cp = e == 'u' ? read_hex4(sc) : -1;
			if (cp >= 0xd800 && cp < 0xdc00 && sc->i + 1 < sc->len && sc->s[sc->i] == '\\' &&
			    sc->s[sc->i + 1] == 'u') {
				size_t at = sc->i;
				sc->i += 2;
				long lo = read_hex4(sc);
				if (lo >= 0xdc00 && lo < 0xe000)
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				else
					sc->i = at;
			}
			if (!out)
				continue;
			if (cp >= 0)
				put_utf8(out, cp >= 0xd800 && cp < 0xe000 ? 0xfffd : (unsigned long)cp);
			else
				sb_putc(out, e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' :
					     e == 'b' ? '\b' : e == 'f' ? '\f' : e);
			continue;
		}
		if (out)
			sb_putc(out, c);
	}
	return false;
}

static void append_token(StrBuf *ptr, const char *tok)
{
	sb_putc(ptr, '/');
	for (const char *c = tok; *c; c++) {
		if (*c == '~')
			sb_puts(ptr, "~0");
		else if (*c == '/')
			sb_puts(ptr, "~1");
		else
			sb_putc(ptr, *c);
	}
}

static bool scan_value(Scan *sc, StrBuf *ptr);

static bool scan_object(Scan *sc, StrBuf *ptr)
{
	sc->i++; /* { */
	size_t base = ptr->len;
	StrBuf key = {0};
	bool ok = false;
	skip_ws(sc);
	if (sc->i < sc->len && sc->s[sc->i] == '}') {
		sc->i++;
		ok = true;
		goto out;
	}
	for (;;) {
		skip_ws(sc);
		int line = sc->line;
		sb_reset(&key);
		if (!scan_string(sc, &key))
			goto out;
		sb_truncate(ptr, base);
		append_token(ptr, sb_str(&key));
		bool dup = false;
		if (sc->in_dup) {
			/* Inside a duplicate's value: its keys repeat the first value's, not errors. */
		} else if (has(sc->p, sb_str(ptr))) {
			JsonPos *p = sc->p;
			p->dup = xgrow(p->dup, &p->capdup, p->ndup + 1, sizeof *p->dup);
			p->dup[p->ndup].ptr = xstrdup(sb_str(ptr));
			p->dup[p->ndup].line = line;
			p->ndup++;
			dup = true;
		} else {
			add(sc->p, sb_str(ptr), line);
		}
		skip_ws(sc);
		if (sc->i >= sc->len || sc->s[sc->i] != ':')
			goto out;
		sc->i++;
		sc->in_dup += dup;
		bool vok = scan_value(sc, ptr);
		sc->in_dup -= dup;
		if (!vok)
			goto out;
		skip_ws(sc);
		if (sc->i >= sc->len)
			goto out;
		if (sc->s[sc->i] == ',') {
			sc->i++;
			skip_ws(sc);
			if (sc->i < sc->len && sc->s[sc->i] == '}') {
				/* a trailing comma, which json-c accepts */
				sc->i++;
				ok = true;
				goto out;
			}
			continue;
		}
		if (sc->s[sc->i] == '}') {
			sc->i++;
			ok = true;
		}
		goto out;
	}
out:
	sb_truncate(ptr, base);
	sb_free(&key);
	return ok;
}

static bool scan_array(Scan *sc, StrBuf *ptr)
{
	sc->i++; /* [ */
	size_t base = ptr->len;
	skip_ws(sc);
	if (sc->i < sc->len && sc->s[sc->i] == ']') {
		sc->i++;
		return true;
	}
	for (int idx = 0;; idx++) {
		skip_ws(sc);
		sb_truncate(ptr, base);
		sb_printf(ptr, "/%d", idx);
		if (!sc->in_dup)
			add(sc->p, sb_str(ptr), sc->line);
		if (!scan_value(sc, ptr))
			break;
		skip_ws(sc);
		if (sc->i >= sc->len)
			break;
		if (sc->s[sc->i] == ',') {
			sc->i++;
			skip_ws(sc);
			if (sc->i < sc->len && sc->s[sc->i] == ']') {
				/* a trailing comma, which json-c accepts */
				sc->i++;
				sb_truncate(ptr, base);
				return true;
			}
			continue;
		}
		if (sc->s[sc->i] == ']') {
			sc->i++;
			sb_truncate(ptr, base);
			return true;
		}
		break;
	}
	sb_truncate(ptr, base);
	return false;
}

static bool scan_value(Scan *sc, StrBuf *ptr)
{
	skip_ws(sc);
	if (sc->i >= sc->len || sc->depth > 200)
		return false;
	char c = sc->s[sc->i];
	bool ok;
	sc->depth++;
	if (c == '{')
		ok = scan_object(sc, ptr);
	else if (c == '[')
		ok = scan_array(sc, ptr);
	else if (c == '"' || c == '\'')
		ok = scan_string(sc, NULL);
	else {
		while (sc->i < sc->len && strchr(",}] \t\r\n", sc->s[sc->i]) == NULL)
			sc->i++;
		ok = true;
	}
	sc->depth--;
	return ok;
}

JsonPos *jsonpos_build(const char *text, size_t len)
{
	JsonPos *p = znew(JsonPos);
	Scan sc = {.s = text, .len = len, .line = 1, .p = p};
	StrBuf ptr = {0};
	skip_ws(&sc);
	add(p, "", sc.line);
	scan_value(&sc, &ptr);
	sb_free(&ptr);
	return p;
}

void jsonpos_free(JsonPos *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->e[i].ptr);
	for (size_t i = 0; i < p->ndup; i++)
		free(p->dup[i].ptr);
	free(p->e);
	free(p->dup);
	free(p);
}

int jsonpos_line(const JsonPos *p, const char *pointer)
{
	if (!p || !pointer)
		return 1;
	char *buf = xstrdup(pointer);
	int line = 1;
	for (;;) {
		for (size_t i = 0; i < p->n; i++) {
			if (strcmp(p->e[i].ptr, buf) == 0) {
				line = p->e[i].line;
				free(buf);
				return line;
			}
		}
		char *slash = strrchr(buf, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	free(buf);
	return line;
}

size_t jsonpos_duplicates(const JsonPos *p)
{
	return p ? p->ndup : 0;
}

const char *jsonpos_duplicate(const JsonPos *p, size_t i, int *line)
{
	*line = p->dup[i].line;
	return p->dup[i].ptr;
}

int json_offset_line(const char *text, size_t offset)
{
	int line = 1;
	for (size_t i = 0; i < offset && text[i]; i++)
		if (text[i] == '\n')
			line++;
	return line;
}
