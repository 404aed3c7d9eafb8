"""`chart-images: true` end to end: real chart archives pushed as Helm OCI artifacts to a real
docker-registry, their images on two other registries, the real CLI, real skopeo.

The acceptance of #16 items 2 and 3: one chart repository with `chart-images: true` mirrors the
chart, its dependency, and every image they name (annotation, `.relok8s-images.yaml` hints,
values.yaml in several conventions, a packed subchart); `audit --content` is in sync; a second
plan copies nothing; and `render helm-values`, merged into the chart's values as Helm merges
`-f` files (maps deep-merged), makes discovery over the merged values find only the mirror.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cli_runner
import pytest
from ruamel.yaml import YAML
from testbed import RegistryServer, chart_archive, push_chart, push_image

from mirrorspec.charts import occurrences, read_chart
from mirrorspec.oci import RegistryClient

CANARY = "canary-Ch4rtImages-51d0"


@dataclass
class Bed:
    charts: RegistryServer  # the chart repository's host (plain HTTP)
    images: RegistryServer  # a second host of images
    third: RegistryServer  # a third host of images
    destination: RegistryServer  # TLS + login
    spec: Path
    env: dict[str, str]
    digests: dict[str, str]
    values: str  # the app chart's values.yaml
    archive: Callable[[str], bytes]  # the app chart's archive with other values

    def run(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        return cli_runner.run(*args, env=self.env, check=check, never=[CANARY])

    def mirror_path(self, server: RegistryServer, repository: str) -> str:
        return f"mirror/{server.host.replace(':', '_')}/{repository}"

    def client(self) -> RegistryClient:
        return RegistryClient(
            self.destination.host, username="alice", password=CANARY, ca_bundle=str(self.destination.ca_file)
        )


def _yaml(value: Any) -> bytes:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(value, out)
    return out.getvalue().encode()


def _seed(charts: RegistryServer, images: RegistryServer, third: RegistryServer) -> Bed:
    d = {}
    b, c = images.host, third.host
    for repository, tag in (
        ("acme/backend", "1.2.3"),
        ("acme/frontend", "24.1"),
        ("acme/tool", "1"),
        ("acme/worker", "0.1"),
    ):
        d[f"{repository}:{tag}"] = push_image(images, repository, tag, seed=repository)
    for repository, tag in (("team/cron", "2.0"), ("bitnami/redis", "7.2"), ("bitnami/redis", "7.4")):
        d[f"{repository}:{tag}"] = push_image(third, repository, tag, seed=f"{repository}:{tag}")
    redis_values = _yaml({"image": {"registry": c, "repository": "bitnami/redis", "tag": "7.2"}})
    redis_files = {"values.yaml": redis_values}
    d["chart:redis"] = push_chart(
        charts, "charts/redis", "17.0.0", metadata={"appVersion": "7.2"}, files=redis_files
    )
    redis_meta = {"name": "redis", "version": "17.0.0", "apiVersion": "v2", "appVersion": "7.2"}
    packed_redis = chart_archive("redis", redis_meta, redis_files)
    annotation = (
        f"- name: tool\n  image: {b}/acme/tool:1\n"  # named only here: a note, not a values key
        f"- name: gone\n  image: {b}/acme/gone:1\n"  # not upstream: a warning, the rest goes on
    )
    values = f"""\
image:
  registry: {b}
  repository: acme/backend
  tag: "1.2.3"
frontend:
  image: {b}/acme/frontend:24.1@{d["acme/frontend:24.1"]}
cron:
  image:
    repository: {c}/team/cron
    tag: ""
worker:
  image:
    registry: {b}
    repository: acme/worker
    tag: "0.1"
sidecar:
  image: "{{{{ .Values.global.sidecar }}}}"
redis:
  image:
    tag: "7.4"
"""
    hints = b'- "{{ .worker.image.registry }}/{{ .worker.image.repository }}:{{ .worker.image.tag }}"\n'
    metadata = {
        "appVersion": "2.0",
        "annotations": {"artifacthub.io/images": annotation},
    }
    dependency = [{"name": "redis", "version": "~17.0.0", "repository": f"oci://{charts.host}/charts"}]

    def archive(values_text: str) -> bytes:
        meta = {"name": "app", "version": "1.0.0", "apiVersion": "v2", **metadata, "dependencies": dependency}
        return chart_archive(
            "app",
            meta,
            {
                "values.yaml": values_text.encode(),
                ".relok8s-images.yaml": hints,
                "charts/redis-17.0.0.tgz": packed_redis,
            },
        )

    d["chart:app"] = push_chart(
        charts, "charts/app", "1.0.0", metadata=metadata, dependencies=dependency, package=archive(values)
    )
    return Bed(charts, images, third, None, Path(), {}, d, values, archive)  # type: ignore[arg-type]


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Iterator[Bed]:
    charts, images, third = registry_factory(), registry_factory(), registry_factory()
    destination = registry_factory(tls=True, users={"alice": CANARY})
    bed = _seed(charts, images, third)
    bed.destination = destination
    # Until settings-only sources (#16 item 1) are merged, a plain-HTTP image host is reached
    # through a `sources:` entry, whose repository selects nothing of its own.
    reach_only = "\n".join(
        f"""\
  - registry: {server.host}
    insecure: true
    repositories:
      - name: {repository}
        tags: ["none-such"]"""
        for server, repository in ((images, "acme/backend"), (third, "team/cron"))
    )
    bed.spec = tmp_path / "spec.yaml"
    bed.spec.write_text(
        f"""\
version: 1
credentials:
  dest:
    username: alice
    password: {{env: DEST_PASSWORD}}
sources:
  - registry: {charts.host}
    insecure: true
    repositories:
      - name: charts/app
        versions: "1.0.0"
        helm-dependencies: true
        chart-images: true
{reach_only}
targets:
  - name: lab
    type: registry
    registry: {destination.host}
    prefix: mirror
    credentials: dest
    ca-bundle: {destination.ca_file}
"""
    )
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    bed.env = {**cli_runner.environment(), "DEST_PASSWORD": CANARY, "TMPDIR": str(tmp)}
    yield bed


def _merge(base: Any, over: Any) -> Any:
    """Helm's coalescing of a `-f` file over the chart's values: maps deep-merged, the rest replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def test_a_chart_with_chart_images_is_vendored_with_every_image_and_relocated_values(bed: Bed) -> None:
    b, c, dest = bed.images.host, bed.third.host, bed.destination.host
    plan = json.loads(bed.run("plan", str(bed.spec), "--format", "json").stdout)
    (target,) = plan["targets"]
    copied = {f"{c_['source']}:{t['tag']}": t for c_ in target["copies"] for t in c_["tags"]}
    frontend = bed.digests["acme/frontend:24.1"]
    pin = "digest-" + frontend.replace(":", "-")
    app = f"{bed.charts.host}/charts/app:1.0.0"
    assert set(copied) == {
        app,
        f"{bed.charts.host}/charts/redis:17.0.0",
        f"{b}/acme/backend:1.2.3",
        f"{b}/acme/frontend:{pin}",  # pinned by digest: copied by it, under a tag of its own
        f"{b}/acme/tool:1",
        f"{b}/acme/worker:0.1",
        f"{c}/team/cron:2.0",  # an empty tag is the chart's appVersion
        f"{c}/bitnami/redis:7.4",  # the parent's override of the packed subchart's tag
        f"{c}/bitnami/redis:7.2",  # the dependency chart's own default, mirrored with it
    }
    assert copied[f"{b}/acme/frontend:{pin}"]["digest"] == frontend
    assert copied[f"{b}/acme/backend:1.2.3"]["dependency_of"] == app
    # Where each came from, per chart version.
    records = {r["chart"]: r for r in plan["charts"]}
    assert set(records) == {app, f"{bed.charts.host}/charts/redis:17.0.0"}
    origins = {(i["reference"], i["origin"], i["key"]) for i in records[app]["images"]}
    assert (f"{b}/acme/tool:1", "annotation", "artifacthub.io/images[tool]") in origins
    assert (f"{b}/acme/backend:1.2.3", "values", "image") in origins
    assert any(ref == f"{b}/acme/worker:0.1" and origin == "hints" for ref, origin, _ in origins)
    assert (f"{c}/bitnami/redis:7.4", "values", "redis.image") in origins
    assert [(u["file"], u["key"]) for u in records[app]["unresolved"]] == [("values.yaml", "sidecar.image")]
    notes = [n["message"] for n in target["notes"]]
    assert any("sidecar.image" in n and "not mirrored" in n for n in notes), notes
    assert any(f"{b}/acme/gone:1" in n and "not mirrored" in n for n in notes), notes
    # The relocation mapping, per chart version, for other tools.
    (moved,) = [r for r in target["relocations"] if r["chart"] == app]
    assert (
        moved["images"][f"{b}/acme/backend:1.2.3"]
        == f"{dest}/{bed.mirror_path(bed.images, 'acme/backend')}:1.2.3"
    )
    assert f"{b}/acme/gone:1" not in moved["images"]

    # skopeo sync has no tag to take for the pinned image: its list names the digest.
    synced = bed.run("render", "skopeo", str(bed.spec), "--target", "lab").stdout
    assert frontend in synced and pin not in synced

    applied = bed.run("apply", str(bed.spec), "--yes")
    assert "9 of 9 tag(s) copied and verified" in applied.stdout, applied.stdout
    audit = json.loads(bed.run("audit", str(bed.spec), "--content", "--format", "json").stdout)
    assert audit["in_sync"] is True
    assert len(audit["targets"][0]["content"]) == 9
    assert bed.run("plan", str(bed.spec), "--detailed-exitcode").returncode == 0

    rendered = bed.run("render", "helm-values", str(bed.spec), "--target", "lab", "--chart", app)
    assert f"{b}/acme/tool:1" in rendered.stderr and "by hand" in rendered.stderr
    override = YAML(typ="safe", pure=True).load(rendered.stdout)
    merged = _merge(YAML(typ="safe", pure=True).load(bed.values), override)
    again, unresolved = occurrences(read_chart(bed.archive(_yaml(merged).decode()), where="app"))
    client = bed.client()
    try:
        relocated = [i for i in again if i.origin != "annotation"]
        assert len(relocated) == 6  # 5 values keys (the packed subchart's `redis.image` too), 1 hint
        for image in relocated:
            assert image.registry == dest, image
            reference = image.digest or image.tag
            assert reference is not None
            # What the relocated values name is really there, with the upstream's content.
            assert client.digest(image.repository, reference) is not None, image
        assert [u.key for u in unresolved] == ["sidecar.image"]
        assert client.digest(bed.mirror_path(bed.images, "acme/frontend"), frontend) == frontend
    finally:
        client.close()


def test_render_helm_values_errors_are_one_line(bed: Bed) -> None:
    app = f"{bed.charts.host}/charts/app:1.0.0"
    cases = [
        (["--target", "nope", "--chart", app], "no target named 'nope'"),
        (
            ["--target", "lab", "--chart", f"{bed.charts.host}/charts/app:9.9.9"],
            "the spec does not select it",
        ),
        (["--target", "lab", "--chart", "not-a-chart"], "expected HOST/REPOSITORY:VERSION"),
    ]
    for args, message in cases:
        proc = bed.run("render", "helm-values", str(bed.spec), *args, check=1)
        assert message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stdout == ""
    # The chart mirrored without chart-images (another entry has it): its images are not.
    plain = bed.spec.with_name("plain.yaml")
    plain.write_text(
        bed.spec.read_text().replace(
            "        chart-images: true",
            "        chart-images: false\n"
            '      - {name: charts/redis, versions: "17.0.0", chart-images: true}',
        )
    )
    proc = bed.run("render", "helm-values", str(plain), "--target", "lab", "--chart", app, check=1)
    assert "mirrors it without its images; set chart-images: true" in proc.stderr, proc.stderr
    # No entry has chart-images: said before anything is read.
    off = bed.spec.with_name("off.yaml")
    off.write_text(bed.spec.read_text().replace("chart-images: true", "chart-images: false"))
    proc = bed.run("render", "helm-values", str(off), "--target", "lab", "--chart", app, check=1)
    assert "no repository of the spec has chart-images: true" in proc.stderr, proc.stderr


def test_chart_images_on_a_repository_of_images_is_an_error_naming_the_entry(bed: Bed) -> None:
    spec = bed.spec.with_name("images.yaml")
    spec.write_text(
        bed.spec.read_text().replace(
            '        tags: ["none-such"]', '        tags: ["1.2.3"]\n        chart-images: true', 1
        )
    )
    proc = bed.run("plan", str(spec), check=1)
    assert "chart-images:" in proc.stderr and "is not a Helm chart repository" in proc.stderr, proc.stderr
    assert f"{bed.images.host}/acme/backend" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"../../evil": b"x"}, "reaches outside the chart's directory"),
        ({"values.yaml": b"#" * (6 << 20)}, "mirrorspec reads at most 5 MiB"),
        (
            {f"templates/blob-{i}.yaml": bytes(4 << 20) for i in range(30)},
            "decompresses to more than 100 MiB",
        ),
    ],
)
def test_a_hostile_chart_is_one_line_naming_the_chart(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    source, destination = registry_factory(), registry_factory()
    meta = {"name": "evil", "version": "1.0.0", "apiVersion": "v2"}
    push_chart(source, "charts/evil", "1.0.0", package=chart_archive("evil", meta, files))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
sources:
  - registry: {source.host}
    insecure: true
    repositories:
      - {{name: charts/evil, versions: "1.0.0", chart-images: true}}
targets:
  - {{name: lab, type: registry, registry: {destination.host}, insecure: true}}
"""
    )
    proc = cli_runner.run(
        "plan", str(spec), env={**cli_runner.environment(), "TMPDIR": str(tmp_path)}, check=1
    )
    assert message in proc.stderr, proc.stderr
    assert f"{source.host}/charts/evil:1.0.0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_spec_key_is_in_the_schema_and_defaults_to_off() -> None:
    proc = cli_runner.run("schema")
    repository = json.loads(proc.stdout)["$defs"]["Repository"]["properties"]["chart-images"]
    assert repository["default"] is False and repository["type"] == "boolean"
    assert "render helm-values" in repository["description"]
