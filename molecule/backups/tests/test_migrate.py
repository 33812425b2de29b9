"""playbooks/migrate.yml moves a lab from the Debian 12 container to the Debian 13 one: the
database (through a dump carried by the controller), the shared files with their owners and
modes; a dry run changes nothing; what passes through the controller stays private. What moves
is what the lab keeps on the old host (../molecule.yml): the site's database and, the host being
the first databases host of a lab with workers, the task queue's; the site's media under
weblab_deploy_path and the experiments' output under weblab_tq_deploy_path; dumps in
weblab_backup_dir, PostgreSQL at weblab_db_port.

The tests take no `host`: each runs once, and states what it needs through the fixtures below
(`lab`: the old host holds a lab to move; `move`: the move was made, once per run of this file,
with what the new host held just before it). Any test runs alone.
"""

import os
import stat
import types
import uuid

import pytest
import testinfra
from weblab_testinfra import PROJECT, run_playbook, superuser_sql

OLD, NEW = "backups-debian12", "backups-debian13"
# weblab_deploy_path, weblab_tq_deploy_path, weblab_backup_dir and weblab_db_port of ../molecule.yml.
MEDIA = "/srv/labfiles/shared/media"
DATA = "/srv/labtq/shared/data"
BACKUP_DIR = "/srv/pg-dumps"
PORT = 5433
DB, TQ_DB = "labdata", "labnotes"
MOVE = {"migrate_from": OLD, "migrate_to": NEW}


def get_host(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


@pytest.fixture(name="old", scope="module")
def fixture_old():
    return get_host(OLD)


@pytest.fixture(name="new", scope="module")
def fixture_new():
    return get_host(NEW)


def migrate(**extra_vars):
    return run_playbook(os.path.join(PROJECT, "playbooks", "migrate.yml"), **dict(MOVE, **extra_vars))


def sql(host, query, database=DB):
    return superuser_sql(host, query, database, PORT)


def migrate_dumps(host):
    return host.run("ls -1 %s | grep -c -- '-migrate\\.'", BACKUP_DIR).stdout.strip()


def replaced_databases(host):
    return set(sql(host, f"SELECT datname FROM pg_database WHERE datname LIKE '{DB}_replaced_%'",
                   "postgres").splitlines())


@pytest.fixture(name="lab", scope="module")
def fixture_lab(old, new):
    """The old host holds a lab to move: a table of 42 rows, one of 7 in the task queue's database,
    shared files with their own owner and modes, and an experiment's output. The new host is
    provisioned: the parents of the shared paths exist."""
    sql(old, "DROP TABLE IF EXISTS moved; CREATE TABLE moved (n integer); "
             "INSERT INTO moved SELECT generate_series(1, 42); ALTER TABLE moved OWNER TO labdata;")
    sql(old, "DROP TABLE IF EXISTS moved_tasks; CREATE TABLE moved_tasks (n integer); "
             "INSERT INTO moved_tasks SELECT generate_series(1, 7); ALTER TABLE moved_tasks OWNER TO labdata;", TQ_DB)
    setup = old.run(
        "rm -rf %s && mkdir -p %s/experiments/run-1 && printf 'figure\\n' > %s/figure.txt && "
        "head -c 100000 /dev/urandom > %s/experiments/run-1/output.bin && "
        "chown -R www-data:www-data %s && chmod 0640 %s/figure.txt", MEDIA, MEDIA, MEDIA, MEDIA, MEDIA, MEDIA)
    assert setup.rc == 0, setup.stderr
    setup = old.run("rm -rf %s && mkdir -p %s/run-7 && printf 'result 7\\n' > %s/run-7/result.txt", DATA, DATA, DATA)
    assert setup.rc == 0, setup.stderr
    assert new.run("mkdir -p %s %s", os.path.dirname(MEDIA), os.path.dirname(DATA)).rc == 0


@pytest.fixture(name="move", scope="module")
def fixture_move(lab, new, tmp_path_factory):
    """The move, made once: the new host's database carries a token of its own just before it,
    and the names of its replaced databases are listed before and after."""
    token = uuid.uuid4().hex
    sql(new, "DROP TABLE IF EXISTS before_move; CREATE TABLE before_move (token text); "
             f"INSERT INTO before_move VALUES ('{token}');")
    assert new.run("rm -rf %s %s", MEDIA, DATA).rc == 0
    stage = tmp_path_factory.mktemp("migrate") / "stage"
    replaced_before = replaced_databases(new)
    rc, output = migrate(migrate_stage_dir=str(stage))
    return types.SimpleNamespace(rc=rc, output=output, token=token, stage=stage,
                                 replaced=replaced_databases(new) - replaced_before)


def test_dry_run_shows_the_plan_and_changes_nothing(lab, old, new, tmp_path):
    stage = tmp_path / "stage"
    before = (migrate_dumps(old), sql(new, "SELECT datname FROM pg_database ORDER BY 1", "postgres"),
              sql(new, "SELECT to_regclass('moved') IS NULL"), new.file(MEDIA).exists)
    rc, output = migrate(migrate_dry_run=True, migrate_stage_dir=str(stage))
    assert rc == 0, output
    assert "DRY RUN" in output, output
    assert f"restore on {NEW} into {DB}, {TQ_DB}" in output, output
    assert MEDIA in output and DATA in output, output
    after = (migrate_dumps(old), sql(new, "SELECT datname FROM pg_database ORDER BY 1", "postgres"),
             sql(new, "SELECT to_regclass('moved') IS NULL"), new.file(MEDIA).exists)
    assert after == before
    assert not stage.exists()


def test_move_succeeds(move):
    assert move.rc == 0, move.output


def test_new_host_holds_the_old_database(move, new):
    assert sql(new, "SELECT count(*), sum(n) FROM moved") == "42|903", move.output


def test_new_host_holds_the_task_queues_database(move, new):
    assert sql(new, "SELECT count(*), sum(n) FROM moved_tasks", TQ_DB) == "7|28", move.output


def test_moved_database_keeps_its_owner(move, new):
    assert sql(new, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'", "postgres") == DB


def test_new_hosts_previous_database_is_kept_by_this_move(move, new):
    """Exactly one database was set aside by this move, and it holds what the new host had."""
    assert len(move.replaced) == 1, (move.replaced, move.output)
    (kept,) = move.replaced
    assert sql(new, "SELECT token FROM before_move", kept) == move.token
    assert sql(new, "SELECT to_regclass('before_move') IS NULL") == "t"


def test_shared_files_arrive_with_content_owner_and_mode(move, old, new):
    for path in ("figure.txt", "experiments/run-1/output.bin"):
        moved, original = new.file(f"{MEDIA}/{path}"), old.file(f"{MEDIA}/{path}")
        assert moved.sha256sum == original.sha256sum, path
        assert (moved.user, moved.group, moved.mode) == (original.user, original.group, original.mode), path
    assert new.file(f"{MEDIA}/figure.txt").mode == 0o640


def test_experiment_output_arrives(move, old, new):
    moved, original = new.file(f"{DATA}/run-7/result.txt"), old.file(f"{DATA}/run-7/result.txt")
    assert moved.exists, move.output
    assert moved.sha256sum == original.sha256sum


def test_shared_directory_itself_keeps_its_owner(move, old, new):
    moved, original = new.file(MEDIA), old.file(MEDIA)
    assert (moved.user, moved.group, moved.mode) == (original.user, original.group, original.mode)
    assert moved.user == "www-data"


# --- the copy on the controller: every row of the lab, private to the user running Ansible ---

def modes(root):
    """{path relative to ROOT: mode} of ROOT and everything under it."""
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def test_stage_directories_are_private(move):
    found = {path: oct(mode) for path, mode in modes(move.stage).items() if os.path.isdir(move.stage / path)}
    assert {".", "dumps", "files"} <= set(found), (found, move.output)
    assert set(found.values()) == {"0o700"}, found


def test_staged_dumps_and_archives_are_private(move):
    found = {path: oct(mode) for path, mode in modes(move.stage).items() if os.path.isfile(move.stage / path)}
    assert any(path.startswith("dumps/") and path.endswith(".dump") for path in found), (found, move.output)
    assert any(path.startswith("files/") for path in found), (found, move.output)
    assert set(found.values()) == {"0o600"}, found
