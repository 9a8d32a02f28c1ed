#!/usr/bin/env bash
# tests/pg/records.sh — phases 4 (catalogue) and 5 (records) on the legacy fixture (scale 0.01):
# per entity, rows read = the legacy row count, read = filtered + migrated + skipped, and
# every skip and warning count per (reason, severity, column) equals an independent count
# over the legacy database (truth.sql where a measure is exactly the policy, otherwise SQL
# written here, each with the policy it mirrors); no reason appears that is not expected.
# Then: no course is lost, enrollments and grades are lost only where their own parents are
# missing, grades are GRADE_POINT look-ups, migrated data carries no clock time, and a run
# killed twice (phase 4/5) with another batch size resumes to exactly the same data.
. "$SRCDIR/tests/lib.sh"
require_sandbox

new_db SRC edu "$EDU_TEMPLATE"
new_db T lms "$LMS_TEMPLATE"
edumig() {   # edumig TARGET_DB ARGS...
    local t=$1; shift
    "$EDUMIG" "$@" --config "$SRCDIR" --source "dbname=$SRC" --target "dbname=$t" --log-dir "$WORKDIR/logs"
}
truth() { printf '%s\n' "$TRUTH" | sed -n "s/^$1|//p"; }
cpv() { q "$T" "SELECT $2 FROM edumig.checkpoints WHERE entity = '$1'"; }
x() { q "$SRC" "$1"; }   # an expectation computed over the legacy database

TRUTH=$(psql -X -At -F '|' -v ON_ERROR_STOP=1 -d "$SRC" -f "$SRCDIR/tests/fixtures/legacy_edu/truth.sql")

out=$(edumig "$T" run --all --bcrypt-cost 4 2>&1); rc=$?
assert_eq "run --all exits 0" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -20 | sed 's/^/# /'
assert_exit "verify exits 0" 0 edumig "$T" verify

# --- per-reason bookkeeping ----------------------------------------------------------------
# expect ENTITY REASON SEVERITY COLUMN COUNT WHY: the skip log holds COUNT distinct rows with
# that (reason, severity, column) (COLUMN '-' = none). Afterwards no_other_reasons ENTITY checks
# that the skip log of ENTITY holds no other (reason, severity, column).
declare -A EXPECTED
logged() {   # logged ENTITY REASON SEVERITY COLUMN -> distinct rows in the skip log
    local col="AND column_name = '$4'"
    [ "$4" = - ] && col="AND column_name IS NULL"
    q "$T" "SELECT count(DISTINCT old_key) FROM edumig.skips WHERE entity = '$1' AND reason = '$2' AND severity = '$3' $col"
}
expect() {
    local ent=$1 reason=$2 sev=$3 col=$4 n=$5 why=$6
    [ "$n" != 0 ] && EXPECTED[$ent]+="$reason|$sev|${col/#-/}"$'\n'
    assert_eq "$ent: $reason ($sev, ${col/#-/row}) = $why" "$n" "$(logged "$ent" "$reason" "$sev" "$col")"
}
no_other_reasons() {
    local want got
    want=$(printf '%s' "${EXPECTED[$1]:-}" | sed '/^$/d' | sort -u)
    got=$(q "$T" "SELECT DISTINCT reason || '|' || severity || '|' || coalesce(column_name, '') FROM edumig.skips WHERE entity = '$1'" | sort -u)
    assert_eq "$1: no skip or warning reason other than the expected ones" "$want" "$got"
}

MINE="courses course_offerings course_instructors course_enrollments assessments grades exam_assessments assessment_submissions"

# --- accounting ----------------------------------------------------------------------------
groups=$(x "SELECT count(*) FROM (SELECT 1 FROM journal GROUP BY course_id, course_eva_id) g")
for e in courses:$(truth rows_subject_catalog) course_offerings:$(truth rows_course) \
         course_instructors:$(truth rows_course_teacher) course_enrollments:$(truth rows_course_student) \
         assessments:$groups grades:$(truth rows_journal_details) exam_assessments:$(truth rows_exam) \
         assessment_submissions:$(truth rows_exam_student); do
    ent=${e%%:*} n=${e##*:}
    assert_eq "$ent: rows read = legacy rows ($n)" "$n" "$(cpv "$ent" rows_read)"
    assert_eq "$ent: read = filtered + migrated + skipped" "$(cpv "$ent" rows_read)" \
        "$(q "$T" "SELECT (SELECT coalesce(sum(v::bigint), 0) FROM jsonb_each_text(c.rows_filtered) AS f(k, v)) + rows_migrated + rows_skipped FROM edumig.checkpoints c WHERE entity = '$ent'")"
    # (a duplicate_source_key row shares its key with the row that went through the rules)
    assert_eq "$ent: skipped = distinct rows with an error in the skip log" "$(cpv "$ent" rows_skipped)" \
        "$(q "$T" "SELECT count(DISTINCT old_key) FILTER (WHERE reason <> 'duplicate_source_key') + count(*) FILTER (WHERE reason = 'duplicate_source_key')
                   FROM edumig.skips WHERE entity = '$ent' AND severity = 'error'")"
    assert_eq "$ent: warned = distinct migrated rows with a warning" "$(cpv "$ent" rows_warned)" \
        "$(q "$T" "SELECT count(DISTINCT old_key) FROM edumig.skips WHERE entity = '$ent' AND severity = 'warning'")"
    assert_eq "$ent: id map holds every migrated row" "$(cpv "$ent" rows_migrated)" \
        "$(q "$T" "SELECT count(*) FROM edumig.id_map WHERE entity = '$ent' AND kind IN ('row', 'merged')")"
done

# --- shared definitions over the legacy database -------------------------------------------
# Students that migrate, mirroring students.json: a student needs an existing user, and of the
# students of one surviving user (users merged per account) only the first is accepted
# (students_user_id_key).
STU_OK="(SELECT id FROM (SELECT s.id, row_number() OVER (PARTITION BY coalesce((SELECT min(u2.id) FROM users u2
          WHERE u2.account_id = u.account_id AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.account_id)), u.id)
          ORDER BY s.id) AS r FROM students s JOIN users u ON u.id = s.user_id) z WHERE r = 1)"
assert_eq "students that migrate (independent) = target students" "$(x "SELECT count(*) FROM $STU_OK s")" \
    "$(q "$T" "SELECT count(*) FROM students")"
# A student "has a user" (the merge eligibility of enrollments and grades).
STU_USER="(SELECT s.id FROM students s JOIN users u ON u.id = s.user_id)"
# Dictionary names as the i18n rules read them: control characters removed, white space trimmed.
clean() { echo "coalesce(regexp_replace(regexp_replace($1, '[\x01-\x1f\x7f]', '', 'g'), '^\s+|\s+\$', '', 'g'), '')"; }
NO_NAME="($(clean d.name_az) = '' AND $(clean d.name_en) = '' AND $(clean d.name_ru) = '')"
HAS_CTRL="(concat(d.name_az, d.name_en, d.name_ru) ~ '[\x01-\x1f\x7f]')"
# name_az that recode repairs: not valid UTF-8 (Windows-1254 bytes) or double-encoded UTF-8
# (truth.sql's d18 definitions).
UTF8_RE='^([\x01-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})*$'
RECODED="(d.name_az !~ '$UTF8_RE' OR d.name_az ~ '\xc3[\x83-\x86\x89]')"
GRADE_POINT="(SELECT d.id FROM dictionaries d JOIN dictionary_types t ON t.id = d.type_id WHERE t.code = 'GRADE_POINT')"

# --- courses (courses.json) ----------------------------------------------------------------
SUBJ="(SELECT sc.*, d.id AS did, d.code, d.name_az, d.name_en, d.name_ru FROM subject_catalog sc
        LEFT JOIN dictionaries d ON d.id = sc.subject_name_id) d"
assert_eq "courses: nobody skipped" 0 "$(cpv courses rows_skipped)"
expect courses placeholder_value warning name "$(x "SELECT count(*) FROM $SUBJ WHERE $NO_NAME")" \
    "subjects whose name entry is missing or has no name in any language"
expect courses generated_course_code warning code "$(x "SELECT count(*) FROM $SUBJ WHERE coalesce(btrim(code), '') = ''")" \
    "subjects without a dictionary code"
expect courses duplicate_course_code warning code \
    "$(x "SELECT count(*) - count(DISTINCT btrim(code)) FROM $SUBJ WHERE btrim(code) <> ''")" \
    "subjects whose code an earlier subject holds"
expect courses control_chars_removed warning name "$(x "SELECT count(*) FROM $SUBJ WHERE $HAS_CTRL")" \
    "subjects whose name entry holds control characters"
expect courses recoded_text warning name "$(x "SELECT count(*) FROM $SUBJ WHERE $RECODED")" \
    "subjects whose name_az is Windows-1254 or double-encoded"
expect courses missing_reference warning organization_unit_id \
    "$(x "SELECT count(*) FROM subject_catalog sc WHERE sc.organization_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = sc.organization_id)")" \
    "subjects whose department id is no organization (a NULL one stays NULL unwarned)"
no_other_reasons courses
assert_eq "courses: codes are unique" "$(q "$T" "SELECT count(*) FROM courses")" "$(q "$T" "SELECT count(DISTINCT code) FROM courses")"
assert_eq "courses: every migrated course has credit_hours 3, marked as a default" "$(truth rows_subject_catalog)" \
    "$(q "$T" "SELECT count(*) FROM courses WHERE credit_hours = 3 AND metadata->>'credit_hours_source' = 'default' AND metadata ? 'old_subject_id'")"

# --- course_offerings (course_offerings.json) -----------------------------------------------
# A course's subject resolves when course -> education_plan_subject -> subject_catalog exists
# (every subject migrates); its term when its year exists and its semester is a SEMESTER id
# (academic_terms.json makes every year x SEMESTER pair).
OFF="(SELECT co.*, eps.subject_id, sc.id IS NULL AS subj_bad,
        (ey.id IS NULL OR co.semester_id IS NULL OR co.semester_id NOT IN (SELECT d.id FROM dictionaries d
           JOIN dictionary_types t ON t.id = d.type_id WHERE t.code = 'SEMESTER')) AS term_bad
      FROM course co LEFT JOIN education_plan_subject eps ON eps.id = co.education_plan_subject_id
      LEFT JOIN subject_catalog sc ON sc.id = eps.subject_id LEFT JOIN edu_years ey ON ey.id = co.education_year_id) o"
assert_eq "course_offerings: nobody skipped" 0 "$(cpv course_offerings rows_skipped)"
assert_eq "course_offerings: every legacy course is an offering (no course lost)" "$(truth rows_course)" \
    "$(q "$T" "SELECT count(DISTINCT old_course_id) FROM course_offerings")"
assert_eq "course_offerings: offerings = legacy course ids" "$(x "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM course")" \
    "$(q "$T" "SELECT md5(string_agg(old_course_id::text, ',' ORDER BY old_course_id)) FROM course_offerings")"
expect course_offerings parent_stubbed warning course_id \
    "$(( $(truth d09_course_eps_missing) + $(truth d09_course_eps_subject_missing) ))" \
    "truth d09 eps missing + eps subject missing"
expect course_offerings parent_stubbed warning academic_term_id "$(x "SELECT count(*) FROM $OFF WHERE term_bad")" \
    "courses whose year or semester is unresolvable"
assert_eq "course_offerings: warned offerings = truth d09_course_unresolvable_any (+ other warnings)" \
    "$(x "SELECT count(*) FROM $OFF WHERE subj_bad OR term_bad OR id IN (SELECT c2.id FROM course c2 WHERE EXISTS (SELECT 1 FROM course c3 WHERE c3.code = c2.code AND c3.id < c2.id))")" \
    "$(cpv course_offerings rows_warned)"
assert_eq "course_offerings: d09_course_unresolvable_any = offerings on a placeholder parent" "$(truth d09_course_unresolvable_any)" \
    "$(q "$T" "SELECT count(DISTINCT old_key) FROM edumig.skips WHERE entity = 'course_offerings' AND reason = 'parent_stubbed'")"
expect course_offerings duplicate_section_code warning section_code \
    "$(x "SELECT count(*) - count(DISTINCT btrim(code)) FROM course WHERE btrim(code) <> ''")" \
    "courses whose code an earlier course holds (truth d17_course_code_duplicated counts every holder: $(truth d17_course_code_duplicated))"
expect course_offerings generated_section_code warning section_code "$(x "SELECT count(*) FROM course WHERE coalesce(btrim(code), '') = ''")" \
    "courses without a code"
expect course_offerings required_value_missing warning language_of_instruction "$(x "SELECT count(*) FROM course WHERE education_lang_id IS NULL")" \
    "courses without a language"
expect course_offerings unmapped_value warning language_of_instruction \
    "$(x "SELECT count(*) FROM course WHERE education_lang_id NOT IN (110013001, 110013002, 110013003)")" "courses with an unknown language"
expect course_offerings unmapped_value warning delivery_mode \
    "$(x "SELECT count(*) FROM course WHERE education_type_id NOT IN (110011001, 110011002, 110011003)")" "courses with an unknown education type"
expect course_offerings required_value_missing warning max_enrollment "$(x "SELECT count(*) FROM course WHERE student_count IS NULL")" \
    "courses without a student count"
expect course_offerings required_value_missing warning created_at "$(x "SELECT count(*) FROM course WHERE create_date IS NULL")" \
    "courses without a creation time"
no_other_reasons course_offerings
exp_cs=$(x "SELECT count(DISTINCT coalesce(subject_id::text, 'unknown')) FROM $OFF WHERE subj_bad")
exp_ts=$(x "SELECT count(DISTINCT CASE WHEN education_year_id IS NULL OR semester_id IS NULL THEN 'unknown'
                                  ELSE education_year_id || '/' || semester_id END) FROM $OFF WHERE term_bad")
assert_eq "course_offerings: one placeholder course per unresolvable subject key" "$exp_cs" \
    "$(q "$T" "SELECT count(*) FROM edumig.id_map m JOIN courses c ON c.id = m.new_id WHERE m.entity = 'courses' AND m.kind = 'stub' AND c.metadata->>'edumig_placeholder' = 'true' AND c.code = 'UNRESOLVED-' || m.old_key")"
assert_eq "course_offerings: one placeholder term per unresolvable (year, semester) key" "$exp_ts" \
    "$(q "$T" "SELECT count(*) FROM edumig.id_map m JOIN academic_terms a ON a.id = m.new_id WHERE m.entity = 'academic_terms' AND m.kind = 'stub' AND a.metadata->>'edumig_placeholder' = 'true'")"
assert_eq "course_offerings: placeholders counted in the checkpoint" "$((exp_cs + exp_ts))" "$(cpv course_offerings stubs)"
assert_eq "course_offerings: offerings on placeholder subjects" "$(( $(truth d09_course_eps_missing) + $(truth d09_course_eps_subject_missing) ))" \
    "$(q "$T" "SELECT count(*) FROM course_offerings o JOIN courses c ON c.id = o.course_id WHERE c.metadata->>'edumig_placeholder' = 'true'")"
assert_eq "course_offerings: (course, term, section) is unique and section codes too" "$(truth rows_course)" \
    "$(q "$T" "SELECT count(DISTINCT section_code) FROM course_offerings")"

# --- course_instructors (course_instructors.json) -------------------------------------------
# The instructor is the teacher's user or, when teachers.user_id is not a user, the lowest users.id
# on the accounts of the teacher's person; merged users resolve to the lowest users.id of their
# account (users.json). Every users row migrates, so an instructor resolves when that user exists.
CT0="(SELECT ct.*, us.survivor AS instr, (tu.id IS NULL AND pu.uid IS NOT NULL) AS via_person,
        EXISTS (SELECT 1 FROM course c WHERE c.id = ct.course_id) AS course_ok, count(*) OVER (PARTITION BY ct.id) AS id_rows
      FROM course_teacher ct LEFT JOIN teachers t ON t.id = ct.teacher_id LEFT JOIN users tu ON tu.id = t.user_id
      LEFT JOIN (SELECT a.person_id, min(u.id) AS uid FROM accounts a JOIN users u ON u.account_id = a.id GROUP BY a.person_id) pu
             ON pu.person_id = t.person_id
      LEFT JOIN (SELECT u.id, coalesce((SELECT min(u2.id) FROM users u2 WHERE u2.account_id = a.id), u.id) AS survivor
                 FROM users u LEFT JOIN accounts a ON a.id = u.account_id) us ON us.id = coalesce(tu.id, pu.uid))"
# Rows sharing an id: one goes through the rules, the others are duplicate_source_key; the mapping
# makes a usable row (instructor and course resolve) win over an unusable one. Which of several
# usable rows wins is the engine's row-text tie-break: it is read back from the target (the
# winner's metadata names its course and teacher) and must be a usable row.
dup_keys="SELECT old_key FROM edumig.skips WHERE entity = 'course_instructors' AND reason = 'duplicate_source_key'"
winners=$(q "$T" "SELECT coalesce(string_agg(format('(%s, %s, %s)', metadata->>'old_course_teacher_id', metadata->>'old_course_id', metadata->>'old_teacher_id'), ', '), '(NULL::bigint, NULL::bigint, NULL::bigint)')
                  FROM course_instructors WHERE metadata->>'old_course_teacher_id' IN ($dup_keys)")
assert_eq "course_instructors: each shared id migrated one of its rows (a usable one)" \
    "$(x "SELECT count(DISTINCT id) FROM $CT0 r WHERE id_rows > 1 AND instr IS NOT NULL AND course_ok")" \
    "$(x "SELECT count(*) FROM $CT0 r WHERE id_rows > 1 AND instr IS NOT NULL AND course_ok AND (id, course_id, teacher_id) IN (VALUES $winners)")"
# The rows that go through the rules (losers of a shared id excluded), with the lowest id of
# their (course, instructor) pair.
CT="(SELECT b.*, CASE WHEN instr IS NOT NULL AND course_ok THEN min(id) OVER (PARTITION BY instr IS NOT NULL AND course_ok, course_id, instr) END AS pair_min
      FROM $CT0 b WHERE id_rows = 1 OR (id, course_id, teacher_id) IN (VALUES $winners)) r"
CT_OK="(SELECT * FROM $CT WHERE instr IS NOT NULL AND course_ok AND id = pair_min) m"
expect course_instructors duplicate_source_key error - \
    "$(( $(truth d19_course_teacher_rows_sharing_an_id) - $(truth d19_course_teacher_duplicate_ids) ))" \
    "truth d19 rows sharing an id - duplicate ids"
expect course_instructors missing_reference error instructor_id "$(x "SELECT count(*) FROM $CT WHERE instr IS NULL")" \
    "rows whose teacher has neither a user nor a person with a login"
expect course_instructors instructor_user_via_person warning instructor_id "$(x "SELECT count(*) FROM $CT_OK WHERE via_person")" \
    "migrated rows whose teachers.user_id is not a user but whose person has one"
expect course_instructors missing_reference error course_offering_id "$(x "SELECT count(*) FROM $CT WHERE NOT course_ok")" \
    "rows whose course does not exist"
expect course_instructors merged_duplicate warning - "$(x "SELECT count(*) FROM $CT WHERE id > pair_min")" \
    "later rows of one (course, instructor) pair"
expect course_instructors unmapped_value warning role \
    "$(x "SELECT count(*) FROM $CT_OK WHERE lesson_type_id NOT IN (110000111, 110000112, 110000113)")" \
    "migrated rows whose lesson type is not lecture / seminar / laboratory"
expect course_instructors required_value_missing warning role "$(x "SELECT count(*) FROM $CT_OK WHERE lesson_type_id IS NULL")" \
    "migrated rows without a lesson type"
expect course_instructors missing_reference warning assigned_by \
    "$(x "SELECT count(*) FROM $CT_OK WHERE m.create_user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.create_user_id)")" \
    "migrated rows whose creator id is no user (a NULL one stays NULL unwarned)"
no_other_reasons course_instructors
assert_eq "course_instructors: target rows = usable rows, first of their (course, instructor) pair" \
    "$(x "SELECT count(*) FROM $CT_OK")" "$(q "$T" "SELECT count(*) FROM course_instructors")"

# --- course_enrollments (course_enrollments.json) -------------------------------------------
# Merge eligibility: the course exists and the student has a user; the survivor of a
# (course, student) pair is its lowest id.
cs() {
    echo "(SELECT cs.*, EXISTS (SELECT 1 FROM course c WHERE c.id = cs.course_id) AS c_ok,
        EXISTS (SELECT 1 FROM students s WHERE s.id = cs.student_id) AS s_exists,
        cs.student_id IN $STU_OK AS s_ok, cs.student_id IN $STU_USER AS s_user
      FROM course_student cs) $1"
}
CS="(SELECT r.*, c_ok AND s_user AS pair_known,
        c_ok AND s_user AND id > (SELECT min(r2.id) FROM $(cs r2) WHERE r2.course_id = r.course_id AND r2.student_id = r.student_id) AS merged
      FROM $(cs r)) e"
expect course_enrollments missing_reference error course_offering_id "$(truth d10_course_student_course_missing)" \
    "truth d10_course_student_course_missing"
expect course_enrollments missing_reference error student_id "$(truth d10_course_student_student_missing)" \
    "truth d10_course_student_student_missing"
expect course_enrollments parent_skipped error student_id "$(x "SELECT count(*) FROM $CS WHERE s_exists AND NOT s_ok AND NOT merged")" \
    "rows whose student exists but was skipped in phase 3"
expect course_enrollments merged_duplicate warning - "$(x "SELECT count(*) FROM $CS WHERE merged AND s_ok")" \
    "later rows of a (course, student) pair (truth d11_course_student_duplicate_rows: $(truth d11_course_student_duplicate_rows), of which those with a migrated student)"
expect course_enrollments merge_survivor_missing error - "$(x "SELECT count(*) FROM $CS WHERE merged AND NOT s_ok")" \
    "later rows of a pair whose student has a user but was rejected in phase 3"
no_other_reasons course_enrollments
# Coverage: an enrollment is lost only when its own course or student is missing (or the
# student could not migrate).
assert_eq "course_enrollments: skipped rows = exactly those whose course or student is missing or not migrated" \
    "$(x "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM $CS WHERE NOT c_ok OR NOT s_ok")" \
    "$(q "$T" "SELECT md5(string_agg(old_key, ',' ORDER BY old_key::bigint)) FROM (SELECT DISTINCT old_key FROM edumig.skips WHERE entity = 'course_enrollments' AND severity = 'error') s")"
assert_eq "course_enrollments: enrolled = legacy active, completed otherwise" \
    "$(x "SELECT count(*) FILTER (WHERE active = 1) || '/' || count(*) FILTER (WHERE active IS DISTINCT FROM 1) FROM $CS WHERE c_ok AND s_ok AND NOT merged")" \
    "$(q "$T" "SELECT count(*) FILTER (WHERE enrollment_status = 'enrolled') || '/' || count(*) FILTER (WHERE enrollment_status = 'completed') FROM course_enrollments")"
assert_eq "course_enrollments: retakes = legacy course_work 1" \
    "$(x "SELECT count(*) FROM $CS WHERE c_ok AND s_ok AND NOT merged AND course_work = 1")" \
    "$(q "$T" "SELECT count(*) FROM course_enrollments WHERE is_retake")"

# --- assessments (assessments.json) ----------------------------------------------------------
GRP="(SELECT course_id, course_eva_id, EXISTS (SELECT 1 FROM course c WHERE c.id = j.course_id) AS c_ok
      FROM journal j GROUP BY course_id, course_eva_id) g"
expect assessments missing_reference error course_offering_id \
    "$(x "SELECT count(*) FROM $GRP WHERE NOT c_ok AND course_id IS NOT NULL AND course_eva_id IS NOT NULL")" \
    "(course, component) groups whose course does not exist"
expect assessments null_source_key error - "$(x "SELECT count(*) FROM $GRP WHERE course_id IS NULL OR course_eva_id IS NULL")" \
    "groups with a NULL course or component"
no_other_reasons assessments
assert_eq "assessments: types by component (<=2 exam, <=5 quiz, else assignment)" \
    "$(x "SELECT count(*) FILTER (WHERE course_eva_id <= 2) || '/' || count(*) FILTER (WHERE course_eva_id BETWEEN 3 AND 5) || '/' || count(*) FILTER (WHERE course_eva_id > 5) FROM $GRP WHERE c_ok")" \
    "$(q "$T" "SELECT count(*) FILTER (WHERE assessment_type = 'exam') || '/' || count(*) FILTER (WHERE assessment_type = 'quiz') || '/' || count(*) FILTER (WHERE assessment_type = 'assignment') FROM assessments WHERE metadata->>'source' = 'journal'")"

# --- grades (grades.json) ---------------------------------------------------------------------
# Graded details: a point in one of the three slots. Merge eligibility: journal, course and
# component exist and the student has a user; one grade per (course, component, student), the
# row of its lowest detail id; its marks are those of its highest detail id.
expect_filter() { assert_eq "$1: filter $2 = $4" "$3" "$(q "$T" "SELECT coalesce((rows_filtered->>'$2')::bigint, 0) FROM edumig.checkpoints WHERE entity = '$1'")"; }
expect_filter grades attendance_only "$(x "SELECT count(*) FROM journal_details WHERE point_id_1 IS NULL AND point_id_2 IS NULL AND point_id_3 IS NULL")" \
    "details without a point in any slot"
expect_filter grades attendance_only "$(truth d14_journal_details_attendance_only)" "truth d14_journal_details_attendance_only"
GD="(SELECT r.*, CASE WHEN elig THEN min(id) OVER w END AS surv, CASE WHEN elig THEN max(id) OVER w END AS latest
      FROM (SELECT jd.id, jd.point_id_1, jd.point_id_2, jd.point_id_3, j.id IS NOT NULL AS j_ok, j.course_id, j.course_eva_id, j.student_id,
                   EXISTS (SELECT 1 FROM course c WHERE c.id = j.course_id) AS c_ok,
                   EXISTS (SELECT 1 FROM students s WHERE s.id = j.student_id) AS s_exists,
                   j.student_id IN $STU_OK AS s_ok,
                   j.id IS NOT NULL AND j.course_eva_id IS NOT NULL AND EXISTS (SELECT 1 FROM course c WHERE c.id = j.course_id)
                     AND j.student_id IN $STU_USER AS elig
            FROM journal_details jd LEFT JOIN journal j ON j.id = jd.journal_id
            WHERE NOT (jd.point_id_1 IS NULL AND jd.point_id_2 IS NULL AND jd.point_id_3 IS NULL)) r
      WINDOW w AS (PARTITION BY elig, course_id, course_eva_id, student_id)) g"
# survivors that migrate, with the point of their latest detail
SURV="(SELECT g.*, (SELECT l.point_id_1 FROM journal_details l WHERE l.id = g.latest) AS latest_point FROM $GD WHERE elig AND s_ok AND id = surv) g"
expect grades missing_reference error assessment_id \
    "$(x "SELECT count(*) FROM $GD WHERE NOT j_ok OR course_id IS NULL OR course_eva_id IS NULL")" \
    "graded details whose journal row is absent (or has no course / component)"
expect grades parent_skipped error assessment_id \
    "$(x "SELECT count(*) FROM $GD WHERE j_ok AND course_id IS NOT NULL AND course_eva_id IS NOT NULL AND NOT c_ok")" \
    "graded details whose journal's course is absent (its assessment was skipped)"
expect grades missing_reference error student_id "$(x "SELECT count(*) FROM $GD WHERE NOT s_exists")" \
    "graded details whose journal (or journal's student) is absent"
expect grades parent_skipped error student_id "$(x "SELECT count(*) FROM $GD WHERE s_exists AND NOT s_ok AND NOT (elig AND id <> surv)")" \
    "graded details whose student was skipped in phase 3"
expect grades merged_duplicate warning - "$(x "SELECT count(*) FROM $GD WHERE elig AND id <> surv AND s_ok")" \
    "later graded details of one (course, component, student)"
expect grades merge_survivor_missing error - "$(x "SELECT count(*) FROM $GD WHERE elig AND id <> surv AND NOT s_ok")" \
    "later details whose student has a user but was rejected in phase 3"
expect grades lookup_missing warning marks_obtained \
    "$(x "SELECT count(*) FROM $SURV WHERE latest_point IS NOT NULL AND latest_point NOT IN $GRADE_POINT")" \
    "grades whose latest point is no GRADE_POINT id"
expect grades lookup_missing warning percentage \
    "$(x "SELECT count(*) FROM $SURV WHERE latest_point IS NOT NULL AND latest_point NOT IN $GRADE_POINT")" \
    "grades whose latest point is no GRADE_POINT id"
expect grades invalid_grade_point_in_history warning grade_history \
    "$(x "SELECT count(*) FROM $SURV WHERE EXISTS (SELECT 1 FROM $(echo "$GD" | sed 's/) g$/) h/') WHERE h.surv = g.surv AND h.elig AND h.id <> g.latest AND h.point_id_1 NOT IN $GRADE_POINT)")" \
    "grades with an earlier mark whose point is no GRADE_POINT id"
expect grades unread_point_slots warning metadata "$(x "SELECT count(*) FROM $SURV WHERE point_id_2 IS NOT NULL OR point_id_3 IS NOT NULL")" \
    "grades with points in slots 2/3"
no_other_reasons grades
assert_eq "grades: every grade holding an invalid point id is flagged (truth d14_journal_details_grade_point_invalid: $(truth d14_journal_details_grade_point_invalid))" \
    "$(x "SELECT count(DISTINCT surv) FROM $GD WHERE elig AND s_ok AND point_id_1 NOT IN $GRADE_POINT")" \
    "$(q "$T" "SELECT count(DISTINCT old_key) FROM edumig.skips WHERE entity = 'grades' AND (reason = 'invalid_grade_point_in_history' OR (reason = 'lookup_missing' AND column_name = 'marks_obtained'))")"
assert_eq "grades: skipped details = exactly those whose journal, course or student is missing (or the student not migrated)" \
    "$(x "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM $GD WHERE NOT j_ok OR NOT c_ok OR course_eva_id IS NULL OR NOT s_ok")" \
    "$(q "$T" "SELECT md5(string_agg(old_key, ',' ORDER BY old_key::bigint)) FROM (SELECT DISTINCT old_key FROM edumig.skips WHERE entity = 'grades' AND severity = 'error') s")"
assert_eq "grades: one grade per (assessment, student)" "$(x "SELECT count(*) FROM $SURV")" "$(q "$T" "SELECT count(*) FROM grades")"
assert_eq "grades: grade_history holds every migrated graded detail" "$(x "SELECT count(*) FROM $GD WHERE elig AND s_ok")" \
    "$(q "$T" "SELECT sum(jsonb_array_length(grade_history)) FROM grades")"
# marks are the GRADE_POINT dictionary's value of the latest detail's point id
gp_values=$(x "SELECT string_agg('(' || d.id || ', ' || quote_literal(d.code) || ')', ', ') FROM dictionaries d JOIN dictionary_types t ON t.id = d.type_id WHERE t.code = 'GRADE_POINT'")
assert_eq "grades: marks = the GRADE_POINT entry of the point (looked up, not computed)" 0 \
    "$(q "$T" "SELECT count(*) FROM grades g LEFT JOIN (VALUES $gp_values) AS gp(id, code) ON gp.id = (g.metadata->>'point_id')::bigint
               WHERE g.marks_obtained IS DISTINCT FROM gp.code::numeric OR g.percentage IS DISTINCT FROM gp.code::numeric * 10")"
assert_eq "grades: marks come from the highest graded detail of the group" \
    "$(x "SELECT md5(string_agg(id || ':' || latest, ',' ORDER BY id)) FROM $SURV")" \
    "$(q "$T" "SELECT md5(string_agg((metadata->>'old_journal_detail_id') || ':' || (metadata->>'marks_from_journal_detail_id'), ',' ORDER BY (metadata->>'old_journal_detail_id')::bigint)) FROM grades")"

# --- exam_assessments (exam_assessments.json) ----------------------------------------------------
# start_date is read in DD/MM/YYYY, YYYY-MM-DD or DD.MM.YYYY (years 1900-2100); blank is no date.
EX="(SELECT e.*, EXISTS (SELECT 1 FROM course c WHERE c.id = e.course_id) AS c_ok, d.name_az, d.name_en, d.name_ru,
        coalesce(btrim(e.start_date), '') = '' AS no_date,
        CASE WHEN ymd IS NOT NULL AND ymd[2] BETWEEN 1 AND 12 AND ymd[1] BETWEEN 1900 AND 2100
             THEN ymd[3] BETWEEN 1 AND extract(day FROM make_date(ymd[1], ymd[2], 1) + interval '1 month - 1 day')
             ELSE false END AS date_ok
      FROM exam e LEFT JOIN dictionaries d ON d.id = e.type_id,
      LATERAL (SELECT CASE WHEN btrim(e.start_date) ~ '^[0-9]{2}[/.][0-9]{2}[/.][0-9]{4}\$'
                             AND substr(btrim(e.start_date), 3, 1) = substr(btrim(e.start_date), 6, 1)
                           THEN ARRAY[substr(btrim(e.start_date), 7, 4)::int, substr(btrim(e.start_date), 4, 2)::int, substr(btrim(e.start_date), 1, 2)::int]
                           WHEN btrim(e.start_date) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}\$'
                           THEN ARRAY[substr(btrim(e.start_date), 1, 4)::int, substr(btrim(e.start_date), 6, 2)::int, substr(btrim(e.start_date), 9, 2)::int]
                      END AS ymd) p) d"
assert_eq "exam_assessments: start times are HH:MM or blank (so only the date decides validity)" 0 \
    "$(x "SELECT count(*) FROM exam WHERE coalesce(btrim(start_time), '') <> '' AND btrim(start_time) !~ '^([01][0-9]|2[0-3]):[0-5][0-9]\$'")"
expect exam_assessments missing_reference error course_offering_id "$(truth d15_exam_course_missing)" "truth d15_exam_course_missing"
expect exam_assessments invalid_date warning due_date "$(x "SELECT count(*) FROM $EX WHERE c_ok AND NOT no_date AND NOT date_ok")" \
    "migrated exams whose start date is impossible or unreadable (truth d04 exam impossible $(truth d04_exam_start_date_impossible) + garbage $(truth d04_exam_start_date_garbage), all exams)"
expect exam_assessments placeholder_value warning title "$(x "SELECT count(*) FROM $EX WHERE c_ok AND $NO_NAME")" \
    "migrated exams whose type has no name"
expect exam_assessments control_chars_removed warning title "$(x "SELECT count(*) FROM $EX WHERE c_ok AND $HAS_CTRL")" \
    "migrated exams whose type name holds control characters"
expect exam_assessments recoded_text warning title "$(x "SELECT count(*) FROM $EX WHERE c_ok AND $RECODED")" \
    "migrated exams whose type name_az is Windows-1254 or double-encoded"
no_other_reasons exam_assessments
assert_eq "exam_assessments: dated exams read as Asia/Baku local time" \
    "$(x "SELECT count(*) FROM $EX WHERE c_ok AND date_ok")" \
    "$(q "$T" "SELECT count(*) FROM assessments WHERE metadata->>'source' = 'exam' AND due_date IS NOT NULL
               AND to_char(due_date AT TIME ZONE 'Asia/Baku', 'HH24:MI') = metadata->>'legacy_start_time'")"

# --- assessment_submissions (assessment_submissions.json) ----------------------------------------
ES="(SELECT es.*, EXISTS (SELECT 1 FROM exam e WHERE e.id = es.exam_id) AS e_exists,
        EXISTS (SELECT 1 FROM exam e JOIN course c ON c.id = e.course_id WHERE e.id = es.exam_id) AS e_ok,
        EXISTS (SELECT 1 FROM students s WHERE s.id = es.student_id) AS s_exists, es.student_id IN $STU_OK AS s_ok,
        replace(regexp_replace(grade, '^\s+|\s+\$', '', 'g'), ',', '.') AS g
      FROM exam_student es) r"
NUM="'^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\$'"
expect assessment_submissions missing_reference error assessment_id "$(truth d16_exam_student_exam_missing)" "truth d16_exam_student_exam_missing"
expect assessment_submissions parent_skipped error assessment_id "$(x "SELECT count(*) FROM $ES WHERE e_exists AND NOT e_ok")" \
    "rows whose exam was skipped (its course is missing)"
expect assessment_submissions missing_reference error student_id "$(truth d16_exam_student_student_missing)" "truth d16_exam_student_student_missing"
expect assessment_submissions parent_skipped error student_id "$(x "SELECT count(*) FROM $ES WHERE s_exists AND NOT s_ok")" \
    "rows whose student was skipped in phase 3"
expect assessment_submissions not_a_number warning score "$(x "SELECT count(*) FROM $ES WHERE e_ok AND s_ok AND g <> '' AND g !~ $NUM")" \
    "migrated rows whose grade is not a number ('75,5' reads as 75.5)"
expect assessment_submissions out_of_range warning score \
    "$(x "SELECT count(*) FROM $ES WHERE e_ok AND s_ok AND g ~ $NUM AND g::numeric NOT BETWEEN 0 AND 100")" \
    "migrated rows whose grade is outside 0..100"
expect assessment_submissions required_value_missing warning status "$(x "SELECT count(*) FROM $ES WHERE e_ok AND s_ok AND finish_status IS NULL")" \
    "migrated rows without a finish status"
expect assessment_submissions unmapped_value warning status \
    "$(x "SELECT count(*) FROM $ES WHERE e_ok AND s_ok AND finish_status NOT IN (1, 2, 3)")" "migrated rows with an unknown finish status"
no_other_reasons assessment_submissions
assert_eq "assessment_submissions: repeated attempts migrate as attempts 2.. (truth d16_exam_student_repeated_attempts $(truth d16_exam_student_repeated_attempts), of which migrated)" \
    "$(x "SELECT count(*) FROM (SELECT r.*, row_number() OVER (PARTITION BY exam_id, student_id ORDER BY id) AS k FROM $ES) a WHERE e_ok AND s_ok AND k > 1")" \
    "$(q "$T" "SELECT count(*) FROM assessment_submissions WHERE attempt_number > 1")"

# --- migrated data is a function of the source: no clock time anywhere --------------------------
t0=$(q "$T" "SELECT min(started_at) FROM edumig.runs")
assert_eq "no created_at / updated_at / dates from the clock in the tables of phases 4-5 (or placeholder terms)" 0 \
    "$(q "$T" "SELECT (SELECT count(*) FROM courses WHERE created_at >= '$t0' OR updated_at >= '$t0')
                    + (SELECT count(*) FROM course_offerings WHERE created_at >= '$t0' OR updated_at >= '$t0')
                    + (SELECT count(*) FROM course_instructors WHERE assigned_date IS NULL OR assigned_date >= '$t0')
                    + (SELECT count(*) FROM course_enrollments WHERE created_at >= '$t0' OR updated_at >= '$t0' OR enrollment_date >= '$t0')
                    + (SELECT count(*) FROM assessments WHERE created_at >= '$t0' OR updated_at >= '$t0')
                    + (SELECT count(*) FROM grades WHERE created_at >= '$t0' OR updated_at >= '$t0' OR graded_at >= '$t0')
                    + (SELECT count(*) FROM assessment_submissions WHERE created_at >= '$t0' OR updated_at >= '$t0')
                    + (SELECT count(*) FROM academic_terms WHERE created_at >= '$t0')")"

# --- killed twice mid-phase with another batch size, resumed: the same migration -----------------
TABLES="academic_terms courses course_offerings course_instructors course_enrollments assessments grades assessment_submissions"
sum=$(migration_checksum "$T" $TABLES)
new_db T2 lms2 "$LMS_TEMPLATE"
seed=${EDUMIG_TEST_SEED:-$RANDOM}; RANDOM=$seed
# About 150 batches of 37 rows in all (filtered rows do not fill a batch): both kills land.
n1=$((RANDOM % 12 + 20)) n2=$((RANDOM % 80 + 20))
echo "# kill seed $seed: batch_after_idmap pass $n1, then batch_during_commit pass $n2"
EDUMIG_TEST_KILL="batch_after_idmap:$n1" edumig "$T2" run --all --bcrypt-cost 4 --batch-size 37 -q >/dev/null 2>&1
assert_eq "first kill (exit 137)" 137 "$?"
EDUMIG_TEST_KILL="batch_during_commit:$n2" edumig "$T2" run --all --bcrypt-cost 4 --batch-size 37 -q >/dev/null 2>&1
assert_eq "second kill (exit 137)" 137 "$?"
edumig "$T2" run --all --bcrypt-cost 4 --batch-size 37 -q >/dev/null 2>&1
assert_eq "resume exits 0" 0 "$?"
assert_eq "killed twice + resumed with batch size 37 = the clean run (rows, id map, skip log)" "$sum" "$(migration_checksum "$T2" $TABLES)"

done_testing
