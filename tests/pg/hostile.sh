#!/usr/bin/env bash
# tests/pg/hostile.sh — hostile legacy data (tests/pg/configs/hostile): text in no declared
# encoding, mixed and double-encoded text, strings of megabytes, every control character,
# absurd dates and numbers, NULL / negative / zero / int64-extreme keys, duplicated keys in
# tables without a primary key, a composite key with a NULL half, references that are
# missing, NULL, negative or not numbers at all. The engine must not crash or hang, and must
# account for every row: migrated (possibly with warnings), filtered, or skipped with a reason.
# A run killed mid-way and resumed must write exactly what a clean run writes.
#
# Each hostile row's expected fate is written next to it in source.sql; the "fate" of a legacy
# key below is "<id-map kind or ->|<severity:reason:column of its skip-log rows>".
. "$SRCDIR/tests/lib.sh"
require_sandbox

CFG="$SRCDIR/tests/pg/configs/hostile"
started=$SECONDS
EDUMIG_TIMEOUT=${EDUMIG_TIMEOUT:-180}   # a hang fails the test instead of stalling the suite
STDERR_ALL="$WORKDIR/edumig-stderr.log"
: >"$STDERR_ALL"

# The source is SQL_ASCII with C collation, like the real legacy database: bytes are stored as
# they come and edumig reads them raw.
SRC="${DB_PREFIX}_src"
psql -X -d postgres -qAtc "CREATE DATABASE \"$SRC\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" >/dev/null \
    || { echo "Bail out! cannot create the SQL_ASCII source database"; exit 1; }
track_db "$SRC"
psql -X -q -v ON_ERROR_STOP=1 -d "$SRC" -f "$CFG/source.sql" >/dev/null \
    || { echo "Bail out! cannot load $CFG/source.sql"; exit 1; }

mk_target() {   # mk_target VAR SUFFIX
    new_db "$1" "$2" template0
    psql -X -q -v ON_ERROR_STOP=1 -d "${!1}" -f "$CFG/target.sql" >/dev/null
}
edumig_cfg() {   # edumig_cfg CONFIG_DIR TARGET_DB ARGS...  (stderr kept for the sanitizer check)
    local cfg=$1 t=$2 err rc; shift 2
    err=$(mktemp "$WORKDIR/stderr.XXXXXX")
    timeout "$EDUMIG_TIMEOUT" "$EDUMIG" "$@" --config "$cfg" --source "dbname=$SRC" --target "dbname=$t" \
        --log-dir "$WORKDIR/logs-$t" 2>"$err"
    rc=$?
    { echo "### edumig $* (target $t): exit $rc"; cat "$err"; } >>"$STDERR_ALL"
    cat "$err" >&2
    rm -f "$err"
    return $rc
}
edumig() { edumig_cfg "$CFG" "$@"; }
cp_field() {   # cp_field DB ENTITY COLUMN
    q "$1" "SELECT $3 FROM edumig.checkpoints WHERE entity = '$2'"
}
src_q() { q "$SRC" "$1"; }

src_sum_before=$(database_checksum "$SRC")

# --- plan, then a clean run (phase 1 first, kept as a snapshot for a variant below) ------------
mk_target T1 t1
assert_exit "plan accepts the hostile configuration against both databases" 0 edumig "$T1" plan
assert_exit "phase 1 on hostile data exits 0" 0 edumig "$T1" run --phase 1 --batch-size 40 -q
psql -X -d postgres -qAtc "CREATE DATABASE \"${T1}_p1\" TEMPLATE \"$T1\"" >/dev/null && track_db "${T1}_p1"
assert_exit "run --all on hostile data exits 0" 0 edumig "$T1" run --all --batch-size 40 -q

# --- one pass over the target: every key's fate and the target values the checks below read ---
# (one query each instead of hundreds of psql round trips)
qt() { psql -X -d "$1" -qAt -F $'\t' -v ON_ERROR_STOP=1 -c "$2"; }
declare -A F V SK
load_fates() {   # load_fates DB: F[entity|key] = "<id-map kind or ->|<severity:reason:column,...>"
    F=()
    local k v
    while IFS=$'\t' read -r k v; do F[$k]=$v; done < <(qt "$1" "
        WITH keys AS (SELECT entity, old_key FROM edumig.id_map
                      UNION SELECT entity, old_key FROM edumig.skips WHERE old_key IS NOT NULL)
        SELECT k.entity || '|' || k.old_key, coalesce(m.kind, '-') || '|' || coalesce(s.l, '')
        FROM keys k LEFT JOIN edumig.id_map m USING (entity, old_key)
        LEFT JOIN LATERAL (SELECT string_agg(severity || ':' || reason || ':' || coalesce(column_name, ''), ','
                                             ORDER BY severity, reason, column_name) l
                           FROM edumig.skips x WHERE x.entity = k.entity AND x.old_key = k.old_key) s ON true")
}
fate() { local f=${F[$1|$2]:-}; echo "${f:--|}"; }
load_fates "$T1"
# V[entity|key|field]: target values (<null> for NULL); SK[entity|key|reason|field]: skip fields.
while IFS=$'\t' read -r e k f v; do V[$e|$k|$f]=$v; done < <(qt "$T1" "
    SELECT m.entity, m.old_key, f.k, coalesce(f.v, '<null>') FROM edumig.id_map m
    JOIN person t ON t.id = m.new_id AND m.entity = 'person'
    CROSS JOIN LATERAL (VALUES ('id', t.id::text), ('code', t.code), ('name', t.name),
        ('name_hex', encode(convert_to(t.name, 'UTF8'), 'hex')), ('title', t.title::text),
        ('title_hex', concat_ws(' ', encode(convert_to(t.title->>'az', 'UTF8'), 'hex'), encode(convert_to(t.title->>'en', 'UTF8'), 'hex'),
                                encode(convert_to(t.title->>'ru', 'UTF8'), 'hex'))),
        ('note_md5', md5(t.note)), ('note_len', octet_length(t.note)::text),
        ('note_hex', CASE WHEN octet_length(t.note) < 64 THEN encode(convert_to(t.note, 'UTF8'), 'hex') END),
        ('email', t.email), ('born', t.born::text), ('gpa', t.gpa::text), ('qty', t.qty::text),
        ('amount', t.amount::text), ('gender', t.gender), ('pw', t.password_hash),
        ('old_id', (t.metadata->'old_id')::text), ('score_raw', (t.metadata->'score_raw')::text),
        ('score_raw_type', jsonb_typeof(t.metadata->'score_raw')), ('active', (t.metadata->'active')::text),
        ('has_extra', (t.metadata ? 'extra')::text), ('extra_b', (t.metadata->'extra'->'a'->2->'b')::text),
        ('extra_c_hex', encode(convert_to(t.metadata->'extra'->>'c', 'UTF8'), 'hex'))) f(k, v)
    UNION ALL
    SELECT m.entity, m.old_key, f.k, coalesce(f.v, '<null>') FROM edumig.id_map m
    JOIN note t ON t.id = m.new_id AND m.entity = 'note'
    CROSS JOIN LATERAL (VALUES ('author', t.author_id::text), ('editor', t.editor_id::text),
                               ('body_len', octet_length(t.body)::text)) f(k, v)
    UNION ALL
    SELECT m.entity, m.old_key, f.k, coalesce(f.v, '<null>') FROM edumig.id_map m
    JOIN grade t ON t.id = m.new_id AND m.entity = 'grade'
    CROSS JOIN LATERAL (VALUES ('person', t.person_id::text), ('points', t.points::text), ('letter', t.letter)) f(k, v)
    UNION ALL
    SELECT m.entity, m.old_key, 'owner', coalesce(t.owner_id::text, '<null>') FROM edumig.id_map m
    JOIN tag t ON t.id = m.new_id AND m.entity = 'tag'")
while IFS=$'\t' read -r k f v; do SK[$k|$f]=$v; done < <(qt "$T1" "
    SELECT entity || '|' || old_key || '|' || reason, f.k, string_agg(coalesce(f.v, '<null>'), ',' ORDER BY skip_id)
    FROM edumig.skips CROSS JOIN LATERAL (VALUES ('sqlstate', sqlstate), ('constraint', constraint_name),
        ('cause', cause_entity || '/' || cause_key), ('source_value', replace(source_value, E'\n', '\n')),
        ('detail', replace(left(detail, 300), E'\n', '\n'))) f(k, v)
    WHERE old_key IS NOT NULL GROUP BY 1, 2")
v() { echo "${V[$1|$2|$3]-<no row>}"; }          # v ENTITY KEY FIELD
sk() { echo "${SK[$1|$2|$3|$4]-<no skip>}"; }     # sk ENTITY KEY REASON FIELD
P() { v person "$1" id; }                         # P KEY: the UUID of a person

# --- accounting: every row of every entity --------------------------------------------------------
declare -A SRC_TABLE=([person]=people [grade]=grades [note]=notes [tag]=tags)
for e in person grade note tag; do
    n=$(src_q "SELECT count(*) FROM ${SRC_TABLE[$e]}")
    IFS=$'\t' read -r read total state migrated idmap skipped errors warned warnkeys target stubs < <(qt "$T1" "
        SELECT c.rows_read, c.rows_migrated + c.rows_skipped + coalesce((SELECT sum(v::bigint) FROM jsonb_each_text(c.rows_filtered) f(k, v)), 0),
               c.state, c.rows_migrated,
               (SELECT count(*) FROM edumig.id_map WHERE entity = c.entity AND kind = 'row'),
               c.rows_skipped,
               -- a skipped source row leaves one error per problem; duplicates and NULL keys one each
               (SELECT count(*) FILTER (WHERE reason IN ('duplicate_source_key', 'null_source_key'))
                       + count(DISTINCT old_key) FILTER (WHERE reason NOT IN ('duplicate_source_key', 'null_source_key'))
                FROM edumig.skips WHERE entity = c.entity AND severity = 'error'),
               c.rows_warned,
               (SELECT count(DISTINCT s.old_key) FROM edumig.skips s JOIN edumig.id_map m ON m.entity = s.entity
                AND m.old_key = s.old_key AND m.kind = 'row' WHERE s.entity = c.entity AND s.severity = 'warning'),
               (SELECT count(*) FROM $e), c.stubs
        FROM edumig.checkpoints c WHERE c.entity = '$e'")
    assert_eq "$e: rows read = source count(*)" "$n" "$read"
    assert_eq "$e: read = filtered + migrated + skipped" "$n" "$total"
    assert_eq "$e: state done" "done" "$state"
    assert_eq "$e: migrated = its id-map rows" "$migrated" "$idmap"
    assert_eq "$e: skipped = the rows the skip log names as errors" "$skipped" "$errors"
    assert_eq "$e: warned = migrated rows with warnings in the skip log" "$warned" "$warnkeys"
    if [ "$e" = person ]; then
        assert_eq "person: target rows = migrated + placeholders" \
            "$(q "$T1" "SELECT count(*) FROM edumig.id_map WHERE entity = 'person'")" "$target"
    else
        assert_eq "$e: target rows = migrated" "$migrated" "$target"
    fi
    [ "$e" = tag ] && assert_eq "tag: placeholders counted = placeholder id-map rows" \
        "$(q "$T1" "SELECT count(*) FROM edumig.id_map WHERE entity = 'person' AND kind = 'stub'")" "$stubs"
done
src_counts=$(src_q "SELECT (SELECT count(*) - count(DISTINCT id) FROM people WHERE id IS NOT NULL AND active IS DISTINCT FROM 'x')
                   || ' ' || (SELECT count(*) FROM people WHERE id IS NULL AND active IS DISTINCT FROM 'x')
                   || ' ' || (SELECT count(*) FROM people WHERE active = 'x')
                   || ' ' || (SELECT count(*) - count(DISTINCT (student_id, course_id)) FROM grades WHERE student_id IS NOT NULL AND course_id IS NOT NULL)
                   || ' ' || (SELECT count(*) FROM grades WHERE student_id IS NULL OR course_id IS NULL)")
read -r exp_pdup exp_pnull exp_pfilt exp_gdup exp_gnull <<<"$src_counts"
tgt_counts=$(q "$T1" "SELECT (SELECT count(*) FROM edumig.skips WHERE entity = 'person' AND reason = 'duplicate_source_key')
                      || ' ' || (SELECT count(*) FROM edumig.skips WHERE entity = 'person' AND reason = 'null_source_key' AND old_key IS NULL)
                      || ' ' || (SELECT rows_filtered->>'inactive' FROM edumig.checkpoints WHERE entity = 'person')
                      || ' ' || (SELECT count(*) FROM edumig.skips WHERE entity = 'grade' AND reason = 'duplicate_source_key')
                      || ' ' || (SELECT count(*) FROM edumig.skips WHERE entity = 'grade' AND reason = 'null_source_key' AND old_key IS NULL)")
read -r got_pdup got_pnull got_pfilt got_gdup got_gnull <<<"$tgt_counts"
# Extra rows per key are duplicates, except where an earlier row of the key could not move:
# then the next row takes the key (person 102: its first row is undecodable).
assert_eq "person: duplicate_source_key skips = extra rows per key (source), less key 102" "$((exp_pdup - 1))" "$got_pdup"
assert_eq "person: null_source_key skips = NULL-key rows not filtered (source)" "$exp_pnull" "$got_pnull"
assert_eq "person: filtered 'inactive' counts the NULL-key row too" "$exp_pfilt" "$got_pfilt"
assert_eq "person 1130 (filtered): no target row, no skip" "-|" "$(fate person 1130)"
assert_eq "grade: duplicate_source_key skips (source)" "$exp_gdup" "$got_gdup"
assert_eq "grade: a NULL in either key column is null_source_key (source)" "$exp_gnull" "$got_gnull"
assert_exit "verify exits 0 after the hostile run" 0 edumig "$T1" verify
status_json=$(edumig "$T1" status --json 2>/dev/null)
assert_eq "status --json: 4 entities, nothing unaccounted" "4 0" \
    "$(q "$T1" "SELECT count(*) || ' ' || sum((e->>'unaccounted')::bigint) FROM jsonb_array_elements(\$j\$${status_json}\$j\$::jsonb->'entities') e")"

# --- keys -------------------------------------------------------------------------------------------
assert_eq "person 100 (3 identical rows): one migrated, two duplicate_source_key" \
    "row|error:duplicate_source_key:,error:duplicate_source_key:" "$(fate person 100)"
assert_eq "person 101 (2 different rows): the first in row-text order migrated, the other duplicate" \
    "row|error:duplicate_source_key: Dup A" "$(fate person 101) $(v person 101 name)"
# Only a row that moves claims its key: the undecodable first row of 102 is skipped with its
# reason, and the second row of the key migrates.
assert_eq "person 102: first row undecodable (skipped with its reason), the second row migrates" \
    "row|error:invalid_encoding:name" "$(fate person 102)"
assert_eq "person 104 (two 1 MiB duplicates): the 'a' row migrated byte for byte" \
    "row|error:duplicate_source_key: $(src_q "SELECT md5(repeat('a', 1048576))")" "$(fate person 104) $(v person 104 note_md5)"
for k in -1 0 -9223372036854775808 9223372036854775807; do
    assert_eq "person $k: migrated" "row|" "$(fate person "$k")"
done
assert_eq "person int64 min: template and JSON number keep the key exactly" \
    "P-9223372036854775808 -9223372036854775808" "$(v person -9223372036854775808 code) $(v person -9223372036854775808 old_id)"
assert_eq "person int64 max: template and JSON number keep the key exactly" \
    "P9223372036854775807 9223372036854775807" "$(v person 9223372036854775807 code) $(v person 9223372036854775807 old_id)"
assert_eq "person int64 min/max: the right rows" "Int64 Min Int64 Max" \
    "$(v person -9223372036854775808 name) $(v person 9223372036854775807 name)"

# --- text: encodings, control characters, sizes, escapes ----------------------------------------------
assert_eq "person 1001: Windows-1254 recoded to 'Aydın Şükür'" "row|warning:recoded_text:name 417964c4b16e20c59ec3bc6bc3bc72" \
    "$(fate person 1001) $(v person 1001 name_hex)"
assert_eq "person 1002: double-encoded UTF-8 repaired to 'Şükür'" "row|warning:recoded_text:name c59ec3bc6bc3bc72" \
    "$(fate person 1002) $(v person 1002 name_hex)"
assert_eq "person 1003: triple-encoded UTF-8 repaired" "row|warning:recoded_text:name c59ec3bc6bc3bc72" \
    "$(fate person 1003) $(v person 1003 name_hex)"
assert_match "person 1003: the warning says several layers" "several layers" "$(sk person 1003 recoded_text detail)"
assert_eq "person 1004: undecodable byte 0x81 skipped; the skip log shows it as \\x81" '-|error:invalid_encoding:name A\x81B' \
    "$(fate person 1004) $(sk person 1004 invalid_encoding source_value)"
assert_eq "person 1005: UTF-8 'Ə' mixed with Windows-1254: skipped" "-|error:invalid_encoding:name" "$(fate person 1005)"
assert_eq "person 1006: UTF-8 mixed with Windows-1254 is read as Windows-1254 as a whole (documented)" \
    "row|warning:recoded_text:name 4dc383c2bc6c6c657220c4b1" "$(fate person 1006) $(v person 1006 name_hex)"
assert_eq "person 1007: every control character 0x01-0x1F and 0x7F removed" "row|warning:control_chars_removed:name CtlX" \
    "$(fate person 1007) $(v person 1007 name)"
assert_eq "person 1008: the 8 MiB note migrated whole" "8388608 $(src_q "SELECT md5(note) FROM people WHERE id = 1008")" \
    "$(v person 1008 note_len) $(v person 1008 note_md5)"
assert_eq "person 1009/1014/1017: controls, backslashes, tabs, newlines, quotes, '\\.' byte for byte" \
    "$(src_q "SELECT string_agg(md5(note), ' ' ORDER BY id) FROM people WHERE id IN (1009, 1014, 1017)")" \
    "$(v person 1009 note_md5) $(v person 1014 note_md5) $(v person 1017 note_md5)"
assert_eq "person 1015: the text \\N is not NULL" "5c4e" "$(v person 1015 note_hex)"
assert_eq "person 1010: 2 MiB name rejected by varchar(50) (a placeholder stands in, see tag 4)" "stub|error:target_rejected: 22001" \
    "$(fate person 1010) $(sk person 1010 target_rejected sqlstate)"
assert_eq "person 1011: 2 MiB of Windows-1254 (4 MiB of UTF-8) rejected by varchar(50)" "-|error:target_rejected: 22001" \
    "$(fate person 1011) $(sk person 1011 target_rejected sqlstate)"
assert_eq "person 1012/1013: blank and NULL names skipped" "-|error:required_value_missing:name -|error:required_value_missing:name" \
    "$(fate person 1012) $(fate person 1013)"
assert_eq "person 1016: bytes that are not UTF-8 rejected by the target, isolated" "-|error:target_rejected: 22021" \
    "$(fate person 1016) $(sk person 1016 target_rejected sqlstate)"

# --- dates -------------------------------------------------------------------------------------------
for k in 1020 1021 1023 1024 1027 1029; do
    assert_eq "person $k: impossible date -> NULL with a warning" "row|warning:invalid_date:born <null>" \
        "$(fate person "$k") $(v person "$k" born)"
done
assert_eq "person 1020: the warning names the raw value" "99/99/9999" "$(sk person 1020 invalid_date source_value)"
assert_eq "person 1029: a 1 MiB value is cut in the skip log" "519 ... (1048576 bytes)" \
    "$(q "$T1" "SELECT octet_length(source_value) || ' ' || right(source_value, 19) FROM edumig.skips WHERE entity = 'person' AND old_key = '1029'")"
assert_eq "person 1022/1025/1028/1030: good dates (leap day, padded, year 9999, year 1)" \
    "2000-02-29 2000-01-01 9999-12-31 0001-01-01" \
    "$(v person 1022 born) $(v person 1025 born) $(v person 1028 born) $(v person 1030 born)"
assert_eq "person 1026: empty date is NULL without a warning" "row| <null>" "$(fate person 1026) $(v person 1026 born)"

# --- numbers -----------------------------------------------------------------------------------------
assert_eq "person 1040: 1e999 out of range for the GPA, kept as a JSON number" "row|warning:out_of_range:gpa <null> number" \
    "$(fate person 1040) $(v person 1040 gpa) $(v person 1040 score_raw_type)"
assert_eq "person 1041: -0 -> 0.00" "row| 0.00" "$(fate person 1041) $(v person 1041 gpa)"
assert_eq "person 1042: NaN" 'row|warning:not_a_number:gpa,warning:not_a_number:metadata <null> "NaN"' \
    "$(fate person 1042) $(v person 1042 gpa) $(v person 1042 score_raw)"
assert_eq "person 1043: '  12  ' trimmed for the GPA, a string in JSON" "row|warning:not_a_number:metadata 0.48" \
    "$(fate person 1043) $(v person 1043 gpa)"
assert_eq "person 1044: huge integer out of range" "row|warning:out_of_range:gpa <null>" "$(fate person 1044) $(v person 1044 gpa)"
assert_eq "person 1045: comma decimal" "3.02" "$(v person 1045 gpa)"
assert_eq "person 1046: 1e200000 overflows jsonb's numeric: rejected, isolated" "-|error:target_rejected: 22003" \
    "$(fate person 1046) $(sk person 1046 target_rejected sqlstate)"
assert_eq "person 1047: Infinity" "row|warning:not_a_number:gpa,warning:not_a_number:metadata" "$(fate person 1047)"
assert_eq "person 1048: 2 MiB non-number" "row|warning:not_a_number:gpa,warning:not_a_number:metadata" "$(fate person 1048)"
for kv in 1050:9223372036854775807 1051:'<null>' 1052:-9223372036854775808 1053:'<null>' 1054:12 1055:'<null>' 1056:0 1057:42 1058:'<null>'; do
    k=${kv%%:*}; x=${kv#*:}
    assert_eq "person $k: int" "$x" "$(v person "$k" qty)"
done
assert_eq "person 1051/1053/1055/1058: warnings" "row|warning:out_of_range:qty row|warning:out_of_range:qty row|warning:not_an_integer:qty row|warning:out_of_range:qty" \
    "$(fate person 1051) $(fate person 1053) $(fate person 1055) $(fate person 1058)"
assert_eq "person 1060: negative amount violates the CHECK: isolated" "-|error:target_rejected: 23514 person_amount_check" \
    "$(fate person 1060) $(sk person 1060 target_rejected sqlstate) $(sk person 1060 target_rejected constraint)"
assert_eq "person 1061: 1e20 overflows numeric(12,2): isolated" "-|error:target_rejected: 22003" \
    "$(fate person 1061) $(sk person 1061 target_rejected sqlstate)"
assert_eq "person 1062/1063/1064: NaN, rounding, -0" "row|warning:not_a_number:amount <null> 12.35 0.00" \
    "$(fate person 1062) $(v person 1062 amount) $(v person 1063 amount) $(v person 1064 amount)"

# --- e-mail, map, passwords, booleans, JSON, i18n -------------------------------------------------------
assert_eq "person 1070: e-mail trimmed, domain lower-cased" "USER@example.com" "$(v person 1070 email)"
assert_eq "person 1071/1072: same address once normalised: unique violation isolated" \
    "dup@example.org -|error:target_rejected: 23505 person_email_key" \
    "$(v person 1071 email) $(fate person 1072) $(sk person 1072 target_rejected sqlstate) $(sk person 1072 target_rejected constraint)"
for k in 1073 1074 1075; do
    assert_eq "person $k: invalid e-mail -> NULL with a warning" "row|warning:invalid_email:email <null>" "$(fate person $k) $(v person $k email)"
done
assert_eq "person 1074: the skip log shows the bad byte" 'a\xFF@x.org' "$(sk person 1074 invalid_email source_value)"
assert_eq "person 1080/1081: map" "row|warning:unmapped_value:gender <null> female" \
    "$(fate person 1080) $(v person 1080 gender) $(v person 1081 gender)"
assert_match "person 1090: base64 + bcrypt cost 4" '^row\| \$2b\$04\$.{53}$' "$(fate person 1090) $(v person 1090 pw)"
assert_match "person 1094: a 100-byte secret is hashed with a warning" '^row\|warning:secret_truncated:password_hash \$2b\$04\$.{53}$' \
    "$(fate person 1094) $(v person 1094 pw)"
for kv in 1091:not_base64 1092:empty_value 1093:secret_has_nul 1095:required_value_missing; do
    k=${kv%%:*}; r=${kv#*:}
    assert_eq "person $k: $r -> must reset" "row|warning:$r:password_hash !reset-required" "$(fate person "$k") $(v person "$k" pw)"
done
assert_eq "passwords: no source value of the password column in the skip log" "" \
    "$(q "$T1" "SELECT string_agg(source_value, ',') FROM edumig.skips WHERE column_name = 'password_hash' AND source_value <> '[redacted]'")"
# The server's "Failing row contains (...)" detail lists every column of a rejected row.
assert_eq "passwords: no hash of the sensitive column in the skip log (rows 1060 and others rejected by the target)" "" \
    "$(q "$T1" "SELECT string_agg(old_key, ',' ORDER BY old_key) FROM edumig.skips WHERE concat(source_value, detail) LIKE '%\$2b\$%'")"
assert_eq "person 1100/1101: booleans" 'row|warning:not_a_boolean:metadata "yes" false' \
    "$(fate person 1100) $(v person 1100 active) $(v person 1101 active)"
assert_eq "person 1110: a JSON field of type json" "null c59f" "$(v person 1110 extra_b) $(v person 1110 extra_c_hex)"
assert_eq "person 1111: malformed JSON rejected, isolated" "-|error:target_rejected: 22P02" \
    "$(fate person 1111) $(sk person 1111 target_rejected sqlstate)"
assert_eq "person 1112: \\u0000 rejected by jsonb, isolated" "-|error:target_rejected: 22P05" \
    "$(fate person 1112) $(sk person 1112 target_rejected sqlstate)"
assert_eq "person 1113: NULL json field omitted" "false" "$(v person 1113 has_extra)"
assert_eq "person 1120: i18n placeholder" 'row|warning:placeholder_value:title {"az": "Person 1120", "en": "Person 1120", "ru": "Person 1120"}' \
    "$(fate person 1120) $(v person 1120 title)"
assert_eq "person 1121: i18n az recoded, en/ru fall back to it" "row|warning:recoded_text:title 417964c4b16e 417964c4b16e 417964c4b16e" \
    "$(fate person 1121) $(v person 1121 title_hex)"
assert_eq "person 1122: i18n az from en, ru kept" "4e616d65 4e616d65 d098d0bcd18f" "$(v person 1122 title_hex)"
assert_eq "person 1123: i18n undecodable az -> NULL, filled from en" 'row|warning:invalid_encoding:title {"az": "E", "en": "E", "ru": "E"}' \
    "$(fate person 1123) $(v person 1123 title)"
assert_eq "person 1124: i18n control characters removed" 'row|warning:control_chars_removed:title {"az": "Ad", "en": "En", "ru": "Ad"}' \
    "$(fate person 1124) $(v person 1124 title)"

# --- references: notes (skip / null), grades (composite key), tags (stub) ---------------------------------
assert_eq "note 1: author and editor resolved" "$(P 1) $(P 2)" "$(v note 1 author) $(v note 1 editor)"
assert_eq "note 2: missing author skipped" "-|error:missing_reference:author_id person/999999" \
    "$(fate note 2) $(sk note 2 missing_reference cause)"
assert_eq "note 3: NULL author skipped" "-|error:missing_reference:author_id" "$(fate note 3)"
assert_eq "note 4: negative author key resolved" "$(P -1)" "$(v note 4 author)"
assert_eq "note 5: negative missing author skipped" "-|error:missing_reference:author_id" "$(fate note 5)"
assert_eq "note 6: author rejected by the target: parent_skipped, cause named" "-|error:parent_skipped:author_id person/1010" \
    "$(fate note 6) $(sk note 6 parent_skipped cause)"
assert_eq "note 7: int64 max author, int64 min editor (from text)" "$(P 9223372036854775807) $(P -9223372036854775808)" \
    "$(v note 7 author) $(v note 7 editor)"
for k in 8 9 10 12 13 20; do
    assert_eq "note $k: editor text is not a key: NULL with a warning" "row|warning:missing_reference:editor_id <null>" \
        "$(fate note $k) $(v note $k editor)"
done
assert_eq "note 11/15: editor '-1' and '0' resolved" "$(P -1) $(P 0)" "$(v note 11 editor) $(v note 15 editor)"
assert_eq "note 14: NULL editor migrated as NULL" "row <null>" "$(fate note 14 | cut -c1-3) $(v note 14 editor)"
assert_eq "note 16: editor skipped upstream: NULL with parent_skipped warning" "row|warning:parent_skipped:editor_id person/1004 <null>" \
    "$(fate note 16) $(sk note 16 parent_skipped cause) $(v note 16 editor)"
assert_eq "note 17: author skipped upstream (undecodable, never migrated)" \
    "-|error:parent_skipped:author_id person/1004" "$(fate note 17) $(sk note 17 parent_skipped cause)"
assert_eq "note 18: author 102 migrated from its second row" "row| $(P 102)" "$(fate note 18) $(v note 18 author)"
assert_eq "note 19: author with duplicated legacy rows resolved" "$(P 100)" "$(v note 19 author)"
for k in -3 0 -9223372036854775808; do
    assert_eq "note $k: migrated" "row|" "$(fate note "$k")"
done
assert_eq "note int64 max: 3 MB body with control characters cleaned" "row|warning:control_chars_removed:body 1799999" \
    "$(fate note 9223372036854775807) $(v note 9223372036854775807 body_len)"
assert_eq "grade 1/1: first row in row-text order migrated, two duplicates" \
    "row|error:duplicate_source_key:,error:duplicate_source_key: 0.40 fail" "$(fate grade 1/1) $(v grade 1/1 points) $(v grade 1/1 letter)"
assert_match "grade: a NULL-key row's content is in the skip log, its bad bytes as \\xNN" '\\xFF\\xFE' \
    "$(q "$T1" "SELECT string_agg(source_value, ' ') FROM edumig.skips WHERE entity = 'grade' AND reason = 'null_source_key'")"
for kv in -1/-1:-1 0/0:0 9223372036854775807/-9223372036854775808:9223372036854775807 -9223372036854775808/9223372036854775807:-9223372036854775808 100/2:100; do
    k=${kv%:*}; p=${kv##*:}
    assert_eq "grade $k: migrated, linked to person $p" "row| $(P "$p")" "$(fate grade "$k") $(v grade "$k" person)"
done
assert_eq "grade 999999/1: missing_reference" "-|error:missing_reference:person_id" "$(fate grade 999999/1)"
assert_eq "grade 1010/1: parent_skipped" "-|error:parent_skipped:person_id" "$(fate grade 1010/1)"
assert_eq "grade 2/9: 1e999 points skipped (on_invalid skip)" "-|error:out_of_range:points" "$(fate grade 2/9)"
assert_eq "grade 3/9: map default" "row|warning:map_default:letter other" "$(fate grade 3/9) $(v grade 3/9 letter)"
assert_eq "grade 4/9: -0 points" "0.00" "$(v grade 4/9 points)"
assert_eq "grade 5/9: NULL points violate NOT NULL: isolated" "-|error:target_rejected:points 23502" \
    "$(fate grade 5/9) $(sk grade 5/9 target_rejected sqlstate)"
assert_eq "tag 1/6/7: owners resolved" "$(P 1) $(P -9223372036854775808) $(P 9223372036854775807)" \
    "$(v tag 1 owner) $(v tag 6 owner) $(v tag 7 owner)"
assert_eq "tag 2/3: one placeholder person 777777 for both" \
    "row|warning:parent_stubbed:owner_id row|warning:parent_stubbed:owner_id $(P 777777) $(P 777777) stub STUB777777" \
    "$(fate tag 2) $(fate tag 3) $(v tag 2 owner) $(v tag 3 owner) $(fate person 777777 | cut -d'|' -f1) $(v person 777777 code)"
assert_eq "tag 4: placeholder for a person the target rejected" "row|warning:parent_stubbed:owner_id $(P 1010) STUB1010" \
    "$(fate tag 4) $(v tag 4 owner) $(v person 1010 code)"
assert_eq "tag 5: placeholder for a negative key" "$(P -42) STUB-42" "$(v tag 5 owner) $(v person -42 code)"
assert_eq "tag 10/11: 1 MiB and 100-byte labels rejected by varchar(50)" "-|error:target_rejected: 22001 -|error:target_rejected: 22001" \
    "$(fate tag 10) $(sk tag 10 target_rejected sqlstate) $(fate tag 11) $(sk tag 11 target_rejected sqlstate)"
assert_match "tag 8/9: each migrated or skipped with a reason" '^(row\|[^ ]*|-\|error:[^ ]+) (row\|[^ ]*|-\|error:[^ ]+)$' \
    "$(fate tag 8) $(fate tag 9)"
# A NULL owner, or an owner that is not a key, names no parent: under on_missing "stub" such
# rows share ONE placeholder, the "unknown" person (README: "References and missing parents"),
# and each warns parent_stubbed; no numeric legacy key is ever invented for them.
assert_eq "NULL and non-key references share the one 'unknown' placeholder" "unknown|stub" \
    "$(q "$T1" "SELECT string_agg(old_key || '|' || kind, ',') FROM edumig.id_map WHERE entity = 'person' AND old_key !~ '^-?[0-9]+\$'")"
assert_eq "... which tags 8 and 9 point to, each warned" "2 2" \
    "$(q "$T1" "SELECT (SELECT count(*) FROM tag t JOIN edumig.id_map m ON m.new_id = t.owner_id WHERE m.entity = 'person' AND m.old_key = 'unknown') || ' ' ||
                       (SELECT count(*) FROM edumig.skips WHERE entity = 'tag' AND old_key IN ('8', '9') AND reason = 'parent_stubbed')")"

# Placeholders are made only for rows that move (tag 11 is rejected by the target).
assert_eq "every placeholder person is referenced by a migrated tag" "" \
    "$(q "$T1" "SELECT string_agg(m.old_key, ',' ORDER BY m.old_key) FROM edumig.id_map m WHERE m.entity = 'person' AND m.kind = 'stub'
                AND NOT EXISTS (SELECT 1 FROM tag t WHERE t.owner_id = m.new_id)")"

# --- skip log and run logs: UTF-8, JSON, bounded ------------------------------------------------------------
assert_eq "target database is UTF8 (every stored text is valid UTF-8)" "UTF8" \
    "$(q "$T1" "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()")"
assert_eq "skip-log details stay bounded (no value pasted whole)" "" \
    "$(q "$T1" "SELECT string_agg(entity || ' ' || old_key || ' ' || reason || ' (' || octet_length(detail) || ' bytes)', ', ') FROM edumig.skips WHERE octet_length(detail) > 4096")"
logs=("$WORKDIR/logs-$T1"/*.jsonl)
lines=$(cat "${logs[@]}" | wc -l)
assert_eq "run logs: one JSON line per skip-log row" "$(q "$T1" "SELECT count(*) FROM edumig.skips")" "$lines"
assert_cmd "run logs are valid UTF-8" iconv -f UTF-8 -t UTF-8 -o /dev/null "${logs[@]}"
json_ok=$(cat "${logs[@]}" | psql -X -qAt -v ON_ERROR_STOP=1 -d "$T1" \
    -c "CREATE TEMP TABLE l (line text)" \
    -c "\\copy l FROM pstdin WITH (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')" \
    -c "SELECT count(*) FILTER (WHERE line::jsonb ? 'reason') FROM l" 2>&1)
assert_eq "run logs: every line is a JSON object with a reason" "$lines" "$json_ok"
assert_eq "run logs: no bcrypt hash" "0" "$(cat "${logs[@]}" | grep -c '\$2b\$')"

# --- re-run, kill + resume, int64 resume keys -----------------------------------------------------------------
sum_t1=$(migration_checksum "$T1" person note grade tag)
out=$(edumig "$T1" run --all 2>&1); rc=$?
assert_eq "re-run exits 0" 0 "$rc"
assert_eq "re-run changes nothing" "$sum_t1" "$(migration_checksum "$T1" person note grade tag)"
out=$(edumig "$T1" run --all --update 2>&1); rc=$?
assert_eq "delta run with --update over the unchanged source exits 0" 0 "$rc"
assert_eq "delta run with --update: nothing changed, nothing rewritten (duplicate keys whose first row was skipped included)" \
    "0 0 $sum_t1" "$(q "$T1" "SELECT sum(rows_changed) || ' ' || sum(rows_updated) FROM edumig.checkpoints") $(migration_checksum "$T1" person note grade tag)"

mk_target TK tk
out=$(EDUMIG_TEST_KILL=batch_after_rows:2 edumig "$TK" run --all -q --batch-size 3 2>&1); rc=$?
assert_eq "killed in the second batch (exit 137 = SIGKILL)" 137 "$rc"
assert_eq "after the kill: only the first batch (int64 min, -1, 0) is committed" "0 3 running" \
    "$(q "$TK" "SELECT last_key || ' ' || rows_read || ' ' || state FROM edumig.checkpoints WHERE entity = 'person'")"
assert_exit "resume after the kill exits 0" 0 edumig "$TK" run --all -q --batch-size 3
assert_eq "killed + resumed (batch size 3) = clean run (batch size 40)" "$sum_t1" "$(migration_checksum "$TK" person note grade tag)"
assert_exit "verify after kill + resume" 0 edumig "$TK" verify

mk_target TB tb
EDUMIG_TEST_KILL=batch_after_commit:1 edumig "$TB" run --phase 1 -q --batch-size 1 >/dev/null 2>&1; rc=$?
assert_eq "batch size 1: killed after the first commit" "137 -9223372036854775808" "$rc $(cp_field "$TB" person last_key)"
# Resumes after key int64 min; killed again inside the last batch (int64 max and the NULL keys).
# Filtered rows do not fill a batch: a key whose rows are all filtered (1130) rides with the
# next key's batch, so the batches after the first are the other keys with an unfiltered row.
nunf=$(src_q "SELECT count(DISTINCT id) FROM people WHERE active IS DISTINCT FROM 'x'")
EDUMIG_TEST_KILL=batch_after_rows:$((nunf - 1)) edumig "$TB" run --phase 1 -q --batch-size 1 >/dev/null 2>&1; rc=$?
assert_eq "resumed after int64 min, killed in the last batch (1130 filtered, int64 max + NULL keys)" "137 1124 running" \
    "$rc $(q "$TB" "SELECT last_key || ' ' || state FROM edumig.checkpoints WHERE entity = 'person'")"
assert_exit "phase 1 resumes to the end" 0 edumig "$TB" run --phase 1 -q
EDUMIG_TEST_KILL=batch_after_commit:1 edumig "$TB" run --phase 2 -q --batch-size 1 >/dev/null 2>&1; rc=$?
assert_eq "composite key: killed after the first grade commit" "137 -9223372036854775808/9223372036854775807" "$rc $(cp_field "$TB" grade last_key)"
assert_exit "phase 2 resumes after the composite int64 key" 0 edumig "$TB" run --all -q
assert_eq "int64 resume keys: identical to the clean run" "$sum_t1" "$(migration_checksum "$TB" person note grade tag)"

# --- a placeholder the target rejects (built from hostile row data) ---------------------------------------------
# The stub's name comes from the tag's label; tag 11's label is 100 characters, too long for
# person.name. That placeholder, like any row, must be isolated: the rest of the entity lands.
cp -r "$CFG" "$WORKDIR/stubcfg"
sed -i 's|"name": {"value": "(placeholder)"}|"name": {"template": "{label}"}|' "$WORKDIR/stubcfg/mappings/tag.json"
TS="${T1}_p1"
out=$(edumig_cfg "$WORKDIR/stubcfg" "$TS" run --phase 2 -q 2>&1); rc=$?
assert_eq "a placeholder the target rejects does not stop the run" "0" "$rc"
assert_eq "tag: done despite the rejected placeholder" "done" "$(cp_field "$TS" tag state)"
load_fates "$TS"
assert_match "tag 11: skipped with a reason" '^-\|error:' "$(fate tag 11)"
assert_eq "tags 1-7: migrated" "7" "$(q "$TS" "SELECT count(*) FROM edumig.id_map WHERE entity = 'tag' AND old_key IN ('1','2','3','4','5','6','7')")"

# --- the source never changed; no sanitizer report -------------------------------------------------------------
assert_eq "source unchanged" "$src_sum_before" "$(database_checksum "$SRC")"
assert_eq "no sanitizer report in any edumig run" "" \
    "$(grep -E 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$STDERR_ALL" | head -5)"
echo "# elapsed $((SECONDS - started)) s"

done_testing
