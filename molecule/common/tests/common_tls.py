"""The test CA of this scenario (prepare.yml makes it) and a TLS probe against it, shared by
test_common.py and test_common_ca_removal.py."""

import json
import os
import re

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CA_NAME = "weblab-test-ca"
TEST_CA_FILE = f"/usr/local/share/ca-certificates/{TEST_CA_NAME}.crt"
# update-ca-certificates links each installed certificate into /etc/ssl/certs (then hashes it).
TEST_CA_BUNDLE_LINK = f"/etc/ssl/certs/{TEST_CA_NAME}.pem"
SERVER_DIR = "/root/weblab-test-tls"


def the_test_ca_pem():
    """The PEM block of the test CA, as prepare.yml wrote it on the controller."""
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "test-ca", "ca.crt")
    with open(path, encoding="ascii") as pem:
        block = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem.read(), re.S)
    assert block, f"{path} holds no PEM certificate"
    return block.group(0)


def tls_probe(host):
    """A TLS handshake inside the container, from a client using the system trust store to a
    loopback server with the certificate the test CA signed (../tls_probe.py)."""
    with open(os.path.join(SCENARIO, "tls_probe.py"), encoding="utf-8") as script:
        out = host.run("python3 -c %s %s %s", script.read(),
                       f"{SERVER_DIR}/server.crt", f"{SERVER_DIR}/server.key")
    assert out.rc == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def trust_store_state(host):
    """What the failure message needs: the extra CA files and their links in /etc/ssl/certs."""
    out = host.run("ls -l /usr/local/share/ca-certificates/ && ls -l /etc/ssl/certs | grep -i weblab")
    return f"--- trust store ---\n{out.stdout}{out.stderr}"
