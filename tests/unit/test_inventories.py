"""The inventories under inventories/: nothing secret is committed, the example environments
read every secret from vault and list each one in vault.yml.example, they can live side by side
on one host, and their values pass weblab.stack.weblab's checks. (The demo inventory runs end to
end in `make demo-test`.) Settings live in the inventories only: the checkout has no root
group_vars/, which Ansible would not load for the plays the root site.yml imports."""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORIES = ROOT / "inventories"
EXAMPLES = ["production.example", "staging.example"]
# Variables whose values are secrets (passwords, keys, tokens, a TLS private key).
SECRET = re.compile(r"(password|secret|token|_key)$")
# Where a committed secret's value may come from: a vault variable, or a file the demo generates
# on the controller (ansible.builtin.password, or the certificates it makes).
FROM_VAULT_OR_GENERATED = re.compile(
    r"^\{\{ (vault_\w+|lookup\('ansible\.builtin\.(password|file)', demo_secrets ~ '/[\w./-]+ ?'( ~ \w+)?\)) \}\}$")
# Per environment: each must differ between two environments on one host.
PER_ENVIRONMENT = ["weblab_app_name", "weblab_deploy_path", "weblab_server_names", "weblab_db_name",
                   "weblab_db_user", "weblab_tq_app_name", "weblab_tq_deploy_path", "weblab_tq_server_names",
                   "weblab_broker_vhost", "weblab_broker_user"]
# The host's shared services: the same in both environments.
SHARED = ["weblab_db_port", "weblab_backup_dir", "weblab_cache_servers"]


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def group_vars(inventory):
    """Every group_vars file of INVENTORY Ansible loads (not the .example ones)."""
    directory = INVENTORIES / inventory / "group_vars"
    return sorted(path for path in directory.rglob("*") if path.suffix in (".yml", ".yaml") and path.is_file())


def example_values(inventory):
    """The host variables of the example's host: hosts.yml's, main.yml's and, as a filled-in
    vault.yml would give them, vault.yml.example's."""
    hosts = load(INVENTORIES / inventory / "hosts.yml")["all"]["hosts"]
    [(host, host_vars)] = hosts.items()
    values = dict(load(INVENTORIES / inventory / "group_vars" / "all" / "main.yml"), **host_vars)
    values.update(load(INVENTORIES / inventory / "group_vars" / "all" / "vault.yml.example"))
    return host, values


@pytest.mark.parametrize("inventory", ["demo", *EXAMPLES])
def test_no_secret_is_committed(inventory):
    files = group_vars(inventory)
    assert files, inventory
    for path in files:
        for name, value in load(path).items():
            if SECRET.search(name) or name == "weblab_tls_certificate_key":
                assert FROM_VAULT_OR_GENERATED.match(str(value)), f"{path.relative_to(ROOT)}: {name}: {value!r}"


@pytest.mark.parametrize("inventory", EXAMPLES)
def test_vault_example_lists_exactly_the_vault_variables_used(inventory):
    main = (INVENTORIES / inventory / "group_vars" / "all" / "main.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\bvault_\w+", main))
    listed = set(load(INVENTORIES / inventory / "group_vars" / "all" / "vault.yml.example"))
    assert used and used == listed


def test_examples_live_side_by_side_on_one_host():
    (host_a, prod), (host_b, staging) = (example_values(name) for name in EXAMPLES)
    assert host_a == host_b
    for name in PER_ENVIRONMENT:
        assert prod[name] != staging[name], name
    for name in SHARED:
        assert prod[name] == staging[name], name


def test_example_values_pass_the_checks(run_roles):
    cases = [example_values(name)[1] for name in EXAMPLES]
    runs = run_roles("weblab", cases)
    for case in cases:
        result = runs.of(case)
        assert result.returncode == 0, (result.messages, result.tasks)


def test_no_root_group_vars():
    """The root site.yml only imports weblab.stack.site; ansible-core loads playbook group_vars from
    the imported playbook's directory, so a group_vars/ beside site.yml would be silently ignored."""
    assert not (ROOT / "group_vars").exists()


def test_demo_inventory_is_what_demo_test_changes():
    """tests/demo/run.sh copies inventories/demo, sets demo_checkout to the checkout (one line) and
    adds weblab_db_port, which the demo inventory leaves at its default."""
    text = (INVENTORIES / "demo" / "group_vars" / "all.yml").read_text(encoding="utf-8")
    assert len(re.findall(r"(?m)^demo_checkout: ", text)) == 1
    assert "weblab_db_port" not in load(INVENTORIES / "demo" / "group_vars" / "all.yml")
