/*
 * include/edumig/log.h — human log lines on stderr, and the run's JSON-lines log file.
 *
 * Messages never carry connection passwords: callers log scrubbed connection strings only
 * (pg_conninfo_safe in pg.h).
 */
#ifndef EDUMIG_LOG_H
#define EDUMIG_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum LogLevel {
	LOG_DEBUG = 0,
	LOG_INFO = 1,
	LOG_WARN = 2,
	LOG_ERROR = 3,
	LOG_QUIET = 4,
} LogLevel;

void log_set_level(LogLevel min);
LogLevel log_get_level(void);
void log_msg(LogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* True when stderr is a terminal: progress is then redrawn in place. */
bool log_is_tty(void);
/* A progress line: redrawn in place on a terminal, else printed as an INFO line. */
void log_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * log_jsonl_open - append JSON lines (one object per line) to @path for the rest of the run.
 * Returns false (after logging why) when the file cannot be opened.
 */
bool log_jsonl_open(const char *path);
/* Writes one line (a complete JSON object text, no newline); ignored when no file is open. */
void log_jsonl_write(const char *json_text);
/* Writes already newline-terminated lines as they are. */
void log_jsonl_write_block(const char *data, size_t len);
void log_jsonl_close(void);

#endif /* EDUMIG_LOG_H */
