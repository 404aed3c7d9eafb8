"""`mirrorspec.layout.store` on well-formed and hostile layouts: every damage is one
`LayoutError` line naming the path or reference, nothing is trusted before it is hashed, and
index.json is replaced whole or not at all."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorspec.errors import MirrorspecError
from mirrorspec.layout import Layout, LayoutError, LayoutRef, parse_ref_name, ref_name
from mirrorspec.layout.content import check_reference
from mirrorspec.layout.store import MAX_INDEX_BYTES

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _put_blob(layout: Layout, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout.path / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _one_line(exc: pytest.ExceptionInfo[LayoutError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert isinstance(exc.value, MirrorspecError)
    return message


def test_ref_names_keep_host_and_repository() -> None:
    assert (
        ref_name("public.cr.seqera.io/charts/platform", "1.2.0")
        == "public.cr.seqera.io/charts/platform:1.2.0"
    )
    assert parse_ref_name("mirror/127.0.0.1_5000/team/app:v1.0.0") == (
        "mirror/127.0.0.1_5000/team/app",
        "v1.0.0",
    )
    digest = "sha256:" + "a" * 64
    assert ref_name("team/app", digest) == f"team/app@{digest}"
    assert parse_ref_name(f"team/app@{digest}") == ("team/app", digest)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "team/app",  # no tag
        "Team/App:v1",  # upper case path
        "team//app:v1",
        "../etc/passwd:v1",
        "team/app:-v1",
        "team/app:v1\nerror: forged",
        "team/app@sha256:abc",
        "team/app:" + "t" * 129,
        "/team/app:v1",
    ],
)
def test_names_outside_the_rules_are_refused(name: str) -> None:
    with pytest.raises(LayoutError) as caught:
        parse_ref_name(name)
    assert "reference '" in _one_line(caught)


def test_add_refs_then_read_back_and_merge(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "out")
    assert not layout.exists() and layout.refs() == {}
    first = _put_blob(layout, b'{"one": 1}')
    layout.add_refs([LayoutRef("team/app:v1", first, MANIFEST, 10)])
    assert layout.exists()
    assert json.loads((layout.path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    second = _put_blob(layout, b'{"two": 2}')
    layout.add_refs(
        [LayoutRef("team/app:v2", second, MANIFEST, 10), LayoutRef("team/app:v1", second, MANIFEST, 10)]
    )
    refs = layout.refs()
    assert {n: r.digest for n, r in refs.items()} == {"team/app:v1": second, "team/app:v2": second}
    index = json.loads((layout.path / "index.json").read_text())
    assert index["schemaVersion"] == 2 and len(index["manifests"]) == 2
    assert not list(layout.path.glob(".*.tmp"))


def test_unnamed_entries_of_others_are_kept(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.ensure()
    digest = _put_blob(layout, b"x")
    other = {"mediaType": MANIFEST, "digest": digest, "size": 1}
    (tmp_path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [other]}))
    layout.add_refs([LayoutRef("a/b:c", digest, MANIFEST, 1)])
    assert json.loads((tmp_path / "index.json").read_text())["manifests"][0] == other
    assert list(layout.refs()) == ["a/b:c"]


def test_blobs_are_verified(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.ensure()
    digest = _put_blob(layout, b"hello")
    assert layout.read_blob(digest, 100) == b"hello"
    layout.verify_blob(digest, 5)
    with pytest.raises(LayoutError) as caught:
        layout.read_blob(digest, 3)
    assert digest in _one_line(caught) and "more than the 3 allowed" in str(caught.value)
    with pytest.raises(LayoutError) as caught:
        layout.verify_blob(digest, 6)
    assert "its descriptor says 6" in _one_line(caught)
    layout.blob_path(digest).write_bytes(b"hellO")  # same size, other content
    for check in (lambda: layout.read_blob(digest, 100), lambda: layout.verify_blob(digest, 5)):
        with pytest.raises(LayoutError) as caught:
            check()
        assert _one_line(caught) == f"layout {tmp_path}: blob {digest} does not match its digest"
    missing = "sha256:" + "0" * 64
    with pytest.raises(LayoutError) as caught:
        layout.verify_blob(missing)
    assert _one_line(caught) == f"layout {tmp_path}: blob {missing} is missing"
    with pytest.raises(LayoutError) as caught:
        layout.blob_path("sha256:../../etc/passwd")
    assert "is not a sha256 or sha512 digest" in _one_line(caught)


def test_symlinks_out_of_the_layout_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    digest = "sha256:" + hashlib.sha256(b"secret").hexdigest()
    layout = Layout(tmp_path / "layout")
    layout.ensure()
    (layout.path / "blobs" / "sha256").mkdir()
    (layout.path / "blobs" / "sha256" / digest[7:]).symlink_to(outside)
    for read in (lambda: layout.read_blob(digest, 100), lambda: layout.verify_blob(digest)):
        with pytest.raises(LayoutError) as caught:
            read()
        assert "is a symlink; refused" in _one_line(caught) and digest[7:] in str(caught.value)
    # a symlinked directory on the way
    other = tmp_path / "elsewhere"
    (other / "sha256").mkdir(parents=True)
    (other / "sha256" / digest[7:]).write_bytes(b"secret")
    (layout.path / "blobs" / "sha256" / digest[7:]).unlink()
    (layout.path / "blobs" / "sha256").rmdir()
    (layout.path / "blobs").rmdir()
    (layout.path / "blobs").symlink_to(other)
    with pytest.raises(LayoutError) as caught:
        layout.verify_blob(digest)
    assert _one_line(caught) == f"layout {layout.path}: blobs is a symlink; refused"
    # index.json pointing elsewhere
    (layout.path / "index.json").symlink_to(outside)
    with pytest.raises(LayoutError) as caught:
        layout.refs()
    assert "index.json" in _one_line(caught) and "symlink" in str(caught.value)


def test_truncated_and_oversized_index(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    digest = _put_blob(layout, b"m")
    layout.add_refs([LayoutRef("team/app:v1", digest, MANIFEST, 1)])
    whole = (tmp_path / "index.json").read_bytes()
    (tmp_path / "index.json").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(LayoutError) as caught:
        layout.refs()
    assert _one_line(caught).startswith(f"layout {tmp_path / 'index.json'}: not valid JSON")
    with open(tmp_path / "index.json", "wb") as big:
        big.truncate(MAX_INDEX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(LayoutError) as caught:
        layout.refs()
    assert "more than the" in _one_line(caught)
    # a writer refuses to merge into a damaged index rather than drop what it cannot read
    with pytest.raises(LayoutError):
        layout.add_refs([LayoutRef("team/app:v2", digest, MANIFEST, 1)])


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ({"mediaType": MANIFEST, "digest": "sha256:zz", "size": 1}, "is not a sha256 or sha512 digest"),
        ({"mediaType": MANIFEST, "digest": "sha256:" + "a" * 64, "size": -1}, "size is not"),
        (
            {
                "mediaType": MANIFEST,
                "digest": "sha256:" + "a" * 64,
                "size": 1,
                "annotations": {"org.opencontainers.image.ref.name": "../../x:1"},
            },
            "reference '../../x:1' is not a valid",
        ),
    ],
)
def test_bad_index_entries(tmp_path: Path, entry: dict[str, object], said: str) -> None:
    layout = Layout(tmp_path)
    layout.ensure()
    (tmp_path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    with pytest.raises(LayoutError) as caught:
        layout.refs()
    assert said in _one_line(caught) and str(tmp_path / "index.json") in str(caught.value)


def test_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(LayoutError) as caught:
        Layout(tmp_path).refs()
    assert "oci-layout is missing" in _one_line(caught)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "9"}')
    with pytest.raises(LayoutError) as caught:
        Layout(tmp_path).refs()
    assert "not an OCI image layout version 1.0.0" in _one_line(caught)


def test_a_failed_write_keeps_the_previous_index(tmp_path: Path) -> None:
    """A full disk, injected through the write hook (no small filesystem can be mounted here
    without privileges): the old index.json stays whole, no temporary file is left, and the
    next write completes."""
    layout = Layout(tmp_path)
    digest = _put_blob(layout, b"m")
    layout.add_refs([LayoutRef("team/app:v1", digest, MANIFEST, 1)])
    before = (tmp_path / "index.json").read_bytes()

    def full(_chunk: bytes) -> None:
        raise OSError(28, os.strerror(28))

    layout.write_hook = full
    with pytest.raises(LayoutError) as caught:
        layout.add_refs([LayoutRef("team/app:v2", digest, MANIFEST, 1)])
    assert _one_line(caught) == (
        f"layout {tmp_path / 'index.json'}: cannot write: No space left on device; the previous file is kept"
    )
    assert (tmp_path / "index.json").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))
    layout.write_hook = None
    layout.add_refs([LayoutRef("team/app:v2", digest, MANIFEST, 1)])
    assert set(layout.refs()) == {"team/app:v1", "team/app:v2"}


def _writer(path: str, worker: int, digest: str) -> None:
    layout = Layout(Path(path))
    for n in range(25):
        layout.add_refs([LayoutRef(f"w{worker}/app:t{n}", digest, MANIFEST, 1)])


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    digest = _put_blob(layout, b"m")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, digest)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
        assert process.exitcode == 0
    assert set(layout.refs()) == {f"w{w}/app:t{n}" for w in range(4) for n in range(25)}


def _manifest(layout: Layout, blobs: list[bytes]) -> tuple[str, int]:
    config, *layers = [(_put_blob(layout, b), len(b)) for b in blobs]
    body = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"mediaType": "c", "digest": config[0], "size": config[1]},
            "layers": [{"mediaType": "l", "digest": d, "size": n} for d, n in layers],
        }
    ).encode()
    return _put_blob(layout, body), len(body)


def test_what_a_reference_reaches(tmp_path: Path) -> None:
    """An index → two manifests → their config and layers (one layer shared): a plan's look
    finds a missing or resized blob, only hashing finds changed bytes, and a shared `checked`
    set reads a blob once."""
    layout = Layout(tmp_path)
    layout.ensure()
    first = _manifest(layout, [b"config-1", b"shared layer", b"layer one"])
    second = _manifest(layout, [b"config-2", b"shared layer"])
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [{"mediaType": MANIFEST, "digest": d, "size": n} for d, n in (first, second)],
        }
    ).encode()
    top = _put_blob(layout, index)
    ref = LayoutRef("team/app:v1", top, "application/vnd.oci.image.index.v1+json", len(index))
    assert check_reference(layout, ref, hash_blobs=True) == 7  # index, 2 manifests, 4 blobs
    checked: set[str] = set()
    check_reference(layout, ref, hash_blobs=True, checked=checked)
    shared = "sha256:" + hashlib.sha256(b"shared layer").hexdigest()
    assert shared in checked and len(checked) == 4  # the blobs, not the manifests (re-read)

    layout.blob_path(shared).write_bytes(b"shared LAYER")  # same size, other bytes
    check_reference(layout, ref, hash_blobs=False)  # a plan's look does not read layers
    with pytest.raises(LayoutError) as caught:
        check_reference(layout, ref, hash_blobs=True)
    assert (
        _one_line(caught)
        == f"reference team/app:v1: layout {tmp_path}: blob {shared} does not match its digest"
    )
    check_reference(layout, ref, hash_blobs=True, checked=checked)  # found good before: trusted

    layout.blob_path(shared).write_bytes(b"short")
    with pytest.raises(LayoutError) as caught:
        check_reference(layout, ref, hash_blobs=False)
    assert "is 5 bytes, its descriptor says 12" in _one_line(caught)
    layout.blob_path(shared).unlink()
    with pytest.raises(LayoutError) as caught:
        check_reference(layout, ref, hash_blobs=False)
    assert _one_line(caught).endswith(f"blob {shared} is missing")
    layout.blob_path(first[0]).unlink()  # a child manifest
    with pytest.raises(LayoutError) as caught:
        check_reference(layout, ref, hash_blobs=False)
    assert f"blob {first[0]} is missing" in _one_line(caught)


def test_job_layouts_of_dead_runs_are_swept(tmp_path: Path) -> None:
    from mirrorspec.skopeo.layout_copy import JOBS_DIR, _sweep

    layout = Layout(tmp_path)
    layout.ensure()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    jobs = tmp_path / JOBS_DIR
    (jobs / f"{dead.pid}-1-1").mkdir(parents=True)
    (jobs / f"{dead.pid}-1-1" / "oci-put-blob123").write_bytes(b"half a blob")
    (jobs / f"{os.getpid()}-1-1").mkdir()  # a copy of this run, still going
    _sweep(layout)
    assert sorted(p.name for p in jobs.iterdir()) == [f"{os.getpid()}-1-1"]
