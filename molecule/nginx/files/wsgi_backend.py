"""A stand-in app for the nginx scenario under uWSGI (uwsgi protocol on a unix socket).

Every answer is JSON naming this backend and echoing the request's path and the headers nginx
forwards, so a test can tell an answer of the app from one nginx made itself.
"""

import json


def application(environ, start_response):
    body = json.dumps({
        "backend": "uwsgi",
        "path": environ.get("REQUEST_URI", environ.get("PATH_INFO")),
        "host": environ.get("HTTP_HOST"),
        "x_forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
        "x_forwarded_proto": environ.get("HTTP_X_FORWARDED_PROTO"),
    }).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Backend", "uwsgi")]
    if environ.get("PATH_INFO", "").startswith("/own-headers"):
        # A view that relaxes a security header: nginx must leave the app's value alone.
        headers.append(("X-Frame-Options", "SAMEORIGIN"))
    start_response("200 OK", headers)
    return [body]
