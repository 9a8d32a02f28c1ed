#!/usr/bin/env bash
# tests/pg/crash.sh — crash anywhere: the whole mapping set on the fixture is run again and
# again, each run SIGKILLed at another stage of a batch (begin, after the rows, after the id
# map, before COMMIT, during COMMIT, after COMMIT, inside the deferred-reference pass), until
# a run completes. The result must equal an uninterrupted run: every target table, the id
# map and the skip log (ordered checksums; only run ids and timestamps left out).
. "$SRCDIR/tests/lib.sh"
require_sandbox

new_db SRC edu "$EDU_TEMPLATE"
new_db CLEAN clean "$LMS_TEMPLATE"
new_db T crash "$LMS_TEMPLATE"
edumig() {   # edumig TARGET ARGS...
    local t=$1; shift
    "$EDUMIG" "$@" --config "$SRCDIR" --source "dbname=$SRC" --target "dbname=$t" --log-dir "$WORKDIR/logs"
}
all_tables() { q "$1" "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"; }

BATCH=150   # small enough for 20+ kill points: filtered rows do not fill a batch
edumig "$CLEAN" run --all -q --batch-size $BATCH --bcrypt-cost 4 >/dev/null 2>&1
assert_eq "the uninterrupted run exits 0" 0 "$?"
TABLES=$(all_tables "$CLEAN")
want=$(migration_checksum "$CLEAN" $TABLES)

points=(batch_begin batch_after_rows batch_after_idmap batch_before_commit batch_during_commit batch_after_commit)
seed=${EDUMIG_TEST_SEED:-$RANDOM}; RANDOM=$seed
echo "# seed $seed"
declare -A seen_points seen_phases
# kill_until_done DB [jobs]: `run --all` killed at the next stage (pass 1 to 3 of it) again
# and again until a run completes; counts into kills, sets done_, notes the stages and
# phases hit. With "jobs", two runs in three use --jobs 2.
kill_until_done() {
    local db=$1 mode=${2:-} i=0 p n rc ph
    local -a extra
    done_=0
    while [ $i -lt 200 ]; do
        i=$((i + 1))
        p=${points[$((i % ${#points[@]}))]} n=$((RANDOM % 3 + 1))
        extra=()
        [ "$mode" = jobs ] && extra=(--jobs $(( i % 3 == 0 ? 1 : 2 )))
        EDUMIG_TEST_KILL="$p:$n" edumig "$db" run --all -q --batch-size $BATCH --bcrypt-cost 4 "${extra[@]}" \
            >"$WORKDIR/run.log" 2>&1
        rc=$?
        if [ $rc = 137 ]; then
            kills=$((kills + 1))
            seen_points[$p]=1
            ph=$(q "$db" "SELECT max(phase) FROM edumig.runs WHERE status = 'running'" 2>/dev/null)
            [ -n "$ph" ] && seen_phases[$ph]=1
            q "$db" "UPDATE edumig.runs SET status = 'failed' WHERE status = 'running'" >/dev/null 2>&1
            continue
        fi
        if [ $rc = 0 ]; then done_=1; break; fi
        not_ok "${mode:+--$mode }run $i (kill at $p:$n) ended with exit $rc" "$(tail -5 "$WORKDIR/run.log")"
        break
    done
}
kills=0
# Phase 1 first, then one run killed inside the organization units' deferred pass (the
# first entity of phase 2), then runs killed at random stages until one completes.
edumig "$T" run --phase 1 -q --batch-size $BATCH --bcrypt-cost 4 >/dev/null 2>&1
EDUMIG_TEST_KILL="deferred_before_commit:1" edumig "$T" run --all -q --batch-size $BATCH --bcrypt-cost 4 >/dev/null 2>&1
if [ $? = 137 ]; then kills=1; seen_points[deferred_before_commit]=1; seen_phases[2]=1; fi
q "$T" "UPDATE edumig.runs SET status = 'failed' WHERE status = 'running'" >/dev/null 2>&1
kill_until_done "$T"
echo "# $kills runs killed; stages: ${!seen_points[*]}; phases: ${!seen_phases[*]}"
assert_eq "the killed-and-resumed migration completed" 1 "$done_"
if [ "$kills" -ge 20 ]; then ok "at least 20 kill points ($kills)"; else not_ok "at least 20 kill points" "only $kills"; fi
assert_eq "every stage of a batch was hit, and the deferred pass" 7 "${#seen_points[@]}"
if [ "${#seen_phases[@]}" -ge 3 ]; then ok "kills spread over the phases (${!seen_phases[*]})"; else not_ok "kills spread over the phases" "phases: ${!seen_phases[*]}"; fi
got=$(migration_checksum "$T" $TABLES)
assert_eq "0 differences from the uninterrupted run (all target tables, id map, skip log)" "$want" "$got"
assert_exit "verify exits 0 on the killed-and-resumed migration" 0 edumig "$T" verify

# Rollback of the last phase, then a re-run of it: the same as the first run.
last=$(q "$T" "SELECT max(phase) FROM edumig.checkpoints")
ents=$(q "$T" "SELECT string_agg(quote_literal(entity), ',') FROM edumig.checkpoints WHERE phase = $last")
before=$(q "$T" "SELECT count(*) FROM edumig.id_map WHERE entity IN ($ents)")
assert_ne "phase $last wrote id-map rows" 0 "$before"
out=$(edumig "$T" rollback --phase "$last" 2>&1); rc=$?
assert_eq "rollback --phase $last exits 0" 0 "$rc"
# Referencing tables are emptied first: grades (submission_id, no index) before
# assessment_submissions, assessment_submissions before exam_assessments (both in assessments).
assert_eq "rollback undoes referencing tables first, then reverse run order" \
    "grades assessment_submissions exam_assessments assessments course_enrollments" \
    "$(printf '%s\n' "$out" | sed -n 's/^.*INFO  rollback: \([a-z_]*\): [0-9]* rows removed$/\1/p' | paste -sd' ')"
assert_eq "... and leaves nothing of phase $last (id map, skips, checkpoints)" "0 0 0" \
    "$(q "$T" "SELECT (SELECT count(*) FROM edumig.id_map WHERE entity IN ($ents)) || ' ' || (SELECT count(*) FROM edumig.skips WHERE entity IN ($ents)) || ' ' || (SELECT count(*) FROM edumig.checkpoints WHERE entity IN ($ents))")"
edumig "$T" run --phase "$last" -q --batch-size $BATCH --bcrypt-cost 4 >/dev/null 2>&1
assert_eq "re-running phase $last exits 0" 0 "$?"
assert_eq "rollback of phase $last then re-run: identical to the first run" "$want" "$(migration_checksum "$T" $TABLES)"

# --jobs 2: the entities of a phase run side by side in child processes, and each batch is
# written by a thread of its own while the next is read. Killed at every stage again (the
# kill lands in a child's writer thread; the run dies with it), resumed with and without --jobs.
new_db TJ crashjobs "$LMS_TEMPLATE"
kills=0
kill_until_done "$TJ" jobs
echo "# --jobs: $kills runs killed"
assert_eq "--jobs 2: the killed-and-resumed migration completed" 1 "$done_"
# (Kill passes count per process: an entity in a child process of its own reaches fewer.)
if [ "$kills" -ge 10 ]; then ok "--jobs 2: at least 10 kill points ($kills)"; else not_ok "--jobs 2: at least 10 kill points" "only $kills"; fi
assert_eq "--jobs 2, killed and resumed: 0 differences from the uninterrupted run" "$want" "$(migration_checksum "$TJ" $TABLES)"
assert_exit "--jobs 2: verify exits 0" 0 edumig "$TJ" verify

done_testing
