/*
 * src/skiplog.c — skip-log records: names, COPY lines, JSON lines (see skiplog.h).
 */
#include "edumig/skiplog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/copytext.h"
#include "edumig/mem.h"
#include "edumig/transform.h"

static const char *const reason_codes[] = {
#define X(e, s, d) s,
	SKIP_REASON_LIST(X)
#undef X
};

static const char *const reason_desc[] = {
#define X(e, s, d) d,
	SKIP_REASON_LIST(X)
#undef X
};

const char *skip_reason_code(SkipReason r)
{
	return reason_codes[r];
}

const char *skip_reason_description(SkipReason r)
{
	return reason_desc[r];
}

const char *severity_name(Severity s)
{
	return s == SEV_ERROR ? "error" : "warning";
}

void issue_clear(Issue *i)
{
	free(i->source_value);
	free(i->detail);
	free(i->sqlstate);
	free(i->constraint_name);
	free(i->cause_key);
	free(i->owner_key);
	memset(i, 0, sizeof *i);
}

void issue_refuse_update(Issue *i)
{
	i->severity = SEV_WARNING;
	i->update_refused = true;
	char *d = xasprintf("update not applied, the target keeps the version migrated earlier: %s", i->detail ? i->detail : "");
	free(i->detail);
	i->detail = d;
}

/* Length of the valid UTF-8 sequence at @s (at most @n bytes), or 0. */
static size_t utf8_seq(const char *s, size_t n)
{
	unsigned char c = (unsigned char)s[0];
	size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
	if (len == 0 || len > n || !tx_utf8_valid(s, len))
		return 0;
	return len;
}

/*
 * The skip log lives in a UTF-8 database, but it quotes source values that may be in no
 * encoding at all: bytes that are not UTF-8 are written as \xNN, so the record is kept and
 * still says exactly which bytes were there.
 */
static const char *utf8_safe(const char *s, StrBuf *tmp)
{
	size_t n = strlen(s);
	if (tx_utf8_valid(s, n))
		return s;
	sb_reset(tmp);
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq(s + i, n - i);
		if (l) {
			sb_put(tmp, s + i, l);
			i += l;
		} else {
			sb_printf(tmp, "\\x%02X", (unsigned char)s[i]);
			i++;
		}
	}
	return sb_str(tmp);
}

/* Skip-log text is for people: a value is cut at 2000 bytes (on a character boundary) with
 * a note of its full length, so a multi-megabyte cell cannot swamp the log. */
#define SKIP_TEXT_MAX 2000

static const char *bounded(const char *v, StrBuf *tmp2)
{
	size_t n = strlen(v);
	if (n <= SKIP_TEXT_MAX)
		return v;
	size_t cut = SKIP_TEXT_MAX;
	while (cut > 0 && ((unsigned char)v[cut] & 0xC0) == 0x80)
		cut--;
	sb_reset(tmp2);
	sb_put(tmp2, v, cut);
	sb_printf(tmp2, "... (%zu bytes in all)", n);
	return sb_str(tmp2);
}

static void put_opt(StrBuf *b, const char *s)
{
	if (!s) {
		copytext_put(b, NULL, 0);
		return;
	}
	StrBuf tmp = {0}, tmp2 = {0};
	const char *v = bounded(utf8_safe(s, &tmp), &tmp2);
	copytext_put(b, v, strlen(v));
	sb_free(&tmp);
	sb_free(&tmp2);
}

void issue_copy_line(StrBuf *b, const Issue *i, int64_t run_id, int phase, const char *entity,
		     const char *old_key)
{
	sb_printf(b, "%lld\t%d\t", (long long)run_id, phase);
	put_opt(b, entity);
	sb_putc(b, '\t');
	put_opt(b, old_key);
	sb_putc(b, '\t');
	put_opt(b, i->reason);
	sb_putc(b, '\t');
	sb_puts(b, severity_name(i->severity));
	sb_putc(b, '\t');
	put_opt(b, i->column);
	sb_putc(b, '\t');
	put_opt(b, i->source_value);
	sb_putc(b, '\t');
	put_opt(b, i->detail);
	sb_putc(b, '\t');
	put_opt(b, i->sqlstate);
	sb_putc(b, '\t');
	put_opt(b, i->constraint_name);
	sb_putc(b, '\t');
	put_opt(b, i->cause_entity);
	sb_putc(b, '\t');
	put_opt(b, i->cause_key);
	sb_putc(b, '\t');
	put_opt(b, i->owner_entity);
	sb_putc(b, '\t');
	put_opt(b, i->owner_key);
	if (i->has_row_hash)
		sb_printf(b, "\t%016llx\n", (unsigned long long)i->row_hash);
	else
		sb_puts(b, "\t\\N\n");
}

void json_put_string(StrBuf *b, const char *s, size_t n)
{
	sb_putc(b, '"');
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];
		switch (c) {
		case '"': sb_put(b, "\\\"", 2); break;
		case '\\': sb_put(b, "\\\\", 2); break;
		case '\n': sb_put(b, "\\n", 2); break;
		case '\r': sb_put(b, "\\r", 2); break;
		case '\t': sb_put(b, "\\t", 2); break;
		default:
			if (c < 0x20 || c == 0x7f)
				sb_printf(b, "\\u%04x", c);
			else
				sb_putc(b, (char)c);
		}
	}
	sb_putc(b, '"');
}

static void json_field(StrBuf *b, const char *key, const char *val, bool *first)
{
	if (!val)
		return;
	if (!*first)
		sb_putc(b, ',');
	*first = false;
	json_put_string(b, key, strlen(key));
	sb_putc(b, ':');
	StrBuf tmp = {0}, tmp2 = {0};
	const char *v = bounded(utf8_safe(val, &tmp), &tmp2);
	json_put_string(b, v, strlen(v));
	sb_free(&tmp);
	sb_free(&tmp2);
}

void issue_json(StrBuf *b, const Issue *i, int64_t run_id, int phase, const char *entity,
		const char *old_key)
{
	bool first = false;
	sb_printf(b, "{\"event\":\"skip\",\"run_id\":%lld,\"phase\":%d", (long long)run_id, phase);
	json_field(b, "entity", entity, &first);
	json_field(b, "old_key", old_key, &first);
	json_field(b, "reason", i->reason, &first);
	json_field(b, "severity", severity_name(i->severity), &first);
	json_field(b, "column", i->column, &first);
	json_field(b, "source_value", i->source_value, &first);
	json_field(b, "detail", i->detail, &first);
	json_field(b, "sqlstate", i->sqlstate, &first);
	json_field(b, "constraint", i->constraint_name, &first);
	json_field(b, "cause_entity", i->cause_entity, &first);
	json_field(b, "cause_key", i->cause_key, &first);
	json_field(b, "owner_entity", i->owner_entity, &first);
	json_field(b, "owner_key", i->owner_key, &first);
	sb_putc(b, '}');
}
