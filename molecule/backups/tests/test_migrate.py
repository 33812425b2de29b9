"""playbooks/migrate.yml moves a lab from the Debian 12 container to the Debian 13 one: the
database (through a dump carried by the controller), the shared files with their owners and
modes; a dry run changes nothing. Runs after test_backups.py, once, for the Debian 13 host."""

import os

import pytest
import testinfra
from weblab_testinfra import PROJECT, run_playbook, superuser_sql

OLD, NEW = "backups-debian12", "backups-debian13"
MEDIA = "/srv/labfiles/media"
DB = "labdata"
MOVE = {"migrate_from": OLD, "migrate_to": NEW, "migrate_paths": [MEDIA], "migrate_deploy": False}


@pytest.fixture(name="old")
def fixture_old(host):
    if host.backend.get_hostname() != NEW:
        pytest.skip(f"the move runs once, from {OLD} to {NEW}")
    return testinfra.get_host(f"ansible://{OLD}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def migrate(**extra_vars):
    return run_playbook(os.path.join(PROJECT, "playbooks", "migrate.yml"), **dict(MOVE, **extra_vars))


def sql(host, query, database=DB):
    return superuser_sql(host, query, database)


def migrate_dumps(host):
    return host.run("ls -1 /var/backups/postgresql | grep -c -- '-migrate\\.'").stdout.strip()


def test_the_old_host_has_a_lab_to_move(host, old):
    sql(old, "DROP TABLE IF EXISTS moved; CREATE TABLE moved (n integer); "
             "INSERT INTO moved SELECT generate_series(1, 42); ALTER TABLE moved OWNER TO labdata;")
    setup = old.run(
        "mkdir -p %s/experiments/run-1 && printf 'figure\\n' > %s/figure.txt && "
        "head -c 100000 /dev/urandom > %s/experiments/run-1/output.bin && "
        "chown -R www-data:www-data %s && chmod 0640 %s/figure.txt", MEDIA, MEDIA, MEDIA, MEDIA, MEDIA)
    assert setup.rc == 0, setup.stderr
    # The new host is provisioned: the parent of the shared paths exists, the media does not.
    assert host.run("mkdir -p /srv/labfiles && rm -rf %s", MEDIA).rc == 0


def test_dry_run_shows_the_plan_and_changes_nothing(host, old):
    dumps_before = migrate_dumps(old)
    rc, output = migrate(migrate_dry_run=True)
    assert rc == 0, output
    assert "DRY RUN" in output, output
    assert f"restore on {NEW} into {DB}" in output, output
    assert MEDIA in output, output
    assert migrate_dumps(old) == dumps_before
    assert sql(host, "SELECT to_regclass('moved') IS NULL") == "t"
    assert not host.file(MEDIA).exists


def test_move_succeeds(host, old):
    rc, output = migrate()
    assert rc == 0, output


def test_new_host_holds_the_old_database(host, old):
    assert sql(host, "SELECT count(*), sum(n) FROM moved") == "42|903"


def test_moved_database_keeps_its_owner(host, old):
    assert sql(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'", "postgres") == DB


def test_new_hosts_previous_database_is_kept(host, old):
    kept = sql(host, f"SELECT count(*) FROM pg_database WHERE datname LIKE '{DB}_replaced_%'", "postgres")
    assert int(kept) >= 1


def test_shared_files_arrive_with_content_owner_and_mode(host, old):
    for path in ("figure.txt", "experiments/run-1/output.bin"):
        moved, original = host.file(f"{MEDIA}/{path}"), old.file(f"{MEDIA}/{path}")
        assert moved.sha256sum == original.sha256sum, path
        assert (moved.user, moved.group, moved.mode) == (original.user, original.group, original.mode), path
    assert host.file(f"{MEDIA}/figure.txt").mode == 0o640


def test_shared_directory_itself_keeps_its_owner(host, old):
    moved, original = host.file(MEDIA), old.file(MEDIA)
    assert (moved.user, moved.group, moved.mode) == (original.user, original.group, original.mode)
    assert moved.user == "www-data"
