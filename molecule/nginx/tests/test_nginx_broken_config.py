"""A configuration nginx refuses is never applied: the run fails naming nginx -t's error, the
previous file is back on disk, and nginx serves on with the configuration it had.

The broken configuration is the scenario's own converge.yml with a directive nginx does not know
in the site `weblab` (weblab_test_extra_config, molecule.yml), run once per host."""

import os

import pytest
from weblab_testinfra import PROJECT, run_playbook

from nginx_http import journal, request

CONVERGE = os.path.join(PROJECT, "molecule", "nginx", "converge.yml")
SITE = "/etc/nginx/sites-available/weblab.conf"
BAD = "weblab_no_such_directive on;"


@pytest.fixture(scope="module")
def broken_run(host):
    """The file before, the run's (rc, output), and the file after."""
    before = host.file(SITE).content_string
    rc, output = run_playbook(CONVERGE, host=host, weblab_test_extra_config=BAD)
    return {"before": before, "rc": rc, "output": output, "after": host.file(SITE).content_string}


def test_run_fails(broken_run):
    assert broken_run["rc"] != 0, broken_run["output"]


def test_failure_names_the_error_of_nginx_t(broken_run):
    # The callback may escape the quotes and fold long lines: compare without either.
    output = " ".join(broken_run["output"].replace("\\", "").split())
    assert 'unknown directive "weblab_no_such_directive"' in output, broken_run["output"]


def test_previous_site_file_is_back(broken_run):
    assert BAD not in broken_run["after"]
    assert broken_run["after"] == broken_run["before"]


def test_no_backup_file_is_left(host, broken_run):
    leftovers = host.run("find /etc/nginx -name '*~'").stdout.split()
    assert leftovers == [], leftovers


def test_nginx_serves_on(host, broken_run):
    answer = request(host, "/after-refusal")
    assert answer.get("status") == 200, (answer, journal(host))


def test_whole_configuration_on_disk_passes_nginx_t(host, broken_run):
    out = host.run("nginx -t")
    assert out.rc == 0, out.stderr
