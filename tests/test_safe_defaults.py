"""Safe defaults, as a user meets them through the real CLI.

- TLS is verified: a registry with a self-signed certificate (a trustme CA) is refused, on
  the source side and on the target side, with one line naming the host, the reason (unknown
  authority) and the fix (`ca-bundle`, never `insecure`, which would accept an interception
  too); giving the CA makes it trusted; `insecure: true` is
  accepted, works end to end, and every plan — table and JSON — says so.
- Nothing is deleted without `--prune`: a managed Harbor replication policy that left the
  spec is kept by plan and apply, and deleted only with `--prune`.
- `apply` shows the plan and asks: at a terminal, "n" changes nothing (exit 1) and "y"
  applies. Off a terminal without `--yes` it refuses rather than hang: that is
  `test_cli.py::test_apply_without_yes_off_a_terminal_refuses_and_copies_nothing`.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
import requests
from spec_text import DEST_LOGIN
from testbed import RegistryServer, push_image, start_registry

from mirrorspec import cli, cli_common
from mirrorspec.context import RunContext

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
PASSWORD = "wonderland-pw"  # the tls_registry fixture's user alice
REPOSITORY = "team/app"


@pytest.fixture(scope="module")
def self_signed_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(tmp_path_factory.mktemp("tls-source"), tls=True) as server:
        push_image(server, REPOSITORY, "1.0.0", seed="safe-defaults")
        yield server


def write_spec(
    path: Path,
    source: RegistryServer,
    destination: RegistryServer,
    prefix: str,
    *,
    source_tls: str,
    target_tls: str,
) -> Path:
    path.write_text(
        f"""\
{DEST_LOGIN}sources:
  - registry: {source.host}
{source_tls}    repositories:
      - name: {REPOSITORY}
        tags: ["1.0.0"]
targets:
  - name: lab
    type: registry
    registry: {destination.host}
    prefix: {prefix}
    credentials: dest
{target_tls}"""
    )
    return path


def run(*args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    env["DEST_PASSWORD"] = PASSWORD
    proc = subprocess.run(
        [MIRRORSPEC, *args], capture_output=True, text=True, env=env, stdin=stdin, timeout=120, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def copied_tags(destination: RegistryServer, repository: str) -> list[str]:
    resp = requests.get(
        f"{destination.url}/v2/{repository}/tags/list",
        auth=("alice", PASSWORD),
        verify=str(destination.ca_file),
        timeout=10,
    )
    if resp.status_code == 404:
        return []
    resp.raise_for_status()
    return sorted(resp.json()["tags"] or [])


@pytest.fixture
def lab(self_signed_source: RegistryServer, tls_registry: RegistryServer) -> Callable[..., Path]:
    """`lab(tmp_path, source_tls=..., target_tls=...)`: a spec from the self-signed source to
    the self-signed destination, under a prefix of its own."""
    prefix = f"safe{uuid.uuid4().hex[:8]}"

    def make(tmp_path: Path, *, source_tls: str, target_tls: str) -> Path:
        return write_spec(
            tmp_path / "spec.yaml",
            self_signed_source,
            tls_registry,
            prefix,
            source_tls=source_tls,
            target_tls=target_tls,
        )

    make.prefix = prefix  # type: ignore[attr-defined]
    return make


def dest_repository(lab: Any, source: RegistryServer) -> str:
    return f"{lab.prefix}/{source.host.replace(':', '_')}/{REPOSITORY}"


# --- TLS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_self_signed_registry_is_refused_in_one_line_naming_host_and_fix(
    lab: Any,
    self_signed_source: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    side: str,
) -> None:
    ca = {"source": self_signed_source.ca_file, "target": tls_registry.ca_file}
    spec = lab(
        tmp_path,
        source_tls="" if side == "source" else f"    ca-bundle: {ca['source']}\n",
        target_tls="" if side == "target" else f"    ca-bundle: {ca['target']}\n",
    )
    refused = (self_signed_source if side == "source" else tls_registry).host
    for args in (("plan", str(spec)), ("apply", str(spec), "--yes")):
        proc = run(*args)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1, proc.stderr
        line = proc.stderr.strip()
        assert line.startswith("error: ") and f"TLS certificate of {refused} is not trusted" in line
        # The fix is the CA; `insecure` would also accept an interception, so it is not offered.
        assert "set ca-bundle to the CA that signed it" in line and "insecure" not in line
    assert copied_tags(tls_registry, dest_repository(lab, self_signed_source)) == []


def test_with_the_ca_bundle_it_is_trusted_and_nothing_says_insecure(
    lab: Any, self_signed_source: RegistryServer, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    spec = lab(
        tmp_path,
        source_tls=f"    ca-bundle: {self_signed_source.ca_file}\n",
        target_tls=f"    ca-bundle: {tls_registry.ca_file}\n",
    )
    table = run("plan", str(spec))
    assert table.returncode == 0, table.stderr
    assert "1 tag(s) to copy" in table.stdout
    assert "insecure" not in table.stdout + table.stderr
    document = json.loads(run("plan", str(spec), "--format", "json").stdout)
    assert [n for t in document["targets"] for n in t["notes"] if "insecure" in n["message"]] == []


def test_insecure_true_is_accepted_works_and_every_plan_says_so(
    lab: Any, self_signed_source: RegistryServer, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    spec = lab(tmp_path, source_tls="    insecure: true\n", target_tls="    insecure: true\n")
    warnings = {
        f"source {self_signed_source.host}: insecure (plain HTTP or unverified TLS)",
        "target lab: insecure (plain HTTP or unverified TLS)",
    }
    table = run("plan", str(spec))
    assert table.returncode == 0, table.stderr
    assert {f"warning: {w}" for w in warnings} <= {line.strip() for line in table.stdout.splitlines()}
    document = json.loads(run("plan", str(spec), "--format", "json").stdout)
    (target,) = document["targets"]
    assert {n["message"] for n in target["notes"] if n["level"] == "warning"} >= warnings
    markdown = run("plan", str(spec), "--format", "markdown").stdout
    assert all(f"- **warning**: {w}" in markdown for w in warnings)

    applied = run("apply", str(spec), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "insecure" in applied.stdout  # the plan apply shows before doing it says so too
    assert copied_tags(tls_registry, dest_repository(lab, self_signed_source)) == ["1.0.0"]


# --- confirmation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "exit_code"), [("n", 1), ("y", 0)])
def test_apply_at_a_terminal_shows_the_plan_and_asks(
    lab: Any,
    self_signed_source: RegistryServer,
    tls_registry: RegistryServer,
    tmp_path: Path,
    answer: str,
    exit_code: int,
) -> None:
    spec = lab(
        tmp_path,
        source_tls=f"    ca-bundle: {self_signed_source.ca_file}\n",
        target_tls=f"    ca-bundle: {tls_registry.ca_file}\n",
    )
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())  # typed ahead; the terminal buffers it
        proc = run("apply", str(spec), stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == exit_code, proc.stderr
    assert "1 tag(s) to copy" in proc.stdout  # the plan came first
    assert "Apply this plan? [y/N]" in proc.stdout
    tags = copied_tags(tls_registry, dest_repository(lab, self_signed_source))
    if answer == "n":
        assert proc.stderr.strip() == "error: aborted: nothing was changed"
        assert tags == []
    else:
        assert "1 of 1 tag(s) copied and verified" in proc.stdout
        assert tags == ["1.0.0"]


# --- deletes need --prune -------------------------------------------------------------------


@pytest.fixture
def harbor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[beds.Bed]:
    beds.set_environment(monkeypatch)
    seeded = beds.seed(tmp_path / "seed")
    with beds.upstreams(seeded, tmp_path / "upstreams") as ups, beds.harbor_bed(ups, tmp_path) as bed:
        monkeypatch.setattr(cli_common, "RunContext", partial(RunContext, **bed.context_kwargs()))
        yield bed


def cli_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The real CLI in-process (its RunContext pointed at the Harbor bed)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(exit_.value.code or 0), out.out


def deletes(capsys: pytest.CaptureFixture[str], spec: Path, *extra: str) -> list[tuple[str, str]]:
    code, out = cli_run(capsys, "plan", str(spec), "--format", "json", *extra)
    assert code == 0
    return [
        (c["resource"], c["id"])
        for t in json.loads(out)["targets"]
        for c in t["changes"]
        if c["action"] == "delete"
    ]


def notes(capsys: pytest.CaptureFixture[str], spec: Path, *extra: str) -> list[str]:
    code, out = cli_run(capsys, "plan", str(spec), "--format", "json", *extra)
    assert code == 0
    return [n["message"] for t in json.loads(out)["targets"] for n in t["notes"]]


def test_a_rule_that_left_the_spec_is_deleted_only_with_prune(
    harbor: beds.Bed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = harbor.spec("harbor.yaml", tmp_path)
    assert cli_run(capsys, "apply", str(full), "--yes")[0] == 0
    harbor.emulator.wait_idle()
    # The version-filtered repository leaves the spec: its replication policy is now stale.
    text = full.read_text()
    dropped = next(line for line in text.splitlines(keepends=True) if "versions:" in line)
    assert "^16.0.0" in dropped  # bitnami/postgresql's selector; its name line goes with it
    dropped = "      - name: bitnami/postgresql\n" + dropped
    assert dropped in text
    smaller = tmp_path / "smaller.yaml"
    smaller.write_text(text.replace(dropped, ""))
    policy = ("replication-policy", "mirrorspec/vendor/docker.io/bitnami/postgresql")

    assert deletes(capsys, smaller) == []
    table = cli_run(capsys, "plan", str(smaller))[1]
    assert [line for line in table.splitlines() if line.split()[:1] == ["delete"]] == []
    # Kept, but said: a plan without deletes must not read as "the registry matches the spec".
    kept = f"1 rule(s) mirrorspec made are no longer in the spec and are kept: {' '.join(policy)}; "
    assert kept + "`apply --prune` deletes them" in notes(capsys, smaller)
    assert not any("are kept" in note for note in notes(capsys, smaller, "--prune"))
    assert cli_run(capsys, "apply", str(smaller), "--yes")[0] == 0
    _, out = cli_run(capsys, "audit", str(smaller), "--format", "json")
    managed = {
        (r["kind"], r["id"]) for t in json.loads(out)["targets"] for r in t["resources"] if r["managed"]
    }
    assert policy in managed  # still there after apply without --prune

    assert policy in deletes(capsys, smaller, "--prune")
    assert cli_run(capsys, "apply", str(smaller), "--yes", "--prune")[0] == 0
    harbor.emulator.wait_idle()
    assert deletes(capsys, smaller, "--prune") == []
    _, out = cli_run(capsys, "audit", str(smaller), "--format", "json")
    managed = {
        (r["kind"], r["id"]) for t in json.loads(out)["targets"] for r in t["resources"] if r["managed"]
    }
    assert policy not in managed
