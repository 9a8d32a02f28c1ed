#!/usr/bin/env bash
# bench/run.sh — measure edumig against the least its job must write.
#
#   bench/run.sh [--scale S] [--rss-scale R] [--out FILE]
#                       (default: scale 1.0, RSS comparison at 0.25, bench/results.md)
#
# Builds edumig (release) in bench/work/build, starts a throwaway PostgreSQL cluster
# (scripts/pg-sandbox, always stopped on exit), generates the legacy fixture `edu` at scale S,
# runs `edumig run --all --bcrypt-cost 4` five times into fresh targets under
# /usr/bin/time -v (--jobs 1; --jobs nproc; --jobs nproc --bulk; --jobs 1 with batch sizes
# 1000 and 20000), runs grades alone in a phase of its own (twice each with --jobs 1, --jobs
# nproc and --bulk), times each entity's source stream alone, pipes the finished target rows and
# id-map rows table by table into a fresh `lms_limit` with raw `COPY … TO STDOUT | COPY … FROM
# STDIN` (no transformation: a strict lower bound), times the parts of grades' work no design
# can leave out, measures peak RSS again at scale R, and writes a Markdown table. See
# bench/README.md.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work="$here/bench/work"
scale=1.0
rss_scale=0.25
out="$here/bench/results.md"

die() { echo "bench/run.sh: error: $*" >&2; exit 1; }
usage() { echo "usage: bench/run.sh [--scale S] [--rss-scale R] [--out FILE]" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --scale) [ $# -ge 2 ] || usage; scale=$2; shift 2 ;;
        --scale=*) scale=${1#--scale=}; shift ;;
        --rss-scale) [ $# -ge 2 ] || usage; rss_scale=$2; shift 2 ;;
        --rss-scale=*) rss_scale=${1#--rss-scale=}; shift ;;
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ "$scale" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--scale must be a number such as 0.05 or 1.0, not '$scale'"
[[ "$rss_scale" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--rss-scale must be a number such as 0.25, not '$rss_scale'"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")" || die "cannot create the directory of $out"

for tool in psql pg_dump python3 meson ninja; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs the dependencies)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"

# Any failing command ends the script with its line number; the EXIT trap stops the cluster.
trap 'rc=$?; echo "bench/run.sh: error: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

sandbox=""
cleanup() {
    local rc=$?
    if [ -n "$sandbox" ]; then
        "$here/scripts/pg-sandbox" stop "$sandbox" || echo "bench/run.sh: warning: could not stop the cluster in $sandbox" >&2
    fi
    [ $rc -eq 0 ] || echo "bench/run.sh: FAILED (exit $rc); the cluster was stopped" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
elapsed() { python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$2"; }
say() { echo "bench: $*" >&2; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# 1. build ------------------------------------------------------------------------------------
mkdir -p "$work"
if [ ! -f "$work/build/build.ninja" ]; then
    say "meson setup $work/build (release)"
    meson setup "$work/build" "$here" --buildtype=release >"$work/meson-setup.log" 2>&1 \
        || { cat "$work/meson-setup.log" >&2; die "meson setup failed"; }
fi
ninja -C "$work/build" >"$work/ninja.log" 2>&1 || { tail -40 "$work/ninja.log" >&2; die "build failed"; }
edumig="$work/build/edumig"
[ -x "$edumig" ] || die "$edumig was not built"

# 2. cluster ----------------------------------------------------------------------------------
sandbox=$(mktemp -d /tmp/edumig-bench.XXXXXX)
"$here/scripts/pg-sandbox" start "$sandbox" || die "could not start the PostgreSQL sandbox"
eval "$("$here/scripts/pg-sandbox" env "$sandbox")"
pg_version=$(q -d postgres -c 'show server_version')
say "PostgreSQL $pg_version on port $PGPORT"

# 3. databases --------------------------------------------------------------------------------
say "generating legacy edu at scale $scale"
t0=$(now)
"$here/scripts/fixture-db" legacy edu "$scale" || die "fixture-db legacy failed"
t1=$(now)
gen_seconds=$(elapsed "$t0" "$t1")
legacy_rows=$(q -d edu -c "
    SELECT coalesce(sum((xpath('/row/c/text()',
             query_to_xml(format('SELECT count(*) AS c FROM %I.%I', schemaname, tablename),
                          false, true, '')))[1]::text::bigint), 0)
    FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
say "legacy: $legacy_rows rows in ${gen_seconds}s"
# A legacy database in service has long been vacuumed; a freshly loaded one has not, and
# autovacuum (and the first reads setting hint bits) would land in the middle of whichever
# run comes first. Settled once, before anything is measured.
t0=$(now)
q -d edu -c "VACUUM (FREEZE, ANALYZE)"
say "VACUUM (FREEZE, ANALYZE) of edu: $(elapsed "$t0" "$(now)")s"
"$here/scripts/fixture-db" target lms_limit || die "fixture-db target lms_limit failed"

# 4. edumig -----------------------------------------------------------------------------------
stamp=$(date -u +%Y%m%dT%H%M%SZ)
logdir="$work/logs-$stamp"
mkdir -p "$logdir"
jobs=$(nproc)
# timed_run NAME CONFIG_DIR SOURCE_DB TARGET_DB ARGS...: `edumig ARGS` under time -v, then its
# status --json; writes NAME.{out,time,wall,rss,json} to the log directory
timed_run() {
    local name=$1 cfg=$2 src=$3 tgt=$4; shift 4
    say "edumig $* ($name; log: $logdir/$name.out)"
    local t0 t1
    t0=$(now)
    /usr/bin/time -v -o "$logdir/$name.time" \
        "$edumig" "$@" --config "$cfg" --source "dbname=$src" --target "dbname=$tgt" --log-dir "$logdir" -v \
        >"$logdir/$name.out" 2>&1 \
        || { tail -30 "$logdir/$name.out" >&2; die "edumig $* failed (see $logdir/$name.out)"; }
    t1=$(now)
    elapsed "$t0" "$t1" >"$logdir/$name.wall"
    sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): *//p' "$logdir/$name.time" >"$logdir/$name.rss"
    [ -s "$logdir/$name.rss" ] || die "no 'Maximum resident set size' in $logdir/$name.time"
    "$edumig" status --json --config "$cfg" --source "dbname=$src" --target "dbname=$tgt" \
        --log-dir "$logdir" >"$logdir/$name.json" || die "edumig status --json failed"
    say "$name: $(cat "$logdir/$name.wall")s wall, peak RSS $(cat "$logdir/$name.rss") kB"
}
# run_edumig NAME SOURCE_DB TARGET_DB ARGS...: one timed `run --all` into a fresh target
run_edumig() {
    local name=$1 src=$2 tgt=$3; shift 3
    "$here/scripts/fixture-db" target "$tgt" || die "fixture-db target $tgt failed"
    timed_run "$name" "$here" "$src" "$tgt" run --all --bcrypt-cost 4 "$@"
}
# same_table DB_A DB_B TABLE: dies unless TABLE holds the same rows in both databases
same_table() {
    [ "$(q -d "$1" -c "SELECT md5(string_agg(t::text, '' ORDER BY t::text)) FROM $3 t")" = \
      "$(q -d "$2" -c "SELECT md5(string_agg(t::text, '' ORDER BY t::text)) FROM $3 t")" ] \
        || die "$2.$3 differs from $1.$3: the configurations must write the same rows"
}
run_edumig jobs1 edu lms_run --jobs 1
run_edumig jobsN edu lms_jobs --jobs "$jobs"
run_edumig bulk edu lms_bulk --jobs "$jobs" --bulk
# Batch size: the default (5000, run jobs1) against a fifth and four times of it, --jobs 1.
run_edumig batch1000 edu lms_batch1000 --jobs 1 --batch-size 1000
run_edumig batch20000 edu lms_batch20000 --jobs 1 --batch-size 20000
for t in lms_jobs lms_bulk lms_batch1000 lms_batch20000; do
    for tbl in users grades course_enrollments; do
        same_table lms_run "$t" "$tbl"
    done
done
run_wall=$(cat "$logdir/jobs1.wall")

# 4b. grades alone ----------------------------------------------------------------------------
# In `run --all --jobs N` grades shares the cores with the entities of its phase, so its seconds
# there depend on who runs beside it. Alone: the same mappings with grades moved to a phase of
# its own after phase 5 (same namespace, so the same UUIDs), phases 1-5 run once into lms_pre,
# then the grades phase into fresh copies of it: --jobs 1, --jobs N, --jobs N --bulk.
gcfg="$work/config-grades-alone"
rm -rf "$gcfg"
mkdir -p "$gcfg/phases"
cp -r "$here/mappings" "$gcfg/mappings"
gphase=$(python3 - "$here/phases/phases.json" "$gcfg/phases/phases.json" <<'PY2'
import json, sys
cfg = json.load(open(sys.argv[1]))
for ph in cfg["phases"]:
    ph["entities"] = [e for e in ph["entities"] if e != "grades"]
n = max(ph["phase"] for ph in cfg["phases"]) + 1
cfg["phases"].append({"phase": n, "name": "grades alone", "description": "bench/run.sh", "entities": ["grades"]})
json.dump(cfg, open(sys.argv[2], "w"), indent=1)
print(n)
PY2
)
"$here/scripts/fixture-db" target lms_pre || die "fixture-db target lms_pre failed"
for ((p = 1; p < gphase; p++)); do
    "$edumig" run --phase "$p" --jobs "$jobs" --bcrypt-cost 4 --config "$gcfg" --source "dbname=edu" \
        --target "dbname=lms_pre" --log-dir "$logdir" -q >>"$logdir/pre.out" 2>&1 \
        || { tail -30 "$logdir/pre.out" >&2; die "phase $p into lms_pre failed"; }
done
# Settled like edu: autovacuum of lms_pre's fresh rows would otherwise land in the first run.
q -d lms_pre -c "VACUUM (ANALYZE)"
# run_grades NAME ARGS...: grades' phase into lms_NAME, a fresh copy of lms_pre (NAME in lower
# case: it is a database name); writes NAME.{out,time,json,wall,rss}
run_grades() {
    local name=$1; shift
    # FILE_COPY and a checkpoint: the default WAL_LOG copy leaves the copied pages dirty in
    # shared buffers, and the run after it paid for writing them out (2-3 s more for grades).
    q -d postgres -c "CREATE DATABASE lms_$name TEMPLATE lms_pre STRATEGY FILE_COPY" -c "CHECKPOINT"
    timed_run "$name" "$gcfg" edu "lms_$name" run --phase "$gphase" "$@"
    same_table lms_run "lms_$name" grades
}
# Twice each, interleaved, so that a burst of load on the shared machine hits one run of a
# configuration, not all of them; the report takes the faster run and shows the other.
for round in a b; do
    run_grades "grades_j1_$round" --jobs 1
    run_grades "grades_jn_$round" --jobs "$jobs"
    run_grades "grades_bulk_$round" --jobs "$jobs" --bulk
done

# The source side alone: each entity's stream statement (from the --verbose log) into
# /dev/null, on a snapshot of its own: what edumig must read, whatever it does with it. An
# entity read in two parts (kept rows, filtered keys: src/sourcestream.c) has both run side
# by side, as edumig runs them.
# The settings edumig gives its source sessions (src/pg.c, session_setup): without them the
# server plans and runs the same statements differently (grades: 6-8 s instead of 4.6-5 s).
edumig_source_options="-c jit=off -c work_mem=128MB"
read_tsv="$logdir/read.tsv"
: >"$read_tsv"
python3 - "$logdir/jobs1.out" "$logdir" <<'PY' || die "could not extract the stream statements"
import re, sys
parts = {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.search(r"DEBUG (\w+): (COPY \(SELECT .* IS NOT NULL.*\) TO STDOUT)$", line)
    if not m or "current_setting('edumig.k1')" in m.group(2):
        continue
    e, sql = m.group(1), m.group(2)
    if e not in parts:
        parts[e] = [sql]
    elif len(parts[e]) == 1 and "edumig_f.i IS NULL AND" in parts[e][0] and "edumig_f.i IS NOT NULL AND" in sql:
        parts[e].append(sql)
for e, sqls in parts.items():
    for i, sql in enumerate(sqls):
        open("%s/stream-%s.%d.sql" % (sys.argv[2], e, i + 1), "w").write(sql + "\n")
PY
for f in "$logdir"/stream-*.1.sql; do
    e=$(basename "$f" .1.sql); e=${e#stream-}
    t0=$(now)
    pids=()
    for part in "$logdir/stream-$e".*.sql; do
        PGOPTIONS="$edumig_source_options" psql -X -q -v ON_ERROR_STOP=1 -d edu -f "$part" >/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || die "stream of $e failed"; done
    t1=$(now)
    printf '%s\t%s\n' "$e" "$(elapsed "$t0" "$t1")" >>"$read_tsv"
    say "source stream of $e: $(elapsed "$t0" "$t1")s"
done

# 5. limit ------------------------------------------------------------------------------------
# The same id-map and skip-log table shapes as the real ones (columns, CHECK, primary key,
# indexes), taken from lms_run itself so they cannot drift.
q -d lms_limit -c 'CREATE SCHEMA edumig'
pg_dump -s -t edumig.id_map -t edumig.skips lms_run | psql -X -q -v ON_ERROR_STOP=1 -d lms_limit >/dev/null \
    || die "could not create edumig.id_map and edumig.skips in lms_limit"

# table | the entities that write it (their id-map rows are piped with it)
tables=(
    "users|users"
    "persons|persons"
    "organization_units|organization_units"
    "academic_terms|academic_terms"
    "students|students"
    "staff_members|staff_members"
    "courses|courses"
    "course_offerings|course_offerings"
    "course_instructors|course_instructors"
    "course_enrollments|course_enrollments"
    "assessments|assessments,exam_assessments"
    "grades|grades"
    "assessment_submissions|assessment_submissions"
)

# pipe SELECT_SQL TABLE_SPEC: run one COPY pipe, print "rows seconds"
pipe() {
    local sel=$1 dest=$2 t0 t1 res n
    t0=$(now)
    res=$(psql -X -q -v ON_ERROR_STOP=1 -d lms_run -c "COPY ($sel) TO STDOUT" \
          | psql -X -v ON_ERROR_STOP=1 -d lms_limit -c "COPY $dest FROM STDIN") \
        || die "pipe into $dest failed"
    t1=$(now)
    n=${res#COPY }
    [[ "$n" =~ ^[0-9]+$ ]] || die "unexpected answer from COPY $dest: $res"
    echo "$n $(elapsed "$t0" "$t1")"
}

# The fixed cost of one pipe (two psql processes, two connections, an empty COPY each way).
res=$(pipe "SELECT * FROM users WHERE false" users)
read -r _ pipe_overhead <<<"$res"
say "empty pipe: ${pipe_overhead}s"

limit_tsv="$logdir/limit.tsv"
: >"$limit_tsv"
for spec in "${tables[@]}"; do
    table=${spec%%|*} entities=${spec#*|}
    inlist="'$(echo "$entities" | sed "s/,/','/g")'"
    if [ "$table" = organization_units ]; then
        # Parents before children (the self-referencing FK is checked row by row):
        # the rows ordered by their depth below a root.
        sel="WITH RECURSIVE d AS (
                 SELECT id, 0 AS depth FROM organization_units WHERE parent_id IS NULL
                 UNION ALL
                 SELECT o.id, d.depth + 1 FROM organization_units o JOIN d ON o.parent_id = d.id)
             SELECT o.* FROM organization_units o JOIN d USING (id) ORDER BY d.depth, o.id"
    else
        sel="SELECT * FROM $table ORDER BY id"
    fi
    expect=$(q -d lms_run -c "SELECT count(*) FROM $table")
    res=$(pipe "$sel" "$table")
    read -r rows tsec <<<"$res"
    [ "$rows" = "$expect" ] || die "$table: piped $rows rows, lms_run holds $expect"
    res=$(pipe "SELECT * FROM edumig.id_map WHERE entity IN ($inlist) ORDER BY entity, old_key" edumig.id_map)
    read -r maprows msec <<<"$res"
    say "limit $table: $rows rows ${tsec}s + $maprows id-map rows ${msec}s"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$table" "$entities" "$rows" "$tsec" "$maprows" "$msec" >>"$limit_tsv"
done
total_map=$(q -d lms_run -c "SELECT count(*) FROM edumig.id_map")
piped_map=$(q -d lms_limit -c "SELECT count(*) FROM edumig.id_map")
[ "$total_map" = "$piped_map" ] || die "id map: piped $piped_map rows, lms_run holds $total_map (an entity not in the table list?)"
bcrypt_hashes=$(q -d lms_run -c "SELECT count(*) FROM users WHERE password_hash LIKE '\$2b\$%'")
cost4=$(q -d lms_run -c "SELECT count(*) FROM users WHERE password_hash LIKE '\$2b\$04\$%'")
[ "$bcrypt_hashes" = "$cost4" ] || die "only $cost4 of $bcrypt_hashes bcrypt hashes have cost 4: --bcrypt-cost 4 was not applied"

# 5b. what limits grades ------------------------------------------------------------------------
# The parts of grades' work that no design can leave out, each timed alone on the same
# databases, so the report can say which target a single writer cannot reach, and why:
#   skips   its skip and warning rows into edumig.skips (indexed as in the real target): the
#           accountability the limit pipe does not carry, written in each batch's transaction;
#   bare    its rows into a copy of grades with only CHECK and NOT NULL live: less than --bulk
#           leaves (it keeps primary keys and unique constraints, src/bulk.h), so that the
#           floor also holds for a design that checked uniques in memory;
#   rebuild everything then built on that copy: primary key, unique constraints, the other
#           indexes, and each foreign key ADD ... NOT VALID + VALIDATE, as src/bulk.c does;
#   keys    one scan of journal_details counting all and the filtered, on one core, sending
#           nothing: the least read that accounts for every detail (filtered ones are counted,
#           not written).
q -d lms_limit -c "CREATE TABLE floor_grades (LIKE grades INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
res=$(pipe "SELECT * FROM grades ORDER BY id" floor_grades)
read -r floor_rows floor_bare <<<"$res"
[ "$floor_rows" = "$(q -d lms_run -c "SELECT count(*) FROM grades")" ] || die "floor_grades: piped $floor_rows rows"
t0=$(now)
floor_built=$(q -d lms_limit -c "
DO \$\$
DECLARE c record;
BEGIN
    FOR c IN SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
             WHERE conrelid = 'grades'::regclass AND contype IN ('p', 'u') ORDER BY contype LOOP
        EXECUTE format('ALTER TABLE floor_grades ADD %s', c.def);
    END LOOP;
    FOR c IN SELECT substring(pg_get_indexdef(i.indexrelid) FROM ' USING .*\$') AS def
             FROM pg_index i WHERE i.indrelid = 'grades'::regclass AND NOT i.indisunique LOOP
        EXECUTE 'CREATE INDEX ON floor_grades ' || c.def;
    END LOOP;
    FOR c IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
             WHERE conrelid = 'grades'::regclass AND contype = 'f' ORDER BY conname LOOP
        EXECUTE format('ALTER TABLE floor_grades ADD CONSTRAINT %I %s NOT VALID', 'floor_' || c.conname, c.def);
        EXECUTE format('ALTER TABLE floor_grades VALIDATE CONSTRAINT %I', 'floor_' || c.conname);
    END LOOP;
END \$\$;
SELECT 'primary key and unique constraints: ' || (SELECT count(*) FROM pg_constraint WHERE conrelid = 'grades'::regclass AND contype IN ('p', 'u'))
    || ', other indexes: ' || (SELECT count(*) FROM pg_index WHERE indrelid = 'grades'::regclass AND NOT indisunique)
    || ', foreign keys: ' || (SELECT count(*) FROM pg_constraint WHERE conrelid = 'grades'::regclass AND contype = 'f')")
floor_rebuild=$(elapsed "$t0" "$(now)")
res=$(pipe "SELECT * FROM edumig.skips WHERE entity = 'grades' ORDER BY skip_id" edumig.skips)
read -r floor_skip_rows floor_skips <<<"$res"
[ "$floor_skip_rows" = "$(q -d lms_run -c "SELECT count(*) FROM edumig.skips WHERE entity = 'grades'")" ] \
    || die "edumig.skips: piped $floor_skip_rows grades rows"
t0=$(now)
PGOPTIONS="$edumig_source_options" q -d edu -c "SET max_parallel_workers_per_gather = 0" -c "SELECT count(*), count(*) FILTER (WHERE
    point_id_1 IS NULL AND point_id_2 IS NULL AND point_id_3 IS NULL) FROM journal_details" >/dev/null
floor_keys=$(elapsed "$t0" "$(now)")
say "grades floors: skips ${floor_skips}s ($floor_skip_rows rows), bare ${floor_bare}s, rebuild ${floor_rebuild}s ($floor_built), keys ${floor_keys}s"

# 6. peak RSS at a smaller scale ----------------------------------------------------------------
say "generating legacy edu_rss at scale $rss_scale (peak RSS comparison)"
"$here/scripts/fixture-db" legacy edu_rss "$rss_scale" || die "fixture-db legacy edu_rss failed"
q -d edu_rss -c "VACUUM (FREEZE, ANALYZE)"
run_edumig rss edu_rss lms_rss --jobs 1
idmap_big=$(q -d lms_run -c "SELECT count(*) FROM edumig.id_map")
idmap_small=$(q -d lms_rss -c "SELECT count(*) FROM edumig.id_map")

# 7. report -----------------------------------------------------------------------------------
export B_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" B_NPROC="$(nproc)" B_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
export B_PG="$pg_version" B_SCALE="$scale" B_LEGACY="$legacy_rows" B_GEN="$gen_seconds" B_JOBS="$jobs"
export B_OVERHEAD="$pipe_overhead" B_HASHES="$bcrypt_hashes" B_RSS_SCALE="$rss_scale"
export B_IDMAP_BIG="$idmap_big" B_IDMAP_SMALL="$idmap_small"
export B_FLOOR_BARE="$floor_bare" B_FLOOR_REBUILD="$floor_rebuild" B_FLOOR_BUILT="$floor_built"
export B_FLOOR_SKIPS="$floor_skips" B_FLOOR_SKIP_ROWS="$floor_skip_rows" B_FLOOR_KEYS="$floor_keys"
export B_COMMIT="$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
python3 - "$logdir" "$limit_tsv" "$read_tsv" "$out" <<'PY' || die "could not write the report"
import json, os, sys
logdir, tsv_path, read_path, out_path = sys.argv[1:5]
E = os.environ
def load(name):
    st = {e["entity"]: e for e in json.load(open("%s/%s.json" % (logdir, name)))["entities"]}
    cpu = 0.0
    for line in open("%s/%s.time" % (logdir, name)):
        k, _, v = line.strip().partition(": ")
        if k in ("User time (seconds)", "System time (seconds)"):
            cpu += float(v)
    return dict(ents=st, wall=float(open("%s/%s.wall" % (logdir, name)).read()),
                rss=int(open("%s/%s.rss" % (logdir, name)).read()), cpu=cpu)
C = {n: load(n) for n in ("jobs1", "jobsN", "bulk", "rss", "batch1000", "batch20000")}
# grades alone: the faster of its two runs per configuration (ga), the slower shown beside (gb)
ga, gb, gcpu = {}, {}, {}
for c, k in (("1", "j1"), ("N", "jn"), ("bulk", "bulk")):
    two = sorted((load("grades_%s_%s" % (k, r)) for r in "ab"), key=lambda x: x["ents"]["grades"]["seconds"])
    ga[c], gb[c] = (x["ents"]["grades"]["seconds"] for x in two)
    gcpu[c] = two[0]["cpu"]
ents = C["jobs1"]["ents"]
reads = dict(l.rstrip("\n").split("\t") for l in open(read_path))
rows = []
for line in open(tsv_path):
    table, entities, n, tsec, m, msec = line.rstrip("\n").split("\t")
    names = entities.split(",")
    for name in names:
        if name not in ents:
            sys.exit("entity %s missing from status --json" % name)
    r = dict(table=table, names=names, rows=int(n), maprows=int(m),
             limit=float(tsec) + float(msec), tsec=float(tsec), msec=float(msec),
             read=sum(float(reads.get(x, 0)) for x in names),
             source=sum(ents[x]["source_rows"] for x in names))
    for c in ("jobs1", "jobsN", "bulk"):
        r[c] = sum(C[c]["ents"][x]["seconds"] for x in names)
    rows.append(r)
missing = set(ents) - {x for r in rows for x in r["names"]}
if missing:
    sys.exit("entities not measured: %s" % ", ".join(sorted(missing)))

def ratio(a, b):
    return "%.2f×" % (a / b) if b > 0 else "–"
def rate(n, s):
    return "{:,.0f}".format(n / s) if s > 0 else "–"

J = E["B_JOBS"]
sum_limit = sum(r["limit"] for r in rows)
hashes = int(E["B_HASHES"])
L = []
L.append("# edumig benchmark results\n")
L.append("Written by `bench/run.sh --scale %s`; see `bench/README.md` for what is measured and how "
         "to read it. Every figure below comes from one run of the script, side by side on the "
         "same databases.\n" % E["B_SCALE"])
L.append("| fact | value |\n|---|---|")
for k, v in [("date", E["B_DATE"]), ("commit", E["B_COMMIT"]), ("CPUs (`nproc`)", E["B_NPROC"]),
             ("load average at the end", E["B_LOAD"]), ("PostgreSQL", E["B_PG"]),
             ("scale", E["B_SCALE"]), ("legacy rows", "{:,}".format(int(E["B_LEGACY"]))),
             ("legacy generation", "%.1f s" % float(E["B_GEN"])),
             ("edumig runs", "`edumig run --all --bcrypt-cost 4` (release build, batch size 5000) into three "
              "fresh targets: **j1** `--jobs 1`, **j%s** `--jobs %s`, **bulk** `--jobs %s --bulk`; "
              "users, grades and course_enrollments checked identical across the three" % (J, J, J))]:
    L.append("| %s | %s |" % (k, v))
L.append("")
L.append("**limit** = the least the job must write: the finished target rows and their "
         "`edumig.id_map` rows, piped unchanged with `psql -c 'COPY (SELECT …) TO STDOUT' | "
         "psql -c 'COPY … FROM STDIN'` into a fresh copy of the target schema (every constraint, "
         "index and foreign key live). It reads nothing from the legacy database and transforms "
         "nothing: a strict lower bound. **read** = the entity's own source stream (the `COPY` "
         "edumig sends, from its log) into /dev/null: what it must read, whatever it does with it. "
         "**j1 / j%s / bulk** = the entity's `seconds` from `edumig status --json` of each run.\n" % J)
L.append("| table (entities) | target rows | id-map rows | source rows | limit s | read s | j1 s | j1 / limit "
         "| j%s s | bulk s | bulk / limit | j1 source rows/s |" % J)
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    label = r["table"] if r["names"] == [r["table"]] else "%s (%s)" % (r["table"], " + ".join(r["names"]))
    L.append("| %s | {:,} | {:,} | {:,} | %.2f | %.2f | %.2f | %s | %.2f | %.2f | %s | %s |".format(
        r["rows"], r["maprows"], r["source"]) % (
        label, r["limit"], r["read"], r["jobs1"], ratio(r["jobs1"], r["limit"]), r["jobsN"], r["bulk"],
        ratio(r["bulk"], r["limit"]), rate(r["source"], r["jobs1"])))
tr = sum(r["rows"] for r in rows); tm = sum(r["maprows"] for r in rows); ts = sum(r["source"] for r in rows)
L.append("| **total** (limit and read: sums; runs: wall time of `run --all`) | {:,} | {:,} | {:,} "
         "| %.2f | %.2f | %.2f | %s | %.2f | %.2f | %s | %s |".format(tr, tm, ts) % (
         sum_limit, sum(r["read"] for r in rows), C["jobs1"]["wall"], ratio(C["jobs1"]["wall"], sum_limit),
         C["jobsN"]["wall"], C["bulk"]["wall"], ratio(C["bulk"]["wall"], sum_limit), rate(ts, C["jobs1"]["wall"])))
L.append("")
g = next(r for r in rows if r["table"] == "grades")
u1, uN = C["jobs1"]["ents"]["users"]["seconds"], C["jobsN"]["ents"]["users"]["seconds"]
L.append("## Against the targets of issue 7\n")
L.append("| target | measured | met |\n|---|---|---|")
def row(t, m, ok):
    L.append("| %s | %s | %s |" % (t, m, "yes" if ok else "**no**"))
row("whole migration ≤ 1.5 × the sum of the limit pipes", "j1 %.1f s / %.1f s = %s; j%s %s; bulk %s" % (
    C["jobs1"]["wall"], sum_limit, ratio(C["jobs1"]["wall"], sum_limit), J,
    ratio(C["jobsN"]["wall"], sum_limit), ratio(C["bulk"]["wall"], sum_limit)),
    min(C["jobsN"]["wall"], C["bulk"]["wall"], C["jobs1"]["wall"]) <= 1.5 * sum_limit)
row("grades ≤ 1.1 × its limit pipe (%.2f s)" % g["limit"],
    "alone: j1 %.1f s = %s (other run %.1f s), j%s %.1f s = %s (%.1f s); in the whole run: j1 %s, j%s %s "
    "(its source stream alone: %.1f s = %s)" % (
    ga["1"], ratio(ga["1"], g["limit"]), gb["1"], J, ga["N"], ratio(ga["N"], g["limit"]), gb["N"],
    ratio(g["jobs1"], g["limit"]), J, ratio(g["jobsN"], g["limit"]), g["read"], ratio(g["read"], g["limit"])),
    min(ga["1"], ga["N"], g["jobs1"], g["jobsN"]) <= 1.1 * g["limit"])
row("grades with --bulk ≤ 0.6 × its limit pipe", "alone %.1f s = %s (other run %.1f s); in the whole run %.1f s = %s" % (
    ga["bulk"], ratio(ga["bulk"], g["limit"]), gb["bulk"], g["bulk"], ratio(g["bulk"], g["limit"])),
    min(ga["bulk"], g["bulk"]) <= 0.6 * g["limit"])
row("--jobs %s faster than --jobs 1 on grades (by 5%% or more: the machine is shared; judged alone, "
    "faster run of two each)" % J,
    "alone %.2f s vs %.2f s (%s; the other runs %.2f s vs %.2f s); in the whole run, beside the other "
    "entities of its phase, %.2f s vs %.2f s (%s); the whole run %.1f s vs %.1f s" % (
    ga["N"], ga["1"], ratio(ga["1"], ga["N"]), gb["N"], gb["1"], g["jobsN"], g["jobs1"],
    ratio(g["jobs1"], g["jobsN"]), C["jobsN"]["wall"], C["jobs1"]["wall"]),
    ga["N"] < 0.95 * ga["1"])
row("--jobs %s keeps every core hashing (users)" % J, "users %.2f s vs %.2f s (%s)" % (uN, u1, ratio(u1, uN)),
    uN < u1)
big = C["jobs1"]["rss"]; small = C["rss"]["rss"]
growth_kb = (int(E["B_IDMAP_BIG"]) - int(E["B_IDMAP_SMALL"])) * 2 * 64 / 1024
row("peak RSS ≤ 128 MB at scale %s" % E["B_SCALE"], "%.1f MB (j1), %.1f MB (j%s), %.1f MB (bulk)" % (
    big / 1024, C["jobsN"]["rss"] / 1024, J, C["bulk"]["rss"] / 1024), max(big, C["jobsN"]["rss"], C["bulk"]["rss"]) <= 128 * 1024)
row("peak RSS within 20%% of scale %s's plus the growth of parent-key sets" % E["B_RSS_SCALE"],
    "%.1f MB vs %.1f MB + at most %.1f MB of id-set growth (%s more id-map rows × 2 slots × 64 B)" % (
    big / 1024, small / 1024, growth_kb / 1024, "{:,}".format(int(E["B_IDMAP_BIG"]) - int(E["B_IDMAP_SMALL"]))),
    big <= 1.2 * (small + growth_kb))
L.append("")
L.append("- bcrypt at cost 4: users took %.2f s with `--jobs 1` and %.2f s with `--jobs %s` for %s `$2b$` "
         "hashes: **%s hashes/s** and **%s hashes/s** (all of the entity's work is in those seconds). The "
         "mappings' cost 12 is 256× the work per hash: about %.0f min for the users entity with "
         "`--jobs 1`, %.0f min with `--jobs %s`." % (u1, uN, J, "{:,}".format(hashes), rate(hashes, u1),
         rate(hashes, uN), u1 * 256 / 60, uN * 256 / 60, J))
L.append("- Each limit figure includes two pipes' fixed cost (psql start-up and connection at both "
         "ends): an empty pipe took %.3f s here. For tables of a few thousand rows the ratios mean "
         "nothing; read the large ones." % float(E["B_OVERHEAD"]))
L.append("- `assessments` is written by two entities: the table is piped once with the id-map rows of "
         "both and compared with the sum of both entities' seconds. Placeholder courses and terms "
         "made by `course_offerings` are piped with `courses` and `academic_terms`.")
L.append("- grades: %s journal details are read to write %s grades and %s id-map rows (most "
         "details are attendance marks, left out by the `attendance_only` filter: they travel as "
         "their key and filter index only, in a second `COPY` of their own beside the one that "
         "reads the kept rows, and do not count towards a batch). Its source stream alone (both "
         "parts side by side) takes %.1f s (window functions and aggregates over the graded "
         "details, a walk of all details in key order), which is %s of the limit pipe before "
         "edumig does anything." % (
         "{:,}".format(g["source"]), "{:,}".format(g["rows"]), "{:,}".format(g["maprows"]), g["read"],
         ratio(g["read"], g["limit"])))

# What limits grades: floors built from the parts timed alone in section 5b.
F = {k: float(E["B_FLOOR_" + k.upper()]) for k in ("bare", "rebuild", "skips", "keys")}
nproc = int(E["B_NPROC"])
# Each timed part less an empty pipe's fixed cost (psql start-ups, connections), which edumig
# pays once per run, not per part: the floors then err low, never high.
o = float(E["B_OVERHEAD"])
def net(sec, pipes=1):
    return max(0.0, sec - pipes * o)
live_one = net(g["limit"], 2) + net(F["skips"])
bulk_one = net(F["bare"]) + net(g["msec"]) + net(F["skips"]) + net(F["rebuild"])
keys = max(0.0, F["keys"] - o / 2)   # one psql, not a pipe
live_all = (live_one + keys) / nproc
live_all_read = (live_one + net(g["read"])) / nproc
bulk_all = (bulk_one + keys) / nproc
bulk_all_read = (bulk_one + net(g["read"])) / nproc
own = gcpu["1"]   # edumig's CPU for grades alone (user + sys, its faster run), start-up included
live_all_own = (live_one + keys + own) / nproc
bulk_all_own = (bulk_one + keys + own) / nproc
L.append("")
L.append("## What limits grades\n")
L.append("Parts of grades' work, each timed alone in this run on the same databases (section 5b of "
         "`bench/run.sh`). No design can leave out the first five; the sixth is what edumig reads today, "
         "with the grouping and transformation done by the source server; the last is edumig's own work:\n")
L.append("| part | s | / limit |\n|---|---:|---:|")
for name, sec in [
        ("limit pipe: its %s rows (%.2f s) and %s id-map rows (%.2f s), everything live" % (
            "{:,}".format(g["rows"]), g["tsec"], "{:,}".format(g["maprows"]), g["msec"]), g["limit"]),
        ("its %s skip and warning rows into `edumig.skips` (the accounting the limit pipe does not carry; "
         "written in each batch's own transaction)" % "{:,}".format(int(E["B_FLOOR_SKIP_ROWS"])), F["skips"]),
        ("its rows into a copy of `grades` with only CHECK and NOT NULL live (less than `--bulk` "
         "leaves: it keeps primary key and unique constraints)", F["bare"]),
        ("building everything else on that copy (%s; each foreign key ADD … NOT VALID, then VALIDATE)"
         % E["B_FLOOR_BUILT"], F["rebuild"]),
        ("one scan of all journal details counting the filtered ones (one core, nothing sent): the least "
         "read that accounts for every detail", F["keys"]),
        ("its source stream as edumig reads it (**read** above)", g["read"]),
        ("edumig's own CPU for grades (user + sys of the faster grades-alone `--jobs 1` run)", own)]:
    L.append("| %s | %.2f | %s |" % (name, sec, ratio(sec, g["limit"])))
L.append("")
L.append("A batch's rows, id-map rows, skip rows and checkpoint commit in one transaction, so one key "
         "range is written by one connection, and the target's work for it adds up on that connection. "
         "Floors, taking each part's wall time less an empty pipe's (%.3f s) as the server's work "
         "for it, and edumig's own work and every wait as free:\n" % o)
L.append("| floor | s | / limit | target |\n|---|---:|---:|---|")
for name, sec, tgt in [
        ("one writer, constraints live: limit + skips", live_one, "grades ≤ 1.1×"),
        ("one writer, `--bulk`: bare rows + id map + skips + building the rest", bulk_one, "grades `--bulk` ≤ 0.6×"),
        ("%d writers over key ranges, constraints live: (limit + skips + the least read) / %d cores" % (nproc, nproc),
         live_all, "grades ≤ 1.1×"),
        ("the same with grades' real source stream in place of the least read", live_all_read, "grades ≤ 1.1×"),
        ("%d writers over key ranges, `--bulk`: (its one-writer floor + the least read) / %d cores" % (nproc, nproc),
         bulk_all, "grades `--bulk` ≤ 0.6×"),
        ("the same with grades' real source stream in place of the least read", bulk_all_read,
         "grades `--bulk` ≤ 0.6×"),
        ("%d writers, constraints live, the least read, and edumig's own CPU for grades counted" % nproc,
         live_all_own, "grades ≤ 1.1×"),
        ("%d writers, `--bulk`, the least read, and edumig's own CPU for grades counted" % nproc,
         bulk_all_own, "grades `--bulk` ≤ 0.6×")]:
    L.append("| %s | %.2f | %s | %s |" % (name, sec, ratio(sec, g["limit"]), tgt))
L.append("")
L.append("## Batch size\n")
L.append("`run --all --jobs 1` with `--batch-size` 1000, 5000 (the default: run j1 above) and 20000, "
         "same rows written (checked):\n")
L.append("| batch size | whole run s | grades s | course_enrollments s | assessments s | peak RSS MB |")
L.append("|---:|---:|---:|---:|---:|---:|")
for size, c in [(1000, C["batch1000"]), (5000, C["jobs1"]), (20000, C["batch20000"])]:
    L.append("| {:,} | %.1f | %.2f | %.2f | %.2f | %.1f |".format(size) % (
        c["wall"], c["ents"]["grades"]["seconds"], c["ents"]["course_enrollments"]["seconds"],
        c["ents"]["assessments"]["seconds"], c["rss"] / 1024))
text = "\n".join(L) + "\n"
open(out_path, "w").write(text)
sys.stdout.write(text)
PY
say "written: $out (logs in $logdir)"
