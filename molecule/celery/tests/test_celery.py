"""weblab.stack.celery with examples/uvsite: tasks sent to RabbitMQ are run by the workers on the
live release as the runtime user; a stop waits for the running task, a killed pool process's
task runs again; an unchanged deploy leaves the workers alone, a new release restarts them;
purge_queue.yml purges only when confirmed.

The tests of one host run in file order (molecule/shared/weblab_hosts_in_parallel.py); each
test that changes something puts the workers back as it found them, so any test also runs alone.
"""

import json
import os
import re
import time
import uuid

import pytest
from weblab_testinfra import PROJECT, exposure, run_playbook, superuser_sql

APP = "uvsite"
DEPLOY = "/srv/uvsite"
RUNTIME_USER = "uvsite-run"
CONFIG = "/etc/weblab/celery/uvsite.json"
START = "/usr/local/libexec/weblab-celery/start"
WORKER = "celery-uvsite-default.service"
BEAT = "celery-uvsite-beat.service"
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")
PURGE = os.path.join(PROJECT, "playbooks", "purge_queue.yml")
# From molecule.yml: celery_time_limit + celery_stop_grace.
STOP_TIMEOUT = 120 + 20


def variables(host):
    return host.ansible.get_variables()


def live(host):
    return os.path.basename(host.file(f"{DEPLOY}/current").linked_to)


def show(host, unit, prop):
    return host.check_output("systemctl show --property %s --value %s", prop, unit)


def main_pid(host, unit=WORKER):
    return int(show(host, unit, "MainPID"))


def journal(host, unit=WORKER, lines=60):
    return host.run("journalctl --unit %s --lines %s --no-pager --output short-precise", unit, str(lines)).stdout


def started_in(host, unit=WORKER):
    """The directory the running process of UNIT started in: weblab_celery.py logs its
    os.getcwd() when a worker starts. (Root in these containers may not read /proc/PID/cwd of a
    sandboxed process.)"""
    invocation = show(host, unit, "InvocationID")
    out = host.check_output("journalctl _SYSTEMD_INVOCATION_ID=%s --no-pager --output cat", invocation)
    found = re.search(r"^weblab-celery: %s from (\S+) with" % APP, out, re.MULTILINE)
    assert found, journal(host, unit)
    return found.group(1)


def workers(host):
    """The worker entries of this platform (molecule.yml, else the role's default)."""
    return variables(host).get("celery_workers", [{"name": "default", "queues": ["celery"]}])


def children(host, pid):
    return host.check_output("cat /proc/%s/task/%s/children", str(pid), str(pid)).split()


def celery(host, *args):
    """A celery command for the app, as the runtime user, through the role's start script (the
    live release, its venv and its environment)."""
    return host.run("runuser -u %s -- " + START + " %s %s" + " %s" * len(args), RUNTIME_USER, DEPLOY, CONFIG, *args)


def send(host, task, *args, queue="celery"):
    out = celery(host, "call", task, "--args", json.dumps(list(args)), "--queue", queue)
    assert out.rc == 0, out.stdout + out.stderr
    return out.stdout.strip()


def note_releases(host, text):
    """The release of each note written with TEXT."""
    rows = superuser_sql(host, "SELECT release FROM notes_note WHERE text = '%s' ORDER BY id" % text, database=APP)
    return rows.split("\n") if rows else []


def wait_for_note(host, text, timeout=90, unit=WORKER):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        releases = note_releases(host, text)
        if releases:
            return releases
        time.sleep(0.5)
    pytest.fail(f"no note '{text}' within {timeout} s; the worker's journal:\n{journal(host, unit)}")


def wait_for_log(host, text, since, timeout=60, unit=WORKER):
    """Wait until UNIT logged TEXT after the systemd timestamp SINCE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = host.run("journalctl --unit %s --since %s --no-pager --output cat", unit, since).stdout
        if text in out:
            return
        time.sleep(0.3)
    pytest.fail(f"'{text}' not logged within {timeout} s; the worker's journal:\n{journal(host, unit)}")


def now(host):
    return host.check_output("date '+@%s.%N'")


def unique(what):
    return f"molecule-{what}-{uuid.uuid4().hex[:12]}"


def queued(host, queue="celery"):
    """Messages waiting in QUEUE of the app's vhost (ready, not reserved by a worker)."""
    out = host.check_output("rabbitmqctl list_queues --quiet --no-table-headers -p %s name messages_ready", APP)
    counts = dict(line.split() for line in out.splitlines() if line.strip())
    return int(counts.get(queue, 0))


def deploy(host, **extra_vars):
    return run_playbook(os.path.join(STEPS, "deploy.yml"), host=host, **extra_vars)


def require_running(host, unit=WORKER):
    if not host.service(unit).is_running:
        host.run("systemctl start %s", unit)
    assert host.service(unit).is_running, journal(host, unit)


# ---- the converged workers --------------------------------------------------------------------

def test_a_task_is_consumed_and_written_by_the_live_release(host):
    require_running(host)
    text = unique("add")
    send(host, "notes.tasks.add_note", text)
    assert wait_for_note(host, text) == [live(host)], journal(host)


def test_the_worker_runs_as_the_runtime_user_in_the_live_release(host):
    require_running(host)
    pid = main_pid(host)
    assert host.check_output("stat -c %%U /proc/%s", str(pid)) == RUNTIME_USER, journal(host)
    assert started_in(host) == f"{DEPLOY}/releases/{live(host)}", journal(host)
    for child in children(host, pid):
        assert host.check_output("stat -c %%U /proc/%s", child) == RUNTIME_USER


def test_the_worker_is_a_plain_celery_worker(host):
    require_running(host)
    assert show(host, WORKER, "Type") == "exec"
    command = host.file(f"/proc/{main_pid(host)}/cmdline").content_string.split("\0")
    # The live release's venv, resolved when the worker started.
    assert command[0] == host.file(f"{DEPLOY}/releases/{live(host)}/.venv").linked_to + "/bin/python", command
    assert "worker" in command and "multi" not in command, command


def test_the_pool_has_the_configured_concurrency(host):
    require_running(host)
    configured = variables(host).get("celery_concurrency", 0)
    expected = configured if configured > 0 else max(1, int(host.check_output("nproc")) // 2)
    # The pool processes start right after the main process; give them a moment.
    deadline = time.monotonic() + 30
    while len(children(host, main_pid(host))) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(children(host, main_pid(host))) == expected, journal(host)


def test_the_stop_timeout_exceeds_the_hard_time_limit(host):
    assert show(host, WORKER, "TimeoutStopUSec") == f"{STOP_TIMEOUT // 60}min {STOP_TIMEOUT % 60}s"
    assert show(host, WORKER, "KillMode") == "mixed"


def test_the_workers_are_sandboxed(host):
    assert exposure(host, WORKER) <= 3.0
    if variables(host).get("celery_beat"):
        assert exposure(host, BEAT) <= 3.0


def test_every_configured_unit_runs_on_the_live_release(host):
    names = [worker["name"] for worker in workers(host)]
    units = [f"celery-{APP}-{name}.service" for name in names]
    if variables(host).get("celery_beat"):
        units.append(BEAT)
    else:
        assert not host.file(f"/etc/systemd/system/{BEAT}").exists
    for unit in units:
        require_running(host, unit)
        assert host.service(unit).is_enabled, unit
        assert started_in(host, unit) == f"{DEPLOY}/releases/{live(host)}", journal(host, unit)


def test_a_task_on_another_queue_goes_to_its_worker(host):
    if "reports" not in [worker["name"] for worker in workers(host)]:
        pytest.skip("one worker on this platform")
    unit = f"celery-{APP}-reports.service"
    require_running(host, unit)
    text = unique("reports")
    since = now(host)
    send(host, "notes.tasks.add_note", text, queue="reports")
    assert wait_for_note(host, text, unit=unit) == [live(host)]
    # The worker of that queue ran it.
    wait_for_log(host, "succeeded", since, unit=unit)


# ---- restarts ---------------------------------------------------------------------------------

def workers_state(host):
    return main_pid(host), show(host, WORKER, "ActiveEnterTimestamp"), live(host)


def test_a_deploy_without_changes_does_not_restart_the_workers(host):
    require_running(host)
    before = workers_state(host)
    rc, output = deploy(host)
    assert rc == 0, output[-3000:]
    if live(host) != before[2]:
        # The new release of an earlier verify (the last tests) was live: this deploy went back
        # to the converged settings; the next one changes nothing.
        before = workers_state(host)
        rc, output = deploy(host)
        assert rc == 0, output[-3000:]
    assert workers_state(host) == before, journal(host)


# ---- stops and kills during a task ------------------------------------------------------------

def test_a_stop_during_a_task_waits_for_it(host):
    require_running(host)
    text = unique("warm")
    since = now(host)
    send(host, "notes.tasks.sleep_then_note", 8, text)
    wait_for_log(host, f"sleep_then_note {text}: sleeping", since)
    started = time.monotonic()
    try:
        stop = host.run("systemctl stop %s", WORKER)
        stopped_after = time.monotonic() - started
        # Read right after the stop returned: the worker wrote it before it exited.
        written = note_releases(host, text)
    finally:
        host.run("systemctl start %s", WORKER)
    assert stop.rc == 0, stop.stderr
    assert written == [live(host)], f"stopped after {stopped_after:.1f} s\n{journal(host)}"
    assert "Warm shutdown" in journal(host, lines=200), journal(host)


def test_a_killed_pool_process_has_its_task_redelivered(host):
    require_running(host)
    text = unique("killed")
    since = now(host)
    send(host, "notes.tasks.sleep_then_note", 5, text)
    wait_for_log(host, f"sleep_then_note {text}: sleeping", since)
    pid = main_pid(host)
    for child in children(host, pid):
        host.run("kill -KILL %s", child)
    # The task ran again in a new pool process and wrote its note once.
    assert wait_for_note(host, text) == [live(host)], journal(host)
    assert main_pid(host) == pid, "the worker itself restarted"
    assert "signal 9 (SIGKILL)" in host.run("journalctl --unit %s --since %s --no-pager", WORKER, since).stdout


# ---- purge_queue.yml --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def waiting_tasks(host):
    """Two tasks waiting in the queue while the worker is stopped; the worker runs again after."""
    require_running(host)
    host.run("systemctl stop %s", WORKER)
    texts = [unique("purged"), unique("purged")]
    try:
        for text in texts:
            send(host, "notes.tasks.add_note", text)
        deadline = time.monotonic() + 30
        while queued(host) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        yield texts
    finally:
        host.run("systemctl start %s", WORKER)


def purge(host, **extra_vars):
    return run_playbook(PURGE, host=host, purge_queue_hosts="all", purge_queue_app=APP, **extra_vars)


def test_the_purge_refuses_without_confirmation(host, waiting_tasks):
    assert queued(host) == 2
    rc, output = purge(host, purge_queue_name="celery")
    assert rc != 0, output[-2000:]
    assert "Refusing to purge" in output, output[-2000:]
    rc, output = purge(host, purge_queue_name="celery", purge_queue_confirm="reports")
    assert rc != 0, output[-2000:]
    assert queued(host) == 2


def test_the_purge_empties_the_confirmed_queue(host, waiting_tasks):
    rc, output = purge(host, purge_queue_name="celery", purge_queue_confirm="celery")
    assert rc == 0, output[-3000:]
    assert "Purged 2 messages" in output, output[-3000:]
    assert queued(host) == 0
    host.run("systemctl start %s", WORKER)
    time.sleep(3)
    for text in waiting_tasks:
        assert note_releases(host, text) == [], journal(host)


# ---- a new release ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redeployed(host):
    require_running(host)
    before = {"live": live(host), "pid": main_pid(host)}
    rc, output = deploy(host, uvsite_environment_extra={"MOLECULE_REDEPLOY": uuid.uuid4().hex})
    assert rc == 0, output[-3000:]
    return before


def test_a_new_release_restarts_the_workers(host, redeployed):
    assert live(host) != redeployed["live"]
    assert main_pid(host) != redeployed["pid"], journal(host)
    assert started_in(host) == f"{DEPLOY}/releases/{live(host)}", journal(host)


def test_tasks_after_a_new_release_report_it(host, redeployed):
    text = unique("redeployed")
    send(host, "notes.tasks.add_note", text)
    assert wait_for_note(host, text) == [live(host)], journal(host)
