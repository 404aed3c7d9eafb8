"""Signatures and OCI 1.1 referrers on a test bed registry, pushed with skopeo like the artifacts.

- `push_cosign(server, repo, subject, ".sig")`: cosign's layout — an OCI image manifest whose one
  layer is a simple-signing payload (`application/vnd.dev.cosign.simplesigning.v1+json`) naming
  the subject digest, tagged `sha256-<hex>.sig` (or `.att`, `.sbom`) beside the subject.
- `push_referrer(server, repo, subject, artifact_type)`: an OCI 1.1 artifact — an image manifest
  with `artifactType`, the empty config and a `subject` descriptor — pushed by digest (no tag),
  and, as a client does where the registry has no referrers API (docker-registry 2.8.2 answers
  404), the referrers tag schema's index `sha256-<hex>` updated to list it (distribution-spec
  v1.1 "Pushing Manifests with Subject": fetch the tag's index, add the descriptor, put it).

The manifests are pushed with skopeo from an OCI layout (`oci:<layout>:<name>`: skopeo 1.9.3
cannot read a layout by digest); the index is put with one HTTP request, because skopeo 1.9.3
cannot copy an index whose descriptors carry `artifactType` while preserving its digest.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from .artifacts import (
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    _digest,
    _Http,
    _json,
    _write_blob,
    run_skopeo,
)
from .registry import RegistryServer, TestbedError

__all__ = ["SIMPLE_SIGNING", "push_cosign", "push_referrer"]

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def push_cosign(
    server: RegistryServer, repository: str, subject: str, suffix: str = ".sig", *, user: str | None = None
) -> str:
    """Push a cosign-style attachment of `subject` under `sha256-<hex><suffix>`; its digest."""
    payload = _json(
        {
            "critical": {
                "identity": {"docker-reference": f"{server.host}/{repository}"},
                "image": {"docker-manifest-digest": subject},
                "type": "cosign container image signature",
            },
            "optional": {"suffix": suffix},
        }
    )
    config = _json(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [_digest(payload)]},
        }
    )
    tag = subject.replace(":", "-", 1) + suffix

    def manifest(layout: Path) -> dict[str, Any]:
        layer = _write_blob(layout, SIMPLE_SIGNING, payload)
        layer["annotations"] = {"dev.cosignproject.cosign/signature": "MEUCIQ-testbed-not-a-real-signature"}
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _write_blob(layout, OCI_CONFIG, config),
            "layers": [layer],
        }

    return _push(server, repository, manifest, f"docker://{server.host}/{repository}:{tag}", user)


def push_referrer(
    server: RegistryServer,
    repository: str,
    subject: str,
    artifact_type: str = "application/spdx+json",
    *,
    content: bytes = b'{"spdxVersion":"SPDX-2.3"}',
    tag_index: bool = True,
    user: str | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """Push an OCI 1.1 referrer of `subject` by digest (with the manifest `annotations`, if
    any) and (`tag_index`) list it in the referrers tag index; return the referrer's digest."""
    with _Http(server, repository, user) as http:
        got = http.request("GET", f"/manifests/{subject}", headers={"Accept": MANIFEST_ACCEPT})
        if got.status_code != 200:
            raise TestbedError(f"GET {repository}@{subject} gave {got.status_code}")
        subject_descriptor = {
            "mediaType": got.headers["Content-Type"].split(";")[0],
            "digest": subject,
            "size": len(got.content),
        }
    body: dict[str, Any] = {}

    def manifest(layout: Path) -> dict[str, Any]:
        body.update(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": _write_blob(layout, EMPTY_CONFIG, b"{}"),
                "layers": [_write_blob(layout, artifact_type, content)],
                "subject": subject_descriptor,
                **({"annotations": annotations} if annotations else {}),
            }
        )
        return body

    placeholder = f"docker://{server.host}/{repository}@"  # the digest is known once written
    digest = _push(server, repository, manifest, placeholder, user)
    if tag_index:
        _add_to_tag_index(server, repository, subject, digest, len(_json(body)), artifact_type, user)
    return digest


def _push(
    server: RegistryServer,
    repository: str,
    build: Any,
    destination: str,
    user: str | None,
) -> str:
    with tempfile.TemporaryDirectory(prefix="testbed-referrer-") as tmp:
        layout = Path(tmp) / "layout"
        manifest = build(layout)
        descriptor = _write_blob(layout, OCI_MANIFEST, _json(manifest))
        named = dict(descriptor, annotations={"org.opencontainers.image.ref.name": "it"})
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (layout / "index.json").write_bytes(
            _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [named]})
        )
        if destination.endswith("@"):
            destination += descriptor["digest"]
        run_skopeo(
            server, ["copy", "--quiet", "--preserve-digests", f"oci:{layout}:it", destination], user=user
        )
        return str(descriptor["digest"])


def _add_to_tag_index(
    server: RegistryServer,
    repository: str,
    subject: str,
    digest: str,
    size: int,
    artifact_type: str,
    user: str | None,
) -> None:
    tag = subject.replace(":", "-", 1)
    with _Http(server, repository, user) as http:
        got = http.request("GET", f"/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        index: dict[str, Any] = (
            json.loads(got.content)
            if got.status_code == 200
            else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        )
        index["manifests"].append(
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "artifactType": artifact_type}
        )
        put = http.request("PUT", f"/manifests/{tag}", data=_json(index), headers={"Content-Type": OCI_INDEX})
        if put.status_code != 201:
            raise TestbedError(f"PUT {repository}:{tag} gave {put.status_code}: {put.text}")
