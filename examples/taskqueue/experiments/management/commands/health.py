"""`manage.py health`: ask /health/ through the WSGI application, without a server.

Prints the JSON body and exits 0 when the task queue is healthy (HTTP 200), 1 otherwise. The deploy
uses it to prove a release before and after `current` points at it: the request passes
through the same URLconf, middleware and host checks an API request would.
"""
import io
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def first_host(allowed_hosts):
    """A host name the site accepts, for the Host header of the probe."""
    for host in allowed_hosts:
        name = host.lstrip(".")
        if name and "*" not in name:
            return name
    return "localhost"


class Command(BaseCommand):
    help = "Request /health/ through the WSGI application; exit 1 unless it answers 200."

    def add_arguments(self, parser):
        parser.add_argument("--path", default="/health/", help="path to request (default: /health/)")
        parser.add_argument("--host", default=None, help="Host header (default: the first of ALLOWED_HOSTS)")

    def handle(self, *args, **options):
        from taskqueue.wsgi import application

        host = options["host"] or first_host(settings.ALLOWED_HOSTS)
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": options["path"],
            "QUERY_STRING": "",
            "SERVER_NAME": host,
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": host,
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": True,
        }
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer["status"] = status
            return lambda data: None

        chunks = application(environ, start_response)
        try:
            body = b"".join(chunks).decode("utf-8", "replace")
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        self.stdout.write(body)
        if not answer.get("status", "").startswith("200"):
            raise CommandError("%s answered %s" % (options["path"], answer.get("status", "nothing")))
