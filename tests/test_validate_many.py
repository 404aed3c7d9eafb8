"""pre-commit and pipelines (issue 18, item 6), through the real CLI.

- `validate` takes several files and `-` for stdin: every file is reported (errors name the
  file, or `<stdin>`), exit 1 if any is invalid;
- `.pre-commit-hooks.yaml` at the repository root, run by the real pre-commit
  (`pre-commit try-repo`, which installs the hook from this repository as a user's
  `.pre-commit-config.yaml` would) on a repository of specs;
- a tag selection that matches nothing is a warning of the plan, and an error under
  `plan --strict` / `apply --strict` (validate cannot know: it reads no registry).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import cli_runner
import pytest
import requests
from ruamel.yaml import YAML
from spec_text import MINIMAL_SPEC
from testbed import RegistryServer, push_image

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / ".pre-commit-hooks.yaml"

VALID = MINIMAL_SPEC
INVALID = VALID.replace("name: redis", "name: Redis")
HINT = "'Redis' is not a valid repository name (lower-case path components of [a-z0-9._-], joined by '/')"
WHAT = f"5:15: sources[0] (registry='docker.io') › repositories[0] (name='Redis') › name: {HINT}"


def _stdin(text: str, *args: str, check: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [cli_runner.MIRRORSPEC, "validate", *args],
        input=text,
        capture_output=True,
        text=True,
        env=cli_runner.environment(),
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == check, proc.stderr
    return proc


# --- several files, and stdin ---------------------------------------------------------------


def test_every_file_is_reported_and_any_invalid_one_fails_the_run(tmp_path: Path) -> None:
    good, bad, other_good = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "also.yaml"
    good.write_text(VALID)
    bad.write_text(INVALID)
    other_good.write_text(VALID)
    missing = tmp_path / "missing.yaml"

    done = cli_runner.run(
        "validate", str(good), str(bad), str(missing), str(tmp_path), str(other_good), check=1
    )

    assert done.stdout.splitlines() == [
        f"{good}: valid (1 source(s), 1 repository(ies), 1 target(s))",
        "reached anonymously with default TLS: docker.io",
        f"{other_good}: valid (1 source(s), 1 repository(ies), 1 target(s))",
        "reached anonymously with default TLS: docker.io",
    ]
    assert done.stderr.splitlines() == [
        f"error: {bad}:{WHAT}",
        f"error: {missing}: cannot read spec: No such file or directory",
        f"error: {tmp_path}: cannot read spec: it is a directory, not a regular file",
        "error: 3 of 5 spec file(s) are invalid",
    ]


def test_all_valid_files_exit_0(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"spec{i}.yaml")
        paths[-1].write_text(VALID)
    done = cli_runner.run("validate", *map(str, paths))
    assert [line.split(":")[0] for line in done.stdout.splitlines()[::2]] == [str(p) for p in paths]
    assert done.stderr == ""


def test_one_invalid_file_is_one_line_as_before(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID)
    done = cli_runner.run("validate", str(bad), check=1)
    assert done.stderr == f"error: {bad}:{WHAT}\n"


def test_dash_reads_a_spec_from_stdin(tmp_path: Path) -> None:
    assert _stdin(VALID, "-", check=0).stdout.splitlines()[0] == (
        "<stdin>: valid (1 source(s), 1 repository(ies), 1 target(s))"
    )
    bad = _stdin(INVALID, "-", check=1)
    assert bad.stderr == f"error: <stdin>:{WHAT}\n"
    assert _stdin("version: 1\nsources: [a, b\n", "-", check=1).stderr.startswith("error: <stdin>:3:")

    # with files, in the order given
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    mixed = _stdin(INVALID, str(good), "-", check=1)
    assert mixed.stdout.startswith(f"{good}: valid")
    assert mixed.stderr.splitlines()[0].startswith("error: <stdin>:5:15: ")
    assert mixed.stderr.splitlines()[-1] == "error: 1 of 2 spec file(s) are invalid"


def test_relative_paths_in_a_spec_on_stdin_start_at_the_working_directory(tmp_path: Path) -> None:
    spec = VALID.replace(
        "registry: internal.example.com", "registry: internal.example.com\n    ca-bundle: ca.pem"
    )
    proc = subprocess.run(
        [cli_runner.MIRRORSPEC, "validate", "-"],
        input=spec,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_runner.environment(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: <stdin>:11:") and "cannot use ca.pem" in proc.stderr, proc.stderr


def test_stdin_is_read_once_and_bounded(tmp_path: Path) -> None:
    twice = _stdin(VALID, "-", "-", check=1)
    assert twice.stderr == "error: '-' (stdin) can be given once\n"
    # a spec larger than the limit (16 MiB) ends in one line, without reading on forever
    huge = _stdin("#" * (17 << 20), "-", check=1)
    assert huge.stderr.startswith("error: <stdin>: spec is larger than the limit of 16 MiB")


# --- the pre-commit hook ------------------------------------------------------------------


def _hook() -> dict[str, object]:
    hooks = YAML(typ="safe").load(HOOKS.read_text())
    (hook,) = hooks
    assert isinstance(hook, dict)
    return hook


@pytest.mark.parametrize(
    ("path", "taken"),
    [
        ("mirrorspec.yaml", True),
        ("mirrorspec.yml", True),
        ("specs/prod.mirrorspec.yaml", True),
        ("a/b/eu-west.mirrorspec.yml", True),
        ("other.yaml", False),
        ("notmirrorspec.yaml", False),
        ("mirrorspec.yaml.bak", False),
        ("mirrorspec.json", False),
    ],
)
def test_the_hook_takes_spec_files_by_name(path: str, taken: bool) -> None:
    # pre-commit matches `files` with Python's re.search on the path from the repository root
    assert bool(re.search(str(_hook()["files"]), path)) is taken


def test_the_hook_definition_is_what_pre_commit_expects() -> None:
    hook = _hook()
    assert hook["id"] == "mirrorspec-validate" and hook["language"] == "python"
    assert str(hook["entry"]).split() == ["mirrorspec", "validate"]


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def test_pre_commit_runs_the_hook_on_a_repository_of_specs(tmp_path: Path) -> None:
    pre_commit = Path(sys.executable).with_name("pre-commit")
    if not pre_commit.exists():
        pytest.fail("pre-commit is not installed: run `make setup` (the test extras)", pytrace=False)
    if shutil.which("git") is None:
        pytest.fail("git not found on PATH", pytrace=False)
    specs = tmp_path / "specs"
    (specs / "eu").mkdir(parents=True)
    (specs / "mirrorspec.yaml").write_text(VALID)
    (specs / "eu" / "prod.mirrorspec.yml").write_text(INVALID)
    (specs / "values.yaml").write_text(INVALID)  # not a spec by its name: not checked
    _git(specs, "init", "-q")
    _git(specs, "add", ".")
    env = cli_runner.environment(
        PRE_COMMIT_HOME=str(tmp_path / "cache"),  # the hook's own environment, installed here
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )

    def run(*files: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(pre_commit), "try-repo", str(ROOT), "mirrorspec-validate", "--files", *files],
            cwd=specs,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,  # the first run installs mirrorspec into the hook's environment
            check=False,
        )

    failed = run("mirrorspec.yaml", "eu/prod.mirrorspec.yml", "values.yaml")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "mirrorspec.yaml: valid" in failed.stdout
    assert f"error: eu/prod.mirrorspec.yml:{WHAT}" in failed.stdout
    assert "error: 1 of 2 spec file(s) are invalid" in failed.stdout
    assert "values.yaml" not in failed.stdout

    passed = run("mirrorspec.yaml", "values.yaml")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"mirrorspec validate\.+Passed", passed.stdout), passed.stdout


# --- --strict: a selection that matches nothing --------------------------------------------


@pytest.fixture
def strict_spec(tmp_path: Path, plain_registry: RegistryServer) -> tuple[Path, str]:
    repository = f"strict-{uuid.uuid4().hex[:8]}"
    push_image(plain_registry, f"{repository}/app", "1.0.0")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\nsources:\n  - registry: {plain_registry.host}\n    insecure: true\n    repositories:\n"
        f"      - name: {repository}/app\n        versions: '>=1.0.0'\n"
        f"      - name: {repository}/app2\n        versions: '>=9'\n"
        f"targets:\n  - name: lab\n    type: registry\n    registry: {plain_registry.host}\n"
        f"    insecure: true\n    prefix: copies-{repository}\n"
    )
    push_image(plain_registry, f"{repository}/app2", "1.0.0")
    return spec, repository


def test_a_selection_that_matches_nothing_is_a_warning_and_an_error_under_strict(
    strict_spec: tuple[Path, str], plain_registry: RegistryServer
) -> None:
    spec, repository = strict_spec
    note = f"{plain_registry.host}/{repository}/app2: no tag matches '>=9' among 1 tags"

    warned = json.loads(cli_runner.run("plan", str(spec), "--format", "json").stdout)
    assert {"level": "warning", "message": note} in warned["targets"][0]["notes"]

    strict = cli_runner.run("plan", str(spec), "--format", "json", "--strict", "--detailed-exitcode", check=1)
    assert json.loads(strict.stdout) == warned  # the plan is still shown
    assert strict.stderr == f"error: --strict: 1 tag selection(s) match nothing: {note}\n"

    (copy,) = warned["targets"][0]["copies"]
    tags = f"{plain_registry.url}/v2/{copy['destination'].split('/', 1)[1]}/tags/list"

    refused = cli_runner.run("apply", str(spec), "--yes", "--strict", check=1)
    assert refused.stderr == f"error: --strict: 1 tag selection(s) match nothing: {note}\n"
    assert requests.get(tags, timeout=30).status_code == 404  # nothing was copied

    applied = cli_runner.run("apply", str(spec), "--yes")  # without --strict: a warning
    assert "1 of 1 tag(s) copied and verified" in applied.stdout
    assert requests.get(tags, timeout=30).json()["tags"] == ["1.0.0"]
