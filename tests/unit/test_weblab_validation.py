"""Bad weblab.stack.weblab values fail before any host changes, with a message naming the
variable and never showing a secret."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SECRET_KEY = "unit-test-secret-key-" + "x" * 40
GOOD = {"weblab_secret_key": SECRET_KEY, "weblab_db_password": "unit-test-db-password"}

# Each BAD_INPUT case is GOOD with its changes (tests/unit/conftest.py: refusals).
BAD_INPUT_BASE = GOOD
BAD_INPUT = [
    pytest.param({"weblab_app_server": "mod_wsgi"}, "weblab_app_server", id="unknown-app-server"),
    pytest.param({"weblab_cache": "varnish"}, "weblab_cache", id="unknown-cache"),
    pytest.param({"weblab_cache": "redis", "weblab_redis_admin_password": "x" * 20}, "weblab_redis_password",
                 id="redis-without-password"),
    pytest.param({"weblab_cache": "redis", "weblab_redis_password": "x" * 20}, "weblab_redis_admin_password",
                 id="redis-without-admin-password"),
    pytest.param({"weblab_redis_server": "redis.lab"}, "weblab_redis_server", id="redis-server-without-port"),
    pytest.param({"weblab_app_name": "Web Lab"}, "weblab_app_name", id="app-name-with-space"),
    pytest.param({"weblab_deploy_path": "srv/lab"}, "weblab_deploy_path", id="deploy-path-relative"),
    pytest.param({"weblab_server_names": []}, "weblab_server_names", id="no-server-name"),
    pytest.param({"weblab_server_names": ["lab example.org"]}, "weblab_server_names", id="server-name-with-space"),
    pytest.param({"weblab_secret_key": "short"}, "weblab_secret_key", id="secret-key-short"),
    pytest.param({"weblab_db_password": ""}, "weblab_db_password", id="no-db-password"),
    pytest.param({"weblab_db_port": 70000}, "weblab_db_port", id="db-port-out-of-range"),
    pytest.param({"weblab_db_port": "db"}, "weblab_db_port", id="db-port-not-a-number"),
    pytest.param({"weblab_cache_servers": ["127.0.0.1"]}, "weblab_cache_servers", id="cache-without-port"),
    pytest.param({"weblab_balancer_upstream_ca": "not a certificate"}, "weblab_balancer_upstream_ca",
                 id="balancer-ca-not-pem"),
    pytest.param({"weblab_wsgi_application": "site.wsgi"}, "weblab_wsgi_application", id="wsgi-without-attribute"),
    pytest.param({"weblab_tls_certificate": "-----BEGIN CERTIFICATE-----"}, "weblab_tls_certificate_key",
                 id="certificate-without-key"),
    pytest.param({"weblab_app_environment": ["DEBUG=1"]}, "weblab_app_environment", id="environment-not-a-dict"),
    # The task queue's values.
    pytest.param({"weblab_tq_app_name": "weblab"}, "weblab_tq_app_name", id="task-queue-named-as-the-site"),
    pytest.param({"weblab_tq_source": "svn"}, "weblab_tq_source", id="task-queue-unknown-source"),
    pytest.param({"weblab_tq_deploy_path": "srv/tq"}, "weblab_tq_deploy_path", id="task-queue-path-relative"),
    pytest.param({"weblab_tq_celery_module": "task queue"}, "weblab_tq_celery_module", id="celery-module-with-space"),
    pytest.param({"weblab_tq_queue": "experiments queue"}, "weblab_tq_queue", id="queue-with-space"),
    pytest.param({"weblab_tq_server_names": []}, "weblab_tq_server_names", id="task-queue-no-server-name"),
    pytest.param({"weblab_results_url": "tq-site/api/results/"}, "weblab_results_url", id="results-url-no-scheme"),
    pytest.param({"weblab_broker_port": 0}, "weblab_broker_port", id="broker-port-zero"),
    pytest.param({"weblab_address": "lab.example.org"}, "weblab_address", id="address-not-an-ip"),
    pytest.param({"weblab_broker_consumer_timeout": "long"}, "weblab_broker_consumer_timeout",
                 id="consumer-timeout-not-a-number"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named):
    refusals.of(variables).assert_refused(named)


def test_secrets_stay_out_of_the_output(run_role):
    result = run_role("weblab", dict(GOOD, weblab_db_password="", weblab_secret_key=SECRET_KEY), "-vvv")
    assert result.returncode != 0, result.output
    assert SECRET_KEY not in result.output


def test_good_input_passes(run_role):
    result = run_role("weblab", GOOD)
    assert result.returncode == 0, result.output


# Entry point `data` (backup.yml, restore.yml, migrate.yml): its own checks, no secrets.
DATA_BAD_INPUT = [
    pytest.param({"weblab_db_name": "lab data"}, "weblab_db_name", id="data-db-name-with-space"),
    pytest.param({"weblab_tq_db_name": "weblab"}, "weblab_tq_db_name", id="data-task-queue-db-named-as-the-site's"),
    pytest.param({"weblab_db_port": 0}, "weblab_db_port", id="data-db-port-zero"),
    pytest.param({"weblab_db_port": "db"}, "weblab_db_port", id="data-db-port-not-a-number"),
    pytest.param({"weblab_backup_dir": "backups"}, "weblab_backup_dir", id="data-backup-dir-relative"),
    pytest.param({"weblab_backup_dir": "/var/backups/"}, "weblab_backup_dir", id="data-backup-dir-trailing-slash"),
    pytest.param({"weblab_deploy_path": "/"}, "weblab_deploy_path", id="data-deploy-path-root"),
    pytest.param({"weblab_tq_deploy_path": "srv/tq"}, "weblab_tq_deploy_path", id="data-task-queue-path-relative"),
]


@pytest.fixture(name="data_refusals", scope="module")
def fixture_data_refusals(run_roles):
    return run_roles("weblab", [case.values[0] for case in DATA_BAD_INPUT], entry_point="data")


@pytest.mark.parametrize(("variables", "named"), DATA_BAD_INPUT)
def test_bad_data_input_fails_before_any_work(data_refusals, variables, named):
    data_refusals.of(variables).assert_refused(named)


def test_data_needs_no_secrets(run_role):
    """backup.yml and restore.yml must not need the vault: the entry point passes without any
    weblab_* secret set."""
    result = run_role("weblab", {}, entry_point="data")
    assert result.returncode == 0, result.output


# Hosts of a lab (all local) and what the `data` entry point finds on each: the site's database
# on every databases host, the task queue's on the first one (the lab has workers), the site's
# media on web servers, the experiments' output on workers.
LAB = {
    "databases": ["db1", "db2"],
    "webservers": ["db2", "web1"],
    "workers": ["worker1"],
}
LAB_DATA = {
    "db1": (["weblab", "taskqueue"], []),
    "db2": (["weblab"], ["/srv/weblab/shared/media"]),
    "web1": ([], ["/srv/weblab/shared/media"]),
    "worker1": ([], ["/srv/taskqueue/shared/data"]),
}


ROOT = pathlib.Path(__file__).resolve().parents[2]


def ansible_playbook(argv, **env):
    """ansible-playbook ARGV of this venv in check mode, the collection found as conftest.py finds
    it (its ansible_playbook cannot be imported: several test directories have a conftest)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT.parents[2]), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", **env)
    return subprocess.run([str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "--check", *argv],
                          env=env, capture_output=True, text=True, check=False, timeout=300)


def lab_data(tmp_path, groups, **variables):
    """{host: (weblab_data_databases, weblab_data_paths)} of a run of the `data` entry point on
    an inventory of GROUPS, with VARIABLES as extra vars."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = sorted({host for members in groups.values() for host in members})
    inventory = {"all": {"hosts": {host: local for host in hosts},
                         "children": {group: {"hosts": {host: {} for host in members}}
                                      for group, members in groups.items()}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory), encoding="utf-8")
    (tmp_path / "play.yml").write_text(
        "- name: Find the lab's data\n"
        "  hosts: all\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Find the lab's data on this host\n"
        "      ansible.builtin.import_role:\n"
        "        name: weblab.stack.weblab\n"
        "        tasks_from: data\n"
        "    - name: Show it\n"
        "      ansible.builtin.debug:\n"
        "        msg: \"{{ {'databases': weblab_data_databases, 'paths': weblab_data_paths} | to_json }}\"\n",
        encoding="utf-8")
    result = ansible_playbook(["-i", str(tmp_path / "inventory.json"), "-e", json.dumps(variables),
                               str(tmp_path / "play.yml")],
                              ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_INVENTORY_ENABLED="yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(result.stdout)["plays"][0]["tasks"][-1]["hosts"]
    return {host: (json.loads(res["msg"])["databases"], json.loads(res["msg"])["paths"]) for host, res in shown.items()}


def test_data_finds_each_hosts_databases_and_shared_files(tmp_path):
    assert lab_data(tmp_path, LAB) == LAB_DATA


def test_data_puts_no_task_queue_database_in_a_lab_without_one(tmp_path):
    found = lab_data(tmp_path, {"databases": ["db1", "db2"], "webservers": ["db1"]})
    assert found == {"db1": (["weblab"], ["/srv/weblab/shared/media"]), "db2": (["weblab"], [])}


def test_data_follows_the_shared_values(tmp_path):
    found = lab_data(tmp_path, LAB, weblab_db_name="labsite", weblab_tq_db_name="labtq",
                     weblab_deploy_path="/opt/site", weblab_tq_deploy_path="/opt/tq")
    assert found["db1"] == (["labsite", "labtq"], [])
    assert found["web1"] == ([], ["/opt/site/shared/media"])
    assert found["worker1"] == ([], ["/opt/tq/shared/data"])


def test_data_finds_the_workers_path_beside_a_front_end(tmp_path):
    """A host in both task-queue groups keeps the workers' releases in DEPLOY_PATH-worker
    (playbooks/workers.yml): their output files are there."""
    found = lab_data(tmp_path, {"databases": ["db1"], "task_queue_frontend": ["tq1"], "workers": ["tq1", "worker1"]})
    assert found["tq1"] == ([], ["/srv/taskqueue-worker/shared/data"])
    assert found["worker1"] == ([], ["/srv/taskqueue/shared/data"])
