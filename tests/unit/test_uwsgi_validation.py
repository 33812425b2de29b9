"""Bad weblab.stack.uwsgi input fails before any work, with a message naming the variable."""

import pytest

GOOD = {"uwsgi_module": "weblab_site.wsgi:application"}


def settings(**changes):
    return dict(GOOD, **changes)


BAD_INPUT = [
    pytest.param({}, "uwsgi_module", "module:callable", id="module-missing"),
    pytest.param(settings(uwsgi_module="weblab_site/wsgi.py"), "uwsgi_module", "module:callable",
                 id="module-is-a-file"),
    pytest.param(settings(uwsgi_module="weblab_site.wsgi"), "uwsgi_module", "module:callable",
                 id="module-without-callable"),
    pytest.param(settings(uwsgi_app="my app"), "uwsgi_app", "letters", id="app-name-with-a-space"),
    pytest.param(settings(uwsgi_deploy_path="srv/weblab"), "uwsgi_deploy_path", "absolute path",
                 id="deploy-path-relative"),
    pytest.param(settings(uwsgi_deploy_path="/srv/../etc"), "uwsgi_deploy_path", "'..' parts",
                 id="deploy-path-with-dotdot"),
    pytest.param(settings(uwsgi_socket="/run/weblab/uwsgi %i.sock"), "uwsgi_socket", "absolute path",
                 id="socket-with-a-specifier"),
    pytest.param(settings(uwsgi_socket="/run/" + "s" * 110 + ".sock"), "uwsgi_socket", "107 characters",
                 id="socket-too-long"),
    pytest.param(settings(uwsgi_socket="/run/uwsgi-weblab/uwsgi.sock"), "uwsgi_socket", "runtime directory",
                 id="socket-in-the-runtime-dir"),
    pytest.param(settings(uwsgi_env_file="app.env"), "uwsgi_env_file", "absolute path", id="env-file-relative"),
    pytest.param(settings(uwsgi_writable_paths=["/srv/weblab/shared/media", "media"]), "uwsgi_writable_paths",
                 "absolute path", id="writable-path-relative"),
    pytest.param(settings(uwsgi_user="root"), "uwsgi_user", "never root", id="user-root"),
    pytest.param(settings(uwsgi_group="root"), "uwsgi_group", "never root", id="group-root"),
    pytest.param(settings(uwsgi_socket_group="www data"), "uwsgi_socket_group", "a group", id="socket-group-bad"),
    pytest.param(settings(uwsgi_processes=-1), "uwsgi_processes", "from 0 to 256", id="processes-negative"),
    pytest.param(settings(uwsgi_processes="many"), "uwsgi_processes", "uwsgi_processes",
                 id="processes-not-a-number"),
    pytest.param(settings(uwsgi_harakiri=0), "uwsgi_harakiri", "from 1 to", id="harakiri-zero"),
    pytest.param(settings(uwsgi_buffer_size=100000), "uwsgi_buffer_size", "from 4096 to 65535",
                 id="buffer-size-too-big"),
    pytest.param(settings(uwsgi_max_requests=-5), "uwsgi_max_requests", "from 0 to", id="max-requests-negative"),
    pytest.param(settings(uwsgi_reload_timeout=1), "uwsgi_reload_timeout", "from 5 to", id="reload-timeout-short"),
    pytest.param(settings(uwsgi_request_log="sometimes"), "uwsgi_request_log", "uwsgi_request_log",
                 id="request-log-not-a-bool"),
    pytest.param(settings(uwsgi_extra_options={"lazy-apps": False}), "uwsgi_extra_options", "lazy-apps",
                 id="extra-option-of-the-role"),
    pytest.param(settings(uwsgi_extra_options={"Bad Name": 1}), "uwsgi_extra_options", "option names",
                 id="extra-option-bad-name"),
    pytest.param(settings(uwsgi_extra_options={"route": "^/x$ break:403\nmaster = false"}),
                 "uwsgi_extra_options", "no line", id="extra-option-value-with-a-line-break"),
    pytest.param(settings(uwsgi_extra_options=["harakiri-verbose"]), "uwsgi_extra_options",
                 "uwsgi_extra_options", id="extra-options-not-a-dict"),
]


@pytest.mark.parametrize(("variables", "named", "says"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named, says):
    refusals.of(variables).assert_refused(named, says)


@pytest.mark.parametrize("variables", [
    pytest.param(GOOD, id="defaults"),
    pytest.param(settings(uwsgi_app="lab-site", uwsgi_deploy_path="/srv/lab-site", uwsgi_processes=3,
                          uwsgi_socket="/run/lab-site/app.sock", uwsgi_writable_paths=["/srv/lab-site/shared/media"],
                          uwsgi_extra_options={"harakiri-verbose": True, "route": ["^/a$ break:403", "^/b$ break:404"]}),
                 id="everything-set"),
])
def test_good_input_passes_validation(run_role, variables):
    """The same harness accepts good settings, so the failures above are about the input."""
    result = run_role("uwsgi", variables, "--tags", "uwsgi_validate")
    assert result.returncode == 0, result.output
    assert "Check the WSGI application" in result.stdout
