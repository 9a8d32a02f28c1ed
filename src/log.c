/*
 * src/log.c — log lines on stderr and the run's JSON-lines file.
 *
 * A mutex serialises writers because parallel workers log from their own threads.
 */
#include "edumig/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>

static LogLevel min_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *jsonl;
static bool progress_pending;

static const char *level_name[] = {"DEBUG", "INFO", "WARN", "ERROR", "QUIET"};

void log_set_level(LogLevel min)
{
	min_level = min;
}

LogLevel log_get_level(void)
{
	return min_level;
}

bool log_is_tty(void)
{
	return isatty(STDERR_FILENO) == 1;
}

static void stamp(char *buf, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(buf, n, "%H:%M:%S", &tm);
}

void log_msg(LogLevel level, const char *fmt, ...)
{
	if (level < min_level)
		return;
	char ts[16];
	stamp(ts, sizeof ts);
	pthread_mutex_lock(&log_lock);
	if (progress_pending) {
		fputc('\n', stderr);
		progress_pending = false;
	}
	fprintf(stderr, "%s %-5s ", ts, level_name[level]);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&log_lock);
}

void log_progress(const char *fmt, ...)
{
	if (LOG_INFO < min_level)
		return;
	char ts[16];
	stamp(ts, sizeof ts);
	pthread_mutex_lock(&log_lock);
	va_list ap;
	va_start(ap, fmt);
	if (log_is_tty()) {
		fprintf(stderr, "\r\033[K%s ", ts);
		vfprintf(stderr, fmt, ap);
		progress_pending = true;
	} else {
		fprintf(stderr, "%s %-5s ", ts, "INFO");
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

bool log_jsonl_open(const char *path)
{
	FILE *f = fopen(path, "a");
	if (!f) {
		log_error("cannot open run log %s: %s", path, strerror(errno));
		return false;
	}
	pthread_mutex_lock(&log_lock);
	if (jsonl)
		fclose(jsonl);
	jsonl = f;
	pthread_mutex_unlock(&log_lock);
	return true;
}

void log_jsonl_write(const char *json_text)
{
	pthread_mutex_lock(&log_lock);
	if (jsonl) {
		fputs(json_text, jsonl);
		fputc('\n', jsonl);
	}
	pthread_mutex_unlock(&log_lock);
}

void log_jsonl_write_block(const char *data, size_t len)
{
	pthread_mutex_lock(&log_lock);
	if (jsonl) {
		fwrite(data, 1, len, jsonl);
		fflush(jsonl);
	}
	pthread_mutex_unlock(&log_lock);
}

void log_jsonl_close(void)
{
	pthread_mutex_lock(&log_lock);
	if (jsonl) {
		fclose(jsonl);
		jsonl = NULL;
	}
	pthread_mutex_unlock(&log_lock);
}
