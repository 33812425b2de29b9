"""Bad weblab.stack.backups input fails before any work, with a message naming the variable."""

import json

import pytest

GOOD = {"backups_databases": [{"name": "labdata"}]}

# Each BAD_INPUT case is GOOD with its changes (tests/unit/conftest.py: refusals).
BAD_INPUT_BASE = GOOD
BAD_INPUT = [
    pytest.param({"backups_databases": "labdata"}, "backups_databases", id="databases-given-a-string"),
    pytest.param({"backups_databases": [{"state": "present"}]}, "backups_databases", id="database-without-name"),
    pytest.param({"backups_databases": [{"name": "labdata"}, {"name": "labdata"}]},
                 "backups_databases", id="database-twice"),
    pytest.param({"backups_databases": [{"name": "lab data"}]}, "backups_databases", id="database-name-with-space"),
    pytest.param({"backups_databases": [{"name": "../etc"}]}, "backups_databases", id="database-name-with-slash"),
    pytest.param({"backups_databases": [{"name": "labdata", "state": "paused"}]},
                 "backups_databases", id="database-unknown-state"),
    pytest.param({"backups_databases": [{"name": "labdata", "format": "tar"}]},
                 "backups_databases", id="database-unknown-format"),
    pytest.param({"backups_databases": [{"name": "labdata", "jobs": 4}]},
                 "backups_databases", id="database-jobs-without-directory-format"),
    pytest.param({"backups_databases": [{"name": "labdata", "keep": -1}]},
                 "backups_databases", id="database-negative-keep"),
    pytest.param({"backups_databases": [{"name": "labdata", "compress": "brotli:3"}]},
                 "backups_databases", id="database-unknown-compression"),
    pytest.param({"backups_format": "tar"}, "backups_format", id="unknown-format"),
    pytest.param({"backups_jobs": 4}, "backups_jobs", id="jobs-without-directory-format"),
    pytest.param({"backups_jobs": 0, "backups_format": "directory"}, "backups_jobs", id="jobs-zero"),
    pytest.param({"backups_compress": "gzip:fast"}, "backups_compress", id="compress-bad-level"),
    pytest.param({"backups_keep": -2}, "backups_keep", id="negative-keep"),
    pytest.param({"backups_keep": "all"}, "backups_keep", id="keep-not-a-number"),
    pytest.param({"backups_max_age_days": -1}, "backups_max_age_days", id="negative-max-age"),
    pytest.param({"backups_globals": "sometimes"}, "backups_globals", id="globals-not-a-boolean"),
    pytest.param({"backups_dir": "var/backups"}, "backups_dir", id="dir-not-absolute"),
    pytest.param({"backups_status_dir": "/var/backups/postgresql/status"}, "backups_status_dir",
                 id="status-dir-inside-backup-dir"),
    pytest.param({"backups_dir": "/var/lib/weblab-stack/backups/dumps"}, "backups_dir",
                 id="backup-dir-inside-status-dir"),
    pytest.param({"backups_port": 0}, "backups_port", id="port-zero"),
    pytest.param({"backups_port": "fivefour"}, "backups_port", id="port-not-a-number"),
    pytest.param({"backups_host": "db host"}, "backups_host", id="host-with-space"),
    pytest.param({"backups_host": "relative/socket/dir"}, "backups_host", id="host-relative-socket-directory"),
    pytest.param({"backups_schedule": ""}, "backups_schedule", id="empty-schedule"),
    pytest.param({"backups_schedule": "daily\nExecStartPre=/bin/true"}, "backups_schedule",
                 id="schedule-with-newline"),
    pytest.param({"backups_randomized_delay": "soon"}, "backups_randomized_delay", id="delay-not-a-time-span"),
    pytest.param({"backups_label": "before upgrade"}, "backups_label", id="label-with-space"),
    pytest.param({"backups_label": "../x"}, "backups_label", id="label-with-slash"),
    pytest.param({"backups_label": "r" * 101}, "backups_label", id="label-longer-than-the-modules-100"),
    pytest.param({"backups_restore_test": "sometimes"}, "backups_restore_test", id="restore-test-not-a-boolean"),
    pytest.param({"backups_databases": [{"name": "labdata", "restore_test": "maybe"}]},
                 "backups_databases", id="database-restore-test-not-a-boolean"),
    pytest.param({"backups_restore_test_schedule": ""}, "backups_restore_test_schedule",
                 id="empty-restore-test-schedule"),
    pytest.param({"backups_restore_test_schedule": "weekly\nExecStartPre=/bin/true"},
                 "backups_restore_test_schedule", id="restore-test-schedule-with-newline"),
    pytest.param({"backups_restore_test_randomized_delay": "later"}, "backups_restore_test_randomized_delay",
                 id="restore-test-delay-not-a-time-span"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named):
    refusals.of(variables).assert_refused(named)


def test_good_input_passes_validation(run_role):
    """The same harness accepts valid input, so the failures above are about the input."""
    result = run_role("backups", {
        "backups_databases": [
            {"name": "labdata"},
            {"name": "lab-notes_2", "format": "directory", "jobs": 4, "compress": "gzip:1", "keep": 0,
             "max_age_days": 30, "globals": False, "restore_test": False},
            {"name": "retired", "state": "absent"},
        ],
        "backups_dir": "/srv/backups/pg",
        "backups_status_dir": "/srv/backups/status",
        "backups_schedule": "Mon..Fri *-*-* 02:00:00",
        "backups_randomized_delay": "1h 30min",
        "backups_compress": "zstd:3",
        "backups_label": "nightly",
        "backups_port": "5433",
        "backups_restore_test_schedule": "Sat *-*-* 04:00:00",
        "backups_restore_test_randomized_delay": "2h",
    }, "--tags", "backups_validate")
    assert result.returncode == 0, result.output
    assert "Validating arguments against arg spec" in result.stdout
    assert "Check the databases and their dump settings" in result.stdout


def test_label_message_states_the_real_limit(run_role):
    """The message gives the length the role and the dump modules accept (100), not another."""
    run_role("backups", dict(GOOD, backups_label="r" * 101)).assert_refused("backups_label", "up to 100")


def test_label_of_the_full_length_passes(run_role):
    """100 characters, the limit the message states, are accepted."""
    result = run_role("backups", dict(GOOD, backups_label="r" * 100), "--tags", "backups_validate")
    assert result.returncode == 0, result.output


def fake_dump(directory, name, verified=True):
    """A dump file with its metadata and checksum, as postgresql_dump leaves them (the content
    is never read: the restore refuses before it checks any checksum)."""
    path = directory / name
    path.write_bytes(b"PGDMP not really")
    (directory / f"{name}.json").write_text(json.dumps({"file": name, "verified": verified}), encoding="utf-8")
    (directory / f"{name}.sha256").write_text(f"{'0' * 64}  {name}\n", encoding="utf-8")


def test_restore_lists_the_dumps_found_truthfully(run_role, tmp_path):
    """With no dump of the label asked for, the refusal lists the dumps there are, each with what
    is true of it: a verified dump says so and gives its label, never "(None)"."""
    backups = tmp_path / "backups"
    backups.mkdir()
    fake_dump(backups, "labdata-20250101T020000Z-nightly.dump")
    fake_dump(backups, "labdata-20250102T020000Z.dump")
    fake_dump(backups, "labdata-20250103T020000Z-nightly.dump", verified=False)
    result = run_role("backups", {
        "backups_databases": [{"name": "labdata"}],
        "backups_dir": str(backups),
        "backups_restore_confirm": True,
        "backups_restore_label": "before-upgrade",
        # No PostgreSQL and no postgres user here: the module refuses before either is needed.
        "ansible_become": False,
    }, entry_point="restore")
    assert result.returncode != 0, result.output
    message = next((msg for msg in result.messages if "dumps found" in msg), None)
    assert message is not None, result.output
    assert "(None)" not in message, message
    assert "labdata-20250101T020000Z-nightly.dump (verified, label nightly)" in message, message
    assert "labdata-20250102T020000Z.dump (verified, no label)" in message, message
    assert "labdata-20250103T020000Z-nightly.dump (metadata does not say verified)" in message, message


def test_restore_of_one_of_several_databases_asks_for_restore_database(run_role):
    """restore.yml maps its extra var restore_database onto backups_restore_database: the refusal
    where the host keeps several databases names the extra var to give."""
    result = run_role("backups", {
        "backups_databases": [{"name": "labdata"}, {"name": "labtasks"}],
        "backups_restore_confirm": True,
        "ansible_become": False,
    }, entry_point="restore")
    assert result.returncode != 0, result.output
    assert any("backups_restore_database" in msg and "-e restore_database=NAME" in msg
               for msg in result.messages), result.output


def test_restore_test_of_one_of_several_databases_asks_for_restore_test_database(run_role):
    """restore_test.yml maps its extra var restore_test_database onto backups_restore_test_database:
    the refusal where the host keeps several databases names both, before anything is read."""
    run_role("backups", {
        "backups_databases": [{"name": "labdata"}, {"name": "labtasks"}],
        "ansible_become": False,
    }, entry_point="restore_test").assert_refused("backups_restore_test_database", "-e restore_test_database=NAME")


def test_restore_test_refuses_a_database_name_that_cannot_name_a_unit(run_role):
    run_role("backups", dict(GOOD, backups_restore_test_database="lab data", ansible_become=False),
             entry_point="restore_test").assert_refused("backups_restore_test_database")
