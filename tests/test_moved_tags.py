"""Tags that moved upstream, through the real CLI against real docker-registries and skopeo.

One upstream and one destination repository per selection kind: `versions:` keeps the
destination's digest by default (a warning names both digests and how to overwrite), `tags:`
overwrites by default (the copy says what it overwrites), and an explicit `on-moved: overwrite`
beats the `versions:` default. A signature of the kept tag's new digest is not copied; audit
reports the kept tag as `moved-kept`, not as drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cli_runner
from testbed import RegistryServer, push_image
from testbed.signatures import push_cosign

from mirrorspec import moved_tags
from mirrorspec.oci import RegistryClient
from mirrorspec.plan import Artifact
from mirrorspec.spec import parse_spec

SPEC = """\
version: 1
sources:
  - registry: {host}
    insecure: true
    repositories:
      - {{name: moved/app, versions: ">=1.0.0"}}
      - {{name: moved/latest, tags: ["latest"]}}
      - {{name: moved/web, versions: ">=1.0.0", on-moved: overwrite}}
targets:
  - name: lab
    type: registry
    registry: {host}
    prefix: moved-mirror
    insecure: true
"""


def _json(*args: str, check: int = 0) -> Any:
    return json.loads(cli_runner.run(*args, "--format", "json", check=check, timeout=120).stdout)


def _dest(server: RegistryServer, repository: str) -> str:
    return f"moved-mirror/{server.host.replace(':', '_')}/{repository}"


def test_a_moved_tag_is_kept_or_overwritten_as_its_selection_says(
    plain_registry: RegistryServer, tmp_path: Path
) -> None:
    up = plain_registry
    old = {
        "app": push_image(up, "moved/app", "1.0.0", seed="app-1"),
        "latest": push_image(up, "moved/latest", "latest", seed="latest-1"),
        "web": push_image(up, "moved/web", "1.0.0", seed="web-1"),
    }
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(host=up.host))
    cli_runner.run("apply", str(spec), "--yes", timeout=120)

    new = {
        "app": push_image(up, "moved/app", "1.0.0", seed="app-2"),
        "latest": push_image(up, "moved/latest", "latest", seed="latest-2"),
        "web": push_image(up, "moved/web", "1.0.0", seed="web-2"),
    }
    signature = push_cosign(up, "moved/app", new["app"], ".sig")  # signs only the new digest
    assert signature

    plan = _json("plan", str(spec))
    (target,) = plan["targets"]
    copied = {c["destination"].rsplit("/", 1)[1]: c["tags"] for c in target["copies"]}
    assert set(copied) == {"latest", "web"}  # not app's 1.0.0, nor its new digest's signature
    assert [(t["tag"], t["digest"], t["overwrites"], t["reason"]) for t in copied["latest"]] == [
        ("latest", new["latest"], old["latest"], "digest-mismatch")
    ]
    assert [(t["tag"], t["overwrites"]) for t in copied["web"]] == [("1.0.0", old["web"])]
    warnings = [n["message"] for n in target["notes"] if n["level"] == "warning"]
    (kept,) = [m for m in warnings if "moved upstream" in m]
    assert f"{_dest(up, 'moved/app')}:1.0.0 moved upstream: {old['app']} → {new['app']}" in kept
    assert "on-moved: keep, the default for versions:" in kept and "`on-moved: overwrite`" in kept
    assert "sources[0] › repositories[0]" in kept
    infos = [
        n["message"] for n in target["notes"] if n["level"] == "info" and "moved upstream" in n["message"]
    ]
    assert len(infos) == 2 and all("overwritten (on-moved: overwrite)" in m for m in infos)
    assert any(f"{old['latest']} → {new['latest']}" in m for m in infos)

    table = cli_runner.run("plan", str(spec), "--detailed-exitcode", check=2).stdout
    assert "overwrites, moved upstream" in table

    audit = _json("audit", str(spec), "--content", check=2)
    statuses = {
        (c["destination"].rsplit("/", 1)[1], c["tag"]): c["status"] for c in audit["targets"][0]["content"]
    }
    assert statuses == {
        ("app", "1.0.0"): "moved-kept",
        ("latest", "latest"): "digest-mismatch",
        ("web", "1.0.0"): "digest-mismatch",
    }

    cli_runner.run("apply", str(spec), "--yes", timeout=120)
    with RegistryClient(up.host, insecure=True) as client:
        assert client.digest(_dest(up, "moved/app"), "1.0.0") == old["app"]
        assert client.digest(_dest(up, "moved/latest"), "latest") == new["latest"]
        assert client.digest(_dest(up, "moved/web"), "1.0.0") == new["web"]
        assert client.digest(_dest(up, "moved/app"), f"sha256-{new['app'][7:]}.sig") is None
    audit = _json("audit", str(spec), "--content")  # exit 0: a kept tag is not drift
    assert audit["in_sync"] is True
    (kept_check,) = [c for c in audit["targets"][0]["content"] if c["status"] != "present"]
    assert (kept_check["tag"], kept_check["expected"], kept_check["actual"]) == (
        "1.0.0",
        new["app"],
        old["app"],
    )
    assert _json("plan", str(spec))["empty"] is True


def test_a_tag_changed_at_the_destination_is_never_taken_for_a_move(
    plain_registry: RegistryServer, tmp_path: Path
) -> None:
    """The destination's `1.0.0` replaced by hand (or tampered with): upstream never held that
    digest, so it is not "moved upstream, kept" — not copied over under `keep` either, but
    audit calls it drift (exit 2) until someone looks (`moved_tags` module doc)."""
    up = plain_registry
    upstream = push_image(up, "changed/app", "1.0.0", seed="changed-1")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(host=up.host)
        .replace("moved/app", "changed/app")
        .replace('      - {{name: moved/latest, tags: ["latest"]}}\n', "")
        .replace('      - {name: moved/latest, tags: ["latest"]}\n', "")
        .replace('      - {name: moved/web, versions: ">=1.0.0", on-moved: overwrite}\n', "")
    )
    cli_runner.run("apply", str(spec), "--yes", timeout=120)
    foreign = push_image(up, _dest(up, "changed/app"), "1.0.0", seed="pushed by hand")

    plan = _json("plan", str(spec))
    (target,) = plan["targets"]
    assert target["copies"] == []  # a release is not replaced on a guess
    (warning,) = [
        n["message"] for n in target["notes"] if n["level"] == "warning" and foreign in n["message"]
    ]
    assert f"holds {foreign}, which upstream ({up.host}/changed/app:1.0.0) does not have" in warning
    assert "moved upstream" not in warning
    audit = _json("audit", str(spec), check=2)
    (check,) = audit["targets"][0]["content"]
    assert (check["status"], check["expected"], check["actual"]) == ("digest-mismatch", upstream, foreign)


# --- which policy a tag gets (no registry: the spec and the resolved artifacts alone) ---------

POLICY_SPEC = """\
version: 1
sources:
  - registry: up.example
    repositories:
      - {name: rel/app, versions: ">=1.0.0"}
      - {name: rel/latest, tags: ["latest"]}
      - {name: rel/rx, tag-regex: "^v[0-9]+$"}
      - {name: rel/every, all-tags: true, on-moved: keep}
      - {name: charts/platform, versions: "1.0.0", helm-dependencies: true, chart-images: true}
      - {name: charts/edge, tags: ["edge"], helm-dependencies: true}
targets:
  - {name: lab, type: registry, registry: down.example}
"""
DIGEST = "sha256:" + "a" * 64


def test_the_default_follows_the_selection_and_what_an_entry_pulls_in_follows_it() -> None:
    platform = Artifact("up.example", "charts/platform", "1.0.0", DIGEST)
    edge = Artifact("up.example", "charts/edge", "edge", DIGEST)
    redis = Artifact("up.example", "charts/redis", "18.0.1", DIGEST, dependency_of=platform.ref)
    nested = Artifact("up.example", "charts/common", "2.0.0", DIGEST, dependency_of=redis.ref)
    image = Artifact(
        "up.example", "team/worker", "latest", DIGEST, dependency_of=platform.ref, chart_image=True
    )
    edge_dep = Artifact("up.example", "charts/redis", "18.0.4", DIGEST, dependency_of=edge.ref)
    signature = Artifact("up.example", "rel/app", "sha256-" + "b" * 64 + ".sig", DIGEST, refers_to=DIGEST)
    pinned = Artifact("up.example", "team/worker", "digest-sha256-" + "c" * 64, DIGEST, chart_image=True)
    cases = {
        Artifact("up.example", "rel/app", "1.2.0", DIGEST): "keep",  # versions:
        Artifact("up.example", "rel/latest", "latest", DIGEST): "overwrite",  # tags:
        Artifact("up.example", "rel/rx", "v3", DIGEST): "overwrite",  # tag-regex:
        Artifact("up.example", "rel/every", "latest", DIGEST): "keep",  # explicit
        redis: "keep",  # a dependency of a versions: chart
        nested: "keep",  # and its dependency
        image: "keep",  # an image the released chart deploys, even under `latest`
        edge_dep: "overwrite",  # a dependency of a tags: chart
        signature: "overwrite",  # follows its digest
        pinned: "overwrite",  # pinned by digest: cannot move
    }
    artifacts = [platform, edge, *cases]
    spec = parse_spec(POLICY_SPEC)
    assert {a.ref: moved_tags.policy_of(spec, a, artifacts) for a in cases} == {
        a.ref: p for a, p in cases.items()
    }
