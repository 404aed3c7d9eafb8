"""Every error mirrorspec reports to a user, grouped by what the user can do about it.

```
MirrorspecError                 anything the CLI turns into a one-line message and exit 1
├── SpecError                   the spec is wrong: fix the file (carries file:line:col)
├── CredentialError             a referenced secret is missing or unreadable
├── ResolveError                upstream could not be read
│   └── RegistryError           an OCI registry answered badly (carries registry, repository, status)
├── ProviderError               a target registry's management API failed
│   ├── ProviderAuthError
│   ├── ProviderThrottled       retryable
│   └── ProviderConflict
└── CopyError                   a copy failed or could not be verified
```

Bugs (`AssertionError`, `TypeError`, ...) are deliberately outside this tree, so that
`except MirrorspecError` never reports a programming error as a user error.

Context travels as keyword-only attributes so that callers and tests can read it without
parsing messages. Messages never contain secret values: they are built from names and
references only, and `redact()` scrubs anything that came back from a subprocess or server.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "CopyError",
    "CredentialError",
    "MirrorspecError",
    "ProviderAuthError",
    "ProviderConflict",
    "ProviderError",
    "ProviderThrottled",
    "RegistryError",
    "ResolveError",
    "SpecError",
    "printable",
]


class MirrorspecError(Exception):
    """Root of every error that is the user's or the environment's, never a bug."""


def printable(text: str) -> str:
    """`text` with every control or line-breaking character escaped (`\\n`, `\\x1b`).

    Messages echo what a spec or a server said; a key holding a newline must not make an
    error two lines, and an escape sequence must not reach the user's terminal.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch == " " or unicodedata.category(ch)[0] not in "CZ" else repr(ch)[1:-1] for ch in text
    )


class SpecError(MirrorspecError):
    """The spec file is invalid. `location` is `file:line:col` (or `file` when unknown)."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.message = printable(message)
        self.location = printable(location) if location is not None else None
        super().__init__(f"{self.location}: {self.message}" if self.location else self.message)


class CredentialError(MirrorspecError):
    """A credential reference could not be resolved (unset variable, unreadable file)."""

    def __init__(self, message: str, *, credential: str | None = None) -> None:
        self.credential = credential
        super().__init__(message)


class ResolveError(MirrorspecError):
    """The upstream side of the spec could not be resolved to concrete artifacts."""


class RegistryError(ResolveError):
    """An OCI distribution API call failed; `status` is the HTTP status, None if unreachable."""

    def __init__(
        self,
        message: str,
        *,
        registry: str,
        repository: str | None = None,
        status: int | None = None,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.status = status
        super().__init__(printable(message))


class ProviderError(MirrorspecError):
    """A target registry's management API refused or failed an operation."""

    def __init__(self, message: str, *, provider: str, target: str, operation: str | None = None) -> None:
        self.provider = provider
        self.target = target
        self.operation = operation
        super().__init__(message)


class ProviderAuthError(ProviderError):
    """Credentials for the target were missing, wrong or lacked a permission."""


class ProviderThrottled(ProviderError):
    """The target asked us to slow down; the operation may be retried."""


class ProviderConflict(ProviderError):
    """The target's current state forbids the change (exists, in use, limit reached)."""


class CopyError(MirrorspecError):
    """Copying an artifact failed, or its success could not be verified."""

    def __init__(self, message: str, *, source: str, destination: str) -> None:
        self.source = source
        self.destination = destination
        super().__init__(message)
