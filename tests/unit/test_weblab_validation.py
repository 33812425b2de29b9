"""Bad weblab.stack.weblab values fail before any host changes, with a message naming the
variable and never showing a secret."""

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
