"""TLS failures keep their real reason, and never suggest `insecure` for a certificate that does
not verify (it could be an interception): a certificate for another name says "hostname
mismatch", an unknown CA "not trusted (unknown authority)" with the `ca-bundle` fix, an expired
one "expired". Only a server that answers the handshake in plain HTTP gets the `insecure` hint.

One function (`mirrorspec.tls_failures.explain_tls_failure`) reads Python's and Go's wording; it
is exercised here on the texts themselves and end to end: through `plan` (our client, Python's
ssl), through an `apply` whose copy meets the bad certificate (skopeo 1.9.3, Go's x509), and
through a Harbor target (its REST client). The bad certificates come from trustme and are served
by a TLS front (`tests/testbed/tlsfront.py`) before a real docker-registry.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from testbed import RegistryServer, push_image
from testbed.tlsfront import Certificates, TlsFront, certificates

from mirrorspec.tls_failures import explain_tls_failure

MIRRORSPEC = Path(sys.executable).with_name("mirrorspec")
MISMATCH = "TLS hostname mismatch: the certificate of {host} is not valid for 127.0.0.1"
UNKNOWN = (
    "TLS certificate of {host} is not trusted (unknown authority): set ca-bundle to the CA that signed it"
)
EXPIRED = "TLS certificate of {host} has expired"
EXPECTED = {"wrong_host": MISMATCH, "unknown_ca": UNKNOWN, "expired": EXPIRED}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # CPython's ssl (OpenSSL 3) through urllib3, as our client and Harbor's see them
        (
            '(Caused by SSLError(SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] '
            "certificate verify failed: Hostname mismatch, certificate is not valid for "
            "'registry.example'. (_ssl.c:1006)\")))",
            "TLS hostname mismatch: the certificate of H is not valid for registry.example: reach it by a "
            "name the certificate carries, or fix the certificate",
        ),
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
            "certificate (_ssl.c:1006)",
            UNKNOWN.format(host="H"),
        ),
        ("certificate verify failed: self-signed certificate (_ssl.c:1006)", UNKNOWN.format(host="H")),
        (
            "certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006)",
            UNKNOWN.format(host="H"),
        ),
        (
            "certificate verify failed: certificate has expired (_ssl.c:1006)",
            "TLS certificate of H has expired: the registry must renew it (or this machine's clock is wrong)",
        ),
        (
            "certificate verify failed: certificate is not yet valid (_ssl.c:1006)",
            "TLS certificate of H is not yet valid: check this machine's clock",
        ),
        (
            "certificate verify failed: unsuitable certificate purpose (_ssl.c:1006)",
            "TLS verification of H's certificate failed: unsuitable certificate purpose",
        ),
        (
            "SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')",
            "TLS handshake with H failed: it answers in plain HTTP; if it is meant to, set insecure",
        ),
        # Go's crypto/x509 and crypto/tls, as skopeo 1.9.3 prints them
        (
            'pinging container registry r.example:5000: Get "https://r.example:5000/v2/": '
            "x509: certificate is valid for a.example, b.example, not r.example",
            "TLS hostname mismatch: the certificate of H is not valid for r.example (it is valid for "
            "a.example, b.example): reach it by a name the certificate carries, or fix the certificate",
        ),
        (
            "x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs",
            "TLS hostname mismatch: the certificate of H is not valid for 10.0.0.1 (it is valid for host "
            "names only, no IP address): reach it by a name the certificate carries, or fix the certificate",
        ),
        ("x509: certificate signed by unknown authority", UNKNOWN.format(host="H")),
        (
            'x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification '
            'error" while trying to verify candidate authority certificate "ca")',
            UNKNOWN.format(host="H"),
        ),
        (
            "x509: certificate has expired or is not yet valid: current time 2026-12-06T01:13:41Z is after "
            "2026-12-05T01:13:41Z",
            "TLS certificate of H has expired: the registry must renew it (or this machine's clock is wrong)",
        ),
        (
            "x509: certificate has expired or is not yet valid: current time 2026-12-06T01:13:41Z is before "
            "2027-01-01T00:00:00Z",
            "TLS certificate of H is not yet valid: check this machine's clock",
        ),
        (
            "x509: certificate relies on legacy Common Name field, use SANs instead",
            "TLS hostname mismatch: the certificate of H names its host only in the Common Name, which "
            "Go-based tools (skopeo) no longer accept: it needs a subjectAltName",
        ),
        (
            'Get "https://r.example/v2/": tls: first record does not look like a TLS handshake',
            "TLS handshake with H failed: it answers in plain HTTP; if it is meant to, set insecure",
        ),
        (
            'Get "https://r.example/v2/": http: server gave HTTP response to HTTPS client',
            "TLS handshake with H failed: it answers in plain HTTP; if it is meant to, set insecure",
        ),
        (
            "SSLError(1, '[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure (_ssl.c:1006)')",
            "TLS handshake with H failed: sslv3 alert handshake failure",
        ),
        (
            "SSLEOFError(8, '[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol "
            "(_ssl.c:1006)')",
            "TLS handshake with H failed: the server closed the connection",
        ),
        (
            'Get "https://r.example/v2/": remote error: tls: handshake failure',
            "TLS handshake with H failed: handshake failure",
        ),
        ('Get "https://r.example/v2/": net/http: TLS handshake timeout', None),  # a timeout: transient
        ("connection refused", None),
        ("manifest unknown: manifest unknown", None),
    ],
)
def test_each_wording_becomes_its_real_reason(text: str, expected: str | None) -> None:
    assert explain_tls_failure(text, "H") == expected
    if expected is not None and "plain HTTP" not in expected:
        assert "insecure" not in expected


def test_the_host_is_taken_from_gos_text_when_not_given() -> None:
    text = 'Get "https://r.example:5000/v2/": x509: certificate signed by unknown authority'
    assert explain_tls_failure(text) == UNKNOWN.format(host="r.example:5000")


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def source(plain_registry: RegistryServer) -> RegistryServer:
    push_image(plain_registry, "tls/app", "1.0.0", seed="tls-failures")
    return plain_registry


@pytest.fixture
def front(source: RegistryServer, certs: Certificates) -> Iterator[TlsFront]:
    with TlsFront(source.host, certs.good) as started:
        yield started


def write_spec(path: Path, source_host: str, ca_file: Path, destination: RegistryServer, prefix: str) -> Path:
    path.write_text(
        f"""\
version: 1
sources:
  - registry: {source_host}
    ca-bundle: {ca_file}
    repositories:
      - name: tls/app
        tags: ["1.0.0"]
targets:
  - name: lab
    type: registry
    registry: {destination.host}
    insecure: true
    prefix: {prefix}
""",
        encoding="utf-8",
    )
    return path


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}


def drain(stream: IO[bytes], sink: list[bytes]) -> None:
    while chunk := stream.read1(4096):  # type: ignore[attr-defined]
        sink.append(chunk)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("case", ["wrong_host", "unknown_ca", "expired"])
def test_plan_names_the_real_tls_reason(
    front: TlsFront, certs: Certificates, source: RegistryServer, tmp_path: Path, case: str
) -> None:
    front.certificate = getattr(certs, case)
    spec = write_spec(tmp_path / "spec.yaml", front.host, certs.ca_file, source, "plan-tls")
    proc = subprocess.run(
        [str(MIRRORSPEC), "plan", str(spec)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert EXPECTED[case].format(host=front.host) in lines[0], lines[0]
    assert "insecure" not in lines[0]


def test_plan_against_a_plain_http_registry_may_suggest_insecure(
    source: RegistryServer, certs: Certificates, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "spec.yaml", source.host, certs.ca_file, source, "plain")
    proc = subprocess.run(
        [str(MIRRORSPEC), "plan", str(spec)], capture_output=True, text=True, env=environment(), timeout=120
    )
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    expected = (
        f"TLS handshake with {source.host} failed: it answers in plain HTTP; if it is meant to, set insecure"
    )
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize("case", ["wrong_host", "unknown_ca", "expired"])
def test_a_copy_that_meets_a_bad_certificate_names_the_real_reason(
    front: TlsFront,
    certs: Certificates,
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
    case: str,
) -> None:
    """The plan reads the source through a good certificate; when the user says yes, the front
    switches to the bad one, so that only skopeo meets it and its Go wording is what we read."""
    destination = registry_factory()
    spec = write_spec(tmp_path / "spec.yaml", front.host, certs.ca_file, destination, "copy-tls")
    controller, terminal = pty.openpty()
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        proc = subprocess.Popen(
            [str(MIRRORSPEC), "apply", str(spec)],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=drain, args=(proc.stdout, out)),
            threading.Thread(target=drain, args=(proc.stderr, err)),
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 90
        while b"Apply this plan?" not in b"".join(out):
            assert proc.poll() is None, b"".join(err).decode()
            assert time.monotonic() < deadline, b"".join(out).decode()
            time.sleep(0.05)
        front.certificate = getattr(certs, case)  # from now on, new connections get the bad one
        os.write(controller, b"y\n")
        proc.wait(timeout=120)
        for reader in readers:
            reader.join(10)
    finally:
        os.close(terminal)
        os.close(controller)
    stdout, stderr = b"".join(out).decode(), b"".join(err).decode()
    assert proc.returncode == 1, stdout + stderr
    assert "1 tag(s) to copy" in stdout  # the plan saw the source fine
    lines = error_lines(stderr)
    failure = next((line for line in lines if "skopeo exited" in line), None)
    assert failure is not None, stderr
    assert EXPECTED[case].format(host=front.host) in failure, failure
    assert not any("insecure" in line for line in lines), stderr


@pytest.mark.parametrize("case", ["wrong_host", "unknown_ca", "expired"])
def test_harbor_names_the_real_tls_reason(
    front: TlsFront, certs: Certificates, source: RegistryServer, tmp_path: Path, case: str
) -> None:
    """Harbor's REST client said "set ca-bundle or insecure" for every TLS failure."""
    front.certificate = getattr(certs, case)  # the handshake fails before any Harbor API call
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
sources:
  - registry: {source.host}
    insecure: true
    repositories:
      - name: tls/app
        tags: ["1.0.0"]
targets:
  - name: dc1
    type: harbor
    url: https://{front.host}
    project: vendor
    ca-bundle: {certs.ca_file}
""",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [str(MIRRORSPEC), "plan", str(spec)], capture_output=True, text=True, env=environment(), timeout=120
    )
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert EXPECTED[case].format(host=f"https://{front.host}") in lines[0], lines[0]
    assert "insecure" not in lines[0]
