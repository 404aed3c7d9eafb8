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
]


class MirrorspecError(Exception):
    """Root of every error that is the user's or the environment's, never a bug."""


class SpecError(MirrorspecError):
    """The spec file is invalid. `location` is `file:line:col` (or `file` when unknown)."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


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
        super().__init__(message)


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
