"""Unselected tags: `audit --content` lists them (not drift), `apply --prune-tags` deletes them.

Through the real CLI against real docker-registries (2.8.2, deletes enabled as in every test
bed, and one with deletes disabled) and skopeo. At the destination, besides the selected
`1.1.0` (a one-platform index) and its signature: an out-of-range `1.0.0` pushed by hand and its
signature (both unselected, deleted); `stale`, a hand-made tag on the index `1.1.0` holds, and
`1.1.0-amd64`, one on the index's platform manifest (unselected, but refused: deleting a
manifest by digest deletes every tag on it, and a child would break the kept index).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cli_runner
from testbed import RegistryServer, add_tags, push_image
from testbed.artifacts import OCI_INDEX
from testbed.signatures import push_cosign

from mirrorspec import prune_tags
from mirrorspec.context import RunContext
from mirrorspec.oci import RegistryClient
from mirrorspec.oci.client import Manifest
from mirrorspec.oci.manifest_put import put_manifest
from mirrorspec.plan import Plan, TargetPlan
from mirrorspec.spec import parse_spec

SPEC = """\
version: 1
sources:
  - registry: {up}
    insecure: true
    repositories:
      - {{name: {repository}, versions: "^1.1.0"}}
targets:
  - name: lab
    type: registry
    registry: {down}
    prefix: kept
    insecure: true
"""


def _audit(spec: Path, *extra: str, check: int = 0) -> dict[str, Any]:
    done = cli_runner.run(
        "audit", str(spec), "--content", "--format", "json", *extra, check=check, timeout=120
    )
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _statuses(document: dict[str, Any]) -> dict[str, str]:
    return {c["tag"]: c["status"] for c in document["targets"][0]["content"]}


def test_unselected_tags_are_listed_then_pruned_but_never_a_kept_manifest(
    plain_registry: RegistryServer, tmp_path: Path
) -> None:
    up = down = plain_registry
    platform = push_image(up, "prune/app", "1.1.0-amd64", seed="selected")  # a pre-release: not ^1.1.0
    selected = _put_index(up, "prune/app", "1.1.0", platform)
    push_image(up, "prune/app", "2.0.0", seed="out of range upstream")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(up=up.host, down=down.host, repository="prune/app"))
    cli_runner.run("apply", str(spec), "--yes", timeout=120)

    dest = f"kept/{up.host.replace(':', '_')}/prune/app"
    by_hand = push_image(down, dest, "1.0.0", seed="pushed by hand")
    push_cosign(down, dest, selected, ".sig")  # a signature of a kept digest: never listed
    orphan = f"sha256-{by_hand[7:]}.sig"
    push_cosign(down, dest, by_hand, ".sig")
    add_tags(down, dest, "1.1.0", ["stale"])
    add_tags(down, dest, platform, ["1.1.0-amd64"])  # the kept index's child, tagged by hand

    document = _audit(spec)  # exit 0: unselected tags are reported, not drift
    assert document["in_sync"] is True
    assert _statuses(document) == {
        "1.1.0": "present",
        "1.0.0": "unselected",
        orphan: "unselected",
        "stale": "unselected",
        "1.1.0-amd64": "unselected",
    }
    (row,) = [c for c in document["targets"][0]["content"] if c["tag"] == "1.0.0"]
    assert (row["expected"], row["actual"]) == (None, by_hand)
    notes = [n["message"] for n in document["targets"][0]["notes"]]
    assert any("4 tag(s)" in m and "`apply --prune-tags` deletes them" in m for m in notes)
    # sharded (`--shard I/N`), each unselected tag is listed by the one shard owning its repository
    sharded = [_audit(spec, "--shard", f"{i}/2") for i in range(2)]
    assert sorted(len([t for t, s in _statuses(d).items() if s == "unselected"]) for d in sharded) == [0, 4]
    table = cli_runner.run("audit", str(spec), "--content").stdout
    assert "unselected" in table and "1 of 1 tag(s) present" in table

    # never by default, and never without the confirmation
    assert "Nothing to do." in cli_runner.run("apply", str(spec), "--yes", timeout=120).stdout
    refused = cli_runner.run("apply", str(spec), "--prune-tags", check=1, timeout=120)
    assert "pass --yes" in refused.stderr
    assert set(_statuses(_audit(spec))) == {"1.1.0", "1.0.0", orphan, "stale", "1.1.0-amd64"}

    done = cli_runner.run("apply", str(spec), "--prune-tags", "--yes", timeout=120)
    assert "Tags to delete (--prune-tags): 3" in done.stdout
    assert f"delete {down.host}/{dest}:1.0.0 ({by_hand})" in done.stdout
    assert f"{dest}:stale not deleted: its manifest {selected} is also what a selected tag" in done.stdout
    assert (
        f"{dest}:1.1.0-amd64 not deleted: its manifest {platform} is part of the kept index {selected}"
        in (done.stderr)
    )
    assert "Pruned: 2 tag(s) deleted." in done.stdout
    assert _statuses(_audit(spec)) == {"1.1.0": "present", "stale": "unselected", "1.1.0-amd64": "unselected"}
    with RegistryClient(down.host, insecure=True) as client:
        assert client.digest(dest, "1.1.0") == selected
        assert client.digest(dest, f"sha256-{selected[7:]}.sig") is not None
        assert client.digest(dest, platform) == platform


def test_a_repository_whose_selection_matches_nothing_is_never_pruned(
    plain_registry: RegistryServer, tmp_path: Path
) -> None:
    """A range tightened ahead of a release (or an upstream listing no tags) selects nothing:
    every tag of its mirror would be "unselected", and pruning would empty it."""
    up = down = plain_registry
    push_image(up, "prune/none", "1.0.0", seed="only 1.x upstream")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(up=up.host, down=down.host, repository="prune/none"))
    cli_runner.run("apply", str(spec), "--yes", timeout=120)
    dest = f"kept/{up.host.replace(':', '_')}/prune/none"
    mirrored = push_image(down, dest, "1.0.5", seed="mirrored before the range moved")
    spec.write_text(spec.read_text().replace('versions: "^1.1.0"', 'versions: ">=2.0.0"'))

    document = _audit(spec)
    assert _statuses(document) == {}
    notes = [n["message"] for n in document["targets"][0]["notes"]]
    assert any("whose selection matches no upstream tag" in m and dest in m for m in notes), notes
    done = cli_runner.run("apply", str(spec), "--prune-tags", "--yes", timeout=120)
    assert f"{dest}: not pruned: its selection matches no upstream tag" in done.stdout + done.stderr
    with RegistryClient(down.host, insecure=True) as client:
        assert client.digest(dest, "1.0.5") == mirrored


def _put_index(server: RegistryServer, repository: str, tag: str, child: str) -> str:
    """Put an OCI index of the one manifest `child` under `tag`; its digest."""
    with RegistryClient(server.host, insecure=True) as client:
        manifest = client.manifest(repository, child)
        descriptor = {"mediaType": manifest.media_type, "digest": child, "size": len(manifest.body)}
        descriptor["platform"] = {"architecture": "amd64", "os": "linux"}
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}).encode()
        index = Manifest("sha256:" + hashlib.sha256(body).hexdigest(), OCI_INDEX, body)
        put_manifest(client, repository, tag, index)
    return index.digest


def test_a_registry_with_deletes_disabled_gets_one_line_naming_the_fix(
    plain_registry: RegistryServer, registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    up = plain_registry
    down = registry_factory(delete=False)
    push_image(up, "prune/off", "1.1.0", seed="off")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(up=up.host, down=down.host, repository="prune/off"))
    cli_runner.run("apply", str(spec), "--yes", timeout=120)
    dest = f"kept/{up.host.replace(':', '_')}/prune/off"
    push_image(down, dest, "0.9.0", seed="old")

    done = cli_runner.run("apply", str(spec), "--prune-tags", "--yes", check=1, timeout=120)
    (line,) = [x for x in done.stderr.splitlines() if "405" in x]
    assert "does not delete manifests (405 UNSUPPORTED)" in line
    assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in line and "1 tag(s) not deleted" in line
    assert _statuses(_audit(spec)) == {"1.1.0": "present", "0.9.0": "unselected"}


LAYOUT_SPEC = """\
version: 1
sources:
  - registry: {up}
    insecure: true
    repositories:
      - {{name: prune/layout, versions: "{versions}"}}
targets:
  - name: airgap
    type: oci-layout
    path: {path}
"""


def test_an_oci_layout_loses_the_reference_of_a_version_no_longer_selected(
    plain_registry: RegistryServer, tmp_path: Path
) -> None:
    up = plain_registry
    push_image(up, "prune/layout", "1.0.0", seed="layout-old")
    kept = push_image(up, "prune/layout", "1.1.0", seed="layout-new")
    spec = tmp_path / "spec.yaml"
    layout = tmp_path / "layout"
    spec.write_text(LAYOUT_SPEC.format(up=up.host, versions=">=1.0.0", path=layout))
    cli_runner.run("apply", str(spec), "--yes", timeout=120)
    spec.write_text(LAYOUT_SPEC.format(up=up.host, versions="^1.1.0", path=layout))  # 1.0.0 dropped

    assert _statuses(_audit(spec)) == {"1.1.0": "present", "1.0.0": "unselected"}
    done = cli_runner.run("apply", str(spec), "--prune-tags", "--yes", timeout=120)
    assert "Pruned: 1 tag(s) deleted." in done.stdout
    index = json.loads((layout / "index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert names == {f"{up.host.replace(':', '_')}/prune/layout:1.1.0": kept}
    assert _statuses(_audit(spec)) == {"1.1.0": "present"}


def test_an_ecr_target_is_not_pruned_and_says_so_before_anything_is_read() -> None:
    spec = parse_spec(
        "version: 1\nsources:\n  - registry: quay.io\n    repositories: [{name: a/b, tags: [x]}]\n"
        "targets:\n  - name: aws\n    type: ecr\n    registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n"
    )
    ctx = RunContext(spec)
    try:
        the_plan = Plan(
            "spec.yaml", (TargetPlan("aws", "ecr", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"),), ()
        )
        (pruning,) = prune_tags.plan(ctx, the_plan)
    finally:
        ctx.close()
    assert pruning.delete == () and pruning.endpoint is None
    assert prune_tags.lines([pruning]) == [
        "Tags to delete (--prune-tags): 0",
        "  aws: not pruned: --prune-tags deletes tags in registry and oci-layout targets only, "
        "not in ecr targets",
    ]
