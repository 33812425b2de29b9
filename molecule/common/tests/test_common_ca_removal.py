"""common_extra_ca_certificates with state: absent takes a CA out of the system trust store.

The fixture retires the scenario's test CA (steps/remove_test_ca.yml) once per host for the
tests of this module, and converges again afterwards, so the host ends as converged and the
tests of other modules see the CA installed whatever the order.
"""

import os

import pytest
from common_tls import SCENARIO, TEST_CA_BUNDLE_LINK, TEST_CA_FILE, the_test_ca_pem, tls_probe, trust_store_state
from weblab_testinfra import run_playbook


@pytest.fixture(name="retired", scope="module")
def fixture_retired(host):
    # Installed before, or its absence afterwards would prove nothing.
    assert host.file(TEST_CA_FILE).exists, "the test CA is not installed to begin with\n" + trust_store_state(host)
    rc, output = run_playbook(os.path.join(SCENARIO, "steps", "remove_test_ca.yml"), host=host)
    assert rc == 0, output
    yield host
    rc, output = run_playbook(os.path.join(SCENARIO, "converge.yml"), host=host)
    assert rc == 0, output


def test_retired_ca_file_is_gone(retired):
    assert not retired.file(TEST_CA_FILE).exists, f"{TEST_CA_FILE} is still there\n" + trust_store_state(retired)


def test_retired_ca_is_unlinked_from_the_system_store(retired):
    # is_symlink too: a link left dangling does not "exist".
    link = retired.file(TEST_CA_BUNDLE_LINK)
    assert not (link.exists or link.is_symlink), f"{TEST_CA_BUNDLE_LINK} is still there\n" + trust_store_state(retired)


def test_retired_ca_is_not_in_the_system_bundle(retired):
    in_bundle = the_test_ca_pem() in retired.file("/etc/ssl/certs/ca-certificates.crt").content_string
    assert not in_bundle, "the test CA is still in the bundle\n" + trust_store_state(retired)


def test_server_signed_by_the_retired_ca_is_refused(retired):
    result = tls_probe(retired)
    assert not result["verified"], f"{result}\n{trust_store_state(retired)}"
    assert result["error"] == "unable to get local issuer certificate", result
