"""Settings of the weblab demo site.

Everything an operator sets comes from the environment (the app role writes an env file);
examples/README.md lists every variable with its default. An optional settings_local.py next
to this file is applied last.
"""
import importlib
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from weblab_site.release import detect_release

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


DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (only DJANGO_DEBUG=1 runs with a built-in insecure key)")
    SECRET_KEY = "django-insecure-weblab-demo-key-for-debug-runs-only"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# The release this code belongs to: WEBLAB_RELEASE, else read from the path (releases/NAME).
WEBLAB_RELEASE = detect_release(BASE_DIR)

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "lab",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "weblab_site.urls"
WSGI_APPLICATION = "weblab_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "weblab_site.context_processors.release",
            ],
        },
    },
]

# PostgreSQL when DJANGO_DB_NAME is set; SQLite (DJANGO_SQLITE_PATH) otherwise.
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

# memcached when DJANGO_CACHE_LOCATION is set ("127.0.0.1:11211", comma-separated for
# several servers); a per-process local-memory cache otherwise.
CACHE_LOCATION = env_list("DJANGO_CACHE_LOCATION")
if CACHE_LOCATION:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": CACHE_LOCATION,
            "KEY_PREFIX": env_str("DJANGO_CACHE_KEY_PREFIX", "weblab"),
            "TIMEOUT": env_int("DJANGO_CACHE_TIMEOUT", 300),
            "OPTIONS": {
                # A memcached that is down or unreachable makes pages slower (cache misses),
                # never broken: errors become misses, and a lost server is retried soon.
                "connect_timeout": 1,
                "timeout": 1,
                "no_delay": True,
                "ignore_exc": True,
                "retry_attempts": 1,
                "dead_timeout": 5,
            },
        },
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "weblab",
            "KEY_PREFIX": env_str("DJANGO_CACHE_KEY_PREFIX", "weblab"),
            "TIMEOUT": env_int("DJANGO_CACHE_TIMEOUT", 300),
        },
    }

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = env_str("DJANGO_STATIC_URL", "/static/")
STATIC_ROOT = env_path("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles")
MEDIA_URL = env_str("DJANGO_MEDIA_URL", "/media/")
MEDIA_ROOT = env_path("DJANGO_MEDIA_ROOT", BASE_DIR / "media")

# Safe by default: with DJANGO_DEBUG off, `manage.py check --deploy` is silent. A plain-HTTP
# demo turns the redirect and the secure cookies off and names the checks it accepts in
# DJANGO_SILENCED_CHECKS (see examples/README.md). With DJANGO_DEBUG=1 (runserver on a laptop)
# the defaults are off.
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

# Bearer token the task queue's workers send with each result (POST /api/results/); empty:
# the endpoint is disabled and answers 404. Taken as written, like the database password.
RESULTS_TOKEN = os.environ.get("DJANGO_RESULTS_TOKEN", "")

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

# weblab_site/settings_local.py, when present (the app role renders app_settings_local_template
# there, into each release), is applied last: its UPPERCASE names override everything above. A dangling link is an
# error, not a silent skip.
if os.path.lexists(Path(__file__).with_name("settings_local.py")):
    _LOCAL = importlib.import_module("weblab_site.settings_local")
    globals().update({name: value for name, value in vars(_LOCAL).items() if name.isupper()})
