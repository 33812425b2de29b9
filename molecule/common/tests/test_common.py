"""Behaviour of weblab.stack.common on a converged host."""

import glob
import os
import re

from common_tls import TEST_CA_BUNDLE_LINK, TEST_CA_FILE, the_test_ca_pem, tls_probe, trust_store_state

DEPLOY_USER = "labdeploy"
DEPLOY_GROUP = "lab"
CONTROLLER_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))


def test_deploy_user_has_its_group_and_home(host):
    user = host.user(DEPLOY_USER)
    assert user.exists
    assert user.group == DEPLOY_GROUP
    assert user.home == "/home/labdeploy"
    assert host.file("/home/labdeploy").is_directory
    assert host.file("/home/labdeploy").user == DEPLOY_USER


def test_deploy_user_has_its_supplementary_groups(host):
    assert "adm" in host.user(DEPLOY_USER).groups


def test_deploy_user_can_run_commands(host):
    out = host.run("runuser -u %s -- sh -c 'cd && id -gn && pwd'", DEPLOY_USER)
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == [DEPLOY_GROUP, "/home/labdeploy"]


def test_extra_package_is_usable(host):
    out = host.run("echo '{\"a\": 1}' | jq .a")
    assert out.stdout.strip() == "1", out.stderr


def test_controller_ca_certificates_are_trusted(host):
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    for path in CONTROLLER_CAS:
        with open(path, encoding="ascii") as pem:
            blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem.read(), re.S)
        assert blocks, f"{path} holds no PEM certificate"
        for block in blocks:
            assert block in bundle, f"{os.path.basename(path)} is not in the system bundle"


def test_pip_installs_into_a_fresh_venv_as_the_deploy_user(host):
    """Proves venv support and CA trust end to end: pip reaches the package index over HTTPS."""
    venv = "/home/labdeploy/verify-venv"
    host.run("rm -rf %s", venv)
    script = (
        f"python3 -m venv {venv} && "
        f"{venv}/bin/pip install --no-cache-dir --disable-pip-version-check -q six && "
        f"{venv}/bin/python -c 'import six; print(six.__version__)'"
    )
    out = host.run("runuser -u %s -- sh -c %s", DEPLOY_USER, script)
    assert out.rc == 0, out.stdout + out.stderr
    assert out.stdout.strip()


def test_test_ca_is_installed_as_given(host):
    installed = host.file(TEST_CA_FILE)
    assert installed.exists, f"{TEST_CA_FILE} is missing\n" + trust_store_state(host)
    assert installed.content_string.strip() == the_test_ca_pem(), trust_store_state(host)
    assert (installed.user, installed.group, installed.mode) == ("root", "root", 0o644)


def test_test_ca_is_linked_into_the_system_store(host):
    link = host.file(TEST_CA_BUNDLE_LINK)
    assert link.is_symlink, f"{TEST_CA_BUNDLE_LINK} is missing\n" + trust_store_state(host)
    assert link.linked_to == TEST_CA_FILE, trust_store_state(host)


def test_test_ca_is_in_the_system_bundle(host):
    in_bundle = the_test_ca_pem() in host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    assert in_bundle, "the test CA is not in the bundle\n" + trust_store_state(host)


def test_server_signed_by_the_test_ca_is_trusted(host):
    """A TLS client with the system trust store verifies a loopback server whose certificate the
    test CA signed (prepare.yml showed the same handshake failing before converge)."""
    result = tls_probe(host)
    assert result["verified"], f"{result}\n{trust_store_state(host)}"
    assert result["reply"] == "hello from the test server\n", result
