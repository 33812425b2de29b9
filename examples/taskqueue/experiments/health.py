"""Probes behind /health/: does the database answer, does the broker accept a connection."""
import logging

from kombu import Connection

LOG = logging.getLogger(__name__)
BROKER_TIMEOUT = 3


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


def broker_answers(url):
    """Open a connection to the broker (AMQP: TCP, TLS if asked, login, vhost) and close it."""
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT) as broker:
            broker.connect()
            return bool(broker.connected)
    except Exception as exc:
        LOG.warning("health: broker %s did not answer: %s", Connection(url).as_uri(), exc)
        return False


def report(release, connection, broker_url):
    """Return (status code, body) of a health check."""
    database = database_answers(connection)
    broker = broker_answers(broker_url)
    healthy = database and broker
    body = {
        "release": release,
        "database": database,
        "broker": broker,
        "status": "ok" if healthy else "degraded",
    }
    return (200 if healthy else 503), body
