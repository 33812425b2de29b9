#!/usr/bin/env bash
# make vagrant-test: prove that `vagrant up --provider=docker` provisions the whole lab.
#
# One machine in every group (WEBLAB_VAGRANT_LAYOUT=all-in-one), a container of images/vagrant
# (the test image with sshd and the vagrant user), provisioned by Vagrant's ansible provisioner
# with the root site.yml; then scripts/vagrant-check.py runs inside it (the site's page and
# /health/ through nginx, the front end's /health/, an experiment through the front end, the
# worker and back to the site's page), the site's /health/ is fetched from this machine through
# the forwarded loopback port, and `vagrant destroy -f` removes the machine whatever happened.
# Installs Vagrant (Debian's package) when it is missing. Prints each phase's time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export WEBLAB_VAGRANT_LAYOUT=all-in-one
secrets=${WEBLAB_VAGRANT_SECRETS:-${XDG_CONFIG_HOME:-$HOME/.config}/weblab-stack/vagrant}
machine=weblab

say() { printf '\n==> vagrant-test: %s\n' "$*"; }
command -v vagrant >/dev/null 2>&1 || scripts/apt-install.sh vagrant

start=$(date +%s)
phase=$start
lap() { local now; now=$(date +%s); say "$1: $((now - phase)) s"; phase=$now; }
cleanup() {
    local rc=$?
    phase=$(date +%s)
    vagrant destroy -f >/dev/null 2>&1 || true
    lap "vagrant destroy -f"
    say "$([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
    exit "$rc"
}
trap cleanup EXIT

# Mitogen carries the provisioner's tasks over SSH, as it carries the Molecule scenarios' and the
# demo's (one Python process on the machine for the whole run instead of one per task); the
# interpreter is named, since Mitogen's discovery would start a connection per task. The
# provisioner passes this environment on to ansible-playbook. WEBLAB_VAGRANT_MITOGEN=0: Ansible's
# own strategy, as a plain `vagrant up` runs it.
if [ "${WEBLAB_VAGRANT_MITOGEN:-1}" = 1 ]; then
    ANSIBLE_STRATEGY_PLUGINS=$(.venv/bin/python -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))')/plugins/strategy
    export ANSIBLE_STRATEGY_PLUGINS ANSIBLE_STRATEGY=mitogen_linear ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3
fi

say "vagrant up --provider=docker (layout $WEBLAB_VAGRANT_LAYOUT)"
vagrant up --provider=docker
lap "vagrant up (build, boot, converge)"

say "checks inside the machine"
# The token goes in on the command line of the machine's own Python, never to this output.
vagrant ssh "$machine" -c "python3 - '$(cat "$secrets/tq-api-token")'" <scripts/vagrant-check.py
lap "checks inside"

say "the site's /health/ through the forwarded loopback port"
# `vagrant port` is not supported by the docker provider: ask Docker (127.0.0.1:PORT).
port=$(docker port "weblab-vagrant-$machine" 443/tcp | head -n 1)
port=${port##*:}
curl --fail --silent --show-error --cacert "$secrets/tls/ca.crt" "https://localhost:$port/health/" \
    | python3 -c 'import json, sys; body = json.load(sys.stdin); print(body); sys.exit(body["status"] != "ok")'
lap "forwarded port"
