"""Tests of uvsite: run with `python manage.py test` (see examples/README.md).

They use whatever database and cache the environment configures (SQLite and local memory by
default, PostgreSQL and Redis when DJANGO_DB_NAME and REDIS_URL are set), except where a test
needs a cache that is down. The translation tests compile the German catalogue into a
temporary directory, never into the source tree; they need gettext's msgfmt. The deploy tests
run manage.py in child processes from a copy of the project laid out as the app role lays out
releases, with an override settings module as the role renders it.
"""
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import SkipTest

from django.conf import settings
from django.core.management import call_command
from django.test import SimpleTestCase, TestCase, override_settings

from notes.models import Note
from notes.tasks import add_note
from uvsite import celery_app
from uvsite.release import detect_release

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET = "test-only-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
ENGLISH = "The lab is open."
GERMAN = "Das Labor ist geöffnet."
# Never copied into a release: what local runs and deploys leave behind.
LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.mo", "db.sqlite3", "staticfiles", ".venv", "settings_override.py")


def dead_port():
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def need_msgfmt():
    """Skip the calling test unless gettext's msgfmt (used by compilemessages) is installed."""
    if shutil.which("msgfmt") is None:
        raise SkipTest("gettext's msgfmt is not installed (Debian: apt-get install gettext); "
                       "compilemessages cannot compile the German catalogue")


def child_environ(**values):
    """This process's environment without any uvsite setting, plus values."""
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith(("DJANGO_", "CELERY_", "WEBLAB_")) and name != "REDIS_URL"}
    environ.update(values)
    return environ


def render_override(template, email_host):
    """deploy/settings_override.py.j2 as Ansible renders it: its two expressions substituted.

    The test venv has no Jinja2 or Ansible; the template holds exactly these two expressions,
    and to_json of a string is a valid Python string literal.
    """
    text = template.read_text(encoding="utf-8")
    text = text.replace("{{ ansible_managed | comment }}", "#\n# Ansible managed\n#")
    text = text.replace("{{ uvsite_email_host | string | to_json }}", json.dumps(email_host))
    assert "{{" not in text and "{%" not in text, "the template holds an expression the test does not know"
    return text


class QuietRequestLogs:
    """Mixin: the expected 5xx answers of these tests are not logged to the console."""

    def setUp(self):
        super().setUp()
        for name in ("django.request", "notes.health"):
            logger = logging.getLogger(name)
            self.addCleanup(logger.setLevel, logger.level)
            logger.setLevel(logging.CRITICAL)


class ReleaseDetectionTests(SimpleTestCase):
    def test_name_from_releases_directory(self):
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp, "srv", "releases", "r7", "examples", "uvsite")
            project.mkdir(parents=True)
            self.assertEqual(detect_release(project, environ={}), "r7")

    def test_environment_wins(self):
        self.assertEqual(detect_release(PROJECT_DIR, environ={"WEBLAB_RELEASE": "named"}), "named")


@override_settings(SECURE_SSL_REDIRECT=True)
class HealthTests(QuietRequestLogs, TestCase):
    def test_healthy_answers_200_with_release(self):
        response = self.client.get("/health/", secure=True)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"release": settings.WEBLAB_RELEASE, "database": True, "cache": True, "status": "ok"})

    def test_plain_http_is_not_redirected(self):
        self.assertEqual(self.client.get("/health/").status_code, 200)

    def test_redis_down_answers_503(self):
        caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                              "LOCATION": "redis://uvsite:secret@127.0.0.1:%d/0" % dead_port(),
                              "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
        with self.settings(CACHES=caches):
            response = self.client.get("/health/", secure=True)
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["cache"], False)
        self.assertEqual(response.json()["status"], "degraded")


class TranslationTests(TestCase):
    """/hello/ and / in German only once the catalogue is compiled (as the deploy's build hook does)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = Path(tempfile.mkdtemp())
        cls.addClassCleanup(shutil.rmtree, cls.tmp)
        cls.uncompiled = cls.tmp / "uncompiled" / "locale"
        cls.compiled = cls.tmp / "compiled" / "locale"
        shutil.copytree(PROJECT_DIR / "locale", cls.uncompiled, ignore=LEFTOVERS)
        shutil.copytree(PROJECT_DIR / "locale", cls.compiled, ignore=LEFTOVERS)
        if shutil.which("msgfmt"):
            # compilemessages compiles LOCALE_PATHS and the locale/ directories below the
            # working directory: both point at the temporary copy, never the source tree.
            cwd = os.getcwd()
            os.chdir(cls.compiled.parent)
            try:
                with override_settings(LOCALE_PATHS=[cls.compiled]):
                    call_command("compilemessages", verbosity=0)
            finally:
                os.chdir(cwd)

    def hello(self, locale_dir, path="/hello/", **headers):
        with self.settings(LOCALE_PATHS=[locale_dir]):
            return self.client.get(path, secure=True, **headers)

    def test_compilemessages_writes_the_mo(self):
        need_msgfmt()
        self.assertTrue((self.compiled / "de" / "LC_MESSAGES" / "django.mo").is_file())

    def test_german_from_query_once_compiled(self):
        need_msgfmt()
        response = self.hello(self.compiled, "/hello/?lang=de")
        self.assertEqual(response.content.decode("utf-8"), GERMAN + "\n")
        self.assertEqual(response["Content-Language"], "de")

    def test_german_from_accept_language_once_compiled(self):
        need_msgfmt()
        response = self.hello(self.compiled, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5")
        self.assertEqual(response.content.decode("utf-8"), GERMAN + "\n")

    def test_query_wins_over_accept_language(self):
        need_msgfmt()
        response = self.hello(self.compiled, "/hello/?lang=en", HTTP_ACCEPT_LANGUAGE="de")
        self.assertEqual(response.content.decode("utf-8"), ENGLISH + "\n")

    def test_unknown_query_language_falls_back(self):
        need_msgfmt()
        response = self.hello(self.compiled, "/hello/?lang=xx", HTTP_ACCEPT_LANGUAGE="de")
        self.assertEqual(response.content.decode("utf-8"), GERMAN + "\n")

    def test_english_without_compiled_catalogue(self):
        response = self.hello(self.uncompiled, "/hello/?lang=de")
        self.assertEqual(response.content.decode("utf-8"), ENGLISH + "\n")

    def test_index_greets_in_german(self):
        need_msgfmt()
        response = self.hello(self.compiled, "/", HTTP_ACCEPT_LANGUAGE="de")
        self.assertContains(response, "<h1>%s</h1>" % GERMAN)


class AboutTests(SimpleTestCase):
    def test_reports_hard_coded_email_host(self):
        body = self.client.get("/about/", secure=True).json()
        self.assertEqual(body["email_host"], "smtp.example.org")

    @override_settings(EMAIL_HOST="relay.lab.test")
    def test_reports_overridden_email_host(self):
        self.assertEqual(self.client.get("/about/", secure=True).json()["email_host"], "relay.lab.test")


class TaskTests(TestCase):
    def test_add_note_writes_a_row(self):
        result = add_note.apply(args=["written by celery"])
        note = Note.objects.get(pk=result.get())
        self.assertEqual((note.text, note.release), ("written by celery", settings.WEBLAB_RELEASE))

    def test_task_is_registered_on_the_uvsite_app(self):
        celery_app.loader.import_default_modules()
        self.assertIn("notes.tasks.add_note", celery_app.tasks)

    def test_celery_reads_django_settings(self):
        self.assertEqual(celery_app.main, "uvsite")
        self.assertEqual(celery_app.conf.broker_url, settings.CELERY_BROKER_URL)
        self.assertEqual(celery_app.conf.task_serializer, "json")


SETTINGS_PROBE = """
import json, django
django.setup()
from django.conf import settings
from uvsite import celery_app
print(json.dumps({
    "cache": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
    "cache_location": settings.CACHES["default"].get("LOCATION"),
    "broker": celery_app.conf.broker_url,
    "result_backend": celery_app.conf.result_backend,
}))
"""


class SettingsFromEnvironmentTests(SimpleTestCase):
    """uvsite.settings as a fresh process reads it from the environment."""

    def probe(self, **values):
        environ = child_environ(DJANGO_SETTINGS_MODULE="uvsite.settings")
        environ.setdefault("DJANGO_SECRET_KEY", SECRET)
        environ.update(values)
        return subprocess.run([sys.executable, "-c", SETTINGS_PROBE], cwd=PROJECT_DIR, env=environ,
                              capture_output=True, text=True, timeout=120, check=False)

    def test_redis_url_is_cache_broker_and_result_backend(self):
        url = "redis://uvsite:s3cret@127.0.0.1:6379/0"
        result = self.probe(REDIS_URL=url)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout), {"cache": "RedisCache", "cache_location": url, "broker": url, "result_backend": url})

    def test_celery_urls_of_their_own(self):
        result = self.probe(REDIS_URL="redis://cache@127.0.0.1:6379/0", CELERY_BROKER_URL="redis://celery:pw@127.0.0.1:6379/1",
                            CELERY_RESULT_BACKEND="redis://celery:pw@127.0.0.1:6379/2")
        self.assertEqual(result.returncode, 0, result.stderr)
        body = json.loads(result.stdout)
        self.assertEqual((body["broker"], body["result_backend"]), ("redis://celery:pw@127.0.0.1:6379/1", "redis://celery:pw@127.0.0.1:6379/2"))

    def test_no_redis_url_means_local_memory(self):
        result = self.probe()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["cache"], "LocMemCache")

    def test_secret_key_required_without_debug(self):
        result = self.probe(DJANGO_SECRET_KEY="")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("DJANGO_SECRET_KEY must be set", result.stderr)


REQUEST_PROBE = """
import json
from django.test import Client
client = Client(HTTP_HOST="localhost")
answers = {}
for path in ("/hello/?lang=de", "/about/", "/health/"):
    response = client.get(path, secure=True)
    answers[path] = [response.status_code, response.content.decode("utf-8")]
print(json.dumps(answers))
"""


class DeploySequenceTests(SimpleTestCase):
    """A copy laid out as releases/r42 with the override module, taken through the app role's steps.

    Every step is a manage.py command in a child process, in the order of the deploy:
    check --deploy, migrate, collectstatic, the build hook compilemessages; the pages are
    asked before and after that hook.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = Path(tempfile.mkdtemp())
        cls.addClassCleanup(shutil.rmtree, cls.tmp)
        cls.release = cls.tmp / "app" / "releases" / "r42"
        shutil.copytree(PROJECT_DIR, cls.release, ignore=LEFTOVERS)
        override = render_override(PROJECT_DIR / "deploy" / "settings_override.py.j2", "relay.lab.test")
        (cls.release / "uvsite" / "settings_override.py").write_text(override, encoding="utf-8")
        cls.environ = child_environ(
            DJANGO_SETTINGS_MODULE="uvsite.settings_override",
            DJANGO_SECRET_KEY=SECRET,
            DJANGO_ALLOWED_HOSTS="localhost",
            DJANGO_SQLITE_PATH=str(cls.tmp / "db.sqlite3"),
            DJANGO_STATIC_ROOT=str(cls.tmp / "static"),
        )
        cls.check = cls.manage("check", "--deploy", "--fail-level", "WARNING")
        cls.migrate = cls.manage("migrate", "--noinput")
        cls.collectstatic = cls.manage("collectstatic", "--noinput")
        cls.before = cls.manage("shell", "-c", REQUEST_PROBE)
        cls.compilemessages = cls.manage("compilemessages") if shutil.which("msgfmt") else None
        cls.after = cls.manage("shell", "-c", REQUEST_PROBE)

    @classmethod
    def manage(cls, *argv):
        return subprocess.run([sys.executable, "manage.py", *argv], cwd=cls.release, env=cls.environ,
                              capture_output=True, text=True, timeout=300, check=False)

    def answers(self, result):
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def test_check_deploy_is_silent(self):
        self.assertEqual(self.check.returncode, 0, self.check.stdout + self.check.stderr)
        self.assertIn("no issues", self.check.stdout)

    def test_migrate_creates_the_table(self):
        self.assertEqual(self.migrate.returncode, 0, self.migrate.stdout + self.migrate.stderr)
        self.assertIn("Applying notes.0001_initial", self.migrate.stdout)

    def test_collectstatic_copies_the_stylesheet(self):
        self.assertEqual(self.collectstatic.returncode, 0, self.collectstatic.stderr)
        self.assertTrue((self.tmp / "static" / "notes" / "uvsite.css").is_file())

    def test_english_before_compilemessages(self):
        self.assertEqual(self.answers(self.before)["/hello/?lang=de"], [200, ENGLISH + "\n"])

    def test_german_after_compilemessages(self):
        need_msgfmt()
        self.assertEqual(self.compilemessages.returncode, 0, self.compilemessages.stderr)
        self.assertEqual(self.answers(self.after)["/hello/?lang=de"], [200, GERMAN + "\n"])

    def test_override_module_sets_email_host(self):
        about = json.loads(self.answers(self.after)["/about/"][1])
        self.assertEqual((about["settings_module"], about["email_host"]), ("uvsite.settings_override", "relay.lab.test"))

    def test_health_names_the_release(self):
        status, body = self.answers(self.after)["/health/"]
        self.assertEqual((status, json.loads(body)["release"]), (200, "r42"))
