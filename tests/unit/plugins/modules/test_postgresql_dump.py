"""weblab.stack.postgresql_dump through main(), with AnsibleModule.run_command replaced by the
fake PostgreSQL programs of the module_utils tests (real files under tmp_path, no server)."""

import importlib
import json
import os
import pathlib
import sys

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

COLLECTION = pathlib.Path(__file__).resolve().parents[4]


def _import(name):
    """Import from the collection this file belongs to (its ansible_collections/ parent)."""
    if str(COLLECTION.parents[2]) not in sys.path:
        sys.path.insert(0, str(COLLECTION.parents[2]))
    return importlib.import_module(name)


module = _import("ansible_collections.weblab.stack.plugins.modules.postgresql_dump")
fakes = _import("ansible_collections.weblab.stack.tests.unit.plugins.module_utils.test_pg_backup")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The programs found on PATH are stand-ins; run_command plays them and records the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
        (bin_dir / name).write_text("#!/bin/false\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    server = fakes.FakePostgres()
    server.run_command_kwargs = []

    def run_command(self, args, **kwargs):
        assert isinstance(args, list), "argv lists only, never a shell string"
        assert not kwargs.get("use_unsafe_shell")
        server.run_command_kwargs.append(kwargs)
        return server(args, kwargs.get("environ_update") or {})

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return server


def run_module(capsys, args, check=False, diff=False):
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
        with pytest.raises(SystemExit) as exited:
            module.main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed")), result
    return result


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
