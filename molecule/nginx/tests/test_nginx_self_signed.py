"""A self-signed site whose private key was lost gets a new key and certificate on the next run,
and nginx serves the new certificate (a client that trusts only the new one verifies it)."""

import os

import pytest
from weblab_testinfra import PROJECT, run_playbook

from nginx_http import journal, request

CONVERGE = os.path.join(PROJECT, "molecule", "nginx", "converge.yml")
CERT = "/etc/nginx/tls/weblab.crt"
KEY = "/etc/nginx/tls/weblab.key"


@pytest.fixture(scope="module")
def lost_key_run(host):
    """The certificate before, the run's (rc, output) after the key was removed."""
    before = host.file(CERT).content_string
    assert host.run("rm -f %s", KEY).rc == 0
    rc, output = run_playbook(CONVERGE, host=host)
    return {"before": before, "rc": rc, "output": output}


def test_run_succeeds(lost_key_run):
    assert lost_key_run["rc"] == 0, lost_key_run["output"]


def test_new_key_is_readable_by_root_only(host, lost_key_run):
    key = host.file(KEY)
    assert (key.exists, key.user, key.group, key.mode) == (True, "root", "root", 0o600)


def test_certificate_is_new(host, lost_key_run):
    assert host.file(CERT).content_string != lost_key_run["before"]


def test_nginx_serves_the_new_certificate(host, lost_key_run):
    answer = request(host, tls=True, cafile=CERT)
    assert answer.get("status") == 200, (answer, journal(host))
