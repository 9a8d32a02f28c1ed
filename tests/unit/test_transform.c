/*
 * tests/unit/test_transform.c — unit tests of the value transforms (src/transform.c): every
 * step on the dirty inputs listed in /work/shared/reference/defects.md, exact outputs and
 * reason codes, compile errors with their JSON paths, and the outcome rules of a chain.
 */
#include "edumig/transform.h"

#include <crypt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

static TxEnv *g_env;
static TxLookups *g_lookups;
static TxValue g_v;     /* one value reused by every check, as the engine's hot loop does */
static TxOutcome g_out;

static const unsigned char SALT_NS[16] = {
	0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
};

/* A check name "what: part"; a cut name still identifies the check. */
static const char *label(char *buf, size_t cap, const char *what, const char *part)
{
	int r = snprintf(buf, cap, "%s: %s", what, part);

	if (r < 0 || (size_t)r >= cap)
		buf[cap - 1] = '\0';
	return buf;
}

static TxChain *compile_text(const char *json, char *err, size_t errlen)
{
	json_object *j = json_tokener_parse(json);
	TxChain *c;

	if (j == NULL) {
		printf("# test bug: JSON does not parse: %s\n", json);
		return NULL;
	}
	c = txchain_compile(j, err, errlen);
	json_object_put(j);
	return c;
}

/* Compiles @spec and runs it on @in[0..len) (NULL: SQL NULL) in @env; result in g_v/g_out. */
static TxStatus run_env(TxEnv *env, const char *spec, const char *in, size_t len)
{
	char err[512];
	TxChain *c = compile_text(spec, err, sizeof(err));
	TxStatus st;

	if (c == NULL) {
		printf("# unexpected compile error for %s: %s\n", spec, err);
		g_out.status = TX_INVALID;
		g_out.code = "test_compile_failed";
		return TX_INVALID;
	}
	if (in != NULL)
		txvalue_set(&g_v, in, len);
	else
		txvalue_set_null(&g_v);
	st = txchain_apply(c, env, &g_v, &g_out);
	txchain_free(c);
	return st;
}

static TxStatus run(const char *spec, const char *in)
{
	return run_env(g_env, spec, in, in ? strlen(in) : 0);
}

static const char *result(void)
{
	return g_v.null ? NULL : g_v.data;
}

/* One row of a table test: status and code always, value unless the row is rejected. */
static void check_n(const char *spec, const char *in, size_t len, TxStatus want_st,
		    const char *want, const char *want_code, const char *what)
{
	char name[300];
	TxStatus st = run_env(g_env, spec, in, len);

	TAP_INT_EQ(st, want_st, label(name, sizeof(name), what, "status"));
	TAP_STR_EQ(g_out.code, want_code, label(name, sizeof(name), what, "code"));
	if (want_st != TX_INVALID)
		TAP_STR_EQ(result(), want, label(name, sizeof(name), what, "value"));
}

static void check(const char *spec, const char *in, TxStatus want_st, const char *want,
		  const char *want_code, const char *what)
{
	check_n(spec, in, in ? strlen(in) : 0, want_st, want, want_code, what);
}

static void check_compile_error(const char *spec, const char *want_err, const char *what)
{
	char err[512], name[300];
	TxChain *c = compile_text(spec, err, sizeof(err));

	TAP_OK(c == NULL, label(name, sizeof(name), what, "rejected"));
	if (c != NULL) {
		txchain_free(c);
		return;
	}
	TAP_STR_EQ(err, want_err, label(name, sizeof(name), what, "message"));
}

/* ------------------------------------------------------------------------------------------ */

static void test_txvalue(void)
{
	TxValue v = { 0 };
	size_t i;

	txvalue_set(&v, "hello", 5);
	TAP_OK(!v.null && v.len == 5 && strcmp(v.data, "hello") == 0, "txvalue_set copies");
	txvalue_set(&v, v.data + 1, 3);
	TAP_STR_EQ(v.data, "ell", "txvalue_set from a slice of itself");
	txvalue_set_null(&v);
	TAP_OK(v.null, "txvalue_set_null");
	for (i = 0; i < 2000; i++)
		txvalue_set(&v, "0123456789", 10);
	TAP_OK(v.cap >= 11 && v.cap < 64, "reuse does not grow the buffer");
	txvalue_set(&v, NULL, 0);
	TAP_OK(!v.null && v.len == 0 && v.data[0] == '\0', "empty value is not NULL");
	txvalue_free(&v);
	TAP_OK(v.data == NULL && v.cap == 0, "txvalue_free leaves it empty");
}

static void test_utf8(void)
{
	TAP_OK(tx_utf8_valid("plain", 5), "utf8: ASCII");
	TAP_OK(tx_utf8_valid("\xC6\x8F" "liyev", 7), "utf8: Əliyev");
	TAP_OK(tx_utf8_valid("\xEF\xBF\xBF", 3), "utf8: U+FFFF");
	TAP_OK(tx_utf8_valid("\xF0\x9F\x98\x80", 4), "utf8: 4-byte emoji");
	TAP_OK(tx_utf8_valid("\xF4\x8F\xBF\xBF", 4), "utf8: U+10FFFF");
	TAP_OK(!tx_utf8_valid("\xC0\x80", 2), "utf8: overlong NUL rejected");
	TAP_OK(!tx_utf8_valid("\xC1\xBF", 2), "utf8: overlong 2-byte rejected");
	TAP_OK(!tx_utf8_valid("\xE0\x80\xAF", 3), "utf8: overlong 3-byte rejected");
	TAP_OK(!tx_utf8_valid("\xF0\x8F\xBF\xBF", 4), "utf8: overlong 4-byte rejected");
	TAP_OK(!tx_utf8_valid("\xED\xA0\x80", 3), "utf8: surrogate rejected");
	TAP_OK(!tx_utf8_valid("\xF4\x90\x80\x80", 4), "utf8: above U+10FFFF rejected");
	TAP_OK(!tx_utf8_valid("\xF5\x80\x80\x80", 4), "utf8: F5 lead rejected");
	TAP_OK(!tx_utf8_valid("a\x80", 2), "utf8: stray continuation rejected");
	TAP_OK(!tx_utf8_valid("\xC5", 1), "utf8: truncated sequence rejected");
	TAP_OK(!tx_utf8_valid("\xFE" "x", 2), "utf8: Windows-1254 ş rejected");
}

static void test_trim_and_nulls(void)
{
	check("[\"trim\"]", "  Ali  ", TX_OK, "Ali", NULL, "trim spaces");
	check("[\"trim\"]", "\xC2\xA0" "Ali\t\r\n\v\f", TX_OK, "Ali", NULL, "trim NBSP and controls");
	check("[\"trim\"]", "A  B", TX_OK, "A  B", NULL, "trim keeps inner spaces");
	check("[\"trim\"]", " \xC2\xA0 ", TX_OK, "", NULL, "trim to empty");
	check("[\"nullif_empty\"]", "", TX_OK, NULL, NULL, "nullif_empty on empty");
	check("[\"nullif_empty\"]", " ", TX_OK, " ", NULL, "nullif_empty keeps a space");
	check("[\"trim\", \"nullif_empty\"]", " \t ", TX_OK, NULL, NULL, "trim then nullif_empty");
	check("[{\"fn\": \"nullif\", \"value\": \"N/A\"}]", "N/A", TX_OK, NULL, NULL, "nullif value");
	check("[{\"fn\": \"nullif\", \"value\": \"N/A\"}]", "n/a", TX_OK, "n/a", NULL,
	      "nullif is exact");
	check("[{\"fn\": \"nullif\", \"values\": [\"-\", \"0\"]}]", "0", TX_OK, NULL, NULL,
	      "nullif values");
	check("[{\"fn\": \"nullif\", \"values\": [\"-\", \"0\"]}]", "1", TX_OK, "1", NULL,
	      "nullif values, no match");
	check("[\"require\"]", NULL, TX_INVALID, NULL, "required_value_missing", "require on NULL");
	check("[\"require\"]", "", TX_OK, "", NULL, "require on empty string");
	check("[{\"fn\": \"default\", \"value\": \"unknown\"}]", NULL, TX_WARN, "unknown",
	      "value_defaulted", "default on NULL");
	TAP_STR_EQ(g_out.detail, "NULL replaced by 'unknown'", "default detail");
	check("[{\"fn\": \"default\", \"value\": \"unknown\"}]", "x", TX_OK, "x", NULL,
	      "default keeps a value");
}

static void test_strip_control(void)
{
	check("[\"strip_control\"]", "Ali\x01yev\x7F", TX_WARN, "Aliyev", "control_chars_removed",
	      "strip_control C0 and DEL");
	TAP_STR_EQ(g_out.detail, "removed 2 control characters from 'Ali\\x01yev\\x7F'",
		   "strip_control detail counts and shows the raw value");
	check("[\"strip_control\"]", "line1\nline2\tx\r", TX_OK, "line1\nline2\tx\r", NULL,
	      "strip_control keeps TAB LF CR");
	check("[{\"fn\": \"strip_control\", \"keep_whitespace\": false}]", "a\tb\n", TX_WARN, "ab",
	      "control_chars_removed", "strip_control without keep_whitespace");
	check_n("[\"strip_control\"]", "a\0b", 3, TX_WARN, "ab", "control_chars_removed",
		"strip_control removes NUL");
	check("[\"strip_control\"]", "Şəki", TX_OK, "Şəki", NULL, "strip_control keeps letters");
}

static void test_case(void)
{
	check("[\"lower\"]", "ƏLİYEV ŞAHİN", TX_OK, "əliyev şahin", NULL, "lower Azerbaijani");
	check("[\"lower\"]", "ÇÖÜĞ IQ", TX_OK, "çöüğ iq", NULL, "lower Ç Ö Ü Ğ and ASCII I");
	check("[\"upper\"]", "əliyev ışıq", TX_OK, "ƏLIYEV IŞIQ", NULL, "upper: ı and i both to I");
	check("[{\"fn\": \"lower\", \"locale\": \"az\"}]", "IŞIQ İLHAM", TX_OK, "ışıq ilham", NULL,
	      "lower az: I to ı");
	check("[{\"fn\": \"upper\", \"locale\": \"az\"}]", "izmir ılıq", TX_OK, "İZMİR ILIQ", NULL,
	      "upper az: i to İ");
	check("[\"lower\"]", "ИВАНОВ Ёж", TX_OK, "иванов ёж", NULL, "lower Cyrillic");
	check("[\"upper\"]", "иванов ёж", TX_OK, "ИВАНОВ ЁЖ", NULL, "upper Cyrillic");
	check("[\"lower\"]", "A\xFF" "B", TX_OK, "a\xFF" "b", NULL, "lower keeps invalid bytes");
	check("[\"upper\"]", "straße", TX_OK, "STRAßE", NULL, "upper leaves ß");
	check_compile_error("[{\"fn\": \"lower\", \"locale\": \"fr\"}]",
			    "/0/locale: unknown value \"fr\" (expected \"default\", \"az\", \"tr\")",
			    "lower unknown locale");
}

#define DATE3 "[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\", \"YYYY-MM-DD\", \"DD.MM.YYYY\"]}]"

static void test_date(void)
{
	check(DATE3, "12/03/1999", TX_OK, "1999-03-12", NULL, "date DD/MM/YYYY");
	check(DATE3, "1999-03-12", TX_OK, "1999-03-12", NULL, "date YYYY-MM-DD");
	check(DATE3, "12.03.1999", TX_OK, "1999-03-12", NULL, "date DD.MM.YYYY");
	check(DATE3, "29/02/2000", TX_OK, "2000-02-29", NULL, "date leap day 2000");
	check(DATE3, "29/02/2001", TX_INVALID, NULL, "invalid_date", "date 29/02/2001");
	check(DATE3, "29/02/1900", TX_INVALID, NULL, "invalid_date", "date 29/02/1900 (not leap)");
	check(DATE3, "31/02/2001", TX_INVALID, NULL, "invalid_date", "date 31/02/2001");
	TAP_STR_EQ(g_out.detail,
		   "impossible date '31/02/2001' (formats DD/MM/YYYY, YYYY-MM-DD, DD.MM.YYYY)",
		   "date impossible detail");
	TAP_INT_EQ(g_out.step, 0, "date invalid names step 0");
	check(DATE3, "31/04/2001", TX_INVALID, NULL, "invalid_date", "date 31/04/2001");
	check(DATE3, "30/04/2001", TX_OK, "2001-04-30", NULL, "date 30/04/2001");
	check(DATE3, "00/00/0000", TX_INVALID, NULL, "invalid_date", "date 00/00/0000");
	check(DATE3, "2001-13-01", TX_INVALID, NULL, "invalid_date", "date month 13");
	check(DATE3, "", TX_OK, NULL, NULL, "date empty is NULL");
	check(DATE3, "   ", TX_OK, NULL, NULL, "date blank is NULL");
	check("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"], \"empty\": \"invalid\"}]", "",
	      TX_INVALID, NULL, "invalid_date", "date empty with empty=invalid");
	check(DATE3, "  12/03/1999 ", TX_OK, "1999-03-12", NULL, "date surrounding spaces");
	check(DATE3, "abc", TX_INVALID, NULL, "invalid_date", "date garbage");
	TAP_STR_EQ(g_out.detail, "unrecognised date 'abc' (formats DD/MM/YYYY, YYYY-MM-DD, DD.MM.YYYY)",
		   "date garbage detail");
	check(DATE3, "12/03/99", TX_INVALID, NULL, "invalid_date", "date two-digit year");
	check(DATE3, "1/2/2003", TX_INVALID, NULL, "invalid_date", "date DD needs two digits");
	check("[{\"fn\": \"date\", \"formats\": [\"D/M/YYYY\"]}]", "1/2/2003", TX_OK, "2003-02-01",
	      NULL, "date D/M/YYYY one digit");
	check("[{\"fn\": \"date\", \"formats\": [\"D/M/YYYY\"]}]", "11/12/2003", TX_OK, "2003-12-11",
	      NULL, "date D/M/YYYY two digits");
	check(DATE3, "01/02/1850", TX_INVALID, NULL, "invalid_date", "date year below min");
	TAP_STR_EQ(g_out.detail, "date '01/02/1850' has year 1850 outside 1900..2100",
		   "date year range detail");
	check("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"], \"min_year\": 1800}]", "01/02/1850",
	      TX_OK, "1850-02-01", NULL, "date min_year lowered");
	check("[{\"fn\": \"date\", \"formats\": [\"YYYYMMDD\"]}]", "20010315", TX_OK, "2001-03-15",
	      NULL, "date without separators");
	check(DATE3, "12/03/1999x", TX_INVALID, NULL, "invalid_date", "date trailing garbage");
	check("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY HH:MI\"]}]", "12/03/1999 14:05", TX_OK,
	      "1999-03-12", NULL, "date drops a checked time");
	check("[{\"fn\": \"timestamp\", \"formats\": [\"DD/MM/YYYY HH:MI\", \"DD/MM/YYYY\"]}]",
	      "12/03/1999 14:05", TX_OK, "1999-03-12 14:05:00", NULL, "timestamp HH:MI");
	check("[{\"fn\": \"timestamp\", \"formats\": [\"DD/MM/YYYY HH:MI:SS\"]}]",
	      "12/03/1999 23:59:59", TX_OK, "1999-03-12 23:59:59", NULL, "timestamp HH:MI:SS");
	check("[{\"fn\": \"timestamp\", \"formats\": [\"DD/MM/YYYY HH:MI\", \"DD/MM/YYYY\"]}]",
	      "12/03/1999", TX_OK, "1999-03-12 00:00:00", NULL, "timestamp date only");
	check("[{\"fn\": \"timestamp\", \"formats\": [\"DD/MM/YYYY HH:MI\"]}]", "12/03/1999 24:00",
	      TX_INVALID, NULL, "invalid_date", "timestamp hour 24");
	check_compile_error("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\", \"YYYY-MM-DD\", \"DDD.MM.YYYY\"]}]",
			    "/0/formats/2: unknown date format token \"DDD\" in \"DDD.MM.YYYY\"",
			    "date bad token");
	check_compile_error("[{\"fn\": \"date\", \"formats\": [\"dd/mm/yyyy\"]}]",
			    "/0/formats/0: unknown date format token \"dd\" in \"dd/mm/yyyy\"",
			    "date lower-case token");
	check_compile_error("[{\"fn\": \"date\", \"formats\": [\"DD/MM\"]}]",
			    "/0/formats/0: date format \"DD/MM\" needs YYYY, a month (MM or M) and a day (DD or D)",
			    "date format without a year");
	check_compile_error("[{\"fn\": \"date\", \"formats\": []}]",
			    "/0/formats: expected a non-empty array of format strings, got an empty array",
			    "date empty formats");
	check_compile_error("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"], \"min_year\": 2000, \"max_year\": 1999}]",
			    "/0/max_year: max_year 1999 is below min_year 2000", "date inverted years");
	check_compile_error("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"], \"empty\": \"skip\"}]",
			    "/0/empty: unknown value \"skip\" (expected \"null\", \"invalid\")",
			    "date bad empty policy");
}

#define GENDER "{\"fn\": \"map\", \"values\": {\"1\": \"male\", \"2\": \"female\", " \
	"\"110000003\": \"male\", \"110000004\": \"female\"}"

static void test_map(void)
{
	const char *with_default = "[" GENDER ", \"default\": \"other\", \"null\": \"prefer_not_to_say\"}]";
	const char *strict = "[" GENDER "}]";

	check(with_default, "1", TX_OK, "male", NULL, "map 1");
	check(with_default, "110000004", TX_OK, "female", NULL, "map dictionary id");
	check(with_default, "7", TX_WARN, "other", "map_default", "map unmapped with default");
	TAP_STR_EQ(g_out.detail, "unmapped value '7' → 'other'", "map_default detail");
	check(with_default, NULL, TX_OK, "prefer_not_to_say", NULL, "map NULL with null given");
	check(strict, "7", TX_INVALID, NULL, "unmapped_value", "map unmapped without default");
	TAP_STR_EQ(g_out.detail, "unmapped value '7'", "unmapped_value detail");
	check(strict, NULL, TX_OK, NULL, NULL, "map NULL without null");
	check(strict, " 1", TX_INVALID, NULL, "unmapped_value", "map is exact (no trim)");
	check("[\"trim\", " GENDER "}]", " 1", TX_OK, "male", NULL, "trim then map");
	check("[{\"fn\": \"map\", \"values\": {\"0\": null, \"1\": \"yes\"}}]", "0", TX_OK, NULL, NULL,
	      "map value null gives SQL NULL");
	check("[{\"fn\": \"map\", \"values\": {\"1\": \"yes\"}, \"default\": null}]", "9", TX_WARN, NULL,
	      "map_default", "map default null");
	check_compile_error("[{\"fn\": \"map\", \"values\": {\"1\": 2}}]",
			    "/0/values/1: expected a string or null, got number", "map non-string value");
	check_compile_error("[{\"fn\": \"map\", \"values\": [\"1\"]}]",
			    "/0/values: expected an object of value: replacement, got array",
			    "map values not an object");
}

#define SCALE "[{\"fn\": \"scale\", \"from\": [0, 100], \"to\": [0, 4], \"digits\": 2}]"

static void test_numbers(void)
{
	check(SCALE, "0", TX_OK, "0.00", NULL, "scale 0");
	check(SCALE, "100", TX_OK, "4.00", NULL, "scale 100");
	check(SCALE, "67.5", TX_OK, "2.70", NULL, "scale 67.5");
	check(SCALE, "66.625", TX_OK, "2.67", NULL, "scale tie rounds half away from zero");
	check(SCALE, " 50 ", TX_OK, "2.00", NULL, "scale with spaces");
	check(SCALE, "1e2", TX_OK, "4.00", NULL, "scale exponent");
	check(SCALE, "101", TX_INVALID, NULL, "out_of_range", "scale 101");
	TAP_STR_EQ(g_out.detail, "101 is outside 0..100", "scale out_of_range detail");
	check(SCALE, "-1", TX_INVALID, NULL, "out_of_range", "scale -1");
	check(SCALE, "abc", TX_INVALID, NULL, "not_a_number", "scale abc");
	TAP_STR_EQ(g_out.detail, "'abc' is not a number", "scale not_a_number detail");
	check(SCALE, "NaN", TX_INVALID, NULL, "not_a_number", "scale NaN");
	check(SCALE, "inf", TX_INVALID, NULL, "not_a_number", "scale inf");
	check(SCALE, "0x10", TX_INVALID, NULL, "not_a_number", "scale hex");
	check(SCALE, "67,5", TX_INVALID, NULL, "not_a_number", "scale comma decimal");
	check(SCALE, "", TX_OK, NULL, NULL, "scale empty is NULL");
	check("[{\"fn\": \"scale\", \"from\": [0, 100], \"to\": [0, 4], \"empty\": \"invalid\"}]", "",
	      TX_INVALID, NULL, "not_a_number", "scale empty=invalid");
	check("[{\"fn\": \"scale\", \"from\": [0, 100], \"to\": [4, 0]}]", "25", TX_OK, "3.00", NULL,
	      "scale onto a reversed range");
	check("[{\"fn\": \"scale\", \"from\": [0, 700], \"to\": [0, 4], \"digits\": 0}]", "675", TX_OK,
	      "4", NULL, "scale digits 0");

	check("[\"int\"]", "42", TX_OK, "42", NULL, "int 42");
	check("[\"int\"]", " 007 ", TX_OK, "7", NULL, "int leading zeros and spaces");
	check("[\"int\"]", "+5", TX_OK, "5", NULL, "int plus sign");
	check("[\"int\"]", "-12", TX_OK, "-12", NULL, "int negative");
	check("[\"int\"]", "0000000000000000000000000000000000000001", TX_OK, "1", NULL,
	      "int many leading zeros");
	check("[\"int\"]", "5.0", TX_INVALID, NULL, "not_an_integer", "int 5.0");
	check("[\"int\"]", "abc", TX_INVALID, NULL, "not_an_integer", "int abc");
	check("[\"int\"]", "-", TX_INVALID, NULL, "not_an_integer", "int lone sign");
	check("[\"int\"]", "99999999999999999999", TX_INVALID, NULL, "out_of_range", "int overflow");
	check("[\"int\"]", "9223372036854775807", TX_OK, "9223372036854775807", NULL, "int max");
	check("[{\"fn\": \"int\", \"min\": 1, \"max\": 10}]", "11", TX_INVALID, NULL, "out_of_range",
	      "int above max");
	TAP_STR_EQ(g_out.detail, "11 is outside 1..10", "int out_of_range detail");
	check("[{\"fn\": \"int\", \"min\": 1, \"max\": 10}]", "0", TX_INVALID, NULL, "out_of_range",
	      "int below min");
	check("[{\"fn\": \"int\", \"min\": 1, \"max\": 10}]", "10", TX_OK, "10", NULL, "int at max");
	check("[\"int\"]", "", TX_OK, NULL, NULL, "int empty is NULL");

	check("[{\"fn\": \"numeric\", \"digits\": 2}]", "2.675", TX_OK, "2.68", NULL,
	      "numeric rounds half away (exact decimal)");
	check("[{\"fn\": \"numeric\", \"digits\": 2}]", "-2.675", TX_OK, "-2.68", NULL,
	      "numeric negative tie");
	check("[{\"fn\": \"numeric\", \"digits\": 2}]", "9.995", TX_OK, "10.00", NULL,
	      "numeric carry");
	check("[{\"fn\": \"numeric\", \"digits\": 2}]", "1e3", TX_OK, "1000.00", NULL,
	      "numeric exponent");
	check("[{\"fn\": \"numeric\", \"digits\": 2}]", "-0.001", TX_OK, "0.00", NULL,
	      "numeric negative zero loses its sign");
	check("[{\"fn\": \"numeric\", \"digits\": 2}]", "0.005", TX_OK, "0.01", NULL,
	      "numeric tie at the last place");
	check("[\"numeric\"]", "  +0012.50 ", TX_OK, "12.50", NULL, "numeric keeps given decimals");
	check("[\"numeric\"]", ".5", TX_OK, "0.5", NULL, "numeric .5");
	check("[\"numeric\"]", "5.", TX_OK, "5", NULL, "numeric 5.");
	check("[\"numeric\"]", "1.5e-3", TX_OK, "0.0015", NULL, "numeric small exponent");
	check("[{\"fn\": \"numeric\", \"min\": 0, \"max\": 100}]", "100.5", TX_INVALID, NULL,
	      "out_of_range", "numeric above max");
	TAP_STR_EQ(g_out.detail, "100.5 is outside 0..100", "numeric out_of_range detail");
	check("[{\"fn\": \"numeric\", \"min\": 0, \"max\": 100}]", "1,5", TX_INVALID, NULL,
	      "not_a_number", "numeric comma");

	check_compile_error("[{\"fn\": \"scale\", \"from\": [0], \"to\": [0, 4]}]",
			    "/0/from: expected an array of two finite numbers, got another array",
			    "scale short from");
	check_compile_error("[{\"fn\": \"scale\", \"from\": [5, 5], \"to\": [0, 4]}]",
			    "/0/from: range is empty (both ends 5)", "scale empty range");
	check_compile_error("[{\"fn\": \"scale\", \"to\": [0, 4]}]",
			    "/0: transform \"scale\" needs argument \"from\"", "scale missing from");
	check_compile_error("[{\"fn\": \"int\", \"min\": 1.5}]", "/0/min: expected an integer, got number",
			    "int fractional min");
}

#define EMAIL "[\"email\"]"

static void test_email(void)
{
	check(EMAIL, "  Ali.Veli@Mail.RU ", TX_OK, "Ali.Veli@mail.ru", NULL,
	      "email trims, lowers the domain only");
	check(EMAIL, "", TX_OK, NULL, NULL, "email empty is NULL");
	check(EMAIL, "ali.mail.ru", TX_INVALID, NULL, "invalid_email", "email without @");
	TAP_STR_EQ(g_out.detail, "invalid e-mail 'ali.mail.ru': no '@'", "email detail");
	check(EMAIL, "a@b@mail.ru", TX_INVALID, NULL, "invalid_email", "email two @");
	check(EMAIL, "ali@localhost", TX_INVALID, NULL, "invalid_email", "email no dot in domain");
	check(EMAIL, "ali veli@mail.ru", TX_INVALID, NULL, "invalid_email", "email inner space");
	check(EMAIL, "ali@mail.ru.", TX_INVALID, NULL, "invalid_email", "email trailing dot");
	check(EMAIL, "@mail.ru", TX_INVALID, NULL, "invalid_email", "email empty local part");
	check(EMAIL, "ali@", TX_INVALID, NULL, "invalid_email", "email empty domain");
	check(EMAIL, "ali@.mail.ru", TX_INVALID, NULL, "invalid_email", "email domain starts with dot");
	check(EMAIL, "ali@-mail.ru", TX_INVALID, NULL, "invalid_email", "email domain starts with -");
	check(EMAIL, "ali@mail-.ru", TX_INVALID, NULL, "invalid_email", "email label ends with -");
	check(EMAIL, "ali@mail..ru", TX_INVALID, NULL, "invalid_email", "email empty label");
	check(EMAIL, "ali@mail.ru,", TX_INVALID, NULL, "invalid_email", "email trailing comma");
	check(EMAIL, "ali\x01@mail.ru", TX_INVALID, NULL, "invalid_email", "email control char");
	check(EMAIL, "ali<x>@mail.ru", TX_INVALID, NULL, "invalid_email", "email specials in local");
	check(EMAIL, "first.o'neil+tag@sub.example-uni.edu.az", TX_OK,
	      "first.o'neil+tag@sub.example-uni.edu.az", NULL, "email with + ' and subdomains");
	{
		char longmail[300];

		memset(longmail, 'a', 250);
		memcpy(longmail + 250, "@b.az", 6);
		check(EMAIL, longmail, TX_INVALID, NULL, "invalid_email", "email longer than 254");
	}
}

/* Plain base64 encoder for building wrapped test input. */
static void b64_encode(const unsigned char *in, size_t n, char *out, size_t wrap)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0, col = 0;

	for (i = 0; i < n; i += 3) {
		unsigned long v = (unsigned long)in[i] << 16;
		char q[4];
		int k;

		if (i + 1 < n)
			v |= (unsigned long)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		q[0] = al[(v >> 18) & 63];
		q[1] = al[(v >> 12) & 63];
		q[2] = i + 1 < n ? al[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? al[v & 63] : '=';
		for (k = 0; k < 4; k++) {
			if (wrap && col == wrap) {
				out[o++] = '\n';
				col = 0;
			}
			out[o++] = q[k];
			col++;
		}
	}
	out[o] = '\0';
}

static void test_base64(void)
{
	unsigned char raw[100];
	char enc[200];
	size_t i;

	check("[\"base64_decode\"]", "c2VjcmV0", TX_OK, "secret", NULL, "base64 valid");
	check("[\"base64_decode\"]", "c2Vj\ncmV0\n", TX_OK, "secret", NULL, "base64 with newlines");
	check("[\"base64_decode\"]", "YQ==", TX_OK, "a", NULL, "base64 padded 1 byte");
	check("[\"base64_decode\"]", "YQ", TX_OK, "a", NULL, "base64 unpadded 1 byte");
	check("[\"base64_decode\"]", "YWI=", TX_OK, "ab", NULL, "base64 padded 2 bytes");
	check("[\"base64_decode\"]", "YWI", TX_OK, "ab", NULL, "base64 unpadded 2 bytes");
	check("[\"base64_decode\"]", "c2V*cmV0", TX_INVALID, NULL, "not_base64", "base64 invalid char");
	TAP_STR_EQ(g_out.detail,
		   "value of 8 bytes is not base64: character outside the alphabet at offset 3",
		   "base64 detail has the length, not the value");
	check("[\"base64_decode\"]", "YWJjZ", TX_INVALID, NULL, "not_base64", "base64 wrong length");
	TAP_OK(strstr(g_out.detail, "YWJjZ") == NULL, "base64 detail does not leak the value");
	check("[\"base64_decode\"]", "YQ=", TX_INVALID, NULL, "not_base64", "base64 short padding");
	check("[\"base64_decode\"]", "YQ==YQ==", TX_INVALID, NULL, "not_base64",
	      "base64 data after padding");
	check("[\"base64_decode\"]", "", TX_INVALID, NULL, "empty_value", "base64 empty");
	check("[\"base64_decode\"]", " \n ", TX_INVALID, NULL, "empty_value", "base64 blank");
	run("[\"base64_decode\"]", "AGE=");
	TAP_OK(g_out.status == TX_OK && g_v.len == 2 && g_v.data[0] == '\0' && g_v.data[1] == 'a' &&
	       g_v.data[2] == '\0', "base64 may yield NUL bytes, still NUL-terminated");
	for (i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(i * 7 + 3);
	b64_encode(raw, sizeof(raw), enc, 76);
	TAP_OK(strchr(enc, '\n') != NULL, "test input is wrapped like PostgreSQL's encode()");
	run("[\"base64_decode\"]", enc);
	TAP_OK(g_out.status == TX_OK && g_v.len == sizeof(raw) && memcmp(g_v.data, raw, sizeof(raw)) == 0,
	       "base64 76-column wrapped input decodes exactly");
}

static void test_bcrypt(void)
{
	const char *spec = "[\"base64_decode\", {\"fn\": \"bcrypt\", \"cost\": 4}]";
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char first[128] = "", other[128] = "";
	char longpw[101], longb64[200];
	const char *h;
	TxEnv *e2, *e3;
	unsigned char ns2[16];

	txenv_set_row_key(g_env, "accounts:1");
	TAP_INT_EQ(run(spec, "c2VjcmV0"), TX_OK, "bcrypt status");
	TAP_STR_EQ(g_out.code, NULL, "bcrypt code");
	h = result();
	TAP_OK(h != NULL && strncmp(h, "$2b$04$", 7) == 0, "bcrypt prefix $2b$04$");
	TAP_INT_EQ(h ? strlen(h) : 0, 60, "bcrypt hash length 60");
	if (h != NULL)
		snprintf(first, sizeof(first), "%s", h);
	h = crypt_r("secret", first, cd);
	TAP_STR_EQ(h, first, "bcrypt hash verifies with crypt_r");
	h = crypt_r("secreT", first, cd);
	TAP_OK(h == NULL || strcmp(h, first) != 0, "bcrypt hash rejects a wrong password");
	run(spec, "c2VjcmV0");
	TAP_STR_EQ(result(), first, "bcrypt same row key gives the same hash");
	txenv_set_row_key(g_env, "accounts:2");
	run(spec, "c2VjcmV0");
	if (result() != NULL)
		snprintf(other, sizeof(other), "%s", result());
	TAP_OK(strcmp(other, first) != 0 && strncmp(other, "$2b$04$", 7) == 0,
	       "bcrypt different row key gives a different hash");
	TAP_STR_EQ(crypt_r("secret", other, cd), other, "bcrypt second hash verifies");

	e2 = txenv_create(NULL, SALT_NS);
	txenv_set_row_key(e2, "accounts:1");
	run_env(e2, spec, "c2VjcmV0", 8);
	TAP_STR_EQ(result(), first, "bcrypt is reproducible across envs");
	memcpy(ns2, SALT_NS, 16);
	ns2[0] ^= 1;
	e3 = txenv_create(NULL, ns2);
	txenv_set_row_key(e3, "accounts:1");
	run_env(e3, spec, "c2VjcmV0", 8);
	TAP_OK(result() != NULL && strcmp(result(), first) != 0,
	       "bcrypt salt depends on the namespace");
	txenv_set_row_key(e3, NULL);
	run_env(e3, spec, "c2VjcmV0", 8);
	TAP_STR_EQ(g_out.code, "row_key_missing", "bcrypt without a row key is refused");
	txenv_destroy(e2);
	txenv_destroy(e3);

	txenv_set_row_key(g_env, "accounts:3");
	check(spec, "AGE=", TX_INVALID, NULL, "secret_has_nul", "bcrypt NUL in secret");
	check("[{\"fn\": \"bcrypt\", \"cost\": 4}]", "", TX_INVALID, NULL, "empty_value",
	      "bcrypt empty secret");
	memset(longpw, 'p', 100);
	longpw[100] = '\0';
	b64_encode((const unsigned char *)longpw, 100, longb64, 0);
	run(spec, longb64);
	TAP_STR_EQ(g_out.code, "secret_truncated", "bcrypt over 72 bytes warns");
	TAP_OK(strstr(g_out.detail, "ppp") == NULL, "bcrypt detail does not leak the secret");
	TAP_STR_EQ(crypt_r(longpw, result(), cd), result(), "bcrypt long secret verifies");
	check("[{\"fn\": \"bcrypt\", \"cost\": 4}]", NULL, TX_OK, NULL, NULL, "bcrypt NULL passes");

	check_compile_error("[{\"fn\": \"bcrypt\", \"cost\": 3}]", "/0/cost: 3 is outside 4..31",
			    "bcrypt cost too low");
	check_compile_error("[{\"fn\": \"bcrypt\", \"cost\": \"12\"}]",
			    "/0/cost: expected an integer, got string", "bcrypt cost wrong type");
	free(cd);
}

#define RECODE "[{\"fn\": \"recode\", \"from\": \"WINDOWS-1254\", \"fix_double_utf8\": true}]"

static void test_recode(void)
{
	check(RECODE, "\xDDsmay\xFDll\xFD", TX_WARN, "İsmayıllı", "recoded_text",
	      "recode Windows-1254 İsmayıllı");
	TAP_STR_EQ(g_out.detail, "converted from WINDOWS-1254", "recode conversion detail");
	check(RECODE, "A\xF0" "da\xFE", TX_WARN, "Ağdaş", "recoded_text", "recode Windows-1254 Ağdaş");
	check(RECODE, "\xC3\x85\xC5\xB8", TX_WARN, "ş", "recoded_text", "recode mojibake ÅŸ to ş");
	TAP_STR_EQ(g_out.detail, "double-encoded UTF-8 repaired", "recode repair detail");
	check(RECODE, "\xC3\x89\xE2\x84\xA2" "li", TX_WARN, "əli", "recoded_text",
	      "recode mojibake É™ to ə");
	check(RECODE, "\xC3\x86\xC2\x8F" "liyev", TX_WARN, "Əliyev", "recoded_text",
	      "recode mojibake of Ə via Latin-1 C1");
	check(RECODE, "\xC3\x83\xE2\x80\xA6\xC3\x85\xC2\xB8", TX_WARN, "ş", "recoded_text",
	      "recode two layers of double encoding");
	check(RECODE, "Ganja", TX_OK, "Ganja", NULL, "recode ASCII unchanged");
	check(RECODE, "Əliyev", TX_OK, "Əliyev", NULL, "recode Azerbaijani UTF-8 unchanged");
	check(RECODE, "Müller", TX_OK, "Müller", NULL, "recode Latin-1 range text unchanged");
	check("[{\"fn\": \"recode\", \"from\": \"WINDOWS-1254\"}]", "\xC3\x85\xC5\xB8", TX_OK,
	      "\xC3\x85\xC5\xB8", NULL, "recode leaves mojibake without fix_double_utf8");
	check(RECODE, "A\x81" "B", TX_INVALID, NULL, "invalid_encoding", "recode undecodable byte");
	TAP_STR_EQ(g_out.detail, "byte 0x81 at offset 1 is not valid WINDOWS-1254 in 'A\\x81B'",
		   "recode invalid_encoding detail");
	check_compile_error("[{\"fn\": \"recode\", \"from\": \"NO-SUCH-ENCODING\"}]",
			    "/0/from: unknown encoding \"NO-SUCH-ENCODING\" (iconv: Invalid argument)",
			    "recode unknown encoding");
	check_compile_error("[{\"fn\": \"recode\"}]", "/0: transform \"recode\" needs argument \"from\"",
			    "recode without from");
}

#define LOOKUP(policy) "[{\"fn\": \"lookup\", \"table\": \"grade_points\", \"on_missing\": \"" policy "\"}]"

static void test_lookup(void)
{
	TxEnv *bare;
	char key[32], name[64];
	size_t i, bad = 0;
	TxChain *c;
	const char *const *tables;

	TAP_OK(txlookups_put(g_lookups, "grade_points", "110000301", "5"), "lookups_put");
	TAP_OK(txlookups_put(g_lookups, "grade_points", "110000302", "3"), "lookups_put 2");
	TAP_OK(txlookups_put(g_lookups, "grade_points", "110000302", "4"), "lookups_put replaces");
	TAP_OK(txlookups_put(g_lookups, "grade_points", "110000399", NULL), "lookups_put NULL value");
	TAP_OK(txlookups_has_table(g_lookups, "grade_points"), "has_table yes");
	TAP_OK(!txlookups_has_table(g_lookups, "genders"), "has_table no");

	check(LOOKUP("invalid"), "110000301", TX_OK, "5", NULL, "lookup hit");
	check(LOOKUP("invalid"), "110000302", TX_OK, "4", NULL, "lookup replaced entry");
	check(LOOKUP("invalid"), "110000399", TX_OK, NULL, NULL, "lookup entry mapping to NULL");
	check(LOOKUP("invalid"), NULL, TX_OK, NULL, NULL, "lookup NULL passes");
	check(LOOKUP("invalid"), "1", TX_INVALID, NULL, "lookup_missing", "lookup miss invalid");
	TAP_STR_EQ(g_out.detail, "no entry for '1' in lookup table 'grade_points'",
		   "lookup_missing detail");
	check(LOOKUP("null"), "1", TX_WARN, NULL, "lookup_missing", "lookup miss null");
	check(LOOKUP("keep"), "1", TX_OK, "1", NULL, "lookup miss keep");
	check("[{\"fn\": \"lookup\", \"table\": \"grade_points\"}]", "1", TX_INVALID, NULL,
	      "lookup_missing", "lookup default policy is invalid");
	check("[{\"fn\": \"lookup\", \"table\": \"nope\"}]", "1", TX_INVALID, NULL,
	      "lookup_table_missing", "lookup table not loaded");
	bare = txenv_create(NULL, SALT_NS);
	run_env(bare, LOOKUP("keep"), "1", 1);
	TAP_STR_EQ(g_out.code, "lookup_table_missing", "lookup with no registry");
	txenv_destroy(bare);

	for (i = 0; i < 100000; i++) {
		snprintf(key, sizeof(key), "%zu", 500000 + i);
		if (!txlookups_put(g_lookups, "big", key, key + 1))
			bad++;
	}
	TAP_INT_EQ(bad, 0, "lookups hold 1e5 entries");
	c = compile_text("[{\"fn\": \"lookup\", \"table\": \"big\"}]", name, sizeof(name));
	for (i = 0; c != NULL && i < 100000; i += 997) {
		snprintf(key, sizeof(key), "%zu", 500000 + i);
		txvalue_set(&g_v, key, strlen(key));
		if (txchain_apply(c, g_env, &g_v, &g_out) != TX_OK || strcmp(g_v.data, key + 1) != 0)
			bad++;
	}
	TAP_INT_EQ(bad, 0, "lookups in a 1e5 table find every sampled key");
	txchain_free(c);

	c = compile_text("[{\"fn\": \"lookup\", \"table\": \"a\"}, \"trim\", "
			 "{\"fn\": \"lookup\", \"table\": \"b\"}, {\"fn\": \"lookup\", \"table\": \"a\"}]",
			 name, sizeof(name));
	tables = c ? txchain_lookup_tables(c) : NULL;
	TAP_OK(tables != NULL && tables[0] && strcmp(tables[0], "a") == 0 && tables[1] &&
	       strcmp(tables[1], "b") == 0 && tables[2] == NULL, "lookup_tables lists each once");
	TAP_INT_EQ(c ? txchain_length(c) : 0, 4, "txchain_length");
	TAP_OK(c && !txchain_is_sensitive(c), "lookup chain is not sensitive");
	txchain_free(c);
	c = compile_text("[\"trim\"]", name, sizeof(name));
	tables = c ? txchain_lookup_tables(c) : NULL;
	TAP_OK(tables != NULL && tables[0] == NULL, "lookup_tables empty list");
	txchain_free(c);
	check_compile_error("[{\"fn\": \"lookup\", \"table\": \"a\", \"on_missing\": \"drop\"}]",
			    "/0/on_missing: unknown value \"drop\" (expected \"invalid\", \"null\", \"keep\")",
			    "lookup bad policy");
}

static void test_text_edits(void)
{
	check("[{\"fn\": \"replace\", \"from\": \"-\", \"to\": \"/\"}]", "a-b-c", TX_OK, "a/b/c", NULL,
	      "replace all");
	check("[{\"fn\": \"replace\", \"from\": \"a\", \"to\": \"bb\"}]", "aaa", TX_OK, "bbbbbb", NULL,
	      "replace growing");
	check("[{\"fn\": \"replace\", \"from\": \" \", \"to\": \"\"}]", "1 024 A", TX_OK, "1024A", NULL,
	      "replace deleting");
	check("[{\"fn\": \"replace\", \"from\": \"x\", \"to\": \"y\"}]", "abc", TX_OK, "abc", NULL,
	      "replace no match");
	check("[{\"fn\": \"prefix\", \"value\": \"STU\"}]", "42", TX_OK, "STU42", NULL, "prefix");
	check("[{\"fn\": \"suffix\", \"value\": \"@edu.az\"}]", "ali", TX_OK, "ali@edu.az", NULL, "suffix");
	check_compile_error("[{\"fn\": \"replace\", \"from\": \"\", \"to\": \"x\"}]",
			    "/0/from: must not be empty", "replace empty from");
}

static void test_null_passthrough(void)
{
	static const char *const specs[] = {
		"[\"trim\"]", "[\"lower\"]", "[\"upper\"]", "[\"nullif_empty\"]", "[\"strip_control\"]",
		DATE3, SCALE, "[\"int\"]", "[\"numeric\"]", EMAIL, "[\"base64_decode\"]", RECODE,
		"[{\"fn\": \"replace\", \"from\": \"a\", \"to\": \"b\"}]",
		"[{\"fn\": \"prefix\", \"value\": \"p\"}]", "[{\"fn\": \"suffix\", \"value\": \"s\"}]",
		"[{\"fn\": \"nullif\", \"value\": \"x\"}]",
	};
	size_t i, bad = 0;

	for (i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		run(specs[i], NULL);
		if (g_out.status != TX_OK || !g_v.null) {
			printf("# NULL did not pass through %s\n", specs[i]);
			bad++;
		}
	}
	TAP_INT_EQ(bad, 0, "NULL passes through every plain step");
}

static void test_chains(void)
{
	const char *chain = "[\"trim\", \"nullif_empty\", {\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"]}]";

	check(chain, "   ", TX_OK, NULL, NULL, "chain blank to NULL");
	TAP_INT_EQ(g_out.step, -1, "OK outcome has step -1");
	TAP_STR_EQ(g_out.detail, "", "OK outcome has no detail");
	check(chain, " 05/06/2007 ", TX_OK, "2007-06-05", NULL, "chain date");
	check(chain, "x", TX_INVALID, NULL, "invalid_date", "chain garbage");
	TAP_INT_EQ(g_out.step, 2, "invalid names the date step");

	check("[\"strip_control\", {\"fn\": \"map\", \"values\": {\"a\": \"A\"}, \"default\": \"Z\"}]",
	      "b\x01", TX_WARN, "Z", "control_chars_removed", "first warning kept");
	TAP_INT_EQ(g_out.step, 0, "first warning names its step");
	check("[\"strip_control\", {\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"]}]", "1\x01", TX_INVALID,
	      NULL, "invalid_date", "invalid overrides a warning");
	TAP_INT_EQ(g_out.step, 1, "invalid names its step");
	check("[\"trim\", \"lower\", " GENDER ", \"default\": \"other\"}, \"require\"]", " 2 ", TX_OK,
	      "female", NULL, "chain trim lower map require");
	check("[\"trim\", \"base64_decode\", \"trim\"]", " IHggIA== ", TX_OK, "x", NULL,
	      "chain base64 then trim");
	check("[]", "as is", TX_OK, "as is", NULL, "empty chain is identity");
	{
		TxValue v = { 0 };

		/* A zeroed TxValue is an empty string, not NULL. */
		char err[64];
		TxChain *c = compile_text("[\"nullif_empty\"]", err, sizeof(err));

		txchain_apply(c, g_env, &v, &g_out);
		TAP_OK(v.null, "zeroed TxValue is treated as an empty string");
		txchain_free(c);
		txvalue_free(&v);
	}
	{
		char err[64];
		TxChain *c = compile_text("[\"trim\", \"base64_decode\"]", err, sizeof(err));

		TAP_OK(c && txchain_is_sensitive(c), "base64 chain is sensitive");
		txchain_free(c);
		c = compile_text("[{\"fn\": \"bcrypt\"}]", err, sizeof(err));
		TAP_OK(c && txchain_is_sensitive(c), "bcrypt chain is sensitive (default cost)");
		txchain_free(c);
	}
}

static void test_compile_errors(void)
{
	char small[12];
	TxChain *c;

	check_compile_error("[\"trim\", {\"fn\": \"datee\"}]", "/1/fn: unknown transform \"datee\"",
			    "unknown fn in object");
	check_compile_error("[\"datee\"]", "/0: unknown transform \"datee\"", "unknown bare step");
	check_compile_error("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"], \"formatz\": 1}]",
			    "/0/formatz: unknown argument \"formatz\" for transform \"date\" (accepted: formats,min_year,max_year,empty)",
			    "unknown argument");
	check_compile_error("[{\"fn\": \"trim\", \"a/b~\": 1}]",
			    "/0/a~1b~0: unknown argument \"a/b~\": transform \"trim\" takes none",
			    "argument name escaped as a JSON pointer");
	check_compile_error("[{\"fn\": \"date\", \"formats\": \"DD/MM/YYYY\"}]",
			    "/0/formats: expected a non-empty array of format strings, got string",
			    "wrong argument type");
	check_compile_error("[{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\", 5]}]",
			    "/0/formats/1: expected a string, got number", "wrong element type");
	check_compile_error("[\"date\"]", "/0: transform \"date\" needs argument \"formats\"",
			    "bare step missing its arguments");
	check_compile_error("[{\"formats\": []}]", "/0: step has no \"fn\"", "object without fn");
	check_compile_error("[{\"fn\": 3}]", "/0/fn: expected a string, got number", "fn not a string");
	check_compile_error("[\"trim\", 7]", "/1: a step must be a string or an object, got number",
			    "step of a wrong type");
	check_compile_error("{\"fn\": \"trim\"}", ": a transform chain must be an array of steps, got object",
			    "chain not an array");
	check_compile_error("[{\"fn\": \"strip_control\", \"keep_whitespace\": \"no\"}]",
			    "/0/keep_whitespace: expected true or false, got string", "bool argument type");
	check_compile_error("[{\"fn\": \"nullif\"}]",
			    "/0: transform \"nullif\" needs argument \"value\" or \"values\"",
			    "nullif without values");
	c = compile_text("[\"datee\"]", small, sizeof(small));
	TAP_OK(c == NULL && strlen(small) == sizeof(small) - 1 && strcmp(small + 8, "...") == 0,
	       "a long error is cut and terminated");
	c = txchain_compile(NULL, NULL, 0);
	TAP_OK(c == NULL, "NULL spec and no error buffer is safe");
}

int main(void)
{
	g_lookups = txlookups_create();
	g_env = txenv_create(g_lookups, SALT_NS);
	if (g_lookups == NULL || g_env == NULL) {
		printf("Bail out! could not create the transform environment\n");
		return 1;
	}
	test_txvalue();
	test_utf8();
	test_trim_and_nulls();
	test_strip_control();
	test_case();
	test_date();
	test_map();
	test_numbers();
	test_email();
	test_base64();
	test_bcrypt();
	test_recode();
	test_lookup();
	test_text_edits();
	test_null_passthrough();
	test_chains();
	test_compile_errors();

	txvalue_free(&g_v);
	txenv_destroy(g_env);
	txlookups_destroy(g_lookups);
	return tap_done();
}
