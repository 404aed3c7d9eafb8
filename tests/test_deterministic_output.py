"""The same inputs give the same bytes (issue 18, item 2): `plan` and `audit` JSON, their
table and markdown, and `render terraform`'s `.tf.json`.

Through the real CLI against real registries: many repositories, Helm charts whose
dependencies are followed (some on another host, some not from an `oci://` registry, some
matching no tag), a destination that holds some tags, others with other
content. Each command runs several times with different `PYTHONHASHSEED`s (a set of strings
iterates in another order in each) and different read and copy concurrency (the reader threads
answer in another order); every run must print the very same bytes.

The unit checks below feed the records the same notes, copies and resources in shuffled orders
and with repeats: the order they come in must not show.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cli_runner
import pytest
from testbed import RegistryServer, push_chart, push_image, start_registry
from testbed.seed import clone_repository

from mirrorspec import RunContext, parse_spec
from mirrorspec.plan import Audit, Copy, CopyTag, Note, Plan, Resource, TargetAudit, TargetPlan, to_json
from mirrorspec.terraform_document import TerraformDocument

IMAGES = 24
CHARTS = 4
DEPENDENCIES = 5

# (PYTHONHASHSEED, --reads, --workers) of each run
RUNS = [("0", "1", "1"), ("1", "16", "8"), ("2", "4", "32")]


@dataclass
class Bed:
    source: RegistryServer
    other: RegistryServer  # reached only through chart dependencies: a settings-only entry
    destination: RegistryServer
    spec: Path


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    workdir = tmp_path_factory.mktemp("deterministic")
    with (
        start_registry(workdir / "source") as source,
        start_registry(workdir / "other") as other,
        start_registry(workdir / "destination") as destination,
    ):
        push_image(source, "base/img", "1.0.0")
        push_image(source, "base/img", "1.1.0", seed="second")
        clone_repository(source, "base/img", [f"team/img{i:02}" for i in range(IMAGES)])
        for d in range(DEPENDENCIES):
            for version in ("1.0.0", "1.1.0"):
                push_chart(other, f"deps/dep{d}", version)
        for c in range(CHARTS):
            for version in ("1.0.0", "1.1.0", "2.0.0"):
                push_chart(
                    source,
                    f"charts/c{c}",
                    version,
                    dependencies=[
                        *(
                            {"name": f"dep{d}", "version": "^1.0.0", "repository": f"oci://{other.host}/deps"}
                            for d in range(DEPENDENCIES)
                        ),
                        {"name": "web", "version": "1.x", "repository": "https://charts.example.com"},
                        {"name": "dep0", "version": "^9.0.0", "repository": f"oci://{other.host}/deps"},
                    ],
                )
        repositories = "".join(
            f"      - name: team/img{i:02}\n        versions: '>=1.0.0'\n" for i in range(IMAGES)
        )
        repositories += "".join(
            f"      - name: charts/c{c}\n        versions: '>=1.0.0'\n        helm-dependencies: true\n"
            for c in range(CHARTS)
        )
        repositories += "      - name: base/img\n        versions: '>=9'\n"  # matches nothing
        spec = workdir / "spec.yaml"
        spec.write_text(
            f"version: 1\nsources:\n  - registry: {source.host}\n    insecure: true\n"
            f"    repositories:\n{repositories}"
            f"  - registry: {other.host}\n    insecure: true\n"
            f"targets:\n  - name: lab\n    type: registry\n    registry: {destination.host}\n"
            "    insecure: true\n"
        )
        bed = Bed(source, other, destination, spec)
        _fill_half(bed)
        yield bed


def _fill_half(bed: Bed) -> None:
    """Half the image repositories at the destination hold the upstream's tags (the same
    bytes, so the same digests), two of them a tag with other content."""
    plan = json.loads(cli_runner.run("plan", str(bed.spec), "--format", "json").stdout)
    images = sorted(
        c["destination"].split("/", 1)[1] for c in plan["targets"][0]["copies"] if "/team/img" in c["source"]
    )
    assert len(images) == IMAGES
    push_image(bed.destination, "base/img", "1.0.0")
    push_image(bed.destination, "base/img", "1.1.0", seed="second")
    clone_repository(bed.destination, "base/img", images[: IMAGES // 2])
    for repository in images[IMAGES // 2 : IMAGES // 2 + 2]:
        push_image(bed.destination, repository, "1.1.0", seed="not the upstream's")


COMMANDS = {
    "plan-json": ["plan", "{spec}", "--format", "json"],
    "plan-table": ["plan", "{spec}"],
    "plan-markdown": ["plan", "{spec}", "--format", "markdown"],
    "audit-json": ["audit", "{spec}", "--content", "--format", "json"],
    "audit-markdown": ["audit", "{spec}", "--content", "--format", "markdown"],
    "render-terraform": ["render", "terraform", "{spec}", "--target", "lab"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_same_inputs_print_the_same_bytes(bed: Bed, name: str) -> None:
    outputs = []
    for seed, reads, workers in RUNS:
        done = cli_runner.run(
            "--reads",
            reads,
            *(a.format(spec=bed.spec) for a in COMMANDS[name]),
            "--workers",
            workers,
            env=cli_runner.environment(PYTHONHASHSEED=seed),
            check=2 if name.startswith("audit") else 0,
        )
        outputs.append((done.stdout, done.stderr))
    assert outputs[1] == outputs[0]
    assert outputs[2] == outputs[0]
    # the documents hold what makes the order worth fixing
    text = outputs[0][0]
    if name == "plan-json":
        (target,) = json.loads(text)["targets"]
        messages = [n["message"] for n in target["notes"]]
        assert len(messages) == len(set(messages)) > CHARTS * 3  # one per chart version and more
        assert sum("insecure" in m for m in messages) == 3  # two sources, the target
        assert any("no tag matches" in m for m in messages)
        assert len(target["copies"]) > IMAGES // 2 and target["up_to_date"] > 0
        # the two tags with other content, selected by `versions:`, are kept (`moved_tags`); as
        # upstream never held that content, they are not taken for moves
        assert sum("does not have" in m and "on-moved: keep" in m for m in messages) == 2


# --- the records themselves put what they are given in one order ---------------------------

NOTES = [
    Note("info", "b: dependency 'web' comes from 'https://charts.example.com'"),
    Note("warning", "source x: insecure (plain HTTP or unverified TLS)"),
    Note("info", "a: not a Helm chart, no dependencies to follow"),
    Note("warning", "b/c: no tag matches '>=9' among 2 tags"),
    Note("info", "host: no sources: entry"),
]


def _shuffled(items: list[Note], seed: int) -> list[Note]:
    out = [*items, *items[:2]]  # with repeats, as several chart versions say the same
    random.Random(seed).shuffle(out)
    return out


def _copy(source: str, tag: str) -> Copy:
    return Copy("up.example", source, "down.example", f"m/{source}", (CopyTag(tag, "sha256:0", "missing"),))


def test_a_target_plan_says_each_note_once_in_one_order_whatever_order_they_came_in() -> None:
    copies = [_copy("b", "1"), _copy("a", "2"), _copy("c", "3")]
    documents = set()
    for seed in range(6):
        random.Random(seed).shuffle(copies)
        target = TargetPlan(
            "lab", "registry", "down.example", copies=tuple(copies), notes=tuple(_shuffled(NOTES, seed))
        )
        documents.add(to_json(Plan("spec.yaml", (target,), ())))
    (document,) = documents
    (target,) = json.loads(document)["targets"]
    assert [(n["level"], n["message"]) for n in target["notes"]] == [
        ("warning", "b/c: no tag matches '>=9' among 2 tags"),
        ("warning", "source x: insecure (plain HTTP or unverified TLS)"),
        ("info", "a: not a Helm chart, no dependencies to follow"),
        ("info", "b: dependency 'web' comes from 'https://charts.example.com'"),
        ("info", "host: no sources: entry"),
    ]
    assert [c["source"] for c in target["copies"]] == ["up.example/a", "up.example/b", "up.example/c"]


def test_a_target_audit_lists_notes_and_the_registry_s_resources_in_one_order() -> None:
    resources = [
        Resource("rule", "b", {}),
        Resource("policy", "z", {}, managed=False),
        Resource("rule", "a", {}),
    ]
    documents = set()
    for seed in range(6):
        random.Random(seed).shuffle(resources)
        audited = TargetAudit(
            "lab", "x", "down.example", resources=tuple(resources), notes=tuple(_shuffled(NOTES, seed))
        )
        documents.add(to_json(Audit("spec.yaml", (audited,))))
    (document,) = documents
    (audited,) = json.loads(document)["targets"]
    assert [(r["kind"], r["id"]) for r in audited["resources"]] == [
        ("policy", "z"),
        ("rule", "a"),
        ("rule", "b"),
    ]
    assert len(audited["notes"]) == len(NOTES)


def test_a_terraform_file_says_its_notes_in_one_order() -> None:
    spec = parse_spec(
        "version: 1\nsources:\n  - registry: up.example\n    repositories: [{name: a, all-tags: true}]\n"
        "targets:\n  - {name: lab, type: registry, registry: down.example}\n"
    )
    ctx = RunContext(spec)
    try:
        rendered = set()
        for seed in range(6):
            out = TerraformDocument(ctx, spec.targets[0], {})
            out.notes += _shuffled(NOTES, seed)
            finished = out.finish("spec.yaml")
            rendered.add((finished.to_json(), finished.notes))
    finally:
        ctx.close()
    ((text, notes),) = rendered
    assert notes == tuple(sorted(set(NOTES), key=lambda n: (n.level != "warning", n.message)))
    assert json.loads(text)["//"][-len(NOTES) :] == [f"{n.level}: {n.message}" for n in notes]
