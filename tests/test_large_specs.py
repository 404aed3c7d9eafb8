"""Specs as large as real fleets write them, through the installed CLI: 10,000 repositories
validate (50,000 in `make soak`), a plan over thousands of repositories of a real registry
completes, and the loader's bounds still refuse an alias bomb in one line when it hides at
the end of a large honest spec.

Nothing here is timed (the machine is shared and noisy): each run is bounded by the CLI
helpers' timeout and, for `validate`, their memory limit; bench/run.py (B5, B6) measures.
The plan test seeds its registry by copying one pushed repository in the registry's storage
(`testbed.seed`): pushing 10,000 repositories over HTTP would take minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_bad_specs import MIRRORSPEC, alias_bomb, assert_one_line_error, many_repositories, run_cli
from testbed import RegistryServer, push_image
from testbed.seed import clone_repository

# The plan's budget in the issue (#15, B6): 10,000 repositories in under 300 MB.
PLAN_RSS_LIMIT = 300 << 20


def test_a_spec_of_10000_repositories_validates_through_the_cli(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(many_repositories(10_000), encoding="utf-8")
    result = run_cli("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert f"{spec}: valid (10 source(s), 10000 repository(ies), 1 target(s))" in result.stdout


@pytest.mark.soak
def test_a_spec_of_50000_repositories_validates_through_the_cli(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(many_repositories(50_000), encoding="utf-8")
    result = run_cli("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{spec}: valid (10 source(s), 50000 repository(ies), 1 target(s))" in result.stdout


def test_one_tag_list_shared_by_10000_repositories_through_an_alias(tmp_path: Path) -> None:
    """Aliases count at their expanded size, which honest sharing stays far below: 10,000
    repositories × 20 tags is 210,000 values."""
    tags = ", ".join(f'"1.{i}.0"' for i in range(20))
    lines = ["version: 1", "sources:", "  - registry: docker.io", "    repositories:"]
    lines.append(f"      - {{name: team/app-0, tags: &tags [{tags}]}}")
    lines += [f"      - {{name: team/app-{i}, tags: *tags}}" for i in range(1, 10_000)]
    lines += ["targets:", "  - {name: lab, type: registry, registry: internal.example.com}"]
    spec = tmp_path / "spec.yaml"
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "valid (1 source(s), 10000 repository(ies), 1 target(s))" in result.stdout


def test_an_alias_bomb_after_10000_honest_repositories_is_one_line(tmp_path: Path) -> None:
    honest = many_repositories(10_000)
    bomb = alias_bomb().split("\n", 3)[3]  # its anchors and aliases, without its own header
    spec = tmp_path / "spec.yaml"
    spec.write_text(honest + bomb, encoding="utf-8")
    result = run_cli("validate", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:")
    assert "invalid YAML: aliases expand the document to more than 1,000,000 values (an alias bomb?)" in line
    found = re.match(rf"error: {re.escape(str(spec))}:(\d+):\d+: ", line)
    assert found, line
    first_bomb_line = honest.count("\n") + 1
    assert first_bomb_line < int(found.group(1)) <= first_bomb_line + bomb.count("\n")


# --- a plan over thousands of repositories ---------------------------------------------------


def plan_many(registry_factory: Callable[..., RegistryServer], tmp_path: Path, count: int) -> tuple[str, int]:
    """`mirrorspec plan` of `count` repositories (tags 1.0.0 and 2.0.0, `versions: <2`) from
    one real registry to another; its stdout and peak RSS in bytes."""
    source = registry_factory()
    destination = registry_factory()
    push_image(source, "scale/base", "1.0.0", seed="scale")
    push_image(source, "scale/base", "2.0.0", seed="scale")
    names = [f"scale/repo-{i:05d}" for i in range(count)]
    assert clone_repository(source, "scale/base", names) == count
    entries = "".join(f'      - name: {name}\n        versions: ">=1.0.0 <2.0.0"\n' for name in names)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\nsources:\n  - registry: {source.host}\n    insecure: true\n    repositories:\n"
        f"{entries}targets:\n  - name: lab\n    type: registry\n    registry: {destination.host}\n"
        "    insecure: true\n    prefix: mirror\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    out, err = tmp_path / "plan.out", tmp_path / "plan.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [str(MIRRORSPEC), "plan", str(spec)], stdout=stdout, stderr=stderr, cwd=tmp_path, env=env
        )
        # wait4: this child's own peak RSS (the registries are children of this process too).
        # pytest-timeout bounds the wait.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err.read_text()[-3000:]
    return out.read_text(), usage.ru_maxrss * 1024  # Linux: KiB


def test_a_plan_over_2000_repositories_of_a_real_registry(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """2,000 in `make test` (a plan of 10,000 takes over a minute on a loaded 2-core runner;
    the soak plans 10,000): the selection, the per-repository lookups and the report hold."""
    out, _ = plan_many(registry_factory, tmp_path, 2_000)
    assert "Plan: 0 change(s), 2000 tag(s) to copy, 0 already up to date" in out


@pytest.mark.soak
def test_a_plan_over_10000_repositories_of_a_real_registry_stays_under_300_mb(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    out, peak = plan_many(registry_factory, tmp_path, 10_000)
    assert "Plan: 0 change(s), 10000 tag(s) to copy, 0 already up to date" in out
    assert peak < PLAN_RSS_LIMIT, f"peak RSS {peak >> 20} MiB"
