"""The venv key: everything that decides a venv's content changes its name, nothing else does."""

import hashlib

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.weblab.stack.plugins.filter.venv import FilterModule, venv_key

PY = "3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]"
A = "a" * 64
B = "b" * 64
BASE = dict(python=PY, install="uv", checksums=[A, B], packages=["gunicorn==23.0.0"],
            pip_args=["--index-url=https://pypi.example/simple"], uv="uv==0.9.2")


def test_the_filter_is_exported():
    assert FilterModule().filters()["venv_key"] is venv_key


def test_a_requirements_venv_keeps_the_key_earlier_roles_gave_it():
    legacy = hashlib.sha256("\n".join([PY, A, "packages", "gunicorn", "pip", "--no-binary=:all:"])
                            .encode()).hexdigest()[:16]
    assert venv_key(PY, "requirements", [A], ["gunicorn"], ["--no-binary=:all:"]) == legacy


@pytest.mark.parametrize("name, other", [
    ("python", "3.13.5 (main) [GCC 14.2.0]"),
    ("install", "package"),
    ("checksums", [A]),
    ("checksums", [B, A]),
    ("packages", ["gunicorn==23.0.0", "setproctitle"]),
    ("packages", []),
    ("pip_args", []),
    ("pip_args", ["--index-url=https://other.example/simple"]),
    ("uv", "uv==0.9.3"),
])
def test_every_input_changes_the_key(name, other):
    assert venv_key(**{**BASE, name: other}) != venv_key(**BASE)


def test_the_same_inputs_give_the_same_key():
    assert venv_key(**BASE) == venv_key(**{**BASE, "checksums": list(BASE["checksums"])})
    assert len(venv_key(**BASE)) == 16


def test_uv_is_no_part_of_a_key_that_does_not_use_it():
    for install in ("requirements", "package"):
        assert venv_key(**{**BASE, "install": install}) == venv_key(**{**BASE, "install": install, "uv": "uv==1"})


def test_the_installers_never_share_a_key():
    keys = {venv_key(**{**BASE, "install": install}) for install in ("requirements", "uv", "package")}
    assert len(keys) == 3


@pytest.mark.parametrize("change, named", [
    ({"python": ""}, "python"),
    ({"install": "poetry"}, "install"),
    ({"checksums": "abc"}, "checksums"),
    ({"checksums": ["not-a-digest"]}, "checksums"),
    ({"packages": "gunicorn"}, "packages"),
    ({"pip_args": [1]}, "pip_args"),
    ({"uv": None}, "uv"),
])
def test_bad_input_is_refused_by_name(change, named):
    with pytest.raises(AnsibleFilterError, match="venv_key: %s " % named):
        venv_key(**{**BASE, **change})
