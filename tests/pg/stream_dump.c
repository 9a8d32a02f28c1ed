/*
 * tests/pg/stream_dump.c — prints an entity's source stream exactly as the worker receives it,
 * for tests/pg/stream.sh to compare the two ways of reading it.
 *
 *   stream_dump CONFIG_DIR SOURCE_CONNINFO ENTITY (merged|single) [RESUME_KEY]
 *
 * merged: through SourceStream (two parts merged by key, for a mapping with filters and a
 *         unique key); single: the one STREAM_ALL statement. Rows go to stdout unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/config.h"
#include "edumig/idmap.h"
#include "edumig/log.h"
#include "edumig/pg.h"
#include "edumig/source.h"
#include "edumig/sourcestream.h"

int main(int argc, char **argv)
{
	if (argc < 5 || (strcmp(argv[4], "merged") != 0 && strcmp(argv[4], "single") != 0)) {
		fprintf(stderr, "usage: stream_dump CONFIG_DIR SOURCE ENTITY (merged|single) [RESUME_KEY]\n");
		return 2;
	}
	log_set_level(LOG_DEBUG);
	Config *cfg = config_load(argv[1]);
	if (!cfg)
		return 2;
	int e = config_find_entity(cfg, argv[3]);
	if (e < 0) {
		fprintf(stderr, "stream_dump: no entity %s\n", argv[3]);
		config_free(cfg);
		return 2;
	}
	const Mapping *m = &cfg->mappings[e];
	Key from;
	bool resume = argc > 5;
	if (resume && !key_parse(argv[5], &from)) {
		fprintf(stderr, "stream_dump: bad key %s\n", argv[5]);
		config_free(cfg);
		return 2;
	}
	PgConn s;
	int rc = 1;
	bool unique;
	if (!pg_connect(&s, argv[2], "SOURCE") || !source_begin(&s) || !source_key_unique(&s, m, &unique))
		goto out;
	char *row;
	int n;
	if (strcmp(argv[4], "merged") == 0) {
		SourceStream ss;
		if (!source_stream_open(&ss, &s, m, resume ? &from : NULL, false, unique))
			goto out;
		while ((n = source_stream_next(&ss, &row)) > 0)
			fwrite(row, 1, (size_t)n, stdout);
		source_stream_close(&ss);
	} else {
		if (resume && !source_set_resume(&s, &from))
			goto out;
		char *sql = source_stream_sql(&s, m, resume, false, unique, STREAM_ALL);
		bool started = pg_copy_out_start(&s, sql);
		free(sql);
		if (!started)
			goto out;
		while ((n = pg_copy_out_row(&s, &row)) > 0) {
			fwrite(row, 1, (size_t)n, stdout);
			PQfreemem(row);
		}
	}
	rc = n == 0 ? 0 : 1;
out:
	pg_close(&s);
	config_free(cfg);
	return rc;
}
