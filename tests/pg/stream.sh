#!/usr/bin/env bash
# tests/pg/stream.sh — a mapping with filters and a unique key is read as two COPY parts merged
# by key (src/sourcestream.c): the rows the worker receives must be those of the one statement,
# byte for byte, from the start and from any resume key, whatever the mix of the two parts.
. "$(dirname "$0")/../lib.sh"
require_sandbox
DUMP=${STREAM_DUMP:?STREAM_DUMP is set by meson}
CFG=$SRCDIR

new_db SRC src "$EDU_TEMPLATE"
# The filter of grades (attendance_only), as SQL over journal_details.
ATT="point_id_1 IS NULL AND point_id_2 IS NULL AND point_id_3 IS NULL"

dump() {   # dump DB MODE [KEY] > file ; stderr (debug log) to $WORKDIR/log
    "$DUMP" "$CFG" "dbname=$1" grades "$2" ${3:+"$3"} 2>"$WORKDIR/log"
}

compare() {   # compare DB LABEL [KEY]: merged and single give the same bytes
    local db=$1 label=$2 key=${3:-}
    dump "$db" merged "$key" >"$WORKDIR/merged"; local rm=$?
    cp "$WORKDIR/log" "$WORKDIR/merged.log"
    dump "$db" single "$key" >"$WORKDIR/single"; local rs=$?
    assert_eq "$label: both reads end cleanly" "0 0" "$rm $rs"
    if cmp -s "$WORKDIR/merged" "$WORKDIR/single"; then
        ok "$label: the merged parts are the one statement's rows, byte for byte ($(wc -l <"$WORKDIR/single") rows)"
    else
        not_ok "$label: the merged parts differ from the one statement" \
            "$(diff "$WORKDIR/merged" "$WORKDIR/single" | head -6)"
    fi
}

total=$(q "$SRC" "SELECT count(*) FROM journal_details")
att=$(q "$SRC" "SELECT count(*) FROM journal_details WHERE $ATT")
assert_match "fixture: attendance rows and graded rows both present ($att of $total)" '^[0-9]+$' "$att"

compare "$SRC" "whole stream"
assert_eq "whole stream: every journal detail once" "$total" "$(wc -l <"$WORKDIR/merged")"
assert_eq "whole stream: filtered rows carry the filter index 0 last" "$att" \
    "$(awk -F'\t' '$NF == "0"' "$WORKDIR/merged" | wc -l)"
assert_eq "whole stream: a filtered row is its key, NULLs and the index (23 columns)" "$att" \
    "$(awk -F'\t' '$NF == "0" && NF == 23 { for (i = 2; i < NF; i++) if ($i != "\\N") next; print }' "$WORKDIR/merged" | wc -l)"
assert_eq "whole stream: keys strictly ascending (sort -n compares 18-digit keys exactly)" "ascending" \
    "$(cut -f1 "$WORKDIR/merged" | sort -c -n -u 2>&1 && echo ascending)"
assert_eq "the merged read sends two statements: the kept rows and the filtered keys" \
    "1 1" "$(grep -c 'edumig_f.i IS NULL AND' "$WORKDIR/merged.log") $(grep -c 'SELECT src."id", edumig_f.i FROM .* edumig_f.i IS NOT NULL AND' "$WORKDIR/merged.log")"

# Resume keys: after a filtered row, after a kept row, before the first and after the last.
k_att=$(q "$SRC" "SELECT id FROM journal_details WHERE $ATT ORDER BY id OFFSET 300 LIMIT 1")
k_kept=$(q "$SRC" "SELECT id FROM journal_details WHERE NOT ($ATT) ORDER BY id OFFSET 40 LIMIT 1")
k_last=$(q "$SRC" "SELECT max(id) FROM journal_details")
for key in "$k_att" "$k_kept" 0 "$k_last"; do
    compare "$SRC" "resume after $key" "$key"
    assert_eq "resume after $key: exactly the rows with a greater key" \
        "$(q "$SRC" "SELECT count(*) FROM journal_details WHERE id > $key")" "$(wc -l <"$WORKDIR/merged")"
done

# One part empty: no attendance rows at all; no graded rows at all.
new_db KEPT kept "$EDU_TEMPLATE"
q "$KEPT" "DELETE FROM journal_details WHERE $ATT" >/dev/null
compare "$KEPT" "no filtered rows"
assert_eq "no filtered rows: every row is a kept one" "$(q "$KEPT" "SELECT count(*) FROM journal_details")" \
    "$(awk -F'\t' '$NF == "\\N"' "$WORKDIR/merged" | wc -l)"
new_db FILT filt "$EDU_TEMPLATE"
q "$FILT" "DELETE FROM journal_details WHERE NOT ($ATT)" >/dev/null
compare "$FILT" "no kept rows"
assert_eq "no kept rows: every row is a filtered one" "$att" "$(wc -l <"$WORKDIR/merged")"

# A key not declared unique keeps the one statement (rows of one key are ordered by their
# text, which only the server can compare).
mkdir -p "$WORKDIR/cfg"
cp -r "$SRCDIR/mappings" "$SRCDIR/phases" "$WORKDIR/cfg/"
sed -i 's/"key_unique": true/"key_unique": false/' "$WORKDIR/cfg/mappings/grades.json"
CFG=$WORKDIR/cfg
compare "$SRC" "key not unique"
assert_eq "key not unique: one statement, ordered by key and row text" "0 1" \
    "$(grep -c 'edumig_f.i IS NOT NULL AND' "$WORKDIR/merged.log") $(grep -c 'ORDER BY src."id", src::text' "$WORKDIR/merged.log")"
CFG=$SRCDIR

# --- the filtered part's connection is lost in the middle of a run ---------------------------
# The run stops like a lost main source connection (exit 3, nothing after the last committed
# batch kept, "run the phase again"), and the run again ends as a clean run does. The filtered
# part (630 KB of keys at scale 0.01) is more than the socket holds: its backend is still
# sending when it is terminated, so the loss cannot go unnoticed.
new_db CLEAN clean "$LMS_TEMPLATE"
new_db LOST lost "$LMS_TEMPLATE"
run_into() {   # run_into TARGET ARGS...
    local t=$1; shift
    "$EDUMIG" run "$@" --bcrypt-cost 4 --config "$SRCDIR" --source "dbname=$SRC" --target "dbname=$t" --log-dir "$WORKDIR/logs"
}
assert_exit "lost part: a clean run --all exits 0" 0 run_into "$CLEAN" --all -q
for p in 1 2 3 4; do run_into "$LOST" --phase $p -q >/dev/null 2>&1; done
# (exec: $! must be edumig itself, which the pause's SIGUSR1 is for)
(EDUMIG_TEST_PAUSE="stream_parts_started:1:60" exec "$EDUMIG" run --phase 5 --batch-size 200 --config "$SRCDIR" \
    --source "dbname=$SRC" --target "dbname=$LOST" --log-dir "$WORKDIR/logs" >"$WORKDIR/lost.log" 2>&1) &
pid=$!
side=""
for _ in $(seq 1 200); do
    side=$(q postgres "SELECT pid FROM pg_stat_activity WHERE datname = '$SRC' AND query LIKE 'COPY (SELECT src.\"id\", edumig_f.i FROM%'")
    [ -n "$side" ] && [ -n "$(q "$LOST" "SELECT 1 FROM edumig.checkpoints WHERE entity = 'grades'")" ] && break
    sleep 0.1
done
assert_match "lost part: grades' filtered part is being read on a connection of its own" '^[0-9]+$' "$side"
q postgres "SELECT pg_terminate_backend($side)" >/dev/null
kill -USR1 $pid
wait $pid; rc=$?
assert_eq "lost part: the run stops with exit 3" 3 "$rc"
assert_match "lost part: grades says the source connection was lost and how to resume" \
    "grades: the source connection was lost; nothing after the last committed batch \(key [0-9]+\) was kept: run the phase again to resume there" \
    "$(tr '\n' ' ' <"$WORKDIR/lost.log")"
assert_exit "lost part: the phase run again exits 0" 0 run_into "$LOST" --phase 5 -q
assert_eq "lost part: the result is the clean run's" \
    "$(migration_checksum "$CLEAN" grades course_enrollments assessments assessment_submissions)" \
    "$(migration_checksum "$LOST" grades course_enrollments assessments assessment_submissions)"

# The source connection it reads from stays read-only, and the source unchanged.
before=$(database_checksum "$SRC")
dump "$SRC" merged >/dev/null
assert_eq "the source is unchanged by the two-part read" "$before" "$(database_checksum "$SRC")"

done_testing
