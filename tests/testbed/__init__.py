"""A local OCI registry test bed: distribution + a token issuer + skopeo-pushed artifacts.

Importable by pytest fixtures and by demo scripts alike, so nothing here imports pytest.
See research/testbed.md for the verified facts each piece relies on; `faults.FaultProxy`
stands in front of any of these servers (and the emulators) to inject failures.
"""

from __future__ import annotations

from .artifacts import (
    CHART_CONFIG_MEDIA_TYPE,
    CHART_LAYER_MEDIA_TYPE,
    MANIFEST_ACCEPT,
    add_tags,
    chart_archive,
    chart_tag,
    delete_tag,
    push_chart,
    push_image,
    retag,
    run_skopeo,
)
from .faults import KINDS as FAULT_KINDS, FaultProxy, Injected
from .registry import (
    AccessRecord,
    RegistryServer,
    TestbedError,
    access_records,
    missing_tools,
    request_log,
    start_registry,
)
from .tokens import TokenIssuer, TokenRequest, libtrust_key_id

__all__ = [
    "CHART_CONFIG_MEDIA_TYPE",
    "CHART_LAYER_MEDIA_TYPE",
    "FAULT_KINDS",
    "MANIFEST_ACCEPT",
    "AccessRecord",
    "FaultProxy",
    "Injected",
    "RegistryServer",
    "TestbedError",
    "TokenIssuer",
    "TokenRequest",
    "access_records",
    "add_tags",
    "chart_archive",
    "chart_tag",
    "delete_tag",
    "libtrust_key_id",
    "missing_tools",
    "push_chart",
    "push_image",
    "request_log",
    "retag",
    "run_skopeo",
    "start_registry",
]
