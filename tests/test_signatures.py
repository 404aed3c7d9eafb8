"""Signatures, attestations, SBOMs and OCI 1.1 referrers travel with what they sign (issue 16, item 4).

Real docker-registry 2.8.2 servers (plain HTTP source without the referrers API; TLS + htpasswd
destination), real skopeo, the real `mirrorspec` console script. The source holds an image and
a chart, cosign-style `.sig`/`.att` tags on them, an OCI 1.1 SBOM referrer of the image listed in
the referrers tag schema's index, and a cosign signature of that SBOM (a referrer of a referrer).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import cli_runner
import pytest
from spec_text import DEST_LOGIN
from testbed import RegistryServer, access_records, delete_tag, push_chart, push_image
from testbed.artifacts import OCI_INDEX, OCI_MANIFEST
from testbed.faults import FaultProxy
from testbed.signatures import push_cosign, push_referrer

from mirrorspec.oci import RegistryClient

PASSWORD = "sigs-Pa55word-4b1d"


@dataclass
class Bed:
    source: RegistryServer
    destination: RegistryServer
    spec: Path
    env: dict[str, str]
    digests: dict[str, str]

    def run(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        return cli_runner.run(*args, env=self.env, check=check, never=[PASSWORD])

    def write_spec(self, *, signatures: bool = True, extra: str = "") -> None:
        flag = "" if signatures else "\n        signatures: false"
        self.spec.write_text(
            f"""\
{DEST_LOGIN}sources:
  - registry: {self.source.host}
    insecure: true
    repositories:
      - name: images/app
        tags: ["1.0"]{flag}
      - name: charts/web
        versions: "1.0.0"{flag}{extra}
targets:
  - name: lab
    type: registry
    registry: {self.destination.host}
    prefix: mirror
    credentials: dest
    ca-bundle: {self.destination.ca_file}
"""
        )

    def dest_repo(self, repository: str) -> str:
        return f"mirror/{self.source.host.replace(':', '_')}/{repository}"

    def dest_client(self) -> RegistryClient:
        return RegistryClient(
            self.destination.host,
            username="alice",
            password=PASSWORD,
            ca_bundle=str(self.destination.ca_file),
        )


def _tag(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-", 1) + suffix


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Bed:
    source = registry_factory()
    destination = registry_factory(tls=True, users={"alice": PASSWORD})
    digests = {
        "app": push_image(source, "images/app", "1.0", seed="app"),
        "chart": push_chart(source, "charts/web", "1.0.0"),
    }
    digests["app.sig"] = push_cosign(source, "images/app", digests["app"], ".sig")
    digests["app.att"] = push_cosign(source, "images/app", digests["app"], ".att")
    digests["chart.sig"] = push_cosign(source, "charts/web", digests["chart"], ".sig")
    digests["sbom"] = push_referrer(source, "images/app", digests["app"])
    digests["sbom.sig"] = push_cosign(source, "images/app", digests["sbom"], ".sig")
    with RegistryClient(source.host, insecure=True) as client:
        digests["index"] = client.manifest("images/app", _tag(digests["app"])).digest
    env = {**os.environ, "DEST_PASSWORD": PASSWORD}
    made = Bed(source, destination, tmp_path / "spec.yaml", env, digests)
    made.write_spec()
    return made


def test_apply_copies_signatures_and_referrers_with_their_digests(bed: Bed) -> None:
    d = bed.digests
    plan = json.loads(bed.run("plan", str(bed.spec), "--format", "json").stdout)
    (target,) = plan["targets"]
    planned = {
        (c["destination"].rsplit("/", 2)[-1], t["tag"]): (t["digest"], t["refers_to"], c["engine"])
        for c in target["copies"]
        for t in c["tags"]
    }
    assert planned == {
        ("app", "1.0"): (d["app"], None, "skopeo"),
        ("app", _tag(d["app"], ".sig")): (d["app.sig"], d["app"], "skopeo"),
        ("app", _tag(d["app"], ".att")): (d["app.att"], d["app"], "skopeo"),
        ("app", _tag(d["app"])): (d["index"], d["app"], "manifest-put"),
        ("app", d["sbom"]): (d["sbom"], d["app"], "skopeo"),
        ("app", _tag(d["sbom"], ".sig")): (d["sbom.sig"], d["sbom"], "skopeo"),
        ("web", "1.0.0"): (d["chart"], None, "skopeo"),
        ("web", _tag(d["chart"], ".sig")): (d["chart.sig"], d["chart"], "skopeo"),
    }
    notes = [n["message"] for n in target["notes"]]
    assert any("no OCI referrers API" in n and bed.source.host in n for n in notes), notes
    assert not any("levels below" in n for n in notes), notes  # a signed SBOM is within reach

    bed.run("apply", str(bed.spec), "--yes")
    with bed.dest_client() as client:
        app = bed.dest_repo("images/app")
        assert client.digest(app, "1.0") == d["app"]
        assert client.digest(app, _tag(d["app"], ".sig")) == d["app.sig"]
        assert client.digest(app, _tag(d["app"], ".att")) == d["app.att"]
        assert client.digest(app, _tag(d["sbom"], ".sig")) == d["sbom.sig"]
        assert client.digest(app, d["sbom"]) == d["sbom"]
        # the referrers tag index is there, byte for byte, so clients find the SBOM
        index = client.manifest(app, _tag(d["app"]))
        assert index.digest == d["index"]
        assert [m["digest"] for m in index.json()["manifests"]] == [d["sbom"]]
        referrer = client.manifest(app, d["sbom"]).json()
        assert referrer["subject"]["digest"] == d["app"]
        web = bed.dest_repo("charts/web")
        assert client.digest(web, _tag(d["chart"], ".sig")) == d["chart.sig"]

    assert "Nothing to do." in bed.run("apply", str(bed.spec), "--yes").stdout
    bed.run("audit", str(bed.spec), "--content", check=0)

    delete_tag(bed.destination, bed.dest_repo("images/app"), _tag(d["app"], ".sig"), user="alice")
    report = json.loads(bed.run("audit", str(bed.spec), "--content", "--format", "json", check=2).stdout)
    wrong = [
        (c["tag"], c["status"]) for t in report["targets"] for c in t["content"] if c["status"] != "present"
    ]
    assert wrong == [(_tag(d["app"], ".sig"), "missing")]
    restored = bed.run("apply", str(bed.spec), "--yes")
    assert "1 of 1 tag(s) copied and verified" in restored.stdout
    bed.run("audit", str(bed.spec), "--content", check=0)


def test_signatures_false_copies_none(bed: Bed) -> None:
    bed.write_spec(signatures=False)
    plan = json.loads(bed.run("plan", str(bed.spec), "--format", "json").stdout)
    tags = sorted(t["tag"] for c in plan["targets"][0]["copies"] for t in c["tags"])
    assert tags == ["1.0", "1.0.0"]
    assert all(a["refers_to"] is None for a in plan["artifacts"])
    bed.run("apply", str(bed.spec), "--yes")
    with bed.dest_client() as client:
        assert client.list_tags(bed.dest_repo("images/app")) == ["1.0"]
        assert client.digest(bed.dest_repo("images/app"), bed.digests["sbom"]) is None


def _source_reads(bed: Bed) -> int:
    before = len(access_records(bed.source))
    bed.run("plan", str(bed.spec), "--format", "json")
    return len(access_records(bed.source)) - before


def test_a_registry_without_the_referrers_api_costs_one_read_more(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """Nothing signed: the plan reads the source once more than without signatures (the
    referrers API probe, answered 404), and no more, however many digests it copies."""
    source = registry_factory()
    destination = registry_factory(tls=True, users={"alice": PASSWORD})
    for tag in ("1.0", "1.1", "1.2"):
        push_image(source, "images/app", tag, seed=tag)
    push_chart(source, "charts/web", "1.0.0")
    bed = Bed(source, destination, tmp_path / "spec.yaml", {**os.environ, "DEST_PASSWORD": PASSWORD}, {})
    bed.write_spec(signatures=False)
    bed.spec.write_text(bed.spec.read_text().replace('tags: ["1.0"]', 'tags: ["1.*"]'))
    without = _source_reads(bed)
    bed.write_spec(signatures=True)
    bed.spec.write_text(bed.spec.read_text().replace('tags: ["1.0"]', 'tags: ["1.*"]'))
    start = len(access_records(source))
    with_signatures = _source_reads(bed)
    assert with_signatures - without == 1, (without, with_signatures)
    probes = [r for r in access_records(source)[start:] if "/referrers/" in r.uri]
    assert [(r.method, r.status) for r in probes] == [("GET", 404)]


def test_a_signed_image_costs_a_head_per_signature_tag(bed: Bed) -> None:
    """With signatures: the probe, one HEAD per signature tag found, one GET of the tag index."""
    bed.write_spec(signatures=False)
    without = _source_reads(bed)
    bed.write_spec(signatures=True)
    start = len(access_records(bed.source))
    with_signatures = _source_reads(bed)
    extra = [r for r in access_records(bed.source)[start:] if "sha256-" in r.uri or "/referrers/" in r.uri]
    # 4 signature tags (.sig, .att of the image; .sig of the chart; .sig of the SBOM) and the
    # index tag: a HEAD each; the index read once for its children; the probe.
    assert with_signatures - without == 1 + 5 + 1, [r.uri for r in extra]


def test_a_source_with_the_referrers_api_is_asked_once_per_digest(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """A source that answers the referrers API (a proxy in front of docker-registry answering
    `/referrers/` as distribution-spec v1.1 says): its untagged referrer is found there, copied
    by digest, and checked by `audit --content`; the API is asked once per digest."""
    backend = registry_factory()
    app = push_image(backend, "images/app", "1.0", seed="api")
    chart = push_chart(backend, "charts/web", "1.0.0")
    sbom = push_referrer(backend, "images/app", app, tag_index=False)
    asked: list[str] = []

    def referrers(method: str, path: str, headers: Message) -> tuple[int, str, bytes] | None:
        if "/referrers/" not in path:
            return None
        asked.append(path)
        listed = [
            {"mediaType": OCI_MANIFEST, "digest": sbom, "size": 1, "artifactType": "application/spdx+json"}
        ]
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": listed if path.endswith(app) else [],
        }
        return 200, OCI_INDEX, json.dumps(index).encode()

    proxy = FaultProxy(backend.url)
    proxy.answer(referrers)
    proxy.start()
    try:
        destination = registry_factory(tls=True, users={"alice": PASSWORD})
        source = dataclasses.replace(backend, host=proxy.host, url=proxy.url)  # the spec names the proxy
        bed = Bed(source, destination, tmp_path / "spec.yaml", {**os.environ, "DEST_PASSWORD": PASSWORD}, {})
        bed.write_spec()
        plan = json.loads(bed.run("plan", str(bed.spec), "--format", "json").stdout)
        (target,) = plan["targets"]
        tags = sorted((t["tag"], t["refers_to"]) for c in target["copies"] for t in c["tags"])
        # and, the destination having no referrers API, the tag index listing the SBOM there
        # (`test_referrers_index.py`)
        assert tags == sorted([("1.0", None), ("1.0.0", None), (sbom, app), (_tag(app), app)])
        assert not any(
            n["message"].startswith(f"{source.host}: no OCI referrers API") for n in target["notes"]
        )
        # the image, the chart and the SBOM itself (its own referrers): one GET each
        assert sorted(asked) == sorted(
            f"/v2/{r}/referrers/{d}"
            for r, d in [("images/app", app), ("charts/web", chart), ("images/app", sbom)]
        )
        bed.run("apply", str(bed.spec), "--yes")
        with bed.dest_client() as client:
            assert client.digest(bed.dest_repo("images/app"), sbom) == sbom
        bed.run("audit", str(bed.spec), "--content", check=0)
    finally:
        proxy.stop()
