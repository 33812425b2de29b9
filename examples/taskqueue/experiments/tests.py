"""Tests of the task queue: run with `DJANGO_DEBUG=1 python manage.py test` (see examples/README.md).

They use whatever database the environment configures (SQLite by default, PostgreSQL when
DJANGO_DB_NAME is set) and, with DJANGO_DEBUG=1 and no CELERY_BROKER_URL, Celery's in-process
memory transport: a scheduled experiment really is published there and read back. The result
callback goes to a real HTTP server on 127.0.0.1 started by the test; the worker test starts a
real `celery -A taskqueue worker` process on a file-system broker.
"""
import hashlib
import http.server
import json
import logging
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.db.utils import ConnectionHandler
from django.test import Client, SimpleTestCase, TestCase, TransactionTestCase, override_settings

from experiments import protocol as protocol_language
from experiments.models import Experiment
from experiments.tasks import CALLBACK_RETRIES, CallbackFailed, output_relative_path, run_experiment
from taskqueue.celery import app as celery_app

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET = "test-only-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
TOKEN = "api-token-for-tests-0123456789"
SITE_TOKEN = "site-token-for-tests-9876543210"

COOLING = """\
# a cooling curve
input k = 0.5
input start = 90
simulate 4 dt 2
output temperature = 20 + (start - 20) * exp(-k * t)   # falls towards 20
output above = temperature - 20
"""


def dead_port():
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class QuietLogs:
    """Mixin: the expected warnings and 4xx/5xx answers of these tests are not logged."""

    def setUp(self):
        super().setUp()
        for name in ("django.request", "django.security", "experiments", "celery", "kombu"):
            logger = logging.getLogger(name)
            self.addCleanup(logger.setLevel, logger.level)
            logger.setLevel(logging.CRITICAL)


class HttpsClient(Client):
    """The test client, always speaking HTTPS as the API expects behind TLS."""

    def generic(self, *args, **kwargs):
        kwargs["secure"] = True
        return super().generic(*args, **kwargs)


class ResultServer:
    """A real HTTP server on 127.0.0.1 in a thread, standing in for the site's results endpoint.

    It answers each POST with the next status of `statuses` (the last one repeats) and keeps
    every request it received (path, headers, JSON body)."""

    def __init__(self, statuses=(201,), location=None):
        self.statuses = list(statuses)
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status = owner.statuses.pop(0) if len(owner.statuses) > 1 else owner.statuses[0]
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d/api/results/" % self.server.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def purge_queue():
    """Empty the experiments queue of the in-process memory broker."""
    with celery_app.connection_for_write() as connection:
        connection.SimpleQueue(settings.TASKQUEUE_QUEUE).clear()


def published_messages():
    """The task messages waiting in the experiments queue (taken off it)."""
    messages = []
    with celery_app.connection_for_read() as connection:
        queue = connection.SimpleQueue(settings.TASKQUEUE_QUEUE)
        while True:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                return messages
            messages.append({"headers": message.headers, "content_type": message.content_type,
                             "routing_key": message.delivery_info.get("routing_key"), "body": message.decode()})
            message.ack()


class DataDirMixin:
    """A fresh TASKQUEUE_DATA_DIR per test; no result callback unless a test sets one."""

    def setUp(self):
        super().setUp()
        self.data_dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.data_dir)
        overrides = override_settings(TASKQUEUE_DATA_DIR=self.data_dir, TASKQUEUE_API_TOKEN=TOKEN,
                                      TASKQUEUE_SITE_RESULTS_URL="", TASKQUEUE_SITE_TOKEN="", WEBLAB_RELEASE="r-test")
        overrides.enable()
        self.addCleanup(overrides.disable)

    def output_path(self, experiment):
        return self.data_dir / output_relative_path(experiment.pk)


# --- the protocol language ---------------------------------------------------------------------


class ProtocolTests(SimpleTestCase):
    def test_valid_protocol_and_its_interface(self):
        parsed = protocol_language.parse(COOLING)
        self.assertEqual(parsed.errors, [])
        self.assertEqual(parsed.interface(), {
            "inputs": [{"name": "k", "value": 0.5}, {"name": "start", "value": 90.0}],
            "outputs": [{"name": "temperature", "expression": "20 + (start - 20) * exp(-k * t)"},
                        {"name": "above", "expression": "temperature - 20"}],
            "steps": 4,
            "dt": 2.0,
        })

    def test_rows_evaluate_in_order(self):
        rows = list(protocol_language.parse(COOLING).rows())
        self.assertEqual([row[0] for row in rows], [0.0, 2.0, 4.0, 6.0])
        self.assertAlmostEqual(rows[0][1]["temperature"], 90.0)
        self.assertAlmostEqual(rows[1][1]["temperature"], 20 + 70 * 0.36787944117144233)
        self.assertAlmostEqual(rows[3][1]["above"], rows[3][1]["temperature"] - 20)

    def test_operators_precedence_and_functions(self):
        parsed = protocol_language.parse("input a = 3\nsimulate 1\noutput x = -a ** 2 + 2 * (1 + 1) / 4 - max(a, 5) + sqrt(16)\n")
        self.assertEqual(parsed.errors, [])
        self.assertEqual(next(parsed.rows())[1]["x"], -9 + 1 - 5 + 4)

    def assertErrors(self, text, *expected):
        errors = protocol_language.parse(text).errors
        self.assertEqual(len(errors), len(expected), errors)
        for error, (line, fragment) in zip(errors, expected):
            self.assertEqual(error["line"], line, errors)
            self.assertIn(fragment, error["message"])

    def test_syntax_errors_name_their_lines(self):
        self.assertErrors(
            "input k = 1\nfrobnicate 3\ninput j = twelve\nsimulate 5\noutput y = k +\n",
            (2, "unknown statement 'frobnicate'"), (3, "'twelve' is not a number"), (5, "output y: syntax error"),
        )

    def test_unknown_names_and_order(self):
        self.assertErrors("simulate 2\noutput y = z * 2\n", (2, "unknown name z"))
        self.assertErrors("simulate 2\noutput y = k\ninput k = 1\n", (2, "unknown name k"))

    def test_code_is_refused(self):
        for expression, fragment in [
            ("__import__('os').system('true')", "Call is not allowed"),
            ("t.real", "Attribute is not allowed"),
            ("(lambda: 1)()", "is not allowed"),
            ("'text'", "only numbers"),
            ("t < 1", "Compare is not allowed"),
            ("t % 2", "the operator Mod is not allowed"),
            ("[t][0]", "Subscript is not allowed"),
            ("exp", "exp is a function"),
            ("max(t)", "max takes 2 arguments"),
            ("exp(x=t)", "exp takes 1 argument"),
            ("True", "only numbers"),
            ("1e999", "too large"),
            ("+".join(["t"] * 60), "nested too deeply"),
        ]:
            with self.subTest(expression=expression):
                self.assertErrors("simulate 1\noutput y = %s\n" % expression, (2, fragment))

    def test_declarations(self):
        self.assertErrors("input t = 1\nsimulate 1\noutput y = 1\n", (1, "t is reserved"))
        self.assertErrors("input a = 1\ninput a = 2\nsimulate 1\noutput y = a\n", (2, "a is declared twice"))
        self.assertErrors("input 9a = 1\nsimulate 1\noutput y = 1\n", (1, "is not a name"))
        self.assertErrors("input a\nsimulate 1\noutput y = 1\n", (1, "expected `input NAME = NUMBER`"))
        self.assertErrors("simulate 1\nsimulate 2\noutput y = 1\n", (2, "simulate appears twice (first on line 1)"))
        self.assertErrors("simulate 0\noutput y = 1\n", (1, "STEPS must be a whole number from 1 to 100000"))
        self.assertErrors("simulate 100001\noutput y = 1\n", (1, "STEPS must be"))
        self.assertErrors("simulate 3 dt -1\noutput y = 1\n", (1, "dt must be a positive number"))
        self.assertErrors("simulate 3 every 1\noutput y = 1\n", (1, "expected `simulate STEPS`"))
        self.assertErrors("output y = 1\n", (0, "no `simulate STEPS` line"))
        self.assertErrors("x" * 70000, (0, "longer than 65536"))
        self.assertErrors("simulate 1\noutput y = %s\n" % "+".join(["1"] * 300), (2, "longer than 500"))

    def test_comments_and_blank_lines(self):
        self.assertEqual(protocol_language.parse("\n# only a comment\n  simulate 2  # steps\n\noutput y=t\n").errors, [])

    def test_evaluation_errors_name_line_output_and_t(self):
        cases = [
            ("simulate 3\noutput y = 1 / (t - 1)\n", "line 2: output y at t=1: float division by zero"),
            ("simulate 2\noutput y = 10 ** (1000 * (t + 1))\n", "line 2: output y at t=0"),
            ("simulate 2\noutput y = (-8) ** 0.5\n", "math domain error"),
            ("simulate 2\noutput y = log(t)\n", "math domain error"),
            ("input big = 1e300\nsimulate 2\noutput y = big * big\n", "not a finite number"),
        ]
        for text, fragment in cases:
            with self.subTest(text=text):
                parsed = protocol_language.parse(text)
                self.assertEqual(parsed.errors, [])
                with self.assertRaisesMessage(protocol_language.EvaluationError, fragment):
                    list(parsed.rows())


# --- the API -----------------------------------------------------------------------------------


class ApiAuthTests(QuietLogs, DataDirMixin, TestCase):
    client_class = HttpsClient

    def calls(self):
        experiment = Experiment.objects.create(model="m", protocol=COOLING)
        yield "post", "/api/experiments/", {"model": "m", "protocol": COOLING}
        yield "get", "/api/experiments/%s/" % experiment.pk, None
        yield "post", "/api/experiments/%s/cancel/" % experiment.pk, None
        yield "post", "/api/protocols/check/", {"protocol": COOLING}
        yield "post", "/api/protocols/interface/", {"protocol": COOLING}

    def test_every_api_path_needs_the_token(self):
        for method, path, body in self.calls():
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Bearer " + TOKEN[:-1]},
                            {"Authorization": "Basic " + TOKEN}, {"Authorization": TOKEN}, {"Authorization": "Bearer "}):
                with self.subTest(path=path, headers=headers):
                    response = getattr(self.client, method)(path, data=json.dumps(body) if body else None,
                                                            content_type="application/json", headers=headers)
                    self.assertEqual(response.status_code, 401)
                    self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="taskqueue"')
                    self.assertIn("bearer token", response.json()["error"])
        self.assertEqual(Experiment.objects.get().status, Experiment.QUEUED)

    def test_empty_configured_token_refuses_everything(self):
        with override_settings(TASKQUEUE_API_TOKEN=""):
            response = self.client.get("/api/experiments/%s/" % uuid.uuid4(), headers={"Authorization": "Bearer "})
        self.assertEqual(response.status_code, 401)

    def test_the_right_token_is_accepted(self):
        response = self.client.post("/api/protocols/check/", data={"protocol": COOLING}, content_type="application/json",
                                    headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(response.status_code, 200)


class ApiTests(QuietLogs, DataDirMixin, TestCase):
    client_class = HttpsClient

    def setUp(self):
        super().setUp()
        purge_queue()
        self.addCleanup(purge_queue)

    def api(self, method, path, body=None):
        return getattr(self.client, method)(path, data=json.dumps(body) if body is not None else None,
                                            content_type="application/json", headers={"Authorization": "Bearer " + TOKEN})

    def schedule(self, **body):
        with self.captureOnCommitCallbacks(execute=True):
            return self.api("post", "/api/experiments/", dict({"model": "cooling", "protocol": COOLING}, **body))

    def test_schedule_publishes_the_task_on_the_queue(self):
        response = self.schedule(duration=1.5)
        self.assertEqual(response.status_code, 202)
        body = response.json()
        self.assertEqual(body["status"], "queued")
        experiment = Experiment.objects.get(pk=body["id"])
        self.assertEqual((experiment.model, experiment.duration, experiment.status), ("cooling", 1.5, "queued"))
        [message] = published_messages()
        self.assertEqual(message["headers"]["task"], "experiments.tasks.run_experiment")
        self.assertEqual(message["headers"]["id"], body["id"])
        self.assertEqual(message["content_type"], "application/json")
        self.assertEqual(message["routing_key"], "experiments")
        self.assertEqual(message["body"][0], [body["id"]])

    @override_settings(TASKQUEUE_QUEUE="lab-experiments")
    def test_schedule_uses_the_configured_queue(self):
        self.schedule()
        with celery_app.connection_for_read() as connection:
            queue = connection.SimpleQueue("lab-experiments")
            message = queue.get(timeout=1)
            message.ack()
        self.assertEqual(message.headers["task"], "experiments.tasks.run_experiment")

    def test_nothing_is_published_before_the_commit(self):
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            response = self.api("post", "/api/experiments/", {"model": "m", "protocol": COOLING})
        self.assertEqual(response.status_code, 202)
        self.assertEqual(len(callbacks), 1)
        self.assertEqual(published_messages(), [])

    def test_validation_errors_name_the_fields(self):
        cases = [
            ({"protocol": COOLING}, {"model"}),
            ({"model": "", "protocol": COOLING}, {"model"}),
            ({"model": "a b", "protocol": COOLING}, {"model"}),
            ({"model": "m" * 65, "protocol": COOLING}, {"model"}),
            ({"model": "m"}, {"protocol"}),
            ({"model": "m", "protocol": 7}, {"protocol"}),
            ({"model": "m", "protocol": COOLING, "duration": 601}, {"duration"}),
            ({"model": "m", "protocol": COOLING, "duration": -0.5}, {"duration"}),
            ({"model": "m", "protocol": COOLING, "duration": "3"}, {"duration"}),
            ({"model": "m", "protocol": COOLING, "duration": True}, {"duration"}),
            ({"model": "m", "protocol": COOLING, "priority": 1}, {"priority"}),
            ({"model": 1, "duration": None}, {"model", "protocol", "duration"}),
        ]
        for body, fields in cases:
            with self.subTest(body=body):
                response = self.api("post", "/api/experiments/", body)
                self.assertEqual(response.status_code, 400)
                self.assertEqual(set(response.json()["errors"]), fields)
        self.assertFalse(Experiment.objects.exists())

    def test_protocol_syntax_errors_are_returned(self):
        response = self.api("post", "/api/experiments/", {"model": "m", "protocol": "simulate 2\noutput y = q\n"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["errors"], {"protocol": "has 1 error"})
        self.assertEqual(response.json()["protocol_errors"][0]["line"], 2)
        self.assertIn("unknown name q", response.json()["protocol_errors"][0]["message"])

    def test_bad_bodies(self):
        for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
            with self.subTest(raw=raw):
                response = self.client.post("/api/experiments/", data=raw, content_type="application/json",
                                            headers={"Authorization": "Bearer " + TOKEN})
                self.assertEqual(response.status_code, 400)
                self.assertIn("body", response.json()["errors"])

    def test_detail(self):
        experiment = Experiment.objects.create(model="m", protocol=COOLING, duration=2)
        body = self.api("get", "/api/experiments/%s/" % experiment.pk).json()
        self.assertEqual(body["id"], str(experiment.pk))
        self.assertEqual((body["status"], body["duration"], body["completions"], body["started_at"]), ("queued", 2.0, 0, None))
        self.assertEqual(self.api("get", "/api/experiments/%s/" % uuid.uuid4()).status_code, 404)

    def test_methods(self):
        self.assertEqual(self.api("get", "/api/experiments/").status_code, 405)
        experiment = Experiment.objects.create(model="m", protocol=COOLING)
        self.assertEqual(self.api("delete", "/api/experiments/%s/" % experiment.pk).status_code, 405)
        self.assertEqual(self.api("get", "/api/experiments/%s/cancel/" % experiment.pk).status_code, 405)

    def test_cancel_queued(self):
        experiment_id = self.schedule().json()["id"]
        response = self.api("post", "/api/experiments/%s/cancel/" % experiment_id)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"id": experiment_id, "status": "cancelled", "previous": "queued", "revoked": True})
        experiment = Experiment.objects.get(pk=experiment_id)
        self.assertEqual(experiment.status, "cancelled")
        self.assertIsNotNone(experiment.finished_at)
        # The message is still delivered; the run sees the row and does nothing.
        self.assertEqual(run_experiment(experiment_id), "skipped: cancelled")
        self.assertFalse(self.output_path(experiment).exists())
        # Cancelling again changes nothing.
        self.assertEqual(self.api("post", "/api/experiments/%s/cancel/" % experiment_id).json()["previous"], "cancelled")

    def test_cancel_running_and_finished(self):
        running = Experiment.objects.create(model="m", protocol=COOLING, status=Experiment.RUNNING)
        self.assertEqual(self.api("post", "/api/experiments/%s/cancel/" % running.pk).json()["previous"], "running")
        for status in (Experiment.DONE, Experiment.FAILED):
            finished = Experiment.objects.create(model="m", protocol=COOLING, status=status)
            response = self.api("post", "/api/experiments/%s/cancel/" % finished.pk)
            self.assertEqual(response.status_code, 409)
            self.assertEqual(response.json()["status"], status)
            finished.refresh_from_db()
            self.assertEqual(finished.status, status)
        self.assertEqual(self.api("post", "/api/experiments/%s/cancel/" % uuid.uuid4()).status_code, 404)

    def test_protocol_check(self):
        self.assertEqual(self.api("post", "/api/protocols/check/", {"protocol": COOLING}).json(), {"valid": True, "errors": []})
        body = self.api("post", "/api/protocols/check/", {"protocol": "simulate x\noutput y = 1\n"}).json()
        self.assertFalse(body["valid"])
        self.assertEqual(body["errors"][0]["line"], 1)
        self.assertEqual(self.api("post", "/api/protocols/check/", {}).status_code, 400)

    def test_protocol_interface(self):
        body = self.api("post", "/api/protocols/interface/", {"protocol": COOLING}).json()
        self.assertEqual([item["name"] for item in body["inputs"]], ["k", "start"])
        self.assertEqual([item["name"] for item in body["outputs"]], ["temperature", "above"])
        invalid = self.api("post", "/api/protocols/interface/", {"protocol": "simulate 1\n"})
        self.assertEqual(invalid.status_code, 400)
        self.assertIn("no `output", invalid.json()["protocol_errors"][0]["message"])

    def test_schedule_and_run_eagerly(self):
        celery_app.conf.task_always_eager = True
        self.addCleanup(setattr, celery_app.conf, "task_always_eager", False)
        experiment_id = self.schedule().json()["id"]
        body = self.api("get", "/api/experiments/%s/" % experiment_id).json()
        self.assertEqual((body["status"], body["completions"], body["worker_release"], body["error"]), ("done", 1, "r-test", ""))
        self.assertEqual(body["output_file"], "experiments/%s/output.csv" % experiment_id)
        content = (self.data_dir / body["output_file"]).read_bytes()
        self.assertEqual(hashlib.sha256(content).hexdigest(), body["output_sha256"])
        self.assertEqual(self.api("post", "/api/experiments/%s/cancel/" % experiment_id).status_code, 409)


BROKER_DOWN = """
import django, json
django.setup()
from django.test import Client
response = Client().post("/api/experiments/", data={"model": "m", "protocol": "simulate 1\\noutput y = t\\n"},
                         content_type="application/json", secure=True, headers={"Authorization": "Bearer %s"})
from experiments.models import Experiment
experiment = Experiment.objects.get()
print(json.dumps({"code": response.status_code, "body": response.json(), "status": experiment.status, "error": experiment.error}))
"""


class ScheduleWithBrokerDownTests(SimpleTestCase):
    """The broker refuses the message after the row is committed: 503 and a failed row, not 'queued'.

    In a child process, whose Celery app is configured with a broker on a dead port."""

    def test_broker_down(self):
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root)
        environ = clean_environ(DJANGO_SETTINGS_MODULE="taskqueue.settings", DJANGO_SQLITE_PATH=str(root / "db.sqlite3"),
                                DJANGO_ALLOWED_HOSTS="testserver", DJANGO_LOG_LEVEL="CRITICAL",
                                CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:%d//" % dead_port(),
                                TASKQUEUE_API_TOKEN=TOKEN, TASKQUEUE_DATA_DIR=str(root / "data"), **{"DJANGO_SECRET_KEY": SECRET})
        migrate = run_python(["manage.py", "migrate", "--noinput"], environ, PROJECT_DIR)
        self.assertEqual(migrate.returncode, 0, migrate.stderr)
        result = run_python(["-c", BROKER_DOWN % TOKEN], environ, PROJECT_DIR)
        self.assertEqual(result.returncode, 0, result.stderr)
        outcome = json.loads(result.stdout)
        self.assertEqual((outcome["code"], outcome["body"]["status"], outcome["status"]), (503, "failed", "failed"))
        self.assertIn("could not be queued", outcome["error"])


# --- the task ----------------------------------------------------------------------------------


class TaskTests(QuietLogs, DataDirMixin, TestCase):
    def create(self, protocol=COOLING, **fields):
        return Experiment.objects.create(model="cooling", protocol=protocol, **fields)

    def test_run_writes_the_file_and_posts_the_result(self):
        experiment = self.create(duration=0.4)
        with ResultServer() as site, override_settings(TASKQUEUE_SITE_RESULTS_URL=site.url, TASKQUEUE_SITE_TOKEN=SITE_TOKEN):
            began = time.monotonic()
            self.assertEqual(run_experiment(str(experiment.pk)), "done")
            elapsed = time.monotonic() - began
        self.assertGreaterEqual(elapsed, 0.4)
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.completions, experiment.error), ("done", 1, ""))
        self.assertEqual((experiment.worker_release, experiment.worker_host), ("r-test", socket.gethostname()))
        self.assertLessEqual(experiment.started_at, experiment.finished_at)
        path = self.output_path(experiment)
        self.assertEqual(experiment.output_file, "experiments/%s/output.csv" % experiment.pk)
        content = path.read_text()
        lines = content.splitlines()
        self.assertEqual(lines[0], "t,temperature,above")
        self.assertEqual(len(lines), 5)
        self.assertTrue(lines[1].startswith("0.0,90.0,70.0"))
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o640)
        self.assertEqual(hashlib.sha256(content.encode()).hexdigest(), experiment.output_sha256)
        self.assertEqual([p.name for p in path.parent.iterdir()], ["output.csv"])
        [request] = site.requests
        self.assertEqual(request["path"], "/api/results/")
        self.assertEqual(request["headers"]["Authorization"], "Bearer " + SITE_TOKEN)
        self.assertEqual(request["headers"]["Content-Type"], "application/json")
        body = request["body"]
        self.assertEqual((body["experiment"], body["status"], body["release"], body["output_sha256"]),
                         (str(experiment.pk), "done", "r-test", experiment.output_sha256))
        self.assertEqual(body["summary"]["steps"], 4)
        self.assertEqual(body["summary"]["outputs"]["temperature"]["first"], 90.0)
        self.assertEqual(body["summary"]["outputs"]["above"]["max"], 70.0)

    def test_a_second_run_of_a_done_experiment_does_nothing(self):
        experiment = self.create()
        with ResultServer() as site, override_settings(TASKQUEUE_SITE_RESULTS_URL=site.url, TASKQUEUE_SITE_TOKEN=SITE_TOKEN):
            run_experiment(str(experiment.pk))
            path = self.output_path(experiment)
            written = path.stat().st_mtime_ns
            experiment.refresh_from_db()
            self.assertEqual(run_experiment(str(experiment.pk)), "skipped: done")
            self.assertEqual(run_experiment.apply(args=(str(experiment.pk),)).get(), "skipped: done")
        again = Experiment.objects.get(pk=experiment.pk)
        self.assertEqual(again.completions, 1)
        self.assertEqual((again.started_at, again.finished_at), (experiment.started_at, experiment.finished_at))
        self.assertEqual(path.stat().st_mtime_ns, written)
        self.assertEqual(len(site.requests), 1)

    def test_redelivery_of_a_running_experiment_completes_it_once(self):
        # The worker that had it died before acknowledging: the row says running, no output.
        experiment = self.create(status=Experiment.RUNNING, worker_host="lost-worker")
        self.assertEqual(run_experiment(str(experiment.pk)), "done")
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.completions, experiment.worker_host), ("done", 1, socket.gethostname()))
        self.assertTrue(self.output_path(experiment).is_file())

    def test_unknown_or_cancelled_experiments_are_not_run(self):
        self.assertEqual(run_experiment(str(uuid.uuid4())), "skipped: unknown")
        experiment = self.create(status=Experiment.CANCELLED)
        self.assertEqual(run_experiment(str(experiment.pk)), "skipped: cancelled")
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.started_at, experiment.completions), ("cancelled", None, 0))
        self.assertFalse(self.output_path(experiment).parent.exists())

    def test_failed_computation(self):
        experiment = self.create(protocol="simulate 3\noutput y = 1 / (t - 2)\n")
        self.assertEqual(run_experiment(str(experiment.pk)), "failed")
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.completions), ("failed", 0))
        self.assertEqual(experiment.error, "line 2: output y at t=2: float division by zero")
        self.assertIsNotNone(experiment.finished_at)
        self.assertFalse(self.output_path(experiment).exists())

    def test_unwritable_data_dir_fails_the_experiment(self):
        experiment = self.create()
        blocker = self.data_dir / "experiments"
        blocker.write_text("a file where the directory should be")
        self.assertEqual(run_experiment(str(experiment.pk)), "failed")
        experiment.refresh_from_db()
        self.assertIn("cannot write", experiment.error)

    def test_failed_callback_raises_then_a_retry_only_posts(self):
        experiment = self.create()
        with ResultServer(statuses=(503, 201)) as site, \
                override_settings(TASKQUEUE_SITE_RESULTS_URL=site.url, TASKQUEUE_SITE_TOKEN=SITE_TOKEN):
            with self.assertRaisesMessage(CallbackFailed, "answered 503"):
                run_experiment(str(experiment.pk))
            experiment.refresh_from_db()
            self.assertEqual((experiment.status, experiment.completions), ("running", 0))
            path = self.output_path(experiment)
            written = path.stat().st_mtime_ns
            # The retry finds the recorded output and only posts it.
            self.assertEqual(run_experiment(str(experiment.pk)), "done")
        self.assertEqual(path.stat().st_mtime_ns, written)
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.completions), ("done", 1))
        self.assertEqual([r["body"]["output_sha256"] for r in site.requests], [experiment.output_sha256] * 2)

    def test_callback_retries_are_bounded(self):
        experiment = self.create()
        with ResultServer(statuses=(500,)) as site, \
                override_settings(TASKQUEUE_SITE_RESULTS_URL=site.url, TASKQUEUE_SITE_TOKEN=SITE_TOKEN):
            # apply() runs the task eagerly with Celery's own retry machinery (no countdown).
            result = run_experiment.apply(args=(str(experiment.pk),))
        self.assertEqual(result.get(), "failed")
        self.assertEqual(len(site.requests), CALLBACK_RETRIES + 1)
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.completions), ("failed", 0))
        self.assertIn("the result callback failed %d times" % (CALLBACK_RETRIES + 1), experiment.error)
        self.assertIn("answered 500", experiment.error)

    def test_callback_redirect_and_dead_site_are_failures(self):
        experiment = self.create()
        with ResultServer(statuses=(301,), location="https://elsewhere.example/") as site, \
                override_settings(TASKQUEUE_SITE_RESULTS_URL=site.url, TASKQUEUE_SITE_TOKEN=SITE_TOKEN):
            with self.assertRaisesMessage(CallbackFailed, "redirected to https://elsewhere.example/"):
                run_experiment(str(experiment.pk))
        with override_settings(TASKQUEUE_SITE_RESULTS_URL="http://127.0.0.1:%d/" % dead_port(), TASKQUEUE_SITE_TOKEN=SITE_TOKEN):
            with self.assertRaisesMessage(CallbackFailed, "Connection refused"):
                run_experiment(str(experiment.pk))
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.completions), ("running", 0))

    def test_steps_are_spread_over_the_duration(self):
        experiment = self.create(protocol="simulate 10\noutput y = t\n", duration=1.0)
        began = time.monotonic()
        run_experiment(str(experiment.pk))
        self.assertGreaterEqual(time.monotonic() - began, 1.0)
        self.assertLess(time.monotonic() - began, 5.0)


class CancelWhileRunningTests(QuietLogs, DataDirMixin, TransactionTestCase):
    """A cancel through the API, from another thread, stops a long run at its next look at the row."""

    def test_cancel_stops_the_run(self):
        experiment = Experiment.objects.create(model="slow", protocol="simulate 100\noutput y = t\n", duration=20)
        outcome = {}

        def run():
            try:
                outcome["result"] = run_experiment(str(experiment.pk))
            except Exception as exc:
                outcome["result"] = repr(exc)
            finally:
                from django.db import connection

                connection.close()

        worker = threading.Thread(target=run)
        began = time.monotonic()
        worker.start()
        deadline = time.monotonic() + 10
        while Experiment.objects.get(pk=experiment.pk).status != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        client = HttpsClient()
        response = client.post("/api/experiments/%s/cancel/" % experiment.pk, headers={"Authorization": "Bearer " + TOKEN})
        worker.join(10)
        self.assertEqual(response.json()["previous"], "running", outcome)
        self.assertFalse(worker.is_alive())
        self.assertEqual(outcome["result"], "cancelled")
        self.assertLess(time.monotonic() - began, 5)
        experiment.refresh_from_db()
        self.assertEqual((experiment.status, experiment.completions, experiment.output_sha256), ("cancelled", 0, ""))
        self.assertFalse(self.output_path(experiment).exists())


# --- health, settings and a real worker ---------------------------------------------------------


class HealthTests(QuietLogs, TestCase):
    client_class = HttpsClient

    def test_healthy(self):
        with override_settings(WEBLAB_RELEASE="r-health"):
            response = self.client.get("/health/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"release": "r-health", "database": True, "broker": True, "status": "ok"})
        self.assertIn("no-cache", response["Cache-Control"])

    def test_broker_down_is_503(self):
        with override_settings(CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:%d//" % dead_port()):
            response = self.client.get("/health/")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["broker"], False)
        self.assertEqual(response.json()["database"], True)

    def test_database_down_is_503(self):
        broken = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/nonexistent/taskqueue/db.sqlite3"}})
        self.addCleanup(broken.close_all)
        with mock.patch("experiments.views.connection", broken["default"]):
            response = self.client.get("/health/")
        self.assertEqual(response.status_code, 503)
        self.assertEqual((response.json()["database"], response.json()["broker"]), (False, True))

    @override_settings(SECURE_SSL_REDIRECT=True)
    def test_plain_http_probe_needs_no_token_and_is_not_redirected(self):
        self.assertEqual(Client().get("/health/").status_code, 200)
        self.assertEqual(Client().post("/api/protocols/check/").status_code, 301)


def clean_environ(**variables):
    """The environment without DJANGO_*, WEBLAB_*, CELERY_* or TASKQUEUE_* variables, plus the given ones."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("DJANGO_", "WEBLAB_", "CELERY_", "TASKQUEUE_"))}
    environ.update(variables)
    return environ


def run_python(args, environ, cwd, timeout=120):
    return subprocess.run([sys.executable] + args, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout, check=False)


PRODUCTION = {
    "DJANGO_SECRET_KEY": SECRET,
    "CELERY_BROKER_URL": "amqp://taskqueue:secret@rabbitmq.example.org:5672/lab",
    "TASKQUEUE_API_TOKEN": TOKEN,
    "TASKQUEUE_DATA_DIR": "/srv/taskqueue/shared/data",
}

SETTINGS_PROBE = """
import json, django
from django.conf import settings
django.setup()
from taskqueue.celery import app
print(json.dumps({
    "debug": settings.DEBUG, "broker": app.conf.broker_url, "queue": settings.TASKQUEUE_QUEUE,
    "data_dir": str(settings.TASKQUEUE_DATA_DIR), "site": settings.TASKQUEUE_SITE_RESULTS_URL,
    "serializer": app.conf.task_serializer, "accept": list(app.conf.accept_content), "backend": app.conf.result_backend,
    "acks_late": app.conf.task_acks_late, "prefetch": app.conf.worker_prefetch_multiplier,
    "default_queue": app.conf.task_default_queue, "release": settings.WEBLAB_RELEASE,
    "proxy_header": getattr(settings, "SECURE_PROXY_SSL_HEADER", None),
}))
"""


class SettingsFromEnvironmentTests(SimpleTestCase):
    def probe(self, **variables):
        return run_python(["-c", SETTINGS_PROBE], clean_environ(DJANGO_SETTINGS_MODULE="taskqueue.settings", **variables), PROJECT_DIR)

    def test_production_settings(self):
        result = self.probe(TASKQUEUE_QUEUE="lab", TASKQUEUE_SITE_RESULTS_URL="https://tq-site/api/results/",
                            TASKQUEUE_SITE_TOKEN=SITE_TOKEN, WEBLAB_RELEASE="r-env", DJANGO_SECURE_PROXY_SSL_HEADER="1",
                            **PRODUCTION)
        self.assertEqual(result.returncode, 0, result.stderr)
        values = json.loads(result.stdout)
        self.assertEqual(values, {
            "debug": False, "broker": PRODUCTION["CELERY_BROKER_URL"], "queue": "lab",
            "data_dir": "/srv/taskqueue/shared/data", "site": "https://tq-site/api/results/",
            "serializer": "json", "accept": ["json"], "backend": None, "acks_late": True, "prefetch": 1,
            "default_queue": "lab", "release": "r-env", "proxy_header": ["HTTP_X_FORWARDED_PROTO", "https"],
        })

    def test_defaults(self):
        values = json.loads(self.probe(**PRODUCTION).stdout)
        self.assertEqual((values["queue"], values["site"]), ("experiments", ""))
        debug = json.loads(self.probe(DJANGO_DEBUG="1").stdout)
        self.assertEqual((debug["broker"], debug["data_dir"]), ("memory://localhost/", str(PROJECT_DIR / "data")))

    def test_required_without_debug(self):
        for name in ("DJANGO_SECRET_KEY", "CELERY_BROKER_URL", "TASKQUEUE_API_TOKEN", "TASKQUEUE_DATA_DIR"):
            with self.subTest(name=name):
                variables = dict(PRODUCTION, **{name: " "})
                result = self.probe(**variables)
                self.assertNotEqual(result.returncode, 0)
                self.assertIn("%s must be set" % name, result.stderr)

    def test_site_callback_settings_are_checked(self):
        result = self.probe(TASKQUEUE_SITE_RESULTS_URL="ftp://tq-site/", TASKQUEUE_SITE_TOKEN="x", **PRODUCTION)
        self.assertIn("TASKQUEUE_SITE_RESULTS_URL must be an http:// or https:// URL", result.stderr)
        result = self.probe(TASKQUEUE_SITE_RESULTS_URL="https://tq-site/api/results/", **PRODUCTION)
        self.assertIn("TASKQUEUE_SITE_TOKEN must be set", result.stderr)

    def test_check_deploy_is_silent_with_production_settings(self):
        result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], clean_environ(**PRODUCTION), PROJECT_DIR)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("no issues (0 silenced)", result.stdout)


WORKER_SETTINGS = """
from taskqueue.settings import *  # noqa: F401,F403

# The test's file-system broker: a real transport between processes, without RabbitMQ.
CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": %(queue)r, "data_folder_out": %(queue)r, "processed_folder": %(processed)r,
                                   "store_processed": True}
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
"""

SCHEDULE = """
import django, json
django.setup()
from django.db import transaction
from experiments.models import Experiment
from experiments.views import enqueue
with transaction.atomic():
    experiment = Experiment.objects.create(model="cooling", protocol=%r, duration=0.5)
    transaction.on_commit(lambda: enqueue(experiment.pk))
print(experiment.pk)
"""


class WorkerProcessTests(SimpleTestCase):
    """`celery -A taskqueue worker` from the project directory runs a scheduled experiment."""

    def test_worker_runs_the_experiment_and_calls_the_site_back(self):
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root)
        project = root / "project"
        shutil.copytree(PROJECT_DIR, project, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "data", "staticfiles"))
        for folder in ("queue", "processed", "data"):
            (root / folder).mkdir()
        (project / "taskqueue" / "worker_test_settings.py").write_text(
            WORKER_SETTINGS % {"queue": str(root / "queue"), "processed": str(root / "processed")})
        with ResultServer() as site:
            environ = clean_environ(
                DJANGO_SETTINGS_MODULE="taskqueue.worker_test_settings", DJANGO_SECRET_KEY=SECRET,
                DJANGO_SQLITE_PATH=str(root / "db.sqlite3"), CELERY_BROKER_URL="filesystem://localhost/",
                TASKQUEUE_API_TOKEN=TOKEN, TASKQUEUE_DATA_DIR=str(root / "data"), TASKQUEUE_QUEUE="lab-queue",
                TASKQUEUE_SITE_RESULTS_URL=site.url, TASKQUEUE_SITE_TOKEN=SITE_TOKEN, WEBLAB_RELEASE="r-worker",
            )
            migrate = run_python(["manage.py", "migrate", "--noinput"], environ, project)
            self.assertEqual(migrate.returncode, 0, migrate.stderr)
            scheduled = run_python(["-c", SCHEDULE % COOLING], environ, project)
            self.assertEqual(scheduled.returncode, 0, scheduled.stderr)
            experiment_id = scheduled.stdout.strip()
            log = open(root / "worker.log", "w+")
            self.addCleanup(log.close)
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "taskqueue", "worker", "-Q", "lab-queue", "--pool", "solo",
                 "--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel", "INFO"],
                cwd=project, env=environ, stdout=log, stderr=subprocess.STDOUT)
            self.addCleanup(lambda: worker.poll() is None and (worker.kill(), worker.wait(10)))
            status = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with sqlite3.connect(root / "db.sqlite3") as database:
                    row = database.execute("SELECT status, completions, worker_release, output_sha256 FROM experiments_experiment "
                                           "WHERE id = ?", (experiment_id.replace("-", ""),)).fetchone()
                status = row[0]
                if status not in ("queued", "running"):
                    break
                time.sleep(0.2)
            worker.terminate()
            worker.wait(30)
            log.seek(0)
            output = log.read()
        self.assertEqual(row[:3], ("done", 1, "r-worker"), output)
        self.assertIn("experiments.tasks.run_experiment", output)
        content = (root / "data" / "experiments" / experiment_id / "output.csv").read_bytes()
        self.assertEqual(hashlib.sha256(content).hexdigest(), row[3])
        [request] = site.requests
        self.assertEqual((request["body"]["experiment"], request["body"]["release"]), (experiment_id, "r-worker"))
