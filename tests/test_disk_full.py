"""A destination whose storage fills up mid-copy, then grows: the next apply names the damage
in one line with the fix, does not retry it on every run, and converges once it is fixed.

The test bed: a real `docker-registry` whose storage root is a tmpfs the test mounts (root
only; the test is skipped otherwise) and sizes to the page, so that the disk fills at one
chosen write of distribution's commit of one image copied by the real skopeo; then the tmpfs
is grown (`mount -o remount,size=`) and `mirrorspec apply` runs again through the console
script. No timing is involved: which write fails follows from the page count alone.

What was observed (docker-registry 2.8.2, skopeo 1.9.3, tmpfs with 4 KiB pages; by hand with
`find <root> -type f -printf '%s %p'`, `curl`, the registry's log, `docker-registry
garbage-collect` on a copy of the storage and `mirrorspec -v apply`; the tests assert the facts
they rely on — which link is left empty, the log line, the 500 after growing, the 404 after
the fix):

- An upload holds `_uploads/<id>/{startedat,hashstates/sha256/0,hashstates/sha256/<size>,data}`
  (one page each, the data as many as it needs). The commit renames the data into
  `blobs/sha256/<xx>/<hex>/data` (no new page), then writes the repository's
  `_layers/sha256/<hex>/link`; freeing the upload's pages comes last. With no page left for
  the link, the file is created but stays empty, the PUT answers 500 and the log says
  `filesystem: write …/_layers/sha256/<hex>/link: no space left on device`. Blob data is
  always complete. Manifests do the same with `_manifests/revisions/sha256/<hex>/link`,
  `_manifests/tags/<tag>/index/sha256/<hex>/link` and then `…/tags/<tag>/current/link`.
- With an empty link, HEAD and GET of the blob (or manifest) answer 500 `UNKNOWN: unknown
  error` — the log says `invalid checksum digest format` — before and after the storage
  grows, and so does `DELETE` of the blob. `docker-registry garbage-collect` deletes the
  blob's data (no manifest references it) and keeps the empty link: still 500.
- skopeo's text on the attempts after that, for a layer: `trying to reuse blob sha256:<hex>
  at destination: failed to read from destination repository <repo>: 500 (Internal Server
  Error)`; for the config blob: `writing blob: failed to read from destination repository
  <repo>: 500 (Internal Server Error)` (no digest). For the first attempt, whose commit hit
  the full disk: `writing blob: uploading layer to http://…/blobs/uploads/<id>?_state=…
  &digest=sha256%3A<hex>: received unexpected HTTP status: 500 Internal Server Error`.
  Before the fix every later apply retried it 3 times and failed with that text.
- A tag whose `current/link` is empty makes `plan` fail on the HEAD of the tag (500 through
  all of the client's retries): before the fix "… the registry is unhealthy, retry later".
- Repairs: a monolithic upload of the same bytes (`POST` then `PUT ?digest=`) rewrites the
  link (201, then HEAD 200), but skopeo never makes one (it checks first and stops at the
  500). Deleting the empty link files (`find … -name link -size 0 -delete`) turns the 500
  into 404, and the next apply uploads and links the blob, or pushes the tag, and converges.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from testbed import (
    MANIFEST_ACCEPT,
    FaultProxy,
    RegistryServer,
    access_records,
    add_tags,
    push_image,
    start_registry,
)

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
REPOSITORY = "images/app"
FILLER = 1 << 20  # bytes of incompressible layer content
GROWN = "64m"
WAIT = 120.0  # bound on one CLI run; the runs here take seconds (the plan case ~20 s)
PAGE = os.sysconf("SC_PAGE_SIZE")  # tmpfs counts its size in pages
DAMAGED = "destination storage damaged"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
FIX = "`find <storage root>/docker/registry/v2/repositories/{repository} -name link -size 0 -delete`"


def _mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir(parents=True)
    # Huge pages would count the size in 2 MiB units; a kernel without them rejects the option.
    for options in (f"size={size},mode=0700,huge=never", f"size={size},mode=0700"):
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return
    pytest.skip(f"cannot mount a tmpfs for the registry's storage (needs root): {proc.stderr.strip()}")


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@dataclass
class Bed:
    upstream: RegistryServer
    destination: RegistryServer
    storage: Path  # the destination's storage root, a tmpfs
    spec: Path
    digest: str  # what every tag points at
    layers: list[str]  # of each image, in the order skopeo copies them
    configs: list[str]

    @property
    def repository(self) -> str:
        return f"mirror/{self.upstream.host.replace(':', '_')}/{REPOSITORY}"

    @property
    def repository_dir(self) -> Path:
        return self.storage / "docker/registry/v2/repositories" / self.repository

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
        proc = subprocess.run(
            [MIRRORSPEC, *args], capture_output=True, text=True, env=env, timeout=WAIT, check=False
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "internal error" not in proc.stderr, proc.stderr
        return proc

    def apply(self) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "--yes", str(self.spec))

    def empty_links(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.repository_dir))
            for p in self.repository_dir.rglob("link")
            if p.stat().st_size == 0
        )

    def status(self, kind: str, reference: str) -> int:
        resp = requests.head(
            f"{self.destination.url}/v2/{self.repository}/{kind}/{reference}",
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=10,
        )
        return resp.status_code

    def blob_checks(self, digest: str, since: int) -> int:
        """HEADs of `digest` in the destination repository answered 500 since access record `since`."""
        uri = f"/v2/{self.repository}/blobs/{digest}"
        return sum(
            1
            for r in access_records(self.destination)[since:]
            if (r.method, r.uri, r.status) == ("HEAD", uri, 500)
        )

    def grow(self) -> None:
        subprocess.run(["mount", "-o", f"remount,size={GROWN}", str(self.storage)], check=True)

    def repair(self, message: str) -> None:
        """Run the docker-registry command the diagnosis gives, on this registry's storage."""
        match = re.search(r"`(find [^`]+)`", message)
        assert match is not None, message
        command = match[1]
        assert command == FIX.strip("`").format(repository=self.repository)
        subprocess.run(shlex.split(command.replace("<storage root>", str(self.storage))), check=True)


def _manifest(server: RegistryServer, reference: str) -> dict[str, Any]:
    resp = requests.get(
        f"{server.url}/v2/{REPOSITORY}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}, timeout=10
    )
    resp.raise_for_status()
    return dict(resp.json())


def _push_index(server: RegistryServer, tag: str, children: list[str]) -> str:
    """An OCI index of `children` (manifest digests in REPOSITORY) under `tag`; its digest."""
    entries = []
    for child, arch in zip(children, ("amd64", "arm64", "s390x"), strict=False):
        stored = requests.get(
            f"{server.url}/v2/{REPOSITORY}/manifests/{child}", headers={"Accept": MANIFEST_ACCEPT}, timeout=10
        )
        stored.raise_for_status()
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": child,
                "size": len(stored.content),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    put = requests.put(
        f"{server.url}/v2/{REPOSITORY}/manifests/{tag}",
        data=body,
        headers={"Content-Type": OCI_INDEX},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture
def make_bed(tmp_path: Path) -> Iterator[Callable[..., Bed]]:
    """`make_bed(spare_pages, tags, images)`: upstream, `tags` name one image (or an index of
    `images` images, copied in that order); the destination's storage holds every layer and
    `spare_pages` more pages. Unmounted at teardown."""
    started: list[RegistryServer] = []
    mounted: list[Path] = []

    def make(spare_pages: int, tags: tuple[str, ...] = ("v1",), images: int = 1) -> Bed:
        upstream = start_registry(tmp_path / "upstream")
        started.append(upstream)
        if images == 1:
            children = [push_image(upstream, REPOSITORY, tags[0], seed="disk-full", filler=FILLER)]
            digest = children[0]
        else:
            children = [
                push_image(upstream, REPOSITORY, f"image-{i}", seed=f"disk-full-{i}", filler=FILLER)
                for i in range(images)
            ]
            digest = _push_index(upstream, tags[0], children)
        add_tags(upstream, REPOSITORY, tags[0], tags[1:])
        manifests = [_manifest(upstream, child) for child in children]
        layers = [layer for m in manifests for layer in m["layers"]]
        pages = sum(-(-layer["size"] // PAGE) for layer in layers) + spare_pages
        workdir = tmp_path / "destination"
        storage = workdir / "data"  # start_registry's storage root
        _mount_tmpfs(storage, pages * PAGE)
        mounted.append(storage)
        assert os.statvfs(storage).f_blocks * os.statvfs(storage).f_frsize == pages * PAGE
        destination = start_registry(workdir)
        started.append(destination)
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            f"""\
version: 1
sources:
  - registry: {upstream.host}
    insecure: true
    repositories:
      - name: {REPOSITORY}
        tags: [{", ".join(tags)}]
targets:
  - name: lab
    type: registry
    registry: {destination.host}
    insecure: true
    prefix: mirror
"""
        )
        return Bed(
            upstream,
            destination,
            storage,
            spec,
            digest,
            [layer["digest"] for layer in layers],
            [m["config"]["digest"] for m in manifests],
        )

    try:
        yield make
    finally:
        for server in started:
            server.stop()
        for path in mounted:
            _umount(path)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: copy ")]


def assert_names_damage(line: str, bed: Bed, blob: str) -> None:
    assert DAMAGED in line, line
    assert f"{bed.destination.host} answers 500 for blob {blob} in repository {bed.repository}" in line
    assert "make room if its storage is full" in line
    assert FIX.format(repository=bed.repository) in line


def assert_converges(bed: Bed, tags: tuple[str, ...]) -> None:
    applied = bed.apply()
    assert applied.returncode == 0, applied.stderr
    assert bed.run("plan", "--detailed-exitcode", str(bed.spec)).returncode == 0
    assert bed.empty_links() == []
    for tag in tags:
        resp = requests.head(
            f"{bed.destination.url}/v2/{bed.repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=10,
        )
        assert resp.headers.get("Docker-Content-Digest") == bed.digest


def test_a_layer_link_left_empty_by_a_full_disk_is_named_once_and_converges_after_the_fix(
    make_bed: Callable[..., Bed],
) -> None:
    # Spare pages for the upload's startedat and two hash states: the layer's data fits, its
    # link does not. Two tags of one digest: the second copy meets the damage the first found.
    tags = ("v1", "v1-alias")
    bed = make_bed(3, tags)
    layer_link = f"_layers/sha256/{bed.layers[0].split(':')[1]}/link"

    first = bed.apply()
    assert first.returncode == 1, first.stderr
    assert bed.empty_links() == [layer_link]
    assert "no space left on device" in bed.destination.log_text()
    lines = error_lines(first.stderr)
    assert len(lines) == len(tags), first.stderr
    for line in lines:
        assert_names_damage(line, bed, bed.layers[0])

    bed.grow()
    assert bed.status("blobs", bed.layers[0]) == 500  # growing the storage does not heal it
    since = len(access_records(bed.destination))
    second = bed.apply()
    assert second.returncode == 1, second.stderr
    lines = error_lines(second.stderr)
    assert len(lines) == len(tags), second.stderr
    for line in lines:
        assert_names_damage(line, bed, bed.layers[0])
    # Recognised on its second appearance: the first copy retried once, the second not at all
    # (skopeo makes one HEAD of the blob per attempt), instead of 3 retries of each.
    assert 2 <= bed.blob_checks(bed.layers[0], since) <= 3
    assert sum("(after 2 attempts)" in line for line in lines) == 1
    assert not any("(after 3" in line or "(after 4" in line for line in lines)

    bed.repair(lines[0])
    assert bed.status("blobs", bed.layers[0]) == 404
    assert_converges(bed, tags)


def test_a_config_link_left_empty_is_named_although_skopeo_does_not_name_the_blob(
    make_bed: Callable[..., Bed],
) -> None:
    # The layer and its link fit; the config blob's data fits, its link does not.
    bed = make_bed(5)
    config_link = f"_layers/sha256/{bed.configs[0].split(':')[1]}/link"

    first = bed.apply()
    assert first.returncode == 1, first.stderr
    assert bed.empty_links() == [config_link]

    bed.grow()
    since = len(access_records(bed.destination))
    second = bed.apply()
    assert second.returncode == 1, second.stderr
    (line,) = error_lines(second.stderr)
    assert "writing blob: failed to read" not in line  # skopeo's text, without the blob, is replaced
    assert_names_damage(line, bed, bed.configs[0])
    assert bed.blob_checks(bed.configs[0], since) <= 2

    bed.repair(line)
    assert_converges(bed, ("v1",))


def test_a_tag_link_left_empty_is_named_by_plan_and_converges_after_the_fix(
    make_bed: Callable[..., Bed],
) -> None:
    # Blobs, manifest and its revision and index links fit; the tag's `current/link` does not.
    bed = make_bed(6)

    first = bed.apply()
    assert first.returncode == 1, first.stderr
    assert bed.empty_links() == ["_manifests/tags/v1/current/link"]

    bed.grow()
    assert bed.status("manifests", "v1") == 500
    second = bed.apply()
    assert second.returncode == 1, second.stderr
    (line,) = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: lab: {DAMAGED}: {bed.destination.host} answers 500 for manifest "), line
    assert f"manifest {bed.repository}:v1 on every attempt while the registry itself answers" in line
    assert FIX.format(repository=bed.repository) in line

    bed.repair(line)
    assert bed.status("manifests", "v1") == 404
    assert_converges(bed, ("v1",))


def test_a_config_link_of_one_image_of_an_index_is_named_by_asking_the_destination(
    make_bed: Callable[..., Bed],
) -> None:
    # skopeo copies the index's images in order. The first one fits whole (layer, config,
    # their links, its manifest and revision link: 5 pages beside the layer); of the second,
    # the layer and its link fit, and the config's data, but not its link.
    bed = make_bed(10, images=2)
    config_link = f"_layers/sha256/{bed.configs[1].split(':')[1]}/link"

    first = bed.apply()
    assert first.returncode == 1, first.stderr
    assert bed.empty_links() == [config_link]

    bed.grow()
    second = bed.apply()
    assert second.returncode == 1, second.stderr
    (line,) = error_lines(second.stderr)
    assert_names_damage(line, bed, bed.configs[1])  # skopeo named none; the destination told

    bed.repair(line)
    assert_converges(bed, ("v1",))


def test_a_blob_check_that_fails_twice_and_then_answers_is_retried_as_before(tmp_path: Path) -> None:
    # No full disk here: a proxy answers 500 to the first two HEADs of the layer at the
    # destination (skopeo's check in two attempts), then lets everything through. Our own look
    # at the blob finds it answering (404: not there yet), so this is no damage: the copy goes
    # on retrying and succeeds in the same run.
    with start_registry(tmp_path / "upstream") as upstream, start_registry(tmp_path / "dest") as backend:
        digest = push_image(upstream, REPOSITORY, "v1", seed="blip", filler=4096)
        (layer,) = _manifest(upstream, digest)["layers"]
        with FaultProxy(backend.url) as proxy:
            repository = f"mirror/{upstream.host.replace(':', '_')}/{REPOSITORY}"
            for _ in range(2):
                proxy.script("before", "500", "HEAD", re.escape(f"/v2/{repository}/blobs/{layer['digest']}"))
            spec = tmp_path / "spec.yaml"
            spec.write_text(
                f"""\
version: 1
sources:
  - registry: {upstream.host}
    insecure: true
    repositories:
      - name: {REPOSITORY}
        tags: [v1]
targets:
  - name: lab
    type: registry
    registry: {proxy.host}
    insecure: true
    prefix: mirror
"""
            )
            proc = subprocess.run(
                [MIRRORSPEC, "apply", "--yes", str(spec)],
                capture_output=True,
                text=True,
                timeout=WAIT,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            assert DAMAGED not in proc.stdout + proc.stderr
            retried = re.search(r"(\d+) attempt\(s\) retried", proc.stdout)
            assert retried is not None and int(retried[1]) >= 2, proc.stdout
            assert [(f.method, f.kind) for f in proxy.injected] == [("HEAD", "500")] * 2
