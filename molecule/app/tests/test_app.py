"""Releases of the demo site: deploy A (converge), deploy B, roll back to A, a failing migration,
a failing check on a redeploy of the live release, release C that migrates after a dump of A's
data, a rollback to A with that dump restored, a release from a git repository, and a --check
deploy of a release that is not on the host yet.

Each step is a module-scoped fixture (one per host: testinfra's `host` is module-scoped) that
checks on the host that its starting point holds, runs ansible-playbook against the Molecule
inventory limited to the host under test, and keeps what it saw before and after; the tests
assert one fact each about a step they name as a fixture. A step that needs an earlier one
requests it, so any test runs alone; a step that needs a state only an earlier step (or the
converge) leaves fails with a message naming it. Release names are derived from the content
(as the role names them), never remembered from an earlier test.
"""

import functools
import importlib.util
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field

import pytest
from weblab_testinfra import PROJECT, run_playbook, superuser_sql

DEPLOY = "/srv/labsite"
BACKUP_DIR = "/var/backups/postgresql"
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")
SITE = os.path.join(PROJECT, "examples", "site")
# Where the role packs directory sources on this controller (roles/app/files/pack_tree.py).
PACK_DIR = os.path.join(os.environ.get("TMPDIR") or "/tmp", "weblab-stack-releases-%d" % os.getuid())

B_FILES = {"lab/static/lab/release-b.txt": "release B\n"}
CHECK_FILES = {"lab/static/lab/check-only.txt": "only ever deployed with --check\n"}
# A module the WSGI check cannot import: the check fails, whatever the release.
MISSING_WSGI = "weblab_site.missing_wsgi:application"
AFTER_CONVERGE = "run `molecule converge` first (it deploys A from examples/site and makes it live)"


def live(host):
    return os.path.basename(host.file(f"{DEPLOY}/current").linked_to)


def health(host):
    """GET /health/ through the WSGI application of `current` (the demo's `manage.py health`),
    as the app user with the release's environment file read by a shell, as an operator would."""
    out = host.run(
        "cd %s/current && runuser -u labsite -- sh -c "
        "'set -a && . .weblab/app.env && set +a && exec .venv/bin/python manage.py health'",
        DEPLOY)
    body = json.loads(out.stdout.strip().splitlines()[-1])
    return ("200" if out.rc == 0 else "503"), body


def venvs(host):
    return sorted(host.file(f"{DEPLOY}/venvs").listdir())


def release_states(host):
    """Release name -> state, as the collection's release module reports them."""
    result = host.ansible("weblab.stack.release", f"path={DEPLOY} state=query", check=False)
    return {item["name"]: item["state"] for item in result["releases"]}


def release_dirs(host):
    return sorted(host.file(f"{DEPLOY}/releases").listdir())


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


def run_step(host, playbook, *options, **extra_vars):
    """steps/PLAYBOOK against this host only; returns (rc, output)."""
    return run_playbook(os.path.join(STEPS, playbook), *options, host=host, **extra_vars)


def plain(output):
    """OUTPUT without terminal colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", output)


def words(output):
    """OUTPUT without colours, its whitespace runs made single spaces: a message the YAML
    result format wrapped over lines reads as one line again."""
    return " ".join(plain(output).split())


def recap(output, host):
    """The PLAY RECAP counters of HOST: {'ok': N, 'changed': N, 'failed': N, ...}."""
    name = re.escape(host.backend.get_hostname())
    line = re.search(r"^%s\s*:\s*(ok=.*)$" % name, plain(output), re.MULTILINE)
    assert line, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


def changed_tasks(output, host):
    """The names of the tasks that reported `changed` for HOST."""
    changed, task = set(), None
    for line in plain(output).splitlines():
        header = re.match(r"^TASK \[(.*)\] \*", line)
        if header:
            task = header.group(1)
        elif re.match(r"^changed: \[%s[\] ]" % re.escape(host.backend.get_hostname()), line):
            changed.add(task)
    return changed


# ---- release names, from the content as the role derives them ------------------------------

def _pack_tree():
    spec = importlib.util.spec_from_file_location(
        "pack_tree", os.path.join(PROJECT, "roles", "app", "files", "pack_tree.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_site(root, files):
    """examples/site copied to ROOT with FILES ((path, content) pairs) added, mode 0644."""
    shutil.copytree(SITE, root)
    for rel, content in files:
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(os.path.join(root, rel), 0o644)
    return root


@functools.lru_cache(maxsize=None)
def _release_name(files):
    pack_tree = _pack_tree()
    with tempfile.TemporaryDirectory() as temp:
        root = copy_site(os.path.join(temp, "site"), files)
        return pack_tree.tree_hash(root, pack_tree.tree_files(root))


def release_name(variant_files=None):
    """The release variant_copy(VARIANT_FILES) deploys (none: A, examples/site as it is)."""
    return _release_name(tuple(sorted((variant_files or {}).items())))


# The variants' copies, removed when the tests end.
VARIANTS = tempfile.TemporaryDirectory(prefix="weblab-app-variants-")


def variant_copy(files):
    """A fresh copy of examples/site with FILES ({path: content}) added: a release source for
    steps/variant.yml (app_source_path). Copied here, not by the playbook: Ansible's copy module
    took 25 s for the site's files, one task per file."""
    return copy_site(tempfile.mkdtemp(dir=VARIANTS.name) + "/site", tuple(sorted(files.items())))


def migration(operation):
    """The source of a migration of the demo's lab app, after its latest one, running OPERATION."""
    return ("from django.db import migrations\n\n\n"
            "class Migration(migrations.Migration):\n"
            "    dependencies = [('lab', '%s')]\n"
            "    operations = [%s]\n") % (latest_migration(), operation)


def latest_migration():
    names = sorted(n[:-3] for n in os.listdir(os.path.join(SITE, "lab", "migrations"))
                   if n[:4].isdigit() and n.endswith(".py"))
    return names[-1]


def broken_files():
    return {"lab/migrations/0999_broken.py":
            migration("migrations.RunSQL('SELECT * FROM weblab_table_that_does_not_exist')")}


def c_files():
    return {"lab/migrations/0900_release_c_marker.py":
            migration("migrations.RunSQL('CREATE TABLE lab_release_c_marker (id int)', "
                      "'DROP TABLE lab_release_c_marker')")}


# ---- steps -------------------------------------------------------------------------------

@dataclass
class Step:
    """One run of a step playbook: its status and output, and what the fixture saw before it."""
    rc: int
    output: str
    before: dict = field(default_factory=dict)

    def assert_ok(self):
        assert self.rc == 0, self.output


def require_live(host, release, step, how):
    """Fail the test, naming what to run first, unless RELEASE is live on HOST."""
    now = live(host)
    assert now == release, (f"{step} needs release {release} live, but {now} is live on "
                            f"{host.backend.get_hostname()}: {how}.")


@pytest.fixture(scope="module")
def step_b(host):
    """Deploy release B (A plus a static file) over A."""
    a = release_name()
    require_live(host, a, "Deploying B", AFTER_CONVERGE)
    before = {"venvs": venvs(host), "dumps_of_a": dumps(host, a)}
    return Step(*run_step(host, "variant.yml", app_source_path=variant_copy(B_FILES)), before)


@pytest.fixture(scope="module")
def step_rollback_from_b(host, step_b):
    """Roll back from B, which step_b made live."""
    step_b.assert_ok()
    require_live(host, release_name(B_FILES), "The rollback from B", "run test_release_b_goes_live first")
    return Step(*run_step(host, "rollback.yml"))


def deploy_over_a(host, what, files):
    """Deploy VARIANT (its FILES over the demo site) while A is live; the dumps of A before."""
    a = release_name()
    require_live(host, a, what, AFTER_CONVERGE + ", or test_rollback_returns_to_a")
    before = {"dumps_of_a": dumps(host, a)}
    return Step(*run_step(host, "variant.yml", app_source_path=variant_copy(files)), before)


@pytest.fixture(scope="module")
def step_broken(host):
    """Deploy a release whose migration fails, over A."""
    return deploy_over_a(host, "The failing migration", broken_files())


@pytest.fixture(scope="module")
def step_redeploy_live(host):
    """Deploy A again while A is live, with a WSGI application its code cannot import."""
    a = release_name()
    require_live(host, a, "Redeploying the live release", AFTER_CONVERGE + ", or test_rollback_returns_to_a")
    return Step(*run_step(host, "variant.yml", app_source_path=variant_copy({}),
                          app_wsgi_application=MISSING_WSGI))


@pytest.fixture(scope="module")
def step_c(host):
    """Deploy release C, whose migration adds a table, over A."""
    return deploy_over_a(host, "Deploying C", c_files())


@pytest.fixture(scope="module")
def step_rollback_from_c(host, step_c):
    """Roll back from C (which step_c made live) to A, then restore the dump of A as the
    runbook says, with this host in the databases group."""
    step_c.assert_ok()
    require_live(host, release_name(c_files()), "The rollback from C",
                 "run test_release_c_goes_live_with_its_migration first")
    rollback = Step(*run_step(host, "rollback.yml"))
    if rollback.rc != 0:
        return rollback, None
    with tempfile.TemporaryDirectory() as temp:
        groups = os.path.join(temp, "groups.yml")
        with open(groups, "w", encoding="utf-8") as handle:
            json.dump({"databases": {"hosts": {host.backend.get_hostname(): {}}}}, handle)
        restore = Step(*run_playbook(os.path.join(PROJECT, "playbooks", "restore.yml"), "-i", groups, host=host,
                                     restore_confirm="yes", restore_label=release_name(), restore_database="labsite"))
    return rollback, restore


@pytest.fixture(scope="module")
def step_git(host):
    """Deploy the demo site from a git repository on the host (any release may be live)."""
    before = {"venvs": venvs(host)}
    archive = os.path.join(tempfile.mkdtemp(dir=VARIANTS.name), "site.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(SITE, arcname=".")
    return Step(*run_step(host, "git.yml", site_archive=archive), before)


def controller_pack_dir():
    """Every entry of the controller's pack directory with its size and time; None when absent."""
    if not os.path.lexists(PACK_DIR):
        return None
    return sorted((name, os.lstat(os.path.join(PACK_DIR, name))[stat.ST_SIZE],
                   os.lstat(os.path.join(PACK_DIR, name)).st_mtime_ns) for name in os.listdir(PACK_DIR))


@pytest.fixture(scope="module")
def step_check_new_release(host):
    """A --check deploy of a release that is on neither the host nor the controller yet."""
    before = {"live": live(host), "releases": release_dirs(host), "states": release_states(host),
              "pack_dir": controller_pack_dir()}
    return Step(*run_step(host, "variant.yml", "--check", app_source_path=variant_copy(CHECK_FILES)), before)


# ---- A: the converge ------------------------------------------------------------------------

def test_release_a_is_live_and_healthy(host):
    a = release_name()
    require_live(host, a, "The test of the converge", AFTER_CONVERGE)
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == a
    assert body["database"] is True


# ---- B: a release without migrations --------------------------------------------------------

def test_release_b_goes_live(host, step_b):
    step_b.assert_ok()
    assert live(host) == release_name(B_FILES) != release_name()
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == release_name(B_FILES)
    assert body["database"] is True


def test_release_b_without_migrations_took_no_dump(host, step_b):
    step_b.assert_ok()
    assert dumps(host, release_name()) == step_b.before["dumps_of_a"]


def test_release_b_reuses_the_venv_of_a(host, step_b):
    step_b.assert_ok()
    assert venvs(host) == step_b.before["venvs"]
    a_venv = host.file(f"{DEPLOY}/releases/{release_name()}/.venv").linked_to
    b_venv = host.file(f"{DEPLOY}/releases/{release_name(B_FILES)}/.venv").linked_to
    assert a_venv == b_venv


def test_release_b_collected_its_static_files(host, step_b):
    step_b.assert_ok()
    static = host.file(f"{DEPLOY}/releases/{release_name(B_FILES)}/staticfiles/lab/release-b.txt")
    assert static.content_string == "release B\n"


# ---- rollback from B ------------------------------------------------------------------------

def test_rollback_returns_to_a(host, step_rollback_from_b):
    step_rollback_from_b.assert_ok()
    assert live(host) == release_name()
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == release_name()


def test_rollback_marks_b_abandoned(host, step_rollback_from_b):
    step_rollback_from_b.assert_ok()
    assert release_states(host)[release_name(B_FILES)] == "abandoned"


# ---- a failing migration --------------------------------------------------------------------

def test_failing_migration_fails_the_deploy_naming_the_migration(step_broken):
    output = words(step_broken.output)
    assert step_broken.rc != 0, output
    assert "marked failed" in output, output
    assert "'Apply the database migrations' failed" in output, output
    assert "weblab_table_that_does_not_exist" in output, output


def test_failing_migration_leaves_current_alone(host, step_broken):
    assert step_broken.rc != 0, step_broken.output
    assert live(host) == release_name()
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == release_name()


def test_failing_migration_marks_its_release_failed(host, step_broken):
    assert step_broken.rc != 0, step_broken.output
    assert release_states(host)[release_name(broken_files())] == "failed", release_states(host)


def test_failing_migration_was_preceded_by_a_dump_of_a(host, step_broken):
    assert len(dumps(host, release_name())) == len(step_broken.before["dumps_of_a"]) + 1


# ---- a failing check on a redeploy of the live release ---------------------------------------

def test_failing_check_on_the_live_release_reports_the_check(step_redeploy_live):
    output = words(step_redeploy_live.output)
    assert step_redeploy_live.rc != 0, output
    assert "'Import the WSGI application' failed" in output, output
    assert "No module named 'weblab_site.missing_wsgi'" in output, output
    assert "is live and stays live (not marked failed)" in output, output


def test_failing_check_on_the_live_release_is_not_hidden_by_a_refusal(step_redeploy_live):
    output = words(step_redeploy_live.output)
    assert step_redeploy_live.rc != 0, output
    assert "instead of marking the live release failed" not in output, output


def test_failing_check_on_the_live_release_keeps_it_live(host, step_redeploy_live):
    assert step_redeploy_live.rc != 0, step_redeploy_live.output
    assert live(host) == release_name()
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == release_name()


def test_failing_check_on_the_live_release_does_not_mark_it_failed(host, step_redeploy_live):
    assert step_redeploy_live.rc != 0, step_redeploy_live.output
    assert release_states(host)[release_name()] == "good", release_states(host)


# ---- C: a release that migrates -------------------------------------------------------------

def test_release_c_goes_live_with_its_migration(host, step_c):
    step_c.assert_ok()
    assert live(host) == release_name(c_files())
    assert psql(host, "SELECT to_regclass('lab_release_c_marker') IS NOT NULL") == "t"


def test_release_c_migrated_after_a_dump_of_a(host, step_c):
    step_c.assert_ok()
    after = dumps(host, release_name())
    assert len(after) == len(step_c.before["dumps_of_a"]) + 1, (step_c.before["dumps_of_a"], after)
    toc = host.check_output("pg_restore --list %s/%s", BACKUP_DIR, after[-1])
    assert "TABLE public lab_experiment" in toc, toc
    assert "lab_release_c_marker" not in toc


# ---- rollback from C with the dump of A restored ----------------------------------------------

def test_rollback_from_c_names_the_dump_to_restore(host, step_rollback_from_c):
    rollback = step_rollback_from_c[0]
    rollback.assert_ok()
    assert live(host) == release_name()
    assert f"restore_label={release_name()}" in rollback.output, rollback.output


def test_restore_of_the_dump_of_a_drops_the_schema_of_c(host, step_rollback_from_c):
    rollback, restore = step_rollback_from_c
    rollback.assert_ok()
    restore.assert_ok()
    assert psql(host, "SELECT to_regclass('lab_release_c_marker') IS NULL") == "t"
    assert psql(host, "SELECT count(*) FROM django_migrations "
                      "WHERE app = 'lab' AND name = '0900_release_c_marker'") == "0"


def test_site_serves_a_after_the_restore(host, step_rollback_from_c):
    rollback, restore = step_rollback_from_c
    rollback.assert_ok()
    restore.assert_ok()
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == release_name() and body["database"] is True


# ---- a release from git ---------------------------------------------------------------------

def test_release_from_git_is_named_by_its_commit(host, step_git):
    step_git.assert_ok()
    commit = host.check_output("runuser -u labsite -- git -C /srv/labsite-git rev-parse HEAD")
    assert live(host) == commit[:12]
    status, body = health(host)
    assert status.startswith("200"), body
    assert body["release"] == commit[:12]


def test_release_from_git_has_no_git_metadata(host, step_git):
    step_git.assert_ok()
    assert not host.file(f"{DEPLOY}/current/.git").exists


def test_release_from_git_reuses_the_venv(host, step_git):
    step_git.assert_ok()
    assert venvs(host) == step_git.before["venvs"]


# ---- --check of a release that is not on the host yet ------------------------------------------

def test_check_of_a_new_release_succeeds(host, step_check_new_release):
    step_check_new_release.assert_ok()
    assert recap(step_check_new_release.output, host)["failed"] == 0, step_check_new_release.output


def test_check_of_a_new_release_reports_the_deploy_as_changes(host, step_check_new_release):
    step_check_new_release.assert_ok()
    expected = {"weblab.stack.app : " + name for name in (
        "Pack the source directory on the controller", "Create the release", "Switch current to the release")}
    changed = changed_tasks(step_check_new_release.output, host)
    assert expected <= changed, (sorted(changed), step_check_new_release.output)


def test_check_of_a_new_release_leaves_current_alone(host, step_check_new_release):
    step_check_new_release.assert_ok()
    assert live(host) == step_check_new_release.before["live"]


def test_check_of_a_new_release_creates_no_release(host, step_check_new_release):
    step_check_new_release.assert_ok()
    assert release_name(CHECK_FILES) not in release_dirs(host)
    assert release_dirs(host) == step_check_new_release.before["releases"]
    assert release_states(host) == step_check_new_release.before["states"]


def test_check_of_a_new_release_writes_nothing_on_the_controller(step_check_new_release):
    step_check_new_release.assert_ok()
    assert controller_pack_dir() == step_check_new_release.before["pack_dir"]
    assert not os.path.lexists(os.path.join(PACK_DIR, release_name(CHECK_FILES) + ".tar.gz"))
