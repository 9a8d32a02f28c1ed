#!/usr/bin/env bash
# tests/pg/faults.sh — server faults in the middle of a run: the target restarted
# (pg_ctl restart -m immediate) inside a batch, the source session terminated, a target table
# locked by someone else. Transient target failures are retried with backoff; anything else
# stops with exit 3, and a resume ends with the same result as a clean run.
#
# The target lives in a cluster of its own (started here), so restarting it cannot disturb
# the other tests sharing the suite's cluster, which holds the source.
. "$SRCDIR/tests/lib.sh"
require_sandbox

BASIC="$SRCDIR/tests/pg/configs/basic"
new_db SRC src template0
psql -X -q -v ON_ERROR_STOP=1 -d "$SRC" -f "$BASIC/source.sql" >/dev/null
SRC_CONN="host=$PGHOST port=$PGPORT dbname=$SRC"

TPG=$(mktemp -d /tmp/edumig-tpg.XXXXXX)   # its own directory: the cluster runs as postgres
"$SRCDIR/scripts/pg-sandbox" start "$TPG" >/dev/null 2>&1 || { echo "Bail out! cannot start the target cluster"; exit 1; }
trap '_cleanup; "$SRCDIR/scripts/pg-sandbox" stop "$TPG" >/dev/null 2>&1' EXIT
TPORT=$(cat "$TPG/port")
tq() { psql -X -qAt -v ON_ERROR_STOP=1 -h "$TPG" -p "$TPORT" -d "$1" -c "$2"; }
mk_target() {   # mk_target NAME
    psql -X -q -h "$TPG" -p "$TPORT" -d postgres -c "CREATE DATABASE \"$1\"" >/dev/null
    psql -X -q -v ON_ERROR_STOP=1 -h "$TPG" -p "$TPORT" -d "$1" -f "$BASIC/target.sql" >/dev/null
}
edumig() {   # edumig TARGET ARGS...
    local t=$1; shift
    "$EDUMIG" "$@" --config "$BASIC" --source "$SRC_CONN" --target "host=$TPG port=$TPORT dbname=$t" --log-dir "$WORKDIR/logs"
}
tsum() {   # checksum of what the migration wrote in target database $1
    local d=$1 t out=""
    for t in person note edumig.id_map edumig.skips; do
        local excl=""
        case $t in
            edumig.id_map) excl="'run_id','migrated_at'" ;;
            edumig.skips) excl="'skip_id','run_id','at','resolved_at','resolved_by_run'" ;;
        esac
        local cols
        cols=$(tq "$d" "SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute
                        WHERE attrelid = '$t'::regclass AND attnum > 0 AND NOT attisdropped ${excl:+AND attname NOT IN ($excl)}")
        out+="$t=$(tq "$d" "SELECT count(*) || ':' || md5(string_agg(r, E'\n' ORDER BY r)) FROM (SELECT ROW($cols)::text r FROM $t) s") "
    done
    echo "$out"
}

mk_target clean
edumig clean run --all -q --batch-size 500 >/dev/null 2>&1
assert_eq "a clean run into the target cluster exits 0" 0 "$?"
CLEAN=$(tsum clean)

# --- the target restarts inside a batch: retried after reconnecting -----------------
mk_target restart
EDUMIG_TEST_PAUSE="batch_after_rows:3:2" edumig restart run --all --batch-size 500 --retries 6 >"$WORKDIR/restart.log" 2>&1 &
job=$!
sleep 1
"$SRCDIR/scripts/pg-sandbox" restart "$TPG" immediate
wait "$job"; rc=$?
assert_eq "a target restarted mid-batch: the run reconnects and finishes (exit 0)" 0 "$rc"
assert_match "... saying it retried and reconnected" "failed transiently .*retry 1 of 6.*reconnected to" "$(tr '\n' ' ' <"$WORKDIR/restart.log")"
assert_eq "... with the same result as a clean run" "$CLEAN" "$(tsum restart)"

# --- the target restarts during COMMIT: the landed batch is recognised, not redone ------
mk_target commit
EDUMIG_TEST_PAUSE="batch_after_commit:2:2" edumig commit run --all --batch-size 500 --retries 6 >"$WORKDIR/commit.log" 2>&1 &
job=$!
sleep 1
"$SRCDIR/scripts/pg-sandbox" restart "$TPG" immediate
wait "$job"; rc=$?
assert_eq "a restart right after a COMMIT: the run finishes (exit 0)" 0 "$rc"
assert_eq "... with the same result as a clean run" "$CLEAN" "$(tsum commit)"

# --- the source session is terminated: stop with exit 3, resume gives the same result ---
mk_target source
EDUMIG_TEST_PAUSE="batch_begin:3:3" edumig source run --all --batch-size 500 >"$WORKDIR/source.log" 2>&1 &
job=$!
sleep 1
psql -X -qAt -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$SRC' AND application_name = 'edumig'" >/dev/null
wait "$job"; rc=$?
assert_eq "a terminated source session stops the run (exit 3)" 3 "$rc"
assert_match "... saying what was kept and how to resume" "the source connection was lost; nothing after the last committed batch \(key [0-9]+\) was kept: run the phase again to resume there" "$(cat "$WORKDIR/source.log")"
edumig source run --all -q --batch-size 500 >/dev/null 2>&1
assert_eq "the resume exits 0" 0 "$?"
assert_eq "... with the same result as a clean run" "$CLEAN" "$(tsum source)"

# --- a target table locked by someone else -------------------------------------------------
mk_target locked
edumig locked run --phase 1 -q --batch-size 500 >/dev/null 2>&1
psql -X -q -h "$TPG" -p "$TPORT" -d locked -c "BEGIN; LOCK TABLE note IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;" >/dev/null 2>&1 &
holder=$!
sleep 0.5
EDUMIG_LOCK_TIMEOUT_MS=500 edumig locked run --phase 2 --batch-size 500 --retries 6 >"$WORKDIR/lock.log" 2>&1; rc=$?
wait "$holder"
assert_eq "a lock held for 3 s: the run waits it out with retries (exit 0)" 0 "$rc"
assert_match "... naming the lock timeout as the transient failure" "\[55P03\]" "$(cat "$WORKDIR/lock.log")"
assert_eq "... with the same result as a clean run" "$CLEAN" "$(tsum locked)"

mk_target locked2
edumig locked2 run --phase 1 -q --batch-size 500 >/dev/null 2>&1
psql -X -q -h "$TPG" -p "$TPORT" -d locked2 -c "BEGIN; LOCK TABLE note IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT;" >/dev/null 2>&1 &
holder=$!
sleep 0.5
EDUMIG_LOCK_TIMEOUT_MS=300 edumig locked2 run --phase 2 --batch-size 500 --retries 1 >"$WORKDIR/lock2.log" 2>&1; rc=$?
assert_eq "a lock held longer than the retries: stop with exit 3" 3 "$rc"
assert_match "... saying it gave up and how to resume" "giving up after 1 retries; run again to resume after the last committed batch" "$(cat "$WORKDIR/lock2.log")"
wait "$holder"
edumig locked2 run --phase 2 -q --batch-size 500 >/dev/null 2>&1
assert_eq "the resume exits 0" 0 "$?"
assert_eq "... with the same result as a clean run" "$CLEAN" "$(tsum locked2)"

done_testing
