"""A throwaway PostgreSQL cluster on 127.0.0.1 for the integration tests of the backup modules,
and a way to run the modules as Ansible runs them (ansible-playbook, FQCN, -c local)."""

import glob
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

COLLECTION = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
INSTALL_HINT = "run `scripts/apt-install.sh postgresql` (or `make integration`, which does it)"


def postgresql_bin():
    """The newest Debian PostgreSQL server binaries, or fail saying how to install them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0)
    if not found:
        pytest.fail("PostgreSQL is not installed on this machine (no /usr/lib/postgresql/*/bin/initdb): "
                    + INSTALL_HINT, pytrace=False)
    try:
        subprocess.run(["id", "postgres"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.fail("there is no postgres system user: " + INSTALL_HINT, pytrace=False)
    return pathlib.Path(found[-1]).parent


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(*argv, check=True, timeout=120):
    result = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, argv)], capture_output=True,
                            text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError("%s failed: %s%s" % (argv, result.stdout, result.stderr))
    return result


class Cluster:
    """The running server: how to reach it, and a psql for the tests' own checks."""

    def __init__(self, bin_dir, base, port, password):
        self.bin_dir = bin_dir
        self.base = base
        self.data = base / "data"
        self.port = port
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.password = password

    @property
    def env(self):
        return dict(os.environ, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user,
                    PGPASSWORD=self.password)

    @property
    def login(self):
        """The module options that reach this server."""
        return {"login_host": self.host, "login_port": self.port, "login_user": self.user,
                "login_password": self.password}

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
    bin_dir = postgresql_bin()
    # Under /tmp, not pytest's 0700 root-owned directories: the server runs as postgres.
    base = pathlib.Path(tempfile.mkdtemp(prefix="weblab-pg-", dir="/tmp"))
    password = secrets.token_urlsafe(18)
    port = free_port()
    data = base / "data"
    (base / "pwfile").write_text(password + "\n", encoding="utf-8")
    shutil.chown(base, "postgres", "postgres")
    shutil.chown(base / "pwfile", "postgres", "postgres")
    os.chmod(base / "pwfile", 0o600)
    as_postgres(bin_dir / "initdb", "-D", data, "-U", "postgres", "--pwfile", base / "pwfile",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8")
    options = "-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off" % (port, base)
    started = as_postgres(bin_dir / "pg_ctl", "-D", data, "-l", base / "server.log", "-o", options, "-w",
                          "-t", "60", "start", check=False)
    if started.returncode != 0:
        log = (base / "server.log").read_text(encoding="utf-8", errors="replace") if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail("the test cluster did not start: %s%s\n%s" % (started.stdout, started.stderr, log))
    server = Cluster(bin_dir, base, port, password)
    try:
        yield server
    finally:
        as_postgres(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


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
