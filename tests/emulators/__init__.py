"""In-process emulators of cloud control planes for tests (nothing here imports pytest).

- :mod:`emulators.botocore_contract`: strict validation of JSON-protocol values against botocore
  shapes (max, pattern, enum…, which botocore does not check client-side).
- :mod:`emulators.ecr`: :class:`EcrEmulator`, the ECR operations moto 5 lacks or gets wrong,
  in front of a moto server so that one ``endpoint_url`` serves every boto3 client.
"""

from __future__ import annotations

from .botocore_contract import (
    uncompilable_patterns,
    validate,
    validate_request,
    validate_response,
)
from .ecr import DEFAULT_ACCOUNT_ID, EMULATED_OPERATIONS, EcrApiError, EcrEmulator, EmulatorBug

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "EMULATED_OPERATIONS",
    "EcrApiError",
    "EcrEmulator",
    "EmulatorBug",
    "uncompilable_patterns",
    "validate",
    "validate_request",
    "validate_response",
]
