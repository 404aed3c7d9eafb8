from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# --- registry test bed fixtures (tests/testbed; facts in research/testbed.md) ---------------
from testbed import RegistryServer, missing_tools, start_registry

from mirrorspec import redaction


@pytest.fixture(autouse=True)
def _secrets_stay_in_their_test() -> Iterator[None]:
    """Every value a test registers for redaction is forgotten when it ends. The registry is
    per process, as it must be for one CLI run; across tests it leaked: a hostile token
    server's token `anonymous` made a later test's message read `denied pull ... to ***
    access`, so that test failed only after the other ran."""
    yield
    redaction.forget_secrets()


ALICE = ("alice", "wonderland-pw")


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not found on PATH: run `make setup`", pytrace=False)


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Plain HTTP, no auth."""
    _require_tools()
    with start_registry(tmp_path_factory.mktemp("plain-registry")) as server:
        yield server


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """HTTPS with a trustme CA (`server.ca_file`) and htpasswd user alice/wonderland-pw."""
    _require_tools()
    workdir = tmp_path_factory.mktemp("tls-registry")
    with start_registry(workdir, tls=True, users=dict([ALICE])) as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Plain HTTP with token auth (`server.token_issuer`); alice gets pull/push/delete,
    anonymous gets nothing."""
    _require_tools()
    workdir = tmp_path_factory.mktemp("token-registry")
    with start_registry(workdir, token=True, users=dict([ALICE])) as server:
        yield server


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., RegistryServer]]:
    """`registry_factory(**start_registry_kwargs)` → a fresh registry, stopped at teardown."""
    _require_tools()
    started: list[RegistryServer] = []

    def start(**kwargs: Any) -> RegistryServer:
        server = start_registry(tmp_path / f"registry-{len(started)}", **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- end of registry test bed fixtures ----------------------------------------------------
