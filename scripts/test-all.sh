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
# Molecule scenarios, the other checks and the whole-lab checks (make demo-test: the demo and the
# Galaxy install; make vagrant-test), two at a time, longest first (two keep both cores busy; the
# suite is CPU-bound, so more lanes would not shorten it). A scenario in SOLO runs alone first. Each one's output is
# printed whole when it ends.
SOLO=" "
# Ordered by their times in a fresh-clone run (2026-12-04, 55 minutes in all).
LONGEST_FIRST="webservers site demo-test webfarm backups app rabbitmq project celery nginx
               vagrant-test unit postgresql sanity integration common redis memcached"
# Make targets of their own that run in the lanes beside the scenarios.
EXTRA=" unit sanity demo-test vagrant-test "
if [ -d tests/integration ]; then EXTRA+="integration "; fi
LANES=2
logs=.build/logs
mkdir -p "$logs"
# label ITEM SCENARIO...: its name in the summary; target ITEM SCENARIO...: its make target.
label() { case " ${*:2} " in *" $1 "*) echo "molecule: $1";; *) echo "$1";; esac; }
target() { case " ${*:2} " in *" $1 "*) echo "molecule-$1";; *) echo "$1";; esac; }
for scenario in "$@"; do
    case "$SOLO" in *" $scenario "*) run "molecule: $scenario" "molecule-$scenario";; esac
done
# Scenarios missing from LONGEST_FIRST go last.
queue=()
for item in $LONGEST_FIRST "$@"; do
    case " $* $EXTRA " in *" $item "*) ;; *) continue;; esac
    case "$SOLO ${queue[*]} " in *" $item "*) continue;; esac
    queue+=("$item")
done
declare -A lane_name=() lane_start=()
finish() {
    local pid=$1 rc=$2 item=${lane_name[$1]} name
    name=$(label "$item" "${SCENARIOS[@]}")
    printf '\n===== %s =====\n' "$name"
    cat "$logs/$item.log"
    names+=("$name") times+=($((SECONDS - lane_start[$pid])))
    if [ "$rc" -eq 0 ]; then results+=(pass); else results+=(FAIL); fi
    unset "lane_name[$pid]" "lane_start[$pid]"
}
SCENARIOS=("$@")
for item in "${queue[@]}"; do
    while [ "${#lane_name[@]}" -ge "$LANES" ]; do
        wait -n -p done_pid "${!lane_name[@]}"; rc=$?
        finish "$done_pid" "$rc"
    done
    make --no-print-directory "$(target "$item" "${SCENARIOS[@]}")" >"$logs/$item.log" 2>&1 &
    lane_name[$!]=$item lane_start[$!]=$SECONDS
done
while [ "${#lane_name[@]}" -gt 0 ]; do
    wait -n -p done_pid "${!lane_name[@]}"; rc=$?
    finish "$done_pid" "$rc"
done
summary
