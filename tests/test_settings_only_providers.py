"""A settings-only source (issue 16, item 1) makes nothing native by itself: on each provider's
test bed (`provider_beds.py`), the cache-mode example spec plans the same changes, copies and
notes with settings-only `ghcr.io` (credentials given) and `registry.example.com` entries as
without them — no ECR
pull-through rule or secret, no ACR cache rule or credential set, no Harbor endpoint or
proxy-cache project. The same entry with one all-tags repository does change the plan, so the
host is one each provider would act on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import provider_beds as beds
import pytest
from emulators.ecr import EcrEmulator

from mirrorspec import engine
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.plan import TargetPlan
from mirrorspec.spec import load_spec

# ghcr.io is an upstream every provider can cache; registry.example.com one only Harbor can
# (ECR and ACR would say why not, in a note).
GHCR = "  - registry: ghcr.io\n    credentials: seqera\n"
SETTINGS_ONLY = GHCR + "  - registry: registry.example.com\n    credentials: dockerhub\n"
WITH_REPOSITORY = GHCR + "    repositories:\n      - {name: library/redis, all-tags: true}\n"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return beds.seed(tmp_path_factory.mktemp("settings-only-seed"))


@pytest.fixture(scope="module")
def ecr_emulator() -> Iterator[EcrEmulator]:
    with EcrEmulator() as emu:
        yield emu


@pytest.fixture(params=["ecr", "acr", "harbor"])
def bed(
    request: pytest.FixtureRequest,
    seeded: dict[str, Path],
    ecr_emulator: EcrEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[beds.Bed]:
    beds.set_environment(monkeypatch)
    with (
        beds.upstreams(seeded, tmp_path / "upstreams") as ups,
        beds.bed_of(request.param, ups, tmp_path, ecr_emulator) as ready,
    ):
        yield ready


def planned(bed: beds.Bed, workdir: Path, extra_source: str) -> TargetPlan:
    """The plan of `<kind>.yaml` with `extra_source` added to its sources."""
    text = (beds.EXAMPLES / f"{bed.kind}.yaml").read_text()
    assert "\ntargets:" in text
    spec = workdir / f"{bed.kind}-{len(extra_source)}.yaml"
    spec.write_text(text.replace("\ntargets:", f"\n{extra_source}targets:", 1))
    overrides = {**bed.overrides, "ghcr.io": Endpoint(bed.ups.upstream.host, insecure=True)}
    kwargs: dict[str, Any] = {**bed.context_kwargs(), "registry_overrides": overrides}
    ctx = RunContext(load_spec(spec), workers=4, **kwargs)
    try:
        (target,) = engine.plan(ctx).targets
    finally:
        ctx.close()
    return target


def test_a_settings_only_source_makes_no_native_rule(bed: beds.Bed, tmp_path: Path) -> None:
    without = planned(bed, tmp_path, "")
    settings_only = planned(bed, tmp_path, SETTINGS_ONLY)
    assert settings_only.changes == without.changes
    assert settings_only.copies == without.copies
    assert settings_only.notes == without.notes
    assert not [c for c in settings_only.changes if "ghcr" in c.id]

    selecting = planned(bed, tmp_path, WITH_REPOSITORY)
    assert (selecting.changes, selecting.copies, selecting.notes) != (
        without.changes,
        without.copies,
        without.notes,
    )
