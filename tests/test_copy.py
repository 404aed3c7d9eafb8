"""The fallback copier (`mirrorspec/skopeo/`): real copies, distrust of skopeo's exit code,
and how credentials and TLS settings reach skopeo.

A fake `skopeo` first on PATH records what it was given — argv, and the mode bits and
content of the auth files and cert dir *while it runs* — then either misbehaves the way
skopeo 1.9.3 does (exit 0 without copying, an error line with exit 0) or hands over to the
real skopeo.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from copy_helpers import minimal_context
from testbed import RegistryServer, push_image

from mirrorspec.context import Endpoint, RunContext
from mirrorspec.credentials import BasicAuth
from mirrorspec.errors import MirrorspecError
from mirrorspec.oci import RegistryClient
from mirrorspec.skopeo.copier import copy_all
from mirrorspec.skopeo.jobs import CopyJob, CopyResult
from mirrorspec.skopeo.process import find_skopeo

ALICE = BasicAuth("alice", "wonderland-pw")  # the tls_registry fixture's user
REAL_SKOPEO = shutil.which("skopeo")

# Never contacted: copy_all takes its endpoints from the jobs, the spec only fills the context.

FAKE_SKOPEO = """\
#!{python}
import json, os, stat, subprocess, sys
from pathlib import Path

args = sys.argv[1:]
if args == ["--version"]:
    {version}
record = {{"argv": sys.argv, "files": {{}}}}
for flag, value in zip(args, args[1:]):
    path = Path(value)
    if flag.endswith("-authfile"):
        record["files"][flag] = {{
            "path": value,
            "mode": stat.S_IMODE(path.stat().st_mode),
            "dir_mode": stat.S_IMODE(path.parent.stat().st_mode),
            # /proc/self/fd/N names what the descriptor is: "/memfd:… (deleted)" for a memfd
            "target": os.readlink(value) if value.startswith("/proc/self/fd/") else None,
            "content": path.read_text(),
        }}
    elif flag.endswith("-cert-dir"):
        record["files"][flag] = {{
            "path": value,
            "mode": stat.S_IMODE(path.stat().st_mode),
            "listing": {{p.name: p.read_text() for p in path.iterdir()}},
        }}
output = Path({log!r}, f"{{os.getpid()}}.json")
output.write_text(json.dumps(record))
{behaviour}
"""

BEHAVIOURS = {
    # skopeo 1.9.3 exits 0 on many failures: claim success, copy nothing.
    "silent": "sys.exit(0)",
    "error-line": (
        'print(\'time="2024-05-01T10:00:00Z" level=warning msg="retrying"\', file=sys.stderr)\n'
        'print(\'time="2024-05-01T10:00:01Z" level=error msg="writing blob: '
        '\\\\"denied\\\\" by policy"\', file=sys.stderr)\n'
        "sys.exit(0)"
    ),
    "exit-1": "print('fatal: the registry went away', file=sys.stderr)\nsys.exit(1)",
    # the real skopeo, as a child, so that its exit code can be recorded
    "real": (
        # close_fds=False: the auth files are inherited descriptors (/proc/self/fd/N)
        f"rc = subprocess.call([{REAL_SKOPEO!r}, *args], close_fds=False)\n"
        'output.write_text(json.dumps({**record, "rc": rc}))\n'
        "sys.exit(rc)"
    ),
}


@dataclass(frozen=True)
class Fake:
    log: Path

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.log.iterdir())]


def install_fake_skopeo(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    behaviour: str,
    *,
    version_line: str | None = None,
) -> Fake:
    """Put a recording `skopeo` first on PATH; `--version` answers like the real one unless told."""
    assert REAL_SKOPEO is not None
    bindir, log = tmp_path / "bin", tmp_path / "skopeo-calls"
    bindir.mkdir()
    log.mkdir()
    version = (
        f"os.execv({REAL_SKOPEO!r}, [{REAL_SKOPEO!r}, '--version'])"
        if version_line is None
        else f"print({version_line!r}); sys.exit(0)"
    )
    script = bindir / "skopeo"
    script.write_text(
        FAKE_SKOPEO.format(python=sys.executable, version=version, log=str(log), behaviour=behaviour)
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    find_skopeo.cache_clear()
    return Fake(log)


@pytest.fixture(autouse=True)
def _fresh_skopeo_lookup() -> Iterator[None]:
    # find_skopeo() is cached per process: never let a fake leak into other tests.
    find_skopeo.cache_clear()
    yield
    find_skopeo.cache_clear()


@pytest.fixture
def ctx() -> Iterator[RunContext]:
    context = minimal_context(4)
    yield context
    context.close()


@pytest.fixture
def source(plain_registry: RegistryServer) -> Endpoint:
    return Endpoint(plain_registry.host, insecure=True)


@pytest.fixture
def destination(tls_registry: RegistryServer) -> Endpoint:
    return Endpoint(tls_registry.host, auth=ALICE, ca_bundle=str(tls_registry.ca_file))


@dataclass(frozen=True)
class Seeded:
    repository: str
    digests: dict[str, str]


@pytest.fixture
def seeded(plain_registry: RegistryServer) -> Seeded:
    repository = f"copy-{uuid.uuid4().hex[:10]}/app"
    digests = {tag: push_image(plain_registry, repository, tag, seed=tag) for tag in ("v1", "v2")}
    return Seeded(repository, digests)


def jobs_for(seeded: Seeded, source: Endpoint, destination: Endpoint, *tags: str) -> list[CopyJob]:
    return [
        CopyJob(
            source, seeded.repository, seeded.digests[tag], destination, f"mirror/{seeded.repository}", tag
        )
        for tag in tags
    ]


def destination_digest(server: RegistryServer, repository: str, tag: str) -> str | None:
    client = RegistryClient(
        server.host, username=ALICE.username, password=ALICE.password, ca_bundle=str(server.ca_file)
    )
    try:
        return client.digest(repository, tag)
    finally:
        client.close()


# --- real copies ---------------------------------------------------------------------------


def test_copies_by_digest_from_plain_http_to_tls_with_basic_auth(
    ctx: RunContext, seeded: Seeded, source: Endpoint, destination: Endpoint, tls_registry: RegistryServer
) -> None:
    done: list[CopyResult] = []
    jobs = jobs_for(seeded, source, destination, "v1", "v2")

    results = copy_all(jobs, ctx, on_done=done.append)

    assert [r.job for r in results] == jobs  # in job order, whatever order they finished in
    assert [(r.ok, r.error) for r in results] == [(True, None), (True, None)]
    assert sorted(r.job.tag for r in done) == ["v1", "v2"]
    assert all(r.seconds > 0 for r in results)
    for tag, digest in seeded.digests.items():
        assert destination_digest(tls_registry, f"mirror/{seeded.repository}", tag) == digest


def test_wrong_destination_password_fails_the_copy(
    ctx: RunContext, seeded: Seeded, source: Endpoint, tls_registry: RegistryServer
) -> None:
    wrong = Endpoint(
        tls_registry.host, auth=BasicAuth("alice", "not-the-password"), ca_bundle=str(tls_registry.ca_file)
    )

    (result,) = copy_all(jobs_for(seeded, source, wrong, "v1"), ctx)

    assert not result.ok
    assert result.error is not None and result.error.startswith("skopeo exited 1: ")
    assert "unauthorized" in result.error
    assert "not-the-password" not in result.error
    assert destination_digest(tls_registry, f"mirror/{seeded.repository}", "v1") is None


def test_no_jobs_needs_no_skopeo(ctx: RunContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert copy_all([], ctx) == []


# --- skopeo's exit code is not trusted -------------------------------------------------------


def test_exit_0_without_copying_is_a_failure(
    ctx: RunContext,
    seeded: Seeded,
    source: Endpoint,
    destination: Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_fake_skopeo(tmp_path, monkeypatch, BEHAVIOURS["silent"])
    (job,) = jobs_for(seeded, source, destination, "v1")

    (result,) = copy_all([job], ctx)

    assert not result.ok
    assert result.error == (
        f"skopeo reported success but {job.destination_ref} has no manifest instead of {job.digest}"
    )


def test_an_error_line_with_exit_0_is_a_failure_with_that_message(
    ctx: RunContext,
    seeded: Seeded,
    source: Endpoint,
    destination: Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_fake_skopeo(tmp_path, monkeypatch, BEHAVIOURS["error-line"])

    (result,) = copy_all(jobs_for(seeded, source, destination, "v1"), ctx)

    assert not result.ok
    # the Go-quoted message, unquoted; the warning before it is not the reason
    assert result.error == 'skopeo exited 0: writing blob: "denied" by policy'


def test_a_non_zero_exit_is_a_failure_with_the_last_stderr_line(
    ctx: RunContext,
    seeded: Seeded,
    source: Endpoint,
    destination: Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_fake_skopeo(tmp_path, monkeypatch, BEHAVIOURS["exit-1"])

    (result,) = copy_all(jobs_for(seeded, source, destination, "v1"), ctx)

    assert not result.ok
    assert result.error == "skopeo exited 1: fatal: the registry went away"


# --- what skopeo is given --------------------------------------------------------------------


def test_credentials_and_tls_settings_reach_skopeo_through_private_files(
    ctx: RunContext,
    seeded: Seeded,
    source: Endpoint,
    destination: Endpoint,
    tls_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = install_fake_skopeo(tmp_path, monkeypatch, BEHAVIOURS["real"])
    jobs = jobs_for(seeded, source, destination, "v1", "v2")

    results = copy_all(jobs, ctx)

    assert [r.error for r in results] == [None, None]  # the real skopeo did the copies
    records = fake.records()
    # each tag copied once; a call that failed and was retried is not a copy
    succeeded = Counter(r["argv"][-1] for r in records if r["rc"] == 0)
    assert succeeded == Counter(f"docker://{j.destination_ref}" for j in jobs)
    workspaces = set()
    copies: set[tuple[str, str]] = set()
    for record in records:
        argv, files = record["argv"], record["files"]
        assert not any(ALICE.password in arg for arg in argv), "the password must never be on argv"
        # copied by digest, to an explicit tag
        copies.add((argv[-2], argv[-1]))
        # insecure source: TLS verification off for it only
        assert "--src-tls-verify=false" in argv
        assert "--dest-tls-verify=false" not in argv
        assert "--src-cert-dir" not in argv

        src, dest = files["--src-authfile"], files["--dest-authfile"]
        for auth in (src, dest):
            # an anonymous in-memory file, inherited: nothing on disk that a kill -9 could leave
            assert auth["path"].startswith("/proc/self/fd/")
            assert auth["target"].startswith("/memfd:mirrorspec-auth-"), auth["target"]
            assert auth["mode"] == 0o600
        # no credentials configured: an explicit empty file, so ~/.docker/config.json is not used
        assert json.loads(src["content"]) == {"auths": {}}
        auths = json.loads(dest["content"])["auths"]
        assert list(auths) == [destination.host]
        assert base64.b64decode(auths[destination.host]["auth"]).decode() == "alice:wonderland-pw"

        certs = files["--dest-cert-dir"]
        assert certs["mode"] == 0o700
        assert certs["listing"] == {"ca.crt": Path(str(tls_registry.ca_file)).read_text()}
        workspaces.add(Path(certs["path"]).parent)
    assert copies == {
        (
            f"docker://{source.host}/{seeded.repository}@{digest}",
            f"docker://{destination.host}/mirror/{seeded.repository}:{tag}",
        )
        for tag, digest in seeded.digests.items()
    }
    # one private directory per batch (for the CA), each file made once per endpoint
    assert len(workspaces) == 1
    assert len({r["files"]["--dest-authfile"]["path"] for r in records}) == 1
    (workspace,) = workspaces
    assert workspace.name.startswith(f"mirrorspec-{os.getpid()}-")
    assert not workspace.exists(), "the cert dirs' directory must be removed after the copies"


@pytest.mark.parametrize("behaviour", ["silent", "exit-1"])
def test_the_private_directory_is_removed_after_failed_copies_too(
    behaviour: str,
    ctx: RunContext,
    seeded: Seeded,
    source: Endpoint,
    destination: Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = install_fake_skopeo(tmp_path, monkeypatch, BEHAVIOURS[behaviour])

    (result,) = copy_all(jobs_for(seeded, source, destination, "v1"), ctx)

    assert not result.ok
    (record,) = fake.records()
    workspace = Path(record["files"]["--dest-cert-dir"]["path"]).parent
    assert not workspace.exists()


# --- finding skopeo ----------------------------------------------------------------------------


def test_find_skopeo_reads_the_installed_version() -> None:
    skopeo = find_skopeo()
    assert skopeo.path == REAL_SKOPEO
    assert skopeo.version == (1, 9, 3)  # Debian 12's skopeo (DESIGN: "Debian 12 ships 1.9.3")
    assert skopeo.supports_semver is False  # images-by-semver arrived in 1.15


@pytest.mark.parametrize(
    ("line", "version", "semver"),
    [
        ("skopeo version 1.14.9 commit: 0123abc", (1, 14, 9), False),
        ("skopeo version 1.15.0", (1, 15, 0), True),
        ("skopeo version 2.0.1-dev", (2, 0, 1), True),
    ],
)
def test_semver_support_follows_the_version(
    line: str,
    version: tuple[int, int, int],
    semver: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_fake_skopeo(tmp_path, monkeypatch, BEHAVIOURS["silent"], version_line=line)
    skopeo = find_skopeo()
    assert skopeo.version == version
    assert skopeo.supports_semver is semver


def test_an_unreadable_version_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_skopeo(tmp_path, monkeypatch, BEHAVIOURS["silent"], version_line="skopeo, a fork")
    with pytest.raises(MirrorspecError, match=r"cannot tell the version of .*skopeo.* from 'skopeo, a fork'"):
        find_skopeo()


def test_missing_skopeo_says_how_to_install_it(
    ctx: RunContext,
    seeded: Seeded,
    source: Endpoint,
    destination: Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    with pytest.raises(MirrorspecError, match=r"skopeo is not installed .*apt-get install skopeo"):
        find_skopeo()
    find_skopeo.cache_clear()
    with pytest.raises(MirrorspecError, match="skopeo is not installed"):
        copy_all(jobs_for(seeded, source, destination, "v1"), ctx)
