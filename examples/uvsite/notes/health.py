"""Probes behind /health/: does the database answer, does the cache keep what it is given."""
import logging
import uuid

LOG = logging.getLogger(__name__)


def database_answers(connection):
    """Run SELECT 1 through the Django connection; True only when it returns 1."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row = cursor.fetchone()
    except Exception as exc:
        LOG.warning("health: database %s did not answer: %s", connection.alias, exc)
        return False
    return row is not None and row[0] == 1


def cache_answers(cache):
    """Store a fresh value and read it back; True only when the same value comes back."""
    key = "uvsite-health-%s" % uuid.uuid4().hex
    value = uuid.uuid4().hex
    try:
        cache.set(key, value, timeout=30)
        answered = cache.get(key) == value
        cache.delete(key)
    except Exception as exc:
        LOG.warning("health: cache did not answer: %s", exc)
        return False
    if not answered:
        LOG.warning("health: cache did not return the value it was given")
    return answered


def report(release, connection, cache):
    """Return (status code, body) of a health check."""
    database = database_answers(connection)
    cache_ok = cache_answers(cache)
    healthy = database and cache_ok
    body = {
        "release": release,
        "database": database,
        "cache": cache_ok,
        "status": "ok" if healthy else "degraded",
    }
    return (200 if healthy else 503), body
