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


def _layer_of(layout: Path, ref: str) -> Path:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == ref]
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())
    return layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]


def _break_missing_blob(layout: Path, ref: str) -> str:
    _layer_of(layout, ref).unlink()
    return "is missing"


def _break_blob_content(layout: Path, ref: str) -> str:
    layer = _layer_of(layout, ref)
    layer.write_bytes(layer.read_bytes()[:-1] + b"x")  # same size, other content
    return "does not match its digest"


def _break_symlink_out(layout: Path, ref: str) -> str:
    layer = _layer_of(layout, ref)
    outside = layout.parent / "elsewhere.bin"
    outside.write_bytes(layer.read_bytes())  # even the right bytes: never read through a link
    layer.unlink()
    layer.symlink_to(outside)
    return "symlink"


def _break_truncated_index(layout: Path, ref: str) -> str:
    index = layout / "index.json"
    index.write_bytes(index.read_bytes()[:-40])
    return "index.json: not valid JSON"


def _break_ref_name(layout: Path, ref: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "Upper/Case:1.0"
    (layout / "index.json").write_text(json.dumps(index))
    return "Upper/Case:1.0"


@pytest.mark.parametrize(
    "damage",
    [_break_missing_blob, _break_blob_content, _break_symlink_out, _break_truncated_index, _break_ref_name],
)
def test_a_damaged_layout_is_one_line_naming_it_exit_1_and_nothing_reaches_the_registry(
    gap: Gap, tmp_path: Path, registry_factory: object, damage: object
) -> None:
    far = registry_factory()  # type: ignore[operator]
    ref = f"{gap.segment}/acme/tool:2.0"
    spec = _far_spec(tmp_path, gap, far, f"      - name: {gap.segment}/acme/tool\n        tags: ['2.0']\n")
    said = damage(tmp_path / "moved", ref)  # type: ignore[operator]
    proc = cli_runner.run("apply", str(spec), "--yes", check=1)
    # one line for the damage; apply's own count of failures follows a copy that failed
    summary = "error: 1 operation(s) failed; the rest was applied"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error") and line != summary]
    assert len(errors) == 1, proc.stderr
    assert said in errors[0]
    assert "layout" in errors[0] and str(tmp_path / "moved") in errors[0]
    if damage not in (_break_truncated_index, _break_ref_name):  # whole-layout faults name the file
        assert ref in errors[0]
    assert _catalog(far) == []


def test_two_steps_across_the_gap_with_the_far_spec_rendered_land_every_digest_and_rerun_copies_nothing(
    tmp_path: Path, registry_factory: object
) -> None:
    up = registry_factory()  # type: ignore[operator]
    digests = {
        "acme/tool:1.0": push_image(up, "acme/tool", "1.0", seed="e1"),
        "charts/dep:1.2.0": push_chart(up, "charts/dep", "1.2.0", seed="e-dep"),
    }
    digests["charts/app:1.0.0"] = push_chart(
        up,
        "charts/app",
        "1.0.0",
        dependencies=[{"name": "dep", "version": "~1.2.0", "repository": f"oci://{up.host}/charts"}],
        metadata={
            "annotations": {"artifacthub.io/images": f"- name: tool\n  image: {up.host}/acme/tool:1.0\n"}
        },
    )
    near_dir = tmp_path / "near"
    near_dir.mkdir()
    near = near_dir / "spec.yaml"
    near.write_text(
        f"""version: 1
sources:
  - registry: {up.host}
    insecure: true
    repositories:
      - name: charts/app
        versions: ">=1.0 <2"
        helm-dependencies: true
        chart-images: true
targets:
  - name: media
    type: oci-layout
    path: airgap
"""
    )
    cli_runner.run("apply", str(near), "--yes")
    cli_runner.run("audit", str(near), "--content")
    near_again = json.loads(cli_runner.run("plan", str(near), "--format", "json").stdout)
    assert near_again["targets"][0]["copies"] == []
    far = registry_factory()  # type: ignore[operator]
    far_dir = tmp_path / "far"
    far_dir.mkdir()
    targets = far_dir / "targets.yaml"
    targets.write_text(
        f"targets:\n  - name: inside\n    type: registry\n    registry: {far.host}\n    insecure: true\n"
        "    prefix: mirror\n"
    )
    rendered = cli_runner.run("render", "offline-spec", str(near), "--target", "media", "--to", str(targets))
    up.stop()  # the gap: nothing below reaches the upstream
    shutil.copytree(near_dir / "airgap", far_dir / "airgap")  # the directory carried across
    (far_dir / "spec.yaml").write_text(rendered.stdout)
    segment = paths.host_segment(up.host)
    assert f"name: {segment}/charts/app" in rendered.stdout
    assert "versions: '>=1.0 <2'" in rendered.stdout
    validated = subprocess.run(
        [cli_runner.MIRRORSPEC, "validate", "-"],
        input=rendered.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert validated.returncode == 0, validated.stderr
    cli_runner.run("apply", str(far_dir / "spec.yaml"), "--yes")
    for reference, digest in digests.items():
        repository, tag = reference.split(":", 1)
        direct = paths.destination("mirror", "scoped", up.host, repository)  # where a direct mirror lands
        assert _digest(far, direct, tag) == digest, reference
    cli_runner.run("audit", str(far_dir / "spec.yaml"), "--content")  # exit 0: in sync
    again = json.loads(cli_runner.run("plan", str(far_dir / "spec.yaml"), "--format", "json").stdout)
    assert again["targets"][0]["copies"] == []


def test_render_offline_spec_refuses_a_target_that_is_not_a_layout_and_a_targets_file_without_targets(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nsources:\n  - registry: quay.io\n    repositories: [{name: a/b, tags: ['1']}]\n"
        "targets:\n  - {name: lab, type: registry, registry: localhost:5000}\n"
        "  - {name: media, type: oci-layout, path: out}\n"
    )
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  - {name: inside, type: registry, registry: r.example}\n")
    proc = cli_runner.run("render", "offline-spec", str(spec), "-t", "lab", "--to", str(targets), check=1)
    assert proc.stderr == (
        "error: target 'lab' is a registry target; render offline-spec needs the oci-layout target "
        "the near side writes\n"
    )
    targets.write_text("credentials: {}\n")
    proc = cli_runner.run("render", "offline-spec", str(spec), "-t", "media", "--to", str(targets), check=1)
    assert proc.stderr.count("\n") == 1 and "far side's targets:" in proc.stderr
    targets.write_text("targets:\n  - {name: inside, type: registry, registry: r.example}\n")
    out = cli_runner.run(
        "render",
        "offline-spec",
        str(spec),
        "-t",
        "media",
        "--to",
        str(targets),
        "--layout-path",
        "/media/usb/out",
    )
    assert out.stdout.startswith(
        "version: 1\nsources:\n- oci-layout: /media/usb/out\n  repositories:\n  - name: quay.io/a/b\n"
    )


@pytest.mark.parametrize(
    "target",
    [
        "{name: t, type: ecr, registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com, mode: cache}",
        "{name: t, type: acr, subscription: 00000000-0000-0000-0000-000000000000, "
        "resource-group: registries, registry: mycompany, mode: cache}",
        "{name: t, type: acr, subscription: 00000000-0000-0000-0000-000000000000, "
        "resource-group: registries, registry: mycompany}",
        "{name: t, type: harbor, url: 'https://harbor.example.com', project: vendor}",
        "{name: t, type: harbor, url: 'https://harbor.example.com', project: vendor, mode: cache}",
    ],
)
def test_no_provider_makes_a_native_rule_import_or_replication_for_a_layout_source(
    tmp_path: Path, target: str
) -> None:
    """Every all-tags docker.io repository would get a pull-through cache rule, a cache rule,
    an import or a replication policy from a registry; from a layout, all of them are copied."""
    from mirrorspec import providers
    from mirrorspec.context import RunContext
    from mirrorspec.plan import Artifact
    from mirrorspec.spec import parse_spec

    spec = parse_spec(
        "version: 1\nsources:\n  - oci-layout: media\n    repositories:\n"
        "      - {name: docker.io/library/redis, all-tags: true}\n"
        f"targets:\n  - {target}\n"
    )
    host = spec.sources[0].registry
    assert host == "oci-layout:media"
    artifact = Artifact(host, "docker.io/library/redis", "7.0", "sha256:" + "a" * 64)
    ctx = RunContext(spec)
    chosen = spec.targets[0]
    provider = providers.get(chosen.type)
    assert provider.cached(chosen, ctx) == frozenset()
    desired = provider.translate([artifact], chosen, ctx)
    assert desired.native == frozenset()  # the engine copies it with skopeo
    kinds = {r.kind for r in desired.resources}
    assert kinds <= {"repository", "project"}, kinds  # only what a push needs
    assert any("read from an OCI layout, offline" in n.message for n in desired.notes)
    # a layout source adds no host segment: its path already holds the upstream's
    assert chosen.destination(spec, host, "docker.io/library/redis").endswith("docker.io/library/redis")
    assert "oci-layout" not in chosen.destination(spec, host, "docker.io/library/redis")
