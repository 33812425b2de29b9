#!/usr/bin/env bash
# `make test`: set-up, then every check; each check runs even when an earlier one failed.
# Ends with a summary table and a closing "N passed, N failed" line; exits non-zero on any
# failure. Usage: test-all.sh SCENARIO...
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

names=() results=() times=()
run() {
    local name=$1; shift
    local start=$SECONDS
    printf '\n===== %s =====\n' "$name"
    if make --no-print-directory "$@"; then results+=(pass); else results+=(FAIL); fi
    names+=("$name") times+=($((SECONDS - start)))
}
summary() {
    local passed=0 failed=0 i
    printf '\n===== summary =====\n'
    for i in "${!names[@]}"; do
        printf '%-22s %-5s %5ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
        if [ "${results[$i]}" = pass ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    done
    printf 'total %ss\n' "$SECONDS"
    printf '%d passed, %d failed\n' "$passed" "$failed"
    [ "$failed" -eq 0 ]
}

# Set-up: without these nothing else can run, so stop at the first failure.
for step in venv engine images collection; do
    run "setup: $step" "$step"
    if [ "${results[-1]}" != pass ]; then summary; exit 1; fi
done

run yamllint yamllint
run ansible-lint ansible-lint
run unit unit
if [ -d tests/integration ]; then run integration integration; fi
run sanity sanity
for scenario in "$@"; do
    run "molecule: $scenario" "molecule-$scenario"
done
summary
