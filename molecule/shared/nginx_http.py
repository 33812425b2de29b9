"""An HTTP(S) client run inside the test host, so requests reach nginx on its loopback the way a
browser would: any Host header, any TLS server name, and an answer or its absence as JSON."""

import json

HTTP_PORT = 80
HTTPS_PORT = 443

CLIENT = r'''
import http.client, json, socket, ssl, sys

spec = json.loads(sys.argv[1])
out = {}
try:
    sock = socket.create_connection(("127.0.0.1", spec["port"]), timeout=10)
    if spec.get("tls"):
        context = ssl.create_default_context(cafile=spec.get("cafile"))
        sock = context.wrap_socket(sock, server_hostname=spec["sni"])
        out["tls_version"] = sock.version()
    lines = ["%s %s HTTP/1.1" % (spec["method"], spec["path"]), "Host: " + spec["host"], "Connection: close"]
    lines += ["%s: %s" % tuple(pair) for pair in spec.get("headers", [])]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = http.client.HTTPResponse(sock)
    response.begin()
    out["status"] = response.status
    out["headers"] = [[name.lower(), value] for name, value in response.getheaders()]
    out["body"] = response.read().decode("utf-8", "replace")
except ssl.SSLError as error:
    out["tls_error"] = str(error)
except (http.client.RemoteDisconnected, ConnectionResetError) as error:
    # The server closed the connection without a single byte of answer (nginx's 444).
    out["closed"] = type(error).__name__
print(json.dumps(out))
'''


class Answer(dict):
    """The client's JSON: status, headers ([name, value], names lower-case), body; or closed /
    tls_error when no answer came."""

    def header(self, name):
        """The values of header NAME, in order (a list: a header sent twice shows twice)."""
        return [value for key, value in self.get("headers", []) if key == name.lower()]

    def json(self):
        return json.loads(self["body"])


def journal(host, *units):
    """The last lines of nginx's journal and the UNITS' (the app server behind it)."""
    names = ["nginx", *units] if units else ["nginx", "weblab-backend"]
    return host.run("journalctl --no-pager -n 30 " + " ".join("-u " + name for name in names)).stdout


def request(host, path="/", host_header="weblab.test", tls=False, sni=None, cafile=None, method="GET",
            headers=(), units=()):
    """METHOD PATH with HOST_HEADER to nginx on 127.0.0.1, over TLS (server name SNI, checked
    against CAFILE) when TLS."""
    spec = {"port": HTTPS_PORT if tls else HTTP_PORT, "tls": tls, "sni": sni or host_header, "cafile": cafile,
            "method": method, "path": path, "host": host_header, "headers": [list(h) for h in headers]}
    out = host.run("python3 -c %s %s", CLIENT, json.dumps(spec))
    assert out.rc == 0, out.stderr + journal(host, *units)
    return Answer(json.loads(out.stdout))
