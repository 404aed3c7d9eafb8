"""Nothing hangs: every request has a total deadline that a drip cannot reset, retries add up to
what the message says, and a host that stops answering is given up after a budget
(`mirrorspec/oci/transport.py`).

Against servers that stall below the HTTP layer (`tests/testbed/stall.py`): response headers
or a body dripped one byte at a time, a host that accepts and never answers. Through the real
CLI (`mirrorspec --timeout N plan`) for the registry client and Harbor, and through the real
provider code with the ACR emulator for ACR's token exchange (its ARM side cannot be reached
from a subprocess). Times are asserted with generous upper bounds only: what must hold is that
the wait is bounded by `--timeout`, never near the unbounded or 3-minute waits of before, and
that the message's own figure is no smaller than the time really spent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from emulators.acr import TOKEN_USER, AcrEmulator
from testbed import RegistryServer, push_image
from testbed.stall import StallServer
from testbed.tlsfront import Certificates, certificates, server_context

from mirrorspec import RunContext, parse_spec
from mirrorspec.context import Endpoint
from mirrorspec.errors import ProviderError, RegistryError
from mirrorspec.oci.transport import _retry_after
from mirrorspec.providers import acr
from mirrorspec.providers.acr.clients import AZURE_CREDENTIAL, AZURE_MANAGEMENT

MIRRORSPEC = Path(sys.executable).with_name("mirrorspec")
IN_ALL = re.compile(r"; (\d+) attempts, (\d+(?:\.\d+)?)s in all\)")

SPEC = """\
version: 1
sources:
  - registry: {host}
{tls}    repositories:
{repositories}targets:
  - name: lab
    type: registry
    registry: {host}
{tls}    prefix: mirror
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def stall() -> Iterator[Callable[..., StallServer]]:
    """`stall(mode, **options)`: a started `StallServer`, stopped at teardown."""
    started: list[StallServer] = []

    def start(*args: Any, **kwargs: Any) -> StallServer:
        started.append(StallServer(*args, **kwargs).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def write_spec(path: Path, host: str, *, tls: str, repositories: int = 1) -> Path:
    names = "".join(f"      - name: team/app{i}\n        all-tags: true\n" for i in range(repositories))
    path.write_text(SPEC.format(host=host, tls=tls, repositories=names), encoding="utf-8")
    return path


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The real CLI in a subprocess; returns it and its wall-clock time."""
    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    began = time.monotonic()
    proc = subprocess.run(
        [str(MIRRORSPEC), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    return proc, time.monotonic() - began


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def honest(line: str, wall: float, *, attempts: int, timeout: float) -> float:
    """The message's "N attempts, Xs in all": N as expected, X at least N timeouts, and no
    more time really spent than X plus the CLI's own start-up (generous: a busy machine)."""
    match = IN_ALL.search(line)
    assert match, line
    assert int(match[1]) == attempts, line
    stated = float(match[2])
    assert stated >= attempts * timeout * 0.95, line
    assert wall >= stated - 0.1, (wall, line)
    assert wall < stated + 20, (wall, line)
    return stated


# --- registry client, through `plan` ----------------------------------------------------------


def test_headers_dripped_a_byte_a_second_end_within_the_timeout(
    stall: Callable[..., StallServer], tmp_path: Path
) -> None:
    """The old client waited forever: its read timeout restarted with each header byte."""
    server = stall("headers", interval=1.0)  # a byte a second, inside the 2s of a socket timeout
    spec = write_spec(tmp_path / "spec.yaml", server.host, tls="    insecure: true\n")
    proc, wall = run_cli("--timeout", "2", "plan", str(spec))
    line = one_error_line(proc)
    assert f"no answer from {server.host} within 2s (response headers; 3 attempts" in line, line
    honest(line, wall, attempts=3, timeout=2)
    assert wall < 30  # --timeout 2: three attempts of 2s, not forever
    assert len(server.accepted) >= 3  # https probe (refused as plain HTTP) + 3 attempts


def test_a_body_dripped_a_byte_at_a_time_ends_at_the_body_deadline(
    stall: Callable[..., StallServer], tmp_path: Path
) -> None:
    server = stall("body", interval=0.05)
    spec = write_spec(tmp_path / "spec.yaml", server.host, tls="    insecure: true\n")
    proc, wall = run_cli("--timeout", "0.5", "plan", str(spec))
    line = one_error_line(proc)
    # 10 timeouts for a body; a read blocked on a 64 KiB chunk is cut at the deadline too.
    assert f"the tag list of team/app0 from {server.host} did not arrive within 5s (" in line, line
    assert "bytes so far)" in line
    assert 5 <= wall < 30, wall


def test_a_host_that_accepts_and_never_answers_costs_what_the_message_says(
    stall: Callable[..., StallServer], certs: Certificates, tmp_path: Path
) -> None:
    """The old client took 3 min 18 s while saying "after 30s"; 10 repositories must not
    multiply the wait either. Their tag lists are read at once (`--reads`, whatever `-j`), each
    with its three attempts, and the host's budget (4s) ends whatever is left: the first
    repository's error says either what its own attempts cost or that the budget ended them,
    and either is what the run really took."""
    server = stall("silent")
    tls = f"    ca-bundle: {certs.ca_file}\n"
    spec = write_spec(tmp_path / "spec.yaml", server.host, tls=tls, repositories=10)
    proc, wall = run_cli("--timeout", "1", "plan", str(spec), "-j", "1")
    line = one_error_line(proc)
    if "gave up on" in line:
        assert f"gave up on {server.host} for this run: no answer for 4s" in line, line
        assert wall >= 4 * 0.95, (wall, line)
    else:
        assert f"no answer from {server.host} within 1s (TLS handshake; 3 attempts" in line, line
        honest(line, wall, attempts=3, timeout=1)
    # At most three attempts per repository, all within the budget: nothing was tried after it.
    assert len(server.accepted) <= 3 * 10
    assert wall < 4 + 20


def test_timeout_is_a_documented_global_option() -> None:
    proc, _ = run_cli("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "--timeout SECONDS" in text
    assert "default: 30.0" in text
    assert "is given up for the rest of the run" in text
    bad, _ = run_cli("--timeout", "0", "validate", "x.yaml")
    assert bad.returncode == 1 and "--timeout" in bad.stderr


# --- the per-host budget -----------------------------------------------------------------------


def test_a_host_that_stopped_answering_is_given_up_after_its_budget(
    stall: Callable[..., StallServer],
) -> None:
    """One run, one host: a body in flight is cut when the budget runs out, and every later
    request fails at once without a connection, however many repositories are left."""

    def route(path: str) -> str:
        return "body" if path.startswith("/v2/slow/") else "silent"

    server = stall(route, interval=0.05)
    spec = parse_spec(
        f"version: 1\nsources:\n  - registry: {server.host}\n    insecure: true\n    repositories:\n"
        "      - name: slow\n        all-tags: true\n"
        f"targets:\n  - name: lab\n    type: registry\n    registry: {server.host}\n    insecure: true\n"
    )
    ctx = RunContext(spec, workers=2, timeout=1.0)  # a body gets 10s, the host 4s
    client = ctx.client(Endpoint(server.host, insecure=True))
    outcome: dict[str, tuple[float, str]] = {}

    def call(name: str) -> None:
        began = time.monotonic()
        try:
            client.list_tags(name)
            message = "no error"
        except RegistryError as exc:
            message = str(exc)
        outcome[name] = (time.monotonic() - began, message)

    try:
        slow = threading.Thread(target=call, args=("slow",))
        slow.start()
        time.sleep(0.5)  # its headers came: the host answered; its body now drips
        call("dead")  # 3 attempts of 1s, then the host has been failing for 3s of its 4s
        slow.join(30)
        spent, message = outcome["dead"]
        assert message.startswith(f"no answer from {server.host} within 1s (response headers; 3 attempts"), (
            message
        )
        # The body in flight did not get its 10s: the budget ran out about 4s after "dead" began.
        spent, message = outcome["slow"]
        budget = (
            f"gave up on {server.host} for this run: no answer for 4s "
            "(the per-host budget, 4 × the 1s timeout)"
        )
        assert message == budget, message
        assert spent < 9, spent
        connections = len(server.accepted)
        for i in range(20):
            call(f"many/r{i}")
        assert {outcome[f"many/r{i}"][1] for i in range(20)} == {budget}
        assert max(outcome[f"many/r{i}"][0] for i in range(20)) < 1  # at once, not a timeout each
        assert len(server.accepted) == connections  # and without even connecting
    finally:
        ctx.close()


def test_retry_after_is_honoured_but_capped() -> None:
    assert _retry_after("2", 0.5) == 2.0
    assert _retry_after("86400", 0.5) == 60.0  # a confused or hostile hour-long wait
    assert _retry_after("soon", 0.5) == 0.5
    assert _retry_after(None, 0.5) == 0.5


# --- Harbor and ACR ------------------------------------------------------------------------------


def test_harbor_api_dripping_headers_is_bounded(
    stall: Callable[..., StallServer], certs: Certificates, plain_registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(plain_registry, "hang/app", "1.0.0", seed="no-hang")
    server = stall("headers", interval=0.25, ssl_context=server_context(certs.good))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
sources:
  - registry: {plain_registry.host}
    insecure: true
    repositories:
      - name: hang/app
        tags: ["1.0.0"]
targets:
  - name: dc1
    type: harbor
    url: https://{server.host}
    project: vendor
    ca-bundle: {certs.ca_file}
""",
        encoding="utf-8",
    )
    proc, wall = run_cli("--timeout", "1", "plan", str(spec))
    line = one_error_line(proc)
    assert f"cannot reach Harbor at https://{server.host}: " in line, line
    assert f"no answer from {server.host} within 1s (response headers; 3 attempts" in line, line
    honest(line, wall, attempts=3, timeout=1)


def test_acr_token_exchange_with_a_silent_login_server_is_bounded(
    stall: Callable[..., StallServer], certs: Certificates, registry_factory: Callable[..., RegistryServer]
) -> None:
    storage = registry_factory(users={TOKEN_USER: AcrEmulator.refresh_token})
    server = stall("silent", ssl_context=server_context(certs.good))
    with AcrEmulator() as emu:
        emu.add_registry("00000000-0000-0000-0000-000000000000", "registries", "mycompany", backend=storage)
        spec = parse_spec(
            """\
version: 1
sources:
  - registry: quay.io
    repositories:
      - name: prometheus/node-exporter
        all-tags: true
targets:
  - name: azure
    type: acr
    subscription: 00000000-0000-0000-0000-000000000000
    resource-group: registries
    registry: mycompany
"""
        )
        ctx = RunContext(
            spec,
            timeout=1.0,
            client_factories={
                AZURE_MANAGEMENT: lambda ctx, subscription, target: emu.client(subscription),
                AZURE_CREDENTIAL: lambda ctx, target: emu.credential,
            },
            registry_overrides={"mycompany.azurecr.io": Endpoint(server.host, ca_bundle=str(certs.ca_file))},
        )
        began = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            acr.endpoint(spec.target("azure"), ctx)
        spent = time.monotonic() - began
        ctx.close()
    message = str(caught.value)
    assert message.startswith("token exchange at mycompany.azurecr.io: "), message
    # The TLS handshake never completes: a POST not yet sent is safe to retry.
    assert f"no answer from {server.host} within 1s (TLS handshake; 3 attempts" in message, message
    assert spent < 20, spent
