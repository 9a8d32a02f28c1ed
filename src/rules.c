/*
 * src/rules.c — column rules: source row in, target COPY line and issues out (see rules.h).
 *
 * A row with an error keeps being evaluated so that every problem of the row is reported
 * at once: the data owner then fixes the row in one round, not one problem per retry.
 */
#include "edumig/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "edumig/copytext.h"
#include "edumig/mem.h"

#define REDACTED "[redacted]"
#define SOURCE_VALUE_MAX 500

void rulectx_init(RuleCtx *rc, const Config *cfg, int entity, IdSet **sets, TxEnv *env)
{
	memset(rc, 0, sizeof *rc);
	rc->cfg = cfg;
	rc->m = &cfg->mappings[entity];
	rc->entity = entity;
	rc->sets = sets;
	rc->env = env;
}

void rulectx_free(RuleCtx *rc)
{
	txvalue_free(&rc->v);
	txvalue_free(&rc->raw);
	sb_free(&rc->tmp);
	sb_free(&rc->json);
}

size_t rules_target_columns(const Mapping *m, const char **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < m->n_cols && n < max; i++)
		out[n++] = m->cols[i].name;
	return n;
}

/* A copy of a source value for the skip log: bounded, and redacted when sensitive. */
static char *source_value_copy(const TxValue *raw, bool sensitive)
{
	if (raw->null)
		return NULL;
	if (sensitive)
		return xstrdup(REDACTED);
	size_t n = raw->len < SOURCE_VALUE_MAX ? raw->len : SOURCE_VALUE_MAX;
	/* Embedded NULs would cut the text short in the log: show them as \0. */
	StrBuf b = {0};
	for (size_t i = 0; i < n; i++) {
		if (raw->data[i] == '\0')
			sb_puts(&b, "\\0");
		else
			sb_putc(&b, raw->data[i]);
	}
	if (n < raw->len)
		sb_printf(&b, "... (%zu bytes)", raw->len);
	return sb_steal(&b);
}

static Issue *add_issue(Batch *b, const RowInput *in, int row, const char *reason, Severity sev,
			const char *column)
{
	Issue *i = batch_add_issue(b, in->key_text, row);
	i->reason = reason;
	i->severity = sev;
	i->column = column;
	return i;
}

/* Renders a template; false when a referenced column is NULL (the result is then NULL),
 * unless @null_text is given: messages show a NULL as that text. */
static bool render_ex(const Template *t, const RowInput *in, const char *key_text, StrBuf *out,
		      const char *null_text)
{
	for (size_t i = 0; i < t->n; i++) {
		const TemplatePart *p = &t->parts[i];
		if (p->literal) {
			sb_puts(out, p->literal);
		} else if (p->col == -2) {
			sb_puts(out, key_text);
		} else {
			if (p->col < 0 || !in->val[p->col]) {
				if (!null_text)
					return false;
				sb_puts(out, null_text);
				continue;
			}
			sb_put(out, in->val[p->col], in->len[p->col]);
		}
	}
	return true;
}

static bool render(const Template *t, const RowInput *in, const char *key_text, StrBuf *out)
{
	return render_ex(t, in, key_text, out, NULL);
}

/* Loads the unprocessed value of @vs into @v. */
static void load_raw(RuleCtx *rc, const ValueSpec *vs, const RowInput *in, TxValue *v)
{
	if (vs->from) {
		if (vs->col < 0 || !in->val[vs->col])
			txvalue_set_null(v);
		else
			txvalue_set(v, in->val[vs->col], in->len[vs->col]);
	} else if (vs->has_constant) {
		if (vs->is_null_constant)
			txvalue_set_null(v);
		else
			txvalue_set(v, vs->constant, strlen(vs->constant));
	} else if (vs->tmpl) {
		sb_reset(&rc->tmp);
		if (render(vs->tmpl, in, in->key_text, &rc->tmp))
			txvalue_set(v, sb_str(&rc->tmp), rc->tmp.len);
		else
			txvalue_set_null(v);
	} else {
		txvalue_set_null(v);
	}
}

/*
 * Computes @vs into rc->v. Returns false when the row must be skipped (an error issue was
 * added). Warnings are added as issues of severity warning.
 */
static bool eval_value(RuleCtx *rc, const ValueSpec *vs, const char *column, const RowInput *in,
		       Batch *b, int row)
{
	TxValue *v = &rc->v;
	load_raw(rc, vs, in, v);
	if (vs->chain) {
		/* Keep the original for the skip log before the chain rewrites it in place. */
		txvalue_set_null(&rc->raw);
		if (!v->null)
			txvalue_set(&rc->raw, v->data, v->len);
		TxOutcome out;
		TxStatus st = txchain_apply(vs->chain, rc->env, v, &out);
		/* A sensitive column's details may quote the value: only the reason code survives. */
		if (st != TX_OK && vs->sensitive)
			snprintf(out.detail, sizeof out.detail, "%s (details withheld: sensitive column)", out.code);
		if (st == TX_WARN) {
			Issue *i = add_issue(b, in, row, out.code, SEV_WARNING, column);
			i->source_value = source_value_copy(&rc->raw, vs->sensitive);
			i->detail = xstrdup(out.detail);
		} else if (st == TX_INVALID) {
			Issue *i;
			switch (vs->on_invalid) {
			case POLICY_NULL:
				i = add_issue(b, in, row, out.code, SEV_WARNING, column);
				i->detail = xasprintf("%s; stored as NULL (on_invalid: null)", out.detail);
				txvalue_set_null(v);
				break;
			case POLICY_DEFAULT: {
				const char *dv = vs->default_value;
				size_t dl = strlen(dv);
				if (vs->default_tmpl) {
					sb_reset(&rc->tmp);
					render(vs->default_tmpl, in, in->key_text, &rc->tmp);
					dv = sb_str(&rc->tmp);
					dl = rc->tmp.len;
				}
				i = add_issue(b, in, row, out.code, SEV_WARNING, column);
				/* A constant default comes from the mapping, not the data: it may be shown. */
				i->detail = xasprintf("%s; stored as '%s' (on_invalid: default)", out.detail,
						      vs->sensitive && vs->default_tmpl ? REDACTED : dv);
				txvalue_set(v, dv, dl);
				break;
			}
			case POLICY_SKIP:
			case POLICY_STUB:
			default:
				i = add_issue(b, in, row, out.code, SEV_ERROR, column);
				i->detail = xstrdup(out.detail);
				i->source_value = source_value_copy(&rc->raw, vs->sensitive);
				return false;
			}
			i->source_value = source_value_copy(&rc->raw, vs->sensitive);
		}
	}
	if (v->null && vs->or)
		return eval_value(rc, vs->or, column, in, b, row);
	return true;
}

/* Finishes a stub row for a missing parent and records it in the batch and the parent set. */
static void make_stub(RuleCtx *rc, const ColumnRule *r, const Key *key, const char *key_text,
		      const RowInput *in, Batch *b, unsigned char uuid[16])
{
	const Mapping *pm = &rc->cfg->mappings[r->ref_entity_index];
	idmap_uuid(rc->cfg->namespace_uuid, pm->entity, key, uuid);
	StrBuf line = {0};
	char ut[37];
	uuid_unparse_lower(uuid, ut);
	sb_puts(&line, ut);
	for (size_t i = 0; i < r->n_stub_cols; i++) {
		const StubColumn *sc = &r->stub_cols[i];
		sb_putc(&line, '\t');
		if (sc->tmpl) {
			sb_reset(&rc->tmp);
			if (render(sc->tmpl, in, key_text, &rc->tmp))
				copytext_put(&line, sb_str(&rc->tmp), rc->tmp.len);
			else
				copytext_put(&line, NULL, 0);
		} else {
			copytext_put(&line, sc->constant, sc->constant ? strlen(sc->constant) : 0);
		}
	}
	sb_putc(&line, '\n');
	b->stubs = xgrow(b->stubs, &b->cap_stubs, b->n_stubs + 1, sizeof *b->stubs);
	Stub *s = &b->stubs[b->n_stubs++];
	memset(s, 0, sizeof *s);
	s->rule = r;
	s->entity = r->ref_entity_index;
	s->key = *key;
	memcpy(s->uuid, uuid, 16);
	s->line = sb_steal(&line);
	idset_put(rc->sets[r->ref_entity_index], key, uuid, ID_STUB);
}

/*
 * Resolves a reference into @uuid. Returns 1 resolved, 0 NULL (written as \N), -1 skip.
 * Stubs are created only when @commit_stubs: the caller first evaluates the whole row and
 * creates placeholders only for rows that will move.
 */
static int resolve_ref(RuleCtx *rc, const ColumnRule *r, const RowInput *in, Batch *b, int row,
		       unsigned char uuid[16], bool *needs_stub, Key *stub_key)
{
	const Mapping *pm = &rc->cfg->mappings[r->ref_entity_index];
	Key k = {0};
	bool is_null = false, bad = false;
	StrBuf what = {0};
	for (int i = 0; i < r->n_ref_from; i++) {
		const char *v = in->val[r->ref_cols[i]];
		if (!v) {
			is_null = true;
			sb_printf(&what, "%s%s is NULL", what.len ? ", " : "", r->ref_from[i]);
		} else if (!key_int(v, &k.v[i])) {
			bad = true;
			sb_printf(&what, "%s%s '%.80s%s' is not an integer key", what.len ? ", " : "", r->ref_from[i], v,
				  strlen(v) > 80 ? "..." : "");
		}
	}
	k.n = (uint8_t)r->n_ref_from;
	char kt[KEY_TEXT_MAX];
	IdKind kind = ID_ROW;
	bool found = false;
	if (!is_null && !bad) {
		key_format(&k, kt);
		found = idset_get(rc->sets[r->ref_entity_index], &k, uuid, &kind);
		if (found && kind == ID_STUB) {
			Issue *i = add_issue(b, in, row, skip_reason_code(REASON_PARENT_STUBBED), SEV_WARNING, r->name);
			i->detail = xasprintf("%s %s is a placeholder (missing in the source)", pm->entity, kt);
			i->cause_entity = pm->entity;
			i->cause_key = xstrdup(kt);
			sb_free(&what);
			return 1;
		}
		if (found && kind != ID_SKIPPED) {
			sb_free(&what);
			return 1;
		}
	}
	/* A NULL reference that may stay NULL is no change: nothing to report. */
	if (is_null && !bad && r->on_missing == POLICY_NULL) {
		sb_free(&what);
		return 0;
	}
	/* Unresolved: NULL key, malformed key, parent skipped, or parent absent. */
	SkipReason reason = found ? REASON_PARENT_SKIPPED : REASON_MISSING_REFERENCE;
	char *detail;
	if (is_null || bad)
		detail = xasprintf("%s", sb_str(&what));
	else if (found)
		detail = xasprintf("%s %s was skipped", pm->entity, kt);
	else
		detail = xasprintf("%s %s not migrated (absent from the source or filtered out)", pm->entity, kt);
	sb_free(&what);
	int rc_val;
	Issue *i;
	switch (r->on_missing) {
	case POLICY_NULL:
		i = add_issue(b, in, row, skip_reason_code(reason), SEV_WARNING, r->name);
		i->detail = xasprintf("%s; stored as NULL (on_missing: null)", detail);
		rc_val = 0;
		break;
	case POLICY_STUB:
		*needs_stub = true;
		if (is_null || bad)
			memset(stub_key, 0, sizeof *stub_key);
		else
			*stub_key = k;
		i = add_issue(b, in, row, skip_reason_code(REASON_PARENT_STUBBED), SEV_WARNING, r->name);
		i->detail = xasprintf("%s; a placeholder %s stands in (on_missing: stub)", detail, pm->entity);
		rc_val = 1;
		break;
	case POLICY_SKIP:
	case POLICY_DEFAULT:
	default:
		i = add_issue(b, in, row, skip_reason_code(reason), SEV_ERROR, r->name);
		i->detail = detail;
		detail = NULL;
		rc_val = -1;
		break;
	}
	if (found || (!is_null && !bad)) {
		i->cause_entity = pm->entity;
		i->cause_key = xstrdup(kt);
	} else if (r->n_ref_from == 1 && in->val[r->ref_cols[0]] == NULL) {
		i->cause_entity = pm->entity;
	}
	if (!is_null && !bad && !found) {
		/* The raw reference is what the owner must fix. */
		i->source_value = xstrdup(kt);
	}
	free(detail);
	return rc_val;
}

/* True when @s is a number as JSON writes it: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_ok(const char *s, size_t n)
{
	size_t i = 0;
	if (i < n && s[i] == '-')
		i++;
	if (i >= n)
		return false;
	if (s[i] == '0') {
		i++;
	} else if (s[i] >= '1' && s[i] <= '9') {
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	} else {
		return false;
	}
	if (i < n && s[i] == '.') {
		i++;
		size_t d = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		size_t d = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	return i == n;
}

static bool put_json_value(StrBuf *j, JsonType type, const TxValue *v, Batch *b,
			   const RowInput *in, int row, const char *column, const char *key, bool sensitive)
{
	if (v->null) {
		sb_puts(j, "null");
		return true;
	}
	switch (type) {
	case JT_NUMBER: {
		if (!json_number_ok(v->data, v->len)) {
			Issue *i = add_issue(b, in, row, "not_a_number", SEV_WARNING, column);
			i->detail = sensitive ? xasprintf("field \"%s\" is not a number; stored as a string", key)
					      : xasprintf("field \"%s\": '%.80s%s' is not a number; stored as a string", key, v->data,
							  v->len > 80 ? "..." : "");
			json_put_string(j, v->data, v->len);
		} else {
			sb_put(j, v->data, v->len);
		}
		return true;
	}
	case JT_BOOLEAN: {
		const char *s = v->data;
		if (!strcmp(s, "t") || !strcmp(s, "true") || !strcmp(s, "1"))
			sb_puts(j, "true");
		else if (!strcmp(s, "f") || !strcmp(s, "false") || !strcmp(s, "0"))
			sb_puts(j, "false");
		else {
			Issue *i = add_issue(b, in, row, "not_a_boolean", SEV_WARNING, column);
			i->detail = sensitive ? xasprintf("field \"%s\" is not a boolean; stored as a string", key)
					      : xasprintf("field \"%s\": '%.80s%s' is not a boolean; stored as a string", key, s,
							  v->len > 80 ? "..." : "");
			json_put_string(j, v->data, v->len);
		}
		return true;
	}
	case JT_JSON:
		sb_put(j, v->data, v->len);
		return true;
	case JT_STRING:
	default:
		json_put_string(j, v->data, v->len);
		return true;
	}
}

static bool eval_json(RuleCtx *rc, const ColumnRule *r, const RowInput *in, Batch *b, int row, StrBuf *line)
{
	StrBuf *j = &rc->json;
	sb_reset(j);
	sb_putc(j, '{');
	bool ok = true, first = true;
	for (size_t f = 0; f < r->n_fields; f++) {
		const JsonField *jf = &r->fields[f];
		if (!eval_value(rc, &jf->value, r->name, in, b, row)) {
			ok = false;
			continue;
		}
		if (rc->v.null && jf->omit_null)
			continue;
		if (!first)
			sb_putc(j, ',');
		first = false;
		json_put_string(j, jf->key, strlen(jf->key));
		sb_putc(j, ':');
		put_json_value(j, jf->type, &rc->v, b, in, row, r->name, jf->key, jf->value.sensitive);
	}
	sb_putc(j, '}');
	if (ok)
		copytext_put(line, j->data, j->len);
	return ok;
}

static bool eval_i18n(RuleCtx *rc, const ColumnRule *r, const RowInput *in, Batch *b, int row, StrBuf *line)
{
	/* Each language's value, evaluated once; an empty string counts as missing. */
	char **vals = xcalloc(r->n_langs, sizeof *vals);
	size_t *lens = xcalloc(r->n_langs, sizeof *lens);
	bool ok = true, any = false;
	for (size_t l = 0; l < r->n_langs; l++) {
		if (!eval_value(rc, &r->langs[l].value, r->name, in, b, row)) {
			ok = false;
			continue;
		}
		if (!rc->v.null && rc->v.len > 0) {
			vals[l] = xstrndup(rc->v.data, rc->v.len);
			lens[l] = rc->v.len;
			any = true;
		}
	}
	if (ok) {
		StrBuf *j = &rc->json;
		sb_reset(j);
		if (!any) {
			sb_reset(&rc->tmp);
			if (r->placeholder && render(r->placeholder, in, in->key_text, &rc->tmp)) {
				Issue *i = add_issue(b, in, row, skip_reason_code(REASON_PLACEHOLDER_VALUE), SEV_WARNING, r->name);
				i->detail = xasprintf("no value in any language; placeholder '%s' written", sb_str(&rc->tmp));
				sb_putc(j, '{');
				for (size_t l = 0; l < r->n_langs; l++) {
					if (l)
						sb_putc(j, ',');
					json_put_string(j, r->langs[l].lang, strlen(r->langs[l].lang));
					sb_putc(j, ':');
					json_put_string(j, rc->tmp.data, rc->tmp.len);
				}
				sb_putc(j, '}');
				copytext_put(line, j->data, j->len);
			} else {
				copytext_put(line, NULL, 0);
			}
		} else {
			sb_putc(j, '{');
			for (size_t l = 0; l < r->n_langs; l++) {
				size_t src = l;
				if (!vals[l]) {
					/* Fill from the first language of the fallback order that has a value. */
					for (size_t f = 0; f < r->n_fallback; f++)
						for (size_t k = 0; k < r->n_langs; k++)
							if (!vals[src] && vals[k] && strcmp(r->langs[k].lang, r->fallback[f]) == 0)
								src = k;
					if (!vals[src])
						for (size_t k = 0; k < r->n_langs && !vals[src]; k++)
							if (vals[k])
								src = k;
				}
				if (l)
					sb_putc(j, ',');
				json_put_string(j, r->langs[l].lang, strlen(r->langs[l].lang));
				sb_putc(j, ':');
				json_put_string(j, vals[src], lens[src]);
			}
			sb_putc(j, '}');
			copytext_put(line, j->data, j->len);
		}
	}
	for (size_t l = 0; l < r->n_langs; l++)
		free(vals[l]);
	free(vals);
	free(lens);
	return ok;
}

typedef struct PendingStub {
	const ColumnRule *rule;
	Key key;
	size_t line_pos;          /* where its UUID goes in the line */
} PendingStub;

bool rules_apply(RuleCtx *rc, const RowInput *in, Batch *b)
{
	const Mapping *m = rc->m;
	int row = (int)b->n_rows;
	size_t issues_start = b->n_issues;
	size_t line_start = b->lines.len;
	char ent_key[KEY_TEXT_MAX + 128];
	snprintf(ent_key, sizeof ent_key, "%s:%s", m->entity, in->key_text);
	txenv_set_row_key(rc->env, ent_key);

	b->rows = xgrow(b->rows, &b->cap_rows, b->n_rows + 1, sizeof *b->rows);
	BatchRow *br = &b->rows[b->n_rows];
	memset(br, 0, sizeof *br);
	br->key = *in->key;
	br->hash = in->hash;
	br->off = line_start;
	br->kind = ID_ROW;

	if (m->merge) {
		const char *sv = in->val[m->merge->col];
		Key sk = {0};
		sk.n = (uint8_t)m->n_key;
		if (sv && !key_int(sv, &sk.v[0])) {
			Issue *i = add_issue(b, in, row, skip_reason_code(REASON_INVALID_VALUE), SEV_ERROR, NULL);
			i->detail = xasprintf("merge survivor column %s holds '%s', not a key", m->merge->survivor_column, sv);
			for (size_t k = issues_start; k < b->n_issues; k++)
				b->issues[k].row = -1;
			return false;
		}
		if (sv && !key_equal(&sk, in->key)) {
			char skt[KEY_TEXT_MAX];
			key_format(&sk, skt);
			IdKind kind;
			if (idset_get(rc->sets[rc->entity], &sk, br->uuid, &kind) && kind != ID_SKIPPED) {
				Issue *i = add_issue(b, in, row, m->merge->reason, SEV_WARNING, NULL);
				i->detail = xasprintf("merged onto %s %s (%s)", m->entity, skt, m->merge->survivor_column);
				i->cause_entity = m->entity;
				i->cause_key = xstrdup(skt);
				br->kind = ID_MERGED;
				br->merged_into = sk;
				br->warned = true;
				idset_put(rc->sets[rc->entity], in->key, br->uuid, ID_MERGED);
				b->n_rows++;
				return true;
			}
			Issue *i = add_issue(b, in, row, skip_reason_code(REASON_MERGE_SURVIVOR_MISSING), SEV_ERROR, NULL);
			i->detail = xasprintf("should merge onto %s %s, which was not migrated (a survivor must precede its duplicates in key order)",
					      m->entity, skt);
			i->cause_entity = m->entity;
			i->cause_key = xstrdup(skt);
			for (size_t k = issues_start; k < b->n_issues; k++)
				b->issues[k].row = -1;
			return false;
		}
	}

	idmap_uuid(rc->cfg->namespace_uuid, m->entity, in->key, br->uuid);
	bool ok = true;
	PendingStub *pend = NULL;
	size_t n_pend = 0, cap_pend = 0;
	StrBuf *line = &b->lines;
	for (size_t c = 0; c < m->n_cols; c++) {
		const ColumnRule *r = &m->cols[c];
		if (c)
			sb_putc(line, '\t');
		switch (r->kind) {
		case RULE_ID: {
			char ut[37];
			uuid_unparse_lower(br->uuid, ut);
			sb_put(line, ut, 36);
			break;
		}
		case RULE_COPY:
		case RULE_CONSTANT:
		case RULE_TEMPLATE:
			if (!eval_value(rc, &r->value, r->name, in, b, row)) {
				ok = false;
				break;
			}
			copytext_put(line, rc->v.null ? NULL : rc->v.data, rc->v.len);
			break;
		case RULE_REF: {
			if (r->deferred) {
				Key rk = {0};
				bool whole = true;
				for (int k = 0; k < r->n_ref_from; k++) {
					const char *v = in->val[r->ref_cols[k]];
					if (!v || !key_int(v, &rk.v[k]))
						whole = false;
				}
				rk.n = (uint8_t)r->n_ref_from;
				copytext_put(line, NULL, 0);
				if (whole) {
					b->deferred = xgrow(b->deferred, &b->cap_deferred, b->n_deferred + 1, sizeof *b->deferred);
					b->deferred[b->n_deferred++] = (Deferred){.row = row, .rule = r, .ref = rk};
				} else {
					for (int k = 0; k < r->n_ref_from; k++) {
						const char *v = in->val[r->ref_cols[k]];
						if (v && !key_int(v, &rk.v[k])) {
							Issue *i = add_issue(b, in, row, skip_reason_code(REASON_MISSING_REFERENCE),
									     SEV_WARNING, r->name);
							i->detail = xasprintf("%s '%.80s%s' is not an integer key; stored as NULL (on_missing: null)",
									      r->ref_from[k], v, strlen(v) > 80 ? "..." : "");
						}
					}
				}
				break;
			}
			unsigned char u[16];
			bool needs_stub = false;
			Key sk;
			int res = resolve_ref(rc, r, in, b, row, u, &needs_stub, &sk);
			if (res < 0) {
				ok = false;
			} else if (needs_stub) {
				pend = xgrow(pend, &cap_pend, n_pend + 1, sizeof *pend);
				pend[n_pend++] = (PendingStub){.rule = r, .key = sk, .line_pos = line->len};
				sb_put(line, "00000000-0000-0000-0000-000000000000", 36);
			} else if (res == 0) {
				copytext_put(line, NULL, 0);
			} else {
				char ut[37];
				uuid_unparse_lower(u, ut);
				sb_put(line, ut, 36);
			}
			break;
		}
		case RULE_JSON:
			if (!eval_json(rc, r, in, b, row, line))
				ok = false;
			break;
		case RULE_I18N:
			if (!eval_i18n(rc, r, in, b, row, line))
				ok = false;
			break;
		default:
			ok = false;
			break;
		}
	}
	if (!ok) {
		/* A skipped row: only its errors matter; warnings about it would mislead. */
		sb_truncate(line, line_start);
		while (b->n_deferred && b->deferred[b->n_deferred - 1].row == row)
			b->n_deferred--;
		for (size_t k = issues_start; k < b->n_issues; k++) {
			b->issues[k].row = -1;
			if (b->issues[k].severity == SEV_WARNING)
				b->issues[k].dropped = true;
		}
		free(pend);
		return false;
	}
	for (size_t p = 0; p < n_pend; p++) {
		unsigned char u[16];
		IdKind kind;
		char kt[KEY_TEXT_MAX];
		key_format(&pend[p].key, kt);
		/* An earlier row of this batch may have created the same placeholder already. */
		if (!idset_get(rc->sets[pend[p].rule->ref_entity_index], &pend[p].key, u, &kind) || kind != ID_STUB)
			make_stub(rc, pend[p].rule, &pend[p].key, kt, in, b, u);
		char ut[37];
		uuid_unparse_lower(u, ut);
		memcpy(line->data + pend[p].line_pos, ut, 36);
	}
	free(pend);
	sb_putc(line, '\n');
	br->len = line->len - line_start;
	for (size_t f = 0; f < m->n_flags; f++) {
		const Flag *fl = &m->flags[f];
		const char *fv = in->val[fl->col];
		if (!fv || !(strcmp(fv, "t") == 0 || strcmp(fv, "true") == 0 || strcmp(fv, "1") == 0))
			continue;
		Issue *i = add_issue(b, in, row, fl->reason, SEV_WARNING, fl->column);
		sb_reset(&rc->tmp);
		if (fl->detail)
			render_ex(fl->detail, in, in->key_text, &rc->tmp, "NULL");
		i->detail = xstrdup(sb_str(&rc->tmp));
	}
	for (size_t k = issues_start; k < b->n_issues; k++)
		if (b->issues[k].severity == SEV_WARNING && !b->issues[k].dropped)
			br->warned = true;
	if (m->merge)
		idset_put(rc->sets[rc->entity], in->key, br->uuid, ID_ROW);
	b->n_rows++;
	return true;
}
