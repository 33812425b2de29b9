"""Bad weblab.stack.common input fails before any work, with a message naming the variable."""

import pytest

BAD_INPUT = [
    pytest.param({"common_apt_cache_valid_time": "soon"}, "common_apt_cache_valid_time", id="int-not-a-number"),
    pytest.param({"common_deploy_groups": {"adm": True}}, "common_deploy_groups", id="list-given-a-dict"),
    pytest.param({"common_extra_ca_certificates": [{"name": "proxy", "state": "gone"}]},
                 "common_extra_ca_certificates", id="certificate-unknown-state"),
    pytest.param({"common_extra_ca_certificates": [{"name": "proxy"}]},
                 "common_extra_ca_certificates", id="certificate-without-content-or-src"),
    pytest.param({"common_extra_ca_certificates": [{"name": "proxy", "content": "x", "src": "/x.crt"}]},
                 "common_extra_ca_certificates", id="certificate-with-content-and-src"),
    pytest.param({"common_extra_ca_certificates": [{"content": "x"}]},
                 "common_extra_ca_certificates", id="certificate-without-name"),
    pytest.param({"common_extra_ca_certificates": [{"name": "../../etc/passwd", "content": "x"}]},
                 "common_extra_ca_certificates", id="certificate-name-with-slash"),
]


@pytest.mark.parametrize(("variables", "named"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named):
    refusals.of(variables).assert_refused(named)


def test_good_input_passes_validation(run_role):
    """The same harness accepts valid input, so the failures above are about the input."""
    result = run_role("common", {
        "common_extra_ca_certificates": [{"name": "proxy.example-1", "content": "x", "state": "absent"}],
        "common_apt_cache_valid_time": "60",
    }, "--tags", "common_validate")
    assert result.returncode == 0, result.output
    assert "Validating arguments against arg spec" in result.stdout
    assert "Check the extra CA certificate names" in result.stdout
