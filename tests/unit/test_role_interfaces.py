"""Every role's defaults/main.yml and meta/argument_specs.yml describe the same interface."""

import pathlib

import pytest
import yaml

ROLES_DIR = pathlib.Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())

# YAML value -> the argument spec type it must be declared as.
TYPES = {bool: "bool", int: "int", float: "float", list: "list", dict: "dict"}
STRING_TYPES = {"str", "path", "raw"}


def load(role, *parts):
    with open(ROLES_DIR.joinpath(role, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def test_roles_found():
    assert "common" in ROLES


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_argument_specs_for_main(role):
    specs = load(role, "meta", "argument_specs.yml")["argument_specs"]
    assert "main" in specs


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_main_spec_name_the_same_variables(role):
    defaults = load(role, "defaults", "main.yml")
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), (
        f"only in defaults: {sorted(set(defaults) - set(options))}; "
        f"only in argument_specs: {sorted(set(options) - set(defaults))}"
    )


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role):
    defaults = load(role, "defaults", "main.yml")
    wrong = [name for name in defaults if not name.startswith(f"{role}_")]
    assert not wrong, f"{role}: variables without the '{role}_' prefix: {wrong}"


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_match_defaults(role):
    defaults = load(role, "defaults", "main.yml")
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        spec = options.get(name, {})
        if spec.get("required"):
            continue
        assert spec.get("default") == value, (
            f"{role}: {name} defaults to {value!r} in defaults/main.yml "
            f"but {spec.get('default')!r} in argument_specs"
        )


@pytest.mark.parametrize("role", ROLES)
def test_spec_types_match_defaults(role):
    defaults = load(role, "defaults", "main.yml")
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        declared = options.get(name, {}).get("type", "str")
        if value is None or declared == "raw":
            continue
        expected = TYPES.get(type(value), "str")
        if expected == "str":
            assert declared in STRING_TYPES, f"{role}: {name} is a string but declared {declared}"
        else:
            assert declared == expected, f"{role}: {name} is a {expected} but declared {declared}"


@pytest.mark.parametrize("role", ROLES)
def test_every_option_is_documented(role):
    for entry, spec in load(role, "meta", "argument_specs.yml")["argument_specs"].items():
        for name, option in spec.get("options", {}).items():
            assert option.get("description"), f"{role} ({entry}): {name} has no description"
