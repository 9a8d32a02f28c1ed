/*
 * tests/fuzz/fuzz_config.c — libFuzzer harness for config_load() (src/config.c, src/jsonpos.c,
 * and the transform compiler it calls).
 *
 * Built twice (tests/fuzz/meson.build):
 *   fuzz_mapping  the input is mappings/x.json; phases/phases.json is fixed
 *   fuzz_phases   the input is phases/phases.json (-DFUZZ_PHASES=1); mappings/x.json is fixed
 * Both directories also hold a fixed parent entity "p" (phase 1) so that references, their
 * phase order and the cycle search are reachable, not only the parser.
 *
 * Each process makes its own configuration directory with mkdtemp(), so parallel jobs (-jobs=N,
 * -fork=N) never share files; it is removed at exit. The directory is made under
 * $EDUMIG_FUZZ_TMPDIR, else /dev/shm when it is a writable directory, else $TMPDIR, else /tmp.
 * A memory file system matters: on ext4, a file truncated and written again is flushed to
 * the disk when it is closed (auto_da_alloc), which made one execution wait ~3 ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edumig/config.h"

#ifndef FUZZ_PHASES
#define FUZZ_PHASES 0
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char PHASES_JSON[] =
	"{\n"
	"  \"namespace\": \"8f6c1d2e-3b4a-5c6d-8e7f-90a1b2c3d4e5\",\n"
	"  \"description\": \"fuzzing: a fixed parent entity, then the entity under test\",\n"
	"  \"phases\": [\n"
	"    {\"phase\": 1, \"name\": \"parents\", \"entities\": [\"p\"]},\n"
	"    {\"phase\": 2, \"name\": \"fuzzed\", \"entities\": [\"x\"]}\n"
	"  ]\n"
	"}\n";

static const char PARENT_JSON[] =
	"{\n"
	"  \"entity\": \"p\",\n"
	"  \"source\": {\"table\": \"parents\", \"key\": \"id\", \"key_unique\": true},\n"
	"  \"target\": {\"table\": \"parents\"},\n"
	"  \"columns\": {\"id\": {\"rule\": \"id\"}, \"name\": \"name\"}\n"
	"}\n";

/* The fixed entity "x" of fuzz_phases: one rule of each kind, a reference to "p" and a
 * deferred self-reference. */
static const char MAPPING_JSON[] =
	"{\n"
	"  \"entity\": \"x\",\n"
	"  \"source\": {\"table\": \"things\", \"key\": \"id\",\n"
	"             \"filters\": [{\"name\": \"inactive\", \"where\": \"active = 0\"}]},\n"
	"  \"target\": {\"table\": \"things\"},\n"
	"  \"columns\": {\n"
	"    \"id\": {\"rule\": \"id\"},\n"
	"    \"p_id\": {\"rule\": \"ref\", \"entity\": \"p\", \"from\": \"p_id\", \"on_missing\": \"null\"},\n"
	"    \"parent_id\": {\"rule\": \"ref\", \"entity\": \"x\", \"from\": \"parent_id\",\n"
	"                  \"deferred\": true, \"on_missing\": \"null\"},\n"
	"    \"code\": {\"rule\": \"template\", \"template\": \"X{id}\"},\n"
	"    \"name\": {\"rule\": \"copy\", \"from\": \"name\", \"transforms\": [\"trim\", \"nullif_empty\"]}\n"
	"  }\n"
	"}\n";

static char dir[4096];
static char fuzzed_path[4200];
static char *fixed_paths[3];
static size_t n_fixed;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_config: %s: %s\n", what, strerror(errno));
	abort();
}

/* Writes @n bytes to @path (created or truncated); aborts on failure: the harness is broken. */
static void write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die(path);
	const char *p = data;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die(path);
		p += w;
		n -= (size_t)w;
	}
	if (close(fd) != 0)
		die(path);
}

static char *path_in_dir(const char *rel)
{
	size_t n = strlen(dir) + strlen(rel) + 2;
	char *p = malloc(n);
	if (!p)
		die("malloc");
	int r = snprintf(p, n, "%s/%s", dir, rel);
	if (r < 0 || (size_t)r >= n)
		die("path too long");
	return p;
}

static void add_fixed(const char *rel, const char *text)
{
	char *p = path_in_dir(rel);
	write_file(p, text, strlen(text));
	fixed_paths[n_fixed++] = p;
}

static void remove_dir(void)
{
	unlink(fuzzed_path);
	for (size_t i = 0; i < n_fixed; i++) {
		unlink(fixed_paths[i]);
		free(fixed_paths[i]);
	}
	char sub[4200];
	snprintf(sub, sizeof sub, "%s/mappings", dir);
	rmdir(sub);
	snprintf(sub, sizeof sub, "%s/phases", dir);
	rmdir(sub);
	rmdir(dir);
}

/*
 * LLVMFuzzerInitialize - make the configuration directory and silence config_load's messages.
 *
 * config_load() prints every error with fprintf(stderr, ...). Redirecting file descriptor 2
 * would also silence libFuzzer's progress lines and crash reports, which it prints through
 * its own FILE copy of fd 2. So the C library's stderr stream is replaced instead (glibc's
 * stdin/stdout/stderr are assignable variables): the code under test writes into a buffered
 * /dev/null stream, while libFuzzer and the sanitizers keep the real standard error.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *tmp = getenv("EDUMIG_FUZZ_TMPDIR");
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	int r = snprintf(dir, sizeof dir, "%s/edumig-fuzz-config.XXXXXX", tmp);
	if (r < 0 || (size_t)r >= sizeof dir)
		die("TMPDIR too long");
	if (!mkdtemp(dir))
		die(dir);
	char *m = path_in_dir("mappings"), *ph = path_in_dir("phases");
	if (mkdir(m, 0700) != 0 || mkdir(ph, 0700) != 0)
		die("mkdir");
	free(m);
	free(ph);
	atexit(remove_dir);

	add_fixed("mappings/p.json", PARENT_JSON);
	const char *fuzzed = FUZZ_PHASES ? "phases/phases.json" : "mappings/x.json";
	if (FUZZ_PHASES)
		add_fixed("mappings/x.json", MAPPING_JSON);
	else
		add_fixed("phases/phases.json", PHASES_JSON);
	r = snprintf(fuzzed_path, sizeof fuzzed_path, "%s/%s", dir, fuzzed);
	if (r < 0 || (size_t)r >= sizeof fuzzed_path)
		die("path too long");

	FILE *null = fopen("/dev/null", "w");
	if (!null)
		die("/dev/null");
	stderr = null;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	write_file(fuzzed_path, data, size);
	Config *cfg = config_load(dir);
	if (cfg) {
		/* A configuration that loads is whole: every phase entity resolves to a mapping. */
		for (size_t i = 0; i < cfg->n_phases; i++)
			for (size_t k = 0; k < cfg->phases[i].n_entities; k++) {
				int e = cfg->phases[i].entities[k];
				if (e < 0 || (size_t)e >= cfg->n_mappings)
					abort();
				if (config_find_entity(cfg, cfg->mappings[e].entity) != e)
					abort();
			}
		(void)config_hash(cfg);
		config_free(cfg);
	}
	return 0;
}
