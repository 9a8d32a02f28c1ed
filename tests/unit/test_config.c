/*
 * tests/unit/test_config.c — unit tests of config_load (src/config.c, src/jsonpos.c).
 *
 * Each case writes a throwaway config directory (mappings/NAME.json + phases/phases.json),
 * loads it with stderr captured, and checks the EXACT error lines ("FILE:LINE: /pointer:
 * message"), how many there are, and that a broken config loads as NULL. A valid config is
 * checked for what binding computes: the selected source columns and every index into them.
 */
#include "edumig/config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "edumig/jsonpos.h"
#include "tap.h"

#define NS_TEXT "0d9b6a1e-3f43-4c8e-9a51-7b2f1c0e8d42"

static char g_dir[64];          /* the current case's config directory */
static char *g_err;             /* captured stderr of the last load */

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

static void new_dir(void)
{
	char p[128];
	snprintf(g_dir, sizeof g_dir, "/tmp/edumig-cfg-XXXXXX");
	if (!mkdtemp(g_dir)) {
		perror("mkdtemp");
		exit(99);
	}
	snprintf(p, sizeof p, "%s/mappings", g_dir);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/phases", g_dir);
	mkdir(p, 0700);
}

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

/* Loads g_dir with fd 2 redirected to a temporary file; the text goes to g_err. */
static Config *load(void)
{
	char tmpl[] = "/tmp/edumig-cfg-err-XXXXXX";
	int fd = mkstemp(tmpl);
	if (fd < 0) {
		perror("mkstemp");
		exit(99);
	}
	unlink(tmpl);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	Config *cfg = config_load(g_dir);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	off_t n = lseek(fd, 0, SEEK_END);
	free(g_err);
	g_err = calloc(1, (size_t)n + 1);
	if (pread(fd, g_err, (size_t)n, 0) != n)
		g_err[0] = '\0';
	close(fd);
	return cfg;
}

static void end_case(Config *cfg)
{
	config_free(cfg);
	rm_tree(g_dir);
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* True when the captured stderr has the line "DIR/@rel_line" exactly. */
static bool has_line(const char *rel_line)
{
	char want[1024];
	snprintf(want, sizeof want, "%s/%s", g_dir, rel_line);
	size_t n = strlen(want);
	for (const char *s = g_err; s && *s;) {
		const char *e = strchr(s, '\n');
		size_t l = e ? (size_t)(e - s) : strlen(s);
		if (l == n && memcmp(s, want, n) == 0)
			return true;
		s = e ? e + 1 : s + l;
	}
	return false;
}

static void dump_err(void)
{
	printf("# captured stderr:\n");
	for (const char *s = g_err; s && *s;) {
		const char *e = strchr(s, '\n');
		size_t l = e ? (size_t)(e - s) : strlen(s);
		printf("#   | %.*s\n", (int)l, s);
		s = e ? e + 1 : s + l;
	}
}

static void expect_line(const char *rel_line, const char *what)
{
	bool ok = has_line(rel_line);
	TAP_OK(ok, what);
	if (!ok) {
		printf("#   wanted: %s/%s\n", g_dir, rel_line);
		dump_err();
	}
}

/* Checks @n error lines plus the summary line, and a NULL result. */
static void expect_errors(Config *cfg, int n, const char *what)
{
	char buf[200], summary[300];
	snprintf(buf, sizeof buf, "%s: config_load returns NULL", what);
	TAP_OK(cfg == NULL, buf);
	snprintf(buf, sizeof buf, "%s: %d error line(s) + summary", what, n);
	TAP_INT_EQ(count_lines(g_err), n + 1, buf);
	if (count_lines(g_err) != n + 1)
		dump_err();
	snprintf(summary, sizeof summary, "edumig: %d configuration error%s in %s; nothing was run\n", n,
		 n == 1 ? "" : "s", g_dir);
	size_t sl = strlen(summary), el = strlen(g_err);
	snprintf(buf, sizeof buf, "%s: summary line is last", what);
	TAP_OK(el >= sl && strcmp(g_err + el - sl, summary) == 0, buf);
}

/* ---------------------------------------------------------------------------------------- */

static const char *const PARENTS =
	"{\n"
	"  \"entity\": \"parents\",\n"
	"  \"source\": {\"table\": \"legacy_parents\", \"key\": \"id\"},\n"
	"  \"target\": {\"table\": \"parents\"},\n"
	"  \"columns\": {\n"
	"    \"id\": {\"rule\": \"id\"},\n"
	"    \"name\": \"name\"\n"
	"  }\n"
	"}\n";

static const char *const PHASES_PU =
	"{\n"
	"  \"namespace\": \"" NS_TEXT "\",\n"
	"  \"phases\": [\n"
	"    {\"phase\": 1, \"name\": \"base\", \"entities\": [\"parents\"]},\n"
	"    {\"phase\": 2, \"name\": \"people\", \"entities\": [\"users\"]}\n"
	"  ]\n"
	"}\n";

/* parents (phase 1) + users (phase 2) with @users as users.json. */
static Config *load_users(const char *users)
{
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/users.json", users);
	put_file("phases/phases.json", PHASES_PU);
	return load();
}

static void test_sanity(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"email\": {\"rule\": \"copy\", \"from\": \"email\", \"transforms\": [\"trim\", \"email\"]},\n"
		"    \"parent_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"parent_id\"}\n"
		"  }\n"
		"}\n");
	TAP_OK(cfg != NULL, "baseline config loads");
	TAP_STR_EQ(g_err, "", "baseline config: nothing on stderr");
	end_case(cfg);
}

static void test_malformed_json(void)
{
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	/* A missing comma at the end of line 3: json-c stops at the next key, on line 4. */
	put_file("mappings/users.json",
		 "{\n"
		 "  \"entity\": \"users\",\n"
		 "  \"source\": {\"table\": \"users\", \"key\": \"id\"}\n"
		 "  \"target\": {\"table\": \"users\"},\n"
		 "  \"columns\": {\"id\": {\"rule\": \"id\"}}\n"
		 "}\n");
	put_file("phases/phases.json",
		 "{\"namespace\": \"" NS_TEXT "\", \"phases\": [\n"
		 "  {\"phase\": 1, \"name\": \"base\", \"entities\": [\"parents\"]}]}\n");
	Config *cfg = load();
	expect_line("mappings/users.json:4: invalid JSON: object value separator ',' expected",
		    "missing comma: invalid JSON at line 4");
	expect_errors(cfg, 1, "missing comma");
	end_case(cfg);

	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/users.json", "{\n  \"entity\": \"users\",\n  \"source\": {\n");
	put_file("phases/phases.json",
		 "{\"namespace\": \"" NS_TEXT "\", \"phases\": [\n"
		 "  {\"phase\": 1, \"name\": \"base\", \"entities\": [\"parents\"]}]}\n");
	cfg = load();
	expect_line("mappings/users.json:4: invalid JSON: unexpected end of file",
		    "truncated file: unexpected end of file at its last line");
	expect_errors(cfg, 1, "truncated file");
	end_case(cfg);

	new_dir();
	put_file("mappings/parents.json", "");
	put_file("phases/phases.json", "{\"namespace\": \"" NS_TEXT "\", \"phases\": []}\n");
	cfg = load();
	expect_line("mappings/parents.json:1: invalid JSON: unexpected end of file", "empty file");
	expect_errors(cfg, 1, "empty file");
	end_case(cfg);

	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("phases/phases.json",
		 "{\"namespace\": \"" NS_TEXT "\", \"phases\": [\n"
		 "  {\"phase\": 1, \"name\": \"base\", \"entities\": [\"parents\"]}]}\n"
		 "\n"
		 "}\n");
	cfg = load();
	expect_line("phases/phases.json:4: invalid JSON: unexpected text after the top-level value",
		    "text after the top-level value, at its line");
	expect_errors(cfg, 1, "text after the value");
	end_case(cfg);
}

static void test_unknown_key(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"email\": {\n"
		"      \"rule\": \"copy\",\n"
		"      \"from\": \"email\",\n"
		"      \"tranforms\": [\"trim\"]\n"
		"    }\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:10: /columns/email/tranforms: unknown key \"tranforms\" (expected one of: "
		    "from, value, template, transforms, on_invalid, default, or, sensitive, rule)",
		    "unknown column key: exact line, pointer and list");
	expect_errors(cfg, 1, "unknown column key");
	end_case(cfg);

	cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\",\n"
		"             \"filter\": []},\n"
		"  \"target\": {\"table\": \"users\", \"shema\": \"lms\"},\n"
		"  \"colums\": {}\n"
		"}\n");
	expect_line("mappings/users.json:4: /source/filter: unknown key \"filter\" (expected one of: "
		    "table, query, key, key_unique, filters, merge)", "unknown /source key");
	expect_line("mappings/users.json:5: /target/shema: unknown key \"shema\" (expected one of: "
		    "table, schema, id_column)", "unknown /target key");
	expect_line("mappings/users.json:6: /colums: unknown key \"colums\" (expected one of: "
		    "entity, description, source, lookups, target, defaults, columns, flags, owner)",
		    "unknown top-level key");
	expect_line("mappings/users.json:1: /: missing required key \"columns\"", "missing columns at the root");
	expect_errors(cfg, 4, "unknown keys in several places");
	end_case(cfg);
}

static void test_wrong_type(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\", \"description\": 5,\n"
		"  \"source\": {\"table\": \"users\",\n"
		"             \"key\": 5},\n"
		"  \"target\": \"users\",\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"email\": {\"rule\": \"copy\", \"from\": \"email\",\n"
		"      \"transforms\": \"trim\",\n"
		"      \"sensitive\": \"yes\"}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:2: /description: expected string, found int", "description of wrong type");
	expect_line("mappings/users.json:4: /source/key: expected a column name or an array of column names, found int",
		    "source key of wrong type");
	expect_line("mappings/users.json:5: /target: expected object, found string", "target of wrong type");
	expect_line("mappings/users.json:9: /columns/email/transforms: expected array, found string",
		    "transforms of wrong type");
	expect_line("mappings/users.json:10: /columns/email/sensitive: expected boolean, found string",
		    "sensitive of wrong type");
	expect_errors(cfg, 5, "wrong types");
	end_case(cfg);
}

static void test_unknown_rule(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"email\": {\"rule\": \"cpy\", \"from\": \"email\"}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:7: /columns/email/rule: unknown rule \"cpy\" "
		    "(expected one of: id, copy, constant, template, ref, json, i18n)",
		    "unknown rule: exact message");
	/* The one real id column must not be miscounted: an unknown rule is not an id rule. */
	expect_errors(cfg, 1, "unknown rule (no spurious id-count error)");
	end_case(cfg);

	cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"email\": {\"from\": \"email\"}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:7: /columns/email: missing required key \"rule\" "
		    "(one of: id, copy, constant, template, ref, json, i18n)", "missing rule key");
	expect_errors(cfg, 1, "missing rule (no spurious id-count error)");
	end_case(cfg);
}

static void test_unknown_transform(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"born\": {\"rule\": \"copy\", \"from\": \"birth\", \"transforms\": [\n"
		"      \"trim\",\n"
		"      {\n"
		"        \"fn\": \"datee\",\n"
		"        \"formats\": [\"DD/MM/YYYY\"]\n"
		"      }\n"
		"    ]},\n"
		"    \"left\": {\"rule\": \"copy\", \"from\": \"left_on\", \"transforms\": [\n"
		"      {\"fn\": \"date\", \"formats\": [\"DDD/MM/YYYY\"]}]},\n"
		"    \"note\": {\"rule\": \"copy\", \"from\": \"note\", \"transforms\": [\"trimm\"]}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:10: /columns/born/transforms/1/fn: unknown transform \"datee\"",
		    "unknown transform: pointer into transforms/1/fn at the fn line");
	expect_line("mappings/users.json:15: /columns/left/transforms/0/formats/0: unknown date format token \"DDD\" in \"DDD/MM/YYYY\"",
		    "bad transform argument: pointer into the argument");
	expect_line("mappings/users.json:16: /columns/note/transforms/0: unknown transform \"trimm\"",
		    "unknown transform given as a string step");
	expect_errors(cfg, 3, "transform errors");
	end_case(cfg);
}

static void test_duplicate_key(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"email\": {\"rule\": \"copy\", \"from\": \"email\"},\n"
		"    \"name\": \"name\",\n"
		"    \"email\": {\"rule\": \"copy\", \"from\": \"mail\"}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:9: /columns/email: duplicate key (the later one would silently win)",
		    "duplicate column: line of the second occurrence");
	/* Only the duplicate itself: the keys inside its value ("rule", "from") are not more duplicates. */
	expect_errors(cfg, 1, "duplicate column");
	end_case(cfg);

	cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\", \"table\": \"people\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\"id\": {\"rule\": \"id\"}},\n"
		"  \"entity\": \"users\"\n"
		"}\n");
	expect_line("mappings/users.json:3: /source/table: duplicate key (the later one would silently win)",
		    "duplicate nested key");
	expect_line("mappings/users.json:6: /entity: duplicate key (the later one would silently win)",
		    "duplicate top-level key");
	expect_errors(cfg, 2, "two duplicates");
	end_case(cfg);
}

static void test_missing_id(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"email\": \"email\"\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:5: /columns: exactly one column must have \"rule\": \"id\" (found 0)",
		    "missing id rule");
	expect_errors(cfg, 1, "missing id rule");
	end_case(cfg);

	cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"uuid\": {\"rule\": \"id\"}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:5: /columns: exactly one column must have \"rule\": \"id\" (found 2)",
		    "two id rules");
	expect_errors(cfg, 1, "two id rules");
	end_case(cfg);
}

static const char *users_ref(const char *entity)
{
	static char buf[1024];
	snprintf(buf, sizeof buf,
		 "{\n"
		 "  \"entity\": \"users\",\n"
		 "  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		 "  \"target\": {\"table\": \"users\"},\n"
		 "  \"columns\": {\n"
		 "    \"id\": {\"rule\": \"id\"},\n"
		 "    \"owner_id\": {\n"
		 "      \"rule\": \"ref\", \"entity\": \"%s\", \"from\": \"owner_id\"\n"
		 "    }\n"
		 "  }\n"
		 "}\n", entity);
	return buf;
}

static void test_references(void)
{
	Config *cfg = load_users(users_ref("nobody"));
	expect_line("mappings/users.json:7: /columns/owner_id: reference to unknown entity \"nobody\"",
		    "reference to an unknown entity");
	expect_errors(cfg, 1, "unknown referenced entity");
	end_case(cfg);

	/* parents (phase 1) refers to users (phase 2). */
	new_dir();
	put_file("mappings/parents.json",
		 "{\n"
		 "  \"entity\": \"parents\",\n"
		 "  \"source\": {\"table\": \"legacy_parents\", \"key\": \"id\"},\n"
		 "  \"target\": {\"table\": \"parents\"},\n"
		 "  \"columns\": {\n"
		 "    \"id\": {\"rule\": \"id\"},\n"
		 "    \"user_id\": {\"rule\": \"ref\", \"entity\": \"users\", \"from\": \"user_id\"}\n"
		 "  }\n"
		 "}\n");
	put_file("mappings/users.json", users_ref("parents"));
	put_file("phases/phases.json",
		 "{\n"
		 "  \"namespace\": \"" NS_TEXT "\",\n"
		 "  \"phases\": [\n"
		 "    {\"phase\": 1, \"name\": \"base\", \"entities\": [\"parents\"]},\n"
		 "    {\"phase\": 2, \"name\": \"people\", \"entities\": [\"users\"]}\n"
		 "  ]\n"
		 "}\n");
	cfg = load();
	/* users -> parents -> users is a cycle; it is reported once, at the reference closing it,
	 * rather than as a reference in the wrong direction. */
	expect_line("mappings/users.json:7: /columns/owner_id: reference cycle: parents -> users -> parents",
		    "two-entity cycle reported at the closing reference");
	expect_errors(cfg, 1, "two-entity cycle");
	end_case(cfg);

	new_dir();
	put_file("mappings/parents.json",
		 "{\n"
		 "  \"entity\": \"parents\",\n"
		 "  \"source\": {\"table\": \"legacy_parents\", \"key\": \"id\"},\n"
		 "  \"target\": {\"table\": \"parents\"},\n"
		 "  \"columns\": {\n"
		 "    \"id\": {\"rule\": \"id\"},\n"
		 "    \"user_id\": {\"rule\": \"ref\", \"entity\": \"users\", \"from\": \"user_id\"}\n"
		 "  }\n"
		 "}\n");
	put_file("mappings/users.json",
		 "{\n"
		 "  \"entity\": \"users\",\n"
		 "  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		 "  \"target\": {\"table\": \"users\"},\n"
		 "  \"columns\": {\"id\": {\"rule\": \"id\"}}\n"
		 "}\n");
	put_file("phases/phases.json", PHASES_PU);
	cfg = load();
	expect_line("mappings/parents.json:7: /columns/user_id: refers to entity \"users\" of a later phase (2 > 1)",
		    "reference to an entity of a later phase");
	expect_errors(cfg, 1, "later phase");
	end_case(cfg);

	/* Same phase, parent listed after its child. */
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/users.json", users_ref("parents"));
	put_file("phases/phases.json",
		 "{\n"
		 "  \"namespace\": \"" NS_TEXT "\",\n"
		 "  \"phases\": [\n"
		 "    {\"phase\": 1, \"name\": \"all\", \"entities\": [\"users\", \"parents\"]}\n"
		 "  ]\n"
		 "}\n");
	cfg = load();
	expect_line("mappings/users.json:7: /columns/owner_id: refers to entity \"parents\", which comes later in phase 1; list it first",
		    "reference to an entity later in the same phase");
	expect_errors(cfg, 1, "later in the same phase");
	end_case(cfg);

	/* The same, listed in the right order, loads. */
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/users.json", users_ref("parents"));
	put_file("phases/phases.json",
		 "{\"namespace\": \"" NS_TEXT "\", \"phases\": [\n"
		 "  {\"phase\": 1, \"name\": \"all\", \"entities\": [\"parents\", \"users\"]}]}\n");
	cfg = load();
	TAP_OK(cfg != NULL, "parent listed first in the same phase: loads");
	TAP_STR_EQ(g_err, "", "parent listed first: no message");
	end_case(cfg);

	/* A self reference must be deferred (resolved after the entity's last batch). */
	cfg = load_users(users_ref("users"));
	expect_line("mappings/users.json:7: /columns/owner_id: a reference of entity \"users\" to itself needs "
		    "\"deferred\": true and \"on_missing\": \"null\"",
		    "self reference without deferred");
	expect_errors(cfg, 1, "self reference");
	end_case(cfg);

	/* Deferred with on_missing null loads; deferred to another entity does not. */
	cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"owner_id\": {\"rule\": \"ref\", \"entity\": \"users\", \"from\": \"owner_id\", \"on_missing\": \"null\", \"deferred\": true}\n"
		"  }\n"
		"}\n");
	TAP_OK(cfg != NULL, "deferred self reference loads");
	TAP_OK(cfg && cfg->mappings[config_find_entity(cfg, "users")].cols[1].deferred, "deferred flag parsed");
	end_case(cfg);

	/* Key width mismatch. */
	cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"owner_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": [\"a\", \"b\"]}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:7: /columns/owner_id: entity \"parents\" has a 1-column key, the reference gives 2",
		    "reference key width mismatch");
	expect_errors(cfg, 1, "key width");
	end_case(cfg);

	/* A three-entity cycle a -> b -> c -> a. */
	new_dir();
	for (int i = 0; i < 3; i++) {
		char name[64], text[600];
		const char *ents = "abc";
		snprintf(name, sizeof name, "mappings/%c.json", ents[i]);
		snprintf(text, sizeof text,
			 "{\"entity\": \"%c\", \"source\": {\"table\": \"t\", \"key\": \"id\"},\n"
			 " \"target\": {\"table\": \"t\"},\n"
			 " \"columns\": {\"id\": {\"rule\": \"id\"},\n"
			 "   \"r\": {\"rule\": \"ref\", \"entity\": \"%c\", \"from\": \"r\"}}}\n",
			 ents[i], ents[(i + 1) % 3]);
		put_file(name, text);
	}
	put_file("phases/phases.json",
		 "{\"namespace\": \"" NS_TEXT "\", \"phases\": [\n"
		 "  {\"phase\": 1, \"name\": \"all\", \"entities\": [\"a\", \"b\", \"c\"]}]}\n");
	cfg = load();
	expect_line("mappings/c.json:4: /columns/r: reference cycle: a -> b -> c -> a", "three-entity cycle, once");
	expect_errors(cfg, 1, "three-entity cycle");
	end_case(cfg);
}

static void test_cycle_ab(void)
{
	new_dir();
	put_file("mappings/a.json",
		 "{\"entity\": \"a\", \"source\": {\"table\": \"ta\", \"key\": \"id\"},\n"
		 " \"target\": {\"table\": \"ta\"},\n"
		 " \"columns\": {\"id\": {\"rule\": \"id\"},\n"
		 "   \"b_id\": {\"rule\": \"ref\", \"entity\": \"b\", \"from\": \"b_id\"}}}\n");
	put_file("mappings/b.json",
		 "{\"entity\": \"b\", \"source\": {\"table\": \"tb\", \"key\": \"id\"},\n"
		 " \"target\": {\"table\": \"tb\"},\n"
		 " \"columns\": {\"id\": {\"rule\": \"id\"},\n"
		 "   \"a_id\": {\"rule\": \"ref\", \"entity\": \"a\", \"from\": \"a_id\"}}}\n");
	put_file("phases/phases.json",
		 "{\"namespace\": \"" NS_TEXT "\", \"phases\": [\n"
		 "  {\"phase\": 1, \"name\": \"one\", \"entities\": [\"a\"]},\n"
		 "  {\"phase\": 2, \"name\": \"two\", \"entities\": [\"b\"]}]}\n");
	Config *cfg = load();
	expect_line("mappings/b.json:4: /columns/a_id: reference cycle: a -> b -> a", "cycle a -> b -> a, once");
	expect_errors(cfg, 1, "cycle between a and b (no extra later-phase error)");
	end_case(cfg);
}

static void test_phases(void)
{
	/* An entity that no phase lists. */
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/users.json", users_ref("parents"));
	put_file("phases/phases.json",
		 "{\"namespace\": \"" NS_TEXT "\", \"phases\": [\n"
		 "  {\"phase\": 1, \"name\": \"base\", \"entities\": [\"parents\"]}]}\n");
	Config *cfg = load();
	expect_line("mappings/users.json:1: entity \"users\" is in no phase of phases/phases.json", "entity in no phase");
	expect_errors(cfg, 1, "entity in no phase");
	end_case(cfg);

	/* Unknown entity, an entity listed twice, a bad namespace, phases numbered 1, 3. */
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/users.json", users_ref("parents"));
	put_file("phases/phases.json",
		 "{\n"
		 "  \"namespace\": \"not-a-uuid\",\n"
		 "  \"phases\": [\n"
		 "    {\"phase\": 1, \"name\": \"base\",\n"
		 "     \"entities\": [\"parents\", \"ghost\"]},\n"
		 "    {\"phase\": 3, \"name\": \"people\",\n"
		 "     \"entities\": [\"users\", \"parents\"]}\n"
		 "  ]\n"
		 "}\n");
	cfg = load();
	expect_line("phases/phases.json:2: /namespace: \"not-a-uuid\" is not a UUID", "namespace not a UUID");
	expect_line("phases/phases.json:5: /phases/0/entities/1: unknown entity \"ghost\" (no mapping file declares it)",
		    "unknown entity in phases");
	expect_line("phases/phases.json:6: /phases/1/phase: phases must be numbered 1, 2, 3... in order: expected 2, found 3",
		    "phases numbered wrongly");
	expect_line("phases/phases.json:7: /phases/1/entities/1: entity \"parents\" is already in phase 1",
		    "entity listed in two phases");
	expect_errors(cfg, 4, "phases file errors");
	end_case(cfg);

	/* Structure errors of the phases file. */
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("phases/phases.json",
		 "{\n"
		 "  \"phases\": [\n"
		 "    {\"name\": \"base\", \"entities\": [\"parents\"]},\n"
		 "    {\"phase\": null, \"name\": \"x\", \"entities\": []},\n"
		 "    {\"phase\": 3, \"name\": \"\", \"entities\": \"parents\", \"extra\": 1}\n"
		 "  ]\n"
		 "}\n");
	cfg = load();
	expect_line("phases/phases.json:1: /: missing required key \"namespace\"", "namespace missing");
	expect_line("phases/phases.json:3: /phases/0: missing required key \"phase\"", "phase number missing");
	expect_line("phases/phases.json:4: /phases/1/phase: expected int, found null", "phase number null");
	expect_line("phases/phases.json:5: /phases/2/extra: unknown key \"extra\" (expected one of: phase, name, description, entities)",
		    "unknown key in a phase");
	expect_line("phases/phases.json:5: /phases/2/name: must not be empty", "empty phase name");
	expect_line("phases/phases.json:5: /phases/2/entities: expected array, found string", "entities not an array");
	/* A null phase number is one error (wrong type), not also "missing". */
	expect_errors(cfg, 6, "phases structure");
	end_case(cfg);

	/* No phases file at all, and no mappings directory. */
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	cfg = load();
	expect_line("phases/phases.json: cannot open: No such file or directory", "missing phases file");
	expect_errors(cfg, 1, "missing phases file");
	end_case(cfg);

	new_dir();
	char p[128];
	snprintf(p, sizeof p, "%s/mappings", g_dir);
	rmdir(p);
	put_file("phases/phases.json", "{\"namespace\": \"" NS_TEXT "\", \"phases\": []}\n");
	cfg = load();
	expect_line("mappings: cannot open mappings directory: No such file or directory", "missing mappings dir");
	expect_errors(cfg, 1, "missing mappings dir");
	end_case(cfg);

	new_dir();
	put_file("phases/phases.json", "{\"namespace\": \"" NS_TEXT "\", \"phases\": []}\n");
	cfg = load();
	expect_line("mappings: no mapping files (*.json)", "empty mappings dir");
	expect_errors(cfg, 1, "empty mappings dir");
	end_case(cfg);
}

static void test_policies(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"defaults\": {\"on_missing\": \"stub\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"born\": {\"rule\": \"copy\", \"from\": \"born\",\n"
		"      \"transforms\": [{\"fn\": \"date\", \"formats\": [\"DD/MM/YYYY\"]}],\n"
		"      \"on_invalid\": \"default\"},\n"
		"    \"sex\": {\"rule\": \"copy\", \"from\": \"sex\", \"on_invalid\": \"guess\"},\n"
		"    \"note\": {\"rule\": \"copy\", \"from\": \"note\", \"default\": null},\n"
		"    \"owner_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"owner_id\",\n"
		"      \"on_missing\": \"stub\"}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:5: /defaults/on_missing: unknown policy \"stub\" (expected one of: skip, null)",
		    "stub is no default on_missing policy");
	expect_line("mappings/users.json:8: /columns/born: \"on_invalid\": \"default\" needs a \"default\" value",
		    "on_invalid default without a default value");
	expect_line("mappings/users.json:11: /columns/sex/on_invalid: unknown policy \"guess\" (expected one of: skip, null, default)",
		    "unknown on_invalid policy");
	expect_line("mappings/users.json:12: /columns/note/default: a default must not be null (use \"on_invalid\": \"null\")",
		    "null default");
	expect_line("mappings/users.json:13: /columns/owner_id: \"on_missing\": \"stub\" needs a \"stub\" object giving the placeholder's columns",
		    "stub policy without stub columns");
	expect_errors(cfg, 5, "policy errors");
	end_case(cfg);
}

static void test_value_shapes(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"a\": {\"rule\": \"copy\", \"from\": \"a\", \"value\": 1},\n"
		"    \"b\": {\"rule\": \"constant\", \"from\": \"b\"},\n"
		"    \"c\": {\"rule\": \"template\", \"template\": \"X{bad col}\"},\n"
		"    \"d\": \"not a column\",\n"
		"    \"e\": {\"rule\": \"template\", \"template\": \"x}\"},\n"
		"    \"f\": {\"rule\": \"json\", \"fields\": {\"k\": {\"type\": \"number\"}}},\n"
		"    \"g\": {\"rule\": \"json\", \"fields\": {\"k\": {\"from\": \"g\", \"type\": \"date\"}}},\n"
		"    \"h\": {\"rule\": \"i18n\", \"langs\": {\"az\": \"h_az\"}, \"fallback\": [\"en\"]}\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:7: /columns/a: needs exactly one of \"from\", \"value\" or \"template\"",
		    "from and value together");
	expect_line("mappings/users.json:8: /columns/b: a constant rule needs \"value\"", "constant without value");
	expect_line("mappings/users.json:9: /columns/c/template: template \"X{bad col}\": \"{bad col}\" is not a column name",
		    "template with a bad column name");
	expect_line("mappings/users.json:10: /columns/d: \"not a column\" is not a source column name", "bad copy shorthand");
	expect_line("mappings/users.json:11: /columns/e/template: template \"x}\": stray '}' (write '}}' for a literal brace)",
		    "stray brace in a template");
	/* A json field must say where its value comes from, like any other value. */
	expect_line("mappings/users.json:12: /columns/f/fields/k: needs exactly one of \"from\", \"value\" or \"template\"",
		    "json field without a value source");
	expect_line("mappings/users.json:13: /columns/g/fields/k/type: unknown type \"date\" (expected string, number, boolean or json)",
		    "unknown json field type");
	expect_line("mappings/users.json:14: /columns/h/fallback/0: fallback language \"en\" is not one of \"langs\"",
		    "fallback language not in langs");
	expect_errors(cfg, 8, "value shapes (every error of one file)");
	end_case(cfg);
}


/* json-c (non-strict) accepts comments and trailing commas; lines must still be right. */
static void test_lenient_json(void)
{
	Config *cfg = load_users(
		"{\n"
		"  // the users of the LMS, one per person\n"
		"  \"entity\": \"users\", /* a comment\n"
		"     over two lines */\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\",},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"tags\": {\"rule\": \"copy\", \"from\": \"tags\", \"transforms\": [\"trim\",],},\n"
		"    \"email\": {\"rule\": \"copy\", \"from\": \"email\", \"tranforms\": []},\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:10: /columns/email/tranforms: unknown key \"tranforms\" (expected one of: "
		    "from, value, template, transforms, on_invalid, default, or, sensitive, rule)",
		    "after comments and trailing commas the line is still exact");
	expect_errors(cfg, 1, "comments and trailing commas");
	end_case(cfg);

	/* A key spelled with a \u escape is the same key to json-c. */
	cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": {\"table\": \"users\"},\n"
		"  \"columns\": {\n"
		"    \"id\": {\"rule\": \"id\"},\n"
		"    \"email\": \"email\",\n"
		"    \"na\\u006de\": {\"rule\": \"copy\", \"from\": \"name\", \"bad\": 1},\n"
		"    \"em\\u0061il\": \"mail\"\n"
		"  }\n"
		"}\n");
	expect_line("mappings/users.json:9: /columns/email: duplicate key (the later one would silently win)",
		    "a duplicate spelled with a \\u escape is found");
	expect_line("mappings/users.json:8: /columns/name/bad: unknown key \"bad\" (expected one of: "
		    "from, value, template, transforms, on_invalid, default, or, sensitive, rule)",
		    "a key spelled with a \\u escape has its own line");
	expect_errors(cfg, 2, "escaped keys");
	end_case(cfg);
}

/* A null "target" is one error (wrong type), not also "missing". */
static void test_null_member(void)
{
	Config *cfg = load_users(
		"{\n"
		"  \"entity\": \"users\",\n"
		"  \"source\": {\"table\": \"users\", \"key\": \"id\"},\n"
		"  \"target\": null,\n"
		"  \"columns\": {\"id\": {\"rule\": \"id\"}}\n"
		"}\n");
	expect_line("mappings/users.json:4: /target: expected object, found null", "null target: wrong type");
	expect_errors(cfg, 1, "null target");
	end_case(cfg);
}

/* Direct checks of the position scanner config_load relies on. */
static void test_jsonpos(void)
{
	static const char text[] =
		"{\n"                                   /* 1 */
		"  \"a\": [\n"                           /* 2 */
		"    1,\n"                               /* 3 */
		"    {\"b/c\": \"x\", \"t~\": true}\n"       /* 4 */
		"  ],\n"                                 /* 5 */
		"  \"\\ud83d\\ude00\": 1, \"q\\\"\": 2,\n"   /* 6 */
		"  \"d\": {\"e\": {\"f\": 1}, \"e\": 2},\n"   /* 7 */
		"  \"z\": [3, 4,],\n"                     /* 8 */
		"  \"a\": 0\n"                            /* 9 */
		"}\n";
	JsonPos *p = jsonpos_build(text, strlen(text));
	TAP_INT_EQ(jsonpos_line(p, ""), 1, "jsonpos: root on line 1");
	TAP_INT_EQ(jsonpos_line(p, "/a"), 2, "jsonpos: /a");
	TAP_INT_EQ(jsonpos_line(p, "/a/0"), 3, "jsonpos: array element 0");
	TAP_INT_EQ(jsonpos_line(p, "/a/1"), 4, "jsonpos: array element 1");
	TAP_INT_EQ(jsonpos_line(p, "/a/1/b~1c"), 4, "jsonpos: key with '/' escaped as ~1");
	TAP_INT_EQ(jsonpos_line(p, "/a/1/t~0"), 4, "jsonpos: key with '~' escaped as ~0");
	TAP_INT_EQ(jsonpos_line(p, "/\xf0\x9f\x98\x80"), 6, "jsonpos: key of a surrogate pair, as UTF-8");
	TAP_INT_EQ(jsonpos_line(p, "/q\""), 6, "jsonpos: key with an escaped quote");
	TAP_INT_EQ(jsonpos_line(p, "/d/e/f"), 7, "jsonpos: nested key");
	TAP_INT_EQ(jsonpos_line(p, "/z/1"), 8, "jsonpos: element before a trailing comma");
	TAP_INT_EQ(jsonpos_line(p, "/z/2"), 8, "jsonpos: no element after a trailing comma (parent line)");
	TAP_INT_EQ(jsonpos_line(p, "/d/nope/deeper"), 7, "jsonpos: unknown pointer: nearest ancestor");
	TAP_INT_EQ(jsonpos_line(p, "/missing"), 1, "jsonpos: unknown top-level pointer: root line");
	TAP_INT_EQ(jsonpos_duplicates(p), 2, "jsonpos: two duplicates (/d/e and /a), none inside them");
	int line = 0;
	const char *d0 = jsonpos_duplicates(p) > 0 ? jsonpos_duplicate(p, 0, &line) : NULL;
	TAP_STR_EQ(d0, "/d/e", "jsonpos: first duplicate pointer");
	TAP_INT_EQ(line, 7, "jsonpos: first duplicate line");
	const char *d1 = jsonpos_duplicates(p) > 1 ? jsonpos_duplicate(p, 1, &line) : NULL;
	TAP_STR_EQ(d1, "/a", "jsonpos: second duplicate pointer");
	TAP_INT_EQ(line, 9, "jsonpos: second duplicate line");
	jsonpos_free(p);
	TAP_INT_EQ(json_offset_line(text, 0), 1, "json_offset_line: offset 0");
	TAP_INT_EQ(json_offset_line(text, 2), 2, "json_offset_line: after the first newline");
	TAP_INT_EQ(json_offset_line(text, sizeof text - 1), 11, "json_offset_line: end of text");
}

/* Checking for cycles must not take exponential time on a DAG with shared parents. */
static void test_cycle_check_scales(void)
{
	const int n = 40;
	new_dir();
	for (int i = 0; i < n; i++) {
		char name[64], text[2048];
		int off = snprintf(text, sizeof text,
				   "{\"entity\": \"e%02d\", \"source\": {\"table\": \"t\", \"key\": \"id\"},"
				   " \"target\": {\"table\": \"t\"}, \"columns\": {\"id\": {\"rule\": \"id\"}", i);
		for (int j = i - 6 < 0 ? 0 : i - 6; j < i; j++)
			off += snprintf(text + off, sizeof text - (size_t)off,
					", \"r%d\": {\"rule\": \"ref\", \"entity\": \"e%02d\", \"from\": \"r%d\"}", j, j, j);
		snprintf(text + off, sizeof text - (size_t)off, "}}\n");
		snprintf(name, sizeof name, "mappings/e%02d.json", i);
		put_file(name, text);
	}
	char ph[4096];
	int off = snprintf(ph, sizeof ph, "{\"namespace\": \"" NS_TEXT "\", \"phases\": [{\"phase\": 1, \"name\": \"a\", \"entities\": [");
	for (int i = 0; i < n; i++)
		off += snprintf(ph + off, sizeof ph - (size_t)off, "%s\"e%02d\"", i ? ", " : "", i);
	snprintf(ph + off, sizeof ph - (size_t)off, "]}]}\n");
	put_file("phases/phases.json", ph);

	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		Config *cfg = config_load(g_dir);
		int rc = cfg ? 0 : 1;
		config_free(cfg);   /* valgrind follows a fork: no leak reports from the child */
		free(g_err);
		_exit(rc);
	}
	int status = 0;
	bool done = false;
	for (int t = 0; t < 500 && !done; t++) {   /* up to 5 s */
		if (waitpid(pid, &status, WNOHANG) == pid)
			done = true;
		else
			usleep(10000);
	}
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	TAP_OK(done, "40 entities, each referring to the 6 before it, load within 5 s");
	TAP_OK(done && WIFEXITED(status) && WEXITSTATUS(status) == 0, "and the config is valid");
	rm_tree(g_dir);
}

/* ---------------------------------------------------------------------------------------- */

static int src_index(const Mapping *m, const char *name)
{
	for (size_t i = 0; i < m->n_src_cols; i++)
		if (strcmp(m->src_cols[i], name) == 0)
			return (int)i;
	return -100;
}

static const ColumnRule *col(const Mapping *m, const char *name)
{
	for (size_t i = 0; i < m->n_cols; i++)
		if (strcmp(m->cols[i].name, name) == 0)
			return &m->cols[i];
	return NULL;
}

static void test_valid(void)
{
	new_dir();
	put_file("mappings/parents.json", PARENTS);
	put_file("mappings/children.json",
		 "{\n"
		 "  \"entity\": \"children\",\n"
		 "  \"description\": \"pupils\",\n"
		 "  \"source\": {\"table\": \"kids\", \"key\": [\"kid_id\", \"school_id\"],\n"
		 "             \"filters\": [{\"name\": \"test_rows\", \"where\": \"kid_id < 0\"}]},\n"
		 "  \"target\": {\"table\": \"children\", \"schema\": \"lms\", \"id_column\": \"uuid\"},\n"
		 "  \"defaults\": {\"on_invalid\": \"null\", \"on_missing\": \"null\"},\n"
		 "  \"columns\": {\n"
		 "    \"uuid\": {\"rule\": \"id\"},\n"
		 "    \"name\": {\"rule\": \"copy\", \"from\": \"full_name\", \"transforms\": [\"trim\"]},\n"
		 "    \"code\": {\"rule\": \"template\", \"template\": \"KID-{kid_id}-{grade}{{x}}\"},\n"
		 "    \"kind\": {\"rule\": \"constant\", \"value\": \"child\"},\n"
		 "    \"gone\": {\"rule\": \"constant\", \"value\": null},\n"
		 "    \"mother_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"mother_id\",\n"
		 "      \"on_missing\": \"stub\", \"stub\": {\"name\": \"mother of {full_name} ({key})\",\n"
		 "        \"flag\": {\"value\": true}, \"meta\": {\"value\": {\"stub\": 1}}, \"nothing\": {\"value\": null}}},\n"
		 "    \"father_id\": {\"rule\": \"ref\", \"entity\": \"parents\", \"from\": \"father_id\"},\n"
		 "    \"born\": \"birth_date\",\n"
		 "    \"meta\": {\"rule\": \"json\", \"fields\": {\n"
		 "      \"g\": {\"from\": \"grade\", \"type\": \"number\"},\n"
		 "      \"n\": \"full_name\",\n"
		 "      \"ok\": {\"from\": \"active\", \"type\": \"boolean\", \"omit_null\": true}}},\n"
		 "    \"title\": {\"rule\": \"i18n\",\n"
		 "      \"langs\": {\"az\": \"name_az\", \"en\": {\"from\": \"name_en\", \"or\": \"nick\"}},\n"
		 "      \"fallback\": [\"az\"], \"placeholder\": \"kid {kid_id}\"},\n"
		 "    \"score\": {\"rule\": \"copy\", \"from\": \"score\", \"on_invalid\": \"default\", \"default\": 0,\n"
		 "      \"transforms\": [\"int\"], \"sensitive\": true}\n"
		 "  }\n"
		 "}\n");
	put_file("phases/phases.json",
		 "{\n"
		 "  \"namespace\": \"0D9B6A1E-3F43-4C8E-9A51-7B2F1C0E8D42\",\n"
		 "  \"phases\": [\n"
		 "    {\"phase\": 1, \"name\": \"all\", \"description\": \"d\", \"entities\": [\"parents\", \"children\"]}\n"
		 "  ]\n"
		 "}\n");
	Config *cfg = load();
	TAP_OK(cfg != NULL, "valid config loads");
	TAP_STR_EQ(g_err, "", "valid config: nothing on stderr");
	if (!cfg) {
		end_case(cfg);
		return;
	}
	TAP_STR_EQ(cfg->namespace_text, NS_TEXT, "namespace is kept, lower-cased");
	TAP_INT_EQ(cfg->namespace_uuid[0], 0x0d, "namespace bytes parsed");
	TAP_INT_EQ(cfg->n_mappings, 2, "two mappings");
	int ci = config_find_entity(cfg, "children"), pi = config_find_entity(cfg, "parents");
	TAP_INT_EQ(ci, 0, "mappings are in file-name order: children first");
	TAP_INT_EQ(pi, 1, "parents second");
	TAP_INT_EQ(config_find_entity(cfg, "nobody"), -1, "unknown entity: -1");
	TAP_INT_EQ(cfg->n_phases, 1, "one phase");
	const Phase *ph = config_find_phase(cfg, 1);
	TAP_OK(ph && ph->n_entities == 2 && ph->entities[0] == pi && ph->entities[1] == ci,
	       "phase 1 lists parents then children by index");
	TAP_OK(config_find_phase(cfg, 2) == NULL, "no phase 2");
	TAP_STR_EQ(ph ? ph->name : NULL, "all", "phase name");

	const Mapping *m = &cfg->mappings[ci];
	TAP_INT_EQ(m->phase, 1, "children in phase 1");
	TAP_STR_EQ(m->target_schema, "lms", "target schema");
	TAP_STR_EQ(m->id_column, "uuid", "id column");
	TAP_STR_EQ(cfg->mappings[pi].target_schema, "public", "default target schema");
	TAP_STR_EQ(cfg->mappings[pi].id_column, "id", "default id column");
	TAP_INT_EQ(m->n_key, 2, "composite key");
	TAP_INT_EQ(m->n_filters, 1, "one filter");
	TAP_OK(m->merge == NULL, "no merge on a composite key");
	TAP_INT_EQ(m->n_cols, 11, "11 column rules");
	TAP_OK(m->sensitive_any, "a sensitive column marks the mapping");

	static const char *const want_cols[] = {
		"uuid", "name", "code", "kind", "gone", "mother_id", "father_id", "born", "meta", "title", "score",
	};
	bool order = m->n_cols == 11;
	for (size_t i = 0; order && i < 11; i++)
		order = strcmp(m->cols[i].name, want_cols[i]) == 0;
	TAP_OK(order, "columns keep the file's order");

	/* Source columns: keys, merge survivor, then by first use in column order. */
	static const char *const want_src[] = {
		"kid_id", "school_id", "full_name", "grade", "mother_id", "father_id",
		"birth_date", "active", "name_az", "name_en", "nick", "score",
	};
	size_t nw = sizeof want_src / sizeof *want_src;
	TAP_INT_EQ(m->n_src_cols, nw, "number of selected source columns");
	char got[512] = "", want[512] = "";
	for (size_t i = 0; i < m->n_src_cols; i++)
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", m->src_cols[i]);
	for (size_t i = 0; i < nw; i++)
		snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", i ? "," : "", want_src[i]);
	TAP_STR_EQ(got, want, "source columns in binding order");
	TAP_OK(m->key_idx[0] == 0 && m->key_idx[1] == 1, "key columns bound first");


	const ColumnRule *r = col(m, "uuid");
	TAP_OK(r && r->kind == RULE_ID, "uuid is the id rule");
	r = col(m, "name");
	TAP_OK(r && r->kind == RULE_COPY && r->value.col == src_index(m, "full_name") && r->value.chain,
	       "name: copy of full_name with a chain");
	TAP_INT_EQ(r ? (int)r->value.on_invalid : -1, POLICY_NULL, "name: on_invalid from /defaults");
	r = col(m, "code");
	TAP_OK(r && r->kind == RULE_TEMPLATE && r->value.tmpl && r->value.tmpl->n == 5, "code: template of 5 parts");
	if (r && r->value.tmpl && r->value.tmpl->n == 5) {
		const TemplatePart *tp = r->value.tmpl->parts;
		TAP_STR_EQ(tp[0].literal, "KID-", "template part 0 literal");
		TAP_OK(tp[1].column && !strcmp(tp[1].column, "kid_id") && tp[1].col == 0, "template part 1 is kid_id (col 0)");
		TAP_STR_EQ(tp[2].literal, "-", "template part 2 literal");
		TAP_OK(tp[3].column && !strcmp(tp[3].column, "grade") && tp[3].col == src_index(m, "grade"),
		       "template part 3 is grade");
		TAP_STR_EQ(tp[4].literal, "{x}", "template {{ }} are literal braces");
	}
	r = col(m, "kind");
	TAP_OK(r && r->kind == RULE_CONSTANT && r->value.has_constant && !r->value.is_null_constant &&
	       !strcmp(r->value.constant, "child") && r->value.col == -1, "kind: constant 'child', no column");
	r = col(m, "gone");
	TAP_OK(r && r->value.has_constant && r->value.is_null_constant && r->value.constant == NULL,
	       "gone: constant null");
	r = col(m, "mother_id");
	TAP_OK(r && r->kind == RULE_REF && r->ref_entity_index == pi && r->n_ref_from == 1 &&
	       r->ref_cols[0] == src_index(m, "mother_id") && r->on_missing == POLICY_STUB,
	       "mother_id: ref to parents, bound, stub policy");
	TAP_INT_EQ(r ? r->n_stub_cols : 0, 4, "mother_id: 4 stub columns");
	if (r && r->n_stub_cols == 4) {
		const StubColumn *sc = r->stub_cols;
		TAP_OK(!strcmp(sc[0].name, "name") && sc[0].tmpl && sc[0].tmpl->n == 5, "stub name is a template");
		if (sc[0].tmpl && sc[0].tmpl->n == 5) {
			TAP_INT_EQ(sc[0].tmpl->parts[1].col, src_index(m, "full_name"), "stub template child column bound");
			TAP_INT_EQ(sc[0].tmpl->parts[3].col, -2, "stub template {key} is the missing key (-2)");
		}
		TAP_OK(!strcmp(sc[1].name, "flag") && sc[1].constant && !strcmp(sc[1].constant, "true") && !sc[1].is_json,
		       "stub flag: constant true");
		TAP_OK(sc[2].constant && !strcmp(sc[2].constant, "{\"stub\":1}") && sc[2].is_json, "stub meta: JSON constant");
		TAP_OK(sc[3].constant == NULL && sc[3].is_null, "stub nothing: null");
	}
	r = col(m, "father_id");
	TAP_OK(r && r->on_missing == POLICY_NULL && r->ref_cols[0] == src_index(m, "father_id"),
	       "father_id: on_missing from /defaults");
	r = col(m, "born");
	TAP_OK(r && r->kind == RULE_COPY && r->value.col == src_index(m, "birth_date") && !r->value.chain,
	       "born: shorthand copy");
	r = col(m, "meta");
	TAP_OK(r && r->kind == RULE_JSON && r->n_fields == 3, "meta: json of 3 fields");
	if (r && r->n_fields == 3) {
		TAP_OK(!strcmp(r->fields[0].key, "g") && r->fields[0].type == JT_NUMBER &&
		       r->fields[0].value.col == src_index(m, "grade"), "json field g: number from grade");
		TAP_OK(!strcmp(r->fields[1].key, "n") && r->fields[1].type == JT_STRING &&
		       r->fields[1].value.col == src_index(m, "full_name"), "json field n: string from full_name");
		TAP_OK(r->fields[2].type == JT_BOOLEAN && r->fields[2].omit_null &&
		       r->fields[2].value.col == src_index(m, "active"), "json field ok: boolean, omit_null");
	}
	r = col(m, "title");
	TAP_OK(r && r->kind == RULE_I18N && r->n_langs == 2 && r->n_fallback == 1, "title: i18n of 2 langs");
	if (r && r->n_langs == 2) {
		TAP_OK(!strcmp(r->langs[0].lang, "az") && r->langs[0].value.col == src_index(m, "name_az"),
		       "title az bound");
		TAP_OK(!strcmp(r->langs[1].lang, "en") && r->langs[1].value.col == src_index(m, "name_en") &&
		       r->langs[1].value.or && r->langs[1].value.or->col == src_index(m, "nick"),
		       "title en bound, with its 'or' bound");
		TAP_OK(r->placeholder && r->placeholder->n == 2 && r->placeholder->parts[1].col == 0,
		       "placeholder {kid_id} bound to the key column");
	}
	r = col(m, "score");
	TAP_OK(r && r->value.on_invalid == POLICY_DEFAULT && r->value.default_value &&
	       !strcmp(r->value.default_value, "0") && r->value.sensitive, "score: default 0, sensitive");

	const Mapping *pm = &cfg->mappings[pi];
	TAP_INT_EQ(pm->n_src_cols, 2, "parents: two source columns");
	TAP_OK(pm->n_src_cols == 2 && !strcmp(pm->src_cols[0], "id") && !strcmp(pm->src_cols[1], "name"),
	       "parents: id then name");
	TAP_OK(strlen(config_hash(cfg)) == 16, "config hash is 16 hex digits");
	end_case(cfg);
}

int main(void)
{
	test_sanity();
	test_malformed_json();
	test_unknown_key();
	test_wrong_type();
	test_unknown_rule();
	test_unknown_transform();
	test_duplicate_key();
	test_missing_id();
	test_references();
	test_cycle_ab();
	test_phases();
	test_policies();
	test_value_shapes();
	test_lenient_json();
	test_null_member();
	test_jsonpos();
	test_valid();
	test_cycle_check_scales();
	free(g_err);
	return tap_done();
}
