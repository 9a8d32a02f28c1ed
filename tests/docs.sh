#!/usr/bin/env bash
# tests/docs.sh — the documentation lists what the program does: every command of
# `edumig --help` and every option of `edumig COMMAND --help` appears in README.md and in
# the man page (doc/edumig.1). Needs no server.
set -uo pipefail
n=0 failed=0
check() {   # check DESCRIPTION CONDITION-EXIT-CODE
    n=$((n + 1))
    if [ "$2" = 0 ]; then echo "ok $n - $1"; else echo "not ok $n - $1"; failed=$((failed + 1)); fi
}
readme="$SRCDIR/README.md"
# The man page's source escapes hyphens (\-); read it as plain text. (grep reads here-strings:
# in a pipe, grep -q stopping early would SIGPIPE the writer and fail under pipefail.)
man=$(sed 's/\\-/-/g' "$SRCDIR/doc/edumig.1")

commands=$("$EDUMIG" --help | sed -n '/^commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
[ -n "$commands" ]; check "edumig --help lists commands ($(echo $commands))" $?
for c in $commands; do
    grep -q "edumig $c" "$readme"; check "README names the command $c" $?
    grep -q "^\.B.* $c\|^\.B $c$\|^\.BR $c " <<<"$man"; check "the man page names the command $c" $?
    help=$("$EDUMIG" "$c" --help); rc=$?
    check "edumig $c --help exits 0" $rc
    for opt in $(printf '%s\n' "$help" | sed -n '/^options:/,$p' | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
        grep -q -- "$opt" "$readme"; check "README documents $c $opt" $?
        grep -q -- "$opt" <<<"$man"; check "the man page documents $c $opt" $?
    done
done
grep -q '^edumig [0-9]' <<<"$("$EDUMIG" --version)"; check "edumig --version prints the version" $?
echo "1..$n"
[ "$failed" = 0 ]
