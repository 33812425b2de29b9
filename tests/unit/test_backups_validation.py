"""Bad weblab.stack.backups input fails before any work, with a message naming the variable."""

import pytest

GOOD = {"backups_databases": [{"name": "labdata"}]}

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
    pytest.param({"backups_schedule": ""}, "backups_schedule", id="empty-schedule"),
    pytest.param({"backups_schedule": "daily\nExecStartPre=/bin/true"}, "backups_schedule",
                 id="schedule-with-newline"),
    pytest.param({"backups_randomized_delay": "soon"}, "backups_randomized_delay", id="delay-not-a-time-span"),
    pytest.param({"backups_label": "before upgrade"}, "backups_label", id="label-with-space"),
    pytest.param({"backups_label": "../x"}, "backups_label", id="label-with-slash"),
    pytest.param({"backups_label": "r" * 101}, "backups_label", id="label-longer-than-the-modules-100"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_INPUT)
def test_bad_input_fails_before_any_work(run_role, variables, named):
    run_role("backups", dict(GOOD, **variables)).assert_refused(named)


def test_good_input_passes_validation(run_role):
    """The same harness accepts valid input, so the failures above are about the input."""
    result = run_role("backups", {
        "backups_databases": [
            {"name": "labdata"},
            {"name": "lab-notes_2", "format": "directory", "jobs": 4, "compress": "gzip:1", "keep": 0,
             "max_age_days": 30, "globals": False},
            {"name": "retired", "state": "absent"},
        ],
        "backups_dir": "/srv/backups/pg",
        "backups_status_dir": "/srv/backups/status",
        "backups_schedule": "Mon..Fri *-*-* 02:00:00",
        "backups_randomized_delay": "1h 30min",
        "backups_compress": "zstd:3",
        "backups_label": "nightly",
        "backups_port": "5433",
    }, "--tags", "backups_validate")
    assert result.returncode == 0, result.output
    assert "Validating arguments against arg spec" in result.stdout
    assert "Check the databases and their dump settings" in result.stdout
