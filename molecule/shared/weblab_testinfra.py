"""Helpers shared by the scenarios' testinfra tests (on PYTHONPATH through the verifier's env in
.config/molecule/config.yml)."""

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile

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
    # Plain text for the tests that read the output, whatever colour the caller's Ansible is set to
    # (Molecule forces colour outside `make`).
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true")
    result = subprocess.run(argv + [playbook], capture_output=True, text=True, check=False, timeout=900, env=env)
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


def site_copy(changes):
    """examples/site copied to a fresh directory, with CHANGES: {path: text} written, or
    {path: (old, new)} replaced in the file; the copy's path (a release source for
    app_source_path)."""
    target = os.path.join(tempfile.mkdtemp(prefix="weblab-site-"), "site")
    shutil.copytree(os.path.join(PROJECT, "examples", "site"), target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    for path, change in changes.items():
        full = os.path.join(target, path)
        if isinstance(change, tuple):
            with open(full, encoding="utf-8") as stream:
                text = stream.read()
            assert change[0] in text, (path, change[0])
            text = text.replace(*change)
        else:
            text = change
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as stream:
            stream.write(text)
    return target


# Held on the controller while a deploy runs under load, by every scenario that loads a site
# (webservers, webfarm): two such loads with their deploys overload a 2-core machine (answers
# took 5 s and more, requests timed out), also when make test runs two scenarios side by side.
LOAD_LOCK = "/tmp/weblab-molecule-load.lock"


@contextlib.contextmanager
def one_load_at_a_time():
    with open(LOAD_LOCK, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
