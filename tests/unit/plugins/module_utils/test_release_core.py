"""The release logic of weblab.stack (plugins/module_utils/release.py), on real files under tmp_path.

Driven through ``run()``, the function the module calls, so every test goes through the lock,
the manifest and the validation exactly as a task does.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ansible_collections.weblab.stack.plugins.module_utils import release as core


@pytest.fixture
def deploy(tmp_path):
    return tmp_path / "srv" / "app"


def current_of(path):
    return os.readlink(path / "current")


def manifest_of(path):
    return json.loads((path / "releases.json").read_text(encoding="utf-8"))


def states(result):
    return {item["name"]: item["state"] for item in result["releases"]}


def deploy_release(path, name, **kwargs):
    """What the app role does: create the release, put code in it, switch to it."""
    core.run(path, "present", release=name, revision="rev-" + name)
    (path / "releases" / name / "RELEASE").write_text(name, encoding="utf-8")
    return core.run(path, "switch", release=name, **kwargs)


def tree(path):
    """Everything observable about a directory tree: entries, link targets, file contents, modes."""
    seen = {}
    if not path.exists():
        return seen
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = pathlib.Path(root) / name
            info = full.lstat()
            if full.is_symlink():
                seen[str(full.relative_to(path))] = ("link", os.readlink(full))
            elif full.is_dir():
                seen[str(full.relative_to(path))] = ("dir", info.st_mode, info.st_mtime_ns)
            else:
                seen[str(full.relative_to(path))] = ("file", info.st_mode, full.read_bytes())
    return seen


# ---- parameter validation -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a/b", "../x", "/abs", ".hidden", ".", "..", "", "x\0y"])
def test_bad_release_names_are_refused_naming_release(name):
    with pytest.raises(core.ReleaseError, match="^release "):
        core.check_release_name(name)


@pytest.mark.parametrize("name", ["20250101T100000", "3f2a9c1d0b7e", "v1.2.3", "a-b_c"])
def test_good_release_names_pass(name):
    assert core.check_release_name(name) == name


@pytest.mark.parametrize(("paths", "why"), [
    (["/etc/passwd"], "absolute"),
    (["media/../../etc"], r"\.\."),
    ([".."], r"\.\."),
    (["."], "shared/ itself"),
    ([""], "non-empty"),
    (["media", "media/thumbs"], "inside"),
])
def test_bad_shared_paths_are_refused_naming_shared_paths(paths, why):
    with pytest.raises(core.ReleaseError, match="^shared_paths: .*" + why):
        core.check_shared_paths(paths)


def test_shared_paths_are_normalised_and_deduplicated():
    assert core.check_shared_paths(["media/", "./logs", "media", ".env"]) == ["media", "logs", ".env"]


@pytest.mark.parametrize("keep", [0, -1, True, "3"])
def test_keep_below_one_is_refused_naming_keep(keep):
    with pytest.raises(core.ReleaseError, match="^keep must be an integer of at least 1"):
        core.check_keep(keep)


def test_bad_parameters_fail_before_anything_is_created(deploy):
    for kwargs in ({"release": "a/b"}, {"release": "A", "keep": 0}, {"release": "A", "shared_paths": ["/x"]}):
        with pytest.raises(core.ReleaseError):
            core.run(deploy, "present", **kwargs)
    assert not deploy.exists()


@pytest.mark.parametrize("state", ["present", "switch", "fail"])
def test_states_that_need_a_release_say_so(deploy, state):
    with pytest.raises(core.ReleaseError, match="state=%s needs release" % state):
        core.run(deploy, state)


# ---- present and switch -----------------------------------------------------------------------

def test_present_creates_the_layout_and_an_unfinished_release(deploy):
    result = core.run(deploy, "present", release="A", revision="abc123")
    assert result["changed"] is True
    for name in ("releases/A", "shared", "repo"):
        assert (deploy / name).is_dir(), name
    assert not (deploy / "current").exists()
    assert os.listdir(deploy / "releases" / "A") == [], "nothing is written inside the release"
    entry = manifest_of(deploy)["releases"][0]
    assert (entry["name"], entry["state"], entry["revision"]) == ("A", "unfinished", "abc123")
    assert result["live"] is None


def test_present_again_is_unchanged_and_leaves_venvs_alone(deploy):
    core.run(deploy, "present", release="A", revision="abc123")
    (deploy / "venvs" / "0123").mkdir(parents=True)
    before = tree(deploy)
    result = core.run(deploy, "present", release="A", revision="abc123")
    assert result["changed"] is False, result["actions"]
    assert tree(deploy) == before


def test_switch_points_current_at_the_release_and_records_it(deploy):
    first = deploy_release(deploy, "A")
    assert current_of(deploy) == "releases/A"
    assert (first["live"], first["switched_from"]) == ("A", None)
    second = deploy_release(deploy, "B")
    assert current_of(deploy) == "releases/B"
    assert (deploy / "current" / "RELEASE").read_text(encoding="utf-8") == "B"
    assert (second["live"], second["switched_from"], second["previous"]) == ("B", "A", "A")
    entry = {item["name"]: item for item in manifest_of(deploy)["releases"]}["B"]
    assert entry["state"] == "good"
    assert entry["revision"] == "rev-B"
    assert entry["previous"] == "A"
    assert entry["switched"].endswith("Z")
    assert [event["release"] for event in manifest_of(deploy)["history"]] == ["A", "B"]


def test_switch_to_the_live_release_is_unchanged(deploy):
    deploy_release(deploy, "A", shared_paths=["media"])
    before = tree(deploy)
    result = core.run(deploy, "switch", release="A", shared_paths=["media"], revision="rev-A")
    assert result["changed"] is False, result["actions"]
    assert tree(deploy) == before


def test_switch_to_a_missing_release_fails_clearly(deploy):
    deploy_release(deploy, "A")
    with pytest.raises(core.ReleaseError, match="release B does not exist under .*state=present"):
        core.run(deploy, "switch", release="B")
    assert current_of(deploy) == "releases/A"


def test_switch_links_shared_paths_relatively(deploy):
    core.run(deploy, "present", release="A")
    release = deploy / "releases" / "A"
    (release / "media").mkdir()
    (release / "media" / "from-git.txt").write_text("shipped by mistake", encoding="utf-8")
    (release / ".env").write_text("stale", encoding="utf-8")
    (deploy / "shared" / ".env").write_text("SECRET=1", encoding="utf-8")
    result = core.run(deploy, "switch", release="A", shared_paths=["media", ".env", "var/log/app"])
    assert sorted(result["linked"]) == [".env", "media", "var/log/app"]
    assert os.readlink(release / "media") == "../../shared/media"
    assert os.readlink(release / "var" / "log" / "app") == "../../../../shared/var/log/app"
    assert (release / "var" / "log").is_dir() and not (release / "var").is_symlink()
    assert (deploy / "shared" / "media").is_dir()
    assert (deploy / "shared" / "var" / "log" / "app").is_dir()
    assert (deploy / "current" / ".env").read_text(encoding="utf-8") == "SECRET=1"
    (deploy / "current" / "media" / "upload.png").write_text("x", encoding="utf-8")
    assert (deploy / "shared" / "media" / "upload.png").exists()


def test_present_with_shared_paths_links_them_before_the_switch(deploy):
    core.run(deploy, "present", release="A")
    (deploy / "releases" / "A" / "media").mkdir()
    result = core.run(deploy, "present", release="A", shared_paths=["media", "logs"])
    assert result["changed"] is True and sorted(result["linked"]) == ["logs", "media"]
    assert os.readlink(deploy / "releases" / "A" / "media") == "../../shared/media"
    assert not (deploy / "current").exists()
    assert manifest_of(deploy)["releases"][0]["state"] == "unfinished"
    again = core.run(deploy, "present", release="A", shared_paths=["media", "logs"])
    assert again["changed"] is False, again["actions"]


def test_shared_path_under_a_link_in_the_release_is_refused(deploy, tmp_path):
    core.run(deploy, "present", release="A")
    outside = tmp_path / "outside"
    outside.mkdir()
    (deploy / "releases" / "A" / "var").symlink_to(outside)
    with pytest.raises(core.ReleaseError, match="not a real directory"):
        core.run(deploy, "switch", release="A", shared_paths=["var/log"])
    assert list(outside.iterdir()) == []
    assert not (deploy / "current").exists()


def test_current_that_is_a_directory_is_reported_not_replaced(deploy):
    core.run(deploy, "present", release="A")
    (deploy / "current").mkdir()
    with pytest.raises(core.ReleaseError, match="current exists and is not a symbolic link"):
        core.run(deploy, "switch", release="A")
    assert (deploy / "current").is_dir() and not (deploy / "current").is_symlink()


def test_live_is_read_from_current_not_from_times(deploy):
    deploy_release(deploy, "A")
    deploy_release(deploy, "B")
    # An absolute link written by another tool, and A made to look newest.
    tmp = deploy / "tmp-link"
    tmp.symlink_to(deploy / "releases" / "A")
    os.rename(tmp, deploy / "current")
    os.utime(deploy / "releases" / "B", (1, 1))
    result = core.run(deploy, "query")
    assert result["live"] == "A"
    assert [item["name"] for item in result["releases"] if item["live"]] == ["A"]
    # Switching to what is live by another spelling is no change either.
    assert core.run(deploy, "switch", release="A")["changed"] is False


def test_current_outside_releases_is_not_live(deploy, tmp_path):
    deploy_release(deploy, "A")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.unlink(deploy / "current")
    (deploy / "current").symlink_to(elsewhere)
    result = core.run(deploy, "query")
    assert result["live"] is None
    assert result["current_target"] == str(elsewhere)
    with pytest.raises(core.ReleaseError, match="nothing is live.*pointing outside releases/"):
        core.run(deploy, "rollback")


# ---- fail ------------------------------------------------------------------------------------

def test_fail_marks_the_release_and_leaves_current(deploy):
    deploy_release(deploy, "A")
    core.run(deploy, "present", release="B")
    result = core.run(deploy, "fail", release="B")
    assert result["changed"] is True
    assert states(result) == {"A": "good", "B": "failed"}
    assert current_of(deploy) == "releases/A"
    assert core.run(deploy, "fail", release="B")["changed"] is False


def test_a_failed_release_is_never_switched_to(deploy):
    deploy_release(deploy, "A")
    core.run(deploy, "present", release="B")
    core.run(deploy, "fail", release="B")
    with pytest.raises(core.ReleaseError, match="refusing to switch to release B: it is marked failed"):
        core.run(deploy, "switch", release="B")
    assert current_of(deploy) == "releases/A"


def test_present_prepares_a_failed_release_again(deploy):
    deploy_release(deploy, "A")
    core.run(deploy, "present", release="B")
    core.run(deploy, "fail", release="B")
    result = core.run(deploy, "present", release="B")
    assert result["changed"] is True
    assert states(result)["B"] == "unfinished"
    core.run(deploy, "switch", release="B")
    assert current_of(deploy) == "releases/B"


def test_fail_refuses_the_live_release(deploy):
    deploy_release(deploy, "A")
    with pytest.raises(core.ReleaseError, match="release A is live.*roll back"):
        core.run(deploy, "fail", release="A")
    assert states(core.run(deploy, "query"))["A"] == "good"


def test_fail_of_an_unknown_release_fails_clearly(deploy):
    deploy_release(deploy, "A")
    with pytest.raises(core.ReleaseError, match="release Z does not exist"):
        core.run(deploy, "fail", release="Z")


# ---- rollback --------------------------------------------------------------------------------

def test_rollback_twice_never_lands_on_the_abandoned_release(deploy):
    for name in ("A", "B", "C"):
        deploy_release(deploy, name)
    # Make the abandoned releases look newest: the choice must not come from times.
    for name in ("C", "B"):
        os.utime(deploy / "releases" / name, (2 ** 31, 2 ** 31))
    first = core.run(deploy, "rollback")
    assert (first["release"], first["live"], first["switched_from"]) == ("B", "B", "C")
    assert current_of(deploy) == "releases/B"
    assert states(first)["C"] == "abandoned"
    second = core.run(deploy, "rollback")
    assert second["live"] == "A", "the second rollback must go further back, not to C"
    assert current_of(deploy) == "releases/A"
    assert states(second) == {"A": "good", "B": "abandoned", "C": "abandoned"}
    with pytest.raises(core.ReleaseError, match="no previous good release to roll back to from A"):
        core.run(deploy, "rollback")
    assert current_of(deploy) == "releases/A"


def test_rollback_after_a_new_deploy_goes_to_what_was_live_before_it(deploy):
    for name in ("A", "B", "C"):
        deploy_release(deploy, name)
    core.run(deploy, "rollback")            # C abandoned, B live
    deploy_release(deploy, "D")             # D live, B before it
    result = core.run(deploy, "rollback")
    assert result["live"] == "B"
    assert core.run(deploy, "rollback")["live"] == "A"


def test_rollback_to_a_named_release(deploy):
    for name in ("A", "B", "C"):
        deploy_release(deploy, name)
    result = core.run(deploy, "rollback", release="A")
    assert (result["live"], result["switched_from"]) == ("A", "C")
    assert states(result) == {"A": "good", "B": "good", "C": "abandoned"}
    again = core.run(deploy, "rollback", release="A")
    assert again["changed"] is False, again["actions"]
    assert again["previous"] == "B"


@pytest.mark.parametrize("mark", ["abandoned", "failed", "unfinished"])
def test_rollback_refuses_a_named_release_that_is_not_good(deploy, mark):
    deploy_release(deploy, "A")
    deploy_release(deploy, "B")
    deploy_release(deploy, "C")
    if mark == "abandoned":
        core.run(deploy, "rollback")        # C abandoned, B live
        target = "C"
    elif mark == "failed":
        core.run(deploy, "fail", release="A")
        target = "A"
    else:
        core.run(deploy, "present", release="N")
        target = "N"
    live = current_of(deploy)
    with pytest.raises(core.ReleaseError, match="refusing to roll back to release %s: it is %s" % (target, mark)):
        core.run(deploy, "rollback", release=target)
    assert current_of(deploy) == live


def test_rollback_with_nothing_before_fails_clearly(deploy):
    deploy_release(deploy, "A")
    core.run(deploy, "present", release="B")
    with pytest.raises(core.ReleaseError, match=r"no previous good release .* A \(good\), B \(unfinished\)"):
        core.run(deploy, "rollback")
    assert current_of(deploy) == "releases/A"


def test_rollback_with_nothing_live_fails_clearly(deploy):
    core.run(deploy, "present", release="A")
    with pytest.raises(core.ReleaseError, match="nothing is live.*missing"):
        core.run(deploy, "rollback")


def test_rollback_skips_a_release_whose_directory_is_gone(deploy):
    for name in ("A", "B", "C"):
        deploy_release(deploy, name)
    shutil.rmtree(deploy / "releases" / "B")
    assert core.run(deploy, "rollback")["live"] == "A"


# ---- clean -----------------------------------------------------------------------------------

def test_clean_keeps_the_newest_good_releases(deploy):
    for name in ("A", "B", "C", "D", "E"):
        deploy_release(deploy, name)
    # Times say A is newest; the manifest says otherwise.
    os.utime(deploy / "releases" / "A", (2 ** 31, 2 ** 31))
    result = core.run(deploy, "clean", keep=2)
    assert result["removed"] == ["A", "B", "C"]
    assert sorted(os.listdir(deploy / "releases")) == ["D", "E"]
    assert [item["name"] for item in manifest_of(deploy)["releases"]] == ["D", "E"]
    again = core.run(deploy, "clean", keep=2)
    assert again["changed"] is False and again["removed"] == []


def test_clean_keeps_the_live_release_when_it_is_the_oldest(deploy):
    for name in ("A", "B", "C", "D"):
        deploy_release(deploy, name)
    core.run(deploy, "rollback", release="A")     # D abandoned; A live, the oldest release
    result = core.run(deploy, "clean", keep=1)
    assert current_of(deploy) == "releases/A"
    assert (deploy / "current" / "RELEASE").read_text(encoding="utf-8") == "A"
    # Kept: the live release and the one a rollback would go to.
    assert sorted(os.listdir(deploy / "releases")) == ["A", "C"]
    assert result["removed"] == ["B", "D"]
    assert result["previous"] == "C"


@pytest.mark.parametrize("recorded", ["unfinished", "failed", "abandoned", None])
def test_clean_never_removes_the_live_release_whatever_the_manifest_says(deploy, recorded):
    for name in ("A", "B", "C"):
        deploy_release(deploy, name)
    tmp = deploy / "tmp-link"
    tmp.symlink_to("releases/A")
    os.rename(tmp, deploy / "current")           # A made live by hand, behind the module's back
    data = manifest_of(deploy)
    if recorded is None:
        data["releases"] = [item for item in data["releases"] if item["name"] != "A"]
    else:
        for item in data["releases"]:
            if item["name"] == "A":
                item["state"] = recorded
    (deploy / "releases.json").write_text(json.dumps(data), encoding="utf-8")
    result = core.run(deploy, "clean", keep=1)
    assert "A" not in result["removed"]
    assert (deploy / "releases" / "A" / "RELEASE").read_text(encoding="utf-8") == "A"
    assert current_of(deploy) == "releases/A"


def test_clean_removes_unfinished_failed_and_abandoned_but_not_the_protected_release(deploy):
    for name in ("A", "B", "C"):
        deploy_release(deploy, name)
    core.run(deploy, "rollback")                     # C abandoned, B live, A previous
    core.run(deploy, "present", release="F")
    core.run(deploy, "fail", release="F")
    core.run(deploy, "present", release="U")         # an unfinished, never switched release
    core.run(deploy, "present", release="P")         # the release being prepared
    (deploy / "releases" / "stray").mkdir()          # not the module's: left alone
    result = core.run(deploy, "clean", keep=5, release="P")
    assert sorted(result["removed"]) == ["C", "F", "U"]
    assert sorted(os.listdir(deploy / "releases")) == ["A", "B", "P", "stray"]
    assert states(result)["stray"] == "unknown"


def test_clean_does_not_follow_shared_links(deploy):
    deploy_release(deploy, "A", shared_paths=["media"])
    (deploy / "shared" / "media" / "upload.png").write_text("x", encoding="utf-8")
    deploy_release(deploy, "B", shared_paths=["media"])
    deploy_release(deploy, "C", shared_paths=["media"])
    assert core.run(deploy, "clean", keep=1)["removed"] == ["A"]
    assert (deploy / "shared" / "media" / "upload.png").exists()


def test_clean_forgets_releases_whose_directory_is_gone(deploy):
    for name in ("A", "B", "C"):
        deploy_release(deploy, name)
    shutil.rmtree(deploy / "releases" / "A")
    result = core.run(deploy, "clean", keep=1)
    assert result["removed"] == ["A"]
    assert "forget release A (good, its directory is gone)" in result["actions"]
    assert [item["name"] for item in manifest_of(deploy)["releases"]] == ["B", "C"]


def test_clean_on_a_missing_path_changes_nothing(deploy):
    result = core.run(deploy, "clean")
    assert result["changed"] is False
    assert not deploy.exists()


# ---- query, manifest -------------------------------------------------------------------------

def test_query_changes_nothing_and_reports(deploy):
    deploy_release(deploy, "A")
    deploy_release(deploy, "B")
    os.unlink(deploy / ".weblab-release.lock")
    before = tree(deploy)
    result = core.run(deploy, "query")
    assert result["changed"] is False
    assert tree(deploy) == before, "query must not even create the lock file"
    assert (result["live"], result["previous"]) == ("B", "A")
    assert result["current_path"] == str(deploy / "current")
    assert [(item["name"], item["state"], item["live"], item["revision"]) for item in result["releases"]] == [
        ("A", "good", False, "rev-A"), ("B", "good", True, "rev-B")]


def test_query_of_a_missing_path_is_empty(deploy):
    result = core.run(deploy, "query")
    assert (result["changed"], result["live"], result["releases"]) == (False, None, [])
    assert not deploy.exists()


def test_a_corrupt_manifest_is_reported_not_guessed(deploy):
    deploy_release(deploy, "A")
    (deploy / "releases.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(core.ReleaseError, match="releases.json is not valid JSON"):
        core.run(deploy, "present", release="B")
    assert not (deploy / "releases" / "B").exists()


def test_the_manifest_is_replaced_atomically(deploy):
    deploy_release(deploy, "A")
    inode = (deploy / "releases.json").stat().st_ino
    deploy_release(deploy, "B")
    assert (deploy / "releases.json").stat().st_ino != inode
    assert [name for name in os.listdir(deploy) if name.startswith(".releases.json")] == []


# ---- check mode ------------------------------------------------------------------------------

def _setup_three(path):
    for name in ("A", "B", "C"):
        deploy_release(path, name)
    core.run(path, "present", release="N")
    core.run(path, "present", release="F")
    core.run(path, "fail", release="F")


CHECK_CASES = [
    pytest.param(None, ("present", {"release": "A", "revision": "r"}), id="present-new-path"),
    pytest.param(_setup_three, ("present", {"release": "X"}), id="present"),
    pytest.param(_setup_three, ("present", {"release": "F"}), id="present-failed"),
    pytest.param(_setup_three, ("switch", {"release": "N", "shared_paths": ["media", "a/b"]}), id="switch"),
    pytest.param(_setup_three, ("switch", {"release": "C", "shared_paths": ["media"]}), id="switch-live-new-link"),
    pytest.param(_setup_three, ("fail", {"release": "N"}), id="fail"),
    pytest.param(_setup_three, ("rollback", {}), id="rollback"),
    pytest.param(_setup_three, ("rollback", {"release": "A"}), id="rollback-named"),
    pytest.param(_setup_three, ("clean", {"keep": 1}), id="clean"),
]


@pytest.mark.parametrize(("setup", "operation"), CHECK_CASES)
def test_check_mode_reports_what_a_real_run_does_and_changes_nothing(tmp_path, setup, operation):
    state, kwargs = operation
    checked, real = tmp_path / "checked" / "app", tmp_path / "real" / "app"
    if setup:
        setup(checked)
        shutil.copytree(checked, real, symlinks=True)
    before = tree(checked)
    predicted = core.run(checked, state, check_mode=True, **kwargs)
    assert tree(checked) == before, "check mode changed the disk"
    done = core.run(real, state, **kwargs)
    assert predicted["changed"] is True
    assert done["changed"] is True
    assert [line.replace(str(checked), "PATH") for line in predicted["actions"]] == \
        [line.replace(str(real), "PATH") for line in done["actions"]]
    for key in ("live", "previous", "switched_from", "removed", "linked", "release", "current_target"):
        assert predicted[key] == done[key], key
    assert predicted["diff"] == done["diff"]
    assert states(predicted) == states(done)


def test_check_mode_of_an_unchanged_run_reports_no_change(deploy):
    deploy_release(deploy, "A")
    assert core.run(deploy, "switch", release="A", check_mode=True)["changed"] is False
    assert core.run(deploy, "present", release="A", revision="rev-A", check_mode=True)["changed"] is False


def test_diff_shows_where_current_pointed(deploy):
    deploy_release(deploy, "A")
    deploy_release(deploy, "B")
    result = core.run(deploy, "rollback")
    assert result["diff"]["before"] == {"current": "releases/B", "live": "B", "releases": {"A": "good", "B": "good"}}
    assert result["diff"]["after"] == {"current": "releases/A", "live": "A",
                                       "releases": {"A": "good", "B": "abandoned"}}


# ---- the lock --------------------------------------------------------------------------------

def test_a_second_deploy_waits_for_the_lock_then_fails_naming_the_holder(deploy):
    deploy_release(deploy, "A")
    holder = core.DeployLock(str(deploy), 0, holder="pid 4242 on web1 (state=switch, release=Z)").acquire()
    try:
        started = time.monotonic()
        with pytest.raises(core.ReleaseError) as caught:
            core.run(deploy, "present", release="B", lock_timeout=1)
        waited = time.monotonic() - started
    finally:
        holder.release()
    message = str(caught.value)
    assert "lock_timeout=1" in message
    assert ".weblab-release.lock" in message
    assert "pid 4242 on web1 (state=switch, release=Z)" in message
    assert waited >= 1
    assert not (deploy / "releases" / "B").exists()


def test_a_second_deploy_proceeds_once_the_lock_is_released(deploy):
    deploy_release(deploy, "A")
    holder = core.DeployLock(str(deploy), 0, holder="first deploy").acquire()
    timer = threading.Timer(0.5, holder.release)
    timer.start()
    try:
        started = time.monotonic()
        result = core.run(deploy, "present", release="B", lock_timeout=10)
        waited = time.monotonic() - started
    finally:
        timer.join()
    assert result["changed"] is True
    assert 0.4 <= waited < 10


def test_the_lock_is_held_while_an_operation_runs(deploy, monkeypatch):
    deploy_release(deploy, "A")
    core.run(deploy, "present", release="B")
    seen = []
    original = core.Releases.switch

    def switch_and_probe(self, *args, **kwargs):
        try:
            core.DeployLock(str(deploy), 0).acquire().release()
            seen.append("free")
        except core.ReleaseError as exc:
            seen.append(str(exc))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(core.Releases, "switch", switch_and_probe)
    core.run(deploy, "switch", release="B")
    assert len(seen) == 1 and "state=switch, release=B" in seen[0], seen
    core.DeployLock(str(deploy), 0).acquire().release()


# ---- the switch under load -------------------------------------------------------------------

READER = textwrap.dedent("""
    import json, os, sys
    path, stop, ready, failed = sys.argv[1:5]
    current = os.path.join(path, "current")
    reads, errors, seen = 0, [], set()
    while not os.path.exists(stop):
        try:
            real = os.path.realpath(current)
            if not os.path.isdir(real):
                raise OSError("current resolved to %s, not a directory" % real)
            with open(os.path.join(current, "RELEASE"), encoding="utf-8") as handle:
                seen.add(handle.read())
            reads += 1
            if reads == 1:
                open(ready, "w").close()
        except OSError as exc:
            errors.append(str(exc))
            if len(errors) == 1:
                open(failed, "w").close()
    print(json.dumps({"reads": reads, "errors": errors[:5], "failures": len(errors), "seen": sorted(seen)}))
""")


def _start_reader(tmp_path, path):
    stop, ready, failed = tmp_path / "stop", tmp_path / "ready", tmp_path / "failed"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), str(stop), str(ready), str(failed)],
                              stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert reader.poll() is None, "the reader died"
        assert time.monotonic() < deadline, "the reader never read through current"
        time.sleep(0.01)
    return reader, stop, failed


def _stop_reader(reader, stop):
    stop.touch()
    return json.loads(reader.communicate(timeout=60)[0])


def test_a_reader_never_fails_while_current_is_switched_1000_times(tmp_path, deploy):
    deploy_release(deploy, "A")
    deploy_release(deploy, "B")
    reader, stop = _start_reader(tmp_path, deploy)[:2]
    try:
        for i in range(1000):
            name = "A" if i % 2 == 0 else "B"
            result = core.run(deploy, "switch", release=name)
            assert result["live"] == name
    finally:
        report = _stop_reader(reader, stop)
    assert report["failures"] == 0, report
    assert report["seen"] == ["A", "B"], "the reader must have read both releases during the switches"
    assert report["reads"] > 1000, report
    assert current_of(deploy) == "releases/B"


def test_the_reader_catches_a_switch_that_removes_current_first(tmp_path, deploy):
    """The control for the test above: rm + ln (Capistrano 2) leaves a gap this reader sees."""
    deploy_release(deploy, "A")
    deploy_release(deploy, "B")
    reader, stop, failed = _start_reader(tmp_path, deploy)
    try:
        for i in range(200000):
            os.unlink(deploy / "current")
            os.symlink("releases/" + ("A" if i % 2 else "B"), deploy / "current")
            if i % 100 == 0 and failed.exists():
                break
    finally:
        report = _stop_reader(reader, stop)
    assert report["failures"] > 0, report
