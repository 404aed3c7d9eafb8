"""End to end against real registries: the `mirrorspec` console script, real docker-registry
servers (plain HTTP upstream; TLS + htpasswd destination) and real skopeo.

This is the core acceptance: versions + Helm dependency closure land at the DESIGN paths,
a second apply copies nothing, a deleted tag is named by `audit --content` (exit 2) and
restored by `apply`, and a canary password appears nowhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cli_runner
import pytest
from spec_text import DEST_LOGIN, lab_target
from testbed import RegistryServer, delete_tag, push_chart, push_image, retag

from mirrorspec import engine
from mirrorspec.context import RunContext
from mirrorspec.errors import RegistryError
from mirrorspec.oci import RegistryClient
from mirrorspec.spec import load_spec

CANARY = "canary-Pa55word-7f3c9e1d"


@dataclass
class Bed:
    source: RegistryServer
    destination: RegistryServer
    spec: Path
    env: dict[str, str]
    tmp: Path

    def run(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        return cli_runner.run(*args, env=self.env, check=check, never=[CANARY])

    def dest_repo(self, repository: str) -> str:
        return f"mirror/{self.source.host.replace(':', '_')}/{repository}"

    def dest_tags(self, repository: str) -> list[str]:
        client = RegistryClient(
            self.destination.host,
            username="alice",
            password=CANARY,
            ca_bundle=str(self.destination.ca_file),
        )
        try:
            return sorted(client.list_tags(self.dest_repo(repository)))
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise
        finally:
            client.close()


def _seed(source: RegistryServer) -> dict[str, str]:
    digests = {}
    for version in ("17.9.0", "18.0.1", "18.0.4", "19.0.0"):
        digests[f"redis:{version}"] = push_chart(source, "charts/redis", version)
    redis = [{"name": "redis", "version": "~18.0.0", "repository": f"oci://{source.host}/charts"}]
    for version in ("1.0.0", "1.2.0", "1.5.3", "2.0.0", "2.1.0-rc1"):
        digests[f"platform:{version}"] = push_chart(source, "charts/platform", version, dependencies=redis)
    for tag in ("v1.2.0", "v1.5.3", "latest"):
        digests[f"backend:{tag}"] = push_image(source, "images/backend", tag)
    return digests


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Iterator[Bed]:
    source = registry_factory()
    destination = registry_factory(tls=True, users={"alice": CANARY})
    _seed(source)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
{DEST_LOGIN}sources:
  - registry: {source.host}
    insecure: true
    repositories:
      - name: charts/platform
        versions: ">=1.2.0 <2.0.0"
        helm-dependencies: true
      - name: images/backend
        tags: ["v1.*"]
{lab_target(destination)}"""
    )
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {**os.environ, "DEST_PASSWORD": CANARY, "TMPDIR": str(tmp)}
    yield Bed(source, destination, spec, env, tmp)


def test_plan_selects_versions_and_dependency_closure(bed: Bed) -> None:
    plan = json.loads(bed.run("plan", str(bed.spec), "--format", "json").stdout)
    (target,) = plan["targets"]
    copies = {c["destination"]: c for c in target["copies"]}
    dest = bed.destination.host
    platform = copies[f"{dest}/{bed.dest_repo('charts/platform')}"]
    assert [t["tag"] for t in platform["tags"]] == ["1.2.0", "1.5.3"]
    redis = copies[f"{dest}/{bed.dest_repo('charts/redis')}"]
    assert [t["tag"] for t in redis["tags"]] == ["18.0.1", "18.0.4"]
    assert all(t["dependency_of"].startswith(f"{bed.source.host}/charts/platform:") for t in redis["tags"])
    backend = copies[f"{dest}/{bed.dest_repo('images/backend')}"]
    assert [t["tag"] for t in backend["tags"]] == ["v1.2.0", "v1.5.3"]
    assert len(copies) == 3
    assert bed.run("plan", str(bed.spec), "--detailed-exitcode", check=2).returncode == 2


def test_apply_is_idempotent_and_audit_finds_and_apply_restores_a_deleted_tag(bed: Bed) -> None:
    first = bed.run("apply", str(bed.spec), "--yes")
    assert "6 of 6 tag(s) copied and verified" in first.stdout
    assert bed.dest_tags("charts/platform") == ["1.2.0", "1.5.3"]
    assert bed.dest_tags("charts/redis") == ["18.0.1", "18.0.4"]
    assert bed.dest_tags("images/backend") == ["v1.2.0", "v1.5.3"]

    second = bed.run("apply", str(bed.spec), "--yes")
    assert "Nothing to do." in second.stdout
    bed.run("plan", str(bed.spec), "--detailed-exitcode", check=0)
    bed.run("audit", str(bed.spec), "--content", check=0)

    delete_tag(bed.destination, bed.dest_repo("charts/platform"), "1.5.3")
    drift = bed.run("audit", str(bed.spec), "--content", check=2)
    assert "missing" in drift.stdout and "1.5.3" in drift.stdout
    report = json.loads(bed.run("audit", str(bed.spec), "--content", "--format", "json", check=2).stdout)
    wrong = [c for t in report["targets"] for c in t["content"] if c["status"] != "present"]
    assert [(c["tag"], c["status"]) for c in wrong] == [("1.5.3", "missing")]

    restored = bed.run("apply", str(bed.spec), "--yes")
    assert "1 of 1 tag(s) copied and verified" in restored.stdout
    bed.run("audit", str(bed.spec), "--content", check=0)


def test_audit_reports_a_retagged_destination_as_digest_mismatch(bed: Bed) -> None:
    bed.run("apply", str(bed.spec), "--yes")
    retag(bed.destination, bed.dest_repo("images/backend"), "v1.2.0", seed="tampered", user="alice")
    report = json.loads(bed.run("audit", str(bed.spec), "--content", "--format", "json", check=2).stdout)
    wrong = [c for t in report["targets"] for c in t["content"] if c["status"] != "present"]
    assert [(c["tag"], c["status"]) for c in wrong] == [("v1.2.0", "digest-mismatch")]
    bed.run("apply", str(bed.spec), "--yes")
    bed.run("audit", str(bed.spec), "--content", check=0)


def test_canary_password_reaches_no_argv_file_or_output(bed: Bed) -> None:
    seen_in_argv: list[str] = []
    stop = threading.Event()

    def watch_processes() -> None:
        # Poll every process's command line while apply runs: skopeo must get the
        # password from an auth file, never from argv.
        while not stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if CANARY in text:
                    seen_in_argv.append(text)
            stop.wait(0.01)

    watcher = threading.Thread(target=watch_processes, daemon=True)
    watcher.start()
    try:
        bed.run("-vv", "apply", str(bed.spec), "--yes")
        bed.run("audit", str(bed.spec), "--content", "--format", "json")
    finally:
        stop.set()
        watcher.join()
    assert seen_in_argv == []
    assert list(bed.tmp.iterdir()) == [], "temporary auth files were left behind"
    for log in (bed.destination.log_path, bed.source.log_path):
        assert CANARY not in log.read_text(errors="replace")


def test_a_failed_copy_is_reported_not_counted_as_done(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEST_PASSWORD", CANARY)
    ctx = RunContext(load_spec(bed.spec), workers=4)
    try:
        the_plan = engine.plan(ctx)
        assert sum(t.tag_count for t in the_plan.targets) == 6
        bed.source.stop()  # upstream vanishes between plan and apply
        result = engine.apply(ctx, the_plan)
    finally:
        ctx.close()
    assert not result.ok
    assert len(result.failures) == 6
    assert [c for c in result.copied if c.ok] == []
    assert all(bed.source.host in failure for failure in result.failures)
    assert bed.dest_tags("charts/platform") == []


def test_missing_env_credential_names_its_location(bed: Bed) -> None:
    del bed.env["DEST_PASSWORD"]
    proc = bed.run("plan", str(bed.spec), check=1)
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {bed.spec}:5:15: credentials 'dest' password:")
    assert "DEST_PASSWORD is not set" in proc.stderr


def test_unreachable_registry_is_one_line_error(bed: Bed, tmp_path: Path) -> None:
    bed.source.stop()
    # --timeout 1: the per-host budget (4 x the timeout) gives up after about 4 s instead of
    # 6 connection attempts over about 17 s (test_no_hang covers the budget itself).
    proc = bed.run("--timeout", "1", "plan", str(bed.spec), check=1)
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: ")
    assert bed.source.host in proc.stderr
