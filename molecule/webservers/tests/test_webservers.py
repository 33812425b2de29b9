"""The site of playbooks/webservers.yml as a visitor and an operator see it: the page through
nginx with rows from PostgreSQL and a fragment cached in memcached, static files from nginx,
unknown hosts refused, the maintenance switch, log rotation, the users the files and processes
belong to, hardened units, and no secret in a -vvv run."""

import os
import re
import uuid

import pytest
from weblab_testinfra import PROJECT, assert_no_secret_in_vvv, exposure, run_playbook, superuser_sql

from nginx_http import request

DEPLOY = "/srv/weblab"
SITE = "weblab.test"
FLAG = "/var/lib/weblab/maintenance/weblab"
CONVERGE = os.path.join(PROJECT, "molecule", "webservers", "converge.yml")
BROKEN_NGINX = os.path.join(PROJECT, "molecule", "webservers", "steps", "broken_nginx.yml")
SECRETS = ("molecule-webservers-secret-key", "molecule-webservers-db-password")
MEMCACHED_KEYS = r'''
import socket, sys
sock = socket.create_connection(("127.0.0.1", 11211), timeout=5)
sock.sendall(b"lru_crawler metadump all\r\n")
data = b""
while not data.endswith(b"END\r\n"):
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode("utf-8", "replace"))
'''


def app_server(host):
    return "gunicorn" if host.backend.get_hostname().endswith("debian12") else "uwsgi"


def unit(host):
    return "%s-weblab.service" % app_server(host)


def page(host, path="/", **options):
    """GET PATH of the site over HTTPS (nginx's self-signed certificate: not verified here)."""
    answer = request(host, path, host_header=SITE, tls=True, cafile="/etc/nginx/tls/weblab.crt",
                     units=(unit(host),), **options)
    return answer


def test_page_shows_rows_from_postgresql(host):
    name = "webservers-%s" % uuid.uuid4().hex[:10]
    superuser_sql(host, "INSERT INTO lab_experiment (name, created, release) VALUES ('%s', now(), 'test')" % name,
                  database="weblab")
    answer = page(host)
    assert answer.get("status") == 200, answer
    assert name in answer["body"]


def test_fragment_is_cached_in_memcached(host):
    assert page(host).get("status") == 200
    keys = host.run("python3 -c %s", MEMCACHED_KEYS)
    assert keys.rc == 0, keys.stderr
    assert re.search(r"key=weblab%3A\d+%3Atemplate\.cache\.experiment_table", keys.stdout) or \
        "template.cache.experiment_table" in keys.stdout, keys.stdout[:2000]


def test_repeated_page_comes_from_the_cache(host):
    first = page(host)["body"]
    second = page(host)["body"]
    stamp = re.compile(r"rendered at <time>([^<]+)</time>")
    assert stamp.search(first) and stamp.search(first).group(1) == stamp.search(second).group(1)


def test_static_file_comes_from_nginx_not_the_app(host):
    marker = "static-%s" % uuid.uuid4().hex[:8]
    answer = page(host, "/static/lab/site.css?%s" % marker)
    assert answer.get("status") == 200, answer
    assert answer.header("cache-control"), answer["headers"]
    # The app server never saw it: its log has no line of this request.
    log = host.run("journalctl -u %s --no-pager -n 500; cat /var/log/%s/weblab/*.log 2>/dev/null",
                   unit(host), app_server(host))
    assert marker not in log.stdout


def test_static_file_is_collected_from_the_live_release(host):
    live = host.file("%s/current" % DEPLOY).linked_to
    css = host.file("%s/staticfiles/lab/site.css" % live)
    assert css.exists
    assert page(host, "/static/lab/site.css")["body"] == css.content_string


def test_unknown_host_is_refused(host):
    answer = request(host, "/", host_header="intruder.test")
    assert "closed" in answer, answer


def test_health_names_the_live_release(host):
    answer = request(host, "/health/", host_header=SITE)
    assert answer.get("status") == 200, answer
    assert answer.json()["release"] == os.path.basename(host.file("%s/current" % DEPLOY).linked_to)


@pytest.fixture()
def maintenance(host):
    host.run("touch %s", FLAG)
    yield
    host.run("rm -f %s", FLAG)


def test_maintenance_flag_gives_503_and_static_stays(host, maintenance):
    assert page(host).get("status") == 503
    assert page(host, "/static/lab/site.css").get("status") == 200


def test_logrotate_accepts_the_configuration(host):
    out = host.run("logrotate -d /etc/logrotate.conf")
    assert out.rc == 0, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.lower().startswith("error")]
    assert not errors, out.stderr
    assert "/var/log/nginx/weblab.access.log" in out.stderr


def test_nginx_serves_on_after_a_broken_configuration(host):
    rc, output = run_playbook(BROKEN_NGINX, host=host)
    assert rc != 0, output
    assert "unknown directive" in output.replace("\\", "")
    assert page(host).get("status") == 200
    assert not host.file("/etc/nginx/sites-enabled/broken.conf").exists


def test_app_server_runs_as_the_runtime_user(host):
    main_pid = host.run("systemctl show -p MainPID --value %s", unit(host)).stdout.strip()
    owner = host.run("ps -o user= -p %s", main_pid).stdout.strip()
    assert owner == "weblab-run", (main_pid, owner)


def test_runtime_user_cannot_write_the_code(host):
    live = host.file("%s/current" % DEPLOY).linked_to
    out = host.run("runuser -u weblab-run -- touch %s/manage.py", live)
    assert out.rc != 0
    out = host.run("runuser -u weblab-run -- touch %s/new-file", live)
    assert out.rc != 0
    # ... and can read it and write the media.
    assert host.run("runuser -u weblab-run -- cat %s/manage.py", live).rc == 0
    assert host.run("runuser -u weblab-run -- touch %s/shared/media/probe && rm %s/shared/media/probe",
                    DEPLOY, DEPLOY).rc == 0


@pytest.mark.parametrize("path", ["current/.weblab/app.env", "current/manage.py", "current/weblab_site/settings.py"])
def test_nginx_cannot_read_secrets_or_code(host, path):
    out = host.run("runuser -u www-data -- cat %s/%s", DEPLOY, path)
    assert out.rc != 0, "www-data read %s" % path


def test_nginx_can_read_static_and_media(host):
    host.run("runuser -u weblab-run -- sh -c 'echo media > %s/shared/media/probe.txt'", DEPLOY)
    assert host.run("runuser -u www-data -- cat %s/current/staticfiles/lab/site.css", DEPLOY).rc == 0
    assert host.run("runuser -u www-data -- cat %s/shared/media/probe.txt", DEPLOY).rc == 0
    assert page(host, "/media/probe.txt")["body"] == "media\n"


def test_unit_exposure_is_at_most_3(host):
    assert exposure(host, unit(host)) <= 3.0


def test_no_secret_in_a_vvv_run(host):
    if not host.backend.get_hostname().endswith("debian12"):
        pytest.skip("the same secrets take the same paths on both hosts: one -vvv run proves it")
    assert_no_secret_in_vvv(host, CONVERGE, SECRETS)
