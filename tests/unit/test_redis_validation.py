"""Bad weblab.stack.redis input fails before any work, with a message naming the variable."""

import pytest

SECRET = "Do-Not-Print-Me-5521-redis"
ADMIN = {"redis_admin_password": "Admin-Secret-0123456789"}
APP = {"name": "weblab", "password": SECRET}

BAD_INPUT_BASE = ADMIN

BAD_INPUT = [
    pytest.param({"redis_admin_password": ""}, "redis_admin_password", "at least 16 characters",
                 id="admin-password-missing"),
    pytest.param({"redis_admin_password": "short-pass"}, "redis_admin_password", "at least 16 characters",
                 id="admin-password-too-short"),
    pytest.param({"redis_admin_password": "has a blank in it 0123"}, "redis_admin_password", "without blanks",
                 id="admin-password-with-blank"),
    pytest.param({"redis_admin_user": "default"}, "redis_admin_user", "always disabled", id="admin-is-default"),
    pytest.param({"redis_users": [{"name": "weblab"}]}, "redis_users", "password", id="user-without-password"),
    pytest.param({"redis_users": [{"name": "weblab", "password": "tooshort"}]}, "redis_users",
                 "at least 16 characters", id="user-password-too-short"),
    pytest.param({"redis_users": [dict(APP, name="default")]}, "redis_users", "default", id="user-named-default"),
    pytest.param({"redis_users": [dict(APP, name="admin")]}, "redis_users", "redis_admin_user",
                 id="user-named-like-the-admin"),
    pytest.param({"redis_users": [APP, APP]}, "redis_users", "unique", id="user-twice"),
    pytest.param({"redis_users": [dict(APP, name="web lab")]}, "redis_users", "web lab", id="user-name-with-blank"),
    pytest.param({"redis_users": [dict(APP, state="gone")]}, "redis_users", "redis_users", id="user-unknown-state"),
    pytest.param({"redis_users": [dict(APP, commands=["+@all", "flushall"])]}, "redis_users", "flushall",
                 id="command-rule-without-sign"),
    pytest.param({"redis_users": [dict(APP, key_patterns=["cache:* celery*"])]}, "redis_users", "not ACL rules",
                 id="key-pattern-with-blank"),
    pytest.param({"redis_denied_commands": ["-flushall"]}, "redis_denied_commands", "without + or -",
                 id="denied-command-with-sign"),
    pytest.param({"redis_bind_addresses": []}, "redis_bind_addresses", "at least one address", id="no-bind-address"),
    pytest.param({"redis_bind_addresses": ["::1"]}, "redis_bind_addresses", "Never ::1", id="bind-ipv6-loopback"),
    pytest.param({"redis_bind_addresses": ["0.0.0.0"]}, "redis_bind_addresses", "every interface",
                 id="bind-every-interface"),
    pytest.param({"redis_bind_addresses": ["203.0.113.5"]}, "redis_bind_addresses", "private",
                 id="bind-public-address"),
    pytest.param({"redis_bind_addresses": "127.0.0.1 10.0.0.5"}, "redis_bind_addresses", "redis_bind_addresses",
                 id="bind-addresses-as-one-string"),
    pytest.param({"redis_persistence": "both"}, "redis_persistence", "redis_persistence", id="persistence-unknown"),
    pytest.param({"redis_maxmemory": "lots"}, "redis_maxmemory", "is not a memory size", id="maxmemory-not-a-size"),
    pytest.param({"redis_maxmemory": "256tb"}, "redis_maxmemory", "is not a memory size", id="maxmemory-unknown-unit"),
    pytest.param({"redis_maxmemory": "0"}, "redis_maxmemory", "no limit", id="maxmemory-unlimited"),
    pytest.param({"redis_maxmemory_policy": "lru"}, "redis_maxmemory_policy", "redis_maxmemory_policy",
                 id="policy-unknown"),
    pytest.param({"redis_port": 70000}, "redis_port", "1 to 65535", id="port-out-of-range"),
    pytest.param({"redis_port": "six"}, "redis_port", "redis_port", id="port-not-a-number"),
]


@pytest.mark.parametrize(("variables", "named", "says"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named, says):
    result = refusals.of(variables)
    result.assert_refused(named, says)
    assert SECRET not in result.output
    assert ADMIN["redis_admin_password"] not in result.output


def test_good_input_passes_validation(run_role):
    """The same harness accepts a full, valid set, so the failures above are about the input."""
    result = run_role("redis", dict(ADMIN, **{
        "redis_bind_addresses": ["127.0.0.1", "10.0.0.5", "172.16.0.9", "192.168.1.2"],
        "redis_users": [dict(APP, key_patterns=["cache:*", "celery*"], channel_patterns=[], commands=["+@all", "-@dangerous", "+info"]),
                        {"name": "old", "state": "absent"}],
        "redis_persistence": "aof", "redis_maxmemory": "1GB", "redis_maxmemory_policy": "noeviction",
    }), "--tags", "redis_validate")
    assert result.returncode == 0, result.output
    assert "Check the bind addresses" in result.stdout
    assert SECRET not in result.output
    assert ADMIN["redis_admin_password"] not in result.output
