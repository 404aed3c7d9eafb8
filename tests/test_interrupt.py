"""Interrupting `apply` half-way: the real console script copying with real skopeo between
real registries, stopped by SIGINT (what Ctrl-C sends) or SIGTERM (what `kill`, systemd and
CI runners send) while copies are running.

Either way the run must stop promptly and in order: exit 128 + the signal's number (130,
143), one "interrupted" line saying what was copied and what was not, no traceback, no
skopeo left running, no auth file left in TMPDIR — and the next plan lists exactly the tags
the destination really lacks (a copy killed before its manifest was pushed left no tag).

Synchronisation is by observation, never by sleeping: the signal goes out once the
destination holds at least one copied tag (but not all) and a skopeo child is running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from spec_text import DEST_LOGIN, lab_target
from testbed import FaultProxy, RegistryServer, add_tags, push_image, start_registry

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
PASSWORD = "interrupt-canary-5f0d2c8e91"
REPOSITORY = "images/app"
TAGS = [f"v1.{i}.0" for i in range(30)]
WAIT = 60.0  # generous bound on anything we wait for; the runs themselves take seconds


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(tmp_path_factory.mktemp("upstream")) as server:
        # Distinct content for the first tag, the rest point at it: 30 skopeo copies, pushed
        # with one skopeo run and 29 manifest PUTs.
        push_image(server, REPOSITORY, TAGS[0], seed="interrupt")
        add_tags(server, REPOSITORY, TAGS[0], TAGS[1:])
        for i in (1, 2, 3):  # a few distinct digests too, so copies from the source run alongside
            push_image(server, REPOSITORY, TAGS[i], seed=TAGS[i])
        yield server


class Run:
    def __init__(
        self,
        upstream: RegistryServer,
        destination: RegistryServer,
        tmp_path: Path,
        *,
        source_host: str | None = None,  # a proxy in front of `upstream`
    ) -> None:
        source_host = source_host or upstream.host
        self.destination = destination
        self.tmp = tmp_path / "tmpdir"
        self.tmp.mkdir()
        self.spec = tmp_path / "spec.yaml"
        self.spec.write_text(
            f"""\
{DEST_LOGIN}sources:
  - registry: {source_host}
    insecure: true
    repositories:
      - name: {REPOSITORY}
        tag-regex: "^v1\\\\.[0-9]+\\\\.0$"
{lab_target(destination)}"""
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"},
            "DEST_PASSWORD": PASSWORD,
            "TMPDIR": str(self.tmp),
        }
        self.dest_repository = f"mirror/{source_host.replace(':', '_')}/{REPOSITORY}"

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [MIRRORSPEC, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # a run that does not end gets SIGABRT: Python's fault handler then prints every
            # thread's stack on stderr, for the failure message (`ended_within`)
            env={**self.env, "PYTHONFAULTHANDLER": "1"},
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [MIRRORSPEC, *args], capture_output=True, text=True, env=self.env, timeout=WAIT, check=False
        )
        assert PASSWORD not in proc.stdout + proc.stderr
        return proc

    def dest_tags(self) -> list[str]:
        resp = requests.get(
            f"{self.destination.url}/v2/{self.dest_repository}/tags/list",
            auth=("alice", PASSWORD),
            verify=str(self.destination.ca_file),
            timeout=10,
        )
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return sorted(resp.json()["tags"] or [])


def children_of(pid: int) -> dict[int, str]:
    """Running processes whose parent is `pid`: {pid: command line}."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(stat.parent.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def holding_one_copy(upstream: RegistryServer, request: pytest.FixtureRequest) -> FaultProxy:
    """A proxy in front of `upstream` that holds the download of one distinct image's layer
    (TAGS[3]'s) unanswered until `release()`: that copy cannot finish, so a run is still copying
    when it is signalled or killed, however fast the other 29 tags get there (26 of them share
    one digest and are only tagged once it is copied)."""
    manifest = requests.get(
        f"{upstream.url}/v2/{REPOSITORY}/manifests/{TAGS[3]}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).json()
    proxy = FaultProxy(upstream.url).start()
    request.addfinalizer(proxy.stop)
    proxy.hold("GET", f"/v2/{REPOSITORY}/blobs/{manifest['layers'][0]['digest']}")
    return proxy


def ended_within(proc: subprocess.Popen[str], seconds: float, what: str) -> tuple[str, str]:
    """stdout and stderr of `proc` once it ends; if it has not ended within `seconds`, the test
    fails with every thread's stack (SIGABRT, caught by the fault handler) and its children."""
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        children = children_of(proc.pid)
        proc.send_signal(signal.SIGABRT)
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        pytest.fail(f"still running {seconds:.0f}s {what}; children {children}; stderr:\n{stderr[-6000:]}")


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            pytest.fail(f"apply ended (exit {proc.returncode}) before {what}: {stderr}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)  # a polling interval, not a synchronisation


@pytest.mark.parametrize(
    ("signals", "exit_code"),
    [
        ((signal.SIGINT,), 130),
        ((signal.SIGTERM,), 143),
        # an impatient double Ctrl-C: the second one must not cut the cleanup short
        ((signal.SIGINT, signal.SIGINT), 130),
    ],
    ids=["SIGINT", "SIGTERM", "SIGINT-twice"],
)
def test_a_signal_mid_apply_stops_in_order_and_the_next_plan_shows_exactly_the_rest(
    upstream: RegistryServer,
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    signals: tuple[signal.Signals, ...],
    exit_code: int,
    request: pytest.FixtureRequest,
) -> None:
    destination = registry_factory(tls=True, users={"alice": PASSWORD})
    # One copy held at the proxy: without it the run could finish before the signal is handled
    # (a fresh-clone CI run once found all 30 tags copied after SIGTERM).
    proxy = holding_one_copy(upstream, request)
    bed = Run(upstream, destination, tmp_path, source_host=proxy.host)
    # Two copies at a time (the per-registry limit follows --workers): slow enough to catch.
    proc = bed.start("apply", str(bed.spec), "--yes", "--workers", "2")
    skopeo: dict[int, str] = {}
    workspaces: set[str] = set()

    def mid_way() -> bool:
        running = {p: c for p, c in children_of(proc.pid).items() if "skopeo" in c}
        skopeo.update(running)
        workspaces.update(p.name for p in bed.tmp.glob("mirrorspec-*"))
        copied = len(bed.dest_tags())
        assert copied < len(TAGS), "apply finished before it could be interrupted"
        return copied >= 1 and bool(running)

    try:
        wait_for(mid_way, "a first copied tag with a copy still running", proc)
        for signum in signals:
            proc.send_signal(signum)
        stdout, stderr = ended_within(proc, WAIT, f"after {signal.Signals(signals[0]).name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert PASSWORD not in stdout + stderr
    last = stderr.rstrip("\n").splitlines()[-1]
    name = signal.Signals(signals[0]).name
    assert last.startswith(f"interrupted by {name}: "), stderr
    done = int(last.split(": ", 1)[1].split(" of ")[0])
    assert f"{done} of {len(TAGS)} tag(s) copied and verified, {len(TAGS) - done} not copied" in last
    assert "`mirrorspec plan` shows what remains" in last

    # skopeo children were stopped and reaped, not orphaned to finish on their own
    assert skopeo, "no skopeo child was seen running"
    assert [pid for pid in skopeo if alive(pid)] == []
    for pid in skopeo:  # each ran in its own process group, now empty
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    # the private workspace with the auth files existed while copying, and is gone
    assert workspaces, "no mirrorspec-* workspace was seen in TMPDIR"
    assert list(bed.tmp.iterdir()) == []

    present = bed.dest_tags()
    assert 1 <= len(present) < len(TAGS) and TAGS[3] not in present
    assert done <= len(present)  # a copy finishing as the signal came may not have been counted
    proxy.release()
    plan = json.loads(bed.run("plan", str(bed.spec), "--format", "json").stdout)
    planned = sorted(t["tag"] for target in plan["targets"] for c in target["copies"] for t in c["tags"])
    assert planned == sorted(set(TAGS) - set(present))

    # and the next apply finishes the job
    finished = bed.run("apply", str(bed.spec), "--yes")
    assert finished.returncode == 0, finished.stderr
    assert bed.dest_tags() == sorted(TAGS)
    assert list(bed.tmp.iterdir()) == []


def holds_credentials(tmp: Path) -> list[str]:
    """Files under `tmp` holding the destination password, as is or base64'd at any offset
    (an auth file holds base64("alice:" + password))."""
    from mirrorspec.redaction import forget_secrets, redact, register_secret

    forget_secrets()
    register_secret(PASSWORD)
    found = []
    for path in tmp.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes().decode(errors="replace")
            if redact(text) != text:
                found.append(str(path.relative_to(tmp)))
    forget_secrets()
    return found


@pytest.mark.parametrize("whole_group", [False, True], ids=["kill -9 mirrorspec", "kill -9 its group"])
def test_kill_9_mid_apply_leaves_no_credential_and_no_skopeo_behind(
    upstream: RegistryServer,
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    whole_group: bool,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILL gives mirrorspec no chance to clean up, so nothing may depend on it: skopeo's
    credentials were never on disk (memfd), and skopeo dies with its parent (PDEATHSIG).

    One copy's blob download hangs (the proxy holds it unanswered): a skopeo blocked on the
    network writes nothing, so it would not even die of a broken pipe — only the parent-death
    signal can stop it. The others copy normally, so the destination is half-way."""
    destination = registry_factory(tls=True, users={"alice": PASSWORD})
    proxy = holding_one_copy(upstream, request)
    bed = Run(upstream, destination, tmp_path, source_host=proxy.host)
    proc = subprocess.Popen(
        [MIRRORSPEC, "apply", str(bed.spec), "--yes", "--workers", "2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=bed.env,
        start_new_session=True,  # its own process group, to kill it whole
    )
    skopeo: dict[int, str] = {}
    leaked: list[str] = []

    def copying() -> bool:
        running = {p: c for p, c in children_of(proc.pid).items() if "skopeo" in c and " copy " in c}
        skopeo.update(running)
        leaked.extend(holds_credentials(bed.tmp))
        return len(bed.dest_tags()) >= 1 and bool(running) and proxy.held >= 1

    try:
        wait_for(copying, "a copied tag, and a skopeo copy hanging on a blob", proc)
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    assert skopeo, "no skopeo child was seen running"
    deadline = time.monotonic() + WAIT
    while [pid for pid in skopeo if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [cmd for pid, cmd in skopeo.items() if alive(pid)] == [], "skopeo outlived its parent"
    # what a kill -9 leaves in TMPDIR holds no credential in any form (the CA's cert dir may stay)
    assert leaked == []
    assert holds_credentials(bed.tmp) == []
    assert {p.name.split("-")[1] for p in bed.tmp.glob("mirrorspec-*")} <= {str(proc.pid)}

    # the next run sweeps what the dead one left, and finishes the job
    proxy.release()
    finished = bed.run("apply", str(bed.spec), "--yes")
    assert finished.returncode == 0, finished.stderr
    assert bed.dest_tags() == sorted(TAGS)
    assert list(bed.tmp.iterdir()) == []
