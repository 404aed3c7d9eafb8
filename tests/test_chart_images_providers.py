"""`chart-images: true` planned for native targets (issue 16, items 2-3), on the Harbor and ACR
test beds (`provider_beds.py`): a chart's values pin one image by digest and name another by tag.

An image pinned by digest lands under `digest-sha256-<hex>`, a tag upstream does not have, so it
is copied by digest with skopeo; no native rule may name that tag. A Harbor tag filter matches
the upstream artifacts' own tags (goharbor/harbor src/pkg/reg/filter/artifact.go,
artifactTagFilter), so a filter naming the pin tag would replicate nothing: Harbor's policies
name only the tagged image. ACR's importImage takes a digest (`sourceImage` `repo@sha256:…`), but the engine
copies every pinned image with skopeo, whatever the target, so no import names it either. An
image is not a Helm chart because a chart deploys it (ACR says so of charts it imports from
outside Azure).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import provider_beds as beds
import pytest
from ruamel.yaml import YAML
from testbed import push_chart, push_image

from mirrorspec import engine
from mirrorspec.context import RunContext
from mirrorspec.plan import TargetPlan
from mirrorspec.spec import load_spec

# The chart and its images live on the beds' upstream registry, which serves quay.io and
# public.cr.seqera.io (provider_beds.Upstreams.overrides).
CHART = "  - registry: public.cr.seqera.io\n    repositories:\n"
CHART += '      - {name: charts/vendored, versions: "1.0.0", chart-images: true}\n'


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return beds.seed(tmp_path_factory.mktemp("chart-images-seed"))


@pytest.fixture(params=["acr", "harbor"])
def bed(
    request: pytest.FixtureRequest, seeded: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[beds.Bed]:
    beds.set_environment(monkeypatch)
    started = {"acr": beds.acr_bed, "harbor": beds.harbor_bed}[request.param]
    with beds.upstreams(seeded, tmp_path / "upstreams") as ups, started(ups, tmp_path) as ready:
        yield ready


def planned(bed: beds.Bed, workdir: Path) -> tuple[TargetPlan, str]:
    """The plan of `<kind>.yaml` with the chart's entry added; and the pinned image's digest."""
    upstream = bed.ups.upstream
    pinned = push_image(upstream, "acme/pinned", "1.0", seed="pinned")
    push_image(upstream, "acme/tagged", "2.0", seed="tagged")
    values = {
        "pinned": {"image": f"quay.io/acme/pinned:1.0@{pinned}"},
        "tagged": {"image": {"registry": "quay.io", "repository": "acme/tagged", "tag": "2.0"}},
    }
    out = workdir / "values.yaml"
    YAML(typ="safe", pure=True).dump(values, out)
    push_chart(upstream, "charts/vendored", "1.0.0", files={"values.yaml": out.read_bytes()})

    text = (beds.EXAMPLES / f"{bed.kind}.yaml").read_text()
    assert "\ntargets:" in text
    spec = workdir / f"{bed.kind}.yaml"
    spec.write_text(text.replace("\ntargets:", f"\n{CHART}targets:", 1))
    ctx = RunContext(load_spec(spec), workers=4, **bed.context_kwargs())
    try:
        (target,) = engine.plan(ctx).targets
    finally:
        ctx.close()
    return target, pinned


def test_a_pinned_chart_image_is_copied_by_digest_and_named_by_no_native_rule(
    bed: beds.Bed, tmp_path: Path
) -> None:
    target, pinned = planned(bed, tmp_path)
    pin = "digest-" + pinned.replace(":", "-")
    copies = {(c.source, t.tag): (c.engine, t.digest) for c in target.copies for t in c.tags}
    assert copies[("quay.io/acme/pinned", pin)] == ("skopeo", pinned)
    native = "harbor-replication" if bed.kind == "harbor" else "acr-import"
    assert copies[("quay.io/acme/tagged", "2.0")][0] == native
    assert copies[("public.cr.seqera.io/charts/vendored", "1.0.0")][0] == native

    # No native resource names the pin tag, nor exists for the pinned image's repository alone.
    for change in target.changes:
        assert pin not in repr(change) and "acme/pinned" not in repr(change), change
    if bed.kind == "harbor":
        policies = [c for c in target.changes if c.resource == "replication-policy"]
        assert any("acme/tagged" in repr(p) and "2.0" in repr(p) for p in policies), policies
    # The images are not charts: no note says ACR may not import them as such.
    notes = [n.message for n in target.notes]
    assert not [n for n in notes if "acme/" in n and "Helm chart" in n], notes
