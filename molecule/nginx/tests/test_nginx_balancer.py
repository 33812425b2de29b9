"""The balancer sites of molecule.yml (upstream_servers instead of a socket) in front of the two
stand-in web servers of prepare.yml, web1 and web2 on loopback ports: requests go to both in
turn, a stopped web server costs no failed request, and over HTTPS the web servers'
certificates are checked against upstream_tls_ca for the site's first server name."""

import time

import pytest

from nginx_http import journal, request

WEB_SERVERS = ("web1", "web2")
UNITS = ("weblab-web1", "weblab-web2")
HTTPS = "balancer.test"
PLAIN = "plain.balancer.test"
CA_FILE = "/etc/nginx/tls/balancer.upstream-ca.crt"


def answers(host, site, count=6, **options):
    """COUNT answers of SITE through the balancer: (status, web server) each."""
    out = []
    for _attempt in range(count):
        answer = request(host, "/through-the-balancer", host_header=site, units=UNITS, **options)
        out.append((answer.get("status"), answer.header("x-backend")[0] if answer.header("x-backend") else None))
    return out


@pytest.fixture
def web2_stopped(host):
    """web2 stopped for one test; started again and listening afterwards."""
    assert host.run("systemctl stop weblab-web2").rc == 0, journal(host, *UNITS)
    yield
    assert host.run("systemctl start weblab-web2").rc == 0, journal(host, *UNITS)
    for _attempt in range(50):
        if host.socket("tcp://127.0.0.1:8442").is_listening and host.socket("tcp://127.0.0.1:8452").is_listening:
            break
        time.sleep(0.2)
    # The balancers leave a server that failed out for fail_timeout (10 s): later tests find
    # both back in turn.
    time.sleep(11)


@pytest.mark.parametrize("site", [HTTPS, PLAIN])
def test_requests_reach_both_web_servers_in_turn(host, site):
    got = answers(host, site)
    assert all(status == 200 for status, _server in got), (got, journal(host, *UNITS))
    assert {server for _status, server in got} == set(WEB_SERVERS), got


@pytest.mark.parametrize("site", [HTTPS, PLAIN])
def test_web_servers_answer_with_their_own_bodies(host, site):
    bodies = {}
    for _attempt in range(4):
        answer = request(host, "/body", host_header=site, units=UNITS)
        bodies[answer.json()["backend"]] = answer["body"]
    assert set(bodies) == set(WEB_SERVERS), bodies
    assert bodies["web1"] != bodies["web2"]


@pytest.mark.parametrize("site", [HTTPS, PLAIN])
def test_stopped_web_server_costs_no_request(host, site, web2_stopped):
    """The first request for web2 finds no connection and is passed on to web1 (next upstream)."""
    got = answers(host, site)
    assert got == [(200, "web1")] * len(got), (got, journal(host, *UNITS))


def test_web_server_gets_the_host(host):
    assert request(host, host_header=HTTPS, units=UNITS).json()["host"] == HTTPS


def test_web_server_gets_the_forwarded_chain(host):
    """The client's address is appended to the X-Forwarded-For it came with."""
    answer = request(host, host_header=HTTPS, headers=[("X-Forwarded-For", "192.0.2.7")], units=UNITS)
    assert answer.json()["x_forwarded_for"] == "192.0.2.7, 127.0.0.1", answer


def test_web_server_gets_the_client_protocol(host):
    assert request(host, host_header=HTTPS, units=UNITS).json()["x_forwarded_proto"] == "http"


def test_balancer_speaks_https_to_the_web_servers(host):
    answer = request(host, host_header=HTTPS, units=UNITS).json()
    # TLS 1.3: nginx_tls_protocols, not nginx 1.22's default proxy_ssl_protocols (up to TLS 1.2).
    assert answer["tls_version"] == "TLSv1.3", answer


def test_balancer_sends_its_first_server_name(host):
    assert request(host, host_header=HTTPS, units=UNITS).json()["sni"] == HTTPS


def test_plain_balancer_speaks_http_to_the_web_servers(host):
    answer = request(host, host_header=PLAIN, units=UNITS).json()
    assert answer["tls_version"] is None, answer


def test_ca_file_is_written_root_owned(host):
    ca = host.file(CA_FILE)
    assert (ca.exists, ca.user, ca.group, ca.mode) == (True, "root", "root", 0o644)
    assert "-----BEGIN CERTIFICATE-----" in ca.content_string


def test_no_ca_file_for_a_balancer_without_one(host):
    assert not host.file("/etc/nginx/tls/balancer-unchecked.upstream-ca.crt").exists


def test_certificate_for_another_name_is_accepted_without_a_ca(host):
    """upstream_tls_ca empty: the link is encrypted, the web servers' certificate not checked."""
    answer = request(host, host_header="unchecked.balancer.test", units=UNITS)
    assert answer.get("status") == 200, answer
    assert answer.json()["tls_version"] == "TLSv1.3", answer


def test_certificate_for_another_name_is_refused_with_the_ca(host):
    """The web servers' certificate names balancer.test, not this site's first server name."""
    answer = request(host, host_header="wrong-name.balancer.test", units=UNITS)
    assert answer.get("status") == 502, answer
    assert answer.header("x-backend") == [], answer


def test_refused_certificate_is_logged(host):
    request(host, host_header="wrong-name.balancer.test", units=UNITS)
    log = host.file("/var/log/nginx/balancer-wrong-name.error.log").content_string
    assert 'upstream SSL certificate does not match "wrong-name.balancer.test"' in log, log[-2000:]


def test_maintenance_flag_gives_503_on_a_balancer(host):
    flag = "/var/lib/weblab/maintenance/balancer"
    assert host.run("touch %s", flag).rc == 0
    try:
        answer = request(host, host_header=HTTPS, units=UNITS)
    finally:
        host.run("rm -f %s", flag)
    assert answer.get("status") == 503, answer
