"""`--shard I/N` (issue 18, item 9): N processes at once, each with its own shard, copy every tag
exactly once, with no coordination between them.

Real docker-registry servers (a plain HTTP source and destination), real skopeo, the real
`mirrorspec` console script, three `apply --yes --shard i/3` processes started together. What
each process copied is read from its own output, and what the destination received from the
destination's access log: every tag's manifest PUT exactly once, by whichever process, and the
union of the shards' plans equal to the unsharded plan. The spec uses `layout: flat`, so the
destination paths (and so the shards) do not depend on the test registries' ports.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cli_runner
import pytest
import yaml
from emulators.harbor import HarborEmulator
from testbed import RegistryServer, access_records, add_tags, push_chart, push_image, start_registry
from testbed.signatures import push_cosign

from mirrorspec import engine, render_kubernetes
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.plan import Change, Plan
from mirrorspec.providers.harbor.native import ENGINE as HARBOR_ENGINE
from mirrorspec.shards import MAX_SHARDS, Shard, changes_of, owner, parse, shard_of
from mirrorspec.spec import parse_spec

# The shard of each destination repository among 3 (a property of the names, checked below by
# the plans themselves): every shard has work, and the chart's dependency (shard 0) is in
# another shard than the chart (shard 1).
SHARDS_OF_3 = {
    "mirror/images/a": 1,
    "mirror/images/b": 2,
    "mirror/images/c": 0,
    "mirror/images/d": 1,
    "mirror/images/e": 2,
    "mirror/images/f": 2,
    "mirror/charts/app": 1,
    "mirror/charts/redis": 0,
}


@dataclass
class Bed:
    source: RegistryServer
    destination: RegistryServer
    spec: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    root = tmp_path_factory.mktemp("shards")
    with start_registry(root / "source") as source, start_registry(root / "destination") as destination:
        for name in "abcdef":
            first = push_image(source, f"images/{name}", "1.0", seed=name)
            add_tags(source, f"images/{name}", "1.0", ["1.1"])
            if name in "ab":  # a signature lives in its image's repository, and goes with it
                push_cosign(source, f"images/{name}", first)
        push_chart(source, "charts/redis", "18.0.1")
        redis = [{"name": "redis", "version": "~18.0.0", "repository": f"oci://{source.host}/charts"}]
        push_chart(source, "charts/app", "1.0.0", dependencies=redis)
        spec = root / "spec.yaml"
        spec.write_text(
            f"""\
version: 1
layout: flat
sources:
  - registry: {source.host}
    insecure: true
    repositories:
      - name: charts/app
        versions: ">=1.0.0"
        helm-dependencies: true
{"".join(f'      - name: images/{n}{chr(10)}        tags: ["1.*"]{chr(10)}' for n in "abcdef")}\
targets:
  - name: lab
    type: registry
    registry: {destination.host}
    insecure: true
    prefix: mirror
"""
        )
        tmp = root / "tmpdir"
        tmp.mkdir()
        yield Bed(source, destination, spec, cli_runner.environment(TMPDIR=str(tmp)))


def _planned(bed: Bed, *extra: str) -> set[tuple[str, str]]:
    return _copies(cli_runner.run("plan", str(bed.spec), "--format", "json", *extra, env=bed.env).stdout)


def _copies(plan_json: str) -> set[tuple[str, str]]:
    """(destination, tag) of every copy in a plan document."""
    targets = json.loads(plan_json)["targets"]
    return {(c["destination"], tag["tag"]) for t in targets for c in t["copies"] for tag in c["tags"]}


def _spawn(bed: Bed, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [cli_runner.MIRRORSPEC, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=bed.env,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in out + err
    return out, err


def test_three_concurrent_shards_copy_every_tag_exactly_once(bed: Bed) -> None:
    everything = _planned(bed)
    host = bed.destination.host
    assert {d.removeprefix(f"{host}/") for d, _ in everything} == set(SHARDS_OF_3)
    assert sum(1 for _, tag in everything if tag.endswith(".sig")) == 2  # the signatures
    # Each shard's plan, in its own process, run at the same time.
    plans = [_spawn(bed, "plan", str(bed.spec), "--format", "json", "--shard", f"{i}/3") for i in range(3)]
    parts: list[set[tuple[str, str]]] = []
    for proc in plans:
        parts.append(_copies(_finish(proc)[0]))
    for index, part in enumerate(parts):
        assert part, f"shard {index}/3 has nothing to do"
        assert {d.removeprefix(f"{host}/") for d, _ in part} == {
            path for path, shard in SHARDS_OF_3.items() if shard == index
        }
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])
    assert parts[0] | parts[1] | parts[2] == everything

    before = len(access_records(bed.destination))
    applies = [_spawn(bed, "apply", str(bed.spec), "--yes", "--shard", f"{i}/3") for i in range(3)]
    outputs = [_finish(proc)[0] for proc in applies]
    for part, out in zip(parts, outputs, strict=True):
        assert f"{len(part)} of {len(part)} tag(s) copied and verified" in out, out

    # The destination's view: every planned tag's manifest PUT once, nothing else tagged.
    puts = Counter(
        record.uri
        for record in access_records(bed.destination)[before:]
        if record.method == "PUT" and "/manifests/" in record.uri and record.status == 201
    )
    by_tag = {u: n for u, n in puts.items() if "/manifests/sha256:" not in u}
    wanted = {f"/v2/{d.removeprefix(f'{host}/')}/manifests/{tag}" for d, tag in everything}
    assert set(by_tag) == wanted
    assert set(by_tag.values()) == {1}, {u: n for u, n in by_tag.items() if n != 1}

    # Nothing is left, sharded or not.
    cli_runner.run("plan", str(bed.spec), "--detailed-exitcode", env=bed.env)
    audit = cli_runner.run(
        "audit", str(bed.spec), "--content", "--format", "json", "--shard", "2/3", env=bed.env
    )
    (target,) = json.loads(audit.stdout)["targets"]
    assert {(c["destination"], c["tag"]) for c in target["content"]} == parts[2]
    assert all(c["status"] == "present" for c in target["content"])
    assert any("shard 2/3: 3 of 8 destination repositories" in n["message"] for n in target["notes"])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("3/3", "the index must be 0 to 2"),
        ("0/0", f"the count must be 1 to {MAX_SHARDS}"),
        ("1", "expected INDEX/COUNT"),
        ("-1/3", "expected INDEX/COUNT"),
        # what a pod would run if the kubelet had not expanded the index: refused, not guessed
        ("$(JOB_COMPLETION_INDEX)/3", "expected INDEX/COUNT"),
    ],
)
def test_a_bad_shard_is_one_line_and_exit_1(value: str, says: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"  # never read: the option is refused first
    proc = cli_runner.run("apply", str(spec), "--yes", "--shard", value, check=1)
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--shard'") and says in line


def test_the_partition_is_stable_and_complete() -> None:
    # The first 8 bytes of sha256("mirror/images/a") are e7418066310a2d6a: this value is the
    # partition's contract with every other worker, machine and version, so it is pinned here.
    assert shard_of("mirror/images/a", 1 << 20) == 0xE7418066310A2D6A % (1 << 20)
    assert {path: shard_of(path, 3) for path in SHARDS_OF_3} == SHARDS_OF_3
    paths = [f"team-{n}/app" for n in range(300)]
    owners = [[s for s in range(7) if Shard(s, 7).owns(p)] for p in paths]
    assert all(len(o) == 1 for o in owners)  # each path in exactly one shard
    assert str(parse(" 2/7 ")) == "2/7"


def test_a_repository_copied_natively_is_shard_0s_whatever_its_hash() -> None:
    native = {"mirror/images/a", "mirror/images/b"}  # shards 1 and 2 of 3 by their hash
    assert {p: owner(p, 3, native) for p in SHARDS_OF_3} == {
        **SHARDS_OF_3,
        "mirror/images/a": 0,
        "mirror/images/b": 0,
    }
    assert Shard(0, 3).owns("mirror/images/b", native) and not Shard(2, 3).owns("mirror/images/b", native)
    assert Shard(2, 3).owns("mirror/images/e", native)  # everything else keeps its hash


def _change(action: Any, kind: str, id: str) -> Change:
    return Change(action, kind, id, None, {})


def test_native_changes_are_shard_0s_but_each_shard_creates_what_its_copies_need() -> None:
    changes = [
        _change("create", "rule", "mirror"),
        _change("create", "repository", "mirror/images/c"),  # shard 0's repository
        _change("create", "repository", "mirror/images/a"),  # shard 1's
        _change("create", "project", "mirror"),  # holds repositories of every shard
        _change("update", "repository", "mirror/images/a"),
        _change("delete", "rule", "old"),
    ]
    support = ("repository", "project")
    paths = list(SHARDS_OF_3)
    assert changes_of(Shard(0, 3), changes, support, paths) == tuple(changes)
    assert changes_of(Shard(1, 3), changes, support, paths) == (changes[2], changes[3])
    assert changes_of(Shard(2, 3), changes, support, paths) == (changes[3],)


def test_an_oci_layout_target_is_not_sharded(bed: Bed, tmp_path: Path) -> None:
    spec = tmp_path / "layout.yaml"
    spec.write_text(
        bed.spec.read_text().split("targets:")[0]
        + f"targets:\n  - name: disk\n    type: oci-layout\n    path: {tmp_path / 'layout'}\n"
    )
    proc = cli_runner.run("plan", str(spec), "--shard", "0/2", env=bed.env, check=1)
    assert "target 'disk' is an OCI layout" in proc.stderr and "without --shard" in proc.stderr
    one = cli_runner.run("plan", str(spec), "--format", "json", "--shard", "0/1", env=bed.env)
    assert {tag for _, tag in _copies(one.stdout)} >= {"1.0", "1.1", "1.0.0", "18.0.1"}


def test_the_command_render_kubernetes_writes_runs_a_shard(bed: Bed) -> None:
    """The rendered container's command and args, with the index the Job controller puts in
    `JOB_COMPLETION_INDEX` expanded as the kubelet does, and the spec where the pod mounts it
    replaced by the spec here: a working `apply` of that shard (after the copies above, or alone,
    with nothing or that shard's copies to do). The three-process test runs the same arguments
    for every shard."""
    rendered = cli_runner.run(
        "render", "kubernetes", str(bed.spec), "--schedule", "@hourly", "--shards", "3", env=bed.env
    ).stdout
    cron_job = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "CronJob")
    (container,) = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mirrorspec"]
    args = [str(bed.spec) if a == render_kubernetes.SPEC_PATH else a for a in container["args"]]
    run = [a.replace("$(JOB_COMPLETION_INDEX)", "1") for a in args]
    assert run[: run.index("--shard")] == ["apply", str(bed.spec), "--yes", "--target", "lab"]
    out = cli_runner.run(*run, env=bed.env).stdout
    assert "shard 1/3: 3 of 8 destination repositories are this shard's" in out


HARBOR_HOST = "harbor.internal.example.com"
HARBOR_SECRET = "harbor-shard-canary-3f9d"


def _harbor_copies(the_plan: Plan) -> dict[str, str]:
    """destination repository -> engine, of every copy in a plan."""
    return {c.destination_repository: c.engine for t in the_plan.targets for c in t.copies}


def test_a_harbor_targets_replicated_repositories_are_shard_0s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Harbor copy is an execution of the repository's replication policy, which only shard 0
    creates or updates (native changes are its alone), and Harbor refuses a copy no applied
    policy lists: so every replicated repository is shard 0's, whatever its hash. Shard 1 runs
    first here, as a pod may start before shard 0's: it has nothing of Harbor's to do, and its
    apply succeeds; shard 0 then plans every copy the unsharded plan has, and carries them out."""
    monkeypatch.setenv("HARBOR_USER", "admin")
    monkeypatch.setenv("HARBOR_PASSWORD", HARBOR_SECRET)
    spec = parse_spec(
        "version: 1\n"
        "credentials:\n  harbor-admin:\n    username: {env: HARBOR_USER}\n"
        "    password: {env: HARBOR_PASSWORD}\n"
        "sources:\n  - registry: quay.io\n    repositories:\n"
        + "".join(f"      - {{name: team/{n}, tags: ['1.0']}}\n" for n in "abc")
        + f"targets:\n  - {{name: dc1, type: harbor, url: 'https://{HARBOR_HOST}', project: vendor, "
        "credentials: harbor-admin}\n"
    )
    with (
        start_registry(tmp_path / "upstream") as upstream,
        start_registry(tmp_path / "backing") as backing,
        HarborEmulator(backing, upstreams={"quay.io": upstream}, users={"admin": HARBOR_SECRET}) as emu,
    ):
        for name in "abc":
            push_image(upstream, f"team/{name}", "1.0", seed=name)
        overrides = {
            "quay.io": Endpoint(upstream.host, insecure=True),
            HARBOR_HOST: Endpoint(emu.host, ca_bundle=str(emu.ca_file)),
        }
        ctx = RunContext(spec, workers=2, registry_overrides=overrides)
        whole = engine.plan(ctx)
        everything = _harbor_copies(whole)
        assert len(everything) == 3 and set(everything.values()) == {HARBOR_ENGINE}
        # By its hash alone shard 1/2 would own some of them: what this test is about.
        assert {shard_of(path, 2) for path in everything} == {0, 1}

        second = engine.plan(ctx, shard=Shard(1, 2))
        (target,) = second.targets
        assert target.copies == () and target.changes == ()
        said = [n.message for n in target.notes if n.message.startswith("shard 1/2:")]
        assert said == [
            "shard 1/2: 0 of 3 destination repositories are this shard's (sha256 of the path mod 2, "
            "except the 3 the target copies natively, which are shard 0's with the native changes "
            "those copies wait for); the other shards copy the rest; native rules and policies are "
            "planned and applied by shard 0/2"
        ]
        assert engine.apply(ctx, second).failures == []

        first = engine.plan(ctx, shard=Shard(0, 2))
        assert _harbor_copies(first) == everything
        assert first.targets[0].changes == whole.targets[0].changes
        assert engine.apply(ctx, first).failures == []

        # audit --shard follows the plan's owners: shard 1 checks none of them, shard 0 all.
        (audited,) = engine.audit(ctx, shard=Shard(1, 2)).targets
        assert audited.content == () and any("0 of 3 destination" in n.message for n in audited.notes)
        (audited,) = engine.audit(ctx, shard=Shard(0, 2)).targets
        host = f"{audited.registry}/"
        assert {c.destination.removeprefix(host) for c in audited.content or ()} == set(everything)
        assert all(c.status == "present" for c in audited.content or ())
        emu.wait_idle()
