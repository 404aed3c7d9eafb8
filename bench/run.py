"""Side-by-side benchmarks of mirrorspec against `skopeo sync` and the issue-7 targets.

`make bench` (or `.venv/bin/python bench/run.py`) runs everything and rewrites
`bench/BENCHMARKS.md`. Every number is a median of several runs, and every ratio compares
two tools measured in the same invocation, alternating which goes first.

The test bed is real: `docker-registry` (CNCF distribution 2.8.2) servers on 127.0.0.1 with
TLS (the destination also with htpasswd login), reached through `bench/proxy.py`, which adds
20 ms one way to every chunk in each direction (so 40 ms per round trip, and a round trip more
for every new TCP connection). Both tools run with the same isolated environment (fresh
`HOME`, no inherited CA variables) and the same system policy.json.

- B1 no-op resync, 50 repositories × 4 selected tags (of 6): `mirrorspec sync` against
  `skopeo sync` of `mirrorspec render skopeo`'s YAML (the same 200 tags), destination full.
- B2 fresh copy of the same 200 small images into an empty destination (a new registry and
  proxy per tool and run, so neither tool profits from the other's blobs or skopeo's
  blob-info cache, which is keyed by registry host).
- B1L the same no-op resync through a second pair of proxies that add 100 ms one way
  (`--b1l-delay`), mirrorspec only (skopeo sync would take minutes), against the same two
  registries (a flat layout under the 20 ms source's prefix, so the destination is the one B1
  checks); the ratio is B1L's median over B1's.
- B3 `mirrorspec plan` of a 1,000-repository spec without added latency: wall time, peak RSS
  (wait4) and requests per registry (their access logs) against a **floor** measured in the
  same runs, alternating: `bench/floor.py`, a bare keep-alive `requests.Session` process making
  the same requests with the same concurrency (`READS` per registry); for a registry target and, through
  `bench/provider_plan.py`, for ECR (the contract emulator in front of moto; API calls per
  operation from botocore events), ACR (the ARM emulator; calls per operation from
  `AcrEmulator.calls`) and Harbor (the API emulator; `HarborEmulator.requests`). The provider
  rows' floor, `bench/provider_floor.py`, makes the same registry requests (to the destination
  paths the plan asked for) plus the plan's management API calls, by a bare client.
  `--only B3` re-measures B3 alone and keeps the other rows of the last full run
  (`--b3-targets` picks B3's target types).
- B4 `versions.select_tags` over 10,000 tags with a range constraint, in process.
- B5 start-up: `mirrorspec --help` and `mirrorspec validate` of a small spec vs `python -c pass`.
- B6 `mirrorspec plan` of 10,000 repositories (seeded by copying one pushed repository in the
  registry's storage), registry target as in B3, without added latency: wall time and peak RSS
  (and RSS of a 1,000-repository plan beside it), against a floor measured right after each
  run: a bare keep-alive `requests.Session` per registry replaying the requests the plan made
  (its access logs, challenges left out) with the plan's concurrency.
- B7 the air-gap path for B2's 200 images, each tool from nothing: upstream (20 ms proxy) →
  a directory → a new empty registry (a 20 ms proxy of its own, as B2's destination).
  mirrorspec: `apply` into an `oci-layout` target, then `apply` of the spec `render
  offline-spec` writes; skopeo: `sync --dest dir` of `render skopeo`'s YAML, then `sync --src
  dir --dest docker`. Both steps timed together; pairs alternate and repeat while they fit
  in `--b7-budget`. Both tools must leave the same 200 tags, mirrorspec with upstream's digests.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import hashlib
import io
import json
import logging
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from testbed import (  # noqa: E402
    MANIFEST_ACCEPT,
    RegistryServer,
    access_records,
    push_image,
    start_registry,
)

BIN = Path(sys.executable).parent
MIRRORSPEC = str(BIN / "mirrorspec")
PYTHON = sys.executable
SKOPEO = shutil.which("skopeo") or "skopeo"
PASSWORD = "bench-Pa55word"
REPOS = [f"bench/app-{i:02d}" for i in range(50)]
SELECTED = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
UNSELECTED = ["0.9.0", "2.0.0"]
RANGE = ">=1.0.0 <2.0.0"
SCALE_REPOS = 1000
READS = 32  # mirrorspec's default registry reads in flight per registry (RunContext.reads)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ECR_ACCOUNT = "123456789012"
ECR_HOST = f"{ECR_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass
class Row:
    """One line of the results table."""

    bench: str
    what: str
    ours: list[float]
    base: list[float] = field(default_factory=list)
    base_name: str = ""
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    # What `base` is when mirrorspec's time is shown as a multiple of it ("the floor", "B1").
    multiple_of: str = ""

    @property
    def ratio(self) -> float | None:
        return median(self.base) / median(self.ours) if self.base else None

    def ratio_text(self) -> str:
        if self.ratio is None:
            return "—"
        if self.multiple_of:
            return f"{1 / self.ratio:.2f}× {self.multiple_of}"
        if self.ratio < 1:  # a floor (python -c pass), not a competitor
            return f"+{(median(self.ours) - median(self.base)) * 1000:.0f} ms over it"
        return f"{self.ratio:.1f}× faster"


# --- the test bed ------------------------------------------------------------------------------


class Bed:
    """Registries, proxies and an isolated environment; everything stops with the ExitStack."""

    def __init__(self, work: Path, stack: ExitStack, delay: float, *, tcp_handshake: bool = False) -> None:
        self.work = work
        self.stack = stack
        self.delay = delay
        self.tcp_handshake = tcp_handshake
        self.home = work / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self._count = 0
        drop = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG"}
        # Python's bytecode is cached, as an installed package has it (pip compiles it): with
        # PYTHONDONTWRITEBYTECODE inherited, an editable install compiles every module it
        # imports at every start, ≈ 30-90 ms of `validate` (B5 reports that figure beside).
        # The cache lives in the work directory, never beside the sources.
        drop |= {"PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("REQUESTS_")}
        self.env.update(
            PYTHONPYCACHEPREFIX=str(work / "pycache"),
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local/share"),
            BENCH_DEST_PASSWORD=PASSWORD,
            TMPDIR=str(self.home),
            COLUMNS="200",
        )

    def registry(
        self,
        name: str,
        *,
        users: dict[str, str] | None = None,
        stack: ExitStack | None = None,
        tls: bool = True,
    ) -> RegistryServer:
        self._count += 1
        server = start_registry(self.work / f"{name}-{self._count}", tls=tls, users=users)
        (stack or self.stack).callback(server.stop)
        return server

    def proxied(
        self, server: RegistryServer, *, stack: ExitStack | None = None, delay: float | None = None
    ) -> str:
        """Start a latency proxy in front of `server` (`delay`: the bed's unless given); its host:port."""
        delay = self.delay if delay is None else delay
        argv = [PYTHON, str(ROOT / "bench" / "proxy.py"), "--to", server.host, "--delay", str(delay)]
        proc = subprocess.Popen(
            argv + (["--tcp-handshake"] if self.tcp_handshake else []), stdout=subprocess.PIPE, text=True
        )

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        (stack or self.stack).callback(stop)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if " -> " not in line:
            raise RuntimeError(f"the latency proxy did not start: {line!r}")
        return line.split(" -> ", 1)[1]

    def run(
        self, argv: Sequence[str], *, timeout: float = 1800, env: dict[str, str] | None = None
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """`env`: the environment, if not the bed's."""
        started = time.perf_counter()
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=self.env if env is None else env,
            timeout=timeout,
            check=False,
        )
        return time.perf_counter() - started, proc

    def run_measured(self, argv: Sequence[str]) -> tuple[float, int, str, str, int]:
        """(seconds, peak RSS in KiB, stdout, stderr, exit code) of one child process."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=self.env, text=True)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            return seconds, usage.ru_maxrss, out.read(), err.read(), proc.returncode


def check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def requests_by_kind(records: Sequence[Any]) -> Counter[str]:
    """Access-log records grouped as `METHOD kind`, kind being what the URI addresses."""
    kinds: Counter[str] = Counter()
    for record in records:
        uri = record.uri.split("?", 1)[0]
        if uri == "/v2/":
            kind = "/v2/"
        elif "/manifests/" in uri:
            kind = "manifest"
        elif "/blobs/uploads" in uri:
            kind = "upload"
        elif "/blobs/" in uri:
            kind = "blob"
        elif uri.endswith("/tags/list"):
            kind = "tags/list"
        else:
            kind = uri
        suffix = " (401)" if record.status == 401 else ""
        kinds[f"{record.method} {kind}{suffix}"] += 1
    return kinds


def describe(kinds: Counter[str]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


class Counted:
    """Requests a registry served during a `with` block, from its access log."""

    def __init__(self, *servers: RegistryServer) -> None:
        self.servers = servers
        self.kinds: list[Counter[str]] = []
        self.records: list[list[Any]] = []

    def __enter__(self) -> Counted:
        self._start = [len(access_records(s)) for s in self.servers]
        return self

    def __exit__(self, *exc: object) -> None:
        self.records = [access_records(s)[start:] for s, start in zip(self.servers, self._start, strict=True)]
        self.kinds = [requests_by_kind(records) for records in self.records]


# --- B1 / B2 ------------------------------------------------------------------------------------


def seed_small(source: RegistryServer) -> None:
    """200 distinct one-layer OCI images (4 tags × 50 repositories) plus two unselected tags
    per repository, pushed over HTTP: five requests an image instead of a skopeo run each."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(source.ca_file)

    def upload(repo: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = session.post(f"{source.url}/v2/{repo}/blobs/uploads/", timeout=30)
        assert start.status_code == 202, start.text
        done = session.put(
            urljoin(source.url, start.headers["Location"]), params={"digest": digest}, data=data
        )
        assert done.status_code == 201, done.text
        return {"digest": digest, "size": len(data)}

    def push(job: tuple[str, str]) -> None:
        repo, tag = job
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            text = f"{repo}:{tag}\n".encode()
            info = tarfile.TarInfo("bench.txt")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
        layer = gzip.compress(buffer.getvalue(), mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(buffer.getvalue()).hexdigest()],
                },
            }
        ).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **upload(repo, config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **upload(repo, layer)}],
        }
        body = json.dumps(manifest).encode()
        for name in [tag, *(UNSELECTED if tag == SELECTED[0] else [])]:
            put = session.put(
                f"{source.url}/v2/{repo}/manifests/{name}", data=body, headers={"Content-Type": OCI_MANIFEST}
            )
            assert put.status_code == 201, put.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(push, [(repo, tag) for repo in REPOS for tag in SELECTED]))
    session.close()


def small_spec(
    path: Path,
    source_host: str,
    source: RegistryServer,
    dest_host: str,
    dest: RegistryServer,
    *,
    prefix: str = "mirror",
    layout: str = "scoped",
) -> Path:
    repos = "".join(f'      - name: {repo}\n        versions: "{RANGE}"\n' for repo in REPOS)
    path.write_text(
        f"""\
version: 1
layout: {layout}
credentials:
  dest:
    username: bench
    password: {{env: BENCH_DEST_PASSWORD}}
sources:
  - registry: {source_host}
    ca-bundle: {source.ca_file}
    repositories:
{repos}targets:
  - name: lab
    type: registry
    registry: {dest_host}
    prefix: {prefix}
    credentials: dest
    ca-bundle: {dest.ca_file}
"""
    )
    return path


@dataclass(frozen=True)
class SyncDoc:
    path: Path
    destination_path: str  # the destination without its host: mirror/<source host>/bench

    def argv(self, dest_host: str, authfile: Path, dest: RegistryServer) -> list[str]:
        return [
            SKOPEO,
            "sync",
            "--all",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-authfile",
            str(authfile),
            "--dest-cert-dir",
            str(dest.cert_dir),
            str(self.path),
            f"{dest_host}/{self.destination_path}",
        ]


def skopeo_documents(bed: Bed, spec: Path, source: RegistryServer) -> list[SyncDoc]:
    """`mirrorspec render skopeo`, with the source CA added as the documented `cert-dir` key
    (render writes no TLS files: it cannot know where skopeo will find them)."""
    from ruamel.yaml import YAML

    _, proc = bed.run([MIRRORSPEC, "render", "skopeo", str(spec), "--target", "lab"])
    check(proc, "mirrorspec render skopeo")
    destinations = re.findall(r"^# run: .* (\S+)$", proc.stdout, flags=re.MULTILINE)
    configs = [d for d in YAML(typ="safe").load_all(proc.stdout) if d]
    assert len(destinations) == len(configs), proc.stdout
    docs = []
    tags = 0
    for i, (config, destination) in enumerate(zip(configs, destinations, strict=True), 1):
        for block in config.values():
            block["cert-dir"] = str(source.cert_dir)
            tags += sum(len(t) for t in block.get("images", {}).values())
        path = bed.work / f"sync-{i}.yaml"
        path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        docs.append(SyncDoc(path, destination.split("/", 1)[1]))
    assert tags == len(REPOS) * len(SELECTED), f"render selected {tags} tags"
    return docs


def authfile_for(bed: Bed, host: str) -> Path:
    path = bed.work / f"auth-{host.replace(':', '_')}.json"
    token = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    path.chmod(0o600)
    return path


def run_skopeo_sync(
    bed: Bed, docs: Sequence[SyncDoc], dest_host: str, dest: RegistryServer
) -> tuple[float, str]:
    authfile = authfile_for(bed, dest_host)
    total = 0.0
    output = ""
    for doc in docs:
        seconds, proc = bed.run(doc.argv(dest_host, authfile, dest))
        check(proc, "skopeo sync")
        if re.search(r"level=(error|fatal)", proc.stderr):
            raise RuntimeError(f"skopeo sync logged an error (exit 0):\n{proc.stderr[-3000:]}")
        total += seconds
        output += proc.stdout + proc.stderr
    return total, output


def dest_tag_count(dest: RegistryServer, source_host: str) -> int:
    session = requests.Session()
    session.trust_env = False
    session.auth = ("bench", PASSWORD)
    count = 0
    for repo in REPOS:
        url = f"{dest.url}/v2/mirror/{source_host.replace(':', '_')}/{repo}/tags/list"
        resp = session.get(url, verify=str(dest.ca_file), timeout=30)
        if resp.status_code == 200:
            count += len(resp.json().get("tags") or [])
    session.close()
    return count


def bench_sync(
    bed: Bed,
    runs: int,
    b2_runs: int,
    deadline: float,
    do_b1: bool,
    do_b2: bool,
    b1l_delay: float = 0.0,
    b1_baseline_runs: int | None = None,
) -> list[Row]:
    """B2's first pair of fresh copies comes first: mirrorspec's destination, now full, is
    then B1's. More B2 pairs follow while they fit before `deadline` (time.monotonic())."""
    rows: list[Row] = []
    b1_baseline_runs = runs if b1_baseline_runs is None else b1_baseline_runs
    log("B1/B2: seeding 200 images into the source registry")
    source = bed.registry("source")
    seed_small(source)
    source_host = bed.proxied(source)
    users = {"bench": PASSWORD}
    with ExitStack() as stack:  # the YAML does not depend on the destination: render it once
        stand_in = bed.registry("render", users=users, stack=stack)
        spec = small_spec(bed.work / "render.yaml", source_host, source, stand_in.host, stand_in)
        docs = skopeo_documents(bed, spec, source)
    fresh_ours: list[float] = []
    fresh_base: list[float] = []

    def mirrorspec_copy(stack: ExitStack) -> tuple[RegistryServer, str, Path]:
        dest = bed.registry("dest", users=users, stack=stack)
        dest_host = bed.proxied(dest, stack=stack)
        spec = small_spec(
            bed.work / f"spec-{dest_host.replace(':', '_')}.yaml", source_host, source, dest_host, dest
        )
        seconds, proc = bed.run([MIRRORSPEC, "sync", str(spec)])
        check(proc, "mirrorspec sync (fresh)")
        assert "200 of 200 tag(s) copied and verified" in proc.stdout, proc.stdout[-2000:]
        fresh_ours.append(seconds)
        return dest, dest_host, spec

    def skopeo_copy() -> None:
        log("B2: skopeo sync into an empty registry (about 5 min on 2 CPUs)")
        with ExitStack() as stack:
            dest = bed.registry("dest", users=users, stack=stack)
            dest_host = bed.proxied(dest, stack=stack)
            seconds, _ = run_skopeo_sync(bed, docs, dest_host, dest)
            copied = dest_tag_count(dest, source_host)
            assert copied == 200, f"skopeo sync left {copied} of 200 tags"
            fresh_base.append(seconds)

    fresh_floor: list[float] = []

    def copy_floor() -> None:
        """B2's floor: skopeo stays the copy engine, so what no plan around it can beat is the
        200 `skopeo copy` processes themselves, 24 in flight (the most mirrorspec's copies
        reach), through the same proxies into a new empty registry: no listing, no digest
        checks, no verification, no retries."""
        with ExitStack() as stack:
            dest = bed.registry("floor", users=users, stack=stack)
            dest_host = bed.proxied(dest, stack=stack)
            authfile = authfile_for(bed, dest_host)
            prefix = f"mirror/{source_host.replace(':', '_')}"

            def one(image: tuple[str, str]) -> int:
                repo, tag = image
                argv = [
                    SKOPEO,
                    "copy",
                    "--preserve-digests",
                    "--src-cert-dir",
                    str(source.cert_dir),
                    "--dest-authfile",
                    str(authfile),
                    "--dest-cert-dir",
                    str(dest.cert_dir),
                    f"docker://{source_host}/{repo}:{tag}",
                    f"docker://{dest_host}/{prefix}/{repo}:{tag}",
                ]
                proc = subprocess.run(argv, env=bed.env, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"skopeo copy (B2 floor) exited {proc.returncode}: {proc.stderr[-2000:]}"
                    )
                return proc.returncode

            images = [(repo, tag) for repo in REPOS for tag in SELECTED]
            started = time.monotonic()
            with ThreadPoolExecutor(24) as pool:
                list(pool.map(one, images))
            fresh_floor.append(time.monotonic() - started)
            copied = dest_tag_count(dest, source_host)
            assert copied == 200, f"the B2 floor left {copied} of 200 tags"

    def b2_pair(i: int) -> None:
        if i % 2:
            skopeo_copy()
        with ExitStack() as stack:
            mirrorspec_copy(stack)
        if not i % 2:
            skopeo_copy()
        log(f"B2 run {i + 1}: mirrorspec {fresh_ours[-1]:.2f}s, skopeo sync {fresh_base[-1]:.2f}s")

    with ExitStack() as b1_stack:
        # pair 1 of B2; mirrorspec's destination stays up for B1
        started = time.monotonic()
        dest, dest_host, spec = mirrorspec_copy(b1_stack)
        if do_b2:
            skopeo_copy()
            copy_floor()
            log(
                f"B2 run 1: mirrorspec {fresh_ours[-1]:.2f}s, skopeo sync {fresh_base[-1]:.2f}s, "
                f"floor {fresh_floor[-1]:.2f}s"
            )
        pair_seconds = time.monotonic() - started
        if do_b1:
            rows.append(
                bench_noop(bed, runs, source, source_host, dest, dest_host, spec, docs, b1_baseline_runs)
            )
            if b1l_delay:
                rows.append(bench_noop_latency(bed, runs, source, source_host, dest, b1l_delay, rows[-1]))
    if do_b2:
        i = 1
        while i < b2_runs and time.monotonic() + pair_seconds < deadline:
            b2_pair(i)
            i += 1
        # mirrorspec's side is cheap: give its median a few more samples if they fit
        while len(fresh_ours) < min(3, b2_runs) and time.monotonic() + 2 * median(fresh_ours) < deadline:
            with ExitStack() as stack:
                mirrorspec_copy(stack)
            copy_floor()
            log(f"B2 extra mirrorspec run: {fresh_ours[-1]:.2f}s, floor {fresh_floor[-1]:.2f}s")
        row = Row(
            "B2", "fresh copy of 200 small images", fresh_ours, fresh_base, "skopeo sync", "≥ 12× faster"
        )
        row.met = (row.ratio or 0) >= 12  # issue 15
        row.notes.append(
            "floor: 200 `skopeo copy` processes, 24 in flight, through the same proxies into a new "
            "empty registry (no plan, no checks) runs (s): "
            + ", ".join(f"{x:.3f}" for x in fresh_floor)
            + f"; mirrorspec is {median(fresh_ours) / median(fresh_floor):.2f}× it"
        )
        if i < b2_runs:
            row.notes.append(
                f"{i} skopeo sync run(s), not {b2_runs}: one more pair (~{pair_seconds:.0f} s) would have "
                f"overrun the time budget (--budget); mirrorspec ran {len(fresh_ours)} time(s), each into "
                "a new empty registry"
            )
        rows.append(row)
    return rows


def bench_noop(
    bed: Bed,
    runs: int,
    source: RegistryServer,
    source_host: str,
    dest: RegistryServer,
    dest_host: str,
    spec: Path,
    docs: Sequence[SyncDoc],
    baseline_runs: int,
) -> Row:
    ours: list[float] = []
    base: list[float] = []
    counts: dict[str, list[Counter[str]]] = {}

    def mirrorspec_run() -> None:
        with Counted(source, dest) as counted:
            seconds, proc = bed.run([MIRRORSPEC, "sync", str(spec)])
        check(proc, "mirrorspec sync (no-op)")
        assert "0 tag(s) to copy, 200 already up to date" in proc.stdout, proc.stdout[-2000:]
        ours.append(seconds)
        counts.setdefault("mirrorspec sync", counted.kinds)

    # The floor beside it: the same registry requests through the same proxies by a bare
    # keep-alive requests.Session process (bench/floor.py), 32 in flight per registry.
    floor: list[float] = []
    floor_argv = [
        PYTHON,
        str(ROOT / "bench" / "floor.py"),
        json.dumps(
            {
                "source": f"https://{source_host}",
                "source_ca": str(source.ca_file),
                "dest": f"https://{dest_host}",
                "dest_ca": str(dest.ca_file),
                "user": "bench",
                "password_env": "BENCH_DEST_PASSWORD",
                "repos": REPOS,
                "tags": SELECTED,
                "prefix": f"mirror/{source_host.replace(':', '_')}",
                "concurrency": READS,
            }
        ),
    ]

    def floor_run() -> None:
        wall, _, _, err, code = bed.run_measured(floor_argv)
        if code != 0:
            raise RuntimeError(f"bench/floor.py exited {code}: {err[-3000:]}")
        floor.append(wall)

    def skopeo_run() -> None:
        if len(base) >= baseline_runs:
            return
        with Counted(source, dest) as counted:
            seconds, output = run_skopeo_sync(bed, docs, dest_host, dest)
        skipped = output.count("Skipping: image already present at destination")
        assert skipped == 200, f"skopeo sync skipped {skipped} of 200:\n{output[-2000:]}"
        base.append(seconds)
        counts.setdefault("skopeo sync", counted.kinds)

    for i in range(runs):
        steps = (
            (mirrorspec_run, floor_run, skopeo_run) if i % 2 == 0 else (skopeo_run, floor_run, mirrorspec_run)
        )
        for step in steps:
            step()
        log(
            f"B1 run {i + 1}/{runs}: mirrorspec {ours[-1]:.2f}s, floor {floor[-1]:.2f}s, "
            f"skopeo sync {base[-1] if base else 0:.2f}s"
        )
    notes = [
        f"requests of one run, {tool}: source: {describe(kinds[0])}; destination: {describe(kinds[1])}"
        for tool, kinds in counts.items()
    ]
    notes.append(
        "floor: the same registry requests through the same proxies by a bare keep-alive "
        f"requests.Session process, {READS} in flight per registry (bench/floor.py) runs (s): "
        + ", ".join(f"{x:.3f}" for x in floor)
        + f"; mirrorspec is {median(ours) / median(floor):.2f}× it"
    )
    row = Row("B1", "no-op resync, 50 repos × 4 tags", ours, base, "skopeo sync", "≥ 50× faster", notes=notes)
    row.met = (row.ratio or 0) >= 50  # issue 15
    return row


def bench_noop_latency(
    bed: Bed,
    runs: int,
    source: RegistryServer,
    source_host: str,
    dest: RegistryServer,
    delay: float,
    b1: Row,
) -> Row:
    """B1's no-op resync through proxies adding `delay` one way: the same registries, the
    destination paths B1's spec gives (the 20 ms source's host segment as a flat prefix)."""
    slow_source = bed.proxied(source, delay=delay)
    slow_dest = bed.proxied(dest, delay=delay)
    spec = small_spec(
        bed.work / "latency.yaml",
        slow_source,
        source,
        slow_dest,
        dest,
        prefix=f"mirror/{source_host.replace(':', '_')}",
        layout="flat",
    )
    ours: list[float] = []
    kinds: list[Counter[str]] = []
    for i in range(runs):
        with Counted(source, dest) as counted:
            seconds, proc = bed.run([MIRRORSPEC, "sync", str(spec)])
        check(proc, "mirrorspec sync (no-op, B1L)")
        assert "0 tag(s) to copy, 200 already up to date" in proc.stdout, proc.stdout[-2000:]
        ours.append(seconds)
        kinds = kinds or counted.kinds
        log(f"B1L run {i + 1}/{runs}: mirrorspec {seconds:.2f}s")
    row = Row(
        "B1L",
        f"no-op resync, 50 repos × 4 tags, {delay * 1000:.0f} ms one way",
        ours,
        b1.ours,
        f"mirrorspec's B1 at {bed.delay * 1000:.0f} ms",
        "≤ 2.5× B1",
        notes=[f"requests of one run: source: {describe(kinds[0])}; destination: {describe(kinds[1])}"],
        multiple_of="B1",
    )
    row.met = median(ours) <= 2.5 * median(b1.ours)
    return row


# --- B3 ---------------------------------------------------------------------------------------


def seed_scale(source: RegistryServer) -> None:
    """1,000 repositories with tags 1.0.0 and 2.0.0, by cross-repository blob mounts and
    manifest PUTs (three requests a repository instead of a skopeo run each)."""
    push_image(source, "scale/base", "1.0.0", seed="scale")
    session = requests.Session()
    session.trust_env = False
    verify = str(source.ca_file)
    got = session.get(
        f"{source.url}/v2/scale/base/manifests/1.0.0", headers={"Accept": MANIFEST_ACCEPT}, verify=verify
    )
    got.raise_for_status()
    manifest = got.content
    media_type = got.headers["Content-Type"]
    body = json.loads(manifest)
    blobs = [body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]

    def make(i: int) -> None:
        repo = f"scale/repo-{i:04d}"
        for digest in blobs:
            resp = session.post(
                f"{source.url}/v2/{repo}/blobs/uploads/",
                params={"mount": digest, "from": "scale/base"},
                verify=verify,
            )
            assert resp.status_code == 201, resp.text
        for tag in ("1.0.0", "2.0.0"):
            resp = session.put(
                f"{source.url}/v2/{repo}/manifests/{tag}",
                data=manifest,
                headers={"Content-Type": media_type},
                verify=verify,
            )
            assert resp.status_code == 201, resp.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(SCALE_REPOS)))
    session.close()


def floor_config(source: RegistryServer, dest: RegistryServer) -> dict[str, Any]:
    """bench/floor.py's argument: B3's registry-target requests (see `scale_spec`)."""
    return {
        "source": source.url,
        "source_ca": str(source.ca_file),
        "dest": dest.url,
        "dest_ca": str(dest.ca_file),
        "user": "bench",
        "password_env": "BENCH_DEST_PASSWORD",
        "repos": [f"scale/repo-{i:04d}" for i in range(SCALE_REPOS)],
        "tags": ["1.0.0"],  # RANGE's pick of 1.0.0 and 2.0.0
        "prefix": f"mirror/{source.host.replace(':', '_')}",  # the scoped layout under `prefix: mirror`
        "concurrency": READS,
    }


def scale_spec(path: Path, source_registry: str, source_tls: str, target: str, *, login: bool) -> Path:
    repos = "".join(
        f'      - name: scale/repo-{i:04d}\n        versions: "{RANGE}"\n' for i in range(SCALE_REPOS)
    )
    credentials = "credentials:\n  dest:\n    username: bench\n    password: {env: BENCH_DEST_PASSWORD}\n"
    path.write_text(
        f"""\
version: 1
{credentials if login else ""}sources:
  - registry: {source_registry}
{source_tls}    repositories:
{repos}targets:
{target}"""
    )
    return path


def bench_plan(bed: Bed, runs: int, targets: Sequence[str]) -> list[Row]:
    """B3's rows for `targets` (type names), against one seeded source."""
    rows: list[Row] = []
    log(f"B3: seeding {SCALE_REPOS} repositories")
    source = bed.registry("scale-source")
    seed_scale(source)
    plans = {
        "registry": bench_plan_registry,
        "ecr": bench_plan_ecr,
        "acr": bench_plan_acr,
        "harbor": bench_plan_harbor,
    }
    for name in targets:
        try:
            rows += plans[name](bed, runs, source)
        except ImportError as exc:  # moto[server], the Azure SDK: test extras
            log(f"B3 {name} skipped: {exc}")
    return rows


def bench_plan_registry(bed: Bed, runs: int, source: RegistryServer) -> list[Row]:
    dest = bed.registry("scale-dest", users={"bench": PASSWORD})
    target = (
        f"  - name: lab\n    type: registry\n    registry: {dest.host}\n    prefix: mirror\n"
        f"    credentials: dest\n    ca-bundle: {dest.ca_file}\n"
    )
    spec = scale_spec(
        bed.work / "scale.yaml", source.host, f"    ca-bundle: {source.ca_file}\n", target, login=True
    )
    seconds: list[float] = []
    rss: list[int] = []
    kinds: list[Counter[str]] = []
    floor: list[float] = []
    floor_kinds: list[Counter[str]] = []
    floor_argv = [PYTHON, str(ROOT / "bench" / "floor.py"), json.dumps(floor_config(source, dest))]

    def ours() -> None:
        nonlocal kinds
        with Counted(source, dest) as counted:
            wall, peak, out, err, code = bed.run_measured([MIRRORSPEC, "plan", str(spec)])
        if code != 0:
            raise RuntimeError(f"mirrorspec plan exited {code}: {err[-3000:]}")
        assert f"{SCALE_REPOS} tag(s) to copy" in out, out[-2000:]
        seconds.append(wall)
        rss.append(peak)
        kinds = kinds or counted.kinds

    def bare() -> None:
        nonlocal floor_kinds
        with Counted(source, dest) as counted:
            wall, _, _, err, code = bed.run_measured(floor_argv)
        if code != 0:
            raise RuntimeError(f"bench/floor.py exited {code}: {err[-3000:]}")
        floor.append(wall)
        floor_kinds = floor_kinds or counted.kinds

    for i in range(runs):
        for step in (ours, bare) if i % 2 == 0 else (bare, ours):
            step()
    log(f"B3 registry: {median(seconds):.2f}s, {median(rss) / 1024:.0f} MiB; floor {median(floor):.2f}s")
    total = sum(sum(k.values()) for k in kinds)
    row = Row(
        "B3",
        "plan, 1,000 repos (1 of 2 tags each), registry target",
        seconds,
        floor,
        f"floor: bare requests.Session, {READS} in flight per registry",
        target="≤ 1.3× the floor, < 200 MB RSS, requests = lists + constant",
        notes=[
            f"peak RSS {median(rss) / 1024:.0f} MiB (median)",
            f"{total} requests: source: {describe(kinds[0])}; destination: {describe(kinds[1])}",
            f"floor's requests: source: {describe(floor_kinds[0])}; destination: {describe(floor_kinds[1])}",
        ],
        multiple_of="the floor",
    )
    row.met = median(seconds) <= 1.3 * median(floor) and median(rss) < 200 * 1024
    return [row]


@dataclass
class ProviderPlan:
    """Measurements of `bench/provider_plan.py` runs; requests of the first run only."""

    seconds: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    kinds: list[Counter[str]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # management API, from the emulator
    floor: list[float] = field(default_factory=list)
    floor_kinds: list[Counter[str]] = field(default_factory=list)
    floor_calls: Counter[str] = field(default_factory=Counter)
    floor_client: str = ""  # what makes the floor's API calls

    def row(self, what: str, calls_line: str, registry_line: str) -> Row:
        notes = [
            f"peak RSS {median(self.rss) / 1024:.0f} MiB (median); plan inside the process "
            f"{median(self.inside):.2f}s (median; the rest is start-up, the SDK included)",
            f"{calls_line} ({self.report['changes']} changes, {self.report['tags']} tags to copy planned)",
            registry_line,
            f"floor's requests: source: {describe(self.floor_kinds[0])}; "
            f"destination: {describe(self.floor_kinds[1])}; API calls: {calls_text(self.floor_calls)}",
        ]
        if self.floor_calls != self.calls:
            notes.append(f"**the floor's API calls differ from the plan's**: {calls_text(self.calls)}")
        row = Row(
            "B3",
            what,
            self.seconds,
            self.floor,
            f"floor: bare requests.Session, {READS} in flight per registry, + the same API calls "
            f"by {self.floor_client}",
            target="≤ 1.3× the floor, < 200 MB RSS, API calls = pages + constant",
            notes=notes,
            multiple_of="the floor",
        )
        row.met = median(self.seconds) <= 1.3 * median(self.floor) and median(self.rss) < 200 * 1024
        return row


def destination_prefix(records: Sequence[Any]) -> str:
    """The path before `scale/repo-NNNN` of the destination manifests a plan asked for (its
    access log), the one `bench/floor.py` then asks for: derived, so a provider's layout
    needs no copy here."""
    prefixes = set()
    for record in records:
        match = re.fullmatch(r"/v2/(?:(.+)/)?(scale/repo-\d{4})/manifests/[^/?]+", record.uri)
        if match and record.method == "HEAD":
            prefixes.add(match[1] or "")
    if len(prefixes) != 1:
        raise RuntimeError(f"the plan's destination HEADs have {len(prefixes)} prefixes: {sorted(prefixes)}")
    return prefixes.pop()


def run_provider_plan(
    bed: Bed,
    runs: int,
    kind: str,
    spec: Path,
    overrides: dict[str, dict[str, str]],
    servers: Sequence[RegistryServer],
    api: dict[str, str] | None = None,
    recorded: Callable[[], list[str]] | None = None,
    *,
    floor: dict[str, Any],
    floor_client: str,
) -> ProviderPlan:
    """Run provider_plan.py `runs` times and its floor as many, alternating which goes first
    (the plan first: the floor asks for the destination paths the plan asked for);
    `recorded()` lists the API calls the emulator saw. `floor`: `bench/provider_floor.py`'s
    config without the requests `floor_config` adds."""
    argv = [PYTHON, str(ROOT / "bench" / "provider_plan.py"), kind, str(spec), json.dumps(overrides)]
    argv += [json.dumps(api)] if api else []
    source, dest = servers
    result = ProviderPlan(floor_client=floor_client)
    floor_argv = [PYTHON, str(ROOT / "bench" / "provider_floor.py"), kind]  # + its config, below

    def ours(first: bool) -> None:
        before = Counter(recorded() if recorded else ())
        with Counted(*servers) as counted:
            wall, peak, out, err, code = bed.run_measured(argv)
        if code != 0:
            raise RuntimeError(f"{kind} plan exited {code}: {err[-3000:]}")
        report = json.loads(out)
        assert report["tags"] == SCALE_REPOS, f"{kind}: {report['tags']} tags to copy planned"
        result.seconds.append(wall)
        result.rss.append(peak)
        result.inside.append(report["seconds"])
        if first:
            result.report = report
            result.kinds = counted.kinds
            result.calls = Counter(recorded()) - before if recorded else Counter(report["api_calls"])
            config = floor_config(source, dest) | floor | {"prefix": destination_prefix(counted.records[1])}
            floor_argv.append(json.dumps(config))

    def bare(first: bool) -> None:
        before = Counter(recorded() if recorded else ())
        with Counted(*servers) as counted:
            wall, _, out, err, code = bed.run_measured(floor_argv)
        if code != 0:
            raise RuntimeError(f"bench/provider_floor.py {kind} exited {code}: {err[-3000:]}")
        result.floor.append(wall)
        if first:
            result.floor_kinds = counted.kinds
            printed = Counter(json.loads(out)["api_calls"])
            result.floor_calls = Counter(recorded()) - before if recorded else printed

    for i in range(runs):
        for step in (ours, bare) if i % 2 == 0 else (bare, ours):
            step(i == 0)
    log(
        f"B3 {kind}: {median(result.seconds):.2f}s, {median(result.rss) / 1024:.0f} MiB, "
        f"{dict(result.calls)}; floor {median(result.floor):.2f}s, {dict(result.floor_calls)}"
    )
    return result


def calls_text(calls: Counter[str]) -> str:
    return f"{sum(calls.values())}: " + ", ".join(f"{n} {op}" for op, n in sorted(calls.items()))


def bench_plan_ecr(bed: Bed, runs: int, source: RegistryServer) -> list[Row]:
    from emulators.ecr import EcrEmulator

    ecr = bed.registry("ecr-endpoint", users={"AWS": f"{ECR_ACCOUNT}-auth-token"})
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    emulator = EcrEmulator().start()
    bed.stack.callback(emulator.stop)
    target = f"  - name: aws\n    type: ecr\n    registry: {ECR_HOST}\n    prefix: vendor\n    mode: mirror\n"
    spec = scale_spec(bed.work / "scale-ecr.yaml", "registry.bench.example", "", target, login=False)
    overrides = {
        "registry.bench.example": {"host": source.host, "ca_bundle": str(source.ca_file)},
        ECR_HOST: {"host": ecr.host, "ca_bundle": str(ecr.ca_file)},
    }
    floor = {
        "dest": ecr.url,
        "dest_ca": str(ecr.ca_file),
        "api": {
            "url": emulator.url,
            "region": "eu-west-1",
            "account": ECR_ACCOUNT,
            "secret_prefix": "ecr-pullthroughcache/mirrorspec/aws/",  # providers/ecr/observed.py
        },
    }
    result = run_provider_plan(
        bed,
        runs,
        "ecr",
        spec,
        overrides,
        [source, ecr],
        {"url": emulator.url},
        floor=floor,
        floor_client="a bare boto3 client",
    )
    emulator.check()
    return [
        result.row(
            "plan, 1,000 repos, ECR target (emulator + moto)",
            f"AWS API calls (botocore events) {calls_text(result.calls)}",
            f"registry requests: source: {describe(result.kinds[0])}; "
            f"ECR endpoint: {describe(result.kinds[1])}",
        )
    ]


def bench_plan_acr(bed: Bed, runs: int, source: RegistryServer) -> list[Row]:
    from emulators.acr import TOKEN_USER, AcrEmulator

    storage = bed.registry("acr-storage", users={TOKEN_USER: AcrEmulator.refresh_token}, tls=False)
    emulator = AcrEmulator().start()
    bed.stack.callback(emulator.stop)
    subscription = "00000000-0000-0000-0000-000000000000"
    login_server = emulator.add_registry(subscription, "registries", "benchacr", backend=storage)
    target = (
        f"  - name: azure\n    type: acr\n    subscription: {subscription}\n"
        "    resource-group: registries\n    registry: benchacr\n    prefix: vendor\n    mode: mirror\n"
    )
    spec = scale_spec(bed.work / "scale-acr.yaml", "registry.bench.example", "", target, login=False)
    overrides = {
        "registry.bench.example": {"host": source.host, "ca_bundle": str(source.ca_file)},
        login_server: {"host": emulator.login_host("benchacr"), "ca_bundle": str(emulator.ca_file)},
    }
    api = {"url": emulator.url, "ca_file": str(emulator.ca_file), "token": emulator.credential.token}

    def recorded() -> list[str]:  # ARM operations and token exchanges at the login server
        exchanges = [f"login server {m} {p}" for m, p in emulator.login_requests if "oauth2" in p]
        return emulator.operations() + exchanges

    from mirrorspec.providers.acr.clients import ACR_API_VERSION

    floor = {
        "dest": f"https://{emulator.login_host('benchacr')}",
        "dest_ca": str(emulator.ca_file),
        "api": api
        | {
            "subscription": subscription,
            "resource_group": "registries",
            "registry": "benchacr",
            "api_version": ACR_API_VERSION,
            "login_host": emulator.login_host("benchacr"),
            "token_user": TOKEN_USER,
        },
    }
    result = run_provider_plan(
        bed,
        runs,
        "acr",
        spec,
        overrides,
        [source, storage],
        api,
        recorded,
        floor=floor,
        floor_client="a bare azure-mgmt client (the token exchange: requests)",
    )
    emulator.check()
    return [
        result.row(
            "plan, 1,000 repos, ACR target (ARM emulator)",
            f"ARM calls (AcrEmulator.calls, login_requests) {calls_text(result.calls)}",
            f"registry requests: source: {describe(result.kinds[0])}; "
            f"ACR storage behind the login server: {describe(result.kinds[1])}",
        )
    ]


def bench_plan_harbor(bed: Bed, runs: int, source: RegistryServer) -> list[Row]:
    from emulators.harbor import HarborEmulator

    backing = bed.registry("harbor-backing", tls=False)
    emulator = HarborEmulator(backing, users={"bench": PASSWORD}).start()
    bed.stack.callback(emulator.stop)
    target = (
        "  - name: dc1\n    type: harbor\n    url: https://harbor.bench.example\n    project: vendor\n"
        "    credentials: dest\n    mode: mirror\n"
    )
    spec = scale_spec(bed.work / "scale-harbor.yaml", "registry.bench.example", "", target, login=True)
    overrides = {
        "registry.bench.example": {"host": source.host, "ca_bundle": str(source.ca_file)},
        "harbor.bench.example": {"host": emulator.host, "ca_bundle": str(emulator.ca_file)},
    }
    floor = {
        "dest": f"https://{emulator.host}",
        "dest_ca": str(emulator.ca_file),
        "api": {
            "url": f"https://{emulator.host}",
            "ca_file": str(emulator.ca_file),
            "user": "bench",
            "password_env": "BENCH_DEST_PASSWORD",
        },
    }
    result = run_provider_plan(
        bed,
        runs,
        "harbor",
        spec,
        overrides,
        [source, backing],
        recorded=emulator.operations,
        floor=floor,
        floor_client="a bare requests.Session",
    )
    emulator.check()
    return [
        result.row(
            "plan, 1,000 repos, Harbor target (API emulator)",
            f"Harbor API calls (HarborEmulator.requests) {calls_text(result.calls)}",
            f"registry requests: source: {describe(result.kinds[0])}; "
            f"Harbor's backing registry (via its /v2/): {describe(result.kinds[1])}",
        )
    ]


# --- B4 / B5 ----------------------------------------------------------------------------------


def many_tags(n: int = 10_000) -> list[str]:
    """A realistic tag soup: releases, v-prefixed, prereleases, Helm `_` builds, non-semver."""
    rng = random.Random(7)
    tags: set[str] = set()
    while len(tags) < n:
        x, y, z = rng.randrange(0, 5), rng.randrange(0, 40), rng.randrange(0, 60)
        kind = rng.random()
        if kind < 0.55:
            tag = f"{x}.{y}.{z}"
        elif kind < 0.7:
            tag = f"v{x}.{y}.{z}"
        elif kind < 0.85:
            tag = f"{x}.{y}.{z}-rc.{rng.randrange(1, 5)}"
        elif kind < 0.9:
            tag = f"{x}.{y}.{z}_build.{rng.randrange(1, 9)}"
        else:
            tag = f"sha-{rng.getrandbits(40):010x}"
        tags.add(tag)
    return sorted(tags)


def bench_select(runs: int) -> list[Row]:
    from mirrorspec.versions import select_tags

    tags = many_tags()
    constraint = ">=1.2.0 <2.0.0"
    started = time.perf_counter()
    chosen = select_tags(tags, versions=constraint)
    first = time.perf_counter() - started
    seconds = []
    for _ in range(max(runs, 11)):
        started = time.perf_counter()
        select_tags(tags, versions=constraint)
        seconds.append(time.perf_counter() - started)
    log(f"B4: {median(seconds) * 1000:.1f} ms ({len(chosen)} of {len(tags)} tags)")
    row = Row(
        "B4",
        f"select_tags, 10,000 tags, `{constraint}`",
        seconds,
        target="< 50 ms",
        notes=[f"{len(chosen)} tags selected; first call {first * 1000:.1f} ms"],
    )
    row.met = median(seconds) < 0.050
    return [row]


def bench_startup(bed: Bed, runs: int) -> list[Row]:
    spec = ROOT / "examples" / "seqera.yaml"  # needs no file beside it (local-demo needs `make demo`)
    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        "mirrorspec --help": [MIRRORSPEC, "--help"],
        "mirrorspec validate": [MIRRORSPEC, "validate", str(spec)],
    }
    # Beside it, not judged: every module compiled at each start, as with an editable install
    # under PYTHONDONTWRITEBYTECODE (see `Bed`); installed packages' own bytecode is read.
    uncached = {k: v for k, v in bed.env.items() if k != "PYTHONPYCACHEPREFIX"}
    uncached["PYTHONDONTWRITEBYTECODE"] = "1"
    times: dict[str, list[float]] = {name: [] for name in [*commands, "uncached"]}
    for name, argv in commands.items():  # warm the page cache and the bytecode cache; not counted
        check(bed.run(argv)[1], name)
    for _ in range(max(runs, 10)):
        for name, argv in commands.items():
            times[name].append(bed.run(argv)[0])
        times["uncached"].append(bed.run(commands["mirrorspec validate"], env=uncached)[0])
    rows = []
    for name in ("mirrorspec --help", "mirrorspec validate"):
        row = Row(
            "B5", f"start-up: `{name}`", times[name], times["python -c pass"], "python -c pass", "≤ 0.25 s"
        )
        row.met = median(times[name]) <= 0.25
        log(f"B5 {name}: {median(times[name]):.3f}s (python -c pass {median(times['python -c pass']):.3f}s)")
        rows.append(row)
    rows[-1].notes.append(
        f"without cached bytecode (PYTHONDONTWRITEBYTECODE=1, an editable install: mirrorspec's "
        f"modules compiled at each start): "
        f"{median(times['uncached']) * 1000:.0f} ms (median)"
    )
    return rows


# --- B6 ---------------------------------------------------------------------------------------

B6_REPOS = 10_000


def seed_b6(source: RegistryServer) -> None:
    """10,000 repositories with tags 1.0.0 and 2.0.0: one pushed, the rest copies of it in the
    registry's storage (`testbed.seed`; pushing them over HTTP would take minutes)."""
    from testbed.seed import clone_repository

    push_image(source, "scale/base", "1.0.0", seed="scale")
    push_image(source, "scale/base", "2.0.0", seed="scale")
    clone_repository(source, "scale/base", [f"scale/repo-{i:05d}" for i in range(B6_REPOS)])


def replay_floor(servers: Sequence[RegistryServer], records: Sequence[Sequence[Any]], workers: int) -> float:
    """Seconds a bare keep-alive `requests.Session` per registry takes to make the requests the
    plan made (its access-log records, challenges left out: the floor logs in at once), with
    the plan's concurrency: the physical floor of the plan on this machine."""
    sessions = []
    for server in servers:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(server.ca_file) if server.ca_file else True
        if server.users:
            session.auth = next(iter(server.users.items()))
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=workers)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        sessions.append(session)
    jobs = [
        (sessions[i], servers[i].url + record.uri, record.method)
        for i, server_records in enumerate(records)
        for record in server_records
        if record.status != 401
    ]

    def call(job: tuple[requests.Session, str, str]) -> None:
        session, url, method = job
        session.request(method, url, headers={"Accept": MANIFEST_ACCEPT}).content  # noqa: B018

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(call, jobs))
    seconds = time.perf_counter() - started
    for session in sessions:
        session.close()
    return seconds


def bench_plan_10k(bed: Bed, runs: int) -> list[Row]:
    log(f"B6: seeding {B6_REPOS} repositories")
    source = bed.registry("b6-source")
    seed_b6(source)
    dest = bed.registry("b6-dest", users={"bench": PASSWORD})
    target = (
        f"  - name: lab\n    type: registry\n    registry: {dest.host}\n    prefix: mirror\n"
        f"    credentials: dest\n    ca-bundle: {dest.ca_file}\n"
    )
    tls = f"    ca-bundle: {source.ca_file}\n"
    specs = {}
    for count in (1_000, B6_REPOS):
        repos = "".join(
            f'      - name: scale/repo-{i:05d}\n        versions: "{RANGE}"\n' for i in range(count)
        )
        path = bed.work / f"b6-{count}.yaml"
        path.write_text(
            "version: 1\ncredentials:\n  dest:\n    username: bench\n"
            "    password: {env: BENCH_DEST_PASSWORD}\n"
            f"sources:\n  - registry: {source.host}\n{tls}    repositories:\n{repos}targets:\n{target}"
        )
        specs[count] = path
    from mirrorspec.oci.read_limit import DEFAULT_READS

    workers = DEFAULT_READS  # the plan's own reads in flight per registry (--reads)
    seconds: list[float] = []
    floors: list[float] = []
    rss: list[int] = []
    for i in range(runs):
        starts = [len(access_records(s)) for s in (source, dest)]
        wall, peak, out, err, code = bed.run_measured([MIRRORSPEC, "plan", str(specs[B6_REPOS])])
        if code != 0:
            raise RuntimeError(f"mirrorspec plan exited {code}: {err[-3000:]}")
        assert f"{B6_REPOS} tag(s) to copy" in out, out[-2000:]
        records = [access_records(s)[start:] for s, start in zip((source, dest), starts, strict=True)]
        floor = replay_floor((source, dest), records, workers)
        seconds.append(wall)
        floors.append(floor)
        rss.append(peak)
        log(f"B6 run {i + 1}: plan {wall:.1f}s ({peak / 1024:.0f} MiB), floor {floor:.1f}s")
        if i == 0:
            kinds = [requests_by_kind(r) for r in records]
    small = bed.run_measured([MIRRORSPEC, "plan", str(specs[1_000])])
    per_repo = (median(seconds) - median(floors)) / B6_REPOS * 1000
    peak_mib = median(rss) / 1024
    row = Row(
        "B6",
        f"plan, {B6_REPOS:,} repos (1 of 2 tags each), registry target",
        seconds,
        floors,
        f"floor: keep-alive requests.Session, the same requests, {workers} in flight",
        target="≤ 3 ms/repo above the floor; RSS < 300 MB",
        notes=[
            f"{per_repo:.2f} ms per repository above the floor (medians)",
            f"peak RSS {peak_mib:.0f} MiB at 10,000 repositories, {small[1] / 1024:.0f} MiB at 1,000"
            f" (plan of 1,000: {small[0]:.1f} s)",
            f"requests: source: {describe(kinds[0])}; destination: {describe(kinds[1])}",
        ],
    )
    row.met = per_repo <= 3 and peak_mib < 300
    return [row]


# --- the report -------------------------------------------------------------------------------


# --- B7 ---------------------------------------------------------------------------------------


def manifest_digests(server: RegistryServer, paths: dict[str, str], *, auth: bool = False) -> dict[str, str]:
    """{"repo:tag": digest} of each tag under `paths` ({repository in `server`: "repo"}), by
    HEAD straight at the registry (no proxy: checking is not what is timed); absent tags left out."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.ca_file)
    if auth:
        session.auth = ("bench", PASSWORD)
    found: dict[str, str] = {}

    def head(job: tuple[str, str]) -> None:
        path, tag = job
        resp = session.head(
            f"{server.url}/v2/{path}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}, timeout=30
        )
        if resp.status_code == 200:
            found[f"{paths[path]}:{tag}"] = resp.headers["Docker-Content-Digest"]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(head, [(path, tag) for path in paths for tag in SELECTED]))
    session.close()
    return found


def airgap_near_spec(path: Path, source_host: str, source: RegistryServer) -> Path:
    """B2's selection from the same kind of source, into an `oci-layout` target beside the spec."""
    repos = "".join(f'      - name: {repo}\n        versions: "{RANGE}"\n' for repo in REPOS)
    path.write_text(
        f"""\
version: 1
sources:
  - registry: {source_host}
    ca-bundle: {source.ca_file}
    repositories:
{repos}targets:
  - name: media
    type: oci-layout
    path: layout
"""
    )
    return path


def bench_airgap(bed: Bed, runs: int, budget: float) -> list[Row]:
    """B7: the two-step air-gap path, each tool starting from nothing: upstream (20 ms proxy)
    → a directory on disk → a new empty registry (a 20 ms proxy of its own, as B2's
    destination). mirrorspec: `apply` of a spec with an `oci-layout` target, then `apply` of
    the far-side spec `render offline-spec` writes (rendered before the clock starts, as
    skopeo's YAML is). skopeo: `sync --src yaml --dest dir` of `render skopeo`'s YAML (B2's
    documents), then `sync --src dir --dest docker`. Pairs alternate which tool goes first and
    repeat up to `runs` while one more fits in `budget` seconds (at least one pair)."""
    log("B7: seeding 200 images into the source registry")
    source = bed.registry("b7-source")
    seed_small(source)
    source_host = bed.proxied(source)
    segment = source_host.replace(":", "_")
    users = {"bench": PASSWORD}
    with ExitStack() as stack:  # B2's skopeo YAML: the selection does not depend on the destination
        stand_in = bed.registry("render", users=users, stack=stack)
        spec = small_spec(bed.work / "b7-render.yaml", source_host, source, stand_in.host, stand_in)
        docs = skopeo_documents(bed, spec, source)  # sync-N.yaml, rewritten by B2 at its own start
    upstream = manifest_digests(source, {repo: repo for repo in REPOS})
    assert len(upstream) == len(REPOS) * len(SELECTED), f"{len(upstream)} upstream tags"
    far_paths = {f"mirror/{segment}/{repo}": repo for repo in REPOS}  # both tools' destination paths
    ours: list[float] = []
    base: list[float] = []
    steps: dict[str, list[tuple[float, float]]] = {"mirrorspec": [], "skopeo sync": []}
    same: dict[str, list[int]] = {"mirrorspec": [], "skopeo sync": []}
    kept: dict[str, int] = {}  # bytes on disk between the steps, first run

    def landed(tool: str, far: RegistryServer) -> None:
        """Both tools must end with the same 200 tags; mirrorspec must also keep every digest."""
        copied = dest_tag_count(far, source_host)
        assert copied == 200, f"{tool} left {copied} of 200 tags at the far registry"
        digests = manifest_digests(far, far_paths, auth=True)
        assert len(digests) == 200, f"{tool} left {200 - len(digests)} selected tag(s) out"  # the same 200
        same[tool].append(sum(digests.get(ref) == digest for ref, digest in upstream.items()))
        if tool == "mirrorspec":
            assert same[tool][-1] == 200, f"mirrorspec changed {200 - same[tool][-1]} digest(s)"

    def mirrorspec_run(n: int) -> None:
        with ExitStack() as stack:
            far = bed.registry("b7-far", users=users, stack=stack)
            far_host = bed.proxied(far, stack=stack)
            side = bed.work / f"b7-ours-{n}"
            side.mkdir()
            near = airgap_near_spec(side / "near.yaml", source_host, source)
            (side / "targets.yaml").write_text(
                "credentials:\n  far:\n    username: bench\n    password: {env: BENCH_DEST_PASSWORD}\n"
                f"targets:\n  - name: inside\n    type: registry\n    registry: {far_host}\n"
                f"    prefix: mirror\n    credentials: far\n    ca-bundle: {far.ca_file}\n"
            )
            render = [MIRRORSPEC, "render", "offline-spec", str(near), "-t", "media"]
            _, proc = bed.run([*render, "--to", str(side / "targets.yaml")])
            check(proc, "mirrorspec render offline-spec")
            (side / "far.yaml").write_text(proc.stdout)  # beside near.yaml: the same `path: layout`
            near_s, proc = bed.run([MIRRORSPEC, "apply", str(near), "--yes"])
            check(proc, "mirrorspec apply (upstream → layout)")
            assert "200 of 200 tag(s) copied and verified" in proc.stdout, proc.stdout[-2000:]
            far_s, proc = bed.run([MIRRORSPEC, "apply", str(side / "far.yaml"), "--yes"])
            check(proc, "mirrorspec apply (layout → far registry)")
            assert "200 of 200 tag(s) copied and verified" in proc.stdout, proc.stdout[-2000:]
            kept.setdefault("mirrorspec", disk_bytes(side / "layout"))
            landed("mirrorspec", far)
        steps["mirrorspec"].append((near_s, far_s))
        ours.append(near_s + far_s)
        shutil.rmtree(side, ignore_errors=True)

    def skopeo_run(n: int) -> None:
        with ExitStack() as stack:
            far = bed.registry("b7-far", users=users, stack=stack)
            far_host = bed.proxied(far, stack=stack)
            side = bed.work / f"b7-skopeo-{n}"
            authfile = authfile_for(bed, far_host)
            near_s = far_s = 0.0
            for i, doc in enumerate(docs):
                # one directory per document: `sync --src dir` names each image by its path
                # below SOURCE, so the far side's destination is the document's again
                media = side / f"dir-{i}"
                seconds, proc = bed.run(
                    [SKOPEO, "sync", "--all", "--src", "yaml", "--dest", "dir", str(doc.path), str(media)]
                )
                skopeo_ok(proc, "skopeo sync --dest dir")
                near_s += seconds
                argv = [SKOPEO, "sync", "--all", "--src", "dir", "--dest", "docker"]
                argv += ["--dest-authfile", str(authfile), "--dest-cert-dir", str(far.cert_dir)]
                seconds, proc = bed.run([*argv, str(media), f"{far_host}/{doc.destination_path}"])
                skopeo_ok(proc, "skopeo sync --src dir")
                far_s += seconds
            kept.setdefault("skopeo sync", disk_bytes(side))
            landed("skopeo sync", far)
        steps["skopeo sync"].append((near_s, far_s))
        base.append(near_s + far_s)
        shutil.rmtree(side, ignore_errors=True)

    started = time.monotonic()
    pair = 0.0
    for i in range(runs):
        if i and time.monotonic() - started + pair > budget:
            break
        begun = time.monotonic()
        for run in (skopeo_run, mirrorspec_run) if i % 2 else (mirrorspec_run, skopeo_run):
            run(i)
        pair = max(pair, time.monotonic() - begun)
        log(f"B7 run {i + 1}: mirrorspec {ours[-1]:.2f}s, skopeo sync via dir {base[-1]:.2f}s")
    row = Row(
        "B7",
        "air gap, 200 small images: upstream → directory → empty registry",
        ours,
        base,
        "skopeo sync via dir",
        "ratio",
    )

    def split(tool: str) -> str:
        near = median([s[0] for s in steps[tool]])
        far = median([s[1] for s in steps[tool]])
        return f"{tool}: upstream → directory {near:.2f} s, directory → registry {far:.2f} s (medians)"

    row.notes += [split("mirrorspec"), split("skopeo sync")]
    row.notes.append(
        f"directory between the steps: mirrorspec's OCI layout {kept['mirrorspec'] / 2**20:.1f} MiB, "
        f"skopeo's dir tree {kept['skopeo sync'] / 2**20:.1f} MiB (du)"
    )
    row.notes.append(
        "digests at the far registry equal to upstream's, of 200: "
        + ", ".join(f"{tool} {'/'.join(map(str, counts))}" for tool, counts in same.items())
    )
    if len(ours) < runs:
        row.notes.append(
            f"{len(ours)} pair(s), not {runs}: one more (~{pair:.0f} s) would have overrun --b7-budget"
        )
    return [row]


def disk_bytes(path: Path) -> int:
    """Bytes the tree takes on disk (`du`: blocks, not lengths: small files cost a block each)."""
    return sum(p.lstat().st_blocks * 512 for p in path.rglob("*")) + path.lstat().st_blocks * 512


def skopeo_ok(proc: subprocess.CompletedProcess[str], what: str) -> None:
    check(proc, what)
    if re.search(r"level=(error|fatal)", proc.stderr):
        raise RuntimeError(f"{what} logged an error (exit 0):\n{proc.stderr[-3000:]}")


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    skopeo = subprocess.run([SKOPEO, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    registry = subprocess.run(
        ["docker-registry", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "skopeo": skopeo,
        "registry": registry,
    }


def seconds_text(values: Sequence[float]) -> str:
    value = median(values)
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


ANALYSIS_MARKER = "<!-- Hand-written from here on: bench/run.py keeps everything below this line. -->"


def render(rows: Sequence[Row], info: dict[str, str], args: argparse.Namespace, wall: float) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    b2 = next((len(r.ours) for r in rows if r.bench == "B2"), 0)
    b7 = next((f"B7: {len(r.ours)} pair(s), " for r in rows if r.bench == "B7"), "")
    handshake = " plus a round trip per new TCP connection" if args.tcp_handshake else ""
    command = f"`{' '.join(args.argv)}`"
    if args.argv == ["bench/run.py"]:
        command = "`make bench` (`.venv/bin/python bench/run.py`)"
    lines = [
        "# Benchmarks",
        "",
        "The table and details are written by `make bench` (`bench/run.py`, whose docstring says",
        "how each benchmark is set up); the analysis at the end is written by hand.",
        "",
        f"- Command: {command} ({wall / 60:.1f} min in all; load average before/after: {args.load})",
        f"- Date: {date}",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']}, {info['os']}",
        f"- Software: Python {info['python']}, {info['skopeo']}, {info['registry']}; Python bytecode "
        "cached in the work directory (PYTHONPYCACHEPREFIX), as an installed package has it",
        f"- Latency: {args.delay * 1000:.0f} ms added one way per chunk and direction{handshake} "
        "in B1, B2 and B7 (bench/proxy.py); none in B3-B5",
        f"- Runs: medians of {args.runs} runs (B2: {b2} pair(s), {b7}see details; B4: 11; B5: 10); "
        "the two tools alternate which goes first",
        "",
        "| | benchmark | mirrorspec | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = f"{seconds_text(row.base)} ({row.base_name})" if row.base else "—"
        ratio = row.ratio_text()
        met = {True: "yes", False: "**no**", None: "—"}[row.met]
        ours = seconds_text(row.ours)
        lines.append(f"| {row.bench} | {row.what} | {ours} | {base} | {ratio} | {row.target} | {met} |")
    lines += ["", "## Details", ""]
    for row in rows:
        runs = ", ".join(f"{v:.3f}" for v in row.ours)
        lines.append(f"- **{row.bench}** {row.what}: mirrorspec runs (s): {runs}")
        if row.base:
            lines.append(f"  - {row.base_name} runs (s): {', '.join(f'{v:.3f}' for v in row.base)}")
        lines += [f"  - {note}" for note in row.notes]
    return "\n".join(lines) + "\n"


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mirrorspec-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


ALL = frozenset({"B1", "B2", "B3", "B4", "B5", "B6", "B7"})
PARTIAL = "- Re-measured since: "


def _sections(text: str) -> tuple[list[str], list[str], list[str]]:
    """A rendered report as (header lines, table rows, detail lines)."""
    lines = text.rstrip("\n").split("\n")
    table = lines.index("|---|---|---|---|---|---|---|") + 1
    details = lines.index("## Details")
    return lines[:table], lines[table:details], lines[details + 2 :]


def _bench_of(line: str) -> str:
    match = re.match(r"^(?:\| |- \*\*)(B\d)L?\b", line)  # B1L is re-measured with B1
    return match.group(1) if match else ""


def merge(previous: str, fresh: str, only: set[str]) -> str:
    """The previous report with the rows and details of the benchmarks in `only` replaced by
    `fresh`'s; the header stays the full run's, plus a line saying what was re-measured."""
    old_head, old_rows, old_details = _sections(previous)
    new_head, new_rows, new_details = _sections(fresh)
    rows = sorted(  # stable: a benchmark's rows keep their order
        [r for r in old_rows if r and _bench_of(r) not in only] + [r for r in new_rows if r], key=_bench_of
    )
    blocks: dict[str, list[str]] = {}
    for lines, fresh_ones in ((old_details, False), (new_details, True)):
        bench = ""
        for line in lines:
            bench = _bench_of(line) or bench
            if (bench in only) == fresh_ones:
                blocks.setdefault(bench, []).append(line)
    which = ", ".join(sorted(only))
    said = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in new_head if ": " in line}
    partial = f"{PARTIAL}{which} on {said['- Date']}: {said['- Command']}"
    head = [line for line in old_head if not line.startswith(f"{PARTIAL}{which} on ")]
    at = max(i for i, line in enumerate(head) if line.startswith("- ")) + 1
    head.insert(at, partial)
    body = [line for bench in sorted(blocks) for line in blocks[bench]]
    return "\n".join([*head, *rows, "", "## Details", "", *body]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mirrorspec benchmarks (issue 7)")
    parser.add_argument("--runs", type=int, default=5, help="runs per benchmark (median)")
    parser.add_argument("--b2-runs", type=int, default=5, help="at most this many runs of the slow B2")
    parser.add_argument(
        "--budget", type=float, default=14, help="minutes; B2 stops repeating before it would overrun"
    )
    parser.add_argument(
        "--tcp-handshake", action="store_true", help="the proxy also charges a round trip per connection"
    )
    parser.add_argument("--delay", type=float, default=0.020, help="one-way latency, seconds")
    parser.add_argument(
        "--b1l-delay", type=float, default=0.100, help="B1L's one-way latency, seconds (0: no B1L)"
    )
    parser.add_argument(
        "--b7-budget", type=float, default=12, help="minutes; B7 stops repeating before it would overrun"
    )
    parser.add_argument(
        "--b1-baseline-runs", type=int, help="at most this many skopeo sync runs in B1 (default: --runs)"
    )
    parser.add_argument(
        "--only",
        default=",".join(sorted(ALL)),
        help="comma-separated subset; its rows replace theirs in --output, the others are kept",
    )
    parser.add_argument(
        "--b3-targets",
        default="registry,ecr,acr,harbor",
        help="B3 target types (comma-separated); with --only B3, rows left out drop from --output",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    args.argv = ["bench/run.py", *(argv if argv is not None else sys.argv[1:])]
    only = {part.strip().upper() for part in args.only.split(",")}
    started = time.perf_counter()
    rows: list[Row] = []
    deadline = time.monotonic() + args.budget * 60
    load_before = f"{os.getloadavg()[0]:.2f}"
    with workdir(args.keep) as work, ExitStack() as stack:
        bed = Bed(work, stack, args.delay, tcp_handshake=args.tcp_handshake)
        # cheapest first; B2 goes last and repeats while its pairs fit in the budget
        if "B5" in only:
            rows += bench_startup(bed, args.runs)
        if "B4" in only:
            rows += bench_select(args.runs)
        if "B6" in only:
            rows += bench_plan_10k(bed, min(args.runs, 3))
        if "B3" in only:
            rows += bench_plan(bed, args.runs, [p.strip() for p in args.b3_targets.split(",") if p.strip()])
        if only & {"B1", "B2"}:
            rows += bench_sync(
                bed,
                args.runs,
                args.b2_runs,
                deadline,
                "B1" in only,
                "B2" in only,
                args.b1l_delay,
                args.b1_baseline_runs,
            )
        if "B7" in only:  # after B2: B2's --budget counts from the start
            rows += bench_airgap(bed, args.runs, args.b7_budget * 60)
    rows.sort(key=lambda r: r.bench)
    args.load = f"{load_before} / {os.getloadavg()[0]:.2f}"
    wall = time.perf_counter() - started
    text = render(rows, machine(), args, wall)
    try:
        previous, kept = args.output.read_text().split(ANALYSIS_MARKER, 1)
    except (OSError, ValueError):
        previous, kept = "", "\n## Analysis\n\n(not written yet)\n"
    if only != ALL and previous:
        text = merge(previous, text, only)
    args.output.write_text(f"{text}\n{ANALYSIS_MARKER}\n{kept.lstrip(chr(10))}")
    print(text)
    log(
        f"wrote {args.output} in {wall / 60:.1f} min; peak RSS of this harness "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
