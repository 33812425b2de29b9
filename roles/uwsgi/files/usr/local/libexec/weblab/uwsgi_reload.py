# Copyright: weblab.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ExecReload of weblab.stack.uwsgi's units: load the release `current` points at, or keep the
one that serves.

1. Pre-flight: the venv of `current` imports the WSGI callable, as a worker would (same user,
   environment and sandbox: systemd runs this with the unit's settings). If it cannot, nothing
   is touched, the old workers serve on, and this exits 1 with the import's error.
2. Chain reload: "c" to the master FIFO; uWSGI replaces the workers one by one, each loading
   the release `current` points at (lazy-apps) while the others serve.
3. Waits until every worker is a new one and accepts requests, so `systemctl reload` returns
   when the new release is served (exit 0), or fails after --timeout seconds (exit 1).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

# What a uWSGI worker does with `module = MODULE:CALLABLE`: import, then take the callable.
CHECK = (
    "import importlib, sys\n"
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


def preflight(deploy_path, module, timeout):
    """None when the release of `current` loads the app, else the error text."""
    current = os.path.join(deploy_path, "current")
    python = os.path.join(current, ".venv", "bin", "python")
    if not os.path.exists(python):
        return "%s does not exist: no release to load" % python
    env = dict(os.environ, PYTHONPATH=current, PYTHONDONTWRITEBYTECODE="1")
    try:
        result = subprocess.run([python, "-c", CHECK, module], env=env, capture_output=True,
                                text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "importing %s took more than %d s" % (module, timeout)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return "\n".join(lines[-15:]) or "exit status %d" % result.returncode
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploy-path", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--fifo", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    target = os.path.realpath(os.path.join(args.deploy_path, "current"))

    error = preflight(args.deploy_path, args.module, args.timeout)
    if error:
        print("uwsgi-reload: %s in %s cannot be loaded, so the workers keep serving the release "
              "they have:\n%s" % (args.module, target, error), file=sys.stderr)
        return 1

    before = workers(args.stats)
    old_pids = {pid for pid, _started in before.values()}
    with open(args.fifo, "wb", buffering=0) as fifo:
        fifo.write(b"c")
    print("uwsgi-reload: chain reload of %d workers to %s" % (len(before), target))

    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            now = workers(args.stats)
        except (OSError, ValueError):
            continue
        if now and all(pid > 0 and pid not in old_pids and accepting
                       for pid, accepting in now.values()):
            print("uwsgi-reload: every worker reloaded, serving %s" % target)
            return 0
    print("uwsgi-reload: the chain reload did not finish in %d s" % args.timeout, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
