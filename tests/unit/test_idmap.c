/*
 * tests/unit/test_idmap.c — unit tests of legacy keys, UUIDv5 ids and id sets (src/idmap.c):
 * key text round trips and rejections, ordering, id sets up to 200k keys, and that an old key's
 * UUID is exactly UUIDv5(namespace, "entity:key") as computed independently with libuuid and
 * with Python's uuid.uuid5 (literal expected values).
 */
#include "edumig/idmap.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "tap.h"

/* 0d9b6a1e-3f43-4c8e-9a51-7b2f1c0e8d42, the namespace used for the literal expectations. */
static const unsigned char NS[16] = {
	0x0d, 0x9b, 0x6a, 0x1e, 0x3f, 0x43, 0x4c, 0x8e, 0x9a, 0x51, 0x7b, 0x2f, 0x1c, 0x0e, 0x8d, 0x42,
};

static void uuid_text(const unsigned char u[16], char out[37])
{
	uuid_unparse_lower(u, out);
}

/* Parses @text and formats it back; returns the formatted text, or "(rejected)". */
static const char *round_trip(const char *text, Key *k)
{
	static char out[KEY_TEXT_MAX];

	if (!key_parse(text, k))
		return "(rejected)";
	key_format(k, out);
	return out;
}

static void test_key_text(void)
{
	Key k;
	char what[128];

	TAP_STR_EQ(round_trip("12", &k), "12", "key 12 round-trips");
	TAP_INT_EQ(k.n, 1, "key 12 has one column");
	TAP_INT_EQ(k.v[0], 12, "key 12 value");
	TAP_STR_EQ(round_trip("-5", &k), "-5", "key -5 round-trips");
	TAP_INT_EQ(k.v[0], -5, "key -5 value");
	TAP_STR_EQ(round_trip("1/2/3", &k), "1/2/3", "key 1/2/3 round-trips");
	TAP_OK(k.n == 3 && k.v[0] == 1 && k.v[1] == 2 && k.v[2] == 3, "key 1/2/3 columns");
	TAP_STR_EQ(round_trip("220215064909145438/7", &k), "220215064909145438/7", "big composite key");
	TAP_STR_EQ(round_trip("9223372036854775807/-9223372036854775808/0", &k),
		   "9223372036854775807/-9223372036854775808/0", "int64 extremes round-trip");
	TAP_OK(k.v[1] == INT64_MIN, "INT64_MIN parsed exactly");
	TAP_STR_EQ(round_trip("unknown", &k), "unknown", "the unknown key round-trips");
	TAP_INT_EQ(k.n, 0, "the unknown key has n == 0");

	static const char *const bad[] = {
		"", "1/", "/1", "1//2", "a", "12a", "1.5", "0x10", "1/2/3/4", "99999999999999999999",
		"9223372036854775808", "1/99999999999999999999", "Unknown", "/",
		"1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(what, sizeof what, "key_parse rejects \"%.60s\"", bad[i]);
		TAP_OK(!key_parse(bad[i], &k), what);
	}

	int64_t v = 0;
	TAP_OK(key_int("-42", &v) && v == -42, "key_int parses -42");
	TAP_OK(!key_int("", &v), "key_int rejects empty");
	TAP_OK(!key_int(NULL, &v), "key_int rejects NULL (SQL NULL)");
	TAP_OK(!key_int("4x", &v), "key_int rejects trailing garbage");
	TAP_OK(!key_int("18446744073709551616", &v), "key_int rejects overflow");
}

static Key mk(int n, int64_t a, int64_t b, int64_t c)
{
	Key k = {.v = {a, b, c}, .n = (uint8_t)n};
	return k;
}

static int sign(int x)
{
	return x < 0 ? -1 : x > 0 ? 1 : 0;
}

static void test_key_compare(void)
{
	Key a = mk(1, 1, 0, 0), b = mk(1, 2, 0, 0);
	TAP_INT_EQ(sign(key_compare(&a, &b)), -1, "compare 1 < 2");
	TAP_INT_EQ(sign(key_compare(&b, &a)), 1, "compare 2 > 1");
	TAP_INT_EQ(sign(key_compare(&a, &a)), 0, "compare 1 == 1");
	a = mk(1, -5, 0, 0);
	b = mk(1, 3, 0, 0);
	TAP_INT_EQ(sign(key_compare(&a, &b)), -1, "compare -5 < 3 (signed)");
	a = mk(1, INT64_MIN, 0, 0);
	b = mk(1, INT64_MAX, 0, 0);
	TAP_INT_EQ(sign(key_compare(&a, &b)), -1, "compare INT64_MIN < INT64_MAX (no overflow)");
	TAP_INT_EQ(sign(key_compare(&b, &a)), 1, "compare INT64_MAX > INT64_MIN");
	a = mk(2, 1, 2, 0);
	b = mk(2, 1, 3, 0);
	TAP_INT_EQ(sign(key_compare(&a, &b)), -1, "compare 1/2 < 1/3");
	b = mk(2, 0, 9, 0);
	TAP_INT_EQ(sign(key_compare(&a, &b)), 1, "compare 1/2 > 0/9 (first column decides)");
	a = mk(1, 1, 0, 0);
	b = mk(2, 1, 0, 0);
	TAP_INT_EQ(sign(key_compare(&a, &b)), -1, "compare 1 < 1/0 (prefix first)");
	a = mk(0, 0, 0, 0);
	TAP_INT_EQ(sign(key_compare(&a, &b)), -1, "compare unknown < 1/0");

	a = mk(1, 7, 99, 98);
	b = mk(1, 7, 1, 2);
	TAP_OK(key_equal(&a, &b), "key_equal ignores unused columns");
	TAP_INT_EQ(key_compare(&a, &b), 0, "key_compare ignores unused columns");
	b = mk(2, 7, 99, 0);
	TAP_OK(!key_equal(&a, &b), "key_equal: 7 != 7/99");
	a = mk(3, 1, 2, 3);
	b = mk(3, 1, 2, 3);
	TAP_OK(key_equal(&a, &b), "key_equal: 1/2/3 == 1/2/3");
	b.v[2] = 4;
	TAP_OK(!key_equal(&a, &b), "key_equal: 1/2/3 != 1/2/4");
}

static void fill_uuid(unsigned char u[16], uint64_t i)
{
	memset(u, 0, 16);
	memcpy(u, &i, sizeof i);
	u[15] = 0xa5;
}

static void test_idset(void)
{
	IdSet *s = idset_create(0);
	unsigned char u[16], got[16];
	IdKind kind = ID_ROW;
	Key k;

	TAP_INT_EQ(idset_count(s), 0, "new id set is empty");
	k = mk(1, 5, 0, 0);
	TAP_OK(!idset_get(s, &k, got, &kind), "get from an empty set is false");
	fill_uuid(u, 5);
	idset_put(s, &k, u, ID_ROW);
	TAP_INT_EQ(idset_count(s), 1, "one put: count 1");
	memset(got, 0, 16);
	TAP_OK(idset_get(s, &k, got, &kind), "get after put is true");
	TAP_OK(memcmp(got, u, 16) == 0, "get returns the stored uuid");
	TAP_INT_EQ(kind, ID_ROW, "get returns the stored kind");
	TAP_OK(idset_get(s, &k, NULL, NULL), "get with NULL outputs is allowed");

	fill_uuid(u, 555);
	idset_put(s, &k, u, ID_SKIPPED);
	TAP_INT_EQ(idset_count(s), 1, "replace keeps count 1");
	TAP_OK(idset_get(s, &k, got, &kind) && memcmp(got, u, 16) == 0, "replace changes the uuid");
	TAP_INT_EQ(kind, ID_SKIPPED, "replace changes the kind");

	Key k2 = mk(2, 5, 0, 0);
	TAP_OK(!idset_get(s, &k2, NULL, NULL), "5/0 is not the key 5");
	Key unk = mk(0, 0, 0, 0);
	TAP_OK(!idset_get(s, &unk, NULL, NULL), "the unknown key is absent");
	fill_uuid(u, 1);
	idset_put(s, &unk, u, ID_STUB);
	TAP_OK(idset_get(s, &unk, NULL, &kind) && kind == ID_STUB, "the unknown key can be stored (stub)");
	TAP_INT_EQ(idset_count(s), 2, "count 2 with the unknown key");
	idset_destroy(s);

	/* Grow from the smallest table to 200k keys of mixed shapes. */
	const size_t N = 200000;
	size_t bytes0;
	s = idset_create(1);
	bytes0 = idset_bytes(s);
	for (size_t i = 0; i < N; i++) {
		switch (i % 3) {
		case 0: k = mk(1, (int64_t)i * 7919 - 1000000, 0, 0); break;
		case 1: k = mk(2, (int64_t)i, -(int64_t)i, 0); break;
		default: k = mk(3, 1, (int64_t)i, (int64_t)(i << 40)); break;
		}
		fill_uuid(u, i);
		idset_put(s, &k, u, (IdKind)(i % 4));
	}
	TAP_INT_EQ(idset_count(s), N, "200k distinct keys: exact count");
	TAP_OK(idset_bytes(s) > bytes0 && idset_bytes(s) >= N * 16, "the set grew");
	size_t bad = 0;
	for (size_t i = 0; i < N; i++) {
		switch (i % 3) {
		case 0: k = mk(1, (int64_t)i * 7919 - 1000000, 0, 0); break;
		case 1: k = mk(2, (int64_t)i, -(int64_t)i, 0); break;
		default: k = mk(3, 1, (int64_t)i, (int64_t)(i << 40)); break;
		}
		fill_uuid(u, i);
		if (!idset_get(s, &k, got, &kind) || memcmp(got, u, 16) != 0 || kind != (IdKind)(i % 4))
			bad++;
	}
	TAP_INT_EQ(bad, 0, "all 200k keys found with their uuid and kind");
	/* Re-putting every 10th key does not change the count. */
	for (size_t i = 0; i < N; i += 30) {
		k = mk(1, (int64_t)i * 7919 - 1000000, 0, 0);
		fill_uuid(u, i + 1);
		idset_put(s, &k, u, ID_MERGED);
	}
	TAP_INT_EQ(idset_count(s), N, "replacing keys keeps the count");
	k = mk(1, 30 * 7919 - 1000000, 0, 0);
	fill_uuid(u, 31);
	TAP_OK(idset_get(s, &k, got, &kind) && memcmp(got, u, 16) == 0 && kind == ID_MERGED,
	       "a replaced key after growth has its new value");
	size_t found = 0;
	for (size_t i = 0; i < 1000; i++) {
		Key a = mk(1, (int64_t)i * 7919 - 1000000 + 1, 0, 0);   /* never a multiple */
		Key b2 = mk(2, (int64_t)i, (int64_t)i + 1, 0);
		Key c = mk(3, 2, (int64_t)i, 0);
		found += idset_get(s, &a, NULL, NULL) + idset_get(s, &b2, NULL, NULL) + idset_get(s, &c, NULL, NULL);
	}
	TAP_INT_EQ(found, 0, "3000 absent keys are not found");
	idset_destroy(s);
	idset_destroy(NULL);
	TAP_OK(true, "idset_destroy(NULL) is a no-op");
}

static void expect_uuid(const char *entity, const char *keytext, const char *want)
{
	Key k;
	unsigned char u[16], ind[16];
	char t[37], what[160], name[400];

	if (!key_parse(keytext, &k)) {
		TAP_OK(false, "test bug: key does not parse");
		return;
	}
	idmap_uuid(NS, entity, &k, u);
	uuid_text(u, t);
	snprintf(what, sizeof what, "uuid of %.40s...:%s is Python's uuid5", entity, keytext);
	TAP_STR_EQ(t, want, what);
	snprintf(name, sizeof name, "%s:%s", entity, keytext);
	uuid_generate_sha1(ind, NS, name, strlen(name));
	snprintf(what, sizeof what, "uuid of %.40s...:%s equals uuid_generate_sha1(ns, name)", entity, keytext);
	TAP_OK(memcmp(u, ind, 16) == 0, what);
}

static void test_uuid(void)
{
	unsigned char dns[16], u[16], u2[16];
	char t[37];

	/* The independent computation itself, against the RFC 4122 style DNS example. */
	uuid_parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8", dns);
	uuid_generate_sha1(u, dns, "python.org", 10);
	uuid_text(u, t);
	TAP_STR_EQ(t, "886313e1-3b8a-5372-9b90-0c9aee199e5d", "libuuid sha1 matches Python uuid5(DNS, python.org)");

	expect_uuid("users", "12", "c2f5d6eb-57a7-5a90-9f18-962177aeb4c8");
	expect_uuid("users", "-5", "7377c89b-90af-5962-a52f-c625ba8951e3");
	expect_uuid("groups", "1/2/3", "b45292e8-3690-5307-8a44-744b663e1ba6");
	expect_uuid("users", "unknown", "def545e2-5671-5028-973f-028a082b5ac2");
	expect_uuid("courses", "12", "fb5f40eb-cb64-52e9-bedd-7456e2ac2270");

	/* An entity name long enough that "entity:key" exceeds a small fixed buffer. */
	char longname[301];
	memset(longname, 'e', 300);
	longname[300] = '\0';
	expect_uuid(longname, "7", "95a76d8b-f05b-55f4-b50c-d9cd17f86239");

	Key k = mk(1, 12, 0, 0), k2 = mk(1, 13, 0, 0);
	idmap_uuid(NS, "users", &k, u);
	idmap_uuid(NS, "users", &k, u2);
	TAP_OK(memcmp(u, u2, 16) == 0, "uuid is deterministic");
	TAP_INT_EQ(u[6] >> 4, 5, "uuid version nibble is 5");
	TAP_INT_EQ(u[8] >> 6, 2, "uuid variant is RFC 4122");
	idmap_uuid(NS, "courses", &k, u2);
	TAP_OK(memcmp(u, u2, 16) != 0, "uuid differs by entity");
	idmap_uuid(NS, "users", &k2, u2);
	TAP_OK(memcmp(u, u2, 16) != 0, "uuid differs by key");
	unsigned char ns2[16];
	memcpy(ns2, NS, 16);
	ns2[15] ^= 1;
	idmap_uuid(ns2, "users", &k, u2);
	TAP_OK(memcmp(u, u2, 16) != 0, "uuid differs by namespace");
	Key k3 = mk(1, 12, 777, 0);  /* unused column must not matter */
	idmap_uuid(NS, "users", &k3, u2);
	TAP_OK(memcmp(u, u2, 16) == 0, "uuid ignores unused key columns");
}

static void test_kinds(void)
{
	TAP_STR_EQ(id_kind_name(ID_ROW), "row", "kind name row");
	TAP_STR_EQ(id_kind_name(ID_MERGED), "merged", "kind name merged");
	TAP_STR_EQ(id_kind_name(ID_STUB), "stub", "kind name stub");
	TAP_STR_EQ(id_kind_name(ID_SKIPPED), "skipped", "kind name skipped");
	IdKind k = ID_ROW;
	TAP_OK(id_kind_parse("stub", &k) && k == ID_STUB, "parse kind stub");
	TAP_OK(id_kind_parse("merged", &k) && k == ID_MERGED, "parse kind merged");
	TAP_OK(id_kind_parse("skipped", &k) && k == ID_SKIPPED, "parse kind skipped");
	TAP_OK(id_kind_parse("row", &k) && k == ID_ROW, "parse kind row");
	TAP_OK(!id_kind_parse("Row", &k), "parse kind is case-sensitive");
	TAP_OK(!id_kind_parse("", &k), "parse kind rejects empty");
}

int main(void)
{
	test_key_text();
	test_key_compare();
	test_idset();
	test_uuid();
	test_kinds();
	return tap_done();
}
