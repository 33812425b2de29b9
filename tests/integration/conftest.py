"""A throwaway PostgreSQL cluster on 127.0.0.1 for the integration tests of the backup modules,
and a way to run the modules as Ansible runs them (ansible-playbook, FQCN, -c local)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from throwaway_cluster import ClusterError, ThrowawayCluster

COLLECTION = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


class Cluster(ThrowawayCluster):
    """The running server (fsync off: the tests judge results, not the disk), and a psql for the
    tests' own checks."""

    def psql(self, sql, database="postgres", check=True):
        result = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                 "-d", database, "-c", sql], env=self.env, capture_output=True, text=True,
                                check=False, timeout=120)
        if check:
            assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def databases(self):
        return set(self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate").split("\n"))

    def rows(self, database, table="items"):
        return [int(value) for value in self.psql("SELECT id FROM %s ORDER BY id" % table, database).split()]

    def create_database(self, name, rows=0, owner="postgres"):
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        self.psql('CREATE DATABASE "%s" OWNER "%s"' % (name, owner))
        self.psql("CREATE TABLE items (id int PRIMARY KEY, payload text NOT NULL)", name)
        self.add_rows(name, 1, rows)

    def add_rows(self, database, first, last):
        if last >= first:
            self.psql("INSERT INTO items SELECT i, md5(i::text) FROM generate_series(%d, %d) i" % (first, last),
                      database)


@pytest.fixture(scope="session")
def cluster():
    try:
        server = Cluster("weblab-pg-", settings=["fsync=off"])
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        try:
            server.start()
        except ClusterError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
    finally:
        server.stop()


class Outcome:
    """One module task run through ansible-playbook."""

    def __init__(self, done):
        self.returncode = done.returncode
        self.output = done.stdout + done.stderr
        try:
            tasks = json.loads(done.stdout)["plays"][0]["tasks"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("ansible-playbook gave no JSON result:\n" + self.output) from None
        self.result = tasks[-1]["hosts"]["localhost"]
        self.failed = bool(self.result.get("failed"))
        self.msg = self.result.get("msg", "")

    def __getitem__(self, key):
        return self.result[key]


@pytest.fixture
def run_module(tmp_path):
    """run_module(NAME, ARGS, *extra): weblab.stack.NAME with ARGS against localhost, through
    ansible-playbook (extra arguments such as --check go to it). Returns an Outcome; a failed
    task is an Outcome with .failed, never an exception."""
    counter = [0]

    def run(name, args, *extra):
        counter[0] += 1
        playbook = tmp_path / ("play%d.yml" % counter[0])
        play = [{"name": "Run one module", "hosts": "localhost", "gather_facts": False,
                 "tasks": [{"name": "Run weblab.stack." + name, "weblab.stack." + name: args}]}]
        playbook.write_text(json.dumps(play), encoding="utf-8")
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTION.parents[2]), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
                   ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
        for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"):
            env.pop(key, None)
        done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                               "-e", "ansible_python_interpreter=" + sys.executable, *extra, str(playbook)],
                              env=env, capture_output=True, text=True, check=False, timeout=300)
        outcome = Outcome(done)
        assert (done.returncode != 0) == outcome.failed, outcome.output
        return outcome

    return run


@pytest.fixture
def backup_dir(tmp_path):
    path = tmp_path / "backups"
    path.mkdir(mode=0o700)
    return path
