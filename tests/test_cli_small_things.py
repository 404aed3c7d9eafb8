"""Small things that cost a new user minutes (issue 18, item 8), through the real CLI.

- `-v`, `-vv`, `--quiet` after the command as well as before it;
- `render skopeo` / `render terraform` take the spec's only target when `--target` is left
  out, and name the targets in one line when there are several;
- an ACR target without Azure credentials is one error line, not Azure's 13 lines of
  DefaultAzureCredential narration before it (they come back with -v);
- a spec error's hint is never cut off by the `…` that shortens a long quoted value.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import cli_runner
import pytest
from testbed import RegistryServer, push_image

from mirrorspec.cli import configure_logging

LOG_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR) [\w.]+: ")


def _spec(tmp_path: Path, source: str, targets: str, repository: str = "small/app") -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\nsources:\n  - registry: {source}\n    insecure: true\n    repositories:\n"
        f"      - name: {repository}\n        tags: ['1.0']\ntargets:\n{targets}"
    )
    return spec


def _registry_target(name: str, host: str) -> str:
    return f"  - name: {name}\n    type: registry\n    registry: {host}\n    insecure: true\n"


@pytest.fixture(scope="module")
def repository(plain_registry: RegistryServer) -> str:
    name = f"small-{uuid.uuid4().hex[:8]}/app"
    push_image(plain_registry, name, "1.0")
    return name


@pytest.fixture
def spec(tmp_path: Path, plain_registry: RegistryServer, repository: str) -> Path:
    """One source repository on a real registry, one target on the same registry."""
    return _spec(tmp_path, plain_registry.host, _registry_target("lab", plain_registry.host), repository)


# --- -v / -vv / --quiet after the command -------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("flag", ["-v", "-vv", "--quiet"])
def test_verbosity_is_taken_before_or_after_the_command(spec: Path, flag: str, where: str) -> None:
    command = ["plan", str(spec), "--format", "json"]
    done = cli_runner.run(*([flag, *command] if where == "before" else [*command, flag]))

    assert json.loads(done.stdout)["targets"][0]["target"] == "lab"  # stdout: the document alone
    logged = done.stderr.splitlines()
    assert all(LOG_LINE.match(line) for line in logged), logged
    levels = {line.split(" ", 1)[0] for line in logged}
    if flag == "--quiet":
        assert logged == []  # what it drops is shown below, in-process
    elif flag == "-v":
        assert "INFO" in levels and "DEBUG" not in levels
    else:
        assert "DEBUG" in levels


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("verbose", "quiet", "shown"),
    [
        (
            0,
            False,
            ["WARNING mirrorspec.x: ours", "ERROR mirrorspec.x: ours", "ERROR azure.identity: theirs"],
        ),
        (0, True, ["ERROR mirrorspec.x: ours", "ERROR azure.identity: theirs"]),
        (
            1,
            False,
            [
                "WARNING mirrorspec.x: ours",
                "ERROR mirrorspec.x: ours",
                "WARNING azure.identity: theirs",
                "ERROR azure.identity: theirs",
            ],
        ),
    ],
)
def test_what_each_level_logs(
    capsys: pytest.CaptureFixture[str], verbose: int, quiet: bool, shown: list[str]
) -> None:
    """The CLI's logging as `configure_logging` sets it: by default a library's warnings are
    not shown (our own error says what failed), --quiet shows errors only, -v everything."""
    configure_logging(verbose, quiet=quiet)
    for name, said in (("mirrorspec.x", "ours"), ("azure.identity", "theirs")):
        logging.getLogger(name).warning(said)
        logging.getLogger(name).error(said)
    assert capsys.readouterr().err.splitlines() == shown


def test_verbose_before_and_after_add_up(spec: Path) -> None:
    done = cli_runner.run("-v", "plan", str(spec), "--format", "json", "-v")
    assert any(line.startswith("DEBUG ") for line in done.stderr.splitlines())


@pytest.mark.parametrize(
    "args",
    [["-v", "plan", "{spec}", "--quiet"], ["plan", "{spec}", "-v", "-q"], ["-q", "-v", "plan", "{spec}"]],
    ids=" ".join,
)
def test_verbose_and_quiet_together_is_a_usage_error(spec: Path, args: list[str]) -> None:
    done = cli_runner.run(*(a.format(spec=spec) for a in args), check=1)
    assert done.stderr == "error: use -v or --quiet, not both\n"
    assert done.stdout == ""


def test_every_command_takes_them_after_itself() -> None:
    for command in (
        ["validate"],
        ["plan"],
        ["apply"],
        ["sync"],
        ["audit"],
        ["schema"],
        ["terraform-external"],
        ["render", "skopeo"],
        ["render", "terraform"],
        ["import", "skopeo"],
    ):
        shown = cli_runner.run(*command, "--help").stdout
        assert "-v, --verbose" in shown and "-q, --quiet" in shown, command


# --- render picks the only target -----------------------------------------------------------


def test_render_takes_the_only_target_when_none_is_named(spec: Path, plain_registry: RegistryServer) -> None:
    terraform = cli_runner.run("render", "terraform", str(spec))
    named = cli_runner.run("render", "terraform", str(spec), "--target", "lab")
    assert terraform.stdout == named.stdout and json.loads(terraform.stdout)["//"]

    skopeo = cli_runner.run("render", "skopeo", str(spec))
    assert skopeo.stdout == cli_runner.run("render", "skopeo", str(spec), "-t", "lab").stdout
    assert plain_registry.host in skopeo.stdout


@pytest.mark.parametrize("kind", ["skopeo", "terraform"])
def test_render_without_target_names_the_targets_when_there_are_several(tmp_path: Path, kind: str) -> None:
    # unresolvable hosts: the choice is made before anything is read
    targets = _registry_target("lab", "lab.invalid") + _registry_target("edge", "edge.invalid")
    spec = _spec(tmp_path, "upstream.invalid", targets)

    done = cli_runner.run("render", kind, str(spec), check=1, timeout=60)

    assert done.stderr == f"error: {spec} has 2 targets; choose one with --target (lab, edge)\n"
    assert done.stdout == ""


def test_plan_without_target_plans_the_only_one(spec: Path) -> None:
    (target,) = json.loads(cli_runner.run("plan", str(spec), "--format", "json").stdout)["targets"]
    assert target["target"] == "lab"


# --- one line, not the Azure SDK's narration, before an error ---------------------------------


def _no_azure_login(tmp_path: Path) -> dict[str, str]:
    """An environment in which DefaultAzureCredential finds nothing to sign in with: no AZURE_*
    variables, a HOME without an Azure CLI or VS Code login, no `az`/`azd`/`pwsh` on PATH."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v for k, v in cli_runner.environment().items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_"))
    }
    venv_bin = str(Path(cli_runner.MIRRORSPEC).parent)
    return {**env, "HOME": str(home), "PATH": os.pathsep.join([venv_bin, "/usr/bin", "/bin"])}


ACR_TARGET = """\
  - name: azure-prod
    type: acr
    subscription: 00000000-0000-0000-0000-000000000000
    resource-group: registries
    registry: mycompany
"""


def test_an_acr_target_without_azure_credentials_is_one_line(
    tmp_path: Path, plain_registry: RegistryServer, repository: str
) -> None:
    spec = _spec(tmp_path, plain_registry.host, ACR_TARGET, repository)
    env = _no_azure_login(tmp_path)

    done = cli_runner.run("plan", str(spec), env=env, check=1, timeout=180)

    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: azure-prod: ") and "az login" in line, line

    # What was hidden is the SDK's own warning, which -v shows
    verbose = cli_runner.run("plan", str(spec), "-v", env=env, check=1, timeout=180)
    assert any(line.startswith("WARNING azure.identity") for line in verbose.stderr.splitlines())
    assert verbose.stderr.splitlines()[-1] == line


# --- a hint is never cut off ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Foo", "A" * 100])
def test_a_spec_error_s_hint_is_whole_and_only_a_long_value_is_shortened(tmp_path: Path, name: str) -> None:
    spec = _spec(tmp_path, "docker.io", _registry_target("lab", "lab.invalid"), repository=name)

    done = cli_runner.run("validate", str(spec), check=1)

    (line,) = done.stderr.splitlines()
    shown = f"'{name}'" if len(name) < 60 else f"'{name[:59]}…'"
    assert line.endswith(
        f"name: {shown} is not a valid repository name "
        "(lower-case path components of [a-z0-9._-], joined by '/')"
    ), line
