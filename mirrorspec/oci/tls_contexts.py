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
"""

from __future__ import annotations

import os
import ssl
import threading

import requests.adapters
from urllib3.util.ssl_ import create_urllib3_context

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


def _build(location: bool | str) -> ssl.SSLContext | None:
    if location is False:
        context = create_urllib3_context(cert_reqs=ssl.CERT_NONE)
        context.check_hostname = False
        # urllib3 would also load the system's certificates into it: useless without checks.
        return context
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
    return context
