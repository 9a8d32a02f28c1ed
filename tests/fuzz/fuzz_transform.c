/*
 * tests/fuzz/fuzz_transform.c — libFuzzer harness for transform chains (src/transform.c).
 *
 * Input: a JSON chain spec, then a NUL byte or a newline, then the value (up to its first NUL,
 * since source values hold none: see TxValue). With no separator only SQL NULL is tried.
 *
 *   ["trim", {"fn": "scale", "from": [0, 100], "to": [0, 4]}]\n 75,5
 *
 * The spec is compiled; a chain that compiles runs on the value twice in one TxEnv (a fresh
 * TxValue, then one that held a longer value before, as the engine's hot loop reuses it) and
 * the two outcomes must be identical (DESIGN: a re-run writes identical rows), then once on
 * SQL NULL. Chains with a bcrypt step of cost above 5 (or no cost: 12) are compiled but not
 * run, so an execution stays in the millisecond range.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/transform.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BCRYPT_COST 5

static const unsigned char SALT_NS[16] = {
	0x8f, 0x6c, 0x1d, 0x2e, 0x3b, 0x4a, 0x5c, 0x6d, 0x8e, 0x7f, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5,
};

static TxLookups *lookups;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	lookups = txlookups_create();
	if (!lookups || !txlookups_put(lookups, "grade_points", "110000301", "5") ||
	    !txlookups_put(lookups, "grade_points", "110000302", "4") ||
	    !txlookups_put(lookups, "grade_points", "110000303", "") ||
	    !txlookups_put(lookups, "grade_points", "110000399", NULL))
		abort();
	return 0;
}

/* True when a bcrypt step would hash at a cost above MAX_BCRYPT_COST (absent cost: 12). */
static bool too_costly(json_object *spec)
{
	for (size_t i = 0; i < json_object_array_length(spec); i++) {
		json_object *st = json_object_array_get_idx(spec, i), *fn, *cost;
		if (json_object_is_type(st, json_type_string) &&
		    strcmp(json_object_get_string(st), "bcrypt") == 0)
			return true;
		if (!json_object_is_type(st, json_type_object) || !json_object_object_get_ex(st, "fn", &fn) ||
		    !json_object_is_type(fn, json_type_string) || strcmp(json_object_get_string(fn), "bcrypt") != 0)
			continue;
		if (!json_object_object_get_ex(st, "cost", &cost) || !json_object_is_type(cost, json_type_int) ||
		    json_object_get_int64(cost) > MAX_BCRYPT_COST)
			return true;
	}
	return false;
}

/* The invariants of one outcome: status stored, reason code iff not OK, text terminated. */
static void check_outcome(TxStatus st, const TxValue *v, const TxOutcome *out, size_t n_steps)
{
	if (st != out->status)
		abort();
	if ((st == TX_OK) != (out->code == NULL))
		abort();
	if (st != TX_OK && (out->step < 0 || (size_t)out->step >= n_steps))
		abort();
	if (memchr(out->detail, '\0', sizeof out->detail) == NULL)
		abort();
	if (st != TX_INVALID && !v->null && (v->data == NULL || v->len >= v->cap || v->data[v->len] != '\0'))
		abort();
}

static bool same_outcome(TxStatus a, const TxValue *va, const TxOutcome *oa,
			 TxStatus b, const TxValue *vb, const TxOutcome *ob)
{
	if (a != b || oa->step != ob->step || strcmp(oa->detail, ob->detail) != 0)
		return false;
	if ((oa->code == NULL) != (ob->code == NULL) || (oa->code && strcmp(oa->code, ob->code) != 0))
		return false;
	if (a == TX_INVALID)
		return true;   /* the value is unspecified */
	if (va->null != vb->null)
		return false;
	return va->null || (va->len == vb->len && memcmp(va->data, vb->data, va->len) == 0);
}

static void run_chain(const TxChain *c, const char *val, size_t vlen)
{
	TxEnv *env = txenv_create(lookups, SALT_NS);
	if (!env)
		abort();
	txenv_set_row_key(env, "x:42");
	size_t n = txchain_length(c);

	TxValue v1 = {0}, v2 = {0}, vn = {0};
	TxOutcome o1, o2, on;
	txvalue_set(&v1, val, vlen);
	TxStatus s1 = txchain_apply(c, env, &v1, &o1);
	check_outcome(s1, &v1, &o1, n);

	static const char junk[] = "a longer value held by the buffer before this row's value, "
				   "so a step that reads past len would see it";
	txvalue_set(&v2, junk, sizeof junk - 1);
	txvalue_set(&v2, val, vlen);
	TxStatus s2 = txchain_apply(c, env, &v2, &o2);
	check_outcome(s2, &v2, &o2, n);
	if (!same_outcome(s1, &v1, &o1, s2, &v2, &o2))
		abort();

	txvalue_set_null(&vn);
	TxStatus sn = txchain_apply(c, env, &vn, &on);
	check_outcome(sn, &vn, &on, n);

	txvalue_free(&v1);
	txvalue_free(&v2);
	txvalue_free(&vn);
	txenv_destroy(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	size_t cut = 0;
	while (cut < size && data[cut] != '\0' && data[cut] != '\n')
		cut++;
	if (cut == 0 || cut > INT32_MAX)
		return 0;

	json_tokener *tok = json_tokener_new();
	if (!tok)
		abort();
	json_object *spec = json_tokener_parse_ex(tok, text, (int)cut);
	if (spec && json_tokener_get_error(tok) == json_tokener_success) {
		char err[512];
		TxChain *c = txchain_compile(spec, err, sizeof err);
		if (!c) {
			/* A refused chain always says why, starting with a JSON pointer. */
			if (memchr(err, '\0', sizeof err) == NULL || err[0] == '\0' || strchr(err, ':') == NULL)
				abort();
		} else {
			if (txchain_length(c) != json_object_array_length(spec))
				abort();
			for (const char *const *t = txchain_lookup_tables(c); *t; t++)
				(void)txlookups_has_table(lookups, *t);
			if (!too_costly(spec)) {
				const char *val = cut < size ? text + cut + 1 : "";
				size_t vlen = cut < size ? strnlen(val, size - cut - 1) : 0;
				if (cut < size) {
					run_chain(c, val, vlen);
				} else {
					/* No value: SQL NULL only (run_chain also tries it). */
					TxEnv *env = txenv_create(lookups, SALT_NS);
					TxValue vn = {0};
					TxOutcome on;
					txvalue_set_null(&vn);
					check_outcome(txchain_apply(c, env, &vn, &on), &vn, &on, txchain_length(c));
					txvalue_free(&vn);
					txenv_destroy(env);
				}
			}
			txchain_free(c);
		}
	}
	json_object_put(spec);
	json_tokener_free(tok);
	return 0;
}
