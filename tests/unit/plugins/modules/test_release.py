"""weblab.stack.release as Ansible runs it: through main() with module arguments, and through
ansible-playbook (check mode, real run, re-run unchanged), on real files under tmp_path."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from ansible_collections.weblab.stack.plugins.modules import release
from ansible_collections.weblab.stack.plugins.module_utils.release import DeployLock
from ansible_collections.weblab.stack.tests.unit.plugins.module_runner import run_main

COLLECTION = pathlib.Path(__file__).resolve().parents[4]

ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


def run_module(capsys, args, check=False, diff=False):
    return run_main(release.main, capsys, args, check=check, diff=diff)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "app"


def snapshot(path):
    entries = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            entries[full] = os.readlink(full) if os.path.islink(full) else os.lstat(full).st_mtime_ns
    return entries


def test_present_check_mode_then_real_then_unchanged(capsys, path):
    args = {"path": str(path), "release": "A", "revision": "abc"}
    checked = run_module(capsys, args, check=True)
    assert checked["changed"] is True
    assert not path.exists(), "check mode created the deploy path"
    done = run_module(capsys, args)
    assert done["changed"] is True
    assert done["actions"] == checked["actions"]
    assert (path / "releases" / "A").is_dir()
    again = run_module(capsys, args)
    assert again["changed"] is False


def test_switch_check_mode_diff_and_rerun(capsys, path):
    for name in ("A", "B"):
        run_module(capsys, {"path": str(path), "release": name})
    run_module(capsys, {"path": str(path), "release": "A", "state": "switch"})
    args = {"path": str(path), "release": "B", "state": "switch", "shared_paths": ["media"]}
    before = snapshot(path)
    checked = run_module(capsys, args, check=True, diff=True)
    assert snapshot(path) == before, "check mode changed the disk"
    assert checked["changed"] is True
    assert checked["diff"]["before"]["current"] == "releases/A"
    assert checked["diff"]["after"]["current"] == "releases/B"
    assert checked["diff"]["before_header"] == "%s (before)" % path
    assert os.readlink(path / "current") == "releases/A"

    done = run_module(capsys, args, diff=True)
    assert done["changed"] is True
    assert done["diff"] == checked["diff"]
    assert os.readlink(path / "current") == "releases/B"
    assert (done["live"], done["switched_from"], done["previous"]) == ("B", "A", "A")
    assert done["release_path"] == str(path / "releases" / "B")
    assert "ansible_facts" not in done

    again = run_module(capsys, args, diff=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]


def test_no_diff_key_without_diff_mode(capsys, path):
    result = run_module(capsys, {"path": str(path), "release": "A"})
    assert "diff" not in result


def test_rollback_and_query(capsys, path):
    for name in ("A", "B", "C"):
        run_module(capsys, {"path": str(path), "release": name})
        run_module(capsys, {"path": str(path), "release": name, "state": "switch"})
    assert run_module(capsys, {"path": str(path), "state": "rollback"})["live"] == "B"
    assert run_module(capsys, {"path": str(path), "state": "rollback"})["live"] == "A"
    failed = run_module(capsys, {"path": str(path), "state": "rollback"})
    assert failed["failed"] is True
    assert "no previous good release to roll back to from A" in failed["msg"]
    query = run_module(capsys, {"path": str(path), "state": "query"})
    assert query["changed"] is False
    assert {item["name"]: item["state"] for item in query["releases"]} == {
        "A": "good", "B": "abandoned", "C": "abandoned"}


def test_fail_then_clean(capsys, path):
    for name in ("A", "B"):
        run_module(capsys, {"path": str(path), "release": name})
    run_module(capsys, {"path": str(path), "release": "A", "state": "switch"})
    marked = run_module(capsys, {"path": str(path), "release": "B", "state": "fail"})
    assert marked["changed"] is True and marked["live"] == "A"
    refused = run_module(capsys, {"path": str(path), "release": "B", "state": "switch"})
    assert refused["failed"] is True and "marked failed" in refused["msg"]
    cleaned = run_module(capsys, {"path": str(path), "state": "clean", "keep": 1})
    assert cleaned["removed"] == ["B"]
    assert sorted(os.listdir(path / "releases")) == ["A"]


@pytest.mark.parametrize(("args", "named"), [
    pytest.param({"release": "a/b"}, "release", id="release-with-slash"),
    pytest.param({"release": ".hidden"}, "release", id="release-leading-dot"),
    pytest.param({"release": ""}, "release", id="release-empty"),
    pytest.param({"release": "A", "state": "clean", "keep": 0}, "keep", id="keep-zero"),
    pytest.param({"release": "A", "state": "clean", "keep": "many"}, "keep", id="keep-not-int"),
    pytest.param({"release": "A", "state": "switch", "shared_paths": ["/etc"]}, "shared_paths", id="shared-absolute"),
    pytest.param({"release": "A", "state": "switch", "shared_paths": ["../x"]}, "shared_paths", id="shared-dotdot"),
    pytest.param({"state": "switch"}, "release", id="switch-without-release"),
    pytest.param({"release": "A", "state": "deploy"}, "state", id="unknown-state"),
    pytest.param({"release": "A", "lock_timeout": -1}, "lock_timeout", id="negative-lock-timeout"),
])
def test_bad_parameters_fail_with_a_message_naming_the_parameter(capsys, path, args, named):
    result = run_module(capsys, dict(args, path=str(path)))
    assert result["failed"] is True
    assert named in result["msg"], result["msg"]
    assert not path.exists(), "a bad parameter must fail before anything is created"


def test_lock_contention_fails_naming_the_holder(capsys, path):
    run_module(capsys, {"path": str(path), "release": "A"})
    holder = DeployLock(str(path), 0, holder="pid 99 on deployhost (state=switch, release=A)").acquire()
    try:
        result = run_module(capsys, {"path": str(path), "release": "B", "lock_timeout": 1})
    finally:
        holder.release()
    assert result["failed"] is True
    assert "lock_timeout=1" in result["msg"]
    assert "pid 99 on deployhost" in result["msg"]
    assert not (path / "releases" / "B").exists()


PLAYBOOK = """\
- name: Deploy releases with weblab.stack.release
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Create the release
      weblab.stack.release:
        path: "{path}"
        release: "{name}"
        revision: "rev-{name}"
    - name: Switch to the release
      weblab.stack.release:
        path: "{path}"
        release: "{name}"
        shared_paths: [media]
        state: switch
"""


def run_playbook(tmp_path, path, name, *extra):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(path=path, name=name), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTION.parents[2]), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    # The module runs under this interpreter: interpreter discovery may find a shim that fails.
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=" + sys.executable, *extra, str(playbook)],
                          env=env, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = json.loads(done.stdout)["plays"][0]["tasks"]
    return [task["hosts"]["localhost"] for task in tasks]


def test_through_ansible_playbook_check_real_rerun(tmp_path, path):
    """The module as Ansible ships it: FQCN, module_utils import, check mode, diff."""
    checked = run_playbook(tmp_path, path, "A", "--check", "--diff")
    assert [task["changed"] for task in checked] == [True, True]
    assert not path.exists()
    done = run_playbook(tmp_path, path, "A", "--diff")
    assert [task["changed"] for task in done] == [True, True]
    assert done[1]["live"] == "A"
    assert done[1]["diff"]["before"]["current"] is None
    assert done[1]["diff"]["after"]["current"] == "releases/A"
    assert os.readlink(path / "current") == "releases/A"
    again = run_playbook(tmp_path, path, "A")
    assert [task["changed"] for task in again] == [False, False]
    second = run_playbook(tmp_path, path, "B", "--check")
    assert [task["changed"] for task in second] == [True, True]
    assert os.readlink(path / "current") == "releases/A"


# ---- settings: one release per code and settings --------------------------------------------

def present(capsys, path, settings, check=False, release="A"):
    return run_module(capsys, {"path": str(path), "release": release, "settings": settings}, check=check)


def test_settings_first_release_takes_the_base_name(capsys, path):
    done = present(capsys, path, "s1")
    assert done["release"] == "A" and done["release_path"] == str(path / "releases" / "A")
    assert [(item["name"], item["settings"]) for item in done["releases"]] == [("A", "s1")]
    assert present(capsys, path, "s1")["changed"] is False


def test_settings_changed_under_the_live_release_make_a_new_release(capsys, path):
    present(capsys, path, "s1")
    run_module(capsys, {"path": str(path), "release": "A", "state": "switch"})
    checked = present(capsys, path, "s2", check=True)
    assert checked["release"] == "A-2" and checked["changed"] is True
    assert not (path / "releases" / "A-2").exists(), "check mode created the release"
    done = present(capsys, path, "s2")
    assert done["release"] == "A-2" and done["live"] == "A"
    assert done["actions"] == checked["actions"]
    assert present(capsys, path, "s2")["changed"] is False
    # Back to the first settings: the release that holds them, not a third one.
    back = present(capsys, path, "s1")
    assert back["release"] == "A" and back["changed"] is False
    assert present(capsys, path, "s3")["release"] == "A-3"


def test_settings_never_reuse_a_release_without_recorded_settings(capsys, path):
    run_module(capsys, {"path": str(path), "release": "A"})
    assert present(capsys, path, "s1")["release"] == "A-2"


def test_settings_never_reuse_a_directory_the_manifest_does_not_know(capsys, path):
    (path / "releases" / "A").mkdir(parents=True)
    assert present(capsys, path, "s1")["release"] == "A-2"


def test_settings_of_a_removed_release_are_not_found_in_its_name(capsys, path):
    """A release cleaned away is not chosen for its settings: its name may be reused."""
    present(capsys, path, "s1")
    present(capsys, path, "s2")
    run_module(capsys, {"path": str(path), "release": "A-2", "state": "switch"})
    (path / "releases" / "A").rename(path / "releases" / ".gone")
    assert present(capsys, path, "s1")["release"] in ("A", "A-3")
    assert present(capsys, path, "s2")["release"] == "A-2"


def test_settings_a_failed_release_is_prepared_again_under_its_name(capsys, path):
    present(capsys, path, "s1")
    run_module(capsys, {"path": str(path), "release": "A", "state": "fail"})
    again = present(capsys, path, "s1")
    assert again["release"] == "A"
    assert {item["name"]: item["state"] for item in again["releases"]} == {"A": "unfinished"}


def test_settings_names_only_the_base_and_its_numbered_siblings(capsys, path):
    """AB or A-x are other releases, not A's siblings."""
    for name in ("AB", "A-x"):
        run_module(capsys, {"path": str(path), "release": name})
    assert present(capsys, path, "s1")["release"] == "A"
