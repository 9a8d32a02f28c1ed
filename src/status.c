/*
 * src/status.c — per-entity figures from the checkpoints and live source counts.
 */
#include "edumig/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/mem.h"
#include "edumig/skiplog.h"
#include "edumig/source.h"
#include "edumig/strbuf.h"

bool status_collect(PgConn *s, PgConn *t, const Config *cfg, EntityStatus *st, bool control)
{
	for (size_t p = 0, k = 0; p < cfg->n_phases; p++) {
		for (size_t e = 0; e < cfg->phases[p].n_entities; e++, k++) {
			EntityStatus *es = &st[k];
			es->m = &cfg->mappings[cfg->phases[p].entities[e]];
			if (control) {
				if (!checkpoint_load(t, es->m, 0, &es->cp))
					return false;
			} else {
				checkpoint_init(&es->cp, es->m->n_filters);
			}
			es->has_cp = es->cp.exists;
			AUTOFREE char *sql = source_count_sql(s, es->m);
			AUTOFREE char *cnt = NULL;
			if (!pg_query_value(s, sql, 0, NULL, &cnt))
				return false;
			es->source = strtoll(cnt, NULL, 10);
			for (size_t f = 0; f < es->m->n_filters; f++)
				es->filtered += es->cp.filtered[f];
			/* Rows gone from the source are still counted as migrated or skipped until
			 * --apply-deletes removes them. */
			es->unaccounted = es->source - es->filtered - es->cp.migrated - es->cp.skipped + es->cp.gone;
			es->state = !es->has_cp ? "not started" : es->cp.done ? "done" : "in progress";
		}
	}
	return true;
}

size_t status_entity_count(const Config *cfg)
{
	size_t n = 0;
	for (size_t p = 0; p < cfg->n_phases; p++)
		n += cfg->phases[p].n_entities;
	return n;
}

void status_free(EntityStatus *st, size_t n)
{
	for (size_t i = 0; i < n; i++)
		checkpoint_free(&st[i].cp);
}

void status_json(const EntityStatus *st, size_t n, StrBuf *out)
{
	StrBuf b = {0};
	sb_puts(&b, "{\"entities\":[");
	for (size_t i = 0; i < n; i++) {
		const EntityStatus *es = &st[i];
		double rate = es->cp.seconds > 0 ? (double)es->cp.read / es->cp.seconds : 0;
		sb_printf(&b, "%s{\"entity\":", i ? "," : "");
		json_put_string(&b, es->m->entity, strlen(es->m->entity));
		sb_printf(&b,
			  ",\"phase\":%d,\"source_rows\":%" PRId64 ",\"filtered\":%" PRId64 ",\"migrated\":%" PRId64
			  ",\"warned\":%" PRId64 ",\"merged\":%" PRId64 ",\"skipped\":%" PRId64 ",\"unaccounted\":%" PRId64
			  ",\"placeholders\":%" PRId64 ",\"batches\":%" PRId64 ",\"seconds\":%.3f,\"rows_per_second\":%.0f,"
			  "\"gone_from_source\":%" PRId64 ",\"changed_not_applied\":%" PRId64 ",\"updated\":%" PRId64
			  ",\"state\":",
			  es->m->phase, es->source, es->filtered, es->cp.migrated, es->cp.warned, es->cp.merged,
			  es->cp.skipped, es->unaccounted, es->cp.stubs, es->cp.batches, es->cp.seconds, rate, es->cp.gone,
			  es->cp.changed, es->cp.updated);
		json_put_string(&b, es->state, strlen(es->state));
		sb_puts(&b, ",\"filters\":{");
		for (size_t f = 0; f < es->m->n_filters; f++) {
			sb_printf(&b, "%s", f ? "," : "");
			json_put_string(&b, es->m->filters[f].name, strlen(es->m->filters[f].name));
			sb_printf(&b, ":%" PRId64, es->cp.filtered[f]);
		}
		sb_puts(&b, "}}");
	}
	sb_puts(&b, "]}\n");
	sb_put(out, b.data, b.len);
	sb_free(&b);
}

