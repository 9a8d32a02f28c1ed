#!/usr/bin/env bash
# tests/pg/fixtures.sh — the fixtures themselves: the legacy generator is deterministic,
# every defect kind of defects.md is present (truth.sql counts it, non-zero), and the
# target schema enforces its constraints.
. "$SRCDIR/tests/lib.sh"
require_sandbox

FX="$SRCDIR/tests/fixtures"

# --- the generator is deterministic: two generations at one scale are identical -------
g1="${DB_PREFIX}_gen1"; g2="${DB_PREFIX}_gen2"
track_db "$g1"; track_db "$g2"
"$SRCDIR/scripts/fixture-db" legacy "$g1" 0.01 >/dev/null 2>&1
assert_eq "first generation at scale 0.01 succeeds" 0 "$?"
"$SRCDIR/scripts/fixture-db" legacy "$g2" 0.01 >/dev/null 2>&1
assert_eq "second generation at scale 0.01 succeeds" 0 "$?"
sum1=$(database_checksum "$g1")
sum2=$(database_checksum "$g2")
assert_ne "the generation is not empty" "" "$sum1"
assert_eq "two generations at the same scale are byte-identical" "$sum1" "$sum2"
assert_eq "the template database equals a fresh generation" "$sum1" "$(database_checksum "$EDU_TEMPLATE")"
assert_eq "the legacy database is SQL_ASCII, like the real one" "SQL_ASCII" \
    "$(q postgres "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = '$g1'")"
assert_eq "the legacy schema has no foreign keys" 0 \
    "$(q "$g1" "SELECT count(*) FROM pg_constraint WHERE contype = 'f'")"
empty=$(q "$g1" "SELECT string_agg(relname, ',') FROM pg_stat_user_tables WHERE n_live_tup = 0")
assert_eq "every legacy table has rows" "" "$empty"

# --- every defect kind is there --------------------------------------------------------
truth=$(psql -X -At -F '|' -v ON_ERROR_STOP=1 -d "$g1" -f "$FX/legacy_edu/truth.sql" 2>&1)
assert_eq "truth.sql runs" 0 "$?"
for d in $(seq -w 1 20); do
    n=$(printf '%s\n' "$truth" | grep -c "^d${d}_")
    if [ "$n" -ge 1 ]; then ok "truth.sql counts defect d$d ($n measure(s))"; else not_ok "truth.sql counts defect d$d"; fi
done
while IFS='|' read -r name count; do
    case "$name" in
        d[0-9][0-9]_*)
            if [ "${count:-0}" -gt 0 ] 2>/dev/null; then ok "$name is present at scale 0.01 ($count)"
            else not_ok "$name is present at scale 0.01" "count: [$count]"; fi ;;
    esac
done <<<"$truth"

# --- the target schema loads and enforces its constraints ------------------------------
new_db T target "$LMS_TEMPLATE"
assert_eq "target schema has its tables" 24 \
    "$(q "$T" "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")"
sqlstate_of() {   # sqlstate_of DB SQL -> "SQLSTATE constraint" of the error it raises
    psql -X -qAt -d "$1" -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$2" 2>&1 |
        sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' | head -1
}
q "$T" "INSERT INTO users (id, username, email, password_hash) VALUES
        ('00000000-0000-0000-0000-000000000001', 'alice', 'alice@example.org', 'x')" >/dev/null
assert_eq "an orphan row is rejected (foreign key, 23503)" 23503 \
    "$(sqlstate_of "$T" "INSERT INTO persons (first_name, last_name, user_id) VALUES ('A', 'B', '00000000-0000-0000-0000-0000000000ff')")"
assert_match "the orphan's error names persons_user_id_fkey" "persons_user_id_fkey" \
    "$(psql -X -qAt -d "$T" -c "INSERT INTO persons (first_name, last_name, user_id) VALUES ('A', 'B', '00000000-0000-0000-0000-0000000000ff')" 2>&1)"
assert_eq "a duplicate username is rejected (unique, 23505)" 23505 \
    "$(sqlstate_of "$T" "INSERT INTO users (username, email, password_hash) VALUES ('alice', 'other@example.org', 'x')")"
assert_match "the duplicate's error names users_username_key" "users_username_key" \
    "$(psql -X -qAt -d "$T" -c "INSERT INTO users (username, email, password_hash) VALUES ('alice', 'other@example.org', 'x')" 2>&1)"
assert_eq "a NULL in a NOT NULL column is rejected (23502)" 23502 \
    "$(sqlstate_of "$T" "INSERT INTO users (username, email, password_hash) VALUES ('bob', NULL, 'x')")"
assert_eq "a value outside a vocabulary is rejected (check, 23514)" 23514 \
    "$(sqlstate_of "$T" "INSERT INTO persons (first_name, last_name, gender) VALUES ('A', 'B', 'unknown')")"
assert_eq "an assessment title without 'az' is rejected (23514)" 23514 \
    "$(sqlstate_of "$T" "INSERT INTO assessments (course_offering_id, title, assessment_type, weight_percentage) VALUES (gen_random_uuid(), '{\"en\": \"x\"}', 'exam', 10)")"

done_testing
