/*
 * include/edumig/copytext.h — PostgreSQL COPY text format: split a row, escape a value.
 */
#ifndef EDUMIG_COPYTEXT_H
#define EDUMIG_COPYTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "edumig/strbuf.h"

/**
 * copytext_split - split one COPY text row in place into fields, unescaping them.
 * @line, @len: the row as received (a trailing newline is ignored); the buffer must hold
 *              @len + 1 bytes, since fields are terminated in place (libpq's COPY buffers
 *              are NUL-terminated, so PQgetCopyData rows qualify)
 * @fields:     receives @max pointers into @line; NULL for \N
 * @lens:       receives the unescaped lengths
 * Returns the number of fields, or -1 when the row has more than @max.
 */
int copytext_split(char *line, size_t len, char **fields, size_t *lens, int max);

/* Appends @s (@n bytes) escaped for COPY text; NULL @s appends \N. */
void copytext_put(StrBuf *b, const char *s, size_t n);

#endif /* EDUMIG_COPYTEXT_H */
