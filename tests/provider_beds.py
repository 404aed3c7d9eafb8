"""One test bed per target type, for tests that run the same scenario against every provider.

Each bed serves the example specs (`examples/{ecr,acr,harbor}.yaml`, and the four targets of
`examples/seqera.yaml`) unchanged: local `docker-registry` servers stand in for every upstream
they name (`docker.io`, `quay.io`, `public.cr.seqera.io`, and `cr.seqera.io` with a login), and
the target is the provider's own test bed — the same parts as in `test_<provider>_provider.py`:

- ecr: moto behind the ECR contract emulator, a TLS registry for the ECR endpoint;
- acr: the ARM contract emulator, whose login server fronts a storage registry;
- harbor: the Harbor API emulator, whose executions copy into its backing registry;
- registry: a TLS + htpasswd registry (`internal-registry.example.com` in seqera.yaml).

Upstream content is pushed once per session (`seed`) and each bed starts its registries on a
copy, so a bed costs a few registry starts, not a few dozen pushes. `Bed.context_kwargs()` is
what a `RunContext` needs to reach it: tests build contexts with it, or hand it to the CLI by
replacing `cli_common.RunContext` with a `functools.partial` (the CLI builds its own context).
`Bed.storage` / `Bed.storage_user` is where the target really keeps its tags, for planting a
deleted or re-tagged image.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from emulators.acr import TOKEN_USER, AcrEmulator
from emulators.ecr import EcrEmulator
from emulators.harbor import HarborEmulator
from testbed import RegistryServer, push_chart, push_image, start_registry

from mirrorspec.context import Endpoint, RunContext
from mirrorspec.providers.acr.clients import AZURE_CREDENTIAL, AZURE_MANAGEMENT
from mirrorspec.providers.ecr.clients import AWS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
ECR_TOKEN = f"{ACCOUNT}-auth-token"  # what the emulator's GetAuthorizationToken hands out
HARBOR_HOST = "harbor.internal.example.com"
LAB_HOST = "internal-registry.example.com"
SUB = "00000000-0000-0000-0000-000000000000"
GROUP = "registries"

# Every secret the example specs read from the environment is a canary: tests assert that
# none of them appears in any output.
DOCKERHUB_CANARY = "dockerhub-canary-6e1f0a93d2"
SEQERA_CANARY = "seqera-canary-2b8c7d41f5"
HARBOR_CANARY = "harbor-canary-9a3e5c07b1"
LAB_CANARY = "lab-canary-4d6b2e80c3"
CANARIES = (DOCKERHUB_CANARY, SEQERA_CANARY, HARBOR_CANARY, LAB_CANARY)
ENVIRONMENT = {
    "DOCKERHUB_USER": "hub-bot",
    "DOCKERHUB_TOKEN": DOCKERHUB_CANARY,
    "SEQERA_USER": "seqera-bot",
    "SEQERA_TOKEN": SEQERA_CANARY,
    "HARBOR_USER": "admin",
    "HARBOR_PASSWORD": HARBOR_CANARY,
    "LAB_USER": "lab-bot",
    "LAB_PASSWORD": LAB_CANARY,
}
SEQERA_USERS = {"seqera-bot": SEQERA_CANARY}


def seed(root: Path) -> dict[str, Path]:
    """Push the upstream content once; returns the registries' data directories, for
    `upstreams()` to start registries on copies of (the seqera registry's password does not
    matter here: a copy is served with the password its test gives)."""
    with start_registry(root / "upstream") as upstream:
        for tag in ("15.4.0", "16.1.0", "16.2.0"):
            push_image(upstream, "bitnami/postgresql", tag)
        push_image(upstream, "prometheus/node-exporter", "v1.8.0")
        push_image(upstream, "library/redis", "7.2.4")
        redis = [{"name": "redis", "version": "~18.0.0", "repository": "oci://public.cr.seqera.io/charts"}]
        for version in ("18.0.1", "19.0.0"):
            push_chart(upstream, "charts/redis", version)
        for version in ("1.0.0", "1.2.0", "1.5.3", "2.0.0"):
            push_chart(upstream, "charts/platform", version, dependencies=redis)
    with start_registry(root / "seqera", users=SEQERA_USERS) as seqera:
        for repo in ("backend", "frontend"):
            for tag in ("v25.1.0", "v25.1.3", "v25.2.0"):
                push_image(seqera, f"private/nf-tower-enterprise/{repo}", tag, user="seqera-bot")
    return {"upstream": root / "upstream" / "data", "seqera": root / "seqera" / "data"}


def set_upstream_credentials(
    monkeypatch: pytest.MonkeyPatch, dockerhub_token: str, seqera_token: str
) -> None:
    """The environment variables the example specs read for docker.io and cr.seqera.io."""
    monkeypatch.setenv("DOCKERHUB_USER", "hub-bot")
    monkeypatch.setenv("DOCKERHUB_TOKEN", dockerhub_token)
    monkeypatch.setenv("SEQERA_USER", "seqera-bot")
    monkeypatch.setenv("SEQERA_TOKEN", seqera_token)


@dataclass
class Upstreams:
    upstream: RegistryServer  # docker.io, quay.io, public.cr.seqera.io
    seqera: RegistryServer  # cr.seqera.io, login required

    def overrides(self, *also: str) -> dict[str, Endpoint]:
        """Where the upstream hosts are served; `also` names more hosts `upstream` serves."""
        plain = Endpoint(self.upstream.host, insecure=True)
        return {
            **{host: plain for host in ("docker.io", "quay.io", *also, "public.cr.seqera.io")},
            "cr.seqera.io": Endpoint(self.seqera.host, insecure=True),
        }


@contextmanager
def upstreams(
    seeded: dict[str, Path], workdir: Path, seqera_password: str = SEQERA_CANARY
) -> Iterator[Upstreams]:
    """Upstream registries started on a fresh copy of the seeded content (`seqera-bot` logs in
    to cr.seqera.io with `seqera_password`)."""
    for name in ("upstream", "seqera"):
        shutil.copytree(seeded[name], workdir / name / "data")
    with (
        start_registry(workdir / "upstream") as upstream,
        start_registry(workdir / "seqera", users={"seqera-bot": seqera_password}) as seqera,
    ):
        yield Upstreams(upstream, seqera)


@dataclass
class Bed:
    """One target type's test bed: where the target is, and where its tags are stored."""

    kind: str
    ups: Upstreams
    storage: RegistryServer
    storage_user: str | None
    overrides: dict[str, Endpoint]
    factories: dict[str, Any] = field(default_factory=dict)
    emulator: Any = None
    rewrite: Callable[[str], str] | None = None

    def spec(self, example: str, workdir: Path) -> Path:
        """The example spec as this bed serves it: unchanged, except where the provider does
        not go through `registry_overrides` (registry targets name their real host)."""
        if self.rewrite is None:
            return EXAMPLES / example
        path = workdir / example
        path.write_text(self.rewrite((EXAMPLES / example).read_text()))
        return path

    def context_kwargs(self) -> dict[str, Any]:
        return {"registry_overrides": dict(self.overrides), **self.factories}

    def ctx(self, spec: Any) -> RunContext:
        return RunContext(spec, workers=4, **self.context_kwargs())


@contextmanager
def ecr_bed(emulator: EcrEmulator, ups: Upstreams, workdir: Path) -> Iterator[Bed]:
    emulator.reset()
    with start_registry(workdir / "ecr", tls=True, users={"AWS": ECR_TOKEN}) as ecr:

        def aws_client(ctx: RunContext, service: str, region: str, profile: str | None) -> Any:
            return emulator.client(service, region=region)

        overrides = {**ups.overrides(), ECR_HOST: Endpoint(ecr.host, ca_bundle=str(ecr.ca_file))}
        yield Bed("ecr", ups, ecr, "AWS", overrides, {"client_factories": {AWS: aws_client}}, emulator)
    emulator.check()


@contextmanager
def acr_bed(ups: Upstreams, workdir: Path) -> Iterator[Bed]:
    with (
        start_registry(workdir / "acr", users={TOKEN_USER: AcrEmulator.refresh_token}) as storage,
        AcrEmulator(
            upstreams={
                "docker.io": ups.upstream,
                "quay.io": ups.upstream,
                "public.cr.seqera.io": ups.upstream,
                "cr.seqera.io": ups.seqera,
            }
        ) as emu,
    ):
        emu.add_registry(SUB, GROUP, "mycompany", backend=storage)
        overrides = {
            **ups.overrides(),
            "mycompany.azurecr.io": Endpoint(emu.login_host("mycompany"), ca_bundle=str(emu.ca_file)),
        }
        factories = {
            "client_factories": {
                AZURE_MANAGEMENT: lambda ctx, subscription, target: emu.client(subscription),
                AZURE_CREDENTIAL: lambda ctx, target: emu.credential,
            }
        }
        yield Bed("acr", ups, storage, TOKEN_USER, overrides, factories, emu)
        assert emu.violations == [] and emu.internal_errors == []


@contextmanager
def harbor_bed(ups: Upstreams, workdir: Path) -> Iterator[Bed]:
    with ExitStack() as stack:
        backing = stack.enter_context(start_registry(workdir / "harbor"))
        emu = stack.enter_context(
            HarborEmulator(
                backing,
                upstreams={
                    "hub.docker.com": ups.upstream,
                    "quay.io": ups.upstream,
                    "public.cr.seqera.io": ups.upstream,
                    "cr.seqera.io": ups.seqera,
                },
                users={"admin": HARBOR_CANARY},
            )
        )
        overrides = {**ups.overrides(), HARBOR_HOST: Endpoint(emu.host, ca_bundle=str(emu.ca_file))}
        yield Bed("harbor", ups, backing, None, overrides, {}, emu)
        emu.wait_idle()


@contextmanager
def registry_bed(ups: Upstreams, workdir: Path) -> Iterator[Bed]:
    with start_registry(workdir / "lab", tls=True, users={"lab-bot": LAB_CANARY}) as lab:

        def rewrite(text: str) -> str:
            # The registry provider reaches its target as the spec names it (no override).
            real = f"registry: {lab.host}\n    ca-bundle: {lab.ca_file}"
            assert f"registry: {LAB_HOST}" in text
            return text.replace(f"registry: {LAB_HOST}", real)

        yield Bed("registry", ups, lab, "lab-bot", ups.overrides(), rewrite=rewrite)


def bed_of(
    kind: str, ups: Upstreams, workdir: Path, ecr_emulator: EcrEmulator | None = None
) -> AbstractContextManager[Bed]:
    """The bed of one target type ("ecr" needs the module's `ecr_emulator`)."""
    if kind == "ecr":
        assert ecr_emulator is not None, "the ECR bed needs an EcrEmulator"
        return ecr_bed(ecr_emulator, ups, workdir)
    return {"acr": acr_bed, "harbor": harbor_bed, "registry": registry_bed}[kind](ups, workdir)


def set_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
