"""A token issuer (the `realm` of distribution's `auth: token`) that the testbed runs itself.

Distribution 2.8.2 only trusts keys from `auth.token.rootcertbundle`, and finds the signing key
of a JWT by its `kid`, which must be the *libtrust* key ID (not an RFC 7638 thumbprint), upper
case. It also wants `aud` as a plain string and integer `exp`/`nbf` (research/testbed.md §4.3,
§4.4). The issuer here signs ES256 with a self-signed certificate that goes into the bundle.

The realm protocol follows research/testbed.md §4.5: `GET /token?service=…&scope=…[&scope=…]`
with optional basic auth; the answer carries both `token` and `access_token`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .server import Handler, HttpServerBase, reply

__all__ = ["TokenIssuer", "TokenRequest", "libtrust_key_id"]

# Actions the issuer ever grants on a repository; a real issuer would consult an ACL.
_USER_ACTIONS = frozenset({"pull", "push", "delete"})


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key ID distribution 2.8 matches `kid` against (research/testbed.md §4.3)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclass(frozen=True)
class TokenRequest:
    """One request the realm answered; tests count these to prove token reuse."""

    user: str | None  # None = anonymous
    scopes: tuple[str, ...]
    status: int
    granted: tuple[dict[str, Any], ...] = ()


class TokenIssuer(HttpServerBase[TokenRequest]):
    """A threaded realm on 127.0.0.1 (GET only). Use `start()`/`stop()` or `with`."""

    def __init__(
        self,
        users: dict[str, str],
        bundle_path: Path,
        anonymous_pull: bool = False,
        service: str = "testbed-registry",
        issuer: str = "testbed-issuer",
        ttl: int = 300,
    ) -> None:
        super().__init__(name="testbed-token-issuer", methods=("GET",))
        self.users = users
        self.bundle_path = bundle_path
        self.anonymous_pull = anonymous_pull
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self._invalid_left = 0
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.key_id = libtrust_key_id(self._key.public_key())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "testbed token signer")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(self._key, hashes.SHA256())
        )
        self.bundle_path.parent.mkdir(parents=True, exist_ok=True)
        self.bundle_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        if not self.started:
            raise RuntimeError("token issuer not started")
        return f"{self.url}/token"

    # -- test controls ---------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def issue_invalid(self, count: int = 1) -> None:
        """Make the next `count` tokens unacceptable to the registry (wrong audience), so
        that tests can provoke `error="invalid_token"`."""
        with self._lock:
            self._invalid_left = count

    # -- tokens ----------------------------------------------------------------------------

    def mint(self, subject: str | None, access: Iterable[dict[str, Any]]) -> str:
        """Sign a token directly, bypassing the realm (and its request counter)."""
        return self._sign(subject, list(access), audience=self.service)

    def grant(self, user: str | None, scopes: Iterable[str]) -> list[dict[str, Any]]:
        """The access entries a (possibly anonymous) user gets for the requested scopes."""
        access: list[dict[str, Any]] = []
        for scope in scopes:
            for item in scope.split():
                parsed = _parse_scope(item)
                if parsed is None:
                    continue
                kind, name, actions = parsed
                if kind == "repository":
                    allowed = (
                        _USER_ACTIONS
                        if user
                        else (frozenset({"pull"}) if self.anonymous_pull else frozenset())
                    )
                    granted = sorted(actions & allowed)
                elif kind == "registry" and name == "catalog" and user:
                    granted = sorted(actions & {"*"})
                else:
                    granted = []
                if granted:
                    access.append({"type": kind, "name": name, "actions": granted})
        return access

    def _sign(self, subject: str | None, access: list[dict[str, Any]], *, audience: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": audience,  # a string: 2.8 cannot unmarshal a list here
            "exp": now + self.ttl,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.key_id})

    def handle(self, handler: Handler) -> None:
        parts = urlsplit(handler.path)
        if parts.path != "/token":
            status, body = 404, b'{"details":"not found"}'
        else:
            status, body = self._answer(handler.headers.get("Authorization"), parse_qs(parts.query))
        reply(handler, status, [("Content-Type", "application/json")], body)

    def _answer(self, authorization: str | None, query: dict[str, list[str]]) -> tuple[int, bytes]:
        scopes = tuple(query.get("scope", []))
        user: str | None = None
        if authorization:
            user = _check_basic(authorization, self.users)
            if user is None:
                with self._lock:
                    self.requests.append(TokenRequest(None, scopes, 401))
                body = {"details": "invalid username/password"}
                return 401, json.dumps(body).encode()
        access = self.grant(user, scopes)
        with self._lock:
            audience = self.service
            if self._invalid_left > 0:
                self._invalid_left -= 1
                audience = "not-" + self.service
            self.requests.append(TokenRequest(user, scopes, 200, tuple(access)))
        token = self._sign(user, access, audience=audience)
        issued = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body2 = {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued}
        return 200, json.dumps(body2).encode()


def _parse_scope(scope: str) -> tuple[str, str, frozenset[str]] | None:
    # The name may itself contain ':' (host:port), so split from both ends.
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return kind, name, frozenset(a for a in actions.split(",") if a)


def _check_basic(authorization: str, users: dict[str, str]) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = users.get(user)
    if expected is None or not secrets.compare_digest(expected, password):
        return None
    return user
