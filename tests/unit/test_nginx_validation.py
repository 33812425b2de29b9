"""Bad weblab.stack.nginx input fails before any work, with a message naming the variable."""

import pytest

SITE = {"name": "weblab", "server_names": ["weblab.example.org"], "socket": "/run/weblab/app.sock"}


BALANCER = {"name": "entry", "server_names": ["www.example.org"], "upstream_servers": ["10.0.0.5:443", "web2.example:443"],
            "protocol": "https"}
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def site(**changes):
    return {"nginx_sites": [dict(SITE, **changes)]}


def balancer(**changes):
    return {"nginx_sites": [{key: value for key, value in dict(BALANCER, **changes).items() if value is not None}]}


BAD_INPUT = [
    pytest.param(site(protocol="fastcgi"), "nginx_sites", "http, uwsgi, https", id="protocol-not-a-choice"),
    pytest.param(site(socket="run/weblab/app.sock"), "nginx_sites", "absolute path of the app server",
                 id="socket-relative"),
    pytest.param(site(socket=""), "nginx_sites[weblab].socket", "nginx_sites[weblab].upstream_servers",
                 id="socket-missing"),
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
    pytest.param(site(upstream_servers=["10.0.0.5:443"]), "nginx_sites[weblab].socket",
                 "set exactly one of nginx_sites[weblab].socket",
                 id="socket-and-upstream-servers"),
    pytest.param(balancer(upstream_servers=["10.0.0.5"]), "nginx_sites[entry].upstream_servers", "ADDRESS:PORT",
                 id="upstream-server-without-port"),
    pytest.param(balancer(upstream_servers=["https://10.0.0.5:443"]), "nginx_sites[entry].upstream_servers",
                 "https://10.0.0.5:443", id="upstream-server-as-url"),
    pytest.param(balancer(upstream_servers=["10.0.0.5:443; return 200"]), "nginx_sites[entry].upstream_servers",
                 "ADDRESS:PORT", id="upstream-server-with-a-directive"),
    pytest.param(balancer(upstream_servers=["10.0.0.5:65536"]), "nginx_sites[entry].upstream_servers",
                 "from 1 to 65535", id="upstream-port-too-large"),
    pytest.param(balancer(upstream_servers=["::1:443"]), "nginx_sites[entry].upstream_servers",
                 "IPv6 address in brackets", id="upstream-ipv6-without-brackets"),
    pytest.param(balancer(upstream_servers=["10.0.0.5:443", "10.0.0.5:443"]), "nginx_sites[entry].upstream_servers",
                 "each once", id="upstream-server-twice"),
    pytest.param(balancer(upstream_servers="10.0.0.5:443"), "nginx_sites[entry].upstream_servers", "a list",
                 id="upstream-servers-as-one-string"),
    pytest.param(balancer(protocol="uwsgi"), "nginx_sites[entry].protocol", "uwsgi is for an app server",
                 id="balancer-over-uwsgi"),
    pytest.param(site(protocol="https"), "nginx_sites[weblab].protocol", "https for web servers",
                 id="socket-over-https"),
    pytest.param(balancer(upstream_tls_ca="not a certificate"), "nginx_sites[entry].upstream_tls_ca", "PEM",
                 id="upstream-ca-not-pem"),
    pytest.param(balancer(protocol="http", upstream_tls_ca=CA), "nginx_sites[entry].upstream_tls_ca",
                 "protocol https", id="upstream-ca-over-http"),
    pytest.param(balancer(server_names=["*.example.org"]), "nginx_sites[entry].server_names", "plain host name",
                 id="balancer-first-name-a-wildcard"),
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
    pytest.param(balancer(upstream_tls_ca=CA, tls_self_signed=True, redirect_to_https=True), id="balancer-https-ca"),
    pytest.param(balancer(protocol=None, upstream_servers=["[2001:db8::5]:80", "web2.example:8080"]),
                 id="balancer-plain-http"),
    pytest.param({"nginx_sites": [SITE, dict(BALANCER, server_names=["lb.example.org"])]},
                 id="socket-site-and-balancer"),
])
def test_good_input_passes_validation(run_role, variables):
    """The same harness accepts good settings, so the failures above are about the input."""
    result = run_role("nginx", variables, "--tags", "nginx_validate")
    assert result.returncode == 0, result.output
    assert "Check the sites that are present" in result.stdout
