"""One TLS context per trust setting for a whole run, so that a CA bundle is loaded once.

urllib3 (2.x, `connection._ssl_wrap_socket_and_match_hostname` and `util/ssl_.ssl_wrap_socket`)
builds a new `SSLContext` for every new connection unless it is given one, and loads into it
the CA file requests names (`ca_certs`, certifi's bundle for `verify=True`), or the system's
certificates when verification is off: about 30 ms of CPU per connection here, the same
bundle parsed again each time. `DeadlineAdapter` hands urllib3 the context from here instead,
built once per run (`Transport.tls`) for each `verify` value the run uses, and keeps requests'
checks (a bundle path that vanished is still reported by `HTTPAdapter.cert_verify`).

A context is only a cache of what urllib3 would have built: `create_urllib3_context` with the
same defaults, the same certificates. Whatever cannot be loaded here (a missing or malformed
bundle) is left to urllib3, so that its error, and so the message the user sees, is unchanged.

A shared context must not change once connections are made from it, but urllib3 writes to the
context it is given on every new connection: `set_alpn_protocols(["http/1.1"])` (util/ssl_.py
`ssl_wrap_socket`) and `verify_mode` (connection.py `_ssl_wrap_socket_and_match_hostname`).
OpenSSL does not serialise an `SSL_CTX` change against `SSL_new` ("should not be changed after
it is used to create any SSL objects or from multiple threads concurrently", SSL_CTX_new(3)),
and CPython runs `SSL_new` without the GIL, so one thread's ALPN reset frees the list another
thread's `SSL_new` is copying (python/cpython#141012, urllib3/urllib3#3036). The ClientHello
then carries garbage, and a Go registry answers "unexpected message": a TLS handshake failure
seen once in CI. So a context here is `_Settled`: built with urllib3's ALPN list and
verification mode, and after that a write of the same value is a no-op and a different one an
error, never a change.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterable

import requests.adapters
from urllib3.util.ssl_ import ALPN_PROTOCOLS, create_urllib3_context

__all__ = ["TlsContexts"]


class TlsContexts:
    """`for_verify(verify)`: the run's context for requests' `verify` value; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[bool | str, ssl.SSLContext | None] = {}

    def for_verify(self, verify: bool | str) -> ssl.SSLContext | None:
        """The shared context for `verify` (False, True or a CA file or directory), or None
        when it cannot be built here (urllib3 then builds one per connection, as without it)."""
        # `verify=True` means the bundle requests' adapter names at the time of the request
        # (`HTTPAdapter.cert_verify` reads `requests.adapters.DEFAULT_CA_BUNDLE_PATH`).
        key = requests.adapters.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
        with self._lock:
            if key not in self._contexts:
                self._contexts[key] = _build(key)
            return self._contexts[key]


class _Settled(ssl.SSLContext):
    """A context whose ALPN list and verification mode no longer change once `settle` ran:
    writing the value it has is a no-op (what urllib3 does per connection), another value is a
    `ValueError`. Other settings are only written while it is built."""

    _alpn: list[str] | None = None  # the list set by `settle`

    def settle(self) -> None:
        super().set_alpn_protocols(ALPN_PROTOCOLS)
        self._alpn = list(ALPN_PROTOCOLS)

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        wanted = list(alpn_protocols)
        if self._alpn is None:
            super().set_alpn_protocols(wanted)
        elif wanted != self._alpn:
            raise ValueError(f"a shared TLS context keeps its ALPN protocols {self._alpn}, not {wanted}")

    # typeshed declares a plain attribute (VerifyMode here, int on _SSLContext)
    @property  # type: ignore[override]
    def verify_mode(self) -> ssl.VerifyMode:
        return super().verify_mode

    @verify_mode.setter
    def verify_mode(self, value: ssl.VerifyMode) -> None:
        if self._alpn is None:
            ssl.SSLContext.verify_mode.__set__(self, value)  # type: ignore[attr-defined]  # a property
        elif value != self.verify_mode:
            raise ValueError(f"a shared TLS context keeps its verification mode {self.verify_mode!r}")


def _build(location: bool | str) -> ssl.SSLContext | None:
    if location is False:
        context = create_urllib3_context(cert_reqs=ssl.CERT_NONE)
        context.check_hostname = False
        # urllib3 would also load the system's certificates into it: useless without checks.
        return _settled(context)
    if not isinstance(location, str) or not os.path.exists(location):
        return None
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    try:
        if os.path.isdir(location):
            context.load_verify_locations(capath=location)
        else:
            context.load_verify_locations(cafile=location)
    except (OSError, ValueError):  # ssl.SSLError included: a file that is no PEM bundle
        return None
    return _settled(context)


def _settled(context: ssl.SSLContext) -> _Settled:
    # urllib3 has no way to make its context of another class; `_Settled` adds no state to
    # the C object, so the instance can change class in place.
    context.__class__ = _Settled
    assert isinstance(context, _Settled)
    context.settle()
    return context
