"""A RunContext for the ACR provider against the emulator (shared by the fidelity tests)."""

from __future__ import annotations

from typing import Any

from emulators.acr import AcrEmulator
from testbed import RegistryServer

from mirrorspec.context import Endpoint, RunContext
from mirrorspec.providers.acr.clients import AZURE_CREDENTIAL, AZURE_MANAGEMENT

SUB = "00000000-0000-0000-0000-000000000000"


def acr_context(
    emu: AcrEmulator, spec: Any, upstream: RegistryServer, *, also: tuple[str, ...] = ()
) -> RunContext:
    """The emulator's ARM client and credential; docker.io and quay.io served by `upstream`; the
    login server of every target registry reached over its HTTPS front; `also` names more
    upstream hosts `upstream` stands in for."""
    plain = Endpoint(upstream.host, insecure=True)
    overrides = {host: plain for host in ("docker.io", "quay.io", *also)}
    for target in spec.targets:
        name = target.registry
        overrides[f"{name.lower()}.azurecr.io"] = Endpoint(emu.login_host(name), ca_bundle=str(emu.ca_file))
    return RunContext(
        spec,
        client_factories={
            AZURE_MANAGEMENT: lambda ctx, subscription, target: emu.client(subscription),
            AZURE_CREDENTIAL: lambda ctx, target: emu.credential,
        },
        registry_overrides=overrides,
    )
