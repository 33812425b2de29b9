"""Behaviour of weblab.stack.backups and the backup and restore playbooks (see ../molecule.yml).

The restore section tells an operator's day in file order: rows are written, dumped, more rows
written, the latest dump restored. Those steps check the state they build on on the host and
stop with "precondition not met" naming the test that makes it; every other test derives what
it needs from the host (the status file names the timer's last dump) or makes it. No state is
shared between tests in this file: any test runs alone, or fails saying why it cannot.
Damaged dumps and a restore that fails midway must leave the database alone; the timer must
fire on its own. Playbooks run with ansible-playbook against the Molecule inventory, limited to
the host under test unless a test says otherwise. The playbooks take the port, the backup
directory and the databases from the lab's weblab_* values (non-default here: ../molecule.yml):
their dumps must land in BACKUP_DIR and their restores find them there.
"""

import hashlib
import json
import os
import re
import time

import pytest
import testinfra
from weblab_testinfra import INVENTORY, PROJECT, exposure, run_playbook, superuser_sql

PLAYBOOKS = os.path.join(PROJECT, "playbooks")
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")
# weblab_backup_dir and weblab_db_port of ../molecule.yml.
BACKUP_DIR = "/srv/pg-dumps"
PORT = 5433
STATUS_DIR = "/var/lib/weblab-stack/backups"
DB = "labdata"
# The first databases host of a lab with workers: it keeps the task queue's database (labnotes)
# as well; the playbooks see only labdata on the other host.
TQ_HOST, TQ_DB = "backups-debian12", "labnotes"
APP = ("labdata", "molecule-db-secret")
SERVICE = f"weblab-backup-{DB}.service"
TIMER = f"weblab-backup-{DB}.timer"
RESTORE_TEST = f"weblab-restore-test-{DB}.service"
RESTORE_TEST_TIMER = f"weblab-restore-test-{DB}.timer"
# backups_restore_test_schedule's default (../molecule.yml keeps it).
RESTORE_TEST_SCHEDULE = "Sun *-*-* 05:15:00"
DUMP_NAME = re.compile(r"^(?P<db>[A-Za-z0-9_-]+?)-(?P<time>\d{8}T\d{6}Z)(?:-(?P<label>[A-Za-z0-9._-]+))?"
                       r"\.(?P<ext>dump|dir|sql)$")


def require(host, condition, what):
    """Stop a test whose precondition does not hold on HOST, saying which and what makes it."""
    if not condition:
        pytest.fail(f"precondition not met on {host.backend.get_hostname()}: {what}", pytrace=False)


def database_hosts():
    """Every host of the inventory's `databases` group, the hosts restore.yml runs on (the group
    is in the inventory directory's `hosts`, not in MOLECULE_INVENTORY_FILE)."""
    return testinfra.get_hosts(["ansible://databases"], ansible_inventory=INVENTORY)


def sql(host, query, database=DB):
    return superuser_sql(host, query, database, PORT)


def app_sql(host, query, database=DB):
    """psql as the app's user over TCP with its password, as the app connects."""
    return host.run("PGPASSWORD=%s psql -X -w -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %s -U %s -d %s -c %s",
                    APP[1], str(PORT), APP[0], database, query)


def rows(host):
    """(count, sum) of the sample rows: equal pairs mean the same rows."""
    count, total = sql(host, "SELECT count(*), coalesce(sum(n), 0) FROM samples").split("|")
    return int(count), int(total)


def has_table(host, table, database=DB):
    return sql(host, f"SELECT to_regclass('{table}') IS NOT NULL", database) == "t"


def databases(host):
    return sorted(sql(host, "SELECT datname FROM pg_database WHERE NOT datistemplate", "postgres").splitlines())


def lab_state(host):
    """What any restore of DB changes: the list of databases (the replaced one is kept), the oid
    of DB (the restored database is a new one) and the sample rows, when there are any."""
    oid = sql(host, f"SELECT oid FROM pg_database WHERE datname = '{DB}'", "postgres")
    return databases(host), oid, rows(host) if has_table(host, "samples") else None


def replaced_databases(host):
    """The databases restores set aside on HOST, oldest first (their names end in the time)."""
    return [name for name in databases(host) if name.startswith(f"{DB}_replaced_")]


def dumps(host, database=DB, label=None):
    """Dump names of DATABASE in the backup directory, oldest first."""
    names = host.check_output("ls -1 %s", BACKUP_DIR).splitlines()
    found = [m for m in map(DUMP_NAME.match, names) if m and m["db"] == database
             and (label is None or m["label"] == label)]
    return [m.group(0) for m in sorted(found, key=lambda m: (m["time"], m.group(0)))]


def journal(host, unit=SERVICE):
    return "\n--- journal ---\n" + host.run("journalctl --no-pager -n 30 -u %s", unit).stdout


def status(host, database=DB):
    path = f"{STATUS_DIR}/{database}.json"
    return json.loads(host.file(path).content_string) if host.file(path).exists else None


def start_service(host, unit=SERVICE):
    """Run a backup service now, as its timer does, and wait for it to finish successfully."""
    out = host.run("systemctl start %s", unit)
    assert out.rc == 0, out.stderr + journal(host, unit)
    assert host.check_output("systemctl show -P Result %s", unit) == "success", journal(host, unit)


def timer_dump(host):
    """The newest dump of DB the timer's service made (its status file names it); the service
    runs once first when it never has on HOST."""
    if status(host) is None:
        start_service(host)
    return os.path.basename(status(host)["file"])


# What postgresql_restore picks for `latest` (with LABEL): the installed backup code decides.
LATEST = """
import sys
sys.path.insert(0, '/usr/local/lib/weblab-stack')
import pg_backup
chosen = pg_backup.choose_latest(pg_backup.scan(sys.argv[1], sys.argv[2]), sys.argv[3] or None)
print(chosen['name'] if chosen else '')
"""


def latest_verified(host, label=""):
    """Name of the dump `restore.yml` restores as `latest` (of LABEL), or "" when there is none."""
    return host.check_output("runuser -u postgres -- python3 -c %s %s %s %s", LATEST, BACKUP_DIR, DB, label)


def sha256_on_host(host, path):
    return host.check_output("sha256sum %s", path).split()[0]


# --- the role's configuration ---------------------------------------------------------------

def test_timer_is_enabled_and_waiting(host):
    timer = host.service(TIMER)
    assert timer.is_enabled
    assert timer.is_running, journal(host, TIMER)


def test_timer_starts_the_dump_service(host):
    assert host.check_output("systemctl show -P Triggers %s", TIMER) == SERVICE


def test_timer_is_persistent_with_a_randomized_delay(host):
    shown = host.check_output("systemctl show -p Persistent -p RandomizedDelayUSec -p TimersCalendar %s", TIMER)
    assert "Persistent=yes" in shown, shown
    assert "RandomizedDelayUSec=30min" in shown, shown
    assert "03:15:00" in shown, shown


def test_units_pass_systemd_verification(host):
    out = host.run("systemd-analyze verify /etc/systemd/system/%s /etc/systemd/system/%s", SERVICE, TIMER)
    assert out.rc == 0, out.stdout + out.stderr


def test_service_runs_the_backup_code_as_postgres(host):
    shown = host.check_output("systemctl show -p User -p Type -p ExecStart %s", SERVICE)
    assert "User=postgres" in shown, shown
    assert "Type=oneshot" in shown, shown
    assert "/usr/local/lib/weblab-stack/pg_backup.py dump" in shown, shown


@pytest.mark.parametrize("unit", [SERVICE, "weblab-backup-labnotes.service"])
def test_dump_service_exposure_is_at_most_3(host, unit):
    """The sandbox of the dump units (the timers' dumps below run in it, so it does not stop
    them): systemd-analyze security gave the unsandboxed service 9.0."""
    score = exposure(host, unit)
    assert score <= 3.0, "%s: exposure %s" % (unit, score)


@pytest.mark.parametrize("database", [DB, "labnotes"])
def test_restore_test_timer_is_enabled_with_the_weekly_schedule(host, database):
    timer = f"weblab-restore-test-{database}.timer"
    shown = host.check_output("systemctl show -p UnitFileState -p ActiveState -p TimersCalendar %s", timer)
    assert "UnitFileState=enabled" in shown, shown + journal(host, timer)
    assert "ActiveState=active" in shown, shown + journal(host, timer)
    assert f"OnCalendar={RESTORE_TEST_SCHEDULE} ;" in shown, shown


def test_restore_test_timer_starts_the_test_restore_service(host):
    assert host.check_output("systemctl show -P Triggers %s", RESTORE_TEST_TIMER) == RESTORE_TEST


def test_restore_test_service_takes_the_dumps_lock(host):
    """One dump or test restore at a time on the host: both run under flock on the same file."""
    lock = f"/usr/bin/flock {STATUS_DIR}/.lock "
    for unit in (SERVICE, RESTORE_TEST):
        shown = host.check_output("systemctl show -p User -p ExecStart %s", unit)
        assert "User=postgres" in shown and lock in shown, (unit, shown)
    assert "/usr/local/lib/weblab-stack/pg_backup.py test-restore" in shown, shown


@pytest.mark.parametrize("database", [DB, "labnotes"])
def test_restore_test_service_exposure_is_at_most_3(host, database):
    """The dump service's sandbox (a shared macro of the templates), the test restores below run in it."""
    unit = f"weblab-restore-test-{database}.service"
    score = exposure(host, unit)
    assert score <= 3.0, "%s: exposure %s" % (unit, score)


def test_second_database_has_its_own_timer(host):
    assert host.service("weblab-backup-labnotes.timer").is_running


def test_retired_database_has_no_units(host):
    assert not host.file("/etc/systemd/system/weblab-backup-retired.timer").exists
    assert not host.file("/etc/systemd/system/weblab-backup-retired.service").exists


def test_retired_database_has_no_test_restore_units(host):
    assert not host.file("/etc/systemd/system/weblab-restore-test-retired.timer").exists
    assert not host.file("/etc/systemd/system/weblab-restore-test-retired.service").exists


def test_backup_directory_is_private_to_postgres(host):
    directory = host.file(BACKUP_DIR)
    assert directory.is_directory
    assert (directory.user, directory.group, directory.mode) == ("postgres", "postgres", 0o700)


def test_installed_backup_code_is_the_collections(host):
    with open(os.path.join(PROJECT, "plugins", "module_utils", "pg_backup.py"), "rb") as handle:
        expected = hashlib.sha256(handle.read()).hexdigest()
    assert sha256_on_host(host, "/usr/local/lib/weblab-stack/pg_backup.py") == expected


# --- the lab's data ---------------------------------------------------------------------------

def test_rows_are_written(host):
    out = app_sql(host, "DROP TABLE IF EXISTS samples; CREATE TABLE samples (n integer PRIMARY KEY, note text); "
                        "INSERT INTO samples SELECT g, md5(g::text) FROM generate_series(1, 100) AS g;")
    assert out.rc == 0, out.stderr
    assert rows(host) == (100, 5050)
    out = app_sql(host, "DROP TABLE IF EXISTS notes; CREATE TABLE notes (body text); "
                        "INSERT INTO notes SELECT repeat(md5(g::text), 20) FROM generate_series(1, 500) AS g;",
                  "labnotes")
    assert out.rc == 0, out.stderr


def test_an_empty_database_dumps(host):
    out = host.run("runuser -u postgres -- createdb -p %s labempty && runuser -u postgres -- mkdir -p /tmp/empty-dumps "
                   "&& runuser -u postgres -- python3 /usr/local/lib/weblab-stack/pg_backup.py dump "
                   "--dir /tmp/empty-dumps --database labempty --port %s; rc=$?; "
                   "runuser -u postgres -- dropdb -p %s labempty; rm -rf /tmp/empty-dumps; exit $rc",
                   str(PORT), str(PORT), str(PORT))
    assert out.rc == 0, out.stdout + out.stderr


# --- what the timer starts ------------------------------------------------------------------

def test_timer_service_makes_a_dump(host):
    before = dumps(host)
    start_service(host)
    after = dumps(host)
    assert len(after) == len(before) + 1, (before, after)


def test_timer_dump_matches_its_checksum(host):
    name = timer_dump(host)
    recorded = host.file(f"{BACKUP_DIR}/{name}.sha256").content_string.split()[0]
    assert sha256_on_host(host, f"{BACKUP_DIR}/{name}") == recorded


def test_timer_dump_metadata_says_verified(host):
    name = timer_dump(host)
    meta = json.loads(host.file(f"{BACKUP_DIR}/{name}.json").content_string)
    assert meta["verified"] is True, meta
    assert meta["database"] == DB, meta
    assert meta["format"] == "custom", meta


def test_timer_dump_is_readable_by_pg_restore(host):
    """pg_restore reads the whole dump, not only its table of contents (`--list` reads nothing
    else, and every dump's contents list an ENCODING entry): every row of the lab's table."""
    require(host, has_table(host, "samples"), "table samples must exist (test_rows_are_written writes it)")
    start_service(host)
    name = timer_dump(host)
    expected = rows(host)[0]
    out = host.run("runuser -u postgres -- pg_restore --data-only --table=samples --file=- %s/%s", BACKUP_DIR, name)
    assert out.rc == 0, out.stderr
    copied = out.stdout.split("COPY public.samples (n, note) FROM stdin;\n", 1)
    assert len(copied) == 2, out.stdout
    data = copied[1].split("\n\\.\n", 1)[0].splitlines()
    assert len(data) == expected, (len(data), expected, out.stdout[-2000:])
    assert "1\tc4ca4238a0b923820dcc509a6f75849b" in data, data[:5]


def test_timer_dump_has_its_globals_beside_it(host):
    name = timer_dump(host)
    stem = name.rsplit(".", 1)[0]
    globals_sql = host.file(f"{BACKUP_DIR}/{stem}.globals.sql")
    assert globals_sql.exists
    assert "CREATE ROLE labdata" in globals_sql.content_string


def test_status_file_reports_the_last_success(host):
    before = dumps(host)
    start_service(host)
    made = [name for name in dumps(host) if name not in before]
    assert len(made) == 1, (before, made)
    name = made[0]
    report = status(host)
    assert report["file"].endswith(name), report
    assert report["size"] == host.file(f"{BACKUP_DIR}/{name}").size, report
    assert report["database"] == DB, report
    assert report["last_success"], report


def test_status_file_is_readable_by_monitoring(host):
    timer_dump(host)  # the service has run: there is a status file
    out = host.run("runuser -u nobody -- cat %s/%s.json", STATUS_DIR, DB)
    assert out.rc == 0, out.stderr


def test_timer_service_logs_to_the_journal(host):
    assert host.run("journalctl --no-pager -u %s | grep -q %s", SERVICE, timer_dump(host)).rc == 0, \
        journal(host)


def test_directory_format_database_dumps_a_directory(host):
    start_service(host, "weblab-backup-labnotes.service")
    latest = dumps(host, "labnotes")[-1]
    assert latest.endswith(".dir"), latest
    assert host.file(f"{BACKUP_DIR}/{latest}/toc.dat").exists


# What a dump left N days ago looks like: a copy of SOURCE under an older name, with its own
# metadata and checksum written by the installed backup code (as postgres, in BACKUP_DIR).
SIMULATE = """
import datetime, json, os, shutil, sys
sys.path.insert(0, '/usr/local/lib/weblab-stack')
import pg_backup
directory, source, days, kind = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
when = pg_backup.utcnow() - datetime.timedelta(days=days)
name = pg_backup.dump_name('labnotes', when, fmt='directory')
if kind == 'partial':
    name = pg_backup.partial_name(name)
path = os.path.join(directory, name)
shutil.copytree(os.path.join(directory, source), path)
if kind == 'verified':
    with open(os.path.join(directory, source) + '.json') as handle:
        metadata = json.load(handle)
    metadata.update(file=name, started=pg_backup.iso(when), finished=pg_backup.iso(when))
    pg_backup.write_atomic(path + '.json', json.dumps(metadata))
    pg_backup.write_checksum(path)
print(name)
"""


def simulate_dump(host, source, days, kind="verified"):
    out = host.run("cd %s && runuser -u postgres -- python3 -c %s %s %s %s %s", BACKUP_DIR, SIMULATE, BACKUP_DIR,
                   source, str(days), kind)
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def test_retention_over_simulated_dates_keeps_exactly_what_the_settings_say(host):
    """labnotes keeps 3 (molecule.yml): after the next dump, exactly the 3 newest verified dumps
    stay, and the partial leftover of a run that died is gone; a dump without its metadata and
    checksum (it may still restore) is kept and named in the journal."""
    if not dumps(host, "labnotes"):
        start_service(host, "weblab-backup-labnotes.service")
    real = dumps(host, "labnotes")
    source = real[-1]
    simulated = {days: simulate_dump(host, source, days) for days in (2, 5, 9, 30)}
    unverified = simulate_dump(host, source, 35, "unverified")
    partial = simulate_dump(host, source, 40, "partial")
    for name in real:  # the dump, its .json, .sha256 and .globals.sql
        host.run(f"rm -rf {BACKUP_DIR}/%s.*", name.rsplit(".", 1)[0])
    start_service(host, "weblab-backup-labnotes.service")
    left = host.file(BACKUP_DIR).listdir()
    now = [name for name in dumps(host, "labnotes") if name not in simulated.values() and name != unverified]
    assert len(now) == 1, now
    assert [name for name in dumps(host, "labnotes") if name != unverified] == [simulated[5], simulated[2], now[0]]
    for gone in (simulated[9], simulated[30], partial):
        assert gone not in left, (gone, left)
    assert unverified in left, left
    for named in (simulated[30], "warning: %s: no metadata file" % unverified):
        assert host.run("journalctl --no-pager -u weblab-backup-labnotes.service | grep -qF %s", named).rc == 0, \
            journal(host, "weblab-backup-labnotes.service")
    host.run("rm -rf %s/%s", BACKUP_DIR, unverified)


# --- the test restore ------------------------------------------------------------------------

def restore_test_result(host, database=DB):
    return (status(host, database) or {}).get("restore_test") or {}


def run_restore_test(host, database=DB):
    """A dump of DATABASE by its timer's service, then its test restore by the test restore
    service; the status file's restore_test."""
    require(host, has_table(host, "samples") and has_table(host, "notes", "labnotes"),
            "tables samples and notes must exist (test_rows_are_written writes them)")
    start_service(host, f"weblab-backup-{database}.service")
    start_service(host, f"weblab-restore-test-{database}.service")
    return restore_test_result(host, database)


def dump_with_test_restore(host):
    """The status file of DB once the timer's last dump has had its test restore (run when it
    has not)."""
    report = status(host) or {}
    if (report.get("restore_test") or {}).get("dump") != report.get("file") or report.get("file") is None:
        run_restore_test(host)
        report = status(host)
    return report


def test_restore_test_service_passes_on_the_timers_dump(host):
    result = run_restore_test(host)
    assert result.get("result") == "passed", (result, journal(host, RESTORE_TEST))
    assert result["tables"] > 0, result
    assert result["dump"] == status(host)["file"], (result, status(host))
    assert result["problems"] == [], result


def test_restore_test_service_logs_its_verdict_to_the_journal(host):
    dump = dump_with_test_restore(host)["restore_test"]["dump"]
    out = host.run("journalctl --no-pager -u %s | grep -F %s", RESTORE_TEST, f"test restore of {dump} passed")
    assert out.rc == 0, journal(host, RESTORE_TEST)


def test_status_file_keeps_the_dumps_keys_beside_the_test_restore(host):
    report = dump_with_test_restore(host)
    assert report["restore_test"]["result"] == "passed", report
    for key in ("last_success", "file", "size", "sha256", "database"):
        assert report.get(key), (key, report)
    assert host.file(report["file"]).size == report["size"], report


def test_restore_test_records_its_result_in_the_dumps_metadata(host):
    report = dump_with_test_restore(host)
    meta = json.loads(host.file(f"{report['file']}.json").content_string)
    assert (meta.get("restore_test") or {}).get("result") == "passed", meta
    assert meta["restore_test"]["at"] == report["restore_test"]["at"], (meta, report)


def test_restore_test_of_a_directory_dump_with_parallel_jobs_passes(host):
    result = run_restore_test(host, "labnotes")
    assert result.get("result") == "passed", (result, journal(host, "weblab-restore-test-labnotes.service"))
    assert result["dump"].endswith(".dir") and result["tables"] > 0, result


def test_restore_test_leaves_the_live_database_and_no_scratch_database(host):
    dump_with_test_restore(host)
    before = lab_state(host)
    start_service(host, RESTORE_TEST)
    assert lab_state(host) == before
    assert not [name for name in databases(host) if name.startswith(f"{DB}_test_")], databases(host)


def test_restore_test_playbook_passes(host):
    earlier = dump_with_test_restore(host)["restore_test"]
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore_test.yml"), host=host, restore_test_database=DB)
    assert rc == 0, output
    result = restore_test_result(host)
    assert result["result"] == "passed" and result["at"] != earlier["at"], (earlier, result)
    said = task_output(output, "Show the result of the test restore")
    assert f"{DB}: test restore of {result['dump']} passed: {result['tables']} tables" in said, said


def test_restore_test_playbook_in_check_mode_says_what_would_run_and_runs_nothing(host):
    dump_with_test_restore(host)
    path = f"{STATUS_DIR}/{DB}.json"
    before = host.file(path).content_string, lab_state(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore_test.yml"), "--check", host=host,
                              restore_test_database=DB)
    assert rc == 0, output
    said = task_output(output, "Show what would run")
    assert f"would run {RESTORE_TEST} now" in said and "Nothing ran." in said, said
    assert "skipping:" in task_output(output, "Run the test restore now"), output
    assert (host.file(path).content_string, lab_state(host)) == before


def test_restore_test_playbook_needs_the_database_where_the_task_queue_keeps_its_own(host):
    if host.backend.get_hostname() != TQ_HOST:
        pytest.skip(f"only {TQ_HOST} keeps the task queue's database")
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore_test.yml"), "--check", host=host)
    assert rc != 0, output
    assert "-e restore_test_database=NAME" in output, output


# The dump's metadata recording one row more in every table than the dump holds: what a dump
# that lost rows looks like to its test restore (its checksum still matches: the data file is
# untouched).
MISCOUNT = """
import json, sys
path = sys.argv[1] + '.json'
meta = json.load(open(path))
meta['row_counts'] = dict((table, rows + 1) for table, rows in meta['row_counts'].items())
open(path, 'w').write(json.dumps(meta))
"""


def miscounted_dump(host):
    """A new dump of DB whose metadata records other row counts than it holds; its path."""
    require(host, has_table(host, "samples"), "table samples must exist (test_rows_are_written writes it)")
    start_service(host, SERVICE)
    path = status(host)["file"]
    out = host.run("runuser -u postgres -- python3 -c %s %s", MISCOUNT, path)
    assert out.rc == 0, out.stderr
    return path


def remove_miscounted_dump(host, path):
    """Remove the dump of miscounted_dump and dump again: the status file names a dump that
    exists (timer_dump), and the dump that failed is no one's `latest` in the steps below."""
    host.run("rm -rf %s %s.json %s.sha256 %s.globals.sql", path, path, path, path.rsplit(".", 1)[0])
    start_service(host, SERVICE)


def test_restore_test_playbook_fails_with_the_tables_whose_rows_differ(host):
    path = miscounted_dump(host)
    try:
        rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore_test.yml"), host=host, restore_test_database=DB)
        assert rc != 0, output
        # The failure's message (Ansible prints it on stderr, after the recap), on one line.
        said = " ".join(output.split())
        assert f"The test restore of {DB} failed ({path})" in said, said
        counts = re.search(r"table \S*samples has (\d+) rows, (\d+) at dump time", said)
        assert counts and int(counts[2]) == int(counts[1]) + 1, said
        result = restore_test_result(host)
        assert result["result"] == "failed" and result["dump"] == path, result
        assert any("samples" in problem for problem in result["problems"]), result
    finally:
        remove_miscounted_dump(host, path)


def test_a_dump_that_failed_its_test_restore_is_never_chosen_again(host):
    good = dump_with_test_restore(host)["file"]
    path = miscounted_dump(host)
    try:
        out = host.run("systemctl start %s", RESTORE_TEST)
        assert out.rc != 0, journal(host, RESTORE_TEST)
        assert restore_test_result(host)["dump"] == path, restore_test_result(host)
        start_service(host, RESTORE_TEST)
        result = restore_test_result(host)
        assert result["result"] == "passed" and result["dump"] == good, (good, result)
    finally:
        remove_miscounted_dump(host, path)
        host.run("systemctl reset-failed %s", RESTORE_TEST)


def test_restore_tests_can_be_turned_off_and_on(host):
    """backups_restore_test false stops and removes every test restore unit (the dumps go on);
    true brings them back."""
    rc, output = run_playbook(os.path.join(STEPS, "timer.yml"), host=host, restore_test=False)
    assert rc == 0, output
    try:
        for database in (DB, "labnotes"):
            for unit in (f"weblab-restore-test-{database}.timer", f"weblab-restore-test-{database}.service"):
                assert not host.file(f"/etc/systemd/system/{unit}").exists, unit
            assert host.run("systemctl is-active weblab-restore-test-%s.timer", database).rc != 0
        assert host.service(TIMER).is_running
    finally:
        rc, output = run_playbook(os.path.join(STEPS, "timer.yml"), host=host)
        assert rc == 0, output
    assert host.service(RESTORE_TEST_TIMER).is_enabled and host.service(RESTORE_TEST_TIMER).is_running


# --- dump, more rows, restore the latest ----------------------------------------------------

def test_restore_without_a_limit_is_refused_on_every_host(host):
    """restore.yml runs on the whole `databases` group (two hosts here): without --limit it
    refuses before anything runs, and no database changes on any host, though each has a
    verified dump to restore and the restore is confirmed."""
    hosts = database_hosts()
    assert len(hosts) > 1, hosts
    for each in hosts:
        timer_dump(each)
    before = {each.backend.get_hostname(): lab_state(each) for each in hosts}
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), restore_confirm="yes", restore_database=DB)
    assert rc != 0, output
    assert "--limit" in output and "Refusing to restore" in output, output
    assert {each.backend.get_hostname(): lab_state(each) for each in hosts} == before, output


def test_backup_playbook_refuses_the_old_label_name(host):
    """-e label=... (before the prefix) must not make an unlabelled dump: refused, naming the
    new name, nothing dumped."""
    before = host.file(BACKUP_DIR).listdir()
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, label="old-habit")
    assert rc != 0, output
    assert "'label' is no longer read" in output and "-e backup_label=" in output, output
    assert host.file(BACKUP_DIR).listdir() == before


def test_backup_playbook_dumps_now_with_a_label(host):
    """In weblab_backup_dir (BACKUP_DIR, not the backups role's default), through weblab_db_port."""
    before = dumps(host, label="before-change")
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, backup_label="before-change")
    assert rc == 0, output
    made = [name for name in dumps(host, label="before-change") if name not in before]
    assert len(made) == 1, (before, made)
    assert made[0] in output, output


def test_backup_playbook_reaches_the_server_through_weblab_db_admin_host(host):
    """A socket directory given in weblab_db_admin_host is where the dumps connect: a directory
    without the server's socket fails naming it, the server's own directory given explicitly
    works (a server configured with another unix_socket_directories is reached the same way)."""
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, backup_label="no-socket",
                              weblab_db_admin_host="/run/weblab-no-socket-here")
    assert rc != 0, output
    assert "/run/weblab-no-socket-here/.s.PGSQL.5433" in output, output[-3000:]
    assert not dumps(host, label="no-socket")
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, backup_label="socket-dir",
                              weblab_db_admin_host="/var/run/postgresql")
    assert rc == 0, output[-3000:]
    assert dumps(host, label="socket-dir"), output[-3000:]
    # The steps after this one restore the newest dump, the one labelled before-change.
    host.run(f"rm -rf {BACKUP_DIR}/*-socket-dir.*")


def test_more_rows_are_written(host):
    require(host, has_table(host, "samples") and rows(host) == (100, 5050),
            "table samples must hold the 100 rows of test_rows_are_written")
    out = app_sql(host, "INSERT INTO samples SELECT g, md5(g::text) FROM generate_series(101, 150) AS g;")
    assert out.rc == 0, out.stderr
    assert rows(host) == (150, 11325)


def test_restore_without_confirmation_is_refused(host):
    before = lab_state(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, restore_database=DB)
    assert rc != 0, output
    assert "restore_confirm=yes" in output, output
    assert lab_state(host) == before


def test_restore_refuses_the_old_names_naming_the_new_ones(host):
    """Each extra var of before the prefix is refused with its new name, before anything is
    read, though the restore is otherwise complete (the old confirmation and database given)."""
    before = lab_state(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, confirm_restore="yes",
                              database=DB, dump="latest", label="before-change", jobs=2)
    assert rc != 0, output
    for old, new in [("confirm_restore", "restore_confirm"), ("dump", "restore_dump"), ("label", "restore_label"),
                     ("database", "restore_database"), ("jobs", "restore_jobs")]:
        assert f"'{old}' is no longer read by playbooks/restore.yml; it is {new} now" in output, (old, output)
    assert lab_state(host) == before


def test_restore_needs_the_database_where_the_task_queue_keeps_its_own(host):
    if host.backend.get_hostname() != TQ_HOST:
        pytest.skip(f"only {TQ_HOST} keeps the task queue's database")
    before = lab_state(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, restore_confirm="yes")
    assert rc != 0, output
    assert "-e restore_database=NAME" in output, output
    assert lab_state(host) == before


def test_restore_picks_the_sites_database_where_it_is_the_only_one(host):
    if host.backend.get_hostname() == TQ_HOST:
        pytest.skip(f"{TQ_HOST} keeps the task queue's database as well")
    latest = latest_verified(host)
    require(host, latest, f"a verified dump of {DB} to restore (test_backup_playbook_dumps_now_with_a_label makes one)")
    before = lab_state(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), "--check", host=host, restore_confirm="yes")
    assert rc == 0, output
    assert latest in output and f"{DB} would hold" in output, output
    assert lab_state(host) == before


def test_restore_check_mode_changes_nothing(host):
    latest = latest_verified(host)
    require(host, latest, f"a verified dump of {DB} to restore (test_backup_playbook_dumps_now_with_a_label makes one)")
    before = lab_state(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), "--check", host=host, restore_confirm="yes",
                              restore_database=DB)
    assert rc == 0, output
    assert latest in output, output
    # It says what would happen, never that it happened, and prints no empty field.
    said = task_output(output, "Show what was restored")
    assert f"{DB} would hold " in said and latest in said, said
    assert "now holds" not in said and "None" not in said, said
    assert lab_state(host) == before


def test_backup_check_mode_says_what_it_would_dump(host):
    before = dumps(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), "--check", host=host, backup_label="check-only")
    assert rc == 0, output
    said = task_output(output, "Show the dumps made")
    assert re.search(r"%s: would dump to \S+-check-only\.dump; retention would remove" % DB, said), said
    assert not re.search(r"None|bytes|sha256|dumped to", said), said
    assert dumps(host) == before


def task_output(output, task):
    """What a playbook's OUTPUT shows under TASK, on one line (a message may be folded)."""
    flat = " ".join(output.split())
    start = flat.find("TASK [weblab.stack.backups : %s]" % task)
    assert start >= 0, output[-3000:]
    end = min(index for index in (flat.find("TASK [", start + 1), flat.find("PLAY RECAP", start), len(flat))
              if index >= 0)
    return flat[start:end]


def test_restore_latest_brings_back_the_rows_of_dump_time(host):
    latest = latest_verified(host)
    require(host, latest.endswith("-before-change.dump") and has_table(host, "samples")
            and rows(host) == (150, 11325),
            f"the newest verified dump must be the one of test_backup_playbook_dumps_now_with_a_label (it is "
            f"{latest or 'none'}), taken at 100 rows, and test_more_rows_are_written must have added 50 since")
    before = databases(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, restore_confirm="yes",
                              restore_database=DB)
    assert rc == 0, output
    assert latest in output, output
    assert rows(host) == (100, 5050)
    replaced = sorted(set(databases(host)) - set(before))
    assert len(replaced) == 1 and replaced[0].startswith(f"{DB}_replaced_"), (before, databases(host))


def test_replaced_data_is_kept(host):
    """The database test_restore_latest_brings_back_the_rows_of_dump_time set aside holds the
    150 rows it replaced."""
    replaced = replaced_databases(host)
    require(host, replaced, "a restore must have set a database aside (test_restore_latest_brings_back_the_rows_"
                            "of_dump_time)")
    assert sql(host, "SELECT count(*) FROM samples", replaced[-1]) == "150", replaced


def test_restored_database_keeps_its_owner(host):
    require(host, replaced_databases(host), "a restore must have happened (test_restore_latest_brings_back_the_"
                                            "rows_of_dump_time)")
    assert sql(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'", "postgres") == APP[0]


def test_app_writes_to_the_restored_database(host):
    require(host, replaced_databases(host) and has_table(host, "samples"),
            "a restore of a dump holding table samples must have happened (test_restore_latest_brings_back_the_"
            "rows_of_dump_time)")
    out = app_sql(host, "CREATE TABLE after_restore (id integer); INSERT INTO samples VALUES (1000, 'new'); "
                        "DELETE FROM samples WHERE n = 1000; DROP TABLE after_restore;")
    assert out.rc == 0, out.stderr


def test_backup_playbook_dumps_the_task_queues_database_where_it_lives(host):
    """backup.yml dumps what the lab keeps on the host: the task queue's database on the first
    databases host of a lab with workers only. After the restores above: its dumps of labdata
    would be their `latest`."""
    before = dumps(host, TQ_DB, label="tq-check")
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, backup_label="tq-check")
    assert rc == 0, output
    made = [name for name in dumps(host, TQ_DB, label="tq-check") if name not in before]
    assert len(made) == (1 if host.backend.get_hostname() == TQ_HOST else 0), (made, output)


# --- damaged dumps and failing restores leave the database alone ----------------------------

DAMAGE = r"""
import json, sys
src, dst, how = sys.argv[1:]
data = bytearray(open(src, "rb").read())
if how == "truncated":
    data = data[: len(data) // 2]
else:
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
open(dst, "wb").write(bytes(data))
# The checksum and metadata of the good dump, under the damaged dump's name: as if the
# file had been damaged on disk after a good dump.
digest = open(src + ".sha256").read().split()[0]
open(dst + ".sha256", "w").write(digest + "  " + dst.rsplit("/", 1)[1] + "\n")
meta = json.load(open(src + ".json"))
meta["file"] = dst.rsplit("/", 1)[1]
json.dump(meta, open(dst + ".json", "w"))
"""


def damaged_copy(host, how):
    """A damaged copy of the timer's last dump, labelled HOW, with the good dump's checksum."""
    good = timer_dump(host)
    stem, extension = good.rsplit(".", 1)
    name = f"{stem}-{how}.{extension}"
    out = host.run("runuser -u postgres -- python3 -c %s %s/%s %s/%s %s", DAMAGE, BACKUP_DIR, good,
                   BACKUP_DIR, name, how)
    assert out.rc == 0, out.stderr
    return name


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_damaged_dump_is_refused_and_the_database_untouched(host, how):
    name = damaged_copy(host, how)
    try:
        before = lab_state(host)
        rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, restore_confirm="yes",
                                  restore_database=DB, restore_dump=name)
        assert rc != 0, output
        assert re.search(r"checksum|sha256", output, re.IGNORECASE), output
        assert name in output, output
        assert lab_state(host) == before
    finally:
        # Its metadata says verified: left behind, it could become the `latest` of another test.
        host.run("rm -f %s/%s %s/%s.sha256 %s/%s.json", BACKUP_DIR, name, BACKUP_DIR, name, BACKUP_DIR, name)


def test_restore_failing_midway_leaves_the_database_intact(host):
    """A dump whose objects belong to a role the server no longer has: the restore stops at
    the first error, after tables were created and filled. Its own tables: it runs alone."""
    sql(host, "DROP TABLE IF EXISTS ghost_notes, ghost_log, after_ghost; DROP ROLE IF EXISTS ghost; "
              "CREATE ROLE ghost; "
              "CREATE TABLE ghost_log (n integer); INSERT INTO ghost_log SELECT generate_series(1, 50); "
              "CREATE TABLE ghost_notes (n integer); INSERT INTO ghost_notes SELECT generate_series(1, 50); "
              "ALTER TABLE ghost_notes OWNER TO ghost; GRANT SELECT ON ghost_log TO ghost;")
    before_dump = dumps(host, label="ghost")
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, backup_label="ghost")
    assert rc == 0, output
    made = [name for name in dumps(host, label="ghost") if name not in before_dump]
    assert len(made) == 1, (before_dump, made)
    # Written after the dump: a restore that went through would lose it.
    sql(host, "DROP TABLE ghost_notes, ghost_log; DROP ROLE ghost; "
              "CREATE TABLE after_ghost (n integer); INSERT INTO after_ghost VALUES (5000);")
    try:
        before = lab_state(host)
        rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, restore_confirm="yes",
                                  restore_database=DB, restore_dump=made[0])
        assert rc != 0, output
        assert "ghost" in output, output
        assert lab_state(host) == before
        assert sql(host, "SELECT to_regclass('ghost_notes') IS NULL") == "t"
        assert sql(host, "SELECT count(*), sum(n) FROM after_ghost") == "1|5000"
    finally:
        sql(host, "DROP TABLE IF EXISTS after_ghost")


# --- the timer fires on its own -------------------------------------------------------------

def test_timer_fires_on_its_schedule_and_makes_a_verified_dump(host):
    before = (status(host) or {}).get("last_success")
    rc, output = run_playbook(os.path.join(STEPS, "timer.yml"), host=host, schedule="*:*:0/20", randomized_delay="0")
    assert rc == 0, output
    try:
        deadline = time.time() + 180
        while time.time() < deadline and (status(host) or {}).get("last_success") == before:
            time.sleep(5)
        report = status(host) or {}
        assert report.get("last_success", before) != before, journal(host) + journal(host, TIMER)
        name = os.path.basename(report["file"])
        meta = json.loads(host.file(f"{BACKUP_DIR}/{name}.json").content_string)
        assert meta["verified"] is True, meta
        recorded = host.file(f"{BACKUP_DIR}/{name}.sha256").content_string.split()[0]
        assert sha256_on_host(host, f"{BACKUP_DIR}/{name}") == recorded
    finally:
        rc, output = run_playbook(os.path.join(STEPS, "timer.yml"), host=host)
        assert rc == 0, output
    assert "03:15:00" in host.check_output("systemctl show -P TimersCalendar %s", TIMER)
