"""roles/app/files/pack_tree.py: the directory source is packed into a directory private to the
controller user, never into one somebody else made or pointed elsewhere, and --check writes
nothing."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

PACK_TREE = pathlib.Path(__file__).resolve().parents[2] / "roles" / "app" / "files" / "pack_tree.py"
SPEC = importlib.util.spec_from_file_location("pack_tree", PACK_TREE)
pack_tree = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(pack_tree)


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "site"
    (root / "app").mkdir(parents=True)
    (root / "manage.py").write_text("print('manage')\n")
    (root / "app" / "views.py").write_text("VIEWS = 1\n")
    return root


@pytest.fixture
def temp_dir(tmp_path):
    """A TMPDIR like /tmp: world-writable and sticky."""
    path = tmp_path / "tmp"
    path.mkdir()
    path.chmod(0o1777)
    return path


def run(source, temp_dir, *options):
    """pack_tree.py as the role runs it; returns (rc, parsed stdout or None, stderr)."""
    result = subprocess.run([sys.executable, str(PACK_TREE), str(source), str(temp_dir), *options],
                            capture_output=True, text=True, check=False)
    return result.returncode, (json.loads(result.stdout) if result.returncode == 0 else None), result.stderr


def tree(path):
    """Every path under PATH with its mode, links not followed."""
    return sorted((str(p.relative_to(path)), p.lstat().st_mode) for p in path.rglob("*"))


def test_creates_a_private_directory_of_mode_0700(source, temp_dir):
    rc, result, err = run(source, temp_dir)
    assert rc == 0, err
    private = temp_dir / f"weblab-stack-releases-{os.getuid()}"
    assert oct(private.lstat().st_mode & 0o7777) == oct(0o700)
    assert private.lstat().st_uid == os.getuid()
    assert result["archive"] == str(private / f"{result['name']}.tar.gz")
    assert result["created"] is True
    assert pathlib.Path(result["archive"]).is_file()


def test_a_second_run_reuses_the_archive(source, temp_dir):
    first = run(source, temp_dir)[1]
    rc, second, err = run(source, temp_dir)
    assert rc == 0, err
    assert second == dict(first, created=False)


def test_the_same_tree_gives_the_same_bytes(source, tmp_path):
    archives = []
    for name in ("one", "two"):
        temp = tmp_path / name
        temp.mkdir(mode=0o700)
        archives.append(pathlib.Path(run(source, temp)[1]["archive"]).read_bytes())
    assert archives[0] == archives[1]


def test_refuses_a_symlink_planted_at_the_private_path(source, temp_dir, tmp_path):
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir(mode=0o700)
    (temp_dir / f"weblab-stack-releases-{os.getuid()}").symlink_to(elsewhere)
    rc, _out, err = run(source, temp_dir)
    assert rc != 0
    assert "symbolic link" in err, err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701, 0o777], ids=lambda mode: f"{mode:04o}")
def test_refuses_a_directory_others_can_use(source, temp_dir, mode):
    private = temp_dir / f"weblab-stack-releases-{os.getuid()}"
    private.mkdir()
    private.chmod(mode)
    rc, _out, err = run(source, temp_dir)
    assert rc != 0
    assert f"{mode:04o}" in err, err
    assert list(private.iterdir()) == []


def test_refuses_a_file_at_the_private_path(source, temp_dir):
    (temp_dir / f"weblab-stack-releases-{os.getuid()}").write_text("not a directory\n")
    rc, _out, err = run(source, temp_dir)
    assert rc != 0
    assert "not a directory" in err, err


def test_refuses_a_directory_of_another_user(monkeypatch, source, temp_dir):
    # The directory is ours on disk; the packer is told it runs as another uid.
    mine, other = os.getuid(), os.getuid() + 1
    private = temp_dir / f"weblab-stack-releases-{other}"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(pack_tree.os, "getuid", lambda: other)
    with pytest.raises(pack_tree.UnsafeDirectory, match=f"belongs to uid {mine}, not to this user"):
        pack_tree.pack(str(source), str(temp_dir))
    assert list(private.iterdir()) == []


def test_refuses_a_temp_dir_anyone_can_rename_in(source, temp_dir):
    temp_dir.chmod(0o777)
    rc, _out, err = run(source, temp_dir)
    assert rc != 0
    assert "not sticky" in err, err
    assert list(temp_dir.iterdir()) == []


def test_refuses_a_link_in_place_of_the_archive(source, temp_dir, tmp_path):
    name = run(source, temp_dir, "--check")[1]["name"]
    private = temp_dir / f"weblab-stack-releases-{os.getuid()}"
    private.mkdir(mode=0o700)
    planted = tmp_path / "planted.tar.gz"
    planted.write_bytes(b"not the release")
    (private / f"{name}.tar.gz").symlink_to(planted)
    rc, _out, err = run(source, temp_dir)
    assert rc != 0
    assert "not a regular file" in err, err


@pytest.mark.parametrize("earlier_run", [False, True], ids=["new-tree", "archive-exists"])
def test_check_writes_nothing(source, temp_dir, earlier_run):
    if earlier_run:
        run(source, temp_dir)
    (source / "app" / "new.py").write_text("NEW = 1\n")
    before = tree(temp_dir)
    rc, result, err = run(source, temp_dir, "--check")
    assert rc == 0, err
    assert tree(temp_dir) == before
    assert result["created"] is True
    assert not os.path.lexists(result["archive"])


def test_check_names_the_release_as_a_real_run_does(source, temp_dir):
    checked = run(source, temp_dir, "--check")[1]
    packed = run(source, temp_dir)[1]
    assert checked == packed


def test_check_reports_no_change_for_a_packed_tree(source, temp_dir):
    run(source, temp_dir)
    rc, result, err = run(source, temp_dir, "--check")
    assert rc == 0, err
    assert result["created"] is False
