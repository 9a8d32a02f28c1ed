/*
 * include/edumig/engine.h — what the commands do, behind the CLI: plan, run, status, verify.
 *
 * The CLI fills EngineOptions and calls one function; each returns a process exit code
 * (EXIT_* below, DESIGN §5), so only main.c/cli*.c ever end the process.
 */
#ifndef EDUMIG_ENGINE_H
#define EDUMIG_ENGINE_H

#include <stdbool.h>

#include "edumig/worker.h"

#define EXIT_OK_ 0         /* done */
#define EXIT_SKIPS 1       /* finished, but skips above the threshold, or verify failed */
#define EXIT_USAGE 2       /* bad command line or configuration */
#define EXIT_SERVER 3      /* connection or server error */

typedef struct EngineOptions {
	const char *config_dir;
	const char *source;       /* conninfo; NULL: EDUMIG_SOURCE, then libpq defaults */
	const char *target;
	int phase;                /* 0 = none given */
	bool all;
	bool json;
	bool force;               /* rollback: even when other rows refer to what it removes */
	bool bulk;                /* run: empty tables load with foreign keys and indexes set aside */
	const char *entity;       /* retry, report: only this entity (NULL: all) */
	const char *reason;       /* retry, report: only rows skipped for this reason (NULL: any) */
	int bcrypt_cost;          /* 0 = as the mappings say */
	const char *log_dir;
	const char *command_line; /* recorded in edumig.runs */
	WorkerOptions w;
	/* report (see report.h) */
	const char *report_format;   /* "csv" (default), "json" or "html" */
	const char *report_out;      /* file, "-" for stdout, or a directory with report_split;
	                              * NULL: LOG_DIR/report.FORMAT (LOG_DIR/report-by-organization) */
	bool report_split;           /* one CSV per owning organization unit */
	int report_html_rows;        /* detailed rows shown per entity in HTML; 0: the default */
} EngineOptions;

int engine_plan(const EngineOptions *o);
int engine_run(const EngineOptions *o);
int engine_status(const EngineOptions *o);
int engine_verify(const EngineOptions *o);
int engine_rollback(const EngineOptions *o);
int engine_retry(const EngineOptions *o);

#endif /* EDUMIG_ENGINE_H */
