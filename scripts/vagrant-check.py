"""The Vagrant lab's checks, run by the machine's own Python inside the all-in-one machine
(scripts/vagrant-test.sh pipes this file to `vagrant ssh -c 'python3 -'`): the site's page and
/health/ through nginx over HTTPS, verified against the system's CAs (the lab's CA among them);
the task-queue front end's /health/ through nginx, again after its app server restarts (on
one machine the workers' deploy must leave the front end's release alone); an experiment scheduled through the front end,
run by the Celery worker, its result posted to the site and shown on the site's page.

Usage: python3 - TQ_API_TOKEN < vagrant-check.py      (the token is never printed)"""
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

TOKEN = sys.argv[1]
SITE = "https://localhost"
FRONTEND_HOST = "taskqueue.localhost"
PROTOCOL = "input a = 2\noutput y = a * t\nsimulate 4\n"
failures = []


def request(url, method="GET", body=None, host=None, token=None, verify=True):
    """(status, text) of one HTTPS request."""
    headers = {"Content-Type": "application/json"}
    if host:
        headers["Host"] = host
    if token:
        headers["Authorization"] = "Bearer " + token
    ctx = ssl.create_default_context() if verify else ssl._create_unverified_context()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to nginx on 127.0.0.1 with the front end's name in SNI and Host (the name does not
    resolve; nginx refuses a handshake that names no site of it)."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", 443), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def check(what, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + what + ("" if ok else ": " + detail[:400]))
    if not ok:
        failures.append(what)


def frontend(method, path, body=None):
    """(status, parsed JSON or text) of the front end's API through nginx (its own certificate,
    made by nginx's role: not verified)."""
    conn = LoopbackHTTPS(FRONTEND_HOST, context=ssl._create_unverified_context(), timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN}
    conn.request(method, path, None if body is None else json.dumps(body), headers)
    answer = conn.getresponse()
    text = answer.read().decode()
    conn.close()
    try:
        return answer.status, json.loads(text)
    except ValueError:
        return answer.status, text


status, text = request(SITE + "/health/")
health = json.loads(text) if status in (200, 503) else {}
check("site /health/ through nginx answers 200 (certificate verified)", status == 200, text)
check("site /health/ reports database and cache ok and names a release",
      health.get("status") == "ok" and health.get("database") is True and health.get("cache") is True
      and bool(health.get("release")), text)
status, text = request(SITE + "/")
check("site page through nginx answers 200 with the lab's page", status == 200 and "Web lab" in text, text)

status, body = frontend("GET", "/health/")
check("front end /health/ through nginx answers 200", status == 200, str(body))
release = body.get("release") if isinstance(body, dict) else None

# The front end's app server starts again on the live release (on one machine the workers'
# deploy must not have switched the front end's `current` to a release it cannot run).
restart = subprocess.run(["sudo", "systemctl", "restart", "gunicorn-taskqueue.service"],
                         capture_output=True, text=True, check=False)
status, body = frontend("GET", "/health/")
check("front end answers /health/ with the same release after its app server restarts",
      restart.returncode == 0 and status == 200 and isinstance(body, dict) and body.get("release") == release,
      "%s %s %s" % (restart.stderr, status, body))

status, body = frontend("POST", "/api/experiments/", {"model": "linear", "protocol": PROTOCOL, "duration": 0.5})
check("front end accepts an experiment (202)", status == 202, str(body))
if status == 202:
    ident = body["id"]
    deadline = time.monotonic() + 180
    state = {}
    while time.monotonic() < deadline:
        status, state = frontend("GET", "/api/experiments/%s/" % ident)
        if status == 200 and state.get("status") in ("done", "failed", "cancelled"):
            break
        time.sleep(1)
    check("the worker ran the experiment (status done)", state.get("status") == "done", str(state))
    deadline = time.monotonic() + 60
    shown = False
    while time.monotonic() < deadline and not shown:
        status, text = request(SITE + "/")
        shown = status == 200 and ident in text
        if not shown:
            time.sleep(1)
    check("the experiment's result, posted by the worker, shows on the site's page", shown, "")

print("%d check(s) failed" % len(failures) if failures else "all checks passed")
sys.exit(1 if failures else 0)
