"""A throwaway PostgreSQL server on 127.0.0.1 and a free port, data under a mkdtemp in /tmp:
the integration tests' server and bench/backup's. Standard library only."""

import glob
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile

INSTALL_HINT = "run `scripts/apt-install.sh postgresql` (`make integration` and `make bench` do it)"


class ClusterError(Exception):
    """The server cannot be had; the message says why."""


def postgresql_bin():
    """The newest Debian PostgreSQL server binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0)
    if not found:
        raise ClusterError("PostgreSQL is not installed on this machine (no /usr/lib/postgresql/*/bin/initdb): "
                           + INSTALL_HINT)
    if subprocess.run(["id", "postgres"], capture_output=True, check=False).returncode != 0:
        raise ClusterError("there is no postgres system user: " + INSTALL_HINT)
    return pathlib.Path(found[-1]).parent


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(*argv, check=True, timeout=120):
    done = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, argv)], capture_output=True, text=True,
                          check=False, timeout=timeout)
    if check and done.returncode != 0:
        raise ClusterError("%s failed: %s%s" % (argv, done.stdout, done.stderr))
    return done


class ThrowawayCluster:
    """initdb as postgres (SCRAM password for the postgres user), listening on 127.0.0.1 only,
    its socket in its own directory; SETTINGS are extra server settings ("fsync=off", ...)."""

    def __init__(self, prefix, settings=()):
        self.bin_dir = postgresql_bin()
        # Under /tmp, not a 0700 root-owned directory: the server runs as postgres.
        self.base = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.data = self.base / "data"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = "postgres"
        self.password = secrets.token_urlsafe(18)
        self.settings = tuple(settings)
        self.started = False

    def start(self):
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        shutil.chown(self.base, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        as_postgres(self.bin_dir / "initdb", "-D", self.data, "-U", "postgres", "--pwfile", pwfile,
                    "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8")
        options = "-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s" % (self.port, self.base)
        options += "".join(" -c " + setting for setting in self.settings)
        started = as_postgres(self.bin_dir / "pg_ctl", "-D", self.data, "-l", self.base / "server.log",
                              "-o", options, "-w", "-t", "60", "start", check=False)
        if started.returncode != 0:
            log = self.base / "server.log"
            raise ClusterError("the throwaway PostgreSQL did not start: %s%s\n%s" % (
                started.stdout, started.stderr, log.read_text(errors="replace") if log.exists() else ""))
        self.started = True

    def stop(self):
        """Stop the server and remove its files; safe to call on a half-started cluster."""
        if self.started:
            stopped = as_postgres(self.bin_dir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop",
                                  check=False, timeout=90)
            if stopped.returncode != 0:
                as_postgres(self.bin_dir / "pg_ctl", "-D", self.data, "-m", "immediate", "stop",
                            check=False, timeout=90)
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def env(self):
        """An environment in which libpq programs reach this server."""
        env = dict(os.environ, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user,
                   PGPASSWORD=self.password)
        env.pop("PGDATABASE", None)
        return env

    @property
    def login(self):
        """The module options that reach this server."""
        return {"login_host": self.host, "login_port": self.port, "login_user": self.user,
                "login_password": self.password}
