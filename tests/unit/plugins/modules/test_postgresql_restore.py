"""weblab.stack.postgresql_restore through main(), with AnsibleModule.run_command replaced by the
fake PostgreSQL programs of the module_utils tests (real dump files under tmp_path, no server)."""

import os

import pytest

from ansible_collections.weblab.stack.plugins.modules import postgresql_restore as module
from ansible_collections.weblab.stack.tests.unit.plugins.module_utils import test_pg_backup_core as fakes
from ansible_collections.weblab.stack.tests.unit.plugins.module_runner import run_main


def run_module(capsys, args, check=False, diff=False):
    return run_main(module.main, capsys, args, check=check, diff=diff)


@pytest.fixture
def backup(tmp_path):
    path = tmp_path / "backups"
    path.mkdir()
    return path


def test_restore_latest_swaps_and_reports_the_kept_database(capsys, fake, backup):
    fake.databases["weblab"] = fakes.TARGET
    fakes.make_dump(backup, "weblab", fakes.at(2))
    latest = fakes.make_dump(backup, "weblab", fakes.at(1))
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup), "jobs": 2,
                                 "login_password": "pw"}, diff=True)
    assert result["changed"] is True and result["dump"] == str(latest)
    assert result["replaced_by"].startswith("weblab_replaced_")
    assert result["diff"]["after"]["restored_from"] == latest.name
    assert any("pg_restore --exit-on-error --jobs=2" in command for command in result["commands"])
    assert "pw" not in " ".join(result["commands"])
    assert all(kwargs["environ_update"] == {"PGPASSWORD": "pw"} for kwargs in fake.run_command_kwargs)


def test_check_mode_reports_what_would_be_restored_where(capsys, fake, backup):
    fake.databases["weblab"] = fakes.TARGET
    dump = fakes.make_dump(backup, "weblab", fakes.at(1))
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup)}, check=True)
    assert result["changed"] is True and result["dump"] == str(dump)
    assert any(line.startswith("rename database weblab to weblab_replaced_") for line in result["actions"])
    assert not [sql for sql in fake.statements() if not sql.startswith("SELECT")]


def test_damaged_dump_fails_with_a_clear_message_and_runs_nothing(capsys, fake, backup):
    dump = fakes.make_dump(backup, "weblab", fakes.at(1), content=os.urandom(3000))
    fakes.flip(dump)
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup)})
    assert result["failed"] and "is damaged" in result["msg"] and "Nothing was changed" in result["msg"]
    assert result["commands"] == []


def test_no_verified_dump(capsys, fake, backup):
    dump = fakes.make_dump(backup, "weblab", fakes.at(1))
    os.unlink(str(dump) + ".json")
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup)})
    assert result["failed"] and "no verified dump of database weblab" in result["msg"]
    assert "no metadata file" in result["msg"]


@pytest.mark.parametrize("given, kept", [(True, 1), ("yes", 1), (False, 0), (3, 3), ("0", 0)])
def test_keep_replaced_takes_a_count_and_the_booleans_of_earlier_versions(capsys, fake, backup, given, kept):
    fake.databases["weblab"] = fakes.TARGET
    fake.replaced = ["weblab_replaced_2025010%d_000000" % day for day in range(1, 5)]
    fakes.make_dump(backup, "weblab", fakes.at(1))
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup), "keep_replaced": given}, check=True)
    assert len(result["dropped_replaced"]) == 5 - kept, result["dropped_replaced"]


@pytest.mark.parametrize("given", [-1, "many"])
def test_bad_keep_replaced_fails_naming_it(capsys, fake, backup, given):
    fakes.make_dump(backup, "weblab", fakes.at(1))
    result = run_module(capsys, {"database": "weblab", "backup_dir": str(backup), "keep_replaced": given})
    assert result["failed"] and "keep_replaced" in result["msg"]
