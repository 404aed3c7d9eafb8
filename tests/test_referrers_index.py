"""A source with the referrers API, a destination without it: mirrorspec writes the referrers tag
index there (issue 16, item 4; `mirrorspec/referrers_index.py`).

Real docker-registry 2.8.2 servers and skopeo, the real `mirrorspec` console script. The source
is a docker-registry behind a proxy that answers `/referrers/<digest>` as distribution-spec v1.1
"Listing Referrers" says (descriptors built from the manifests the backend holds); the
destination is a plain docker-registry (TLS + htpasswd), whose `/referrers/` route answers 404.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from test_signatures import PASSWORD, Bed
from testbed import RegistryServer, access_records, delete_tag, push_chart, push_image
from testbed.artifacts import OCI_INDEX
from testbed.faults import FaultProxy
from testbed.signatures import push_referrer

from mirrorspec.oci import RegistryClient
from mirrorspec.oci.manifest_put import put_manifest
from mirrorspec.plan import Artifact
from mirrorspec.referrers import PUT_ENGINE, engine_for, index_tag

SBOM_TYPE = "application/spdx+json"
SIG_TYPE = "application/vnd.cncf.notary.signature"
SCAN_TYPE = "application/vnd.example.scan+json"


@dataclass
class ApiBed:
    bed: Bed
    backend: RegistryServer
    app: str
    referrers: list[str]  # the app's referrers at the source, in push order
    asked: list[str]

    def descriptor(self, digest: str) -> dict[str, Any]:
        """What the spec says the index entry of a referrer is, from its manifest at the source."""
        with RegistryClient(self.backend.host, insecure=True) as client:
            manifest = client.manifest("images/app", digest)
        document = manifest.json()
        entry = {
            "mediaType": manifest.media_type,
            "digest": digest,
            "size": len(manifest.body),
            "artifactType": document["artifactType"],
        }
        if document.get("annotations"):
            entry["annotations"] = document["annotations"]
        return entry

    def dest_index(self) -> tuple[str, dict[str, Any]]:
        with self.bed.dest_client() as client:
            index = client.manifest(self.bed.dest_repo("images/app"), _tag(self.app))
        assert index.media_type == OCI_INDEX
        return index.digest, index.json()


def _tag(digest: str) -> str:
    return digest.replace(":", "-", 1)


@pytest.fixture
def api_bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Iterator[ApiBed]:
    backend = registry_factory()
    app = push_image(backend, "images/app", "1.0", seed="index")
    push_chart(backend, "charts/web", "1.0.0")
    referrers = [
        push_referrer(
            backend,
            "images/app",
            app,
            SBOM_TYPE,
            tag_index=False,
            annotations={"org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
        ),
        push_referrer(backend, "images/app", app, SIG_TYPE, content=b"sig", tag_index=False),
    ]
    asked: list[str] = []
    made: list[ApiBed] = []

    def answer(method: str, path: str, headers: Message) -> tuple[int, str, bytes] | None:
        if "/referrers/" not in path:
            return None
        asked.append(path)
        listed = [made[0].descriptor(d) for d in referrers] if path.endswith(app) else []
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed}
        return 200, OCI_INDEX, json.dumps(index).encode()

    proxy = FaultProxy(backend.url)
    proxy.answer(answer)
    proxy.start()
    try:
        destination = registry_factory(tls=True, users={"alice": PASSWORD})
        source = dataclasses.replace(backend, host=proxy.host, url=proxy.url)  # the spec names the proxy
        env = {**os.environ, "DEST_PASSWORD": PASSWORD}
        bed = Bed(source, destination, tmp_path / "spec.yaml", env, {})
        bed.write_spec()
        made.append(ApiBed(bed, backend, app, referrers, asked))
        yield made[0]
    finally:
        proxy.stop()


def _planned(bed: Bed) -> tuple[dict[str, Any], list[str]]:
    plan = json.loads(bed.run("plan", str(bed.spec), "--format", "json").stdout)
    (target,) = plan["targets"]
    return target, [n["message"] for n in target["notes"]]


def _index_copies(target: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [
        (t["tag"], t["reason"], t["refers_to"])
        for c in target["copies"]
        if c["engine"] == "referrers-index"
        for t in c["tags"]
    ]


def test_apply_writes_the_referrers_tag_index_at_a_destination_without_the_api(api_bed: ApiBed) -> None:
    bed, app = api_bed.bed, api_bed.app
    start = len(access_records(bed.destination))
    target, notes = _planned(bed)
    assert _index_copies(target) == [(_tag(app), "missing", app)]
    assert any("has no OCI referrers API" in n and bed.destination.host in n for n in notes), notes
    # the destination is asked for the API once (the probe), however many subjects
    probes = [r for r in access_records(bed.destination)[start:] if "/referrers/" in r.uri]
    assert [(r.method, r.status) for r in probes] == [("GET", 404)]

    bed.run("apply", str(bed.spec), "--yes")
    digest, index = api_bed.dest_index()
    # one index lists both referrers of the one subject, each described from its manifest
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert index["manifests"] == [api_bed.descriptor(d) for d in api_bed.referrers]
    assert index["manifests"][0]["annotations"] == {
        "org.opencontainers.image.created": "2024-05-01T00:00:00Z"
    }
    with bed.dest_client() as client:
        for referrer in api_bed.referrers:  # the referrers themselves, with their digests
            assert client.manifest(bed.dest_repo("images/app"), referrer).json()["subject"]["digest"] == app

    # idempotent: the second plan has nothing to write, apply copies nothing, audit is in sync
    target, _ = _planned(bed)
    assert target["copies"] == []
    assert "Nothing to do." in bed.run("apply", str(bed.spec), "--yes").stdout
    assert api_bed.dest_index()[0] == digest
    bed.run("audit", str(bed.spec), "--content", check=0)

    # a lost index is reported by audit --content and written again by apply
    delete_tag(bed.destination, bed.dest_repo("images/app"), _tag(app), user="alice")
    report = json.loads(bed.run("audit", str(bed.spec), "--content", "--format", "json", check=2).stdout)
    wrong = [
        (c["tag"], c["status"]) for t in report["targets"] for c in t["content"] if c["status"] != "present"
    ]
    assert wrong == [(_tag(app), "missing")]
    bed.run("apply", str(bed.spec), "--yes")
    assert api_bed.dest_index()[0] == digest
    bed.run("audit", str(bed.spec), "--content", check=0)


def test_an_index_at_the_destination_keeps_its_foreign_entries(api_bed: ApiBed) -> None:
    """An index another client keeps at the destination (a scanner's report of the mirrored
    image) is extended, not replaced; a referrer new at the source is added on the next apply."""
    bed, app = api_bed.bed, api_bed.app
    bed.write_spec(signatures=False)
    bed.run("apply", str(bed.spec), "--yes")  # the image only
    repository = bed.dest_repo("images/app")
    scan = push_referrer(bed.destination, repository, app, SCAN_TYPE, content=b"scan", user="alice")
    foreign = api_bed.dest_index()[1]["manifests"]
    assert [e["digest"] for e in foreign] == [scan]

    bed.write_spec(signatures=True)
    target, _ = _planned(bed)
    assert _index_copies(target) == [(_tag(app), "digest-mismatch", app)]
    bed.run("apply", str(bed.spec), "--yes")
    listed = api_bed.dest_index()[1]["manifests"]
    assert listed == [*foreign, *(api_bed.descriptor(d) for d in api_bed.referrers)]
    bed.run("audit", str(bed.spec), "--content", check=0)

    # a third referrer appears upstream: the next apply adds it, keeping the rest
    api_bed.referrers.append(
        push_referrer(api_bed.backend, "images/app", app, SBOM_TYPE, content=b"v2", tag_index=False)
    )
    bed.run("audit", str(bed.spec), "--content", check=2)
    bed.run("apply", str(bed.spec), "--yes")
    assert api_bed.dest_index()[1]["manifests"] == [*listed, api_bed.descriptor(api_bed.referrers[-1])]
    assert "Nothing to do." in bed.run("apply", str(bed.spec), "--yes").stdout


def test_a_tag_holding_something_else_is_left_alone(api_bed: ApiBed) -> None:
    """distribution-spec: a referrers tag that holds a manifest other than an image index is
    reported and not overwritten."""
    bed, app = api_bed.bed, api_bed.app
    bed.write_spec(signatures=False)
    bed.run("apply", str(bed.spec), "--yes")
    with bed.dest_client() as client:
        image = client.manifest(bed.dest_repo("images/app"), "1.0")
        put_manifest(client, bed.dest_repo("images/app"), _tag(app), image)
    bed.write_spec(signatures=True)
    target, notes = _planned(bed)
    assert _index_copies(target) == []
    assert any("not a referrers tag index: left as it is" in n for n in notes), notes
    bed.run("apply", str(bed.spec), "--yes")
    with bed.dest_client() as client:
        assert client.digest(bed.dest_repo("images/app"), _tag(app)) == image.digest


def test_a_destination_with_the_referrers_api_gets_no_tag_index(
    api_bed: ApiBed, registry_factory: Callable[..., RegistryServer]
) -> None:
    """A destination that answers the referrers API lists the copied referrers itself: the
    plan copies them by digest and writes no tag index."""
    bed, app = api_bed.bed, api_bed.app
    backend = registry_factory()
    proxy = FaultProxy(backend.url)
    proxy.answer(
        lambda method, path, headers: (
            (
                200,
                OCI_INDEX,
                json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(),
            )
            if "/referrers/" in path
            else None
        )
    )
    proxy.start()
    try:
        bed.spec.write_text(
            f"""\
version: 1
sources:
  - registry: {bed.source.host}
    insecure: true
    repositories:
      - name: images/app
        tags: ["1.0"]
targets:
  - name: lab
    type: registry
    registry: {proxy.host}
    prefix: mirror
    insecure: true
"""
        )
        target, notes = _planned(bed)
        planned = sorted(t["tag"] for c in target["copies"] for t in c["tags"])
        assert planned == sorted(["1.0", *api_bed.referrers])
        assert _index_copies(target) == []
        assert any("answers the OCI referrers API" in n and proxy.host in n for n in notes), notes
        bed.run("apply", str(bed.spec), "--yes")
        with RegistryClient(backend.host, insecure=True) as client:
            repository = bed.dest_repo("images/app")
            assert client.digest(repository, _tag(app)) is None
            assert [client.digest(repository, d) for d in api_bed.referrers] == api_bed.referrers
    finally:
        proxy.stop()


def test_the_tag_naming_a_digest_follows_the_referrers_tag_schema() -> None:
    # distribution-spec v1.1 "Referrers Tag Schema": `<alg>-<ref>`, ref cut to 64 characters,
    # since a tag has at most 128 and a sha512's hex alone is 128.
    sha256 = "sha256:" + "a" * 64
    sha512 = "sha512:" + "b" * 128
    assert index_tag(sha256) == "sha256-" + "a" * 64
    assert index_tag(sha512) == "sha512-" + "b" * 64
    for digest in (sha256, sha512):
        tag = index_tag(digest)
        assert len(tag) <= 128 and len(f"{tag}.sbom") <= 128
        assert engine_for(Artifact("r.example", "app", tag, digest, refers_to=digest)) == PUT_ENGINE


def test_a_kept_moved_tag_gets_neither_its_new_referrers_nor_their_tag_index(api_bed: ApiBed) -> None:
    """`on-moved: keep` (`mirrorspec/moved_tags.py`): the destination keeps its own `1.0`, so
    the referrers of upstream's `1.0` would refer to an image it does not hold."""
    bed, app = api_bed.bed, api_bed.app
    held = push_image(bed.destination, bed.dest_repo("images/app"), "1.0", seed="held here", user="alice")
    bed.spec.write_text(
        bed.spec.read_text().replace('tags: ["1.0"]', 'tags: ["1.0"]\n        on-moved: keep')
    )
    target, notes = _planned(bed)
    assert _index_copies(target) == []
    assert not any(t["refers_to"] == app or t["tag"] == "1.0" for c in target["copies"] for t in c["tags"])
    # upstream never held `held`: kept all the same, but not taken for a move (`moved_tags`)
    assert any(f"holds {held}, which upstream" in n and "not copied over" in n for n in notes), notes
    bed.run("apply", str(bed.spec), "--yes")
    audit = bed.run("audit", str(bed.spec), "--content", "--format", "json", check=2)
    report = json.loads(audit.stdout)
    statuses = {c["tag"]: c["status"] for t in report["targets"] for c in t["content"]}
    assert statuses["1.0"] == "digest-mismatch" and _tag(app) not in statuses
    assert not set(statuses) & set(api_bed.referrers)
