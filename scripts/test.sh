#!/usr/bin/env bash
# scripts/test.sh — install, build (plain and ASan+UBSan), start a throwaway PostgreSQL,
# load the fixtures at scale 0.01, run every test in both builds, stop the cluster, and end
# with one line "N passed, N failed".
#
#   EDUMIG_SKIP_APT=1   do not run apt-get (packages already installed)
#   EDUMIG_NO_ASAN=1    plain build only (quicker local runs)
#   EDUMIG_TESTS="a b"  run only these meson tests
#   EDUMIG_NO_FUZZ=1    skip the fuzzing step (it runs when clang is installed)
#   EDUMIG_FUZZ_SECONDS=N  seconds per fuzzing harness (default 15)
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

# Fuzzing (tests/fuzz/README.md): each libFuzzer harness runs for a bounded time on a copy of
# its seed corpus, counting as one test; a crash, leak, UB report or timeout fails it.
if [ "${EDUMIG_NO_FUZZ:-0}" != 1 ] && command -v clang >/dev/null 2>&1; then
    echo "=== fuzzing (${EDUMIG_FUZZ_SECONDS:-15} s per harness)"
    fuzz_ok=1
    if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
            >/tmp/edumig-setup-build-fuzz.log 2>&1 \
            || { cat /tmp/edumig-setup-build-fuzz.log; fuzz_ok=0; }
    fi
    if [ "$fuzz_ok" = 1 ]; then
        ninja -C build-fuzz tests/fuzz/fuzz_{mapping,phases,transform,jsonpos,copytext} \
            >/tmp/edumig-ninja-build-fuzz.log 2>&1 \
            || { cat /tmp/edumig-ninja-build-fuzz.log; fuzz_ok=0; }
    fi
    if [ "$fuzz_ok" = 0 ]; then
        echo "fuzz: build-fuzz does not build"; failed=$((failed + 1))
    else
        fuzz_work=$(mktemp -d /tmp/edumig-fuzz.XXXXXX)
        # The configuration harnesses write a file per input: on a memory file system.
        fuzz_shm=$(mktemp -d /dev/shm/edumig-fuzz.XXXXXX 2>/dev/null || mktemp -d /tmp/edumig-fuzz-cfg.XXXXXX)
        for h in mapping phases transform jsonpos copytext; do
            mkdir -p "$fuzz_work/$h/artifacts"
            cp -r "tests/fuzz/corpus/$h" "$fuzz_work/$h/corpus"
            log="$fuzz_work/$h/log"
            dict=()
            case $h in
                mapping|phases) dict=(-dict="$here/tests/fuzz/config.dict") ;;
                transform) dict=(-dict="$here/tests/fuzz/transform.dict") ;;
            esac
            if (cd "$fuzz_work/$h" && EDUMIG_FUZZ_TMPDIR="$fuzz_shm" "$here/build-fuzz/tests/fuzz/fuzz_$h" \
                    -max_total_time="${EDUMIG_FUZZ_SECONDS:-15}" -rss_limit_mb=2048 -timeout=10 \
                    -artifact_prefix="$fuzz_work/$h/artifacts/" "${dict[@]}" corpus) >"$log" 2>&1; then
                echo "fuzz_$h: ok, $(sed -n 's/^#\([0-9]*\).*DONE *cov: \([0-9]*\).*exec\/s: \([0-9]*\).*/\1 runs, cov \2, \3 exec\/s/p' "$log")"
                passed=$((passed + 1))
            else
                echo "fuzz_$h: FAILED; input and log kept in $fuzz_work/$h"
                grep -A25 -m1 -E '^==[0-9]+==|runtime error|ERROR: libFuzzer' "$log" || tail -30 "$log"
                ls -l "$fuzz_work/$h/artifacts"
                failed=$((failed + 1))
                fuzz_keep=1
            fi
        done
        rm -rf "$fuzz_shm"
        [ "${fuzz_keep:-0}" = 1 ] || rm -rf "$fuzz_work"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
