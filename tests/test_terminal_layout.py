"""Readable at a terminal (issue 18, item 1): no reference is ever broken mid-word.

The real CLI runs under a real pseudo-terminal (`pty.openpty()`), its window set with
`TIOCSWINSZ` to 80, 120 and 200 columns and no `COLUMNS` in its environment, against real
docker-registries holding a Seqera-like upstream: long repository paths
(`private/nf-tower-enterprise/backend`) and several chart versions with a Helm dependency.
Every reference the JSON document holds that the text shows — each copy's source and
destination, each checked tag's destination and digest, each word of each note — must be
whole on one line of what the terminal received (ANSI codes stripped), and no line may be
wider than the terminal unless it is one word that is wider still. Piped, nothing wraps;
markdown keeps every reference whole too; JSON is not touched by any of it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cli_runner
import pytest
from testbed import RegistryServer, push_chart, push_image, start_registry

from mirrorspec.unbroken_table import UnbrokenTable

VERSIONS = ("1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.5.1")
RELEASES = tuple(f"v25.1.{n}" for n in range(6))
WIDTHS = (80, 120, 200)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SPEC = """\
version: 1
layout: scoped
sources:
  - registry: {upstream}
    insecure: true
    repositories:
      - name: charts/platform
        versions: ">=1.2.0 <2.0.0"
        helm-dependencies: true
      - name: private/nf-tower-enterprise/backend
        tags: ["v25.1.*"]
      - name: private/nf-tower-enterprise/frontend
        tags: ["v25.1.*"]
targets:
  - name: lab
    type: registry
    registry: {destination}
    prefix: mirror
    insecure: true
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    workdir = tmp_path_factory.mktemp("terminal-layout")
    with start_registry(workdir / "up") as upstream, start_registry(workdir / "down") as destination:
        _seed(upstream)
        path = workdir / "seqera.yaml"
        path.write_text(SPEC.format(upstream=upstream.host, destination=destination.host))
        yield path


def _seed(upstream: RegistryServer) -> None:
    for release in RELEASES:
        push_image(upstream, "private/nf-tower-enterprise/backend", release, seed=f"b{release}")
        push_image(upstream, "private/nf-tower-enterprise/frontend", release, seed=f"f{release}")
    push_chart(upstream, "charts/redis", "18.0.1")
    for version in VERSIONS:
        dependencies = [
            {"name": "redis", "version": "~18.0.0", "repository": f"oci://{upstream.host}/charts"},
            # not an oci:// registry: a note per chart version that names the chart's reference
            {"name": "legacy", "version": "1.0.0", "repository": "https://charts.example.com"},
        ]
        push_chart(upstream, "charts/platform", version, dependencies=dependencies)


def under_pty(columns: int, *args: str) -> tuple[int, list[str]]:
    """`mirrorspec ARGS` on a terminal `columns` wide: its exit code and the lines it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = cli_runner.environment(TERM="xterm")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    proc = subprocess.Popen(
        [cli_runner.MIRRORSPEC, *args], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    received = bytearray()
    deadline = time.monotonic() + 300  # generous: a noisy 2-core machine; EOF ends it first
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child has closed its end (Linux)
                break
            if not chunk:
                break
            received += chunk
        code = proc.wait(timeout=60)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    text = ANSI.sub("", received.decode()).replace("\r\n", "\n")
    assert "Traceback" not in text, text
    return code, text.splitlines()


def document(spec: Path, command: str, *, check: int) -> dict[str, Any]:
    out = cli_runner.run(command, str(spec), "--format", "json", check=check).stdout
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def assert_whole(references: set[str], lines: list[str]) -> None:
    broken = sorted(ref for ref in references if not any(ref in line for line in lines))
    assert broken == [], "\n".join(["not whole on any line:", *broken, "--- output:", *lines])


def assert_fits(lines: list[str], columns: int) -> None:
    # Wider only when a single word is wider than the terminal (a long destination at 80).
    wide = [line for line in lines if len(line) > columns and len(line.split()) > 1]
    assert wide == [], "\n".join(wide)


def note_words(targets: list[dict[str, Any]]) -> set[str]:
    return {word for t in targets for n in t["notes"] for word in n["message"].split()}


@pytest.fixture(scope="module")
def plan_json(spec: Path) -> dict[str, Any]:
    return document(spec, "plan", check=0)


def copy_references(plan: dict[str, Any]) -> set[str]:
    copies = [c for t in plan["targets"] for c in t["copies"]]
    dependencies = {a["dependency_of"].rsplit(":", 1)[0] for a in plan["artifacts"] if a["dependency_of"]}
    return {c["source"] for c in copies} | {c["destination"] for c in copies} | dependencies


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_plan_breaks_no_reference_at_any_width(
    spec: Path, plan_json: dict[str, Any], columns: int
) -> None:
    code, lines = under_pty(columns, "plan", str(spec))

    assert code == 0, "\n".join(lines)
    references = copy_references(plan_json)
    assert any("nf-tower-enterprise/backend" in ref for ref in references)  # the long path is there
    assert_whole(references | note_words(plan_json["targets"]), lines)
    assert_fits(lines, columns)
    # Tag lists wrap between tags only: every tag whole, each release shown for both images.
    for release in RELEASES:
        assert sum(line.count(release) for line in lines) == 2, release
    assert any(line.startswith("Plan: 0 change(s), 18 tag(s) to copy") for line in lines)


def test_the_audit_breaks_no_destination_or_digest_at_80_columns(spec: Path) -> None:
    audit = document(spec, "audit", check=2)  # the mirror is empty: every tag missing
    code, lines = under_pty(80, "audit", str(spec))

    assert code == 2, "\n".join(lines)
    checks = [c for t in audit["targets"] for c in t["content"]]
    assert len(checks) == 18
    assert_whole({c["destination"] for c in checks} | {c["expected"] for c in checks}, lines)
    assert_fits(lines, 80)


def test_piped_output_does_not_wrap_and_markdown_keeps_references_whole(
    spec: Path, plan_json: dict[str, Any]
) -> None:
    piped = cli_runner.run("plan", str(spec)).stdout.splitlines()
    # One row per copy: its source, its destination and every one of its tags on one line.
    for copy in (c for t in plan_json["targets"] for c in t["copies"]):
        row = [line for line in piped if f" {copy['destination']} " in line]
        assert len(row) == 1, (copy["destination"], piped)
        assert row[0].startswith(copy["source"] + " ")
        assert ", ".join(t["tag"] for t in copy["tags"]) in row[0]

    markdown = cli_runner.run("plan", str(spec), "--format", "markdown").stdout.splitlines()
    assert_whole(copy_references(plan_json) | note_words(plan_json["targets"]), markdown)


def test_a_word_wider_than_the_terminal_stays_whole_and_only_spaces_break() -> None:
    table = UnbrokenTable("copy from", "to", "tags")
    long = "registry.example.com:5000/" + "very-long-path/" * 4 + "backend"
    table.add_row("up.example.com/team/app", long, ", ".join(f"v{n}.0.0" for n in range(12)))

    for width in (40, 80):
        lines = table.lines(width)
        assert sum(line.count(long) for line in lines) == 1
        assert {tag for line in lines for tag in re.findall(r"v\d+\.0\.0", line)} == {
            f"v{n}.0.0" for n in range(12)
        }
        assert all(len(line) <= width or len(line.split()) == 1 for line in lines), lines
    assert table.lines(None)[2].split() == ["up.example.com/team/app", long, *table.rows[0][2].split()]
