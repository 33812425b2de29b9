"""Behaviour of weblab.stack.postgresql on a converged host (see ../molecule.yml)."""

import os
import uuid

import pytest
from weblab_testinfra import run_playbook, superuser_sql

PORT = 5433
APP = ("labapp", "app-Secret-42")
REPORT = ("labreport", "report-Secret-42")
DATABASE = "oldlab"
# Debian ships one PostgreSQL per release; the role must have found it, not assumed it.
VERSIONS = {"12": "15", "13": "17"}


@pytest.fixture(name="version")
def fixture_version(host):
    return VERSIONS[host.system_info.release.split(".")[0]]


def logs(host, version):
    """The server's own log and the unit's journal, for failure messages."""
    log = host.run("tail -n 25 /var/log/postgresql/postgresql-%s-main.log", version)
    journal = host.run("journalctl --no-pager -n 15 -u postgresql@%s-main", version)
    return f"\n--- postgres log ---\n{log.stdout}\n--- journal ---\n{journal.stdout}"


def tcp_psql(host, user, password, sql, database=DATABASE):
    """psql over TCP to 127.0.0.1 with a password, as an application connects."""
    return host.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -X -w -At -v ON_ERROR_STOP=1 "
        "-h 127.0.0.1 -p %s -U %s -d %s -c %s",
        password, str(PORT), user, database, sql)


def admin_sql(host, sql, database="postgres"):
    """psql as the postgres superuser over the Unix socket (peer), as Ansible administers."""
    return superuser_sql(host, sql, database, port=PORT)


def test_app_user_writes_and_reads_a_row_over_tcp(host, version):
    marker = uuid.uuid4().hex
    out = tcp_psql(host, *APP,
                   "CREATE TABLE IF NOT EXISTS visits (note text); "
                   f"INSERT INTO visits VALUES ('{marker}'); "
                   f"SELECT note FROM visits WHERE note = '{marker}';")
    assert out.rc == 0, out.stderr + logs(host, version)
    assert out.stdout.strip().splitlines()[-1] == marker


def test_granted_user_creates_a_table_in_a_database_it_does_not_own(host, version):
    marker = uuid.uuid4().hex
    out = tcp_psql(host, *REPORT,
                   "CREATE TABLE IF NOT EXISTS reports (note text); "
                   f"INSERT INTO reports VALUES ('{marker}'); "
                   f"SELECT note FROM reports WHERE note = '{marker}';")
    assert out.rc == 0, out.stderr + logs(host, version)
    assert out.stdout.strip().splitlines()[-1] == marker


def test_database_is_owned_by_the_app_user(host):
    assert admin_sql(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DATABASE}'") == APP[0]


def test_wrong_password_is_refused(host):
    out = tcp_psql(host, APP[0], "not-the-password", "SELECT 1")
    assert out.rc != 0
    assert f'password authentication failed for user "{APP[0]}"' in out.stderr, out.stderr


def test_unknown_user_is_refused(host):
    out = tcp_psql(host, "nosuchuser", APP[1], "SELECT 1")
    assert out.rc != 0
    assert 'password authentication failed for user "nosuchuser"' in out.stderr, out.stderr


def test_local_socket_login_needs_the_password(host):
    out = host.run("PGCONNECT_TIMEOUT=5 psql -X -w -At -h /var/run/postgresql -p %s -U %s -d %s -c 'SELECT 1'",
                   str(PORT), APP[0], DATABASE)
    assert out.rc != 0
    assert "no password supplied" in out.stderr, out.stderr


def test_password_encryption_is_scram(host):
    out = tcp_psql(host, *APP, "SHOW password_encryption")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "scram-sha-256"


def test_passwords_are_stored_as_scram_verifiers(host):
    stored = admin_sql(host, "SELECT rolname || ' ' || left(rolpassword, 14) FROM pg_authid "
                             "WHERE rolname IN ('labapp', 'labreport') ORDER BY rolname")
    assert stored.splitlines() == ["labapp SCRAM-SHA-256$", "labreport SCRAM-SHA-256$"]


def test_pg_hba_file_has_no_trust_password_or_md5_line(host, version):
    content = host.file(f"/etc/postgresql/{version}/main/pg_hba.conf").content_string
    rules = [line.split() for line in content.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert rules, content
    weak = [rule for rule in rules if {"trust", "password", "md5"} & set(rule)]
    assert not weak, content


def test_loaded_hba_rules_are_peer_for_postgres_then_scram(host):
    rules = admin_sql(host, "SELECT type || ' ' || array_to_string(user_name, ',') || ' ' || auth_method "
                            "FROM pg_hba_file_rules ORDER BY line_number")
    lines = rules.splitlines()
    assert lines[0] == "local postgres peer", rules
    assert all(line.endswith(" scram-sha-256") for line in lines[1:]), rules


def test_server_listens_only_on_the_configured_address(host):
    listening = [sock for sock in host.socket.get_listening_sockets() if sock.startswith("tcp")]
    postgres = [sock for sock in listening if sock.endswith(f":{PORT}") or sock.endswith(":5432")]
    assert postgres == [f"tcp://127.0.0.1:{PORT}"], listening


def test_restart_setting_is_applied(host):
    assert admin_sql(host, "SHOW shared_buffers") == "48MB"


def test_reload_setting_is_applied(host):
    assert admin_sql(host, "SHOW work_mem") == "8MB"


def test_quoted_string_setting_is_applied(host):
    assert admin_sql(host, "SHOW weblab.motto") == "it's a \\ lab"


def test_no_setting_waits_for_a_restart(host):
    assert admin_sql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_settings_live_in_the_conf_d_file_of_the_installed_version(host, version):
    source = admin_sql(host, "SELECT sourcefile FROM pg_settings WHERE name = 'work_mem'")
    assert source == f"/etc/postgresql/{version}/main/conf.d/weblab.conf"


def test_server_logs_to_debians_log_file(host, version):
    # log_connections is on: a connection lands in Debian's log file, not elsewhere.
    marker = f"probe_{uuid.uuid4().hex}"
    out = host.run("PGPASSWORD=%s PGAPPNAME=%s psql -X -w -At -h 127.0.0.1 -p %s -U %s -d %s -c 'SELECT 1'",
                   APP[1], marker, str(PORT), APP[0], DATABASE)
    assert out.rc == 0, out.stderr
    log = host.file(f"/var/log/postgresql/postgresql-{version}-main.log")
    assert marker in log.content_string, logs(host, version)


def test_cluster_unit_is_running(host, version):
    assert host.service(f"postgresql@{version}-main").is_running, logs(host, version)


def test_postgresql_starts_at_boot(host):
    assert host.service("postgresql").is_enabled


def test_rejected_configuration_never_replaces_running_files(host, version):
    """Runs last: steps/rejected_config.yml feeds the role input only the server can judge
    (a /33 network, shared_buffers 'lots'), asserts that the role stops and the files stay, then
    applies the scenario's input again."""
    steps = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")
    rc, output = run_playbook(os.path.join(steps, "rejected_config.yml"), host=host)
    assert rc == 0, output + logs(host, version)
