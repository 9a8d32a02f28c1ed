/*
 * include/edumig/report.h — the skip report for data owners: CSV, JSON or HTML.
 *
 * The report reads the target's control schema only (edumig.skips, edumig.id_map,
 * edumig.checkpoints, and the owner entity's target table for unit codes and names), in one
 * READ ONLY REPEATABLE READ transaction, so its parts agree with each other even while a
 * run is in progress. It never writes to either database. Only unresolved skip records
 * (resolved_at IS NULL) are reported. Rows are streamed with COPY and written as they
 * arrive: memory does not grow with the number of skip records.
 *
 * Root cause of a record: when its cause (cause_entity, cause_key) is a row with an error
 * skip, the cascade is followed upwards through error-skipped parents to the topmost one,
 * written "entity key: reason[, reason]".
 */
#ifndef EDUMIG_REPORT_H
#define EDUMIG_REPORT_H

#include "edumig/engine.h"

/* Rows shown per entity in the HTML report unless --html-rows says otherwise. */
#define REPORT_HTML_ROWS_DEFAULT 1000

/**
 * engine_report - write the report EngineOptions asks for (report_format, report_out,
 * phase, entity, reason, report_split, report_html_rows).
 * CSV needs only the target; JSON and HTML also connect to the source for the live source
 * counts of their summary (the figures of `edumig status --json`).
 * Returns EXIT_OK_, EXIT_USAGE (bad option, unknown phase or entity, output not writable)
 * or EXIT_SERVER.
 */
int engine_report(const EngineOptions *o);

#endif /* EDUMIG_REPORT_H */
