# tests/lib.sh — shared helpers for the shell integration tests (TAP output).
#
# Environment provided by meson (tests/meson.build) and scripts/test.sh:
#   EDUMIG        path of the built edumig binary
#   SRCDIR        repository root
#   PGHOST/PGPORT/PGUSER   the throwaway cluster started by scripts/test.sh
#   EDU_TEMPLATE  legacy database at scale 0.01 to clone (CREATE DATABASE .. TEMPLATE)
#   LMS_TEMPLATE  empty target database (lms schema loaded) to clone
# Every test creates databases with a unique prefix and drops them at exit.
set -uo pipefail

_tap_n=0
_tap_failed=0
_test_dbs=()
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
# Databases of one test share a prefix so parallel tests never collide.
DB_PREFIX="t_${TEST_NAME//[^a-zA-Z0-9]/_}_$$"
WORKDIR=$(mktemp -d "/tmp/edumig-test-${TEST_NAME}.XXXXXX")

_cleanup() {
    local db
    for db in "${_test_dbs[@]}"; do
        psql -d postgres -qAtc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$WORKDIR"
}
trap _cleanup EXIT

ok() {   # ok DESCRIPTION  (a passing check)
    _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1"
}
not_ok() {   # not_ok DESCRIPTION [DETAIL]
    _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1))
    echo "not ok $_tap_n - $1"
    [ $# -ge 2 ] && printf '%s\n' "$2" | sed 's/^/#   /'
    return 0
}
assert_eq() {   # assert_eq DESCRIPTION EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1" "expected: [$2]
actual:   [$3]"; fi
}
assert_ne() {   # assert_ne DESCRIPTION UNEXPECTED ACTUAL
    if [ "$2" != "$3" ]; then ok "$1"; else not_ok "$1" "value must differ from [$2]"; fi
}
assert_match() {   # assert_match DESCRIPTION EXTENDED-REGEX ACTUAL
    if [[ "$3" =~ $2 ]]; then ok "$1"; else not_ok "$1" "pattern: $2
actual:  $3"; fi
}
assert_cmd() {   # assert_cmd DESCRIPTION CMD...   (passes when CMD exits 0)
    local d=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$d"; else not_ok "$d" "command failed ($?): $*
$out"; fi
}
assert_exit() {   # assert_exit DESCRIPTION EXPECTED_CODE CMD...
    local d=$1 want=$2; shift 2
    local out rc
    out=$("$@" 2>&1); rc=$?
    if [ "$rc" == "$want" ]; then ok "$d"; else not_ok "$d" "exit $rc, expected $want: $*
$out"; fi
}

new_db() {   # new_db VAR SUFFIX [TEMPLATE]: create a database, store its name in VAR; dropped at exit
    local __var=$1 name="${DB_PREFIX}_$2" tpl=${3:-template0}
    psql -X -d postgres -qAtc "CREATE DATABASE \"$name\" TEMPLATE \"$tpl\"" >/dev/null || return 1
    _test_dbs+=("$name")
    printf -v "$__var" '%s' "$name"
}
track_db() { _test_dbs+=("$1"); }   # track_db NAME: drop NAME at exit too

q() {   # q DB SQL  -> unaligned, tuples only
    psql -X -d "$1" -qAt -v ON_ERROR_STOP=1 -c "$2"
}

done_testing() {
    echo "1..$_tap_n"
    [ "$_tap_failed" -eq 0 ]
}

# Ordered checksum of a table's rows, leaving out the columns named after it (volatile
# control columns such as run ids and timestamps).
table_checksum() {   # table_checksum DB TABLE [EXCLUDED_COLUMN...]
    local db=$1 tbl=$2; shift 2
    local excl="" c
    for c in "$@"; do excl+="${excl:+,}'$c'"; done
    local cols
    cols=$(q "$db" "SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute
                    WHERE attrelid = '$tbl'::regclass AND attnum > 0 AND NOT attisdropped
                    ${excl:+AND attname NOT IN ($excl)}")
    q "$db" "SELECT count(*) || ':' || coalesce(md5(string_agg(r, E'\n' ORDER BY r)), '-')
             FROM (SELECT ROW($cols)::text AS r FROM $tbl) s"
}

# Checksum of what a migration wrote: the given target tables, the id map and the skip log
# (without run ids and timestamps, which differ between runs by design).
migration_checksum() {   # migration_checksum DB TABLE...
    local db=$1; shift
    local t out=""
    for t in "$@"; do out+="$t=$(table_checksum "$db" "$t") "; done
    out+="id_map=$(table_checksum "$db" edumig.id_map run_id migrated_at) "
    out+="skips=$(table_checksum "$db" edumig.skips skip_id run_id at resolved_at resolved_by_run)"
    echo "$out"
}

# Checksum of every table of a database (the source must never change).
database_checksum() {   # database_checksum DB
    local db=$1 t out=""
    for t in $(q "$db" "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
                        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"); do
        out+="$t=$(table_checksum "$db" "$t") "
    done
    echo "$out"
}

# Writes to a database so far, from the server's statistics: rows inserted or deleted in the
# whole database (pg_stat_database) and every write to its own tables (pg_stat_user_tables).
# Updates to the catalogs are left out: autovacuum updates pg_class and pg_database in place
# on its own schedule.
database_writes() {   # database_writes DB
    local db=$1
    psql -X -qAt -d postgres -c "SELECT pg_stat_clear_snapshot()" >/dev/null
    echo "db:$(q postgres "SELECT tup_inserted + tup_deleted FROM pg_stat_database WHERE datname = '$db'")" \
         "tables:$(q "$db" "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables")"
}

require_sandbox() {
    if [ -z "${PGHOST:-}" ] || ! psql -X -qAt -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
        echo "Bail out! no PostgreSQL sandbox: run scripts/test.sh (PGHOST=${PGHOST:-unset})"
        exit 1
    fi
}
