"""Helpers shared by the scenarios' testinfra tests (on PYTHONPATH through the verifier's env in
.config/molecule/config.yml)."""

import json
import os
import re
import subprocess

# The inventory directory Molecule wrote: hosts and the scenario's group_vars.
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", "."))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")


def run_playbook(playbook, *options, host=None, **extra_vars):
    """ansible-playbook PLAYBOOK against the Molecule inventory (only HOST, a testinfra host,
    when given), with extra ansible-playbook OPTIONS and EXTRA_VARS; returns (rc, output)."""
    argv = ["ansible-playbook", "-i", INVENTORY, *options]
    if host is not None:
        argv += ["--limit", host.backend.get_hostname()]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    result = subprocess.run(argv + [playbook], capture_output=True, text=True, check=False, timeout=900)
    return result.returncode, result.stdout + result.stderr


def superuser_sql(host, query, database="postgres", port=None):
    """psql as the postgres superuser over the Unix socket (peer), as Ansible administers; the
    output without its trailing newline. A failed statement fails the test with psql's error."""
    port_option = "-p %s " % port if port else ""
    out = host.run("runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 " + port_option + "-d %s -c %s",
                   database, query)
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def exposure(host, unit):
    """The overall exposure score `systemd-analyze security` gives UNIT on HOST (0.0 to 10.0)."""
    out = host.run("systemd-analyze security --no-pager %s", unit)
    assert out.rc == 0, out.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert score, out.stdout[-500:]
    return float(score.group(1))


def assert_no_secret_in_vvv(host, playbook, secrets):
    """Run PLAYBOOK with -vvv against HOST and fail when any of SECRETS shows in its output."""
    rc, output = run_playbook(playbook, "-vvv", host=host)
    assert rc == 0, output[-3000:]
    for secret in secrets:
        assert secret not in output, "%s... shows in the -vvv output" % secret[:12]
