"""The run's service clients (`RunContext.service_client`) and the secret environment variables
providers declare (`SECRET_VARIABLES`): the two places where shared machinery serves a provider
without naming it; and the environment skopeo inherits, which names no provider at all.

The factories here are test inputs handed to a real `RunContext`, not stand-ins for mirrorspec
code; the built-in providers' own factories are exercised by their provider tests (through the
emulators' clients) and by `test_sdk_extras` (a missing SDK).
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import pytest

from mirrorspec import providers
from mirrorspec.context import RunContext
from mirrorspec.credentials import redact
from mirrorspec.errors import MirrorspecError
from mirrorspec.skopeo.process import _skopeo_environment
from mirrorspec.spec import parse_spec

SPEC = """\
version: 1
sources:
  - registry: docker.io
    repositories:
      - name: library/alpine
        tags: ["3.*"]
targets:
  - name: first
    type: registry
    registry: one.example.com
  - name: second
    type: registry
    registry: two.example.com
"""


class Built:
    """A client that counts how often it was closed."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def counting(log: list[tuple[Any, ...]]) -> Any:
    def factory(ctx: RunContext, *args: Any) -> Built:
        log.append(args)
        return Built(*args)

    return factory


def test_one_client_per_kind_and_arguments_for_the_run() -> None:
    built: list[tuple[Any, ...]] = []
    ctx = RunContext(parse_spec(SPEC), client_factories={"thing": counting(built)})
    a = ctx.service_client("thing", "eu-west-1", None)
    assert ctx.service_client("thing", "eu-west-1", None) is a
    b = ctx.service_client("thing", "us-east-1", None)
    assert b is not a
    assert built == [("eu-west-1", None), ("us-east-1", None)]


def test_a_spec_target_counts_by_its_name() -> None:
    built: list[tuple[Any, ...]] = []
    spec = parse_spec(SPEC)
    ctx = RunContext(spec, client_factories={"thing": counting(built)})
    first, second = spec.targets
    client = ctx.service_client("thing", "sub", first)
    # The same block parsed again is another object with the same name: the same client.
    again = parse_spec(SPEC).targets[0]
    assert ctx.service_client("thing", "sub", again) is client
    assert ctx.service_client("thing", "sub", second) is not client
    # The factory gets the target itself, not its name.
    assert [args[1].name for args in built] == ["first", "second"]


def test_many_threads_asking_at_once_build_one_client() -> None:
    built: list[tuple[Any, ...]] = []
    ctx = RunContext(parse_spec(SPEC), client_factories={"thing": counting(built)})
    start = threading.Barrier(8)
    got: list[Any] = []

    def ask() -> None:
        start.wait()
        got.append(ctx.service_client("thing", "x"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(got) == 8 and all(client is got[0] for client in got)
    assert built == [("x",)]


def test_a_factory_may_ask_for_another_client() -> None:
    """A management client built from the run's credential asks for it while being built."""
    ctx = RunContext(
        parse_spec(SPEC),
        client_factories={
            "credential": lambda ctx, name: Built(name),
            "management": lambda ctx, name: Built(ctx.service_client("credential", name)),
        },
    )
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(ctx.service_client("management", "t")))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "building one service client inside another deadlocked"
    assert got[0].args == (ctx.service_client("credential", "t"),)


def test_close_closes_each_client_once_and_a_later_run_builds_anew() -> None:
    built: list[tuple[Any, ...]] = []
    ctx = RunContext(
        parse_spec(SPEC),
        client_factories={"thing": counting(built), "plain": lambda ctx: object()},
    )
    a, b = ctx.service_client("thing", 1), ctx.service_client("thing", 2)
    ctx.service_client("plain")  # nothing to close: skipped
    ctx.close()
    assert (a.closed, b.closed) == (1, 1)
    assert ctx.service_client("thing", 1) is not a
    assert built == [(1,), (2,), (1,)]


def test_a_kind_no_provider_builds_is_one_line_naming_it() -> None:
    ctx = RunContext(parse_spec(SPEC))
    with pytest.raises(MirrorspecError) as caught:
        ctx.service_client("no-such-kind", "x")
    assert str(caught.value) == "no installed provider builds 'no-such-kind' clients"


def test_an_injected_factory_replaces_the_one_a_provider_declares() -> None:
    declared = providers.declared("CLIENT_FACTORIES")
    kinds = sorted({kind for _, factories in declared for kind in factories})
    assert kinds, "no installed provider declares a client factory"
    ctx = RunContext(parse_spec(SPEC), client_factories=dict.fromkeys(kinds, lambda ctx, *a: Built(*a)))
    for kind in kinds:
        assert isinstance(ctx.service_client(kind, "x"), Built)


@pytest.mark.parametrize("type_name", [name for name, _ in providers.declared("CLIENT_FACTORIES")])
def test_declared_client_factories_take_the_context_first(type_name: str) -> None:
    factories = providers.get(type_name).CLIENT_FACTORIES  # type: ignore[attr-defined]
    assert factories
    for kind, factory in factories.items():
        assert isinstance(kind, str) and kind
        assert next(iter(inspect.signature(factory).parameters)) == "ctx", kind


def test_skopeo_inherits_only_what_it_reads() -> None:
    # What it does read: kept.
    read = {
        "HOME": "/home/someone",
        "TMPDIR": "/var/tmp/big",
        "HTTPS_PROXY": "http://proxy:3128",
        "no_proxy": "localhost",
        "SSL_CERT_FILE": "/etc/ssl/custom.pem",
        "CONTAINERS_REGISTRIES_CONF": "/etc/containers/registries.conf",
        "LC_ALL": "C.UTF-8",
    }
    # Cloud SDK credentials, whether or not their provider is installed, and tokens no
    # provider knows about: skopeo gets its logins from the auth file, never from these.
    never = {
        "AWS_SECRET_ACCESS_KEY": "aws-probe-value",
        "AZURE_CLIENT_SECRET": "azure-probe-value",
        "GOOGLE_APPLICATION_CREDENTIALS": "/keys/gcp.json",
        "GITHUB_TOKEN": "ghp_probe",
        "VAULT_TOKEN": "hvs.probe",
        "CI_JOB_TOKEN": "ci-probe",
    }
    assert _skopeo_environment({**never, **read}) == read


def test_declared_secret_variables_are_scrubbed_from_output(monkeypatch: pytest.MonkeyPatch) -> None:
    declared = [name for _, names in providers.declared("SECRET_VARIABLES") for name in names]
    assert declared, "no installed provider declares SECRET_VARIABLES"
    for i, name in enumerate(declared):
        assert name.isupper() and " " not in name, name
        monkeypatch.setenv(name, f"probe-secret-{i}-of-{name.lower()}")
    RunContext(parse_spec(SPEC)).close()  # a run registers them before any SDK client exists
    for i, name in enumerate(declared):
        value = f"probe-secret-{i}-of-{name.lower()}"
        assert redact(f"echoed: {value}") == "echoed: ***", name
