"""Bad weblab.stack.postgresql input fails before any work, with a message naming the variable."""

import pytest

SECRET = "Do-Not-Print-Me-7731"
APP_USER = {"name": "labapp", "password": SECRET}

BAD_INPUT = [
    pytest.param({"postgresql_hba_entries": [{"type": "host", "address": "10.0.0.0/8", "method": "md4"}]},
                 "postgresql_hba_entries", id="hba-unknown-auth-method"),
    pytest.param({"postgresql_hba_entries": [{"type": "remote", "method": "scram-sha-256"}]},
                 "postgresql_hba_entries", id="hba-unknown-type"),
    pytest.param({"postgresql_hba_entries": [{"type": "host", "method": "scram-sha-256"}]},
                 "postgresql_hba_entries", id="hba-host-without-address"),
    pytest.param({"postgresql_hba_entries": [{"type": "local", "address": "127.0.0.1/32", "method": "peer"}]},
                 "postgresql_hba_entries", id="hba-local-with-address"),
    pytest.param({"postgresql_hba_entries": [{"type": "host", "user": "all trust", "address": "0.0.0.0/0",
                                              "method": "scram-sha-256"}]},
                 "postgresql_hba_entries", id="hba-field-with-space"),
    pytest.param({"postgresql_hba_entries": [{"type": "local"}]},
                 "postgresql_hba_entries", id="hba-without-method"),
    pytest.param({"postgresql_users": [{"name": "labapp"}]}, "postgresql_users", id="user-without-password"),
    pytest.param({"postgresql_users": [{"name": "labapp", "password": ""}]},
                 "postgresql_users", id="user-with-empty-password"),
    pytest.param({"postgresql_users": [APP_USER, APP_USER]}, "postgresql_users", id="user-twice"),
    pytest.param({"postgresql_users": [dict(APP_USER, state="disabled")]},
                 "postgresql_users", id="user-unknown-state"),
    pytest.param({"postgresql_users": [{"password": SECRET}]}, "postgresql_users", id="user-without-name"),
    pytest.param({"postgresql_users": "labapp"}, "postgresql_users", id="users-given-a-string"),
    pytest.param({"postgresql_users": [dict(APP_USER, databases={"oldlab": "all"})]},
                 "postgresql_users", id="user-databases-given-a-dict"),
    pytest.param({"postgresql_databases": [{"name": "oldlab", "state": "gone"}]},
                 "postgresql_databases", id="database-unknown-state"),
    pytest.param({"postgresql_databases": [{"owner": "labapp"}]}, "postgresql_databases", id="database-without-name"),
    pytest.param({"postgresql_databases": [{"name": "oldlab"}, {"name": "oldlab"}]},
                 "postgresql_databases", id="database-twice"),
    pytest.param({"postgresql_port": "fivefour"}, "postgresql_port", id="port-not-a-number"),
    pytest.param({"postgresql_port": 70000}, "postgresql_port", id="port-out-of-range"),
    pytest.param({"postgresql_listen_addresses": {"127.0.0.1": True}}, "postgresql_listen_addresses",
                 id="listen-addresses-given-a-dict"),
    pytest.param({"postgresql_listen_addresses": ["127.0.0.1' ssl='off"]}, "postgresql_listen_addresses",
                 id="listen-address-with-quote"),
    pytest.param({"postgresql_settings": ["shared_buffers=1GB"]}, "postgresql_settings", id="settings-given-a-list"),
    pytest.param({"postgresql_settings": {"port": 5444}}, "postgresql_settings", id="settings-port"),
    pytest.param({"postgresql_settings": {"password_encryption": "md5"}}, "postgresql_settings",
                 id="settings-password-encryption"),
    pytest.param({"postgresql_settings": {"work_mem = 1MB\nfsync": "off"}}, "postgresql_settings",
                 id="settings-name-injection"),
    pytest.param({"postgresql_settings": {"shared_preload_libraries": ["a", "b"]}}, "postgresql_settings",
                 id="settings-value-a-list"),
    pytest.param({"postgresql_settings": {"application_name": "a\nfsync = off"}}, "postgresql_settings",
                 id="settings-value-with-newline"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named):
    refusals.of(variables).assert_refused(named)


@pytest.mark.parametrize("variables", [
    pytest.param({"postgresql_users": [APP_USER], "postgresql_port": "many"}, id="spec-failure"),
    pytest.param({"postgresql_users": [APP_USER, APP_USER]}, id="role-check-failure"),
    pytest.param({"postgresql_users": [APP_USER, {"name": "x", "password": SECRET}],
                  "postgresql_hba_entries": [{"type": "local", "method": "md4"}]}, id="hba-failure"),
])
def test_failed_validation_never_prints_a_password(run_role, variables):
    result = run_role("postgresql", variables, "-v")
    assert result.returncode != 0, result.output
    assert SECRET not in result.output


def test_good_input_passes_validation(run_role):
    """The same harness accepts valid input, so the failures above are about the input."""
    result = run_role("postgresql", {
        "postgresql_listen_addresses": ["127.0.0.1", "10.1.2.3"],
        "postgresql_port": "5433",
        "postgresql_hba_entries": [
            {"type": "local", "method": "peer", "user": "backup"},
            {"type": "hostssl", "database": "oldlab", "user": "labapp", "address": "10.0.0.0/24",
             "method": "scram-sha-256", "options": "clientcert=verify-full"},
            {"type": "host", "address": "192.168.0.0/16", "method": "md5"},
        ],
        "postgresql_settings": {"shared_buffers": "256MB", "max_connections": 200, "fsync": True,
                                "random_page_cost": 1.1, "application_name": "it's a lab"},
        "postgresql_users": [APP_USER, {"name": "olduser", "state": "absent"},
                             {"name": "report", "password": SECRET, "databases": ["oldlab"]}],
        "postgresql_databases": [{"name": "oldlab", "owner": "labapp"}, {"name": "scratch", "state": "absent"}],
    }, "--tags", "postgresql_validate")
    assert result.returncode == 0, result.output
    assert "Validating arguments against arg spec" in result.stdout
    assert "Check the server settings" in result.stdout
    assert SECRET not in result.output
