/*
 * src/pg.c — libpq helpers (see pg.h).
 */
#include "edumig/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/log.h"
#include "edumig/mem.h"

void pg_error_clear(PgError *e)
{
	if (!e)
		return;
	free(e->message);
	free(e->detail);
	free(e->constraint);
	free(e->table);
	free(e->column);
	memset(e, 0, sizeof *e);
}

bool pg_error_is_data(const PgError *e)
{
	return e->sqlstate[0] == '2' && (e->sqlstate[1] == '2' || e->sqlstate[1] == '3');
}

static char *dup_field(const PGresult *r, int code)
{
	const char *v = PQresultErrorField(r, code);
	return v ? xstrdup(v) : NULL;
}

static void note_state(PgConn *c, const PGresult *r)
{
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	snprintf(c->last_sqlstate, sizeof c->last_sqlstate, "%s", st ? st : "08006");
}

static void fill_error(PgError *e, PgConn *c, const PGresult *r)
{
	note_state(c, r);
	if (!e)
		return;
	pg_error_clear(e);
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	snprintf(e->sqlstate, sizeof e->sqlstate, "%s", st ? st : "08006");
	if (r && PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY))
		e->message = dup_field(r, PG_DIAG_MESSAGE_PRIMARY);
	else
		e->message = xstrdup(c->conn ? PQerrorMessage(c->conn) : "no connection");
	/* libpq messages end with a newline; reports want one line. */
	size_t l = strlen(e->message);
	while (l && (e->message[l - 1] == '\n' || e->message[l - 1] == ' '))
		e->message[--l] = '\0';
	if (r) {
		e->detail = dup_field(r, PG_DIAG_MESSAGE_DETAIL);
		e->constraint = dup_field(r, PG_DIAG_CONSTRAINT_NAME);
		e->table = dup_field(r, PG_DIAG_TABLE_NAME);
		e->column = dup_field(r, PG_DIAG_COLUMN_NAME);
	}
}

void pg_log_result(PgConn *c, const PGresult *r, const char *what)
{
	note_state(c, r);
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *ctx = r ? PQresultErrorField(r, PG_DIAG_CONTEXT) : NULL;
	int pid = c->conn ? PQbackendPID(c->conn) : 0;
	if (!msg && c->conn)
		msg = PQerrorMessage(c->conn);
	log_error("[%s %d] [%s] %s: %s", c->role, pid, st ? st : "-----", what,
		  msg ? msg : "unknown error");
	if (detail)
		log_error("[%s %d] Detail: %s", c->role, pid, detail);
	if (ctx)
		log_error("[%s %d] Context: %s", c->role, pid, ctx);
}

static bool session_setup(PgConn *c);

/* @msg (a libpq message, lines ending in newlines) as one line in @buf, for the log. */
static void one_line(char *buf, size_t size, const char *msg)
{
	snprintf(buf, size, "%s", msg);
	size_t l = strlen(buf);
	while (l && (buf[l - 1] == '\n' || buf[l - 1] == ' '))
		buf[--l] = '\0';
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

static int atoi_checked(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	return (*end || v < 0 || v > 86400000) ? 10000 : (int)v;
}

bool pg_connect(PgConn *c, const char *conninfo, const char *role)
{
	memset(c, 0, sizeof *c);
	c->role = role;
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {conninfo && *conninfo ? conninfo : NULL, "edumig", NULL};
	if (!vals[0]) {
		keys[0] = "fallback_application_name";
		vals[0] = "edumig";
		keys[1] = NULL;
	}
	c->conn = PQconnectdbParams(keys, vals, 1);
	if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
		/* PQerrorMessage names host and port but never the password. */
		const char *msg = c->conn ? PQerrorMessage(c->conn) : "out of memory";
		char buf[1024];
		one_line(buf, sizeof buf, msg);
		log_error("cannot connect to the %s database: %s", strcmp(role, "SOURCE") == 0 ? "source" : "target", buf);
		if (c->conn)
			PQfinish(c->conn);
		c->conn = NULL;
		return false;
	}
	snprintf(c->safe_name, sizeof c->safe_name, "%s@%s:%s/%s", PQuser(c->conn),
		 PQhost(c->conn), PQport(c->conn), PQdb(c->conn));
	const char *lt = getenv("EDUMIG_LOCK_TIMEOUT_MS");
	c->lock_timeout_ms = lt ? atoi_checked(lt) : 10000;
	return session_setup(c);
}

/* Session settings, applied on every (re)connection. */
static bool session_setup(PgConn *c)
{
	/* A SQL_ASCII database holds bytes in no declared encoding: they are read raw and the
	 * mappings' recode steps repair them. Any other source is converted to UTF-8 by the server. */
	const char *senc = PQparameterStatus(c->conn, "server_encoding");
	bool raw = strcmp(c->role, "SOURCE") == 0 && senc && strcmp(senc, "SQL_ASCII") == 0;
	if (PQsetClientEncoding(c->conn, raw ? "SQL_ASCII" : "UTF8") != 0) {
		log_error("[%s] cannot set the client encoding: %s", c->role, PQerrorMessage(c->conn));
		return false;
	}
	/* The source streams whole tables in key order: a larger sort memory keeps big sorts
	 * off disk, and JIT compilation costs more than it saves on these one-off queries. */
	if (strcmp(c->role, "SOURCE") == 0) {
		PGresult *sr = PQexec(c->conn, "SET jit = off; SET work_mem = '128MB'");
		PQclear(sr);
	}
	/* The target waits a bounded time for locks, so a table locked by someone else turns
	 * into a retry with backoff, not a silent hang. */
	if (strcmp(c->role, "TARGET") == 0) {
		char sql[64];
		snprintf(sql, sizeof sql, "SET lock_timeout = %d", c->lock_timeout_ms);
		PGresult *lr = PQexec(c->conn, sql);
		PQclear(lr);
	}
	PGresult *r = PQexec(c->conn, "SET client_min_messages = warning; SET datestyle = 'ISO, YMD'; "
				      "SET intervalstyle = 'postgres'; SET extra_float_digits = 3; SET TimeZone = 'UTC'");
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		pg_log_result(c, r, "session setup");
	PQclear(r);
	return ok;
}

bool pg_connect_like(PgConn *c, const PgConn *like)
{
	memset(c, 0, sizeof *c);
	c->role = like->role;
	c->lock_timeout_ms = like->lock_timeout_ms;
	snprintf(c->safe_name, sizeof c->safe_name, "%s", like->safe_name);
	/* The settings libpq used for @like, password included, never through a string. */
	PQconninfoOption *opts = PQconninfo(like->conn);
	if (!opts) {
		log_error("[%s] cannot read the connection settings of %s", like->role, like->safe_name);
		return false;
	}
	size_t n = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		n++;
	const char **keys = xcalloc(n + 1, sizeof *keys);
	const char **vals = xcalloc(n + 1, sizeof *vals);
	size_t k = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val && *o->val) {
			keys[k] = o->keyword;
			vals[k++] = o->val;
		}
	c->conn = PQconnectdbParams(keys, vals, 0);
	free(keys);
	free(vals);
	PQconninfoFree(opts);
	if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
		char buf[512];
		one_line(buf, sizeof buf, c->conn ? PQerrorMessage(c->conn) : "out of memory");
		log_error("[%s] a second connection to %s failed: %s", like->role, like->safe_name, buf);
		pg_close(c);
		return false;
	}
	return session_setup(c);
}

bool pg_reconnect(PgConn *c)
{
	PQreset(c->conn);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		char buf[512];
		one_line(buf, sizeof buf, PQerrorMessage(c->conn));
		log_warn("[%s] reconnecting to %s failed: %s", c->role, c->safe_name, buf);
		return false;
	}
	log_info("[%s] reconnected to %s", c->role, c->safe_name);
	return session_setup(c);
}

bool pg_failure_transient(const PgConn *c)
{
	if (!c->conn || PQstatus(c->conn) != CONNECTION_OK)
		return true;
	const char *s = c->last_sqlstate;
	return strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
	       strcmp(s, "57P03") == 0 || strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 ||
	       strcmp(s, "55P03") == 0;
}

void pg_close(PgConn *c)
{
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
}

bool pg_ok(const PgConn *c)
{
	return c->conn && PQstatus(c->conn) == CONNECTION_OK;
}

static bool check_command(PgConn *c, PGresult *r, const char *sql, PgError *err)
{
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		PQclear(r);
		return true;
	}
	fill_error(err, c, r);
	if (!err)
		pg_log_result(c, r, sql);
	PQclear(r);
	return false;
}

bool pg_exec(PgConn *c, const char *sql, PgError *err)
{
	return check_command(c, PQexec(c->conn, sql), sql, err);
}

bool pg_exec_params(PgConn *c, const char *sql, int n, const char *const *params, PgError *err)
{
	return check_command(c, PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0), sql, err);
}

PGresult *pg_query(PgConn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_log_result(c, r, sql);
		PQclear(r);
		return NULL;
	}
	return r;
}

bool pg_query_value(PgConn *c, const char *sql, int n, const char *const *params, char **out)
{
	*out = NULL;
	PGresult *r = pg_query(c, sql, n, params);
	if (!r)
		return false;
	bool ok = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
	if (ok)
		*out = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return ok;
}

bool pg_set_setting(PgConn *c, const char *name, const char *value)
{
	const char *p[2] = {name, value};
	return pg_exec_params(c, "SELECT set_config($1, $2, false)", 2, p, NULL);
}

bool pg_copy_in_start(PgConn *c, const char *sql, PgError *err)
{
	PGresult *r = PQexec(c->conn, sql);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		fill_error(err, c, r);
		if (!err)
			pg_log_result(c, r, sql);
		PQclear(r);
		return false;
	}
	PQclear(r);
	return true;
}

bool pg_copy_in_put(PgConn *c, const char *buf, size_t n)
{
	/* libpq takes an int length: feed very large buffers in pieces. */
	while (n > 0) {
		int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
		if (PQputCopyData(c->conn, buf, chunk) != 1)
			return false;
		buf += chunk;
		n -= (size_t)chunk;
	}
	return true;
}

bool pg_copy_in_end(PgConn *c, PgError *err)
{
	bool ok = PQputCopyEnd(c->conn, NULL) == 1;
	PGresult *r;
	while ((r = PQgetResult(c->conn)) != NULL) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			if (ok) {
				fill_error(err, c, r);
				if (!err)
					pg_log_result(c, r, "COPY");
			}
			ok = false;
		}
		PQclear(r);
	}
	if (!ok && err && !err->message)
		fill_error(err, c, NULL);
	return ok;
}

bool pg_copy_out_send(PgConn *c, const char *sql)
{
	if (PQsendQuery(c->conn, sql) != 1) {
		pg_log_result(c, NULL, sql);
		return false;
	}
	return true;
}

bool pg_copy_out_started(PgConn *c, const char *sql)
{
	PGresult *r = PQgetResult(c->conn);
	if (PQresultStatus(r) != PGRES_COPY_OUT) {
		pg_log_result(c, r, sql);
		PQclear(r);
		/* The connection stays usable: the rest of the failed statement's results go. */
		while ((r = PQgetResult(c->conn)) != NULL)
			PQclear(r);
		return false;
	}
	PQclear(r);
	return true;
}

bool pg_copy_out_start(PgConn *c, const char *sql)
{
	return pg_copy_out_send(c, sql) && pg_copy_out_started(c, sql);
}

int pg_copy_out_row(PgConn *c, char **row)
{
	*row = NULL;
	int n = PQgetCopyData(c->conn, row, 0);
	if (n > 0)
		return n;
	if (n == -1) {
		bool ok = true;
		PGresult *r;
		while ((r = PQgetResult(c->conn)) != NULL) {
			if (PQresultStatus(r) != PGRES_COMMAND_OK) {
				pg_log_result(c, r, "COPY TO STDOUT");
				ok = false;
			}
			PQclear(r);
		}
		return ok ? 0 : -1;
	}
	pg_log_result(c, NULL, "COPY TO STDOUT");
	return -1;
}

char *pg_ident(PgConn *c, const char *name)
{
	char *q = PQescapeIdentifier(c->conn, name, strlen(name));
	if (!q) {
		log_error("cannot quote identifier \"%s\": %s", name, PQerrorMessage(c->conn));
		abort();
	}
	char *r = xstrdup(q);
	PQfreemem(q);
	return r;
}

bool pg_join_snapshot(PgConn *c, const char *snapshot)
{
	/* SET TRANSACTION SNAPSHOT takes no parameter: the server's own token, quoted by libpq. */
	char *q = PQescapeLiteral(c->conn, snapshot, strlen(snapshot));
	if (!q) {
		log_error("[%s] cannot quote the snapshot id: %s", c->role, PQerrorMessage(c->conn));
		return false;
	}
	AUTOFREE char *set = xasprintf("SET TRANSACTION SNAPSHOT %s", q);
	PQfreemem(q);
	return pg_exec(c, "SET default_transaction_read_only = on", NULL) &&
	       pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL) && pg_exec(c, set, NULL);
}

char *pg_qualified(PgConn *c, const char *schema, const char *table)
{
	AUTOFREE char *s = pg_ident(c, schema);
	AUTOFREE char *t = pg_ident(c, table);
	return xasprintf("%s.%s", s, t);
}
