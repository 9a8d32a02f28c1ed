/*
 * include/edumig/pg.h — libpq helpers: connect, run, COPY in and out, errors, quoting.
 *
 * Errors are logged once, here, where the server's SQLSTATE, constraint and message are at
 * hand, as "[TARGET pid] [23505] message"; callers return false (pgcopydb's habit).
 * Connection strings are never logged: only host, port, database and user (pg_safe_name).
 */
#ifndef EDUMIG_PG_H
#define EDUMIG_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct PgConn {
	PGconn *conn;
	const char *role;          /* "SOURCE" or "TARGET", for messages */
	char safe_name[256];       /* user@host:port/db, never the password */
	char last_sqlstate[6];     /* of the last failure seen on this connection */
	int lock_timeout_ms;       /* target: how long a statement waits for a lock (0: forever) */
} PgConn;

/* What the server said when a statement failed. Free with pg_error_clear(). */
typedef struct PgError {
	char sqlstate[6];
	char *message;
	char *detail;
	char *constraint;
	char *table;
	char *column;
} PgError;

void pg_error_clear(PgError *e);
/* SQLSTATE classes 22 (data exception) and 23 (integrity violation): the rows are at fault. */
bool pg_error_is_data(const PgError *e);

/**
 * pg_connect - connect with a conninfo string or URI (NULL/empty: libpq's PG* defaults).
 * @env_name: the environment variable the string came from, for messages ("EDUMIG_SOURCE")
 * Logs a clear message that never contains the password on failure.
 */
bool pg_connect(PgConn *c, const char *conninfo, const char *role);
/* A second connection with @like's settings (same server, database, user, role). */
bool pg_connect_like(PgConn *c, const PgConn *like);
/* Re-establishes a lost connection with the same parameters and session settings. */
bool pg_reconnect(PgConn *c);
/* True when the last failure may pass if tried again: connection lost, server shutting
 * down or restarting, lock timeout, deadlock, serialization failure. */
bool pg_failure_transient(const PgConn *c);
void pg_close(PgConn *c);
bool pg_ok(const PgConn *c);

/* Runs a statement with no result rows; logs and returns false on error (details in @err
 * when not NULL). */
bool pg_exec(PgConn *c, const char *sql, PgError *err);
/* Same with text parameters ($1..$n; a NULL pointer is SQL NULL). */
bool pg_exec_params(PgConn *c, const char *sql, int n, const char *const *params, PgError *err);
/* Runs a query; returns its result (PQclear it) or NULL after logging. */
PGresult *pg_query(PgConn *c, const char *sql, int n, const char *const *params);
/* Runs a query returning one value; copies it into @out (NULL value -> false, "" ). */
bool pg_query_value(PgConn *c, const char *sql, int n, const char *const *params, char **out);

/* Sets a session setting through a parameter, so COPY statements (which take no
 * parameters) can read values with current_setting() instead of pasting them into SQL. */
bool pg_set_setting(PgConn *c, const char *name, const char *value);

/* COPY ... FROM STDIN */
bool pg_copy_in_start(PgConn *c, const char *sql, PgError *err);
bool pg_copy_in_put(PgConn *c, const char *buf, size_t n);
/* Ends the COPY; false with @err filled when the server rejected the data. */
bool pg_copy_in_end(PgConn *c, PgError *err);

/* COPY ... TO STDOUT: start, then pg_copy_out_row until it returns 0 (done) or -1 (error). */
bool pg_copy_out_start(PgConn *c, const char *sql);
/* pg_copy_out_start in two steps: the statement is sent, and the server computes it while
 * the caller goes on (a server announces a COPY only with its first rows, which for a query
 * that sorts comes late); pg_copy_out_started then waits for it to begin. */
bool pg_copy_out_send(PgConn *c, const char *sql);
bool pg_copy_out_started(PgConn *c, const char *sql);
/* Returns the row length (>0) with *row set (release with PQfreemem), 0 at the end, -1 on
 * error (logged). */
int pg_copy_out_row(PgConn *c, char **row);

/* PQescapeIdentifier into a malloc'd string (never NULL: aborts on OOM). "a.b" is NOT split. */
char *pg_ident(PgConn *c, const char *name);
/* schema.table quoted: "schema"."table". */
char *pg_qualified(PgConn *c, const char *schema, const char *table);
/* Opens a read-only REPEATABLE READ transaction on @c inside @snapshot (pg_export_snapshot's
 * id, from a transaction still open on another session). */
bool pg_join_snapshot(PgConn *c, const char *snapshot);

/* Logs a failed result as [ROLE pid] [SQLSTATE] message, plus detail and context. */
void pg_log_result(PgConn *c, const PGresult *r, const char *what);

#endif /* EDUMIG_PG_H */
