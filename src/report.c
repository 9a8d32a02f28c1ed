/*
 * src/report.c — the skip report for data owners: CSV (whole, or one file per owning
 * organization unit), JSON and HTML (see report.h).
 *
 * Everything is read from the target in one READ ONLY REPEATABLE READ transaction. The
 * detailed rows come through one COPY (query) TO STDOUT and are written as they arrive;
 * only the small aggregates (reasons, cascades) are held as query results. Root causes
 * are worked out by the server with a recursive query over the error skips (CHAIN_SQL).
 */
#include "edumig/report.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "edumig/config.h"
#include "edumig/control.h"
#include "edumig/copytext.h"
#include "edumig/log.h"
#include "edumig/mem.h"
#include "edumig/pg.h"
#include "edumig/skiplog.h"
#include "edumig/status.h"
#include "edumig/strbuf.h"

typedef enum ReportFormat {
	FMT_CSV,
	FMT_JSON,
	FMT_HTML,
} ReportFormat;

/* Columns of the detailed row stream: CSV header, JSON keys, and the COPY's SELECT list. */
#define ROW_COLUMN_LIST(X) \
	X(RC_ENTITY, "entity", "r.entity") \
	X(RC_OLD_KEY, "old_key", "r.old_key") \
	X(RC_SEVERITY, "severity", "r.severity") \
	X(RC_REASON, "reason", "r.reason") \
	X(RC_COLUMN, "column", "r.column_name") \
	X(RC_SOURCE_VALUE, "source_value", "r.source_value") \
	X(RC_DETAIL, "detail", "r.detail") \
	X(RC_ROOT_CAUSE, "root_cause", "r.root_cause") \
	X(RC_OWNER_CODE, "owner_code", "r.owner_code") \
	X(RC_OWNER_NAME, "owner_name", "r.owner_name") \
	X(RC_OWNER_KEY, "owner_key", "r.owner_key") \
	X(RC_OWNER_ENTITY, "owner_entity", "r.owner_entity") \
	X(RC_PHASE, "phase", "r.phase") \
	X(RC_SQLSTATE, "sqlstate", "r.sqlstate") \
	X(RC_CONSTRAINT, "constraint", "r.constraint_name") \
	X(RC_CAUSE_ENTITY, "cause_entity", "r.cause_entity") \
	X(RC_CAUSE_KEY, "cause_key", "r.cause_key") \
	X(RC_SKIP_ID, "skip_id", "r.skip_id")

typedef enum RowColumn {
#define X(e, name, expr) e,
	ROW_COLUMN_LIST(X)
#undef X
	RC__COUNT
} RowColumn;

static const char *const row_column_names[] = {
#define X(e, name, expr) name,
	ROW_COLUMN_LIST(X)
#undef X
};

static const char *const row_column_exprs[] = {
#define X(e, name, expr) expr,
	ROW_COLUMN_LIST(X)
#undef X
};

/*
 * The common head of every query (head_sql puts it together):
 *
 *   sel   the unresolved skip records the report is about: SEL_SQL plus the filters. Values
 *         reach the SQL as session settings set through bound parameters (COPY takes no
 *         parameters) and are read back with current_setting(); the planner cannot see them,
 *         which is why the report's transaction allows hash joins only (see report_main)
 *   err   every row (entity, key) with an unresolved error skip, and its reasons: the nodes
 *         a cascade can pass through (not filtered: ancestors may be of any entity/phase)
 *   link  for such a row, its first error record whose cause is itself such a row
 *   down  each linked row with the top of its chain (root_*), the entities of the chain
 *         from the root down (path) and their keys; built from the roots downwards, so every
 *         row is reached once and a cycle of causes (which has no top) is never entered
 */
static const char SEL_SQL[] = "WITH RECURSIVE sel AS (SELECT s.* FROM edumig.skips s WHERE s.resolved_at IS NULL";

static const char CHAIN_SQL[] =
	" err AS ("
	" SELECT entity, old_key, string_agg(DISTINCT reason COLLATE \"C\", ', ' ORDER BY reason COLLATE \"C\") AS reasons"
	" FROM edumig.skips"
	" WHERE severity = 'error' AND resolved_at IS NULL AND old_key IS NOT NULL GROUP BY entity, old_key),"
	" link AS ("
	" SELECT DISTINCT ON (c.entity, c.old_key) c.entity, c.old_key, c.cause_entity, c.cause_key"
	" FROM edumig.skips c JOIN err p ON p.entity = c.cause_entity AND p.old_key = c.cause_key"
	" WHERE c.severity = 'error' AND c.resolved_at IS NULL AND c.old_key IS NOT NULL"
	" AND NOT (c.entity = c.cause_entity AND c.old_key = c.cause_key)"
	" ORDER BY c.entity, c.old_key, c.skip_id),"
	" down (entity, old_key, root_entity, root_key, path, keys, depth) AS ("
	" SELECT l.entity, l.old_key, l.cause_entity, l.cause_key, ARRAY[l.cause_entity, l.entity],"
	" ARRAY[l.cause_key, l.old_key], 1 FROM link l"
	" WHERE NOT EXISTS (SELECT 1 FROM link p WHERE p.entity = l.cause_entity AND p.old_key = l.cause_key)"
	" UNION ALL"
	" SELECT l.entity, l.old_key, d.root_entity, d.root_key, d.path || l.entity, d.keys || l.old_key, d.depth + 1"
	" FROM down d JOIN link l ON l.cause_entity = d.entity AND l.cause_key = d.old_key WHERE d.depth < 1000)";

/*
 * The detailed rows ("r"), after the head and the owners CTE ("own"). A record's root
 * cause is the top of its cause's chain, or its cause itself when that has no skipped parent.
 */
static const char ROWS_CTE_SQL[] =
	", r AS ("
	" SELECT s.*, o.i AS ord_i, ow.code AS owner_code, ow.name AS owner_name,"
	" CASE WHEN pe.entity IS NOT NULL THEN coalesce(pd.root_entity, pe.entity) || ' ' ||"
	" coalesce(pd.root_key, pe.old_key) || ': ' || coalesce(rr.reasons, '') END AS root_cause"
	" FROM sel s"
	" LEFT JOIN err pe ON pe.entity = s.cause_entity AND pe.old_key = s.cause_key"
	" AND NOT (s.entity = s.cause_entity AND s.old_key = s.cause_key)"
	" LEFT JOIN down pd ON pd.entity = pe.entity AND pd.old_key = pe.old_key"
	" LEFT JOIN err rr ON rr.entity = coalesce(pd.root_entity, pe.entity) AND rr.old_key = coalesce(pd.root_key, pe.old_key)"
	" LEFT JOIN own ow ON ow.entity = s.owner_entity AND ow.old_key = s.owner_key"
	" LEFT JOIN ord o ON o.e = s.entity)";

/* Records per entity, reason and severity, most frequent first ("rows": distinct legacy rows). */
static const char REASONS_SQL[] =
	" SELECT s.entity, s.reason, s.severity, count(*),"
	" count(DISTINCT s.old_key) + count(*) FILTER (WHERE s.old_key IS NULL)"
	" FROM sel s LEFT JOIN ord o ON o.e = s.entity"
	" GROUP BY s.entity, s.reason, s.severity, o.i ORDER BY 4 DESC, o.i, 1, 2, 3";

/*
 * Cascades: the error-skipped rows of the report that have a skipped ancestor, grouped by
 * the root's entity and reasons and by the chain of entities; for each level of the chain,
 * how many distinct rows of that entity are on such chains.
 */
static const char CASCADES_SQL[] =
	", leaf AS (SELECT d.* FROM down d WHERE EXISTS (SELECT 1 FROM sel s WHERE s.severity = 'error'"
	" AND s.entity = d.entity AND s.old_key = d.old_key)),"
	" lvl AS (SELECT l.root_entity, rr.reasons, l.path, u.i, count(DISTINCT u.k) AS n"
	" FROM leaf l JOIN err rr ON rr.entity = l.root_entity AND rr.old_key = l.root_key"
	" CROSS JOIN LATERAL unnest(l.keys) WITH ORDINALITY AS u(k, i) GROUP BY 1, 2, 3, 4)"
	" SELECT root_entity, reasons, array_to_string(path, E'\\n'), string_agg(n::text, ',' ORDER BY i),"
	" max(n) FILTER (WHERE i = cardinality(path)) AS leaf_rows"
	" FROM lvl GROUP BY 1, 2, 3 ORDER BY 5 DESC, 1, 2, 3";

typedef struct Report {
	const EngineOptions *o;
	ReportFormat fmt;
	Config *cfg;
	PgConn t;
	PgConn t2;                /* second target session in t's snapshot (checkpoints) */
	PgConn s;
	bool busy;                /* the aggregates are in flight on t */
	bool have_s;
	bool control;
	EntityStatus *st;         /* status_collect, all entities */
	size_t n_st;
	PGresult *reasons;
	PGresult *cascades;
	char *head_sql;           /* WITH RECURSIVE sel, err, link, down, ord */
	char *own_sql;            /* ", own AS (...)" */
	int html_rows;
	int64_t rows_written;
	bool out_failed;          /* a report file could not be written (exit 2, not 3) */
} Report;

/* An output file, written as PATH.part and renamed when complete ("-": stdout). A path
 * that exists and is not a regular file (/dev/null, a FIFO, a terminal) is written
 * directly: renaming onto it would replace the device with a file. */
typedef struct Out {
	FILE *f;
	char *path;
	char *part;
	bool direct;
	bool err;
} Out;

/* ---------------------------------------------------------------------------------- */
/* Output */

static bool out_open(Out *out, const char *path)
{
	memset(out, 0, sizeof *out);
	if (strcmp(path, "-") == 0) {
		out->f = stdout;
		return true;
	}
	struct stat st;
	out->path = xstrdup(path);
	out->direct = stat(path, &st) == 0 && !S_ISREG(st.st_mode);
	out->part = out->direct ? xstrdup(path) : xasprintf("%s.part", path);
	out->f = fopen(out->part, "w");
	if (!out->f) {
		log_error("cannot write %s: %s", out->part, strerror(errno));
		zfree(out->path);
		zfree(out->part);
		return false;
	}
	setvbuf(out->f, NULL, _IOFBF, 1 << 20);
	return true;
}

static void out_put(Out *out, StrBuf *b)
{
	if (b->len && !out->err && fwrite(b->data, 1, b->len, out->f) != b->len) {
		log_error("cannot write %s: %s", out->part ? out->part : "to standard output", strerror(errno));
		out->err = true;
	}
	sb_reset(b);
}

/* Flushes @b when it holds enough to be worth a write. */
static void out_maybe(Out *out, StrBuf *b)
{
	if (b->len >= (1u << 16))
		out_put(out, b);
}

/* Closes the output; with @keep the file takes its final name, otherwise it is removed. */
static bool out_close(Out *out, bool keep)
{
	if (!out->f)
		return false;
	bool ok = !out->err;
	if (out->f == stdout) {
		out->f = NULL;
		if (fflush(stdout) != 0) {
			log_error("cannot write the report to standard output: %s", strerror(errno));
			ok = false;
		}
		return ok;
	}
	if (fclose(out->f) != 0) {
		log_error("cannot write %s: %s", out->part, strerror(errno));
		ok = false;
	}
	out->f = NULL;
	if (ok && keep && !out->direct && rename(out->part, out->path) != 0) {
		log_error("cannot rename %s to %s: %s", out->part, out->path, strerror(errno));
		ok = false;
	}
	if ((!ok || !keep) && !out->direct)
		unlink(out->part);
	zfree(out->path);
	zfree(out->part);
	return ok;
}

static void fmt_count(int64_t v, char *buf, size_t size)
{
	char digits[32];
	snprintf(digits, sizeof digits, "%" PRId64, v < 0 ? -v : v);
	size_t n = strlen(digits), k = 0;
	if (v < 0 && k + 1 < size)
		buf[k++] = '-';
	for (size_t i = 0; i < n && k + 2 < size; i++) {
		if (i && (n - i) % 3 == 0)
			buf[k++] = ',';
		buf[k++] = digits[i];
	}
	buf[k] = '\0';
}

/* CSV field, RFC 4180: quoted when it holds a comma, a quote, CR or LF; quotes doubled. */
static void csv_put(StrBuf *b, const char *s, size_t n)
{
	if (!s)
		return;
	bool quote = false;
	for (size_t i = 0; i < n && !quote; i++)
		quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
	if (!quote) {
		sb_put(b, s, n);
		return;
	}
	sb_putc(b, '"');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"')
			sb_putc(b, '"');
		sb_putc(b, s[i]);
	}
	sb_putc(b, '"');
}

static void html_put(StrBuf *b, const char *s, size_t n)
{
	if (!s)
		return;
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '&': sb_puts(b, "&amp;"); break;
		case '<': sb_puts(b, "&lt;"); break;
		case '>': sb_puts(b, "&gt;"); break;
		case '"': sb_puts(b, "&quot;"); break;
		case '\'': sb_puts(b, "&#39;"); break;
		case '\t':
		case '\n':
		case '\r': sb_putc(b, s[i]); break;
		default:
			/* Other control characters are shown as their Unicode pictures (U+2400..). */
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
				sb_printf(b, "&#x%X;", 0x2400 + ((unsigned char)s[i] == 0x7f ? 0x21 : (unsigned char)s[i]));
			else
				sb_putc(b, s[i]);
			break;
		}
	}
}

static void html_puts(StrBuf *b, const char *s)
{
	if (s)
		html_put(b, s, strlen(s));
}

static void html_count(StrBuf *b, int64_t v)
{
	char buf[40];
	fmt_count(v, buf, sizeof buf);
	sb_puts(b, buf);
}

static void json_puts(StrBuf *b, const char *s)
{
	if (s)
		json_put_string(b, s, strlen(s));
	else
		sb_puts(b, "null");
}

/* ---------------------------------------------------------------------------------- */
/* Queries */

static const char *conninfo(const char *given, const char *env)
{
	if (given && *given)
		return given;
	const char *e = getenv(env);
	return e && *e ? e : NULL;
}

static const ColumnRule *find_column(const Mapping *m, const char *name)
{
	for (size_t c = 0; c < m->n_cols; c++)
		if (strcmp(m->cols[c].name, name) == 0)
			return &m->cols[c];
	return NULL;
}

/*
 * ", own(entity, old_key, code, name) AS (...)": the code and display name of every owner
 * row, for each entity the mappings name as an "owner", from its target table through the
 * id map (merged keys lead to their survivor, stubs to the placeholder). The code is the
 * target's "code" column, the name its "name" column (an i18n object read in its fallback
 * order), when the owner's mapping writes them.
 */
static char *owners_sql(Report *r)
{
	StrBuf b = {0};
	sb_puts(&b, ", own (entity, old_key, code, name) AS (");
	int n = 0;
	for (size_t i = 0; i < r->cfg->n_mappings; i++) {
		const char *oe = r->cfg->mappings[i].owner_entity;
		bool seen = false;
		for (size_t j = 0; oe && j < i; j++)
			seen = seen || (r->cfg->mappings[j].owner_entity && strcmp(r->cfg->mappings[j].owner_entity, oe) == 0);
		int idx = oe && !seen ? config_find_entity(r->cfg, oe) : -1;
		if (idx < 0)
			continue;
		const Mapping *pm = &r->cfg->mappings[idx];
		char setting[64];
		snprintf(setting, sizeof setting, "edumig.report_owner_%d", n);
		if (!pg_set_setting(&r->t, setting, oe)) {
			sb_free(&b);
			return NULL;
		}
		AUTOFREE char *lit = xasprintf("current_setting('%s')", setting);
		AUTOFREE char *tbl = pg_qualified(&r->t, pm->target_schema, pm->target_table);
		AUTOFREE char *idc = pg_ident(&r->t, pm->id_column);
		const ColumnRule *code = find_column(pm, "code");
		const ColumnRule *name = find_column(pm, "name");
		sb_printf(&b, "%sSELECT %s::text, m.old_key, %s, ", n++ ? " UNION ALL " : "", lit,
			  code ? "o.code::text" : "NULL::text");
		if (name && name->kind == RULE_I18N) {
			sb_puts(&b, "coalesce(");
			size_t k = 0;
			for (; k < name->n_fallback + name->n_langs; k++) {
				const char *lang = k < name->n_fallback ? name->fallback[k] : name->langs[k - name->n_fallback].lang;
				char ls[64];
				snprintf(ls, sizeof ls, "edumig.report_lang_%d_%zu", n, k);
				if (!pg_set_setting(&r->t, ls, lang)) {
					sb_free(&b);
					return NULL;
				}
				sb_printf(&b, "%so.name->>current_setting('%s')", k ? ", " : "", ls);
			}
			sb_puts(&b, k ? ", NULL)" : "NULL)");
		} else {
			sb_puts(&b, name ? "o.name::text" : "NULL::text");
		}
		sb_printf(&b, " FROM edumig.id_map m JOIN %s o ON o.%s = m.new_id WHERE m.entity = %s", tbl, idc, lit);
	}
	if (!n)
		sb_puts(&b, "SELECT NULL::text, NULL::text, NULL::text, NULL::text WHERE false");
	sb_puts(&b, ")");
	return sb_steal(&b);
}

/* sel (with the filters), the cascade CTEs, and ord(e, i): the entities in phase order. */
static char *head_sql(Report *r)
{
	const EngineOptions *o = r->o;
	StrBuf b = {0};
	sb_puts(&b, SEL_SQL);
	char phase[16];
	snprintf(phase, sizeof phase, "%d", o->phase);
	if (o->phase > 0) {
		if (!pg_set_setting(&r->t, "edumig.report_phase", phase)) {
			sb_free(&b);
			return NULL;
		}
		sb_puts(&b, " AND s.phase = current_setting('edumig.report_phase')::int");
	}
	if (o->entity) {
		if (!pg_set_setting(&r->t, "edumig.report_entity", o->entity)) {
			sb_free(&b);
			return NULL;
		}
		sb_puts(&b, " AND s.entity = current_setting('edumig.report_entity')");
	}
	if (o->reason) {
		if (!pg_set_setting(&r->t, "edumig.report_reason", o->reason)) {
			sb_free(&b);
			return NULL;
		}
		sb_puts(&b, " AND s.reason = current_setting('edumig.report_reason')");
	}
	sb_puts(&b, "),");
	sb_puts(&b, CHAIN_SQL);
	/* The entities in phase order; entity names are identifiers, so a comma separates them. */
	StrBuf order = {0};
	for (size_t i = 0; i < r->n_st; i++)
		sb_printf(&order, "%s%s", i ? "," : "", r->st[i].m->entity);
	bool set = pg_set_setting(&r->t, "edumig.report_order", sb_str(&order));
	sb_free(&order);
	if (!set) {
		sb_free(&b);
		return NULL;
	}
	sb_puts(&b, ", ord (e, i) AS (SELECT x.e, x.i::int FROM unnest(string_to_array("
		    "current_setting('edumig.report_order'), ',')) WITH ORDINALITY AS x (e, i))");
	return sb_steal(&b);
}

/* Sends the reasons and cascades queries on t without waiting (aggregates_get collects). */
static bool aggregates_send(Report *r)
{
	StrBuf q = {0};
	sb_puts(&q, r->head_sql);
	sb_puts(&q, REASONS_SQL);
	sb_puts(&q, ";\n");
	sb_puts(&q, r->head_sql);
	sb_puts(&q, CASCADES_SQL);
	bool ok = PQsendQuery(r->t.conn, sb_str(&q)) == 1;
	sb_free(&q);
	if (!ok)
		log_error("[%s] cannot send the report's queries: %s", r->t.role, PQerrorMessage(r->t.conn));
	r->busy = ok;
	return ok;
}

/* Opens t2 inside t's snapshot (pg_export_snapshot / SET TRANSACTION SNAPSHOT). */
static bool open_twin(Report *r)
{
	AUTOFREE char *snap = NULL;
	if (!pg_query_value(&r->t, "SELECT pg_export_snapshot()", 0, NULL, &snap))
		return false;
	if (!pg_connect(&r->t2, conninfo(r->o->target, "EDUMIG_TARGET"), "TARGET"))
		return false;
	return pg_join_snapshot(&r->t2, snap);
}

static bool aggregates_get(Report *r)
{
	bool ok = true;
	PGresult *res;
	int k = 0;
	while ((res = PQgetResult(r->t.conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			pg_log_result(&r->t, res, "report aggregates");
			ok = false;
			PQclear(res);
		} else if (k == 0) {
			r->reasons = res;
		} else if (k == 1) {
			r->cascades = res;
		} else {
			PQclear(res);
		}
		k++;
	}
	r->busy = false;
	return ok && r->reasons && r->cascades;
}

/* The COPY of the detailed rows. @split: ordered by owner first. @cap > 0: at most @cap rows
 * per entity, taken round-robin over its reasons so that a rare reason is shown too. */
static char *rows_copy_sql(Report *r, bool split, int cap)
{
	StrBuf q = {0};
	sb_puts(&q, "COPY (");
	sb_puts(&q, r->head_sql);
	sb_puts(&q, r->own_sql);
	sb_puts(&q, ROWS_CTE_SQL);
	sb_puts(&q, " SELECT ");
	for (int c = 0; c < RC__COUNT; c++)
		sb_printf(&q, "%s%s", c ? ", " : "", row_column_exprs[c]);
	if (cap > 0)
		sb_printf(&q,
			  " FROM (SELECT x.*, row_number() OVER (PARTITION BY x.entity ORDER BY x.n_reason, x.skip_id) AS n_entity"
			  " FROM (SELECT r.*, row_number() OVER (PARTITION BY r.entity, r.reason ORDER BY r.skip_id) AS n_reason"
			  " FROM r) x) r WHERE r.n_entity <= %d",
			  cap);
	else
		sb_puts(&q, " FROM r");
	sb_puts(&q, " ORDER BY ");
	if (split)
		sb_puts(&q, "r.owner_key IS NULL, r.owner_entity, r.owner_key, ");
	sb_puts(&q, "r.ord_i NULLS LAST, CASE WHEN r.ord_i IS NULL THEN r.entity END, r.skip_id) TO STDOUT");
	return sb_steal(&q);
}

/*
 * Streams the detailed rows to @fn, one decoded row at a time (fields NULL for SQL NULL).
 * Returns false after logging when the server fails or @fn does.
 */
typedef bool (*RowFn)(Report *r, char **f, size_t *len, void *ctx);

static bool stream_rows(Report *r, bool split, int cap, RowFn fn, void *ctx)
{
	if (!r->control)
		return true;
	AUTOFREE char *sql = rows_copy_sql(r, split, cap);
	log_debug("report: %s", sql);
	if (!pg_copy_out_start(&r->t, sql))
		return false;
	char *row;
	int n;
	bool ok = true;
	char *f[RC__COUNT + 1];
	size_t len[RC__COUNT + 1];
	while ((n = pg_copy_out_row(&r->t, &row)) > 0) {
		if (ok) {
			int nf = copytext_split(row, (size_t)n, f, len, RC__COUNT + 1);
			if (nf != RC__COUNT) {
				log_error("report: unexpected row of %d fields from the server", nf);
				ok = false;
			} else {
				ok = fn(r, f, len, ctx);
			}
		}
		PQfreemem(row);
	}
	return ok && n == 0;
}

/* ---------------------------------------------------------------------------------- */
/* Aggregates shared by the formats */

static int64_t res_int(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static const char *reason_description(const char *code)
{
	for (int k = 0; k < REASON__COUNT; k++)
		if (strcmp(skip_reason_code((SkipReason)k), code) == 0)
			return skip_reason_description((SkipReason)k);
	return NULL;
}

/* Skip records of @entity in the report (the sum of its reasons). */
static int64_t entity_records(const Report *r, const char *entity)
{
	int64_t n = 0;
	for (int i = 0; r->reasons && i < PQntuples(r->reasons); i++)
		if (strcmp(PQgetvalue(r->reasons, i, 0), entity) == 0)
			n += res_int(r->reasons, i, 3);
	return n;
}

/* The status entries the report covers (--phase, --entity), as shallow copies. */
static size_t summary_entries(const Report *r, EntityStatus *out)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n_st; i++) {
		const Mapping *m = r->st[i].m;
		if (r->o->phase > 0 && m->phase != r->o->phase)
			continue;
		if (r->o->entity && strcmp(m->entity, r->o->entity) != 0)
			continue;
		out[n++] = r->st[i];
	}
	return n;
}

/* The entities of a cascade row: its path, split (in place) at newlines. */
static int split_path(char *path, char **ents, int max)
{
	int n = 0;
	for (char *p = path; n < max;) {
		ents[n++] = p;
		char *nl = strchr(p, '\n');
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return n;
}

#define MAX_CHAIN 64

typedef struct Cascade {
	const char *root_entity;
	const char *reasons;
	char *path_buf;
	char *ents[MAX_CHAIN];
	int64_t counts[MAX_CHAIN];
	int n;
} Cascade;

static void cascade_get(PGresult *res, int row, Cascade *c)
{
	c->root_entity = PQgetvalue(res, row, 0);
	c->reasons = PQgetvalue(res, row, 1);
	c->path_buf = xstrdup(PQgetvalue(res, row, 2));
	c->n = split_path(c->path_buf, c->ents, MAX_CHAIN);
	const char *p = PQgetvalue(res, row, 3);
	for (int i = 0; i < c->n; i++) {
		char *end;
		c->counts[i] = strtoll(p, &end, 10);
		p = *end == ',' ? end + 1 : end;
	}
}

/* "41,203 grades skipped <- 312 assessments skipped <- 12 course_offerings skipped (missing_reference)" */
static void cascade_text(StrBuf *b, const Cascade *c, bool html)
{
	for (int i = c->n - 1; i >= 0; i--) {
		char num[40];
		fmt_count(c->counts[i], num, sizeof num);
		if (html) {
			sb_printf(b, "%s<span class=\"lvl\" data-entity=\"", i == c->n - 1 ? "" : " \xe2\x86\x90 ");
			html_puts(b, c->ents[i]);
			sb_printf(b, "\" data-rows=\"%" PRId64 "\"><b>%s</b> ", c->counts[i], num);
			html_puts(b, c->ents[i]);
			sb_puts(b, " skipped</span>");
		} else {
			sb_printf(b, "%s%s %s skipped", i == c->n - 1 ? "" : " \xe2\x86\x90 ", num, c->ents[i]);
		}
	}
	if (html) {
		sb_puts(b, " (<span class=\"reason\">");
		html_puts(b, c->reasons);
		sb_puts(b, "</span>)");
	} else {
		sb_printf(b, " (%s)", c->reasons);
	}
}

/* ---------------------------------------------------------------------------------- */
/* CSV */

static void csv_header(StrBuf *b)
{
	for (int c = 0; c < RC__COUNT; c++)
		sb_printf(b, "%s%s", c ? "," : "", row_column_names[c]);
	sb_puts(b, "\r\n");
}

static void csv_row(StrBuf *b, char **f, size_t *len)
{
	for (int c = 0; c < RC__COUNT; c++) {
		if (c)
			sb_putc(b, ',');
		csv_put(b, f[c], len[c]);
	}
	sb_puts(b, "\r\n");
}

typedef struct CsvCtx {
	Out out;
	StrBuf b;
} CsvCtx;

static bool csv_row_fn(Report *r, char **f, size_t *len, void *ctx)
{
	CsvCtx *c = ctx;
	csv_row(&c->b, f, len);
	out_maybe(&c->out, &c->b);
	r->rows_written++;
	r->out_failed = r->out_failed || c->out.err;
	return !c->out.err;
}

static int report_csv(Report *r, const char *path)
{
	CsvCtx c = {0};
	if (!out_open(&c.out, path))
		return EXIT_USAGE;
	csv_header(&c.b);
	bool ok = stream_rows(r, false, 0, csv_row_fn, &c);
	out_put(&c.out, &c.b);
	sb_free(&c.b);
	bool wrote = out_close(&c.out, ok);
	return !ok ? (r->out_failed ? EXIT_USAGE : EXIT_SERVER) : wrote ? EXIT_OK_ : EXIT_USAGE;
}

/* --split-by organization ------------------------------------------------------------ */

#define NO_OWNER_FILE "_no_owner.csv"
#define INDEX_FILE "_index.csv"
#define DIR_MARKER ".edumig-report"

/* A small set of file names already used in the directory (open addressing). */
typedef struct NameSet {
	char **slots;
	size_t cap, n;
} NameSet;

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static bool nameset_has(const NameSet *ns, const char *s)
{
	if (!ns->cap)
		return false;
	for (size_t i = name_hash(s) & (ns->cap - 1);; i = (i + 1) & (ns->cap - 1)) {
		if (!ns->slots[i])
			return false;
		if (strcmp(ns->slots[i], s) == 0)
			return true;
	}
}

static void nameset_add(NameSet *ns, const char *s)
{
	if ((ns->n + 1) * 2 > ns->cap) {
		NameSet big = {xcalloc(ns->cap ? ns->cap * 2 : 64, sizeof(char *)), ns->cap ? ns->cap * 2 : 64, 0};
		for (size_t i = 0; i < ns->cap; i++)
			if (ns->slots[i]) {
				size_t j = name_hash(ns->slots[i]) & (big.cap - 1);
				while (big.slots[j])
					j = (j + 1) & (big.cap - 1);
				big.slots[j] = ns->slots[i];
				big.n++;
			}
		free(ns->slots);
		*ns = big;
	}
	size_t i = name_hash(s) & (ns->cap - 1);
	while (ns->slots[i])
		i = (i + 1) & (ns->cap - 1);
	ns->slots[i] = xstrdup(s);
	ns->n++;
}

static void nameset_free(NameSet *ns)
{
	for (size_t i = 0; i < ns->cap; i++)
		free(ns->slots[i]);
	free(ns->slots);
	memset(ns, 0, sizeof *ns);
}

/*
 * A file name for an owner: its code with anything but letters, digits, '.', '-' and '_'
 * replaced by '_', at most 80 bytes, starting with a letter or digit (names starting with
 * '_' are the report's own); a unit with no code (not migrated) is named by entity and key.
 * A name already taken gets "-KEY", then a counter.
 */
static char *owner_file_name(NameSet *used, const char *entity, const char *key, const char *code)
{
	StrBuf b = {0};
	const char *src = code && *code ? code : NULL;
	AUTOFREE char *fallback = src ? NULL : xasprintf("%s-%s", entity ? entity : "owner", key);
	if (!src)
		src = fallback;
	for (const char *p = src; *p && b.len < 80; p++) {
		char ch = *p;
		bool okc = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
			   ch == '-' || ch == '_';
		sb_putc(&b, okc ? ch : '_');
	}
	char first = b.len ? b.data[0] : '\0';
	if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || (first >= '0' && first <= '9'))) {
		AUTOFREE char *rest = sb_steal(&b);
		sb_printf(&b, "unit-%s", rest ? rest : "");
	}
	size_t base = b.len;
	sb_puts(&b, ".csv");
	for (int k = 0; nameset_has(used, sb_str(&b)); k++) {
		sb_truncate(&b, base);
		if (k == 0) {
			sb_putc(&b, '-');
			for (const char *p = key; *p; p++)
				sb_putc(&b, (*p >= '0' && *p <= '9') || *p == '-' ? *p : '_');
		} else {
			sb_printf(&b, "-%d", k + 1);
		}
		sb_puts(&b, ".csv");
	}
	nameset_add(used, sb_str(&b));
	return sb_steal(&b);
}

/*
 * The output directory: created (with a marker file) when absent; when it exists it must
 * be empty or carry the marker, and the CSV files of the previous report are removed so a
 * unit with nothing left to fix does not keep a stale file.
 */
static bool prepare_split_dir(const char *dir)
{
	struct stat sb;
	AUTOFREE char *marker = xasprintf("%s/%s", dir, DIR_MARKER);
	if (stat(dir, &sb) != 0) {
		if (mkdir(dir, 0755) != 0) {
			log_error("cannot create the report directory %s: %s", dir, strerror(errno));
			return false;
		}
	} else if (!S_ISDIR(sb.st_mode)) {
		log_error("%s is not a directory (--split-by writes one file per unit into --out DIR)", dir);
		return false;
	} else {
		DIR *d = opendir(dir);
		if (!d) {
			log_error("cannot read the report directory %s: %s", dir, strerror(errno));
			return false;
		}
		bool marked = access(marker, F_OK) == 0, foreign = false;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, DIR_MARKER) == 0)
				continue;
			if (!marked) {
				foreign = true;
				break;
			}
			size_t l = strlen(e->d_name);
			if (l > 4 && strcmp(e->d_name + l - 4, ".csv") == 0) {
				AUTOFREE char *p = xasprintf("%s/%s", dir, e->d_name);
				if (unlink(p) != 0) {
					log_error("cannot remove the previous report file %s: %s", p, strerror(errno));
					closedir(d);
					return false;
				}
			}
		}
		closedir(d);
		if (foreign) {
			log_error("%s is not empty and is not an edumig report directory; give an empty or new directory", dir);
			return false;
		}
	}
	FILE *f = fopen(marker, "w");
	if (!f || fputs("edumig report --split-by organization: files here are replaced by the next report\n", f) < 0 ||
	    fclose(f) != 0) {
		log_error("cannot write %s: %s", marker, strerror(errno));
		return false;
	}
	return true;
}

typedef struct SplitCtx {
	const char *dir;
	NameSet used;
	Out out;
	bool open;
	char *cur_entity;         /* owner of the open file (NULL: no owner) */
	char *cur_key;
	int64_t cur_rows;
	bool no_owner_done;
	StrBuf b;
	StrBuf index;             /* the _index.csv lines */
	int64_t files;
} SplitCtx;

static bool split_close(SplitCtx *c)
{
	if (!c->open)
		return true;
	out_put(&c->out, &c->b);
	c->open = false;
	return out_close(&c->out, true);
}

static bool split_open(SplitCtx *c, const char *entity, const char *key, const char *code, const char *name)
{
	AUTOFREE char *file = key ? owner_file_name(&c->used, entity, key, code) : xstrdup(NO_OWNER_FILE);
	AUTOFREE char *path = xasprintf("%s/%s", c->dir, file);
	if (!out_open(&c->out, path))
		return false;
	c->open = true;
	c->files++;
	csv_header(&c->b);
	free(c->cur_entity);
	free(c->cur_key);
	c->cur_entity = entity ? xstrdup(entity) : NULL;
	c->cur_key = key ? xstrdup(key) : NULL;
	c->cur_rows = 0;
	if (!key)
		c->no_owner_done = true;
	csv_put(&c->index, file, strlen(file));
	sb_putc(&c->index, ',');
	csv_put(&c->index, entity, entity ? strlen(entity) : 0);
	sb_putc(&c->index, ',');
	csv_put(&c->index, key, key ? strlen(key) : 0);
	sb_putc(&c->index, ',');
	csv_put(&c->index, code, code ? strlen(code) : 0);
	sb_putc(&c->index, ',');
	csv_put(&c->index, name, name ? strlen(name) : 0);
	sb_putc(&c->index, ',');
	return true;
}

static void split_index_rows(SplitCtx *c)
{
	if (c->open)
		sb_printf(&c->index, "%" PRId64 "\r\n", c->cur_rows);
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool split_row_fn(Report *r, char **f, size_t *len, void *ctx)
{
	SplitCtx *c = ctx;
	const char *oe = f[RC_OWNER_KEY] ? f[RC_OWNER_ENTITY] : NULL;
	const char *ok = f[RC_OWNER_KEY];
	if (!c->open || !same(oe, c->cur_entity) || !same(ok, c->cur_key)) {
		split_index_rows(c);
		if (!split_close(c) || !split_open(c, oe, ok, f[RC_OWNER_CODE], f[RC_OWNER_NAME])) {
			r->out_failed = true;
			return false;
		}
	}
	csv_row(&c->b, f, len);
	out_maybe(&c->out, &c->b);
	c->cur_rows++;
	r->rows_written++;
	r->out_failed = r->out_failed || c->out.err;
	return !c->out.err;
}

static int report_split(Report *r, const char *dir)
{
	if (!prepare_split_dir(dir))
		return EXIT_USAGE;
	SplitCtx c = {0};
	c.dir = dir;
	nameset_add(&c.used, NO_OWNER_FILE);
	nameset_add(&c.used, INDEX_FILE);
	sb_puts(&c.index, "file,owner_entity,owner_key,owner_code,owner_name,rows\r\n");
	bool ok = stream_rows(r, true, 0, split_row_fn, &c);
	/* The no-owner file is always there, so its absence never looks like a lost file. */
	if (ok && !c.no_owner_done) {
		split_index_rows(&c);
		ok = split_close(&c) && split_open(&c, NULL, NULL, NULL, NULL);
	}
	split_index_rows(&c);
	bool wrote = false;
	if (ok) {
		wrote = split_close(&c);
	} else if (c.open) {
		c.open = false;
		out_close(&c.out, false);   /* the file being written when the stream failed */
	}
	int rc = !ok ? (r->out_failed ? EXIT_USAGE : EXIT_SERVER) : wrote ? EXIT_OK_ : EXIT_USAGE;
	if (rc == EXIT_OK_) {
		AUTOFREE char *ip = xasprintf("%s/%s", dir, INDEX_FILE);
		Out io;
		if (!out_open(&io, ip))
			rc = EXIT_USAGE;
		else {
			out_put(&io, &c.index);
			rc = out_close(&io, true) ? EXIT_OK_ : EXIT_USAGE;
		}
		log_info("report: %" PRId64 " owning unit%s, one file each, plus %s; index in %s", c.files - 1,
			 c.files == 2 ? "" : "s", NO_OWNER_FILE, ip);
	}
	nameset_free(&c.used);
	sb_free(&c.b);
	sb_free(&c.index);
	free(c.cur_entity);
	free(c.cur_key);
	return rc;
}

/* ---------------------------------------------------------------------------------- */
/* JSON */

static void json_filters(StrBuf *b, const Report *r)
{
	sb_puts(b, "{\"phase\":");
	if (r->o->phase > 0)
		sb_printf(b, "%d", r->o->phase);
	else
		sb_puts(b, "null");
	sb_puts(b, ",\"entity\":");
	json_puts(b, r->o->entity);
	sb_puts(b, ",\"reason\":");
	json_puts(b, r->o->reason);
	sb_puts(b, ",\"resolved\":false}");
}

static bool json_row_fn(Report *r, char **f, size_t *len, void *ctx)
{
	CsvCtx *c = ctx;
	sb_puts(&c->b, r->rows_written ? ",\n{" : "\n{");
	for (int k = 0; k < RC__COUNT; k++) {
		sb_printf(&c->b, "%s\"%s\":", k ? "," : "", row_column_names[k]);
		if (!f[k])
			sb_puts(&c->b, "null");
		else if (k == RC_PHASE || k == RC_SKIP_ID)
			sb_put(&c->b, f[k], len[k]);
		else
			json_put_string(&c->b, f[k], len[k]);
	}
	sb_putc(&c->b, '}');
	out_maybe(&c->out, &c->b);
	r->rows_written++;
	r->out_failed = r->out_failed || c->out.err;
	return !c->out.err;
}

static int report_json(Report *r, const char *path)
{
	CsvCtx c = {0};
	if (!out_open(&c.out, path))
		return EXIT_USAGE;
	StrBuf *b = &c.b;
	sb_puts(b, "{\"report\":{\"target\":");
	json_puts(b, r->t.safe_name);
	sb_puts(b, ",\"configuration\":");
	json_puts(b, config_hash(r->cfg));
	sb_puts(b, ",\"filters\":");
	json_filters(b, r);
	sb_puts(b, "},\n\"summary\":");
	EntityStatus *sub = xcalloc(r->n_st ? r->n_st : 1, sizeof *sub);
	size_t n = summary_entries(r, sub);
	status_json(sub, n, b);
	free(sub);
	if (b->len && b->data[b->len - 1] == '\n')
		sb_truncate(b, b->len - 1);

	sb_puts(b, ",\n\"reasons\":[");
	for (int i = 0; r->reasons && i < PQntuples(r->reasons); i++) {
		const char *reason = PQgetvalue(r->reasons, i, 1);
		sb_printf(b, "%s\n{\"entity\":", i ? "," : "");
		json_puts(b, PQgetvalue(r->reasons, i, 0));
		sb_puts(b, ",\"reason\":");
		json_puts(b, reason);
		sb_puts(b, ",\"severity\":");
		json_puts(b, PQgetvalue(r->reasons, i, 2));
		sb_printf(b, ",\"records\":%" PRId64 ",\"rows\":%" PRId64 ",\"description\":", res_int(r->reasons, i, 3),
			  res_int(r->reasons, i, 4));
		json_puts(b, reason_description(reason));
		sb_putc(b, '}');
	}
	sb_puts(b, "],\n\"root_causes\":[");
	for (int i = 0; r->cascades && i < PQntuples(r->cascades); i++) {
		Cascade cc;
		cascade_get(r->cascades, i, &cc);
		sb_printf(b, "%s\n{\"root_entity\":", i ? "," : "");
		json_puts(b, cc.root_entity);
		sb_puts(b, ",\"root_reason\":");
		json_puts(b, cc.reasons);
		sb_printf(b, ",\"roots\":%" PRId64 ",\"rows\":%" PRId64 ",\"chain\":[", cc.counts[0], cc.counts[cc.n - 1]);
		for (int k = 0; k < cc.n; k++) {
			sb_printf(b, "%s{\"entity\":", k ? "," : "");
			json_puts(b, cc.ents[k]);
			sb_printf(b, ",\"rows\":%" PRId64 "}", cc.counts[k]);
		}
		sb_puts(b, "],\"text\":");
		StrBuf t = {0};
		cascade_text(&t, &cc, false);
		json_puts(b, sb_str(&t));
		sb_free(&t);
		sb_putc(b, '}');
		free(cc.path_buf);
	}
	sb_puts(b, "],\n\"rows\":[");
	out_put(&c.out, b);
	bool ok = stream_rows(r, false, 0, json_row_fn, &c);
	sb_puts(b, "]}\n");
	out_put(&c.out, b);
	sb_free(b);
	bool wrote = out_close(&c.out, ok);
	return !ok ? (r->out_failed ? EXIT_USAGE : EXIT_SERVER) : wrote ? EXIT_OK_ : EXIT_USAGE;
}

/* ---------------------------------------------------------------------------------- */
/* HTML */

static const char HTML_HEAD[] =
	"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	"<title>edumig skip report</title>\n<style>\n"
	"body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1200px;"
	"padding:0 1em;color:#1d2327}\n"
	"h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ccd;padding-bottom:.2em}\n"
	".meta{color:#555}table{border-collapse:collapse;width:100%;margin:.5em 0}\n"
	"th,td{border-bottom:1px solid #e3e6ea;padding:.25em .5em;text-align:left;vertical-align:top}\n"
	"th{background:#f4f6f8;position:sticky;top:0}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\n"
	".bar{display:flex;height:14px;min-width:180px;background:#eef0f2;border-radius:3px;overflow:hidden}\n"
	".bar span{display:block;height:100%}.s-ok{background:#2e9d5b}.s-warn{background:#e0a526}"
	".s-skip{background:#d1443c}.s-filt{background:#9aa5b1}.s-lost{background:#5b2a86}\n"
	".legend span{display:inline-block;width:.9em;height:.9em;margin:0 .25em 0 .8em;vertical-align:middle}\n"
	".sev-error{color:#b3261e;font-weight:600}.sev-warning{color:#8a5a00}\n"
	"td.val,td.detail{max-width:28em;overflow-wrap:anywhere;white-space:pre-wrap}\n"
	".cascades li{margin:.3em 0}.cascades .reason{color:#b3261e;font-weight:600}\n"
	".more{color:#555;font-style:italic}.filter{margin:.5em 0 1em}\n"
	"section.rows{margin-top:1.2em}section.rows h3{margin-bottom:.2em}\n"
	"</style>\n</head>\n<body>\n";

static const char HTML_SCRIPT[] =
	"<script>\n"
	"(function () {\n"
	"  var sel = document.getElementById('reason-filter');\n"
	"  function apply() {\n"
	"    var v = sel.value;\n"
	"    document.querySelectorAll('section.rows').forEach(function (s) {\n"
	"      var shown = 0;\n"
	"      s.querySelectorAll('tbody tr').forEach(function (tr) {\n"
	"        var on = !v || tr.getAttribute('data-reason') === v;\n"
	"        tr.hidden = !on;\n"
	"        if (on) shown++;\n"
	"      });\n"
	"      s.hidden = shown === 0;\n"
	"      var c = s.querySelector('.shown');\n"
	"      if (c) c.textContent = shown.toLocaleString('en-US');\n"
	"    });\n"
	"  }\n"
	"  sel.addEventListener('change', apply);\n"
	"  apply();\n"
	"  document.body.setAttribute('data-filter', 'ready');\n"
	"})();\n"
	"</script>\n";

static void html_summary(StrBuf *b, const Report *r)
{
	EntityStatus *sub = xcalloc(r->n_st ? r->n_st : 1, sizeof *sub);
	size_t n = summary_entries(r, sub);
	sb_puts(b, "<h2 id=\"summary\">Per entity</h2>\n<p class=\"legend\">Every source row is"
		   "<span class=\"s-ok\"></span>migrated as it was,<span class=\"s-warn\"></span>migrated with a change"
		   " (warning),<span class=\"s-skip\"></span>skipped,<span class=\"s-filt\"></span>filtered out by a named"
		   " filter, or<span class=\"s-lost\"></span>unaccounted (a defect).</p>\n"
		   "<table class=\"summary\"><thead><tr><th>entity</th><th class=\"num\">phase</th>"
		   "<th class=\"num\">source rows</th><th class=\"num\">filtered</th><th class=\"num\">migrated</th>"
		   "<th class=\"num\">of which warned</th><th class=\"num\">skipped</th><th class=\"num\">unaccounted</th>"
		   "<th>state</th><th></th></tr></thead>\n<tbody>\n");
	int64_t tot[6] = {0};
	for (size_t i = 0; i < n; i++) {
		const EntityStatus *es = &sub[i];
		const int64_t v[6] = {es->source, es->filtered, es->cp.migrated, es->cp.warned, es->cp.skipped,
				      es->unaccounted};
		static const char *const names[6] = {"source", "filtered", "migrated", "warned", "skipped", "unaccounted"};
		sb_puts(b, "<tr id=\"summary-");
		html_puts(b, es->m->entity);
		sb_puts(b, "\" data-entity=\"");
		html_puts(b, es->m->entity);
		sb_printf(b, "\" data-phase=\"%d\"", es->m->phase);
		for (int k = 0; k < 6; k++)
			sb_printf(b, " data-%s=\"%" PRId64 "\"", names[k], v[k]);
		sb_puts(b, "><td>");
		html_puts(b, es->m->entity);
		sb_printf(b, "</td><td class=\"num\">%d</td>", es->m->phase);
		for (int k = 0; k < 6; k++) {
			sb_printf(b, "<td class=\"num\" data-field=\"%s\">", names[k]);
			html_count(b, v[k]);
			sb_puts(b, "</td>");
			tot[k] += v[k];
		}
		sb_puts(b, "<td>");
		html_puts(b, es->state);
		sb_puts(b, "</td><td><div class=\"bar\">");
		int64_t clean = es->cp.migrated - es->cp.warned;
		int64_t seg[5] = {clean < 0 ? 0 : clean, es->cp.warned, es->cp.skipped, es->filtered,
				  es->unaccounted > 0 ? es->unaccounted : 0};
		static const char *const cls[5] = {"s-ok", "s-warn", "s-skip", "s-filt", "s-lost"};
		static const char *const what[5] = {"migrated clean", "migrated with warnings", "skipped",
						    "filtered out", "unaccounted"};
		int64_t den = 0;
		for (int k = 0; k < 5; k++)
			den += seg[k];
		for (int k = 0; den > 0 && k < 5; k++) {
			if (!seg[k])
				continue;
			char num[40];
			fmt_count(seg[k], num, sizeof num);
			sb_printf(b, "<span class=\"%s\" style=\"width:%.3f%%\" title=\"%s %s\"></span>", cls[k],
				  100.0 * (double)seg[k] / (double)den, num, what[k]);
		}
		sb_puts(b, "</div></td></tr>\n");
	}
	sb_puts(b, "</tbody>\n<tfoot><tr id=\"summary-total\"><th>total</th><th></th>");
	static const char *const tnames[6] = {"source", "filtered", "migrated", "warned", "skipped", "unaccounted"};
	for (int k = 0; k < 6; k++) {
		sb_printf(b, "<th class=\"num\" data-field=\"%s\">", tnames[k]);
		html_count(b, tot[k]);
		sb_puts(b, "</th>");
	}
	sb_puts(b, "<th></th><th></th></tr></tfoot></table>\n");
	free(sub);
}

static void html_reasons(StrBuf *b, const Report *r)
{
	sb_puts(b, "<h2 id=\"reasons\">Reasons, most frequent first</h2>\n");
	int n = r->reasons ? PQntuples(r->reasons) : 0;
	if (!n) {
		sb_puts(b, "<p>No unresolved skip or warning.</p>\n");
		return;
	}
	sb_puts(b, "<table class=\"reasons\"><thead><tr><th class=\"num\">#</th><th>entity</th><th>reason</th>"
		   "<th>severity</th><th class=\"num\">records</th><th class=\"num\">rows</th><th>meaning</th></tr>"
		   "</thead>\n<tbody>\n");
	for (int i = 0; i < n; i++) {
		const char *sev = PQgetvalue(r->reasons, i, 2);
		sb_puts(b, "<tr data-entity=\"");
		html_puts(b, PQgetvalue(r->reasons, i, 0));
		sb_puts(b, "\" data-reason=\"");
		html_puts(b, PQgetvalue(r->reasons, i, 1));
		sb_puts(b, "\" data-severity=\"");
		html_puts(b, sev);
		sb_printf(b, "\" data-records=\"%" PRId64 "\" data-rows=\"%" PRId64 "\"><td class=\"num\">%d</td><td>",
			  res_int(r->reasons, i, 3), res_int(r->reasons, i, 4), i + 1);
		html_puts(b, PQgetvalue(r->reasons, i, 0));
		sb_puts(b, "</td><td>");
		html_puts(b, PQgetvalue(r->reasons, i, 1));
		sb_puts(b, "</td><td class=\"sev-");
		html_puts(b, sev);
		sb_puts(b, "\">");
		html_puts(b, sev);
		sb_puts(b, "</td><td class=\"num\">");
		html_count(b, res_int(r->reasons, i, 3));
		sb_puts(b, "</td><td class=\"num\">");
		html_count(b, res_int(r->reasons, i, 4));
		sb_puts(b, "</td><td>");
		html_puts(b, reason_description(PQgetvalue(r->reasons, i, 1)));
		sb_puts(b, "</td></tr>\n");
	}
	sb_puts(b, "</tbody></table>\n");
}

static void html_cascades(StrBuf *b, const Report *r)
{
	sb_puts(b, "<h2 id=\"cascades\">Cascades, by root cause</h2>\n");
	int n = r->cascades ? PQntuples(r->cascades) : 0;
	if (!n) {
		sb_puts(b, "<p>No cascade: no skipped row was skipped because of a skipped parent.</p>\n");
		return;
	}
	sb_puts(b, "<p>Rows skipped because a parent row was skipped, traced up to the first row of the chain that "
		   "failed on its own. Fixing that row lets the whole chain move on a re-run.</p>\n<ul class=\"cascades\">\n");
	for (int i = 0; i < n; i++) {
		Cascade cc;
		cascade_get(r->cascades, i, &cc);
		sb_puts(b, "<li data-root-entity=\"");
		html_puts(b, cc.root_entity);
		sb_puts(b, "\" data-root-reason=\"");
		html_puts(b, cc.reasons);
		sb_printf(b, "\" data-rows=\"%" PRId64 "\" data-roots=\"%" PRId64 "\">", cc.counts[cc.n - 1], cc.counts[0]);
		cascade_text(b, &cc, true);
		sb_puts(b, "</li>\n");
		free(cc.path_buf);
	}
	sb_puts(b, "</ul>\n");
}

typedef struct HtmlCtx {
	Out out;
	StrBuf b;
	char *entity;             /* section being written */
	int64_t shown;
} HtmlCtx;

static void html_section_end(Report *r, HtmlCtx *c)
{
	if (!c->entity)
		return;
	int64_t total = entity_records(r, c->entity);
	StrBuf *b = &c->b;
	sb_puts(b, "</tbody></table>\n<p class=\"more\"");
	if (total > c->shown)
		sb_printf(b, " data-more=\"%" PRId64 "\"", total - c->shown);
	sb_puts(b, "><span class=\"shown\">");
	html_count(b, c->shown);
	sb_puts(b, "</span> of ");
	html_count(b, total);
	sb_puts(b, " records shown");
	if (total > c->shown) {
		sb_puts(b, " (a sample of every reason); ");
		html_count(b, total - c->shown);
		sb_puts(b, " more in the CSV: <code>edumig report --format csv --entity ");
		html_puts(b, c->entity);
		sb_puts(b, "</code>");
	}
	sb_puts(b, "</p>\n</section>\n");
	zfree(c->entity);
}

static void html_td(StrBuf *b, const char *cls, const char *s, size_t n)
{
	if (cls)
		sb_printf(b, "<td class=\"%s\">", cls);
	else
		sb_puts(b, "<td>");
	html_put(b, s, s ? n : 0);
	sb_puts(b, "</td>");
}

static bool html_row_fn(Report *r, char **f, size_t *len, void *ctx)
{
	HtmlCtx *c = ctx;
	StrBuf *b = &c->b;
	if (!c->entity || strcmp(c->entity, f[RC_ENTITY]) != 0) {
		html_section_end(r, c);
		c->entity = xstrdup(f[RC_ENTITY]);
		c->shown = 0;
		int64_t total = entity_records(r, c->entity);
		sb_puts(b, "<section class=\"rows\" id=\"rows-");
		html_puts(b, c->entity);
		sb_puts(b, "\" data-entity=\"");
		html_puts(b, c->entity);
		sb_printf(b, "\" data-records=\"%" PRId64 "\"><h3>", total);
		html_puts(b, c->entity);
		sb_puts(b, " <small>");
		html_count(b, total);
		sb_printf(b, " record%s</small></h3>\n", total == 1 ? "" : "s");
		sb_puts(b, "<table><thead><tr><th>legacy key</th><th>severity</th><th>reason</th>"
			   "<th>column</th><th>source value</th><th>detail</th><th>root cause</th><th>owner</th></tr>"
			   "</thead>\n<tbody>\n");
	}
	sb_puts(b, "<tr data-reason=\"");
	html_put(b, f[RC_REASON], len[RC_REASON]);
	sb_puts(b, "\" data-severity=\"");
	html_put(b, f[RC_SEVERITY], len[RC_SEVERITY]);
	sb_puts(b, "\">");
	html_td(b, NULL, f[RC_OLD_KEY], len[RC_OLD_KEY]);
	sb_printf(b, "<td class=\"sev-%s\">", strcmp(f[RC_SEVERITY], "error") == 0 ? "error" : "warning");
	html_put(b, f[RC_SEVERITY], len[RC_SEVERITY]);
	sb_puts(b, "</td>");
	html_td(b, NULL, f[RC_REASON], len[RC_REASON]);
	html_td(b, NULL, f[RC_COLUMN], len[RC_COLUMN]);
	html_td(b, "val", f[RC_SOURCE_VALUE], len[RC_SOURCE_VALUE]);
	html_td(b, "detail", f[RC_DETAIL], len[RC_DETAIL]);
	html_td(b, NULL, f[RC_ROOT_CAUSE], len[RC_ROOT_CAUSE]);
	sb_puts(b, "<td>");
	if (f[RC_OWNER_CODE] || f[RC_OWNER_KEY]) {
		html_put(b, f[RC_OWNER_CODE] ? f[RC_OWNER_CODE] : f[RC_OWNER_KEY],
			 f[RC_OWNER_CODE] ? len[RC_OWNER_CODE] : len[RC_OWNER_KEY]);
		if (f[RC_OWNER_NAME]) {
			sb_puts(b, " (");
			html_put(b, f[RC_OWNER_NAME], len[RC_OWNER_NAME]);
			sb_putc(b, ')');
		}
	}
	sb_puts(b, "</td></tr>\n");
	c->shown++;
	out_maybe(&c->out, b);
	r->rows_written++;
	r->out_failed = r->out_failed || c->out.err;
	return !c->out.err;
}

static int report_html(Report *r, const char *path)
{
	HtmlCtx c = {0};
	if (!out_open(&c.out, path))
		return EXIT_USAGE;
	StrBuf *b = &c.b;
	sb_puts(b, HTML_HEAD);
	sb_puts(b, "<h1>edumig skip report</h1>\n<p class=\"meta\">Target ");
	html_puts(b, r->t.safe_name);
	sb_puts(b, ", configuration ");
	html_puts(b, config_hash(r->cfg));
	sb_puts(b, ". Unresolved skip records only");
	if (r->o->phase > 0)
		sb_printf(b, "; phase %d", r->o->phase);
	if (r->o->entity) {
		sb_puts(b, "; entity ");
		html_puts(b, r->o->entity);
	}
	if (r->o->reason) {
		sb_puts(b, "; reason ");
		html_puts(b, r->o->reason);
	}
	sb_puts(b, ". A record is one skip or warning of one legacy row (a row may have several).</p>\n");
	if (!r->control)
		sb_puts(b, "<p><strong>Nothing has run yet</strong>: the target has no edumig control schema.</p>\n");
	html_summary(b, r);
	html_reasons(b, r);
	html_cascades(b, r);

	sb_puts(b, "<h2 id=\"rows\">Rows</h2>\n<div class=\"filter\"><label>Reason: <select id=\"reason-filter\">"
		   "<option value=\"\">every reason</option>");
	/* Options: each reason once, most frequent first, with its records over every entity. */
	int nr = r->reasons ? PQntuples(r->reasons) : 0;
	for (int i = 0; i < nr; i++) {
		const char *reason = PQgetvalue(r->reasons, i, 1);
		bool seen = false;
		for (int j = 0; j < i && !seen; j++)
			seen = strcmp(PQgetvalue(r->reasons, j, 1), reason) == 0;
		if (seen)
			continue;
		int64_t tot = 0;
		for (int j = i; j < nr; j++)
			if (strcmp(PQgetvalue(r->reasons, j, 1), reason) == 0)
				tot += res_int(r->reasons, j, 3);
		sb_puts(b, "<option value=\"");
		html_puts(b, reason);
		sb_puts(b, "\">");
		html_puts(b, reason);
		sb_puts(b, " (");
		html_count(b, tot);
		sb_puts(b, ")</option>");
	}
	char capn[40];
	fmt_count(r->html_rows, capn, sizeof capn);
	sb_printf(b, "</select></label> <span class=\"more\">At most %s records are shown per entity, sampled over "
		     "its reasons; the counts above are exact and the CSV has every record.</span></div>\n",
		  capn);
	out_put(&c.out, b);
	bool ok = stream_rows(r, false, r->html_rows, html_row_fn, &c);
	if (ok) {
		html_section_end(r, &c);
		if (!r->rows_written)
			sb_puts(b, "<p>No record.</p>\n");
	}
	free(c.entity);
	sb_puts(b, HTML_SCRIPT);
	sb_puts(b, "</body>\n</html>\n");
	out_put(&c.out, b);
	sb_free(b);
	bool wrote = out_close(&c.out, ok);
	return !ok ? (r->out_failed ? EXIT_USAGE : EXIT_SERVER) : wrote ? EXIT_OK_ : EXIT_USAGE;
}

/* ---------------------------------------------------------------------------------- */

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Checks the options against each other and the configuration; prints every problem. */
static bool check_options(Report *r)
{
	const EngineOptions *o = r->o;
	int errors = 0;
	const char *f = o->report_format ? o->report_format : "csv";
	if (strcmp(f, "csv") == 0)
		r->fmt = FMT_CSV;
	else if (strcmp(f, "json") == 0)
		r->fmt = FMT_JSON;
	else if (strcmp(f, "html") == 0)
		r->fmt = FMT_HTML;
	else {
		fprintf(stderr, "edumig report: --format takes csv, json or html, not '%s'\n", f);
		errors++;
	}
	if (o->report_split && r->fmt != FMT_CSV) {
		fprintf(stderr, "edumig report: --split-by organization writes CSV files; it does not apply to --format %s\n", f);
		errors++;
	}
	if (o->report_html_rows > 0 && r->fmt != FMT_HTML) {
		fprintf(stderr, "edumig report: --html-rows applies to --format html only\n");
		errors++;
	}
	if (o->report_split && o->report_out && strcmp(o->report_out, "-") == 0) {
		fprintf(stderr, "edumig report: --split-by organization writes into a directory, not to standard output\n");
		errors++;
	}
	if (o->phase > 0 && !config_find_phase(r->cfg, o->phase)) {
		fprintf(stderr, "edumig report: no phase %d in %s/phases/phases.json (phases 1 to %zu)\n", o->phase,
			r->cfg->dir, r->cfg->n_phases);
		errors++;
	}
	if (o->entity && config_find_entity(r->cfg, o->entity) < 0) {
		fprintf(stderr, "edumig report: no entity \"%s\" in the configuration (entities:", o->entity);
		for (size_t i = 0; i < r->cfg->n_mappings; i++)
			fprintf(stderr, " %s", r->cfg->mappings[i].entity);
		fprintf(stderr, ")\n");
		errors++;
	}
	return errors == 0;
}

int engine_report(const EngineOptions *o)
{
	double t0 = now_seconds();
	Report r = {0};
	r.o = o;
	r.html_rows = o->report_html_rows > 0 ? o->report_html_rows : REPORT_HTML_ROWS_DEFAULT;
	config_set_bcrypt_cost(o->bcrypt_cost);
	r.cfg = config_load(o->config_dir ? o->config_dir : ".");
	if (!r.cfg)
		return EXIT_USAGE;
	if (!check_options(&r)) {
		config_free(r.cfg);
		return EXIT_USAGE;
	}
	const char *log_dir = o->log_dir ? o->log_dir : "logs";
	static const char *const ext[] = {"csv", "json", "html"};
	AUTOFREE char *path = o->report_out ? xstrdup(o->report_out)
			      : o->report_split ? xasprintf("%s/report-by-organization", log_dir)
						: xasprintf("%s/report.%s", log_dir, ext[r.fmt]);
	if (!o->report_out && mkdir(log_dir, 0755) != 0 && errno != EEXIST) {
		log_error("cannot create %s: %s", log_dir, strerror(errno));
		config_free(r.cfg);
		return EXIT_USAGE;
	}

	int rc = EXIT_SERVER;
	r.n_st = status_entity_count(r.cfg);
	r.st = xcalloc(r.n_st ? r.n_st : 1, sizeof *r.st);
	/* The source only gives the live source counts of the summary (JSON, HTML). */
	bool need_source = r.fmt != FMT_CSV;
	if (need_source) {
		if (!pg_connect(&r.s, conninfo(o->source, "EDUMIG_SOURCE"), "SOURCE"))
			goto out;
		r.have_s = true;
		if (!pg_exec(&r.s, "SET default_transaction_read_only = on", NULL))
			goto out;
	}
	if (!pg_connect(&r.t, conninfo(o->target, "EDUMIG_TARGET"), "TARGET"))
		goto out;
	/* One snapshot: summary, aggregates and rows agree even while a run is going on. */
	if (!pg_exec(&r.t, "SET default_transaction_read_only = on", NULL) ||
	    !pg_exec(&r.t, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL) || !control_exists(&r.t, &r.control))
		goto out;
	/*
	 * The report's joins are all equi-joins over whole tables, and the planner can only
	 * guess the size of the CTEs (it guesses a few rows): a nested loop or a merge join
	 * chosen on such a guess costs minutes at scale, a hash join never does. Sorts get
	 * room to stay in memory, and JIT compilation, which costs more than it saves here,
	 * is off. For this transaction only.
	 */
	if (!pg_exec(&r.t, "SET LOCAL enable_nestloop = off; SET LOCAL enable_mergejoin = off; "
			   "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off", NULL))
		goto out;
	for (size_t p = 0, k = 0; p < r.cfg->n_phases; p++)
		for (size_t e = 0; e < r.cfg->phases[p].n_entities; e++, k++)
			r.st[k].m = &r.cfg->mappings[r.cfg->phases[p].entities[e]];
	r.head_sql = head_sql(&r);
	r.own_sql = owners_sql(&r);
	if (!r.head_sql || !r.own_sql)
		goto out;
	if (!r.control)
		log_warn("the target has no edumig control schema: nothing has run yet, the report is empty");
	/*
	 * The live source counts (as slow as `edumig status`) run while the target works out
	 * the aggregates: the checkpoints are read on a second target session that shares the
	 * first one's snapshot, so every figure still comes from one instant.
	 */
	if (need_source && r.control && !open_twin(&r))
		goto out;
	if (r.control && r.fmt != FMT_CSV && !aggregates_send(&r))
		goto out;
	if (need_source) {
		if (!status_collect(&r.s, r.control ? &r.t2 : &r.t, r.cfg, r.st, r.control))
			goto out;
	} else {
		for (size_t k = 0; k < r.n_st; k++)
			checkpoint_init(&r.st[k].cp, r.st[k].m->n_filters);
	}
	log_debug("report: summary after %.2f s", now_seconds() - t0);
	if (r.busy && !aggregates_get(&r))
		goto out;
	if (o->reason && r.reasons && PQntuples(r.reasons) == 0)
		log_warn("no unresolved skip record has reason \"%s\"", o->reason);
	log_debug("report: aggregates after %.2f s", now_seconds() - t0);
	switch (r.fmt) {
	case FMT_CSV:
		rc = o->report_split ? report_split(&r, path) : report_csv(&r, path);
		break;
	case FMT_JSON:
		rc = report_json(&r, path);
		break;
	case FMT_HTML:
		rc = report_html(&r, path);
		break;
	default:
		rc = EXIT_USAGE;
		break;
	}
	if (rc == EXIT_OK_ && r.fmt == FMT_HTML) {
		int64_t all = 0;
		for (int i = 0; r.reasons && i < PQntuples(r.reasons); i++)
			all += res_int(r.reasons, i, 3);
		log_info("report: %" PRId64 " records, %" PRId64 " of them shown in %s, in %.1f s", all, r.rows_written,
			 strcmp(path, "-") == 0 ? "standard output" : path, now_seconds() - t0);
	} else if (rc == EXIT_OK_) {
		log_info("report: %" PRId64 " record%s written to %s in %.1f s", r.rows_written,
			 r.rows_written == 1 ? "" : "s", strcmp(path, "-") == 0 ? "standard output" : path,
			 now_seconds() - t0);
	}
out:
	/* A query still in flight is abandoned with the session (its transaction rolls back). */
	if (pg_ok(&r.t) && !r.busy)
		pg_exec(&r.t, "ROLLBACK", NULL);
	if (pg_ok(&r.t2))
		pg_exec(&r.t2, "ROLLBACK", NULL);
	pg_close(&r.t2);
	PQclear(r.reasons);
	PQclear(r.cascades);
	free(r.own_sql);
	free(r.head_sql);
	status_free(r.st, r.n_st);
	free(r.st);
	if (r.have_s)
		pg_close(&r.s);
	pg_close(&r.t);
	config_free(r.cfg);
	return rc;
}
