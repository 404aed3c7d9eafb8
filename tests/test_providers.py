"""The provider contract (`mirrorspec/providers/`), walked over every installed provider.

Providers are found through the `mirrorspec.providers` entry-point group, built-ins
included, so a provider that ships later is checked here without editing this file: its
module exposes the contract's names, its docstring's example target block is a valid
target, and importing it stays cheap (no cloud SDK until a function talks to the cloud).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML

from mirrorspec import providers
from mirrorspec.errors import MirrorspecError
from mirrorspec.providers import (
    acr as acr_module,
    base,
    ecr as ecr_module,
    harbor as harbor_module,
    oci_layout as oci_layout_module,
    registry as registry_module,
)
from mirrorspec.providers.base import CONTRACT, Capabilities, Provider
from mirrorspec.spec import TARGET_TYPES, parse_spec

ROOT = Path(__file__).resolve().parent.parent

# Each built-in provider, by its `type:`. That each satisfies the Provider protocol is checked by
# mypy in `mirrorspec/providers/conformance.py` (tests are not type-checked); here, at run time.
PROVIDERS: dict[str, Provider] = {
    "acr": acr_module,
    "ecr": ecr_module,
    "harbor": harbor_module,
    "oci-layout": oci_layout_module,
    "registry": registry_module,
}

INSTALLED = sorted(providers.available())
# The contract is read from the Protocol, so a member added there is checked everywhere.
DATA = sorted(n for n, v in vars(Provider).items() if isinstance(v, property)) + sorted(
    Provider.__annotations__
)
VERBS = {
    name: len(inspect.signature(member).parameters) - 1  # without self
    for name, member in vars(Provider).items()
    if inspect.isfunction(member) and not name.startswith("_")
}


def module_of(type_name: str) -> ModuleType:
    return importlib.import_module(providers.available()[type_name])


def test_built_in_providers_are_entry_points() -> None:
    assert providers.GROUP == "mirrorspec.providers"
    assert providers.available()["registry"] == "mirrorspec.providers.registry"
    assert providers.get("registry") is registry_module
    for name, module in PROVIDERS.items():
        assert providers.get(name) is module


def test_every_installed_provider_is_a_type_the_spec_accepts() -> None:
    assert set(INSTALLED) <= set(TARGET_TYPES)
    built_in = {n for n, path in providers.available().items() if path.startswith("mirrorspec.providers.")}
    assert set(PROVIDERS) == built_in, "add each built-in provider to PROVIDERS"
    # ... and to the mapping mypy checks against the protocol (it exists only for mypy).
    source = (ROOT / "mirrorspec" / "providers" / "conformance.py").read_text(encoding="utf-8")
    (checked,) = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "BUILT_IN"
    ]
    assert isinstance(checked, ast.Dict)
    assert {ast.literal_eval(key) for key in checked.keys if key is not None} == built_in


def test_the_contract_has_what_style_promises() -> None:
    promised = {
        "Target",
        "PERMISSIONS",
        "IN_PLACE",
        "capabilities",
        "translate",
        "observe",
        "apply",
        "endpoint",
    }
    assert promised <= {*DATA, *VERBS}


def test_the_contract_names_providers_export_are_the_protocol_members() -> None:
    # A provider's `__all__` starts with `base.CONTRACT` instead of spelling the names again.
    assert sorted(CONTRACT) == sorted({*DATA, *VERBS})


@pytest.mark.parametrize("type_name", INSTALLED)
def test_provider_module_has_the_contract(type_name: str) -> None:
    module = module_of(type_name)
    missing = [name for name in (*DATA, *VERBS) if not hasattr(module, name)]
    assert missing == []
    assert {*DATA, *VERBS} <= set(module.__all__)

    target_model: Any = module.Target
    assert target_model.model_fields["type"].annotation.__args__ == (type_name,)
    assert set(module.PERMISSIONS) <= {"observe", "apply"}
    assert all(isinstance(action, str) and action for v in module.PERMISSIONS.values() for action in v)
    assert all(isinstance(attr, str) for v in module.IN_PLACE.values() for attr in v)
    for verb, arity in VERBS.items():
        function = getattr(module, verb)
        assert callable(function)
        assert len(inspect.signature(function).parameters) == arity, verb


@pytest.mark.parametrize("type_name", INSTALLED)
def test_docstring_example_is_a_valid_target(type_name: str) -> None:
    module = module_of(type_name)
    blocks = re.findall(r"```yaml\n(.*?)```", module.__doc__ or "", flags=re.DOTALL)
    assert len(blocks) == 1, "the module docstring opens with one ```yaml example target block"
    (example,) = YAML(typ="safe").load(blocks[0])
    assert example["type"] == type_name

    spec = parse_spec(wrap_in_spec(blocks[0], example), filename=f"{module.__name__} docstring")

    (target,) = spec.targets
    assert isinstance(target, module.Target)
    assert target.name == example["name"]
    capabilities = module.capabilities(target)
    assert isinstance(capabilities, Capabilities)
    assert module.capabilities(target) == capabilities  # pure


def wrap_in_spec(block: str, example: dict[str, Any]) -> str:
    """A minimal spec around a target block, declaring the credentials it names."""
    credentials = ""
    if isinstance(example.get("credentials"), str):
        credentials = (
            f"credentials:\n  {example['credentials']}:\n"
            "    username: {env: EXAMPLE_USER}\n    password: {env: EXAMPLE_PASSWORD}\n"
        )
    indented = "".join(f"  {line}\n" if line.strip() else "\n" for line in block.splitlines())
    return (
        f"version: 1\n{credentials}"
        "sources:\n  - registry: docker.io\n    repositories:\n      - name: library/redis\n"
        '        tags: ["7.2.4"]\n'
        f"targets:\n{indented}"
    )


def test_registry_has_nothing_native() -> None:
    assert registry_module.capabilities(object()) == Capabilities()
    assert registry_module.translate is base.nothing_native
    assert registry_module.observe is base.no_observe
    assert registry_module.apply is base.no_apply
    assert registry_module.IN_PLACE == {}


def test_unknown_type_names_what_is_installed() -> None:
    with pytest.raises(MirrorspecError) as caught:
        providers.get("nope")
    message = str(caught.value)
    assert "no provider is installed for target type 'nope'" in message
    assert f"(installed: {', '.join(INSTALLED)})" in message


# `validate` runs through the real entry point; stdout is then the report, the module list
# goes to stderr as the last line.
IMPORT_COST = """\
import json, sys
from mirrorspec.spec import load_spec
from mirrorspec import providers

spec = load_spec(sys.argv[1])
import mirrorspec.cli
for type_name in providers.available():
    providers.get(type_name).Target
try:
    mirrorspec.cli.main(["validate", sys.argv[1]])
except SystemExit as exc:
    types = sorted({t.type for t in spec.targets})
    print(json.dumps([exc.code, types, sorted(sys.modules)]), file=sys.stderr)
"""


def test_loading_a_spec_and_importing_the_cli_and_providers_needs_no_cloud_sdk() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_COST, str(ROOT / "examples" / "seqera.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    code, target_types, modules = json.loads(proc.stderr.splitlines()[-1])
    assert code == 0, proc.stderr
    # The example has a target of every built-in registry type (the test venv also holds the
    # example plugin of tests/plugins, which the example does not use); an OCI layout is not a
    # registry of Seqera's, and every provider's model is imported above anyway.
    assert target_types == sorted(set(PROVIDERS) - {"oci-layout"})
    assert "mirrorspec.cli" in modules
    assert set(providers.available().values()) <= set(modules)
    cloud = [m for m in modules if m.split(".")[0] in {"boto3", "botocore", "azure"}]
    assert cloud == []


def test_no_provider_is_named_outside_the_providers_package() -> None:
    # Issue 14: what is true of one registry lives in its provider's package (docstrings too),
    # so a new provider touches its own folder, and the core reads as registry-neutral.
    word = re.compile(r"\b(ecr|acr|harbor|azure|aws|boto|boto3)\b", re.IGNORECASE)
    package = ROOT / "mirrorspec"
    named = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if package / "providers" not in path.parents
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if word.search(line)
    ]
    assert named == []
