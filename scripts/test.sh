#!/usr/bin/env bash
# scripts/test.sh — install, build (plain and ASan+UBSan), start a throwaway PostgreSQL,
# load the fixtures at scale 0.01, run every test in both builds, stop the cluster, and end
# with one line "N passed, N failed".
#
#   EDUMIG_SKIP_APT=1   do not run apt-get (packages already installed)
#   EDUMIG_NO_ASAN=1    plain build only (quicker local runs)
#   EDUMIG_TESTS="a b"  run only these meson tests
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

"$here/scripts/deps.sh" chromium || { echo "0 passed, 1 failed"; exit 1; }

builds=(build)
[ "${EDUMIG_NO_ASAN:-0}" = 1 ] || builds+=(build-asan)

for b in "${builds[@]}"; do
    opts=()
    [ "$b" = build-asan ] && opts=(-Db_sanitize=address,undefined -Db_lundef=false)
    if [ ! -f "$b/build.ninja" ]; then
        meson setup "$b" "${opts[@]}" >"/tmp/edumig-setup-$b.log" 2>&1 \
            || { cat "/tmp/edumig-setup-$b.log"; echo "0 passed, 1 failed"; exit 1; }
    fi
    ninja -C "$b" >"/tmp/edumig-ninja-$b.log" 2>&1 \
        || { cat "/tmp/edumig-ninja-$b.log"; echo "0 passed, 1 failed"; exit 1; }
done

sandbox=$(mktemp -d /tmp/edumig-test-pg.XXXXXX)
cleanup() { "$here/scripts/pg-sandbox" stop "$sandbox" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM
"$here/scripts/pg-sandbox" start "$sandbox" || { echo "0 passed, 1 failed"; exit 1; }
eval "$("$here/scripts/pg-sandbox" env "$sandbox")"
export PG_SANDBOX="$sandbox"

export EDU_TEMPLATE=edu_tpl LMS_TEMPLATE=lms_tpl
"$here/scripts/fixture-db" legacy "$EDU_TEMPLATE" 0.01 && "$here/scripts/fixture-db" target "$LMS_TEMPLATE" \
    || { echo "fixture load failed"; echo "0 passed, 1 failed"; exit 1; }

# Sanitizer findings must fail the test that triggered them.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87

passed=0; failed=0
for b in "${builds[@]}"; do
    echo "=== tests in $b"
    # shellcheck disable=SC2086
    meson test -C "$b" --print-errorlogs --timeout-multiplier 3 ${EDUMIG_TESTS:-}
    log="$b/meson-logs/testlog.json"
    if [ -f "$log" ]; then
        read -r p f < <(python3 - "$log" <<'PY'
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    else:
        f += 1
print(p, f)
PY
)
        passed=$((passed + p)); failed=$((failed + f))
    else
        failed=$((failed + 1))
    fi
done

# Unit tests once more under valgrind: no leaks, no invalid accesses.
if [ "${EDUMIG_NO_VALGRIND:-0}" != 1 ]; then
    echo "=== unit tests under valgrind"
    for t in build/tests/test_*; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        if valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 \
                "$t" >/tmp/edumig-valgrind.log 2>&1; then
            passed=$((passed + 1))
        else
            echo "valgrind: $t failed"; tail -30 /tmp/edumig-valgrind.log
            failed=$((failed + 1))
        fi
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
