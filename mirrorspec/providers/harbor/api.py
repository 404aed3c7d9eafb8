"""Harbor's REST edge: our thin `requests` session (basic auth, request ids, no cookies, retries)
and its errors mapped to mirrorspec's provider errors.
"""

from __future__ import annotations

import http.cookiejar
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3

from ...context import Endpoint, RunContext
from ...credentials import redact
from ...errors import (
    ProviderError,
)
from ...redaction import clip
from ...tls_failures import explain_tls_failure
from ..api_errors import error_for_status, request_reason
from .target import HarborTarget

__all__ = [
    "CREATE_ATTEMPTS",
    "PAGE_SIZE",
    "RETRY_AFTER_MAX",
    "RETRY_BACKOFF",
    "endpoint",
]

log = logging.getLogger(__package__)
PAGE_SIZE = 100  # the contract's maximum (larger → 422)
RETRY_BACKOFF = 0.5  # seconds; doubled per retry (a longer Retry-After wins, up to the max)
RETRY_AFTER_MAX = 30.0  # seconds: a confused Retry-After must not stall a run
CREATE_ATTEMPTS = 4  # for a POST whose lost answer can be recovered (`_Api.create`)

# --- endpoint and HTTP -------------------------------------------------------------------


def endpoint(target: Any, ctx: RunContext) -> Endpoint:
    """Harbor's registry: the API's host, with the target's credentials and TLS settings."""
    host = urlsplit(target.url).netloc
    return ctx.reach(
        ctx.endpoint(
            host, credentials=target.credentials, insecure=target.insecure, ca_bundle=target.ca_bundle
        )
    )


class _HarborError(Exception):
    """A Harbor answer other than the expected one, with Harbor's own code and message."""

    def __init__(
        self, status: int, code: str, message: str, *, call: str = "", request_id: str = "", hint: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status  # also classifies errors we raise ourselves (call == "")
        self.code = code
        self.message = message
        self.call = call  # "POST /registries" when Harbor answered
        self.request_id = request_id
        self.hint = hint
        self.retry_after: float | None = None  # seconds, from a 429's or 503's Retry-After


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Refuse every cookie: with Harbor's `sid` cookie, writes need a CSRF token."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


_NO_BODY = object()


class _Api:
    """Harbor's REST API v2.0 for one target: basic auth, no cookies, an X-Request-Id per call."""

    def __init__(self, target: HarborTarget, ctx: RunContext) -> None:
        reach = endpoint(target, ctx)
        scheme = urlsplit(target.url).scheme
        self.base = f"{scheme}://{reach.host}/api/v2.0"
        self.verify: bool | str = False if reach.insecure else (reach.ca_bundle or True)
        if reach.insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
        session.cookies.set_policy(_NoCookies())
        session.headers.update({"Accept": "application/json", "User-Agent": "mirrorspec"})
        if reach.auth is not None:
            session.auth = (reach.auth.username, reach.auth.password)
        # The run's deadlines and per-host budget (`--timeout`), and counted retries of
        # timeouts and of 429/5xx: 500 too, Harbor answers it for passing database and
        # job-service trouble, and these methods are safe to repeat (a DELETE's 404 counts as
        # done). POSTs are retried by `create`, which looks first.
        adapter = ctx.transport.adapter(
            retries=4,
            backoff=RETRY_BACKOFF,
            methods=frozenset({"GET", "PUT", "DELETE"}),
            statuses=frozenset({429, 500, 502, 503, 504}),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self.session = session

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = _NO_BODY,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        bad_request: str = "",
        conflict: str = "",
    ) -> requests.Response:
        request_id = uuid.uuid4().hex
        response = self.session.request(
            method,
            self.base + path,
            params=params,
            json=None if body is _NO_BODY else body,
            headers={"X-Request-Id": request_id, **(headers or {})},
            verify=self.verify,
        )
        if response.status_code not in expect:
            code, message = _error_of(response)
            hint = (
                bad_request
                if response.status_code == 400
                else conflict
                if response.status_code == 412
                else ""
            )
            error = _HarborError(
                response.status_code,
                code,
                message,
                call=f"{method} {path}",
                request_id=response.headers.get("X-Request-Id", request_id),
                hint=hint,
            )
            retry_after = response.headers.get("Retry-After", "")
            error.retry_after = float(retry_after) if retry_after.isdigit() else None
            raise error
        return response

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return _json(self.request("GET", path, params=params))

    def text(self, path: str) -> str:
        return self.request("GET", path, headers={"Accept": "text/plain"}).text

    def list(self, path: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a list operation: `page_size=100`, following `Link: rel="next"`,
        and checking the count against `X-Total-Count`."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.request(
                "GET", path, params={**(params or {}), "page": page, "page_size": PAGE_SIZE}
            )
            chunk = _json(response)
            if not isinstance(chunk, list):
                raise _HarborError(response.status_code, "UNEXPECTED", f"GET {path} did not answer a list")
            items += chunk
            following = _next_page(response.headers.get("Link", ""))
            if following is None or not chunk:
                break
            page = following
        total = response.headers.get("X-Total-Count")
        if total is not None and total.isdigit() and int(total) != len(items):
            raise _HarborError(
                409,
                "CONFLICT",
                f"GET {path} returned {len(items)} of {total} items (changed while listing?); re-run",
            )
        return items

    def find(self, path: str, name: str) -> dict[str, Any] | None:
        """The item called exactly `name` (`q=name=<name>` is exact; the old `name=` is fuzzy)."""
        found = [i for i in self.list(path, {"q": f"name={name}"}) if i.get("name") == name]
        return found[0] if found else None

    def create_named(self, path: str, body: Mapping[str, Any], *, bad_request: str = "") -> int:
        """Create the item called `body["name"]` (`project_name` for projects): names are
        unique, so after a lost answer the retry finds it by name rather than make another."""
        name = str(body.get("name") or body.get("project_name"))

        def lost() -> int | None:
            found = self.find(path, name)
            return None if found is None else int(found.get("id") or found.get("project_id") or 0)

        return self.create(path, body, bad_request=bad_request, lost=lost)

    def create(
        self,
        path: str,
        body: Any,
        *,
        bad_request: str = "",
        lost: Callable[[], int | None] | None = None,
    ) -> int:
        """POST → 201 with the new id only in `Location`.

        A POST is not idempotent, so it is retried only when `lost` is given: after a reset
        connection, a 429 or a 5xx, Harbor may have created the object and lost only the
        answer. `lost()` looks for it (by its unique name, say) and returns its id, so the
        retry finds it instead of creating a second one; None means it was not created.
        """
        attempt = 1
        while True:
            try:
                return self._create_once(path, body, bad_request)
            except (_HarborError, requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                transient = not isinstance(exc, _HarborError) or exc.status == 429 or exc.status >= 500
                conflict = isinstance(exc, _HarborError) and exc.status == 409 and attempt > 1
                if lost is None or attempt >= CREATE_ATTEMPTS or not (transient or conflict):
                    raise
                wait = RETRY_BACKOFF * 2 ** (attempt - 1)
                if isinstance(exc, _HarborError) and exc.retry_after is not None:
                    wait = max(wait, min(exc.retry_after, RETRY_AFTER_MAX))
                log.info("POST %s: %s; looking for what it may have created", path, exc)
                time.sleep(wait)
                found = lost()
                if found is not None:
                    return found
                if conflict:  # someone else's object of that name appeared meanwhile
                    raise
                attempt += 1

    def _create_once(self, path: str, body: Any, bad_request: str) -> int:
        response = self.request("POST", path, body=body, expect=(201,), bad_request=bad_request)
        location = response.headers.get("Location", "")
        ident = location.rstrip("/").rsplit("/", 1)[-1]
        if not ident.isdigit():
            if path == "/projects":
                return 0  # created; its id is not needed
            raise _HarborError(
                201, "UNEXPECTED", f"POST {path} answered 201 without an id in Location ({location!r})"
            )
        return int(ident)

    def put(self, path: str, body: Any, *, bad_request: str = "") -> None:
        self.request("PUT", path, body=_NO_BODY if body is None else body, bad_request=bad_request)

    def delete(self, path: str, *, headers: Mapping[str, str] | None = None, conflict: str = "") -> None:
        self.request("DELETE", path, headers=headers, expect=(200, 404), conflict=conflict)


@contextmanager
def _session(target: HarborTarget, ctx: RunContext) -> Iterator[_Api]:
    api = _Api(target, ctx)
    try:
        yield api
    finally:
        api.close()


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _HarborError(
            response.status_code,
            "UNEXPECTED",
            f"{response.request.method} {urlsplit(response.url).path} answered "
            f"{response.headers.get('Content-Type') or 'no content type'}, not JSON (is the url Harbor's?)",
        ) from None


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        errors = response.json().get("errors") or []
        first = errors[0] if errors else {}
        return str(first.get("code") or ""), " ".join(str(first.get("message") or "").split())
    except (ValueError, AttributeError, IndexError):
        return "", clip(response.text, 200)


def _next_page(link: str) -> int | None:
    """The page number of `rel="next"` in Harbor's Link header (host-relative, unescaped query)."""
    for part in link.split(","):
        if 'rel="next"' in part:
            url = part.split(";", 1)[0].strip().strip("<>")
            page = parse_qs(urlsplit(url).query).get("page", [""])[0]
            if page.isdigit():
                return int(page)
    return None


_HINTS = {
    401: "check the target's credentials (a sysadmin or a system robot account)",
    403: "the account lacks a Harbor permission (replication needs system scope)",
}


@contextmanager
def _mapped(target: HarborTarget, operation: str) -> Iterator[None]:
    """Translate Harbor's answers and requests' exceptions into ours, on one line, redacted.
    The message does not repeat `operation`: the caller's report names it (engine: `dc1:
    create registry-endpoint X: ...`); it is kept on the exception."""
    where = {"provider": "harbor", "target": target.name, "operation": operation}
    try:
        yield
    except _HarborError as exc:
        message = exc.message
        if exc.call:
            hint = exc.hint or _HINTS.get(exc.status, "")
            code = f" {exc.code}" if exc.code else ""
            message = f"Harbor {exc.call}: HTTP {exc.status}{code}: {exc.message}" + (
                f" ({hint})" if hint else ""
            )
            message += f" [X-Request-Id {exc.request_id}]" if exc.request_id else ""
        # Harbor answers 412 when a precondition on the current state fails.
        kind = error_for_status(exc.status, conflict=(409, 412))
        raise kind(redact(" ".join(message.split())), **where) from None
    except requests.exceptions.SSLError as exc:
        # The real reason; never "insecure" for a certificate that does not verify.
        explained = explain_tls_failure(str(exc), target.url)
        reason = explained or f"TLS failed talking to {target.url}: {request_reason(exc)}"
        raise ProviderError(redact(reason), **where) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise ProviderError(
            redact(f"cannot reach Harbor at {target.url}: {request_reason(exc)}"), **where
        ) from None
    except requests.exceptions.RequestException as exc:
        reason = f"{type(exc).__name__} talking to {target.url}: {request_reason(exc)}"
        raise ProviderError(redact(reason), **where) from None
