"""Read-side client for the OCI distribution API: tags, manifest digests, manifests, small blobs.

Registry behaviour that shaped this module (sources in the research notes):

- Every manifest request sends `MANIFEST_ACCEPT`. Without an OCI type, distribution 2.8.2 answers
  404 for OCI manifests and indexes, and rewrites a Docker schema2 manifest fetched by tag to
  schema1 with a *different* digest, or fails with 400 (research/testbed.md §5.2).
- `tags/list`: distribution ignores `n`/`last`, never sends `Link` and returns tags unsorted
  (§5.1); other registries page with an RFC 5988 `Link` that may be relative (distribution's own
  `_catalog` does that, §5.4), so `Link` is followed and resolved against the request URL, and no
  `n` is sent at all (an `n` above a registry's maximum is a 400 there). A repository whose
  manifests were all deleted answers `"tags": null` (§5.1).
- `Docker-Content-Digest` on HEAD is only a SHOULD in distribution-spec v1.1.1, so a HEAD without
  it falls back to GET and hashing the body (research/sync.md §5).
- A registry's answers are untrusted input: every body is read with a limit (tag list pages
  8 MiB and 500,000 tags in all, manifests 4 MiB), tag lists must be a JSON object of valid tags
  for the repository asked about, a manifest must hash to its `Docker-Content-Digest`, and
  pagination must make progress.

The rest of the client lives beside it: `auth.py` answers challenges (basic, bearer tokens),
`session.py` sends (https → http probe, redirects, bodies read with a limit), `errors.py` says
what went wrong in one line, and `transport.py` bounds and retries every request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ..errors import RegistryError
from ..redaction import clip
from .auth import RegistryAuth
from .errors import ErrorMapper
from .read_limit import ReadLimit
from .session import RegistrySession
from .transport import Transport

if TYPE_CHECKING:
    import requests

__all__ = ["MANIFEST_ACCEPT", "Manifest", "RegistryClient"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
_MANIFEST_TYPES = frozenset(MANIFEST_ACCEPT.split(", "))

# distribution-spec suggests registries accept manifests up to 4 MiB; anything larger is abuse.
_MAX_MANIFEST_BYTES = 4 << 20
_MAX_TAG_PAGES = 10_000
# One tag list page: Docker Hub and distribution answer every tag in one page; 100,000 tags
# of 40 characters are 4.4 MB. Beyond 8 MiB (or 500,000 tags in all) a registry is broken
# or hostile, and parsing it would cost hundreds of MB per listing in flight.
_MAX_TAG_PAGE_BYTES = 8 << 20
_MAX_TAGS = 500_000
# A `next` link that brings no new tag, this many times in a row, is a loop in disguise
# (`?last=a&x=1`, `?last=a&x=2`, ...): 10,000 pages of it would take hours.
_MAX_STALLED_PAGES = 10

# Grammar from distribution-spec "Pulling manifests"; checked locally so that a typo becomes a
# clear error and nothing odd (`..`, `?`) is ever spliced into a URL path.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_HASHES = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry served it; `digest` identifies those bytes."""

    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError("manifest is not a JSON object")
        return value


def _api_host(host: str) -> str:
    # docker.io is a name, not an endpoint: the registry API lives on registry-1.docker.io.
    return "registry-1.docker.io" if host in {"docker.io", "index.docker.io"} else host


class RegistryClient:
    """One registry, many repositories; safe to share between threads."""

    def __init__(
        self,
        host: str,
        *,
        username: str | None = None,
        password: str | None = None,
        insecure: bool = False,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        pool_size: int | None = None,
        transport: Transport | None = None,
    ) -> None:
        """`transport` is the run's (`RunContext.transport`): its timeout and per-host budget
        apply, shared with the run's other clients; without one, the client has its own with
        `timeout`. A request is retried `retries` times (timeouts at most twice; see
        `mirrorspec.oci.transport`), backing off from `backoff` seconds. Every read holds a slot
        of the host's reads-in-flight limit (`reads`, the transport's for `host`) until its
        response is closed; the pool keeps `pool_size` connections, by default one per read
        the limit lets be in flight at most (its ceiling)."""
        if not host or "/" in host or host != host.strip():
            raise RegistryError(f"invalid registry host {host!r}: expected host[:port]", registry=str(host))
        self.host = host
        self.api_host = _api_host(host)
        self._username = username
        self._insecure = insecure
        transport = transport or Transport(timeout)
        self._errors = ErrorMapper(host, username=username, retries=retries, timeout=transport.timeout)
        self.reads: ReadLimit = transport.read_limit(self.api_host)
        self._session = RegistrySession(
            self.api_host,
            errors=self._errors,
            transport=transport,
            insecure=insecure,
            ca_bundle=ca_bundle,
            retries=retries,
            backoff=backoff,
            pool_size=pool_size or self.reads.ceiling,
        )
        self._auth = RegistryAuth(
            username=username, password=password, session=self._session, errors=self._errors
        )

    def __repr__(self) -> str:
        user = f", username={self._username!r}" if self._username else ""
        return f"RegistryClient({self.host!r}{user}, insecure={self._insecure})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- reads ----------------------------------------------------------------------------

    def ping(self) -> None:
        """Check reachability, TLS and credentials with `GET /v2/`."""
        with self._read("GET", "/v2/", repository=None, accept="application/json") as resp:
            if resp.status_code == 200:
                return
            if resp.status_code == 404:
                raise self._errors.error(
                    f"{self.host} does not serve the registry API (/v2/ answered 404)",
                    status=404,
                )
            raise self._errors.status(resp, None, "/v2/")

    def list_tags(self, repository: str) -> list[str]:
        """All tags of `repository`, across pages, sorted, without duplicates."""
        self._check_repository(repository)
        tags: set[str] = set()
        url = f"/v2/{repository}/tags/list"
        seen = {url}
        stalled = 0
        for _ in range(_MAX_TAG_PAGES):
            with self._read("GET", url, repository=repository, accept="application/json") as r:
                if r.status_code == 404:
                    raise self._errors.error(
                        f"repository {repository} not found on {self.host}",
                        repository=repository,
                        status=404,
                    )
                if r.status_code != 200:
                    raise self._errors.status(r, repository, f"tags of {repository}")
                body = self._session.read_limited(
                    r, _MAX_TAG_PAGE_BYTES, repository, f"the tag list of {repository}"
                )
                before = len(tags)
                tags.update(self._tags_of(body, repository, r.status_code))
                if len(tags) > _MAX_TAGS:
                    raise self._errors.error(
                        f"{self.host} lists more than {_MAX_TAGS:,} tags for {repository}",
                        repository=repository,
                    )
                stalled = stalled + 1 if len(tags) == before else 0
                seen.add(r.url)  # the first request's path is relative; a link is absolute
                link = r.links.get("next", {}).get("url")
                if not link:
                    return sorted(tags)
                url = urljoin(r.url, link)
            if stalled >= _MAX_STALLED_PAGES:
                raise self._errors.error(
                    f"{self.host} sent {stalled} pages of tags for {repository} without a new tag: "
                    "a pagination loop",
                    repository=repository,
                )
            if urlsplit(url).netloc != self.api_host:
                # Following it would hand our credentials to another host.
                raise self._errors.error(
                    f"{self.host} paginates tags of {repository} to another host: {url}",
                    repository=repository,
                )
            if url in seen:
                raise self._errors.error(
                    f"{self.host} sent a pagination loop for tags of {repository}",
                    repository=repository,
                )
            seen.add(url)
        raise self._errors.error(
            f"{self.host} sent more than {_MAX_TAG_PAGES} pages of tags for {repository}",
            repository=repository,
        )

    def digest(self, repository: str, reference: str) -> str | None:
        """Digest of the manifest (or index) `reference` names; None if it does not exist."""
        self._check_reference(repository, reference)
        path = f"/v2/{repository}/manifests/{reference}"
        with self._read("HEAD", path, repository=repository, accept=MANIFEST_ACCEPT) as resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise self._errors.status(resp, repository, f"manifest {repository}:{reference}")
            header = resp.headers.get("Docker-Content-Digest", "")
        if _DIGEST.fullmatch(header):
            return header
        # Older registries omit the header on HEAD (distribution-spec v1.1.1: SHOULD).
        try:
            return self.manifest(repository, reference).digest
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise

    def manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest bytes; a digest reference is verified against the body."""
        self._check_reference(repository, reference)
        what = f"manifest {repository}{'@' if ':' in reference else ':'}{reference}"
        path = f"/v2/{repository}/manifests/{reference}"
        with self._read("GET", path, repository=repository, accept=MANIFEST_ACCEPT) as resp:
            if resp.status_code == 404:
                raise self._errors.error(
                    f"{what} not found on {self.host}", repository=repository, status=404
                )
            if resp.status_code != 200:
                raise self._errors.status(resp, repository, what)
            body = self._session.read_limited(resp, _MAX_MANIFEST_BYTES, repository, what)
            header = resp.headers.get("Docker-Content-Digest", "")
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if _DIGEST.fullmatch(reference):
            self._verify_digest(body, reference, repository, what)
            digest = reference
        elif _DIGEST.fullmatch(header):
            # The header is what a later pull by digest will ask for: it must name these bytes.
            self._verify_digest(body, header, repository, f"{what} (Docker-Content-Digest {header})")
            digest = header
        else:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        media_type = content_type
        if media_type not in _MANIFEST_TYPES:
            # Some registries send application/json; the body's own mediaType is then the truth.
            try:
                declared = json.loads(body).get("mediaType")
            except (ValueError, AttributeError):
                declared = None
            if isinstance(declared, str) and declared:
                media_type = declared
        return Manifest(digest=digest, media_type=media_type, body=body)

    def blob(self, repository: str, digest: str, *, max_bytes: int = 4 << 20) -> bytes:
        """A small blob (a config, say), verified against `digest`; refused above `max_bytes`."""
        self._check_repository(repository)
        if not _DIGEST.fullmatch(digest):
            raise self._errors.error(f"invalid digest {digest!r}", repository=repository)
        what = f"blob {repository}@{digest}"
        with self._read(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            accept="*/*",
            # the digest covers the stored bytes: no transparent (de)compression in between
            extra_headers={"Accept-Encoding": "identity"},
        ) as resp:
            if resp.status_code == 404:
                raise self._errors.error(
                    f"{what} not found on {self.host}", repository=repository, status=404
                )
            if resp.status_code != 200:
                raise self._errors.status(resp, repository, what)
            body = self._session.read_limited(resp, max_bytes, repository, what)
        self._verify_digest(body, digest, repository, what)
        return body

    # -- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _read(
        self,
        method: str,
        path: str,
        *,
        repository: str | None,
        accept: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Iterator[requests.Response]:
        """`RegistryAuth.request` in one of the host's read slots, held until the response is
        closed: the reads in flight to a registry never exceed its limit (`read_limit.py`)."""
        with (
            self.reads.slot(),
            self._auth.request(
                method, path, repository=repository, accept=accept, extra_headers=extra_headers
            ) as resp,
        ):
            yield resp

    def _tags_of(self, body: bytes, repository: str, status: int) -> list[str]:
        def invalid(why: str) -> RegistryError:
            return self._errors.error(
                f"{self.host} sent an invalid tag list for {repository}: {why}",
                repository=repository,
                status=status,
            )

        try:
            document = json.loads(body)
        except ValueError:  # UnicodeDecodeError included
            raise invalid("not JSON") from None
        if not isinstance(document, dict):
            raise invalid("not a JSON object")
        name = document.get("name")
        # A proxy may add its own path prefix to the name, or leave out the one in the request
        # (Artifactory's repository key); a name unrelated to the request is another
        # repository's tag list.
        if name is not None and not (
            isinstance(name, str)
            and (name == repository or name.endswith("/" + repository) or repository.endswith("/" + name))
        ):
            raise invalid(f"it is for {clip(str(name), 80)!r}")
        tags = document.get("tags")
        if tags is None:  # distribution: all manifests deleted -> "tags": null
            return []
        if not isinstance(tags, list):
            raise invalid("'tags' is not a list")
        for tag in tags:
            # Every tag becomes part of a URL and a destination reference later.
            if not isinstance(tag, str) or not _TAG.fullmatch(tag):
                raise invalid(f"{clip(repr(tag), 80)} is not a tag")
        return tags

    def _verify_digest(self, body: bytes, digest: str, repository: str, what: str) -> None:
        algorithm, _, expected = digest.partition(":")
        if algorithm not in _HASHES or len(expected) != _HASHES[algorithm]:
            raise self._errors.error(f"unsupported digest {digest} for {what}", repository=repository)
        actual = hashlib.new(algorithm, body).hexdigest()
        if actual != expected:
            raise self._errors.error(
                f"{what} from {self.host} does not match its digest (got {algorithm}:{actual})",
                repository=repository,
            )

    def _check_repository(self, repository: str) -> None:
        if not _REPOSITORY.fullmatch(repository):
            raise self._errors.error(
                f"invalid repository name {repository!r} (lower case, '/'-separated)",
                repository=repository,
            )

    def _check_reference(self, repository: str, reference: str) -> None:
        self._check_repository(repository)
        if not (_TAG.fullmatch(reference) or _DIGEST.fullmatch(reference)):
            raise self._errors.error(
                f"invalid tag or digest {reference!r} for {repository}", repository=repository
            )
