"""Every file mirrorspec reads from a path a user wrote, through the installed CLI: the spec,
a credential's `{file: path}`, a `ca-bundle`, the file given to `import skopeo`.

Each may be a FIFO nobody writes to (a plain open() blocks forever), a symlink to /dev/zero
(a plain read() fills memory), a directory, a socket, a file over its limit, or missing. Each must end
in one line on stderr naming the file and what it is, exit 1, no traceback — within the
subprocess timeout and under the memory limit of tests/test_bad_specs.py, so that a hang or
an unbounded read fails the test instead of stalling the suite.

`plan` runs against a listening socket that never answers: the files are checked before any
connection, so the socket's accept queue must still be empty afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from test_bad_specs import MIRRORSPEC, assert_one_line_error, run_cli
from testbed import RegistryServer

from mirrorspec.context import RunContext
from mirrorspec.errors import RegistryError, SpecError
from mirrorspec.files import MAX_CA_BUNDLE_BYTES, MAX_CREDENTIAL_BYTES
from mirrorspec.oci import RegistryClient
from mirrorspec.skopeo.import_sync import MAX_SYNC_FILE_BYTES
from mirrorspec.spec import MAX_SPEC_BYTES, load_spec

SPEC = """\
version: 1
{credentials}sources:
  - registry: {host}
{source_extra}    repositories:
      - name: team/app
        tags: ["v1"]
targets:
  - name: lab
    type: registry
    registry: {host}
{target_extra}"""
CREDENTIALS = """\
credentials:
  upstream:
    username: robot
    password: {file: secret}
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket that listens and never accepts: a connection attempt would sit in its
    accept queue, where `assert_never_contacted` finds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


def assert_never_contacted(sock: socket.socket) -> None:
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        connection, peer = sock.accept()
        connection.close()
        pytest.fail(f"mirrorspec connected to the registry from {peer} before checking its files")


def host_of(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


def write_spec(tmp_path: Path, host: str, *, credentials: bool = False, ca_bundle: str | None = None) -> Path:
    source_extra = "    credentials: upstream\n" if credentials else ""
    source_extra += f"    ca-bundle: {ca_bundle}\n" if ca_bundle else ""
    # The target uses the same settings, so that whichever side is set up first, the file
    # is read before anything connects.
    target_extra = source_extra
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(
            credentials=CREDENTIALS if credentials else "",
            host=host,
            source_extra=source_extra,
            target_extra=target_extra,
        ),
        encoding="utf-8",
    )
    return spec


def ca_pem() -> bytes:
    return trustme.CA().cert_pem.bytes()


# --- the bad files, each made at `path` -----------------------------------------------------


def _fifo(path: Path, limit: int) -> None:
    os.mkfifo(path)  # no writer, ever


def _dev_zero(path: Path, limit: int) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path, limit: int) -> None:
    path.mkdir()


def _socket(path: Path, limit: int) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # the socket file stays after close (pytest's tmp paths are short)


def _oversized(path: Path, limit: int) -> None:
    with path.open("wb") as handle:  # one byte over, so the cap is exact
        handle.write(b"# " + b"x" * (limit - 3) + b"\n" + b"y")


def _missing(path: Path, limit: int) -> None:
    pass


BAD_FILES: dict[str, tuple[Callable[[Path, int], None], str]] = {
    "fifo": (_fifo, "it is a named pipe (FIFO), not a regular file"),
    "symlink-to-dev-zero": (
        _dev_zero,
        "it is a character device (through a symlink to /dev/zero), not a regular file",
    ),
    "directory": (_directory, "it is a directory, not a regular file"),
    "socket": (_socket, "it is a socket, not a regular file"),
    "oversized": (_oversized, "it is {over:,} bytes, more than the limit of"),
    "missing": (_missing, "No such file or directory"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_credential_file_that_is_not_a_small_regular_file(
    tmp_path: Path, listener: socket.socket, kind: str
) -> None:
    make, reason = BAD_FILES[kind]
    make(tmp_path / "secret", MAX_CREDENTIAL_BYTES)
    reason = reason.format(over=MAX_CREDENTIAL_BYTES + 1)
    spec = write_spec(tmp_path, host_of(listener), credentials=True)
    assert run_cli("validate", str(spec), cwd=tmp_path).returncode == 0  # offline: secrets are read late
    result = run_cli("plan", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:5:15: ")
    assert f"credentials 'upstream' password: cannot read secret: {reason}" in line
    if kind == "oversized":
        assert "more than the limit of 64 KiB for a credential file" in line
    assert_never_contacted(listener)


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_ca_bundle_that_is_not_a_small_regular_file(
    tmp_path: Path, listener: socket.socket, kind: str, command: str
) -> None:
    make, reason = BAD_FILES[kind]
    make(tmp_path / "ca.pem", MAX_CA_BUNDLE_BYTES)
    reason = reason.format(over=MAX_CA_BUNDLE_BYTES + 1)
    spec = write_spec(tmp_path, host_of(listener), ca_bundle="ca.pem")
    result = run_cli(command, str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:4:16: ")
    assert f"sources[0] (registry='{host_of(listener)}') › ca-bundle: cannot use ca.pem: {reason}" in line
    if kind == "oversized":
        assert "more than the limit of 1 MiB for a ca-bundle" in line
    assert_never_contacted(listener)


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_spec_that_is_not_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    make, reason = BAD_FILES[kind]
    spec = tmp_path / "spec.yaml"
    make(spec, MAX_SPEC_BYTES)
    reason = reason.format(over=MAX_SPEC_BYTES + 1)
    result = run_cli("validate", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, "")
    assert str(spec) in line
    # click refuses a directory before mirrorspec sees it; the oversized message is the spec's own
    oversized = f"more than the limit of {MAX_SPEC_BYTES >> 20} MiB"
    expected = {"directory": "is a directory", "oversized": oversized}.get(kind, reason)
    assert expected in line


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_skopeo_sync_file_that_is_not_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    make, reason = BAD_FILES[kind]
    sync = tmp_path / "sync.yaml"
    make(sync, MAX_SYNC_FILE_BYTES)
    reason = reason.format(over=MAX_SYNC_FILE_BYTES + 1)
    result = run_cli("import", "skopeo", str(sync), cwd=tmp_path)
    line = assert_one_line_error(result, "")
    assert str(sync) in line
    expected = {"directory": "is a directory"}.get(kind, f"cannot read skopeo sync file: {reason}")
    assert expected in line


# --- ca-bundle content, and a bundle that changes between runs --------------------------------


def test_a_ca_bundle_deleted_after_validate_stops_plan_before_any_connection(
    tmp_path: Path, listener: socket.socket
) -> None:
    (tmp_path / "ca.pem").write_bytes(ca_pem())
    spec = write_spec(tmp_path, host_of(listener), ca_bundle="ca.pem")
    assert run_cli("validate", str(spec), cwd=tmp_path).returncode == 0
    (tmp_path / "ca.pem").unlink()
    result = run_cli("plan", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:4:16: ")
    assert "ca-bundle: cannot use ca.pem: No such file or directory" in line
    assert "Could not find a suitable TLS CA certificate bundle" not in line
    assert_never_contacted(listener)


def test_a_ca_bundle_swapped_for_a_fifo_after_loading_is_refused_before_a_client_uses_it(
    tmp_path: Path, listener: socket.socket
) -> None:
    """The library path (no CLI): the check at load does not cover a file changed since;
    RunContext checks again before any client is made. Bounded by the suite's timeout."""
    (tmp_path / "ca.pem").write_bytes(ca_pem())
    spec = load_spec(write_spec(tmp_path, host_of(listener), ca_bundle="ca.pem"))
    (tmp_path / "ca.pem").unlink()
    os.mkfifo(tmp_path / "ca.pem")
    ctx = RunContext(spec, workers=1)
    try:
        with pytest.raises(SpecError, match=r"ca-bundle: cannot use ca.pem: it is a named pipe \(FIFO\)"):
            ctx.source_endpoint(host_of(listener))
    finally:
        ctx.close()
    assert_never_contacted(listener)


def test_a_real_bundle_with_comments_crlf_and_latin1_text_is_valid(tmp_path: Path) -> None:
    """Bundles as distributions and corporate IT ship them: comments around the blocks
    (curl's cacert.pem has non-ASCII issuer names), Windows line ends, two CAs."""
    body = b"# Issuer: CN=Autorit\xe9 de certification\n" + ca_pem() + b"\n# second\n" + ca_pem()
    (tmp_path / "ca.pem").write_bytes(body.replace(b"\n", b"\r\n"))
    spec = write_spec(tmp_path, "registry.example.com", ca_bundle="ca.pem")
    result = run_cli("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{spec}: valid")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "it holds no PEM certificate (-----BEGIN CERTIFICATE-----): a CA bundle is PEM text"),
        (
            b"-----BEGIN PRIVATE KEY-----\nTUlJQ2VBSUJBREFOQmdrcWhraUc5dzBC\n-----END PRIVATE KEY-----\n",
            "no PEM",
        ),
        (None, "certificate 2 of 2 is not a valid PEM X.509 certificate"),
    ],
    ids=["empty", "a-private-key", "second-certificate-damaged"],
)
def test_a_ca_bundle_that_is_not_pem_certificates_fails_validate(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    if content is None:
        good = ca_pem()
        damaged = good.replace(b"\n", b"\n!!", 2)  # a broken base64 line inside the block
        content = good + damaged
    (tmp_path / "ca.pem").write_bytes(content)
    spec = write_spec(tmp_path, "registry.example.com", ca_bundle="ca.pem")
    result = run_cli("validate", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:4:16: ")
    assert reason in line
    assert "TUlJQ2VB" not in line  # the content (a key, here) is never echoed


def test_a_credential_file_that_is_not_utf8_names_the_file_not_the_bytes(
    tmp_path: Path, listener: socket.socket
) -> None:
    (tmp_path / "secret").write_bytes(b"pa\xffss-Hunter2\n")
    spec = write_spec(tmp_path, host_of(listener), credentials=True)
    result = run_cli("plan", str(spec), cwd=tmp_path)
    line = assert_one_line_error(result, f"{spec}:5:15: ")
    assert "credentials 'upstream' password: secret is not UTF-8 text" in line
    assert "Hunter2" not in result.stderr
    assert_never_contacted(listener)


# --- tag length --------------------------------------------------------------------------------


def test_a_tag_of_128_characters_and_a_glob_that_can_match_one_are_valid(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "registry.example.com")
    text = spec.read_text(encoding="utf-8")
    # 128 characters; a glob whose shortest match is 128; one whose shortest is 127
    tags = f'"{"a" * 128}", "{"b" * 127}?", "{"c" * 126}[xy]*"'
    spec.write_text(text.replace('"v1"', tags), encoding="utf-8")
    result = run_cli("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_ca_bundle_gone_between_the_check_and_the_request_is_one_line(
    tls_registry: RegistryServer, tmp_path: Path
) -> None:
    """The narrowest window: the client is built with a bundle that vanishes before its first
    request. requests opens the path itself and raises a bare OSError; the client names the file."""
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(str(tls_registry.ca_file)).read_bytes())
    with RegistryClient(
        tls_registry.host, ca_bundle=str(bundle), username="alice", password="x" * 8
    ) as client:
        bundle.unlink()
        with pytest.raises(RegistryError) as caught:
            client.ping()
    assert str(caught.value).startswith(f"cannot use ca-bundle {bundle} for {tls_registry.host}: "), (
        caught.value
    )


def test_terraform_external_reads_a_bounded_query(tmp_path: Path) -> None:
    """stdin is a pipe the caller controls: 2 MiB of it is refused in one line, not read whole."""
    result = subprocess.run(
        [str(MIRRORSPEC), "terraform-external"],
        input="x" * (2 << 20),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == ["error: the query on stdin is larger than 1,048,576 characters"]
