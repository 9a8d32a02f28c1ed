/*
 * tests/unit/test_bulk.c — which foreign keys run --bulk may set aside (bulk_fk_keep_reason,
 * src/bulk.c), against the edu -> lms mapping set of the repository ($SRCDIR).
 *
 * The foreign keys are given as the target's catalog would describe them; each case is one
 * branch of the policy: a ref to the referenced table's entity (set aside), a column no
 * mapping writes (set aside, unless it has a default), a column filled by another rule, by
 * a placeholder template, or by a ref to an entity whose rows go elsewhere (kept live).
 */
#include "edumig/bulk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edumig/config.h"
#include "tap.h"

static Config *g_cfg;

/* The reason for (schema public) @table.@column -> @ref_table(@ref_column), or NULL. */
static char *why(const char *table, const char *column, bool has_default, const char *ref_table, const char *ref_column)
{
	return bulk_fk_keep_reason(g_cfg, "public", table, column, has_default, "public", ref_table, ref_column);
}

static void set_aside(const char *table, const char *column, const char *ref_table, const char *what)
{
	char *r = why(table, column, false, ref_table, "id");
	TAP_STR_EQ(r, NULL, what);
	free(r);
}

static void kept(const char *table, const char *column, bool has_default, const char *ref_table,
		 const char *ref_column, const char *expect, const char *what)
{
	char *r = why(table, column, has_default, ref_table, ref_column);
	TAP_OK(r && strstr(r, expect), what);
	if (!r || !strstr(r, expect))
		printf("#   expected a reason with: [%s]\n#   actual: [%s]\n", expect, r ? r : "(null)");
	free(r);
}

int main(void)
{
	const char *src = getenv("SRCDIR");
	g_cfg = config_load(src ? src : ".");
	TAP_OK(g_cfg != NULL, "the repository's mapping set loads");
	if (!g_cfg)
		return tap_done();

	set_aside("grades", "student_id", "students", "a ref to the entity of the referenced table: set aside");
	set_aside("assessment_submissions", "assessment_id", "assessments",
		  "a ref to another entity writing the referenced table (exam_assessments -> assessments): set aside");
	set_aside("organization_units", "parent_id", "organization_units", "a deferred self-reference: set aside");
	set_aside("grades", "graded_by", "users", "a column no mapping writes and without a default (NULL): set aside");
	set_aside("courses", "organization_unit_id", "organization_units",
		  "a ref column of a table that also gets placeholders which leave it NULL: set aside");

	kept("grades", "graded_by", true, "users", "id", "does not write column \"graded_by\", which takes the table's default",
	     "a column no mapping writes, but with a default: kept live");
	kept("course_offerings", "old_course_id", false, "courses", "id",
	     ": /columns/old_course_id: column \"old_course_id\" is filled by its \"copy\" rule, not by a ref",
	     "a column filled by a copy rule: kept live, naming the rule's path");
	kept("course_offerings", "id", false, "courses", "id", "is filled by its \"id\" rule, not by a ref",
	     "the id column itself as a foreign key: kept live");
	kept("courses", "code", false, "subject_codes", "code", "/stub/code: the placeholders of this reference fill the column",
	     "a column placeholders fill from a template: kept live");
	kept("assessment_submissions", "student_id", false, "users", "id",
	     "refers to students, whose rows go to public.students (id), not to public.users (id)",
	     "a ref to an entity whose rows go to another table: kept live");
	kept("grades", "student_id", false, "students", "user_id", "not to public.students (user_id)",
	     "a ref, but the foreign key points at another column: kept live");
	char *r = why("grades", "student_id", false, "students", "id");
	TAP_OK(r == NULL, "(sanity: the same column against the primary key is set aside)");
	free(r);
	r = why("course_offerings", "old_course_id", false, "courses", "id");
	TAP_OK(r && strstr(r, "mappings/course_offerings.json:") != NULL, "the reason names the mapping file and line");
	free(r);

	config_free(g_cfg);
	return tap_done();
}
