"""weblab.stack.postgresql_dump through main(), with AnsibleModule.run_command replaced by the
fake PostgreSQL programs of the module_utils tests (real files under tmp_path, no server)."""

import json
import os

import pytest

from ansible_collections.weblab.stack.plugins.modules import postgresql_dump as module
from ansible_collections.weblab.stack.tests.unit.plugins.module_runner import run_main


def run_module(capsys, args, check=False, diff=False):
    return run_main(module.main, capsys, args, check=check, diff=diff)


def test_dump_returns_path_size_checksum_and_commands(capsys, fake, tmp_path):
    backup = tmp_path / "backups"
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup), "login_host": "db",
                                 "login_user": "backup", "login_password": "s3cret", "compress": "gzip:1"})
    assert result["changed"] is True
    assert os.path.isfile(result["path"]) and result["size"] == os.path.getsize(result["path"])
    assert len(result["checksum"]) == 64 and result["duration"] >= 0
    assert result["removed"] == []
    assert result["commands"][0].endswith("pg_dump --version")
    assert any("--format=custom" in command and "--compress=1" in command for command in result["commands"])
    assert "s3cret" not in json.dumps(result)
    for kwargs in fake.run_command_kwargs:
        assert kwargs["environ_update"] == {"PGPASSWORD": "s3cret"}


def test_check_mode_writes_nothing_and_reports_the_change(capsys, fake, tmp_path):
    backup = tmp_path / "backups"
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup), "keep": 3}, check=True, diff=True)
    assert result["changed"] is True and result["path"].startswith(str(backup))
    assert not backup.exists()
    assert result["diff"]["before"] == {"dumps": []}
    assert result["diff"]["after"] == {"dumps": [os.path.basename(result["path"])]}


@pytest.mark.parametrize("args,message", [
    ({"compress": "zstd:3"}, "needs pg_dump 16 or later"),
    ({"jobs": 2}, "needs format=directory"),
    ({"keep": 0}, "keep must be an integer of at least 1"),
    ({"max_age_days": -1}, "max_age_days must be"),
    ({"label": "a/b"}, "label="),
    ({"format": "plain", "compress": "gzip:1"}, "psql cannot restore"),
])
def test_bad_settings_fail_before_anything_is_written(capsys, fake, tmp_path, args, message):
    backup = tmp_path / "backups"
    result = run_module(capsys, dict({"database": "weblab", "backup_dir": str(backup)}, **args))
    assert result["failed"] and message in result["msg"], result["msg"]
    assert not backup.exists()


def test_pg_dump_failure_is_reported_with_its_error(capsys, fake, tmp_path):
    fake.fail["pg_dump"] = lambda argv: "--version" not in argv
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(tmp_path)})
    assert result["failed"] and "simulated failure" in result["msg"]
    assert any("--format=custom" in command for command in result["commands"])
    assert [name for name in os.listdir(tmp_path) if name != "bin"] == []
