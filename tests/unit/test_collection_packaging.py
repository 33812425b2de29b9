"""The built artifact holds the collection and nothing of the test harness; it installs offline."""

import os
import pathlib
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
# Never in the artifact: test harness, inventories, benchmarks, caches and build output.
EXCLUDED_TOP = {"molecule", "tests", "inventories", "bench", "images", "scripts", ".build", ".venv",
                ".cache", ".ansible", ".ci", ".config", ".git", ".pytest_cache",
                "ansible.cfg", "site.yml", "group_vars", "Vagrantfile", ".vagrant"}


def run(*argv, cwd, env=None):
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True,
                            text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run("ansible-galaxy", "collection", "build", "--output-path", str(out), cwd=ROOT)
    (path,) = out.glob("weblab-stack-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def installed(artifact, tmp_path_factory):
    """The artifact installed into an empty collections path, with Galaxy out of reach."""
    path = tmp_path_factory.mktemp("collections")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(path), ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9/")
    run("ansible-galaxy", "collection", "install", "--offline", "-p", str(path), str(artifact),
        cwd=path, env=env)
    return path, env


def test_artifact_leaves_out_the_harness(artifact):
    with tarfile.open(artifact) as tar:
        tops = {name.split("/")[0] for name in tar.getnames()}
    assert not tops & EXCLUDED_TOP, sorted(tops & EXCLUDED_TOP)


def test_artifact_holds_every_role(artifact):
    roles = {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()}
    with tarfile.open(artifact) as tar:
        packed = {name.split("/")[1] for name in tar.getnames()
                  if name.startswith("roles/") and name.count("/") >= 1 and name.split("/")[1]}
    assert roles == packed


def test_installed_collection_is_found(installed):
    path = installed[0]
    manifest = path / "ansible_collections" / "weblab" / "stack" / "MANIFEST.json"
    assert manifest.is_file()


def test_ansible_doc_shows_the_common_argument_spec(installed):
    path, env = installed
    out = run("ansible-doc", "-t", "role", "weblab.stack.common", cwd=path, env=env)
    assert "common_extra_ca_certificates" in out
    assert "common_deploy_user" in out


def test_runtime_dependencies_are_declared_for_galaxy_users():
    with open(ROOT / "galaxy.yml", encoding="utf-8") as handle:
        galaxy = yaml.safe_load(handle)
    with open(ROOT / "requirements.yml", encoding="utf-8") as handle:
        wanted = {c["name"] for c in yaml.safe_load(handle)["collections"]}
    assert set(galaxy["dependencies"]) <= wanted
