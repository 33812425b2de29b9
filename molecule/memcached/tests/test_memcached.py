"""Behaviour of weblab.stack.memcached on a converged host (memcached_max_item_size: 2m).

The checks talk to memcached over its text protocol with a small client run inside the
container (CLIENT below), as an application would.
"""

import json

import pytest

PORT = 11211
ITEM_SIZE_MAX = 2 * 1024 * 1024
SETTINGS = {
    "item_size_max": str(ITEM_SIZE_MAX),
    "maxbytes": str(32 * 1024 * 1024),
    "maxconns": "256",
    "num_threads": "2",
    "tcpport": str(PORT),
    "udpport": "0",
}

# argv: set KEY SIZE | stats-settings | udp-get KEY | tcp-connect ADDRESS; prints JSON.
CLIENT = r'''
import hashlib, json, socket, sys

HOST, PORT = "127.0.0.1", 11211


class Conn:
    def __init__(self, host=HOST):
        self.sock = socket.create_connection((host, PORT), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("memcached closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def exactly(self, size):
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data


def payload(key, size):
    """size bytes that differ everywhere (CR and LF included), the same for a key and size."""
    out, counter = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(b"%s-%d" % (key.encode(), counter)).digest()
        counter += 1
    return bytes(out[:size])


def get(conn, key):
    conn.send(b"get %s\r\n" % key.encode())
    header = conn.line()
    if header == "END":
        return None
    _, _, _, size = header.split()
    data = conn.exactly(int(size) + 2)[:-2]
    end = conn.line()
    assert end == "END", end
    return data


def cmd_set(key, size):
    size = int(size)
    data = payload(key, size)
    conn = Conn()
    conn.send(b"delete %s\r\n" % key.encode())
    conn.line()
    conn.send(b"set %s 0 0 %d\r\n" % (key.encode(), size) + data + b"\r\n")
    reply = conn.line()
    stored = get(conn, key)
    return {"reply": reply, "stored": stored is not None,
            "stored_size": None if stored is None else len(stored),
            "identical": stored == data}


def cmd_stats_settings():
    conn = Conn()
    conn.send(b"stats settings\r\n")
    settings = {}
    while True:
        line = conn.line()
        if line == "END":
            return settings
        _, name, value = line.split(" ", 2)
        settings[name] = value


def cmd_udp_get(key):
    # A memcached UDP frame: request id, sequence, datagram count, reserved; then the command.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    sock.connect((HOST, PORT))
    sock.send(b"\x00\x01\x00\x00\x00\x01\x00\x00" + b"get %s\r\n" % key.encode())
    try:
        return {"answer": sock.recv(65536).hex()}
    except ConnectionRefusedError:
        return {"answer": None, "error": "refused"}
    except socket.timeout:
        return {"answer": None, "error": "timeout"}


def cmd_tcp_connect(address):
    try:
        Conn(address).send(b"version\r\n")
        return {"connected": True}
    except OSError as error:
        return {"connected": False, "error": type(error).__name__}


command = sys.argv[1].replace("-", "_")
print(json.dumps(globals()["cmd_" + command](*sys.argv[2:])))
'''


def journal(host):
    return host.run("journalctl -u memcached --no-pager -n 40").stdout


def client(host, *args):
    out = host.run("python3 -c %s " + " ".join(["%s"] * len(args)), CLIENT, *args)
    assert out.rc == 0, out.stderr + journal(host)
    return json.loads(out.stdout)


def listeners(host, protocol):
    """Local addresses of the sockets listening on PORT, from ss (-t TCP, -u UDP)."""
    out = host.run("ss -Hln%s", protocol)
    assert out.rc == 0, out.stderr
    local = [line.split()[3] for line in out.stdout.splitlines() if line.strip()]
    return sorted(addr.rsplit(":", 1)[0] for addr in local if addr.rsplit(":", 1)[1] == str(PORT))


def test_memcached_is_running_and_enabled(host):
    service = host.service("memcached")
    assert service.is_running, journal(host)
    assert service.is_enabled


def test_config_file_is_managed(host):
    config = host.file("/etc/memcached.conf")
    assert config.user == "root"
    assert config.mode == 0o644
    assert config.content_string.startswith("#"), config.content_string[:200]
    header = config.content_string.splitlines()[:3]
    assert any("Ansible managed" in line for line in header), header


def test_value_of_1_5_mb_round_trips(host):
    result = client(host, "set", "fragment-1.5m", str(1536 * 1024))
    assert result["reply"] == "STORED", result
    assert result["stored_size"] == 1536 * 1024, result
    assert result["identical"], result


def test_value_of_3_mb_is_refused(host):
    result = client(host, "set", "fragment-3m", str(3 * 1024 * 1024))
    assert result["reply"].startswith("SERVER_ERROR object too large"), result
    assert not result["stored"], result


def test_value_just_above_the_item_size_is_refused(host):
    """The limit is the configured one, not memcached's default of 1m or some other size."""
    result = client(host, "set", "fragment-2m-plus", str(ITEM_SIZE_MAX + 1))
    assert result["reply"].startswith("SERVER_ERROR object too large"), result


@pytest.mark.parametrize(("name", "expected"), sorted(SETTINGS.items()))
def test_stats_settings_show_the_configuration(host, name, expected):
    settings = client(host, "stats-settings")
    assert settings.get(name) == expected, {k: settings.get(k) for k in SETTINGS}


def test_nothing_listens_on_udp_11211(host):
    assert listeners(host, "u") == []


def test_udp_request_gets_no_answer(host):
    result = client(host, "udp-get", "anything")
    assert result["answer"] is None, result


def test_tcp_11211_listens_only_on_loopback(host):
    assert listeners(host, "t") == ["127.0.0.1"]


def test_container_address_is_refused(host):
    addresses = [a for a in host.run("hostname -I").stdout.split() if not a.startswith("127.")]
    assert addresses, "the container has no non-loopback address to try"
    for address in addresses:
        result = client(host, "tcp-connect", address)
        assert not result["connected"], (address, result)
