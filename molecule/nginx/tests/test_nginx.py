"""Behaviour of weblab.stack.nginx on a converged host (molecule.yml): the site `weblab` on HTTP
and HTTPS (self-signed) with static files and media, the site `secure` with a given certificate
and HTTP redirected, both in front of the stand-in app server of prepare.yml."""

import time

import pytest

from nginx_http import journal, request

WEBLAB_CERT = "/etc/nginx/tls/weblab.crt"
SECURE_CERT = "/etc/nginx/tls/secure.crt"
FLAG = "/var/lib/weblab/maintenance/weblab"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def backend(host):
    """The stand-in's protocol on this host (molecule.yml: http on Debian 12, uwsgi on 13)."""
    return "uwsgi" if host.file("/usr/bin/uwsgi-core").exists else "http"


@pytest.fixture
def maintenance(host):
    """The site `weblab` in maintenance for one test."""
    assert host.run("touch %s", FLAG).rc == 0
    yield
    host.run("rm -f %s", FLAG)


def test_nginx_is_running_and_enabled(host):
    service = host.service("nginx")
    assert service.is_running, journal(host)
    assert service.is_enabled


def test_page_comes_from_the_app_server(host):
    answer = request(host, "/hello")
    assert answer.get("status") == 200, answer
    assert answer.json()["backend"] == backend(host), answer
    assert answer.json()["path"] == "/hello", answer


def test_app_server_gets_the_host(host):
    assert request(host, "/", host_header="www.weblab.test").json()["host"] == "www.weblab.test"


def test_app_server_gets_the_client_address(host):
    assert request(host).json()["x_forwarded_for"] == "127.0.0.1"


def test_app_server_gets_http_as_the_protocol(host):
    assert request(host).json()["x_forwarded_proto"] == "http"


def test_app_server_gets_https_as_the_protocol(host):
    answer = request(host, tls=True, cafile=WEBLAB_CERT)
    assert answer.get("status") == 200, answer
    assert answer.json()["x_forwarded_proto"] == "https", answer


def test_static_file_comes_from_disk(host):
    answer = request(host, "/static/css/site.css")
    assert answer.get("status") == 200, answer
    assert answer["body"] == host.file("/srv/weblab/static/css/site.css").content_string
    assert answer.header("x-backend") == [], "the app server answered for a static file"


def test_static_file_has_cache_headers(host):
    answer = request(host, "/static/css/site.css")
    assert answer.header("cache-control") == ["max-age=2592000"], answer["headers"]
    assert answer.header("expires"), answer["headers"]


def test_static_file_is_gzipped_on_request(host):
    answer = request(host, "/static/css/site.css", headers=[("Accept-Encoding", "gzip")])
    assert answer.header("content-encoding") == ["gzip"], answer["headers"]


def test_media_file_comes_from_disk(host):
    answer = request(host, "/media/upload.txt")
    assert answer.get("status") == 200, answer
    assert answer["body"] == "an uploaded file\n"
    assert answer.header("x-backend") == [], "the app server answered for a media file"


def test_media_file_has_cache_headers(host):
    assert request(host, "/media/upload.txt").header("cache-control") == ["max-age=604800"]


def test_nginx_cannot_read_the_app_secret(host):
    """www-data joined only the static-only group (nginx_user_groups), not the app's group."""
    out = host.run("runuser -u www-data -- cat /srv/weblab/shared/app.env")
    assert out.rc != 0 and "Permission denied" in out.stderr, (out.rc, out.stdout, out.stderr)


def test_unknown_host_is_closed_without_an_answer(host):
    answer = request(host, host_header="unknown.test")
    assert answer.get("closed"), answer


def test_request_without_a_site_name_is_closed_on_https(host):
    """A known TLS server name but an unknown Host header: the default server's 444."""
    answer = request(host, host_header="unknown.test", tls=True, sni="weblab.test", cafile=WEBLAB_CERT)
    assert answer.get("closed"), answer


def test_unknown_tls_server_name_is_refused(host):
    answer = request(host, host_header="unknown.test", tls=True, sni="unknown.test", cafile=WEBLAB_CERT)
    assert "unrecognized name" in answer.get("tls_error", ""), answer


def test_debian_default_site_is_gone(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    assert request(host, host_header="localhost").get("closed")


def test_absent_site_is_gone(host):
    """prepare.yml enabled `old`; molecule.yml says state: absent."""
    assert request(host, host_header="old.test").get("closed")
    assert not host.file("/etc/nginx/sites-available/old.conf").exists


def test_body_larger_than_the_limit_is_refused(host):
    answer = request(host, "/upload", method="POST", headers=[("Content-Length", str(3 * 1024 * 1024))])
    assert answer.get("status") == 413, answer


def test_maintenance_flag_gives_503_with_the_page(host, maintenance):
    answer = request(host, "/")
    assert answer.get("status") == 503, answer
    assert "Down for maintenance" in answer["body"], answer


def test_static_is_served_during_maintenance(host, maintenance):
    assert request(host, "/static/css/site.css").get("status") == 200


def test_removing_the_flag_brings_the_site_back(host, maintenance):
    assert request(host, "/").get("status") == 503
    host.run("rm -f %s", FLAG)
    answer = request(host, "/")
    assert answer.get("status") == 200, answer
    assert answer.json()["backend"] == backend(host)


def test_self_signed_certificate_verifies(host):
    """Checked against the certificate the role made, for the site's second name too."""
    answer = request(host, host_header="www.weblab.test", tls=True, cafile=WEBLAB_CERT)
    assert answer.get("status") == 200, answer
    assert answer["tls_version"] in ("TLSv1.2", "TLSv1.3"), answer


def test_given_certificate_verifies(host):
    answer = request(host, host_header="secure.test", tls=True, cafile=SECURE_CERT)
    assert answer.get("status") == 200, answer
    assert answer.json()["host"] == "secure.test", answer


def test_http_redirects_to_https_when_asked(host):
    answer = request(host, "/page?q=1", host_header="secure.test")
    assert answer.get("status") == 301, answer
    assert answer.header("location") == ["https://secure.test/page?q=1"], answer["headers"]


def test_http_serves_the_site_when_no_redirect_is_asked(host):
    assert request(host, "/").get("status") == 200


@pytest.mark.parametrize("key", ["/etc/nginx/tls/weblab.key", "/etc/nginx/tls/secure.key"])
def test_private_key_is_readable_by_root_only(host, key):
    key_file = host.file(key)
    assert (key_file.user, key_file.group, key_file.mode) == ("root", "root", 0o600)


def test_server_header_has_no_version(host):
    assert request(host).header("server") == ["nginx"]


def test_error_page_has_no_version(host):
    answer = request(host, "/static/missing.css")
    assert answer.get("status") == 404, answer
    assert "nginx/" not in answer["body"], answer["body"]


@pytest.mark.parametrize(("name", "value"), sorted(SECURITY_HEADERS.items()))
def test_security_header_on_app_pages(host, name, value):
    assert request(host, "/").header(name) == [value]


@pytest.mark.parametrize(("name", "value"), sorted(SECURITY_HEADERS.items()))
def test_security_header_on_static_files(host, name, value):
    assert request(host, "/static/css/site.css").header(name) == [value]


def test_app_header_wins_over_the_default(host):
    """The stand-in sends X-Frame-Options: SAMEORIGIN for /own-headers; nginx adds no second one."""
    assert request(host, "/own-headers").header("x-frame-options") == ["SAMEORIGIN"]


def test_hsts_over_https(host):
    answer = request(host, tls=True, cafile=WEBLAB_CERT)
    assert answer.header("strict-transport-security") == ["max-age=31536000"], answer["headers"]


def test_no_hsts_over_http(host):
    assert request(host).header("strict-transport-security") == []


def test_site_access_log_is_written(host):
    request(host, "/logged-weblab")
    assert "/logged-weblab" in host.file("/var/log/nginx/weblab.access.log").content_string


def test_access_log_outside_var_log_nginx_is_written(host):
    request(host, "/logged-secure", host_header="secure.test", tls=True, cafile=SECURE_CERT)
    assert "/logged-secure" in host.file("/var/log/weblab-secure/access.log").content_string


def test_logrotate_accepts_the_policy(host):
    out = host.run("logrotate -d /etc/logrotate.d/nginx")
    assert out.rc == 0, out.stdout + out.stderr


def test_logrotate_covers_the_logs_outside_var_log_nginx(host):
    out = host.run("logrotate -d /etc/logrotate.d/nginx")
    assert "/var/log/weblab-secure/access.log" in out.stdout + out.stderr


def test_logrotate_policy_is_weekly_52_compressed(host):
    policy = host.file("/etc/logrotate.d/nginx").content_string.split()
    assert {"weekly", "compress", "delaycompress"} <= set(policy), policy
    assert policy[policy.index("rotate") + 1] == "52", policy


def test_nginx_writes_a_fresh_log_after_rotation(host):
    """logrotate's postrotate makes nginx reopen its logs: a request after the rotation lands in
    the new file, not in the rotated one."""
    request(host, "/before-rotation")  # notifempty: a log with a line is rotated
    out = host.run("logrotate -f /etc/logrotate.d/nginx")
    assert out.rc == 0, out.stdout + out.stderr
    log = host.file("/var/log/nginx/weblab.access.log")
    for attempt in range(10):  # nginx reopens on USR1, a moment after logrotate returns
        request(host, "/after-rotation-%d" % attempt)
        if log.exists and "/after-rotation-" in log.content_string:
            break
        time.sleep(0.5)
    assert log.exists and "/after-rotation-" in log.content_string, journal(host)
