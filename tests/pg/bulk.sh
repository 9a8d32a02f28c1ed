#!/usr/bin/env bash
# tests/pg/bulk.sh — run --bulk on the fixture: the same target as a normal run, every
# constraint and index back as the schema defines it; foreign keys and non-unique indexes
# really absent during the load (unique, primary key and CHECK live); a SIGKILL inside a
# bulk phase, and inside the rebuild, then a resume that rebuilds each definition exactly
# once; a table that is not empty at the phase's start left alone; a rebuild that fails
# (an orphan row) keeping its definition saved, exit 3, verify failing and naming it;
# rollback rebuilding first; a foreign key whose column is not a ref kept live;
# --dry-run --bulk refused.
. "$SRCDIR/tests/lib.sh"
require_sandbox

new_db SRC edu "$EDU_TEMPLATE"
edumig() {   # edumig TARGET ARGS...
    local t=$1; shift
    "$EDUMIG" "$@" --config "$SRCDIR" --source "dbname=$SRC" --target "dbname=$t" --log-dir "$WORKDIR/logs"
}
OPTS=(--batch-size 200 --bcrypt-cost 4)
P5="'course_enrollments', 'assessments', 'grades', 'assessment_submissions'"
all_tables() { q "$1" "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"; }
# Every constraint and index of the target schema, as the server prints their definitions.
schema_defs() {   # schema_defs DB [TABLE-LIST]
    local only=${2:+"AND %s::regclass::text IN ($2)"}
    q "$1" "SELECT string_agg(x, E'\n' ORDER BY x) FROM (
              SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                     || CASE WHEN convalidated THEN '' ELSE ' (not validated)' END AS x
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace $(printf "$only" conrelid)
              UNION ALL
              SELECT 'index ' || indrelid::regclass || ' ' || pg_get_indexdef(indexrelid)
              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE c.relnamespace = 'public'::regnamespace $(printf "$only" indrelid)) s"
}
aside() { q "$1" "SELECT count(*) FROM edumig.bulk_set_aside"; }
count_p5() {   # count_p5 DB: foreign keys, non-unique indexes, other constraints (p/u/c) and unique indexes of phase 5's tables
    q "$1" "SELECT (SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text IN ($P5)) || ' ' ||
                   (SELECT count(*) FROM pg_index WHERE NOT indisunique AND indrelid::regclass::text IN ($P5)) || ' ' ||
                   (SELECT count(*) FROM pg_constraint WHERE contype IN ('p', 'u', 'c') AND conrelid::regclass::text IN ($P5)) || ' ' ||
                   (SELECT count(*) FROM pg_index WHERE indisunique AND indrelid::regclass::text IN ($P5))"
}
wait_for() {   # wait_for FILE PATTERN: until the pattern shows up in the file (60 s at most)
    local i
    for ((i = 0; i < 600; i++)); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
# The definitions of the tables the mappings write: the foreign keys and non-unique indexes
# that --bulk sets aside (none is kept live: no mapping fills a foreign-key column other
# than through a ref rule).
WRITTEN="'users', 'persons', 'organization_units', 'academic_terms', 'students', 'staff_members', 'courses',
         'course_offerings', 'course_instructors', 'course_enrollments', 'assessments', 'grades', 'assessment_submissions'"
settable() {   # settable DB TABLE-LIST: their foreign keys and non-unique indexes, one name a line
    q "$1" "SELECT name FROM (SELECT conname AS name FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text IN ($2)
            UNION ALL SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisunique AND indrelid::regclass::text IN ($2)) s
            ORDER BY 1"
}
rebuilt_names() { grep -oE 'rebuilt (index|foreign key) [a-z_]+' | awk '{ print $NF }' | sort; }

defs_schema=$(schema_defs "$LMS_TEMPLATE")
exp_all=$(settable "$LMS_TEMPLATE" "$WRITTEN")
exp_p5=$(settable "$LMS_TEMPLATE" "$P5")
n_all=$(wc -l <<<"$exp_all"); n_p5=$(wc -l <<<"$exp_p5")
p5_live=$(count_p5 "$LMS_TEMPLATE")

# --- the reference: a normal run ------------------------------------------------------
new_db REF ref "$LMS_TEMPLATE"
edumig "$REF" run --all -q "${OPTS[@]}" >/dev/null 2>&1
assert_eq "a normal run --all exits 0" 0 "$?"
TABLES=$(all_tables "$REF")
want=$(migration_checksum "$REF" $TABLES)
b4=$(q "$REF" "SELECT sum(batches) FROM edumig.checkpoints WHERE phase < 5")
b5=$(q "$REF" "SELECT sum(batches) FROM edumig.checkpoints WHERE phase = 5")
echo "# $n_all definitions can be set aside ($n_p5 in phase 5); batches: $b4 in phases 1-4, $b5 in phase 5"

# --- run --all --bulk on an empty target ----------------------------------------------
new_db B1 b1 "$LMS_TEMPLATE"
out=$(edumig "$B1" run --all "${OPTS[@]}" --bulk 2>&1); rc=$?
assert_eq "run --all --bulk exits 0" 0 "$rc"
assert_eq "run --all --bulk: the same target as a normal run (every table, id map, skip log)" "$want" "$(migration_checksum "$B1" $TABLES)"
assert_eq "run --all --bulk: every constraint and index is back with its exact definition" "$defs_schema" "$(schema_defs "$B1")"
assert_eq "run --all --bulk: edumig.bulk_set_aside is empty" 0 "$(aside "$B1")"
assert_exit "run --all --bulk: verify exits 0" 0 edumig "$B1" verify
assert_eq "every foreign key and non-unique index of the 13 written tables was set aside and rebuilt, once each" \
    "$exp_all" "$(rebuilt_names <<<"$out")"
assert_match "the log names each table set aside and what was set aside" \
    "INFO  bulk: public.grades is empty: set aside for the load of phase 5: foreign keys grades_approved_by_fkey, grades_assessment_id_fkey, grades_graded_by_fkey, grades_student_id_fkey, grades_submission_id_fkey; index grades_student_id_idx" "$out"
assert_match "... and a table with nothing to set aside" "INFO  bulk: public.users is empty, but has no foreign key or index to set aside" "$out"
assert_eq "no foreign key stays live: no mapping fills a foreign-key column other than through a ref" 0 "$(grep -c 'stays live' <<<"$out")"
assert_match "phase 5 summary" "bulk: phase 5: 11 foreign keys and 5 indexes set aside \(saved in edumig.bulk_set_aside\)" "$out"

# --- during the load: absent; a rebuild that fails ------------------------------------
new_db B2 b2 "$LMS_TEMPLATE"
for p in 1 2 3 4; do edumig "$B2" run --phase $p -q "${OPTS[@]}" --bulk >/dev/null 2>&1; done
assert_eq "phases 1-4 with --bulk: nothing left set aside" 0 "$(aside "$B2")"
# (exec: $! must be edumig itself, which the pause's SIGUSR1 is for)
(EDUMIG_TEST_PAUSE="batch_begin:3:300" exec "$EDUMIG" run --phase 5 "${OPTS[@]}" --bulk --config "$SRCDIR" \
    --source "dbname=$SRC" --target "dbname=$B2" --log-dir "$WORKDIR/logs" >"$WORKDIR/p5.log" 2>&1) &
pid=$!
if wait_for "$WORKDIR/p5.log" "test hook: pausing"; then ok "phase 5 paused inside its load (third batch)"; else not_ok "phase 5 paused inside its load" "$(cat "$WORKDIR/p5.log")"; fi
assert_ne "... with rows already in" 0 "$(q "$B2" "SELECT count(*) FROM course_enrollments")"
set -- $p5_live
assert_eq "during the load: no foreign key and no non-unique index on the phase-5 tables; primary keys, unique and CHECK constraints and unique indexes live" \
    "0 0 $3 $4" "$(count_p5 "$B2")"
assert_eq "during the load: edumig.bulk_set_aside holds exactly the phase-5 definitions" "$exp_p5" \
    "$(q "$B2" "SELECT name FROM edumig.bulk_set_aside WHERE phase = 5 AND state = 'dropped' ORDER BY 1")"
assert_eq "... saved as the server printed them" \
    "$(q "$LMS_TEMPLATE" "SELECT string_agg(x, E'\n' ORDER BY x) FROM (SELECT conname || ' ' || pg_get_constraintdef(oid) AS x FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text IN ($P5) UNION ALL SELECT indexrelid::regclass || ' ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE NOT indisunique AND indrelid::regclass::text IN ($P5)) s")" \
    "$(q "$B2" "SELECT string_agg(name || ' ' || definition, E'\n' ORDER BY name || ' ' || definition) FROM edumig.bulk_set_aside")"
assert_eq "during the load: the tables of phases 1-4 have all theirs" \
    "$(schema_defs "$LMS_TEMPLATE" "$(sed "s/'course_enrollments', 'assessments', 'grades', 'assessment_submissions'/'-'/" <<<"$WRITTEN")")" \
    "$(schema_defs "$B2" "$(sed "s/'course_enrollments', 'assessments', 'grades', 'assessment_submissions'/'-'/" <<<"$WRITTEN")")"
status_out=$(edumig "$B2" status 2>&1)
assert_match "status says what is set aside" "set aside by run --bulk and not rebuilt yet .*
  foreign key assessment_submissions_assessment_id_fkey of public.assessment_submissions \(phase 5, set aside by run [0-9]+; absent\)" "$status_out"
# Someone writes a row the absent foreign key would have refused.
ORPHAN=00000000-0000-0000-0000-0000000000e1
q "$B2" "INSERT INTO course_enrollments (id, course_offering_id, student_id, enrollment_status)
         SELECT '$ORPHAN', '00000000-0000-0000-0000-0000000000ff', id, 'completed' FROM students ORDER BY id LIMIT 1" >/dev/null
kill -USR1 $pid
wait $pid; rc=$?
out=$(cat "$WORKDIR/p5.log")
assert_eq "a failed rebuild: the run exits 3" 3 "$rc"
assert_match "... the error names the constraint, its table and the server's message" \
    "ERROR bulk: foreign key course_enrollments_course_offering_id_fkey of public.course_enrollments could not be rebuilt: \[23503\] insert or update on table \"course_enrollments\" violates foreign key constraint \"course_enrollments_course_offering_id_fkey\": Key \(course_offering_id\)=\(00000000-0000-0000-0000-0000000000ff\) is not present in table \"course_offerings\"\.; its definition stays in edumig.bulk_set_aside" "$out"
assert_eq "... its definition stays saved (added back NOT VALID, so new rows are checked), with the error" \
    "foreign_key course_enrollments_course_offering_id_fkey not_valid 23503" \
    "$(q "$B2" "SELECT kind || ' ' || name || ' ' || state || ' ' || substr(last_error, 2, 5) FROM edumig.bulk_set_aside")"
assert_eq "... the other definitions were rebuilt" "$(grep -v '^course_enrollments_course_offering_id_fkey$' <<<"$exp_p5")" "$(rebuilt_names <<<"$out")"
assert_eq "... and the constraint is in the catalog NOT VALID" "f" \
    "$(q "$B2" "SELECT convalidated FROM pg_constraint WHERE conname = 'course_enrollments_course_offering_id_fkey'")"
out=$(edumig "$B2" verify 2>&1); rc=$?
assert_eq "verify exits 1 while a definition is set aside" 1 "$rc"
assert_match "... naming it" "bulk: every set-aside definition is rebuilt +edumig.bulk_set_aside +FAIL
      1 row
      foreign key course_enrollments_course_offering_id_fkey of public.course_enrollments \(phase 5, set aside by run [0-9]+; added back NOT VALID, not validated\): last rebuild failed: \[23503\]" "$out"
# The orphan removed, a run of the phase finishes the job.
q "$B2" "DELETE FROM course_enrollments WHERE id = '$ORPHAN'" >/dev/null
out=$(edumig "$B2" run --phase 5 "${OPTS[@]}" 2>&1); rc=$?
assert_eq "after the fix, run --phase 5 (no --bulk) exits 0" 0 "$rc"
assert_eq "... and validates the one constraint left" "course_enrollments_course_offering_id_fkey" "$(rebuilt_names <<<"$out")"
assert_eq "... same target as a normal run" "$want" "$(migration_checksum "$B2" $TABLES)"
assert_eq "... every definition as the schema's" "$defs_schema" "$(schema_defs "$B2")"
assert_eq "... nothing set aside" 0 "$(aside "$B2")"
assert_exit "... verify exits 0" 0 edumig "$B2" verify

# --- SIGKILL inside a bulk phase, then resume ------------------------------------------
new_db B3 b3 "$LMS_TEMPLATE"
EDUMIG_TEST_KILL="batch_after_commit:$((b4 + 3))" edumig "$B3" run --all -q "${OPTS[@]}" --bulk >/dev/null 2>&1
assert_eq "run --all --bulk killed after the third batch of phase 5 (exit 137)" 137 "$?"
assert_eq "... inside phase 5" 5 "$(q "$B3" "SELECT max(phase) FROM edumig.runs WHERE status = 'running'")"
assert_eq "... after its third batch" 3 "$(q "$B3" "SELECT sum(batches) FROM edumig.checkpoints WHERE phase = 5")"
assert_eq "... its definitions saved, absent from the catalog" "$exp_p5 0 0" \
    "$(q "$B3" "SELECT name FROM edumig.bulk_set_aside WHERE state = 'dropped' ORDER BY 1") $(count_p5 "$B3" | cut -d' ' -f1-2)"
q "$B3" "UPDATE edumig.runs SET status = 'failed' WHERE status = 'running'" >/dev/null
new_db B4 b4 "$B3"   # the same killed state, for the kill inside the rebuild
new_db B6 b6 "$B3"   # ... and for rollback
new_db B7 b7 "$B3"
out=$(edumig "$B3" run --all "${OPTS[@]}" --bulk 2>&1); rc=$?
assert_eq "the resumed run --all --bulk exits 0" 0 "$rc"
assert_match "... says it resumes the load before rebuilding" \
    "INFO  bulk: phase 5 has $n_p5 foreign keys and indexes set aside by an earlier run: the load resumes first, then they are rebuilt" "$out"
assert_match "... and sets nothing more aside (phases 1-4 are not empty now)" \
    "INFO  bulk: public.persons is not empty at the start of phase 1, so it is not set aside: its foreign keys and indexes stay live \(only an empty table is loaded in bulk\)" "$out"
assert_eq "... rebuilds each definition of phase 5 once" "$exp_p5" "$(rebuilt_names <<<"$out")"
assert_eq "... same target as a normal run" "$want" "$(migration_checksum "$B3" $TABLES)"
assert_eq "... every definition as the schema's" "$defs_schema" "$(schema_defs "$B3")"
assert_eq "... nothing set aside" 0 "$(aside "$B3")"
assert_exit "... verify exits 0" 0 edumig "$B3" verify

# --- SIGKILL inside the rebuild --------------------------------------------------------
# Indexes take one transaction each, foreign keys two (ADD NOT VALID, then VALIDATE): the
# 7th is the validation of the first foreign key, already added back.
n_idx5=$(q "$LMS_TEMPLATE" "SELECT count(*) FROM pg_index WHERE NOT indisunique AND indrelid::regclass::text IN ($P5)")
EDUMIG_TEST_KILL="bulk_rebuild_before_commit:$((n_idx5 + 2))" edumig "$B4" run --all "${OPTS[@]}" --bulk >"$WORKDIR/k.log" 2>&1
assert_eq "run killed inside the rebuild (exit 137)" 137 "$?"
first=$(rebuilt_names <"$WORKDIR/k.log")
assert_eq "... after rebuilding the indexes and adding back a foreign key NOT VALID" \
    "$((n_p5 - n_idx5)) 1 $n_idx5" \
    "$(q "$B4" "SELECT count(*) || ' ' || count(*) FILTER (WHERE state = 'not_valid') FROM edumig.bulk_set_aside") $(wc -l <<<"$first")"
q "$B4" "UPDATE edumig.runs SET status = 'failed' WHERE status = 'running'" >/dev/null
out=$(edumig "$B4" run --all "${OPTS[@]}" --bulk 2>&1); rc=$?
assert_eq "the resumed run exits 0" 0 "$rc"
assert_eq "each definition rebuilt exactly once over the two runs" "$exp_p5" "$(printf '%s\n%s\n' "$first" "$(rebuilt_names <<<"$out")" | sort)"
assert_eq "... no rebuild failed" 0 "$(grep -c 'could not be rebuilt' <<<"$out")"
assert_eq "... same target as a normal run" "$want" "$(migration_checksum "$B4" $TABLES)"
assert_eq "... every definition as the schema's" "$defs_schema" "$(schema_defs "$B4")"

# --- rollback with definitions set aside: rebuilt first --------------------------------
out=$(edumig "$B6" rollback --phase 5 2>&1); rc=$?
assert_eq "rollback --phase 5 with the phase's definitions set aside exits 0" 0 "$rc"
assert_eq "... it rebuilt them first" "$exp_p5" "$(rebuilt_names <<<"$out")"
assert_eq "... and removed phase 5: nothing set aside, no rows, every definition as the schema's" \
    "0 0 $defs_schema" "$(aside "$B6") $(q "$B6" "SELECT count(*) FROM course_enrollments") $(schema_defs "$B6")"
edumig "$B6" run --phase 5 -q "${OPTS[@]}" --bulk >/dev/null 2>&1
assert_eq "... run --phase 5 --bulk again: same target as a normal run" "0 $want" "$? $(migration_checksum "$B6" $TABLES)"
q "$B7" "INSERT INTO course_enrollments (id, course_offering_id, student_id, enrollment_status)
         SELECT '$ORPHAN', '00000000-0000-0000-0000-0000000000ff', id, 'completed' FROM students ORDER BY id LIMIT 1" >/dev/null
rows=$(q "$B7" "SELECT count(*) FROM course_enrollments")
out=$(edumig "$B7" rollback --phase 5 2>&1); rc=$?
assert_eq "rollback whose rebuild fails exits 3" 3 "$rc"
assert_match "... refusing, naming why" "ERROR bulk: foreign key course_enrollments_course_offering_id_fkey of public.course_enrollments could not be rebuilt: \[23503\].*
.*ERROR rollback refused: 1 foreign key or index set aside by run --bulk for phase 5 or later could not be rebuilt \(see above\); nothing was removed" "$out"
assert_eq "... and removing nothing" "$rows 1" "$(q "$B7" "SELECT count(*) FROM course_enrollments") $(aside "$B7")"

# --- a table that is not empty at the phase's start -------------------------------------
new_db B5 b5 "$LMS_TEMPLATE"
for p in 1 2 3 4; do edumig "$B5" run --phase $p -q "${OPTS[@]}" >/dev/null 2>&1; done
EDUMIG_TEST_KILL="batch_after_commit:2" edumig "$B5" run --phase 5 -q "${OPTS[@]}" >/dev/null 2>&1
assert_eq "a plain run of phase 5 killed after two batches (exit 137)" "137 2" "$? $(q "$B5" "SELECT batches FROM edumig.checkpoints WHERE entity = 'course_enrollments'")"
q "$B5" "UPDATE edumig.runs SET status = 'failed' WHERE status = 'running'" >/dev/null
EDUMIG_TEST_KILL="bulk_after_set_aside:1" edumig "$B5" run --phase 5 "${OPTS[@]}" --bulk >"$WORKDIR/ne.log" 2>&1
assert_eq "run --phase 5 --bulk stopped right after setting aside (exit 137)" 137 "$?"
assert_match "the non-empty table is named, with why it stays as it is" \
    "INFO  bulk: public.course_enrollments is not empty at the start of phase 5, so it is not set aside: its foreign keys and indexes stay live \(only an empty table is loaded in bulk\)" "$(cat "$WORKDIR/ne.log")"
assert_eq "... its foreign keys and indexes are all in the catalog" \
    "$(schema_defs "$LMS_TEMPLATE" "'course_enrollments'")" "$(schema_defs "$B5" "'course_enrollments'")"
assert_eq "... none of them saved; the other phase-5 tables set aside" \
    "0 $(settable "$LMS_TEMPLATE" "'assessments', 'grades', 'assessment_submissions'" | tr '\n' ' ')" \
    "$(q "$B5" "SELECT count(*) FROM edumig.bulk_set_aside WHERE table_name = 'course_enrollments'") $(q "$B5" "SELECT name FROM edumig.bulk_set_aside ORDER BY 1" | tr '\n' ' ')"
q "$B5" "UPDATE edumig.runs SET status = 'failed' WHERE status = 'running'" >/dev/null
edumig "$B5" run --phase 5 -q "${OPTS[@]}" >/dev/null 2>&1
assert_eq "resumed: exit 0, same target as a normal run, every definition back, nothing set aside" \
    "0 $want $defs_schema 0" "$? $(migration_checksum "$B5" $TABLES) $(schema_defs "$B5") $(aside "$B5")"

# --- a foreign key whose column is not filled by a ref stays live ------------------------
CFG="$WORKDIR/cfg"
cp -r "$SRCDIR/tests/pg/configs/basic" "$CFG"
python3 - "$CFG/mappings/note.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["columns"]["reviewer_id"] = {"rule": "constant", "value": None}
json.dump(m, open(sys.argv[1], "w"), indent=2)
PY
new_db KS ks template0
psql -X -q -v ON_ERROR_STOP=1 -d "$KS" -f "$CFG/source.sql" >/dev/null
new_db KT kt template0
psql -X -q -v ON_ERROR_STOP=1 -d "$KT" -f "$CFG/target.sql" >/dev/null
q "$KT" "ALTER TABLE note ADD reviewer_id uuid CONSTRAINT note_reviewer_id_fkey REFERENCES person (id)" >/dev/null
line=$(grep -n '"reviewer_id"' "$CFG/mappings/note.json" | cut -d: -f1)
EDUMIG_TEST_KILL="bulk_after_set_aside:2" "$EDUMIG" run --all --bulk --config "$CFG" --source "dbname=$KS" --target "dbname=$KT" \
    --log-dir "$WORKDIR/logs" >"$WORKDIR/ks.log" 2>&1
assert_eq "basic config with a constant in a foreign-key column: stopped after setting aside phase 2 (exit 137)" 137 "$?"
assert_match "the foreign key stays live, and the log says why (file:line of the rule)" \
    "INFO  bulk: public.note: foreign key note_reviewer_id_fkey stays live: $CFG/mappings/note.json:$line: /columns/reviewer_id: column \"reviewer_id\" is filled by its \"constant\" rule, not by a ref, so edumig does not check its values against public.person" \
    "$(cat "$WORKDIR/ks.log")"
assert_eq "... it is in the catalog; the ref's foreign key is set aside" "note_reviewer_id_fkey note_person_id_fkey" \
    "$(q "$KT" "SELECT string_agg(conname, ',') FROM pg_constraint WHERE contype = 'f'") $(q "$KT" "SELECT string_agg(name, ',') FROM edumig.bulk_set_aside")"

# --- --dry-run --bulk -------------------------------------------------------------------
new_db D1 d1 "$LMS_TEMPLATE"
out=$(edumig "$D1" run --all --dry-run --bulk 2>&1); rc=$?
assert_eq "--dry-run --bulk is refused with a usage error (exit 2)" 2 "$rc"
assert_match "... naming both options" "edumig run: --dry-run and --bulk cannot be combined" "$out"
assert_eq "... before touching the target" 0 "$(q "$D1" "SELECT count(*) FROM pg_namespace WHERE nspname = 'edumig'")"
assert_exit "--bulk belongs to run only" 2 edumig "$D1" retry --phase 1 --bulk

done_testing
