"""One TLS handshake on loopback, run inside a test container (prepare.yml and the tests).

    python3 tls_probe.py SERVER_CERT SERVER_KEY [CAFILE]

Serves SERVER_CERT on 127.0.0.1 (a free port) and connects to it as "localhost", verifying the
server with the system trust store, as apt, git and pip do (or with CAFILE only, when given).
Prints one JSON object: {"verified": true, "reply": ...} or {"verified": false, "error": ...}.
"""

import json
import socket
import ssl
import sys
import threading


def serve(listener, context):
    conn = listener.accept()[0]
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hello from the test server\n")
    except (ssl.SSLError, OSError):
        # The client refused our certificate: that is the client's answer to report.
        pass


def main(cert, key, cafile=None):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=serve, args=(listener, server_context), daemon=True)
    thread.start()
    # cafile None: OpenSSL's default paths, Debian's /etc/ssl/certs and its bundle.
    client_context = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client_context.wrap_socket(raw, server_hostname="localhost") as tls:
                result = {"verified": True, "reply": tls.recv(100).decode()}
    except ssl.SSLCertVerificationError as error:
        result = {"verified": False, "error": error.verify_message, "detail": str(error)}
    thread.join(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
