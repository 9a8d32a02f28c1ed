-- src/sql/control.sql — edumig's control tables in the target database (schema "edumig").
-- Idempotent: every run executes it; schema_version says which layout is in place.
-- Runnable in psql as it is.
CREATE SCHEMA IF NOT EXISTS edumig;

CREATE TABLE IF NOT EXISTS edumig.schema_version (
    version integer NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS edumig.runs (
    run_id bigserial PRIMARY KEY,
    command text NOT NULL,
    phase integer,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'done', 'failed', 'stopped')),
    config_hash text,
    version text,
    host text,
    pid integer,
    message text
);

-- The persistent map from legacy key to target UUID: the truth about identity.
CREATE TABLE IF NOT EXISTS edumig.id_map (
    entity text NOT NULL,
    old_key text NOT NULL,
    new_id uuid NOT NULL,
    kind text NOT NULL DEFAULT 'row' CHECK (kind IN ('row', 'merged', 'stub')),
    merged_into text,
    phase integer NOT NULL,
    run_id bigint NOT NULL,
    row_hash text,
    migrated_at timestamptz NOT NULL DEFAULT now(),
    updated_by_run bigint,    -- the last delta run (--update) that rewrote the row
    PRIMARY KEY (entity, old_key)
);
CREATE INDEX IF NOT EXISTS id_map_new_id_idx ON edumig.id_map (new_id);

CREATE TABLE IF NOT EXISTS edumig.skips (
    skip_id bigserial PRIMARY KEY,
    run_id bigint NOT NULL,
    phase integer NOT NULL,
    entity text NOT NULL,
    old_key text,
    reason text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('error', 'warning')),
    column_name text,
    source_value text,
    detail text,
    sqlstate text,
    constraint_name text,
    cause_entity text,
    cause_key text,
    owner_entity text,
    owner_key text,
    at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolved_by_run bigint,
    -- how a retry closed it: 'migrated' (the row moved) or 'superseded' (re-read, still
    -- skipped: a newer record of the same run says why)
    resolution text CHECK (resolution IN ('migrated', 'superseded', 'source_deleted')),
    -- hash of the source row that was skipped: a delta run with --update re-reads the row
    -- only when it changed (or when its cause has moved since)
    row_hash text
);
CREATE INDEX IF NOT EXISTS skips_entity_key_idx ON edumig.skips (entity, old_key);

-- One row per worker partition; advanced in the same transaction as its batch.
CREATE TABLE IF NOT EXISTS edumig.checkpoints (
    entity text NOT NULL,
    part integer NOT NULL DEFAULT 0,
    phase integer NOT NULL,
    last_key text,
    rows_read bigint NOT NULL DEFAULT 0,
    rows_filtered jsonb NOT NULL DEFAULT '{}',
    rows_migrated bigint NOT NULL DEFAULT 0,
    rows_warned bigint NOT NULL DEFAULT 0,
    rows_merged bigint NOT NULL DEFAULT 0,
    rows_skipped bigint NOT NULL DEFAULT 0,
    stubs bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    seconds double precision NOT NULL DEFAULT 0,
    -- running: rows still to read; streamed: all rows in, deferred references pending; done
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'streamed', 'done')),
    -- delta runs: rows migrated or skipped earlier that the source no longer has (not yet
    -- applied), rows whose content changed and that wait for --update, rows updated so far
    rows_gone bigint NOT NULL DEFAULT 0,
    rows_changed bigint NOT NULL DEFAULT 0,
    rows_updated bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, part)
);

-- Self-references waiting for the entity's last batch (see "deferred" in the README).
CREATE TABLE IF NOT EXISTS edumig.deferred_refs (
    entity text NOT NULL,
    old_key text NOT NULL,
    column_name text NOT NULL,
    ref_key text NOT NULL,
    run_id bigint NOT NULL,
    PRIMARY KEY (entity, old_key, column_name)
);

-- Foreign keys and non-unique indexes that `run --bulk` dropped from a phase's empty target
-- tables, saved in the transaction that dropped them and deleted in the one that rebuilds
-- them: a row here is a definition missing from (or, state 'not_valid', not yet validated
-- in) the target. verify fails while any is left.
CREATE TABLE IF NOT EXISTS edumig.bulk_set_aside (
    phase integer NOT NULL,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('foreign_key', 'index')),
    name text NOT NULL,
    -- pg_get_constraintdef / pg_get_indexdef as they were
    definition text NOT NULL,
    -- foreign key: it was valid, so it is validated again once added back
    validated boolean NOT NULL DEFAULT true,
    -- dropped: absent; not_valid: a foreign key added back NOT VALID, validation pending
    state text NOT NULL DEFAULT 'dropped' CHECK (state IN ('dropped', 'not_valid')),
    run_id bigint NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    PRIMARY KEY (schema_name, table_name, kind, name)
);

-- Legacy rows that were migrated (or skipped) and are gone from the source, found by a delta
-- run. They stay in the target until a run with --apply-deletes removes them (outcome
-- 'deleted'), or refuses because target rows still refer to them (outcome 'blocked: ...').
CREATE TABLE IF NOT EXISTS edumig.source_gone (
    entity text NOT NULL,
    old_key text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('row', 'merged', 'skipped')),
    new_id uuid,
    phase integer NOT NULL,
    detected_by_run bigint NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    applied_by_run bigint,
    applied_at timestamptz,
    outcome text,
    PRIMARY KEY (entity, old_key)
);

INSERT INTO edumig.schema_version (version)
SELECT 2 WHERE NOT EXISTS (SELECT 1 FROM edumig.schema_version);

-- Version 2: delta sync (row hashes of skipped rows, gone/changed/updated counters,
-- source_deleted resolutions, source_gone) and bulk_set_aside (created above for every version).
-- A version-1 schema is upgraded here.
DO $upgrade$
BEGIN
    IF (SELECT max(version) FROM edumig.schema_version) < 2 THEN
        ALTER TABLE edumig.skips ADD COLUMN IF NOT EXISTS row_hash text;
        ALTER TABLE edumig.skips DROP CONSTRAINT IF EXISTS skips_resolution_check;
        ALTER TABLE edumig.skips ADD CONSTRAINT skips_resolution_check
            CHECK (resolution IN ('migrated', 'superseded', 'source_deleted'));
        ALTER TABLE edumig.id_map ADD COLUMN IF NOT EXISTS updated_by_run bigint;
        ALTER TABLE edumig.checkpoints ADD COLUMN IF NOT EXISTS rows_gone bigint NOT NULL DEFAULT 0,
            ADD COLUMN IF NOT EXISTS rows_changed bigint NOT NULL DEFAULT 0,
            ADD COLUMN IF NOT EXISTS rows_updated bigint NOT NULL DEFAULT 0;
        INSERT INTO edumig.schema_version (version) VALUES (2);
    END IF;
END
$upgrade$;
