"""What one run shares: the spec, registry endpoints and their clients, worker count.

Passed to providers as `ctx` so that tests point a run at local registries or emulators by
constructing a context, never by patching SDKs (STYLE §11). Clients are cached per
endpoint for the run, so the resolver, the planner and the auditor reuse connections and
bearer tokens.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import paths
from .credentials import BasicAuth, register_environment_secrets, resolve_basic_auth
from .errors import MirrorspecError
from .oci.defaults import DEFAULT_TIMEOUT
from .oci.read_limit import DEFAULT_READS
from .spec import Spec, TargetBase, check_ca_bundle

if TYPE_CHECKING:
    from .oci import RegistryClient, Transport

__all__ = ["ClientFactory", "Endpoint", "RunContext"]


@dataclass(frozen=True)
class Endpoint:
    """How to reach one registry: host, credentials and TLS settings.

    `layout`: an OCI image layout directory (absolute) standing where a registry would
    (`type: oci-layout`); `host` is then only the name plans show for it. Or an `oci-layout:`
    source's directory: `host` is then its stand-in host (`paths.layout_host`), and its client
    reads the directory (`layout_source.LayoutClient`)."""

    host: str
    auth: BasicAuth | None = None
    insecure: bool = False
    ca_bundle: str | None = None
    layout: str | None = None


# Builds one service client (a cloud SDK's client or credential): `factory(ctx, *args)` for
# `ctx.service_client(kind, *args)`. Providers declare theirs by kind in `CLIENT_FACTORIES`.
ClientFactory = Callable[..., Any]


@dataclass
class RunContext:
    """One run's shared state.

    `service_client(kind, *args)` hands out the clients a provider talks to its cloud with
    (an SDK client, a token credential), built by the factory the provider declares for that
    kind (`CLIENT_FACTORIES`, see `providers.base`); tests inject their own in
    `client_factories` to point them at moto and the contract emulators. `registry_overrides`
    maps a registry host to where it is really reached (host and TLS; credentials are kept),
    so that a local docker-registry can stand in for a provider's registry in tests.

    `timeout` (the CLI's `--timeout`) bounds every HTTP request of the run through one
    `transport`: connect + TLS + response headers within it, a body within 10 times it, and a
    host that answers nothing useful for 4 times it is given up for the rest of the run
    (`mirrorspec.oci.transport`).

    `workers` (`--workers`) bounds skopeo copies; registry reads (tag lists, HEADs, small
    blobs) have their own limit per registry, starting at `reads` (`--reads`) and adapting
    to the registry's answers (`mirrorspec.oci.read_limit`).
    """

    spec: Spec
    workers: int = 8
    reads: int = DEFAULT_READS
    # kind -> factory, used instead of the one a provider declares (tests, embedding tools).
    client_factories: dict[str, ClientFactory] = field(default_factory=dict)
    registry_overrides: dict[str, Endpoint] = field(default_factory=dict)
    # Re-send upstream secrets a registry cannot show back (some registries mask them on read).
    rotate_credentials: bool = False
    timeout: float = DEFAULT_TIMEOUT
    transport: Transport = field(init=False, repr=False)
    _clients: dict[Endpoint, RegistryClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _sources: dict[str, Endpoint] = field(default_factory=dict, repr=False)
    _services: dict[tuple[Hashable, ...], Any] = field(default_factory=dict, repr=False)
    # Reentrant: a factory may ask for another service client (a client for its credential).
    _services_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.transport = _oci("Transport")(self.timeout, self.reads)
        # Before any SDK client exists: what it reads from the environment is scrubbed from
        # everything it, or a server answering it, might echo.
        register_environment_secrets()

    def endpoint(
        self,
        host: str,
        *,
        credentials: str | None = None,
        insecure: bool = False,
        ca_bundle: str | None = None,
    ) -> Endpoint:
        """An endpoint with credentials read now and `ca-bundle` made absolute."""
        auth = resolve_basic_auth(self.spec, credentials) if credentials else None
        # Checked again here, just before a client uses it (a library caller may never have
        # called load_spec, and the file may have changed since): requests would crash on a
        # missing path ("Could not find a suitable TLS CA certificate bundle") and block on a FIFO.
        bundle = check_ca_bundle(self.spec, ca_bundle) if ca_bundle else None
        return Endpoint(host, auth, insecure, bundle)

    def source_endpoint(self, host: str) -> Endpoint:
        """The endpoint of an upstream host, with the settings of its `sources:` entry.

        Hosts reached only through Helm dependencies have no entry and are read anonymously.
        """
        wanted = paths.normalize_registry(host)
        # Asked once per tag listing and per digest: resolving credentials and the CA path
        # each time showed up in profiles of large plans (bench B3).
        with self._lock:
            cached = self._sources.get(wanted)
        if cached is not None:
            return cached
        endpoint = self.reach(Endpoint(host))
        for source in self.spec.sources:
            if source.oci_layout is not None and source.registry == wanted:
                # Not `reach`ed: a directory has no registry to stand in for.
                endpoint = Endpoint(wanted, layout=str((self.spec.base_dir / source.oci_layout).absolute()))
                break
            if paths.normalize_registry(source.registry) == wanted:
                endpoint = self.reach(
                    self.endpoint(
                        source.registry,
                        credentials=source.credentials,
                        insecure=source.insecure,
                        ca_bundle=source.ca_bundle,
                    )
                )
                break
        with self._lock:
            return self._sources.setdefault(wanted, endpoint)

    def reach(self, endpoint: Endpoint) -> Endpoint:
        """Where `endpoint` is really reached: an override keeps its credentials."""
        override = self.registry_overrides.get(paths.normalize_registry(endpoint.host))
        if override is None:
            return endpoint
        return replace(override, auth=endpoint.auth or override.auth)

    def service_client(self, kind: str, *args: Any) -> Any:
        """The `kind` client for `args`, one for the whole run: building an SDK client loads
        its service model and resolves credentials, tens of milliseconds each time, and a
        credential caches its tokens. Built by `client_factories[kind]` if given, else by the
        factory an installed provider declares in `CLIENT_FACTORIES`. A spec target among
        `args` counts by its name (unique in the spec; the model itself is not hashable)."""
        key = (kind, *(("target", a.name) if isinstance(a, TargetBase) else a for a in args))
        with self._services_lock:
            if key not in self._services:
                factory = self.client_factories.get(kind) or _declared_factory(kind)
                self._services[key] = factory(self, *args)
            return self._services[key]

    def client(self, endpoint: Endpoint) -> RegistryClient:
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None and endpoint.layout is not None:
                from .layout_source import LayoutClient  # not at import: `validate` reads none

                client = self._clients[endpoint] = LayoutClient(endpoint.host, endpoint.layout)
            if client is None:
                # The client's pool of connections follows its host's reads limit (its
                # ceiling), not `workers`: a smaller pool opens and drops one per extra read.
                client = _oci("RegistryClient")(
                    endpoint.host,
                    username=endpoint.auth.username if endpoint.auth else None,
                    password=endpoint.auth.password if endpoint.auth else None,
                    insecure=endpoint.insecure,
                    ca_bundle=endpoint.ca_bundle,
                    timeout=self.timeout,
                    transport=self.transport,
                )
                self._clients[endpoint] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        with self._services_lock:
            for service in self._services.values():
                close = getattr(service, "close", None)
                if close is not None:
                    close()
            self._services.clear()


# The registry client and its transport are loaded at first use (PEP 562), as `oci` itself does:
# every provider imports this module, and so does `validate`, which makes no request, and
# `requests` with urllib3 costs ≈ 80 ms of its start-up (bench/run.py, B5). They stay names
# of this module, which a test may replace (`monkeypatch.setattr(context, "RegistryClient", …)`).
def __getattr__(name: str) -> Any:
    if name not in ("RegistryClient", "Transport"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import oci

    value = getattr(oci, name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def _oci(name: str) -> Any:
    """`RegistryClient` or `Transport` as this module holds it now (loaded by `__getattr__`)."""
    return getattr(sys.modules[__name__], name)


def _declared_factory(kind: str) -> ClientFactory:
    """The factory an installed provider declares for `kind` (the first, by type name)."""
    from . import providers  # not at import: providers import this module

    for _, factories in providers.declared("CLIENT_FACTORIES"):
        if kind in factories:
            return factories[kind]  # type: ignore[no-any-return]
    raise MirrorspecError(f"no installed provider builds '{kind}' clients")
