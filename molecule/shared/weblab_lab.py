"""Helpers of the tests of the lab across hosts (molecule/site: the whole lab and the task queue):
HTTPS requests sent from a host with its own Python, the task-queue front end's API, waiting
for a condition with the unit's journal in the failure message."""

import json
import time

import pytest
import testinfra
from weblab_testinfra import INVENTORY

# Run by the hosts' own Python: an HTTPS request, verified against the system's CAs unless
# --insecure (the front end's certificate is self-signed by nginx's role); prints status and body.
CLIENT = r'''
import json, ssl, sys, urllib.error, urllib.request
method, url, token, body, insecure = sys.argv[1:6]
ctx = ssl._create_unverified_context() if insecure == "1" else ssl.create_default_context()
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token
requests = json.loads(body) if body.startswith("[") else [body]
for one in requests:
    data = None if one in ("", None) else (one if isinstance(one, str) else json.dumps(one)).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as answer:
            print(json.dumps([answer.status, answer.read().decode()]))
    except urllib.error.HTTPError as error:
        print(json.dumps([error.code, error.read().decode()]))
'''
WORKER_UNIT = "celery-taskqueue-experiments.service"
PROTOCOL = "input a = 2\noutput y = a * t\nsimulate 4\n"


def host_fixture(name):
    """A module-scoped fixture named after NAME's second dash-separated word (tq-worker-debian12:
    `worker`): the testinfra host of the inventory's NAME."""
    return pytest.fixture(scope="module", name=name.split("-")[1])(
        lambda: testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}"))


def journal(host, unit=WORKER_UNIT):
    return host.run("journalctl -u %s --no-pager -n 40", unit).stdout


def http(host, method, url, body="", token="", insecure=False):
    """[(status, parsed JSON or text)] of one request (body a JSON document) or several (body a
    JSON list of documents), sent from HOST."""
    host.run("cat > /tmp/weblab_client.py <<'EOF'\n%s\nEOF" % CLIENT)
    out = host.run("python3 /tmp/weblab_client.py %s %s %s %s %s", method, url, token, body, "1" if insecure else "0")
    assert out.rc == 0, out.stderr
    answers = []
    for line in out.stdout.splitlines():
        status, text = json.loads(line)
        try:
            answers.append((status, json.loads(text)))
        except ValueError:
            answers.append((status, text))
    return answers


def wait_for(what, check, timeout, host=None):
    """CHECK's first true value within TIMEOUT seconds, else a failure naming WHAT (with HOST's
    worker journal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n" + (journal(host) if host else ""), pytrace=False)


class FrontEnd:
    """The task-queue front end's API through nginx (HTTPS, its first server name, the API
    token), called from the front-end host."""

    def __init__(self, host, lab_vars):
        self.host = host
        self.name = lab_vars["weblab_tq_server_names"][0]
        self.token = lab_vars["weblab_tq_api_token"]

    def api(self, method, path, payload=None, many=None):
        body = json.dumps(many) if many is not None else ("" if payload is None else json.dumps(payload))
        answers = http(self.host, method, f"https://{self.name}{path}", body, self.token, insecure=True)
        return answers if many is not None else answers[0]

    def schedule(self, duration, count=None):
        """Schedule one experiment (its id) or COUNT of them (their ids)."""
        experiment = {"model": "linear", "protocol": PROTOCOL, "duration": duration}
        if count is None:
            status, body = self.api("POST", "/api/experiments/", experiment)
            assert status == 202, body
            return body["id"]
        answers = self.api("POST", "/api/experiments/", many=[experiment] * count)
        assert all(answer[0] == 202 for answer in answers), answers[:3]
        return [answer[1]["id"] for answer in answers]

    def experiment(self, ident):
        status, body = self.api("GET", f"/api/experiments/{ident}/")
        assert status == 200, body
        return body

    def wait_until_done(self, ident, timeout, worker=None):
        """The experiment once its status is done."""
        return wait_for(f"experiment {ident} to finish",
                        lambda: (e := self.experiment(ident))["status"] == "done" and e, timeout, worker)
