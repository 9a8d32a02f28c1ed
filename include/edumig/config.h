/*
 * include/edumig/config.h — the mapping and phase files, parsed and validated.
 *
 * mappings/NAME.json: one file per target entity (source, key, filters, target table, one rule
 * per target column, policies). phases/phases.json: the migration's namespace and the
 * ordered phases with their entities. Every error names file:line and the JSON path at
 * fault; config_load reports every error it finds before it fails (STYLE example 3).
 */
#ifndef EDUMIG_CONFIG_H
#define EDUMIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edumig/transform.h"

#define EDUMIG_MAX_KEY_COLS 3

/* X-macro: rule kinds and their JSON spelling. */
#define RULE_KIND_LIST(X) \
	X(RULE_ID, "id") \
	X(RULE_COPY, "copy") \
	X(RULE_CONSTANT, "constant") \
	X(RULE_TEMPLATE, "template") \
	X(RULE_REF, "ref") \
	X(RULE_JSON, "json") \
	X(RULE_I18N, "i18n")

typedef enum RuleKind {
#define X(e, s) e,
	RULE_KIND_LIST(X)
#undef X
} RuleKind;

const char *rule_kind_name(RuleKind k);

/* What happens when a reference cannot be resolved or a value is invalid. */
#define POLICY_LIST(X) \
	X(POLICY_SKIP, "skip") \
	X(POLICY_NULL, "null") \
	X(POLICY_STUB, "stub") \
	X(POLICY_DEFAULT, "default")

typedef enum Policy {
#define X(e, s) e,
	POLICY_LIST(X)
#undef X
} Policy;

const char *policy_name(Policy p);

/* A JSON value type for fields of a "json" rule. */
typedef enum JsonType {
	JT_STRING,
	JT_NUMBER,
	JT_BOOLEAN,
	JT_JSON,
} JsonType;

/* A template such as "STU{id}": literal pieces and source column references. */
typedef struct TemplatePart {
	char *literal;     /* when not NULL, a literal piece */
	char *column;      /* otherwise the source column whose value is inserted */
	int col;           /* index of @column in the source row, resolved by plan_bind */
} TemplatePart;

typedef struct Template {
	TemplatePart *parts;
	size_t n;
} Template;

/**
 * ValueSpec - how one value is computed from a source row.
 * Exactly one of @from, @constant/@is_null_constant, @tmpl is set. Then @chain runs; on
 * TX_INVALID the @on_invalid policy applies (skip the row, NULL, or @default_value), each
 * flagged; a NULL result is replaced by @or (a named coalesce, not flagged).
 */
typedef struct ValueSpec {
	char *from;
	int col;                  /* index of @from in the source row (plan_bind) */
	char *constant;
	bool is_null_constant;
	bool has_constant;
	Template *tmpl;
	TxChain *chain;
	Policy on_invalid;        /* POLICY_SKIP, POLICY_NULL or POLICY_DEFAULT */
	char *default_value;
	Template *default_tmpl;   /* set when the default names columns, e.g. "user-{id}@x.invalid" */
	struct ValueSpec *or;
	bool sensitive;           /* redact the source value and details in logs and reports */
} ValueSpec;

typedef struct JsonField {
	char *key;
	ValueSpec value;
	JsonType type;
	bool omit_null;
} JsonField;

typedef struct I18nLang {
	char *lang;               /* "az" */
	ValueSpec value;
} I18nLang;

/* A column of a stub (placeholder) parent row. */
typedef struct StubColumn {
	char *name;
	Template *tmpl;           /* may use {key} (the missing key) and child source columns */
	char *constant;
	bool is_null;
	bool is_json;             /* the constant is JSON text */
} StubColumn;

typedef struct ColumnRule {
	char *name;               /* target column */
	RuleKind kind;
	bool kind_known;          /* "rule" parsed (an unknown rule is reported, not counted as id) */
	int line;                 /* where it is defined, for messages */
	char *path;               /* JSON path, e.g. /columns/4 */

	ValueSpec value;          /* copy, constant, template */

	/* ref */
	char *ref_entity;
	char *ref_from[EDUMIG_MAX_KEY_COLS];
	int ref_cols[EDUMIG_MAX_KEY_COLS];
	int n_ref_from;
	Policy on_missing;        /* POLICY_SKIP, POLICY_NULL or POLICY_STUB */
	bool deferred;            /* self-reference resolved after the entity's last batch */
	StubColumn *stub_cols;
	size_t n_stub_cols;
	int ref_entity_index;     /* index into Config.mappings (config_validate) */

	/* json */
	JsonField *fields;
	size_t n_fields;

	/* i18n */
	I18nLang *langs;
	size_t n_langs;
	char **fallback;
	size_t n_fallback;
	Template *placeholder;    /* used, flagged, when every language is missing */
} ColumnRule;

/**
 * Filter - a named reason for which source rows are deliberately not migrated.
 * Filtered rows are streamed, counted per filter name and shown by status, never hidden.
 */
typedef struct Filter {
	char *name;
	char *where;              /* SQL boolean over the source columns */
	char *description;
} Filter;

/**
 * Flag - a warning raised from a boolean source column (typically computed by the source
 * query, e.g. "this username was renamed because another account holds it").
 */
typedef struct Flag {
	char *when;               /* source column; the flag is raised when it is true */
	int col;
	char *reason;
	char *column;             /* target column it concerns, or NULL */
	Template *detail;
} Flag;

typedef struct Lookup {
	char *name;
	char *query;              /* SELECT key, value FROM ... (run once per phase on the source) */
} Lookup;

/**
 * Merge - duplicate source rows folded onto a surviving row.
 * @survivor_column names a source column holding the survivor's key (equal to the row's own
 * key for the survivor itself). A row whose survivor differs is not written: its old key is
 * mapped to the survivor's UUID in the id map, with a warning naming the survivor.
 */
typedef struct Merge {
	char *survivor_column;
	int col;
	char *reason;             /* reason code, default "merged_duplicate" */
} Merge;

typedef struct Mapping {
	char *file;
	char *entity;
	char *description;
	char *source_table;
	char *source_query;
	char *key_cols[EDUMIG_MAX_KEY_COLS];
	int key_idx[EDUMIG_MAX_KEY_COLS];
	int n_key;
	bool key_unique;          /* the source guarantees one row per key (no tie-break needed) */
	Filter *filters;
	size_t n_filters;
	Lookup *lookups;
	size_t n_lookups;
	Merge *merge;
	Flag *flags;
	size_t n_flags;
	/* The organization unit that owns a row, for reports split per owner (optional). */
	char *owner_entity;
	char *owner_from;
	int owner_col;
	char *target_schema;
	char *target_table;
	char *id_column;          /* the target's UUID primary key, default "id" */
	ColumnRule *cols;
	size_t n_cols;
	int phase;                /* phase number, from the phases file */
	bool sensitive_any;

	/* Source columns the rules read, in the order they are selected (plan_bind). */
	char **src_cols;
	size_t n_src_cols;
} Mapping;

typedef struct Phase {
	int number;
	char *name;
	char *description;
	int *entities;            /* indexes into Config.mappings, in run order */
	size_t n_entities;
} Phase;

typedef struct Config {
	char *dir;
	unsigned char namespace_uuid[16];
	char namespace_text[37];
	char hash[17];            /* FNV-1a of every configuration file, hex */
	int bcrypt_cost;          /* overrides bcrypt steps' cost when > 0 (benchmarks, tests) */
	Mapping *mappings;
	size_t n_mappings;
	Phase *phases;
	size_t n_phases;
	TxLookups *lookups;       /* filled by the engine from the mappings' lookup queries */
} Config;

/**
 * config_load - read DIR/phases/phases.json and every DIR/mappings/NAME.json.
 * Every problem is printed on stderr as "file:line: path: message"; returns NULL when there
 * was any. Free with config_free().
 */
Config *config_load(const char *dir);
/* Overrides the cost of every bcrypt step compiled afterwards (0 = as written). Benchmarks
 * and tests hash at cost 4 so the other figures stay readable. */
void config_set_bcrypt_cost(int cost);
void config_free(Config *cfg);

/* Index of @entity in cfg->mappings, or -1. */
int config_find_entity(const Config *cfg, const char *entity);
const Phase *config_find_phase(const Config *cfg, int number);
/* A stable hash of every config file's bytes, recorded with each run. */
const char *config_hash(const Config *cfg);

#endif /* EDUMIG_CONFIG_H */
