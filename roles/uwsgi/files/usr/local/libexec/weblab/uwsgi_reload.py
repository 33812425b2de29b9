# Copyright: weblab.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ExecReload of weblab.stack.uwsgi's units: load the release `current` points at, or keep the
one that serves; with --stage, load a release before a deploy switches `current` to it.

The workers load the app through RUN_DIR/release, a link to DEPLOY_PATH/current except while a
release is staged, and record the release they loaded (weblab_uwsgi.py, RUN_DIR/worker-PID).

Reload (systemctl reload, after a switch):
1. When a staged worker already serves the release `current` points at, the chain reload the
   stage started goes on by itself: only wait (step 4).
2. Else point RUN_DIR/release at `current`, and pre-flight: the venv of `current` imports the
   WSGI callable, as a worker would (same user, environment and sandbox: systemd runs this with
   the unit's settings). If it cannot, nothing is touched, the old workers serve on, and this
   exits 1 with the import's error.
3. Chain reload: "c" to the master FIFO; uWSGI replaces the workers one by one, each loading
   the release while the others serve.
4. Wait until every worker loaded the release `current` points at and accepts requests, so
   `systemctl reload` returns when the new release is served (exit 0), or fail after --timeout
   seconds (exit 1).

Stage (--stage RELEASE, the app role's app_stage_command through uwsgi-stage-APP, as root):
point RUN_DIR/release at RELEASE and start a chain reload; exit 0 once its first worker loaded
RELEASE and holds until `current` points at it, or 1 with the error when RELEASE does not load
or no worker held it within --timeout (RUN_DIR/release then points at `current` again, and the
workers reload the live release). Exit 0 at once when uWSGI is not running: the switch starts it.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

# weblab_release_env.py, beside weblab_uwsgi.py.
LIB_DIR = "/usr/local/lib/weblab-uwsgi"

# What a uWSGI worker does with `module = MODULE:CALLABLE`: (given a release, read its
# settings,) import, then take the callable.
CHECK = (
    "import importlib, sys\n"
    "if sys.argv[2]:\n"
    "    import weblab_release_env\n"
    "    weblab_release_env.load(sys.argv[2])\n"
    "module, _, name = sys.argv[1].partition(':')\n"
    "app = getattr(importlib.import_module(module), name or 'application')\n"
    "if not callable(app):\n"
    "    sys.exit('%s is not callable' % sys.argv[1])\n"
)


def workers(stats_path):
    """{worker id: (pid, accepting)} from uWSGI's stats socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(stats_path)
        chunks = []
        while True:
            chunk = client.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    stats = json.loads(b"".join(chunks).decode("utf-8", "replace"))
    return {w["id"]: (w["pid"], w.get("accepting", 0)) for w in stats.get("workers", [])}


def preflight(release, module, timeout, release_env=False):
    """None when RELEASE (a path) loads the app with its venv (and, with RELEASE_ENV, its own
    settings), else the error text."""
    python = os.path.join(release, ".venv", "bin", "python")
    if not os.path.exists(python):
        return "%s does not exist: no release to load" % python
    env = dict(os.environ, PYTHONPATH=release + ":" + LIB_DIR, PYTHONDONTWRITEBYTECODE="1")
    try:
        result = subprocess.run([python, "-c", CHECK, module, release if release_env else ""], env=env,
                                capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "importing %s took more than %d s" % (module, timeout)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return "\n".join(lines[-15:]) or "exit status %d" % result.returncode
    return None


def marker(run_dir, name, pid):
    """The first line of RUN_DIR/NAME-PID (a release), its other lines, or (None, None)."""
    try:
        with open(os.path.join(run_dir, "%s-%d" % (name, pid)), encoding="utf-8") as handle:
            first, _sep, rest = handle.read().partition("\n")
    except OSError:
        return None, None
    return first, rest


def point_link(run_dir, target):
    """RUN_DIR/release -> TARGET, replaced atomically."""
    link = os.path.join(run_dir, "release")
    temporary = "%s.%d" % (link, os.getpid())
    os.symlink(target, temporary)
    os.replace(temporary, link)


def forget_gone_workers(run_dir, pids):
    """Remove the records of worker PIDs that are no longer workers."""
    for name in os.listdir(run_dir):
        kind, _sep, pid = name.partition("-")
        if kind in ("worker", "staged", "failed") and pid.isdigit() and int(pid) not in pids:
            try:
                os.unlink(os.path.join(run_dir, name))
            except FileNotFoundError:
                pass


def polled_workers(stats_path, deadline, interval):
    """workers(STATS_PATH) every INTERVAL seconds until DEADLINE; a failed read is skipped."""
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            yield workers(stats_path)
        except (OSError, ValueError):
            continue


def chain_reload(fifo):
    with open(fifo, "wb", buffering=0) as stream:
        stream.write(b"c")


def stage(args, release, deadline):
    """Load RELEASE in a worker that holds until `current` points at it; 0 or 1."""
    try:
        before = workers(args.stats)
    except OSError:
        print("uwsgi-stage: uWSGI is not running; the switch starts it on %s" % release)
        return 0
    forget_gone_workers(args.run_dir, {pid for pid, _accepting in before.values()})
    point_link(args.run_dir, release)
    chain_reload(args.fifo)
    print("uwsgi-stage: chain reload of %d workers to the staged release %s" % (len(before), release))
    for now in polled_workers(args.stats, deadline, 0.05):
        for pid, _accepting in now.values():
            if marker(args.run_dir, "staged", pid)[0] == release:
                print("uwsgi-stage: worker %d loaded %s and serves it once current points at it" % (pid, release))
                return 0
        for name in os.listdir(args.run_dir):
            if name.startswith("failed-") and name[7:].isdigit():
                failed, error = marker(args.run_dir, "failed", int(name[7:]))
                if failed == release:
                    print("uwsgi-stage: %s cannot be loaded, so the workers keep serving the live release:\n%s"
                          % (release, "\n".join(error.strip().splitlines()[-15:])), file=sys.stderr)
                    return 1
    point_link(args.run_dir, os.path.join(args.deploy_path, "current"))
    print("uwsgi-stage: no worker loaded %s within %d s; the workers reload the live release"
          % (release, args.timeout), file=sys.stderr)
    return 1


def reload(args, deadline):
    """Serve the release `current` points at in every worker; 0 or 1."""
    current = os.path.join(args.deploy_path, "current")
    target = os.path.realpath(current)
    before = workers(args.stats)
    forget_gone_workers(args.run_dir, {pid for pid, _accepting in before.values()})
    staged = os.path.realpath(os.path.join(args.run_dir, "release")) == target and any(
        marker(args.run_dir, name, pid)[0] == target for pid, _a in before.values() for name in ("staged", "worker"))
    if staged:
        point_link(args.run_dir, current)
        print("uwsgi-reload: %s was staged; the chain reload goes on" % target)
    else:
        error = preflight(target, args.module, args.timeout, args.release_env)
        if error:
            print("uwsgi-reload: %s in %s cannot be loaded, so the workers keep serving the release "
                  "they have:\n%s" % (args.module, target, error), file=sys.stderr)
            return 1
        point_link(args.run_dir, current)
        chain_reload(args.fifo)
        print("uwsgi-reload: chain reload of %d workers to %s" % (len(before), target))

    for now in polled_workers(args.stats, deadline, 0.1):
        if now and all(pid > 0 and accepting and marker(args.run_dir, "worker", pid)[0] == target
                       for pid, accepting in now.values()):
            print("uwsgi-reload: every worker serves %s" % target)
            return 0
    print("uwsgi-reload: the chain reload did not finish in %d s" % args.timeout, file=sys.stderr)
    return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploy-path", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--fifo", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--stage", metavar="RELEASE", help="load RELEASE before the switch")
    parser.add_argument("--release-env", action="store_true",
                        help="the workers read each release's .weblab/app.env (the pre-flight too)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    if args.stage:
        return stage(args, os.path.realpath(args.stage), deadline)
    return reload(args, deadline)


if __name__ == "__main__":
    sys.exit(main())
