"""The backup logic of weblab.stack (plugins/module_utils/pg_backup.py) without a database.

Pure helpers are tested directly; dump() and restore() run with a fake runner that plays the
PostgreSQL programs on real files under tmp_path and records every argv and environment.
The real server is in tests/integration.
"""

import datetime
import hashlib
import json
import os
import pathlib
import re
import shlex

import pytest

from ansible_collections.weblab.stack.plugins.module_utils import pg_backup as core
BackupError = core.BackupError
UTC = datetime.timezone.utc
NOW = datetime.datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)
# what pg_restore --list prints for a dump of a database with one table (header shortened)
TOC_HEADER = (";\n; Archive created at 2025-03-10 12:00:00 UTC\n;     Format: CUSTOM\n"
              ";     Dumped from database version: 15.13 (Debian)\n;     Dumped by pg_dump version: 15.13 (Debian)\n"
              ";\n;\n; Selected TOC Entries:\n;\n")
TOC_LIST = TOC_HEADER + "215; 1259 16385 TABLE public items postgres\n"


def at(days=0, hours=0):
    return NOW - datetime.timedelta(days=days, hours=hours)


# ---- naming ----------------------------------------------------------------------------------

@pytest.mark.parametrize("database", ["weblab", "web-lab", "app-2", "x", "db with space", "Émile"])
@pytest.mark.parametrize("label", [None, "3f2a9c1d0b7e", "before-upgrade", "v1.2.3", "rel+1"])
@pytest.mark.parametrize("fmt", ["custom", "directory", "plain"])
def test_name_round_trip(database, label, fmt):
    name = core.dump_name(database, NOW, label, fmt)
    parsed = core.parse_dump_name(name, database)
    assert parsed == {"name": name, "database": database, "time": NOW, "label": label, "format": fmt}
    assert core.format_of(name) == fmt


def test_name_shape():
    assert core.dump_name("weblab", NOW) == "weblab-20250310T120000Z.dump"
    assert core.dump_name("weblab", NOW, "r1", "directory") == "weblab-20250310T120000Z-r1.dir"
    assert core.dump_name("weblab", NOW.astimezone(datetime.timezone(datetime.timedelta(hours=2))), None,
                          "plain") == "weblab-20250310T120000Z.sql", "names are in UTC"
    paths = core.companions("/b", "weblab-20250310T120000Z-r1.dump")
    assert paths == {"path": "/b/weblab-20250310T120000Z-r1.dump",
                     "sha256": "/b/weblab-20250310T120000Z-r1.dump.sha256",
                     "json": "/b/weblab-20250310T120000Z-r1.dump.json",
                     "globals": "/b/weblab-20250310T120000Z-r1.globals.sql",
                     "partial": "/b/.weblab-20250310T120000Z-r1.dump.partial"}


@pytest.mark.parametrize("name", [
    "app-2-20250310T120000Z.dump",      # a dump of database app-2, not app
    "app-20250310T120000Z.globals.sql",  # the globals file
    "app-20250310T120000Z.dump.sha256",
    "app-20250310T120000Z.dump.json",
    "app-20251310T120000Z.dump",        # month 13
    "app-20250310T120000Z.tar",
    "app-20250310T120000Z-.dump",
    "app.dump",
    "other-20250310T120000Z.dump",
])
def test_parse_rejects_what_is_not_a_dump_of_the_database(name):
    assert core.parse_dump_name(name, "app") is None


@pytest.mark.parametrize("label", ["", None])
def test_empty_label_is_none(label):
    assert core.check_label(label) is None


@pytest.mark.parametrize("label", ["-x", ".x", "a/b", "a b", "x.globals", "a" * 101, "é"])
def test_bad_labels_are_refused(label):
    with pytest.raises(BackupError, match="label"):
        core.check_label(label)


@pytest.mark.parametrize("database", ["", "a/b", ".hidden", "line\nbreak", "x" * 64])
def test_bad_database_names_are_refused(database):
    with pytest.raises(BackupError, match="database"):
        core.check_database(database)


def test_temporary_database_names_are_lower_case_and_bounded():
    assert core.database_names("weblab", NOW) == ("weblab_restore_20250310_120000", "weblab_replaced_20250310_120000")
    with pytest.raises(BackupError, match="too long"):
        core.database_names("x" * 50, NOW)


# ---- argv ------------------------------------------------------------------------------------

def test_pg_dump_argv_custom_and_directory():
    connection = ["--host=db", "--port=5433", "--username=backup", "--no-password"]
    assert core.pg_dump_argv("pg_dump", "weblab", "/b/.x.partial", "custom", 1, ["--compress=1"], connection) == [
        "pg_dump", "--format=custom", "--file=/b/.x.partial", "--compress=1", "--host=db", "--port=5433",
        "--username=backup", "--no-password", "--dbname=dbname='weblab'"]
    argv = core.pg_dump_argv("pg_dump", "weblab", "/b/.x.partial", "directory", 4)
    assert "--jobs=4" in argv and argv[1] == "--format=directory"
    assert "--jobs=4" not in core.pg_dump_argv("pg_dump", "weblab", "/b/x", "custom", 4), \
        "only the directory format is dumped in parallel"


def test_conninfo_quotes_any_database_name():
    assert core.conninfo("weblab") == "dbname='weblab'"
    assert core.conninfo("host=evil dbname=x") == "dbname='host=evil dbname=x'"
    assert core.conninfo("it's\\") == "dbname='it\\'s\\\\'"


def test_restore_argv():
    assert core.pg_restore_argv("pg_restore", "/b/x.dump", "t", 3, ["--no-password"]) == [
        "pg_restore", "--exit-on-error", "--jobs=3", "--no-password", "--dbname=dbname='t'", "/b/x.dump"]
    assert "--jobs=1" not in core.pg_restore_argv("pg_restore", "/b/x.dump", "t", 1)
    argv = core.psql_restore_argv("psql", "/b/x.sql", "t", ["--no-password"])
    assert argv[:5] == ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction"]
    assert argv[-2:] == ["--dbname=dbname='t'", "--file=/b/x.sql"]
    assert core.pg_restore_list_argv("pg_restore", "/b/x.dump") == ["pg_restore", "--list", "/b/x.dump"]
    assert core.pg_dumpall_globals_argv("pg_dumpall", "/b/g", []) == [
        "pg_dumpall", "--globals-only", "--file=/b/g", "--dbname=dbname='postgres'"]


def test_sql_quoting():
    assert core.quote_ident('we"ird') == '"we""ird"'
    assert core.quote_literal("it's") == "'it''s'"
    assert core.quote_literal("a\\b'") == "E'a\\\\b'''"


@pytest.mark.parametrize("spec,major,fmt,expected", [
    (None, 15, "custom", []),
    ("", 15, "custom", []),
    ("gzip:1", 15, "custom", ["--compress=1"]),
    ("gzip", 15, "custom", ["--compress=6"]),
    ("6", 15, "directory", ["--compress=6"]),
    ("0", 15, "custom", ["--compress=0"]),
    ("none", 15, "plain", ["--compress=0"]),
    ("0", 15, "plain", ["--compress=0"]),
    ("gzip:0", 16, "custom", ["--compress=none"]),
    ("zstd:3", 16, "custom", ["--compress=zstd:3"]),
    ("ZSTD", 17, "directory", ["--compress=zstd"]),
    ("lz4:4", 16, "custom", ["--compress=lz4:4"]),
    ("gzip:9", 16, "custom", ["--compress=gzip:9"]),
    ("5", 16, "custom", ["--compress=gzip:5"]),
])
def test_compress_args(spec, major, fmt, expected):
    assert core.compress_args(spec, major, fmt) == expected


@pytest.mark.parametrize("spec,major,fmt,message", [
    ("zstd:3", 15, "custom", "needs pg_dump 16 or later"),
    ("lz4", 15, "custom", "needs pg_dump 16 or later"),
    ("gzip:1", 15, "plain", "psql cannot restore"),
    ("zstd:30", 16, "custom", "zstd levels are 1-22"),
    ("gzip:10", 16, "custom", "gzip levels are 1-9"),
    ("12", 15, "custom", "gzip level, 0-9"),
    ("brotli", 16, "custom", "METHOD"),
    ("gzip:-1", 16, "custom", "METHOD"),
    ("none:3", 16, "custom", "takes no level"),
])
def test_compress_refusals(spec, major, fmt, message):
    with pytest.raises(BackupError, match=message):
        core.compress_args(spec, major, fmt)


@pytest.mark.parametrize("text,version", [
    ("pg_dump (PostgreSQL) 15.13 (Debian 15.13-0+deb12u1)", (15, 13)),
    ("pg_dump (PostgreSQL) 17.5", (17, 5)),
    ("16beta1", (16, 0)),
])
def test_parse_version(text, version):
    assert core.parse_version(text) == version


# ---- retention -------------------------------------------------------------------------------

def entry(days, verified=True, partial=False, label=None, hours=0, database="app"):
    when = at(days, hours)
    name = core.dump_name(database, when, label)
    if partial:
        name = core.partial_name(name)
    return {"name": name, "path": "/b/" + name, "database": database, "time": when, "label": label,
            "format": "custom", "partial": partial, "verified": verified and not partial, "metadata": None,
            "problem": None if verified and not partial else "x"}


def removed_days(entries, **settings):
    removals = core.choose_removals(entries, now=NOW, **settings)
    by_path = dict((item["path"], index) for index, item in enumerate(entries))
    return [by_path[item["path"]] for item in removals]


def test_keep_newest_n():
    entries = [entry(days) for days in (0, 1, 2, 3, 4)]
    assert removed_days(entries, keep=3) == [4, 3]  # oldest first
    assert removed_days(entries, keep=5) == []


def test_max_age():
    entries = [entry(0), entry(1), entry(6, hours=23), entry(7), entry(30)]
    assert removed_days(entries, max_age_days=7) == [4, 3], "younger than 7 days stays, 7 days goes"


def test_either_rule_keeps_a_dump():
    entries = [entry(days) for days in (0, 1, 2, 10, 20, 40)]
    assert removed_days(entries, keep=2, max_age_days=15) == [5, 4]
    assert removed_days(entries, keep=4, max_age_days=1) == [5, 4]


def test_no_rules_remove_no_verified_dump():
    entries = [entry(days) for days in (0, 100, 1000)]
    assert removed_days(entries) == []


def test_never_removes_the_newest_verified_dump():
    # Every dump is older than the age limit, and the newest ones are not verified.
    entries = [entry(10), entry(20), entry(5, verified=False), entry(3, partial=True)]
    assert removed_days(entries, max_age_days=1) == [1]
    assert removed_days([entry(50)], max_age_days=1) == []
    assert removed_days([entry(50)], keep=1, max_age_days=1) == []


def test_newest_verified_counts_verified_dumps_only():
    entries = [entry(1, verified=False), entry(2), entry(3), entry(4)]
    removals = core.choose_removals(entries, keep=2, now=NOW)
    assert [item["path"] for item in removals] == [entries[3]["path"]]


def test_leftovers_older_than_the_newest_verified_go_newer_ones_stay():
    entries = [entry(0, hours=1), entry(0, partial=True), entry(0, verified=False),
               entry(2, partial=True), entry(3, verified=False), entry(4)]
    reported = []
    removals = core.choose_removals(entries, now=NOW, reported=reported)
    assert [item["path"] for item in removals] == [entries[3]["path"]]
    assert all("older than the newest verified dump" in item["reason"] for item in removals)
    # An unverified dump is reported and kept unless asked: it may be the only one that restores.
    assert [item["name"] for item in reported] == [entries[4]["name"]]
    asked = core.choose_removals(entries, now=NOW, remove_unverified=True)
    assert sorted(item["path"] for item in asked) == sorted([entries[3]["path"], entries[4]["path"]])


def test_a_damaged_dump_never_counts_toward_keep():
    entries = [entry(days) for days in (1, 2, 3, 4)]
    damaged = {entries[1]["path"]}
    reported = []
    removals = core.choose_removals(entries, keep=2, now=NOW, reported=reported,
                                    verify=lambda item: "checksum mismatch" if item["path"] in damaged else None)
    # The two newest good ones are days 1 and 3; day 2 is damaged: kept and reported; day 4 goes.
    assert [item["path"] for item in removals] == [entries[3]["path"]]
    assert [(item["name"], "checksum mismatch" in item["reason"]) for item in reported] == [(entries[1]["name"], True)]
    asked = core.choose_removals(entries, keep=2, now=NOW, remove_unverified=True,
                                 verify=lambda item: "checksum mismatch" if item["path"] in damaged else None)
    assert [item["path"] for item in asked] == [entries[3]["path"], entries[1]["path"]]


def test_dump_retention_checks_the_checksums_of_what_it_keeps(tmp_path, bin_dir):
    kept = make_dump(tmp_path, "weblab", at(2))
    damaged = make_dump(tmp_path, "weblab", at(1), content=b"PGDMP\x01 original")
    damaged.write_bytes(b"PGDMP\x01 altered!")
    older = make_dump(tmp_path, "weblab", at(3))
    result = core.dump(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", keep=2, now=NOW)
    assert result["removed"] == [str(older)], result["removed"]
    assert kept.exists() and damaged.exists()
    assert [item["name"] for item in result["problems"]] == [damaged.name]
    assert any(damaged.name in warning and "damaged" in warning for warning in result["warnings"]), result["warnings"]


def test_nothing_removed_without_a_verified_dump():
    entries = [entry(5, partial=True), entry(6, verified=False)]
    assert core.choose_removals(entries, keep=1, max_age_days=1, now=NOW) == []


# ---- latest ----------------------------------------------------------------------------------

def test_latest_skips_unverified_and_partial_and_filters_by_label():
    entries = [entry(5, label="r1"), entry(4), entry(3, label="r2"), entry(2, label="r1", verified=False),
               entry(1, partial=True), entry(0, hours=1, verified=False)]
    assert core.choose_latest(entries)["path"] == entries[2]["path"]
    assert core.choose_latest(entries, label="r1")["path"] == entries[0]["path"]
    assert core.choose_latest(entries, label="r3") is None
    assert core.choose_latest([]) is None


# ---- files: scan, checksums, verification ----------------------------------------------------

def make_dump(directory, database, when, label=None, content=b"PGDMP\x01 fake dump", verified=True,
              fmt="custom", metadata=None):
    name = core.dump_name(database, when, label, fmt)
    path = directory / name
    if fmt == "directory":
        path.mkdir()
        (path / "toc.dat").write_bytes(b"PGDMP toc")
        (path / "3001.dat.gz").write_bytes(content)
    else:
        path.write_bytes(content)
    core.write_checksum(str(path))
    data = {"database": database, "file": name, "verified": verified}
    data.update(metadata or {})
    (directory / (name + ".json")).write_text(json.dumps(data))
    return path


def test_scan_sees_verified_unverified_damaged_metadata_and_partials(tmp_path):
    good = make_dump(tmp_path, "app", at(3))
    no_json = make_dump(tmp_path, "app", at(2))
    os.unlink(str(no_json) + ".json")
    make_dump(tmp_path, "app", at(1), verified=False)
    broken = make_dump(tmp_path, "app", at(0, 5))
    pathlib.Path(str(broken) + ".json").write_text("{not json")
    make_dump(tmp_path, "app", at(0, 4), metadata={"file": "other.dump"})
    no_sum = make_dump(tmp_path, "app", at(0, 3))
    os.unlink(str(no_sum) + ".sha256")
    (tmp_path / core.partial_name(core.dump_name("app", at(0, 2)))).write_bytes(b"half")
    make_dump(tmp_path, "app-2", at(0, 1))
    (tmp_path / "notes.txt").write_text("x")
    entries = core.scan(str(tmp_path), "app")
    assert [item["verified"] for item in entries] == [True, False, False, False, False, False, False]
    assert entries[0]["path"] == str(good)
    assert [item["partial"] for item in entries] == [False] * 6 + [True]
    problems = [item["problem"] for item in entries]
    assert problems[1] == "no metadata file" and problems[2] == "metadata does not say verified"
    assert problems[3].startswith("unreadable metadata") and "another file" in problems[4]
    assert problems[5] == "no checksum file"
    assert core.choose_latest(entries)["path"] == str(good)
    assert core.scan(str(tmp_path / "missing"), "app") == []


def test_checksum_file_is_sha256sum_format(tmp_path):
    path = make_dump(tmp_path, "app", NOW, content=b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    assert pathlib.Path(str(path) + ".sha256").read_text() == "%s  %s\n" % (digest, path.name)
    assert core.verify_checksum(str(path)) == digest


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
def test_damaged_file_is_detected(tmp_path, damage):
    path = make_dump(tmp_path, "app", NOW, content=os.urandom(5000))
    damage(path)
    with pytest.raises(BackupError, match="is damaged.*Nothing was changed"):
        core.verify_checksum(str(path))


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
def test_damaged_directory_dump_is_detected(tmp_path, damage):
    path = make_dump(tmp_path, "app", NOW, fmt="directory", content=os.urandom(5000))
    before = core.verify_checksum(str(path))
    assert pathlib.Path(str(path) + ".sha256").read_text().count("\n") == 2
    damage(path / "3001.dat.gz")
    with pytest.raises(BackupError, match="3001.dat.gz has sha256"):
        core.verify_checksum(str(path))
    assert len(before) == 64


def test_directory_dump_missing_or_extra_file_is_detected(tmp_path):
    path = make_dump(tmp_path, "app", NOW, fmt="directory")
    (path / "3002.dat.gz").write_bytes(b"x")
    with pytest.raises(BackupError, match="not in the checksum file"):
        core.verify_checksum(str(path))
    os.unlink(str(path / "3002.dat.gz"))
    os.unlink(str(path / "toc.dat"))
    with pytest.raises(BackupError, match="toc.dat is missing"):
        core.verify_checksum(str(path))


def test_dump_without_checksum_file_is_refused(tmp_path):
    path = make_dump(tmp_path, "app", NOW)
    os.unlink(str(path) + ".sha256")
    with pytest.raises(BackupError, match="no checksum file"):
        core.verify_checksum(str(path))


def test_plain_dump_must_be_complete(tmp_path):
    path = tmp_path / "app.sql"
    path.write_bytes(b"--\n-- PostgreSQL database dump\n--\nSELECT 1;\n")
    with pytest.raises(BackupError, match="incomplete"):
        core.verify_plain(str(path))
    path.write_bytes(path.read_bytes() + b"--\n-- PostgreSQL database dump complete\n--\n\n")
    core.verify_plain(str(path))
    path.write_bytes(b"SELECT 1;\n-- PostgreSQL database dump complete\n")
    with pytest.raises(BackupError, match="does not start like"):
        core.verify_plain(str(path))


# ---- dump() and restore() with a fake runner --------------------------------------------------

class FakePostgres:
    """Plays pg_dump, pg_dumpall, pg_restore and psql: writes the files pg_dump would, answers
    the queries the code makes, fails where a test says so. Records (argv, env)."""

    def __init__(self, pg_dump_version="15.13", databases=None, replaced=(), row_counts=None):
        self.calls = []
        self.pg_dump_version = pg_dump_version
        self.databases = databases if databases is not None else {}
        self.replaced = list(replaced)
        self.fail = {}
        # What the counting query finds: at dump time, and in a test restore's scratch database.
        self.row_counts = {'public."Items"': 3, "public.notes": 0} if row_counts is None else row_counts
        self.restored_counts = None

    def __call__(self, argv, env):
        self.calls.append((list(argv), dict(env)))
        program = os.path.basename(argv[0])
        if program in self.fail and self.fail[program](argv):
            return 1, "", "%s: error: simulated failure" % program
        if argv[1:] == ["--version"]:
            return 0, "%s (PostgreSQL) %s\n" % (program, self.pg_dump_version), ""
        options = dict(arg.split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
        if program == "pg_dump":
            target = options["--file"]
            if options["--format"] == "directory":
                os.mkdir(target)
                pathlib.Path(target, "toc.dat").write_bytes(b"PGDMP toc")
            elif options["--format"] == "plain":
                pathlib.Path(target).write_bytes(b"--\n-- PostgreSQL database dump\n--\n"
                                                 b"-- PostgreSQL database dump complete\n")
            else:
                pathlib.Path(target).write_bytes(b"PGDMP fake custom dump")
            return 0, "", ""
        if program == "pg_dumpall":
            pathlib.Path(options["--file"]).write_text("CREATE ROLE postgres;\n")
            return 0, "", ""
        if program == "pg_restore" and "--list" in argv:
            path = pathlib.Path(argv[-1])
            head = (path / "toc.dat" if path.is_dir() else path).read_bytes()[:5]
            if head != b"PGDMP":
                return 1, "", "pg_restore: error: input file does not appear to be a valid archive"
            return 0, TOC_LIST, ""
        if program == "pg_restore":
            return 0, "", ""
        if program == "psql":
            return self.psql(argv, env)
        raise AssertionError("unexpected program %s" % argv)

    def psql(self, argv, env=None):
        scripts = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--file=")]
        if scripts and "\\! " in pathlib.Path(scripts[0]).read_text():
            return self.snapshot_dump(pathlib.Path(scripts[0]).read_text(), env or {})
        statements = [argv[index + 1] for index, arg in enumerate(argv) if arg == "--command"]
        if not statements:
            return 0, "", ""
        sql = statements[0]
        if sql == core.ROW_COUNTS_SQL:
            counts = self.row_counts if self.restored_counts is None else self.restored_counts
            return 0, json.dumps(counts) + "\n", ""
        if sql.startswith("SELECT json_build_object('target'"):
            name = re.search(r"d\.datname = '([^']*)'", sql).group(1)
            return 0, json.dumps({"target": self.databases.get(name), "taken": [],
                                  "replaced": self.replaced}) + "\n", ""
        return 0, "", ""

    def snapshot_dump(self, script, env):
        """psql running snapshot_dump_script: the counts into its \\o file, then pg_dump (played
        here, --snapshot dropped) and its exit status on stdout."""
        counts = re.search(r"^\\o '((?:[^']|'')*)'$", script, re.M).group(1).replace("''", "'")
        assert core.ROW_COUNTS_SQL + ";" in script and "pg_export_snapshot()" in script
        pathlib.Path(counts).write_text(json.dumps(self.row_counts) + "\n")
        command = re.search(r"^\\! (.*); echo \"weblab-pg_dump-exit=\$\?\"$", script, re.M).group(1)
        dump_argv = shlex.split(command)
        assert dump_argv[-1] == "--snapshot=$WEBLAB_SNAPSHOT", dump_argv
        # Run by psql's shell: psql's environment.
        rc, dummy, err = self(dump_argv[:-1], env)
        return 0, "weblab-pg_dump-exit=%d\n" % rc, err

    def programs(self):
        return [os.path.basename(argv[0]) for argv, env in self.calls]

    def statements(self):
        return [argv[index + 1] for argv, env in self.calls for index, arg in enumerate(argv) if arg == "--command"]


@pytest.fixture
def bin_dir(tmp_path):
    path = tmp_path / "bin"
    path.mkdir()
    for name in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
        (path / name).write_text("#!/bin/false\n")
        (path / name).chmod(0o755)
    return path


def make_pg(fake, bin_dir, **login):
    return core.Postgres(fake, bin_dir=str(bin_dir), **login)


def test_dump_writes_partial_then_renames_verifies_and_records(tmp_path, bin_dir):
    fake = FakePostgres()
    backup = tmp_path / "backups"
    pg = make_pg(fake, bin_dir, host="db", port=5433, user="backup", password="s3cret!")
    result = core.dump(pg, str(backup), "weblab", compress="gzip:1", label="r1", globals_dump=True, now=NOW)
    name = "weblab-20250310T120000Z-r1.dump"
    assert result["path"] == str(backup / name)
    assert oct(backup.stat().st_mode & 0o777) == "0o700"
    dump_argv = [argv for argv, env in fake.calls if argv[0].endswith("pg_dump") and "--version" not in argv][0]
    assert dump_argv == [str(bin_dir / "pg_dump"), "--format=custom", "--file=%s" % (backup / ("." + name + ".partial")),
                         "--compress=1", "--host=db", "--port=5433", "--username=backup", "--no-password",
                         "--dbname=dbname='weblab'"]
    # pg_dump --version (the compression arguments depend on it), psql counting the rows and
    # running the dump in its snapshot, its table of contents (which also names both versions),
    # the globals.
    assert fake.programs() == ["pg_dump", "psql", "pg_dump", "pg_restore", "pg_dumpall"]
    assert [argv for argv, env in fake.calls][3] == [str(bin_dir / "pg_restore"), "--list", str(backup / name)]
    for argv, env in fake.calls:
        assert env == {"PGPASSWORD": "s3cret!"}
        assert not any("s3cret" in arg for arg in argv)
    assert not any("s3cret" in command for command in result["commands"])
    assert sorted(os.listdir(backup)) == [name, name + ".json", name + ".sha256", "weblab-20250310T120000Z-r1.globals.sql"]
    metadata = json.loads((backup / (name + ".json")).read_text())
    assert metadata["verified"] is True and metadata["file"] == name and metadata["label"] == "r1"
    assert metadata["sha256"] == result["checksum"] == hashlib.sha256(b"PGDMP fake custom dump").hexdigest()
    assert metadata["server_version"] == "15.13 (Debian)" and metadata["pg_dump_version"] == "15.13"
    assert metadata["globals"] == "weblab-20250310T120000Z-r1.globals.sql"
    assert set(metadata) >= {"database", "file", "format", "size", "sha256", "server_version", "pg_dump_version",
                             "started", "finished", "duration", "label", "verified", "host"}
    assert core.verify_checksum(result["path"]) == result["checksum"]


def test_dump_failure_leaves_nothing_that_looks_like_a_dump(tmp_path, bin_dir):
    fake = FakePostgres()
    fake.fail["pg_dump"] = lambda argv: "--version" not in argv
    backup = tmp_path / "backups"
    backup.mkdir()
    with pytest.raises(BackupError, match="pg_dump of database weblab failed.*simulated failure"):
        core.dump(make_pg(fake, bin_dir), str(backup), "weblab", now=NOW)
    assert os.listdir(backup) == []


def test_dump_with_unreadable_toc_is_not_marked_verified(tmp_path, bin_dir):
    fake = FakePostgres()
    fake.fail["pg_restore"] = lambda argv: True
    backup = tmp_path / "backups"
    with pytest.raises(BackupError, match="table of contents"):
        core.dump(make_pg(fake, bin_dir), str(backup), "weblab", now=NOW)
    assert [item["verified"] for item in core.scan(str(backup), "weblab")] == [False]


@pytest.mark.parametrize("listing, whole", [
    (TOC_LIST, True),
    (TOC_HEADER, True),  # an empty database: a header and no entries is still a whole dump
    ("", False),
    ("215; 1259 16385 TABLE public items postgres\n", False),
])
def test_table_of_contents_needs_its_header_not_entries(tmp_path, bin_dir, listing, whole):
    pg = make_pg(lambda argv, env: (0, listing, ""), bin_dir)
    if whole:
        core.verify_contents(pg, str(tmp_path / "x.dump"), "custom")
    else:
        with pytest.raises(BackupError, match="table of contents of .*x.dump cannot be read"):
            core.verify_contents(pg, str(tmp_path / "x.dump"), "custom")


def test_dump_refuses_zstd_before_touching_anything(tmp_path, bin_dir):
    fake = FakePostgres(pg_dump_version="15.13")
    with pytest.raises(BackupError, match="needs pg_dump 16"):
        core.dump(make_pg(fake, bin_dir), str(tmp_path / "b"), "weblab", compress="zstd:3", now=NOW)
    assert fake.programs() == ["pg_dump"] and not (tmp_path / "b").exists()


def test_dump_directory_format_with_jobs(tmp_path, bin_dir):
    fake = FakePostgres(pg_dump_version="16.4")
    result = core.dump(make_pg(fake, bin_dir), str(tmp_path), "weblab", fmt="directory", jobs=3,
                       compress="zstd:3", now=NOW)
    assert result["path"].endswith(".dir") and os.path.isdir(result["path"])
    dump_argv = fake.calls[2][0]
    assert "--jobs=3" in dump_argv and "--compress=zstd:3" in dump_argv
    with pytest.raises(BackupError, match="needs format=directory"):
        core.dump(make_pg(fake, bin_dir), str(tmp_path), "weblab", jobs=2, now=NOW)


def test_dump_check_mode_reports_dump_and_removals_and_touches_nothing(tmp_path, bin_dir):
    backup = tmp_path / "backups"
    backup.mkdir()
    for days in (1, 2, 3):
        make_dump(backup, "weblab", at(days))
    leftover = backup / core.partial_name(core.dump_name("weblab", at(5)))
    leftover.write_bytes(b"half")
    before = sorted(os.listdir(backup))
    fake = FakePostgres()
    result = core.dump(make_pg(fake, bin_dir), str(backup), "weblab", keep=2, check_mode=True, now=NOW)
    assert result["changed"] is True
    assert result["path"] == str(backup / "weblab-20250310T120000Z.dump")
    # The new dump counts: it and the 1-day dump stay.
    assert result["removed"] == [str(leftover), str(backup / core.dump_name("weblab", at(3))),
                                 str(backup / core.dump_name("weblab", at(2)))]
    assert sorted(os.listdir(backup)) == before
    assert fake.programs() == ["pg_dump"], "check mode only asked pg_dump its version"

    real = core.dump(make_pg(FakePostgres(), bin_dir), str(backup), "weblab", keep=2, now=NOW)
    assert sorted(real["removed"]) == sorted(result["removed"])
    assert sorted(os.listdir(backup)) == sorted(
        [name + suffix for name in (core.dump_name("weblab", at(1)), core.dump_name("weblab", NOW))
         for suffix in ("", ".json", ".sha256")])


def test_dump_two_in_the_same_second_get_distinct_names(tmp_path, bin_dir):
    now = core.utcnow()
    first = core.dump(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", now=now)
    second = core.dump(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", now=now)
    assert first["path"] != second["path"]


TARGET = {"name": "weblab", "owner": "weblab", "encoding": "UTF8", "collate": "C.UTF-8", "ctype": "C.UTF-8",
          "allow_connections": True, "has_acl": True,
          "grants": [{"privilege": "CONNECT", "grantee": "weblab_ro", "grantable": False}]}


def test_restore_latest_checks_then_restores_then_swaps(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(2))
    latest = make_dump(tmp_path, "weblab", at(1))
    make_dump(tmp_path, "weblab", at(0, 1), verified=False)
    fake = FakePostgres(databases={"weblab": TARGET})
    pg = make_pg(fake, bin_dir, password="pw")
    result = core.restore(pg, str(tmp_path), "weblab", jobs=2, now=NOW)
    assert result["dump"] == str(latest)
    assert result["replaced_by"] == "weblab_replaced_20250310_120000"
    assert fake.calls[0][0][1] == "--list"
    # The table of contents; one query about the target; the new database with its grants; the
    # restore; the swap. Each psql run costs a connection: no more of them than that.
    assert fake.programs() == ["pg_restore", "psql", "psql", "pg_restore", "psql"]
    restore_argv = [argv for argv, env in fake.calls if argv[0].endswith("pg_restore") and "--list" not in argv]
    assert restore_argv == [[str(bin_dir / "pg_restore"), "--exit-on-error", "--jobs=2", "--no-password",
                             "--dbname=dbname='weblab_restore_20250310_120000'", str(latest)]]
    statements = fake.statements()
    create = [sql for sql in statements if sql.startswith("CREATE DATABASE")]
    assert create == ['CREATE DATABASE "weblab_restore_20250310_120000" TEMPLATE template0 OWNER "weblab" '
                      "ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"]
    assert 'GRANT CONNECT ON DATABASE "weblab_restore_20250310_120000" TO weblab_ro' in statements
    swap = [sql for sql in statements if "RENAME" in sql]
    assert swap == ['ALTER DATABASE "weblab" RENAME TO "weblab_replaced_20250310_120000"; '
                    'ALTER DATABASE "weblab_restore_20250310_120000" RENAME TO "weblab"']
    order = [index for index, sql in enumerate(statements) if sql.startswith(("CREATE DATABASE", "ALTER DATABASE"))]
    assert statements[order[0]].startswith("CREATE DATABASE")
    assert statements.index('ALTER DATABASE "weblab" ALLOW_CONNECTIONS false') < statements.index(swap[0])
    assert statements[-1] == 'ALTER DATABASE "weblab_replaced_20250310_120000" ALLOW_CONNECTIONS true'
    assert all(env == {"PGPASSWORD": "pw"} for argv, env in fake.calls)


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
def test_restore_refuses_a_damaged_dump_before_any_database_command(tmp_path, bin_dir, damage):
    make_dump(tmp_path, "weblab", at(2))
    latest = make_dump(tmp_path, "weblab", at(1), content=os.urandom(4000))
    damage(latest)
    fake = FakePostgres(databases={"weblab": TARGET})
    with pytest.raises(BackupError, match="%s is damaged" % latest):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW)
    assert fake.calls == [], "a program ran before the checksum was checked"


def test_restore_failure_drops_the_temporary_database_and_never_renames(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    fake = FakePostgres(databases={"weblab": TARGET})
    fake.fail["pg_restore"] = lambda argv: "--list" not in argv
    with pytest.raises(BackupError, match="was not touched"):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW)
    statements = fake.statements()
    assert statements[-1] == 'DROP DATABASE IF EXISTS "weblab_restore_20250310_120000"'
    assert not [sql for sql in statements if "RENAME" in sql or "ALLOW_CONNECTIONS" in sql]


def test_restore_failed_swap_reopens_the_target(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    fake = FakePostgres(databases={"weblab": TARGET})
    fake.fail["psql"] = lambda argv: any("RENAME" in arg for arg in argv)
    with pytest.raises(BackupError, match="swapping"):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW, sleep=lambda seconds: None)
    statements = fake.statements()
    assert statements[-2:] == ['ALTER DATABASE "weblab" ALLOW_CONNECTIONS true',
                               'DROP DATABASE IF EXISTS "weblab_restore_20250310_120000"']


def test_restore_check_mode_only_reads(tmp_path, bin_dir):
    dump = make_dump(tmp_path, "weblab", at(1))
    fake = FakePostgres(databases={"weblab": TARGET})
    result = core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", check_mode=True, now=NOW)
    assert result["changed"] is True and result["dump"] == str(dump)
    assert result["replaced_by"] == "weblab_replaced_20250310_120000"
    assert any("rename database weblab to weblab_replaced_20250310_120000" in line for line in result["actions"])
    assert all(sql.startswith("SELECT") for sql in fake.statements())


def test_restore_into_a_missing_database_renames_only(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1), fmt="plain",
              content=b"--\n-- PostgreSQL database dump\n-- PostgreSQL database dump complete\n")
    fake = FakePostgres()
    result = core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", jobs=4, now=NOW)
    assert result["replaced_by"] is None and result["warnings"]
    statements = fake.statements()
    assert 'CREATE DATABASE "weblab_restore_20250310_120000" TEMPLATE template0' in statements
    assert statements[-1] == 'ALTER DATABASE "weblab_restore_20250310_120000" RENAME TO "weblab"'
    psql_restore = [argv for argv, env in fake.calls if "--single-transaction" in argv]
    assert len(psql_restore) == 1 and "--set=ON_ERROR_STOP=1" in psql_restore[0]


def test_restore_latest_with_label_and_named(tmp_path, bin_dir):
    labelled = make_dump(tmp_path, "weblab", at(3), label="r1")
    make_dump(tmp_path, "weblab", at(1))
    fake = FakePostgres()
    assert core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", label="r1", check_mode=True,
                        now=NOW)["dump"] == str(labelled)
    with pytest.raises(BackupError, match="no verified dump of database weblab labelled r2"):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", label="r2", now=NOW)
    other = make_dump(tmp_path, "old_name", at(5))
    with pytest.raises(BackupError, match="made from database old_name, not weblab: set allow_other_database"):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", dump_ref=other.name, check_mode=True, now=NOW)
    allowed = core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", dump_ref=other.name, check_mode=True,
                           allow_other_database=True, now=NOW)
    assert allowed["dump"] == str(other)
    assert any("made from database old_name" in warning for warning in allowed["warnings"])
    for bad in ("../x.dump", ".hidden.dump", "weblab.tar"):
        with pytest.raises(BackupError, match="dump="):
            core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", dump_ref=bad, now=NOW)
    with pytest.raises(BackupError, match="does not exist"):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", dump_ref="nope.dump", now=NOW)


def test_cli_status_file_only_on_success(tmp_path, bin_dir, monkeypatch, capsys):
    monkeypatch.setattr(core, "find_program", lambda name, bin_dir_=None: str(bin_dir / name))
    status = tmp_path / "status.json"
    fake = FakePostgres()
    assert core.main(["dump", "--dir", str(tmp_path / "b"), "--database", "weblab", "--status-file", str(status)],
                     runner=fake) == 0
    data = json.loads(status.read_text())
    assert data["database"] == "weblab" and data["file"].endswith(".dump") and data["size"] > 0
    assert set(data) >= {"last_success", "file", "size", "duration", "database"}
    before = status.read_text()
    fake.fail["pg_dump"] = lambda argv: "--version" not in argv
    assert core.main(["dump", "--dir", str(tmp_path / "b"), "--database", "weblab", "--status-file",
                      str(status)], runner=fake) == 1
    assert "simulated failure" in capsys.readouterr().err
    assert status.read_text() == before


def test_cli_status_file_keeps_the_test_restores_record(tmp_path, bin_dir, monkeypatch):
    monkeypatch.setattr(core, "find_program", lambda name, bin_dir_=None: str(bin_dir / name))
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"restore_test": {"result": "passed"}, "database": "weblab"}))
    assert core.main(["dump", "--dir", str(tmp_path / "b"), "--database", "weblab", "--status-file", str(status)],
                     runner=FakePostgres()) == 0
    data = json.loads(status.read_text())
    assert data["restore_test"] == {"result": "passed"} and data["file"].endswith(".dump")


# ---- row counts at dump time and the test restore --------------------------------------------

def test_snapshot_script_counts_and_dumps_in_one_exported_snapshot():
    script = core.snapshot_dump_script(["pg_dump", "--file=/b/it's here.partial"], "/b/it's.counts")
    lines = script.splitlines()
    assert lines[0] == "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;"
    assert lines[1] == "SELECT pg_export_snapshot() AS weblab_snapshot \\gset"
    assert lines[2] == "\\setenv WEBLAB_SNAPSHOT :weblab_snapshot"
    assert lines[3] == "\\o '/b/it''s.counts'"
    assert lines[4] == core.ROW_COUNTS_SQL + ";"
    # pg_dump starts in the snapshot the counts saw, while this session holds it open.
    assert lines[6] == ("\\! pg_dump '--file=/b/it'\"'\"'s here.partial' --snapshot=\"$WEBLAB_SNAPSHOT\"; "
                        "echo \"weblab-pg_dump-exit=$?\"")
    assert lines[7] == "COMMIT;"


def test_dump_records_the_row_counts_of_its_snapshot_and_leaves_no_script(tmp_path, bin_dir):
    fake = FakePostgres(row_counts={'public."Items"': 12, "lab.notes": 0})
    backup = tmp_path / "b"
    result = core.dump(make_pg(fake, bin_dir), str(backup), "weblab", now=NOW)
    assert result["metadata"]["row_counts"] == {'public."Items"': 12, "lab.notes": 0}
    on_disk = json.loads(pathlib.Path(result["path"] + ".json").read_text())
    assert on_disk["row_counts"] == result["metadata"]["row_counts"]
    name = os.path.basename(result["path"])
    assert sorted(os.listdir(backup)) == [name, name + ".json", name + ".sha256"]
    assert any(command.endswith("'--snapshot=$WEBLAB_SNAPSHOT'") for command in result["commands"]), result["commands"]


def test_dump_fails_when_the_counting_session_fails_and_keeps_nothing(tmp_path, bin_dir):
    fake = FakePostgres()
    fake.fail["psql"] = lambda argv: True
    with pytest.raises(BackupError, match="pg_dump of database weblab failed.*simulated failure"):
        core.dump(make_pg(fake, bin_dir), str(tmp_path / "b"), "weblab", now=NOW)
    assert os.listdir(tmp_path / "b") == []


@pytest.mark.parametrize("recorded, restored, problems", [
    ({"a": 1, "b": 2}, {"a": 1, "b": 2}, []),
    ({"a": 1, "b": 2}, {"a": 1, "b": 1}, ["table b has 1 rows, 2 at dump time"]),
    ({"a": 1, "b": 2}, {"a": 1}, ["table b (2 rows at dump time) is missing"]),
    ({"a": 1}, {"a": 1, "c": 0}, ["table c (0 rows) was not in the dump's row counts"]),
])
def test_compare_row_counts(recorded, restored, problems):
    assert core.compare_row_counts(recorded, restored) == problems


COUNTS = {'public."Items"': 3, "public.notes": 0}


def test_test_restore_restores_the_latest_into_a_scratch_database_compares_and_drops_it(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(2), metadata={"row_counts": {"public.old": 1}})
    latest = make_dump(tmp_path, "weblab", at(1), metadata={"row_counts": COUNTS})
    fake = FakePostgres(databases={"weblab": TARGET}, row_counts=COUNTS)
    result = core.test_restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", jobs=2, now=NOW)
    assert result["result"] == "passed" and result["problems"] == [] and result["tables"] == 2
    assert result["dump"] == str(latest) and result["scratch"] == "weblab_test_20250310_120000"
    statements = fake.statements()
    assert statements[1].startswith('CREATE DATABASE "weblab_test_20250310_120000" TEMPLATE template0 OWNER "weblab"')
    assert statements[-1] == 'DROP DATABASE IF EXISTS "weblab_test_20250310_120000"'
    restore_argv = [argv for argv, env in fake.calls if argv[0].endswith("pg_restore") and "--list" not in argv]
    assert restore_argv[0][-2:] == ["--dbname=dbname='weblab_test_20250310_120000'", str(latest)]
    assert "--jobs=2" in restore_argv[0]
    # The live database is never renamed, dropped or altered.
    assert not [sql for sql in statements if 'DATABASE "weblab"' in sql]
    recorded = json.loads(pathlib.Path(str(latest) + ".json").read_text())["restore_test"]
    assert recorded == {"result": "passed", "at": "2025-03-10T12:00:00Z", "problems": [], "tables": 2,
                        "duration": result["duration"]}
    assert core.choose_latest(core.scan(str(tmp_path), "weblab"))["path"] == str(latest)


def test_test_restore_with_other_rows_marks_the_dump_failed_and_latest_passes_it_over(tmp_path, bin_dir):
    older = make_dump(tmp_path, "weblab", at(2), metadata={"row_counts": COUNTS})
    latest = make_dump(tmp_path, "weblab", at(1), metadata={"row_counts": COUNTS})
    fake = FakePostgres(databases={"weblab": TARGET}, row_counts=COUNTS)
    fake.restored_counts = {'public."Items"': 2, "public.notes": 0}
    result = core.test_restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW)
    assert result["result"] == "failed"
    assert result["problems"] == ['table public."Items" has 2 rows, 3 at dump time']
    assert fake.statements()[-1] == 'DROP DATABASE IF EXISTS "weblab_test_20250310_120000"'
    entries = core.scan(str(tmp_path), "weblab")
    assert core.choose_latest(entries)["path"] == str(older)
    skipped = core.passed_over(entries, core.choose_latest(entries))
    assert skipped == [{"name": latest.name, "reason": 'failed its test restore at 2025-03-10T12:00:00Z: table '
                        'public."Items" has 2 rows, 3 at dump time'}]
    # The next test restore takes the dump before it.
    fake.restored_counts = None
    again = core.test_restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=at(0, -1))
    assert again["result"] == "passed" and again["dump"] == str(older)
    assert again["warnings"] == ["latest passed over the newer dump %s: %s" % (latest.name, skipped[0]["reason"])]


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
def test_test_restore_of_a_damaged_dump_marks_it_failed_without_touching_the_server(tmp_path, bin_dir, damage):
    latest = make_dump(tmp_path, "weblab", at(1), content=os.urandom(4000), metadata={"row_counts": COUNTS})
    damage(latest)
    fake = FakePostgres(databases={"weblab": TARGET})
    result = core.test_restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW)
    assert result["result"] == "failed" and "is damaged" in result["problems"][0]
    assert not [sql for sql in fake.statements() if sql.startswith(("CREATE", "DROP", "ALTER"))]
    assert core.choose_latest(core.scan(str(tmp_path), "weblab")) is None


def test_test_restore_of_a_dump_without_row_counts_restores_and_says_it_did_not_compare(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    result = core.test_restore(make_pg(FakePostgres(databases={"weblab": TARGET}), bin_dir), str(tmp_path),
                               "weblab", now=NOW)
    assert result["result"] == "passed"
    assert result["warnings"] == ["the dump recorded no row counts (made before they were): it restored, its rows "
                                  "were not compared"]


def test_test_restore_failing_for_the_server_marks_nothing(tmp_path, bin_dir):
    latest = make_dump(tmp_path, "weblab", at(1), metadata={"row_counts": COUNTS})
    fake = FakePostgres(databases={"weblab": TARGET})
    fake.fail["psql"] = lambda argv: any(arg.startswith("CREATE DATABASE") for arg in argv)
    with pytest.raises(BackupError, match="creating the scratch database weblab_test_20250310_120000 failed"):
        core.test_restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW)
    assert "restore_test" not in json.loads(pathlib.Path(str(latest) + ".json").read_text())


def test_cli_test_restore_writes_its_result_into_the_status_file(tmp_path, bin_dir, monkeypatch, capsys):
    monkeypatch.setattr(core, "find_program", lambda name, bin_dir_=None: str(bin_dir / name))
    backup = tmp_path / "b"
    backup.mkdir()
    latest = make_dump(backup, "weblab", at(1), metadata={"row_counts": COUNTS})
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"file": "kept", "last_success": "2025-03-10T03:15:00Z"}))
    fake = FakePostgres(databases={"weblab": TARGET}, row_counts=COUNTS)
    argv = ["test-restore", "--dir", str(backup), "--database", "weblab", "--status-file", str(status)]
    assert core.main(argv, runner=fake) == 0
    assert "test restore of %s passed: 2 tables" % latest in capsys.readouterr().out
    data = json.loads(status.read_text())
    assert data["file"] == "kept" and data["restore_test"]["result"] == "passed"
    assert data["restore_test"]["dump"] == str(latest) and data["restore_test"]["tables"] == 2

    make_dump(backup, "weblab", at(0, 1), metadata={"row_counts": COUNTS})
    fake.restored_counts = {}
    assert core.main(argv, runner=fake) == 1
    err = capsys.readouterr().err
    assert "is marked failed (never chosen as latest)" in err and 'table public."Items"' in err
    assert json.loads(status.read_text())["restore_test"]["result"] == "failed"

    fake.fail["psql"] = lambda argv: True
    assert core.main(argv, runner=fake) == 1
    failed = json.loads(status.read_text())["restore_test"]
    assert failed["result"] == "failed" and failed["dump"] is None and "simulated failure" in failed["problems"][0]


# ---- what a restore carries over beyond the contents ----------------------------------------

@pytest.mark.parametrize("stored, items", [
    ('"$user", public', ["$user", "public"]),
    ("public", ["public"]),
    ('a,"b""c" , "d, e"', ["a", 'b"c', "d, e"]),
    ("", []),
    ("  ", []),
])
def test_split_setting_list(stored, items):
    assert core.split_setting_list(stored) == items


@pytest.mark.parametrize("stored", ['"open', "a b", 'a,"b"c'])
def test_split_setting_list_refuses_what_postgresql_never_stores(stored):
    with pytest.raises(BackupError, match="list setting"):
        core.split_setting_list(stored)


@pytest.mark.parametrize("entry, sql", [
    ('search_path="$user", public', "search_path TO '$user', 'public'"),
    ("search_path=", "search_path TO ''"),
    ("work_mem=64MB", "work_mem TO '64MB'"),
    ("statement_timeout=5s", "statement_timeout TO '5s'"),
    ("app.tenant=it's", "app.tenant TO 'it''s'"),
    ("default_text_search_config=pg_catalog.swedish", "default_text_search_config TO 'pg_catalog.swedish'"),
])
def test_setting_sql_quotes_as_pg_dump(entry, sql):
    assert core.setting_sql(entry) == sql


def test_setting_sql_refuses_a_name_it_cannot_write():
    with pytest.raises(BackupError, match="not a plain identifier"):
        core.setting_sql("bad name; DROP=1")


ICU_TARGET = dict(TARGET, catalog={"datlocprovider": "i", "daticulocale": "sv-SE", "daticurules": None,
                                   "datconnlimit": 50},
                  comment="the lab's data", settings=[
                      {"role": None, "config": ["work_mem=64MB", 'search_path="$user", public, lab']},
                      {"role": "weblab_ro", "config": ["statement_timeout=5s"]}])


def test_create_database_sql_keeps_the_locale_provider():
    assert core.create_database_sql("t", ICU_TARGET) == (
        "CREATE DATABASE \"t\" TEMPLATE template0 OWNER \"weblab\" ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' "
        "LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE'")
    # PostgreSQL 17 names the column datlocale and has a builtin provider; 16 ICU rules.
    builtin = dict(TARGET, catalog={"datlocprovider": "b", "datlocale": "C.UTF-8", "datconnlimit": -1})
    assert core.create_database_sql("t", builtin).endswith(" LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'")
    rules = dict(TARGET, catalog={"datlocprovider": "i", "datlocale": "und", "daticurules": "&a < g"})
    assert core.create_database_sql("t", rules).endswith(" LOCALE_PROVIDER icu ICU_LOCALE 'und' ICU_RULES '&a < g'")
    libc = dict(TARGET, catalog={"datlocprovider": "c", "daticulocale": None, "datconnlimit": -1})
    assert core.create_database_sql("t", libc).endswith(" LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER libc")
    # PostgreSQL 14 and older: no provider column, no clause.
    assert core.create_database_sql("t", TARGET).endswith(" LC_CTYPE 'C.UTF-8'")
    assert core.create_database_sql("t", None) == 'CREATE DATABASE "t" TEMPLATE template0'


def test_restore_gives_the_new_database_the_properties_before_the_swap(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    fake = FakePostgres(databases={"weblab": ICU_TARGET})
    result = core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW)
    temp = '"weblab_restore_20250310_120000"'
    properties = ["ALTER DATABASE %s CONNECTION LIMIT 50" % temp,
                  "ALTER DATABASE %s SET work_mem TO '64MB'" % temp,
                  "ALTER DATABASE %s SET search_path TO '$user', 'public', 'lab'" % temp,
                  'ALTER ROLE "weblab_ro" IN DATABASE %s SET statement_timeout TO \'5s\'' % temp,
                  "COMMENT ON DATABASE %s IS 'the lab''s data'" % temp]
    statements = fake.statements()
    assert [sql for sql in statements if sql in properties] == properties
    restored = [index for index, (argv, env) in enumerate(fake.calls)
                if argv[0].endswith("pg_restore") and "--list" not in argv][0]
    applied = [index for index, (argv, env) in enumerate(fake.calls) if properties[0] in argv][0]
    swapped = [index for index, (argv, env) in enumerate(fake.calls) if any("RENAME" in arg for arg in argv)][0]
    assert restored < applied < swapped
    assert any("locale provider icu (sv-SE), connection limit 50, 3 setting(s), its comment" in line
               for line in result["actions"]), result["actions"]


def test_restore_failing_to_apply_the_properties_drops_the_new_database(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    fake = FakePostgres(databases={"weblab": ICU_TARGET})
    fake.fail["psql"] = lambda argv: any("CONNECTION LIMIT" in arg for arg in argv)
    with pytest.raises(BackupError, match="connection limit, settings and comment"):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW)
    statements = fake.statements()
    assert statements[-1] == 'DROP DATABASE IF EXISTS "weblab_restore_20250310_120000"'
    assert not [sql for sql in statements if "RENAME" in sql]


def test_dump_source_from_metadata_or_the_table_of_contents(tmp_path):
    dump = make_dump(tmp_path, "lab", at(1))
    assert core.dump_source(str(dump), "") == "lab"
    os.unlink(str(dump) + ".json")
    assert core.dump_source(str(dump), TOC_HEADER + ";     dbname: lab_copy\n") == "lab_copy"
    assert core.dump_source(str(dump), TOC_HEADER) is None


@pytest.mark.parametrize("fmt", ["custom", "directory", "plain"])
def test_dump_files_are_the_owners_only_whatever_the_umask(tmp_path, bin_dir, fmt):
    backup = tmp_path / "backups"
    umask = os.umask(0o002)
    try:
        core.dump(make_pg(FakePostgres(), bin_dir), str(backup), "weblab", fmt=fmt, globals_dump=True, now=NOW)
        assert os.umask(0o002) == 0o002, "the caller's umask was not given back"
    finally:
        os.umask(umask)
    modes = {}
    for root, dirs, names in os.walk(backup):
        for name in dirs + names:
            path = os.path.join(root, name)
            modes[os.path.relpath(path, backup)] = oct(os.stat(path).st_mode & 0o777)
    assert oct(backup.stat().st_mode & 0o777) == "0o700"
    assert modes and all(mode == ("0o700" if os.path.isdir(backup / name) else "0o600")
                         for name, mode in modes.items()), modes


def test_latest_reports_every_newer_dump_it_passes_over(tmp_path, bin_dir):
    chosen = make_dump(tmp_path, "weblab", at(3), label="r1")
    make_dump(tmp_path, "weblab", at(4))
    unverified = make_dump(tmp_path, "weblab", at(2), verified=False)
    other_label = make_dump(tmp_path, "weblab", at(1, 12), label="r2")
    no_sum = make_dump(tmp_path, "weblab", at(1))
    os.unlink(str(no_sum) + ".sha256")
    (tmp_path / ("." + core.dump_name("weblab", at(0, 1)) + ".partial")).write_bytes(b"PGDMP")
    result = core.restore(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", label="r1", check_mode=True,
                          now=NOW)
    assert result["dump"] == str(chosen)
    assert result["passed_over"] == [
        {"name": "." + core.dump_name("weblab", at(0, 1)) + ".partial",
         "reason": "being written, or left by a dump that did not finish"},
        {"name": no_sum.name, "reason": "no checksum file"},
        {"name": other_label.name, "reason": "labelled r2, not r1"},
        {"name": unverified.name, "reason": "metadata does not say verified"}]
    assert result["warnings"] == ["latest passed over the newer dump %s: %s" % (item["name"], item["reason"])
                                  for item in result["passed_over"]]
    # Without a label the newest verified dump is taken; nothing newer is passed over silently.
    newest = core.restore(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", check_mode=True, now=NOW)
    assert newest["dump"] == str(other_label)
    assert [item["name"] for item in newest["passed_over"]] == [
        "." + core.dump_name("weblab", at(0, 1)) + ".partial", no_sum.name]


def test_restore_keeps_keep_replaced_replaced_databases_dropping_the_oldest(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    earlier = ["weblab_replaced_20250101_000000", "weblab_replaced_20250201_000000"]
    # Another database's and a look-alike name are never counted.
    fake = FakePostgres(databases={"weblab": TARGET},
                        replaced=earlier + ["weblab_replaced_notes", "weblab_replaced_20250301_000000x"])
    checked = core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", check_mode=True, now=NOW)
    assert checked["dropped_replaced"] == earlier[:1]
    assert [sql for sql in fake.statements() if sql.startswith("DROP")] == []
    result = core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", keep_replaced=2, now=NOW)
    assert result["replaced_by"] == "weblab_replaced_20250310_120000"
    assert result["dropped_replaced"] == earlier[:1]
    drops = [sql for sql in fake.statements() if sql.startswith("DROP")]
    assert drops == ['DROP DATABASE "weblab_replaced_20250101_000000"']
    assert any("drop database weblab_replaced_20250101_000000" in line for line in result["actions"])


def test_restore_keep_replaced_0_drops_the_replaced_data_and_a_drop_failure_is_a_warning(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    fake = FakePostgres(databases={"weblab": TARGET}, replaced=["weblab_replaced_20250101_000000"])
    fake.fail["psql"] = lambda argv: any("DROP DATABASE \"weblab_replaced_20250101" in arg for arg in argv)
    result = core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", keep_replaced=0, now=NOW)
    assert result["replaced_by"] is None
    assert result["dropped_replaced"] == ["weblab_replaced_20250310_120000"]
    assert any("weblab_replaced_20250101_000000 was kept" in warning for warning in result["warnings"])


@pytest.mark.parametrize("bad", [-1, True, "2"])
def test_restore_refuses_a_bad_keep_replaced(tmp_path, bin_dir, bad):
    make_dump(tmp_path, "weblab", at(1))
    with pytest.raises(BackupError, match="keep_replaced"):
        core.restore(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", keep_replaced=bad, now=NOW)


# ---- free space ------------------------------------------------------------------------------

def test_dump_refuses_when_the_last_dump_plus_10_percent_would_not_fit(tmp_path, bin_dir):
    last = make_dump(tmp_path, "weblab", at(1), content=b"PGDMP" + b"x" * 995)  # 1000 bytes
    before = sorted(os.listdir(tmp_path))
    fake = FakePostgres()
    with pytest.raises(BackupError, match=r"not enough free space for a dump of database weblab: about 1.1 KiB "
                                          r"needed \(its last dump, %s, plus 10%%\), 1000 bytes free" % last.name):
        core.dump(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW, statvfs_free=lambda path: 1000)
    assert fake.calls == [] and sorted(os.listdir(tmp_path)) == before
    # The same in check mode (a real run would refuse), and no refusal with room or without the check.
    with pytest.raises(BackupError, match="not enough free space"):
        core.dump(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", check_mode=True, now=NOW,
                  statvfs_free=lambda path: 1000)
    assert core.dump(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", now=NOW,
                     statvfs_free=lambda path: 1100)["path"]
    assert core.dump(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", space_check=False, now=at(0, -1),
                     statvfs_free=lambda path: 0)["path"]


def test_first_dump_is_not_estimated(tmp_path, bin_dir):
    assert core.dump(make_pg(FakePostgres(), bin_dir), str(tmp_path), "weblab", now=NOW,
                     statvfs_free=lambda path: 0)["path"]


def test_restore_refuses_when_the_temporary_database_would_not_fit(tmp_path, bin_dir):
    make_dump(tmp_path, "weblab", at(1))
    data = tmp_path / "pgdata"
    data.mkdir()
    target = dict(TARGET, size=5 * 1024 ** 3, data_directory=str(data))
    fake = FakePostgres(databases={"weblab": target})
    with pytest.raises(BackupError, match=r"the temporary database weblab_restore_20250310_120000: about 5.0 GiB "
                                          r"needed \(the size of database weblab\), 2.0 GiB free on the file system "
                                          r"of %s" % data):
        core.restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW, statvfs_free=lambda path: 2 * 1024 ** 3)
    assert all(sql.startswith("SELECT") for sql in fake.statements())
    # Room enough, the check off, a server elsewhere (its data directory is not on this host).
    for kwargs, login in (({"statvfs_free": lambda path: 6 * 1024 ** 3}, {}),
                          ({"space_check": False, "statvfs_free": lambda path: 0}, {}),
                          ({"statvfs_free": lambda path: 0}, {"host": "db.example.org"})):
        done = core.restore(make_pg(FakePostgres(databases={"weblab": target}), bin_dir, **login), str(tmp_path),
                            "weblab", check_mode=True, now=NOW, **kwargs)
        assert done["replaced_by"], kwargs


def test_test_restore_refuses_when_the_scratch_database_would_not_fit_and_marks_nothing(tmp_path, bin_dir):
    latest = make_dump(tmp_path, "weblab", at(1), metadata={"row_counts": COUNTS})
    data = tmp_path / "pgdata"
    data.mkdir()
    fake = FakePostgres(databases={"weblab": dict(TARGET, size=5 * 1024 ** 3, data_directory=str(data))})
    with pytest.raises(BackupError, match=r"the scratch database weblab_test_20250310_120000: about 5.0 GiB needed"):
        core.test_restore(make_pg(fake, bin_dir), str(tmp_path), "weblab", now=NOW,
                          statvfs_free=lambda path: 2 * 1024 ** 3)
    assert all(sql.startswith("SELECT") for sql in fake.statements())
    assert "restore_test" not in json.loads(pathlib.Path(str(latest) + ".json").read_text())


def test_human_sizes():
    assert [core.human(size) for size in (0, 1023, 1024, 1536 * 1024, 3 * 1024 ** 4)] == [
        "0 bytes", "1023 bytes", "1.0 KiB", "1.5 MiB", "3.0 TiB"]
