"""molecule/shared/callback_plugins/weblab_check_unchanged.py: Molecule's `check` step fails
when --check of converge.yml reports a change, and only then."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
CALLBACKS = ROOT / "molecule" / "shared" / "callback_plugins"
PLAY = """\
- name: Converge
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the marker
      ansible.builtin.copy:
        content: "marker\\n"
        dest: "{dest}"
        mode: "0644"
"""


def run(tmp_path, playbook_name, *options):
    playbook = tmp_path / playbook_name
    playbook.write_text(PLAY.format(dest=tmp_path / "marker"), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
               ANSIBLE_CALLBACKS_ENABLED="weblab_check_unchanged", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", *options, str(playbook)],
        env=env, capture_output=True, text=True, check=False, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_check_of_converge_that_would_change_fails_naming_the_task(tmp_path):
    rc, output = run(tmp_path, "converge.yml", "--check")
    assert rc != 0, output
    assert "localhost: Write the marker" in output
    assert not (tmp_path / "marker").exists()


def test_check_of_converge_that_changes_nothing_passes(tmp_path):
    rc, output = run(tmp_path, "converge.yml")
    assert rc == 0, output
    rc, output = run(tmp_path, "converge.yml", "--check")
    assert rc == 0, output


@pytest.mark.parametrize("playbook, options", [("converge.yml", ()), ("step.yml", ("--check",))])
def test_real_runs_and_other_playbooks_may_change(tmp_path, playbook, options):
    rc, output = run(tmp_path, playbook, *options)
    assert rc == 0, output
    assert "changed=1" in output
