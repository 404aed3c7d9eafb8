"""`chart-images: true` end to end: real chart archives pushed as Helm OCI artifacts to a real
docker-registry, their images on two other registries, the real CLI, real skopeo.

The acceptance of #16 items 2 and 3: one chart repository with `chart-images: true` mirrors the
chart, its dependencies on two hosts, and every image they name (annotation,
`.relok8s-images.yaml` hints, values.yaml in several conventions, packed subcharts);
`audit --content` is in sync; a second plan copies nothing; and `render helm-values`, merged
into the chart's values as Helm merges `-f` files (maps deep-merged), makes discovery over the
merged values find only the mirror. The image hosts are reached through settings-only `sources:`
entries (#16 item 1): one plain HTTP (`insecure: true`), one TLS with a private CA and a login,
which without its entry fails the plan in one line that says how to give it settings.
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
import requests
from ruamel.yaml import YAML
from spec_text import DEST_LOGIN, lab_target
from testbed import RegistryServer, chart_archive, push_chart, push_image
from testbed.signatures import push_cosign, push_referrer

from mirrorspec import engine
from mirrorspec.charts import occurrences, read_chart
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.oci import RegistryClient
from mirrorspec.spec import load_spec

CANARY = "canary-Ch4rtImages-51d0"
THIRD_CANARY = "canary-Th1rdH0st-77c2"


# The third host's settings: a settings-only `sources:` entry, its only way in.
THIRD_ENTRY = """\
  - registry: {host}
    credentials: third-login
    ca-bundle: {ca}
"""


@dataclass
class Bed:
    charts: RegistryServer  # the chart repository's host (plain HTTP)
    images: RegistryServer  # a second host: images, and a chart the app depends on (plain HTTP)
    third: RegistryServer  # a third host of images (TLS + login)
    destination: RegistryServer  # TLS + login
    spec: Path
    env: dict[str, str]
    digests: dict[str, str]
    values: str  # the app chart's values.yaml
    archive: Callable[[str], bytes]  # the app chart's archive with other values

    def run(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        return cli_runner.run(*args, env=self.env, check=check, never=[CANARY, THIRD_CANARY])

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
    for repository, tag in (
        ("team/cron", "2.0"),
        ("bitnami/redis", "7.2"),
        ("bitnami/redis", "7.4"),
        ("team/metrics", "3.1"),
    ):
        d[f"{repository}:{tag}"] = push_image(third, repository, tag, seed=f"{repository}:{tag}")
    # A dependency on the second host, whose values name its image as one string.
    metrics_files = {"values.yaml": _yaml({"image": f"{c}/team/metrics:3.1"})}
    metrics_meta = {"name": "metrics", "version": "3.1.0", "apiVersion": "v2"}
    d["chart:metrics"] = push_chart(images, "charts/metrics", "3.1.0", files=metrics_files)
    packed_metrics = chart_archive("metrics", metrics_meta, metrics_files)
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
    dependency = [
        {"name": "redis", "version": "~17.0.0", "repository": f"oci://{charts.host}/charts"},
        {"name": "metrics", "version": "~3.1.0", "repository": f"oci://{b}/charts"},
    ]

    def archive(values_text: str) -> bytes:
        meta = {"name": "app", "version": "1.0.0", "apiVersion": "v2", **metadata, "dependencies": dependency}
        return chart_archive(
            "app",
            meta,
            {
                "values.yaml": values_text.encode(),
                ".relok8s-images.yaml": hints,
                "charts/redis-17.0.0.tgz": packed_redis,
                "charts/metrics-3.1.0.tgz": packed_metrics,
            },
        )

    d["chart:app"] = push_chart(
        charts, "charts/app", "1.0.0", metadata=metadata, dependencies=dependency, package=archive(values)
    )
    # Signed: the chart (cosign), one image on each image host (cosign; an OCI 1.1 referrer on
    # the TLS + login host, listed in its referrers tag index).
    d["sig:app"] = push_cosign(charts, "charts/app", d["chart:app"])
    d["sig:backend"] = push_cosign(images, "acme/backend", d["acme/backend:1.2.3"])
    d["sbom:metrics"] = push_referrer(third, "team/metrics", d["team/metrics:3.1"], user="bob")
    return Bed(charts, images, third, None, Path(), {}, d, values, archive)  # type: ignore[arg-type]


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Iterator[Bed]:
    charts, images = registry_factory(), registry_factory()
    third = registry_factory(tls=True, users={"bob": THIRD_CANARY})
    destination = registry_factory(tls=True, users={"alice": CANARY})
    bed = _seed(charts, images, third)
    bed.destination = destination
    bed.spec = tmp_path / "spec.yaml"
    bed.spec.write_text(
        f"""\
{DEST_LOGIN}  third-login:
    username: bob
    password: {{env: THIRD_PASSWORD}}
sources:
  - registry: {charts.host}
    insecure: true
    repositories:
      - name: charts/app
        versions: "1.0.0"
        helm-dependencies: true
        chart-images: true
  - registry: {images.host}
    insecure: true
{THIRD_ENTRY.format(host=third.host, ca=third.ca_file)}{lab_target(destination)}"""
    )
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    bed.env = {
        **cli_runner.environment(),
        "DEST_PASSWORD": CANARY,
        "THIRD_PASSWORD": THIRD_CANARY,
        "TMPDIR": str(tmp),
    }
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
    every = {f"{c_['source']}:{t['tag']}": t for c_ in target["copies"] for t in c_["tags"]}
    copied = {ref: t for ref, t in every.items() if not t["refers_to"]}
    # Their signatures go along, with the digest each refers to.
    d = bed.digests
    signed = {ref: (t["digest"], t["refers_to"]) for ref, t in every.items() if t["refers_to"]}
    sig = d["chart:app"].replace(":", "-") + ".sig"
    assert signed[f"{bed.charts.host}/charts/app:{sig}"] == (d["sig:app"], d["chart:app"])
    sig = d["acme/backend:1.2.3"].replace(":", "-") + ".sig"
    assert signed[f"{b}/acme/backend:{sig}"] == (d["sig:backend"], d["acme/backend:1.2.3"])
    assert signed[f"{c}/team/metrics:{d['sbom:metrics']}"] == (d["sbom:metrics"], d["team/metrics:3.1"])
    images = sum(1 for a in plan["artifacts"] if a["chart_image"])
    deps = sum(1 for a in plan["artifacts"] if a["dependency_of"] and not a["chart_image"])
    assert images and deps
    # the text plan counts a chart's images apart from its Helm dependencies
    summary = bed.run("plan", str(bed.spec)).stdout.splitlines()[-1]
    assert f"{deps} via Helm dependencies, {images} image(s) charts deploy" in summary, summary
    frontend = bed.digests["acme/frontend:24.1"]
    pin = "digest-" + frontend.replace(":", "-")
    app = f"{bed.charts.host}/charts/app:1.0.0"
    assert set(copied) == {
        app,
        f"{bed.charts.host}/charts/redis:17.0.0",
        f"{b}/charts/metrics:3.1.0",  # the dependency on the second host
        f"{b}/acme/backend:1.2.3",
        f"{b}/acme/frontend:{pin}",  # pinned by digest: copied by it, under a tag of its own
        f"{b}/acme/tool:1",
        f"{b}/acme/worker:0.1",
        f"{c}/team/cron:2.0",  # an empty tag is the chart's appVersion
        f"{c}/bitnami/redis:7.4",  # the parent's override of the packed subchart's tag
        f"{c}/bitnami/redis:7.2",  # the dependency chart's own default, mirrored with it
        f"{c}/team/metrics:3.1",  # named by the dependency on the second host
    }
    assert copied[f"{b}/acme/frontend:{pin}"]["digest"] == frontend
    assert copied[f"{b}/acme/backend:1.2.3"]["dependency_of"] == app
    # Where each came from, per chart version.
    records = {r["chart"]: r for r in plan["charts"]}
    metrics = f"{b}/charts/metrics:3.1.0"
    assert set(records) == {app, f"{bed.charts.host}/charts/redis:17.0.0", metrics}
    assert [(i["reference"], i["key"], i["shape"]) for i in records[metrics]["images"]] == [
        (f"{c}/team/metrics:3.1", "image", "string")
    ]
    origins = {(i["reference"], i["origin"], i["key"]) for i in records[app]["images"]}
    assert (f"{b}/acme/tool:1", "annotation", "artifacthub.io/images[tool]") in origins
    assert (f"{b}/acme/backend:1.2.3", "values", "image") in origins
    assert any(ref == f"{b}/acme/worker:0.1" and origin == "hints" for ref, origin, _ in origins)
    assert (f"{c}/bitnami/redis:7.4", "values", "redis.image") in origins
    assert [(u["file"], u["key"]) for u in records[app]["unresolved"]] == [("values.yaml", "sidecar.image")]
    notes = [n["message"] for n in target["notes"]]
    assert any("sidecar.image" in n and "not mirrored" in n for n in notes), notes
    assert any(f"{b}/acme/gone:1" in n and "not mirrored" in n for n in notes), notes
    # Every host it reached has a sources: entry (the image hosts' only settings-only ones).
    assert not [n for n in notes if "no sources: entry" in n], notes
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
    # the chart, its dependencies and images (11), their signatures and referrer (3); the
    # referrers tag index is put by mirrorspec itself
    assert (
        "14 of 14 tag(s) copied and verified; 1 more tag(s) planned for other engines (1 by manifest-put)"
        in applied.stdout
    ), applied.stdout
    audit = json.loads(bed.run("audit", str(bed.spec), "--content", "--format", "json").stdout)
    assert audit["in_sync"] is True
    assert len(audit["targets"][0]["content"]) == 15  # the tag index too
    assert bed.run("plan", str(bed.spec), "--detailed-exitcode").returncode == 0

    # No --target: the spec has one (issue 18, item 8), as for the other render commands.
    rendered = bed.run("render", "helm-values", str(bed.spec), "--chart", app)
    assert f"{b}/acme/tool:1" in rendered.stderr and "by hand" in rendered.stderr
    override = YAML(typ="safe", pure=True).load(rendered.stdout)
    merged = _merge(YAML(typ="safe", pure=True).load(bed.values), override)
    again, unresolved = occurrences(read_chart(bed.archive(_yaml(merged).decode()), where="app"))
    client = bed.client()
    try:
        relocated = [i for i in again if i.origin != "annotation"]
        # 6 values keys (the packed subcharts' `redis.image` and `metrics.image` too), 1 hint
        assert len(relocated) == 7
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
            "    insecure: true\n  - registry:",
            "    insecure: true\n    repositories:\n"
            '      - {name: acme/backend, tags: ["1.2.3"], chart-images: true}\n  - registry:',
            1,
        )
    )
    proc = bed.run("plan", str(spec), check=1)
    assert "chart-images:" in proc.stderr and "is not a Helm chart repository" in proc.stderr, proc.stderr
    assert f"{bed.images.host}/acme/backend" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_without_its_settings_only_entry_the_tls_login_image_host_fails_the_plan_in_one_line(
    bed: Bed,
) -> None:
    c = bed.third.host
    spec = bed.spec.with_name("no-third.yaml")
    spec.write_text(bed.spec.read_text().replace(THIRD_ENTRY.format(host=c, ca=bed.third.ca_file), ""))
    assert c not in spec.read_text()  # reached only because the charts name its images
    proc = bed.run("plan", str(spec), check=1)
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    # Its images in key order, the first one named; with the chart that names it.
    assert f"image {c}/bitnami/redis:7.2: TLS certificate of {c} is not trusted" in line, line
    assert line.startswith(f"error: {bed.charts.host}/charts/redis:17.0.0: "), line
    assert line.endswith(
        f"({c} has no sources: entry; one without repositories gives it credentials, ca-bundle or insecure)"
    ), line


def test_the_plan_notes_each_image_host_reached_without_an_entry(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """In process: only a host the system's CAs trust is reached without an entry, so
    `registry_overrides` stands the names in for a local registry (as the hosts' own test does)."""
    charts, served = registry_factory(), registry_factory()
    push_image(served, "acme/a", "1", seed="a")
    push_image(served, "acme/b", "1", seed="b")
    push_image(served, "acme/c", "1", seed="c")
    values = _yaml(
        {
            "a": {"image": "img-b.example.test/acme/a:1"},
            "b": {"image": {"registry": "img-a.example.test", "repository": "acme/b", "tag": "1"}},
            "c": {"image": "img-c.example.test/acme/c:1"},
        }
    )
    push_chart(charts, "charts/app", "1.0.0", files={"values.yaml": values})
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
sources:
  - registry: {charts.host}
    insecure: true
    repositories:
      - {{name: charts/app, versions: "1.0.0", chart-images: true}}
  - registry: img-c.example.test
    insecure: true
targets:
  - {{name: lab, type: registry, registry: {registry_factory().host}, insecure: true}}
"""
    )
    hosts = ("img-a.example.test", "img-b.example.test", "img-c.example.test")
    ctx = RunContext(
        load_spec(spec), registry_overrides=dict.fromkeys(hosts, Endpoint(served.host, insecure=True))
    )
    try:
        plan = engine.plan(ctx)
    finally:
        ctx.close()
    assert {(a.registry, a.repository) for a in plan.artifacts if a.dependency_of} == {
        ("img-b.example.test", "acme/a"),
        ("img-a.example.test", "acme/b"),
        ("img-c.example.test", "acme/c"),
    }
    (target,) = plan.targets
    assert [n.message for n in target.notes if "no sources: entry" in n.message] == [
        f"{host}: no sources: entry, so it is read anonymously with default TLS "
        "(an entry without repositories gives it credentials, ca-bundle or insecure)"
        for host in ("img-a.example.test", "img-b.example.test")
    ]


def test_validate_says_chart_images_may_reach_hosts_without_an_entry(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    entry = (
        "  - registry: docker.io\n    credentials: hub\n    repositories:\n"
        "      - {name: charts/app, versions: '1.x', %s}\n"
    )
    for keys, leads in (
        ("chart-images: true", "chart images"),
        ("chart-images: true, helm-dependencies: true", "Helm dependencies or chart images"),
    ):
        spec.write_text(
            "version: 1\ncredentials:\n  hub: {username: u, password: {env: HUB_TOKEN}}\nsources:\n"
            + entry % keys
            + "targets:\n  - {name: lab, type: registry, registry: internal.example.com}\n"
        )
        proc = cli_runner.run("validate", str(spec))
        assert proc.stdout.splitlines()[1:] == [
            f"reached anonymously with default TLS: any host that {leads} lead to without a sources: entry"
        ]


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


def test_a_chart_whose_content_cannot_be_read_is_one_line_naming_the_chart(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """The registry's own error (its content layer is gone: 404) says which chart was being read."""
    source, destination = registry_factory(), registry_factory()
    meta = {"name": "gone", "version": "1.0.0", "apiVersion": "v2"}
    push_chart(source, "charts/gone", "1.0.0", package=chart_archive("gone", meta, {}))
    manifest = requests.get(
        f"{source.url}/v2/charts/gone/manifests/1.0.0",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).json()
    (layer,) = manifest["layers"]
    deleted = requests.delete(f"{source.url}/v2/charts/gone/blobs/{layer['digest']}", timeout=10)
    assert deleted.status_code == 202, deleted.text
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
sources:
  - registry: {source.host}
    insecure: true
    repositories:
      - {{name: charts/gone, versions: "1.0.0", chart-images: true}}
targets:
  - {{name: lab, type: registry, registry: {destination.host}, insecure: true}}
"""
    )
    proc = cli_runner.run("plan", str(spec), check=1)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {source.host}/charts/gone:1.0.0: cannot read the chart's content: "), line


def test_the_spec_key_is_in_the_schema_and_defaults_to_off() -> None:
    proc = cli_runner.run("schema")
    repository = json.loads(proc.stdout)["$defs"]["Repository"]["properties"]["chart-images"]
    assert repository["default"] is False and repository["type"] == "boolean"
    assert "render helm-values" in repository["description"]
