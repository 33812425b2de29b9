"""Settings of the weblab task queue.

Everything an operator sets comes from the environment (the app role writes an env file);
examples/README.md lists every variable with its default. The DJANGO_* names mean what they
mean for examples/site; CELERY_BROKER_URL and the TASKQUEUE_* names are this project's own.
"""
import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from taskqueue.release import detect_release

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_str(name, default=""):
    """Return the variable; unset or blank means default."""
    return os.environ.get(name, "").strip() or default


def env_bool(name, default):
    """Return the variable as a boolean; unset or blank means default, anything unknown is an error."""
    value = os.environ.get(name, "")
    word = value.strip().lower()
    if not word:
        return default
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured("%s must be 1/0, true/false, yes/no or on/off, got %r" % (name, value))


def env_int(name, default):
    """Return the variable as an integer; unset or blank means default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured("%s must be an integer, got %r" % (name, value)) from None


def env_list(name, default=""):
    """Return a comma-separated variable as a list without blanks; unset or blank means default."""
    value = os.environ.get(name, "").strip() or default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name, default):
    """Return the variable as a path; unset or blank means default."""
    value = os.environ.get(name, "").strip()
    return Path(value) if value else default


def env_required(name, debug_default):
    """Return the variable; unset or blank is an error unless DJANGO_DEBUG=1 (then debug_default)."""
    value = env_str(name)
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured("%s must be set (only DJANGO_DEBUG=1 runs without it)" % name)
    return debug_default


DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (only DJANGO_DEBUG=1 runs with a built-in insecure key)")
    SECRET_KEY = "django-insecure-weblab-taskqueue-key-for-debug-runs-only"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# The release this code belongs to: WEBLAB_RELEASE, else read from the path (releases/NAME).
# A worker reports it as the experiment's worker_release.
WEBLAB_RELEASE = detect_release(BASE_DIR)

INSTALLED_APPS = [
    # No static files of its own; installed so the deploy's collectstatic runs (and collects nothing).
    "django.contrib.staticfiles",
    "experiments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # The API's views are CSRF-exempt (bearer tokens, no cookies); anything added later is not.
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "taskqueue.urls"
WSGI_APPLICATION = "taskqueue.wsgi.application"

TEMPLATES = []

# PostgreSQL when DJANGO_DB_NAME is set; SQLite (DJANGO_SQLITE_PATH) otherwise. Web processes
# and workers on other hosts share the PostgreSQL database: the experiment's state lives there.
if env_str("DJANGO_DB_NAME"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": env_str("DJANGO_DB_NAME"),
            "USER": env_str("DJANGO_DB_USER"),
            # Taken as written: a password may begin or end with blanks.
            "PASSWORD": os.environ.get("DJANGO_DB_PASSWORD", ""),
            # Empty host: the local Unix socket (peer authentication).
            "HOST": env_str("DJANGO_DB_HOST"),
            "PORT": env_str("DJANGO_DB_PORT"),
            "CONN_MAX_AGE": env_int("DJANGO_DB_CONN_MAX_AGE", 0),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"connect_timeout": env_int("DJANGO_DB_CONNECT_TIMEOUT", 5)},
        },
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_path("DJANGO_SQLITE_PATH", BASE_DIR / "db.sqlite3"),
        },
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = env_str("DJANGO_STATIC_URL", "/static/")
STATIC_ROOT = env_path("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles")

# Safe by default, as in examples/site: with DJANGO_DEBUG off, `manage.py check --deploy` is silent.
SECURE_BY_DEFAULT = not DEBUG
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", SECURE_BY_DEFAULT)
# Load balancers and the deploy's own probe may ask for /health/ over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000 if SECURE_BY_DEFAULT else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_BY_DEFAULT)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", SECURE_BY_DEFAULT)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", SECURE_BY_DEFAULT)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", SECURE_BY_DEFAULT)
# Only behind a proxy that sets X-Forwarded-Proto itself (nginx: proxy_set_header
# X-Forwarded-Proto $scheme); otherwise a client could claim HTTPS.
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

SILENCED_SYSTEM_CHECKS = env_list("DJANGO_SILENCED_CHECKS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
}

# --- The task queue --------------------------------------------------------------------------

# Bearer token every /api/ request must carry (Authorization: Bearer TOKEN).
TASKQUEUE_API_TOKEN = env_required("TASKQUEUE_API_TOKEN", "taskqueue-debug-token")
# Where the workers write output files: DIR/experiments/<id>/output.csv.
TASKQUEUE_DATA_DIR = Path(env_required("TASKQUEUE_DATA_DIR", str(BASE_DIR / "data")))
# The Celery queue experiments are sent to (the workers consume it: celery worker -Q NAME).
TASKQUEUE_QUEUE = env_str("TASKQUEUE_QUEUE", "experiments")
# The site's results endpoint each finished experiment is POSTed to; empty: no callback.
TASKQUEUE_SITE_RESULTS_URL = env_str("TASKQUEUE_SITE_RESULTS_URL")
# Bearer token of that callback (the site's DJANGO_RESULTS_TOKEN).
TASKQUEUE_SITE_TOKEN = env_str("TASKQUEUE_SITE_TOKEN")
# Seconds the callback waits for the site's answer.
TASKQUEUE_SITE_TIMEOUT = env_int("TASKQUEUE_SITE_TIMEOUT", 10)
if TASKQUEUE_SITE_RESULTS_URL:
    if urlsplit(TASKQUEUE_SITE_RESULTS_URL).scheme not in ("http", "https") or not urlsplit(TASKQUEUE_SITE_RESULTS_URL).netloc:
        raise ImproperlyConfigured("TASKQUEUE_SITE_RESULTS_URL must be an http:// or https:// URL, got %r" % TASKQUEUE_SITE_RESULTS_URL)
    if not TASKQUEUE_SITE_TOKEN:
        raise ImproperlyConfigured("TASKQUEUE_SITE_TOKEN must be set when TASKQUEUE_SITE_RESULTS_URL is")

# Celery (taskqueue/celery.py reads every CELERY_* name below). The broker is RabbitMQ
# (amqp://USER:PASSWORD@HOST:5672/VHOST); with DJANGO_DEBUG=1 and no broker, an in-process
# memory transport (nothing reaches a worker on another process).
CELERY_BROKER_URL = env_required("CELERY_BROKER_URL", "memory://localhost/")
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The state lives in the database: no result backend, no stored results.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# JSON only: a worker never unpickles what the broker hands it.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = TASKQUEUE_QUEUE
# Late acknowledgement, one message at a time: a worker killed mid-run has its experiment
# redelivered (the task is idempotent), and a long run does not hold other messages back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A run lasts at most 600 s of sleeping plus its computation. The hard limit must stay below
# RabbitMQ's consumer_timeout (30 min by default) and above nothing the worker's unit kills
# first (systemd's TimeoutStopSec must exceed it for a warm shutdown).
CELERY_TASK_SOFT_TIME_LIMIT = 840
CELERY_TASK_TIME_LIMIT = 900
CELERY_WORKER_SEND_TASK_EVENTS = False
