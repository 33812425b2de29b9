"""Fixtures of the site scenario's tests: the four hosts (`frontend`, `worker`, `web`, `broker`)
and the task queue's front end reached from its host."""

import pytest
from lab_inventory import VARS, WORKER
from weblab_lab import FrontEnd, host_fixture

frontend_host = host_fixture("site-frontend-debian12")
worker_host = host_fixture(WORKER)
web_host = host_fixture("site-web-debian12")
broker_host = host_fixture("site-broker-debian12")


@pytest.fixture(scope="module", name="queue")
def queue_fixture(frontend):
    return FrontEnd(frontend, VARS)
