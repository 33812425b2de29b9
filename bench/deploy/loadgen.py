"""bench/deploy/loadgen.py: a bounded, paced HTTP load on nginx during a deploy, and what it saw.

Runs inside a test container (copied there; Python 3.9+, standard library only). It sends GET
requests to http://127.0.0.1:PORT/PATH with a Host header at a fixed rate (default 50 per
second) from a pool of threads, and stops by itself after --duration seconds or --requests
requests, whichever comes first. Each request is a new TCP connection with `Connection: close`
(no keep-alive): one request's fate never depends on a connection an earlier one left behind,
and nginx's own keep-alive plays no part in what is measured (nginx talks to the app server per
request either way).

For every request it records when it was due and when it started (seconds since the load
began), its latency, its HTTP status or the error, and the release named in the answer (JSON
`release` of the example site's /health/, or the first group of --release-regex). Meanwhile a
thread reads the target of --watch-link (the app's `current`) every 10 ms and records when it
changed and to what. At the end it writes a JSON report to --output; `--summary REPORT` prints a
readable table of one. See README.md beside it.

    python3 loadgen.py --url http://127.0.0.1/health/ --host localhost --rate 50 --duration 60 \\
        --watch-link /srv/weblab/current --ready-file /tmp/load.ready --output /tmp/load.json &
    # ... wait for /tmp/load.ready, deploy, wait for the loadgen to exit ...
    python3 loadgen.py --summary /tmp/load.json
"""

import argparse
import datetime
import errno
import http.client
import json
import math
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse

REPORT_VERSION = 1
CONNECTION = "new connection per request (Connection: close)"
USER_AGENT = "weblab.stack-loadgen"
BODY_READ = 64 * 1024
# Requests counted "around" a switch: from this many seconds before the link changed up to the
# window after it (--window).
BEFORE_SWITCH = 1.0
MAX_RATE = 1000.0
MAX_DURATION = 3600.0
MAX_REQUESTS = 1000000
MAX_THREADS = 1024


class LoadError(Exception):
    """The load cannot run with these options; the message says why."""


# ---------------------------------------------------------------------------------------------
# One request


def reason_of(exc):
    """A short, stable name for why a request got no answer (the key of failed_by_reason)."""
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed without answer"
    if isinstance(exc, http.client.HTTPException):
        return "bad answer (%s)" % exc.__class__.__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        return "error %s" % errno.errorcode.get(exc.errno, exc.errno)
    return "error %s" % exc.__class__.__name__


def release_of(body, pattern=None):
    """The release an answer names: PATTERN's first group (or the group named `release`), else
    the `release` key of a JSON object; None when it names none."""
    text = body.decode("utf-8", "replace")
    if pattern is not None:
        found = pattern.search(text)
        if not found:
            return None
        if "release" in pattern.groupindex:
            return found.group("release")
        return found.group(1)
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("release") is not None:
        return str(data["release"])
    return None


def fetch(target, host, timeout):
    """One GET on a new connection. Return (status, body bytes); raise OSError/HTTPException."""
    address, port, path = target
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": USER_AGENT, "Accept": "*/*",
                                           "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read(BODY_READ)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The symlink watcher


def release_of_target(target):
    """The release a `current` target names: its last path component (releases/NAME -> NAME)."""
    if target is None:
        return None
    return os.path.basename(target.rstrip("/")) or target


def read_link(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


class Watcher(threading.Thread):
    """Reads the target of a symlink every `interval` seconds; records each change."""

    def __init__(self, path, interval, origin):
        super().__init__(name="watch-link", daemon=True)
        self.path = path
        self.interval = interval
        self.origin = origin
        self.initial = read_link(path)
        self.changes = []
        self.stopped = threading.Event()

    def run(self):
        last = self.initial
        while not self.stopped.wait(self.interval):
            now = read_link(self.path)
            if now != last:
                self.changes.append({"at": time.monotonic() - self.origin, "from": last, "to": now})
                last = now

    def stop(self):
        self.stopped.set()
        self.join()


# ---------------------------------------------------------------------------------------------
# The load


def parse_target(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LoadError("--url must be http://ADDRESS[:PORT]/PATH, got %r" % url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


class Load:
    """The paced requests: a scheduler (the calling thread) hands each request to a pool of
    worker threads at its due time, so a slow answer holds one thread, not the pace."""

    def __init__(self, opts):
        self.opts = opts
        self.target = parse_target(opts.url)
        self.host = opts.host or urllib.parse.urlsplit(opts.url).netloc
        self.pattern = re.compile(opts.release_regex) if opts.release_regex else None
        self.ok_status = set(opts.ok_status)
        self.records = []
        self.lock = threading.Lock()
        self.jobs = queue.Queue()
        self.stop = threading.Event()
        self.stopped_by = None
        self.origin = None
        self.threads = []
        self.unsent = 0

    def worker(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            index, due = job
            started = time.monotonic()
            status = release = error = None
            try:
                status, body = fetch(self.target, self.host, self.opts.timeout)
                release = release_of(body, self.pattern)
            except (OSError, http.client.HTTPException) as exc:
                error = reason_of(exc)
            ended = time.monotonic()
            record = {
                "i": index,
                "due": round(due - self.origin, 4),
                "start": round(started - self.origin, 4),
                "latency": round(ended - started, 4),
                "end": round(ended - self.origin, 4),
                "status": status,
                "error": error,
                "ok": error is None and status in self.ok_status,
                "release": release,
            }
            with self.lock:
                self.records.append(record)

    def should_stop(self):
        if self.stop.is_set():
            return True
        if self.opts.stop_file and os.path.exists(self.opts.stop_file):
            self.stopped_by = "stop-file"
            return True
        return False

    def start_workers(self):
        self.threads = [threading.Thread(target=self.worker, name="load-%d" % number, daemon=True)
                        for number in range(self.opts.threads)]
        for thread in self.threads:
            thread.start()

    def run(self, origin, ready=None):
        """Send the load (start_workers first); return once every request sent has ended
        (bounded by --timeout)."""
        self.origin = origin
        index = 0
        period = 1.0 / self.opts.rate
        while True:
            due = origin + index * period
            if self.opts.requests is not None and index >= self.opts.requests:
                self.stopped_by = "requests"
                break
            if self.opts.duration is not None and due - origin >= self.opts.duration:
                self.stopped_by = "duration"
                break
            # Sleep in short steps so a signal or the stop file is seen within 50 ms.
            while time.monotonic() < due and not self.should_stop():
                self.stop.wait(min(due - time.monotonic(), 0.05))
            if self.should_stop():
                self.stopped_by = self.stopped_by or "signal"
                break
            self.jobs.put((index, due))
            if index == 0 and ready is not None:
                ready()
            index += 1
        # Told to stop (stop file, signal): requests still waiting for a free thread are not
        # sent, so the stop takes no longer than the requests in flight (--timeout), however far
        # the threads fell behind the pace. At the end of --duration or --requests every request
        # that was due is sent.
        while self.stopped_by not in ("duration", "requests"):
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
            self.unsent += 1
            index -= 1
        for _thread in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()
        return index


# ---------------------------------------------------------------------------------------------
# The report


def percentile(values, share):
    """Nearest-rank percentile (share in 0..100) of values, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(math.ceil(share / 100.0 * len(ordered))))
    return ordered[rank - 1]


def latency_stats(records):
    """count, p50, p99 and max latency (seconds) of the requests that got an answer."""
    values = [record["latency"] for record in records if record["status"] is not None]
    return {
        "count": len(records),
        "answered": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def failure_reason(record):
    if record["error"] is not None:
        return record["error"]
    return "http %d" % record["status"]


def count_failures(records):
    counts = {}
    for record in records:
        if not record["ok"]:
            reason = failure_reason(record)
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def analyse_switch(records, change, next_at, window):
    """What the load saw around one change of the link: when answers named the new release,
    when the old one last answered, the failures and latencies around it."""
    at = change["at"]
    old, new = release_of_target(change["from"]), release_of_target(change["to"])
    # Answers that arrived between this change and the next one.
    period = [record for record in records if at <= record["end"] < next_at]
    new_ends = [record["end"] for record in period if new is not None and record["release"] == new]
    old_ends = [record["end"] for record in period if old is not None and record["release"] == old]
    around = [record for record in records
              if record["start"] < at + window and record["end"] >= at - BEFORE_SWITCH]
    after = [record for record in records if at <= record["start"] < at + window]
    first_new = min(new_ends) if new_ends else None
    last_old = max(old_ends) if old_ends else None
    return {
        "at": round(at, 4),
        "from_target": change["from"],
        "to_target": change["to"],
        "from_release": old,
        "to_release": new,
        "served_new": first_new is not None,
        "first_new_at": first_new,
        "first_new_after": round(first_new - at, 4) if first_new is not None else None,
        "last_old_at": last_old,
        "last_old_after": round(last_old - at, 4) if last_old is not None else None,
        "old_answers_after": len(old_ends),
        "failed_around": sum(1 for record in around if not record["ok"]),
        "failed_around_by_reason": count_failures(around),
        "latency_after": latency_stats(after),
    }


def analyse(records, changes, window, rate):
    """The report's figures from the request records and the link changes."""
    records = sorted(records, key=lambda record: record["i"])
    first_at = changes[0]["at"] if changes else math.inf
    switches = []
    for number, change in enumerate(changes):
        next_at = changes[number + 1]["at"] if number + 1 < len(changes) else math.inf
        switches.append(dict(analyse_switch(records, change, next_at, window), number=number + 1))
    lags = [record["start"] - record["due"] for record in records]
    starts = [record["start"] for record in records]
    # Requests per second actually started: over the time from the first start to one period
    # after the last (exactly the rate when no request started late).
    span = max(starts) - min(starts) + 1.0 / rate if starts else 0
    ok = sum(1 for record in records if record["ok"])
    return {
        "totals": {
            "sent": len(records),
            "ok": ok,
            "failed": len(records) - ok,
            "failed_by_reason": count_failures(records),
            "answers_without_release": sum(1 for record in records
                                           if record["status"] is not None and record["release"] is None),
        },
        "pace": {
            "sent_per_second": round(len(records) / span, 2) if span > 0 else None,
            "lag_p99": round(percentile(lags, 99), 4) if lags else None,
            "lag_max": round(max(lags), 4) if lags else None,
        },
        "latency": {
            "overall": latency_stats(records),
            "steady_state": latency_stats([record for record in records if record["start"] < first_at]),
            "after_switch": [dict(switch["latency_after"], number=switch["number"]) for switch in switches],
        },
        "switches": switches,
    }


def build_report(opts, load, watcher, started_at, duration):
    report = {
        "tool": "weblab.stack bench/deploy/loadgen.py",
        "version": REPORT_VERSION,
        "config": {
            "url": opts.url,
            "host": load.host,
            "rate": opts.rate,
            "duration": opts.duration,
            "requests": opts.requests,
            "threads": opts.threads,
            "timeout": opts.timeout,
            "connection": CONNECTION,
            "ok_status": sorted(load.ok_status),
            "release_regex": opts.release_regex,
            "watch_link": opts.watch_link,
            "watch_interval": opts.watch_interval,
            "window": opts.window,
        },
        "started_at": started_at,
        "duration": round(duration, 3),
        "stopped_by": load.stopped_by,
        # Due, but still waiting for a free thread when the load stopped: never sent.
        "unsent": load.unsent,
        "initial_target": watcher.initial if watcher else None,
        "changes": [dict(change, at=round(change["at"], 4)) for change in (watcher.changes if watcher else [])],
    }
    report.update(analyse(load.records, watcher.changes if watcher else [], opts.window, opts.rate))
    report["records"] = sorted(load.records, key=lambda record: record["i"])
    return report


def write_json(path, data):
    """Write atomically: a reader waiting for the file never sees half a report."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump(data, stream, indent=1)
        stream.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The summary


def ms(value):
    return "-" if value is None else "%.1f" % (value * 1000.0)


def seconds(value):
    return "-" if value is None else "%.3f s" % value


def summary(report):
    """A readable table of a report."""
    config, totals, pace = report["config"], report["totals"], report["pace"]
    lines = []
    bounds = []
    if config["duration"] is not None:
        bounds.append("%s s" % config["duration"])
    if config["requests"] is not None:
        bounds.append("%d requests" % config["requests"])
    lines.append("load:     %s (Host: %s), %s req/s for %s, %d threads, %s"
                 % (config["url"], config["host"], config["rate"], " or ".join(bounds),
                    config["threads"], config["connection"]))
    lines.append("ran:      %s s from %s, stopped by %s; sent %s req/s, lag behind the pace p99 %s ms, "
                 "max %s ms" % (report["duration"], report["started_at"], report["stopped_by"],
                                pace["sent_per_second"], ms(pace["lag_p99"]), ms(pace["lag_max"])))
    reasons = ", ".join("%s: %d" % item for item in totals["failed_by_reason"].items())
    lines.append("requests: sent %d, ok %d, failed %d%s%s"
                 % (totals["sent"], totals["ok"], totals["failed"], " (%s)" % reasons if reasons else "",
                    ", %d answers named no release" % totals["answers_without_release"]
                    if totals["answers_without_release"] else ""))
    lines.append("")
    lines.append("%-24s %7s %9s %9s %9s" % ("latency (ms)", "count", "p50", "p99", "max"))
    rows = [("overall", report["latency"]["overall"]), ("steady state", report["latency"]["steady_state"])]
    rows += [("switch %d, next %s s" % (stats["number"], config["window"]), stats)
             for stats in report["latency"]["after_switch"]]
    for label, stats in rows:
        figures = (label, stats["count"], ms(stats["p50"]), ms(stats["p99"]), ms(stats["max"]))
        lines.append("%-24s %7d %9s %9s %9s" % figures)
    lines.append("")
    if not config["watch_link"]:
        lines.append("switches: not watched (no --watch-link)")
        return "\n".join(lines) + "\n"
    if not report["switches"]:
        lines.append("switches: none seen on %s (target %s)" % (config["watch_link"], report["initial_target"]))
        return "\n".join(lines) + "\n"
    lines.append("switches of %s (first target %s); times in seconds since the load began:"
                 % (config["watch_link"], report["initial_target"]))
    lines.append("%-3s %9s  %-28s %14s %14s %11s  %s" % ("#", "link at", "to", "new from +", "old until +",
                                                         "old after", "failed around"))
    for switch in report["switches"]:
        failed = "%d" % switch["failed_around"]
        if switch["failed_around_by_reason"]:
            failed += " (%s)" % ", ".join("%s: %d" % item for item in switch["failed_around_by_reason"].items())
        lines.append("%-3d %9.3f  %-28s %14s %14s %11d  %s"
                     % (switch["number"], switch["at"], switch["to_target"] or "(removed)",
                        seconds(switch["first_new_after"]) if switch["served_new"] else "never",
                        seconds(switch["last_old_after"]), switch["old_answers_after"], failed))
    lines.append("")
    lines.append("new from +: first answer naming the new release, after the link changed; old until +: "
                 "last answer naming the old one; old after: answers naming the old one after the "
                 "change; failed around: from %s s before to %s s after." % (BEFORE_SWITCH, config["window"]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Command line


def positive(kind, upper=None):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not a number: %r" % text) from None
        if not value > 0:
            raise argparse.ArgumentTypeError("must be more than 0, got %s" % text)
        if upper is not None and value > upper:
            raise argparse.ArgumentTypeError("must be at most %s, got %s" % (upper, text))
        return value
    return convert


def regex(text):
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError("not a regular expression (%s): %r" % (exc, text)) from None
    if pattern.groups < 1:
        raise argparse.ArgumentTypeError("needs a group around the release name: %r" % text)
    return text


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="A bounded, paced HTTP load with release and symlink tracking (bench/deploy).")
    parser.add_argument("--summary", metavar="REPORT", help="print a readable table of REPORT and exit")
    parser.add_argument("--url", default="http://127.0.0.1/health/",
                        help="http://ADDRESS[:PORT]/PATH to request (default: %(default)s)")
    parser.add_argument("--host", help="the Host header (default: the URL's host)")
    parser.add_argument("--rate", type=positive(float, MAX_RATE), default=50.0,
                        help="requests per second (default: %(default)s, at most 1000)")
    parser.add_argument("--duration", type=positive(float, MAX_DURATION),
                        help="stop after this many seconds (at most 3600)")
    parser.add_argument("--requests", type=positive(int, MAX_REQUESTS),
                        help="stop after this many requests")
    parser.add_argument("--threads", type=positive(int, MAX_THREADS), default=256,
                        help="requests in flight at most, one thread each (default: %(default)s: at "
                             "50 req/s, answers up to 5 s long keep the pace)")
    parser.add_argument("--timeout", type=positive(float), default=10.0,
                        help="seconds a request may wait for each step of its answer (default: %(default)s)")
    parser.add_argument("--ok-status", type=int, nargs="+", default=[200], metavar="CODE",
                        help="statuses that count as ok (default: 200)")
    parser.add_argument("--release-regex", type=regex,
                        help="regular expression whose first group (or group 'release') is the release "
                             "named in a body (default: the JSON key 'release')")
    parser.add_argument("--watch-link", metavar="PATH", help="symlink whose target changes are recorded")
    parser.add_argument("--watch-interval", type=positive(float), default=0.01,
                        help="seconds between two reads of --watch-link (default: %(default)s)")
    parser.add_argument("--window", type=positive(float), default=5.0,
                        help="seconds after a switch for its latency and failures (default: %(default)s)")
    parser.add_argument("--ready-file", metavar="PATH", help="touched once the load runs")
    parser.add_argument("--stop-file", metavar="PATH", help="stop early once this file exists")
    parser.add_argument("--output", metavar="PATH", help="where the JSON report goes")
    opts = parser.parse_args(argv)
    if opts.summary is None:
        if opts.output is None:
            parser.error("--output is required (where the JSON report goes)")
        if opts.duration is None and opts.requests is None:
            parser.error("give --duration or --requests (or both): the load always stops by itself")
        try:
            parse_target(opts.url)
        except LoadError as exc:
            parser.error(str(exc))
    return opts


def touch(path):
    with open(path, "a", encoding="utf-8"):
        pass
    os.utime(path, None)


def run(opts):
    # Hand the GIL over sooner than the default 5 ms, so a worker starts close to its due time.
    sys.setswitchinterval(0.001)
    load = Load(opts)

    def on_signal(signum, _frame):
        load.stopped_by = "signal %s" % signal.Signals(signum).name
        load.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The threads first: starting hundreds of them takes a while, and the pace starts after.
    load.start_workers()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    origin = time.monotonic()
    watcher = None
    if opts.watch_link:
        watcher = Watcher(opts.watch_link, opts.watch_interval, origin)
        watcher.start()
    load.run(origin, ready=(lambda: touch(opts.ready_file)) if opts.ready_file else None)
    duration = time.monotonic() - origin
    if watcher is not None:
        watcher.stop()
    report = build_report(opts, load, watcher, started_at, duration)
    write_json(opts.output, report)
    return report


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.summary is not None:
        with open(opts.summary, encoding="utf-8") as stream:
            sys.stdout.write(summary(json.load(stream)))
        return 0
    report = run(opts)
    sys.stdout.write(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
