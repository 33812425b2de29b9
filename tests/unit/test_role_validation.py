"""Bad role input fails before the first task, with a message that names the variable.

Runs ansible-playbook against localhost in check mode: nothing on this machine changes even if
validation were broken, and a task that got past validation shows up in the output.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


def run_role(tmp_path, role, variables, *extra):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- name: Apply one role\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  roles:\n"
        f"    - role: weblab.stack.{role}\n",
        encoding="utf-8",
    )
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT.parents[2]), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "--check", "-i", "localhost,", "-c", "local",
         "-e", json.dumps(variables), *extra, str(playbook)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )


def tasks_run(output):
    return [line for line in output.splitlines() if line.startswith("TASK [")]


BAD_COMMON_INPUT = [
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


@pytest.mark.parametrize(("variables", "named"), BAD_COMMON_INPUT)
def test_bad_common_input_fails_before_any_work(tmp_path, variables, named):
    result = run_role(tmp_path, "common", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert named in output, output
    ran = tasks_run(result.stdout)
    # Only validation ran: the argument spec check and the role's own validate tasks.
    assert all("Validat" in task or "Check the" in task for task in ran), ran


def test_good_common_input_passes_validation(tmp_path):
    """The same harness accepts valid input, so the failures above are about the input."""
    result = run_role(tmp_path, "common", {
        "common_extra_ca_certificates": [{"name": "proxy.example-1", "content": "x", "state": "absent"}],
        "common_apt_cache_valid_time": "60",
    }, "--tags", "common_validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validating arguments against arg spec" in result.stdout
    assert "Check the extra CA certificate names" in result.stdout
