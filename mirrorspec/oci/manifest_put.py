"""The registry client's one write: a manifest put under a tag, exactly as read elsewhere.

The copier tags a digest the destination repository already holds (the first tag of a digest
copied by skopeo, or a tag of it from an earlier run) with one request instead of a skopeo
process: `PUT /v2/<name>/manifests/<tag>` with the manifest's bytes and media type as
`Content-Type` (OCI distribution-spec v1.1 "Pushing manifests": the registry answers
`201 Created`; it must refuse a manifest whose blobs or child manifests it does not hold with
`MANIFEST_BLOB_UNKNOWN`/`MANIFEST_UNKNOWN`, so the PUT cannot make a tag that points at
nothing). The bytes are those the registry served by digest, unchanged: any re-serialisation
would change the digest.

Authentication is the client's (`auth.py`): basic credentials as for reads, or a bearer token
for the scope `repository:<name>:pull,push`, asked for before the first PUT rather than after
its 401. Nothing here retries: a failed PUT is reported to the caller, whose fallback (a skopeo
copy) is the retry. Kept apart from `client.py`, which holds the reads.
"""

from __future__ import annotations

from .client import Manifest, RegistryClient
from .errors import _error_detail

__all__ = ["put_manifest"]


def put_manifest(client: RegistryClient, repository: str, tag: str, manifest: Manifest) -> None:
    """Put `manifest` under `repository:tag`; a `RegistryError` (with the status, if any)
    says why the registry did not take it or named another digest for it."""
    # One registry's auth and error mapping live in its client; the write shares them (and its
    # connections and tokens) rather than building a second client for the same registry.
    client._check_reference(repository, tag)
    errors = client._errors
    what = f"the manifest PUT of {repository}:{tag}"
    with client._auth.request(
        "PUT",
        f"/v2/{repository}/manifests/{tag}",
        repository=repository,
        accept="application/json",
        extra_headers={"Content-Type": manifest.media_type},
        body=manifest.body,
        actions="pull,push",
    ) as resp:
        if resp.status_code != 201:
            detail = _error_detail(resp) if resp.status_code >= 400 else ""
            raise errors.error(
                f"{client.host} answered {resp.status_code} to {what}" + (f" ({detail})" if detail else ""),
                repository=repository,
                status=resp.status_code,
            )
        answered = resp.headers.get("Docker-Content-Digest", "")
    # distribution-spec: the header SHOULD be the digest of the uploaded bytes. Another digest
    # means the registry stored something else (a conversion): not the manifest we planned.
    if answered and answered != manifest.digest:
        raise errors.error(
            f"{client.host} stored {repository}:{tag} as {answered}, not {manifest.digest}",
            repository=repository,
        )
