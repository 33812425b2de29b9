#!/usr/bin/env bash
# `make demo-test`: the demo lab end to end, through both entry points.
#
#  1. make demo from nothing (demo-down first): four containers converged by the root site.yml
#  2. the site through its published port: health, a row written through the page's form and
#     read back from PostgreSQL, an experiment scheduled through the front end's published port,
#     run by the worker, its result on the site (tests/demo/check_lab.py)
#  3. make demo again: changed=0 on every host
#  4. group_vars reach: a copy of inventories/demo in which one value is changed
#     (weblab_db_port 5432 -> 5433, added to its group_vars/all.yml; demo_checkout set to this
#     checkout, since the copy's inventory_dir is no longer inside it); the root site.yml run
#     from the checkout (so ansible.cfg applies) against that copy: every role that takes the
#     value has it on the hosts (PostgreSQL listens there, the dumps' unit, the site's, the front
#     end's and the workers' settings), and the lab still works (2.). Shared values live in the
#     inventory's group_vars: the root site.yml only imports weblab.stack.site, and Ansible
#     loads playbook group_vars beside the imported playbook (in the collection), so a
#     group_vars/ beside the root site.yml would not reach the plays.
#  5. Galaxy: the artifact (make build) installed with `ansible-galaxy collection install
#     --offline` into an empty collections path; from a directory outside the checkout,
#     `ansible-playbook weblab.stack.site` with ANSIBLE_COLLECTIONS_PATH set to that path only,
#     against the same changed inventory as 4.: changed=0 on every host, so the installed
#     collection gives the same lab and the value reached every role through both entry
#     points; then 2. again
#  6. make demo-down (WEBLAB_DEMO_KEEP=1 keeps the containers, e.g. to look at a failure)
# WEBLAB_DEMO_TEST_FROM=N (2 to 5) starts at step N, on a lab make demo converged (from 5, the
# inventory of 5. keeps weblab_db_port as the demo inventory has it, since 4. did not change it).
# Exits non-zero at the first failure; prints each step's time and the total.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# As make runs it: the toolchain of .venv, the collection as `make collection` mirrored it.
export PATH="$root/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$root/.build"
secrets=${WEBLAB_DEMO_SECRETS:-${XDG_CONFIG_HOME:-$HOME/.config}/weblab-stack/demo}
site_port=${WEBLAB_DEMO_PORT:-8443}
frontend_port=${WEBLAB_DEMO_FRONTEND_PORT:-8444}
work=$(mktemp -d "${TMPDIR:-/tmp}/weblab-demo-test.XXXXXX")
start=$SECONDS step_start=$SECONDS current=""
times=()

finish() {
    local rc=$?
    if [ "${WEBLAB_DEMO_KEEP:-0}" = 1 ]; then
        echo "demo-test: the containers stay (WEBLAB_DEMO_KEEP=1); make demo-down removes them"
    else
        scripts/demo.sh down || rc=1
    fi
    rm -rf "$work"
    [ -z "$current" ] || times+=("$(printf '%-48s %5s s' "$current" $((SECONDS - step_start)))")
    printf 'demo-test: %s\n' "${times[@]}"
    if [ "$rc" -eq 0 ]; then
        echo "demo-test: PASSED in $((SECONDS - start)) s"
    else
        echo "demo-test: FAILED after $((SECONDS - start)) s"
    fi
    exit "$rc"
}
trap finish EXIT

from=${WEBLAB_DEMO_TEST_FROM:-1}
step() {
    [ -z "$current" ] || times+=("$(printf '%-48s %5s s' "$current" $((SECONDS - step_start)))")
    current=$1 step_start=$SECONDS
    printf '\n===== demo-test: %s =====\n' "$1"
}
fail() { echo "demo-test: FAIL: $*" >&2; exit 1; }

# changed= of every host in the recap of LOG, as "host=N" lines.
recap() { awk '/^PLAY RECAP/ {r = 1; next} r && match($0, /changed=[0-9]+/) {
                   print $1 "=" substr($0, RSTART + 8, RLENGTH - 8)}' "$1"; }
expect_unchanged() {
    local log=$1 what=$2
    recap "$log" | grep -q . || fail "$what: no recap in $log"
    if recap "$log" | grep -qv '=0$'; then
        fail "$what changed something: $(recap "$log" | paste -sd' ')"
    fi
    echo "demo-test: $what: changed=0 on every host ($(recap "$log" | paste -sd' '))"
}
on() { docker exec "weblab-demo-$1" bash -c "$2"; }

if [ "$from" -le 1 ]; then
    step "1. make demo from nothing"
    scripts/demo.sh down
    scripts/demo.sh up
fi

if [ "$from" -le 2 ]; then
    step "2. pages through the published ports"
    python3 tests/demo/check_lab.py "$secrets" "$site_port" "$frontend_port"
fi

if [ "$from" -le 3 ]; then
    step "3. make demo again: no change"
    scripts/demo.sh up
    expect_unchanged .build/demo/converge.log "the second make demo"
fi

# The demo inventory copied for 4. and 5.: its group_vars/all.yml as it is, but for two lines.
# demo_checkout (computed from inventory_dir, which is now the copy's) names this checkout, so
# the examples are still deployed from here; weblab_db_port 5433 is added when 4. runs.
inventory=$work/inventory
cp -r inventories/demo "$inventory"
db_port=$([ "$from" -le 4 ] && echo 5433 || echo "")
python3 - "$inventory/group_vars/all.yml" "$root" "$db_port" <<'EOF'
import json, re, sys
path, checkout, db_port = sys.argv[1:]
text = open(path, encoding="utf-8").read()
text, found = re.subn(r"(?m)^demo_checkout: .*$", lambda _: "demo_checkout: " + json.dumps(checkout), text)
assert found == 1, f"{path}: {found} demo_checkout lines, not one"
assert not re.search(r"(?m)^weblab_db_port:", text), f"{path} sets weblab_db_port already"
if db_port:
    text += f"\n# make demo-test, step 4: the one value changed.\nweblab_db_port: {db_port}\n"
open(path, "w", encoding="utf-8").write(text)
EOF
diff -u inventories/demo/group_vars/all.yml "$inventory/group_vars/all.yml" || true

if [ "$from" -le 4 ]; then
    step "4. one value changed in the inventory's group_vars"
    # The root site.yml from the checkout (ansible.cfg applies), against the changed copy.
    ANSIBLE_DISPLAY_SKIPPED_HOSTS=false scripts/demo.sh playbook -i "$inventory" site.yml | tee "$work/reach.log"
    recap "$work/reach.log"
    # Each role that takes the port has it: PostgreSQL (postgresql), the dumps' unit (backups), the
    # settings of the site, the front end and the workers (app, three times), the workers restarted
    # on them (celery).
    on web 'ss -ltnH "sport = :5433" | grep -q . && ! ss -ltnH "sport = :5432" | grep -q .' ||
        fail "PostgreSQL does not listen on 5433 (only)"
    on web 'systemctl cat weblab-backup-weblab.service | grep -q -- "--port 5433"' ||
        fail "the site's dump unit does not use port 5433"
    # app.env as the app reads it (shell syntax, values single-quoted: DJANGO_DB_PORT='5433').
    # shellcheck disable=SC2016 # expanded on the host, not here
    db_port_in() { printf '. %s/current/.weblab/app.env && test "$DJANGO_DB_PORT" = 5433' "$1"; }
    on web "$(db_port_in /srv/weblab)" || fail "the site's settings do not name port 5433"
    on frontend "$(db_port_in /srv/taskqueue)" || fail "the front end's settings do not name port 5433"
    on worker "$(db_port_in /srv/taskqueue)" || fail "the worker's settings do not name port 5433"
    echo "demo-test: weblab_db_port=5433 reached PostgreSQL, the dumps, the site, the front end and the worker"
    python3 tests/demo/check_lab.py "$secrets" "$site_port" "$frontend_port"
fi

step "5. Galaxy: the artifact installed, weblab.stack.site from outside"
make --no-print-directory build
artifact=.build/dist/weblab-stack-$(sed -n 's/^version: *//p' galaxy.yml).tar.gz
mkdir -p "$work/galaxy/collections"
ANSIBLE_COLLECTIONS_PATH="$work/galaxy/collections" \
    ansible-galaxy collection install --offline -p "$work/galaxy/collections" "$artifact"
cd "$work/galaxy"
export ANSIBLE_COLLECTIONS_PATH="$work/galaxy/collections"
installed=$(ansible-galaxy collection list weblab.stack 2>/dev/null | sed -n 's/^# //p' | head -n1)
[ "$installed" = "$work/galaxy/collections/ansible_collections" ] ||
    fail "weblab.stack is found in '$installed', not the temp collections path"
ANSIBLE_DISPLAY_SKIPPED_HOSTS=false "$root/scripts/demo.sh" playbook -i "$inventory" weblab.stack.site \
    | tee "$work/galaxy.log"
cd "$root"
export ANSIBLE_COLLECTIONS_PATH="$root/.build"
expect_unchanged "$work/galaxy.log" "weblab.stack.site from the installed artifact"
python3 tests/demo/check_lab.py "$secrets" "$site_port" "$frontend_port"

step "6. make demo-down"
# (finish, on exit)
