"""Releases of the demo site: deploy A (converge), deploy B, roll back to A, a failing migration,
release C that migrates after a dump of A's data, a rollback to A with that dump restored, then a
release from a git repository.

The tests run in file order and each step builds on the one before, as an operator's deploys do:
the steps run ansible-playbook against the Molecule inventory, limited to the host under test.
"""

import json
import os

from weblab_testinfra import PROJECT, run_playbook, superuser_sql

DEPLOY = "/srv/labsite"
BACKUP_DIR = "/var/backups/postgresql"
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")


def live(host):
    return os.path.basename(host.file(f"{DEPLOY}/current").linked_to)


def health(host):
    """GET /health/ through the WSGI application of `current` (the demo's `manage.py health`),
    as the app user with the app's environment file read by a shell, as an operator would."""
    out = host.run(
        "cd %s/current && runuser -u labsite -- sh -c "
        "'set -a && . %s/shared/app.env && set +a && exec .venv/bin/python manage.py health'",
        DEPLOY, DEPLOY)
    body = json.loads(out.stdout.strip().splitlines()[-1])
    return ("200" if out.rc == 0 else "503"), body


def venvs(host):
    return sorted(host.file(f"{DEPLOY}/venvs").listdir())


def release_states(host):
    """Release name -> state, as the collection's release module reports them."""
    result = host.ansible("weblab.stack.release", f"path={DEPLOY} state=query", check=False)
    return {item["name"]: item["state"] for item in result["releases"]}


def dumps(host, label):
    """The verified dumps of labsite labelled LABEL, oldest first."""
    if not host.file(BACKUP_DIR).exists:
        return []
    names = sorted(name for name in host.file(BACKUP_DIR).listdir()
                   if name.startswith("labsite-") and name.endswith(f"-{label}.dump"))
    return [name for name in names
            if json.loads(host.file(f"{BACKUP_DIR}/{name}.json").content_string).get("verified") is True]


def psql(host, sql):
    return superuser_sql(host, sql, "labsite")


def run_step(host, playbook, **extra_vars):
    """steps/PLAYBOOK against this host only; returns (rc, output)."""
    return run_playbook(os.path.join(STEPS, playbook), host=host, **extra_vars)


# pytest-testinfra parametrizes per host; each host keeps its own story in this dict.
STORY = {}


def test_release_a_is_live_and_healthy(host):
    release = live(host)
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == release
    assert body["database"] is True
    STORY[host.backend.get_hostname()] = {"a": release, "venvs": venvs(host)}


def test_release_b_goes_live(host):
    story = STORY[host.backend.get_hostname()]
    rc, output = run_step(host, "variant.yml", variant="b",
                          variant_files={"lab/static/lab/release-b.txt": "release B\n"})
    assert rc == 0, output
    story["b"] = live(host)
    assert story["b"] != story["a"]
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == story["b"]
    assert body["database"] is True


def test_release_b_without_migrations_took_no_dump(host):
    story = STORY[host.backend.get_hostname()]
    assert dumps(host, story["a"]) == []


def test_release_b_reuses_the_venv_of_a(host):
    story = STORY[host.backend.get_hostname()]
    assert venvs(host) == story["venvs"]
    a_venv = host.file(f"{DEPLOY}/releases/{story['a']}/.venv").linked_to
    b_venv = host.file(f"{DEPLOY}/releases/{story['b']}/.venv").linked_to
    assert a_venv == b_venv


def test_release_b_collected_its_static_files(host):
    assert host.file(f"{DEPLOY}/current/staticfiles/lab/release-b.txt").content_string == "release B\n"


def test_rollback_returns_to_a(host):
    story = STORY[host.backend.get_hostname()]
    rc, output = run_step(host, "rollback.yml")
    assert rc == 0, output
    assert live(host) == story["a"]
    assert release_states(host)[story["b"]] == "abandoned"
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == story["a"]


def test_failing_migration_leaves_current_alone(host):
    story = STORY[host.backend.get_hostname()]
    broken = migration("migrations.RunSQL('SELECT * FROM weblab_table_that_does_not_exist')")
    rc, output = run_step(host, "variant.yml", variant="broken",
                          variant_files={"lab/migrations/0999_broken.py": broken})
    assert rc != 0, output
    assert "marked failed" in output, output
    assert "'Apply the database migrations' failed" in output, output
    assert "weblab_table_that_does_not_exist" in output, output
    assert live(host) == story["a"]
    failed = [name for name, state in release_states(host).items() if state == "failed"]
    assert len(failed) == 1 and failed[0] not in (story["a"], story["b"]), release_states(host)
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == story["a"]


def test_failing_migration_was_preceded_by_a_dump_of_a(host):
    story = STORY[host.backend.get_hostname()]
    assert len(dumps(host, story["a"])) == 1


def test_release_c_migrates_after_a_dump_of_a(host):
    story = STORY[host.backend.get_hostname()]
    before = dumps(host, story["a"])
    marker = migration("migrations.RunSQL('CREATE TABLE lab_release_c_marker (id int)', "
                       "'DROP TABLE lab_release_c_marker')")
    rc, output = run_step(host, "variant.yml", variant="c",
                          variant_files={"lab/migrations/0002_release_c_marker.py": marker})
    assert rc == 0, output
    story["c"] = live(host)
    assert story["c"] not in (story["a"], story["b"])
    assert psql(host, "SELECT to_regclass('lab_release_c_marker') IS NOT NULL") == "t"
    after = dumps(host, story["a"])
    assert len(after) == len(before) + 1, (before, after)
    toc = host.check_output("pg_restore --list %s/%s", BACKUP_DIR, after[-1])
    assert "TABLE public lab_experiment" in toc, toc
    assert "lab_release_c_marker" not in toc


def test_rollback_to_a_with_its_dump_restored_drops_the_schema_of_c(host, tmp_path):
    story = STORY[host.backend.get_hostname()]
    rc, output = run_step(host, "rollback.yml")
    assert rc == 0, output
    assert live(host) == story["a"]
    assert f"label={story['a']}" in output, output
    # The operator's restore, as the runbook says, with this host in the databases group.
    groups = tmp_path / "groups.yml"
    groups.write_text(json.dumps({"databases": {"hosts": {host.backend.get_hostname(): {}}}}))
    rc, output = run_playbook(os.path.join(PROJECT, "playbooks", "restore.yml"), "-i", str(groups), host=host,
                              confirm_restore="yes", label=story["a"], database="labsite")
    assert rc == 0, output
    assert psql(host, "SELECT to_regclass('lab_release_c_marker') IS NULL") == "t"
    assert psql(host, "SELECT count(*) FROM django_migrations WHERE app = 'lab' AND name LIKE '0002%'") == "0"
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == story["a"] and body["database"] is True


def migration(operation):
    """The source of a migration of the demo's lab app, after its latest one, running OPERATION."""
    return ("from django.db import migrations\n\n\n"
            "class Migration(migrations.Migration):\n"
            "    dependencies = [('lab', '%s')]\n"
            "    operations = [%s]\n") % (latest_migration(), operation)


def latest_migration():
    here = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    names = sorted(n[:-3] for n in os.listdir(os.path.join(here, "examples", "site", "lab", "migrations"))
                   if n[:4].isdigit() and n.endswith(".py"))
    return names[-1]


def test_release_from_git_is_named_by_its_commit(host):
    story = STORY[host.backend.get_hostname()]
    rc, output = run_step(host, "git.yml")
    assert rc == 0, output
    commit = host.check_output("runuser -u labsite -- git -C /srv/labsite-git rev-parse HEAD")
    assert live(host) == commit[:12]
    assert not host.file(f"{DEPLOY}/current/.git").exists
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == commit[:12]
    assert venvs(host) == story["venvs"]
