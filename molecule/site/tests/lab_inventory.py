"""The site scenario's shared values, read from its molecule.yml (the inventory's group_vars,
set once there as an operator sets them in group_vars/all)."""

import pathlib

import yaml
from weblab_testinfra import PROJECT

VARS = yaml.safe_load((pathlib.Path(PROJECT) / "molecule" / "site" / "molecule.yml").read_text())[
    "provisioner"]["inventory"]["group_vars"]["all"]
APP = VARS["weblab_app_name"]
PORT = VARS["weblab_db_port"]
SITE_NAME = VARS["weblab_server_names"][0]
WORKER = "site-worker-debian12"
# The task queue's experiments' output files on the worker (the shared data directory).
DATA = "/srv/taskqueue/shared/data/experiments"
