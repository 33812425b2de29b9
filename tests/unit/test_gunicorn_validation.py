"""Bad weblab.stack.gunicorn input fails before any work, with a message naming the variable."""

import pytest

BASE = {"gunicorn_wsgi_application": "weblab_site.wsgi:application"}


def settings(**changes):
    return dict(BASE, **changes)


BAD_INPUT = [
    pytest.param({}, "gunicorn_wsgi_application", "is required", id="no-wsgi-application"),
    pytest.param(settings(gunicorn_wsgi_application="weblab_site.wsgi"), "gunicorn_wsgi_application",
                 "module:attribute", id="wsgi-application-without-attribute"),
    pytest.param(settings(gunicorn_app="My App"), "gunicorn_app", "lowercase letters", id="app-name-with-a-space"),
    pytest.param(settings(gunicorn_user="root"), "gunicorn_user", "not root", id="runs-as-root"),
    pytest.param(settings(gunicorn_socket_group="weblab"), "gunicorn_socket_group", "never read",
                 id="socket-group-is-the-app-group"),
    pytest.param(settings(gunicorn_socket="run/weblab/gunicorn.sock"), "gunicorn_socket", "absolute path",
                 id="socket-relative"),
    pytest.param(settings(gunicorn_socket="/run/" + "s" * 110 + ".sock"), "gunicorn_socket", "107 characters",
                 id="socket-path-too-long"),
    pytest.param(settings(gunicorn_socket="/run/gunicorn-weblab/app.sock"), "gunicorn_socket",
                 "runtime directory", id="socket-in-the-runtime-directory"),
    pytest.param(settings(gunicorn_deploy_path="/srv/../weblab"), "gunicorn_deploy_path", "'..'",
                 id="deploy-path-with-dot-dot"),
    pytest.param(settings(gunicorn_env_file="shared/app.env"), "gunicorn_env_file", "absolute path",
                 id="env-file-relative"),
    pytest.param(settings(gunicorn_writable_paths=["/srv/weblab/releases"]), "gunicorn_writable_paths",
                 "write the code", id="writable-releases"),
    pytest.param(settings(gunicorn_writable_paths=["/srv/weblab/current/media"]), "gunicorn_writable_paths",
                 "write the code", id="writable-path-through-current"),
    pytest.param(settings(gunicorn_writable_paths=["/srv"]), "gunicorn_writable_paths", "write the code",
                 id="writable-parent-of-the-deploy-path"),
    pytest.param(settings(gunicorn_writable_paths=["srv/weblab/shared/media"]), "gunicorn_writable_paths",
                 "absolute path", id="writable-path-relative"),
    pytest.param(settings(gunicorn_access_log="/var/log/gunicorn/access.log"), "gunicorn_access_log",
                 "gunicorn_writable_paths", id="access-log-not-writable"),
    pytest.param(settings(gunicorn_timeout=60, gunicorn_graceful_timeout=30), "gunicorn_graceful_timeout",
                 "at least", id="graceful-timeout-shorter-than-timeout"),
    pytest.param(settings(gunicorn_timeout="thirty"), "gunicorn_timeout", "thirty", id="timeout-not-a-number"),
    pytest.param(settings(gunicorn_workers=-1), "gunicorn_workers", "from 1 to 256", id="workers-negative"),
    pytest.param(settings(gunicorn_max_requests_jitter=0), "gunicorn_max_requests_jitter", "without jitter",
                 id="recycling-without-jitter"),
    pytest.param(settings(gunicorn_max_requests=100, gunicorn_max_requests_jitter=500),
                 "gunicorn_max_requests_jitter", "from 1 to", id="jitter-above-max-requests"),
    pytest.param(settings(gunicorn_preload_app="sometimes"), "gunicorn_preload_app", "sometimes",
                 id="preload-not-a-boolean"),
    pytest.param(settings(gunicorn_warmup_path="health/"), "gunicorn_warmup_path", "starting with /",
                 id="warmup-path-relative"),
    pytest.param(settings(gunicorn_extra_settings={"workers": 4}), "gunicorn_extra_settings", "workers",
                 id="extra-settings-owned-by-the-role"),
    pytest.param(settings(gunicorn_extra_settings={"post_worker_init": "app.hooks.ready"}),
                 "gunicorn_extra_settings", "post_worker_init", id="extra-settings-replace-a-reload-hook"),
    pytest.param(settings(gunicorn_extra_settings={"Worker-Class": "gthread"}), "gunicorn_extra_settings",
                 "lowercase", id="extra-settings-bad-name"),
]


@pytest.mark.parametrize(("variables", "named", "says"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named, says):
    refusals.of(variables).assert_refused(named, says)


@pytest.mark.parametrize("variables", [
    pytest.param(BASE, id="defaults"),
    pytest.param(settings(gunicorn_app="lab_site-2", gunicorn_deploy_path="/srv/lab", gunicorn_user="lab-run",
                          gunicorn_group="lab", gunicorn_socket="/run/lab/app.sock",
                          gunicorn_env_file="/etc/lab/app.env"), id="other-names-and-paths"),
    pytest.param(settings(gunicorn_writable_paths=["/srv/weblab/shared/media", "/srv/weblab/shared/logs"],
                          gunicorn_access_log="/srv/weblab/shared/logs/access.log"), id="access-log-in-a-writable-path"),
    pytest.param(settings(gunicorn_access_log="-", gunicorn_workers=4, gunicorn_timeout=60,
                          gunicorn_graceful_timeout=60, gunicorn_preload_app=True), id="journal-access-log-preload"),
    pytest.param(settings(gunicorn_max_requests=0, gunicorn_max_requests_jitter=0), id="no-recycling"),
    pytest.param(settings(gunicorn_warmup_path="", gunicorn_extra_settings={"worker_class": "gthread", "threads": 4}),
                 id="no-warmup-extra-settings"),
])
def test_good_input_passes_validation(run_role, variables):
    """The same harness accepts good settings, so the failures above are about the input."""
    result = run_role("gunicorn", variables, "--tags", "gunicorn_validate")
    assert result.returncode == 0, result.output
    assert "Check the writable paths hold no code" in result.stdout
