"""`audit` never calls a mirror it did not look at "in sync" (issue 18, item 4).

A `registry` target has no native rules: nothing but its tags says whether it holds what the
spec wants. `audit` used to compare rules only unless given `--content`, so an empty mirror
was "Audit: in sync", exit 0. Now every tag a target must hold is checked by default (one HEAD
per tag, what `plan` already does); `--rules-only` skips them and says so, and exits 3, never 0.

Real docker-registries and the real CLI throughout; each test mirrors into its own prefix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cli_runner
import pytest
from jsonschema import Draft202012Validator
from spec_text import plain_http_spec
from testbed import RegistryServer, push_image, start_registry

from mirrorspec import schemas

TAGS = ("1.0.0", "1.1.0", "2.0.0")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    workdir = tmp_path_factory.mktemp("audit-unchecked")
    with start_registry(workdir / "up") as upstream, start_registry(workdir / "down") as destination:
        for tag in TAGS:
            push_image(upstream, "team/app", tag, seed=tag)
        yield upstream, destination


@pytest.fixture
def spec(servers: tuple[RegistryServer, RegistryServer], tmp_path: Path) -> Path:
    upstream, destination = servers
    path = tmp_path / "mirror.yaml"
    prefix = f"u{uuid.uuid4().hex[:10]}"  # an empty mirror of its own for each test
    path.write_text(plain_http_spec(upstream.host, destination.host, 'tags: ["*"]', prefix=prefix))
    return path


def audit_json(spec: Path, *extra: str, check: int) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        cli_runner.run("audit", str(spec), "--format", "json", *extra, check=check).stdout
    )
    assert list(Draft202012Validator(schemas.schema("audit")).iter_errors(document)) == []
    return document


def test_an_empty_mirror_is_drift_without_any_flag(spec: Path) -> None:
    table = cli_runner.run("audit", str(spec), check=2).stdout

    assert "in sync" not in table
    assert "Audit: DRIFT" in table
    assert "0 of 3 tag(s) present with the upstream digest" in table
    document = audit_json(spec, check=2)
    (target,) = document["targets"]
    assert [(c["tag"], c["status"]) for c in target["content"]] == [(t, "missing") for t in TAGS]
    assert (document["in_sync"], target["in_sync"], target["unchecked"]) == (False, False, 0)


def test_rules_only_says_what_it_did_not_check_and_exits_3(spec: Path) -> None:
    table = cli_runner.run("audit", str(spec), "--rules-only", check=3).stdout

    assert "in sync" not in table.replace("rules in sync", "")
    assert "Content: NOT CHECKED (--rules-only): 3 wanted tag(s)" in table
    assert "Audit: rules in sync; CONTENT NOT CHECKED (3 tag(s) at 1 target(s))" in table
    document = audit_json(spec, "--rules-only", check=3)
    (target,) = document["targets"]
    assert (target["content"], target["unchecked"], target["drift"]) == (None, 3, [])
    assert (document["in_sync"], target["in_sync"]) == (False, False)
    markdown = cli_runner.run("audit", str(spec), "--rules-only", "--format", "markdown", check=3).stdout
    assert "**Rules in sync; content not checked (3 tag(s))**" in markdown


def test_after_sync_it_is_in_sync_and_says_what_it_checked(spec: Path) -> None:
    cli_runner.run("sync", str(spec))

    table = cli_runner.run("audit", str(spec), check=0).stdout

    assert "3 of 3 tag(s) present with the upstream digest" in table
    assert "Audit: in sync (1 target(s); 3 tag(s) checked)." in table
    (target,) = audit_json(spec, check=0)["targets"]
    assert {c["status"] for c in target["content"]} == {"present"}
    assert target["unchecked"] == 0
    # Unchecked stays unchecked, however the mirror really is.
    cli_runner.run("audit", str(spec), "--rules-only", check=3)


def test_rules_only_and_content_together_is_a_usage_error(spec: Path) -> None:
    proc = cli_runner.run("audit", str(spec), "--rules-only", "--content", check=1)

    assert proc.stdout == ""
    assert proc.stderr == "error: --rules-only and --content cannot be used together\n"
