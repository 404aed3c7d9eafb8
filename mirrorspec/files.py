"""Reading a file whose path a user wrote: regular files only, never blocking, never unbounded.

Every path mirrorspec reads because a user named it — the spec, a credential's `{file: path}`,
a `ca-bundle`, the file given to `import skopeo` — goes through `read_user_file`. A path can
name anything: a FIFO with no writer (a plain `open()` blocks forever), `/dev/zero` or a
symlink to it (a plain `read()` fills memory), a directory, a socket, a 4 GB log file passed
by mistake. Each of those ends in one `UnreadableFile` that says what the path is, before a
byte is read:

- `os.stat` first (it follows symlinks, as a mounted Kubernetes secret needs): anything but a
  regular file is refused without being opened, so no device is ever opened at all;
- then `open(O_NONBLOCK)` and `fstat` of what was really opened, which closes the race of the
  path being swapped for a FIFO in between (opening a FIFO for reading with O_NONBLOCK returns
  at once, open(2): "O_NONBLOCK ... the open() for reading-only returns without delay");
- at most `max_bytes + 1` bytes are ever read, so a file that grows after the check (or a
  /proc file that reports size 0) is still bounded.

The limits, each far above any real file of its kind:

- credential files: 64 KiB. A password or token is a line; the largest real ones are a GCP
  service-account JSON key used as a `_json_key` password (about 2.3 KB) and registry refresh
  tokens (JWTs, a few KB).
- `ca-bundle`: 1 MiB. A bundle may be a whole system trust store plus a private CA: Debian's
  /etc/ssl/certs/ca-certificates.crt (about 150 roots) is about 220 KB.
- the spec: 16 MiB (`spec.MAX_SPEC_BYTES`, which says why); a skopeo sync file: 1 MiB
  (`skopeo.import_sync.MAX_SYNC_FILE_BYTES`).

Messages name the path and what it is, never its content: a credential file holds a secret,
and a file given as a CA bundle by mistake may be a private key.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import MirrorspecError, printable

__all__ = [
    "MAX_CA_BUNDLE_BYTES",
    "MAX_CREDENTIAL_BYTES",
    "FileTooLarge",
    "UnreadableFile",
    "read_ca_bundle",
    "read_user_file",
]

MAX_CREDENTIAL_BYTES = 64 << 10
MAX_CA_BUNDLE_BYTES = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnreadableFile(MirrorspecError):
    """`path` cannot be read as `what`; `reason` says why, without any of its content.

    Callers that report through another error type (SpecError with a location,
    CredentialError naming the credential) catch this and use `reason`.
    """

    def __init__(self, what: str, path: str | Path, reason: str) -> None:
        self.what = what
        self.path = str(path)
        self.reason = printable(reason)
        super().__init__(printable(f"cannot read {what} {self.path}: {reason}"))


class FileTooLarge(UnreadableFile):
    """The file is over its limit; `size` is its size in bytes when known (None: it grew while read)."""

    def __init__(self, what: str, path: str | Path, size: int | None, limit: int) -> None:
        self.size = size
        self.limit = limit
        if size is None:
            found = "larger than"
        else:  # in bytes when rounding would show the limit itself ("64 KiB, more than 64 KiB")
            amount = _amount(size) if _amount(size) != _amount(limit) else f"{size:,} bytes"
            found = f"{amount}, more than"
        super().__init__(what, path, f"it is {found} the limit of {_amount(limit)} for a {what}")


def read_user_file(path: str | Path, *, what: str, max_bytes: int) -> bytes:
    """The content of the regular file at `path`, at most `max_bytes` long.

    Raise `UnreadableFile` when it is missing or unreadable, or is not a regular file (a
    FIFO, a device, a directory, a socket: refused without blocking or reading), and
    `FileTooLarge` when it holds more than `max_bytes`. `what` names the file in messages
    ("ca-bundle", "credential file").
    """
    try:
        before = os.stat(path)
        _require_regular(before, what, path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnreadableFile(what, path, exc.strerror or type(exc).__name__) from None
    try:
        info = os.fstat(fd)
        _require_regular(info, what, path)  # the path may have been swapped since the stat
        if info.st_size > max_bytes:
            raise FileTooLarge(what, path, info.st_size, max_bytes)
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise UnreadableFile(what, path, exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise FileTooLarge(what, path, None, max_bytes)
    return data


# At the start of a line, as OpenSSL's PEM reader and Go's encoding/pem look for it.
_PEM_CERTIFICATE = re.compile(
    rb"^-----BEGIN CERTIFICATE-----[ \t]*\r?\n.*?^-----END CERTIFICATE-----", re.DOTALL | re.MULTILINE
)


def read_ca_bundle(path: str | Path, *, what: str = "ca-bundle") -> bytes:
    """The content of the PEM CA bundle at `path`, checked the way its readers will read it.

    Three programs read a bundle: OpenSSL through requests (`verify=`, the file reread at
    every new connection), skopeo's Go `x509.CertPool.AppendCertsFromPEM` (a copy in a cert
    dir), and a registry whose provider sends it the text (an endpoint's CA certificate). All
    of them take PEM
    `CERTIFICATE` blocks and skip text around them (a bundle's comments); a file with none
    is only found out at the first TLS handshake, as "certificate verify failed". So: at
    least one block, and every block must load into an OpenSSL trust store. Raise
    `UnreadableFile` otherwise.
    """
    data = read_user_file(path, what=what, max_bytes=MAX_CA_BUNDLE_BYTES)
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise UnreadableFile(
            what, path, "it holds no PEM certificate (-----BEGIN CERTIFICATE-----): a CA bundle is PEM text"
        )
    import ssl  # here: a spec without a bundle is validated without it (≈ 6 ms; bench/run.py, B5)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for number, block in enumerate(blocks, 1):
        try:
            # cadata as str is PEM; each block alone so the message can say which one is bad
            # (bytes would be read as DER). A block is base64 text: ASCII, or it is broken.
            context.load_verify_locations(cadata=block.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise UnreadableFile(
                what, path, f"certificate {number} of {len(blocks)} is not a valid PEM X.509 certificate"
            ) from None
    return data


def _require_regular(info: os.stat_result, what: str, path: str | Path) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
    via = f" (through a symlink to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise UnreadableFile(what, path, f"it is {kind}{via}, not a regular file")


def _amount(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB".replace(".0 MiB", " MiB")
    if size >= 1 << 10:
        return f"{size / (1 << 10):.1f} KiB".replace(".0 KiB", " KiB")
    return f"{size} bytes"
