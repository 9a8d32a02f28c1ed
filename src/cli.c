/*
 * src/cli.c — the command tree as data, per-command options, help, exit codes.
 *
 * Each command parses into EngineOptions, counts every usage error, prints them all, and
 * makes one engine call. Option values that carry connection strings are copied and the
 * password in argv is overwritten, so `ps` never shows it.
 */
#include "edumig/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/engine.h"
#include "edumig/report.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig_version.h"

typedef struct Command {
	const char *name;
	const char *summary;
	const char *usage;
	const char *help;          /* option lines, each with its default */
	int (*run)(const EngineOptions *o);
	bool needs_phase;
} Command;

#define COMMON_HELP \
	"  --config DIR         directory holding mappings/ and phases/ (default: .; env EDUMIG_CONFIG)\n" \
	"  --source CONNINFO    legacy database (default: env EDUMIG_SOURCE, then libpq's PG* variables)\n" \
	"  --target CONNINFO    new database (default: env EDUMIG_TARGET, then libpq's PG* variables)\n" \
	"  --log-dir DIR        where run logs (JSON lines) go (default: logs)\n" \
	"  -v, --verbose        debug messages\n" \
	"  -q, --quiet          errors only\n" \
	"  -h, --help           this help\n"

static const Command commands[] = {
	{"plan", "validate the configuration against both databases; show phases, entities, source counts",
	 "edumig plan [options]", COMMON_HELP, engine_plan, false},
	{"run", "run one phase (--phase N) or all (--all); resumes from checkpoints",
	 "edumig run (--phase N | --all) [--bulk] [options]",
	 "  --phase N            the phase to run\n"
	 "  --all                every phase in order\n"
	 "  --batch-size N       source rows per batch and transaction (default: 5000)\n"
	 "  --max-skips N|P%     stop once an entity has skipped more than N rows, or P% of the rows\n"
	 "                       read (default: no limit); the batch in progress commits first\n"
	 "  --bcrypt-cost N      override the bcrypt cost of the mappings (default: as mapped)\n"
	 "  --jobs N             with N > 1: up to N entities of a phase side by side (each in its own\n"
	 "                       process, one snapshot), each batch written by a thread of its own\n"
	 "                       while the next is read, bcrypt on N threads (default: 1: one entity\n"
	 "                       at a time, read, hash, write in turn; give it the number of cores)\n"
	 "  --retries N          transient target failures (lost connection, server restart, lock\n"
	 "                       timeout, deadlock) retried per batch, waiting 1, 2, 4 ... 32 s\n"
	 "                       (default: 5; 0 stops at the first); EDUMIG_LOCK_TIMEOUT_MS bounds\n"
	 "                       each wait for a lock on the target (default: 10000)\n"
	 "  --dry-run            transform and check everything in one transaction that is rolled back;\n"
	 "                       print the projected counts per entity and reason, write the projected\n"
	 "                       skip report (CSV) to the log directory; the target keeps nothing\n"
	 "  --update             delta runs (entities done before): also rewrite rows whose source row\n"
	 "                       changed since it moved, and re-read skipped rows that changed or whose\n"
	 "                       parent has moved since (default: off: new rows only; changed rows are\n"
	 "                       counted and left as they are)\n"
	 "  --apply-deletes      after the run, delete the target rows whose legacy row is gone from the\n"
	 "                       source, children first; a row other target rows still refer to is kept\n"
	 "                       and named (default: off: gone rows are only listed, see status)\n"
	 "  --bulk               load each target table of the phase that is empty at its start with\n"
	 "                       its foreign keys and non-unique indexes set aside, and rebuild them\n"
	 "                       (foreign keys validated) once the phase is complete; primary keys,\n"
	 "                       unique, CHECK and NOT NULL constraints stay live (default: off)\n" COMMON_HELP,
	 engine_run, true},
	{"status", "per entity: source rows, filtered, migrated, warned, skipped, unaccounted, state",
	 "edumig status [--json] [options]",
	 "  --json               machine-readable output\n" COMMON_HELP, engine_status, false},
	{"verify", "check the accounting identity, the id map against the target, and foreign keys; exit 1 on a failure",
	 "edumig verify [options]", COMMON_HELP, engine_verify, false},
	{"retry", "re-read the skipped rows of phase N from the current source; migrate those that now pass, then their children",
	 "edumig retry --phase N [--entity E] [--reason R] [options]",
	 "  --phase N            the phase whose skipped rows are re-read; later phases follow for rows\n"
	 "                       whose skipped parent has moved since\n"
	 "  --entity E           only this entity of the phase (default: all of them)\n"
	 "  --reason R           only rows skipped for this reason code (default: any)\n"
	 "  --batch-size N       as for run (default: 5000)\n"
	 "  --bcrypt-cost N      as for run\n"
	 "  --retries N          as for run (default: 5)\n" COMMON_HELP,
	 engine_retry, true},
	{"rollback", "remove what phase N and every later phase wrote (rows, placeholders, id map, skips, checkpoints)",
	 "edumig rollback --phase N [--force] [options]",
	 "  --phase N            the first phase to undo; every later phase is undone too\n"
	 "  --force              remove rows even when rows edumig did not write refer to them\n"
	 "                       (the target's foreign keys then decide; default: refuse and name them)\n" COMMON_HELP,
	 engine_rollback, true},
	{"report", "the skip report for data owners: every unresolved skip and warning, reasons, root causes",
	 "edumig report [--format csv|json|html] [--out PATH] [--phase N] [--entity E] [--reason R] [options]",
	 "  --format F           csv (default: one row per skip record), json (summary, reasons, root\n"
	 "                       causes, rows) or html (one self-contained page)\n"
	 "  --out PATH           file to write, or - for standard output\n"
	 "                       (default: LOG_DIR/report.csv, .json or .html)\n"
	 "  --split-by organization\n"
	 "                       csv only: one file per owning organization unit, named by its code, plus\n"
	 "                       _no_owner.csv and _index.csv, in the directory --out DIR\n"
	 "                       (default: LOG_DIR/report-by-organization)\n"
	 "  --phase N            only skips recorded by phase N (default: every phase)\n"
	 "  --entity E           only this entity (default: all)\n"
	 "  --reason R           only this reason code (default: any)\n"
	 "  --html-rows N        html: detailed records shown per entity, sampled over its reasons\n"
	 "                       (default: 1000; the counts are always exact)\n"
	 "                       json and html also read the source, for the live source counts of the\n"
	 "                       summary; csv reads the target only. Nothing is ever written to either.\n"
	 COMMON_HELP,
	 engine_report, false},
};

#define N_COMMANDS (sizeof commands / sizeof *commands)

static void print_usage(FILE *f)
{
	fprintf(f,
		"edumig %s — move a legacy PostgreSQL database into the new LMS, accountably\n\n"
		"usage: edumig COMMAND [options]\n       edumig COMMAND --help\n       edumig --version\n\ncommands:\n",
		EDUMIG_VERSION);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f,
		"\nexit codes: 0 done, 1 skips above --max-skips or verify failed, 2 usage or configuration error,\n"
		"            3 connection or server error\n");
}

static void print_command_help(const Command *c)
{
	printf("usage: %s\n\n%s.\n\noptions:\n%s", c->usage, c->summary, c->help);
}

bool cli_scrub_password(char *s)
{
	bool found = false;
	/* URI form: scheme://user:password@host */
	char *scheme = strstr(s, "://");
	if (scheme) {
		char *auth = scheme + 3;
		char *at = strchr(auth, '@');
		char *slash = strchr(auth, '/');
		if (at && (!slash || at < slash)) {
			char *colon = memchr(auth, ':', (size_t)(at - auth));
			if (colon) {
				for (char *p = colon + 1; p < at; p++)
					*p = '*';
				found = true;
			}
		}
	}
	/* key=value form, and URI query parameters: password=... */
	for (char *p = s; (p = strstr(p, "password")) != NULL; p += 8) {
		char *q = p + 8;
		while (*q == ' ')
			q++;
		if (*q != '=')
			continue;
		q++;
		while (*q == ' ')
			q++;
		char quote = (*q == '\'') ? '\'' : 0;
		if (quote)
			q++;
		for (; *q && (quote ? *q != quote : (*q != ' ' && *q != '&')); q++) {
			if (*q == '\\' && q[1])
				*q++ = '*';
			*q = '*';
		}
		found = true;
	}
	return found;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

enum { OPT_CONFIG = 256, OPT_SOURCE, OPT_TARGET, OPT_LOG_DIR, OPT_PHASE, OPT_ALL, OPT_BATCH, OPT_MAX_SKIPS,
       OPT_BCRYPT, OPT_JSON, OPT_FORCE, OPT_DRY_RUN, OPT_ENTITY, OPT_REASON, OPT_RETRIES, OPT_UPDATE,
       OPT_APPLY_DELETES, OPT_BULK, OPT_JOBS };

/* Options of the report command. */
enum { OPT_FORMAT = 512, OPT_OUT, OPT_SPLIT_BY, OPT_HTML_ROWS };

static const struct option long_opts[] = {
	{"config", required_argument, NULL, OPT_CONFIG},
	{"source", required_argument, NULL, OPT_SOURCE},
	{"target", required_argument, NULL, OPT_TARGET},
	{"log-dir", required_argument, NULL, OPT_LOG_DIR},
	{"phase", required_argument, NULL, OPT_PHASE},
	{"all", no_argument, NULL, OPT_ALL},
	{"batch-size", required_argument, NULL, OPT_BATCH},
	{"max-skips", required_argument, NULL, OPT_MAX_SKIPS},
	{"bcrypt-cost", required_argument, NULL, OPT_BCRYPT},
	{"json", no_argument, NULL, OPT_JSON},
	{"force", no_argument, NULL, OPT_FORCE},
	{"dry-run", no_argument, NULL, OPT_DRY_RUN},
	{"bulk", no_argument, NULL, OPT_BULK},
	{"entity", required_argument, NULL, OPT_ENTITY},
	{"reason", required_argument, NULL, OPT_REASON},
	{"retries", required_argument, NULL, OPT_RETRIES},
	{"update", no_argument, NULL, OPT_UPDATE},
	{"apply-deletes", no_argument, NULL, OPT_APPLY_DELETES},
	{"jobs", required_argument, NULL, OPT_JOBS},
	{"format", required_argument, NULL, OPT_FORMAT},
	{"out", required_argument, NULL, OPT_OUT},
	{"split-by", required_argument, NULL, OPT_SPLIT_BY},
	{"html-rows", required_argument, NULL, OPT_HTML_ROWS},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* Options a command accepts, by name (so `status --phase 3` is an error, not ignored). */
static bool option_allowed(const Command *c, int opt)
{
	switch (opt) {
	case OPT_PHASE:
		return strcmp(c->name, "run") == 0 || strcmp(c->name, "rollback") == 0 || strcmp(c->name, "retry") == 0 ||
		       strcmp(c->name, "report") == 0;
	case OPT_ENTITY:
	case OPT_REASON:
		return strcmp(c->name, "retry") == 0 || strcmp(c->name, "report") == 0;
	case OPT_FORMAT:
	case OPT_OUT:
	case OPT_SPLIT_BY:
	case OPT_HTML_ROWS:
		return strcmp(c->name, "report") == 0;
	case OPT_FORCE:
		return strcmp(c->name, "rollback") == 0;
	case OPT_BATCH:
	case OPT_BCRYPT:
	case OPT_RETRIES:
		return strcmp(c->name, "run") == 0 || strcmp(c->name, "retry") == 0;
	case OPT_DRY_RUN:
	case OPT_BULK:
	case OPT_ALL:
	case OPT_MAX_SKIPS:
	case OPT_UPDATE:
	case OPT_APPLY_DELETES:
	case OPT_JOBS:
		return strcmp(c->name, "run") == 0;
	case OPT_JSON:
		return strcmp(c->name, "status") == 0;
	default:
		return true;
	}
}

static int run_command(const Command *c, int argc, char **argv)
{
	EngineOptions o = {0};
	o.config_dir = getenv("EDUMIG_CONFIG");
	o.w.batch_size = 5000;
	o.w.retries = 5;
	o.w.jobs = 1;
	o.w.go_fd = -1;
	int errors = 0;
	bool help = false;
	char *source = NULL, *target = NULL;
	long long v;

	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "vqh", long_opts, NULL)) != -1) {
		if (opt != '?' && opt != ':' && !option_allowed(c, opt)) {
			fprintf(stderr, "edumig %s: option %s does not apply to this command\n", c->name, argv[optind - 1]);
			errors++;
			continue;
		}
		switch (opt) {
		case OPT_CONFIG:
			o.config_dir = optarg;
			break;
		case OPT_SOURCE:
			free(source);
			source = xstrdup(optarg);
			cli_scrub_password(optarg);
			break;
		case OPT_TARGET:
			free(target);
			target = xstrdup(optarg);
			cli_scrub_password(optarg);
			break;
		case OPT_LOG_DIR:
			o.log_dir = optarg;
			break;
		case OPT_PHASE:
			if (!parse_int(optarg, 1, 1000, &v)) {
				fprintf(stderr, "edumig %s: --phase takes a phase number (1, 2, ...), not '%s'\n", c->name, optarg);
				errors++;
			} else {
				o.phase = (int)v;
			}
			break;
		case OPT_ALL:
			o.all = true;
			break;
		case OPT_BATCH:
			if (!parse_int(optarg, 1, 10000000, &v)) {
				fprintf(stderr, "edumig %s: --batch-size takes a number from 1 to 10000000, not '%s'\n",
					c->name, optarg);
				errors++;
			} else {
				o.w.batch_size = (int)v;
			}
			break;
		case OPT_MAX_SKIPS: {
			size_t l = strlen(optarg);
			bool pct = l > 0 && optarg[l - 1] == '%';
			AUTOFREE char *num = xstrndup(optarg, pct ? l - 1 : l);
			char *end;
			errno = 0;
			double d = strtod(num, &end);
			if (errno || end == num || *end || d < 0 || (pct && d > 100)) {
				fprintf(stderr, "edumig %s: --max-skips takes a row count N or a percentage P%%, not '%s'\n",
					c->name, optarg);
				errors++;
			} else {
				o.w.max_skips_set = true;
				o.w.max_skips_pct = pct;
				o.w.max_skips = d;
			}
			break;
		}
		case OPT_BCRYPT:
			if (!parse_int(optarg, 4, 31, &v)) {
				fprintf(stderr, "edumig %s: --bcrypt-cost takes a number from 4 to 31, not '%s'\n", c->name,
					optarg);
				errors++;
			} else {
				o.bcrypt_cost = (int)v;
			}
			break;
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_FORCE:
			o.force = true;
			break;
		case OPT_DRY_RUN:
			o.w.dry_run = true;
			break;
		case OPT_UPDATE:
			o.w.update = true;
			break;
		case OPT_JOBS:
			if (!parse_int(optarg, 1, 256, &v)) {
				fprintf(stderr, "edumig %s: --jobs takes a number from 1 to 256, not '%s'\n", c->name, optarg);
				errors++;
			} else {
				o.w.jobs = (int)v;
			}
			break;
		case OPT_APPLY_DELETES:
			o.w.apply_deletes = true;
			break;
		case OPT_BULK:
			o.bulk = true;
			break;
		case OPT_ENTITY:
			o.entity = optarg;
			break;
		case OPT_RETRIES:
			if (!parse_int(optarg, 0, 20, &v)) {
				fprintf(stderr, "edumig %s: --retries takes a number from 0 to 20, not '%s'\n", c->name, optarg);
				errors++;
			} else {
				o.w.retries = (int)v;
			}
			break;
		case OPT_REASON:
			o.reason = optarg;
			break;
		case OPT_FORMAT:
			o.report_format = optarg;
			break;
		case OPT_OUT:
			o.report_out = optarg;
			break;
		case OPT_SPLIT_BY:
			if (strcmp(optarg, "organization") != 0) {
				fprintf(stderr, "edumig %s: --split-by takes 'organization', not '%s'\n", c->name, optarg);
				errors++;
			} else {
				o.report_split = true;
			}
			break;
		case OPT_HTML_ROWS:
			if (!parse_int(optarg, 1, 1000000, &v)) {
				fprintf(stderr, "edumig %s: --html-rows takes a number from 1 to 1000000, not '%s'\n", c->name,
					optarg);
				errors++;
			} else {
				o.report_html_rows = (int)v;
			}
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		case 'q':
			log_set_level(LOG_ERROR);
			break;
		case 'h':
			help = true;
			break;
		default:
			fprintf(stderr, "edumig %s: unknown option or missing value: %s\n", c->name, argv[optind - 1]);
			errors++;
			break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "edumig %s: unexpected argument '%s'\n", c->name, argv[optind]);
		errors++;
	}
	if (help) {
		print_command_help(c);
		free(source);
		free(target);
		return EXIT_OK_;
	}
	if (c->needs_phase && !errors && strcmp(c->name, "run") == 0 && (o.phase > 0) == o.all) {
		fprintf(stderr, "edumig %s: give exactly one of --phase N or --all\n", c->name);
		errors++;
	} else if (c->needs_phase && !errors && strcmp(c->name, "run") != 0 && o.phase == 0) {
		fprintf(stderr, "edumig %s: --phase N is required\n", c->name);
		errors++;
	}
	if (o.w.dry_run && o.bulk) {
		/* A dry run is one transaction rolled back at the end: nothing to set aside or rebuild. */
		fprintf(stderr, "edumig %s: --dry-run and --bulk cannot be combined: a dry run writes nothing, so "
			"there is no load to speed up\n", c->name);
		errors++;
	}
	if (errors) {
		fprintf(stderr, "usage: %s (see edumig %s --help)\n", c->usage, c->name);
		free(source);
		free(target);
		return EXIT_USAGE;
	}
	o.source = source;
	o.target = target;
	o.command_line = c->name;
	int rc = c->run(&o);
	free(source);
	free(target);
	return rc;
}

/*
 * Options may come before the command ("edumig --config X run --all"): the command word is
 * moved to argv[1], skipping the values of options that take one.
 */
static void hoist_command(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-') {
			char *cmd = argv[i];
			memmove(&argv[2], &argv[1], (size_t)(i - 1) * sizeof *argv);
			argv[1] = cmd;
			return;
		}
		if (strcmp(a, "--") == 0)
			return;
		if (a[1] == '-' && !strchr(a, '=')) {
			for (const struct option *o = long_opts; o->name; o++)
				if (strcmp(a + 2, o->name) == 0 && o->has_arg == required_argument)
					i++;
		}
	}
}

int cli_main(int argc, char **argv)
{
	if (argc < 2) {
		print_usage(stderr);
		return EXIT_USAGE;
	}
	hoist_command(argc, argv);
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		print_usage(stdout);
		return EXIT_OK_;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("edumig %s\n", EDUMIG_VERSION);
		return EXIT_OK_;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(cmd, commands[i].name) == 0)
			return run_command(&commands[i], argc - 1, argv + 1);
	fprintf(stderr, "edumig: unknown command '%s'\n\n", cmd);
	print_usage(stderr);
	return EXIT_USAGE;
}
