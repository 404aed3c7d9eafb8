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
from .oci import RegistryClient
from .spec import Spec

__all__ = ["Endpoint", "RunContext"]


@dataclass(frozen=True)
class Endpoint:
    """How to reach one registry: host, credentials and TLS settings."""

    host: str
    auth: BasicAuth | None = None
    insecure: bool = False
    ca_bundle: str | None = None


AwsClientFactory = Callable[[str, str, "str | None"], Any]


@dataclass
class RunContext:
    """One run's shared state.

    `aws_client(service, region, profile)` builds boto3 clients; tests inject a factory that
    points them at moto and the contract emulators. `registry_overrides` maps a registry
    host to where it is really reached (host and TLS; credentials are kept), so that a
    local docker-registry can stand in for an ECR endpoint in tests.
    """

    spec: Spec
    workers: int = 8
    aws_client_factory: AwsClientFactory | None = None
    registry_overrides: dict[str, Endpoint] = field(default_factory=dict)
    _clients: dict[Endpoint, RegistryClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
        bundle = str((self.spec.base_dir / ca_bundle).resolve()) if ca_bundle else None
        return Endpoint(host, auth, insecure, bundle)

    def source_endpoint(self, host: str) -> Endpoint:
        """The endpoint of an upstream host, with the settings of its `sources:` entry.

        Hosts reached only through Helm dependencies have no entry and are read anonymously.
        """
        wanted = paths.normalize_registry(host)
        for source in self.spec.sources:
            if paths.normalize_registry(source.registry) == wanted:
                return self.reach(
                    self.endpoint(
                        source.registry,
                        credentials=source.credentials,
                        insecure=source.insecure,
                        ca_bundle=source.ca_bundle,
                    )
                )
        return self.reach(Endpoint(host))

    def reach(self, endpoint: Endpoint) -> Endpoint:
        """Where `endpoint` is really reached: an override keeps its credentials."""
        override = self.registry_overrides.get(paths.normalize_registry(endpoint.host))
        if override is None:
            return endpoint
        return replace(override, auth=endpoint.auth or override.auth)

    def aws_client(self, service: str, region: str, profile: str | None = None) -> Any:
        """A boto3 client (standard retry mode: throttling is retried with backoff)."""
        if self.aws_client_factory is not None:
            return self.aws_client_factory(service, region, profile)
        import boto3  # imported here so that specs without AWS targets never pay for it
        from botocore.config import Config

        session = boto3.Session(profile_name=profile, region_name=region)
        return session.client(service, config=Config(retries={"mode": "standard", "max_attempts": 8}))

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
                )
                self._clients[endpoint] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
