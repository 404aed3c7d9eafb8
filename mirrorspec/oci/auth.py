"""Registry authentication: `WWW-Authenticate` challenges, basic credentials and bearer tokens.

Registry behaviour that shaped this module (sources in the research notes):

- Token auth (research/sync.md §5, testbed.md §4.2/§4.5): the realm may answer `token` or
  `access_token`, `expires_in` defaults to 60 s, and distribution lists the actions of a scope in
  random order (Go map iteration), so scopes are compared as sets.
- A token answer is untrusted input: it is read with a limit (1 MiB) and its `expires_in` is
  capped at a day.
- The first request to a registry goes alone: its 401 (if any) teaches the scheme and the
  bearer realm, and the threads waiting behind it then send credentials (or fetch a token for
  their own scope, once per scope) up front instead of each taking a 401 of its own.
- Credentials go to a token realm only on the registry's own host or under its parent domain
  (auth.docker.io for registry-1.docker.io), over https; otherwise the token is requested
  anonymously and any resulting error says why (`_realm_refusal`).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from ..errors import RegistryError
from ..redaction import clip, register_secret
from .errors import ErrorMapper
from .session import RegistrySession

__all__ = ["RegistryAuth"]

log = logging.getLogger(__name__)

_DEFAULT_TOKEN_TTL = 60  # token.md: "defaults to 60 seconds" when expires_in is absent
# A token answer is a JSON object with a JWT of a few KB.
_MAX_TOKEN_BYTES = 1 << 20
_MAX_TOKEN_TTL = 86_400
# RFC 7230 token characters; token68 adds '/', '+' and trailing '='.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_CHARS = _TOKEN_CHARS | frozenset("/+=")


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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class RegistryAuth:
    """Credentials for one registry, and what its challenges taught: basic or bearer, the
    realm, tokens per scope. Safe to share between threads; a password is registered as a
    secret (`redaction`) so that no message or log line shows it."""

    def __init__(
        self,
        *,
        username: str | None,
        password: str | None,
        session: RegistrySession,
        errors: ErrorMapper,
    ) -> None:
        self.host = errors.host
        self.api_host = session.api_host
        self._username = username
        self._password = password
        self._session = session
        self._errors = errors
        self._lock = threading.Lock()
        self._scope_locks: dict[str, threading.Lock] = {}
        self._auth_kind: str | None = None  # "basic" or "bearer", learned from a challenge
        self._bearer: _Challenge | None = None  # last realm/service seen, for later scopes
        self._tokens: dict[str, _Token] = {}
        # Set once the first request has taught the scheme (or that none is asked for); until
        # then one request goes ahead and the others wait for what it learns (`_first`).
        self._learnt = threading.Event()
        self._probing = False
        if password:
            register_secret(password)
        self._withheld: str | None = None  # why credentials were not sent to the token realm

    def request(
        self,
        method: str,
        path: str,
        *,
        repository: str | None,
        accept: str,
        extra_headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        actions: str = "pull",
    ) -> requests.Response:
        """One logical request: anonymous or cached credentials first, then answer challenges.
        `body` is sent again with each answer to a challenge; `actions` is the scope's
        (`pull,push` for a write, so that its token is fetched up front, not after a 401).

        Returns any non-401 response; the caller judges the status and must close it.
        """
        base_scope = f"repository:{repository}:{actions}" if repository else ""
        authorization = self._known_authorization(base_scope)
        if authorization is not None or self._learnt.is_set():
            return self._answer(
                method, path, repository, accept, extra_headers, authorization, body, base_scope
            )
        if not self._first():
            # Another thread is asking first: its 401 teaches the scheme (and a bearer realm)
            # to all. Without the wait, every thread of a run's first wave takes a 401 of its
            # own (8 with 8 workers). Its request is bounded by the transport; if it takes
            # longer than a timeout, go ahead as before.
            self._learnt.wait(self._session.timeout)
            authorization = self._known_authorization(base_scope)
            return self._answer(
                method, path, repository, accept, extra_headers, authorization, body, base_scope
            )
        try:
            return self._answer(method, path, repository, accept, extra_headers, None, body, base_scope)
        finally:
            self._learnt.set()  # whatever it learnt, or that nothing is asked for, or failure

    def _first(self) -> bool:
        """Whether this thread is the one to ask first (no other is asking now)."""
        with self._lock:
            if self._probing or self._learnt.is_set():
                return False
            self._probing = True
            return True

    def _answer(
        self,
        method: str,
        path: str,
        repository: str | None,
        accept: str,
        extra_headers: Mapping[str, str] | None,
        authorization: str | None,
        body: bytes | None,
        base_scope: str,
    ) -> requests.Response:
        """`request` from `authorization` on: send it, answer the challenges."""
        headers = {"Accept": accept, **(extra_headers or {})}
        sent_scope = base_scope if authorization else None
        refreshed = False
        tried: set[str] = set()
        for _ in range(4):
            if authorization:
                headers["Authorization"] = authorization
            resp = self._session.exchange(method, path, headers, repository, body)
            if resp.status_code != 401:
                return resp
            challenge_header = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            challenge = self._pick_challenge(challenge_header)
            if challenge is None:
                raise self._errors.unauthorized(repository, authorization is not None)
            if challenge.scheme == "basic":
                if authorization is not None and authorization.startswith("Basic "):
                    raise self._errors.unauthorized(repository, True)
                authorization = self._basic_authorization(repository)
                with self._lock:
                    self._auth_kind = "basic"
                self._learnt.set()
                continue
            scope = _normalize_scope(challenge.params.get("scope", ""))
            with self._lock:
                self._auth_kind = "bearer"
                self._bearer = challenge
            self._learnt.set()  # the others fetch tokens for their own scopes now
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
        registry_scheme = self._session.scheme
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
            raise self._errors.unauthorized(repository, False)
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
            resp = self._session.send_raw("GET", url, headers)
        except requests.exceptions.RequestException as exc:
            raise self._errors.transport(exc, None, realm, service=f"token service {realm_host}") from exc
        with resp:
            if resp.status_code in (401, 403) and withheld is not None:
                raise self._errors.error(
                    f"unauthorized: the credentials for {self.host} were not sent to its token service "
                    f"({withheld}), and it refused anonymous access",
                    status=resp.status_code,
                )
            if resp.status_code in (401, 403):
                raise self._errors.error(
                    f"unauthorized: check the credentials for {self.host} "
                    f"(token service {realm_host} rejected them)",
                    status=resp.status_code,
                )
            if resp.status_code != 200:
                raise self._errors.error(
                    f"token service {realm_host} for {self.host} answered {resp.status_code}",
                    status=resp.status_code,
                )
            raw = self._session.read_limited(resp, _MAX_TOKEN_BYTES, None, f"the token from {realm_host}")
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        token = None
        if isinstance(body, dict):
            token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise self._errors.error(f"token service {realm_host} for {self.host} returned no token")
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

    def _denied(self, repository: str | None) -> RegistryError:
        with self._lock:
            withheld = self._withheld
        return self._errors.denied(repository, withheld)
