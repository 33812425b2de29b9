"""Two web servers behind the balancers group's nginx on farm-db, one database there.

The site answers through the entry point from both web servers, with rows from PostgreSQL on
the other host. Then deploys of playbooks/webservers.yml (--tags webservers, every web server)
while bench/deploy/loadgen.py sends 10 requests/s to /health/ through the entry point:

1. a new release with a migration: no request fails, both hosts serve it, and the migration ran
   once (one host ran the migrate task, the migration table and the migration's own row say so);
2. a release whose code does not import on farm-web2: it fails there before any switch, and
   goes live nowhere; deployed again to farm-web1 alone, it is refused there, because farm-web2
   marked that revision failed;
3. a release whose health check fails on farm-web2: farm-web1 switches to it, farm-web2 stays on
   the release of 1. and marks it failed, and no request fails;
4. playbooks/rollback.yml back to the release of 1.: farm-web1 goes back to it and proves it
   serves before farm-web2 is rolled back (farm-web2 serves it already), and no request fails.
Each step is a module-scoped fixture that keeps what it saw."""

import json
import os
import re
import subprocess
import time

import pytest
from weblab_lab import host_fixture, http
from weblab_testinfra import PROJECT, one_load_at_a_time, run_playbook, site_copy, superuser_sql

DEPLOY = "/srv/weblab"
LOADGEN = os.path.join(PROJECT, "bench", "deploy", "loadgen.py")
WEBSERVERS = os.path.join(PROJECT, "playbooks", "webservers.yml")
ROLLBACK = os.path.join(PROJECT, "playbooks", "rollback.yml")
LG = "/root/weblab-loadgen"
ENTRY = "farm-db-debian12"
WEB2 = "farm-web2-debian12"
# A migration of the new release that leaves a row each time it runs.
MIGRATION = '''from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("lab", "0002_result")]
    operations = [migrations.RunSQL(
        "CREATE TABLE IF NOT EXISTS lab_farm_runs (ran timestamptz NOT NULL DEFAULT now());"
        " INSERT INTO lab_farm_runs DEFAULT VALUES;",
        "DROP TABLE lab_farm_runs;")]
'''
MIGRATED = {"lab/migrations/0003_farm.py": MIGRATION, "lab/static/lab/farm.txt": "farm\n"}
ON_WEB2 = "__import__('socket').gethostname() == %r" % WEB2

db_host = host_fixture("farm-db-debian12")
web1_host = host_fixture("farm-web1-debian12")
web2_host = host_fixture("farm-web2-debian12")


def live(host):
    return os.path.basename(host.file(DEPLOY + "/current").linked_to)


def state_of(host, release):
    manifest = json.loads(host.file(DEPLOY + "/releases.json").content_string)
    return {item["name"]: item["state"] for item in manifest["releases"]}.get(release)


def site_sql(db, query):
    return superuser_sql(db, query, database="weblab")


def access_lines(host):
    return int(host.run("wc -l < /var/log/nginx/weblab.access.log").stdout.strip() or 0)


def wait_for_file(host, path, seconds, failure):
    end = time.monotonic() + seconds
    while not host.file(path).exists:
        if time.monotonic() > end:
            pytest.fail("%s: %s" % (failure, host.file(LG + ".log").content_string))
        time.sleep(0.1)


def deploy_under_load(db, source, *options, playbook=WEBSERVERS, **extra_vars):
    """Deploy SOURCE to the web servers (or run another PLAYBOOK with EXTRA_VARS) while the entry
    point gets 10 requests/s, each given 30 s (a loaded CI machine answers slowly; a request the
    deploy drops fails at once); (rc, output, load report)."""
    if source is not None:
        extra_vars["app_source_path"] = source
    with one_load_at_a_time():
        return _deploy_under_load(db, playbook, options, extra_vars)


def _deploy_under_load(db, playbook, options, extra_vars):
    subprocess.run(["docker", "cp", LOADGEN, "%s:%s.py" % (ENTRY, LG)], check=True)
    db.run("rm -f %s.ready %s.stop %s.json", LG, LG, LG)
    started = db.run(
        "setsid nohup python3 %s.py --url http://127.0.0.1/health/ --host weblab.test --rate 10 "
        "--timeout 30 --duration 900 --ready-file %s.ready --stop-file %s.stop --output %s.json > %s.log 2>&1 < /dev/null &",
        LG, LG, LG, LG, LG)
    assert started.rc == 0, started.stderr
    wait_for_file(db, LG + ".ready", 10, "the load generator did not start")
    time.sleep(1)
    rc, output = run_playbook(playbook, "--tags", "webservers", *options, **extra_vars)
    time.sleep(2)
    db.run("touch %s.stop", LG)
    wait_for_file(db, LG + ".json", 30, "no load report (playbook rc=%d, %s)" % (rc, output[-2000:]))
    report = json.loads(db.file(LG + ".json").content_string)
    report.pop("records", None)
    return rc, output, report


def results(output):
    """[(task header, host)] of every result line in a playbook's OUTPUT, in order (not the
    skipped ones)."""
    seen, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        else:
            found = re.match(r"(ok|changed|failed|fatal): \[([^\]]+)\]", line)
            if found:
                seen.append((task, found.group(2)))
    return seen


def task_hosts(output, task):
    """The hosts with a result line under TASK in a playbook's OUTPUT (not the skipped ones)."""
    return [host for header, host in results(output) if task in header]


def flat(output):
    return " ".join(output.replace("\\", "").split())


def test_entry_point_passes_requests_to_both_web_servers(db, web1, web2):
    before = access_lines(web1), access_lines(web2)
    answers = http(db, "GET", f"https://{ENTRY}/health/", body=json.dumps([""] * 20), insecure=True)
    assert [status for status, _server in answers] == [200] * 20, answers
    after = access_lines(web1), access_lines(web2)
    assert after[0] > before[0] and after[1] > before[1], (before, after)


def test_page_through_the_entry_point_shows_rows_from_postgresql(db):
    name = "farm-%d" % time.time_ns()
    site_sql(db, f"INSERT INTO lab_experiment (name, created, release) VALUES ('{name}', now(), 'test')")
    for _attempt in range(4):  # both web servers, whichever answers
        [(status, body)] = http(db, "GET", f"https://{ENTRY}/", insecure=True)
        assert status == 200, body
        assert name in body


def test_database_listens_for_the_web_servers_only(db):
    hba = db.run("runuser -u postgres -- psql -X -At -c 'SHOW hba_file'").stdout.strip()
    entries = db.file(hba).content_string
    for web in ("farm-web1-debian12", "farm-web2-debian12"):
        address = db.run("getent hosts %s", web).stdout.split()[0]
        assert re.search(r"host\s+weblab\s+weblab\s+%s/32\s+scram-sha-256" % re.escape(address), entries), entries


@pytest.fixture(scope="module")
def migrated(db, web1, web2):
    before = live(web1), live(web2)
    rc, output, report = deploy_under_load(db, site_copy(MIGRATED))
    return rc, output, report, before, (live(web1), live(web2))


def test_new_release_goes_live_on_both(migrated):
    rc, output, _report, before, after = migrated
    assert rc == 0, output[-3000:]
    assert after[0] == after[1] and after[0] != before[0], (before, after)


def test_no_request_fails_during_the_deploy(migrated):
    _rc, _output, report, _before, _after = migrated
    assert report["totals"]["sent"] > 0, report["totals"]
    assert report["totals"]["failed"] == 0, report["totals"]


def test_migrations_ran_once(db, migrated):
    _rc, output, _report, _before, _after = migrated
    assert len(task_hosts(output, "Apply the database migrations")) == 1, output[-3000:]
    assert site_sql(db, "SELECT count(*) FROM django_migrations WHERE app = 'lab' AND name = '0003_farm'") == "1"
    assert site_sql(db, "SELECT count(*) FROM lab_farm_runs") == "1"


def test_hosts_switched_one_after_the_other(migrated):
    _rc, output, _report, _before, _after = migrated
    switched = task_hosts(output, "Switch current to the release")
    assert switched == ["farm-web1-debian12", "farm-web2-debian12"], output[-3000:]


@pytest.fixture(scope="module")
def broken_on_web2(db, web1, web2, migrated):
    """A release whose code does not import on farm-web2; then the same, to farm-web1 alone."""
    source = site_copy(dict(MIGRATED, **{"lab/views.py": (
        "from django.conf import settings\n",
        "from django.conf import settings\nif %s:\n    raise ImportError('weblab_farm_broken_on_web2')\n" % ON_WEB2)}))
    before = live(web1), live(web2)
    rc, output, report = deploy_under_load(db, source)
    again_rc, again = run_playbook(WEBSERVERS, "--tags", "webservers", "--limit", "farm-web1-debian12",
                                   app_source_path=source)
    return rc, output, report, before, (live(web1), live(web2)), again_rc, again


def test_release_failing_on_web2_before_the_switch_goes_live_nowhere(broken_on_web2):
    rc, output, report, before, after, _again_rc, _again = broken_on_web2
    assert rc != 0
    assert "weblab_farm_broken_on_web2" in output
    assert after == before, (before, after)
    assert "this deploy failed on %s" % WEB2 in flat(output), output[-3000:]
    assert report["totals"]["failed"] == 0, report["totals"]


def test_release_another_host_marked_failed_is_refused(broken_on_web2):
    _rc, _output, _report, before, _after, again_rc, again = broken_on_web2
    assert again_rc != 0
    assert "was marked failed on %s" % WEB2 in flat(again), again[-3000:]


@pytest.fixture(scope="module")
def sick_on_web2(db, web1, web2, broken_on_web2):
    """A release whose health check fails on farm-web2 only."""
    source = site_copy(dict(MIGRATED, **{"lab/views.py": (
        "return JsonResponse(body, status=status)",
        "return JsonResponse(body, status=500 if %s else status)" % ON_WEB2)}))
    before = live(web1), live(web2)
    rc, output, report = deploy_under_load(db, source)
    return rc, output, report, before, (live(web1), live(web2))


def test_release_failing_on_web2_stops_the_rollout_there(web2, sick_on_web2):
    rc, output, report, before, after = sick_on_web2
    assert rc != 0
    assert after[0] != before[0], (before, after)
    assert after[1] == before[1], (before, after)
    assert state_of(web2, after[0]) == "failed"
    assert "answered 500" in flat(output), output[-3000:]
    assert report["totals"]["failed"] == 0, report["totals"]


@pytest.fixture(scope="module")
def rolled_back(db, web1, web2, migrated, sick_on_web2):
    """rollback.yml to the release of `migrated`, which farm-web2 still serves."""
    to = migrated[4][1]
    before = live(web1), live(web2)
    rc, output, report = deploy_under_load(db, None, playbook=ROLLBACK, app_rollback_release=to)
    return rc, output, report, before, (live(web1), live(web2)), to


def test_rollback_returns_every_web_server_to_the_release(rolled_back):
    rc, output, report, before, after, to = rolled_back
    assert rc == 0, output[-3000:]
    assert before[0] != to and after == (to, to), (before, after, to)
    assert report["totals"]["failed"] == 0, report["totals"]


def test_rollback_goes_host_by_host(rolled_back):
    _rc, output, _report, _before, _after, _to = rolled_back
    seen = results(output)
    proved = [i for i, (task, host) in enumerate(seen)
              if "Check that the app server serves release" in task and host == "farm-web1-debian12"]
    web2 = [i for i, (task, host) in enumerate(seen)
            if "Roll back to the previous good release" in task and host == WEB2]
    assert proved and web2 and proved[0] < web2[0], output[-3000:]
