"""What the providers' API edges share when they turn a failure into ours: the `ProviderError`
class an HTTP status stands for, and requests' reason without urllib3's wrapping.

Each provider still words its own messages (ARM's `Code: message`, botocore's error codes,
Harbor's `errors[0]`); only the mapping every management API has in common lives here.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from ..errors import ProviderAuthError, ProviderConflict, ProviderError, ProviderThrottled
from ..redaction import clip

__all__ = ["error_for_status", "request_reason"]


def error_for_status(status: int | None, *, conflict: Collection[int] = (409,)) -> type[ProviderError]:
    """The error class for a management API's HTTP status: 401/403 a credential or permission
    problem, 429 throttling (retried), a conflict status (409; Harbor adds 412) the state
    forbidding the change, anything else a plain failure."""
    if status in (401, 403):
        return ProviderAuthError
    if status == 429:
        return ProviderThrottled
    if status in conflict:
        return ProviderConflict
    return ProviderError


def request_reason(exc: BaseException) -> str:
    """requests' exception text without urllib3's wrapping (`... (Caused by X(...))`)."""
    text = str(exc.args[0] if exc.args else exc)
    match = re.search(r"\(Caused by (\w+\(.*)\)$", text)
    return clip(match.group(1) if match else text)
