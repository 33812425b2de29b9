"""A stand-in web server behind the balancer sites of the nginx scenario: HTTPS on one loopback
port and plain HTTP on another, as the web servers a balancer passes requests to.

Every answer is JSON naming this web server and echoing the request's path, the headers the
balancer forwards, and on HTTPS the TLS version and server name (SNI) the balancer used, so a
test can tell which web server answered and how it was reached.
Usage: web_backend.py NAME HTTPS_PORT HTTP_PORT CERTIFICATE KEY
"""

import http.server
import json
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 with Content-Length: the balancer may keep its connections (keepalive).
    protocol_version = "HTTP/1.1"

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            # In the connection's own thread: a slow handshake holds up no other connection.
            self.request.do_handshake()
        super().setup()

    def do_GET(self):
        tls = isinstance(self.connection, ssl.SSLSocket)
        body = json.dumps({
            "backend": self.server.name,
            "path": self.path,
            "host": self.headers.get("Host"),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
            "tls_version": self.connection.version() if tls else None,
            "sni": getattr(self.connection, "weblab_sni", None) if tls else None,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name, port, context=None):
        self.name = name
        self.context = context
        super().__init__(("127.0.0.1", port), Handler)

    def get_request(self):
        sock, address = self.socket.accept()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


def remember_server_name(sock, server_name, _context):
    sock.weblab_sni = server_name


def main():
    name, https_port, http_port, certificate, key = sys.argv[1:6]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    context.sni_callback = remember_server_name
    plain = Server(name, int(http_port))
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    Server(name, int(https_port), context).serve_forever()


if __name__ == "__main__":
    main()
