#!/usr/bin/env bash
# scripts/quickstart.sh — from a fresh Debian 12 machine (as root) to a finished sample
# migration: install packages, build, start a throwaway PostgreSQL, create a sample legacy
# database and an empty target, run every phase, then show status and verify.
#
#   scripts/quickstart.sh [--scale S]     sample size (default 0.05; 1.0 = the real sizes)
#
# The cluster keeps running afterwards so you can look around; the script prints how to
# connect and how to stop it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scale=0.05
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale=${2:?--scale needs a value}; shift 2 ;;
        --scale=*) scale=${1#--scale=}; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "quickstart: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

echo "== installing packages (apt-get)"
"$here/scripts/deps.sh"
echo "== building"
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null

sandbox=/tmp/edumig-quickstart
if [ -f "$sandbox/port" ]; then
    echo "== stopping the previous quick-start cluster"
    "$here/scripts/pg-sandbox" stop "$sandbox"
fi
echo "== starting a throwaway PostgreSQL in $sandbox"
"$here/scripts/pg-sandbox" start "$sandbox"
eval "$("$here/scripts/pg-sandbox" env "$sandbox")"

echo "== creating the sample legacy database 'edu' (scale $scale) and the empty target 'lms'"
"$here/scripts/fixture-db" legacy edu "$scale"
"$here/scripts/fixture-db" target lms

export EDUMIG_SOURCE="dbname=edu" EDUMIG_TARGET="dbname=lms"
echo "== edumig plan"
build/edumig plan
echo "== edumig run --all --jobs $(nproc)"
# bcrypt at cost 4 keeps the sample quick; a real cutover keeps the mappings' cost (12).
build/edumig run --all --bcrypt-cost 4 --jobs "$(nproc)" || echo "(run finished with exit $?; see above)"
echo "== edumig status"
build/edumig status
echo "== edumig verify"
build/edumig verify || true
echo "== reports for the data owners"
build/edumig report --format html --out logs/report.html
build/edumig report --format csv --out logs/report.csv

cat <<MSG

Done. The databases stay up until you stop them:
  connect:  psql -h $sandbox -p $PGPORT -U postgres edu     (legacy)
            psql -h $sandbox -p $PGPORT -U postgres lms     (target; edumig's tables are in schema edumig)
  commands: export PGHOST=$sandbox PGPORT=$PGPORT PGUSER=postgres EDUMIG_SOURCE=dbname=edu EDUMIG_TARGET=dbname=lms
            build/edumig status; build/edumig verify
  reports:  $here/logs/report.html (open it in a browser), $here/logs/report.csv
  run logs: $here/logs/
  stop:     scripts/pg-sandbox stop $sandbox
MSG
