"""bench/deploy/loadgen.py against a small http.server on loopback started here: the pace holds
and stays bounded, failures are counted by reason, a switch of the watched link is found and
timed, and the command line (background start, report, summary, refusals) works."""

import http.server
import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

LOADGEN = pathlib.Path(__file__).resolve().parents[2] / "bench" / "deploy" / "loadgen.py"
_SPEC = importlib.util.spec_from_file_location("weblab_loadgen", LOADGEN)
loadgen = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(loadgen)


class Site:
    """What the test server answers: {"release": NAME} with status 200, unless told otherwise.
    Counts requests and remembers their Host headers."""

    def __init__(self):
        self.release = "A"
        self.delay = 0.0
        self.fail_every = 0
        self.lock = threading.Lock()
        self.count = 0
        self.hosts = set()

    def answer(self, host):
        with self.lock:
            self.count += 1
            number = self.count
            self.hosts.add(host)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_every and number % self.fail_every == 0:
            return 502, b"<html>502 Bad Gateway</html>"
        return 200, json.dumps({"release": self.release, "status": "ok"}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's name)
        status, body = self.server.site.answer(self.headers.get("Host"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (the timeout test) leaves a broken pipe: expected, not news.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def site():
    server = Server(("127.0.0.1", 0), Handler)
    server.site = Site()
    server.site.url = "http://127.0.0.1:%d/health/" % server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.site
    server.shutdown()
    server.server_close()


def run_load(tmp_path, *args):
    """Run the load in-process; return the report (also written to tmp_path/report.json)."""
    output = tmp_path / "report.json"
    report = loadgen.run(loadgen.parse_args([*args, "--output", str(output)]))
    assert json.loads(output.read_text(encoding="utf-8")) == json.loads(json.dumps(report))
    return report


def switch_link(link, target):
    """Point LINK at TARGET as the release module does: a new link renamed over the old one."""
    tmp = str(link) + ".tmp"
    os.symlink(target, tmp)
    os.replace(tmp, str(link))


def test_pace_is_the_rate_and_the_load_stops_after_duration(tmp_path, site):
    started = time.monotonic()
    report = run_load(tmp_path, "--url", site.url, "--host", "lab.example.org", "--rate", "40",
                      "--duration", "1")
    took = time.monotonic() - started
    assert report["totals"]["sent"] == 40 and site.count == 40
    assert report["totals"]["ok"] == 40 and report["totals"]["failed"] == 0
    assert report["stopped_by"] == "duration"
    assert took < 2.0
    starts = sorted(record["start"] for record in report["records"])
    # Paced, not bursty: never more than a quarter second's share in any quarter second.
    # (Half as much again: on a starved CPU a few late requests start together.)
    for first in starts:
        assert sum(1 for start in starts if first <= start < first + 0.25) <= 40 * 0.25 * 1.5 + 2
    assert report["pace"]["lag_max"] < 0.25
    assert site.hosts == {"lab.example.org"}
    assert all(record["release"] == "A" for record in report["records"])


def test_requests_bound_stops_the_load(tmp_path, site):
    report = run_load(tmp_path, "--url", site.url, "--rate", "200", "--requests", "7", "--duration", "30")
    assert report["totals"]["sent"] == 7 and site.count == 7
    assert report["stopped_by"] == "requests"
    assert report["duration"] < 5


def test_slow_answers_do_not_stall_the_pace(tmp_path, site):
    site.delay = 0.3
    report = run_load(tmp_path, "--url", site.url, "--rate", "40", "--duration", "1", "--threads", "32")
    assert report["totals"]["sent"] == 40 and report["totals"]["ok"] == 40
    assert report["pace"]["lag_max"] < 0.25, "a slow answer held up the next requests"
    assert report["latency"]["overall"]["p50"] >= 0.3


def test_too_few_threads_show_as_lag(tmp_path, site):
    site.delay = 0.2
    report = run_load(tmp_path, "--url", site.url, "--rate", "40", "--duration", "0.5", "--threads", "2")
    assert report["totals"]["sent"] == 20
    assert report["pace"]["lag_max"] > 1.0, "requests that waited for a thread must show their lag"
    assert report["pace"]["sent_per_second"] < 20


def test_failed_answers_are_counted_by_status(tmp_path, site):
    site.fail_every = 4
    report = run_load(tmp_path, "--url", site.url, "--rate", "100", "--requests", "40", "--duration", "10")
    totals = report["totals"]
    assert totals["failed_by_reason"] == {"http 502": 10}
    assert (totals["sent"], totals["ok"], totals["failed"]) == (40, 30, 10)
    assert totals["answers_without_release"] == 10


def test_ok_status_decides_what_counts_as_ok(tmp_path, site):
    site.fail_every = 2
    report = run_load(tmp_path, "--url", site.url, "--rate", "100", "--requests", "10", "--duration", "10",
                      "--ok-status", "200", "502")
    assert report["totals"]["failed"] == 0


def test_nobody_listening_is_counted_as_connection_refused(tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    report = run_load(tmp_path, "--url", "http://127.0.0.1:%d/" % port, "--rate", "100", "--requests", "5",
                      "--duration", "10")
    assert report["totals"]["failed_by_reason"] == {"connection refused": 5}
    assert report["latency"]["overall"]["answered"] == 0 and report["latency"]["overall"]["p50"] is None


def test_a_request_slower_than_timeout_is_counted_as_timeout(tmp_path, site):
    site.delay = 1.0
    report = run_load(tmp_path, "--url", site.url, "--rate", "100", "--requests", "3", "--duration", "10",
                      "--timeout", "0.2")
    assert report["totals"]["failed_by_reason"] == {"timeout": 3}
    assert report["duration"] < 1.0


def test_switch_is_found_and_timed(tmp_path, site):
    (tmp_path / "releases" / "A").mkdir(parents=True)
    (tmp_path / "releases" / "B").mkdir()
    link = tmp_path / "current"
    os.symlink("releases/A", str(link))

    ready = tmp_path / "ready"

    def deploy():
        # Half a second after the load began (it begins once its threads have started).
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.5)
        switch_link(link, "releases/B")
        time.sleep(0.2)  # the app server takes 0.2 s to serve the new release
        site.release = "B"

    thread = threading.Thread(target=deploy)
    thread.start()
    try:
        report = run_load(tmp_path, "--url", site.url, "--rate", "50", "--duration", "1.5",
                          "--watch-link", str(link), "--window", "0.5", "--ready-file", str(ready))
    finally:
        thread.join()
    assert report["initial_target"] == "releases/A"
    assert len(report["switches"]) == 1, report["changes"]
    switch = report["switches"][0]
    assert (switch["from_target"], switch["to_target"]) == ("releases/A", "releases/B")
    assert (switch["from_release"], switch["to_release"]) == ("A", "B")
    assert 0.45 <= switch["at"] <= 0.7
    assert switch["served_new"] is True
    # The site serves B 0.2 s after the link changed; the watcher sees the change within its
    # 10 ms (later on a starved CPU, hence the lower bounds).
    assert 0.02 <= switch["first_new_after"] <= 0.6
    assert 0.02 <= switch["last_old_after"] <= 0.6
    assert switch["last_old_at"] <= switch["first_new_at"] + 0.05
    assert switch["old_answers_after"] >= 5
    assert switch["failed_around"] == 0
    # About 25 each (50 requests/s, half a second), fewer when late starts cross the switch.
    steady = report["latency"]["steady_state"]["count"]
    assert 12 <= steady <= 36
    assert 12 <= report["latency"]["after_switch"][0]["count"] <= 30
    assert {record["release"] for record in report["records"]} == {"A", "B"}


def test_release_regex_reads_the_name_from_a_page(tmp_path, site):
    report = run_load(tmp_path, "--url", site.url, "--requests", "3", "--duration", "5",
                      "--release-regex", r'"status": "(\w+)"')
    assert {record["release"] for record in report["records"]} == {"ok"}


def record(index, start, latency, release=None, status=200, error=None):
    ok = error is None and status == 200
    return {"i": index, "due": start, "start": start, "latency": latency, "end": round(start + latency, 4),
            "status": None if error else status, "error": error, "ok": ok, "release": release}


def test_analyse_switches_rollback_and_failures():
    records = [
        record(0, 0.0, 0.01, "A"), record(1, 1.0, 0.02, "A"), record(2, 2.0, 0.03, "A"),
        # the link changes to B at 3.0; A answers until 3.2, one 502, B from 3.4
        record(3, 3.1, 0.1, "A"), record(4, 3.2, 0.2, None, status=502), record(5, 3.3, 0.1, "B"),
        record(6, 3.5, 0.05, "B"),
        # rolled back to A at 6.0; a refused connection, then A again
        record(7, 6.1, 0.001, error="connection refused"), record(8, 6.5, 0.01, "A"),
        record(9, 9.0, 0.01, "A"),
    ]
    changes = [{"at": 3.0, "from": "releases/A", "to": "releases/B"},
               {"at": 6.0, "from": "releases/B", "to": "releases/A"}]
    report = loadgen.analyse(records, changes, window=2.0, rate=1.0)
    assert report["totals"]["failed_by_reason"] == {"connection refused": 1, "http 502": 1}
    first, second = report["switches"]
    assert (first["to_release"], first["first_new_at"], first["first_new_after"]) == ("B", 3.4, 0.4)
    assert (first["last_old_at"], first["last_old_after"], first["old_answers_after"]) == (3.2, 0.2, 1)
    assert (first["failed_around"], first["failed_around_by_reason"]) == (1, {"http 502": 1})
    assert first["latency_after"]["count"] == 4
    assert (second["to_release"], second["first_new_at"], second["last_old_at"]) == ("A", 6.51, None)
    assert second["failed_around_by_reason"] == {"connection refused": 1}
    assert report["latency"]["steady_state"]["count"] == 3
    assert report["latency"]["steady_state"]["p50"] == 0.02
    assert [stats["count"] for stats in report["latency"]["after_switch"]] == [4, 2]


def test_analyse_switch_whose_release_never_answers():
    records = [record(0, 0.0, 0.01, "A"), record(1, 1.5, 0.01, "A")]
    changes = [{"at": 1.0, "from": "releases/A", "to": "releases/B"}]
    switch = loadgen.analyse(records, changes, window=5.0, rate=1.0)["switches"][0]
    assert switch["served_new"] is False and switch["first_new_after"] is None
    assert switch["old_answers_after"] == 1
    assert "never" in loadgen.summary({"config": {"url": "u", "host": "h", "rate": 1, "duration": 2,
                                                  "requests": None, "threads": 1, "connection": "new",
                                                  "watch_link": "/l", "window": 5.0},
                                       "duration": 2, "started_at": "t", "stopped_by": "duration",
                                       "initial_target": "releases/A",
                                       **loadgen.analyse(records, changes, window=5.0, rate=1.0)})


@pytest.mark.parametrize(("values", "p50", "p99"), [
    ([], None, None),
    ([5], 5, 5),
    ([1, 2, 3, 4], 2, 4),
    (list(range(1, 101)), 50, 99),
    (list(range(1, 1001)), 500, 990),
])
def test_percentile_nearest_rank(values, p50, p99):
    assert (loadgen.percentile(values, 50), loadgen.percentile(values, 99)) == (p50, p99)


def test_command_line_in_background_ready_file_sigterm_and_summary(tmp_path, site):
    link = tmp_path / "current"
    os.symlink("releases/A", str(link))
    ready, output = tmp_path / "ready", tmp_path / "load.json"
    process = subprocess.Popen([sys.executable, str(LOADGEN), "--url", site.url, "--host", "localhost",
                                "--duration", "60", "--watch-link", str(link), "--ready-file", str(ready),
                                "--output", str(output)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.02)
        time.sleep(0.5)
        switch_link(link, "releases/B")
        site.release = "B"
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["stopped_by"] == "signal SIGTERM"
    assert 30 <= report["totals"]["sent"] <= 70
    assert report["switches"][0]["to_target"] == "releases/B"
    assert "switches of " + str(link) in out
    summary = subprocess.run([sys.executable, str(LOADGEN), "--summary", str(output)],
                             capture_output=True, text=True, check=True).stdout
    assert summary == out
    assert "requests: sent %d, ok %d, failed 0" % (report["totals"]["sent"], report["totals"]["ok"]) in summary
    assert "steady state" in summary and "switch 1, next 5.0 s" in summary
    assert "releases/B" in summary


def test_stop_file_ends_the_load_early(tmp_path, site):
    stop = tmp_path / "stop"
    timer = threading.Timer(0.3, stop.touch)
    timer.start()
    try:
        report = run_load(tmp_path, "--url", site.url, "--duration", "30", "--stop-file", str(stop))
    finally:
        timer.join()
    assert report["stopped_by"] == "stop-file"
    assert report["duration"] < 2


def test_stop_file_does_not_wait_for_requests_behind_the_pace(tmp_path, site):
    """Threads far behind the pace (slow answers): the stop sends none of the requests still
    queued, and ends once the ones in flight have."""
    site.delay = 0.5
    stop = tmp_path / "stop"
    timer = threading.Timer(1.0, stop.touch)
    timer.start()
    try:
        report = run_load(tmp_path, "--url", site.url, "--rate", "100", "--duration", "30",
                          "--threads", "2", "--stop-file", str(stop))
    finally:
        timer.join()
    assert report["stopped_by"] == "stop-file"
    assert report["duration"] < 3
    assert report["unsent"] > 50, report["unsent"]
    assert report["totals"]["sent"] < 10


@pytest.mark.parametrize(("args", "named"), [
    pytest.param(["--rate", "0", "--duration", "1"], "--rate", id="rate-zero"),
    pytest.param(["--rate", "5000", "--duration", "1"], "--rate", id="rate-too-high"),
    pytest.param(["--duration", "0"], "--duration", id="duration-zero"),
    pytest.param(["--duration", "7200"], "--duration", id="duration-too-long"),
    pytest.param(["--requests", "-1"], "--requests", id="requests-negative"),
    pytest.param(["--threads", "0", "--duration", "1"], "--threads", id="threads-zero"),
    pytest.param([], "--duration or --requests", id="unbounded"),
    pytest.param(["--duration", "1", "--url", "https://127.0.0.1/"], "--url", id="url-not-http"),
    pytest.param(["--duration", "1", "--release-regex", "release"], "--release-regex", id="regex-no-group"),
    pytest.param(["--duration", "1", "--release-regex", "("], "--release-regex", id="regex-broken"),
])
def test_command_line_refuses_bad_options_naming_them(tmp_path, args, named):
    done = subprocess.run([sys.executable, str(LOADGEN), *args, "--output", str(tmp_path / "r.json")],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 2
    assert named in done.stderr, done.stderr
    assert not (tmp_path / "r.json").exists()


def test_output_is_required(tmp_path):
    done = subprocess.run([sys.executable, str(LOADGEN), "--duration", "1"],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 2 and "--output" in done.stderr
