"""Bad weblab.stack.nginx input fails before any work, with a message naming the variable."""

import pytest

SITE = {"name": "weblab", "server_names": ["weblab.example.org"], "socket": "/run/weblab/app.sock"}


def site(**changes):
    return {"nginx_sites": [dict(SITE, **changes)]}


BAD_INPUT = [
    pytest.param(site(protocol="fastcgi"), "nginx_sites", "http, uwsgi", id="protocol-not-a-choice"),
    pytest.param(site(socket="run/weblab/app.sock"), "nginx_sites", "absolute path of the app server",
                 id="socket-relative"),
    pytest.param(site(socket=""), "nginx_sites", "needs server_names", id="socket-missing"),
    pytest.param(site(server_names=[]), "nginx_sites", "needs server_names", id="no-server-names"),
    pytest.param(site(server_names=["a.example.org b.example.org"]), "nginx_sites", "without spaces",
                 id="server-names-as-one-string"),
    pytest.param(site(tls_certificate="-----BEGIN CERTIFICATE-----"), "nginx_sites",
                 "both tls_certificate and tls_certificate_key", id="certificate-without-key"),
    pytest.param(site(tls_certificate_key="-----BEGIN PRIVATE KEY-----"), "nginx_sites",
                 "both tls_certificate and tls_certificate_key", id="key-without-certificate"),
    pytest.param(site(tls_self_signed=True, tls_certificate="C", tls_certificate_key="K"), "nginx_sites",
                 "cannot be combined", id="self-signed-and-given"),
    pytest.param(site(redirect_to_https=True), "nginx_sites", "redirect_to_https without TLS",
                 id="redirect-without-tls"),
    pytest.param(site(static_root="srv/static"), "static_root", "absolute path", id="static-root-relative"),
    pytest.param(site(maintenance_flag="maintenance"), "maintenance_flag", "absolute path",
                 id="maintenance-flag-relative"),
    pytest.param(site(client_max_body_size="10 MB"), "client_max_body_size", "10 MB",
                 id="body-size-not-a-size"),
    pytest.param(site(read_timeout=0), "read_timeout", "at least 1", id="read-timeout-zero"),
    pytest.param(site(name="my site"), "nginx_sites", "letters", id="site-name-with-a-space"),
    pytest.param({"nginx_sites": [SITE, dict(SITE, name="other")]}, "nginx_sites",
                 "weblab.example.org in the server_names of more than one site", id="server-name-twice"),
    pytest.param({"nginx_sites": [SITE, SITE]}, "nginx_sites", "more than one site is named weblab",
                 id="site-name-twice"),
    pytest.param({"nginx_listen_addresses": []}, "nginx_listen_addresses", "at least one address",
                 id="no-listen-address"),
    pytest.param({"nginx_listen_addresses": ["0.0.0.0:80"]}, "nginx_listen_addresses", "without a port",
                 id="listen-address-with-port"),
    pytest.param({"nginx_https_port": 80}, "nginx_https_port", "two different ports", id="same-ports"),
    pytest.param({"nginx_http_port": "eighty"}, "nginx_http_port", "nginx_http_port", id="port-not-a-number"),
    pytest.param({"nginx_logrotate_frequency": "hourly"}, "nginx_logrotate_frequency", "daily, weekly, monthly",
                 id="logrotate-frequency-not-a-choice"),
    pytest.param({"nginx_security_headers": {"X-Frame-Options": 'DENY" always; return 200 "'}},
                 "nginx_security_headers", "double quote", id="header-value-with-a-quote"),
]


@pytest.mark.parametrize(("variables", "named", "says"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named, says):
    refusals.of(variables).assert_refused(named, says)


@pytest.mark.parametrize("changes", [
    pytest.param({}, id="refused-by-the-role"),
    pytest.param({"protocol": "fastcgi"}, id="refused-by-the-argument-spec"),
])
def test_key_never_shows_in_the_output(run_role, changes):
    """A refused site with a private key: the key is in no message, loop result or spec dump."""
    variables = site(tls_certificate_key="-----BEGIN PRIVATE KEY----- weblab-test-secret", **changes)
    result = run_role("nginx", variables, "-v")
    assert result.returncode != 0, result.output
    assert "weblab-test-secret" not in result.output


@pytest.mark.parametrize("variables", [
    pytest.param(site(), id="plain-http"),
    pytest.param(site(protocol="uwsgi", tls_self_signed=True, redirect_to_https=True,
                      static_root="/srv/weblab/static", media_root="/srv/weblab/shared/media",
                      client_max_body_size="20m", static_expires="max"), id="uwsgi-tls-static"),
    pytest.param(site(tls_certificate="C", tls_certificate_key="K"), id="given-certificate"),
    pytest.param({"nginx_sites": [SITE, {"name": "old", "state": "absent"}]}, id="absent-site-needs-only-a-name"),
    pytest.param({"nginx_listen_addresses": ["127.0.0.1", "[::]"], "nginx_sites": [SITE]}, id="ipv6-listen"),
])
def test_good_input_passes_validation(run_role, variables):
    """The same harness accepts good settings, so the failures above are about the input."""
    result = run_role("nginx", variables, "--tags", "nginx_validate")
    assert result.returncode == 0, result.output
    assert "Check the sites that are present" in result.stdout
