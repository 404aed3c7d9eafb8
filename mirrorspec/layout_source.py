"""An OCI image layout read as a source (`oci-layout: DIR`), offline, on the far side of a gap.

The layout is one an `oci-layout` target wrote (`layout/store.py`): each manifest is named in
`index.json` by `<path>:<tag>` (or `<path>@sha256:<hex>` for an untagged referrer), where
`<path>` is the destination path the writing target gave it (with the scoped layout and no
prefix, `public.cr.seqera.io/charts/platform`). The source's stand-in host
(`paths.layout_host`) is what every artifact read from it carries as its registry, so the
resolution, chart images, signatures and the copier work as they do for a registry:
`RunContext.client` hands out a `LayoutClient` for it, with a registry client's reads.

- Tags of a repository path are the ref names under it; a manifest or blob is read from
  `blobs/` and hashed before it is used (`Layout.read_blob`). There is no referrers API: the
  discovery finds signatures by their tags, as on a registry without it (`offline`).
- A Helm dependency `oci://host/path` of a chart in the layout, and an image a chart deploys,
  are looked up in the same layout, under the path a layout target gave them: the scoped path
  (`<host segment>/path/name`) first, then the flat one (`path/name`). One that is in neither
  is a warning, as a dependency range that matches nothing upstream is; the far side reaches
  no registry for it.
- Copies: skopeo 1.9.3 reads `oci:DIR:REFNAME` only by ref name (`oci:DIR@sha256:…` is taken
  for a directory named `DIR@sha256`, tried here), so before each copy the ref is checked to
  still name the digest the plan pinned, and every blob of its manifest (an index's children
  too) is hashed (`check_before_copy`): nothing unverified reaches a registry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import paths
from .errors import MirrorspecError, RegistryError
from .layout.store import Layout, LayoutError, LayoutRef, parse_ref_name, ref_name
from .oci.client import OCI_MANIFEST, Manifest, RegistryClient

if TYPE_CHECKING:
    from .context import RunContext
    from .skopeo.jobs import CopyJob

__all__ = [
    "NATIVE_NOTE",
    "LayoutClient",
    "check_before_copy",
    "layout_path",
    "native_note",
]

# distribution-spec's suggested manifest limit, as the registry client's.
_MAX_MANIFEST_BYTES = 4 << 20
# An index of indexes of ...: deeper than this is not an image anyone pushed.
_MAX_DEPTH = 4
_MAX_CHILDREN = 10_000

NATIVE_NOTE = (
    "read from the OCI layout {layout}: registry-native features (pull-through cache, cache "
    "rules, import, replication) would reach an upstream, which the far side of an air gap "
    "cannot; {kind} target copies them with skopeo"
)


def native_note(kind: str, layout: str) -> str:
    """The one wording for a native feature a layout source cannot use, per provider."""
    return NATIVE_NOTE.format(kind=kind, layout=layout)


class LayoutClient(RegistryClient):
    """A registry client's reads, answered from an OCI image layout; thread-safe.

    A subclass so that every caller of `RunContext.client` takes it as it is; it sets up no
    HTTP session, and what only a registry has (`_read`, the referrers API) is refused."""

    offline = True

    def __init__(self, host: str, directory: str) -> None:  # no super(): no HTTP session
        self.host = host
        self.api_host = host
        self.layout = Layout(Path(directory))
        self._lock = threading.Lock()
        self._by_repository: dict[str, dict[str, LayoutRef]] | None = None
        self._checked: dict[str, None] = {}  # manifests verified whole, for copies

    def __repr__(self) -> str:
        return f"LayoutClient({str(self.layout.path)!r})"

    def close(self) -> None:
        pass

    # -- the layout's refs -----------------------------------------------------------------

    def by_repository(self) -> Mapping[str, Mapping[str, LayoutRef]]:
        """Repository path → tag (or digest) → its ref, read and validated once per run."""
        with self._lock:
            if self._by_repository is None:
                if not self.layout.exists():
                    raise LayoutError(f"layout {self.layout.path}: no oci-layout and index.json there")
                table: dict[str, dict[str, LayoutRef]] = {}
                for name, ref in self.layout.refs().items():
                    path, tag = parse_ref_name(name)  # a name outside the rules: LayoutError
                    table.setdefault(path, {})[tag] = ref
                self._by_repository = table
            return self._by_repository

    def has_repository(self, repository: str) -> bool:
        return repository in self.by_repository()

    def _ref(self, repository: str, reference: str) -> LayoutRef | None:
        refs = self.by_repository().get(repository, {})
        if reference in refs:
            return refs[reference]
        if ":" in reference:  # a digest: any ref of the repository that names it
            return next((r for r in refs.values() if r.digest == reference), None)
        return None

    # -- a registry client's reads -----------------------------------------------------------

    def ping(self) -> None:
        self.by_repository()

    def list_tags(self, repository: str) -> list[str]:
        refs = self.by_repository().get(repository)
        if refs is None:
            raise RegistryError(
                f"repository {repository} is not in the layout {self.layout.path}",
                registry=self.host,
                repository=repository,
                status=404,
            )
        return sorted(tag for tag in refs if ":" not in tag)  # not the untagged referrers

    def digest(self, repository: str, reference: str) -> str | None:
        ref = self._ref(repository, reference)
        return None if ref is None else ref.digest

    def manifest(self, repository: str, reference: str) -> Manifest:
        ref = self._ref(repository, reference)
        if ref is None and ":" not in reference:
            raise RegistryError(
                f"manifest {repository}:{reference} is not in the layout {self.layout.path}",
                registry=self.host,
                repository=repository,
                status=404,
            )
        # By digest, an index's child (a referrer listed by a referrers tag index) has no ref
        # of its own: its blob is read, and hashed, all the same.
        digest = ref.digest if ref is not None else reference
        body = self.layout.read_blob(digest, _MAX_MANIFEST_BYTES)
        media_type = ref.media_type if ref is not None else _media_type(body)
        return Manifest(digest=digest, media_type=media_type, body=body)

    def blob(self, repository: str, digest: str, *, max_bytes: int = 4 << 20) -> bytes:
        return self.layout.read_blob(digest, max_bytes)

    # -- copies --------------------------------------------------------------------------------

    def ref_for_copy(self, repository: str, tag: str, digest: str) -> str:
        """The ref name skopeo reads `repository:tag` (or `@digest`) from, once it is known to
        name the pinned `digest` and every blob of that manifest has been hashed."""
        if ":" in str(self.layout.path):
            # containers/image oci transport: `oci:PATH:REF` splits at the first colon.
            raise LayoutError(f"layout {self.layout.path}: skopeo cannot read a layout whose path holds ':'")
        name = ref_name(repository, tag)
        ref = self.by_repository().get(repository, {}).get(tag)
        if ref is None:
            raise LayoutError(f"layout {self.layout.path}: no reference {name}")
        if ref.digest != digest:
            raise LayoutError(
                f"layout {self.layout.path}: {name} names {ref.digest}, not {digest} as planned "
                "(the layout changed since the plan)"
            )
        self._verify_manifest(digest, ref.size, name, 0)
        return name

    def _verify_manifest(self, digest: str, size: int | None, name: str, depth: int) -> None:
        with self._lock:
            if digest in self._checked:
                return
        if depth > _MAX_DEPTH:
            raise LayoutError(f"layout {self.layout.path}: {name}: indexes nested deeper than {_MAX_DEPTH}")
        body = self.layout.read_blob(digest, _MAX_MANIFEST_BYTES)
        if size is not None and len(body) != size:
            raise LayoutError(f"layout {self.layout.path}: {name}: manifest {digest} is not {size} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise LayoutError(f"layout {self.layout.path}: {name}: manifest {digest} is not JSON") from None
        if not isinstance(document, dict):
            raise LayoutError(f"layout {self.layout.path}: {name}: manifest {digest} is not a JSON object")
        children = document.get("manifests")
        blobs = [document.get("config"), *(document.get("layers") or [])] if children is None else []
        for descriptor in [*(children or []), *blobs][:_MAX_CHILDREN]:
            child, child_size = _descriptor(descriptor, f"layout {self.layout.path}: {name}")
            try:
                if children is not None:
                    self._verify_manifest(child, child_size, name, depth + 1)
                else:
                    self.layout.verify_blob(child, child_size)
            except LayoutError as exc:  # say which reference needs the blob
                where = f"layout {self.layout.path}: "
                raise LayoutError(str(exc).replace(where, f"{where}{name}: ", 1)) from None
        with self._lock:
            self._checked[digest] = None


def _descriptor(value: Any, where: str) -> tuple[str, int | None]:
    if not isinstance(value, dict) or not isinstance(value.get("digest"), str):
        raise LayoutError(f"{where}: a descriptor without a digest")
    size = value.get("size")
    return value["digest"], size if isinstance(size, int) and not isinstance(size, bool) else None


def _media_type(body: bytes) -> str:
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    return declared if isinstance(declared, str) and declared else OCI_MANIFEST


def _client(ctx: RunContext, host: str) -> LayoutClient:
    client = ctx.client(ctx.source_endpoint(host))
    if not isinstance(client, LayoutClient):  # a layout host always has an oci-layout entry
        raise MirrorspecError(f"{host} is not an oci-layout source of the spec")
    return client


def layout_path(
    ctx: RunContext, layout_host: str, registry: str, repository: str
) -> tuple[str | None, tuple[str, ...]]:
    """Where `registry/repository` (a chart's dependency or image) is in the layout of
    `layout_host`: the first of its scoped and its flat path the layout holds, None when it
    holds neither; and the paths looked at, for the note that says so."""
    repository = paths.normalize_repository(registry, repository)
    looked = tuple(dict.fromkeys((f"{paths.host_segment(registry)}/{repository}", repository)))
    client = _client(ctx, layout_host)
    return next((p for p in looked if client.has_repository(p)), None), looked


def check_before_copy(ctx: RunContext, job: CopyJob) -> str | None:
    """None when `job`'s source ref in its layout names the planned digest and all its blobs
    hash to their names; else the one line that says which reference and what is wrong."""
    try:
        _client(ctx, job.source.host).ref_for_copy(job.source_repository, job.tag, job.digest)
    except MirrorspecError as exc:
        return str(exc)
    return None
