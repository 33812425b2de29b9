"""A stand-in app server for the nginx scenario: HTTP on a unix socket, as gunicorn listens.

Every answer is JSON naming this backend and echoing the request's path and the headers nginx
forwards, so a test can tell an answer of the app from one nginx made itself.
Usage: http_backend.py SOCKET
"""

import http.server
import json
import os
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "backend": "http",
            "path": self.path,
            "host": self.headers.get("Host"),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", "http")
        if self.path.startswith("/own-headers"):
            # A view that relaxes a security header: nginx must leave the app's value alone.
            self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix"


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if __name__ == "__main__":
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    with Server(path, Handler) as server:
        os.chmod(path, 0o666)
        server.serve_forever()
