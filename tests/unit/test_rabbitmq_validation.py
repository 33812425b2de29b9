"""Bad weblab.stack.rabbitmq input fails before any work, with a message naming the variable."""

import pytest

SECRET = "Do-Not-Print-Me-5521"

BAD_INPUT = [
    pytest.param({"rabbitmq_users": [{"name": "labapp"}]}, "rabbitmq_users", id="user-without-password"),
    pytest.param({"rabbitmq_users": [{"name": "labapp", "password": SECRET, "state": "gone"}]},
                 "rabbitmq_users", id="user-unknown-state"),
    pytest.param({"rabbitmq_vhosts": [{"name": "lab", "state": "maybe"}]}, "rabbitmq_vhosts", id="vhost-unknown-state"),
    pytest.param({"rabbitmq_consumer_timeout": "long"}, "rabbitmq_consumer_timeout", id="timeout-not-a-number"),
    pytest.param({"rabbitmq_consumer_timeout": 10}, "rabbitmq_consumer_timeout", id="timeout-too-short"),
    pytest.param({"rabbitmq_port": 70000}, "rabbitmq_port", id="port-out-of-range"),
    pytest.param({"rabbitmq_management_enabled": "perhaps"}, "rabbitmq_management_enabled", id="bool-not-a-bool"),
    pytest.param({"rabbitmq_nodename": "rabbit"}, "rabbitmq_nodename", id="nodename-without-host"),
    pytest.param({"rabbitmq_dist_listen_address": "::1"}, "rabbitmq_dist_listen_address", id="dist-address-not-ipv4"),
    # rabbit@localhost resolves to 127.0.0.1 only: the CLI tools would not find the node.
    pytest.param({"rabbitmq_dist_listen_address": "10.0.0.1"}, "rabbitmq_dist_listen_address",
                 id="dist-address-not-where-the-node-name-resolves"),
    pytest.param({"rabbitmq_erlang_cookie": SECRET}, "rabbitmq_erlang_cookie", id="cookie-not-alphanumeric"),
    pytest.param({"rabbitmq_users": [{"name": "labapp", "password": SECRET, "permissions": [{"vhost": "nowhere"}]}]},
                 "rabbitmq_users", id="permission-on-unmanaged-vhost"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named):
    result = refusals.of(variables)
    result.assert_refused(named)
    assert SECRET not in result.output


def test_good_input_passes_validation(run_role):
    result = run_role("rabbitmq", {
        "rabbitmq_vhosts": [{"name": "lab"}],
        "rabbitmq_users": [{"name": "labapp", "password": SECRET, "permissions": [{"vhost": "lab"}]},
                           {"name": "old", "state": "absent"}],
    }, "--tags", "rabbitmq_validate")
    assert result.returncode == 0, result.output
    assert SECRET not in result.output
