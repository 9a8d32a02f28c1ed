#!/usr/bin/env bash
# tests/pg/safety.sh — refusing to do harm: one run at a time per target and phase; bad
# configuration rejected before any write, with its exact file:line message; connection
# problems reported without the password, which `ps` does not show either.
. "$SRCDIR/tests/lib.sh"
require_sandbox

BASIC="$SRCDIR/tests/pg/configs/basic"
new_db SRC src template0
psql -X -q -v ON_ERROR_STOP=1 -d "$SRC" -f "$BASIC/source.sql" >/dev/null
mk_target() {   # mk_target VAR SUFFIX [TARGET.SQL]
    new_db "$1" "$2" template0
    psql -X -q -v ON_ERROR_STOP=1 -d "${!1}" -f "${3:-$BASIC/target.sql}" >/dev/null
}
edumig() {   # edumig CONFIG TARGET_DB ARGS...
    local c=$1 t=$2; shift 2
    "$EDUMIG" "$@" --config "$c" --source "dbname=$SRC" --target "dbname=$t" --log-dir "$WORKDIR/logs"
}

# --- one run at a time -------------------------------------------------------------------
mk_target T1 t1
EDUMIG_TEST_PAUSE="batch_begin:2:6" edumig "$BASIC" "$T1" run --phase 1 --batch-size 500 -q >"$WORKDIR/first.log" 2>&1 &
first=$!
for _ in $(seq 1 50); do   # wait until the first run holds the phase
    [ "$(q "$T1" "SELECT count(*) FROM edumig.checkpoints WHERE batches >= 1" 2>/dev/null)" = 1 ] && break
    sleep 0.1
done
out=$(edumig "$BASIC" "$T1" run --phase 1 2>&1); rc=$?
assert_eq "a second run of the same phase on the same target is refused (exit 3)" 3 "$rc"
assert_match "... naming the run that holds it (run id, host, pid)" \
    "phase 1 is being run by another edumig on this target: run [0-9]+ on host [^,]+, pid [0-9]+, started " "$out"
assert_exit "another phase is not blocked by it (plan runs)" 0 edumig "$BASIC" "$T1" plan
wait "$first"
assert_eq "the first run finishes normally" 0 "$?"
assert_eq "and only it wrote: one run row of phase 1 marked done" "1" \
    "$(q "$T1" "SELECT count(*) FROM edumig.runs WHERE phase = 1 AND status = 'done'")"

# --- bad configuration: rejected before any write, with file:line --------------------------
# Each case copies the basic configuration, breaks one thing, and expects one message.
bad_case() {   # bad_case NAME EXPECTED-REGEX PYTHON-EDIT
    local name=$1 want=$2 edit=$3 dir="$WORKDIR/cfg-$1"
    rm -rf "$dir"; cp -r "$BASIC" "$dir"
    (cd "$dir" && python3 -c "$edit")
    mk_target TB "bad_$name" "$dir/target.sql"
    local before out rc
    before=$(database_checksum "$TB")
    out=$(edumig "$dir" "$TB" run --all 2>&1); rc=$?
    assert_eq "$name: exit 2 (configuration error)" 2 "$rc"
    assert_match "$name: message" "$want" "$out"
    assert_eq "$name: the target is untouched (not even edumig's schema)" "$before" "$(database_checksum "$TB")"
}
PY_EDIT='import re,sys
def sub(path, old, new):
    s = open(path).read()
    assert old in s, (path, old)
    open(path, "w").write(s.replace(old, new, 1))
'
bad_case malformed_json "mappings/person\.json:12: invalid JSON: object value separator ',' expected
edumig: 1 configuration error in " \
    "$PY_EDIT"'sub("mappings/person.json", "\"name\": \"name\",", "\"name\": \"name\"")'
bad_case unknown_key "mappings/person\.json:12: /columns/email/tranforms: unknown key \"tranforms\" \(expected one of: from, value, template, transforms, on_invalid, default, or, sensitive, rule\)" \
    "$PY_EDIT"'sub("mappings/person.json", "\"transforms\": [\"trim\", \"email\"]", "\"tranforms\": [\"trim\", \"email\"]")'
bad_case wrong_type "mappings/note\.json:3: /source/key: expected a column name or an array of column names, found int" \
    "$PY_EDIT"'sub("mappings/note.json", "\"key\": \"id\"", "\"key\": 5")'
bad_case unknown_entity "mappings/note\.json:7: /columns/person_id: reference to unknown entity \"persn\"" \
    "$PY_EDIT"'sub("mappings/note.json", "\"entity\": \"person\"", "\"entity\": \"persn\"")'
bad_case unknown_transform "mappings/person\.json:13: /columns/born/transforms/0/fn: unknown transform \"datee\"" \
    "$PY_EDIT"'sub("mappings/person.json", "\"fn\": \"date\"", "\"fn\": \"datee\"")'
bad_case unknown_source_column "mappings/person\.json:1: source column \"emial\" does not exist in people" \
    "$PY_EDIT"'sub("mappings/person.json", "\"from\": \"email\"", "\"from\": \"emial\"")'
bad_case unknown_target_column "mappings/person\.json:14: /columns/metadata: target column \"metadata\" does not exist in public\.person" \
    "$PY_EDIT"'sub("target.sql", "metadata jsonb NOT NULL", "meta jsonb")'
bad_case reference_cycle "mappings/person\.json:[0-9]+: /columns/note_id: reference cycle: note -> person -> note" \
    "$PY_EDIT"'sub("mappings/person.json", "\"name\": \"name\",", "\"name\": \"name\", \"note_id\": {\"rule\": \"ref\", \"entity\": \"note\", \"from\": \"id\"},")'
bad_case phase_order "mappings/note\.json:7: /columns/person_id: refers to entity \"person\" of a later phase \(2 > 1\)" \
    "$PY_EDIT"'sub("phases/phases.json", "\"entities\": [\"person\"]", "\"entities\": [\"note\"]"); sub("phases/phases.json", "\"entities\": [\"note\"]}\n", "\"entities\": [\"person\"]}\n")'

# --- connections: clear errors, no password anywhere -------------------------------------
out=$("$EDUMIG" plan --config "$BASIC" --source "dbname=$SRC" --target "host=127.0.0.1 port=1 dbname=nowhere user=x password=s3cr3t-pw" 2>&1); rc=$?
assert_eq "an unreachable target exits 3" 3 "$rc"
assert_match "... with a message naming the target and the address" "cannot connect to the target database: .*127\.0\.0\.1.*port 1" "$out"
assert_eq "... and no password in it" "" "$(printf '%s' "$out" | grep -o 's3cr3t-pw')"
out=$("$EDUMIG" plan --config "$BASIC" --source "postgresql://someone:s3cr3t-pw@127.0.0.1:1/edu" --target "dbname=$SRC" 2>&1); rc=$?
assert_eq "an unreachable source (URI with a password) exits 3" 3 "$rc"
assert_match "... naming the source" "cannot connect to the source database: " "$out"
assert_eq "... and no password in it" "" "$(printf '%s' "$out" | grep -o 's3cr3t-pw')"
mk_target T2 t2
EDUMIG_TEST_PAUSE="batch_begin:1:3" "$EDUMIG" run --phase 1 -q --config "$BASIC" --log-dir "$WORKDIR/logs" \
    --source "dbname=$SRC password=s3cr3t-pw" --target "postgresql://$PGUSER:s3cr3t-pw@/$T2?host=$PGHOST&port=$PGPORT" >/dev/null 2>&1 &
pid=$!
sleep 1
cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
assert_match "ps shows the run" "edumig run --phase 1" "$cmdline"
assert_eq "ps does not show the passwords given on the command line" "" "$(printf '%s' "$cmdline" | grep -o 's3cr3t-pw')"
wait "$pid"
assert_eq "the run with passwords in its connection strings succeeds" 0 "$?"
assert_eq "no password in the run logs or the target's control tables" "" \
    "$( (cat "$WORKDIR"/logs/*.jsonl; q "$T2" "SELECT r::text FROM edumig.runs r"; q "$T2" "SELECT s::text FROM edumig.skips s") | grep -o 's3cr3t-pw' | head -1)"

done_testing
