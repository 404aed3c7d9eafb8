"""`mirrorspec validate` / `schema` through the installed console script, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from spec_text import MINIMAL_SPEC

MIRRORSPEC = Path(sys.executable).with_name("mirrorspec")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seqera.yaml"

VALID = MINIMAL_SPEC

# (id, spec text, "line:col", a substring of the message, a value that must not be printed)
BAD = [
    ("malformed-yaml", "version: 1\nsources: [a, b\ntargets: []\n", "3:8", "invalid YAML", None),
    ("unknown-key", VALID + "    bogus: 1\n", "11:5", "unknown key 'bogus' (expected one of:", None),
    (
        "bad-target-type",
        VALID.replace("type: registry", "type: acrr"),
        "9:11",
        "acr, ecr, harbor, indexed-registry, oci-layout, registry",
        None,
    ),
    (
        "literal-password",
        VALID.replace(
            "sources:", "credentials:\n  hub:\n    username: me\n    password: Sup3rS3cret\nsources:"
        ),
        "5:15",
        "a literal password is refused",
        "Sup3rS3cret",
    ),
    (
        "overlapping-destinations",
        VALID.replace(
            '        tags: ["7.2.4"]\n',
            '        tags: ["7.2.4"]\n      - name: library/redis\n        tags: ["7"]\n',
        ),
        "7:15",
        "is listed twice",
        None,
    ),
]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    return subprocess.run(
        [str(MIRRORSPEC), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env, check=False
    )


def test_console_script_is_installed() -> None:
    assert MIRRORSPEC.is_file(), f"{MIRRORSPEC} missing: install the package into the venv (make setup)"


@pytest.mark.parametrize(("text", "where", "expect", "secret"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_validate_bad_spec(tmp_path: Path, text: str, where: str, expect: str, secret: str | None) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    result = run("validate", str(spec))
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stderr.endswith("\n")
    assert lines[0].startswith(f"error: {spec}:{where}: "), lines[0]
    assert expect in lines[0]
    if secret is not None:
        assert secret not in result.stderr


def test_validate_relative_path_is_reported_as_given(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("version: 2\n", encoding="utf-8")
    result = run("validate", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: spec.yaml:1:10: version: expected 1, found 2\n"


def test_validate_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run("validate", str(missing))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {missing}: cannot read spec")
    assert len(result.stderr.splitlines()) == 1


def test_validate_example() -> None:
    result = run("validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"{EXAMPLE}: valid")


def test_schema_prints_json() -> None:
    result = run("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["title"] == "mirrorspec spec v1"
    assert "sources" in schema["properties"]


@pytest.mark.parametrize(
    "args",
    [("validate", "--no-such-option", "x.yaml"), ("no-such-command",), ("validate",)],
    ids=["unknown-option", "unknown-command", "missing-argument"],
)
def test_usage_errors_exit_1_not_2(args: tuple[str, ...]) -> None:
    """2 means changes pending / drift, so a typo must never exit 2."""
    result = run(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
