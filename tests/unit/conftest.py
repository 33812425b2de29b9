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
    """The outcome of one ansible-playbook run of a role, or of one host's part of a batch."""

    def __init__(self, returncode, output, tasks, messages, stdout=""):
        self.returncode = returncode
        self.output = output
        self.stdout = stdout
        # The role's tasks that started, argument validation included.
        self.tasks = tasks
        # The "msg" of each failed task. Look for a variable's name here, not in the whole
        # output: a failed argument spec check prints the spec, which names every variable.
        self.messages = messages

    @classmethod
    def of_run(cls, role, result):
        """From the default callback's output of RESULT (a CompletedProcess)."""
        output = result.stdout + result.stderr
        return cls(result.returncode, output,
                   [line for line in result.stdout.splitlines() if line.startswith(f"TASK [weblab.stack.{role} : ")],
                   [json.loads(f'"{raw}"') for raw in re.findall(r'"msg": "((?:[^"\\]|\\.)*)"', output)],
                   result.stdout)

    def assert_refused(self, *named):
        """The run failed in validation, before any other task, with a message naming each of
        `named` (a variable, or any text the message must hold)."""
        assert self.returncode != 0, self.output
        for text in named:
            assert any(text in msg for msg in self.messages), self.output
        # Validation ran, and only validation: the argument spec check and the role's own checks.
        assert self.tasks, self.output
        assert all("Validat" in task or "Check the" in task for task in self.tasks), self.tasks


class RoleRuns:
    """One ansible-playbook run of a role for many variable sets: one inventory host per set
    (all local), so a module's refusal cases cost one Ansible start, not one each. The JSON
    callback gives each host's tasks and failure messages; `output` is the whole run's."""

    def __init__(self, role, cases, result):
        self.base = {}
        self.output = result.stdout + result.stderr
        assert result.stdout.strip(), self.output
        tasks = [task for play in json.loads(result.stdout)["plays"] for task in play["tasks"]]
        self.runs = {}
        for index, variables in enumerate(cases):
            host = f"case{index}"
            ran = [(task["task"]["name"], task["hosts"][host]) for task in tasks if host in task["hosts"]]
            self.runs[self.key(variables)] = RoleRun(
                int(any(res.get("failed") for _name, res in ran)), self.output,
                [f"TASK [weblab.stack.{role} : {name}]" if " : " not in name else f"TASK [{name}]"
                 for name, _res in ran],
                [msg for _name, res in ran if res.get("failed")
                 for msg in [res.get("msg", "")] + [item.get("msg", "") for item in res.get("results", [])]])

    @staticmethod
    def key(variables):
        return json.dumps(variables, sort_keys=True)

    def of(self, variables):
        """The run of the host that had VARIABLES (over the cases' base)."""
        return self.runs[self.key(dict(self.base, **variables))]


def role_playbook(directory, role, entry_point, hosts):
    """A playbook applying weblab.stack.ROLE (its ENTRY_POINT tasks) to HOSTS."""
    playbook = directory / "play.yml"
    playbook.write_text(
        "- name: Apply one role\n"
        f"  hosts: {hosts}\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Import the role\n"
        "      ansible.builtin.import_role:\n"
        f"        name: weblab.stack.{role}\n"
        f"        tasks_from: {entry_point}\n",
        encoding="utf-8",
    )
    return playbook


def ansible_playbook(argv, **env):
    """ansible-playbook ARGV of this venv, without colours and localhost warnings, in check mode:
    nothing on this machine changes even if validation were broken, and a task that got past
    validation shows up in the output."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT.parents[2]), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", **env)
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "--check", *argv],
                          env=env, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture
def run_role(tmp_path):
    """Run weblab.stack.ROLE against localhost in check mode with the given variables (extra
    vars); extra arguments go to ansible-playbook."""

    def run(role, variables, *extra, entry_point="main"):
        return RoleRun.of_run(role, ansible_playbook(
            ["-i", "localhost,", "-c", "local",
             # This interpreter: discovery may find a broken one on a developer's machine.
             "-e", f"ansible_python_interpreter={sys.executable}",
             "-e", json.dumps(variables), *extra, str(role_playbook(tmp_path, role, entry_point, "localhost"))]))

    return run


@pytest.fixture(scope="module")
def run_roles(tmp_path_factory):
    """Run weblab.stack.ROLE in check mode once for a list of variable sets, each the host
    variables of a local host of its own, as an inventory sets them; a RoleRuns."""

    def run(role, cases, entry_point="main"):
        directory = tmp_path_factory.mktemp(role)
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        hosts = {f"case{index}": dict(variables, **local) for index, variables in enumerate(cases)}
        inventory = directory / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": hosts}}), encoding="utf-8")
        return RoleRuns(role, cases, ansible_playbook(
            ["-i", str(inventory), "--forks", "8", str(role_playbook(directory, role, entry_point, "all"))],
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_INVENTORY_ENABLED="yaml"))

    return run


@pytest.fixture(scope="module")
def refusals(request, run_roles):
    """The test module's BAD_INPUT cases (pytest.params whose first value holds the variables,
    over the module's BAD_INPUT_BASE when it has one) in one run of the role the module is
    named after (test_ROLE_validation.py); look a case up with .of(variables)."""
    module = request.module
    role = module.__name__.rsplit(".", 1)[-1].removeprefix("test_").removesuffix("_validation")
    base = getattr(module, "BAD_INPUT_BASE", {})
    runs = run_roles(role, [dict(base, **case.values[0]) for case in module.BAD_INPUT])
    runs.base = base
    return runs
