"""What one run shares: the spec, registry endpoints and their clients, worker count.

Passed to providers as `ctx` so that tests point a run at local registries or emulators by
constructing a context, never by patching SDKs (STYLE §11). Clients are cached per
endpoint for the run, so the resolver, the planner and the auditor reuse connections and
bearer tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import paths
from .credentials import BasicAuth, resolve_basic_auth
from .oci import DEFAULT_TIMEOUT, RegistryClient, Transport
from .optional_sdk import import_sdk
from .spec import Spec, check_ca_bundle

__all__ = ["ACR_API_VERSION", "Endpoint", "RunContext"]


@dataclass(frozen=True)
class Endpoint:
    """How to reach one registry: host, credentials and TLS settings."""

    host: str
    auth: BasicAuth | None = None
    insecure: bool = False
    ca_bundle: str | None = None


AwsClientFactory = Callable[[str, str, "str | None"], Any]
# (subscription, AcrTarget) -> ContainerRegistryManagementClient; AcrTarget -> TokenCredential
AzureClientFactory = Callable[[str, Any], Any]
AzureCredentialFactory = Callable[[Any], Any]
# The ACR management API version mirrorspec speaks: the official spec at hand
# (shared/azure/containerregistry-2023-07-01.json), which the test emulator validates against.
ACR_API_VERSION = "2023-07-01"


@dataclass
class RunContext:
    """One run's shared state.

    `aws_client(service, region, profile)` builds boto3 clients; tests inject a factory that
    points them at moto and the contract emulators. `registry_overrides` maps a registry
    host to where it is really reached (host and TLS; credentials are kept), so that a
    local docker-registry can stand in for an ECR endpoint in tests.

    `azure_credential(target)` and `azure_client(subscription, target)` do the same for
    Azure: `DefaultAzureCredential` (narrowed by the target's tenant / client id) and a
    `ContainerRegistryManagementClient` pinned to `ACR_API_VERSION`; tests inject factories
    that point them at the ARM contract emulator.

    `timeout` (the CLI's `--timeout`) bounds every HTTP request of the run through one
    `transport`: connect + TLS + response headers within it, a body within 10 times it, and a
    host that answers nothing useful for 4 times it is given up for the rest of the run
    (`mirrorspec.oci.transport`).
    """

    spec: Spec
    workers: int = 8
    aws_client_factory: AwsClientFactory | None = None
    azure_client_factory: AzureClientFactory | None = None
    azure_credential_factory: AzureCredentialFactory | None = None
    registry_overrides: dict[str, Endpoint] = field(default_factory=dict)
    # Re-send upstream secrets a registry cannot show back (Harbor masks them on read).
    rotate_credentials: bool = False
    timeout: float = DEFAULT_TIMEOUT
    transport: Transport = field(init=False, repr=False)
    _clients: dict[Endpoint, RegistryClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _sources: dict[str, Endpoint] = field(default_factory=dict, repr=False)
    _azure: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _aws: dict[tuple[str, str, str | None], Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.transport = Transport(self.timeout)

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

    def aws_client(self, service: str, region: str, profile: str | None = None) -> Any:
        """A boto3 client (standard retry mode: throttling is retried with backoff), one per
        service, region and profile for the run: building a session and client loads the
        service model and resolves credentials, tens of milliseconds each time."""
        if self.aws_client_factory is not None:
            return self.aws_client_factory(service, region, profile)
        with self._lock:
            key = (service, region, profile)
            if key not in self._aws:
                # Imported here so that specs without AWS targets never need it (an extra).
                boto3 = import_sdk("boto3", extra="aws", what="the AWS SDK for ecr targets")
                botocore_config = import_sdk("botocore.config", extra="aws", what="the AWS SDK")

                # Sessions are not thread-safe, clients are: one session per client, built here.
                session = boto3.Session(profile_name=profile, region_name=region)
                config = botocore_config.Config(retries={"mode": "standard", "max_attempts": 8})
                self._aws[key] = session.client(service, config=config)
            return self._aws[key]

    def azure_credential(self, target: Any) -> Any:
        """The Azure token credential for an `acr` target, one per target for the run."""
        with self._lock:
            key = ("credential", target.name)
            if key not in self._azure:
                if self.azure_credential_factory is not None:
                    self._azure[key] = self.azure_credential_factory(target)
                else:
                    # Only for specs with acr targets (an extra).
                    identity = import_sdk(
                        "azure.identity", extra="azure", what="the Azure SDK for acr targets"
                    )

                    tenant = target.tenant_id
                    options: dict[str, Any] = {
                        "managed_identity_client_id": target.client_id,
                        "workload_identity_tenant_id": tenant,
                        "interactive_browser_tenant_id": tenant,
                        "shared_cache_tenant_id": tenant,
                        "visual_studio_code_tenant_id": tenant,
                    }
                    self._azure[key] = identity.DefaultAzureCredential(
                        **{k: v for k, v in options.items() if v is not None}
                    )
            return self._azure[key]

    def azure_client(self, subscription: str, target: Any) -> Any:
        """A ContainerRegistryManagementClient for `subscription`, speaking `ACR_API_VERSION`
        (its retry policy backs off on throttling and honours Retry-After)."""
        credential = self.azure_credential(target)
        with self._lock:
            key = (subscription, target.name)
            if key not in self._azure:
                if self.azure_client_factory is not None:
                    self._azure[key] = self.azure_client_factory(subscription, target)
                else:
                    acr_sdk = import_sdk(
                        "azure.mgmt.containerregistry", extra="azure", what="the Azure SDK for acr targets"
                    )
                    self._azure[key] = acr_sdk.ContainerRegistryManagementClient(
                        credential, subscription, api_version=ACR_API_VERSION, polling_interval=5
                    )
            return self._azure[key]

    def client(self, endpoint: Endpoint) -> RegistryClient:
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                client = RegistryClient(
                    endpoint.host,
                    username=endpoint.auth.username if endpoint.auth else None,
                    password=endpoint.auth.password if endpoint.auth else None,
                    insecure=endpoint.insecure,
                    ca_bundle=endpoint.ca_bundle,
                    pool_size=max(self.workers, 4),
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
            for azure in self._azure.values():
                close = getattr(azure, "close", None)
                if close is not None:
                    close()
            self._azure.clear()
