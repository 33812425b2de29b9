"""weblab.stack.postgresql_dump and postgresql_restore against a real PostgreSQL (the session
cluster of conftest.py), through ansible-playbook, and the timer's command line."""

import datetime
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

COLLECTION = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = COLLECTION / "plugins" / "module_utils" / "pg_backup.py"


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def dump_args(cluster, backup_dir, database, **extra):
    return dict(cluster.login, database=database, backup_dir=str(backup_dir), **extra)


def files(backup_dir):
    return sorted(os.listdir(backup_dir))


def sha256sum_check(backup_dir, name):
    """The checksum file verifies with the real sha256sum, from the backup directory."""
    done = subprocess.run(["sha256sum", "--check", "--strict", name + ".sha256"], cwd=backup_dir,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dump_then_restore_latest_holds_the_rows_of_dump_time(cluster, run_module, backup_dir):
    cluster.create_database("lab", rows=100)
    args = dump_args(cluster, backup_dir, "lab")

    checked = run_module("postgresql_dump", args, "--check")
    assert checked["changed"] is True
    assert checked["path"].startswith(str(backup_dir) + "/lab-")
    assert files(backup_dir) == [], "check mode wrote files"

    done = run_module("postgresql_dump", args)
    assert done["changed"] is True
    name = os.path.basename(done["path"])
    assert files(backup_dir) == [name, name + ".json", name + ".sha256"]
    sha256sum_check(backup_dir, name)
    metadata = json.loads((backup_dir / (name + ".json")).read_text())
    assert metadata["verified"] is True and metadata["file"] == name and metadata["database"] == "lab"
    assert metadata["sha256"] == done["checksum"] == hashlib.sha256((backup_dir / name).read_bytes()).hexdigest()
    assert metadata["size"] == done["size"] == (backup_dir / name).stat().st_size
    assert cluster.password not in json.dumps(done.result["commands"])

    again = run_module("postgresql_dump", args)
    assert again["changed"] is True and again["path"] != done["path"], "a re-run makes a new dump"
    assert len([item for item in files(backup_dir) if item.endswith(".dump")]) == 2

    cluster.add_rows("lab", 101, 150)
    before = cluster.databases()
    restore_args = dict(cluster.login, database="lab", backup_dir=str(backup_dir))
    checked = run_module("postgresql_restore", restore_args, "--check", "--diff")
    assert checked["changed"] is True
    assert checked["dump"] == again["path"], "latest is the newest verified dump"
    assert any("rename database lab to lab_replaced_" in line for line in checked["actions"])
    assert cluster.rows("lab") == list(range(1, 151)) and cluster.databases() == before

    restored = run_module("postgresql_restore", restore_args)
    assert restored["changed"] is True
    assert cluster.rows("lab") == list(range(1, 101)), "the database holds the rows of dump time"
    kept = restored["replaced_by"]
    assert kept.startswith("lab_replaced_")
    assert cluster.databases() == before | {kept}
    assert cluster.rows(kept) == list(range(1, 151)), "the replaced data is kept aside"
    assert cluster.password not in restored.output

    rerun = run_module("postgresql_restore", restore_args)
    assert rerun["changed"] is True and rerun["replaced_by"] != kept
    assert cluster.rows("lab") == list(range(1, 101))


def test_restore_ends_open_sessions_and_swaps(cluster, run_module, backup_dir):
    """A session connected to the target does not block the swap: it is ended."""
    cluster.create_database("busy", rows=12)
    run_module("postgresql_dump", dump_args(cluster, backup_dir, "busy"))
    cluster.add_rows("busy", 13, 20)
    session = subprocess.Popen([str(cluster.bin_dir / "psql"), "-X", "-d", "busy", "-c", "SELECT pg_sleep(120)"],
                               env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: cluster.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'busy' AND query LIKE '%pg_sleep%'") == "1")
        restored = run_module("postgresql_restore", dict(cluster.login, database="busy", backup_dir=str(backup_dir)))
        assert not restored.failed, restored.msg
        assert session.wait(timeout=30) != 0, "the open session was not ended"
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert cluster.rows("busy") == list(range(1, 13))
    assert cluster.psql("SELECT datallowconn FROM pg_database WHERE datname = %s" % (
        "'%s'" % restored["replaced_by"])) == "t", "the kept database was not opened again"


def damage_truncate(path):
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def damage_flip(path):
    data = bytearray(path.read_bytes())
    for offset in (len(data) // 2, len(data) // 2 + 7, len(data) - 40):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip], ids=["truncated", "flipped-bytes"])
def test_damaged_dump_is_refused_and_nothing_changes(cluster, run_module, backup_dir, damage):
    cluster.create_database("damaged", rows=40)
    good = run_module("postgresql_dump", dump_args(cluster, backup_dir, "damaged"))
    cluster.add_rows("damaged", 41, 50)
    newest = run_module("postgresql_dump", dump_args(cluster, backup_dir, "damaged"))
    damage(pathlib.Path(newest["path"]))
    cluster.add_rows("damaged", 51, 60)
    before = cluster.databases()
    restore_args = dict(cluster.login, database="damaged", backup_dir=str(backup_dir))

    for extra in (("--check",), ()):
        refused = run_module("postgresql_restore", restore_args, *extra)
        assert refused.failed, refused.output
        assert "is damaged" in refused.msg and os.path.basename(newest["path"]) in refused.msg, refused.msg
        assert "Nothing was changed" in refused.msg
        assert not any("CREATE DATABASE" in command or "pg_restore --exit-on-error" in command
                       for command in refused.result["commands"]), refused.result["commands"]
        assert cluster.rows("damaged") == list(range(1, 61)) and cluster.databases() == before

    # Named, the older intact dump restores.
    named = run_module("postgresql_restore", dict(restore_args, dump=os.path.basename(good["path"])))
    assert not named.failed
    assert cluster.rows("damaged") == list(range(1, 41))


def test_damaged_table_of_contents_is_refused_even_with_a_matching_checksum(cluster, run_module, backup_dir):
    """The second check: a dump cut short whose checksum file was rewritten to match."""
    cluster.create_database("toc", rows=10)
    made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "toc"))
    path = pathlib.Path(made["path"])
    with open(path, "r+b") as handle:
        handle.truncate(64)
    (backup_dir / (path.name + ".sha256")).write_text(
        "%s  %s\n" % (hashlib.sha256(path.read_bytes()).hexdigest(), path.name))
    before = cluster.databases()
    refused = run_module("postgresql_restore", dict(cluster.login, database="toc", backup_dir=str(backup_dir)))
    assert refused.failed and "table of contents" in refused.msg, refused.msg
    assert cluster.databases() == before and cluster.rows("toc") == list(range(1, 11))


def test_restore_failing_midway_leaves_the_original_intact(cluster, run_module, backup_dir):
    """The dump holds a table owned by a role that no longer exists: pg_restore creates the
    first objects, then stops at ALTER TABLE ... OWNER TO; the original must not change."""
    cluster.psql("DROP ROLE IF EXISTS doomed_owner")
    cluster.psql("CREATE ROLE doomed_owner")
    cluster.create_database("midway", rows=30)
    cluster.psql("CREATE TABLE doomed (id int); ALTER TABLE doomed OWNER TO doomed_owner", "midway")
    made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "midway"))
    cluster.psql("DROP TABLE doomed", "midway")
    cluster.psql("DROP ROLE doomed_owner")
    cluster.add_rows("midway", 31, 35)
    before = cluster.databases()

    failed = run_module("postgresql_restore", dict(cluster.login, database="midway", backup_dir=str(backup_dir)))
    assert failed.failed, failed.output
    assert "doomed_owner" in failed.msg and "was not touched" in failed.msg, failed.msg
    assert any("pg_restore --exit-on-error" in command for command in failed.result["commands"])
    assert cluster.databases() == before, "the temporary database was not dropped"
    assert cluster.rows("midway") == list(range(1, 36))
    assert cluster.psql("SELECT count(*) FROM pg_class WHERE relname = 'doomed'", "midway") == "0"
    assert cluster.psql("SELECT datallowconn FROM pg_database WHERE datname = 'midway'") == "t"
    assert any(made["path"] in command for command in failed.result["commands"])


def simulated_dump(template, backup_dir, database, when, verified=True, partial=False):
    """A copy of a real dump under the name of another time, with its own checksum and metadata."""
    name = "%s-%s.dump" % (database, when.strftime("%Y%m%dT%H%M%SZ"))
    if partial:
        shutil.copyfile(template, backup_dir / (".%s.partial" % name))
        return "." + name + ".partial"
    shutil.copyfile(template, backup_dir / name)
    digest = hashlib.sha256((backup_dir / name).read_bytes()).hexdigest()
    (backup_dir / (name + ".sha256")).write_text("%s  %s\n" % (digest, name))
    if verified:
        (backup_dir / (name + ".json")).write_text(json.dumps(
            {"database": database, "file": name, "format": "custom", "sha256": digest, "verified": True}))
    return name


def test_retention_over_simulated_dates_keeps_exactly_what_the_settings_say(cluster, run_module, backup_dir):
    cluster.create_database("kept", rows=5)
    template = run_module("postgresql_dump", dump_args(cluster, backup_dir, "kept"))
    for item in files(backup_dir):
        (backup_dir / item).rename(backup_dir.parent / item)
    template_path = backup_dir.parent / os.path.basename(template["path"])
    now = datetime.datetime.now(datetime.timezone.utc)
    ages = {}
    for days in (1, 2, 3, 5, 9, 30):
        ages[days] = simulated_dump(template_path, backup_dir, "kept", now - datetime.timedelta(days=days, hours=1))
    unverified_old = simulated_dump(template_path, backup_dir, "kept", now - datetime.timedelta(days=4), verified=False)
    partial_old = simulated_dump(template_path, backup_dir, "kept", now - datetime.timedelta(days=6), partial=True)
    other = simulated_dump(template_path, backup_dir, "kept-other", now - datetime.timedelta(days=60))
    before = files(backup_dir)

    # keep 2 newest OR younger than 4 days: the new dump, 1d, 2d, 3d stay; 5d, 9d, 30d go, as
    # does the partial leftover; the old dump without metadata is reported and kept (it may be
    # the only one that restores); another database's dump stays.
    args = dump_args(cluster, backup_dir, "kept", keep=2, max_age_days=4)
    checked = run_module("postgresql_dump", args, "--check")
    expected = sorted(str(backup_dir / name) for name in (ages[5], ages[9], ages[30], partial_old))
    assert sorted(checked["removed"]) == expected
    assert [item["name"] for item in checked["problems"]] == [unverified_old]
    assert files(backup_dir) == before, "check mode removed files"

    done = run_module("postgresql_dump", args)
    assert sorted(done["removed"]) == expected
    assert [item["name"] for item in done["problems"]] == [unverified_old]
    assert any(unverified_old in warning for warning in done.result.get("warnings", [])), done.result
    new = os.path.basename(done["path"])
    left = set(files(backup_dir))
    for name in (new, ages[1], ages[2], ages[3], other):
        assert {name, name + ".sha256"} <= left, (name, left)
    assert unverified_old in left
    for name in (ages[5], ages[9], ages[30]):
        assert not {name, name + ".sha256", name + ".json"} & left, (name, left)
    assert partial_old not in left

    # Count only, with the dump made above altered since it was verified: it does not count
    # toward keep (reported, kept), so the two newest good dumps are this run's and the 1-day one.
    (backup_dir / new).write_bytes((backup_dir / new).read_bytes()[:-10])
    only = run_module("postgresql_dump", dump_args(cluster, backup_dir, "kept", keep=2))
    newest = os.path.basename(only["path"])
    assert sorted(item["name"] for item in only["problems"]) == sorted([new, unverified_old])
    assert sorted(name for name in files(backup_dir) if name.startswith("kept-2") and name.endswith(".dump")) \
        == sorted([new, newest, ages[1], unverified_old])

    # Asked to, retention removes the unverified dump too; the damaged one goes like any dump
    # beyond the two newest good ones.
    asked = run_module("postgresql_dump", dump_args(cluster, backup_dir, "kept", keep=2, remove_unverified=True))
    assert sorted(os.path.basename(path) for path in asked["removed"]) == sorted([ages[1], unverified_old, new])


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_an_empty_database_dumps_and_restores(cluster, run_module, backup_dir, fmt):
    """A new lab's database has no tables yet: its dump lists no entries and is still whole."""
    cluster.psql('DROP DATABASE IF EXISTS "empty" WITH (FORCE)')
    cluster.psql('CREATE DATABASE "empty"')
    made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "empty", format=fmt))
    assert not made.failed, made.msg
    assert json.loads(pathlib.Path(made["path"] + ".json").read_text())["verified"] is True
    cluster.psql("CREATE TABLE later (id int)", "empty")
    restored = run_module("postgresql_restore", dict(cluster.login, database="empty", backup_dir=str(backup_dir)))
    assert not restored.failed, restored.msg
    assert cluster.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "empty") == "0"


def test_directory_format_with_jobs_restores(cluster, run_module, backup_dir):
    cluster.create_database("para", rows=500)
    for number in range(4):
        cluster.psql("CREATE TABLE t%d AS SELECT i AS id FROM generate_series(1, 1000) i" % number, "para")
    made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "para", format="directory", jobs=2,
                                                   compress="gzip:1"))
    assert made["path"].endswith(".dir") and os.path.isdir(made["path"])
    assert any(command.startswith(shutil.which("pg_dump") + " --format=directory") and "--jobs=2" in command
               for command in made.result["commands"]), made.result["commands"]
    sha256sum_check(backup_dir, os.path.basename(made["path"]))
    cluster.add_rows("para", 501, 510)
    restored = run_module("postgresql_restore", dict(cluster.login, database="para", backup_dir=str(backup_dir),
                                                     jobs=2))
    assert any("pg_restore --exit-on-error --jobs=2" in command for command in restored.result["commands"])
    assert cluster.rows("para") == list(range(1, 501))
    assert cluster.psql("SELECT count(*) FROM t3", "para") == "1000"


def test_plain_format_restores_and_stops_on_error(cluster, run_module, backup_dir):
    cluster.create_database("plain", rows=20)
    made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "plain", format="plain", label="v1.2"))
    assert made["path"].endswith("-v1.2.sql")
    cluster.add_rows("plain", 21, 25)
    restored = run_module("postgresql_restore", dict(cluster.login, database="plain", backup_dir=str(backup_dir),
                                                     label="v1.2"))
    assert not restored.failed
    assert any("ON_ERROR_STOP=1 --single-transaction" in command for command in restored.result["commands"])
    assert cluster.rows("plain") == list(range(1, 21))


def test_restore_into_a_new_database_keeps_owner_and_grants(cluster, run_module, backup_dir):
    cluster.psql("DROP ROLE IF EXISTS lab_owner")
    cluster.psql("DROP ROLE IF EXISTS lab_reader")
    cluster.psql("CREATE ROLE lab_owner")
    cluster.psql("CREATE ROLE lab_reader")
    cluster.create_database("owned", rows=3, owner="lab_owner")
    cluster.psql("REVOKE ALL ON DATABASE owned FROM PUBLIC; GRANT CONNECT ON DATABASE owned TO lab_reader")
    acl = cluster.psql("SELECT datacl FROM pg_database WHERE datname = 'owned'")
    made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "owned"))

    restored = run_module("postgresql_restore", dict(cluster.login, database="owned", backup_dir=str(backup_dir)))
    assert cluster.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'owned'") == "lab_owner"
    assert cluster.psql("SELECT datacl FROM pg_database WHERE datname = 'owned'") == acl
    assert restored["replaced_by"]

    copy = dict(cluster.login, database="owned_copy", backup_dir=str(backup_dir), dump=os.path.basename(made["path"]))
    refused = run_module("postgresql_restore", copy)
    assert refused.failed and "made from database owned, not owned_copy" in refused.msg, refused.msg
    assert "owned_copy" not in cluster.databases()
    fresh = run_module("postgresql_restore", dict(copy, allow_other_database=True))
    assert fresh["replaced_by"] is None
    assert cluster.rows("owned_copy") == [1, 2, 3]


def test_zstd_compression_needs_pg_dump_16(cluster, run_module, backup_dir):
    cluster.create_database("zstd", rows=1)
    version = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.split()[2].split(".")[0])
    made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "zstd", compress="zstd:3"))
    if major >= 16:
        assert not made.failed and made["metadata"]["compress"] == "zstd:3"
    else:
        assert made.failed and "needs pg_dump 16 or later" in made.msg, made.msg
        assert files(backup_dir) == []


def test_cli_makes_a_verified_dump_and_a_status_file(cluster, backup_dir, tmp_path):
    cluster.create_database("cli", rows=7)
    status = tmp_path / "status" / "cli.json"
    status.parent.mkdir()
    argv = [sys.executable, str(SCRIPT), "dump", "--dir", str(backup_dir), "--database", "cli",
            "--globals", "--keep", "3", "--label", "nightly", "--status-file", str(status)]
    env = dict(cluster.env)
    # As the timer runs it: a plain script, no Ansible on the path.
    env["PYTHONPATH"] = ""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(status.read_text())
    name = os.path.basename(data["file"])
    assert name.startswith("cli-") and name.endswith("-nightly.dump")
    assert data["database"] == "cli" and data["size"] == os.path.getsize(data["file"])
    assert datetime.datetime.strptime(data["last_success"], "%Y-%m-%dT%H:%M:%SZ")
    sha256sum_check(backup_dir, name)
    assert json.loads((backup_dir / (name + ".json")).read_text())["verified"] is True
    assert (backup_dir / (name[:-len(".dump")] + ".globals.sql")).read_text().count("CREATE ROLE postgres") == 1

    before = status.read_text()
    failed = subprocess.run([*argv[:6], "no_such_database", *argv[7:]], env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    assert failed.returncode != 0 and "no_such_database" in failed.stderr, failed.stderr
    assert status.read_text() == before, "a failed run changed the status file"
    assert not [item for item in files(backup_dir) if "no_such_database" in item], files(backup_dir)


def database_as_it_is(cluster, name):
    """Everything pg_database and pg_db_role_setting hold about database NAME but its identity
    and transaction horizons, with its comment."""
    return json.loads(cluster.psql(
        "SELECT json_build_object('catalog', to_jsonb(d) - 'oid' - 'datfrozenxid' - 'datminmxid', "
        "'comment', shobj_description(d.oid, 'pg_database'), "
        "'settings', (SELECT json_agg(json_build_object('role', pg_get_userbyid(s.setrole), 'config', s.setconfig) "
        "ORDER BY s.setrole) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)) "
        "FROM pg_database d WHERE d.datname = '%s'" % name))


def test_restore_gives_back_the_database_as_it_was(cluster, run_module, backup_dir):
    """An ICU database (Swedish order: å, ä, ö after z; lower case before upper) with a connection
    limit, settings of its own and of a role in it, and a comment comes back with all of them,
    and ORDER BY sorts as before."""
    cluster.psql("DROP DATABASE IF EXISTS svlab WITH (FORCE)")
    cluster.psql("DROP ROLE IF EXISTS sv_reader")
    cluster.psql("CREATE ROLE sv_reader")
    cluster.psql("CREATE DATABASE svlab TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' "
                 "CONNECTION LIMIT 50")
    cluster.psql("CREATE TABLE words (w text); INSERT INTO words VALUES ('z'), ('ö'), ('o'), ('a'), ('B'), "
                 "('å'), ('ä'), ('b')", "svlab")
    cluster.psql("ALTER DATABASE svlab SET work_mem = '64MB'")
    cluster.psql('ALTER DATABASE svlab SET search_path = "$user", public, lab')
    cluster.psql("ALTER ROLE sv_reader IN DATABASE svlab SET statement_timeout = '5s'")
    cluster.psql("COMMENT ON DATABASE svlab IS 'Svenska ord, lab''s'")
    order = "SELECT string_agg(w, ',' ORDER BY w) FROM words"
    sorted_before = cluster.psql(order, "svlab")
    # The data tells the collations apart: byte order differs from Swedish order.
    assert sorted_before != cluster.psql("SELECT string_agg(w, ',' ORDER BY w COLLATE \"C\") FROM words", "svlab")
    before = database_as_it_is(cluster, "svlab")
    assert before["catalog"]["datlocprovider"] == "i" and before["catalog"]["datconnlimit"] == 50, before

    run_module("postgresql_dump", dump_args(cluster, backup_dir, "svlab"))
    cluster.psql("DELETE FROM words WHERE w = 'z'", "svlab")
    restored = run_module("postgresql_restore", dict(cluster.login, database="svlab", backup_dir=str(backup_dir)))
    assert restored["replaced_by"]
    assert database_as_it_is(cluster, "svlab") == before
    assert cluster.psql(order, "svlab") == sorted_before


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_dump_and_globals_are_the_owners_only_under_a_loose_umask(cluster, run_module, backup_dir, fmt):
    """pg_dump and pg_dumpall run from a playbook whose umask lets the group and others read
    (0022, as a login shell has): the dump, the globals (password hashes) and every sidecar file
    are 0600, a directory dump 0700."""
    cluster.create_database("private", rows=5)
    umask = os.umask(0o022)
    try:
        made = run_module("postgresql_dump", dump_args(cluster, backup_dir, "private", format=fmt, globals=True))
    finally:
        os.umask(umask)
    modes = {}
    for root, dirs, names in os.walk(backup_dir):
        for name in dirs + names:
            path = os.path.join(root, name)
            modes[os.path.relpath(path, backup_dir)] = (os.path.isdir(path), os.stat(path).st_mode & 0o777)
    assert os.path.basename(made["globals_path"]) in modes
    assert all(mode == (0o700 if is_dir else 0o600) for is_dir, mode in modes.values()), modes


def test_restores_keep_only_keep_replaced_replaced_databases(cluster, run_module, backup_dir):
    cluster.create_database("bounded", rows=3)
    for name in cluster.databases():
        if name.startswith("bounded_replaced_"):
            cluster.psql('DROP DATABASE "%s"' % name)
    run_module("postgresql_dump", dump_args(cluster, backup_dir, "bounded"))
    args = dict(cluster.login, database="bounded", backup_dir=str(backup_dir), keep_replaced=2)
    made = []
    for attempt in range(3):
        time.sleep(1.1)  # one restore per second: the names carry the second
        done = run_module("postgresql_restore", args)
        made.append(done["replaced_by"])
        assert done["dropped_replaced"] == ([] if attempt < 2 else made[:1]), (attempt, done["dropped_replaced"])
    assert sorted(name for name in cluster.databases() if name.startswith("bounded_replaced_")) == made[1:]
    gone = run_module("postgresql_restore", dict(args, keep_replaced=0))
    assert gone["replaced_by"] is None
    assert not [name for name in cluster.databases() if name.startswith("bounded_replaced_")]
    assert cluster.rows("bounded") == [1, 2, 3]


def cli(cluster, *argv):
    """The timer's command line (a plain script, no Ansible on the path) against the cluster."""
    env = dict(cluster.env, PYTHONPATH="")
    return subprocess.run([sys.executable, str(SCRIPT), *argv], env=env, capture_output=True, text=True,
                          check=False, timeout=300)


def test_dump_counts_the_rows_of_the_snapshot_it_dumps(cluster, backup_dir):
    """Rows committed while the dump waits (here on a lock another session holds) are neither
    counted nor dumped: the counts and pg_dump share the snapshot the counting session exported
    first. Were pg_dump to take a snapshot of its own, it would dump the 50 later rows."""
    cluster.create_database("snap", rows=100)
    cluster.psql("CREATE TABLE gate (id int)", "snap")
    holder = subprocess.Popen([str(cluster.bin_dir / "psql"), "-X", "-q", "-d", "snap"], env=cluster.env,
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN;\nLOCK TABLE gate IN ACCESS EXCLUSIVE MODE;\n")
    holder.stdin.flush()
    assert wait_for(lambda: cluster.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                         "WHERE c.relname = 'gate' AND l.granted", "snap") == "1")
    env = dict(cluster.env, PYTHONPATH="")
    dumper = subprocess.Popen([sys.executable, str(SCRIPT), "dump", "--dir", str(backup_dir), "--database", "snap"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'snap' "
                                             "AND wait_event_type = 'Lock'") == "1", timeout=30)
        cluster.add_rows("snap", 101, 150)
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        out, err = dumper.communicate(timeout=120)
    finally:
        for process in (holder, dumper):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert dumper.returncode == 0, out + err
    name = [item for item in files(backup_dir) if item.endswith(".dump")][0]
    metadata = json.loads((backup_dir / (name + ".json")).read_text())
    assert metadata["row_counts"] == {"public.gate": 0, "public.items": 100}
    assert cluster.rows("snap") == list(range(1, 151))

    tested = cli(cluster, "test-restore", "--dir", str(backup_dir), "--database", "snap")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "passed: 2 tables" in tested.stdout


def test_test_restore_proves_the_latest_dump_and_marks_one_that_fails(cluster, run_module, backup_dir, tmp_path):
    cluster.create_database("proof", rows=40)
    cluster.psql('CREATE SCHEMA "Lab"; CREATE TABLE "Lab"."Odd name" (id int); '
                 'INSERT INTO "Lab"."Odd name" SELECT generate_series(1, 5); '
                 "CREATE MATERIALIZED VIEW big_items AS SELECT * FROM items WHERE id > 30", "proof")
    status = tmp_path / "proof.json"
    assert cli(cluster, "dump", "--dir", str(backup_dir), "--database", "proof", "--status-file",
               str(status)).returncode == 0
    first = json.loads(status.read_text())["file"]
    assert json.loads(pathlib.Path(first + ".json").read_text())["row_counts"] == {
        '"Lab"."Odd name"': 5, "public.big_items": 10, "public.items": 40}
    before = cluster.databases()

    passed = cli(cluster, "test-restore", "--dir", str(backup_dir), "--database", "proof", "--status-file",
                 str(status))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "test restore of %s passed: 3 tables" % first in passed.stdout
    assert cluster.databases() == before, "the scratch database was left behind"
    data = json.loads(status.read_text())
    assert data["file"] == first, "the dump's keys were lost"
    assert data["restore_test"]["result"] == "passed" and data["restore_test"]["dump"] == first
    assert data["restore_test"]["tables"] == 3 and data["restore_test"]["problems"] == []
    assert json.loads(pathlib.Path(first + ".json").read_text())["restore_test"]["result"] == "passed"

    # A newer dump that lost a row between pg_dump and its metadata: its recorded count says 41.
    time.sleep(1.1)
    assert cli(cluster, "dump", "--dir", str(backup_dir), "--database", "proof").returncode == 0
    second = sorted(str(backup_dir / item) for item in files(backup_dir) if item.endswith(".dump"))[-1]
    metadata = json.loads(pathlib.Path(second + ".json").read_text())
    metadata["row_counts"]["public.items"] = 41
    pathlib.Path(second + ".json").write_text(json.dumps(metadata))
    failed = cli(cluster, "test-restore", "--dir", str(backup_dir), "--database", "proof", "--status-file",
                 str(status))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "table public.items has 40 rows, 41 at dump time" in failed.stderr
    assert json.loads(status.read_text())["restore_test"]["result"] == "failed"
    assert cluster.databases() == before

    # Never latest again: a restore of latest takes the first dump and says why.
    restored = run_module("postgresql_restore", dict(cluster.login, database="proof", backup_dir=str(backup_dir),
                                                     keep_replaced=0), "--check")
    assert restored["dump"] == first
    assert restored["passed_over"] == [{"name": os.path.basename(second), "reason": restored["passed_over"][0]["reason"]}]
    assert restored["passed_over"][0]["reason"].startswith("failed its test restore at ")
    again = cli(cluster, "test-restore", "--dir", str(backup_dir), "--database", "proof")
    assert again.returncode == 0 and first in again.stdout, again.stdout + again.stderr
    assert "passed over the newer dump %s" % os.path.basename(second) in again.stderr
