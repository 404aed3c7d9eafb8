"""A secret in any encoding, echoed back by a hostile server, never reaches any output.

`test_secrets.py` proves each credential kind stays out of every channel when servers behave.
Here they do not: a registry (or a proxy in front of one) echoes the request's `Authorization`
header and the password itself — raw, URL-quoted, JSON-, Go- and HTML-escaped, base64'd alone
and as `user:password` — into its error body, where first our own client and then skopeo
(which prints it Go-quoted inside its log line) pick it up. And the echo is placed so that the
secret straddles the cut of a one-line error message, where cutting before redacting used to
leave a recognisable prefix.

What counts as a leak is computed here with the standard library's own encoders, not with
mirrorspec's list of forms, so a form mirrorspec forgot is caught: any form, and any
`WINDOW`-character piece of any form, anywhere in stdout or stderr.

Also here: the short-secret policy (a password under 8 characters, or with a control
character, is refused when read, without printing it) and properties of `redaction` itself
(hypothesis: every form at every offset and every cut).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import example, given, settings, strategies as st
from testbed import FaultProxy, RegistryServer, push_image, start_registry
from testbed.hostile import HostileRegistry, Reply, Request

from mirrorspec import redaction

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
USER = "echo-bot"
# Every character class that some encoding changes: quote, backslash, <, &, %, +, /, space,
# non-ASCII; long enough that the 300-character cut can fall anywhere inside its forms.
PASSWORD = 'Qv"7\\k<é>&+ %/Zw-9xR'
WINDOW = 6  # a piece this long of a 20-character secret is recognisable


def lower_hex(quoted: str) -> str:
    """Percent-escapes in lower-case hex (`%2f`), as some encoders write them."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quoted)


def b64(text: str, *, urlsafe: bool = False) -> str:
    raw = text.encode()
    return (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()


# How a server may echo it (the name is for test ids).
ECHOES = {
    "authorization header": f"Authorization: Basic {b64(f'{USER}:{PASSWORD}')}",
    "raw": PASSWORD,
    "url-quoted": urllib.parse.quote(PASSWORD, safe=""),
    "form-encoded": urllib.parse.urlencode({"password": PASSWORD}),
    "url-quoted lower-case hex": lower_hex(urllib.parse.quote(PASSWORD, safe="")),
    "json": json.dumps(PASSWORD),
    "json ascii-only": json.dumps(PASSWORD, ensure_ascii=True),
    "json in json": json.dumps(json.dumps(PASSWORD)),
    "html": html.escape(PASSWORD),
    "python repr": repr(PASSWORD),
    "base64": b64(PASSWORD),
    "base64 url-safe of user:password": b64(f"{USER}:{PASSWORD}", urlsafe=True),
    "docker auth file": json.dumps({"auths": {"h": {"auth": b64(f"{USER}:{PASSWORD}")}}}),
}


def forms() -> set[str]:
    found = {PASSWORD, b64(PASSWORD), b64(f"{USER}:{PASSWORD}"), b64(f"{USER}:{PASSWORD}", urlsafe=True)}
    found |= {json.dumps(PASSWORD)[1:-1], json.dumps(PASSWORD, ensure_ascii=False)[1:-1]}
    found |= {urllib.parse.quote(PASSWORD, safe=""), urllib.parse.quote_plus(PASSWORD), html.escape(PASSWORD)}
    found |= {lower_hex(f) for f in found if "%" in f}
    return found


def leaks(text: str) -> list[str]:
    """Every form of the secret, or piece of one, found in `text`."""
    found = set()
    for form in forms():
        for start in range(max(1, len(form) - WINDOW + 1)):
            piece = form[start : start + WINDOW]
            if piece in text:
                found.add(piece)
    # base64 pieces of the username alone are not secret; the username itself is printed.
    return sorted(p for p in found if p not in b64(USER) and p not in USER)


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MIRRORSPEC, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


# --- our own client -------------------------------------------------------------------------


def echoing(message_of: Iterator[str] | None = None, *, message: str = "") -> HostileRegistry:
    """A registry that wants Basic auth and then answers 400, echoing `message` (where
    `{authorization}` is the header it received) in a distribution error body."""

    def route(request: Request) -> Reply:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="echo"'})
        text = message.replace("{authorization}", authorization)
        body = json.dumps({"errors": [{"code": "DENIED", "message": text}]}).encode()
        return Reply(400, {"Content-Type": "application/json"}, body)

    return HostileRegistry(route)


def source_spec(tmp_path: Path, host: str, target: RegistryServer) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
credentials:
  src:
    username: {USER}
    password: {{env: SRC_PASSWORD}}
sources:
  - registry: {host}
    insecure: true
    credentials: src
    repositories:
      - name: images/app
        tags: ["v1"]
targets:
  - name: lab
    type: registry
    registry: {target.host}
    insecure: true
"""
    )
    return spec


# The one-line message is cut at 300 characters and the server's detail within it at 160:
# pads that put the echo across each cut, and none.
PADS = [0, 150, 285]


@pytest.mark.parametrize("pad", PADS, ids=[f"pad {p}" for p in PADS])
@pytest.mark.parametrize("echo", list(ECHOES), ids=list(ECHOES))
def test_an_error_body_echoing_the_secret_is_redacted_in_every_form_and_at_every_cut(
    echo: str, pad: int, plain_registry: RegistryServer, tmp_path: Path
) -> None:
    text = ECHOES[echo].replace(f"Basic {b64(f'{USER}:{PASSWORD}')}", "{authorization}")
    with echoing(message="x" * pad + text) as server:
        spec = source_spec(tmp_path, server.host, plain_registry)
        plan = run("-vv", "plan", str(spec), "--format", "json", env={"SRC_PASSWORD": PASSWORD})
        assert any("Authorization" in r.headers for r in server.requests), "the password was never sent"
    assert plan.returncode == 1, plan.stderr
    error = plan.stderr.rstrip("\n").splitlines()[-1]
    assert error.startswith("error: ") and "answered 400" in error, error
    assert leaks(plan.stdout + plan.stderr) == [], error
    if pad < 120:  # the echo is inside what is shown, so redaction (not a cut) removed it
        assert "***" in error, error


def test_terraform_external_redacts_an_echoed_secret(plain_registry: RegistryServer, tmp_path: Path) -> None:
    with echoing(message="{authorization} / " + ECHOES["json"]) as server:
        spec = source_spec(tmp_path, server.host, plain_registry)
        query = json.dumps({"spec": str(spec), "action": "plan"})
        result = run("terraform-external", env={"SRC_PASSWORD": PASSWORD}, stdin=query)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "***" in result.stderr
    assert leaks(result.stderr) == []


# --- through skopeo -------------------------------------------------------------------------


@pytest.fixture
def echoing_destination(tmp_path: Path) -> Iterator[tuple[RegistryServer, FaultProxy]]:
    """A TLS + htpasswd docker-registry behind a proxy that, once skopeo sends credentials to
    start an upload, answers 400 echoing them in several forms."""
    with start_registry(tmp_path / "dest", tls=True, users={USER: PASSWORD}) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server.workdir / "tls" / "server.crt", server.workdir / "tls" / "server.key")
        proxy = FaultProxy(server.url, ssl_context=context, backend_ca=str(server.ca_file)).start()

        def echo(method: str, path: str, headers: Message) -> tuple[int, str, bytes] | None:
            authorization = headers.get("Authorization")
            if method not in ("POST", "PUT", "PATCH") or authorization is None:
                return None
            message = " | ".join([authorization, *(ECHOES[k] for k in ("raw", "url-quoted", "json", "html"))])
            body = json.dumps({"errors": [{"code": "DENIED", "message": message}]})
            return 400, "application/json", body.encode()

        proxy.answer(echo)
        try:
            yield server, proxy
        finally:
            proxy.stop()


def test_skopeo_printing_an_echoed_secret_is_redacted(
    plain_registry: RegistryServer, echoing_destination: tuple[RegistryServer, FaultProxy], tmp_path: Path
) -> None:
    server, proxy = echoing_destination
    push_image(plain_registry, "echo/app", "v1", seed="echo")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
credentials:
  dest:
    username: {USER}
    password: {{file: dest-password}}
sources:
  - registry: {plain_registry.host}
    insecure: true
    repositories:
      - name: echo/app
        tags: ["v1"]
targets:
  - name: lab
    type: registry
    registry: {proxy.host}
    credentials: dest
    ca-bundle: {server.ca_file}
"""
    )
    (tmp_path / "dest-password").write_text(PASSWORD + "\n")
    result = run("-vv", "apply", str(spec), "--yes", env={})
    assert result.returncode == 1, result.stderr
    failures = [line for line in result.stderr.splitlines() if "skopeo exited" in line]
    assert failures, result.stderr
    # skopeo did print the echo (Go-quoted, inside its log line): redaction removed it
    assert all("***" in line and "denied" in line for line in failures), failures
    assert leaks(result.stdout + result.stderr) == []


# --- short secrets and control characters -----------------------------------------------------


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("k3Y", "is 3 characters long; mirrorspec needs at least 8"),
        ("s3cr3t!", "is 7 characters long; mirrorspec needs at least 8"),
        ("line-one\nline-two", "contains a control character"),
        ("q7\tzz-xx-yy-ww", "contains a control character"),
    ],
    ids=["3 characters", "7 characters", "a line break", "a tab"],
)
def test_a_password_that_cannot_be_scrubbed_is_refused_when_read_without_printing_it(
    password: str, says: str, plain_registry: RegistryServer, tmp_path: Path
) -> None:
    spec = source_spec(tmp_path, plain_registry.host, plain_registry)
    (tmp_path / "pw").write_text(password)
    spec.write_text(spec.read_text().replace("{env: SRC_PASSWORD}", "{file: pw}"))
    result = run("plan", str(spec), env={})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {spec}:5:") and "credentials 'src' password: " + says in line, line
    for piece in password.split():
        assert piece not in result.stdout + line.split("password: ", 1)[1]


def test_eight_characters_are_enough(plain_registry: RegistryServer, tmp_path: Path) -> None:
    """The minimum is not a nuisance: 8 characters pass the check (the registry then
    answers; the plain registry needs no login, so the plan succeeds)."""
    push_image(plain_registry, "images/app", "v1", seed="eight")
    spec = source_spec(tmp_path, plain_registry.host, plain_registry)
    result = run("plan", str(spec), env={"SRC_PASSWORD": "8-chars!"})
    assert result.returncode == 0, result.stderr
    assert "8-chars!" not in result.stdout + result.stderr


# --- redaction's own properties ---------------------------------------------------------------

# Surrounding text from an alphabet disjoint from the secrets', so a window match is a leak.
_AROUND = st.text(alphabet="·~ ;,", max_size=40)
_NOT_IN_SECRETS = set("·~ ;,*")  # and `*`, which the redaction mark is made of
_SECRETS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=redaction.MIN_SECRET_LENGTH,
    max_size=40,
).filter(lambda s: s.isprintable() and not set(s) & _NOT_IN_SECRETS)


def _encodings(secret: str, user: str) -> list[str]:
    return [
        secret,
        json.dumps(secret),
        json.dumps(secret, ensure_ascii=False),
        json.dumps(json.dumps(secret)),
        urllib.parse.quote(secret, safe=""),
        lower_hex(urllib.parse.quote(secret, safe="")),
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret),
        html.escape(secret),
        repr(secret),
        b64(secret),
        b64(f"{user}:{secret}"),
        b64(f"{user}:{secret}", urlsafe=True),
        json.dumps({"auths": {"r": {"auth": b64(f"{user}:{secret}")}}}),
    ]


@settings(max_examples=150, deadline=None)
@given(
    secret=_SECRETS,
    user=st.text(alphabet="abcdefghijklmnop", min_size=0, max_size=12),
    before=_AROUND,
    after=_AROUND,
)
@example(secret=PASSWORD, user=USER, before="", after="")
def test_every_encoding_of_a_registered_secret_is_redacted(
    secret: str, user: str, before: str, after: str
) -> None:
    redaction.forget_secrets()
    redaction.register_secret(secret)
    try:
        for encoded in _encodings(secret, user):
            text = before + encoded + after
            out = redaction.redact(text)
            assert secret not in out and encoded not in out, (encoded, out)
            assert out.startswith(before) and out.endswith(after), (text, out)
    finally:
        redaction.forget_secrets()


@settings(max_examples=100, deadline=None)
@given(secret=_SECRETS, before=_AROUND, after=_AROUND, data=st.data())
def test_no_cut_leaves_a_recognisable_piece(
    secret: str, before: str, after: str, data: st.DataObject
) -> None:
    """Cut by us (`clip` redacts, then cuts) or by someone else (`redact_fragment` checks the
    edges): no `MIN_PARTIAL`-character piece of the secret's form survives."""
    redaction.forget_secrets()
    redaction.register_secret(secret)
    try:
        for encoded in (secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe="")):
            text = before + encoded + after
            cut = data.draw(st.integers(min_value=1, max_value=len(text) - 1))
            shown = [
                redaction.clip(text, cut + 1),
                redaction.redact_fragment(text[:cut]),
                redaction.redact_fragment(text[cut:]),
            ]
            pieces = {encoded[i : i + redaction.MIN_PARTIAL] for i in range(len(encoded) - 3)}
            for out in shown:
                assert [p for p in pieces if p in out] == [], (text, cut, out)
    finally:
        redaction.forget_secrets()
