"""weblab.stack.socket_probe through main(), against real servers on unix sockets in a short
temporary directory, served from threads: an http.server one (gunicorn's side) and a small
uwsgi-protocol one written here (uWSGI's side)."""

import http.server
import json
import os
import pathlib
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ansible_collections.weblab.stack.plugins.modules import socket_probe
from ansible_collections.weblab.stack.tests.unit.plugins.module_runner import run_main

COLLECTION = pathlib.Path(__file__).resolve().parents[4]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


def run_module(capsys, args, check=False):
    return run_main(socket_probe.main, capsys, args, check=check)


class CloseWithoutAnswer(Exception):
    """Raised by an app: the server closes the connection without writing anything."""


class App:
    """What the test servers answer: a callable of the request, replaceable mid-test. Every
    request is recorded (the HTTP request line and headers, or the uwsgi packet and vars)."""

    def __init__(self, status=200, body='{"release": "A"}'):
        self.status = status
        self.body = body
        self.delay = 0.0
        self.chunked = False
        self.length = True
        self.close_without_answer = False
        self.requests = []

    def __call__(self, request):
        self.requests.append(request)
        if self.delay:
            time.sleep(self.delay)
        if self.close_without_answer:
            raise CloseWithoutAnswer()
        return self.status, self.body.encode("utf-8")


class HTTPHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802  (http.server's name)
        app = self.server.app
        try:
            status, body = app({"requestline": self.requestline, "path": self.path,
                                "headers": {key.lower(): value for key, value in self.headers.items()}})
        except CloseWithoutAnswer:
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if app.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif app.length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if app.chunked:
            for start in range(0, len(body), 7):
                piece = body[start:start + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)
        self.close_connection = True

    def address_string(self):
        return "unix"

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


def read_exactly(stream, size):
    data = stream.read(size)
    assert len(data) == size, "short uwsgi packet: %r" % data
    return data


def parse_uwsgi_vars(data):
    pairs = []
    offset = 0
    while offset < len(data):
        key_size = int.from_bytes(data[offset:offset + 2], "little")
        key = data[offset + 2:offset + 2 + key_size].decode("utf-8")
        offset += 2 + key_size
        value_size = int.from_bytes(data[offset:offset + 2], "little")
        value = data[offset + 2:offset + 2 + value_size].decode("utf-8")
        offset += 2 + value_size
        pairs.append((key, value))
    return pairs


class UwsgiHandler(socketserver.StreamRequestHandler):
    """The uwsgi protocol as uWSGI reads it: a 4-byte header (modifier1, datasize little-endian,
    modifier2), the vars, then a plain HTTP response written back and the connection closed."""

    def handle(self):
        header = read_exactly(self.rfile, 4)
        data = read_exactly(self.rfile, int.from_bytes(header[1:3], "little"))
        pairs = parse_uwsgi_vars(data)
        request = {"modifier1": header[0], "modifier2": header[3], "pairs": pairs, "vars": dict(pairs)}
        try:
            status, body = self.server.app(request)
        except CloseWithoutAnswer:
            return
        protocol = request["vars"].get("SERVER_PROTOCOL", "HTTP/1.0")
        # No Content-Length: the end of the body is the end of the connection, as with uWSGI.
        self.wfile.write(b"%s %d Whatever\r\nContent-Type: application/json\r\n\r\n%s"
                         % (protocol.encode(), status, body))


class QuietServer(socketserver.ThreadingUnixStreamServer):
    def handle_error(self, request, client_address):
        # A probe that gave up (the timeout tests) leaves a broken pipe: expected, not news.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class Server:
    """One test server on a unix socket, served from a thread until stop()."""

    def __init__(self, handler, path, app):
        self.handler = handler
        self.path = path
        self.app = app
        self.server = None
        self.thread = None

    def start(self):
        self.server = QuietServer(self.path, self.handler)
        self.server.daemon_threads = True
        self.server.app = self.app
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.server = None


@pytest.fixture
def sockdir():
    # A short directory: a unix socket address holds 107 bytes, pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="sp-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve(sockdir):
    """serve(protocol, app=None, start=True) -> Server on SOCKDIR/PROTOCOL.sock."""
    servers = []

    def make(protocol, app=None, start=True):
        handler = UwsgiHandler if protocol == "uwsgi" else HTTPHandler
        server = Server(handler, os.path.join(sockdir, protocol + ".sock"), app or App())
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


def probe_args(server, **args):
    protocol = "uwsgi" if server.handler is UwsgiHandler else "http"
    return dict({"socket": server.path, "protocol": protocol, "host": "www.example.com",
                 "timeout": 1, "interval": 0.05, "request_timeout": 0.5}, **args)


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_passing_answer_returns_status_body_and_one_attempt(capsys, serve, protocol):
    server = serve(protocol, App(body='{"release": "B", "status": "ok"}'))
    result = run_module(capsys, probe_args(server, contains='"release": "B"'))
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert (result["status"], result["attempts"], result["error"]) == (200, 1, None)
    assert result["body"] == '{"release": "B", "status": "ok"}'
    assert result["socket"] == server.path
    assert 0 <= result["elapsed"] < 1
    assert "answered status 200 after 1 attempt" in result["msg"]
    assert len(server.app.requests) == 1


def test_check_mode_sends_the_same_request_and_reports_no_change(capsys, serve):
    server = serve("http")
    result = run_module(capsys, probe_args(server, contains="A"), check=True)
    assert result.get("failed") is not True, result
    assert result["changed"] is False and result["status"] == 200
    assert len(server.app.requests) == 1, "check mode must probe too"


def test_http_request_carries_host_forwarded_headers_and_query(capsys, serve):
    server = serve("http")
    run_module(capsys, probe_args(server, path="/health/?full=1", host="lab.example.org:8443",
                                  forwarded_proto="http"))
    request = server.app.requests[0]
    assert request["requestline"] == "GET /health/?full=1 HTTP/1.0"
    assert request["headers"]["host"] == "lab.example.org:8443"
    assert request["headers"]["x-forwarded-proto"] == "http"
    assert request["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert request["headers"]["connection"] == "close"


def test_http_forwarded_proto_defaults_to_https(capsys, serve):
    server = serve("http")
    args = probe_args(server)
    run_module(capsys, args)
    assert server.app.requests[0]["headers"]["x-forwarded-proto"] == "https"


def test_uwsgi_packet_header_and_vars(capsys, serve):
    server = serve("uwsgi")
    result = run_module(capsys, probe_args(server, path="/health/caf%C3%A9?full=1", host="lab.example.org"))
    assert result["status"] == 200, result
    request = server.app.requests[0]
    assert (request["modifier1"], request["modifier2"]) == (0, 0)
    variables = request["vars"]
    assert len(variables) == len(request["pairs"]), "a variable was sent twice"
    assert variables["REQUEST_METHOD"] == "GET"
    assert variables["REQUEST_URI"] == "/health/caf%C3%A9?full=1"
    assert variables["PATH_INFO"] == "/health/caf\u00e9"
    assert variables["QUERY_STRING"] == "full=1"
    assert variables["SERVER_NAME"] == "lab.example.org"
    assert variables["SERVER_PORT"] == "443"
    assert variables["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert variables["HTTP_HOST"] == "lab.example.org"
    assert variables["HTTP_X_FORWARDED_PROTO"] == "https"
    assert variables["HTTPS"] == "on"
    assert variables["UWSGI_SCHEME"] == "https"
    assert variables["REQUEST_SCHEME"] == "https"
    assert variables["REMOTE_ADDR"] == "127.0.0.1"


def test_uwsgi_plain_http_sends_no_https_flag_and_port_from_host(capsys, serve):
    server = serve("uwsgi")
    run_module(capsys, probe_args(server, host="lab.example.org:8080", forwarded_proto="http"))
    variables = server.app.requests[0]["vars"]
    assert variables["HTTP_X_FORWARDED_PROTO"] == "http"
    assert "HTTPS" not in variables and "UWSGI_SCHEME" not in variables
    assert (variables["SERVER_NAME"], variables["SERVER_PORT"]) == ("lab.example.org", "8080")
    assert variables["HTTP_HOST"] == "lab.example.org:8080"


def test_uwsgi_datasize_is_16_bit_little_endian():
    packet = socket_probe.uwsgi_packet([("K" * 300, "v")])
    assert packet[0] == 0 and packet[3] == 0
    assert packet[1:3] == (2 + 300 + 2 + 1).to_bytes(2, "little")
    assert packet[4:6] == (300).to_bytes(2, "little")


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_wrong_status_fails_naming_status_body_and_socket(capsys, serve, protocol):
    server = serve(protocol, App(status=503, body='{"release": "A", "status": "unhealthy"}'))
    result = run_module(capsys, probe_args(server, timeout=1))
    assert result["failed"] is True
    assert result["status"] == 503
    assert result["attempts"] > 1, "it must retry until the timeout"
    assert server.path in result["msg"]
    assert "last answer: status 503, not an accepted status (200)" in result["msg"]
    assert "unhealthy" in result["msg"]
    assert result["changed"] is False


def test_other_accepted_status_passes(capsys, serve):
    server = serve("http", App(status=503))
    result = run_module(capsys, probe_args(server, status=[200, 503]))
    assert result.get("failed") is not True, result
    assert result["status"] == 503


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_missing_text_fails_naming_the_text_and_the_body(capsys, serve, protocol):
    server = serve(protocol, App(body='{"release": "A"}'))
    result = run_module(capsys, probe_args(server, contains='"release": "B"', timeout=1))
    assert result["failed"] is True
    assert result["status"] == 200
    assert "status 200, its body does not contain '\"release\": \"B\"'" in result["msg"]
    assert '{"release": "A"}' in result["msg"]


def test_last_answer_is_kept_when_a_later_attempt_gets_none(capsys, monkeypatch, serve):
    app = App(status=503, body="unhealthy")
    server = serve("http", app)

    def hang():
        app.delay = 2.0

    after_attempts(monkeypatch, 1, hang)
    result = run_module(capsys, probe_args(server, timeout=1, request_timeout=0.3))
    assert result["failed"] is True
    assert "timed out" in result["error"]
    assert (result["status"], result["body"]) == (503, "unhealthy")
    assert "last attempt: no complete answer" in result["msg"]
    assert "last answer: status 503" in result["msg"] and "'unhealthy'" in result["msg"]


def test_contains_searches_the_whole_body_but_returns_2000_characters(capsys, serve):
    server = serve("http", App(body="x" * 5000 + "NEEDLE"))
    result = run_module(capsys, probe_args(server, contains="NEEDLE"))
    assert result.get("failed") is not True, result
    assert result["body"] == "x" * 2000


@pytest.mark.parametrize(("protocol", "chunked", "length"), [
    pytest.param("http", True, False, id="http-chunked"),
    pytest.param("http", False, False, id="http-until-close"),
    pytest.param("uwsgi", False, False, id="uwsgi-until-close"),
])
def test_bodies_without_content_length_are_read_whole(capsys, serve, protocol, chunked, length):
    app = App(body='{"release": "chunked-and-long-enough"}')
    app.chunked, app.length = chunked, length
    server = serve(protocol, app)
    result = run_module(capsys, probe_args(server, contains="long-enough"))
    assert result.get("failed") is not True, result
    assert result["body"] == '{"release": "chunked-and-long-enough"}'


def after_attempts(monkeypatch, count=0, action=None):
    """Run ACTION once the module's COUNT-th attempt has ended (got its answer or error), so a
    test changes the server between two attempts whatever the machine's speed. Return the list
    of what each attempt returned or raised."""
    real = socket_probe.request_once
    outcomes = []

    def request_once(params, deadline):
        try:
            outcomes.append(real(params, deadline))
            return outcomes[-1]
        except Exception as exc:
            outcomes.append(exc)
            raise
        finally:
            if len(outcomes) == count:
                action()

    monkeypatch.setattr(socket_probe, "request_once", request_once)
    return outcomes


def test_retries_until_the_server_starts_answering(capsys, monkeypatch, serve):
    server = serve("http", start=False)
    after_attempts(monkeypatch, 3, server.start)
    result = run_module(capsys, probe_args(server, timeout=5))
    assert result.get("failed") is not True, result
    assert result["attempts"] == 4
    assert result["elapsed"] >= 3 * 0.05, "it must wait the interval between attempts"


def test_retries_until_the_answer_names_the_new_release(capsys, monkeypatch, serve):
    app = App(body='{"release": "A"}')
    server = serve("uwsgi", app)

    def reload():
        app.body = '{"release": "B"}'

    after_attempts(monkeypatch, 2, reload)
    result = run_module(capsys, probe_args(server, contains='"release": "B"', timeout=5))
    assert result.get("failed") is not True, result
    assert result["attempts"] == 3 and result["body"] == '{"release": "B"}'


def test_no_server_fails_at_the_timeout_naming_the_error_and_socket(capsys, sockdir):
    path = os.path.join(sockdir, "absent.sock")
    started = time.monotonic()
    result = run_module(capsys, {"socket": path, "host": "localhost", "timeout": 0.6, "interval": 0.1})
    took = time.monotonic() - started
    assert result["failed"] is True
    assert result["status"] is None and result["body"] == ""
    assert "No such file or directory (ENOENT)" in result["error"]
    assert path in result["msg"] and "ENOENT" in result["msg"] and "timeout=0.6" in result["msg"]
    assert result["attempts"] >= 3
    assert 0.45 <= result["elapsed"] <= 0.7
    assert took < 1.5


def test_nobody_listening_is_connection_refused(capsys, sockdir):
    path = os.path.join(sockdir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: a dead app server's socket
    result = run_module(capsys, {"socket": path, "host": "localhost", "timeout": 0.2})
    assert result["failed"] is True
    assert "ECONNREFUSED" in result["error"]


def test_a_file_that_is_not_a_socket_is_named(capsys, sockdir):
    path = os.path.join(sockdir, "file.sock")
    pathlib.Path(path).write_text("", encoding="utf-8")
    result = run_module(capsys, {"socket": path, "host": "localhost", "timeout": 0.2})
    assert result["failed"] is True
    assert "not a socket" in result["error"]


def test_server_closing_without_answer_is_an_error_and_retried(capsys, monkeypatch, serve):
    app = App()
    app.close_without_answer = True
    server = serve("http", app)
    outcomes = after_attempts(monkeypatch)
    result = run_module(capsys, probe_args(server, timeout=0.4))
    assert result["failed"] is True
    assert result["attempts"] == len(outcomes) > 1
    assert isinstance(outcomes[0], socket_probe.http_client.RemoteDisconnected)
    # The last attempt may be cut short by the timeout on a slow machine instead.
    assert result["error"] in ("the server closed the connection without an answer",
                               "no complete answer within the time of one attempt (timed out)")
    assert socket_probe.describe_error(outcomes[0], server.path) == \
        "the server closed the connection without an answer"


def test_slow_answer_times_out_within_request_timeout_and_timeout(capsys, serve):
    app = App()
    app.delay = 1.0
    server = serve("http", app)
    started = time.monotonic()
    result = run_module(capsys, probe_args(server, timeout=0.5, request_timeout=0.2))
    took = time.monotonic() - started
    assert result["failed"] is True
    assert "timed out" in result["error"]
    assert result["attempts"] >= 2, "request_timeout must end an attempt before timeout does"
    assert took < 1.0, "an attempt must end at the timeout"


def test_request_timeout_longer_than_timeout_is_cut_at_timeout(capsys, serve):
    app = App()
    app.delay = 2.0
    server = serve("uwsgi", app)
    started = time.monotonic()
    result = run_module(capsys, probe_args(server, timeout=0.3, request_timeout=5))
    assert result["failed"] is True and result["attempts"] == 1
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(("args", "named"), [
    pytest.param({"socket": "run/app.sock"}, "socket must be an absolute path", id="socket-relative"),
    pytest.param({"socket": "/run/" + "x" * 120}, "socket '/run/xxx", id="socket-too-long"),
    pytest.param({"protocol": "fastcgi"}, "protocol", id="protocol-unknown"),
    pytest.param({"path": "health/"}, "path must begin with", id="path-relative"),
    pytest.param({"path": "/health/ HTTP/1.1\r\nX: y"}, "path must not contain", id="path-injection"),
    pytest.param({"host": ""}, "host must be", id="host-empty"),
    pytest.param({"host": "a b"}, "host must be", id="host-space"),
    pytest.param({"host": "evil\r\nX-Forwarded-Proto: http"}, "host must be", id="host-injection"),
    pytest.param({"forwarded_proto": "ftp"}, "forwarded_proto", id="forwarded-proto-unknown"),
    pytest.param({"status": []}, "status must list", id="status-empty"),
    pytest.param({"status": [200, 99]}, "status must hold HTTP status codes (100-599), got 99", id="status-99"),
    pytest.param({"status": [600]}, "status must hold HTTP status codes (100-599), got 600", id="status-600"),
    pytest.param({"status": ["ok"]}, "status", id="status-not-int"),
    pytest.param({"timeout": 0}, "timeout must be more than 0", id="timeout-zero"),
    pytest.param({"timeout": -1}, "timeout must be more than 0", id="timeout-negative"),
    pytest.param({"interval": 0}, "interval must be more than 0", id="interval-zero"),
    pytest.param({"request_timeout": 0}, "request_timeout must be more than 0", id="request-timeout-zero"),
    pytest.param({"protocol": "uwsgi", "path": "/" + "p" * 70000}, "shorten path or host", id="uwsgi-too-long"),
])
def test_bad_parameters_fail_naming_the_parameter_before_any_request(capsys, serve, args, named):
    server = serve("http")
    result = run_module(capsys, dict(probe_args(server), **args))
    assert result["failed"] is True
    assert named in result["msg"], result["msg"]
    assert server.app.requests == [], "a bad parameter must fail before any request"


def test_required_parameters_are_named(capsys):
    result = run_module(capsys, {})
    assert result["failed"] is True
    assert "host" in result["msg"] and "socket" in result["msg"]


PLAYBOOK = """\
- name: Probe an app server's socket with weblab.stack.socket_probe
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ask the health page for the release
      weblab.stack.socket_probe:
        socket: "{socket}"
        host: www.example.com
        contains: '"release": "A"'
        timeout: 5
"""


def test_through_ansible_playbook_unchanged_in_check_mode_and_real_run(tmp_path, serve):
    """The module as Ansible ships it: FQCN, the argument spec, check mode."""
    server = serve("http")
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(socket=server.path), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTION.parents[2]), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    for extra in (["--check"], []):
        done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                               "-e", "ansible_python_interpreter=" + sys.executable, *extra, str(playbook)],
                              env=env, capture_output=True, text=True, check=False, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        task = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        assert task["changed"] is False and task["status"] == 200
        assert task["body"] == '{"release": "A"}'
    assert len(server.app.requests) == 2
