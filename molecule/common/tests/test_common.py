"""Behaviour of weblab.stack.common on a converged host."""

import glob
import os
import re

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
