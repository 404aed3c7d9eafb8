"""The registry client's one delete: a manifest by digest (`apply --prune-tags`).

OCI distribution-spec v1.1 "Deleting tags" / "Deleting Manifests": `DELETE /v2/<name>/manifests/
<reference>` answers `202 Accepted`; deleting by tag is optional, deleting by digest deletes the
manifest, and a registry with deletes disabled answers `405` (`UNSUPPORTED`). docker-registry
2.8.2 (Debian's, here) cannot delete by tag at all (400 `DIGEST_INVALID`, research/testbed.md
§5.3), and deleting by digest removes every tag that points at that digest
(distribution registry/handlers/manifests.go `DeleteManifest`: `manifests.Delete`, then
`tagService.Lookup` and `Untag` of each tag on it). So mirrorspec deletes by digest only, and
`prune_tags` never asks for a digest that a kept tag also points at.

Authentication is the client's (`auth.py`), with the scope `repository:<name>:delete` asked
up front (distribution's token auth names DELETE's action `delete`). Nothing here retries.
"""

from __future__ import annotations

import re

from ..errors import RegistryError
from .client import RegistryClient
from .errors import _error_detail

__all__ = ["DeletesDisabled", "delete_manifest"]

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


class DeletesDisabled(RegistryError):
    """The registry answered 405: it does not delete manifests (deletes are disabled)."""


def delete_manifest(client: RegistryClient, repository: str, digest: str) -> bool:
    """Delete the manifest `digest` (and with it every tag on it); False when it was already
    gone (404). `DeletesDisabled` for a 405, a `RegistryError` for any other refusal."""
    if not _DIGEST.fullmatch(digest):  # never a tag: that would be another operation
        raise ValueError(f"not a sha256 digest: {digest!r}")
    client._check_reference(repository, digest)
    errors = client._errors
    with client._auth.request(
        "DELETE",
        f"/v2/{repository}/manifests/{digest}",
        repository=repository,
        accept="application/json",
        actions="delete",
    ) as resp:
        if resp.status_code in (200, 202):
            return True
        if resp.status_code == 404:
            return False
        detail = _error_detail(resp)
        message = f"{client.host} answered {resp.status_code} to the DELETE of {repository}@{digest}" + (
            f" ({detail})" if detail else ""
        )
        if resp.status_code == 405:
            raise DeletesDisabled(message, registry=client.host, repository=repository, status=405)
        raise errors.error(message, repository=repository, status=resp.status_code)
