"""weblab.stack.uwsgi's reload helper (files/usr/local/libexec/weblab/uwsgi_reload.py) against a
stand-in for uWSGI's master: a stats socket, a master FIFO whose "c" replaces the workers one
by one, and workers that load the release RUN_DIR/release points at and record it as
weblab_uwsgi.py does (a staged release holds until `current` points at it; one that does not
load records the error and points the link back at `current`). The real thing runs in the
webservers scenario."""

import importlib.util
import json
import os
import pathlib
import socket
import sys
import threading
import time
import types

import pytest

HELPER = (pathlib.Path(__file__).resolve().parents[2]
          / "roles/uwsgi/files/usr/local/libexec/weblab/uwsgi_reload.py")
LIB = pathlib.Path(__file__).resolve().parents[2] / "roles/uwsgi/files/usr/local/lib/weblab-uwsgi"
SPEC = importlib.util.spec_from_file_location("uwsgi_reload", HELPER)
uwsgi_reload = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(uwsgi_reload)


class FakeMaster:
    """Workers 1..N; a chain reload replaces them in order, each after the previous accepts."""

    def __init__(self, root, workers=3, broken=()):
        self.root = root
        self.run_dir = root / "run"
        self.run_dir.mkdir()
        self.deploy = root / "deploy"
        (self.deploy / "releases").mkdir(parents=True)
        for name in ("A", "B", "C"):
            (self.deploy / "releases" / name).mkdir()
        self.current = self.deploy / "current"
        self.point(self.current, "releases/A")
        self.point(self.run_dir / "release", str(self.current))
        self.broken = {str(self.deploy / "releases" / name) for name in broken}
        self.next_pid = 1000
        self.workers = {}
        for wid in range(1, workers + 1):
            self.spawn(wid)
        self.fifo = self.run_dir / "master.fifo"
        os.mkfifo(self.fifo)
        self.stats = self.run_dir / "stats.sock"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.stats))
        self.server.listen(8)
        self.stop = threading.Event()
        for target in (self.serve_stats, self.read_fifo):
            threading.Thread(target=target, daemon=True).start()

    @staticmethod
    def point(link, target):
        temporary = str(link) + ".tmp"
        os.symlink(target, temporary)
        os.replace(temporary, link)

    def record(self, kind, pid, text):
        (self.run_dir / ("%s-%d" % (kind, pid))).write_text(text, encoding="utf-8")

    def spawn(self, wid):
        """A new worker WID: loads the release the link points at (weblab_uwsgi.py's part)."""
        self.next_pid += 1
        pid = self.next_pid
        self.workers[wid] = [pid, 0]
        release = os.path.realpath(self.run_dir / "release")
        if release != os.path.realpath(self.current):
            if release in self.broken:
                self.record("failed", pid, release + "\nTraceback ...\nModuleNotFoundError: No module named 'boom'\n")
                self.point(self.run_dir / "release", str(self.current))
                return self.spawn(wid)
            self.record("staged", pid, release + "\n")
            while os.path.realpath(self.current) != release and not self.stop.is_set():
                time.sleep(0.01)
        self.record("worker", pid, release + "\n")
        self.workers[wid][1] = 1
        return pid

    def chain(self):
        for wid in sorted(self.workers):
            self.spawn(wid)

    def serve_stats(self):
        while not self.stop.is_set():
            client, _address = self.server.accept()
            with client:
                stats = {"workers": [{"id": wid, "pid": pid, "accepting": accepting}
                                     for wid, (pid, accepting) in sorted(self.workers.items())]}
                client.sendall(json.dumps(stats).encode())

    def read_fifo(self):
        while not self.stop.is_set():
            with open(self.fifo, "rb") as stream:
                if stream.read(1) == b"c":
                    threading.Thread(target=self.chain, daemon=True).start()

    def args(self, **changes):
        return types.SimpleNamespace(**dict({
            "deploy_path": str(self.deploy), "module": "site.wsgi:application", "fifo": str(self.fifo),
            "stats": str(self.stats), "run_dir": str(self.run_dir), "timeout": 10, "stage": None,
            "release_env": False}, **changes))

    def release_of(self, pid):
        return (self.run_dir / ("worker-%d" % pid)).read_text(encoding="utf-8").strip()


@pytest.fixture
def master(tmp_path):
    fake = FakeMaster(tmp_path)
    yield fake
    fake.stop.set()


def deadline():
    """The helper's deadline: it returns as soon as the workers are where they should be, so a
    generous one costs nothing when they are, and keeps a loaded machine (make test runs this
    beside Molecule scenarios) from failing a test that would pass."""
    return time.monotonic() + 60


def test_stage_returns_once_a_worker_holds_the_release_and_the_others_serve_the_live_one(master, capsys):
    release_b = str(master.deploy / "releases" / "B")
    assert uwsgi_reload.stage(master.args(), release_b, deadline()) == 0
    assert "serves it once current points at it" in capsys.readouterr().out
    held = [pid for pid, accepting in master.workers.values() if not accepting]
    assert len(held) == 1
    serving = [pid for pid, accepting in master.workers.values() if accepting]
    assert {master.release_of(pid) for pid in serving} == {str(master.deploy / "releases" / "A")}


def test_the_switch_releases_the_held_worker_and_the_reload_waits_for_all(master, capsys):
    release_b = str(master.deploy / "releases" / "B")
    uwsgi_reload.stage(master.args(), release_b, deadline())
    master.point(master.current, "releases/B")
    assert uwsgi_reload.reload(master.args(), deadline()) == 0
    out = capsys.readouterr().out
    assert "was staged; the chain reload goes on" in out and "every worker serves" in out
    assert {master.release_of(pid) for pid, _accepting in master.workers.values()} == {release_b}
    assert os.readlink(master.run_dir / "release") == str(master.current)


def test_a_release_that_does_not_load_fails_the_stage_and_the_live_one_serves(tmp_path, capsys):
    fake = FakeMaster(tmp_path, broken=["C"])
    try:
        assert uwsgi_reload.stage(fake.args(), str(fake.deploy / "releases" / "C"), deadline()) == 1
        assert "No module named 'boom'" in capsys.readouterr().err
        assert os.readlink(fake.run_dir / "release") == str(fake.current)
        time.sleep(0.3)  # the chain goes on with the live release
        assert {fake.release_of(pid) for pid, _a in fake.workers.values()} == {str(fake.deploy / "releases" / "A")}
    finally:
        fake.stop.set()


def test_stage_without_a_running_uwsgi_leaves_the_start_to_the_switch(tmp_path, capsys):
    args = types.SimpleNamespace(stats=str(tmp_path / "stats.sock"), run_dir=str(tmp_path), fifo="", deploy_path="",
                                 timeout=5)
    assert uwsgi_reload.stage(args, str(tmp_path / "B"), deadline()) == 0
    assert "not running" in capsys.readouterr().out


def test_unstaged_reload_points_the_link_at_current_and_chain_reloads(master, monkeypatch):
    """A switch without a stage (or back): the pre-flight, then every worker reloads."""
    monkeypatch.setattr(uwsgi_reload, "preflight", lambda release, module, timeout, release_env: None)
    master.point(master.run_dir / "release", str(master.deploy / "releases" / "C"))  # a stage left behind
    master.point(master.current, "releases/B")
    assert uwsgi_reload.reload(master.args(), deadline()) == 0
    assert {master.release_of(pid) for pid, _a in master.workers.values()} == {str(master.deploy / "releases" / "B")}


def test_unstaged_reload_touches_nothing_when_the_release_does_not_import(master, monkeypatch, capsys):
    monkeypatch.setattr(uwsgi_reload, "preflight", lambda release, module, timeout, release_env: "ImportError: boom")
    before = dict(master.workers)
    master.point(master.current, "releases/B")
    assert uwsgi_reload.reload(master.args(), deadline()) == 1
    assert "ImportError: boom" in capsys.readouterr().err
    assert master.workers == before


def test_the_preflight_imports_the_release_with_its_own_settings(tmp_path, monkeypatch):
    """--release-env: the pre-flight reads RELEASE/.weblab/app.env as the workers do
    (weblab_release_env.py), so an app that needs its settings at import passes; without it,
    it fails."""
    monkeypatch.setattr(uwsgi_reload, "LIB_DIR", str(LIB))
    release = tmp_path / "releases" / "A"
    (release / ".venv" / "bin").mkdir(parents=True)
    (release / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (release / "needs_settings.py").write_text(
        "import os\nassert os.environ['LAB_SECRET'] == 'it is A', os.environ.get('LAB_SECRET')\n"
        "application = lambda environ, start_response: []\n", encoding="utf-8")
    (release / ".weblab").mkdir()
    (release / ".weblab" / "app.env").write_text(
        "# written by the app role\nLAB_SECRET='it is A'\n", encoding="utf-8")
    monkeypatch.delenv("LAB_SECRET", raising=False)
    assert uwsgi_reload.preflight(str(release), "needs_settings:application", 30, release_env=True) is None
    error = uwsgi_reload.preflight(str(release), "needs_settings:application", 30, release_env=False)
    assert "KeyError: 'LAB_SECRET'" in error
