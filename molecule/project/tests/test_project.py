"""uvsite (examples/uvsite) as the app role deploys any Django project: dependencies from uv.lock,
a translation compiled by a build step and served, an override settings module, Redis as the
cache, a git repository owned by root; then a settings-only change that fails its checks (the
live release keeps its files byte for byte), and a settings change of the live commit (a new
release, and back).

The tests of one host run in file order (molecule/shared/weblab_hosts_in_parallel.py); each
step is a module-scoped fixture that checks its starting point, so any test also runs alone.
"""

import json
import os
import re
import shlex
import tomllib

import pytest
from weblab_testinfra import PROJECT, assert_no_secret_in_vvv, exposure, run_playbook

DEPLOY = "/srv/uvsite"
# The app's secrets, from molecule.yml: the database's, Redis's and Django's (the roles that own
# the database's and Redis's prove them in their own scenarios).
SECRETS = ("molecule-uvsite-db-secret", "molecule-uvsite-redis-secret",
           "molecule-uvsite-secret-key-that-is-long-enough")
SOURCE = "/srv/src/uvsite"
SOCKET = "/run/uvsite/gunicorn.sock"
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")
GERMAN = "Das Labor ist geöffnet."
CONVERGED_EMAIL_HOST = "smtp.molecule.test"
# Settings a deploy check cannot pass: the project refuses a DEBUG that is not a boolean.
FAILING = {"uvsite_environment_extra": {"DJANGO_DEBUG": "maybe"}}
# Other settings that pass, one of them below the failing level of the checks (a warning).
CHANGED = {"uvsite_email_host": "smtp2.molecule.test",
           "uvsite_environment_extra": {"DJANGO_SECURE_HSTS_SECONDS": "0"}}


def live(host):
    return os.path.basename(host.file(f"{DEPLOY}/current").linked_to)


def commit(host):
    return host.check_output("git -C %s rev-parse HEAD", SOURCE)


def get(host, path):
    """(status, body) of PATH through gunicorn's socket, as nginx would ask."""
    result = host.ansible("weblab.stack.socket_probe",
                          f"socket={SOCKET} path={path} host=uvsite.test status=200 timeout=20",
                          check=False)
    assert result.get("status") == 200, result
    return result["body"]


def about(host):
    return json.loads(get(host, "/about/"))


def sha256(host, path):
    return host.check_output("sha256sum %s", path).split()[0]


def release_states(host):
    result = host.ansible("weblab.stack.release", f"path={DEPLOY} state=query", check=False)
    return {item["name"]: item["state"] for item in result["releases"]}


def settings_files(host, release):
    """Checksums of RELEASE's own settings."""
    base = f"{DEPLOY}/releases/{release}"
    return {name: sha256(host, f"{base}/{name}") for name in (".weblab/app.env", "uvsite/settings_override.py")}


def words(output):
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output).split())


def recap(output, host):
    name = re.escape(host.backend.get_hostname())
    line = re.search(r"^%s\s*:\s*(ok=.*)$" % name, re.sub(r"\x1b\[[0-9;]*m", "", output), re.MULTILINE)
    assert line, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


def deploy(host, **extra_vars):
    return run_playbook(os.path.join(STEPS, "deploy.yml"), host=host, **extra_vars)


def require_converged(host):
    if live(host) != commit(host)[:12]:
        deploy(host)
    assert live(host) == commit(host)[:12], "run `molecule converge` first"


# ---- the converged release -------------------------------------------------------------------

def test_the_code_comes_from_a_repository_root_owns(host):
    assert host.file(SOURCE).user == "root"
    assert host.file(f"{DEPLOY}/repo/git").user == "uvsite"
    # Only that repository is trusted, by the deploy user alone.
    trusted = host.run("runuser -u uvsite -- sh -c 'cd && git config --global --get-all safe.directory'")
    assert trusted.stdout.split() == [SOURCE + "/.git"], trusted.stdout
    assert live(host) == commit(host)[:12]


def test_the_compiled_translation_is_served(host):
    require_converged(host)
    assert GERMAN in get(host, "/hello/?lang=de")
    assert host.file(f"{DEPLOY}/current/locale/de/LC_MESSAGES/django.mo").exists


def test_the_override_module_sets_what_the_project_hard_codes(host):
    require_converged(host)
    body = about(host)
    assert body["settings_module"] == "uvsite.settings_override"
    assert body["email_host"] == CONVERGED_EMAIL_HOST


def test_the_database_and_redis_answer(host):
    require_converged(host)
    body = json.loads(get(host, "/health/"))
    assert body == dict(body, database=True, cache=True, status="ok", release=live(host)), body
    # Django's cache, with the release's settings, is Redis, through the app's ACL user.
    code = "from django.core.cache import cache; cache.set('molecule', 'seen', 300)"
    script = "set -a && . .weblab/app.env && set +a && exec .venv/bin/python manage.py shell -c " + shlex.quote(code)
    stored = host.run("cd %s/current && runuser -u uvsite -- sh -c %s", DEPLOY, script)
    assert stored.rc == 0, stored.stderr
    # (Django stores a pickle: its bytes are not text.)
    stored = host.run("redis-cli -p 6379 --user uvsite --pass %s --no-auth-warning EXISTS uvsite:1:molecule",
                      "molecule-uvsite-redis-secret")
    assert stored.stdout.strip() == "1", stored.stdout + stored.stderr


def test_the_venv_holds_what_uv_lock_pins(host):
    require_converged(host)
    with open(os.path.join(PROJECT, "examples", "uvsite", "uv.lock"), "rb") as handle:
        locked = {item["name"]: item["version"] for item in tomllib.load(handle)["package"]}
    out = host.check_output(
        "%s/current/.venv/bin/python -c \"import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))\"", DEPLOY)
    installed = json.loads(out)
    for name in ("django", "redis", "celery", "psycopg", "kombu"):
        assert installed[name] == locked[name], name
    assert "gunicorn" in installed, "the app server's package was not added"
    assert "uvsite" not in installed, "the project itself went into the shared venv"


def test_no_release_file_is_writable_but_by_the_deploy_user(host):
    require_converged(host)
    release = f"{DEPLOY}/releases/{live(host)}"
    writable = host.check_output("find %s ! -type l -perm /022 -printf '%%m %%p\\n'", release)
    assert writable == "", writable
    owners = host.check_output("find %s ! -user uvsite -printf '%%u %%p\\n'", release)
    assert owners == "", owners
    venv = host.file(f"{release}/.venv")
    assert venv.is_symlink and host.check_output("stat -c %%U %s", venv.path) == "uvsite"
    assert host.file(f"{release}/.weblab/app.env").mode == 0o640
    assert not host.file(f"{DEPLOY}/shared/app.env").exists, "settings are shared by the releases again"
    venv = host.file(f"{release}/.venv").linked_to
    writable = host.check_output("find %s ! -type l -perm /022 -printf '%%m %%p\n' | head -5", venv)
    assert writable == "", writable


def test_no_secret_in_a_vvv_run(host):
    require_converged(host)
    assert_no_secret_in_vvv(host, os.path.join(STEPS, "deploy.yml"), SECRETS)


def test_the_app_server_and_redis_are_sandboxed(host):
    assert exposure(host, "gunicorn-uvsite.service") <= 3.0
    assert exposure(host, "redis-server.service") <= 3.0


# ---- a settings-only change that fails its checks --------------------------------------------

@pytest.fixture(scope="module")
def failing_settings(host):
    require_converged(host)
    before = {"live": live(host), "files": settings_files(host, live(host)), "about": about(host)}
    rc, output = deploy(host, **FAILING)
    return before, rc, output


def test_a_failing_settings_change_fails_the_deploy(host, failing_settings):
    before, rc, output = failing_settings
    assert rc != 0, output
    assert re.search(r"Release %s-\d+ of uvsite is marked failed and `current` was not switched"
                     % before["live"], words(output)), output


def test_a_failing_settings_change_leaves_the_live_release_as_it_was(host, failing_settings):
    before, _rc, _output = failing_settings
    assert live(host) == before["live"]
    assert settings_files(host, before["live"]) == before["files"]
    assert about(host)["email_host"] == before["about"]["email_host"]
    failed = [name for name, state in release_states(host).items() if state == "failed"]
    assert failed and all(name.startswith(before["live"] + "-") for name in failed), release_states(host)


def test_the_app_server_restarted_on_the_live_release_has_its_settings(host, failing_settings):
    """The next start of the app server loads the live release's settings, not the failed ones."""
    before, _rc, _output = failing_settings
    host.check_output("systemctl restart gunicorn-uvsite.service")
    body = about(host)
    assert body["release"] == before["live"] and body["email_host"] == before["about"]["email_host"]


# ---- a settings change of the live commit ----------------------------------------------------

@pytest.fixture(scope="module")
def changed_settings(host):
    require_converged(host)
    before = {"live": live(host), "files": settings_files(host, live(host))}
    rc, output = deploy(host, **CHANGED)
    after = live(host)
    rerun = deploy(host, **CHANGED)
    return before, rc, output, after, rerun


def test_a_settings_change_of_the_live_commit_is_a_new_release(host, changed_settings):
    before, rc, output, after, _rerun = changed_settings
    assert rc == 0, output
    assert re.fullmatch(re.escape(before["live"]) + r"-\d+", after), after
    assert about(host)["email_host"] == CHANGED["uvsite_email_host"]
    assert about(host)["release"] == after
    assert settings_files(host, before["live"]) == before["files"], "the old release's settings changed"


def test_the_deploy_checks_warnings_are_shown(host, changed_settings):
    _before, _rc, output, _after, _rerun = changed_settings
    assert "security.W004" in output, output


def test_the_same_settings_again_change_nothing(host, changed_settings):
    _before, _rc, _output, after, (rc, output) = changed_settings
    assert rc == 0, output
    assert recap(output, host)["changed"] == 0, output
    assert live(host) == after


def test_back_to_the_first_settings_goes_back_to_their_release(host, changed_settings):
    rc, output = deploy(host)
    assert rc == 0, output
    assert live(host) == commit(host)[:12]
    assert about(host)["email_host"] == CONVERGED_EMAIL_HOST
