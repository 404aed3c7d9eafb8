"""Chart archives read as untrusted input, and the images a chart deploys (`mirrorspec.charts`).

The archives are real gzipped tars built here the way `helm package` lays them out (one base
directory named after the chart, `charts/` holding packed or unpacked subcharts); the hostile
ones are what an attacker controlling an upstream chart could publish. Nothing here needs a
registry: this is the reading and discovery that the chart-images feature (#16) builds on.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Iterable

import pytest
from ruamel.yaml import YAML

from mirrorspec.charts import (
    ChartArchiveError,
    Image,
    archive as archive_module,
    discover,
    occurrences,
    parse_reference,
    read_chart,
    relocate,
)

DIGEST = "sha256:" + "ab" * 32
MIRROR = "mirror.internal:5000"
POSTGRES = "app-1.0.0.tgz › charts/postgresql-15.0.0.tgz"


def entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.linkname = link
    return info


def tgz(files: dict[str, bytes], *, extra: Iterable[tuple[tarfile.TarInfo, bytes]] = ()) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            tar.addfile(entry(name, data), io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def chart(
    name: str, version: str = "1.0.0", *, app: str = "9.9.9", values: str = "", **more: str
) -> dict[str, str]:
    files = {"Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: '{app}'\n"}
    if values:
        files["values.yaml"] = values
    files.update(more)
    return files


def pack(name: str, files: dict[str, str | bytes]) -> bytes:
    return tgz(
        {f"{name}/{path}": data.encode() if isinstance(data, str) else data for path, data in files.items()}
    )


def refs(archive: bytes) -> set[str]:
    found, _ = discover(read_chart(archive, where="app.tgz"))
    return {image.reference for image in found}


# --- discovery ----------------------------------------------------------------------------


def test_values_strings_and_maps_in_the_common_conventions() -> None:
    values = f"""
image:
  registry: quay.io
  repository: seqera/backend
  tag: v1.2.3
frontend:
  image: cr.seqera.io/private/frontend:24.1
sidecar:
  image: busybox
cron:
  image:
    repository: bitnami/kubectl
    tag: ""
pinned:
  image:
    registry: ghcr.io
    repository: acme/tool
    tag: "2.0"
    digest: {DIGEST}
legacy:
  image:
    repository: docker.io/acme/old
    sha: {"cd" * 32}
unrelated:
  repository: not/an-image
"""
    found, unresolved = discover(read_chart(pack("app", chart("app", values=values)), where="app.tgz"))
    by_key = {image.key: image for image in found}
    assert by_key["image"].reference == "quay.io/seqera/backend:v1.2.3"
    assert by_key["image"].shape == "registry-map" and by_key["cron.image"].shape == "map"
    assert by_key["frontend.image"].reference == "cr.seqera.io/private/frontend:24.1"
    assert by_key["frontend.image"].shape == "string"
    assert by_key["sidecar.image"].reference == "docker.io/library/busybox:latest"
    # An empty tag means the chart's appVersion (Bitnami's and helm create's convention).
    assert by_key["cron.image"].reference == "docker.io/bitnami/kubectl:9.9.9"
    # A digest wins over a tag: the mirror copies exactly what the chart pins.
    assert by_key["pinned.image"].reference == f"ghcr.io/acme/tool@{DIGEST}"
    assert by_key["legacy.image"].reference == "docker.io/acme/old@sha256:" + "cd" * 32
    assert all(image.origin == "values" for image in found)
    assert unresolved == []
    assert len(found) == 6


def test_global_image_registry_replaces_every_map_registry() -> None:
    values = """
global:
  imageRegistry: registry.internal:5000
image:
  registry: docker.io
  repository: bitnami/redis
  tag: "7.2"
metrics:
  image: {repository: bitnami/redis-exporter, tag: "1.5"}
"""
    assert refs(pack("app", chart("app", values=values))) == {
        "registry.internal:5000/bitnami/redis:7.2",
        "registry.internal:5000/bitnami/redis-exporter:1.5",
    }


def test_the_artifacthub_annotation_is_the_most_authoritative_origin() -> None:
    chart_yaml = """apiVersion: v2
name: app
version: 1.0.0
annotations:
  artifacthub.io/images: |
    - name: backend
      image: quay.io/seqera/backend:v1.2.3
    - name: db
      image: postgres:16
      whitelisted: true
"""
    values = "image: {registry: quay.io, repository: seqera/backend, tag: v1.2.3}\n"
    found, _ = discover(
        read_chart(pack("app", {"Chart.yaml": chart_yaml, "values.yaml": values}), where="app.tgz")
    )
    origins = {image.reference: (image.origin, image.key) for image in found}
    assert origins == {
        # Found by both; the annotation is the stronger statement, so it is the one reported.
        "quay.io/seqera/backend:v1.2.3": ("annotation", "artifacthub.io/images[backend]"),
        "docker.io/library/postgres:16": ("annotation", "artifacthub.io/images[db]"),
    }


def test_relok8s_hints_resolve_against_the_values_and_a_subcharts_values() -> None:
    hints = """
- "{{ .image.registry }}/{{ .image.repository }}:{{ .image.tag }}"
- "{{ .redis.image.repository }}:{{ .redis.image.tag }}"
- "{{ .missing.image }}:1"
"""
    sub = pack("redis", chart("redis", values="image: {repository: bitnami/redis, tag: '7.0'}\n"))
    files = chart(
        "app",
        values="image: {registry: quay.io, repository: acme/app, tag: '3'}\nredis:\n  image: {tag: '7.4'}\n",
        **{".relok8s-images.yaml": hints},
    )
    archive = tgz({**{f"app/{k}": v.encode() for k, v in files.items()}, "app/charts/redis-17.0.0.tgz": sub})
    found, unresolved = discover(read_chart(archive, where="app.tgz"))
    hinted = {image.reference for image in found if image.origin == "hints"}
    # The parent's `redis.image.tag` overrides the subchart's own, as Helm coalesces values.
    assert hinted == {"quay.io/acme/app:3", "docker.io/bitnami/redis:7.4"}
    assert [(u.file, u.key, u.why) for u in unresolved] == [
        (".relok8s-images.yaml", "{{ .missing.image }}:1", "no value at .missing.image")
    ]


def test_subcharts_packed_unpacked_and_aliased_are_read_with_coalesced_values() -> None:
    inner = pack("common", chart("common", values="image: alpine:3.20\n"))
    postgres = tgz(
        {
            "postgresql/Chart.yaml": b"apiVersion: v2\nname: postgresql\nversion: 15.0.0\nappVersion: '16'\n",
            "postgresql/values.yaml": b"image: {repository: bitnami/postgresql, tag: ''}\n",
            "postgresql/charts/common-2.0.0.tgz": inner,
        }
    )
    parent_chart = (
        "apiVersion: v2\nname: app\nversion: 1.0.0\n"
        "dependencies:\n  - {name: postgresql, version: 15.x, alias: db}\n"
    )
    archive = tgz(
        {
            "app/Chart.yaml": parent_chart.encode(),
            "app/values.yaml": b"db:\n  image: {registry: mirror.example, tag: '16.4'}\n",
            "app/charts/postgresql-15.0.0.tgz": postgres,
            # An unpacked subchart directory, as `helm dependency build` can leave one.
            "app/charts/worker/Chart.yaml": b"apiVersion: v2\nname: worker\nversion: 0.1.0\n",
            "app/charts/worker/values.yaml": b"image: ghcr.io/acme/worker:0.1\n",
        }
    )
    found, unresolved = discover(read_chart(archive, where="app-1.0.0.tgz"))
    where = {image.reference: image.chart for image in found}
    assert where == {
        # The alias `db` is the key the parent's values use for postgresql.
        "mirror.example/bitnami/postgresql:16.4": POSTGRES,
        "docker.io/library/alpine:3.20": f"{POSTGRES} › charts/common-2.0.0.tgz",
        "ghcr.io/acme/worker:0.1": "app-1.0.0.tgz › charts/worker",
    }
    assert unresolved == []


def test_what_only_templates_could_produce_is_listed_never_dropped() -> None:
    values = """
image: "{{ .Values.global.registry }}/app:1"
worker:
  image: {registry: quay.io, tag: "1"}
broken:
  image: "UPPER/Case:1"
"""
    found, unresolved = discover(read_chart(pack("app", chart("app", values=values)), where="app.tgz"))
    assert found == []
    assert sorted((u.chart, u.file, u.key, u.why) for u in unresolved) == [
        ("app.tgz", "values.yaml", "broken.image", "'UPPER/Case:1' is not an image reference"),
        ("app.tgz", "values.yaml", "image", "a template mirrorspec cannot evaluate"),
        ("app.tgz", "values.yaml", "worker.image", "an image map without a repository"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ("docker.io", "library/nginx", "latest", None)),
        ("bitnami/redis:7", ("docker.io", "bitnami/redis", "7", None)),
        ("index.docker.io/library/nginx:1", ("docker.io", "library/nginx", "1", None)),
        ("localhost/app:1", ("localhost", "app", "1", None)),
        ("registry:5000/team/app", ("registry:5000", "team/app", "latest", None)),
        (f"quay.io/a/b@{DIGEST}", ("quay.io", "a/b", None, DIGEST)),
        (f"quay.io/a/b:1@{DIGEST}", ("quay.io", "a/b", "1", DIGEST)),
        ("quay.io/a/b@sha256:short", None),
        ("Quay/App:1", None),
        ("app:bad tag", None),
    ],
)
def test_references_are_normalized_like_docker(text: str, expected: object) -> None:
    assert parse_reference(text) == expected


# --- hostile archives ---------------------------------------------------------------------


def zeros(size: int) -> bytes:
    return bytes(size)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((entry("app/../../etc/passwd", b"x"), b"x"), "reaches outside the chart's directory"),
        ((entry("/etc/cron.d/evil", b"x"), b"x"), "has an absolute path"),
        ((entry("app/values.yaml", kind=tarfile.SYMTYPE, link="/etc/shadow"), b""), "is a link"),
        ((entry("app/x", kind=tarfile.LNKTYPE, link="app/Chart.yaml"), b""), "is a link"),
        ((entry("app/dev", kind=tarfile.CHRTYPE), b""), "is not a regular file"),
        ((entry("C:/windows/evil", b"x"), b"x"), "has an absolute path"),
    ],
)
def test_entries_that_reach_outside_or_are_not_files_are_refused(
    extra: tuple[tarfile.TarInfo, bytes], message: str
) -> None:
    archive = tgz({"app/Chart.yaml": b"apiVersion: v2\nname: app\nversion: 1.0.0\n"}, extra=[extra])
    with pytest.raises(ChartArchiveError) as caught:
        read_chart(archive, where="app-1.0.0.tgz")
    assert str(caught.value).startswith("app-1.0.0.tgz: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_gzip_bomb_stops_at_the_budget_in_bounded_time() -> None:
    # 30 entries of 4 MiB of zeros: 120 MiB decompressed from about 120 KB.
    files = {"app/Chart.yaml": b"apiVersion: v2\nname: app\nversion: 1.0.0\n"}
    files.update({f"app/templates/blob-{i}.yaml": zeros(4 << 20) for i in range(30)})
    archive = tgz(files)
    assert len(archive) < 1 << 20
    began = time.monotonic()
    with pytest.raises(ChartArchiveError, match="decompresses to more than 100 MiB"):
        read_chart(archive, where="bomb.tgz")
    assert time.monotonic() - began < 60  # a generous bound: the point is that it ends


def test_a_huge_values_file_is_refused_not_cut() -> None:
    big = b"image: nginx:1\n" + b"#" * (50 << 20)
    with pytest.raises(
        ChartArchiveError, match=r"values.yaml is 52,428,815 bytes; mirrorspec reads at most 5 MiB"
    ):
        read_chart(
            pack("app", {"Chart.yaml": "apiVersion: v2\nname: app\nversion: 1\n", "values.yaml": big}),
            where="a.tgz",
        )


def test_subcharts_nested_past_the_limit_are_refused() -> None:
    archive = pack("c0", chart("c0"))
    for level in range(1, archive_module.MAX_DEPTH + 2):
        archive = tgz(
            {
                f"c{level}/Chart.yaml": f"apiVersion: v2\nname: c{level}\nversion: 1.0.0\n".encode(),
                f"c{level}/charts/c{level - 1}.tgz": archive,
            }
        )
    with pytest.raises(ChartArchiveError, match=f"subcharts nest more than {archive_module.MAX_DEPTH} deep"):
        read_chart(archive, where="deep.tgz")


def test_an_alias_bomb_in_values_is_one_error() -> None:
    lines = ["a0: &a0 [image, image, image, image, image, image, image, image, image, image]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    archive = pack("app", chart("app", values="\n".join(lines) + "\n"))
    began = time.monotonic()
    with pytest.raises(ChartArchiveError, match="values expand to more than 1,000,000 nodes"):
        discover(read_chart(archive, where="app.tgz"))
    assert time.monotonic() - began < 60


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a gzip at all", "not a readable chart archive"),
        (gzip.compress(b"\0" * 4096, mtime=0), "no Chart.yaml in the archive"),
        (tgz({"app/README.md": b"hi"}), "no Chart.yaml in the archive"),
        (tgz({"app/Chart.yaml": b"a"})[:40], "not a readable chart archive"),
    ],
    # Named: an id made of the bytes would hold gzip's timestamp, and pytest-xdist refuses to run
    # when its two workers, started a second apart, collect different ids (CI failed on it).
    ids=["not-gzip", "gzip-of-zeros", "no-chart-yaml", "truncated-tgz"],
)
def test_what_is_not_a_chart_archive_is_one_line(data: bytes, message: str) -> None:
    with pytest.raises(ChartArchiveError, match=message) as caught:
        read_chart(data, where="x.tgz")
    assert "\n" not in str(caught.value)


def test_yaml_that_is_not_yaml_or_not_utf8_is_one_line() -> None:
    for values, message in ((b"image: [unclosed\n", "invalid YAML"), (b"\xff\xfe\x00", "not UTF-8 text")):
        archive = pack(
            "app", {"Chart.yaml": "apiVersion: v2\nname: app\nversion: 1\n", "values.yaml": values}
        )
        with pytest.raises(ChartArchiveError, match=message) as caught:
            discover(read_chart(archive, where="app.tgz"))
        assert "\n" not in str(caught.value)


def test_deeply_nested_values_are_one_error() -> None:
    values = "image: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ChartArchiveError, match="nests too deep"):
        discover(read_chart(pack("app", chart("app", values=values)), where="app.tgz"))


# --- relocation -----------------------------------------------------------------------------


def test_relocated_values_point_every_image_at_the_mirror_in_the_charts_own_shape() -> None:
    """The issue's check, on one chart: merge the override into the chart's values and run the
    same discovery again; every image it finds is the mirror's, with the tag and digest kept."""
    chart_yaml = (
        "apiVersion: v2\nname: app\nversion: 1.0.0\nappVersion: '2.0'\n"
        "dependencies:\n  - {name: postgresql, version: 15.x, alias: db}\n"
        "annotations:\n  artifacthub.io/images: |\n    - {name: tool, image: quay.io/acme/only-annotated:1}\n"
    )
    values = f"""
global:
  imageRegistry: ""
image:
  registry: quay.io
  repository: seqera/backend
  tag: v1.2.3
frontend:
  image: cr.seqera.io/private/frontend:24.1@{DIGEST}
cron:
  image: {{repository: bitnami/kubectl, tag: ""}}
"""
    postgres = tgz(
        {
            "postgresql/Chart.yaml": b"apiVersion: v2\nname: postgresql\nversion: 15.0.0\nappVersion: '16'\n",
            "postgresql/values.yaml": b"image: {registry: docker.io, repository: bitnami/postgresql}\n",
        }
    )

    def archive(values_text: str) -> bytes:
        return tgz(
            {
                "app/Chart.yaml": chart_yaml.encode(),
                "app/values.yaml": values_text.encode(),
                "app/charts/postgresql-15.0.0.tgz": postgres,
            }
        )

    def destination(image: Image) -> tuple[str, str]:
        return "mirror.internal:5000", f"vendor/{image.registry.replace(':', '_')}/{image.repository}"

    found, _ = occurrences(read_chart(archive(values), where="app.tgz"))
    override, left = relocate(found, destination)
    assert [image.reference for image in left] == ["quay.io/acme/only-annotated:1"]
    assert override == {
        "image": {"registry": "mirror.internal:5000", "repository": "vendor/quay.io/seqera/backend"},
        "frontend": {"image": f"mirror.internal:5000/vendor/cr.seqera.io/private/frontend:24.1@{DIGEST}"},
        # The chart reads global.imageRegistry, which then prefixes every map's repository.
        "cron": {"image": {"repository": "vendor/docker.io/bitnami/kubectl"}},
        "db": {
            "image": {"registry": "mirror.internal:5000", "repository": "vendor/docker.io/bitnami/postgresql"}
        },
        "global": {"imageRegistry": "mirror.internal:5000"},
    }
    merged = YAML(typ="safe", pure=True)
    original = merged.load(values)
    out = io.StringIO()
    merged.dump(_merge_values(original, override), out)

    again, unresolved = occurrences(read_chart(archive(out.getvalue()), where="app.tgz"))
    assert unresolved == []
    relocated = sorted(image.reference for image in again if image.origin == "values")
    assert relocated == sorted(
        [
            "mirror.internal:5000/vendor/quay.io/seqera/backend:v1.2.3",
            f"mirror.internal:5000/vendor/cr.seqera.io/private/frontend@{DIGEST}",
            "mirror.internal:5000/vendor/docker.io/bitnami/kubectl:2.0",
            "mirror.internal:5000/vendor/docker.io/bitnami/postgresql:16",
        ]
    )


def _merge_values(base: dict[str, object], over: dict[str, object]) -> dict[str, object]:
    """`helm install -f override.yaml`'s merge of a user's values over the chart's."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merge_values(below, value)
        else:
            merged[key] = value
    return merged
