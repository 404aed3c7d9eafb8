"""Docker-format images across an air gap, through the real CLI: a Docker schema 2 image and a
Docker manifest list (most of Docker Hub) on a real docker-registry, written by the
`oci-layout` target, the upstream stopped, the directory moved, then read by an `oci-layout:`
source into another docker-registry with the real skopeo 1.9.3.

skopeo 1.9.3 can neither write a Docker manifest list into a layout with its digest nor read a
Docker manifest back from a layout by its reference name (`skopeo/layout_docker_list.py`,
`skopeo/layout_read.py`); before those, both halves failed here."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mirrorspec import paths
from tests import cli_runner
from tests.testbed.artifacts import DOCKER_LIST, DOCKER_MANIFEST, MANIFEST_ACCEPT, push_image
from tests.testbed.registry import RegistryServer, start_registry

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class Near:
    """The near side's work, done: a layout of Docker-format images, the upstream stopped."""

    layout: Path
    segment: str  # the upstream's host segment, as the layout target writes it
    digests: dict[str, str]  # "repository:tag" upstream -> digest
    children: list[str]  # the list's image digests


def _manifest(server: RegistryServer, repository: str, reference: str) -> requests.Response:
    resp = requests.get(
        f"{server.url}/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}, timeout=10
    )
    resp.raise_for_status()
    return resp


def _push_docker_list(server: RegistryServer, repository: str, tag: str) -> tuple[str, list[str]]:
    """A Docker manifest list of two Docker schema 2 images; (its digest, theirs)."""
    entries = []
    for arch, seed in (("amd64", "list-amd64"), ("arm64", "list-arm64")):
        digest = push_image(server, repository, f"{tag}-{arch}", seed=seed, docker_format=True, filler=2048)
        body = _manifest(server, repository, digest).content
        platform = {"architecture": arch, "os": "linux"}
        entries.append(
            {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": len(body), "platform": platform}
        )
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()
    put = requests.put(
        f"{server.url}/v2/{repository}/manifests/{tag}",
        data=body,
        headers={"Content-Type": DOCKER_LIST},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    return "sha256:" + hashlib.sha256(body).hexdigest(), [e["digest"] for e in entries]


def _statuses(audit_stdout: str) -> set[str]:
    return {c["status"] for t in json.loads(audit_stdout)["targets"] for c in t["content"]}


@pytest.fixture(scope="module")
def near(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Near]:
    work = tmp_path_factory.mktemp("layout-docker")
    with start_registry(work / "upstream") as up:
        digests = {"lib/single:1.0": push_image(up, "lib/single", "1.0", seed="single", docker_format=True)}
        digests["lib/multi:2.0"], children = _push_docker_list(up, "lib/multi", "2.0")
        assert _manifest(up, "lib/single", "1.0").headers["Content-Type"] == DOCKER_MANIFEST
        assert _manifest(up, "lib/multi", "2.0").headers["Content-Type"] == DOCKER_LIST
        spec = work / "near.yaml"
        spec.write_text(
            f"""version: 1
sources:
  - registry: {up.host}
    insecure: true
    repositories:
      - {{name: lib/single, tags: ["1.0"]}}
      - {{name: lib/multi, tags: ["2.0"]}}
targets:
  - {{name: media, type: oci-layout, path: airgap}}
"""
        )
        cli_runner.run("apply", str(spec), "--yes")
        audit = cli_runner.run("audit", str(spec), "--content", "--format", "json")
        assert _statuses(audit.stdout) == {"present"}
        again = json.loads(cli_runner.run("plan", str(spec), "--format", "json").stdout)
        assert again["targets"][0]["copies"] == []
        segment = paths.host_segment(up.host)
    # the upstream is stopped: everything below reads the layout only
    yield Near(work / "airgap", segment, digests, children)


def test_the_layout_holds_docker_manifests_as_upstream_serves_them_and_names_only_the_tags(
    near: Near,
) -> None:
    index = json.loads((near.layout / "index.json").read_text())
    named = {m["annotations"][REF_NAME]: (m["digest"], m["mediaType"]) for m in index["manifests"]}
    assert named == {
        f"{near.segment}/lib/single:1.0": (near.digests["lib/single:1.0"], DOCKER_MANIFEST),
        f"{near.segment}/lib/multi:2.0": (near.digests["lib/multi:2.0"], DOCKER_LIST),
    }
    for digest in [*near.digests.values(), *near.children]:  # the list's images are there too
        blob = near.layout / "blobs" / "sha256" / digest.split(":")[1]
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest


def _far_spec(tmp: Path, near: Near, far: RegistryServer) -> Path:
    # A ':' in the directory's name: skopeo never sees the layout's path in an `oci:` reference.
    shutil.copytree(near.layout, tmp / "moved:media")  # the directory carried across
    spec = tmp / "far.yaml"
    spec.write_text(
        f"""version: 1
sources:
  - oci-layout: "moved:media"
    repositories:
      - {{name: {near.segment}/lib/single, tags: ["1.0"]}}
      - {{name: {near.segment}/lib/multi, tags: ["2.0"]}}
targets:
  - {{name: far, type: registry, registry: {far.host}, insecure: true, prefix: mirror}}
"""
    )
    return spec


def test_docker_images_and_lists_cross_with_their_digests_audit_in_sync_and_rerun_copies_nothing(
    near: Near, tmp_path: Path, registry_factory: object
) -> None:
    far = registry_factory()  # type: ignore[operator]
    spec = _far_spec(tmp_path, near, far)
    first = cli_runner.run("apply", str(spec), "--yes")
    assert first.stderr.count("copied ") == 2, first.stderr
    for reference, digest in near.digests.items():
        repository, tag = reference.split(":", 1)
        served = _manifest(far, f"mirror/{near.segment}/{repository}", tag)
        assert served.headers["Docker-Content-Digest"] == digest, reference
        assert served.headers["Content-Type"] in {DOCKER_MANIFEST, DOCKER_LIST}
    for child in near.children:  # each platform's image is there by digest
        assert (
            _manifest(far, f"mirror/{near.segment}/lib/multi", child).headers["Content-Type"]
            == DOCKER_MANIFEST
        )
    audit = cli_runner.run("audit", str(spec), "--content", "--format", "json")
    assert _statuses(audit.stdout) == {"present"}
    plan = json.loads(cli_runner.run("plan", str(spec), "--format", "json").stdout)
    assert plan["targets"][0]["copies"] == []
    second = cli_runner.run("apply", str(spec), "--yes")
    assert "copied " not in second.stderr, second.stderr


def _layer(layout: Path, manifest_digest: str) -> Path:
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest.split(":")[1]).read_text())
    return layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]


@pytest.mark.parametrize("which", ["single", "list"])
def test_a_corrupted_blob_of_a_docker_image_or_a_lists_image_is_refused_before_anything_is_pushed(
    near: Near, tmp_path: Path, registry_factory: object, which: str
) -> None:
    far = registry_factory()  # type: ignore[operator]
    spec = _far_spec(tmp_path, near, far)
    moved = tmp_path / "moved:media"
    digest = near.digests["lib/single:1.0"] if which == "single" else near.children[1]
    layer = _layer(moved, digest)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, other content
    layer.write_bytes(bytes(data))
    proc = cli_runner.run("apply", str(spec), "--yes", check=1)
    summary = "error: 1 operation(s) failed; the rest was applied"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error") and line != summary]
    assert len(errors) == 1, proc.stderr
    reference = f"{near.segment}/lib/{which if which == 'single' else 'multi'}"
    assert reference in errors[0] and "does not match its digest" in errors[0], errors[0]
    # The other image crossed; of the damaged one, not a blob reached the registry.
    other = "lib/multi" if which == "single" else "lib/single"
    catalog = requests.get(f"{far.url}/v2/_catalog", timeout=10).json()["repositories"]
    assert catalog == [f"mirror/{near.segment}/{other}"]
