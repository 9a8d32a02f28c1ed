/*
 * src/transform.c — value transforms: compile a mapping column's JSON chain once, then run
 * it on millions of source values.
 *
 * A compiled TxChain is immutable so workers can share it; everything that changes while a
 * value is transformed (the scratch buffer, iconv handles, libcrypt's work area, the bcrypt
 * salt name of the current row) lives in the worker's TxEnv. Steps work in place on the
 * caller's TxValue or build into env->scratch and swap buffers, so once the buffers have
 * grown to the largest value seen, the hot loop does not allocate.
 *
 * Decisions a mapping author needs to know are written next to the step that makes them;
 * search for "Rule:".
 */
#include "edumig/transform.h"

#include <crypt.h>
#include <errno.h>
#include <iconv.h>
#include <json-c/json.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

/* ------------------------------------------------------------------------------------------ */
/* Memory: the OOM rule says a failed allocation ends the process with a message.             */

__attribute__((noreturn)) static void tx_oom(size_t n)
{
	fprintf(stderr, "edumig: out of memory allocating %zu bytes in transform\n", n);
	abort();
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		tx_oom(n);
	return q;
}

static void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);

	if (p == NULL)
		tx_oom(count * size);
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p;

	if (n == SIZE_MAX)
		tx_oom(n);
	p = xrealloc(NULL, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

/* ------------------------------------------------------------------------------------------ */
/* TxValue                                                                                      */

/* Makes room for @need bytes (the terminating NUL included); doubling keeps reuse cheap. */
static void tv_reserve(TxValue *v, size_t need)
{
	size_t cap;

	if (need <= v->cap && v->data != NULL)
		return;
	cap = v->cap ? v->cap : 32;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	v->data = xrealloc(v->data, cap);
	v->cap = cap;
}

static void tv_setlen(TxValue *v, size_t len)
{
	v->len = len;
	v->data[len] = '\0';
	v->null = false;
}

void txvalue_set(TxValue *v, const char *s, size_t len)
{
	uintptr_t base = (uintptr_t)v->data, at = (uintptr_t)s;

	if (len == SIZE_MAX)
		tx_oom(len);
	/* Setting a value from a slice of itself (e.g. after trimming) must survive realloc. */
	if (s != NULL && v->data != NULL && at >= base && at < base + v->cap) {
		memmove(v->data, s, len);
		tv_setlen(v, len);
		return;
	}
	tv_reserve(v, len + 1);
	if (len > 0)
		memcpy(v->data, s, len);
	tv_setlen(v, len);
}

void txvalue_set_null(TxValue *v)
{
	v->null = true;
	v->len = 0;
	if (v->data != NULL)
		v->data[0] = '\0';
}

void txvalue_free(TxValue *v)
{
	free(v->data);
	v->data = NULL;
	v->len = 0;
	v->cap = 0;
	v->null = false;
}

static void tv_append(TxValue *v, const char *s, size_t n)
{
	if (n > SIZE_MAX - v->len - 1)
		tx_oom(SIZE_MAX);
	tv_reserve(v, v->len + n + 1);
	memcpy(v->data + v->len, s, n);
	v->len += n;
	v->data[v->len] = '\0';
}

static void tv_append_byte(TxValue *v, unsigned char c)
{
	char b = (char)c;

	tv_append(v, &b, 1);
}

static void tv_clear(TxValue *v)
{
	tv_reserve(v, 1);
	tv_setlen(v, 0);
}

/* Hands the bytes built in @scratch to @v; the old buffer of @v becomes the new scratch. */
static void tv_swap(TxValue *v, TxValue *scratch)
{
	TxValue t = *v;

	*v = *scratch;
	*scratch = t;
	v->null = false;
	scratch->null = false;
}

/* ------------------------------------------------------------------------------------------ */
/* Byte and UTF-8 helpers                                                                     */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_ascii_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * utf8_decode - length of the strict UTF-8 sequence at @s (0 if invalid) and its code point.
 * Overlong forms, surrogates and code points above U+10FFFF are invalid.
 */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t n, i;
	uint32_t v;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;      /* overlong */
		else if (c == 0xED)
			hi = 0x9F;      /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;      /* overlong */
		else if (c == 0xF4)
			hi = 0x8F;      /* above U+10FFFF */
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	v = (v << 6) | (s[1] & 0x3F);
	for (i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	*cp = v;
	return n;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

bool tx_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		n = utf8_decode(p + i, len - i, &cp);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/* Span of @s without leading/trailing ASCII whitespace and UTF-8 no-break spaces (C2 A0). */
static void trim_span(const char *s, size_t len, size_t *start, size_t *end)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t a = 0, b = len;

	for (;;) {
		if (a < b && is_ascii_space(p[a]))
			a++;
		else if (b - a >= 2 && p[a] == 0xC2 && p[a + 1] == 0xA0)
			a += 2;
		else
			break;
	}
	for (;;) {
		if (b > a && is_ascii_space(p[b - 1]))
			b--;
		else if (b - a >= 2 && p[b - 2] == 0xC2 && p[b - 1] == 0xA0)
			b -= 2;
		else
			break;
	}
	*start = a;
	*end = b;
}

/*
 * quote - renders a raw value for a report: valid UTF-8 text as is, control characters,
 * invalid bytes and backslashes escaped (\xNN, \\), cut with "..." so a detail stays readable.
 */
static const char *quote(char *buf, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t limit = cap - 4, o = 0, i = 0, n;
	uint32_t cp;

	while (i < len) {
		n = utf8_decode(p + i, len - i, &cp);
		if (n == 1 && cp >= 0x20 && cp != 0x7F && cp != '\\') {
			if (o + 1 > limit)
				break;
			buf[o++] = (char)p[i++];
		} else if (n == 1 && cp == '\\') {
			if (o + 2 > limit)
				break;
			buf[o++] = '\\';
			buf[o++] = '\\';
			i++;
		} else if (n > 1 && !(cp >= 0x80 && cp <= 0x9F)) {
			if (o + n > limit)
				break;
			memcpy(buf + o, p + i, n);
			o += n;
			i += n;
		} else {
			if (o + 4 > limit)
				break;
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[p[i] >> 4];
			buf[o++] = hex[p[i] & 0x0F];
			i++;
		}
	}
	if (i < len)
		memcpy(buf + o, "...", 4);
	else
		buf[o] = '\0';
	return buf;
}

#define QUOTE_CAP 128

/* Bounded formatting: a detail that does not fit is cut at a character boundary and ends
 * in "..." rather than being dropped. */
static void vformat_bounded(char *dst, size_t cap, const char *fmt, va_list ap)
{
	int r = vsnprintf(dst, cap, fmt, ap);
	size_t end;

	if (r < 0) {
		memcpy(dst, "(detail could not be formatted)", sizeof("(detail could not be formatted)"));
		return;
	}
	if ((size_t)r < cap)
		return;
	end = cap - 4;
	while (end > 0 && ((unsigned char)dst[end] & 0xC0) == 0x80)
		end--;
	memcpy(dst + end, "...", 4);
}

__attribute__((format(printf, 3, 4)))
static void format_bounded(char *dst, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat_bounded(dst, cap, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* StrMap: open-addressing hash map from byte strings to owned pointers (O(1) average).       */

typedef struct MapEntry {
	char *key;      /* NULL: free slot */
	size_t klen;
	uint64_t hash;
	void *val;
} MapEntry;

typedef struct StrMap {
	MapEntry *slots;
	size_t cap;     /* power of two, or 0 */
	size_t count;
} StrMap;

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	/* FNV's low bits are weak for keys that differ only at the end (ids); mix them. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static MapEntry *map_find(const StrMap *m, const char *k, size_t n)
{
	uint64_t h;
	size_t i;

	if (m->cap == 0)
		return NULL;
	h = hash_bytes(k, n);
	for (i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		MapEntry *e = &m->slots[i];

		if (e->key == NULL)
			return NULL;
		if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
			return e;
	}
}

static bool map_grow(StrMap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16, i, j;
	MapEntry *ns;

	if (ncap > SIZE_MAX / sizeof(MapEntry))
		return false;
	ns = calloc(ncap, sizeof(MapEntry));
	if (ns == NULL)
		return false;
	for (i = 0; i < m->cap; i++) {
		if (m->slots[i].key == NULL)
			continue;
		for (j = m->slots[i].hash & (ncap - 1); ns[j].key != NULL; j = (j + 1) & (ncap - 1))
			;
		ns[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = ns;
	m->cap = ncap;
	return true;
}

/* Finds or adds @k; a new entry gets val NULL and *created = true. NULL on allocation failure. */
static MapEntry *map_insert(StrMap *m, const char *k, size_t n, bool *created)
{
	MapEntry *e = map_find(m, k, n);
	char *key;
	size_t i;
	uint64_t h;

	*created = false;
	if (e != NULL)
		return e;
	/* Keep the load factor under 3/4 so probe runs stay short. */
	if ((m->count + 1) * 4 > m->cap * 3 && !map_grow(m))
		return NULL;
	if (n == SIZE_MAX)
		return NULL;
	key = malloc(n + 1);
	if (key == NULL)
		return NULL;
	memcpy(key, k, n);
	key[n] = '\0';
	h = hash_bytes(k, n);
	for (i = h & (m->cap - 1); m->slots[i].key != NULL; i = (i + 1) & (m->cap - 1))
		;
	e = &m->slots[i];
	e->key = key;
	e->klen = n;
	e->hash = h;
	e->val = NULL;
	m->count++;
	*created = true;
	return e;
}

static void map_clear(StrMap *m, void (*free_val)(void *))
{
	size_t i;

	for (i = 0; i < m->cap; i++) {
		if (m->slots[i].key == NULL)
			continue;
		free(m->slots[i].key);
		if (free_val != NULL)
			free_val(m->slots[i].val);
	}
	free(m->slots);
	m->slots = NULL;
	m->cap = 0;
	m->count = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* TxLookups                                                                                    */

struct TxLookups {
	StrMap tables;  /* name -> StrMap* of key -> char* (NULL = SQL NULL) */
};

static void free_table(void *p)
{
	StrMap *t = p;

	if (t == NULL)
		return;
	map_clear(t, free);
	free(t);
}

TxLookups *txlookups_create(void)
{
	return calloc(1, sizeof(TxLookups));
}

void txlookups_destroy(TxLookups *l)
{
	if (l == NULL)
		return;
	map_clear(&l->tables, free_table);
	free(l);
}

bool txlookups_put(TxLookups *l, const char *table, const char *key, const char *value)
{
	MapEntry *te, *ke;
	StrMap *t;
	char *copy = NULL;
	bool created;

	if (l == NULL || table == NULL || key == NULL)
		return false;
	te = map_insert(&l->tables, table, strlen(table), &created);
	if (te == NULL)
		return false;
	/* A slot whose map could not be allocated stays invisible to has_table until a retry. */
	if (te->val == NULL) {
		te->val = calloc(1, sizeof(StrMap));
		if (te->val == NULL)
			return false;
	}
	t = te->val;
	if (value != NULL) {
		copy = strdup(value);
		if (copy == NULL)
			return false;
	}
	ke = map_insert(t, key, strlen(key), &created);
	if (ke == NULL) {
		free(copy);
		return false;
	}
	free(ke->val);
	ke->val = copy;
	return true;
}

static const StrMap *lookups_table(const TxLookups *l, const char *table)
{
	MapEntry *e;

	if (l == NULL || table == NULL)
		return NULL;
	e = map_find(&l->tables, table, strlen(table));
	return e != NULL ? e->val : NULL;
}

bool txlookups_has_table(const TxLookups *l, const char *table)
{
	return lookups_table(l, table) != NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* TxEnv                                                                                        */

typedef struct Conv {
	char *name;
	iconv_t cd;
} Conv;

struct TxEnv {
	const TxLookups *lookups;
	unsigned char salt_ns[16];
	TxValue salt_name;      /* "bcrypt-salt:" + row key; null while no row key is set */
	TxValue scratch;
	struct crypt_data *crypt;       /* ~32 KiB, allocated on first bcrypt */
	HashPool *pool;         /* run --jobs: a last-step bcrypt is queued here, not hashed */
	Conv *convs;
	size_t nconvs;
	locale_t c_locale;      /* numbers are parsed and printed the C way whatever LC_NUMERIC is */
};

/*
 * Salts are derived from "bcrypt-salt:<row key>" rather than the bare row key so that, if the
 * engine ever used the same namespace for ids (UUIDv5 of "entity:old_key"), a stored salt
 * would still not equal the row's public id.
 */
static const char SALT_PREFIX[] = "bcrypt-salt:";

TxEnv *txenv_create(const TxLookups *lookups, const unsigned char salt_ns[16])
{
	TxEnv *env = xcalloc(1, sizeof(TxEnv));

	env->lookups = lookups;
	if (salt_ns != NULL)
		memcpy(env->salt_ns, salt_ns, 16);
	env->salt_name.null = true;
	env->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (env->c_locale == (locale_t)0) {
		free(env);
		return NULL;
	}
	return env;
}

void txenv_destroy(TxEnv *env)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < env->nconvs; i++) {
		iconv_close(env->convs[i].cd);
		free(env->convs[i].name);
	}
	free(env->convs);
	if (env->crypt != NULL) {
		explicit_bzero(env->crypt, sizeof(*env->crypt));
		free(env->crypt);
	}
	if (env->scratch.data != NULL)
		explicit_bzero(env->scratch.data, env->scratch.cap);
	txvalue_free(&env->scratch);
	txvalue_free(&env->salt_name);
	freelocale(env->c_locale);
	free(env);
}

void txenv_set_hashpool(TxEnv *env, HashPool *pool)
{
	env->pool = pool;
}

void txenv_set_row_key(TxEnv *env, const char *row_key)
{
	if (row_key == NULL) {
		txvalue_set_null(&env->salt_name);
		return;
	}
	txvalue_set(&env->salt_name, SALT_PREFIX, sizeof(SALT_PREFIX) - 1);
	tv_append(&env->salt_name, row_key, strlen(row_key));
}

/* The cached converter from @name to UTF-8, opened on first use; (iconv_t)-1 if unknown. */
static iconv_t env_conv(TxEnv *env, const char *name)
{
	size_t i;
	iconv_t cd;

	for (i = 0; i < env->nconvs; i++)
		if (strcmp(env->convs[i].name, name) == 0)
			return env->convs[i].cd;
	cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1)
		return cd;
	env->convs = xrealloc(env->convs, (env->nconvs + 1) * sizeof(Conv));
	env->convs[env->nconvs].name = xstrdup(name);
	env->convs[env->nconvs].cd = cd;
	env->nconvs++;
	return cd;
}

/* ------------------------------------------------------------------------------------------ */
/* Step kinds: one X-macro keeps the enum, the JSON names and the accepted arguments in step. */

#define TX_STEP_LIST(X) \
	X(TRIM,          "trim",          "") \
	X(LOWER,         "lower",         "locale") \
	X(UPPER,         "upper",         "locale") \
	X(NULLIF_EMPTY,  "nullif_empty",  "") \
	X(NULLIF,        "nullif",        "value,values") \
	X(STRIP_CONTROL, "strip_control", "keep_whitespace") \
	X(DATE,          "date",          "formats,min_year,max_year,empty") \
	X(TIMESTAMP,     "timestamp",     "formats,min_year,max_year,empty") \
	X(MAP,           "map",           "values,default,null") \
	X(SCALE,         "scale",         "from,to,digits,empty") \
	X(INT,           "int",           "min,max,empty") \
	X(NUMERIC,       "numeric",       "digits,min,max,empty") \
	X(EMAIL,         "email",         "") \
	X(BASE64_DECODE, "base64_decode", "") \
	X(BCRYPT,        "bcrypt",        "cost") \
	X(RECODE,        "recode",        "from,fix_double_utf8") \
	X(LOOKUP,        "lookup",        "table,on_missing") \
	X(REQUIRE,       "require",       "") \
	X(REPLACE,       "replace",       "from,to") \
	X(PREFIX,        "prefix",        "value") \
	X(SUFFIX,        "suffix",        "value") \
	X(DEFAULT,       "default",       "value")

typedef enum StepKind {
#define X(kind, name, args) STEP_##kind,
	TX_STEP_LIST(X)
#undef X
	STEP_COUNT_
} StepKind;

static const struct {
	const char *name;
	const char *args;       /* comma-separated argument keys besides "fn" */
} step_info[] = {
#define X(kind, name, args) { name, args },
	TX_STEP_LIST(X)
#undef X
};

/* Date format items. */
typedef enum DtKind { DT_LIT, DT_YEAR, DT_MONTH, DT_DAY, DT_HOUR, DT_MIN, DT_SEC } DtKind;

typedef struct DtItem {
	DtKind kind;
	unsigned char minw, maxw;       /* digit count for fields */
	char lit;
} DtItem;

typedef struct DateFmt {
	DtItem *items;
	size_t n;
} DateFmt;

enum { ON_MISSING_INVALID, ON_MISSING_NULL, ON_MISSING_KEEP };

/* One compiled step; a flat struct (not a union) so freeing is one unconditional path. */
typedef struct Step {
	StepKind kind;
	bool turkic;            /* lower, upper */
	bool keep_ws;           /* strip_control */
	bool empty_invalid;     /* date, timestamp, scale, int, numeric */
	char **texts;           /* nullif */
	size_t *text_lens;
	size_t ntexts;
	DateFmt *fmts;          /* date, timestamp */
	size_t nfmts;
	int min_year, max_year;
	char *fmt_list;         /* "DD/MM/YYYY, YYYY-MM-DD" for details */
	StrMap map;             /* map: key -> char* or NULL */
	bool has_default;
	char *def;              /* map default; NULL = SQL NULL */
	size_t def_len;
	char *null_text;        /* map: value for NULL input */
	double from_a, from_b, to_a, to_b;      /* scale */
	int digits;             /* scale, numeric: -1 = keep the input's decimals */
	bool has_min, has_max;
	long long imin, imax;   /* int */
	double dmin, dmax;      /* numeric */
	char *range_text;       /* scale, int, numeric: "0..100" for details */
	int cost;               /* bcrypt */
	char *enc;              /* recode */
	bool fix_double;
	char *table;            /* lookup */
	int on_missing;
	char *a;                /* replace "from"; prefix/suffix/default "value" */
	size_t a_len;
	char *b;                /* replace "to" */
	size_t b_len;
} Step;

struct TxChain {
	Step *steps;
	size_t n;
	char **tables;          /* NULL-terminated, unique */
	size_t ntables;
	bool sensitive;
};

/* ------------------------------------------------------------------------------------------ */
/* Outcome reporting                                                                           */

typedef struct Ctx {
	TxOutcome *out;
	int step;
	bool last;              /* the chain's last step: its output is the column's value */
} Ctx;

/* Only the first warning of a chain is kept, so later, usually derived, ones do not hide it. */
__attribute__((format(printf, 3, 4)))
static TxStatus warnf(Ctx *cx, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (cx->out->status != TX_OK)
		return TX_WARN;
	cx->out->status = TX_WARN;
	cx->out->code = code;
	cx->out->step = cx->step;
	va_start(ap, fmt);
	vformat_bounded(cx->out->detail, sizeof(cx->out->detail), fmt, ap);
	va_end(ap);
	return TX_WARN;
}

__attribute__((format(printf, 3, 4)))
static TxStatus invalidf(Ctx *cx, const char *code, const char *fmt, ...)
{
	va_list ap;

	cx->out->status = TX_INVALID;
	cx->out->code = code;
	cx->out->step = cx->step;
	va_start(ap, fmt);
	vformat_bounded(cx->out->detail, sizeof(cx->out->detail), fmt, ap);
	va_end(ap);
	return TX_INVALID;
}

/* ------------------------------------------------------------------------------------------ */
/* trim, nullif_empty, nullif, strip_control, require, replace, prefix, suffix, default        */

static TxStatus apply_trim(TxValue *v)
{
	size_t a, b;

	trim_span(v->data, v->len, &a, &b);
	if (a > 0)
		memmove(v->data, v->data + a, b - a);
	tv_setlen(v, b - a);
	return TX_OK;
}

static TxStatus apply_nullif(const Step *s, TxValue *v)
{
	size_t i;

	for (i = 0; i < s->ntexts; i++) {
		if (v->len == s->text_lens[i] && memcmp(v->data, s->texts[i], v->len) == 0) {
			txvalue_set_null(v);
			break;
		}
	}
	return TX_OK;
}

static bool is_control(unsigned char c, bool keep_ws)
{
	if (c == 0x7F)
		return true;
	if (c >= 0x20)
		return false;
	return !(keep_ws && (c == '\t' || c == '\n' || c == '\r'));
}

/*
 * Rule: strip_control removes C0 control bytes (0x00-0x1F) and DEL (0x7F). TAB, LF and CR are
 * kept unless "keep_whitespace": false, because multi-line notes legitimately hold them (trim
 * removes them at the ends). C1 controls (U+0080-U+009F) are left alone: they are usually
 * mojibake that "recode" can still repair, so put recode first.
 */
static TxStatus apply_strip_control(const Step *s, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP];
	size_t i, w = 0, removed = 0;

	for (i = 0; i < v->len; i++)
		if (is_control((unsigned char)v->data[i], s->keep_ws))
			removed++;
	if (removed == 0)
		return TX_OK;
	quote(q, sizeof(q), v->data, v->len);
	for (i = 0; i < v->len; i++)
		if (!is_control((unsigned char)v->data[i], s->keep_ws))
			v->data[w++] = v->data[i];
	tv_setlen(v, w);
	return warnf(cx, "control_chars_removed", "removed %zu control character%s from '%s'",
		     removed, removed == 1 ? "" : "s", q);
}

static TxStatus apply_replace(const Step *s, TxEnv *env, TxValue *v)
{
	const char *p = v->data, *end = v->data + v->len, *hit;

	hit = memmem(p, v->len, s->a, s->a_len);
	if (hit == NULL)
		return TX_OK;
	tv_clear(&env->scratch);
	while (hit != NULL) {
		tv_append(&env->scratch, p, (size_t)(hit - p));
		tv_append(&env->scratch, s->b, s->b_len);
		p = hit + s->a_len;
		hit = memmem(p, (size_t)(end - p), s->a, s->a_len);
	}
	tv_append(&env->scratch, p, (size_t)(end - p));
	tv_swap(v, &env->scratch);
	return TX_OK;
}

static TxStatus apply_prefix(const Step *s, TxEnv *env, TxValue *v)
{
	tv_clear(&env->scratch);
	tv_append(&env->scratch, s->a, s->a_len);
	tv_append(&env->scratch, v->data, v->len);
	tv_swap(v, &env->scratch);
	return TX_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* lower, upper                                                                                 */

/*
 * Rule: case mapping covers ASCII, Latin-1, Latin Extended-A (Ş ş Ğ ğ İ ı and the other
 * European letters), Ə/ə and basic Cyrillic (name_ru). Without a locale, İ lowers to "i" and
 * ı uppers to "I", while ASCII I/i map to each other as in English, so e-mail addresses and
 * codes behave. With "locale": "az" (or "tr") ASCII I lowers to ı and i uppers to İ, as
 * Azerbaijani spelling requires. Invalid UTF-8 bytes are copied unchanged; ß and other
 * letters without a one-to-one mapping stay as they are.
 */
static uint32_t cp_lower(uint32_t c, bool turkic)
{
	if (c >= 'A' && c <= 'Z')
		return (turkic && c == 'I') ? 0x131 : c + 32;
	if (c < 0x80)
		return c;
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 0x20;
	if (c == 0x130)
		return 'i';
	if (c == 0x18F)
		return 0x259;
	if (c == 0x178)
		return 0xFF;
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
		return (c % 2 == 0) ? c + 1 : c;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
		return (c % 2 == 1) ? c + 1 : c;
	if (c >= 0x410 && c <= 0x42F)
		return c + 0x20;
	if (c >= 0x400 && c <= 0x40F)
		return c + 0x50;
	return c;
}

static uint32_t cp_upper(uint32_t c, bool turkic)
{
	if (c >= 'a' && c <= 'z')
		return (turkic && c == 'i') ? 0x130 : c - 32;
	if (c < 0x80)
		return c;
	if (c >= 0xE0 && c <= 0xFE && c != 0xF7)
		return c - 0x20;
	if (c == 0xFF)
		return 0x178;
	if (c == 0x131)
		return 'I';
	if (c == 0x259)
		return 0x18F;
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
		return (c % 2 == 1) ? c - 1 : c;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
		return (c % 2 == 0) ? c - 1 : c;
	if (c >= 0x430 && c <= 0x44F)
		return c - 0x20;
	if (c >= 0x450 && c <= 0x45F)
		return c - 0x50;
	return c;
}

static TxStatus apply_case(const Step *s, TxEnv *env, TxValue *v, bool upper)
{
	const unsigned char *p = (const unsigned char *)v->data;
	TxValue *o = &env->scratch;
	size_t i = 0, n;
	uint32_t cp;
	char enc[4];

	tv_reserve(o, v->len + v->len / 2 + 8);
	tv_setlen(o, 0);
	while (i < v->len) {
		if (p[i] < 0x80) {
			cp = upper ? cp_upper(p[i], s->turkic) : cp_lower(p[i], s->turkic);
			n = 1;
		} else {
			n = utf8_decode(p + i, v->len - i, &cp);
			if (n == 0) {
				tv_append_byte(o, p[i]);
				i++;
				continue;
			}
			cp = upper ? cp_upper(cp, s->turkic) : cp_lower(cp, s->turkic);
		}
		tv_append(o, enc, utf8_encode(cp, enc));
		i += n;
	}
	tv_swap(v, o);
	return TX_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* date, timestamp                                                                              */

static int days_in_month(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return (m == 2 && leap) ? 29 : days[m - 1];
}

/* Matches @s against @f exactly; fills f[DT_YEAR..DT_SEC] (time fields default to 0). */
static bool dt_match(const DateFmt *f, const char *s, size_t len, int fields[7])
{
	size_t p = 0, i, k;
	int val;

	for (i = 0; i < 7; i++)
		fields[i] = 0;
	for (i = 0; i < f->n; i++) {
		const DtItem *it = &f->items[i];

		if (it->kind == DT_LIT) {
			if (p >= len || s[p] != it->lit)
				return false;
			p++;
			continue;
		}
		val = 0;
		for (k = 0; k < it->maxw && p + k < len && is_digit((unsigned char)s[p + k]); k++)
			val = val * 10 + (s[p + k] - '0');
		if (k < it->minw)
			return false;
		p += k;
		fields[it->kind] = val;
	}
	return p == len;
}

static TxStatus apply_date(const Step *s, TxValue *v, Ctx *cx, bool with_time)
{
	char q[QUOTE_CAP], buf[32];
	const char *in;
	size_t a, b, i;
	int f[7], why = 0, bad_year = 0, r;

	trim_span(v->data, v->len, &a, &b);
	in = v->data + a;
	if (a == b) {
		if (s->empty_invalid)
			return invalidf(cx, "invalid_date", "empty date (formats %s)", s->fmt_list);
		txvalue_set_null(v);
		return TX_OK;
	}
	for (i = 0; i < s->nfmts; i++) {
		if (!dt_match(&s->fmts[i], in, b - a, f))
			continue;
		if (f[DT_MONTH] < 1 || f[DT_MONTH] > 12 || f[DT_DAY] < 1 ||
		    f[DT_DAY] > days_in_month(f[DT_YEAR], f[DT_MONTH]) ||
		    f[DT_HOUR] > 23 || f[DT_MIN] > 59 || f[DT_SEC] > 59) {
			if (why == 0)
				why = 1;
			continue;
		}
		if (f[DT_YEAR] < s->min_year || f[DT_YEAR] > s->max_year) {
			if (why == 0) {
				why = 2;
				bad_year = f[DT_YEAR];
			}
			continue;
		}
		if (with_time)
			r = snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d", f[DT_YEAR],
				     f[DT_MONTH], f[DT_DAY], f[DT_HOUR], f[DT_MIN], f[DT_SEC]);
		else
			r = snprintf(buf, sizeof(buf), "%04d-%02d-%02d", f[DT_YEAR], f[DT_MONTH],
				     f[DT_DAY]);
		if (r < 0 || (size_t)r >= sizeof(buf))
			return invalidf(cx, "invalid_date", "date fields of '%s' could not be formatted",
					quote(q, sizeof(q), in, b - a));
		txvalue_set(v, buf, (size_t)r);
		return TX_OK;
	}
	quote(q, sizeof(q), in, b - a);
	if (why == 2)
		return invalidf(cx, "invalid_date", "date '%s' has year %d outside %d..%d", q, bad_year,
				s->min_year, s->max_year);
	return invalidf(cx, "invalid_date", "%s date '%s' (formats %s)",
			why == 1 ? "impossible" : "unrecognised", q, s->fmt_list);
}

/* ------------------------------------------------------------------------------------------ */
/* Numbers: scale, int, numeric                                                                 */

/*
 * Dec - an exact decimal: value = digits * 10^exp, digits without leading zeros ("" = 0).
 * Used so numeric's rounding is exact on the input text (half away from zero, as PostgreSQL
 * rounds numeric) instead of inheriting binary floating-point ties.
 */
#define DEC_MAX 96
#define DEC_EXP_LIMIT 200

typedef struct Dec {
	bool neg;
	int n;
	int exp;
	char d[DEC_MAX + 2];
} Dec;

typedef enum NumParse { NUM_OK, NUM_SYNTAX, NUM_RANGE } NumParse;

/* Parses [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)? covering all of @s. */
static NumParse dec_parse(const char *s, size_t len, Dec *x)
{
	size_t i = 0;
	int seen = 0, frac = 0;
	long e = 0;
	bool dot = false, eneg = false;

	x->neg = false;
	x->n = 0;
	x->exp = 0;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		x->neg = s[i++] == '-';
	for (; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_digit(c)) {
			seen++;
			if (dot)
				frac++;
			if (x->n == 0 && c == '0')
				continue;
			if (x->n >= DEC_MAX)
				return NUM_RANGE;
			x->d[x->n++] = (char)c;
		} else if (c == '.' && !dot) {
			dot = true;
		} else {
			break;
		}
	}
	if (seen == 0)
		return NUM_SYNTAX;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			eneg = s[i++] == '-';
		if (i >= len || !is_digit((unsigned char)s[i]))
			return NUM_SYNTAX;
		for (; i < len && is_digit((unsigned char)s[i]); i++)
			if (e < 100000)
				e = e * 10 + (s[i] - '0');
	}
	if (i != len)
		return NUM_SYNTAX;
	e = (eneg ? -e : e) - frac;
	if (x->n == 0)
		e = 0;
	if (e < -DEC_EXP_LIMIT || e > DEC_EXP_LIMIT)
		return NUM_RANGE;
	x->exp = (int)e;
	x->d[x->n] = '\0';
	return NUM_OK;
}

/* Rounds @x to @digits decimals, half away from zero. */
static void dec_round(Dec *x, int digits)
{
	int k, i;
	bool up;

	if (digits < 0 || x->exp >= -digits)
		return;
	k = -digits - x->exp;
	if (k > x->n) {
		x->n = 0;
	} else {
		up = x->d[x->n - k] >= '5';
		x->n -= k;
		if (up) {
			for (i = x->n - 1; i >= 0 && x->d[i] == '9'; i--)
				x->d[i] = '0';
			if (i >= 0) {
				x->d[i]++;
			} else {
				memmove(x->d + 1, x->d, (size_t)x->n);
				x->d[0] = '1';
				x->n++;
			}
		}
	}
	x->exp = -digits;
	x->d[x->n] = '\0';
}

/* Writes @x as plain decimal text with exactly @digits decimals (-1: as many as it has). */
static void dec_format(const Dec *x, int digits, TxValue *out)
{
	int f = x->exp < 0 ? -x->exp : 0, want, i;
	bool zero = x->n == 0;

	want = digits < 0 ? f : digits;
	if (zero)
		f = 0;
	tv_clear(out);
	if (x->neg && !zero)
		tv_append_byte(out, '-');
	if (zero || (x->exp < 0 && x->n <= f)) {
		tv_append_byte(out, '0');
	} else if (x->exp >= 0) {
		tv_append(out, x->d, (size_t)x->n);
		for (i = 0; i < x->exp; i++)
			tv_append_byte(out, '0');
	} else {
		tv_append(out, x->d, (size_t)(x->n - f));
	}
	if (want <= 0)
		return;
	tv_append_byte(out, '.');
	if (f > 0) {
		for (i = x->n; i < f; i++)
			tv_append_byte(out, '0');
		if (x->n <= f)
			tv_append(out, x->d, (size_t)x->n);
		else
			tv_append(out, x->d + (x->n - f), (size_t)f);
	}
	for (i = f; i < want; i++)
		tv_append_byte(out, '0');
}

/* The number in @v without surrounding whitespace; false when it is empty. */
static bool number_span(const TxValue *v, const char **s, size_t *len)
{
	size_t a, b;

	trim_span(v->data, v->len, &a, &b);
	*s = v->data + a;
	*len = b - a;
	return b > a;
}

/* The double nearest @x; strtod runs in the C locale so LC_NUMERIC cannot change it. */
static double dec_to_double(TxEnv *env, const Dec *x)
{
	char buf[DEC_MAX + 32];
	locale_t old;
	double d;
	int r;

	if (x->n == 0)
		return 0.0;
	r = snprintf(buf, sizeof(buf), "%s%se%d", x->neg ? "-" : "", x->d, x->exp);
	if (r < 0 || (size_t)r >= sizeof(buf))
		return NAN;     /* cannot happen with DEC_MAX digits; fails every range check */
	old = uselocale(env->c_locale);
	d = strtod(buf, NULL);
	uselocale(old);
	return d;
}

/*
 * Rule: "scale" maps [from] linearly onto [to] and rounds to "digits" decimals (default 2),
 * half away from zero, after cutting the result to 15 significant digits so binary noise
 * (2.6999999999999997) does not decide a tie. Numbers are plain decimals with an optional
 * exponent; NaN, infinity, hex and comma decimals are "not_a_number". Empty input is NULL
 * unless "empty": "invalid" (the same for int and numeric).
 */
static TxStatus apply_scale(const Step *s, TxEnv *env, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP], buf[64];
	const char *in;
	size_t len;
	double x, y, lo, hi;
	locale_t old;
	Dec d;
	int r;

	if (!number_span(v, &in, &len)) {
		if (s->empty_invalid)
			return invalidf(cx, "not_a_number", "empty value is not a number");
		txvalue_set_null(v);
		return TX_OK;
	}
	switch (dec_parse(in, len, &d)) {
	case NUM_OK:
		break;
	case NUM_SYNTAX:
		return invalidf(cx, "not_a_number", "'%s' is not a number",
				quote(q, sizeof(q), in, len));
	case NUM_RANGE:
		return invalidf(cx, "out_of_range", "%s is outside %s",
				quote(q, sizeof(q), in, len), s->range_text);
	}
	x = dec_to_double(env, &d);
	lo = s->from_a < s->from_b ? s->from_a : s->from_b;
	hi = s->from_a < s->from_b ? s->from_b : s->from_a;
	if (!(x >= lo && x <= hi))
		return invalidf(cx, "out_of_range", "%s is outside %s",
				quote(q, sizeof(q), in, len), s->range_text);
	y = s->to_a + (x - s->from_a) * (s->to_b - s->to_a) / (s->from_b - s->from_a);
	old = uselocale(env->c_locale);
	r = snprintf(buf, sizeof(buf), "%.14e", y);
	uselocale(old);
	if (r < 0 || (size_t)r >= sizeof(buf) || dec_parse(buf, (size_t)r, &d) != NUM_OK)
		return invalidf(cx, "out_of_range", "%s scales to a value that cannot be written",
				quote(q, sizeof(q), in, len));
	dec_round(&d, s->digits);
	dec_format(&d, s->digits, &env->scratch);
	tv_swap(v, &env->scratch);
	return TX_OK;
}

static TxStatus apply_int(const Step *s, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP], buf[32];
	const char *in;
	size_t len, i = 0, k;
	long long n;
	char *end;
	int r;

	if (!number_span(v, &in, &len)) {
		if (s->empty_invalid)
			return invalidf(cx, "not_an_integer", "empty value is not an integer");
		txvalue_set_null(v);
		return TX_OK;
	}
	quote(q, sizeof(q), in, len);
	if (in[0] == '+' || in[0] == '-')
		i++;
	if (i == len)
		return invalidf(cx, "not_an_integer", "'%s' is not an integer", q);
	for (k = i; k < len; k++)
		if (!is_digit((unsigned char)in[k]))
			return invalidf(cx, "not_an_integer", "'%s' is not an integer", q);
	/* Leading zeros say nothing about magnitude; drop them before the length check. */
	while (i + 1 < len && in[i] == '0')
		i++;
	if (len - i + 1 >= sizeof(buf))
		return invalidf(cx, "out_of_range", "%s does not fit a 64-bit integer", q);
	buf[0] = in[0] == '-' ? '-' : '+';
	memcpy(buf + 1, in + i, len - i);
	buf[len - i + 1] = '\0';
	errno = 0;
	n = strtoll(buf, &end, 10);
	if (errno == ERANGE)
		return invalidf(cx, "out_of_range", "%s does not fit a 64-bit integer", q);
	if (*end != '\0')
		return invalidf(cx, "not_an_integer", "'%s' is not an integer", q);
	if ((s->has_min && n < s->imin) || (s->has_max && n > s->imax))
		return invalidf(cx, "out_of_range", "%lld is outside %s", n, s->range_text);
	r = snprintf(buf, sizeof(buf), "%lld", n);
	if (r < 0 || (size_t)r >= sizeof(buf))
		return invalidf(cx, "not_an_integer", "'%s' could not be written back", q);
	txvalue_set(v, buf, (size_t)r);
	return TX_OK;
}

static TxStatus apply_numeric(const Step *s, TxEnv *env, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP];
	const char *in;
	size_t len;
	double x;
	Dec d;

	if (!number_span(v, &in, &len)) {
		if (s->empty_invalid)
			return invalidf(cx, "not_a_number", "empty value is not a number");
		txvalue_set_null(v);
		return TX_OK;
	}
	quote(q, sizeof(q), in, len);
	switch (dec_parse(in, len, &d)) {
	case NUM_OK:
		break;
	case NUM_SYNTAX:
		return invalidf(cx, "not_a_number", "'%s' is not a number", q);
	case NUM_RANGE:
		return invalidf(cx, "out_of_range", "%s is too large or too precise", q);
	}
	if (s->has_min || s->has_max) {
		x = dec_to_double(env, &d);
		if ((s->has_min && x < s->dmin) || (s->has_max && x > s->dmax))
			return invalidf(cx, "out_of_range", "%s is outside %s", q, s->range_text);
	}
	dec_round(&d, s->digits);
	dec_format(&d, s->digits, &env->scratch);
	tv_swap(v, &env->scratch);
	return TX_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* email                                                                                        */

/* Why @s is not an address this migration accepts, or NULL when it is one. */
static const char *email_problem(const char *s, size_t len, size_t *at_out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i, at = 0, ats = 0, label = 0;
	bool dot = false;

	if (len > 254)
		return "longer than 254 characters";
	if (!tx_utf8_valid(s, len))
		return "not valid UTF-8";
	for (i = 0; i < len; i++) {
		if (p[i] <= 0x20 || p[i] == 0x7F)
			return "contains whitespace or control characters";
		if (p[i] == 0xC2 && i + 1 < len && p[i + 1] == 0xA0)
			return "contains whitespace or control characters";
		if (p[i] == '@') {
			ats++;
			at = i;
		}
	}
	if (ats == 0)
		return "no '@'";
	if (ats > 1)
		return "more than one '@'";
	if (at == 0)
		return "empty local part";
	if (at > 64)
		return "local part longer than 64 characters";
	for (i = 0; i < at; i++)
		if (strchr("()<>[]\\,;:\"", p[i]) != NULL)
			return "local part has a character that needs quoting";
	if (at + 1 == len)
		return "empty domain";
	if (p[at + 1] == '.' || p[at + 1] == '-')
		return "domain starts with '.' or '-'";
	if (p[len - 1] == '.' || p[len - 1] == '-')
		return "domain ends with '.' or '-'";
	for (i = at + 1; i <= len; i++) {
		if (i == len || p[i] == '.') {
			if (label == 0)
				return "domain has an empty label";
			if (p[i - 1] == '-' || p[i - label] == '-')
				return "domain label starts or ends with '-'";
			if (label > 63)
				return "domain label longer than 63 characters";
			if (i < len)
				dot = true;
			label = 0;
			continue;
		}
		if (!(p[i] >= 0x80 || p[i] == '-' || is_digit(p[i]) ||
		      (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')))
			return "domain has a character other than letters, digits, '-' and '.'";
		label++;
	}
	if (!dot)
		return "no dot in domain";
	*at_out = at;
	return NULL;
}

/*
 * Rule: "email" trims, turns empty into NULL, and accepts an address with one '@', a local part
 * of 1-64 bytes without whitespace or RFC 5322 specials, and a dotted domain of letters,
 * digits, '-' and non-ASCII (IDN) labels; the domain (not the local part, which mail servers
 * may treat case-sensitively) is lower-cased.
 */
static TxStatus apply_email(TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP];
	const char *why;
	size_t a, b, i, at = 0;

	trim_span(v->data, v->len, &a, &b);
	if (a == b) {
		txvalue_set_null(v);
		return TX_OK;
	}
	why = email_problem(v->data + a, b - a, &at);
	if (why != NULL)
		return invalidf(cx, "invalid_email", "invalid e-mail '%s': %s",
				quote(q, sizeof(q), v->data + a, b - a), why);
	if (a > 0)
		memmove(v->data, v->data + a, b - a);
	tv_setlen(v, b - a);
	for (i = at + 1; i < v->len; i++)
		if (v->data[i] >= 'A' && v->data[i] <= 'Z')
			v->data[i] = (char)(v->data[i] + 32);
	return TX_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* base64_decode, bcrypt                                                                        */

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (is_digit(c))
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Rule: base64_decode accepts the standard alphabet with or without '=' padding and ignores
 * whitespace anywhere (PostgreSQL's encode(..., 'base64') wraps lines at 76 characters). An
 * empty or all-whitespace value is "empty_value", never NULL: an account must not silently
 * end up without a password. Decoding is in place and the encoded text left behind is wiped.
 */
static TxStatus apply_base64(TxValue *v, Ctx *cx)
{
	unsigned char *p = (unsigned char *)v->data;
	size_t r, w = 0, chars = 0, pad = 0, old_len = v->len;
	uint32_t acc = 0;
	int q = 0, val;

	for (r = 0; r < v->len; r++) {
		if (is_ascii_space(p[r]))
			continue;
		if (p[r] == '=') {
			pad++;
			continue;
		}
		if (pad > 0)
			return invalidf(cx, "not_base64",
					"value of %zu bytes is not base64: data after '=' padding", old_len);
		val = b64_value(p[r]);
		if (val < 0)
			return invalidf(cx, "not_base64",
					"value of %zu bytes is not base64: character outside the alphabet at offset %zu",
					old_len, r);
		acc = (acc << 6) | (uint32_t)val;
		chars++;
		if (++q == 4) {
			p[w++] = (unsigned char)(acc >> 16);
			p[w++] = (unsigned char)(acc >> 8);
			p[w++] = (unsigned char)acc;
			acc = 0;
			q = 0;
		}
	}
	if (chars == 0 && pad == 0)
		return invalidf(cx, "empty_value", "empty value where base64 was expected");
	if (q == 1 || (q == 0 && pad > 0) || (q == 2 && pad != 0 && pad != 2) ||
	    (q == 3 && pad > 1))
		return invalidf(cx, "not_base64", "value of %zu bytes is not base64: wrong length", old_len);
	if (q == 2) {
		p[w++] = (unsigned char)(acc >> 4);
	} else if (q == 3) {
		p[w++] = (unsigned char)(acc >> 10);
		p[w++] = (unsigned char)(acc >> 2);
	}
	explicit_bzero(p + w, old_len - w);
	tv_setlen(v, w);
	return TX_OK;
}

#define BCRYPT_MAX_BYTES 72

/*
 * Rule: bcrypt hashes with "$2b$" and a salt derived, not drawn: the 16 salt bytes are the
 * UUIDv5 (SHA-1) of the env's salt namespace and "bcrypt-salt:<row key>", so a re-run gives
 * the same hash (DESIGN contract 3). Six bits are fixed by the UUID version and variant,
 * leaving 122 varying bits; that is harmless because a salt must be unique per row, not
 * secret or uniformly random. bcrypt only reads 72 bytes: longer secrets are hashed on their
 * first 72 bytes (verification truncates the same way) with warning "secret_truncated".
 * Empty secrets ("empty_value") and secrets holding NUL bytes ("secret_has_nul") are refused.
 * Details never contain the secret; the plaintext is wiped from the buffer afterwards.
 */
static TxStatus apply_bcrypt(const Step *s, TxEnv *env, TxValue *v, Ctx *cx)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	char phrase[BCRYPT_MAX_BYTES + 1];
	uuid_t salt;
	const char *hash;
	size_t n = v->len, hlen;
	bool truncated = false;

	if (v->len == 0)
		return invalidf(cx, "empty_value", "empty secret cannot be hashed");
	if (memchr(v->data, '\0', v->len) != NULL)
		return invalidf(cx, "secret_has_nul", "secret of %zu bytes contains a NUL byte, which bcrypt cannot hash",
				v->len);
	if (env->salt_name.null)
		return invalidf(cx, "row_key_missing", "no row key set: the bcrypt salt cannot be derived");
	if (env->crypt == NULL)
		env->crypt = xcalloc(1, sizeof(*env->crypt));
	uuid_generate_sha1(salt, env->salt_ns, env->salt_name.data, env->salt_name.len);
	if (crypt_gensalt_rn("$2b$", (unsigned long)s->cost, (const char *)salt, (int)sizeof(salt),
			     setting, (int)sizeof(setting)) == NULL)
		return invalidf(cx, "hash_failed", "libcrypt could not make a $2b$ setting (cost %d): %s",
				s->cost, strerror(errno));
	if (n > BCRYPT_MAX_BYTES) {
		n = BCRYPT_MAX_BYTES;
		truncated = true;
	}
	memcpy(phrase, v->data, n);
	phrase[n] = '\0';
	if (env->pool && cx->last) {
		/* Hashed with the rest of the batch on every core; the placeholder has the hash's
		 * length and is replaced before the batch reaches the target. */
		char placeholder[HASHPOOL_HASH_LEN + 1];
		bool queued = hashpool_add(env->pool, setting, phrase, placeholder);
		explicit_bzero(phrase, sizeof(phrase));
		explicit_bzero(v->data, v->cap);
		if (!queued)
			return invalidf(cx, "hash_failed", "libcrypt made no $2b$ setting of the expected length (cost %d)",
					s->cost);
		txvalue_set(v, placeholder, HASHPOOL_HASH_LEN);
		if (truncated)
			return warnf(cx, "secret_truncated", "secret longer than %d bytes: bcrypt hashed its first %d bytes",
				     BCRYPT_MAX_BYTES, BCRYPT_MAX_BYTES);
		return TX_OK;
	}
	hash = crypt_rn(phrase, setting, env->crypt, (int)sizeof(*env->crypt));
	explicit_bzero(phrase, sizeof(phrase));
	explicit_bzero(v->data, v->cap);
	if (hash == NULL || strncmp(hash, "$2b$", 4) != 0) {
		explicit_bzero(env->crypt, sizeof(*env->crypt));
		return invalidf(cx, "hash_failed", "libcrypt could not hash the secret: %s",
				strerror(errno));
	}
	hlen = strlen(hash);
	txvalue_set(v, hash, hlen);
	/* The work area holds the hash and key schedule; nothing of it should outlive the call. */
	explicit_bzero(env->crypt, sizeof(*env->crypt));
	if (truncated)
		return warnf(cx, "secret_truncated",
			     "secret longer than %d bytes: bcrypt hashed its first %d bytes",
			     BCRYPT_MAX_BYTES, BCRYPT_MAX_BYTES);
	return TX_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* recode                                                                                       */

/* Code points above U+00FF that Windows-1252/1254 put in single bytes. */
static const struct {
	uint16_t cp;
	unsigned char byte;
} cp125x_high[] = {
	{ 0x20AC, 0x80 }, { 0x201A, 0x82 }, { 0x0192, 0x83 }, { 0x201E, 0x84 },
	{ 0x2026, 0x85 }, { 0x2020, 0x86 }, { 0x2021, 0x87 }, { 0x02C6, 0x88 },
	{ 0x2030, 0x89 }, { 0x0160, 0x8A }, { 0x2039, 0x8B }, { 0x0152, 0x8C },
	{ 0x017D, 0x8E }, { 0x2018, 0x91 }, { 0x2019, 0x92 }, { 0x201C, 0x93 },
	{ 0x201D, 0x94 }, { 0x2022, 0x95 }, { 0x2013, 0x96 }, { 0x2014, 0x97 },
	{ 0x02DC, 0x98 }, { 0x2122, 0x99 }, { 0x0161, 0x9A }, { 0x203A, 0x9B },
	{ 0x0153, 0x9C }, { 0x017E, 0x9E }, { 0x0178, 0x9F },
	/* Windows-1254's Turkish letters, in the places Latin-1 has Icelandic ones. */
	{ 0x011E, 0xD0 }, { 0x0130, 0xDD }, { 0x015E, 0xDE }, { 0x011F, 0xF0 },
	{ 0x0131, 0xFD }, { 0x015F, 0xFE },
};

static int single_byte_of(uint32_t cp)
{
	size_t i;

	if (cp <= 0xFF)
		return (int)cp;
	for (i = 0; i < sizeof(cp125x_high) / sizeof(cp125x_high[0]); i++)
		if (cp125x_high[i].cp == cp)
			return cp125x_high[i].byte;
	return -1;
}

/*
 * undo_double_utf8 - if the valid UTF-8 in @v reads as UTF-8 bytes that were once decoded as
 * Latin-1/Windows-1252/1254 and encoded again, writes the original into @out and returns true.
 * Only text that becomes valid UTF-8 with at least one multi-byte character qualifies, which
 * real single-encoded text almost never does.
 */
static bool undo_double_utf8(const TxValue *v, TxValue *out)
{
	const unsigned char *p = (const unsigned char *)v->data;
	size_t i = 0, n;
	uint32_t cp;
	bool multi = false;
	int b;

	tv_reserve(out, v->len + 1);
	tv_setlen(out, 0);
	while (i < v->len) {
		n = utf8_decode(p + i, v->len - i, &cp);
		if (n == 0)
			return false;
		b = single_byte_of(cp);
		if (b < 0)
			return false;
		if (b >= 0x80)
			multi = true;
		out->data[out->len++] = (char)b;
		i += n;
	}
	out->data[out->len] = '\0';
	return multi && tx_utf8_valid(out->data, out->len);
}

/* Converts @v from @enc to UTF-8 into env->scratch; on failure *bad is the offending offset. */
static bool convert_to_utf8(TxEnv *env, iconv_t cd, const TxValue *v, size_t *bad)
{
	TxValue *o = &env->scratch;
	char *in = v->data, *outp;
	size_t inleft = v->len, outleft, used;

	iconv(cd, NULL, NULL, NULL, NULL);
	tv_reserve(o, v->len * 2 + 16);
	o->len = 0;
	for (;;) {
		outp = o->data + o->len;
		outleft = o->cap - o->len - 1;
		if (inleft == 0) {
			size_t fr = iconv(cd, NULL, NULL, &outp, &outleft);

			o->len = (size_t)(outp - o->data);
			if (fr == (size_t)-1 && errno == E2BIG) {
				tv_reserve(o, o->cap * 2);
				continue;
			}
			break;
		}
		if (iconv(cd, &in, &inleft, &outp, &outleft) != (size_t)-1) {
			o->len = (size_t)(outp - o->data);
			continue;
		}
		used = (size_t)(outp - o->data);
		o->len = used;
		if (errno == E2BIG) {
			tv_reserve(o, o->cap * 2);
			continue;
		}
		*bad = (size_t)(in - v->data);
		return false;
	}
	o->data[o->len] = '\0';
	return true;
}

/*
 * Rule: recode leaves valid UTF-8 alone, except that with "fix_double_utf8": true (off by
 * default, since it rewrites valid text) double-encoded text is repaired, up to three layers.
 * Text that is not valid UTF-8 is taken to be in the "from" encoding as a whole and converted;
 * both cases warn "recoded_text" so data owners see which rows were guessed at.
 */
static TxStatus apply_recode(const Step *s, TxEnv *env, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP];
	iconv_t cd;
	size_t bad = 0;
	int layers = 0;

	if (tx_utf8_valid(v->data, v->len)) {
		if (!s->fix_double)
			return TX_OK;
		while (layers < 3 && undo_double_utf8(v, &env->scratch)) {
			tv_swap(v, &env->scratch);
			layers++;
		}
		if (layers == 0)
			return TX_OK;
		return warnf(cx, "recoded_text", "double-encoded UTF-8 repaired%s",
			     layers > 1 ? " (several layers)" : "");
	}
	cd = env_conv(env, s->enc);
	if (cd == (iconv_t)-1)
		return invalidf(cx, "invalid_encoding", "encoding %s cannot be opened: %s", s->enc,
				strerror(errno));
	if (!convert_to_utf8(env, cd, v, &bad)) {
		quote(q, sizeof(q), v->data, v->len);
		if (bad < v->len)
			return invalidf(cx, "invalid_encoding",
					"byte 0x%02X at offset %zu is not valid %s in '%s'",
					(unsigned char)v->data[bad], bad, s->enc, q);
		return invalidf(cx, "invalid_encoding", "'%s' ends inside a %s character", q, s->enc);
	}
	tv_swap(v, &env->scratch);
	return warnf(cx, "recoded_text", "converted from %s", s->enc);
}

/* ------------------------------------------------------------------------------------------ */
/* map, lookup                                                                                  */

static TxStatus apply_map(const Step *s, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP], dq[QUOTE_CAP];
	const MapEntry *e;

	if (v->null) {
		if (s->null_text != NULL)
			txvalue_set(v, s->null_text, strlen(s->null_text));
		return TX_OK;
	}
	e = map_find(&s->map, v->data, v->len);
	if (e != NULL) {
		if (e->val == NULL)
			txvalue_set_null(v);
		else
			txvalue_set(v, e->val, strlen(e->val));
		return TX_OK;
	}
	quote(q, sizeof(q), v->data, v->len);
	if (!s->has_default)
		return invalidf(cx, "unmapped_value", "unmapped value '%s'", q);
	if (s->def == NULL) {
		txvalue_set_null(v);
		return warnf(cx, "map_default", "unmapped value '%s' → NULL", q);
	}
	txvalue_set(v, s->def, s->def_len);
	return warnf(cx, "map_default", "unmapped value '%s' → '%s'", q,
		     quote(dq, sizeof(dq), s->def, s->def_len));
}

static TxStatus apply_lookup(const Step *s, TxEnv *env, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP];
	const StrMap *t = lookups_table(env->lookups, s->table);
	const MapEntry *e;

	if (t == NULL)
		return invalidf(cx, "lookup_table_missing", "lookup table '%s' is not loaded", s->table);
	e = map_find(t, v->data, v->len);
	if (e != NULL) {
		if (e->val == NULL)
			txvalue_set_null(v);
		else
			txvalue_set(v, e->val, strlen(e->val));
		return TX_OK;
	}
	quote(q, sizeof(q), v->data, v->len);
	switch (s->on_missing) {
	case ON_MISSING_NULL:
		txvalue_set_null(v);
		return warnf(cx, "lookup_missing", "no entry for '%s' in lookup table '%s'; set to NULL",
			     q, s->table);
	case ON_MISSING_KEEP:
		return TX_OK;
	default:
		return invalidf(cx, "lookup_missing", "no entry for '%s' in lookup table '%s'", q,
				s->table);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Applying a chain                                                                             */

static TxStatus apply_step(const Step *s, TxEnv *env, TxValue *v, Ctx *cx)
{
	char q[QUOTE_CAP];

	/* Steps that give NULL a meaning; every other step passes NULL through. */
	switch (s->kind) {
	case STEP_MAP:
		return apply_map(s, v, cx);
	case STEP_REQUIRE:
		if (v->null)
			return invalidf(cx, "required_value_missing", "value is NULL but required");
		return TX_OK;
	case STEP_DEFAULT:
		if (!v->null)
			return TX_OK;
		txvalue_set(v, s->a, s->a_len);
		return warnf(cx, "value_defaulted", "NULL replaced by '%s'", quote(q, sizeof(q), s->a, s->a_len));
	case STEP_TRIM:
	case STEP_LOWER:
	case STEP_UPPER:
	case STEP_NULLIF_EMPTY:
	case STEP_NULLIF:
	case STEP_STRIP_CONTROL:
	case STEP_DATE:
	case STEP_TIMESTAMP:
	case STEP_SCALE:
	case STEP_INT:
	case STEP_NUMERIC:
	case STEP_EMAIL:
	case STEP_BASE64_DECODE:
	case STEP_BCRYPT:
	case STEP_RECODE:
	case STEP_LOOKUP:
	case STEP_REPLACE:
	case STEP_PREFIX:
	case STEP_SUFFIX:
	case STEP_COUNT_:
		break;
	}
	if (v->null)
		return TX_OK;
	switch (s->kind) {
	case STEP_TRIM:
		return apply_trim(v);
	case STEP_LOWER:
		return apply_case(s, env, v, false);
	case STEP_UPPER:
		return apply_case(s, env, v, true);
	case STEP_NULLIF_EMPTY:
		if (v->len == 0)
			txvalue_set_null(v);
		return TX_OK;
	case STEP_NULLIF:
		return apply_nullif(s, v);
	case STEP_STRIP_CONTROL:
		return apply_strip_control(s, v, cx);
	case STEP_DATE:
		return apply_date(s, v, cx, false);
	case STEP_TIMESTAMP:
		return apply_date(s, v, cx, true);
	case STEP_SCALE:
		return apply_scale(s, env, v, cx);
	case STEP_INT:
		return apply_int(s, v, cx);
	case STEP_NUMERIC:
		return apply_numeric(s, env, v, cx);
	case STEP_EMAIL:
		return apply_email(v, cx);
	case STEP_BASE64_DECODE:
		return apply_base64(v, cx);
	case STEP_BCRYPT:
		return apply_bcrypt(s, env, v, cx);
	case STEP_RECODE:
		return apply_recode(s, env, v, cx);
	case STEP_LOOKUP:
		return apply_lookup(s, env, v, cx);
	case STEP_REPLACE:
		return apply_replace(s, env, v);
	case STEP_PREFIX:
		return apply_prefix(s, env, v);
	case STEP_SUFFIX:
		tv_append(v, s->a, s->a_len);
		return TX_OK;
	case STEP_MAP:
	case STEP_REQUIRE:
	case STEP_DEFAULT:
	case STEP_COUNT_:
		break;
	}
	return TX_OK;
}

TxStatus txchain_apply(const TxChain *c, TxEnv *env, TxValue *v, TxOutcome *out)
{
	TxOutcome local;
	Ctx cx;
	size_t i;

	if (out == NULL)
		out = &local;
	out->status = TX_OK;
	out->code = NULL;
	out->step = -1;
	out->detail[0] = '\0';
	if (!v->null && v->data == NULL)
		txvalue_set(v, "", 0);
	cx.out = out;
	for (i = 0; i < c->n; i++) {
		cx.step = (int)i;
		cx.last = i + 1 == c->n;
		if (apply_step(&c->steps[i], env, v, &cx) == TX_INVALID)
			return out->status;
	}
	return out->status;
}

/* ------------------------------------------------------------------------------------------ */
/* Compiling                                                                                    */

typedef struct Cc {
	char *err;
	size_t errlen;
	char path[32];          /* "/3": the step being compiled */
	const char *fn;
	json_object *obj;       /* the step object, NULL for a bare string */
} Cc;

/* Appends @key to @path as a JSON-pointer token ('~' and '/' escaped). */
static void pointer_append(char *dst, size_t cap, const char *path, const char *key)
{
	size_t o, i;

	format_bounded(dst, cap, "%s/", path);
	o = strlen(dst);
	for (i = 0; key[i] != '\0' && o + 3 < cap; i++) {
		if (key[i] == '~' || key[i] == '/') {
			dst[o++] = '~';
			dst[o++] = key[i] == '~' ? '0' : '1';
		} else {
			dst[o++] = key[i];
		}
	}
	dst[o] = '\0';
}

__attribute__((format(printf, 3, 4)))
static bool cfail(Cc *cc, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (cc->err == NULL || cc->errlen == 0)
		return false;
	va_start(ap, fmt);
	vformat_bounded(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	format_bounded(cc->err, cc->errlen, "%s: %s", path, msg);
	return false;
}

static const char *json_type_label(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "boolean";
	case json_type_double:
	case json_type_int:
		return "number";
	case json_type_object:
		return "object";
	case json_type_array:
		return "array";
	case json_type_string:
		return "string";
	}
	return "unknown";
}

/* Finds argument @key; *found tells presence (a JSON null is present with *val NULL). */
static json_object *arg_get(const Cc *cc, const char *key, bool *found)
{
	json_object *val = NULL;

	*found = cc->obj != NULL && json_object_object_get_ex(cc->obj, key, &val);
	return val;
}

static bool arg_missing(Cc *cc, const char *key)
{
	return cfail(cc, cc->path, "transform \"%s\" needs argument \"%s\"", cc->fn, key);
}

static bool arg_type(Cc *cc, const char *key, const char *want, const char *got)
{
	char path[300];

	pointer_append(path, sizeof(path), cc->path, key);
	return cfail(cc, path, "expected %s, got %s", want, got);
}

static bool arg_string(Cc *cc, const char *key, bool required, const char **out)
{
	bool found;
	json_object *o = arg_get(cc, key, &found);

	*out = NULL;
	if (!found)
		return required ? arg_missing(cc, key) : true;
	if (!json_object_is_type(o, json_type_string))
		return arg_type(cc, key, "a string", json_type_label(o));
	*out = json_object_get_string(o);
	return true;
}

static bool arg_bool(Cc *cc, const char *key, bool dflt, bool *out)
{
	bool found;
	json_object *o = arg_get(cc, key, &found);

	*out = dflt;
	if (!found)
		return true;
	if (!json_object_is_type(o, json_type_boolean))
		return arg_type(cc, key, "true or false", json_type_label(o));
	*out = json_object_get_boolean(o);
	return true;
}

static bool arg_int(Cc *cc, const char *key, long long lo, long long hi, bool *present,
		    long long *out)
{
	char path[300];
	bool found;
	json_object *o = arg_get(cc, key, &found);

	*present = found;
	if (!found)
		return true;
	if (!json_object_is_type(o, json_type_int))
		return arg_type(cc, key, "an integer", json_type_label(o));
	*out = (long long)json_object_get_int64(o);
	if (*out < lo || *out > hi) {
		pointer_append(path, sizeof(path), cc->path, key);
		return cfail(cc, path, "%lld is outside %lld..%lld", *out, lo, hi);
	}
	return true;
}

static bool num_of(json_object *o, double *out)
{
	if (!json_object_is_type(o, json_type_int) && !json_object_is_type(o, json_type_double))
		return false;
	*out = json_object_get_double(o);
	return isfinite(*out);
}

static bool arg_number(Cc *cc, const char *key, bool *present, double *out, const char **text)
{
	bool found;
	json_object *o = arg_get(cc, key, &found);

	*present = found;
	if (!found)
		return true;
	if (!num_of(o, out))
		return arg_type(cc, key, "a finite number", json_type_label(o));
	*text = json_object_get_string(o);
	return true;
}

/* A choice among fixed words; @choices is NULL-terminated and its index is returned. */
static bool arg_choice(Cc *cc, const char *key, const char *const *choices, int dflt, int *out)
{
	char path[300], list[200] = "";
	const char *s;
	size_t used = 0;
	int i, r;

	*out = dflt;
	if (!arg_string(cc, key, false, &s))
		return false;
	if (s == NULL)
		return true;
	for (i = 0; choices[i] != NULL; i++) {
		if (strcmp(s, choices[i]) == 0) {
			*out = i;
			return true;
		}
		r = snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i ? ", " : "", choices[i]);
		if (r < 0 || (size_t)r >= sizeof(list) - used)
			break;
		used += (size_t)r;
	}
	pointer_append(path, sizeof(path), cc->path, key);
	return cfail(cc, path, "unknown value \"%s\" (expected %s)", s, list);
}

/* A two-number array such as "from": [0, 100]. */
static bool arg_pair(Cc *cc, const char *key, double *a, double *b, const char **ta,
		     const char **tb)
{
	bool found;
	json_object *o = arg_get(cc, key, &found);

	if (!found)
		return arg_missing(cc, key);
	if (!json_object_is_type(o, json_type_array) || json_object_array_length(o) != 2 ||
	    !num_of(json_object_array_get_idx(o, 0), a) ||
	    !num_of(json_object_array_get_idx(o, 1), b))
		return arg_type(cc, key, "an array of two finite numbers",
				json_object_is_type(o, json_type_array) ? "another array" :
				json_type_label(o));
	*ta = json_object_get_string(json_object_array_get_idx(o, 0));
	*tb = json_object_get_string(json_object_array_get_idx(o, 1));
	return true;
}

static bool key_allowed(const char *list, const char *key)
{
	size_t n = strlen(key);
	const char *p = list, *comma;

	while (*p != '\0') {
		comma = strchr(p, ',');
		if (comma == NULL)
			comma = p + strlen(p);
		if ((size_t)(comma - p) == n && memcmp(p, key, n) == 0)
			return true;
		p = *comma ? comma + 1 : comma;
	}
	return false;
}

static bool check_keys(Cc *cc, StepKind kind)
{
	char path[300];
	struct json_object_iterator it, end;
	const char *key;

	if (cc->obj == NULL)
		return true;
	it = json_object_iter_begin(cc->obj);
	end = json_object_iter_end(cc->obj);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		key = json_object_iter_peek_name(&it);
		if (strcmp(key, "fn") == 0 || key_allowed(step_info[kind].args, key))
			continue;
		pointer_append(path, sizeof(path), cc->path, key);
		if (step_info[kind].args[0] == '\0')
			return cfail(cc, path, "unknown argument \"%s\": transform \"%s\" takes none", key,
				     cc->fn);
		return cfail(cc, path, "unknown argument \"%s\" for transform \"%s\" (accepted: %s)", key,
			     cc->fn, step_info[kind].args);
	}
	return true;
}

/* Format tokens; the longest is tried first so "MM" is not read as two "M". */
static const struct {
	const char *tok;
	DtKind kind;
	unsigned char minw, maxw;
} dt_tokens[] = {
	{ "YYYY", DT_YEAR, 4, 4 }, { "MM", DT_MONTH, 2, 2 }, { "M", DT_MONTH, 1, 2 },
	{ "DD", DT_DAY, 2, 2 },    { "D", DT_DAY, 1, 2 },    { "HH", DT_HOUR, 2, 2 },
	{ "H", DT_HOUR, 1, 2 },    { "MI", DT_MIN, 2, 2 },   { "SS", DT_SEC, 2, 2 },
};

static bool is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/*
 * Rule: date formats are runs of one upper-case letter — YYYY, MM or M (1-2 digits), DD or D,
 * HH or H, SS — plus MI for minutes; any other character must appear literally. Every format
 * needs YYYY, a month and a day, each once. Time fields in a "date" format are checked and
 * dropped.
 */
static bool compile_date_format(Cc *cc, const char *path, const char *fmt, DateFmt *out)
{
	size_t len = strlen(fmt), i = 0, run, k;
	int seen[7] = { 0 };
	DtItem *items = xcalloc(len + 1, sizeof(DtItem));
	size_t n = 0;

	while (i < len) {
		unsigned char c = (unsigned char)fmt[i];

		if (!is_alpha(c)) {
			items[n].kind = DT_LIT;
			items[n].lit = (char)c;
			n++;
			i++;
			continue;
		}
		if (c == 'M' && fmt[i + 1] == 'I' && fmt[i + 2] != 'I') {
			run = 2;
		} else {
			for (run = 1; i + run < len && fmt[i + run] == (char)c; run++)
				;
		}
		for (k = 0; k < sizeof(dt_tokens) / sizeof(dt_tokens[0]); k++)
			if (strlen(dt_tokens[k].tok) == run && memcmp(dt_tokens[k].tok, fmt + i, run) == 0)
				break;
		if (k == sizeof(dt_tokens) / sizeof(dt_tokens[0])) {
			size_t r = i;

			while (r < len && is_alpha((unsigned char)fmt[r]))
				r++;
			free(items);
			return cfail(cc, path, "unknown date format token \"%.*s\" in \"%s\"", (int)(r - i),
				     fmt + i, fmt);
		}
		if (seen[dt_tokens[k].kind]++) {
			free(items);
			return cfail(cc, path, "date format \"%s\" has more than one %s field", fmt,
				     dt_tokens[k].tok);
		}
		items[n].kind = dt_tokens[k].kind;
		items[n].minw = dt_tokens[k].minw;
		items[n].maxw = dt_tokens[k].maxw;
		n++;
		i += run;
	}
	if (!seen[DT_YEAR] || !seen[DT_MONTH] || !seen[DT_DAY]) {
		free(items);
		return cfail(cc, path, "date format \"%s\" needs YYYY, a month (MM or M) and a day (DD or D)",
			     fmt);
	}
	out->items = items;
	out->n = n;
	return true;
}

static bool compile_date(Cc *cc, Step *s)
{
	static const char *const empty_choices[] = { "null", "invalid", NULL };
	char path[300], ipath[320];
	bool found, present;
	json_object *f = arg_get(cc, "formats", &found);
	long long y;
	size_t i, n, used = 0;
	int choice;

	if (!found)
		return arg_missing(cc, "formats");
	if (!json_object_is_type(f, json_type_array) || json_object_array_length(f) == 0)
		return arg_type(cc, "formats", "a non-empty array of format strings",
				json_object_is_type(f, json_type_array) ? "an empty array" :
				json_type_label(f));
	n = json_object_array_length(f);
	s->fmts = xcalloc(n, sizeof(DateFmt));
	s->fmt_list = xcalloc(1, 1);
	pointer_append(path, sizeof(path), cc->path, "formats");
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(f, i);
		const char *text;
		size_t tl;

		format_bounded(ipath, sizeof(ipath), "%s/%zu", path, i);
		if (!json_object_is_type(e, json_type_string))
			return cfail(cc, ipath, "expected a string, got %s", json_type_label(e));
		text = json_object_get_string(e);
		if (!compile_date_format(cc, ipath, text, &s->fmts[i]))
			return false;
		s->nfmts++;
		tl = strlen(text);
		s->fmt_list = xrealloc(s->fmt_list, used + tl + 3);
		if (i > 0) {
			memcpy(s->fmt_list + used, ", ", 2);
			used += 2;
		}
		memcpy(s->fmt_list + used, text, tl + 1);
		used += tl;
	}
	s->min_year = 1900;
	s->max_year = 2100;
	if (!arg_int(cc, "min_year", 1, 9999, &present, &y))
		return false;
	if (present)
		s->min_year = (int)y;
	if (!arg_int(cc, "max_year", 1, 9999, &present, &y))
		return false;
	if (present)
		s->max_year = (int)y;
	if (s->max_year < s->min_year) {
		pointer_append(path, sizeof(path), cc->path, "max_year");
		return cfail(cc, path, "max_year %d is below min_year %d", s->max_year, s->min_year);
	}
	if (!arg_choice(cc, "empty", empty_choices, 0, &choice))
		return false;
	s->empty_invalid = choice == 1;
	return true;
}

static bool compile_map(Cc *cc, Step *s)
{
	char path[300], kpath[600];
	struct json_object_iterator it, end;
	bool found, created;
	json_object *vals = arg_get(cc, "values", &found), *d;
	const char *key, *text;
	MapEntry *e;

	if (!found)
		return arg_missing(cc, "values");
	if (!json_object_is_type(vals, json_type_object))
		return arg_type(cc, "values", "an object of value: replacement", json_type_label(vals));
	pointer_append(path, sizeof(path), cc->path, "values");
	it = json_object_iter_begin(vals);
	end = json_object_iter_end(vals);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		key = json_object_iter_peek_name(&it);
		d = json_object_iter_peek_value(&it);
		if (d != NULL && !json_object_is_type(d, json_type_string)) {
			pointer_append(kpath, sizeof(kpath), path, key);
			return cfail(cc, kpath, "expected a string or null, got %s", json_type_label(d));
		}
		e = map_insert(&s->map, key, strlen(key), &created);
		if (e == NULL)
			tx_oom(sizeof(MapEntry));
		free(e->val);
		e->val = d != NULL ? xstrdup(json_object_get_string(d)) : NULL;
	}
	d = arg_get(cc, "default", &found);
	if (found) {
		if (d != NULL && !json_object_is_type(d, json_type_string))
			return arg_type(cc, "default", "a string or null", json_type_label(d));
		s->has_default = true;
		if (d != NULL) {
			s->def = xstrdup(json_object_get_string(d));
			s->def_len = strlen(s->def);
		}
	}
	if (!arg_string(cc, "null", false, &text))
		return false;
	if (text != NULL)
		s->null_text = xstrdup(text);
	return true;
}

static bool compile_nullif(Cc *cc, Step *s)
{
	char path[300], ipath[320];
	bool found;
	json_object *vals = arg_get(cc, "values", &found), *e;
	const char *one;
	size_t i, n = 0;

	if (!arg_string(cc, "value", false, &one))
		return false;
	if (found && !json_object_is_type(vals, json_type_array))
		return arg_type(cc, "values", "an array of strings", json_type_label(vals));
	if (one == NULL && !found)
		return cfail(cc, cc->path, "transform \"nullif\" needs argument \"value\" or \"values\"");
	n = (found ? json_object_array_length(vals) : 0) + (one != NULL);
	s->texts = xcalloc(n, sizeof(char *));
	s->text_lens = xcalloc(n, sizeof(size_t));
	if (one != NULL) {
		s->texts[s->ntexts] = xstrdup(one);
		s->text_lens[s->ntexts++] = strlen(one);
	}
	pointer_append(path, sizeof(path), cc->path, "values");
	for (i = 0; found && i < json_object_array_length(vals); i++) {
		e = json_object_array_get_idx(vals, i);
		if (!json_object_is_type(e, json_type_string)) {
			format_bounded(ipath, sizeof(ipath), "%s/%zu", path, i);
			return cfail(cc, ipath, "expected a string, got %s", json_type_label(e));
		}
		s->texts[s->ntexts] = xstrdup(json_object_get_string(e));
		s->text_lens[s->ntexts] = strlen(s->texts[s->ntexts]);
		s->ntexts++;
	}
	return true;
}

static bool compile_empty_policy(Cc *cc, Step *s)
{
	static const char *const empty_choices[] = { "null", "invalid", NULL };
	int choice;

	if (!arg_choice(cc, "empty", empty_choices, 0, &choice))
		return false;
	s->empty_invalid = choice == 1;
	return true;
}

static bool compile_scale(Cc *cc, Step *s)
{
	char path[300], range[128];
	const char *ta, *tb, *tc, *td;
	bool present;
	long long digits;

	if (!arg_pair(cc, "from", &s->from_a, &s->from_b, &ta, &tb) ||
	    !arg_pair(cc, "to", &s->to_a, &s->to_b, &tc, &td))
		return false;
	if (s->from_a == s->from_b) {
		pointer_append(path, sizeof(path), cc->path, "from");
		return cfail(cc, path, "range is empty (both ends %s)", ta);
	}
	if (!arg_int(cc, "digits", 0, 15, &present, &digits))
		return false;
	s->digits = present ? (int)digits : 2;
	if (s->from_a < s->from_b)
		format_bounded(range, sizeof(range), "%s..%s", ta, tb);
	else
		format_bounded(range, sizeof(range), "%s..%s", tb, ta);
	s->range_text = xstrdup(range);
	return compile_empty_policy(cc, s);
}

static bool compile_int(Cc *cc, Step *s)
{
	char path[300], range[128];

	if (!arg_int(cc, "min", INT64_MIN, INT64_MAX, &s->has_min, &s->imin) ||
	    !arg_int(cc, "max", INT64_MIN, INT64_MAX, &s->has_max, &s->imax))
		return false;
	if (s->has_min && s->has_max && s->imax < s->imin) {
		pointer_append(path, sizeof(path), cc->path, "max");
		return cfail(cc, path, "max %lld is below min %lld", s->imax, s->imin);
	}
	if (s->has_min && s->has_max)
		format_bounded(range, sizeof(range), "%lld..%lld", s->imin, s->imax);
	else if (s->has_min)
		format_bounded(range, sizeof(range), ">= %lld", s->imin);
	else if (s->has_max)
		format_bounded(range, sizeof(range), "<= %lld", s->imax);
	else
		format_bounded(range, sizeof(range), "the 64-bit range");
	s->range_text = xstrdup(range);
	return compile_empty_policy(cc, s);
}

static bool compile_numeric(Cc *cc, Step *s)
{
	char path[300], range[160];
	const char *tmin = "", *tmax = "";
	bool present;
	long long digits;

	if (!arg_int(cc, "digits", 0, 30, &present, &digits))
		return false;
	s->digits = present ? (int)digits : -1;
	if (!arg_number(cc, "min", &s->has_min, &s->dmin, &tmin) ||
	    !arg_number(cc, "max", &s->has_max, &s->dmax, &tmax))
		return false;
	if (s->has_min && s->has_max && s->dmax < s->dmin) {
		pointer_append(path, sizeof(path), cc->path, "max");
		return cfail(cc, path, "max %s is below min %s", tmax, tmin);
	}
	if (s->has_min && s->has_max)
		format_bounded(range, sizeof(range), "%s..%s", tmin, tmax);
	else if (s->has_min)
		format_bounded(range, sizeof(range), ">= %s", tmin);
	else if (s->has_max)
		format_bounded(range, sizeof(range), "<= %s", tmax);
	else
		format_bounded(range, sizeof(range), "any value");
	s->range_text = xstrdup(range);
	return compile_empty_policy(cc, s);
}

static bool compile_recode(Cc *cc, Step *s)
{
	char path[300];
	const char *enc;
	iconv_t cd;

	if (!arg_string(cc, "from", true, &enc) || !arg_bool(cc, "fix_double_utf8", false, &s->fix_double))
		return false;
	/* Checked here so a typo fails `plan`, not row 3 million of a night run. */
	cd = iconv_open("UTF-8", enc);
	if (cd == (iconv_t)-1) {
		pointer_append(path, sizeof(path), cc->path, "from");
		return cfail(cc, path, "unknown encoding \"%s\" (iconv: %s)", enc, strerror(errno));
	}
	iconv_close(cd);
	s->enc = xstrdup(enc);
	return true;
}

static bool compile_bcrypt(Cc *cc, Step *s)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE], path[300];
	static const char probe[16] = "edumig-probe-16b";
	bool present;
	long long cost;

	if (!arg_int(cc, "cost", 4, 31, &present, &cost))
		return false;
	s->cost = present ? (int)cost : 12;
	if (crypt_gensalt_rn("$2b$", (unsigned long)s->cost, probe, (int)sizeof(probe), setting,
			     (int)sizeof(setting)) == NULL) {
		pointer_append(path, sizeof(path), cc->path, "cost");
		return cfail(cc, path, "libcrypt cannot make $2b$ settings: %s", strerror(errno));
	}
	return true;
}

static bool compile_lookup(Cc *cc, Step *s, TxChain *c)
{
	static const char *const choices[] = { "invalid", "null", "keep", NULL };
	const char *table;
	size_t i;

	if (!arg_string(cc, "table", true, &table) ||
	    !arg_choice(cc, "on_missing", choices, ON_MISSING_INVALID, &s->on_missing))
		return false;
	s->table = xstrdup(table);
	for (i = 0; i < c->ntables; i++)
		if (strcmp(c->tables[i], table) == 0)
			return true;
	c->tables = xrealloc(c->tables, (c->ntables + 2) * sizeof(char *));
	c->tables[c->ntables++] = xstrdup(table);
	c->tables[c->ntables] = NULL;
	return true;
}

static bool compile_text_arg(Cc *cc, const char *key, bool allow_empty, char **out, size_t *len)
{
	char path[300];
	const char *t;

	if (!arg_string(cc, key, true, &t))
		return false;
	if (!allow_empty && t[0] == '\0') {
		pointer_append(path, sizeof(path), cc->path, key);
		return cfail(cc, path, "must not be empty");
	}
	*out = xstrdup(t);
	*len = strlen(t);
	return true;
}

static bool compile_step(Cc *cc, Step *s, TxChain *c)
{
	static const char *const locales[] = { "default", "az", "tr", NULL };
	int choice;

	if (!check_keys(cc, s->kind))
		return false;
	switch (s->kind) {
	case STEP_LOWER:
	case STEP_UPPER:
		if (!arg_choice(cc, "locale", locales, 0, &choice))
			return false;
		s->turkic = choice != 0;
		return true;
	case STEP_NULLIF:
		return compile_nullif(cc, s);
	case STEP_STRIP_CONTROL:
		return arg_bool(cc, "keep_whitespace", true, &s->keep_ws);
	case STEP_DATE:
	case STEP_TIMESTAMP:
		return compile_date(cc, s);
	case STEP_MAP:
		return compile_map(cc, s);
	case STEP_SCALE:
		return compile_scale(cc, s);
	case STEP_INT:
		return compile_int(cc, s);
	case STEP_NUMERIC:
		return compile_numeric(cc, s);
	case STEP_BASE64_DECODE:
		c->sensitive = true;
		return true;
	case STEP_BCRYPT:
		c->sensitive = true;
		return compile_bcrypt(cc, s);
	case STEP_RECODE:
		return compile_recode(cc, s);
	case STEP_LOOKUP:
		return compile_lookup(cc, s, c);
	case STEP_REPLACE:
		return compile_text_arg(cc, "from", false, &s->a, &s->a_len) &&
		       compile_text_arg(cc, "to", true, &s->b, &s->b_len);
	case STEP_PREFIX:
	case STEP_SUFFIX:
	case STEP_DEFAULT:
		return compile_text_arg(cc, "value", true, &s->a, &s->a_len);
	case STEP_TRIM:
	case STEP_NULLIF_EMPTY:
	case STEP_EMAIL:
	case STEP_REQUIRE:
	case STEP_COUNT_:
		return true;
	}
	return true;
}

static void step_free(Step *s)
{
	size_t i;

	for (i = 0; i < s->ntexts; i++)
		free(s->texts[i]);
	free(s->texts);
	free(s->text_lens);
	for (i = 0; i < s->nfmts; i++)
		free(s->fmts[i].items);
	free(s->fmts);
	free(s->fmt_list);
	map_clear(&s->map, free);
	free(s->def);
	free(s->null_text);
	free(s->range_text);
	free(s->enc);
	free(s->table);
	free(s->a);
	free(s->b);
}

void txchain_free(TxChain *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++)
		step_free(&c->steps[i]);
	free(c->steps);
	for (i = 0; i < c->ntables; i++)
		free(c->tables[i]);
	free(c->tables);
	free(c);
}

static bool find_kind(const char *name, StepKind *out)
{
	int k;

	for (k = 0; k < STEP_COUNT_; k++) {
		if (strcmp(step_info[k].name, name) == 0) {
			*out = (StepKind)k;
			return true;
		}
	}
	return false;
}

TxChain *txchain_compile(struct json_object *spec, char *err, size_t errlen)
{
	Cc cc = { .err = err, .errlen = errlen };
	TxChain *c;
	size_t i, n;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (!json_object_is_type(spec, json_type_array)) {
		cfail(&cc, "", "a transform chain must be an array of steps, got %s",
		      json_type_label(spec));
		return NULL;
	}
	n = json_object_array_length(spec);
	c = xcalloc(1, sizeof(TxChain));
	c->steps = xcalloc(n, sizeof(Step));
	c->tables = xcalloc(1, sizeof(char *));
	/* Steps are zeroed, so freeing a half-compiled chain is safe at any point. */
	c->n = n;
	for (i = 0; i < n; i++) {
		json_object *st = json_object_array_get_idx(spec, i);
		Step *s = &c->steps[i];
		char fnpath[48];
		const char *name;
		bool found;
		json_object *fn;

		format_bounded(cc.path, sizeof(cc.path), "/%zu", i);
		cc.obj = NULL;
		if (json_object_is_type(st, json_type_string)) {
			name = json_object_get_string(st);
			format_bounded(fnpath, sizeof(fnpath), "%s", cc.path);
		} else if (json_object_is_type(st, json_type_object)) {
			cc.obj = st;
			format_bounded(fnpath, sizeof(fnpath), "%s/fn", cc.path);
			found = json_object_object_get_ex(st, "fn", &fn);
			if (!found) {
				cfail(&cc, cc.path, "step has no \"fn\"");
				goto fail;
			}
			if (!json_object_is_type(fn, json_type_string)) {
				cfail(&cc, fnpath, "expected a string, got %s", json_type_label(fn));
				goto fail;
			}
			name = json_object_get_string(fn);
		} else {
			cfail(&cc, cc.path, "a step must be a string or an object, got %s",
			      json_type_label(st));
			goto fail;
		}
		if (!find_kind(name, &s->kind)) {
			cfail(&cc, fnpath, "unknown transform \"%s\"", name);
			goto fail;
		}
		cc.fn = step_info[s->kind].name;
		if (!compile_step(&cc, s, c))
			goto fail;
	}
	return c;
fail:
	txchain_free(c);
	return NULL;
}

size_t txchain_length(const TxChain *c)
{
	return c->n;
}

const char *const *txchain_lookup_tables(const TxChain *c)
{
	return (const char *const *)c->tables;
}

bool txchain_is_sensitive(const TxChain *c)
{
	return c->sensitive;
}
