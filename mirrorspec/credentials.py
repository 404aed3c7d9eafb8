"""Secrets: resolved late from references, remembered only to be scrubbed from output.

A spec names credentials (`credentials: seqera`) and the spec's `credentials:` block says
where each value lives. Values are read only when a registry is about to be called, and
every value read is registered (`redaction.py`) so that `redact()` removes it, in every form
it can travel in, from anything that reaches a terminal, a log, a file or an exception
message — including text that came back from skopeo or a server, which we do not control.
Passwords shorter than `MIN_SECRET_LENGTH` or holding control characters are refused.

Reference kinds and credential forms that providers add (`SECRET_REFERENCES`,
`CREDENTIAL_FORMS`) are provider-native: the target's registry reads them itself (its
provider hands it the reference), so they are not resolved here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CredentialError
from .files import MAX_CREDENTIAL_BYTES, UnreadableFile, read_user_file
from .redaction import MIN_SECRET_LENGTH, redact, register_secret
from .spec import EnvRef, FileRef, SecretRef, Spec

__all__ = ["BasicAuth", "redact", "register_environment_secrets", "register_secret", "resolve_basic_auth"]


def register_environment_secrets() -> None:
    """Register the SDK secrets present in the environment, as every installed provider names
    them (`SECRET_VARIABLES`): never ours to print, so scrubbed like the spec's secrets from
    anything an SDK or a server echoes back."""
    from . import providers  # not at import: providers import this module through the spec

    for _, names in providers.declared("SECRET_VARIABLES"):
        for name in names:
            value = os.environ.get(name)
            if value:
                register_secret(value)


@dataclass(frozen=True)
class BasicAuth:
    """A username/password pair; the password never appears in `repr()`."""

    username: str
    password: str = field(repr=False)


def resolve_basic_auth(spec: Spec, name: str) -> BasicAuth:
    """Read the credentials called `name` in the spec, now."""
    credential = spec.credentials.get(name)
    if credential is None:
        raise CredentialError(f"unknown credentials '{name}'", credential=name)
    if credential.username is None or credential.password is None:
        raise CredentialError(
            f"credentials '{name}' are provider-native ({' or '.join(credential.FORMS)}); "
            "registry copies need username + password references",
            credential=name,
        )
    username = (
        credential.username
        if isinstance(credential.username, str)
        else _read(credential.username, spec, name, "username")
    )
    password = _read(credential.password, spec, name, "password")
    register_secret(password)  # before any check below can fail and mention it
    _check_password(password, spec, name)
    return BasicAuth(username, password)


def _check_password(password: str, spec: Spec, name: str) -> None:
    """A password that cannot be scrubbed reliably, or that would break the auth file or a
    header it travels in, is refused before it is ever sent (redaction.py says why)."""
    where = spec.location_of(("credentials", name, "password"))
    prefix = f"{where}: " if where else ""
    if len(password) < MIN_SECRET_LENGTH:
        raise CredentialError(
            f"{prefix}credentials '{name}' password: is {len(password)} characters long; mirrorspec "
            f"needs at least {MIN_SECRET_LENGTH}, so that it can keep it out of every output without "
            "rewriting ordinary words",
            credential=name,
        )
    if not password.isprintable():
        raise CredentialError(
            f"{prefix}credentials '{name}' password: contains a control character (a line break, "
            "tab or NUL); no registry login has one — check the file or variable",
            credential=name,
        )


def _read(ref: SecretRef, spec: Spec, name: str, part: str) -> str:
    where = spec.location_of(("credentials", name, part))
    prefix = f"{where}: " if where else ""
    if isinstance(ref, EnvRef):
        value = os.environ.get(ref.env)
        if not value:
            raise CredentialError(
                f"{prefix}credentials '{name}' {part}: environment variable {ref.env} is not set",
                credential=name,
            )
        return value
    if isinstance(ref, FileRef):
        path = Path(ref.file)
        if not path.is_absolute():
            path = spec.base_dir / path
        try:
            data = read_user_file(path, what="credential file", max_bytes=MAX_CREDENTIAL_BYTES)
            return data.decode("utf-8").rstrip("\r\n")
        except UnreadableFile as exc:
            raise CredentialError(
                f"{prefix}credentials '{name}' {part}: cannot read {ref.file}: {exc.reason}",
                credential=name,
            ) from None
        except UnicodeDecodeError:  # the bytes are not echoed: they are the secret
            raise CredentialError(
                f"{prefix}credentials '{name}' {part}: {ref.file} is not UTF-8 text",
                credential=name,
            ) from None
    # A kind a provider declares (its registry reads the secret itself): its identifying key is
    # the model's first field (a provider's `SECRET_REFERENCES`).
    kind = next(iter(type(ref).model_fields.values())).alias or type(ref).__name__
    raise CredentialError(
        f"{prefix}credentials '{name}' {part}: {{{kind}: ...}} is read only by the cloud "
        "registry it is handed to, never by mirrorspec; what mirrorspec logs in with itself "
        "(reads, copies) needs {env: VAR} or {file: path}",
        credential=name,
    )
