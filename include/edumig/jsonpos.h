/*
 * include/edumig/jsonpos.h — line numbers of the values of a JSON text, by JSON pointer.
 *
 * json-c builds objects without positions; error messages must still say file:line. This
 * scanner walks the raw text once and records where each value (and each object key)
 * starts, so "/columns/email/rule" can be turned into a line. It also notices duplicate
 * keys, which json-c silently collapses.
 */
#ifndef EDUMIG_JSONPOS_H
#define EDUMIG_JSONPOS_H

#include <stddef.h>

typedef struct JsonPos JsonPos;

/* Scan @text; never fails on bad JSON (positions then stop where the text breaks). */
JsonPos *jsonpos_build(const char *text, size_t len);
void jsonpos_free(JsonPos *p);
/* Line (1-based) of the key or value at @pointer, else of its nearest ancestor, else 1. */
int jsonpos_line(const JsonPos *p, const char *pointer);
/* Number of duplicate keys found; @i-th one's pointer and line. */
size_t jsonpos_duplicates(const JsonPos *p);
const char *jsonpos_duplicate(const JsonPos *p, size_t i, int *line);
/* Line of byte @offset in @text. */
int json_offset_line(const char *text, size_t offset);

#endif /* EDUMIG_JSONPOS_H */
