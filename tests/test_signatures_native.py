"""Signatures planned for native targets (issue 16, item 4): each plan says what the service's
own copy feature would carry (the sources are cited beside each provider's `SIGNATURES_NOTE` and
docs/research-signatures.md), and the signature itself is copied with skopeo, by its tag and
digest, whatever engine copies the image it signs — on the ECR, ACR and Harbor test beds.

The image and its cosign signature live on the beds' upstream registry, which serves
public.cr.seqera.io (`provider_beds.Upstreams.overrides`); a version selection makes the image
a copy on every target type rather than a pull-through cache entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import provider_beds as beds
import pytest
from emulators.ecr import EcrEmulator
from testbed import push_image
from testbed.signatures import push_cosign

from mirrorspec import engine
from mirrorspec.context import RunContext
from mirrorspec.spec import load_spec

SOURCE = "  - registry: public.cr.seqera.io\n    repositories:\n"
SOURCE += '      - {name: acme/signed, versions: "1.0.0"}\n'

# What each plan's note says of the service's own feature (each provider's `SIGNATURES_NOTE`).
SAYS = {
    "ecr": "ECR stores OCI 1.1 referrers",
    "acr": "ACR import is not documented to bring signatures or referrers along",
    "harbor": "Harbor replication carries cosign signatures",
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return beds.seed(tmp_path_factory.mktemp("signatures-native-seed"))


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


def test_a_native_target_says_what_its_feature_carries_and_skopeo_copies_the_signature(
    bed: beds.Bed, tmp_path: Path
) -> None:
    upstream = bed.ups.upstream
    image = push_image(upstream, "acme/signed", "1.0.0", seed="signed")
    signature = push_cosign(upstream, "acme/signed", image)
    sig_tag = image.replace(":", "-", 1) + ".sig"

    text = (beds.EXAMPLES / f"{bed.kind}.yaml").read_text()
    assert "\ntargets:" in text
    spec = tmp_path / f"{bed.kind}.yaml"
    spec.write_text(text.replace("\ntargets:", f"\n{SOURCE}targets:", 1))
    ctx = RunContext(load_spec(spec), workers=4, **bed.context_kwargs())
    try:
        (target,) = engine.plan(ctx).targets
    finally:
        ctx.close()

    copies = {(c.source, t.tag): (c.engine, t.digest, t.refers_to) for c in target.copies for t in c.tags}
    assert copies[("public.cr.seqera.io/acme/signed", sig_tag)] == ("skopeo", signature, image)
    assert copies[("public.cr.seqera.io/acme/signed", "1.0.0")][1] == image
    notes = [n.message for n in target.notes if n.message.startswith("signatures: ")]
    assert len(notes) == 1 and SAYS[bed.kind] in notes[0], notes
    assert "1 signature(s)/referrer(s)" in notes[0]
