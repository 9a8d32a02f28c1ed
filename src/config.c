/*
 * src/config.c — load and validate mappings/NAME.json and phases/phases.json.
 *
 * Every problem is reported as "file:line: /json/pointer: message" and counted; loading
 * goes on to find the rest, and only then fails, so a user fixes a file in one pass.
 * Nothing is ever dropped and carried on with (STYLE, things to avoid 2).
 */
#include "edumig/config.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <uuid/uuid.h>

#include "edumig/jsonpos.h"
#include "edumig/mem.h"
#include "edumig/strbuf.h"

static const char *const rule_names[] = {
#define X(e, s) s,
	RULE_KIND_LIST(X)
#undef X
};

static const char *const policy_names[] = {
#define X(e, s) s,
	POLICY_LIST(X)
#undef X
};

const char *rule_kind_name(RuleKind k)
{
	return rule_names[k];
}

const char *policy_name(Policy p)
{
	return policy_names[p];
}

/* Parsing context of one file. */
typedef struct Ctx {
	const char *file;
	JsonPos *pos;
	int *errors;
} Ctx;

__attribute__((format(printf, 3, 4)))
static void cerr(Ctx *c, const char *ptr, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: %s: ", c->file, jsonpos_line(c->pos, ptr), *ptr ? ptr : "/");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	(*c->errors)++;
}

/* Builds "/a/b" pointers; keys are escaped per RFC 6901. */
static char *ptr_key(const char *base, const char *key)
{
	StrBuf b = {0};
	sb_puts(&b, base);
	sb_putc(&b, '/');
	for (const char *s = key; *s; s++) {
		if (*s == '~')
			sb_puts(&b, "~0");
		else if (*s == '/')
			sb_puts(&b, "~1");
		else
			sb_putc(&b, *s);
	}
	return sb_steal(&b);
}

static char *ptr_idx(const char *base, size_t i)
{
	return xasprintf("%s/%zu", base, i);
}

static const char *jtype_name(json_object *o)
{
	return json_type_to_name(json_object_get_type(o));
}

/* Reports keys of @obj not in the NULL-terminated @allowed list. */
static void check_keys(Ctx *c, json_object *obj, const char *ptr, const char *const *allowed)
{
	json_object_object_foreach(obj, key, val) {
		(void)val;
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				ok = true;
		if (!ok) {
			StrBuf list = {0};
			for (const char *const *a = allowed; *a; a++)
				sb_printf(&list, "%s%s", a == allowed ? "" : ", ", *a);
			AUTOFREE char *p = ptr_key(ptr, key);
			cerr(c, p, "unknown key \"%s\" (expected one of: %s)", key, sb_str(&list));
			sb_free(&list);
		}
	}
}

static bool expect_type(Ctx *c, json_object *o, json_type t, const char *ptr)
{
	if (o && json_object_is_type(o, t))
		return true;
	cerr(c, ptr, "expected %s, found %s", json_type_to_name(t), o ? jtype_name(o) : "null");
	return false;
}

/* A string member; NULL when absent (an error when @required) or of the wrong type. */
static char *get_str(Ctx *c, json_object *obj, const char *ptr, const char *key, bool required)
{
	json_object *v;
	AUTOFREE char *p = ptr_key(ptr, key);
	if (!json_object_object_get_ex(obj, key, &v)) {
		if (required)
			cerr(c, ptr, "missing required key \"%s\"", key);
		return NULL;
	}
	if (!expect_type(c, v, json_type_string, p))
		return NULL;
	const char *s = json_object_get_string(v);
	if (required && !*s) {
		cerr(c, p, "must not be empty");
		return NULL;
	}
	return xstrdup(s);
}

static bool is_identifier(const char *s)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char ch = *p;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
		      (p != s && ch >= '0' && ch <= '9')))
			return false;
	}
	return true;
}

static bool parse_policy(Ctx *c, json_object *obj, const char *ptr, const char *key,
			 Policy *out, const Policy *allowed, size_t n_allowed)
{
	json_object *v;
	if (!json_object_object_get_ex(obj, key, &v))
		return true;
	AUTOFREE char *p = ptr_key(ptr, key);
	if (!expect_type(c, v, json_type_string, p))
		return false;
	const char *s = json_object_get_string(v);
	StrBuf list = {0};
	for (size_t i = 0; i < n_allowed; i++) {
		if (strcmp(s, policy_names[allowed[i]]) == 0) {
			*out = allowed[i];
			sb_free(&list);
			return true;
		}
		sb_printf(&list, "%s%s", i ? ", " : "", policy_names[allowed[i]]);
	}
	cerr(c, p, "unknown policy \"%s\" (expected one of: %s)", s, sb_str(&list));
	sb_free(&list);
	return false;
}

/* Parses "STU{id}" into parts; "{{" and "}}" stand for literal braces. */
static Template *parse_template(Ctx *c, const char *text, const char *ptr)
{
	Template *t = znew(Template);
	size_t cap = 0;
	StrBuf lit = {0};
	const char *s = text;
	while (*s) {
		if (s[0] == '{' && s[1] == '{') {
			sb_putc(&lit, '{');
			s += 2;
			continue;
		}
		if (s[0] == '}' && s[1] == '}') {
			sb_putc(&lit, '}');
			s += 2;
			continue;
		}
		if (*s == '{') {
			const char *end = strchr(s, '}');
			if (!end) {
				cerr(c, ptr, "template \"%s\": unclosed '{'", text);
				break;
			}
			AUTOFREE char *name = xstrndup(s + 1, (size_t)(end - s - 1));
			if (!is_identifier(name)) {
				cerr(c, ptr, "template \"%s\": \"{%s}\" is not a column name", text, name);
			}
			if (lit.len) {
				t->parts = xgrow(t->parts, &cap, t->n + 1, sizeof *t->parts);
				t->parts[t->n++] = (TemplatePart){.literal = sb_steal(&lit), .col = -1};
			}
			t->parts = xgrow(t->parts, &cap, t->n + 1, sizeof *t->parts);
			t->parts[t->n++] = (TemplatePart){.column = steal_pointer(&name), .col = -1};
			s = end + 1;
			continue;
		}
		if (*s == '}') {
			cerr(c, ptr, "template \"%s\": stray '}' (write '}}' for a literal brace)", text);
			break;
		}
		sb_putc(&lit, *s++);
	}
	if (lit.len) {
		t->parts = xgrow(t->parts, &cap, t->n + 1, sizeof *t->parts);
		t->parts[t->n++] = (TemplatePart){.literal = sb_steal(&lit), .col = -1};
	}
	sb_free(&lit);
	return t;
}

static void template_free(Template *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->parts[i].literal);
		free(t->parts[i].column);
	}
	free(t->parts);
	free(t);
}

static char *scalar_text(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_string:
		return xstrdup(json_object_get_string(v));
	case json_type_boolean:
		return xstrdup(json_object_get_boolean(v) ? "true" : "false");
	case json_type_int:
	case json_type_double:
	case json_type_object:
	case json_type_array:
		return xstrdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	case json_type_null:
	default:
		return NULL;
	}
}

static const Policy invalid_policies[] = {POLICY_SKIP, POLICY_NULL, POLICY_DEFAULT};
static const Policy missing_policies[] = {POLICY_SKIP, POLICY_NULL, POLICY_STUB};

static void value_free(ValueSpec *v);

static int bcrypt_cost_override;

void config_set_bcrypt_cost(int cost)
{
	bcrypt_cost_override = cost;
}

/* Rewrites the cost of bcrypt steps in a transforms array before it is compiled. */
static void override_bcrypt(json_object *steps)
{
	if (!bcrypt_cost_override)
		return;
	for (size_t i = 0; i < json_object_array_length(steps); i++) {
		json_object *st = json_object_array_get_idx(steps, i), *fn;
		if (json_object_is_type(st, json_type_object) && json_object_object_get_ex(st, "fn", &fn) &&
		    json_object_is_type(fn, json_type_string) && strcmp(json_object_get_string(fn), "bcrypt") == 0)
			json_object_object_add(st, "cost", json_object_new_int(bcrypt_cost_override));
	}
}

/*
 * A ValueSpec from a string (a source column) or an object with one of
 * from / value / template, plus transforms, on_invalid, default, or, sensitive.
 * @extra lists further keys the caller handles itself.
 */
static bool parse_value(Ctx *c, json_object *o, const char *ptr, ValueSpec *v, Policy dflt_invalid,
			const char *const *extra, bool allow_none)
{
	memset(v, 0, sizeof *v);
	v->col = -1;
	v->on_invalid = dflt_invalid;
	if (json_object_is_type(o, json_type_string)) {
		v->from = xstrdup(json_object_get_string(o));
		if (!is_identifier(v->from))
			cerr(c, ptr, "\"%s\" is not a source column name", v->from);
		return true;
	}
	if (!expect_type(c, o, json_type_object, ptr))
		return false;
	static const char *const base[] = {"from", "value", "template", "transforms", "on_invalid",
					   "default", "or", "sensitive"};
	const char *allowed[32];
	size_t na = 0;
	for (size_t i = 0; i < sizeof base / sizeof *base; i++)
		allowed[na++] = base[i];
	for (const char *const *e = extra; e && *e && na < 31; e++)
		allowed[na++] = *e;
	allowed[na] = NULL;
	check_keys(c, o, ptr, allowed);

	int sources = 0;
	json_object *x;
	if (json_object_object_get_ex(o, "from", &x)) {
		sources++;
		v->from = get_str(c, o, ptr, "from", true);
		if (v->from && !is_identifier(v->from)) {
			AUTOFREE char *p = ptr_key(ptr, "from");
			cerr(c, p, "\"%s\" is not a source column name", v->from);
		}
	}
	if (json_object_object_get_ex(o, "value", &x)) {
		sources++;
		v->has_constant = true;
		v->constant = scalar_text(x);
		v->is_null_constant = v->constant == NULL;
	}
	if (json_object_object_get_ex(o, "template", &x)) {
		sources++;
		AUTOFREE char *p = ptr_key(ptr, "template");
		if (expect_type(c, x, json_type_string, p))
			v->tmpl = parse_template(c, json_object_get_string(x), p);
	}
	if (sources > 1 || (sources == 0 && !allow_none)) {
		cerr(c, ptr, "needs exactly one of \"from\", \"value\" or \"template\"");
		return false;
	}
	if (json_object_object_get_ex(o, "transforms", &x)) {
		AUTOFREE char *p = ptr_key(ptr, "transforms");
		if (expect_type(c, x, json_type_array, p)) {
			char err[512];
			override_bcrypt(x);
			v->chain = txchain_compile(x, err, sizeof err);
			if (!v->chain) {
				/* The chain's message starts with its own pointer below "transforms". */
				const char *rel = err[0] == '/' ? err : NULL;
				AUTOFREE char *at = NULL;
				if (rel) {
					size_t l = strcspn(rel, ":");
					AUTOFREE char *relp = xstrndup(rel, l);
					at = xasprintf("%s%s", p, relp);
					cerr(c, at, "%s", rel[l] ? rel + l + 2 : rel);
				} else {
					cerr(c, p, "%s", err);
				}
			} else if (txchain_is_sensitive(v->chain)) {
				v->sensitive = true;
			}
		}
	}
	parse_policy(c, o, ptr, "on_invalid", &v->on_invalid, invalid_policies, 3);
	if (json_object_object_get_ex(o, "default", &x)) {
		AUTOFREE char *p = ptr_key(ptr, "default");
		v->default_value = scalar_text(x);
		if (!v->default_value)
			cerr(c, p, "a default must not be null (use \"on_invalid\": \"null\")");
		else if (json_object_is_type(x, json_type_string) && strchr(v->default_value, '{'))
			v->default_tmpl = parse_template(c, v->default_value, p);
	}
	if (v->on_invalid == POLICY_DEFAULT && !v->default_value)
		cerr(c, ptr, "\"on_invalid\": \"default\" needs a \"default\" value");
	if (json_object_object_get_ex(o, "or", &x)) {
		AUTOFREE char *p = ptr_key(ptr, "or");
		v->or = znew(ValueSpec);
		if (!parse_value(c, x, p, v->or, dflt_invalid, NULL, false)) {
			value_free(v->or);
			zfree(v->or);
		}
	}
	if (json_object_object_get_ex(o, "sensitive", &x)) {
		AUTOFREE char *p = ptr_key(ptr, "sensitive");
		if (expect_type(c, x, json_type_boolean, p) && json_object_get_boolean(x))
			v->sensitive = true;
	}
	return true;
}

static void value_free(ValueSpec *v)
{
	if (!v)
		return;
	free(v->from);
	free(v->constant);
	free(v->default_value);
	template_free(v->default_tmpl);
	template_free(v->tmpl);
	txchain_free(v->chain);
	if (v->or) {
		value_free(v->or);
		free(v->or);
	}
}

static void parse_stub(Ctx *c, json_object *o, const char *ptr, ColumnRule *r)
{
	if (!expect_type(c, o, json_type_object, ptr))
		return;
	r->n_stub_cols = (size_t)json_object_object_length(o);
	r->stub_cols = xcalloc(r->n_stub_cols, sizeof *r->stub_cols);
	size_t i = 0;
	json_object_object_foreach(o, key, val) {
		StubColumn *sc = &r->stub_cols[i++];
		AUTOFREE char *p = ptr_key(ptr, key);
		sc->name = xstrdup(key);
		if (json_object_is_type(val, json_type_string)) {
			sc->tmpl = parse_template(c, json_object_get_string(val), p);
			continue;
		}
		if (!expect_type(c, val, json_type_object, p))
			continue;
		static const char *const keys[] = {"template", "value", NULL};
		check_keys(c, val, p, keys);
		json_object *x;
		if (json_object_object_get_ex(val, "template", &x) &&
		    json_object_is_type(x, json_type_string))
			sc->tmpl = parse_template(c, json_object_get_string(x), p);
		else if (json_object_object_get_ex(val, "value", &x)) {
			sc->constant = scalar_text(x);
			sc->is_null = sc->constant == NULL;
			sc->is_json = json_object_is_type(x, json_type_object) ||
				      json_object_is_type(x, json_type_array);
		} else
			cerr(c, p, "a stub column needs \"template\" or \"value\"");
	}
}

static void parse_ref(Ctx *c, json_object *o, const char *ptr, ColumnRule *r, Policy dflt_missing)
{
	static const char *const keys[] = {"rule", "entity", "from", "on_missing", "stub", "deferred", NULL};
	check_keys(c, o, ptr, keys);
	json_object *dv;
	if (json_object_object_get_ex(o, "deferred", &dv)) {
		AUTOFREE char *pd = ptr_key(ptr, "deferred");
		if (expect_type(c, dv, json_type_boolean, pd))
			r->deferred = json_object_get_boolean(dv);
	}
	r->ref_entity = get_str(c, o, ptr, "entity", true);
	r->on_missing = dflt_missing;
	r->ref_entity_index = -1;
	json_object *x;
	AUTOFREE char *pf = ptr_key(ptr, "from");
	if (!json_object_object_get_ex(o, "from", &x)) {
		cerr(c, ptr, "missing required key \"from\"");
	} else if (json_object_is_type(x, json_type_string)) {
		r->ref_from[0] = xstrdup(json_object_get_string(x));
		r->n_ref_from = 1;
	} else if (json_object_is_type(x, json_type_array)) {
		size_t n = json_object_array_length(x);
		if (n < 1 || n > EDUMIG_MAX_KEY_COLS)
			cerr(c, pf, "a reference key has 1 to %d columns, not %zu", EDUMIG_MAX_KEY_COLS, n);
		for (size_t i = 0; i < n && i < EDUMIG_MAX_KEY_COLS; i++) {
			json_object *e = json_object_array_get_idx(x, i);
			AUTOFREE char *pi = ptr_idx(pf, i);
			if (expect_type(c, e, json_type_string, pi))
				r->ref_from[r->n_ref_from++] = xstrdup(json_object_get_string(e));
		}
	} else {
		cerr(c, pf, "expected a column name or an array of column names, found %s",
		     jtype_name(x));
	}
	for (int i = 0; i < r->n_ref_from; i++) {
		r->ref_cols[i] = -1;
		if (!is_identifier(r->ref_from[i]))
			cerr(c, pf, "\"%s\" is not a source column name", r->ref_from[i]);
	}
	parse_policy(c, o, ptr, "on_missing", &r->on_missing, missing_policies, 3);
	if (json_object_object_get_ex(o, "stub", &x)) {
		AUTOFREE char *p = ptr_key(ptr, "stub");
		parse_stub(c, x, p, r);
	}
	if (r->on_missing == POLICY_STUB && !r->stub_cols)
		cerr(c, ptr, "\"on_missing\": \"stub\" needs a \"stub\" object giving the placeholder's columns");
}

static void parse_json_rule(Ctx *c, json_object *o, const char *ptr, ColumnRule *r, Policy dflt)
{
	static const char *const keys[] = {"rule", "fields", NULL};
	check_keys(c, o, ptr, keys);
	json_object *f;
	AUTOFREE char *pf = ptr_key(ptr, "fields");
	if (!json_object_object_get_ex(o, "fields", &f)) {
		cerr(c, ptr, "missing required key \"fields\"");
		return;
	}
	if (!expect_type(c, f, json_type_object, pf))
		return;
	r->n_fields = (size_t)json_object_object_length(f);
	r->fields = xcalloc(r->n_fields, sizeof *r->fields);
	size_t i = 0;
	static const char *const extra[] = {"type", "omit_null", NULL};
	json_object_object_foreach(f, key, val) {
		JsonField *jf = &r->fields[i++];
		AUTOFREE char *p = ptr_key(pf, key);
		jf->key = xstrdup(key);
		jf->type = JT_STRING;
		parse_value(c, val, p, &jf->value, dflt, extra, false);
		if (!json_object_is_type(val, json_type_object))
			continue;
		json_object *x;
		if (json_object_object_get_ex(val, "type", &x)) {
			AUTOFREE char *pt = ptr_key(p, "type");
			const char *t = json_object_is_type(x, json_type_string) ? json_object_get_string(x) : "";
			if (strcmp(t, "string") == 0)
				jf->type = JT_STRING;
			else if (strcmp(t, "number") == 0)
				jf->type = JT_NUMBER;
			else if (strcmp(t, "boolean") == 0)
				jf->type = JT_BOOLEAN;
			else if (strcmp(t, "json") == 0)
				jf->type = JT_JSON;
			else
				cerr(c, pt, "unknown type \"%s\" (expected string, number, boolean or json)", t);
		}
		if (json_object_object_get_ex(val, "omit_null", &x)) {
			AUTOFREE char *po = ptr_key(p, "omit_null");
			if (expect_type(c, x, json_type_boolean, po))
				jf->omit_null = json_object_get_boolean(x);
		}
	}
}

static void parse_i18n(Ctx *c, json_object *o, const char *ptr, ColumnRule *r, Policy dflt)
{
	static const char *const keys[] = {"rule", "langs", "fallback", "placeholder", NULL};
	check_keys(c, o, ptr, keys);
	json_object *l, *x;
	AUTOFREE char *pl = ptr_key(ptr, "langs");
	if (!json_object_object_get_ex(o, "langs", &l)) {
		cerr(c, ptr, "missing required key \"langs\"");
		return;
	}
	if (!expect_type(c, l, json_type_object, pl))
		return;
	r->n_langs = (size_t)json_object_object_length(l);
	if (r->n_langs == 0)
		cerr(c, pl, "needs at least one language");
	r->langs = xcalloc(r->n_langs ? r->n_langs : 1, sizeof *r->langs);
	size_t i = 0;
	json_object_object_foreach(l, key, val) {
		AUTOFREE char *p = ptr_key(pl, key);
		r->langs[i].lang = xstrdup(key);
		parse_value(c, val, p, &r->langs[i].value, dflt, NULL, false);
		i++;
	}
	if (json_object_object_get_ex(o, "fallback", &x)) {
		AUTOFREE char *pf = ptr_key(ptr, "fallback");
		if (expect_type(c, x, json_type_array, pf)) {
			r->n_fallback = json_object_array_length(x);
			r->fallback = xcalloc(r->n_fallback ? r->n_fallback : 1, sizeof *r->fallback);
			for (size_t k = 0; k < r->n_fallback; k++) {
				json_object *e = json_object_array_get_idx(x, k);
				AUTOFREE char *pi = ptr_idx(pf, k);
				if (!expect_type(c, e, json_type_string, pi)) {
					r->fallback[k] = xstrdup("");
					continue;
				}
				r->fallback[k] = xstrdup(json_object_get_string(e));
				bool known = false;
				for (size_t j = 0; j < r->n_langs; j++)
					if (strcmp(r->langs[j].lang, r->fallback[k]) == 0)
						known = true;
				if (!known)
					cerr(c, pi, "fallback language \"%s\" is not one of \"langs\"", r->fallback[k]);
			}
		}
	}
	if (json_object_object_get_ex(o, "placeholder", &x)) {
		AUTOFREE char *pp = ptr_key(ptr, "placeholder");
		if (expect_type(c, x, json_type_string, pp))
			r->placeholder = parse_template(c, json_object_get_string(x), pp);
	}
}

static bool parse_rule_kind(Ctx *c, json_object *o, const char *ptr, RuleKind *out)
{
	json_object *x;
	AUTOFREE char *p = ptr_key(ptr, "rule");
	if (!json_object_object_get_ex(o, "rule", &x)) {
		cerr(c, ptr, "missing required key \"rule\" (one of: id, copy, constant, template, ref, json, i18n)");
		return false;
	}
	if (!expect_type(c, x, json_type_string, p))
		return false;
	const char *s = json_object_get_string(x);
	for (size_t i = 0; i < sizeof rule_names / sizeof *rule_names; i++) {
		if (strcmp(s, rule_names[i]) == 0) {
			*out = (RuleKind)i;
			return true;
		}
	}
	cerr(c, p, "unknown rule \"%s\" (expected one of: id, copy, constant, template, ref, json, i18n)", s);
	return false;
}

static void parse_column(Ctx *c, const char *name, json_object *o, const char *ptr, ColumnRule *r,
			 Policy dflt_invalid, Policy dflt_missing)
{
	r->name = xstrdup(name);
	r->path = xstrdup(ptr);
	r->line = jsonpos_line(c->pos, ptr);
	r->ref_entity_index = -1;
	r->value.col = -1;
	if (json_object_is_type(o, json_type_string)) {
		r->kind = RULE_COPY;
		r->kind_known = true;
		parse_value(c, o, ptr, &r->value, dflt_invalid, NULL, false);
		return;
	}
	if (!expect_type(c, o, json_type_object, ptr))
		return;
	if (!parse_rule_kind(c, o, ptr, &r->kind))
		return;
	r->kind_known = true;
	static const char *const rule_key[] = {"rule", NULL};
	switch (r->kind) {
	case RULE_ID:
		check_keys(c, o, ptr, rule_key);
		break;
	case RULE_COPY:
	case RULE_CONSTANT:
	case RULE_TEMPLATE:
		parse_value(c, o, ptr, &r->value, dflt_invalid, rule_key, true);
		if (r->kind == RULE_COPY && !r->value.from)
			cerr(c, ptr, "a copy rule needs \"from\"");
		if (r->kind == RULE_CONSTANT && !r->value.has_constant)
			cerr(c, ptr, "a constant rule needs \"value\"");
		if (r->kind == RULE_TEMPLATE && !r->value.tmpl)
			cerr(c, ptr, "a template rule needs \"template\"");
		break;
	case RULE_REF:
		parse_ref(c, o, ptr, r, dflt_missing);
		break;
	case RULE_JSON:
		parse_json_rule(c, o, ptr, r, dflt_invalid);
		break;
	case RULE_I18N:
		parse_i18n(c, o, ptr, r, dflt_invalid);
		break;
	default:
		break;
	}
}

static void parse_source(Ctx *c, json_object *o, Mapping *m)
{
	static const char *const keys[] = {"table", "query", "key", "key_unique", "filters", "merge", NULL};
	if (!expect_type(c, o, json_type_object, "/source"))
		return;
	check_keys(c, o, "/source", keys);
	m->source_table = get_str(c, o, "/source", "table", false);
	m->source_query = get_str(c, o, "/source", "query", false);
	if (!!m->source_table == !!m->source_query)
		cerr(c, "/source", "needs exactly one of \"table\" or \"query\"");
	json_object *x;
	if (!json_object_object_get_ex(o, "key", &x)) {
		cerr(c, "/source", "missing required key \"key\"");
	} else if (json_object_is_type(x, json_type_string)) {
		m->key_cols[0] = xstrdup(json_object_get_string(x));
		m->n_key = 1;
	} else if (json_object_is_type(x, json_type_array)) {
		size_t n = json_object_array_length(x);
		if (n < 1 || n > EDUMIG_MAX_KEY_COLS)
			cerr(c, "/source/key", "a key has 1 to %d columns, not %zu", EDUMIG_MAX_KEY_COLS, n);
		for (size_t i = 0; i < n && i < EDUMIG_MAX_KEY_COLS; i++) {
			json_object *e = json_object_array_get_idx(x, i);
			AUTOFREE char *p = ptr_idx("/source/key", i);
			if (expect_type(c, e, json_type_string, p))
				m->key_cols[m->n_key++] = xstrdup(json_object_get_string(e));
		}
	} else {
		cerr(c, "/source/key", "expected a column name or an array of column names, found %s",
		     jtype_name(x));
	}
	for (int i = 0; i < m->n_key; i++)
		if (!is_identifier(m->key_cols[i]))
			cerr(c, "/source/key", "\"%s\" is not a column name", m->key_cols[i]);
	m->key_unique = false;
	if (json_object_object_get_ex(o, "key_unique", &x) &&
	    expect_type(c, x, json_type_boolean, "/source/key_unique"))
		m->key_unique = json_object_get_boolean(x);
	if (json_object_object_get_ex(o, "filters", &x) &&
	    expect_type(c, x, json_type_array, "/source/filters")) {
		m->n_filters = json_object_array_length(x);
		m->filters = xcalloc(m->n_filters ? m->n_filters : 1, sizeof *m->filters);
		for (size_t i = 0; i < m->n_filters; i++) {
			json_object *f = json_object_array_get_idx(x, i);
			AUTOFREE char *p = ptr_idx("/source/filters", i);
			if (!expect_type(c, f, json_type_object, p))
				continue;
			static const char *const fkeys[] = {"name", "where", "description", NULL};
			check_keys(c, f, p, fkeys);
			m->filters[i].name = get_str(c, f, p, "name", true);
			m->filters[i].where = get_str(c, f, p, "where", true);
			m->filters[i].description = get_str(c, f, p, "description", false);
			if (m->filters[i].name && !is_identifier(m->filters[i].name)) {
				AUTOFREE char *pn = ptr_key(p, "name");
				cerr(c, pn, "filter name \"%s\" must be a snake_case identifier", m->filters[i].name);
			}
			for (size_t j = 0; j < i; j++)
				if (m->filters[i].name && m->filters[j].name &&
				    strcmp(m->filters[i].name, m->filters[j].name) == 0)
					cerr(c, p, "filter name \"%s\" is used twice", m->filters[i].name);
		}
	}
	if (json_object_object_get_ex(o, "merge", &x) &&
	    expect_type(c, x, json_type_object, "/source/merge")) {
		static const char *const mkeys[] = {"survivor", "reason", NULL};
		check_keys(c, x, "/source/merge", mkeys);
		m->merge = znew(Merge);
		m->merge->col = -1;
		m->merge->survivor_column = get_str(c, x, "/source/merge", "survivor", true);
		m->merge->reason = get_str(c, x, "/source/merge", "reason", false);
		if (!m->merge->reason)
			m->merge->reason = xstrdup("merged_duplicate");
	}
}

static void parse_mapping(Ctx *c, json_object *root, Mapping *m)
{
	static const char *const keys[] = {"entity", "description", "source", "lookups", "target",
					   "defaults", "columns", "flags", "owner", NULL};
	if (!expect_type(c, root, json_type_object, ""))
		return;
	check_keys(c, root, "", keys);
	m->entity = get_str(c, root, "", "entity", true);
	if (m->entity && !is_identifier(m->entity))
		cerr(c, "/entity", "entity name \"%s\" must be a snake_case identifier", m->entity);
	m->description = get_str(c, root, "", "description", false);
	json_object *x;
	if (json_object_object_get_ex(root, "source", &x))
		parse_source(c, x, m);
	else
		cerr(c, "", "missing required key \"source\"");

	if (json_object_object_get_ex(root, "lookups", &x) &&
	    expect_type(c, x, json_type_object, "/lookups")) {
		m->n_lookups = (size_t)json_object_object_length(x);
		m->lookups = xcalloc(m->n_lookups ? m->n_lookups : 1, sizeof *m->lookups);
		size_t i = 0;
		json_object_object_foreach(x, key, val) {
			AUTOFREE char *p = ptr_key("/lookups", key);
			m->lookups[i].name = xstrdup(key);
			if (expect_type(c, val, json_type_string, p))
				m->lookups[i].query = xstrdup(json_object_get_string(val));
			i++;
		}
	}

	bool has_target = json_object_object_get_ex(root, "target", &x);
	if (has_target && expect_type(c, x, json_type_object, "/target")) {
		static const char *const tkeys[] = {"table", "schema", "id_column", NULL};
		check_keys(c, x, "/target", tkeys);
		m->target_table = get_str(c, x, "/target", "table", true);
		m->target_schema = get_str(c, x, "/target", "schema", false);
		m->id_column = get_str(c, x, "/target", "id_column", false);
	} else if (!has_target) {
		cerr(c, "", "missing required key \"target\"");
	}
	if (!m->target_schema)
		m->target_schema = xstrdup("public");
	if (!m->id_column)
		m->id_column = xstrdup("id");

	if (json_object_object_get_ex(root, "flags", &x) && expect_type(c, x, json_type_array, "/flags")) {
		m->n_flags = json_object_array_length(x);
		m->flags = xcalloc(m->n_flags ? m->n_flags : 1, sizeof *m->flags);
		for (size_t i = 0; i < m->n_flags; i++) {
			json_object *f = json_object_array_get_idx(x, i), *d;
			AUTOFREE char *p = ptr_idx("/flags", i);
			m->flags[i].col = -1;
			if (!expect_type(c, f, json_type_object, p))
				continue;
			static const char *const fkeys[] = {"when", "reason", "column", "detail", NULL};
			check_keys(c, f, p, fkeys);
			m->flags[i].when = get_str(c, f, p, "when", true);
			m->flags[i].reason = get_str(c, f, p, "reason", true);
			m->flags[i].column = get_str(c, f, p, "column", false);
			if (m->flags[i].reason && !is_identifier(m->flags[i].reason)) {
				AUTOFREE char *pr = ptr_key(p, "reason");
				cerr(c, pr, "reason \"%s\" must be a snake_case code", m->flags[i].reason);
			}
			if (json_object_object_get_ex(f, "detail", &d)) {
				AUTOFREE char *pd = ptr_key(p, "detail");
				if (expect_type(c, d, json_type_string, pd))
					m->flags[i].detail = parse_template(c, json_object_get_string(d), pd);
			}
		}
	}

	m->owner_col = -1;
	if (json_object_object_get_ex(root, "owner", &x) && expect_type(c, x, json_type_object, "/owner")) {
		static const char *const okeys[] = {"entity", "from", NULL};
		check_keys(c, x, "/owner", okeys);
		m->owner_entity = get_str(c, x, "/owner", "entity", true);
		m->owner_from = get_str(c, x, "/owner", "from", true);
	}

	Policy dflt_invalid = POLICY_SKIP, dflt_missing = POLICY_SKIP;
	if (json_object_object_get_ex(root, "defaults", &x) &&
	    expect_type(c, x, json_type_object, "/defaults")) {
		static const char *const dkeys[] = {"on_invalid", "on_missing", NULL};
		check_keys(c, x, "/defaults", dkeys);
		parse_policy(c, x, "/defaults", "on_invalid", &dflt_invalid, invalid_policies, 2);
		parse_policy(c, x, "/defaults", "on_missing", &dflt_missing, missing_policies, 2);
	}

	if (!json_object_object_get_ex(root, "columns", &x)) {
		cerr(c, "", "missing required key \"columns\"");
		return;
	}
	if (!expect_type(c, x, json_type_object, "/columns"))
		return;
	m->n_cols = (size_t)json_object_object_length(x);
	m->cols = xcalloc(m->n_cols ? m->n_cols : 1, sizeof *m->cols);
	size_t i = 0, n_id = 0;
	json_object_object_foreach(x, key, val) {
		AUTOFREE char *p = ptr_key("/columns", key);
		parse_column(c, key, val, p, &m->cols[i], dflt_invalid, dflt_missing);
		if (m->cols[i].kind_known && m->cols[i].kind == RULE_ID)
			n_id++;
		if (m->cols[i].value.sensitive)
			m->sensitive_any = true;
		i++;
	}
	bool all_known = true;
	for (size_t k = 0; k < m->n_cols; k++)
		all_known = all_known && m->cols[k].kind_known;
	if (n_id != 1 && (all_known || n_id > 1))
		cerr(c, "/columns", "exactly one column must have \"rule\": \"id\" (found %zu)", n_id);
}

static void rule_free(ColumnRule *r)
{
	free(r->name);
	free(r->path);
	value_free(&r->value);
	free(r->ref_entity);
	for (int i = 0; i < r->n_ref_from; i++)
		free(r->ref_from[i]);
	for (size_t i = 0; i < r->n_stub_cols; i++) {
		free(r->stub_cols[i].name);
		free(r->stub_cols[i].constant);
		template_free(r->stub_cols[i].tmpl);
	}
	free(r->stub_cols);
	for (size_t i = 0; i < r->n_fields; i++) {
		free(r->fields[i].key);
		value_free(&r->fields[i].value);
	}
	free(r->fields);
	for (size_t i = 0; i < r->n_langs; i++) {
		free(r->langs[i].lang);
		value_free(&r->langs[i].value);
	}
	free(r->langs);
	for (size_t i = 0; i < r->n_fallback; i++)
		free(r->fallback[i]);
	free(r->fallback);
	template_free(r->placeholder);
}

static void mapping_free(Mapping *m)
{
	free(m->file);
	free(m->entity);
	free(m->description);
	free(m->source_table);
	free(m->source_query);
	for (int i = 0; i < m->n_key; i++)
		free(m->key_cols[i]);
	for (size_t i = 0; i < m->n_filters; i++) {
		free(m->filters[i].name);
		free(m->filters[i].where);
		free(m->filters[i].description);
	}
	free(m->filters);
	for (size_t i = 0; i < m->n_lookups; i++) {
		free(m->lookups[i].name);
		free(m->lookups[i].query);
	}
	free(m->lookups);
	if (m->merge) {
		free(m->merge->survivor_column);
		free(m->merge->reason);
		free(m->merge);
	}
	for (size_t i = 0; i < m->n_flags; i++) {
		free(m->flags[i].when);
		free(m->flags[i].reason);
		free(m->flags[i].column);
		template_free(m->flags[i].detail);
	}
	free(m->flags);
	free(m->owner_entity);
	free(m->owner_from);
	free(m->target_schema);
	free(m->target_table);
	free(m->id_column);
	for (size_t i = 0; i < m->n_cols; i++)
		rule_free(&m->cols[i]);
	free(m->cols);
	for (size_t i = 0; i < m->n_src_cols; i++)
		free(m->src_cols[i]);
	free(m->src_cols);
}

/* Reads a whole file; NULL (after reporting) on failure. */
static char *slurp(const char *path, size_t *len, int *errors)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
		(*errors)++;
		return NULL;
	}
	StrBuf b = {0};
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		sb_put(&b, buf, n);
	bool bad = ferror(f);
	fclose(f);
	if (bad) {
		fprintf(stderr, "%s: read error\n", path);
		(*errors)++;
		sb_free(&b);
		return NULL;
	}
	*len = b.len;
	return sb_steal(&b);
}

/* Parses a JSON file; syntax errors are reported with the tokener's line. */
static json_object *parse_json_file(const char *path, char **text_out, JsonPos **pos_out, int *errors)
{
	size_t len = 0;
	char *text = slurp(path, &len, errors);
	if (!text)
		return NULL;
	json_tokener *tok = json_tokener_new();
	json_object *root = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	if (!root || jerr != json_tokener_success) {
		size_t off = json_tokener_get_parse_end(tok);
		fprintf(stderr, "%s:%d: invalid JSON: %s\n", path, json_offset_line(text, off),
			jerr == json_tokener_continue ? "unexpected end of file"
						      : json_tokener_error_desc(jerr));
		(*errors)++;
		json_object_put(root);
		json_tokener_free(tok);
		free(text);
		return NULL;
	}
	/* Anything but white space after the value is an error too. */
	size_t end = json_tokener_get_parse_end(tok);
	while (end < len && strchr(" \t\r\n", text[end]))
		end++;
	if (end < len) {
		fprintf(stderr, "%s:%d: invalid JSON: unexpected text after the top-level value\n", path,
			json_offset_line(text, end));
		(*errors)++;
	}
	json_tokener_free(tok);
	JsonPos *pos = jsonpos_build(text, len);
	for (size_t i = 0; i < jsonpos_duplicates(pos); i++) {
		int line;
		const char *ptr = jsonpos_duplicate(pos, i, &line);
		fprintf(stderr, "%s:%d: %s: duplicate key (the later one would silently win)\n", path, line, ptr);
		(*errors)++;
	}
	*text_out = text;
	*pos_out = pos;
	return root;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FNV-1a over every config file's bytes, as a stable fingerprint of the configuration. */
static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}


static void config_bind(Config *cfg);

/* Mapping files that failed to parse: their entities are unknown, so phases naming an
 * unknown entity are not reported on top (the real error is already printed). */
static int broken_mapping_files;

static void parse_phases(Ctx *c, json_object *root, Config *cfg)
{
	static const char *const keys[] = {"namespace", "description", "phases", NULL};
	if (!expect_type(c, root, json_type_object, ""))
		return;
	check_keys(c, root, "", keys);
	AUTOFREE char *ns = get_str(c, root, "", "namespace", true);
	if (ns && uuid_parse(ns, cfg->namespace_uuid) != 0)
		cerr(c, "/namespace", "\"%s\" is not a UUID", ns);
	else if (ns)
		uuid_unparse_lower(cfg->namespace_uuid, cfg->namespace_text);
	json_object *x;
	if (!json_object_object_get_ex(root, "phases", &x)) {
		cerr(c, "", "missing required key \"phases\"");
		return;
	}
	if (!expect_type(c, x, json_type_array, "/phases"))
		return;
	cfg->n_phases = json_object_array_length(x);
	cfg->phases = xcalloc(cfg->n_phases ? cfg->n_phases : 1, sizeof *cfg->phases);
	for (size_t i = 0; i < cfg->n_phases; i++) {
		Phase *ph = &cfg->phases[i];
		json_object *po = json_object_array_get_idx(x, i);
		AUTOFREE char *p = ptr_idx("/phases", i);
		if (!expect_type(c, po, json_type_object, p))
			continue;
		static const char *const pkeys[] = {"phase", "name", "description", "entities", NULL};
		check_keys(c, po, p, pkeys);
		json_object *n;
		AUTOFREE char *pn = ptr_key(p, "phase");
		if (!json_object_object_get_ex(po, "phase", &n)) {
			cerr(c, p, "missing required key \"phase\"");
		} else if (expect_type(c, n, json_type_int, pn)) {
			ph->number = json_object_get_int(n);
			if (ph->number != (int)i + 1)
				cerr(c, pn, "phases must be numbered 1, 2, 3... in order: expected %zu, found %d",
				     i + 1, ph->number);
		}
		ph->name = get_str(c, po, p, "name", true);
		ph->description = get_str(c, po, p, "description", false);
		json_object *e;
		AUTOFREE char *pe = ptr_key(p, "entities");
		if (!json_object_object_get_ex(po, "entities", &e)) {
			cerr(c, p, "missing required key \"entities\"");
			continue;
		}
		if (!expect_type(c, e, json_type_array, pe))
			continue;
		ph->n_entities = json_object_array_length(e);
		ph->entities = xcalloc(ph->n_entities ? ph->n_entities : 1, sizeof *ph->entities);
		for (size_t k = 0; k < ph->n_entities; k++) {
			json_object *en = json_object_array_get_idx(e, k);
			AUTOFREE char *pk = ptr_idx(pe, k);
			ph->entities[k] = -1;
			if (!expect_type(c, en, json_type_string, pk))
				continue;
			const char *name = json_object_get_string(en);
			int idx = config_find_entity(cfg, name);
			if (idx < 0) {
				if (!broken_mapping_files)
					cerr(c, pk, "unknown entity \"%s\" (no mapping file declares it)", name);
				continue;
			}
			if (cfg->mappings[idx].phase) {
				cerr(c, pk, "entity \"%s\" is already in phase %d", name, cfg->mappings[idx].phase);
				continue;
			}
			cfg->mappings[idx].phase = ph->number ? ph->number : (int)i + 1;
			ph->entities[k] = idx;
		}
	}
}

/* Position of an entity in run order: (phase, index within the phase). */
static int run_order(const Config *cfg, int entity)
{
	for (size_t i = 0; i < cfg->n_phases; i++)
		for (size_t k = 0; k < cfg->phases[i].n_entities; k++)
			if (cfg->phases[i].entities[k] == entity)
				return (int)(i * 10000 + k);
	return -1;
}

/*
 * Depth-first search with colours (0 new, 1 on the stack, 2 done): linear in the size of the
 * reference graph, and each cycle is found once, when the search meets an entity still on
 * its own stack.
 */
static void dfs_cycles(const Config *cfg, int at, int *colour, int *stack, int depth, bool *in_cycle, int *errors)
{
	colour[at] = 1;
	stack[depth] = at;
	const Mapping *m = &cfg->mappings[at];
	for (size_t i = 0; i < m->n_cols; i++) {
		const ColumnRule *r = &m->cols[i];
		if (r->kind != RULE_REF || r->ref_entity_index < 0 || r->ref_entity_index == at)
			continue;
		int next = r->ref_entity_index;
		if (colour[next] == 1) {
			StrBuf path = {0};
			int from = depth;
			while (from > 0 && stack[from] != next)
				from--;
			for (int d = from; d <= depth; d++) {
				sb_printf(&path, "%s -> ", cfg->mappings[stack[d]].entity);
				in_cycle[stack[d]] = true;
			}
			sb_puts(&path, cfg->mappings[next].entity);
			fprintf(stderr, "%s:%d: %s: reference cycle: %s\n", m->file, r->line, r->path, sb_str(&path));
			(*errors)++;
			sb_free(&path);
		} else if (colour[next] == 0) {
			dfs_cycles(cfg, next, colour, stack, depth + 1, in_cycle, errors);
		}
	}
	colour[at] = 2;
}

static void validate(Config *cfg, int *errors)
{
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		Mapping *m = &cfg->mappings[i];
		if (m->entity && !m->phase) {
			fprintf(stderr, "%s:1: entity \"%s\" is in no phase of phases/phases.json\n", m->file, m->entity);
			(*errors)++;
		}
		for (size_t k = 0; k < i; k++)
			if (m->entity && cfg->mappings[k].entity && strcmp(m->entity, cfg->mappings[k].entity) == 0) {
				fprintf(stderr, "%s:1: entity \"%s\" is also declared in %s\n", m->file, m->entity,
					cfg->mappings[k].file);
				(*errors)++;
			}
		if (m->owner_entity && config_find_entity(cfg, m->owner_entity) < 0) {
			fprintf(stderr, "%s:1: /owner/entity: unknown entity \"%s\"\n", m->file, m->owner_entity);
			(*errors)++;
		}
		if (m->merge && m->n_key != 1) {
			fprintf(stderr, "%s:1: /source/merge: merging needs a one-column key (this key has %d columns)\n",
				m->file, m->n_key);
			(*errors)++;
		}
		for (size_t k = 0; k < m->n_cols; k++) {
			ColumnRule *r = &m->cols[k];
			if (r->kind != RULE_REF || !r->ref_entity)
				continue;
			r->ref_entity_index = config_find_entity(cfg, r->ref_entity);
			if (r->ref_entity_index < 0) {
				fprintf(stderr, "%s:%d: %s: reference to unknown entity \"%s\"\n", m->file, r->line,
					r->path, r->ref_entity);
				(*errors)++;
				continue;
			}
			const Mapping *p = &cfg->mappings[r->ref_entity_index];
			if (p->n_key && r->n_ref_from && p->n_key != r->n_ref_from) {
				fprintf(stderr, "%s:%d: %s: entity \"%s\" has a %d-column key, the reference gives %d\n",
					m->file, r->line, r->path, p->entity, p->n_key, r->n_ref_from);
				(*errors)++;
			}
		}
	}
	/* Cycles first: they explain a forward reference better than "later phase" does. */
	size_t nm = cfg->n_mappings ? cfg->n_mappings : 1;
	bool *in_cycle = xcalloc(nm, sizeof(bool));
	int *stack = xcalloc(nm, sizeof(int));
	int *colour = xcalloc(nm, sizeof(int));
	for (size_t i = 0; i < cfg->n_mappings; i++)
		if (colour[i] == 0)
			dfs_cycles(cfg, (int)i, colour, stack, 0, in_cycle, errors);
	free(colour);
	for (size_t i = 0; i < cfg->n_mappings; i++) {
		Mapping *m = &cfg->mappings[i];
		if (in_cycle[i] || !m->phase)
			continue;
		for (size_t k = 0; k < m->n_cols; k++) {
			ColumnRule *r = &m->cols[k];
			if (r->kind != RULE_REF || r->ref_entity_index < 0)
				continue;
			const Mapping *p = &cfg->mappings[r->ref_entity_index];
			if (r->ref_entity_index == (int)i) {
				/* A row may come before its parent in key order: only a deferred reference,
				 * resolved once every row of the entity is in, can point inside the entity. */
				if (!r->deferred || r->on_missing != POLICY_NULL) {
					fprintf(stderr, "%s:%d: %s: a reference of entity \"%s\" to itself needs \"deferred\": true "
						"and \"on_missing\": \"null\"\n",
						m->file, r->line, r->path, m->entity);
					(*errors)++;
				}
				continue;
			}
			if (r->deferred) {
				fprintf(stderr, "%s:%d: %s: \"deferred\" is only for a reference of an entity to itself\n",
					m->file, r->line, r->path);
				(*errors)++;
				continue;
			}
			if (!p->phase)
				continue;
			if (run_order(cfg, r->ref_entity_index) > run_order(cfg, (int)i)) {
				if (p->phase > m->phase)
					fprintf(stderr, "%s:%d: %s: refers to entity \"%s\" of a later phase (%d > %d)\n",
						m->file, r->line, r->path, p->entity, p->phase, m->phase);
				else
					fprintf(stderr, "%s:%d: %s: refers to entity \"%s\", which comes later in phase %d; list it first\n",
						m->file, r->line, r->path, p->entity, m->phase);
				(*errors)++;
			}
		}
	}
	free(in_cycle);
	free(stack);
}

Config *config_load(const char *dir)
{
	int errors = 0;
	Config *cfg = znew(Config);
	cfg->dir = xstrdup(dir);
	broken_mapping_files = 0;
	uint64_t h = 1469598103934665603ULL;

	AUTOFREE char *mdir = xasprintf("%s/mappings", dir);
	DIR *d = opendir(mdir);
	char **names = NULL;
	size_t n_names = 0, cap = 0;
	if (!d) {
		fprintf(stderr, "%s: cannot open mappings directory: %s\n", mdir, strerror(errno));
		errors++;
	} else {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			size_t l = strlen(de->d_name);
			if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0 && de->d_name[0] != '.') {
				names = xgrow(names, &cap, n_names + 1, sizeof *names);
				names[n_names++] = xstrdup(de->d_name);
			}
		}
		closedir(d);
		if (n_names > 1)
			qsort(names, n_names, sizeof *names, cmp_str);
		if (n_names == 0) {
			fprintf(stderr, "%s: no mapping files (*.json)\n", mdir);
			errors++;
		}
	}
	cfg->mappings = xcalloc(n_names ? n_names : 1, sizeof *cfg->mappings);
	for (size_t i = 0; i < n_names; i++) {
		Mapping *m = &cfg->mappings[cfg->n_mappings];
		m->file = xasprintf("%s/%s", mdir, names[i]);
		char *text = NULL;
		JsonPos *pos = NULL;
		json_object *root = parse_json_file(m->file, &text, &pos, &errors);
		if (root) {
			Ctx c = {.file = m->file, .pos = pos, .errors = &errors};
			parse_mapping(&c, root, m);
			h = fnv1a(h, text, strlen(text));
		} else {
			broken_mapping_files++;
		}
		cfg->n_mappings++;
		json_object_put(root);
		jsonpos_free(pos);
		free(text);
		free(names[i]);
	}
	free(names);

	AUTOFREE char *pfile = xasprintf("%s/phases/phases.json", dir);
	char *text = NULL;
	JsonPos *pos = NULL;
	json_object *root = parse_json_file(pfile, &text, &pos, &errors);
	if (root) {
		Ctx c = {.file = pfile, .pos = pos, .errors = &errors};
		parse_phases(&c, root, cfg);
		h = fnv1a(h, text, strlen(text));
	}
	json_object_put(root);
	jsonpos_free(pos);
	free(text);

	if (errors == 0)
		validate(cfg, &errors);
	if (errors == 0)
		config_bind(cfg);
	snprintf(cfg->hash, sizeof cfg->hash, "%016llx", (unsigned long long)h);
	if (errors) {
		fprintf(stderr, "edumig: %d configuration error%s in %s; nothing was run\n", errors,
			errors == 1 ? "" : "s", dir);
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

void config_free(Config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_mappings; i++)
		mapping_free(&cfg->mappings[i]);
	free(cfg->mappings);
	for (size_t i = 0; i < cfg->n_phases; i++) {
		free(cfg->phases[i].name);
		free(cfg->phases[i].description);
		free(cfg->phases[i].entities);
	}
	free(cfg->phases);
	txlookups_destroy(cfg->lookups);
	free(cfg->dir);
	free(cfg);
}

int config_find_entity(const Config *cfg, const char *entity)
{
	for (size_t i = 0; i < cfg->n_mappings; i++)
		if (cfg->mappings[i].entity && strcmp(cfg->mappings[i].entity, entity) == 0)
			return (int)i;
	return -1;
}

const Phase *config_find_phase(const Config *cfg, int number)
{
	for (size_t i = 0; i < cfg->n_phases; i++)
		if (cfg->phases[i].number == number)
			return &cfg->phases[i];
	return NULL;
}

const char *config_hash(const Config *cfg)
{
	return cfg->hash;
}

/* Index of @name among the mapping's selected source columns, adding it when new. */
static int src_col(Mapping *m, size_t *cap, const char *name)
{
	for (size_t i = 0; i < m->n_src_cols; i++)
		if (strcmp(m->src_cols[i], name) == 0)
			return (int)i;
	m->src_cols = xgrow(m->src_cols, cap, m->n_src_cols + 1, sizeof *m->src_cols);
	m->src_cols[m->n_src_cols] = xstrdup(name);
	return (int)m->n_src_cols++;
}

static void bind_template(Mapping *m, size_t *cap, Template *t, bool stub)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		TemplatePart *p = &t->parts[i];
		if (!p->column)
			continue;
		/* In a stub template {key} is the missing parent key, not a column. */
		p->col = stub && strcmp(p->column, "key") == 0 ? -2 : src_col(m, cap, p->column);
	}
}

static void bind_value(Mapping *m, size_t *cap, ValueSpec *v)
{
	if (v->from)
		v->col = src_col(m, cap, v->from);
	bind_template(m, cap, v->tmpl, false);
	bind_template(m, cap, v->default_tmpl, false);
	if (v->or)
		bind_value(m, cap, v->or);
}

static void bind_mapping(Mapping *m)
{
	size_t cap = 0;
	for (int i = 0; i < m->n_key; i++)
		m->key_idx[i] = src_col(m, &cap, m->key_cols[i]);
	if (m->merge)
		m->merge->col = src_col(m, &cap, m->merge->survivor_column);
	if (m->owner_from)
		m->owner_col = src_col(m, &cap, m->owner_from);
	for (size_t i = 0; i < m->n_flags; i++) {
		if (m->flags[i].when)
			m->flags[i].col = src_col(m, &cap, m->flags[i].when);
		bind_template(m, &cap, m->flags[i].detail, false);
	}
	for (size_t c = 0; c < m->n_cols; c++) {
		ColumnRule *r = &m->cols[c];
		bind_value(m, &cap, &r->value);
		for (int i = 0; i < r->n_ref_from; i++)
			r->ref_cols[i] = src_col(m, &cap, r->ref_from[i]);
		for (size_t i = 0; i < r->n_stub_cols; i++)
			bind_template(m, &cap, r->stub_cols[i].tmpl, true);
		for (size_t i = 0; i < r->n_fields; i++)
			bind_value(m, &cap, &r->fields[i].value);
		for (size_t i = 0; i < r->n_langs; i++)
			bind_value(m, &cap, &r->langs[i].value);
		bind_template(m, &cap, r->placeholder, false);
	}
}

static void config_bind(Config *cfg)
{
	for (size_t i = 0; i < cfg->n_mappings; i++)
		bind_mapping(&cfg->mappings[i]);
}
