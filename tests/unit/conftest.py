"""Shared fixtures for the unit tests (no containers)."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The tests import the collection by its full name, from the ansible_collections/ tree the
# checkout is mirrored into (make collection).
if str(ROOT.parents[2]) not in sys.path:
    sys.path.insert(0, str(ROOT.parents[2]))
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


class RoleRun:
    """The outcome of one ansible-playbook run of a role."""

    def __init__(self, role, result):
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.output = result.stdout + result.stderr
        # The role's tasks that started, argument validation included.
        self.tasks = [line for line in result.stdout.splitlines()
                      if line.startswith(f"TASK [weblab.stack.{role} : ")]
        # The "msg" of each failed task. Look for a variable's name here, not in the whole
        # output: a failed argument spec check prints the spec, which names every variable.
        self.messages = [json.loads(f'"{raw}"')
                         for raw in re.findall(r'"msg": "((?:[^"\\]|\\.)*)"', self.output)]

    def assert_refused(self, *named):
        """The run failed in validation, before any other task, with a message naming each of
        `named` (a variable, or any text the message must hold)."""
        assert self.returncode != 0, self.output
        for text in named:
            assert any(text in msg for msg in self.messages), self.output
        # Validation ran, and only validation: the argument spec check and the role's own checks.
        assert self.tasks, self.output
        assert all("Validat" in task or "Check the" in task for task in self.tasks), self.tasks


@pytest.fixture
def run_role(tmp_path):
    """Run weblab.stack.ROLE against localhost in check mode with the given variables.

    Check mode: nothing on this machine changes even if validation were broken, and a task that
    got past validation shows up in RoleRun.tasks. Extra arguments go to ansible-playbook.
    """

    def run(role, variables, *extra, entry_point="main"):
        playbook = tmp_path / "play.yml"
        playbook.write_text(
            "- name: Apply one role\n"
            "  hosts: localhost\n"
            "  gather_facts: false\n"
            "  tasks:\n"
            "    - name: Import the role\n"
            "      ansible.builtin.import_role:\n"
            f"        name: weblab.stack.{role}\n"
            f"        tasks_from: {entry_point}\n",
            encoding="utf-8",
        )
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT.parents[2]), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
        result = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "--check", "-i", "localhost,", "-c", "local",
             # This interpreter: discovery may find a broken one on a developer's machine.
             "-e", f"ansible_python_interpreter={sys.executable}",
             "-e", json.dumps(variables), *extra, str(playbook)],
            env=env, capture_output=True, text=True, check=False, timeout=300,
        )
        return RoleRun(role, result)

    return run
