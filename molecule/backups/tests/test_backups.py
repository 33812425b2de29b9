"""Behaviour of weblab.stack.backups and the backup and restore playbooks (see ../molecule.yml).

The tests run in file order and build on each other as an operator's day does: rows are
written, dumped, more rows written, the latest dump restored; damaged dumps and a restore that
fails midway must leave the database alone; the timer must fire on its own. Playbooks run with
ansible-playbook against the Molecule inventory, limited to the host under test.
"""

import hashlib
import json
import os
import re
import time

import pytest
from weblab_testinfra import PROJECT, run_playbook, superuser_sql

PLAYBOOKS = os.path.join(PROJECT, "playbooks")
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")
BACKUP_DIR = "/var/backups/postgresql"
STATUS_DIR = "/var/lib/weblab-stack/backups"
DB = "labdata"
APP = ("labdata", "molecule-db-secret")
SERVICE = f"weblab-backup-{DB}.service"
TIMER = f"weblab-backup-{DB}.timer"
DUMP_NAME = re.compile(r"^(?P<db>[A-Za-z0-9_-]+?)-(?P<time>\d{8}T\d{6}Z)(?:-(?P<label>[A-Za-z0-9._-]+))?"
                       r"\.(?P<ext>dump|dir|sql)$")

# pytest-testinfra parametrizes per host; each host keeps its own story in this dict.
STORY = {}


def story(host):
    return STORY.setdefault(host.backend.get_hostname(), {})


def sql(host, query, database=DB):
    return superuser_sql(host, query, database)


def app_sql(host, query, database=DB):
    """psql as the app's user over TCP with its password, as the app connects."""
    return host.run("PGPASSWORD=%s psql -X -w -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -U %s -d %s -c %s",
                    APP[1], APP[0], database, query)


def rows(host):
    """(count, sum) of the sample rows: equal pairs mean the same rows."""
    count, total = sql(host, "SELECT count(*), coalesce(sum(n), 0) FROM samples").split("|")
    return int(count), int(total)


def databases(host):
    return sorted(sql(host, "SELECT datname FROM pg_database WHERE NOT datistemplate", "postgres").splitlines())


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


def test_second_database_has_its_own_timer(host):
    assert host.service("weblab-backup-labnotes.timer").is_running


def test_retired_database_has_no_units(host):
    assert not host.file("/etc/systemd/system/weblab-backup-retired.timer").exists
    assert not host.file("/etc/systemd/system/weblab-backup-retired.service").exists


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
    out = host.run("runuser -u postgres -- createdb labempty && runuser -u postgres -- mkdir -p /tmp/empty-dumps && "
                   "runuser -u postgres -- python3 /usr/local/lib/weblab-stack/pg_backup.py dump "
                   "--dir /tmp/empty-dumps --database labempty; rc=$?; "
                   "runuser -u postgres -- dropdb labempty; rm -rf /tmp/empty-dumps; exit $rc")
    assert out.rc == 0, out.stdout + out.stderr


# --- what the timer starts ------------------------------------------------------------------

def test_timer_service_makes_a_dump(host):
    before = dumps(host)
    out = host.run("systemctl start %s", SERVICE)
    assert out.rc == 0, out.stderr + journal(host)
    assert host.check_output("systemctl show -P Result %s", SERVICE) == "success", journal(host)
    after = dumps(host)
    assert len(after) == len(before) + 1, (before, after)
    story(host)["timer_dump"] = after[-1]


def test_timer_dump_matches_its_checksum(host):
    name = story(host)["timer_dump"]
    recorded = host.file(f"{BACKUP_DIR}/{name}.sha256").content_string.split()[0]
    assert sha256_on_host(host, f"{BACKUP_DIR}/{name}") == recorded


def test_timer_dump_metadata_says_verified(host):
    name = story(host)["timer_dump"]
    meta = json.loads(host.file(f"{BACKUP_DIR}/{name}.json").content_string)
    assert meta["verified"] is True, meta
    assert meta["database"] == DB, meta
    assert meta["format"] == "custom", meta


def test_timer_dump_is_readable_by_pg_restore(host):
    name = story(host)["timer_dump"]
    out = host.run("runuser -u postgres -- pg_restore --list %s/%s", BACKUP_DIR, name)
    assert out.rc == 0, out.stderr
    assert "TABLE DATA" in out.stdout or "SCHEMA" in out.stdout or "ENCODING" in out.stdout, out.stdout


def test_timer_dump_has_its_globals_beside_it(host):
    name = story(host)["timer_dump"]
    stem = name.rsplit(".", 1)[0]
    globals_sql = host.file(f"{BACKUP_DIR}/{stem}.globals.sql")
    assert globals_sql.exists
    assert "CREATE ROLE labdata" in globals_sql.content_string


def test_status_file_reports_the_last_success(host):
    name = story(host)["timer_dump"]
    report = status(host)
    assert report["file"].endswith(name), report
    assert report["size"] == host.file(f"{BACKUP_DIR}/{name}").size, report
    assert report["database"] == DB, report
    assert report["last_success"], report


def test_status_file_is_readable_by_monitoring(host):
    assert host.run("runuser -u nobody -- cat %s/%s.json", STATUS_DIR, DB).rc == 0


def test_timer_service_logs_to_the_journal(host):
    assert host.run("journalctl --no-pager -u %s | grep -q %s", SERVICE, story(host)["timer_dump"]).rc == 0, \
        journal(host)


def test_directory_format_database_dumps_a_directory(host):
    out = host.run("systemctl start weblab-backup-labnotes.service")
    assert out.rc == 0, out.stderr + journal(host, "weblab-backup-labnotes.service")
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
    stay, and the leftovers of failed runs older than the newest are gone."""
    real = dumps(host, "labnotes")
    source = real[-1]
    simulated = {days: simulate_dump(host, source, days) for days in (2, 5, 9, 30)}
    unverified = simulate_dump(host, source, 35, "unverified")
    partial = simulate_dump(host, source, 40, "partial")
    for name in real:  # the dump, its .json, .sha256 and .globals.sql
        host.run(f"rm -rf {BACKUP_DIR}/%s.*", name.rsplit(".", 1)[0])
    out = host.run("systemctl start weblab-backup-labnotes.service")
    assert out.rc == 0, out.stderr + journal(host, "weblab-backup-labnotes.service")
    left = host.file(BACKUP_DIR).listdir()
    now = [name for name in dumps(host, "labnotes") if name not in simulated.values()]
    assert len(now) == 1, now
    assert dumps(host, "labnotes") == [simulated[5], simulated[2], now[0]]
    for gone in (simulated[9], simulated[30], unverified, partial):
        assert gone not in left, (gone, left)
    assert host.run("journalctl --no-pager -u weblab-backup-labnotes.service | grep -q %s", simulated[30]).rc == 0, \
        journal(host, "weblab-backup-labnotes.service")


# --- dump, more rows, restore the latest ----------------------------------------------------

def test_backup_playbook_dumps_now_with_a_label(host):
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, label="before-change")
    assert rc == 0, output
    labelled = dumps(host, label="before-change")
    assert len(labelled) == 1, labelled
    story(host)["dump"] = labelled[0]
    assert labelled[0] in output, output


def test_more_rows_are_written(host):
    out = app_sql(host, "INSERT INTO samples SELECT g, md5(g::text) FROM generate_series(101, 150) AS g;")
    assert out.rc == 0, out.stderr
    assert rows(host) == (150, 11325)


def test_restore_without_confirmation_is_refused(host):
    before = databases(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, database=DB)
    assert rc != 0, output
    assert "confirm_restore=yes" in output, output
    assert rows(host) == (150, 11325)
    assert databases(host) == before


def test_restore_needs_the_database_when_several_are_backed_up(host):
    before = databases(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, confirm_restore="yes")
    assert rc != 0, output
    assert "-e database=NAME" in output, output
    assert databases(host) == before


def test_restore_check_mode_changes_nothing(host):
    before = databases(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), "--check", host=host, confirm_restore="yes",
                              database=DB)
    assert rc == 0, output
    assert rows(host) == (150, 11325)
    assert databases(host) == before


def test_restore_latest_brings_back_the_rows_of_dump_time(host):
    before = databases(host)
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, confirm_restore="yes", database=DB)
    assert rc == 0, output
    assert story(host)["dump"] in output, output
    assert rows(host) == (100, 5050)
    replaced = sorted(set(databases(host)) - set(before))
    assert len(replaced) == 1 and replaced[0].startswith(f"{DB}_replaced_"), (before, databases(host))
    story(host)["replaced"] = replaced[0]


def test_replaced_data_is_kept(host):
    count = sql(host, "SELECT count(*) FROM samples", story(host)["replaced"])
    assert count == "150"


def test_restored_database_keeps_its_owner(host):
    assert sql(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'", "postgres") == APP[0]


def test_app_writes_to_the_restored_database(host):
    out = app_sql(host, "CREATE TABLE after_restore (id integer); INSERT INTO samples VALUES (1000, 'new'); "
                        "DELETE FROM samples WHERE n = 1000; DROP TABLE after_restore;")
    assert out.rc == 0, out.stderr


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
    good = story(host)["dump"]
    name = good.replace("-before-change.", f"-{how}.")
    out = host.run("runuser -u postgres -- python3 -c %s %s/%s %s/%s %s", DAMAGE, BACKUP_DIR, good,
                   BACKUP_DIR, name, how)
    assert out.rc == 0, out.stderr
    return name


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_damaged_dump_is_refused_and_the_database_untouched(host, how):
    name = damaged_copy(host, how)
    before = (rows(host), databases(host))
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, confirm_restore="yes",
                              database=DB, dump=name)
    assert rc != 0, output
    assert re.search(r"checksum|sha256", output, re.IGNORECASE), output
    assert name in output, output
    assert (rows(host), databases(host)) == before


def test_restore_failing_midway_leaves_the_database_intact(host):
    """A dump whose objects belong to a role the server no longer has: the restore stops at
    the first error, after the tables were created and filled."""
    sql(host, "DROP ROLE IF EXISTS ghost; CREATE ROLE ghost; "
              "CREATE TABLE ghost_notes (n integer); INSERT INTO ghost_notes SELECT generate_series(1, 50); "
              "ALTER TABLE ghost_notes OWNER TO ghost; GRANT SELECT ON samples TO ghost;")
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "backup.yml"), host=host, label="ghost")
    assert rc == 0, output
    ghost_dump = dumps(host, label="ghost")[-1]
    sql(host, "DROP TABLE ghost_notes; REVOKE ALL ON samples FROM ghost; DROP ROLE ghost; "
              "INSERT INTO samples VALUES (5000, 'after the ghost dump');")
    before = (rows(host), databases(host))
    rc, output = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), host=host, confirm_restore="yes",
                              database=DB, dump=ghost_dump)
    assert rc != 0, output
    assert "ghost" in output, output
    assert (rows(host), databases(host)) == before
    assert sql(host, "SELECT to_regclass('ghost_notes') IS NULL") == "t"
    sql(host, "DELETE FROM samples WHERE n = 5000")


# --- the timer fires on its own -------------------------------------------------------------

def test_timer_fires_on_its_schedule_and_makes_a_verified_dump(host):
    before = status(host)["last_success"]
    rc, output = run_playbook(os.path.join(STEPS, "timer.yml"), host=host, schedule="*:*:0/20", randomized_delay="0")
    assert rc == 0, output
    try:
        deadline = time.time() + 180
        while time.time() < deadline and status(host)["last_success"] == before:
            time.sleep(5)
        report = status(host)
        assert report["last_success"] != before, journal(host) + journal(host, TIMER)
        name = os.path.basename(report["file"])
        meta = json.loads(host.file(f"{BACKUP_DIR}/{name}.json").content_string)
        assert meta["verified"] is True, meta
        recorded = host.file(f"{BACKUP_DIR}/{name}.sha256").content_string.split()[0]
        assert sha256_on_host(host, f"{BACKUP_DIR}/{name}") == recorded
    finally:
        rc, output = run_playbook(os.path.join(STEPS, "timer.yml"), host=host)
        assert rc == 0, output
    assert "03:15:00" in host.check_output("systemctl show -P TimersCalendar %s", TIMER)
