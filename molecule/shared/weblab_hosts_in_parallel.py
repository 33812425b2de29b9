"""pytest plugin: verify a scenario's hosts side by side (pytest-xdist), each host's tests in
order on one worker.

A scenario opts in through its verifier options (.config/molecule/config.yml sets them for all):

    verifier:
      options:
        p: weblab_hosts_in_parallel
        n: "2"
        dist: loadscope

The scheduler below makes each testinfra host one xdist scope: one worker runs all of a host's
tests, in collection order, so its module-scoped steps (deploys, rollbacks) run once and in
order, while another worker does the same for the other host. (xdist's own loadgroup does
not group on pytest 9, which no longer takes the node IDs xdist rewrites.) Only for scenarios
whose hosts are independent: a test that reaches another host than its own (backups'
migration) would race.

Each worker gets a TMPDIR of its own: the app role packs releases into the controller's TMPDIR,
and the app scenario checks that a --check deploy writes nothing there.
"""

import os
import tempfile

import testinfra


def pytest_configure(config):  # pylint: disable=unused-argument
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        directory = os.path.join(tempfile.gettempdir(), "weblab-verify-%d-%s" % (os.getuid(), worker))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.environ["TMPDIR"] = directory
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def host_ids(option):
    """The pytest IDs testinfra gives the hosts of this run (as in its pytest_generate_tests)."""
    hosts = testinfra.get_hosts(
        option.hosts.split(",") if option.hosts else [None],
        connection=option.connection, ssh_config=option.ssh_config,
        ssh_identity_file=option.ssh_identity_file, sudo=option.sudo, sudo_user=option.sudo_user,
        ansible_inventory=option.ansible_inventory, force_ansible=option.force_ansible)
    # Longest first: no ID is then found inside a longer one.
    return sorted((host.backend.get_pytest_id() for host in hosts), key=len, reverse=True)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling  # pylint: disable=import-outside-toplevel

    hosts = host_ids(config.option)

    class ByHost(LoadScopeScheduling):
        """One scope per host: the host's ID in a test's parameters; else the test's module."""

        def _split_scope(self, nodeid):
            params = nodeid.rpartition("[")[2]
            return next((host for host in hosts if host in params), super()._split_scope(nodeid))

    return ByHost(config, log)
