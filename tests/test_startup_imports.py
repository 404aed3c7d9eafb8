"""Start-up imports only what the command runs (#15, B5): `--help` of the CLI and of a
command, and `validate`, import no cloud SDK, no rich, no engine; `--help` no pydantic model
either. Checked through the installed console script's own entry point in a fresh
interpreter, by the modules loaded when it exits: nothing here is timed (bench/run.py, B5,
measures the seconds)."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Runs `mirrorspec ARGS` as the console script does, then prints the loaded modules.
PROBE = """\
import json, sys
from mirrorspec.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
print("\\nMODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

NEVER_AT_START = {"boto3", "botocore", "azure", "rich", "mirrorspec.engine", "mirrorspec.output"}
# `--help` makes no request: the registry client and `requests` (≈ 80 ms) stay unloaded too.
NOT_FOR_HELP = NEVER_AT_START | {
    "pydantic",
    "mirrorspec.spec",
    "mirrorspec.providers",
    "ruamel",
    "yaml",
    "requests",
    "urllib3",
    "mirrorspec.oci.client",
}


def loaded_by(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=False
    )
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    modules = set(json.loads(line.removeprefix("MODULES ")))
    assert "mirrorspec.cli" in modules, result.stderr[-2000:]
    return modules | {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("args", [["--help"], ["plan", "--help"], ["apply", "--help"]], ids=" ".join)
def test_help_imports_no_sdk_no_rich_no_model(args: list[str]) -> None:
    assert loaded_by(*args) & NOT_FOR_HELP == set()


def test_validate_imports_no_sdk_no_rich_no_engine() -> None:
    modules = loaded_by("validate", str(EXAMPLES / "seqera.yaml"))
    assert "mirrorspec.spec" in modules  # it did validate
    assert modules & NEVER_AT_START == set()


# What the spec reads from a provider package (`Target`, `SECRET_REFERENCES`,
# `CREDENTIAL_FORMS`); the rest of its contract loads when a plan needs it (`lazy_contract`).
SPEC_MODULES = {"target", "credentials"}
BUILT_IN = ("acr", "ecr", "harbor", "registry")


@pytest.mark.parametrize("example", ["ecr.yaml", "acr.yaml", "harbor.yaml", "seqera.yaml"])
def test_validate_loads_no_registry_client_and_only_the_providers_spec_models(example: str) -> None:
    modules = loaded_by("validate", str(EXAMPLES / example))
    assert "mirrorspec.spec" in modules
    # `validate` makes no request: no registry client, no `requests` (≈ 80 ms). Nor does it need
    # `ssl` or `regex` for a spec without a `ca-bundle` or a `tag-regex` (the examples).
    no_request = {"requests", "urllib3", "mirrorspec.oci.client", "mirrorspec.oci.transport"}
    assert modules & (no_request | {"ssl", "regex"} | NEVER_AT_START) == set()
    for name in BUILT_IN:
        package = f"mirrorspec.providers.{name}"
        assert package in modules  # each installed provider adds its target model
        loaded = {m.removeprefix(f"{package}.") for m in modules if m.startswith(f"{package}.")}
        assert loaded <= SPEC_MODULES, f"{package}: validate imported {sorted(loaded - SPEC_MODULES)}"


def _imported_under_type_checking(source: Path) -> dict[str, str]:
    """Name → the submodule it is imported from, under the package's `if TYPE_CHECKING:`."""
    names: dict[str, str] = {}
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.level == 1 and statement.module:
                    names |= {alias.asname or alias.name: statement.module for alias in statement.names}
    return names


@pytest.mark.parametrize("name", ["acr", "ecr", "harbor"])
def test_lazy_contract_serves_what_type_checkers_see(name: str) -> None:
    # mypy checks the package against `base.Provider` through its `TYPE_CHECKING` imports;
    # at run time its `__getattr__` serves the same names from the same modules, on first use.
    package = importlib.import_module(f"mirrorspec.providers.{name}")
    lazy = _imported_under_type_checking(Path(package.__file__ or ""))
    assert lazy, f"{package.__name__} imports its whole contract at once"
    assert set(lazy) <= set(package.__all__)
    for attribute, module in lazy.items():
        home = importlib.import_module(f"{package.__name__}.{module}")
        assert getattr(package, attribute) is getattr(home, attribute), attribute
    with pytest.raises(AttributeError):
        package.not_a_contract_name  # noqa: B018
