"""bench/deploy: what a deploy and a rollback cost the site's visitors, with gunicorn and with
uWSGI, against a plain `systemctl restart` of the app server measured in the same run.

For each app server it starts a throwaway container (the test image, systemd as PID 1), sets
the site up with playbooks/webservers.yml (database, cache, app server, release A, nginx), and
then, each time under the same paced load through nginx (bench/deploy/loadgen.py inside the
container, /health/ at --rate requests/s, which names the release that answered):

  deploy     playbooks/webservers.yml --tags webservers with a new release B (code change)
  rollback   playbooks/rollback.yml --tags webservers (back to A)
  restart    the baseline: `current` re-pointed at B by hand, then `systemctl restart` of the
             app server's service (what most roles do on a deploy)

and prints, per app server and action: requests sent and failed around the switch, p50/p99
latency in the 5 s after the switch next to the steady state before it, and the time from the
switch of `current` until the first answer from the new release; then the ratios of deploy and
rollback against the restart baseline. It exits 0 when deploy and rollback failed no request
and served the new release within 1 s, 1 when one did not, 2 when it could not run.

Run it with `make bench` (it needs the Docker engine and the test images: `make images`) or,
from the mirror, `python bench/deploy/run.py --servers gunicorn`. Standard library only.
"""

import argparse
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
COLLECTION = HERE.parents[1]
SITE = COLLECTION / "examples" / "site"
LOADGEN = HERE / "loadgen.py"
IMAGE = "weblab-stack/debian12:latest"
DEPLOY = "/srv/weblab"
LG = "/root/weblab-bench-loadgen"
WITHIN = 1.0
SERVERS = ("gunicorn", "uwsgi")
ACTIONS = ("deploy", "rollback", "restart")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def run(argv, check=True, timeout=1800, env=None):
    try:
        done = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, check=False,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError("%s took longer than %d s" % (argv[0], timeout)) from None
    if check and done.returncode != 0:
        raise BenchError("%s failed (rc=%d): %s%s" % (
            " ".join(map(str, argv[:6])), done.returncode, done.stdout[-3000:], done.stderr[-2000:]))
    return done


class Host:
    """One throwaway container with systemd, driven by docker exec and Ansible."""

    def __init__(self, server, workdir):
        self.server = server
        self.name = "weblab-bench-deploy-%s" % server
        self.workdir = workdir
        self.inventory = workdir / ("inventory-%s.yml" % server)

    def start(self):
        run(["docker", "rm", "-f", self.name], check=False)
        run(["docker", "run", "-d", "--name", self.name, "--cap-add", "SYS_ADMIN", "--cgroupns", "host",
             "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
             "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
             IMAGE, "/lib/systemd/systemd"])
        for _attempt in range(100):
            state = self.sh("systemctl is-system-running || true", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        cas = [{"name": pathlib.Path(path).stem, "src": path}
               for path in sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))]
        inventory = {"all": {
            "children": {group: {"hosts": {self.name: {}}} for group in ("databases", "memcached", "webservers")},
            "vars": {
                "ansible_connection": "community.docker.docker",
                "common_extra_ca_certificates": cas,
                "weblab_app_server": self.server,
                "weblab_server_names": ["weblab.test"],
                "weblab_secret_key": "bench-deploy-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
                "weblab_db_password": "bench-deploy-db-password",
                "app_source": "directory",
                "app_source_path": str(SITE),
            }}}
        self.inventory.write_text(json.dumps(inventory, indent=1), encoding="utf-8")

    def remove(self):
        run(["docker", "rm", "-f", self.name], check=False)

    def sh(self, script, check=True):
        return run(["docker", "exec", self.name, "sh", "-c", script], check=check)

    def playbook(self, playbook, *options, **extra_vars):
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTION.parents[2]), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_PIPELINING="1")
        argv = ["ansible-playbook", "-i", self.inventory, *options]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        return run(argv + [COLLECTION / "playbooks" / playbook], env=env)

    def live(self):
        return os.path.basename(self.sh("readlink %s/current" % DEPLOY).stdout.strip())

    def under_load(self, rate, action):
        """Run ACTION() while the load generator runs in the container; its report."""
        run(["docker", "cp", LOADGEN, "%s:%s.py" % (self.name, LG)])
        self.sh("rm -f %s.ready %s.stop %s.json" % (LG, LG, LG))
        self.sh("setsid nohup python3 %s.py --url http://127.0.0.1/health/ --host weblab.test --rate %s "
                "--duration 900 --watch-link %s/current --ready-file %s.ready --stop-file %s.stop "
                "--output %s.json > %s.log 2>&1 < /dev/null &" % (LG, rate, DEPLOY, LG, LG, LG, LG))
        self.wait_for(LG + ".ready", 20)
        time.sleep(3)  # the steady state
        action()
        time.sleep(5)  # the window after the switch
        self.sh("touch %s.stop" % LG)
        self.wait_for(LG + ".json", 60)
        report = json.loads(self.sh("cat %s.json" % LG).stdout)
        report.pop("records", None)
        return report

    def wait_for(self, path, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sh("test -e %s" % path, check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise BenchError("%s did not appear in %s: %s" % (path, self.name, self.sh("cat %s.log" % LG, check=False).stdout))


def site_b(workdir):
    """examples/site plus one static file: release B, the same for every app server."""
    target = workdir / "site-b"
    if not target.exists():
        shutil.copytree(SITE, target, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
        (target / "lab" / "static" / "lab" / "bench-b.txt").write_text("release B\n", encoding="utf-8")
    return target


def figures(report):
    """The row of one measured action."""
    switch = report["switches"][-1] if report["switches"] else None
    after = report["latency"]["after_switch"][-1] if report["latency"]["after_switch"] else {}
    steady = report["latency"]["steady_state"]
    return {
        "sent": report["totals"]["sent"],
        "failed": report["totals"]["failed"],
        "failed_by_reason": report["totals"]["failed_by_reason"],
        "steady_p50": steady["p50"], "steady_p99": steady["p99"],
        "switch_p50": after.get("p50"), "switch_p99": after.get("p99"),
        "new_after": switch["first_new_after"] if switch and switch["served_new"] else None,
    }


def measure(server, workdir, rate):
    host = Host(server, workdir)
    rows = {}
    try:
        host.start()
        started = time.monotonic()
        host.playbook("webservers.yml")
        print("  %s: site set up in %.0f s (release %s)" % (server, time.monotonic() - started, host.live()),
              flush=True)
        release_a = host.live()
        source_b = site_b(workdir)
        rows["deploy"] = figures(host.under_load(rate, lambda: host.playbook(
            "webservers.yml", "--tags", "webservers", app_source_path=str(source_b))))
        release_b = host.live()
        if release_b == release_a:
            raise BenchError("%s: the deploy did not switch to a new release" % server)
        rows["rollback"] = figures(host.under_load(rate, lambda: host.playbook(
            "rollback.yml", "--tags", "webservers", app_source_path=str(source_b))))
        if host.live() != release_a:
            raise BenchError("%s: the rollback did not return to %s" % (server, release_a))
        unit = "%s-weblab.service" % server
        rows["restart"] = figures(host.under_load(rate, lambda: host.sh(
            "ln -sfn releases/%s %s/current.bench && mv -T %s/current.bench %s/current && systemctl restart %s"
            % (release_b, DEPLOY, DEPLOY, DEPLOY, unit))))
    finally:
        host.remove()
    return rows


def ms(value):
    return "-" if value is None else "%.0f" % (value * 1000)


def ratio(value, baseline):
    if value is None or not baseline:
        return "-"
    return "%.2f" % (value / baseline)


def print_table(results):
    print()
    print("%-9s %-9s %6s %6s %10s %10s %10s %10s %11s" % (
        "server", "action", "sent", "failed", "steady p50", "steady p99", "switch p50", "switch p99",
        "new after"))
    for server, rows in results.items():
        for action in ACTIONS:
            row = rows[action]
            print("%-9s %-9s %6d %6d %10s %10s %10s %10s %11s" % (
                server, action, row["sent"], row["failed"], ms(row["steady_p50"]), ms(row["steady_p99"]),
                ms(row["switch_p50"]), ms(row["switch_p99"]),
                "never" if row["new_after"] is None else "%.3f s" % row["new_after"]))
    print("\nlatency in ms; switch = the 5 s after `current` changed; new after = from that change to the"
          " first answer naming the new release. restart = the baseline (systemctl restart).")
    print("\nratios against the baseline (restart) of the same server, same run:")
    print("%-9s %-9s %14s %14s %14s" % ("server", "action", "failed", "switch p99", "new after"))
    verdicts = []
    for server, rows in results.items():
        base = rows["restart"]
        for action in ("deploy", "rollback"):
            row = rows[action]
            print("%-9s %-9s %14s %14s %14s" % (
                server, action, "%d vs %d" % (row["failed"], base["failed"]),
                ratio(row["switch_p99"], base["switch_p99"]), ratio(row["new_after"], base["new_after"])))
            ok = row["failed"] == 0 and row["new_after"] is not None and row["new_after"] <= WITHIN
            verdicts.append(("%s %s: no failed request and the new release within %.0f s" % (server, action, WITHIN),
                             ok))
    print()
    for text, ok in verdicts:
        print("%s %s" % ("PASS" if ok else "FAIL", text))
    return all(ok for _text, ok in verdicts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="app servers to measure, comma-separated (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    opts = parser.parse_args(argv)
    servers = [name for name in opts.servers.split(",") if name]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown or not servers:
        parser.error("--servers: %s is not one of %s" % (", ".join(unknown) or "(none)", ", ".join(SERVERS)))
    if not 1 <= opts.rate <= 500:
        parser.error("--rate must be between 1 and 500")
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="weblab-bench-deploy-") as tmp:
            for server in servers:
                print("measuring %s at %s requests/s through nginx ..." % (server, opts.rate), flush=True)
                results[server] = measure(server, pathlib.Path(tmp), opts.rate)
    except BenchError as exc:
        print("bench/deploy: %s" % exc, file=sys.stderr)
        return 2
    if opts.json:
        pathlib.Path(opts.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0 if print_table(results) else 1


if __name__ == "__main__":
    sys.exit(main())
