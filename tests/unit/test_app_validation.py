"""Bad weblab.stack.app input fails before any work, with a message naming the variable."""

import pytest

GOOD = {"app_source": "git", "app_git_repo": "https://example.invalid/lab.git"}

# Each BAD_INPUT case is GOOD with its changes (tests/unit/conftest.py: refusals).
BAD_INPUT_BASE = GOOD
BAD_INPUT = [
    pytest.param({"app_source": "svn"}, "app_source", id="unknown-source"),
    pytest.param({"app_git_repo": ""}, "app_git_repo", id="git-without-repository"),
    pytest.param({"app_source": "directory", "app_source_path": ""}, "app_source_path", id="directory-without-path"),
    pytest.param({"app_release_name": "a/b"}, "app_release_name", id="release-name-with-slash"),
    pytest.param({"app_keep_releases": 0}, "app_keep_releases", id="keep-below-one"),
    pytest.param({"app_peers": ["web-nowhere"]}, "app_peers", id="peer-not-in-inventory"),
    pytest.param({"app_peers": "web1"}, "app_peers", id="peers-not-a-list"),
    pytest.param({"app_retry_failed": "maybe"}, "app_retry_failed", id="retry-not-a-bool"),
    pytest.param({"app_keep_releases": "many"}, "app_keep_releases", id="keep-not-a-number"),
    pytest.param({"app_shared_paths": ["/var/media"]}, "app_shared_paths", id="absolute-shared-path"),
    pytest.param({"app_shared_paths": ["media/../../etc"]}, "app_shared_paths", id="shared-path-escapes"),
    pytest.param({"app_requirements_files": ["../requirements.txt"]}, "app_requirements_files", id="requirements-outside"),
    pytest.param({"app_environment": ["DEBUG=1"]}, "app_environment", id="environment-not-a-dict"),
    pytest.param({"app_environment": {"BAD NAME": "x"}}, "app_environment", id="environment-bad-name"),
    pytest.param({"app_environment": {"SECRET": "it's"}}, "app_environment", id="environment-single-quote"),
    pytest.param({"app_wsgi_application": "site.wsgi"}, "app_wsgi_application", id="wsgi-without-attribute"),
    pytest.param({"app_django_check_fail_level": "LOUD"}, "app_django_check_fail_level", id="unknown-fail-level"),
    pytest.param({"app_backup_before_migrate": True}, "app_backup_database", id="dump-without-database"),
    pytest.param({"app_backup_before_migrate": True, "app_backup_database": "lab", "app_backup_port": 5432},
                 "app_backup_dir", id="dump-without-dir"),
    pytest.param({"app_backup_before_migrate": True, "app_backup_database": "lab", "app_backup_dir": "/srv/dumps"},
                 "app_backup_port", id="dump-without-port"),
    pytest.param({"app_backup_dir": "backups"}, "app_backup_dir", id="dump-dir-not-absolute"),
    pytest.param({"app_backup_port": "db"}, "app_backup_port", id="dump-port-not-a-number"),
    pytest.param({"app_backup_port": 70000}, "app_backup_port", id="dump-port-out-of-range"),
    pytest.param({"app_runtime_user": "weblab"}, "app_runtime_user", id="runtime-user-owns-the-code"),
    pytest.param({"app_static_group": "weblab"}, "app_static_group", id="static-group-reads-settings"),
    pytest.param({"app_runtime_writable_paths": ["/var/lib/x"]}, "app_runtime_writable_paths",
                 id="writable-path-absolute"),
    pytest.param({"app_venv_packages": {"gunicorn": "27"}}, "app_venv_packages", id="venv-packages-not-a-list"),
    pytest.param({"app_health_socket": "run/app.sock"}, "app_health_socket", id="health-socket-relative"),
    pytest.param({"app_health_protocol": "fastcgi"}, "app_health_protocol", id="health-unknown-protocol"),
    pytest.param({"app_health_path": "health/"}, "app_health_path", id="health-path-relative"),
    pytest.param({"app_health_timeout": 0}, "app_health_timeout", id="health-timeout-zero"),
    pytest.param({"app_health_status": [200, 999]}, "app_health_status", id="health-status-not-http"),
    pytest.param({"app_health_forwarded_proto": "ftp"}, "app_health_forwarded_proto", id="health-unknown-proto"),
    pytest.param({"app_stage_command": {"argv": "stage"}}, "app_stage_command", id="stage-command-not-a-list"),
    pytest.param({"app_install": "poetry"}, "app_install", id="unknown-installer"),
    pytest.param({"app_uv_sync_args": {"--no-dev": True}}, "app_uv_sync_args", id="uv-args-not-a-list"),
    pytest.param({"app_build_packages": {"gettext": 1}}, "app_build_packages", id="build-packages-not-a-list"),
    pytest.param({"app_build_commands": ["python manage.py compilemessages"]}, "app_build_commands",
                 id="build-step-a-string"),
    pytest.param({"app_build_commands": [[]]}, "app_build_commands", id="build-step-empty"),
    pytest.param({"app_build_commands": [["npm", ["run"]]]}, "app_build_commands", id="build-step-nested"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named):
    refusals.of(variables).assert_refused(named)


def test_environment_values_stay_out_of_the_error(run_role):
    result = run_role("app", dict(GOOD, app_environment={"DJANGO_SECRET_KEY": "hunter2'secret"}))
    assert result.returncode != 0, result.output
    assert any("DJANGO_SECRET_KEY" in msg for msg in result.messages), result.output
    assert "hunter2" not in result.output


def test_good_input_passes_validation(run_role):
    result = run_role("app", dict(GOOD, app_environment={"DJANGO_DEBUG": "0"}, app_shared_paths=["media"]),
                      "--tags", "app_validate")
    assert result.returncode == 0, result.output


def test_pre_migration_dump_with_its_database_dir_and_port_passes_validation(run_role):
    result = run_role("app", dict(GOOD, app_backup_before_migrate=True, app_backup_database="lab",
                                  app_backup_dir="/srv/dumps", app_backup_port=5433), "--tags", "app_validate")
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("variables", [
    pytest.param({"app_rollback_release": "../a"}, id="release-not-a-name"),
    pytest.param({"app_deploy_path": "srv/lab"}, id="path-not-absolute"),
])
def test_bad_rollback_input_fails_before_any_work(run_role, variables):
    run_role("app", variables, entry_point="rollback").assert_refused(next(iter(variables)))
