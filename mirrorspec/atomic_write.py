"""A file mirrorspec writes for the user (`plan --out`, `render ... -o`, `import skopeo -o`):
whole or not at all.

The text goes to a new temporary file beside the destination, is flushed and fsynced, then
renamed over it (rename(2) is atomic within a file system), so a reader — a CI job, `apply`,
`kubectl apply` — sees the old file or the new one, never half of one, and a full disk, an
error or Ctrl-C (any exception, `cli_signals.Interrupted` included) leaves the previous file
as it was and no temporary file behind.

The temporary file is created with mode 0666 and the process's umask applies, as for a plain
`open(path, "w")`: these files hold no secret (every writer checks or redacts), and reviewers
and other jobs read them. Asking the umask with `os.umask()` instead would change it for every
thread of the process for a moment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import MirrorspecError

__all__ = ["write_text_atomically"]


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path`, replacing it, whole or not at all; an OSError becomes a
    one-line `MirrorspecError` naming the path."""
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise MirrorspecError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not be durable before the content
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MirrorspecError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
