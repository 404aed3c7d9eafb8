"""Start-up imports only what the command runs (#15, B5): `--help` of the CLI and of a
command, and `validate`, import no cloud SDK, no rich, no engine; `--help` no pydantic model
either. Checked through the installed console script's own entry point in a fresh
interpreter, by the modules loaded when it exits: nothing here is timed (bench/run.py, B5,
measures the seconds)."""

from __future__ import annotations

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
