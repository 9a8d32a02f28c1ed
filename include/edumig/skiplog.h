/*
 * include/edumig/skiplog.h — why a row did not move (or moved changed), in one record.
 *
 * Engine reasons come from one X-macro so edumig.skips, the reports and this enum cannot
 * drift apart. Transform reasons (invalid_date, not_base64, ...) are the transforms' own
 * codes. Severity "error" means the row was not migrated; "warning" means it was, with a
 * change the data owners must hear about.
 */
#ifndef EDUMIG_SKIPLOG_H
#define EDUMIG_SKIPLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "edumig/strbuf.h"

#define SKIP_REASON_LIST(X) \
	X(REASON_DUPLICATE_SOURCE_KEY, "duplicate_source_key", "the legacy key appears on more than one source row; the first row (in key, then row-text order) migrated") \
	X(REASON_NULL_SOURCE_KEY, "null_source_key", "the legacy key is NULL, so the row cannot be identified") \
	X(REASON_MISSING_REFERENCE, "missing_reference", "the row refers to a parent row that does not exist in the source or was filtered out") \
	X(REASON_PARENT_SKIPPED, "parent_skipped", "the row's parent could not be migrated; see the cause") \
	X(REASON_PARENT_STUBBED, "parent_stubbed", "the parent was missing; a flagged placeholder parent stands in for it") \
	X(REASON_TARGET_REJECTED, "target_rejected", "the target database rejected the row (constraint or type)") \
	X(REASON_MERGED_DUPLICATE, "merged_duplicate", "the row duplicates another and was merged onto it") \
	X(REASON_MERGE_SURVIVOR_MISSING, "merge_survivor_missing", "the row should merge onto a survivor that was not migrated") \
	X(REASON_PLACEHOLDER_VALUE, "placeholder_value", "no value in any language; a flagged placeholder was written") \
	X(REASON_INVALID_VALUE, "invalid_value", "a value failed a check of the mapping")

typedef enum SkipReason {
#define X(e, s, d) e,
	SKIP_REASON_LIST(X)
#undef X
	REASON__COUNT
} SkipReason;

const char *skip_reason_code(SkipReason r);
const char *skip_reason_description(SkipReason r);

typedef enum Severity {
	SEV_ERROR = 0,
	SEV_WARNING = 1,
} Severity;

const char *severity_name(Severity s);

/**
 * Issue - one skip-log record being built for a batch. Strings are owned (malloc'd) unless
 * noted, so the record survives the source row it came from.
 */
typedef struct Issue {
	const char *reason;       /* static string: engine or transform code */
	Severity severity;
	const char *column;       /* target column (borrowed from the config), or NULL */
	char *source_value;       /* the value before any transform, or NULL (redacted if sensitive) */
	char *detail;
	char *sqlstate;
	char *constraint_name;
	const char *cause_entity; /* borrowed */
	char *cause_key;
	const char *owner_entity; /* borrowed */
	char *owner_key;
	int row;                  /* index of the row in its batch; -1 for none */
	uint64_t row_hash;        /* the source row's hash (delta runs re-read changed rows) */
	bool has_row_hash;
	bool dropped;             /* superseded (e.g. a warning on a row the target then rejected) */
	bool update_refused;      /* a delta update that did not land: the older version stays */
} Issue;

void issue_clear(Issue *i);
/* A delta update that did not land: the error becomes a warning that says the target keeps
 * the version migrated earlier. */
void issue_refuse_update(Issue *i);

/* COPY text line for edumig.skips(run_id, phase, entity, old_key, reason, severity,
 * column_name, source_value, detail, sqlstate, constraint_name, cause_entity, cause_key,
 * owner_entity, owner_key, row_hash). */
void issue_copy_line(StrBuf *b, const Issue *i, int64_t run_id, int phase, const char *entity,
		     const char *old_key);
/* One JSON object (no newline) for the run log. */
void issue_json(StrBuf *b, const Issue *i, int64_t run_id, int phase, const char *entity,
		const char *old_key);

/* JSON string escaping (quotes included) of @n bytes. */
void json_put_string(StrBuf *b, const char *s, size_t n);

#endif /* EDUMIG_SKIPLOG_H */
