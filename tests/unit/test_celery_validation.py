"""Bad weblab.stack.celery input fails before any work, with a message naming the variable."""

import os

import pytest

BASE = {"celery_app_module": "uvsite"}
# More pool processes than any host running these tests has cores.
TOO_MANY = (os.cpu_count() or 1) * 4 + 1


def settings(**changes):
    return dict(BASE, **changes)


BAD_INPUT = [
    pytest.param({}, "celery_app_module", "is required", id="no-app-module"),
    pytest.param(settings(celery_app_module="uvsite worker"), "celery_app_module", "celery -A",
                 id="app-module-with-a-space"),
    pytest.param(settings(celery_app="My App"), "celery_app", "lowercase letters", id="app-name-with-a-space"),
    pytest.param(settings(celery_user="root"), "celery_user", "not root", id="runs-as-root"),
    pytest.param(settings(celery_deploy_path="/srv/../weblab"), "celery_deploy_path", "'..'",
                 id="deploy-path-with-dot-dot"),
    pytest.param(settings(celery_env_file="shared/app.env"), "celery_env_file", "absolute path",
                 id="env-file-relative"),
    pytest.param(settings(celery_writable_paths=["/srv/weblab/releases"]), "celery_writable_paths",
                 "write the code", id="writable-releases"),
    pytest.param(settings(celery_writable_paths=["/srv"]), "celery_writable_paths", "write the code",
                 id="writable-parent-of-the-deploy-path"),
    pytest.param(settings(celery_concurrency=TOO_MANY), "celery_concurrency", "celery_concurrency_above_cores",
                 id="concurrency-above-the-cores"),
    pytest.param(settings(celery_workers=[{"name": "default", "concurrency": TOO_MANY}]), "celery_workers",
                 "celery_concurrency_above_cores", id="worker-concurrency-above-the-cores"),
    pytest.param(settings(celery_concurrency=-1), "celery_concurrency", "0 (half the cores) or more",
                 id="concurrency-negative"),
    pytest.param(settings(celery_workers=[{"name": "default"}, {"name": "default", "queues": ["slow"]}]),
                 "celery_workers", "each name may appear once", id="worker-names-twice"),
    pytest.param(settings(celery_workers=[{"name": "beat"}]), "celery_workers", "not 'beat'",
                 id="worker-named-beat"),
    pytest.param(settings(celery_workers=[{"name": "Default Worker"}]), "celery_workers", "lowercase letters",
                 id="worker-name-with-a-space"),
    pytest.param(settings(celery_workers=[{"name": "default", "queues": ["a queue"]}]), "celery_workers",
                 "queue names", id="queue-name-with-a-space"),
    pytest.param(settings(celery_workers=[{"queues": ["celery"]}]), "celery_workers", "name",
                 id="worker-without-a-name"),
    pytest.param(settings(celery_workers=[{"name": "default", "state": "stopped"}]), "celery_workers", "stopped",
                 id="worker-state-unknown"),
    pytest.param(settings(celery_workers=[{"name": "default", "pool": "gevent"}]), "celery_workers", "pool",
                 id="worker-option-unknown"),
    pytest.param(settings(celery_prefetch_multiplier=0), "celery_prefetch_multiplier", "at least 1",
                 id="prefetch-unlimited"),
    pytest.param(settings(celery_max_memory_per_child=-1), "celery_max_memory_per_child", "0 (off) or more",
                 id="max-memory-negative"),
    pytest.param(settings(celery_acks_late=False), "celery_reject_on_worker_lost", "celery_acks_late",
                 id="reject-on-worker-lost-without-late-acks"),
    pytest.param(settings(celery_soft_time_limit=360), "celery_soft_time_limit", "below celery_time_limit",
                 id="soft-time-limit-not-below-the-hard-one"),
    pytest.param(settings(celery_time_limit=0, celery_soft_time_limit=0), "celery_time_limit", "at least 1",
                 id="no-hard-time-limit"),
    pytest.param(settings(celery_time_limit="six minutes"), "celery_time_limit", "six minutes",
                 id="time-limit-not-a-number"),
    pytest.param(settings(celery_stop_grace=0), "celery_stop_grace", "at least 1", id="no-stop-grace"),
    pytest.param(settings(celery_broker_consumer_timeout=360000), "celery_broker_consumer_timeout",
                 "must be above celery_time_limit", id="consumer-timeout-equals-the-hard-limit"),
    pytest.param(settings(celery_time_limit=7200, celery_soft_time_limit=3600), "celery_broker_consumer_timeout",
                 "7200000 ms", id="hard-limit-above-the-consumer-timeout"),
    pytest.param(settings(celery_beat="sometimes"), "celery_beat", "sometimes", id="beat-not-a-boolean"),
    pytest.param(settings(celery_log_level="verbose"), "celery_log_level", "verbose", id="log-level-unknown"),
]


@pytest.mark.parametrize(("variables", "named", "says"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named, says):
    refusals.of(variables).assert_refused(named, says)


@pytest.mark.parametrize("variables", [
    pytest.param(BASE, id="defaults"),
    pytest.param(settings(celery_app="lab_site-2", celery_deploy_path="/srv/lab", celery_user="lab-run",
                          celery_group="lab", celery_app_module="lab.celery:app", celery_env_file="/etc/lab/app.env",
                          celery_writable_paths=["/srv/lab/shared/data"]), id="other-names-and-paths"),
    pytest.param(settings(celery_concurrency=TOO_MANY, celery_concurrency_above_cores=True,
                          celery_workers=[{"name": "default", "queues": ["celery", "mail"]},
                                          {"name": "reports", "queues": ["reports"], "concurrency": 1},
                                          {"name": "old", "state": "absent"}], celery_beat=True),
                 id="above-the-cores-when-allowed-several-workers-beat"),
    pytest.param(settings(celery_acks_late=False, celery_reject_on_worker_lost=False, celery_soft_time_limit=0,
                          celery_max_tasks_per_child=0, celery_max_memory_per_child=200000),
                 id="early-acks-no-soft-limit-memory-recycling"),
    pytest.param(settings(celery_time_limit=7200, celery_soft_time_limit=7000,
                          celery_broker_consumer_timeout=7200001), id="long-tasks-with-a-long-consumer-timeout"),
])
def test_good_input_passes_validation(run_role, variables):
    """The same harness accepts good settings, so the failures above are about the input."""
    result = run_role("celery", variables, "--tags", "celery_validate")
    assert result.returncode == 0, result.output
    assert "Check the broker's consumer timeout" in result.stdout
