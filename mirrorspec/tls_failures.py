"""What a TLS failure really was, in one line, from the text of Python's or Go's error.

Used for our own client (`oci/client.py`, whose errors are Python's `ssl`/OpenSSL texts), providers'
own HTTP calls (a registry's REST API, a token exchange) and skopeo's stderr (Go's `crypto/x509`
and `crypto/tls` texts), so that a certificate for the wrong name says "hostname mismatch", an
unknown CA says so, and an expired certificate says "expired", wherever the failure happens.

A verification failure never suggests `insecure`: a certificate that does not verify may be an
interception, and turning verification off would hand it the credentials. Only a server that
answers the handshake in plain HTTP gets the hint (a registry that really serves HTTP).

Texts recognised, with their sources:
- OpenSSL's verify results as CPython's `_ssl.c` words them: "Hostname mismatch, certificate is
  not valid for 'x'.", "IP address mismatch, ...", "unable to get local issuer certificate",
  "self-signed certificate" (OpenSSL 3; "self signed" before), "certificate has expired",
  "certificate is not yet valid"; "wrong version number" when the server answered in plain text.
  urllib3's own hostname check says "hostname 'x' doesn't match ...".
- Go (crypto/x509/verify.go `HostnameError.Error`, `UnknownAuthorityError.Error`,
  `CertificateInvalidError.Error`): "x509: certificate is valid for a, b, not c", "x509: cannot
  validate certificate for c because it doesn't contain any IP SANs", "x509: certificate is not
  valid for any names, but wanted to match c", "x509: certificate relies on legacy Common Name
  field, use SANs instead", "x509: certificate signed by unknown authority", "x509: certificate
  has expired or is not yet valid: current time T is after/before U"; crypto/tls "tls: first
  record does not look like a TLS handshake" and net/http "http: server gave HTTP response to
  HTTPS client" for a plain-HTTP server. All checked against skopeo 1.9.3 (Go 1.19) here.
- Any other handshake failure gives its own reason (OpenSSL's "[SSL: CODE] reason", Go's
  "tls: reason"); a TLS *timeout* is no TLS failure here (None): it is a timeout, retried.
"""

from __future__ import annotations

import re

__all__ = ["explain_tls_failure"]

_GO_VALID_FOR = re.compile(r"x509: certificate is valid for (.+?), not ([^\s\"',;)]+)")
_GO_NO_IP_SANS = re.compile(
    r"x509: cannot validate certificate for (\S+) because it doesn't contain any IP SANs"
)
_GO_NO_NAMES = re.compile(r"x509: certificate is not valid for any names, but wanted to match ([^\s\"',;)]+)")
_PY_MISMATCH = re.compile(r"(?:Hostname|IP address) mismatch, certificate is not valid for '([^']*)'")
_URLLIB3_MISMATCH = re.compile(r"hostname '([^']*)' doesn't match")
_PY_VERIFY = re.compile(r"certificate verify failed: ([^(]+?)\s*(?:\(_ssl\.c|$|['\"])")
_PY_SSL = re.compile(r"\[SSL: \w+\] ([^(]+?)\s*\(_ssl\.c")
_URL_HOST = re.compile(r"https://([^/\"'\s]+)")

_UNKNOWN_AUTHORITY = (
    "x509: certificate signed by unknown authority",
    "unable to get local issuer certificate",
    "unable to get issuer certificate",
    "unable to verify the first certificate",
    "self-signed certificate",
    "self signed certificate",
)
_PLAIN_HTTP = (
    "wrong version number",
    "WRONG_VERSION_NUMBER",
    "tls: first record does not look like a TLS handshake",
    "server gave HTTP response to HTTPS client",
)


def explain_tls_failure(text: str, host: str | None = None) -> str | None:
    """One line saying what went wrong with TLS in `text`, naming `host` (or the host of the
    first https URL in the text); None when `text` describes no TLS failure."""
    where = host or _host_in(text)
    if "x509: certificate relies on legacy Common Name field" in text:
        return (
            f"TLS hostname mismatch: the certificate of {where} names its host only in the Common "
            "Name, which Go-based tools (skopeo) no longer accept: it needs a subjectAltName"
        )
    mismatch = _mismatch(text)
    if mismatch is not None:
        wanted, valid = mismatch
        names = f" (it is valid for {valid})" if valid else ""
        return (
            f"TLS hostname mismatch: the certificate of {where} is not valid for {wanted}{names}: "
            "reach it by a name the certificate carries, or fix the certificate"
        )
    if any(marker in text for marker in _UNKNOWN_AUTHORITY):
        return (
            f"TLS certificate of {where} is not trusted (unknown authority): "
            "set ca-bundle to the CA that signed it"
        )
    # Go words both cases alike and tells them apart by "current time T is after/before U".
    go = "x509: certificate has expired or is not yet valid" in text
    if (go and " is before " in text) or (not go and "certificate is not yet valid" in text):
        return f"TLS certificate of {where} is not yet valid: check this machine's clock"
    if go or "certificate has expired" in text:
        return (
            f"TLS certificate of {where} has expired: the registry must renew it "
            "(or this machine's clock is wrong)"
        )
    verify = _PY_VERIFY.search(text)
    if verify is not None:
        return f"TLS verification of {where}'s certificate failed: {verify[1].strip().rstrip('.')}"
    go_x509 = re.search(r"x509: ([^\"]+)", text)
    if go_x509 is not None:
        return f"TLS verification of {where}'s certificate failed: {_clip(go_x509[1])}"
    if any(marker in text for marker in _PLAIN_HTTP):
        return f"TLS handshake with {where} failed: it answers in plain HTTP; if it is meant to, set insecure"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS verification of {where}'s certificate failed"
    if "EOF occurred in violation of protocol" in text or "UNEXPECTED_EOF_WHILE_READING" in text:
        return f"TLS handshake with {where} failed: the server closed the connection"
    other = _PY_SSL.search(text) or re.search(r"\btls: ([^\"]+)", text)
    if other is not None:
        return f"TLS handshake with {where} failed: {_clip(other[1]).rstrip('.')}"
    return None


def _mismatch(text: str) -> tuple[str, str] | None:
    """(the name asked for, the names the certificate has or "") for a hostname mismatch."""
    match = _GO_VALID_FOR.search(text)
    if match is not None:
        return match[2], match[1]
    match = _GO_NO_IP_SANS.search(text)
    if match is not None:
        return match[1], "host names only, no IP address"
    match = _GO_NO_NAMES.search(text)
    if match is not None:
        return match[1], "no name at all"
    match = _PY_MISMATCH.search(text) or _URLLIB3_MISMATCH.search(text)
    if match is not None:
        return match[1], ""
    return None


def _host_in(text: str) -> str:
    match = _URL_HOST.search(text)
    return match[1] if match else "the registry"


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
