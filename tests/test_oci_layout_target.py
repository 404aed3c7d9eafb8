"""`type: oci-layout` through the real CLI: a real docker-registry upstream, real skopeo, the
layout written into a directory and read back.

What it must do (issue 17, item 1): apply writes every selected artifact (images, a chart and
its Helm dependency, the chart's images, a cosign signature, an OCI 1.1 referrer and the
referrers tag index listing it) into one OCI image layout, each manifest under its full
destination reference, digests preserved, blobs shared; a second plan copies nothing;
`audit --content` hashes every reachable blob; the lock document lists every source reference.
Faults: a damaged blob is a one-line audit error naming the reference, a missing blob makes
the next plan copy that reference again, a truncated index.json is a one-line error, a full
disk (a real 4 MiB tmpfs, mounted in a user namespace) leaves index.json and the lock document
whole and the next apply completes it, and two applies into one layout at once both land in index.json.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cli_runner
import pytest
from testbed import RegistryServer, push_chart, push_image, retag
from testbed.signatures import push_cosign, push_referrer

from mirrorspec.layout import Layout

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class Bed:
    upstream: RegistryServer
    digests: dict[str, str]  # source reference (without host) -> digest
    spec: Path
    layout: Path


SPEC = """\
version: 1
sources:
  - registry: {host}
    insecure: true
    repositories:
      - name: team/app
        tags: ["v*"]
      - name: charts/app
        versions: "1.0.0"
        helm-dependencies: true
        chart-images: true
targets:
  - name: airgap
    type: oci-layout
    path: {path}
"""


def _seed(server: RegistryServer) -> dict[str, str]:
    host = server.host
    d = {
        "team/app:v1": push_image(server, "team/app", "v1", seed="v1"),
        "team/app:v2": push_image(server, "team/app", "v2", seed="v2", docker_format=True),
        "team/worker:1.0": push_image(server, "team/worker", "1.0", seed="worker"),
    }
    d["charts/dep:1.0.0"] = push_chart(server, "charts/dep", "1.0.0", seed="dep")
    values = f"image: {host}/team/worker:1.0\n".encode()
    d["charts/app:1.0.0"] = push_chart(
        server,
        "charts/app",
        "1.0.0",
        dependencies=[{"name": "dep", "version": "~1.0.0", "repository": f"oci://{host}/charts"}],
        files={"values.yaml": values},
    )
    d["sig"] = push_cosign(server, "team/app", d["team/app:v1"])
    d["sbom"] = push_referrer(server, "team/app", d["team/app:v2"])
    return d


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Iterator[Bed]:
    upstream = registry_factory()
    digests = _seed(upstream)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(host=upstream.host, path="out/layout"))
    yield Bed(upstream, digests, spec, tmp_path / "out" / "layout")


def _cli(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    return cli_runner.run(*args, check=check)


def _refs(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]}


def _blobs(layout: Path) -> list[Path]:
    return sorted((layout / "blobs" / "sha256").iterdir())


def test_apply_writes_everything_selected_and_a_second_run_copies_nothing(bed: Bed) -> None:
    host, scoped = bed.upstream.host, bed.upstream.host.replace(":", "_")
    plan = _cli("plan", str(bed.spec), "--detailed-exitcode", check=2).stdout
    assert "airgap (oci-layout → oci:out/layout)" in plan
    assert not bed.layout.exists()  # plan writes nothing
    applied = _cli("apply", str(bed.spec), "--yes")
    assert "failed 0" in applied.stdout, applied.stdout

    refs = _refs(bed.layout)
    d = bed.digests
    # the full destination reference: host segment (scoped layout) and repository survive
    expected = {
        f"{scoped}/team/app:v1": d["team/app:v1"],
        f"{scoped}/team/app:v2": d["team/app:v2"],
        f"{scoped}/charts/app:1.0.0": d["charts/app:1.0.0"],
        f"{scoped}/charts/dep:1.0.0": d["charts/dep:1.0.0"],  # Helm dependency
        f"{scoped}/team/worker:1.0": d["team/worker:1.0"],  # the chart's image
        f"{scoped}/team/app:sha256-{d['team/app:v1'][7:]}.sig": d["sig"],  # cosign signature
        f"{scoped}/team/app@{d['sbom']}": d["sbom"],  # untagged OCI 1.1 referrer
    }
    for name, digest in expected.items():
        assert refs.get(name) == digest, (name, sorted(refs))
    # the referrers tag index, as upstream serves it, digest preserved
    index_tag = f"{scoped}/team/app:sha256-{d['team/app:v2'][7:]}"
    assert index_tag in refs
    index = json.loads((bed.layout / "blobs" / "sha256" / refs[index_tag][7:]).read_bytes())
    assert [m["digest"] for m in index["manifests"]] == [d["sbom"]]
    # every blob has the sha256 its name says; none of skopeo's job layouts is left
    for blob in _blobs(bed.layout):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert not (bed.layout / ".mirrorspec-jobs").exists()
    # skopeo reads an OCI manifest back by reference name. (Not the Docker schema 2 one, v2:
    # skopeo 1.9.3 writes it with its digest preserved but looks up only OCI manifests and
    # indexes by name in a layout, "no descriptor found for reference"; checked here.)
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{bed.layout}:{scoped}/team/app:v1"],
        capture_output=True,
        check=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == d["team/app:v1"]

    lock = json.loads((bed.layout / "mirrorspec.lock.json").read_text())
    assert lock["complete"] is True and lock["target"] == "airgap"
    assert lock["references"][f"{host}/team/app:v1"] == {
        "digest": d["team/app:v1"],
        "ref-name": f"{scoped}/team/app:v1",
    }
    assert lock["references"][f"{host}/team/app@{d['sbom']}"]["digest"] == d["sbom"]
    assert len(lock["references"]) == len(refs)
    assert lock["written"].endswith("Z")

    blobs = _blobs(bed.layout)
    again = _cli("plan", str(bed.spec), "--detailed-exitcode")
    assert "0 tag(s) to copy" in again.stdout
    second = _cli("apply", str(bed.spec), "--yes")
    assert "0 tag(s) to copy" in second.stdout
    assert _blobs(bed.layout) == blobs and _refs(bed.layout) == refs
    audit = _cli("audit", str(bed.spec), "--content")
    assert f"{len(refs)} of {len(refs)} tag(s) present with the upstream digest" in audit.stdout

    # moved as a plain tar and unpacked elsewhere, it is the same layout: nothing in it names
    # the directory it was written in
    archive, moved = bed.spec.parent / "layout.tar", bed.spec.parent / "far" / "side"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(bed.layout), "."], check=True)
    moved.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(moved)], check=True)
    far = bed.spec.with_name("far.yaml")
    far.write_text(bed.spec.read_text().replace("path: out/layout", "path: far/side"))
    audit = _cli("audit", str(far), "--content")
    assert f"{len(refs)} of {len(refs)} tag(s) present with the upstream digest" in audit.stdout


def test_a_new_tag_upstream_adds_only_it(bed: Bed) -> None:
    _cli("apply", str(bed.spec), "--yes")
    before = _refs(bed.layout)
    d3 = push_image(bed.upstream, "team/app", "v3", seed="v3")
    plan = _cli("plan", str(bed.spec), "--detailed-exitcode", check=2).stdout
    assert "1 tag(s) to copy" in plan and "v3" in plan
    _cli("apply", str(bed.spec), "--yes")
    after = _refs(bed.layout)
    scoped = bed.upstream.host.replace(":", "_")
    assert {k: v for k, v in after.items() if k not in before} == {f"{scoped}/team/app:v3": d3}
    # a tag moved upstream: its reference is replaced, not listed twice
    moved = retag(bed.upstream, "team/app", "v1", seed="moved")
    plan = _cli("plan", str(bed.spec), "--detailed-exitcode", check=2).stdout
    assert "1 tag(s) to copy" in plan
    _cli("apply", str(bed.spec), "--yes")
    index = json.loads((bed.layout / "index.json").read_text())
    names = [m["annotations"][REF_NAME] for m in index["manifests"]]
    assert names.count(f"{scoped}/team/app:v1") == 1
    assert _refs(bed.layout)[f"{scoped}/team/app:v1"] == moved


def test_damaged_and_missing_blobs(bed: Bed) -> None:
    _cli("apply", str(bed.spec), "--yes")
    scoped = bed.upstream.host.replace(":", "_")
    manifest = json.loads((bed.layout / "blobs" / "sha256" / bed.digests["team/app:v1"][7:]).read_bytes())
    layer = bed.layout / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    data = bytearray(layer.read_bytes())
    data[-1] ^= 1  # same size, other content: only hashing finds it
    layer.write_bytes(bytes(data))
    _cli("plan", str(bed.spec), "--detailed-exitcode")  # a plan only looks: up to date
    audit = _cli("audit", str(bed.spec), "--content", check=1)
    (line,) = audit.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"reference {scoped}/team/app:v1:" in line
    assert f"blob sha256:{layer.name} does not match its digest" in line

    layer.unlink()  # what a user does with a damaged blob: the next apply copies it again
    plan = _cli("plan", str(bed.spec), "--detailed-exitcode", check=2).stdout
    assert "1 tag(s) to copy" in plan
    _cli("apply", str(bed.spec), "--yes")
    assert hashlib.sha256(layer.read_bytes()).hexdigest() == layer.name
    _cli("audit", str(bed.spec), "--content")


def test_truncated_index_and_a_symlink_out(bed: Bed, tmp_path: Path) -> None:
    _cli("apply", str(bed.spec), "--yes")
    index = bed.layout / "index.json"
    whole = index.read_bytes()
    index.write_bytes(whole[: len(whole) // 2])
    for command in (("plan", str(bed.spec)), ("apply", str(bed.spec), "--yes")):
        (line,) = _cli(*command, check=1).stderr.strip().splitlines()
        assert line.startswith(f"error: layout {index}: not valid JSON"), line
    assert index.read_bytes() == whole[: len(whole) // 2]  # nothing was merged into it
    index.write_bytes(whole)

    secret = tmp_path / "secret"
    secret.write_text("not a layer")
    manifest = json.loads((bed.layout / "blobs" / "sha256" / bed.digests["team/app:v1"][7:]).read_bytes())
    layer = bed.layout / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    layer.unlink()
    layer.symlink_to(secret)
    (line,) = _cli("audit", str(bed.spec), "--content", check=1).stderr.strip().splitlines()
    assert "team/app:v1" in line and "is a symlink; refused" in line


NAMESPACED = """\
set -e
mount -t tmpfs -o size={small} tmpfs {mount}
cp -a {layout}/. {mount}/
# fill the rest of the tmpfs, so the copies of the new tags run out of space
dd if=/dev/zero of={mount}/filler bs=4096 count=100000 2>/dev/null || true
set +e
{mirrorspec} apply {spec} --yes > {out}/full.out 2> {out}/full.err
echo $? > {out}/full.rc
cp {mount}/index.json {out}/index-after-full.json
cp {mount}/mirrorspec.lock.json {out}/lock-after-full.json
rm {mount}/filler
{mirrorspec} apply {spec} --yes > {out}/again.out 2> {out}/again.err
echo $? > {out}/again.rc
{mirrorspec} audit {spec} --content > {out}/audit.out 2> {out}/audit.err
echo $? > {out}/audit.rc
"""


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    shell = f"mount -t tmpfs -o size=64k tmpfs {probe}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, check=False)
    return shutil.which("unshare") is not None and proc.returncode == 0


def test_full_disk_keeps_index_whole_and_the_next_apply_completes(bed: Bed, tmp_path: Path) -> None:
    """A real full disk: a tmpfs mounted in a user namespace (`unshare -rm`) holds the layout;
    the apply that runs out of space fails with one line per copy, index.json is still valid
    JSON with every earlier reference, and once space is freed the next apply completes it."""
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("no user namespaces here: test_layout_store injects ENOSPC through the write hook")
    _cli("apply", str(bed.spec), "--yes")
    before = _refs(bed.layout)
    for n in range(4):
        push_image(bed.upstream, "team/app", f"v9.{n}", seed=f"big{n}", filler=300_000)
    mount, out = tmp_path / "mnt", tmp_path / "results"
    mount.mkdir()
    out.mkdir()
    spec = tmp_path / "mounted.yaml"
    spec.write_text(SPEC.format(host=bed.upstream.host, path=str(mount)))
    script = NAMESPACED.format(
        small="4m", mount=mount, layout=bed.layout, mirrorspec=cli_runner.MIRRORSPEC, spec=spec, out=out
    )
    subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], env=cli_runner.environment(), check=True, timeout=600
    )
    assert (out / "full.rc").read_text().strip() == "1"
    err = (out / "full.err").read_text()
    assert "Traceback" not in err and "no space left on device" in err.lower(), err
    # index.json and the lock document are replaced by the same atomic write; the lock
    # document, written last, meets the full disk itself: the previous one is kept whole.
    assert "mirrorspec.lock.json not written: " in err and "the previous file is kept" in err
    assert (out / "lock-after-full.json").read_bytes() == (bed.layout / "mirrorspec.lock.json").read_bytes()
    after_full = json.loads((out / "index-after-full.json").read_text())  # whole JSON
    names = {m["annotations"][REF_NAME] for m in after_full["manifests"]}
    assert set(before) <= names
    assert (out / "again.rc").read_text().strip() == "0", (out / "again.err").read_text()
    assert (out / "audit.rc").read_text().strip() == "0", (out / "audit.out").read_text()
    audit = (out / "audit.out").read_text()
    assert f"{len(before) + 4} of {len(before) + 4} tag(s) present" in audit


def test_two_applies_into_one_layout_at_once(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    upstream = registry_factory()
    digests = {}
    for repository in ("one/app", "two/app"):
        for n in range(6):
            digests[f"{repository}:{n}"] = push_image(upstream, repository, f"{n}", seed=f"{repository}{n}")
    specs = []
    for repository in ("one/app", "two/app"):
        spec = tmp_path / f"{repository.split('/')[0]}.yaml"
        spec.write_text(
            f"version: 1\nsources:\n  - registry: {upstream.host}\n    insecure: true\n    repositories:\n"
            f"      - name: {repository}\n        all-tags: true\n"
            "targets:\n  - name: airgap\n    type: oci-layout\n    path: shared\n"
        )
        specs.append(spec)
    procs = [
        subprocess.Popen(
            [cli_runner.MIRRORSPEC, "apply", str(spec), "--yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_runner.environment(),
        )
        for spec in specs
    ]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout + stderr
    scoped = upstream.host.replace(":", "_")
    assert _refs(tmp_path / "shared") == {f"{scoped}/{k}": v for k, v in digests.items()}
    layout = Layout(tmp_path / "shared")
    assert len(layout.refs()) == 12


def test_spec_errors_and_what_cannot_write_a_layout(tmp_path: Path) -> None:
    """No registry needed: a path skopeo could not name, and `render skopeo`, refused in one line."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(host="127.0.0.1:9", path="'a:b'"))
    (line,) = _cli("validate", str(spec), check=1).stderr.strip().splitlines()
    assert line.startswith(f"error: {spec}:") and "path: 'a:b' is not a directory path without ':'" in line
    spec.write_text(SPEC.format(host="127.0.0.1:9", path="out"))
    _cli("validate", str(spec))
    (line,) = _cli("render", "skopeo", str(spec), "--target", "airgap", check=1).stderr.strip().splitlines()
    assert line == (
        "error: target 'airgap' is an OCI layout: skopeo sync cannot write one; "
        "use `mirrorspec apply` to fill it"
    )
    assert not (tmp_path / "out").exists()
