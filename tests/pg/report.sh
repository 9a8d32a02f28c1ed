#!/usr/bin/env bash
# tests/pg/report.sh — `edumig report` on a migration of the legacy fixture (scale 0.01):
# CSV rows and per-reason counts equal the skip log, RFC 4180 quoting survives a value with
# a comma, quotes and a newline, filters are exact, root causes agree with an independent
# computation (a synthetic three-level cascade and a cycle included), --split-by writes one
# file per owning unit plus the no-owner file and loses no row, JSON parses and its summary
# is `status --json`, and the HTML page, rendered by headless Chromium, shows the status
# figures, loads nothing from outside and escapes a legacy value carrying <script>.
. "$SRCDIR/tests/lib.sh"
require_sandbox

new_db SRC edu "$EDU_TEMPLATE"
new_db T lms "$LMS_TEMPLATE"
W=$WORKDIR
edumig() {   # edumig TARGET_DB ARGS...
    local t=$1; shift
    "$EDUMIG" "$@" --config "$SRCDIR" --source "dbname=$SRC" --target "dbname=$t" --log-dir "$W/logs"
}
py() { python3 - "$@"; }

# A legacy e-mail the users mapping rejects (no '@'), so the skip log quotes it: markup that
# would run if it were not escaped, a comma, double quotes and a newline.
HOSTILE="x<script>document.title='pwned'</script><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">, \"quoted\"
second line"
q "$SRC" "UPDATE accounts SET email = \$h\$$HOSTILE\$h\$ WHERE id = (
            SELECT min(a.id) FROM accounts a WHERE a.email NOT LIKE '%@%'
            AND EXISTS (SELECT 1 FROM users u WHERE u.account_id = a.id))" >/dev/null

# And one with a newline only (no comma or quote to trigger the quoting by chance).
q "$SRC" "UPDATE accounts SET email = E'first line\\nsecond line' WHERE id = (
            SELECT max(a.id) FROM accounts a WHERE a.email NOT LIKE '%@%'
            AND EXISTS (SELECT 1 FROM users u WHERE u.account_id = a.id))" >/dev/null

out=$(edumig "$T" run --all --bcrypt-cost 4 -q 2>&1); rc=$?
assert_eq "run --all exits 0" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -20 | sed 's/^/# /'
assert_match "the hostile value reached the skip log" "^[1-9]" \
    "$(q "$T" "SELECT count(*) FROM edumig.skips WHERE source_value LIKE '%<script>%' AND source_value LIKE '%,%' AND source_value LIKE E'%\n%'")"
# Rows written to the target's tables (the server's counters; catalog writes such as
# autoanalyze's are left out, they are not ours).
table_writes() { q "$1" "SELECT pg_stat_clear_snapshot(); SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables" | tail -1; }
assert_eq "the newline-only value reached the skip log" 1 \
    "$(q "$T" "SELECT count(*) FROM edumig.skips WHERE source_value = E'first line\\nsecond line'")"
writes_before=$(table_writes "$T")
skips_sum=$(table_checksum "$T" edumig.skips)

# --- CSV --------------------------------------------------------------------------------
assert_exit "report (csv) exits 0" 0 edumig "$T" report --out "$W/all.csv"
total=$(q "$T" "SELECT count(*) FROM edumig.skips WHERE resolved_at IS NULL")
# Prints: rows, then "reason|count" lines; fields are checked against the server below.
csv_summary() {   # csv_summary FILE
    py "$1" <<'PY'
import csv, collections, sys
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
print(len(rows))
for r, n in sorted(collections.Counter(r['reason'] for r in rows).items()):
    print(f"{r}|{n}")
PY
}
sql_summary() {   # sql_summary WHERE
    q "$T" "SELECT count(*) FROM edumig.skips WHERE resolved_at IS NULL AND $1"
    q "$T" "SELECT reason || '|' || count(*) FROM edumig.skips WHERE resolved_at IS NULL AND $1
            GROUP BY reason ORDER BY reason COLLATE \"C\""
}
assert_match "the fixture gives a non-trivial skip log" "^[0-9]{3,}$" "$total"
assert_eq "CSV: rows and per-reason counts = the unresolved skip log" "$(sql_summary true)" "$(csv_summary "$W/all.csv")"
assert_eq "CSV: header" "entity,old_key,severity,reason,column,source_value,detail,root_cause,owner_code,owner_name,owner_key,owner_entity,phase,sqlstate,constraint,cause_entity,cause_key,skip_id" \
    "$(head -1 "$W/all.csv" | tr -d '\r')"
# The quoted value comes back byte for byte (md5 on both sides).
exp_md5=$(q "$T" "SELECT md5(source_value) FROM edumig.skips WHERE source_value LIKE '%<script>%' ORDER BY skip_id LIMIT 1")
got_md5=$(py "$W/all.csv" <<'PY'
import csv, hashlib, sys
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    for r in csv.DictReader(f):
        if '<script>' in r['source_value']:
            print(hashlib.md5(r['source_value'].encode()).hexdigest()); break
PY
)
assert_eq "CSV: a value with a comma, quotes and a newline round-trips through python's csv" "$exp_md5" "$got_md5"
assert_eq "CSV: every record keeps its skip_id (no row lost or doubled)" \
    "$(q "$T" "SELECT md5(string_agg(skip_id::text, ',' ORDER BY skip_id)) FROM edumig.skips WHERE resolved_at IS NULL")" \
    "$(py "$W/all.csv" <<'PY'
import csv, hashlib, sys
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    ids = sorted(int(r['skip_id']) for r in csv.DictReader(f))
print(hashlib.md5(','.join(map(str, ids)).encode()).hexdigest())
PY
)"
edumig "$T" report --out - -q >"$W/stdout.csv"
assert_eq "CSV: --out - writes the same bytes to standard output" "$(md5sum <"$W/all.csv")" "$(md5sum <"$W/stdout.csv")"
edumig "$T" report -q
assert_eq "CSV: the default path is LOG_DIR/report.csv" "$(md5sum <"$W/all.csv")" "$(md5sum <"$W/logs/report.csv")"
assert_eq "CSV: no partial file is left behind" "" "$(find "$W" -name '*.part')"

# --- filters ----------------------------------------------------------------------------
ent=$(q "$T" "SELECT entity FROM edumig.skips WHERE resolved_at IS NULL GROUP BY entity ORDER BY count(*) DESC LIMIT 1")
rsn=$(q "$T" "SELECT reason FROM edumig.skips WHERE resolved_at IS NULL GROUP BY reason ORDER BY count(*) DESC LIMIT 1")
ph=$(q "$T" "SELECT phase FROM edumig.skips WHERE resolved_at IS NULL GROUP BY phase ORDER BY phase DESC LIMIT 1")
edumig "$T" report -q --entity "$ent" --out "$W/e.csv"
assert_eq "--entity $ent: exact" "$(sql_summary "entity = '$ent'")" "$(csv_summary "$W/e.csv")"
edumig "$T" report -q --reason "$rsn" --out "$W/r.csv"
assert_eq "--reason $rsn: exact" "$(sql_summary "reason = '$rsn'")" "$(csv_summary "$W/r.csv")"
edumig "$T" report -q --phase "$ph" --reason missing_reference --out "$W/pr.csv"
assert_eq "--phase $ph --reason missing_reference: exact" "$(sql_summary "phase = $ph AND reason = 'missing_reference'")" "$(csv_summary "$W/pr.csv")"
assert_exit "--entity of an unknown entity exits 2" 2 edumig "$T" report --entity no_such_entity --out "$W/x.csv"
assert_exit "--phase of an unknown phase exits 2" 2 edumig "$T" report --phase 999 --out "$W/x.csv"
assert_exit "--format xml exits 2" 2 edumig "$T" report --format xml
assert_exit "--split-by with json exits 2" 2 edumig "$T" report --format json --split-by organization
assert_exit "--split-by something else exits 2" 2 edumig "$T" report --split-by faculty
assert_exit "report --all exits 2 (not a report option)" 2 edumig "$T" report --all
assert_exit "--html-rows with csv exits 2" 2 edumig "$T" report --html-rows 5
assert_exit "an unreachable target exits 3" 3 "$EDUMIG" report --config "$SRCDIR" --target "dbname=${DB_PREFIX}_missing" --out "$W/x.csv"
assert_exit "an unwritable --out exits 2" 2 edumig "$T" report --out "$W/no/such/dir/r.csv"
mkfifo "$W/fifo"
timeout 20 cat "$W/fifo" >"$W/from-fifo.csv" &
edumig "$T" report -q --out "$W/fifo"
wait
assert_eq "--out naming a FIFO (not a regular file) is written to, not replaced" "fifo $(md5sum <"$W/all.csv")" \
    "$( [ -p "$W/fifo" ] && echo fifo) $(md5sum <"$W/from-fifo.csv")"

# --- root causes: an independent walk over the skip log ---------------------------------
# Synthetic cascades on a copy of the target: x_offer 1 (missing_reference) <- x_assess 10,
# 11 <- x_grade 100..104, and two x_cyc rows blaming each other (no top: must terminate).
new_db D deep "$T"
q "$D" "INSERT INTO edumig.skips (run_id, phase, entity, old_key, reason, severity, detail, cause_entity, cause_key)
        VALUES (0, 5, 'x_offer', '1', 'missing_reference', 'error', 'course 999 absent', 'courses', '999'),
               (0, 5, 'x_assess', '10', 'parent_skipped', 'error', 'x', 'x_offer', '1'),
               (0, 5, 'x_assess', '11', 'parent_skipped', 'error', 'x', 'x_offer', '1'),
               (0, 5, 'x_grade', '100', 'parent_skipped', 'error', 'x', 'x_assess', '10'),
               (0, 5, 'x_grade', '101', 'parent_skipped', 'error', 'x', 'x_assess', '10'),
               (0, 5, 'x_grade', '102', 'parent_skipped', 'error', 'x', 'x_assess', '11'),
               (0, 5, 'x_grade', '103', 'parent_skipped', 'error', 'x', 'x_assess', '11'),
               (0, 5, 'x_grade', '104', 'parent_skipped', 'error', 'x', 'x_assess', '11'),
               (0, 5, 'x_grade', '104', 'invalid_value', 'warning', 'x', NULL, NULL),
               (0, 5, 'x_cyc', '1', 'parent_skipped', 'error', 'x', 'x_cyc', '2'),
               (0, 5, 'x_cyc', '2', 'parent_skipped', 'error', 'x', 'x_cyc', '1')" >/dev/null
out=$(timeout 60 "$EDUMIG" report --config "$SRCDIR" --target "dbname=$D" --out "$W/deep.csv" 2>&1); rc=$?
assert_eq "report over cascades and a cycle exits 0" 0 "$rc"
psql -X -d "$D" -qAt -F $'\t' -c "SELECT entity, old_key, cause_entity, cause_key, reason, skip_id FROM edumig.skips
                                  WHERE severity = 'error' AND resolved_at IS NULL AND old_key IS NOT NULL" >"$W/err.tsv"
mism=$(py "$W/deep.csv" "$W/err.tsv" <<'PY'
import csv, sys
err, first = {}, {}
for line in open(sys.argv[2], encoding='utf-8'):
    e, k, ce, ck, reason, sid = line.rstrip('\n').split('\t')
    err.setdefault((e, k), set()).add(reason)
    first.setdefault((e, k), []).append((int(sid), ce, ck))
link = {}
for n, recs in first.items():
    for sid, ce, ck in sorted(recs):
        if (ce, ck) in err and (ce, ck) != n:
            link[n] = (ce, ck); break
def top(n):
    seen, cur = set(), n
    while cur in link:
        if cur in seen:
            return n          # a cycle has no top: the cause itself is named
        seen.add(cur); cur = link[cur]
    return cur
bad = 0
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    for r in csv.DictReader(f):
        c = (r['cause_entity'], r['cause_key'])
        exp = ''
        if c in err and c != (r['entity'], r['old_key']):
            t = top(c)
            exp = f"{t[0]} {t[1]}: {', '.join(sorted(err[t]))}"
        if r['root_cause'] != exp:
            bad += 1
            if bad < 5: print(f"{r['entity']} {r['old_key']}: {r['root_cause']!r} != {exp!r}", file=sys.stderr)
print(bad)
PY
)
assert_eq "root_cause of every record = an independent walk up the error skips" 0 "$mism"
assert_eq "root cause of a three-level cascade names its top" "5" \
    "$(grep -c '^x_grade,10[0-4],error,.*,x_offer 1: missing_reference,' "$W/deep.csv")"
assert_eq "a warning of a row carries no root cause of its own" "1" "$(grep -c '^x_grade,104,warning,invalid_value,,,x,,' "$W/deep.csv")"
"$EDUMIG" report -q --config "$SRCDIR" --source "dbname=$SRC" --target "dbname=$D" --format json --out "$W/deep.json"
assert_eq "JSON root_causes: the chain with distinct rows per level" \
    "[['x_offer', 1], ['x_assess', 2], ['x_grade', 5]] 5 grades: 5 x_grade skipped ← 2 x_assess skipped ← 1 x_offer skipped (missing_reference)" \
    "$(py "$W/deep.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1], encoding='utf-8'))
for c in d['root_causes']:
    if c['root_entity'] == 'x_offer' and len(c['chain']) == 3:
        print([[l['entity'], l['rows']] for l in c['chain']], c['rows'], 'grades:', c['text'])
PY
)"

# --- --split-by organization ------------------------------------------------------------
assert_exit "--split-by organization exits 0" 0 edumig "$T" report --split-by organization --out "$W/split"
owners=$(q "$T" "SELECT count(*) FROM (SELECT DISTINCT owner_entity, owner_key FROM edumig.skips
                 WHERE resolved_at IS NULL AND owner_key IS NOT NULL) o")
assert_match "the fixture has skip records owned by units" "^[1-9]" "$owners"
nfiles=$(find "$W/split" -name '*.csv' ! -name _index.csv | wc -l)
assert_eq "one file per owning unit, plus _no_owner.csv" "$((owners + 1))" "$nfiles"
assert_exit "_no_owner.csv is there" 0 test -f "$W/split/_no_owner.csv"
split_check=$(py "$W/split" <<'PY'
import csv, glob, os, re, sys
d = sys.argv[1]
total, bad = 0, []
counts = {}
for p in glob.glob(os.path.join(d, '*.csv')):
    if os.path.basename(p) == '_index.csv':
        continue
    with open(p, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    total += len(rows)
    keys = {(r['owner_entity'], r['owner_key']) for r in rows}
    if len(keys) > 1:
        bad.append(f"{p}: {len(keys)} owners")
    counts[os.path.basename(p)] = len(rows)
    if os.path.basename(p) == '_no_owner.csv' and any(r['owner_key'] for r in rows):
        bad.append('_no_owner.csv holds an owned row')
with open(os.path.join(d, '_index.csv'), newline='', encoding='utf-8') as f:
    for r in csv.DictReader(f):
        if counts.get(r['file']) != int(r['rows']):
            bad.append(f"index: {r['file']} {r['rows']} != {counts.get(r['file'])}")
        if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*\.csv|_no_owner\.csv', r['file']):
            bad.append(f"unsafe name {r['file']}")
print(total, ' '.join(bad) or 'ok')
PY
)
assert_eq "split files add up to every record, one owner per file, index agrees" "$total ok" "$split_check"
per_owner=$(q "$T" "SELECT owner_key || '|' || count(*) FROM edumig.skips WHERE resolved_at IS NULL AND owner_key IS NOT NULL
                    GROUP BY owner_key ORDER BY 1")
from_index=$(py "$W/split/_index.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    print('\n'.join(sorted(f"{r['owner_key']}|{r['rows']}" for r in csv.DictReader(f) if r['owner_key'])))
PY
)
assert_eq "rows per owner = the skip log's count per owner" "$per_owner" "$from_index"
assert_exit "--split-by again into its own directory exits 0" 0 edumig "$T" report --split-by organization --out "$W/split"
mkdir -p "$W/foreign" && touch "$W/foreign/keep.txt"
assert_exit "--split-by refuses a non-empty directory it did not create (exit 2)" 2 \
    edumig "$T" report --split-by organization --out "$W/foreign"

# --- JSON ---------------------------------------------------------------------------------
assert_exit "report --format json exits 0" 0 edumig "$T" report --format json --out "$W/r.json"
assert_exit "JSON parses (python3 -m json.tool)" 0 python3 -m json.tool "$W/r.json"
edumig "$T" status --json >"$W/status.json"
assert_eq "JSON: summary = status --json, rows = records, reasons add up" "same $total $total" "$(py "$W/r.json" "$W/status.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1], encoding='utf-8'))
s = json.load(open(sys.argv[2], encoding='utf-8'))
print('same' if d['summary'] == s else 'differs', len(d['rows']), sum(r['records'] for r in d['reasons']))
PY
)"

# --- HTML ---------------------------------------------------------------------------------
assert_exit "report --format html exits 0" 0 edumig "$T" report --format html --html-rows 5 --out "$W/r.html"
assert_eq "HTML: no external resource (src=/href= to a URL, url(), @import)" "" \
    "$(grep -oiE "(src|href)[[:space:]]*=[[:space:]]*[\"']?[a-z]*:?//|url\(|@import|<link" "$W/r.html")"
assert_eq "HTML: one script element, ours" "1" "$(grep -o '<script' "$W/r.html" | wc -l)"
assert_match "HTML: the legacy <script> value is escaped" "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;&lt;img" \
    "$(grep -o '&lt;script&gt;[^<]*' "$W/r.html" | head -1)"
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    not_ok "HTML: headless Chromium is installed (scripts/deps.sh chromium)"
else
    timeout 60 "$CHROME" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$(mktemp -d "$W/chrome.XXXXXX")" \
        --dump-dom "file://$W/r.html" >"$W/dom.html" 2>"$W/chrome.log"
    assert_match "Chromium rendered the page" "</html>" "$(tail -c 200 "$W/dom.html")"
    html_check=$(py "$W/dom.html" "$W/status.json" "$W/r.json" <<'PY'
import json, sys
from html.parser import HTMLParser
status = json.load(open(sys.argv[2], encoding='utf-8'))
rep = json.load(open(sys.argv[3], encoding='utf-8'))
class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.row = None; self.field = None; self.cells = {}; self.text = ''
        self.title = ''; self.in_title = False; self.pwned = False; self.shown = []; self.in_shown = False
        self.ready = False
        self.sections = {}; self.cur = None; self.more = {}; self.tr_rows = {}
    def handle_starttag(self, tag, a):
        a = dict(a)
        if 'data-pwned' in a: self.pwned = True
        if tag == 'body' and a.get('data-filter') == 'ready': self.ready = True
        if tag == 'title': self.in_title = True
        if tag == 'tr' and (a.get('id') or '').startswith('summary-'): self.row = a.get('data-entity')
        if tag == 'td' and self.row and a.get('data-field'): self.field = a['data-field']; self.text = ''
        if tag == 'span' and a.get('class') == 'shown': self.in_shown = True; self.text = ''
        if tag == 'section': self.cur = a.get('data-entity'); self.sections[self.cur] = int(a['data-records']); self.tr_rows[self.cur] = 0
        if tag == 'tr' and self.cur and 'data-reason' in a: self.tr_rows[self.cur] += 1
        if tag == 'p' and a.get('class') == 'more' and self.cur: self.more[self.cur] = int(a.get('data-more', 0))
    def handle_endtag(self, tag):
        if tag == 'title': self.in_title = False
        if tag == 'td' and self.field:
            self.cells[(self.row, self.field)] = self.text; self.field = None
        if tag == 'tr': self.row = None
        if tag == 'span' and self.in_shown: self.shown.append(self.text); self.in_shown = False
        if tag == 'section': self.cur = None
    def handle_data(self, d):
        if self.in_title: self.title += d
        if self.field or self.in_shown: self.text += d
p = P(); p.feed(open(sys.argv[1], encoding='utf-8').read())
bad = []
for e in status['entities']:
    for k, f in (('source_rows', 'source'), ('filtered', 'filtered'), ('migrated', 'migrated'),
                 ('warned', 'warned'), ('skipped', 'skipped'), ('unaccounted', 'unaccounted')):
        got = p.cells.get((e['entity'], f))
        if got is None or int(got.replace(',', '')) != e[k]:
            bad.append(f"{e['entity']}.{f}: {got} != {e[k]}")
if p.pwned: bad.append('injected attribute present')
if p.title != 'edumig skip report': bad.append(f'title changed: {p.title!r}')
if not p.ready: bad.append('the inline script did not run')
for ent, shown in zip(p.sections, p.shown):
    if int(shown.replace(',', '')) != p.tr_rows.get(ent): bad.append(f'{ent}: says {shown} shown, has {p.tr_rows.get(ent)} rows')
recs = {}
for r in rep['reasons']: recs[r['entity']] = recs.get(r['entity'], 0) + r['records']
for ent, n in recs.items():
    if p.sections.get(ent) != n: bad.append(f'{ent}: section says {p.sections.get(ent)} records, not {n}')
    shown = p.tr_rows.get(ent, 0)
    if shown != min(5, n): bad.append(f'{ent}: {shown} rows shown, cap 5 of {n}')
    if n > 5 and p.more.get(ent) != n - shown: bad.append(f'{ent}: note says {p.more.get(ent)} more, not {n - shown}')
print(' '.join(bad) or 'ok')
PY
)
    assert_eq "HTML (rendered): status figures per entity, exact record counts, capped rows with the rest counted, nothing injected" "ok" "$html_check"
fi

# --- read only ----------------------------------------------------------------------------
sleep 0.6
assert_eq "the reports wrote nothing to the target's tables" "$writes_before" "$(table_writes "$T")"
assert_eq "the skip log is unchanged" "$skips_sum" "$(table_checksum "$T" edumig.skips)"

done_testing
