"""`oci-layout:` sources, through the real CLI: a layout made from a real registry with the real
skopeo (as the layout target writes it: `<host segment>/<repository>:<tag>` ref names), the
upstream then stopped, and the layout mirrored to a real docker-registry on the far side."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mirrorspec import paths
from tests import cli_runner
from tests.testbed.artifacts import push_chart, push_image
from tests.testbed.registry import RegistryServer, start_registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = f"{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"


@dataclass
class Gap:
    """The far side of an air gap: a layout of the upstream's artifacts, the upstream gone."""

    layout: Path
    segment: str  # the upstream's host segment, as the layout target writes it
    upstream_host: str
    digests: dict[str, str]  # "repository:tag" upstream -> digest


def _skopeo(policy: Path, *args: str) -> None:
    subprocess.run(
        ["skopeo", "--policy", str(policy), *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def gap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gap]:
    work = tmp_path_factory.mktemp("layout-source")
    layout = work / "layout"
    digests: dict[str, str] = {}
    policy = work / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    with start_registry(work / "upstream") as up:
        segment = paths.host_segment(up.host)
        digests["acme/tool:1.0"] = push_image(up, "acme/tool", "1.0", seed="t1")
        digests["acme/tool:2.0"] = push_image(up, "acme/tool", "2.0", seed="t2", filler=4096)
        signature = "sha256-" + digests["acme/tool:1.0"].split(":")[1] + ".sig"
        digests[f"acme/tool:{signature}"] = push_image(up, "acme/tool", signature, seed="sig")
        digests["charts/dep:1.2.0"] = push_chart(up, "charts/dep", "1.2.0", seed="dep")
        images = f"- name: tool\n  image: {up.host}/acme/tool:1.0\n"
        digests["charts/app:1.0.0"] = push_chart(
            up,
            "charts/app",
            "1.0.0",
            dependencies=[{"name": "dep", "version": "~1.2.0", "repository": f"oci://{up.host}/charts"}],
            metadata={"annotations": {"artifacthub.io/images": images}},
        )
        for reference, digest in digests.items():
            repository, tag = reference.split(":", 1)
            _skopeo(
                policy,
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
                f"docker://{up.host}/{repository}@{digest}",
                f"oci:{layout}:{segment}/{repository}:{tag}",
            )
        host = up.host
    # the registry is stopped: everything below reads the layout only
    yield Gap(layout, segment, host, digests)


def _far_spec(tmp: Path, gap: Gap, destination: RegistryServer, repositories: str) -> Path:
    where = tmp / "moved"
    if not where.exists():
        shutil.copytree(gap.layout, where)  # the directory carried across
    spec = tmp / "far.yaml"
    spec.write_text(
        f"""version: 1
sources:
  - oci-layout: {where.name}
    repositories:
{repositories}
targets:
  - name: far
    type: registry
    registry: {destination.host}
    insecure: true
    prefix: mirror
"""
    )
    return spec


def _digest(server: RegistryServer, repository: str, tag: str) -> str | None:
    resp = requests.head(
        f"{server.url}/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=10
    )
    return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None


def _catalog(server: RegistryServer) -> list[str]:
    resp = requests.get(f"{server.url}/v2/_catalog", timeout=10)
    resp.raise_for_status()
    return list(resp.json()["repositories"] or [])


def test_a_layout_mirrors_to_where_a_direct_mirror_lands_with_digests_dependencies_images_and_signatures(
    gap: Gap, tmp_path: Path, registry_factory: object
) -> None:
    far = registry_factory()  # type: ignore[operator]
    s = gap.segment
    spec = _far_spec(
        tmp_path,
        gap,
        far,
        f"""      - name: {s}/charts/app
        versions: "1.x"
        helm-dependencies: true
        chart-images: true
      - name: {s}/acme/tool
        tags: ["2.0"]
""",
    )
    cli_runner.run("apply", str(spec), "--yes")
    for reference, digest in gap.digests.items():
        repository, tag = reference.split(":", 1)
        # where a direct mirror from the upstream would put it
        direct = paths.destination("mirror", "scoped", gap.upstream_host, repository)
        assert direct == f"mirror/{s}/{repository}"
        assert _digest(far, direct, tag) == digest, reference
    plan = json.loads(cli_runner.run("plan", str(spec), "--format", "json").stdout)
    assert plan["targets"][0]["copies"] == []
    audit = cli_runner.run("audit", str(spec), "--content", "--format", "json")
    statuses = {c["status"] for t in json.loads(audit.stdout)["targets"] for c in t["content"]}
    assert statuses == {"present"}
