"""Tests of the demo site: run with `python manage.py test` (see examples/README.md).

They use whatever database and cache the environment configures (SQLite and local memory by
default, PostgreSQL and memcached when DJANGO_DB_NAME and DJANGO_CACHE_LOCATION are set), except
where a test needs a cache or database that is down: those point at a port nobody listens on.
The deployment tests run manage.py in a child process from a copy of the project laid out as
the app role lays out releases.
"""
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.db.utils import ConnectionHandler
from django.test import Client, SimpleTestCase, TestCase, override_settings

from lab import health
from lab.models import Experiment, Result
from weblab_site.release import detect_release

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET = "test-only-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
REFERER = "https://testserver/"


def dead_port():
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memcached_at(port, **options):
    """A CACHES setting for memcached on a loopback port, with the site's production options."""
    merged = {"connect_timeout": 1, "timeout": 1, "no_delay": True, "ignore_exc": True, "retry_attempts": 1, "dead_timeout": 5}
    merged.update(options)
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": "127.0.0.1:%d" % port,
            "OPTIONS": merged,
        },
    }


class QuietRequestLogs:
    """Mixin: the expected 4xx and 5xx answers of these tests are not logged to the console."""

    def setUp(self):
        super().setUp()
        for name in ("django.request", "django.security", "lab.health"):
            logger = logging.getLogger(name)
            self.addCleanup(logger.setLevel, logger.level)
            logger.setLevel(logging.CRITICAL)


class HttpsClient(Client):
    """The test client, always speaking HTTPS as the site expects behind TLS."""

    def generic(self, *args, **kwargs):
        kwargs["secure"] = True
        return super().generic(*args, **kwargs)


class ReleaseDetectionTests(SimpleTestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def make_release(self, name):
        release = self.tmp / "srv" / "app" / "releases" / name
        release.mkdir(parents=True)
        return release

    def test_environment_variable_wins(self):
        release = self.make_release("20250101T000000-abc1234")
        self.assertEqual(detect_release(release, {"WEBLAB_RELEASE": "from-env"}), "from-env")

    def test_blank_environment_variable_is_ignored(self):
        release = self.make_release("r1")
        self.assertEqual(detect_release(release, {"WEBLAB_RELEASE": "  "}), "r1")

    def test_release_directory_name(self):
        release = self.make_release("20250101T000000-abc1234")
        self.assertEqual(detect_release(release, {}), "20250101T000000-abc1234")

    def test_current_link_resolves_to_the_release_it_points_at(self):
        self.make_release("r1")
        release = self.make_release("r2")
        current = self.tmp / "srv" / "app" / "current"
        current.symlink_to(release)
        self.assertEqual(detect_release(current, {}), "r2")

    def test_project_nested_inside_a_release(self):
        project = self.make_release("r3") / "examples" / "site"
        project.mkdir(parents=True)
        self.assertEqual(detect_release(project, {}), "r3")

    def test_outside_a_releases_layout_the_directory_name(self):
        project = self.tmp / "checkout" / "site"
        project.mkdir(parents=True)
        self.assertEqual(detect_release(project, {}), "site")

    def test_settings_expose_the_detected_release(self):
        expected = os.environ.get("WEBLAB_RELEASE", "").strip() or detect_release(PROJECT_DIR, {})
        self.assertEqual(settings.WEBLAB_RELEASE, expected)


class IndexPageTests(QuietRequestLogs, TestCase):
    client_class = HttpsClient

    def setUp(self):
        super().setUp()
        cache.clear()

    def test_empty_list(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "No experiments yet.")

    def test_lists_rows_newest_first(self):
        Experiment.objects.create(name="first run")
        Experiment.objects.create(name="second run")
        response = self.client.get("/")
        body = response.content.decode()
        self.assertIn("first run", body)
        self.assertLess(body.index("second run"), body.index("first run"))

    def test_page_links_the_stylesheet(self):
        response = self.client.get("/")
        self.assertContains(response, '<link rel="stylesheet" href="%slab/site.css">' % settings.STATIC_URL)

    def test_page_shows_the_release(self):
        with override_settings(WEBLAB_RELEASE="r-page"):
            response = self.client.get("/")
        self.assertContains(response, "<code>r-page</code>")

    def test_post_creates_a_row_and_redirects(self):
        with override_settings(WEBLAB_RELEASE="r-post"):
            response = self.client.post("/", {"name": "  cooling curve "})
        self.assertRedirects(response, "/", fetch_redirect_response=False)
        experiment = Experiment.objects.get()
        self.assertEqual((experiment.name, experiment.release), ("cooling curve", "r-post"))
        self.assertContains(self.client.get("/"), "cooling curve")

    def test_blank_name_is_rejected(self):
        response = self.client.post("/", {"name": "   "})
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "This field is required.", status_code=400)
        self.assertFalse(Experiment.objects.exists())

    def test_post_without_csrf_token_is_refused(self):
        client = HttpsClient(enforce_csrf_checks=True)
        response = client.post("/", {"name": "forged"}, headers={"Referer": REFERER})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Experiment.objects.exists())

    def test_post_with_the_form_csrf_token_is_accepted(self):
        client = HttpsClient(enforce_csrf_checks=True)
        page = client.get("/")
        token = page.context["csrf_token"]
        self.assertContains(page, 'name="csrfmiddlewaretoken"')
        response = client.post("/", {"name": "with token", "csrfmiddlewaretoken": str(token)}, headers={"Referer": REFERER})
        self.assertEqual(response.status_code, 302)
        self.assertTrue(Experiment.objects.filter(name="with token").exists())

    def test_other_methods_are_refused(self):
        self.assertEqual(self.client.delete("/").status_code, 405)

    @override_settings(SECURE_SSL_REDIRECT=True)
    def test_plain_http_is_redirected_to_https(self):
        response = Client().get("/")
        self.assertEqual(response.status_code, 301)
        self.assertEqual(response["Location"], "https://testserver/")


class FragmentCacheTests(TestCase):
    client_class = HttpsClient

    def setUp(self):
        super().setUp()
        cache.clear()
        self.experiment = Experiment.objects.create(name="original name")

    def test_fragment_is_served_from_the_cache(self):
        first = self.client.get("/")
        self.assertContains(first, "original name")
        # A change the fragment's key does not see (same count, same newest id) stays hidden
        # while the cached fragment lives: the page really comes from the cache.
        Experiment.objects.filter(pk=self.experiment.pk).update(name="renamed behind the cache")
        second = self.client.get("/")
        self.assertContains(second, "original name")
        self.assertNotContains(second, "renamed behind the cache")
        cache.clear()
        self.assertContains(self.client.get("/"), "renamed behind the cache")

    def test_cache_hit_skips_the_list_query(self):
        self.client.get("/")
        # Only the aggregate that builds the fragment's key runs; the list query does not.
        with self.assertNumQueries(1):
            self.client.get("/")

    def test_new_row_shows_at_once(self):
        self.client.get("/")
        self.client.post("/", {"name": "fresh row"})
        self.assertContains(self.client.get("/"), "fresh row")

    def rendered_at(self):
        match = re.search(r"rendered at <time>([^<]+)</time>", self.client.get("/").content.decode())
        self.assertIsNotNone(match)
        return match.group(1)

    def test_fragment_lives_in_the_configured_cache(self):
        first = self.rendered_at()
        self.assertEqual(self.rendered_at(), first)
        # Emptying the configured cache (memcached in production) makes the fragment render anew.
        cache.clear()
        self.assertNotEqual(self.rendered_at(), first)


class HealthEndpointTests(QuietRequestLogs, TestCase):
    client_class = HttpsClient

    def setUp(self):
        super().setUp()
        cache.clear()

    def test_healthy(self):
        with override_settings(WEBLAB_RELEASE="r-health"):
            response = self.client.get("/health/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertEqual(response.json(), {"release": "r-health", "database": True, "cache": True, "status": "ok"})
        self.assertIn("no-cache", response["Cache-Control"])

    def test_cache_down_is_503(self):
        with override_settings(CACHES=memcached_at(dead_port())):
            response = self.client.get("/health/")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["cache"], False)
        self.assertEqual(response.json()["database"], True)
        self.assertEqual(response.json()["status"], "degraded")

    def test_cache_that_raises_is_503_not_500(self):
        with override_settings(CACHES=memcached_at(dead_port(), ignore_exc=False)):
            response = self.client.get("/health/")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["cache"], False)

    def test_database_down_is_503(self):
        broken = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/nonexistent/weblab/db.sqlite3"}})
        self.addCleanup(broken.close_all)
        with mock.patch("lab.views.connection", broken["default"]):
            response = self.client.get("/health/")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["database"], False)
        self.assertEqual(response.json()["cache"], True)
        self.assertEqual(response.json()["status"], "degraded")

    def test_head_is_answered_and_post_refused(self):
        self.assertEqual(self.client.head("/health/").status_code, 200)
        self.assertEqual(self.client.post("/health/").status_code, 405)

    @override_settings(SECURE_SSL_REDIRECT=True)
    def test_plain_http_probe_is_not_redirected(self):
        self.assertEqual(Client().get("/health/").status_code, 200)

    def test_site_keeps_working_while_the_cache_is_down(self):
        Experiment.objects.create(name="still listed")
        with override_settings(CACHES=memcached_at(dead_port())):
            response = self.client.get("/")
        self.assertContains(response, "still listed")


class ProbeTests(QuietRequestLogs, SimpleTestCase):
    databases = {"default"}

    def test_database_probe_runs_select_1(self):
        from django.db import connection

        self.assertTrue(health.database_answers(connection))

    def test_cache_probe_round_trip(self):
        self.assertTrue(health.cache_answers(cache))

    def test_cache_probe_detects_a_cache_that_forgets(self):
        from django.core.cache.backends.dummy import DummyCache

        self.assertFalse(health.cache_answers(DummyCache("dummy", {})))


class HealthCommandTests(QuietRequestLogs, TestCase):
    """`manage.py health` sends the request through weblab_site.wsgi.application."""

    def setUp(self):
        super().setUp()
        cache.clear()
        # As Django's test client does: the WSGI handler's start- and end-of-request hooks would
        # otherwise close the connection that holds the test's transaction.
        for signal in (request_started, request_finished):
            signal.disconnect(close_old_connections)
            self.addCleanup(signal.connect, close_old_connections)

    def test_healthy_prints_json(self):
        out = _Output()
        with override_settings(WEBLAB_RELEASE="r-cmd", ALLOWED_HOSTS=["app.example.org"]):
            call_command("health", stdout=out)
        self.assertEqual(json.loads(out.text), {"release": "r-cmd", "database": True, "cache": True, "status": "ok"})

    def test_unhealthy_fails(self):
        with override_settings(CACHES=memcached_at(dead_port())):
            with self.assertRaisesMessage(CommandError, "/health/ answered 503"):
                call_command("health", stdout=_Output())

    def test_host_outside_allowed_hosts_fails(self):
        with self.assertRaisesMessage(CommandError, "answered 400"):
            call_command("health", host="evil.example.com", stdout=_Output())


RESULTS_TOKEN = "results-token-for-tests-0123456789"


def a_result(**fields):
    """A result as a task-queue worker posts it."""
    body = {
        "experiment": str(uuid.uuid4()),
        "status": "done",
        "release": "20250101T120000-worker",
        "worker_host": "worker-1",
        "output_sha256": "ab" * 32,
        "summary": {"model": "cooling", "steps": 4, "outputs": {"temperature": {"first": 90.0, "last": 23.5}}},
    }
    body.update(fields)
    return body


@override_settings(RESULTS_TOKEN=RESULTS_TOKEN)
class ResultsApiTests(QuietRequestLogs, TestCase):
    client_class = HttpsClient

    def setUp(self):
        super().setUp()
        cache.clear()

    def post(self, body, token=RESULTS_TOKEN, client=None):
        headers = {"Authorization": "Bearer %s" % token} if token is not None else {}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return (client or self.client).post("/api/results/", data=data, content_type="application/json", headers=headers)

    def test_first_delivery_creates_then_repeats_update_and_count(self):
        body = a_result()
        first = self.post(body)
        self.assertEqual(first.status_code, 201)
        self.assertEqual(first.json(), {"experiment": body["experiment"], "deliveries": 1, "created": True})
        received = Result.objects.get().received
        again = self.post(dict(body, release="r-second", output_sha256="cd" * 32))
        self.assertEqual(again.status_code, 200)
        self.assertEqual(again.json(), {"experiment": body["experiment"], "deliveries": 2, "created": False})
        result = Result.objects.get()
        self.assertEqual((str(result.experiment), result.status, result.release, result.output_sha256, result.deliveries),
                         (body["experiment"], "done", "r-second", "cd" * 32, 2))
        self.assertEqual(result.summary, body["summary"])
        self.assertGreaterEqual(result.received, received)
        self.assertEqual(self.post(body).json()["deliveries"], 3)
        self.assertEqual(Result.objects.count(), 1)

    def test_token_is_required(self):
        for token in (None, "wrong", RESULTS_TOKEN[:-1], ""):
            with self.subTest(token=token):
                response = self.post(a_result(), token=token)
                self.assertEqual(response.status_code, 401)
                self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="results"')
        response = self.client.post("/api/results/", data=json.dumps(a_result()), content_type="application/json",
                                    headers={"Authorization": "Basic %s" % RESULTS_TOKEN})
        self.assertEqual(response.status_code, 401)
        self.assertFalse(Result.objects.exists())

    def test_without_a_configured_token_the_endpoint_is_disabled(self):
        with override_settings(RESULTS_TOKEN=""):
            self.assertEqual(self.post(a_result(), token="").status_code, 404)
            self.assertEqual(self.post(a_result(), token="anything").status_code, 404)
        self.assertFalse(Result.objects.exists())

    def test_csrf_exempt(self):
        client = HttpsClient(enforce_csrf_checks=True)
        self.assertEqual(self.post(a_result(), client=client).status_code, 201)

    def test_other_methods_are_refused(self):
        response = self.client.get("/api/results/", headers={"Authorization": "Bearer %s" % RESULTS_TOKEN})
        self.assertEqual(response.status_code, 405)
        self.assertEqual(response["Allow"], "POST")

    def test_validation_errors_name_the_fields(self):
        cases = [
            (a_result(experiment="not-a-uuid"), {"experiment"}),
            (a_result(experiment=None), {"experiment"}),
            (a_result(status="exploded"), {"status"}),
            (a_result(release="r" * 101), {"release"}),
            (a_result(output_sha256="ABC"), {"output_sha256"}),
            (a_result(summary=[1, 2]), {"summary"}),
            ({}, {"experiment", "status"}),
        ]
        for body, fields in cases:
            with self.subTest(body=body):
                response = self.post(body)
                self.assertEqual(response.status_code, 400)
                self.assertEqual(set(response.json()["errors"]), fields)
        for raw in ("{broken", "[1]", "x" * (65 * 1024)):
            with self.subTest(raw=raw[:10]):
                self.assertEqual(set(self.post(raw).json()["errors"]), {"body"})
        self.assertFalse(Result.objects.exists())

    def test_result_page_is_public_json(self):
        body = a_result()
        self.post(body)
        response = self.client.get("/results/%s/" % body["experiment"])
        self.assertEqual(response.status_code, 200)
        shown = response.json()
        self.assertEqual({key: shown[key] for key in ("experiment", "status", "release", "output_sha256", "summary", "deliveries")},
                         {"experiment": body["experiment"], "status": "done", "release": body["release"],
                          "output_sha256": body["output_sha256"], "summary": body["summary"], "deliveries": 1})
        self.assertIn("received", shown)
        self.assertNotIn(RESULTS_TOKEN, response.content.decode())
        self.assertEqual(self.client.get("/results/%s/" % uuid.uuid4()).status_code, 404)
        self.assertEqual(self.client.post("/results/%s/" % body["experiment"]).status_code, 405)

    @override_settings(SECURE_SSL_REDIRECT=True)
    def test_plain_http_is_redirected(self):
        self.assertEqual(self.post(a_result(), client=Client()).status_code, 301)

    def test_index_lists_results_and_shows_new_ones_at_once(self):
        self.assertContains(self.client.get("/"), "No results yet.")
        body = a_result()
        self.post(body)
        page = self.client.get("/")
        self.assertContains(page, '<a href="/results/%s/">%s</a>' % (body["experiment"], body["experiment"]), html=False)
        self.assertContains(page, "cooling")
        # A repeat delivery changes the latest delivery time: the fragment renders anew.
        self.post(dict(body, release="r-redelivered"))
        self.assertContains(self.client.get("/"), "r-redelivered")
        # A cache hit runs only the one query that builds both fragments' keys.
        with self.assertNumQueries(1):
            self.client.get("/")


class _Output:
    """A stdout for call_command that keeps what was written."""

    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        pass

    @property
    def text(self):
        return "".join(self.parts)


def clean_environ(**variables):
    """The environment without any DJANGO_* or WEBLAB_* variable, plus the given ones."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "WEBLAB_"))}
    environ.update(variables)
    return environ


def run_python(args, environ, cwd):
    return subprocess.run([sys.executable] + args, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120, check=False)


SETTINGS_PROBE = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"), "port": db.get("PORT"),
    "cache": settings.CACHES["default"]["BACKEND"], "location": settings.CACHES["default"]["LOCATION"],
    "allowed_hosts": settings.ALLOWED_HOSTS, "csrf_trusted_origins": settings.CSRF_TRUSTED_ORIGINS,
    "static_root": str(settings.STATIC_ROOT), "media_root": str(settings.MEDIA_ROOT),
    "ssl_redirect": settings.SECURE_SSL_REDIRECT, "hsts": settings.SECURE_HSTS_SECONDS,
    "silenced": settings.SILENCED_SYSTEM_CHECKS, "release": settings.WEBLAB_RELEASE,
    "proxy_header": getattr(settings, "SECURE_PROXY_SSL_HEADER", None),
    "results_token": settings.RESULTS_TOKEN,
}))
"""


class SettingsFromEnvironmentTests(SimpleTestCase):
    """Settings are read in a child process, from a controlled environment."""

    def settings_for(self, **variables):
        environ = clean_environ(DJANGO_SETTINGS_MODULE="weblab_site.settings", **variables)
        result = run_python(["-c", SETTINGS_PROBE], environ, PROJECT_DIR)
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def test_secret_key_required_without_debug(self):
        environ = clean_environ(DJANGO_SETTINGS_MODULE="weblab_site.settings")
        result = run_python(["-c", SETTINGS_PROBE], environ, PROJECT_DIR)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("DJANGO_SECRET_KEY must be set", result.stderr)

    def test_debug_runs_without_secret_key(self):
        values = self.settings_for(DJANGO_DEBUG="1")
        self.assertTrue(values["debug"])
        self.assertFalse(values["ssl_redirect"])

    def test_production_defaults(self):
        values = self.settings_for(DJANGO_SECRET_KEY=SECRET)
        self.assertFalse(values["debug"])
        self.assertEqual(values["engine"], "django.db.backends.sqlite3")
        self.assertEqual(values["name"], str(PROJECT_DIR / "db.sqlite3"))
        self.assertEqual(values["cache"], "django.core.cache.backends.locmem.LocMemCache")
        self.assertEqual(values["allowed_hosts"], ["localhost", "127.0.0.1"])
        self.assertEqual(values["static_root"], str(PROJECT_DIR / "staticfiles"))
        self.assertTrue(values["ssl_redirect"])
        self.assertEqual(values["hsts"], 31536000)
        self.assertIsNone(values["proxy_header"])

    def test_postgresql_memcached_and_paths(self):
        values = self.settings_for(
            DJANGO_SECRET_KEY=SECRET, DJANGO_DB_NAME="weblab", DJANGO_DB_HOST="127.0.0.1", DJANGO_DB_PORT="5433",
            DJANGO_CACHE_LOCATION="127.0.0.1:11211, 127.0.0.1:11212", DJANGO_ALLOWED_HOSTS="www.example.org, .example.net",
            DJANGO_CSRF_TRUSTED_ORIGINS="https://www.example.org", DJANGO_STATIC_ROOT="/srv/weblab/static",
            DJANGO_MEDIA_ROOT="/srv/weblab/shared/media", DJANGO_SECURE_PROXY_SSL_HEADER="1",
            DJANGO_SILENCED_CHECKS="security.W008,security.W016",
        )
        self.assertEqual((values["engine"], values["name"], values["host"], values["port"]),
                         ("django.db.backends.postgresql", "weblab", "127.0.0.1", "5433"))
        self.assertEqual(values["cache"], "django.core.cache.backends.memcached.PyMemcacheCache")
        self.assertEqual(values["location"], ["127.0.0.1:11211", "127.0.0.1:11212"])
        self.assertEqual(values["allowed_hosts"], ["www.example.org", ".example.net"])
        self.assertEqual(values["csrf_trusted_origins"], ["https://www.example.org"])
        self.assertEqual((values["static_root"], values["media_root"]), ("/srv/weblab/static", "/srv/weblab/shared/media"))
        self.assertEqual(values["proxy_header"], ["HTTP_X_FORWARDED_PROTO", "https"])
        self.assertEqual(values["silenced"], ["security.W008", "security.W016"])

    def test_blank_means_the_default(self):
        values = self.settings_for(DJANGO_SECRET_KEY=SECRET, DJANGO_SECURE_SSL_REDIRECT=" ", DJANGO_ALLOWED_HOSTS="", DJANGO_DB_NAME="")
        self.assertTrue(values["ssl_redirect"])
        self.assertEqual(values["allowed_hosts"], ["localhost", "127.0.0.1"])
        self.assertEqual(values["engine"], "django.db.backends.sqlite3")

    def test_results_token_from_environment(self):
        self.assertEqual(self.settings_for(DJANGO_SECRET_KEY=SECRET)["results_token"], "")
        self.assertEqual(self.settings_for(DJANGO_SECRET_KEY=SECRET, DJANGO_RESULTS_TOKEN="tok en")["results_token"], "tok en")

    def test_release_from_environment(self):
        self.assertEqual(self.settings_for(DJANGO_DEBUG="1", WEBLAB_RELEASE="r-env")["release"], "r-env")

    def test_unknown_boolean_is_an_error(self):
        environ = clean_environ(DJANGO_SETTINGS_MODULE="weblab_site.settings", DJANGO_DEBUG="maybe")
        result = run_python(["-c", SETTINGS_PROBE], environ, PROJECT_DIR)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("DJANGO_DEBUG must be 1/0", result.stderr)

    def test_check_deploy_is_silent_with_production_settings(self):
        result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], clean_environ(DJANGO_SECRET_KEY=SECRET), PROJECT_DIR)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("no issues (0 silenced)", result.stdout)

    def test_check_deploy_flags_plain_http_unless_silenced(self):
        plain_http = {"DJANGO_SECRET_KEY": SECRET, "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_CSRF_COOKIE_SECURE": "0"}
        args = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]
        flagged = run_python(args, clean_environ(**plain_http), PROJECT_DIR)
        self.assertNotEqual(flagged.returncode, 0)
        self.assertIn("security.W008", flagged.stderr)
        self.assertIn("security.W016", flagged.stderr)
        silenced = run_python(args, clean_environ(DJANGO_SILENCED_CHECKS="security.W008,security.W016", **plain_http), PROJECT_DIR)
        self.assertEqual(silenced.returncode, 0, silenced.stderr)
        self.assertIn("no issues (2 silenced)", silenced.stdout)


class DeployedReleaseTests(SimpleTestCase):
    """The project copied into releases/NAME with `current` and shared/ beside it, as the app
    role lays it out, then migrated, collected, checked and probed by manage.py."""

    def setUp(self):
        self.root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.root)
        ignore = shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles", "media", "settings_local.py")
        self.release = self.root / "releases" / "20250101T120000-abc1234"
        shutil.copytree(PROJECT_DIR, self.release, ignore=ignore)
        (self.root / "shared" / "media").mkdir(parents=True)
        (self.root / "current").symlink_to(self.release)
        self.environ = clean_environ(
            DJANGO_SECRET_KEY=SECRET,
            DJANGO_SQLITE_PATH=str(self.root / "shared" / "db.sqlite3"),
            DJANGO_STATIC_ROOT=str(self.release / "staticfiles"),
            DJANGO_MEDIA_ROOT=str(self.root / "shared" / "media"),
        )

    def manage(self, *args):
        result = run_python([str(self.root / "current" / "manage.py")] + list(args), self.environ, self.root / "current")
        self.assertEqual(result.returncode, 0, "manage.py %s: %s%s" % (" ".join(args), result.stdout, result.stderr))
        return result.stdout

    def test_release_migrates_collects_checks_and_reports_its_name(self):
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput")
        self.assertTrue((self.release / "staticfiles" / "lab" / "site.css").is_file())
        self.manage("check", "--deploy", "--fail-level", "WARNING")
        body = json.loads(self.manage("health"))
        self.assertEqual(body, {"release": "20250101T120000-abc1234", "database": True, "cache": True, "status": "ok"})

    def test_results_migration_applies_to_an_existing_database(self):
        self.manage("migrate", "--noinput", "lab", "0001")
        script = "import django; django.setup(); from lab.models import Experiment; Experiment.objects.create(name='before 0002')"
        result = run_python(["-c", script], dict(self.environ, DJANGO_SETTINGS_MODULE="weblab_site.settings"), self.root / "current")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("Applying lab.0002_result... OK", self.manage("migrate", "--noinput"))
        self.assertIn("[X] 0002_result", self.manage("showmigrations", "lab"))
        self.assertIn("before 0002", self.manage("shell", "-c", "from lab.models import Experiment; print(Experiment.objects.get().name)"))

    def test_settings_local_from_shared_is_applied(self):
        shared = self.root / "shared" / "settings_local.py"
        shared.write_text('WEBLAB_RELEASE = "named-in-settings-local"\nALLOWED_HOSTS = ["lab.example.org"]\n')
        (self.release / "weblab_site" / "settings_local.py").symlink_to(shared)
        self.manage("migrate", "--noinput")
        self.assertEqual(json.loads(self.manage("health"))["release"], "named-in-settings-local")
        result = run_python([str(self.root / "current" / "manage.py"), "health", "--host", "localhost"], self.environ, self.root)
        self.assertIn("answered 400", result.stderr)

    def test_dangling_settings_local_link_is_an_error(self):
        (self.release / "weblab_site" / "settings_local.py").symlink_to(self.root / "shared" / "missing.py")
        result = run_python([str(self.root / "current" / "manage.py"), "check"], self.environ, self.root)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("settings_local", result.stderr)
