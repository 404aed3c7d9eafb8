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
- Token auth (research/sync.md §5, testbed.md §4.2/§4.5): the realm may answer `token` or
  `access_token`, `expires_in` defaults to 60 s, and distribution lists the actions of a scope in
  random order (Go map iteration), so scopes are compared as sets.
- `Authorization` must never cross a host boundary on redirects (blob downloads are commonly
  redirected to object storage). requests drops it when host, port or scheme changes.
- A registry's answers are untrusted input: every body is streamed and read with a limit (tag
  list pages 8 MiB and 500,000 tags in all, manifests 4 MiB, tokens 1 MiB), tag lists must be
  a JSON object of valid tags for the repository asked about, a manifest must hash to its
  `Docker-Content-Digest`, pagination must make progress and redirects stop after 10 hops.
- Credentials go to a token realm only on the registry's own host or under its parent domain
  (auth.docker.io for registry-1.docker.io), over https; otherwise the token is requested
  anonymously and any resulting error says why (`_realm_refusal`).
- This machine (and CI) sets `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`, which silently override
  `Session.verify` (testbed.md §0.1): the session ignores the environment and every request
  passes `verify=` itself.
- An HTTPS request to a plain-HTTP registry fails in the TLS handshake (wrong version number),
  and a plain-HTTP request to a TLS port gets 400 (testbed.md §2.1); with `insecure=True` the
  client probes https first and falls back to http once, remembering the answer.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from .._version import __version__
from ..errors import RegistryError
from ..redaction import clip, register_secret
from ..tls_failures import explain_tls_failure
from .transport import BodyTimeout, GaveUp, Transport, attempts_note

__all__ = ["MANIFEST_ACCEPT", "Manifest", "RegistryClient"]

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
_MANIFEST_TYPES = frozenset(MANIFEST_ACCEPT.split(", "))

# distribution-spec suggests registries accept manifests up to 4 MiB; anything larger is abuse.
_MAX_MANIFEST_BYTES = 4 << 20
_DEFAULT_TOKEN_TTL = 60  # token.md: "defaults to 60 seconds" when expires_in is absent
_MAX_TAG_PAGES = 10_000
# One tag list page: Docker Hub and distribution answer every tag in one page; 100,000 tags
# of 40 characters are 4.4 MB. Beyond 8 MiB (or 500,000 tags in all) a registry is broken
# or hostile, and parsing it would cost hundreds of MB per listing in flight.
_MAX_TAG_PAGE_BYTES = 8 << 20
_MAX_TAGS = 500_000
# A `next` link that brings no new tag, this many times in a row, is a loop in disguise
# (`?last=a&x=1`, `?last=a&x=2`, ...): 10,000 pages of it would take hours.
_MAX_STALLED_PAGES = 10
# A token answer is a JSON object with a JWT of a few KB.
_MAX_TOKEN_BYTES = 1 << 20
_MAX_TOKEN_TTL = 86_400
_MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"mirrorspec/{__version__}"

# Grammar from distribution-spec "Pulling manifests"; checked locally so that a typo becomes a
# clear error and nothing odd (`..`, `?`) is ever spliced into a URL path.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_HASHES = {"sha256": 64, "sha512": 128}
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^)\]'\"]+)")
# RFC 7230 token characters; token68 adds '/', '+' and trailing '='.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_CHARS = _TOKEN_CHARS | frozenset("/+=")


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


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # lower case
    params: Mapping[str, str]  # names lower case


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()


def _parse_challenges(header: str) -> list[_Challenge]:
    """Parse `WWW-Authenticate` (RFC 7235 / RFC 6750): several challenges may share one header,
    and quoted values may hold commas and backslash escapes, so no naive split works."""
    challenges: list[_Challenge] = []
    i, n = 0, len(header)

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and header[i] in chars:
            i += 1

    def token(allowed: frozenset[str]) -> str:
        nonlocal i
        start = i
        while i < n and header[i] in allowed:
            i += 1
        return header[start:i]

    while i < n:
        skip(" \t,")
        scheme = token(_TOKEN_CHARS)
        if not scheme:
            i += 1  # garbage: skip a character rather than loop forever
            continue
        params: dict[str, str] = {}
        while True:
            skip(" \t")
            mark = i
            name = token(_TOKEN_CHARS)
            skip(" \t")
            if not name or i >= n or header[i] != "=":
                i = mark
                break
            i += 1
            skip(" \t")
            if i >= n or header[i] in "=,":
                i = mark  # `abc==`: the '=' pads a token68 credential, it is no param
                break
            if i < n and header[i] == '"':
                i += 1
                chars: list[str] = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(header[i])
                    i += 1
                i += 1  # closing quote
                value = "".join(chars)
            else:
                value = token(_TOKEN68_CHARS)
            params[name.lower()] = value
            skip(" \t")
            if i < n and header[i] == ",":
                i += 1
            else:
                break
        if not params:
            # `Negotiate abc==`: a token68 credential, not params; keep it, unnamed.
            skip(" \t")
            value = token(_TOKEN68_CHARS)
            if value:
                params[""] = value
        challenges.append(_Challenge(scheme.lower(), params))
    return challenges


def _normalize_scope(scope: str) -> str:
    """Canonical form of a (space-separated) scope list: actions as sorted sets, since
    distribution emits them in random order. Names may contain ':' (host:port)."""
    parts = []
    for item in scope.split():
        kind, sep, rest = item.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2:
            parts.append(item)
            continue
        parts.append(f"{kind}:{name}:{','.join(sorted(set(filter(None, actions.split(',')))))}")
    return " ".join(sorted(parts))


def _api_host(host: str) -> str:
    # docker.io is a name, not an endpoint: the registry API lives on registry-1.docker.io.
    return "registry-1.docker.io" if host in {"docker.io", "index.docker.io"} else host


def _is_timeout(exc: requests.exceptions.RequestException) -> bool:
    if isinstance(exc, requests.exceptions.Timeout):
        return True
    # After the last retry requests reports a read timeout as a plain ConnectionError.
    inner = exc.args[0] if exc.args else None
    reason = inner.reason if isinstance(inner, urllib3.exceptions.MaxRetryError) else inner
    # urllib3 makes NewConnectionError (refused, unresolvable) a ConnectTimeoutError subclass.
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def _speaks_plain_http(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether an https attempt failed the way a plain-HTTP server makes it fail: a handshake
    error (it answered the ClientHello with an HTTP 400, "wrong version number") or a hang-up."""
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    inner = exc.args[0] if exc.args else None
    reason = inner.reason if isinstance(inner, urllib3.exceptions.MaxRetryError) else inner
    return isinstance(reason, urllib3.exceptions.ProtocolError)


class _Session(requests.Session):
    """A session that never touches a redirect's body.

    Even with `allow_redirects=False`, `Session.send` runs `resolve_redirects` once to set
    `Response.next`, and that reads the whole redirect body into memory (requests 2.32):
    an endless 302 body would fill it. `RegistryClient._send_raw` follows redirects itself.
    """

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())


def _same_origin(old: str, new: str) -> bool:
    """Whether credentials for `old` may follow a redirect to `new` (requests' rule: same host,
    and same scheme and port, or an http → https upgrade on the default ports)."""
    a, b = urlsplit(old), urlsplit(new)
    if a.hostname != b.hostname:
        return False
    if a.scheme == "http" and b.scheme == "https":
        return a.port in (None, 80) and b.port in (None, 443)
    default = {"http": 80, "https": 443}
    return a.scheme == b.scheme and (a.port or default.get(a.scheme)) == (b.port or default.get(b.scheme))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
        pool_size: int = 16,
        transport: Transport | None = None,
    ) -> None:
        """`transport` is the run's (`RunContext.transport`): its timeout and per-host budget
        apply, shared with the run's other clients; without one, the client has its own with
        `timeout`. A request is retried `retries` times (timeouts at most twice; see
        `mirrorspec.oci.transport`), backing off from `backoff` seconds."""
        if not host or "/" in host or host != host.strip():
            raise RegistryError(f"invalid registry host {host!r}: expected host[:port]", registry=str(host))
        self.host = host
        self.api_host = _api_host(host)
        self._username = username
        self._password = password
        self._insecure = insecure
        self._verify: bool | str = False if insecure else (ca_bundle or True)
        self._transport = transport or Transport(timeout)
        self._timeout = self._transport.timeout
        self._retries = retries
        # None = not probed yet; only an insecure client may end up on plain http.
        self._scheme: str | None = None if insecure else "https"
        self._lock = threading.Lock()
        self._scope_locks: dict[str, threading.Lock] = {}
        self._auth_kind: str | None = None  # "basic" or "bearer", learned from a challenge
        self._bearer: _Challenge | None = None  # last realm/service seen, for later scopes
        self._tokens: dict[str, _Token] = {}
        if password:
            register_secret(password)
        self._withheld: str | None = None  # why credentials were not sent to the token realm
        if insecure:
            # The user opted out of verification; urllib3 would warn on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

        session = _Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE & co. would override verify=
        session.headers["User-Agent"] = _USER_AGENT
        # Timeouts, broken connections and 429/5xx are retried by the adapter, counted and
        # bounded by the deadline and the host's budget; TLS failures are not retried. The
        # last 429/5xx answer comes back as it is and becomes a RegistryError with its status.
        adapter = self._transport.adapter(
            retries=retries,
            backoff=backoff,
            methods=frozenset({"GET", "HEAD"}),
            pool_connections=4,
            pool_maxsize=pool_size,
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._session = session

    def __repr__(self) -> str:
        user = f", username={self._username!r}" if self._username else ""
        return f"RegistryClient({self.host!r}{user}, insecure={self._insecure})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- public API ------------------------------------------------------------------------

    def ping(self) -> None:
        """Check reachability, TLS and credentials with `GET /v2/`."""
        with self._request("GET", "/v2/", repository=None, accept="application/json") as resp:
            if resp.status_code == 200:
                return
            if resp.status_code == 404:
                raise self._error(
                    f"{self.host} does not serve the registry API (/v2/ answered 404)",
                    status=404,
                )
            raise self._status_error(resp, None, "/v2/")

    def list_tags(self, repository: str) -> list[str]:
        """All tags of `repository`, across pages, sorted, without duplicates."""
        self._check_repository(repository)
        tags: set[str] = set()
        url = f"/v2/{repository}/tags/list"
        seen = {url}
        stalled = 0
        for _ in range(_MAX_TAG_PAGES):
            with self._request("GET", url, repository=repository, accept="application/json") as r:
                if r.status_code == 404:
                    raise self._error(
                        f"repository {repository} not found on {self.host}",
                        repository=repository,
                        status=404,
                    )
                if r.status_code != 200:
                    raise self._status_error(r, repository, f"tags of {repository}")
                body = self._read_limited(r, _MAX_TAG_PAGE_BYTES, repository, f"the tag list of {repository}")
                before = len(tags)
                tags.update(self._tags_of(body, repository, r.status_code))
                if len(tags) > _MAX_TAGS:
                    raise self._error(
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
                raise self._error(
                    f"{self.host} sent {stalled} pages of tags for {repository} without a new tag: "
                    "a pagination loop",
                    repository=repository,
                )
            if urlsplit(url).netloc != self.api_host:
                # Following it would hand our credentials to another host.
                raise self._error(
                    f"{self.host} paginates tags of {repository} to another host: {url}",
                    repository=repository,
                )
            if url in seen:
                raise self._error(
                    f"{self.host} sent a pagination loop for tags of {repository}",
                    repository=repository,
                )
            seen.add(url)
        raise self._error(
            f"{self.host} sent more than {_MAX_TAG_PAGES} pages of tags for {repository}",
            repository=repository,
        )

    def digest(self, repository: str, reference: str) -> str | None:
        """Digest of the manifest (or index) `reference` names; None if it does not exist."""
        self._check_reference(repository, reference)
        path = f"/v2/{repository}/manifests/{reference}"
        with self._request("HEAD", path, repository=repository, accept=MANIFEST_ACCEPT) as resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise self._status_error(resp, repository, f"manifest {repository}:{reference}")
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
        with self._request("GET", path, repository=repository, accept=MANIFEST_ACCEPT) as resp:
            if resp.status_code == 404:
                raise self._error(f"{what} not found on {self.host}", repository=repository, status=404)
            if resp.status_code != 200:
                raise self._status_error(resp, repository, what)
            body = self._read_limited(resp, _MAX_MANIFEST_BYTES, repository, what)
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
            raise self._error(f"invalid digest {digest!r}", repository=repository)
        what = f"blob {repository}@{digest}"
        with self._request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            accept="*/*",
            # the digest covers the stored bytes: no transparent (de)compression in between
            extra_headers={"Accept-Encoding": "identity"},
        ) as resp:
            if resp.status_code == 404:
                raise self._error(f"{what} not found on {self.host}", repository=repository, status=404)
            if resp.status_code != 200:
                raise self._status_error(resp, repository, what)
            body = self._read_limited(resp, max_bytes, repository, what)
        self._verify_digest(body, digest, repository, what)
        return body

    # -- HTTP with auth --------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        repository: str | None,
        accept: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One logical request: anonymous or cached credentials first, then answer challenges.

        Returns any non-401 response; the caller judges the status and must close it.
        """
        base_scope = f"repository:{repository}:pull" if repository else ""
        headers = {"Accept": accept, **(extra_headers or {})}
        authorization = self._known_authorization(base_scope)
        sent_scope = base_scope if authorization else None
        refreshed = False
        tried: set[str] = set()
        for _ in range(4):
            if authorization:
                headers["Authorization"] = authorization
            resp = self._exchange(method, path, headers, repository)
            if resp.status_code != 401:
                return resp
            challenge_header = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            challenge = self._pick_challenge(challenge_header)
            if challenge is None:
                raise self._unauthorized(repository, authorization is not None)
            if challenge.scheme == "basic":
                if authorization is not None and authorization.startswith("Basic "):
                    raise self._unauthorized(repository, True)
                authorization = self._basic_authorization(repository)
                with self._lock:
                    self._auth_kind = "basic"
                continue
            scope = _normalize_scope(challenge.params.get("scope", ""))
            with self._lock:
                self._auth_kind = "bearer"
                self._bearer = challenge
            if authorization is not None and authorization.startswith("Bearer "):
                stale = authorization.removeprefix("Bearer ")
                if challenge.params.get("error") == "invalid_token" and not refreshed:
                    # expired early or revoked: one fresh token, never a loop
                    refreshed = True
                    key = sent_scope if sent_scope is not None else scope
                    authorization = "Bearer " + self._token(challenge, key, stale=stale)
                    continue
                if scope == sent_scope or scope in tried:
                    raise self._denied(repository)
            tried.add(scope)
            authorization = "Bearer " + self._token(challenge, scope)
            sent_scope = scope
        raise self._denied(repository)

    def _exchange(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        repository: str | None,
    ) -> requests.Response:
        if path.startswith(("http://", "https://")):
            return self._send(method, path, headers, repository)
        scheme = self._scheme
        if scheme is not None:
            return self._send(method, f"{scheme}://{self.api_host}{path}", headers, repository)
        try:
            resp = self._send_raw(method, f"https://{self.api_host}{path}", headers)
            scheme = "https"
        except requests.exceptions.ConnectionError as exc:  # SSLError included
            if not _speaks_plain_http(exc):
                # Refused or slow is not "speaks plain HTTP": a second try over http would
                # only double the wait, and could downgrade a TLS registry.
                raise self._transport_error(exc, repository, f"https://{self.api_host}{path}") from exc
            resp = self._send(method, f"http://{self.api_host}{path}", headers, repository)
            scheme = "http"
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, repository, f"https://{self.api_host}{path}") from exc
        with self._lock:
            self._scheme = scheme
        return resp

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        repository: str | None,
    ) -> requests.Response:
        try:
            return self._send_raw(method, url, headers)
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, repository, url) from exc

    def _send_raw(self, method: str, url: str, headers: Mapping[str, str]) -> requests.Response:
        """One request, redirects followed here rather than by requests.

        Always streamed: a body is read only by the caller that wants it, with a limit, so a
        hostile answer (a 401 or a tag list of gigabytes) cannot fill memory. requests would
        read every redirect's body whole before following it; here a redirect is closed
        unread. `Authorization` is dropped when a redirect leaves the origin, as requests does.
        """
        headers = dict(headers)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                resp = self._session.request(
                    method,
                    url,
                    headers=headers,
                    verify=self._verify,
                    stream=True,  # the deadlines are the transport's (connect + headers, then body)
                    allow_redirects=False,
                )
            except requests.exceptions.RequestException:
                raise
            except OSError as exc:
                # requests opens a ca-bundle path itself and fails with a bare OSError ("Could
                # not find a suitable TLS CA certificate bundle") if it vanished since it was
                # checked: say which file, in one line.
                reason = exc.strerror or "cannot be read"
                raise self._error(f"cannot use ca-bundle {self._verify} for {self.host}: {reason}") from None
            location = resp.headers.get("Location")
            if resp.status_code not in _REDIRECT_STATUSES or not location:
                return resp
            resp.close()
            target = urljoin(resp.url, location)
            if not _same_origin(url, target):
                headers.pop("Authorization", None)
            if resp.status_code == 303 and method != "HEAD":
                method = "GET"
            url = target
        raise requests.exceptions.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects")

    def _pick_challenge(self, header: str) -> _Challenge | None:
        challenges = _parse_challenges(header)
        for wanted in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == wanted:
                    if wanted == "bearer" and not challenge.params.get("realm"):
                        continue
                    return challenge
        return None

    def _known_authorization(self, scope: str) -> str | None:
        """Credentials to send before any challenge, from what earlier requests learned."""
        with self._lock:
            kind, bearer = self._auth_kind, self._bearer
            token = self._tokens.get(scope)
        if kind == "basic" and self._username is not None:
            return self._basic_authorization(None)
        if kind == "bearer":
            if token is not None and token.expires_at > time.monotonic():
                return f"Bearer {token.value}"
            if bearer is not None:
                # The realm is known: fetching the token now saves every new repository
                # a 401 round trip. A registry wanting another scope still gets its say.
                return "Bearer " + self._token(bearer, scope)
        return None

    def _realm_refusal(self, realm: str) -> str | None:
        """Why our credentials must not go to this token realm, or None when they may.

        A registry's challenge names the realm, so a hostile or compromised registry could
        name any host and collect the password. Credentials go only to the registry's own
        host, or to a host under its parent domain when that parent has at least two labels
        (registry-1.docker.io → auth.docker.io, registry.gitlab.com → gitlab.com), and only
        over https unless the registry itself is plain http. Without a public-suffix list the
        parent rule trusts siblings under a two-label public suffix (x.co.uk → y.co.uk).
        Otherwise the token is asked for anonymously.
        """
        parts = urlsplit(realm)
        realm_host = (parts.hostname or "").lower().rstrip(".")
        registry_host = (urlsplit(f"//{self.api_host}").hostname or "").lower().rstrip(".")
        with self._lock:
            registry_scheme = self._scheme
        if parts.scheme != "https" and not (parts.scheme == "http" and registry_scheme == "http"):
            return f"its realm {clip(realm, 100)} is not https"
        if realm_host == registry_host:
            return None
        domain = registry_host
        if not _is_ip(registry_host):
            parent = registry_host.partition(".")[2]
            if "." in parent:
                domain = parent
        if realm_host == domain or realm_host.endswith("." + domain):
            return None
        where = f"{registry_host} or a host under {domain}" if domain != registry_host else registry_host
        return f"its realm host {realm_host or realm!r} is not {where}"

    def _basic_authorization(self, repository: str | None) -> str:
        if self._username is None or self._password is None:
            raise self._unauthorized(repository, False)
        raw = f"{self._username}:{self._password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _token(self, challenge: _Challenge, scope: str, *, stale: str | None = None) -> str:
        """A bearer token for `scope`, from the cache or the realm. `stale` is a token the
        registry just rejected: only a different one may be returned."""
        with self._lock:
            lock = self._scope_locks.setdefault(scope, threading.Lock())
        # Per-scope lock: 16 threads hitting one new repository cause one realm request.
        with lock:
            with self._lock:
                cached = self._tokens.get(scope)
            if cached is not None and cached.value != stale and cached.expires_at > time.monotonic():
                return cached.value
            value, lifetime = self._fetch_token(challenge, scope)
            register_secret(value)
            with self._lock:
                self._tokens[scope] = _Token(value, time.monotonic() + lifetime)
            return value

    def _fetch_token(self, challenge: _Challenge, scope: str) -> tuple[str, float]:
        realm = challenge.params["realm"]
        realm_host = urlsplit(realm).netloc or realm
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params.extend(("scope", s) for s in scope.split())
        auth: tuple[str, str] | None = None
        withheld = None
        if self._username is not None and self._password is not None:
            withheld = self._realm_refusal(realm)
            if withheld is None:
                params.append(("account", self._username))
                auth = (self._username, self._password)
        headers = {"Accept": "application/json"}
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        try:
            url = requests.Request("GET", realm, params=params).prepare().url or realm
            resp = self._send_raw("GET", url, headers)
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, None, realm, service=f"token service {realm_host}") from exc
        with resp:
            if resp.status_code in (401, 403) and withheld is not None:
                raise self._error(
                    f"unauthorized: the credentials for {self.host} were not sent to its token service "
                    f"({withheld}), and it refused anonymous access",
                    status=resp.status_code,
                )
            if resp.status_code in (401, 403):
                raise self._error(
                    f"unauthorized: check the credentials for {self.host} "
                    f"(token service {realm_host} rejected them)",
                    status=resp.status_code,
                )
            if resp.status_code != 200:
                raise self._error(
                    f"token service {realm_host} for {self.host} answered {resp.status_code}",
                    status=resp.status_code,
                )
            raw = self._read_limited(resp, _MAX_TOKEN_BYTES, None, f"the token from {realm_host}")
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        token = None
        if isinstance(body, dict):
            token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise self._error(f"token service {realm_host} for {self.host} returned no token")
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        ttl = 0.0
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
            # JSON numbers are unbounded (and Python's parser reads Infinity): a day at most.
            ttl = float(min(expires_in, _MAX_TOKEN_TTL))
        ttl = ttl or _DEFAULT_TOKEN_TTL
        if withheld is not None:
            with self._lock:
                first = self._withheld is None
                self._withheld = withheld
            if first:
                log.warning(
                    "%s: credentials not sent to its token service (%s); reading anonymously",
                    self.host,
                    withheld,
                )
        # Renew a little early so a token does not expire between cache lookup and use.
        return token, max(ttl - 10.0, ttl / 2)

    # -- helpers ---------------------------------------------------------------------------

    def _tags_of(self, body: bytes, repository: str, status: int) -> list[str]:
        def invalid(why: str) -> RegistryError:
            return self._error(
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

    def _read_limited(
        self, resp: requests.Response, max_bytes: int, repository: str | None, what: str
    ) -> bytes:
        def too_big() -> RegistryError:
            return self._error(
                f"{what} on {self.host} is larger than max_bytes={max_bytes}",
                repository=repository,
            )

        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise too_big()
        chunks: list[bytes] = []
        size = 0

        def late() -> RegistryError:
            return self._error(
                f"{what} from {self.host} did not arrive within {self._transport.body_timeout:g}s "
                f"({size} bytes so far)",
                repository=repository,
            )

        # A socket's read timeout restarts with every byte: a server sending one byte a second
        # would never time out. The transport gives the whole body a deadline of its own and
        # cuts the connection when it passes (a read blocked on a 64 KiB chunk returns then);
        # the check below is the same deadline seen from here.
        deadline = time.monotonic() + self._transport.body_timeout
        try:
            # Counted as it arrives too: Content-Length may be absent (chunked) or encoded.
            for chunk in resp.iter_content(chunk_size=65536):
                size += len(chunk)
                if size > max_bytes:
                    raise too_big()
                if time.monotonic() > deadline:
                    raise late()
                chunks.append(chunk)
        except BodyTimeout as exc:
            raise late() from exc
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, repository, resp.url) from exc
        return b"".join(chunks)

    def _verify_digest(self, body: bytes, digest: str, repository: str, what: str) -> None:
        algorithm, _, expected = digest.partition(":")
        if algorithm not in _HASHES or len(expected) != _HASHES[algorithm]:
            raise self._error(f"unsupported digest {digest} for {what}", repository=repository)
        actual = hashlib.new(algorithm, body).hexdigest()
        if actual != expected:
            raise self._error(
                f"{what} from {self.host} does not match its digest (got {algorithm}:{actual})",
                repository=repository,
            )

    def _check_repository(self, repository: str) -> None:
        if not _REPOSITORY.fullmatch(repository):
            raise self._error(
                f"invalid repository name {repository!r} (lower case, '/'-separated)",
                repository=repository,
            )

    def _check_reference(self, repository: str, reference: str) -> None:
        self._check_repository(repository)
        if not (_TAG.fullmatch(reference) or _DIGEST.fullmatch(reference)):
            raise self._error(f"invalid tag or digest {reference!r} for {repository}", repository=repository)

    def _error(
        self, message: str, *, repository: str | None = None, status: int | None = None
    ) -> RegistryError:
        return RegistryError(
            clip(message),  # redacted before it is cut (redaction.py)
            registry=self.host,
            repository=repository,
            status=status,
        )

    def _unauthorized(self, repository: str | None, sent_credentials: bool) -> RegistryError:
        if sent_credentials or self._username is not None:
            return self._error(
                f"unauthorized: check the credentials for {self.host}",
                repository=repository,
                status=401,
            )
        target = f" to read {repository}" if repository else ""
        return self._error(
            f"unauthorized: {self.host} requires credentials{target}; none were given",
            repository=repository,
            status=401,
        )

    def _denied(self, repository: str | None) -> RegistryError:
        with self._lock:
            withheld = self._withheld
        if withheld is not None:
            target = f"pull of {repository}" if repository else "access"
            return self._error(
                f"unauthorized: {self.host} denied {target} to anonymous access: the credentials for "
                f"{self.host} were not sent to its token service ({withheld})",
                repository=repository,
                status=401,
            )
        who = f"user {self._username}" if self._username else "anonymous access"
        target = f"pull of {repository}" if repository else "access"
        return self._error(
            f"unauthorized: {self.host} denied {target} to {who}: check the credentials for "
            f"{self.host} and that the repository exists",
            repository=repository,
            status=401,
        )

    def _status_error(self, resp: requests.Response, repository: str | None, what: str) -> RegistryError:
        status = resp.status_code
        detail = ""
        if resp.request.method != "HEAD":
            detail = self._error_detail(resp)
        if status == 403:
            message = f"denied: {self.host} refused {what}: check the permissions of the credentials"
        elif status == 429:
            message = (
                f"rate limited by {self.host} (429) on {what} after {self._retries} retries: "
                "retry later or lower the concurrency"
            )
        elif status >= 500:
            message = (
                f"{self.host} failed with {status} on {what} after {self._retries} retries: "
                "the registry is unhealthy, retry later"
            )
        else:
            message = f"{self.host} answered {status} for {what}"
        if detail:
            message += f" ({detail})"
        return self._error(message, repository=repository, status=status)

    def _error_detail(self, resp: requests.Response) -> str:
        """`CODE: message` of the first error in a distribution error body, if any."""
        try:
            raw = resp.raw.read(8192, decode_content=True) if resp.raw is not None else b""
            body = json.loads(raw or resp.content or b"null")
        except (ValueError, requests.exceptions.RequestException, OSError, RuntimeError):
            return ""
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = str(errors[0].get("code", ""))
            text = str(errors[0].get("message", ""))
            return clip(f"{code}: {text}" if code and text else code or text, 160)
        return ""

    def _transport_error(
        self,
        exc: requests.exceptions.RequestException,
        repository: str | None,
        url: str,
        *,
        service: str | None = None,
    ) -> RegistryError:
        target = service or self.host
        if isinstance(exc, GaveUp):
            # Says what timed out, after how many attempts and how long in all, or that the
            # host's budget is spent (mirrorspec.oci.transport); it names the host it waited for.
            message = str(exc) if service is None else f"{service}: {exc}"
        elif isinstance(exc, requests.exceptions.SSLError):
            # The real reason (hostname mismatch, unknown authority, expired...); `insecure` is
            # suggested only when the server answered the handshake in plain HTTP.
            message = explain_tls_failure(str(exc), target) or f"TLS handshake with {target} failed"
        elif _is_timeout(exc):
            # A read that got no byte for a whole timeout, in a body (headers have a deadline).
            message = f"{target} sent no data for {self._timeout:g}s"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            match = _ERRNO.search(str(exc))
            reason = match[1].strip() if match else type(exc).__name__
            message = f"cannot connect to {target}: {reason} ({urlsplit(url).scheme}){attempts_note(exc)}"
        elif isinstance(exc, requests.exceptions.TooManyRedirects):
            message = f"too many redirects from {target}"
        else:
            message = f"request to {target} failed: {type(exc).__name__}"
        return self._error(message, repository=repository)
