/*
 * tests/unit/test_rules.c — unit tests of rules_apply (src/rules.c): one source row in, the
 * exact target COPY line and skip-log issues out.
 *
 * A small config is written to a temporary directory and loaded with config_load: "parents",
 * "children" (copy, constant, template, json, i18n and ref rules with transforms and every
 * on_invalid / on_missing policy), "accounts" (merges) and "secrets" (sensitive values). Rows
 * are built by source column name and resolved through Mapping.src_cols, so the tests do not
 * depend on binding order; expected UUIDs are computed independently with idmap_uuid.
 */
#include "edumig/rules.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "edumig/copytext.h"
#include "edumig/mem.h"
#include "tap.h"

#define NS_TEXT "0d9b6a1e-3f43-4c8e-9a51-7b2f1c0e8d42"

static char g_dir[64];
static Config *g_cfg;
static IdSet **g_sets;
static TxEnv *g_env;
static Batch g_b;
static RuleCtx g_rc;
static int g_entity;

/* The row being built: values by source column index. */
#define MAXC 32
static char *g_val[MAXC];
static size_t g_len[MAXC];

/* ---------------------------------------------------------------------------------------- */
/* Config on disk                                                                             */

static const char *const PARENTS =
	"{\n"
	"  \"entity\": \"parents\",\n"
	"  \"source\": {\"table\": \"legacy_parents\", \"key\": \"id\"},\n"
	"  \"target\": {\"table\": \"parents\"},\n"
	"  \"columns\": {\"id\": {\"rule\": \"id\"}, \"name\": \"name\", \"active\": \"active\"}\n"
	"}\n";

static const char *const CHILDREN =
	"{\n"
	"  \"entity\": \"children\",\n"
	"  \"source\": {\"table\": \"kids\", \"key\": \"id\"},\n"
	"  \"target\": {\"table\": \"children\"},\n"
	"  \"columns\": {\n"
	"    \"id\": {\"rule\": \"id\"},\n"
	"    \"name\": {\"rule\": \"copy\", \"from\": \"full_name\", \"transforms\": [\"trim\"]},\n"
	"    \"kind\": {\"rule\": \"constant\", \"value\": \"child\"},\n"
	"    \"code\": {\"rule\": \"template\", \"template\": \"KID-{id}/{class}\"},\n"
	"    \"born\": {\"rule\": \"copy\", \"from\": \"birth\",\n"
	"      \"transforms\": [{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"]}], \"on_invalid\": \"null\"},\n"
	"    \"sex\": {\"rule\": \"copy\", \"from\": \"sex\",\n"
	"      \"transforms\": [{\"fn\": \"map\", \"values\": {\"1\": \"male\", \"2\": \"female\"}, \"default\": \"unknown\"}]},\n"
	"    \"started\": {\"rule\": \"copy\", \"from\": \"start\",\n"
	"      \"transforms\": [{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\", \"YYYY-MM-DD\"]}]},\n"
	"    \"level\": {\"rule\": \"copy\", \"from\": \"level\", \"transforms\": [\"int\"],\n"
	"      \"on_invalid\": \"default\", \"default\": \"1\", \"or\": {\"value\": \"0\"}},\n"
	"    \"mother_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"mother\", \"on_missing\": \"skip\"},\n"
	"    \"father_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"father\", \"on_missing\": \"null\"},\n"
	"    \"guardian_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"guardian\", \"on_missing\": \"stub\",\n"
	"      \"stub\": {\"name\": \"guardian of {full_name} ({key})\", \"active\": {\"value\": false}}},\n"
	"    \"meta\": {\"rule\": \"json\", \"fields\": {\n"
	"      \"grade\": {\"from\": \"grade\", \"type\": \"number\"},\n"
	"      \"active\": {\"from\": \"active\", \"type\": \"boolean\"},\n"
	"      \"note\": {\"from\": \"note\", \"omit_null\": true},\n"
	"      \"nick\": \"nick\"}},\n"
	"    \"title\": {\"rule\": \"i18n\", \"langs\": {\"az\": \"name_az\", \"en\": \"name_en\", \"ru\": \"name_ru\"},\n"
	"      \"fallback\": [\"en\", \"az\"], \"placeholder\": \"Child {id}\"}\n"
	"  }\n"
	"}\n";

static const char *const ACCOUNTS =
	"{\n"
	"  \"entity\": \"accounts\",\n"
	"  \"source\": {\"table\": \"acc\", \"key\": \"id\", \"merge\": {\"survivor\": \"same_as\"}},\n"
	"  \"target\": {\"table\": \"accounts\"},\n"
	"  \"columns\": {\"id\": {\"rule\": \"id\"}, \"login\": \"login\"}\n"
	"}\n";

static const char *const SECRETS =
	"{\n"
	"  \"entity\": \"secrets\",\n"
	"  \"source\": {\"table\": \"sec\", \"key\": \"id\"},\n"
	"  \"target\": {\"table\": \"secrets\"},\n"
	"  \"columns\": {\n"
	"    \"id\": {\"rule\": \"id\"},\n"
	"    \"pin\": {\"rule\": \"copy\", \"from\": \"pin\", \"sensitive\": true, \"transforms\": [\"int\"]},\n"
	"    \"national\": {\"rule\": \"copy\", \"from\": \"national_id\", \"sensitive\": true,\n"
	"      \"transforms\": [{\"fn\": \"map\", \"values\": {\"A\": \"a\"}, \"default\": \"other\"}]},\n"
	"    \"code\": {\"rule\": \"copy\", \"from\": \"code\", \"sensitive\": true, \"transforms\": [\"int\"],\n"
	"      \"on_invalid\": \"default\", \"default\": \"0\"},\n"
	"    \"pw\": {\"rule\": \"copy\", \"from\": \"pw\", \"transforms\": [\"base64_decode\", {\"fn\": \"bcrypt\", \"cost\": 4}]}\n"
	"  }\n"
	"}\n";

/* Nine references that may each need a placeholder. */
static const char *const MANY =
	"{\n"
	"  \"entity\": \"many\",\n"
	"  \"source\": {\"table\": \"many\", \"key\": \"id\"},\n"
	"  \"target\": {\"table\": \"many\"},\n"
	"  \"columns\": {\"id\": {\"rule\": \"id\"},\n"
	"    \"p1\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p1\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p2\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p2\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p3\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p3\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p4\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p4\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p5\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p5\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p6\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p6\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p7\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p7\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p8\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p8\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}},\n"
	"    \"p9\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"p9\", \"on_missing\": \"stub\", \"stub\": {\"name\": \"{key}\"}}\n"
	"  }\n"
	"}\n";

static const char *const PHASES =
	"{\n"
	"  \"namespace\": \"" NS_TEXT "\",\n"
	"  \"phases\": [\n"
	"    {\"phase\": 1, \"name\": \"base\", \"entities\": [\"parents\", \"accounts\", \"secrets\"]},\n"
	"    {\"phase\": 2, \"name\": \"kids\", \"entities\": [\"children\", \"many\"]}\n"
	"  ]\n"
	"}\n";

static void put_file(const char *rel, const char *text)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", g_dir, rel);
	FILE *f = fopen(p, "w");
	if (!f) {
		perror(p);
		exit(99);
	}
	fputs(text, f);
	fclose(f);
}

static void rm_tree(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char sub[512];
			snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
			rm_tree(sub);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

static bool setup(void)
{
	char p[128];
	snprintf(g_dir, sizeof g_dir, "/tmp/edumig-rules-XXXXXX");
	if (!mkdtemp(g_dir))
		return false;
	snprintf(p, sizeof p, "%s/mappings", g_dir);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/phases", g_dir);
	mkdir(p, 0700);
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/children.json", CHILDREN);
	put_file("mappings/accounts.json", ACCOUNTS);
	put_file("mappings/secrets.json", SECRETS);
	put_file("mappings/many.json", MANY);
	put_file("phases/phases.json", PHASES);
	g_cfg = config_load(g_dir);
	rm_tree(g_dir);
	if (!g_cfg)
		return false;
	g_sets = xcalloc(g_cfg->n_mappings, sizeof *g_sets);
	for (size_t i = 0; i < g_cfg->n_mappings; i++)
		g_sets[i] = idset_create(16);
	g_env = txenv_create(NULL, g_cfg->namespace_uuid);
	batch_init(&g_b, 0);
	return true;
}

static void teardown(void)
{
	rulectx_free(&g_rc);
	batch_free(&g_b);
	txenv_destroy(g_env);
	for (size_t i = 0; g_cfg && i < g_cfg->n_mappings; i++)
		idset_destroy(g_sets[i]);
	free(g_sets);
	config_free(g_cfg);
	for (int i = 0; i < MAXC; i++)
		free(g_val[i]);
}

/* ---------------------------------------------------------------------------------------- */
/* Rows                                                                                       */

static void use_entity(const char *entity)
{
	rulectx_free(&g_rc);
	g_entity = config_find_entity(g_cfg, entity);
	rulectx_init(&g_rc, g_cfg, g_entity, g_sets, g_env);
	batch_reset(&g_b);
}

static const Mapping *M(void)
{
	return &g_cfg->mappings[g_entity];
}

static int src_index(const char *col)
{
	const Mapping *m = M();
	for (size_t i = 0; i < m->n_src_cols; i++)
		if (strcmp(m->src_cols[i], col) == 0)
			return (int)i;
	printf("# test bug: no source column %s\n", col);
	exit(99);
}

/* Every source column NULL. */
static void row_clear(void)
{
	for (int i = 0; i < MAXC; i++) {
		free(g_val[i]);
		g_val[i] = NULL;
		g_len[i] = 0;
	}
}

static void set(const char *col, const char *val)
{
	int i = src_index(col);
	free(g_val[i]);
	g_val[i] = val ? xstrdup(val) : NULL;
	g_len[i] = val ? strlen(val) : 0;
}

/* Applies the current row with key @key (the "id" column is set to it too). */
static bool apply(long long key)
{
	char kt[32];
	snprintf(kt, sizeof kt, "%lld", key);
	set(M()->key_cols[0], kt);
	Key k = {.v = {key}, .n = 1};
	RowInput in = {.val = g_val, .len = g_len, .key = &k, .key_text = kt, .hash = (uint64_t)key * 31};
	return rules_apply(&g_rc, &in, &g_b);
}

static void uuid_of(const char *entity, long long key, char out[37])
{
	Key k = {.v = {key}, .n = key == -999 ? 0 : 1};
	unsigned char u[16];
	idmap_uuid(g_cfg->namespace_uuid, entity, &k, u);
	uuid_unparse_lower(u, out);
}

static void put_parent(long long key, IdKind kind)
{
	Key k = {.v = {key}, .n = 1};
	unsigned char u[16];
	idmap_uuid(g_cfg->namespace_uuid, "parents", &k, u);
	idset_put(g_sets[config_find_entity(g_cfg, "parents")], &k, u, kind);
}

/* The COPY line of batch row @r without its newline (static buffer). */
static const char *line_of(size_t r)
{
	static char buf[4096];
	if (r >= g_b.n_rows)
		return "(no such row)";
	const BatchRow *br = &g_b.rows[r];
	size_t n = br->len && g_b.lines.data[br->off + br->len - 1] == '\n' ? br->len - 1 : br->len;
	if (n >= sizeof buf)
		n = sizeof buf - 1;
	memcpy(buf, g_b.lines.data + br->off, n);
	buf[n] = '\0';
	return buf;
}

/* The unescaped value of target column @col in batch row @r; "(NULL)" for \N. */
static const char *col_of(size_t r, const char *col)
{
	static char line[4096], out[4096];
	char *f[MAXC];
	size_t l[MAXC];
	const Mapping *m = M();
	snprintf(line, sizeof line, "%s", line_of(r));
	int n = copytext_split(line, strlen(line), f, l, MAXC);
	for (size_t i = 0; i < m->n_cols; i++) {
		if (strcmp(m->cols[i].name, col) != 0)
			continue;
		if ((int)i >= n)
			return "(missing field)";
		if (!f[i])
			return "(NULL)";
		snprintf(out, sizeof out, "%.*s", (int)l[i], f[i]);
		return out;
	}
	return "(no such column)";
}

/* Checks every field of issue @i of the batch. */
static void expect_issue(size_t i, const char *reason, Severity sev, const char *column, const char *detail,
			 const char *cause_entity, const char *cause_key, const char *source_value, const char *what)
{
	char w[256];
	if (i >= g_b.n_issues) {
		snprintf(w, sizeof w, "%s: issue %zu exists (have %zu)", what, i, g_b.n_issues);
		TAP_OK(false, w);
		return;
	}
	const Issue *is = &g_b.issues[i];
	snprintf(w, sizeof w, "%s: reason", what);
	TAP_STR_EQ(is->reason, reason, w);
	snprintf(w, sizeof w, "%s: severity", what);
	TAP_STR_EQ(severity_name(is->severity), severity_name(sev), w);
	snprintf(w, sizeof w, "%s: column", what);
	TAP_STR_EQ(is->column, column, w);
	snprintf(w, sizeof w, "%s: detail", what);
	TAP_STR_EQ(is->detail, detail, w);
	snprintf(w, sizeof w, "%s: cause entity", what);
	TAP_STR_EQ(is->cause_entity, cause_entity, w);
	snprintf(w, sizeof w, "%s: cause key", what);
	TAP_STR_EQ(is->cause_key, cause_key, w);
	snprintf(w, sizeof w, "%s: source value", what);
	TAP_STR_EQ(is->source_value, source_value, w);
}

/* Issues from @from on: how many are live (not dropped). */
static size_t live_issues(size_t from)
{
	size_t n = 0;
	for (size_t i = from; i < g_b.n_issues; i++)
		n += !g_b.issues[i].dropped;
	return n;
}

/* A valid children row: every column resolves, nothing to report. */
static void good_child(void)
{
	row_clear();
	set("full_name", "  Ali Veli ");
	set("class", "5A");
	set("birth", "05/03/2010");
	set("sex", "1");
	set("start", "2016-09-01");
	set("level", "3");
	set("mother", "1");
	set("father", "2");
	set("guardian", "1");
	set("grade", "7");
	set("active", "t");
	set("note", NULL);
	set("nick", "Al\tI \"x\" \\");
	set("name_az", "Əli");
	set("name_en", NULL);
	set("name_ru", "");
}

/* ---------------------------------------------------------------------------------------- */

static void test_good_row(void)
{
	char cu[37], p1[37], p2[37], want[2048];
	use_entity("children");
	good_child();
	bool ok = apply(100);
	TAP_OK(ok, "good row: migrated");
	TAP_INT_EQ(g_b.n_rows, 1, "good row: one batch row");
	TAP_INT_EQ(g_b.n_issues, 0, "good row: no issues");
	TAP_INT_EQ(g_b.n_stubs, 0, "good row: no stubs");
	uuid_of("children", 100, cu);
	uuid_of("parents", 1, p1);
	uuid_of("parents", 2, p2);
	/* The nick value holds a tab: JSON writes \t, COPY doubles the backslash. */
	snprintf(want, sizeof want,
		 "%s\tAli Veli\tchild\tKID-100/5A\t2010-03-05\tmale\t2016-09-01\t3\t%s\t%s\t%s\t"
		 "{\"grade\":7,\"active\":true,\"nick\":\"Al\\\\tI \\\\\"x\\\\\" \\\\\\\\\"}\t"
		 "{\"az\":\"Əli\",\"en\":\"Əli\",\"ru\":\"Əli\"}",
		 cu, p1, p2, p1);
	TAP_STR_EQ(line_of(0), want, "good row: exact COPY line");
	TAP_STR_EQ(col_of(0, "meta"), "{\"grade\":7,\"active\":true,\"nick\":\"Al\\tI \\\"x\\\" \\\\\"}",
		   "good row: json column after COPY unescaping");
	const BatchRow *br = &g_b.rows[0];
	TAP_INT_EQ(br->kind, ID_ROW, "good row: kind row");
	TAP_OK(br->key.n == 1 && br->key.v[0] == 100, "good row: key");
	TAP_INT_EQ(br->hash, 3100, "good row: hash carried");
	TAP_INT_EQ(br->off, 0, "good row: offset 0");
	TAP_INT_EQ(br->len, g_b.lines.len, "good row: length includes its newline");
	TAP_INT_EQ(g_b.lines.data[g_b.lines.len - 1], '\n', "good row: line ends in a newline");
	TAP_OK(!br->warned, "good row: not warned");
	char u[37];
	uuid_unparse_lower(br->uuid, u);
	TAP_STR_EQ(u, cu, "good row: batch row uuid");

	const char *cols[16];
	size_t n = rules_target_columns(M(), cols, 16);
	TAP_INT_EQ(n, 13, "target columns: 13");
	TAP_OK(n == 13 && !strcmp(cols[0], "id") && !strcmp(cols[1], "name") && !strcmp(cols[12], "title"),
	       "target columns in line order");
	TAP_INT_EQ(rules_target_columns(M(), cols, 2), 2, "target columns bounded by max");

	/* A second row is appended after the first. */
	good_child();
	set("level", NULL);
	set("class", NULL);
	TAP_OK(apply(101), "second row: migrated");
	TAP_INT_EQ(g_b.rows[1].off, g_b.rows[0].len, "second row: starts after the first");
	TAP_STR_EQ(col_of(1, "level"), "0", "NULL level: 'or' constant 0 (no flag)");
	TAP_STR_EQ(col_of(1, "code"), "(NULL)", "template with a NULL column is NULL");
	TAP_INT_EQ(g_b.n_issues, 0, "second row: still no issues");
}

static void test_warnings(void)
{
	char p1[37];
	use_entity("children");
	good_child();
	set("birth", "31/02/2010");
	set("sex", "9");
	set("level", "high");
	set("father", "99");
	set("grade", "x7");
	set("active", "maybe");
	set("note", "hi");
	set("nick", NULL);
	set("name_az", NULL);
	set("name_ru", NULL);
	bool ok = apply(101);
	TAP_OK(ok, "warnings: row still migrated");
	TAP_OK(g_b.n_rows == 1 && g_b.rows[0].warned, "warnings: row flagged warned");
	TAP_INT_EQ(g_b.n_issues, 7, "warnings: 7 issues");
	expect_issue(0, "invalid_date", SEV_WARNING, "born",
		     "impossible date '31/02/2010' (formats DD/MM/YYYY); stored as NULL (on_invalid: null)",
		     NULL, NULL, "31/02/2010", "invalid date, on_invalid null");
	expect_issue(1, "map_default", SEV_WARNING, "sex", "unmapped value '9' → 'unknown'", NULL, NULL, "9",
		     "map default");
	expect_issue(2, "not_an_integer", SEV_WARNING, "level",
		     "'high' is not an integer; stored as '1' (on_invalid: default)", NULL, NULL, "high",
		     "invalid int, on_invalid default");
	expect_issue(3, "missing_reference", SEV_WARNING, "father_id",
		     "parents 99 not migrated (absent from the source or filtered out); stored as NULL (on_missing: null)",
		     "parents", "99", "99", "missing parent, on_missing null");
	expect_issue(4, "not_a_number", SEV_WARNING, "meta",
		     "field \"grade\": 'x7' is not a number; stored as a string", NULL, NULL, NULL, "json number");
	expect_issue(5, "not_a_boolean", SEV_WARNING, "meta",
		     "field \"active\": 'maybe' is not a boolean; stored as a string", NULL, NULL, NULL, "json boolean");
	expect_issue(6, "placeholder_value", SEV_WARNING, "title",
		     "no value in any language; placeholder 'Child 101' written", NULL, NULL, NULL, "i18n placeholder");
	for (size_t i = 0; i < g_b.n_issues; i++)
		TAP_OK(g_b.issues[i].row == 0 && !g_b.issues[i].dropped && g_b.issue_keys[i] &&
		       !strcmp(g_b.issue_keys[i], "101"), "warnings: issue bound to row 0, key 101, live");
	TAP_STR_EQ(col_of(0, "born"), "(NULL)", "invalid date stored as NULL");
	TAP_STR_EQ(col_of(0, "sex"), "unknown", "unmapped sex stored as the map default");
	TAP_STR_EQ(col_of(0, "level"), "1", "invalid level stored as the default");
	TAP_STR_EQ(col_of(0, "father_id"), "(NULL)", "missing father stored as NULL");
	uuid_of("parents", 1, p1);
	TAP_STR_EQ(col_of(0, "mother_id"), p1, "mother resolved");
	TAP_STR_EQ(col_of(0, "meta"), "{\"grade\":\"x7\",\"active\":\"maybe\",\"note\":\"hi\",\"nick\":null}",
		   "json: bad number and boolean kept as strings, note present, null nick kept");
	TAP_STR_EQ(col_of(0, "title"), "{\"az\":\"Child 101\",\"en\":\"Child 101\",\"ru\":\"Child 101\"}",
		   "i18n: placeholder in every language");
}

static void test_skipped_row(void)
{
	use_entity("children");
	good_child();
	TAP_OK(apply(200), "skip: a good row first");
	size_t len_before = g_b.lines.len, issues_before = g_b.n_issues;
	size_t parents_before = idset_count(g_sets[config_find_entity(g_cfg, "parents")]);

	good_child();
	set("start", "garbage");
	set("mother", "3");          /* ID_SKIPPED parent */
	set("sex", "9");             /* a warning, which must be dropped */
	set("guardian", "77");       /* missing: would need a stub, but the row does not move */
	bool ok = apply(201);
	TAP_OK(!ok, "skip: row not migrated");
	TAP_INT_EQ(g_b.n_rows, 1, "skip: no batch row added");
	TAP_INT_EQ(g_b.lines.len, len_before, "skip: no line written (partial line removed)");
	TAP_INT_EQ(g_b.n_stubs, 0, "skip: no stub created for a skipped row");
	TAP_INT_EQ(idset_count(g_sets[config_find_entity(g_cfg, "parents")]), parents_before,
		   "skip: parent set unchanged");
	Key k77 = {.v = {77}, .n = 1};
	TAP_OK(!idset_get(g_sets[config_find_entity(g_cfg, "parents")], &k77, NULL, NULL), "skip: 77 not added as stub");
	TAP_INT_EQ(live_issues(issues_before), 2, "skip: only the 2 errors stay live");
	size_t errors = 0, dropped_warn = 0;
	for (size_t i = issues_before; i < g_b.n_issues; i++) {
		const Issue *is = &g_b.issues[i];
		if (is->severity == SEV_ERROR && !is->dropped)
			errors++;
		if (is->severity == SEV_WARNING && is->dropped)
			dropped_warn++;
		TAP_INT_EQ(is->row, -1, "skip: issue of a skipped row has row -1");
	}
	TAP_INT_EQ(errors, 2, "skip: two errors");
	TAP_INT_EQ(dropped_warn, 2, "skip: the map warning and the stub warning are dropped");
	/* Issue order follows the columns: sex (warning), started, mother_id, guardian_id (warning). */
	expect_issue(issues_before + 1, "invalid_date", SEV_ERROR, "started",
		     "unrecognised date 'garbage' (formats DD/MM/YYYY, YYYY-MM-DD)", NULL, NULL, "garbage",
		     "skip: unparseable date with on_invalid skip");
	expect_issue(issues_before + 2, "parent_skipped", SEV_ERROR, "mother_id", "parents 3 was skipped", "parents",
		     "3", NULL, "skip: parent was skipped");

	/* NULL and malformed references. */
	size_t base = g_b.n_issues;
	good_child();
	set("mother", NULL);
	set("father", "abc");
	TAP_OK(!apply(202), "NULL mother (on_missing skip): row skipped");
	expect_issue(base, "missing_reference", SEV_ERROR, "mother_id", "mother is NULL", "parents", NULL, NULL,
		     "NULL reference");
	expect_issue(base + 1, "missing_reference", SEV_WARNING, "father_id",
		     "father 'abc' is not an integer key; stored as NULL (on_missing: null)", NULL, NULL, NULL,
		     "malformed reference (warning of a skipped row)");
	TAP_OK(base + 1 < g_b.n_issues && g_b.issues[base + 1].dropped, "malformed reference warning dropped");

	base = g_b.n_issues;
	good_child();
	set("mother", "12345");
	TAP_OK(!apply(203), "absent mother: row skipped");
	expect_issue(base, "missing_reference", SEV_ERROR, "mother_id",
		     "parents 12345 not migrated (absent from the source or filtered out)", "parents", "12345", "12345",
		     "absent parent");
	TAP_INT_EQ(g_b.n_rows, 1, "still one batch row after three skips");
}

static void test_stubs(void)
{
	char s50[37], su[37], p1[37];
	const int pi = config_find_entity(g_cfg, "parents");
	use_entity("children");
	good_child();
	set("full_name", "Nərmin");
	set("guardian", "50");
	TAP_OK(apply(300), "stub: row migrated");
	TAP_INT_EQ(g_b.n_stubs, 1, "stub: one stub created");
	uuid_of("parents", 50, s50);
	if (g_b.n_stubs >= 1) {
		const Stub *st = &g_b.stubs[0];
		char want[256], u[37];
		uuid_unparse_lower(st->uuid, u);
		TAP_STR_EQ(u, s50, "stub: uuid is the parent's own uuid for key 50");
		TAP_INT_EQ(st->entity, pi, "stub: entity is parents");
		TAP_OK(st->key.n == 1 && st->key.v[0] == 50, "stub: key 50");
		TAP_OK(st->rule && !strcmp(st->rule->name, "guardian_id"), "stub: made by the guardian_id rule");
		snprintf(want, sizeof want, "%s\tguardian of Nərmin (50)\tfalse\n", s50);
		TAP_STR_EQ(st->line, want, "stub: exact parent line");
	}
	Key k = {.v = {50}, .n = 1};
	IdKind kind = ID_ROW;
	unsigned char u[16];
	char ut[37] = "";
	TAP_OK(idset_get(g_sets[pi], &k, u, &kind), "stub: parent set holds 50");
	uuid_unparse_lower(u, ut);
	TAP_INT_EQ(kind, ID_STUB, "stub: as ID_STUB");
	TAP_STR_EQ(ut, s50, "stub: with the stub uuid");
	TAP_STR_EQ(col_of(0, "guardian_id"), s50, "stub: the row refers to the stub");
	expect_issue(0, "parent_stubbed", SEV_WARNING, "guardian_id",
		     "parents 50 not migrated (absent from the source or filtered out); a placeholder parents stands in (on_missing: stub)",
		     "parents", "50", "50", "stub created");
	TAP_OK(g_b.rows[0].warned, "stub: row warned");

	good_child();
	set("guardian", "50");
	TAP_OK(apply(301), "stub reuse: row migrated");
	TAP_INT_EQ(g_b.n_stubs, 1, "stub reuse: no second stub");
	TAP_STR_EQ(col_of(1, "guardian_id"), s50, "stub reuse: same uuid");
	expect_issue(1, "parent_stubbed", SEV_WARNING, "guardian_id", "parents 50 is a placeholder (missing in the source)",
		     "parents", "50", NULL, "stub reused");

	/* A stubbed parent met through another rule (father, on_missing null) resolves, flagged. */
	good_child();
	set("father", "50");
	TAP_OK(apply(302), "stub via another ref: migrated");
	TAP_STR_EQ(col_of(2, "father_id"), s50, "stub via another ref: resolves to the stub");
	expect_issue(2, "parent_stubbed", SEV_WARNING, "father_id", "parents 50 is a placeholder (missing in the source)",
		     "parents", "50", NULL, "stub met via father_id");

	/* NULL guardian: a placeholder for the "unknown" key. */
	good_child();
	set("full_name", "X");
	set("guardian", NULL);
	TAP_OK(apply(303), "NULL guardian: migrated");
	TAP_INT_EQ(g_b.n_stubs, 2, "NULL guardian: an 'unknown' stub");
	uuid_of("parents", -999, su);
	TAP_STR_EQ(col_of(3, "guardian_id"), su, "NULL guardian: refers to parents:unknown");
	if (g_b.n_stubs >= 2) {
		char want[256];
		snprintf(want, sizeof want, "%s\tguardian of X (unknown)\tfalse\n", su);
		TAP_STR_EQ(g_b.stubs[1].line, want, "NULL guardian: stub line");
		TAP_INT_EQ(g_b.stubs[1].key.n, 0, "NULL guardian: stub key is unknown (n 0)");
	}
	expect_issue(3, "parent_stubbed", SEV_WARNING, "guardian_id",
		     "guardian is NULL; a placeholder parents stands in (on_missing: stub)", "parents", NULL, NULL,
		     "NULL guardian");

	/* Stubs survive batch_reset only in the id set: the next batch reuses, not re-creates. */
	batch_reset(&g_b);
	good_child();
	set("guardian", "50");
	TAP_OK(apply(304), "next batch: migrated");
	TAP_INT_EQ(g_b.n_stubs, 0, "next batch: stub not created again");
	uuid_of("parents", 1, p1);
	TAP_STR_EQ(col_of(0, "mother_id"), p1, "next batch: other refs unchanged");
}

/* The JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_ok(const char *s)
{
	const char *p = s;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (*p == '.') {
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return *p == '\0';
}

static void test_json_and_i18n(void)
{
	use_entity("children");
	static const struct {
		const char *grade, *active, *want;
	} cases[] = {
		{"7", "t", "{\"grade\":7,\"active\":true,\"nick\":\"n\"}"},
		{"-1.5e3", "true", "{\"grade\":-1.5e3,\"active\":true,\"nick\":\"n\"}"},
		{"0", "1", "{\"grade\":0,\"active\":true,\"nick\":\"n\"}"},
		{"12.25", "f", "{\"grade\":12.25,\"active\":false,\"nick\":\"n\"}"},
		{NULL, "false", "{\"grade\":null,\"active\":false,\"nick\":\"n\"}"},
		{"3", "0", "{\"grade\":3,\"active\":false,\"nick\":\"n\"}"},
		{"3", NULL, "{\"grade\":3,\"active\":null,\"nick\":\"n\"}"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		good_child();
		set("grade", cases[i].grade);
		set("active", cases[i].active);
		set("nick", "n");
		char what[128];
		snprintf(what, sizeof what, "json: grade %s active %s", cases[i].grade ? cases[i].grade : "NULL",
			 cases[i].active ? cases[i].active : "NULL");
		size_t before = g_b.n_issues;
		apply(400 + (long long)i);
		TAP_STR_EQ(col_of(g_b.n_rows - 1, "meta"), cases[i].want, what);
		TAP_INT_EQ(g_b.n_issues - before, 0, "json: no issue for valid number/boolean");
	}

	/* Numbers the target's jsonb would refuse must not be written as bare numbers: the "grade"
	 * value must be a JSON string or follow the JSON number grammar (RFC 8259). */
	static const char *const not_json[] = {"0x10", "+5", ".5", "5.", "012", "1e", "1e+", "-", "0x1p3", "1_000"};
	for (size_t i = 0; i < sizeof not_json / sizeof *not_json; i++) {
		good_child();
		set("grade", not_json[i]);
		size_t before = g_b.n_issues;
		apply(500 + (long long)i);
		const char *meta = col_of(g_b.n_rows - 1, "meta");
		const char *g = strstr(meta, "\"grade\":");
		const char *e = g ? strstr(g, ",\"active\"") : NULL;
		char val[64] = "";
		if (g && e && (size_t)(e - g - 8) < sizeof val)
			snprintf(val, sizeof val, "%.*s", (int)(e - g - 8), g + 8);
		char what[128];
		snprintf(what, sizeof what, "json: grade '%s' is written as a JSON string or a JSON number", not_json[i]);
		TAP_OK(val[0] == '"' || json_number_ok(val), what);
		if (!(val[0] == '"' || json_number_ok(val)))
			printf("#   meta: %s\n", meta);
		if (i == 0) {
			TAP_STR_EQ(meta, "{\"grade\":\"0x10\",\"active\":true,\"nick\":\"Al\\tI \\\"x\\\" \\\\\"}",
				   "json: hex grade stored as a string");
			TAP_OK(g_b.n_issues > before && !strcmp(g_b.issues[before].reason, "not_a_number"),
			       "json: hex grade flagged not_a_number");
		}
	}

	/* i18n fallback order: a missing language takes the first fallback language that has a value. */
	static const struct {
		const char *az, *en, *ru, *want;
	} langs[] = {
		{"A", "E", "R", "{\"az\":\"A\",\"en\":\"E\",\"ru\":\"R\"}"},
		{"A", "E", NULL, "{\"az\":\"A\",\"en\":\"E\",\"ru\":\"E\"}"},     /* ru <- en (first fallback) */
		{"A", NULL, NULL, "{\"az\":\"A\",\"en\":\"A\",\"ru\":\"A\"}"},    /* en, ru <- az */
		{NULL, NULL, "R", "{\"az\":\"R\",\"en\":\"R\",\"ru\":\"R\"}"},    /* no fallback has one: first with a value */
		{"", "E", "", "{\"az\":\"E\",\"en\":\"E\",\"ru\":\"E\"}"},        /* empty counts as missing */
		{"A\"q", NULL, "R\n", "{\"az\":\"A\\\"q\",\"en\":\"A\\\"q\",\"ru\":\"R\\n\"}"},
	};
	for (size_t i = 0; i < sizeof langs / sizeof *langs; i++) {
		good_child();
		set("name_az", langs[i].az);
		set("name_en", langs[i].en);
		set("name_ru", langs[i].ru);
		size_t before = g_b.n_issues;
		apply(600 + (long long)i);
		char what[96];
		snprintf(what, sizeof what, "i18n case %zu", i);
		TAP_STR_EQ(col_of(g_b.n_rows - 1, "title"), langs[i].want, what);
		TAP_INT_EQ(g_b.n_issues - before, 0, "i18n fallback is not flagged");
	}

	/* note is omitted when NULL, kept when empty. */
	good_child();
	set("note", "");
	set("nick", NULL);
	apply(700);
	TAP_STR_EQ(col_of(g_b.n_rows - 1, "meta"), "{\"grade\":7,\"active\":true,\"note\":\"\",\"nick\":null}",
		   "json: empty note kept, NULL nick written as null");
}

static void test_merge(void)
{
	char a10[37], a20[37];
	const int ai = config_find_entity(g_cfg, "accounts");
	use_entity("accounts");
	uuid_of("accounts", 10, a10);
	uuid_of("accounts", 20, a20);

	row_clear();
	set("same_as", "10");
	set("login", "ali");
	TAP_OK(apply(10), "merge: survivor (same_as = own key) migrated");
	char want[128];
	snprintf(want, sizeof want, "%s\tali", a10);
	TAP_STR_EQ(line_of(0), want, "merge: survivor line");
	Key k10 = {.v = {10}, .n = 1};
	IdKind kind = ID_SKIPPED;
	TAP_OK(idset_get(g_sets[ai], &k10, NULL, &kind) && kind == ID_ROW, "merge: survivor recorded in own set as row");

	row_clear();
	set("login", "vali");
	TAP_OK(apply(20), "merge: NULL survivor column: an ordinary row");
	snprintf(want, sizeof want, "%s\tvali", a20);
	TAP_STR_EQ(line_of(1), want, "merge: ordinary row line");

	size_t len_before = g_b.lines.len;
	row_clear();
	set("same_as", "10");
	set("login", "ali2");
	TAP_OK(apply(11), "merge: duplicate merged (counts as migrated)");
	TAP_INT_EQ(g_b.n_rows, 3, "merge: a batch row for the merged key");
	TAP_INT_EQ(g_b.lines.len, len_before, "merge: no target line");
	if (g_b.n_rows == 3) {
		const BatchRow *br = &g_b.rows[2];
		char u[37];
		uuid_unparse_lower(br->uuid, u);
		TAP_INT_EQ(br->kind, ID_MERGED, "merge: kind merged");
		TAP_STR_EQ(u, a10, "merge: the survivor's uuid");
		TAP_INT_EQ(br->len, 0, "merge: line length 0");
		TAP_OK(br->merged_into.n == 1 && br->merged_into.v[0] == 10, "merge: merged_into 10");
		TAP_OK(br->key.n == 1 && br->key.v[0] == 11, "merge: own key 11");
		TAP_OK(br->warned, "merge: warned");
	}
	expect_issue(0, "merged_duplicate", SEV_WARNING, NULL, "merged onto accounts 10 (same_as)", "accounts", "10",
		     NULL, "merge issue");
	Key k11 = {.v = {11}, .n = 1};
	unsigned char u[16];
	char ut[37] = "";
	TAP_OK(idset_get(g_sets[ai], &k11, u, &kind) && kind == ID_MERGED, "merge: 11 recorded as merged");
	uuid_unparse_lower(u, ut);
	TAP_STR_EQ(ut, a10, "merge: 11 maps to the survivor's uuid");

	/* A duplicate of a merged row ends on the first survivor. */
	row_clear();
	set("same_as", "11");
	TAP_OK(apply(12), "merge chain: merged");
	TAP_OK(g_b.n_rows == 4 && !memcmp(g_b.rows[3].uuid, u, 16), "merge chain: the first survivor's uuid");

	size_t base = g_b.n_issues;
	row_clear();
	set("same_as", "5");
	set("login", "x");
	TAP_OK(!apply(13), "merge: survivor missing: skipped");
	TAP_INT_EQ(g_b.n_rows, 4, "merge: no batch row for a skipped duplicate");
	expect_issue(base, "merge_survivor_missing", SEV_ERROR, NULL,
		     "should merge onto accounts 5, which was not migrated (a survivor must precede its duplicates in key order)",
		     "accounts", "5", NULL, "survivor missing");
	TAP_INT_EQ(base < g_b.n_issues ? g_b.issues[base].row : 0, -1, "survivor missing: issue row -1");

	/* A skipped survivor is no survivor. */
	Key k30 = {.v = {30}, .n = 1};
	unsigned char z[16] = {0};
	idset_put(g_sets[ai], &k30, z, ID_SKIPPED);
	base = g_b.n_issues;
	row_clear();
	set("same_as", "30");
	TAP_OK(!apply(31), "merge onto a skipped survivor: skipped");
	TAP_OK(base < g_b.n_issues && !strcmp(g_b.issues[base].reason, "merge_survivor_missing"),
	       "merge onto a skipped survivor: merge_survivor_missing");
}

static void test_sensitive(void)
{
	use_entity("secrets");
	row_clear();
	set("pin", "1234");
	set("national_id", "A");
	set("code", "5");
	set("pw", "c2VjcmV0");    /* base64 of "secret" */
	TAP_OK(apply(1), "secrets: good row migrated");
	TAP_INT_EQ(g_b.n_issues, 0, "secrets: good row has no issues");
	TAP_STR_EQ(col_of(0, "pin"), "1234", "secrets: pin");
	TAP_STR_EQ(col_of(0, "national"), "a", "secrets: national mapped");
	const char *pw = col_of(0, "pw");
	TAP_OK(strncmp(pw, "$2b$04$", 7) == 0 && strlen(pw) == 60, "secrets: password re-hashed with bcrypt $2b$04$");
	TAP_OK(strstr(line_of(0), "secret") == NULL && strstr(line_of(0), "c2VjcmV0") == NULL,
	       "secrets: neither the secret nor its base64 in the line");
	char first[61];
	snprintf(first, sizeof first, "%s", pw);
	row_clear();
	set("pw", "c2VjcmV0");
	apply(1);
	TAP_STR_EQ(col_of(1, "pw"), first, "secrets: bcrypt is reproducible for the same row key");
	row_clear();
	set("pw", "c2VjcmV0");
	apply(2);
	TAP_OK(strcmp(col_of(2, "pw"), first) != 0, "secrets: another row key gives another salt");

	/* Warnings on sensitive values: source redacted, and no raw value in the detail. */
	size_t base = g_b.n_issues;
	row_clear();
	set("national_id", "AZE123");
	set("code", "x9");
	TAP_OK(apply(3), "secrets: row with warnings migrated");
	TAP_INT_EQ(g_b.n_issues - base, 2, "secrets: two warnings");
	for (size_t i = base; i < g_b.n_issues; i++) {
		const Issue *is = &g_b.issues[i];
		char what[96];
		snprintf(what, sizeof what, "secrets: %s warning source value redacted", is->column);
		TAP_STR_EQ(is->source_value, "[redacted]", what);
		snprintf(what, sizeof what, "secrets: %s warning detail holds no raw value", is->column);
		TAP_OK(is->detail && !strstr(is->detail, "AZE123") && !strstr(is->detail, "x9"), what);
		if (is->detail && (strstr(is->detail, "AZE123") || strstr(is->detail, "x9")))
			printf("#   detail: %s\n", is->detail);
	}
	TAP_STR_EQ(col_of(3, "national"), "other", "secrets: national defaulted");
	TAP_STR_EQ(col_of(3, "code"), "0", "secrets: code defaulted");
	if (g_b.n_issues - base == 2)
		/* A constant default comes from the mapping, not the data: it is shown. */
		TAP_OK(strstr(g_b.issues[base + 1].detail, "stored as '0' (on_invalid: default)") != NULL,
		       "secrets: a constant default of a sensitive column is shown");

	/* Errors on sensitive values. */
	base = g_b.n_issues;
	row_clear();
	set("pin", "12a4");
	set("pw", "!!!");
	TAP_OK(!apply(4), "secrets: bad pin and password: skipped");
	TAP_INT_EQ(live_issues(base), 2, "secrets: two errors");
	for (size_t i = base; i < g_b.n_issues; i++) {
		const Issue *is = &g_b.issues[i];
		char what[96];
		snprintf(what, sizeof what, "secrets: %s error source value redacted", is->column);
		TAP_STR_EQ(is->source_value, "[redacted]", what);
		snprintf(what, sizeof what, "secrets: %s error detail holds no raw value", is->column);
		TAP_OK(is->detail && !strstr(is->detail, "12a4") && !strstr(is->detail, "!!!"), what);
		if (is->detail && (strstr(is->detail, "12a4") || strstr(is->detail, "!!!")))
			printf("#   detail: %s\n", is->detail);
	}
	if (g_b.n_issues - base == 2) {
		TAP_STR_EQ(g_b.issues[base].reason, "not_an_integer", "secrets: pin reason");
		TAP_STR_EQ(g_b.issues[base + 1].reason, "not_base64", "secrets: password reason");
		TAP_INT_EQ(g_b.issues[base].severity, SEV_ERROR, "secrets: pin is an error");
	}

	/* The skip-log COPY line carries the redacted value. */
	StrBuf sl = {0};
	if (g_b.n_issues > base)
		issue_copy_line(&sl, &g_b.issues[base], 7, 1, "secrets", g_b.issue_keys[base]);
	TAP_OK(strstr(sb_str(&sl), "\t[redacted]\t") != NULL && !strstr(sb_str(&sl), "12a4"),
	       "secrets: skip-log line shows [redacted]");
	sb_free(&sl);
}

/* A row needing more placeholders than some fixed limit must still move, or say why not. */
static void test_many_stubs(void)
{
	use_entity("many");
	row_clear();
	for (int i = 1; i <= 9; i++) {
		char col[8], val[16];
		snprintf(col, sizeof col, "p%d", i);
		snprintf(val, sizeof val, "%d", 900 + i);
		set(col, val);
	}
	bool ok = apply(1);
	size_t errors = 0;
	for (size_t i = 0; i < g_b.n_issues; i++)
		errors += g_b.issues[i].severity == SEV_ERROR && !g_b.issues[i].dropped;
	TAP_OK(ok || errors > 0, "nine stubs: a row that does not move has an error saying why");
	TAP_OK(ok, "nine stubs: the row moves");
	TAP_INT_EQ(g_b.n_stubs, 9, "nine stubs: nine placeholders");
	char s909[37];
	uuid_of("parents", 909, s909);
	TAP_STR_EQ(ok ? col_of(0, "p9") : "(skipped)", s909, "nine stubs: the ninth refers to its placeholder");
}

int main(void)
{
	if (!setup()) {
		TAP_OK(false, "the test config loads");
		teardown();
		return tap_done();
	}
	TAP_OK(true, "the test config loads");
	for (int i = 1; i <= 5; i++)
		put_parent(i, i == 3 ? ID_SKIPPED : ID_ROW);
	test_good_row();
	test_warnings();
	test_skipped_row();
	test_stubs();
	test_json_and_i18n();
	test_merge();
	test_sensitive();
	test_many_stubs();
	teardown();
	return tap_done();
}
