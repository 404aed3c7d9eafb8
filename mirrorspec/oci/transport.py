"""HTTP with a total deadline per request, honest retries and a waiting budget per host.

Every HTTP request mirrorspec makes itself (the registry client in `client.py`, and the REST
calls and token exchanges providers make through `RunContext.transport`) goes through a
`DeadlineAdapter` from one `Transport` per run, which guarantees three things:

- A **total deadline per attempt**: connecting, the TLS handshake, sending the request and
  receiving the complete response headers take at most `timeout` seconds together, and the
  body then gets `BODY_TIMEOUTS × timeout` of its own. A server that drips one byte a second
  cannot reset it.
- **Honest retries**: a timeout, a refused or reset connection and a 429/5xx answer to a
  request that is safe to repeat are retried here, logged at INFO (`-v`), and the error that
  ends the request says how many attempts it made and how long they took in all
  ("no answer from HOST within 30s (response headers; 3 attempts, 90s in all)"). A timeout
  is retried at most twice and at once (it already waited); other failures back off
  exponentially with jitter, and a 429/503's `Retry-After` is honoured up to 60 s.
- A **budget per host**: once a host has answered nothing useful (timeouts, refusals, 429/5xx
  only) for `HOST_BUDGET_TIMEOUTS × timeout` of wall-clock time, it is given up for the rest
  of the run: every further request to it fails at once with one line saying so, requests in
  flight to it are cut, and a backoff that would outlast the budget ends when it does. Any
  other answer (2xx, 3xx, 4xx) from the host starts its budget afresh.
- **Reads in flight per host** (`read_limit`, `read_limit.py`): the registry client holds a
  slot of its host's `ReadLimit` for every read; a 429/503 seen here halves that limit and its
  `Retry-After` holds back every thread's next read to the host, not only the retry.

How the deadlines are enforced is `reaper.py`'s part; what a timeout is and the errors that
say so are in `timeouts.py`. Not covered here: skopeo's own requests, and cloud SDKs, which keep
their own timeouts and retries.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .read_limit import DEFAULT_READS, ReadLimit
from .reaper import CURRENT_ATTEMPT, REAPER, Attempt, DeadlineResponse, Host, HTTPPool, HTTPSPool
from .timeouts import (
    BODY,
    BODY_TIMEOUTS,
    DEFAULT_TIMEOUT,
    HEADERS,
    HOST_BUDGET_TIMEOUTS,
    TLS,
    HostDown,
    NoAnswer,
    seconds,
)
from .tls_contexts import TlsContexts

if TYPE_CHECKING:  # the stubs' names for requests' pool key dictionaries
    from requests.adapters import _HostParams, _PoolKwargs

__all__ = ["DeadlineAdapter", "Transport"]

log = logging.getLogger(__name__)

# Attempts for a request whose attempts time out: each already waited a whole timeout.
TIMEOUT_ATTEMPTS = 3
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses whose Retry-After is honoured (RFC 9110 §10.2.3 names 503 and 3xx; RFC 6585 429).
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# A hostile or confused Retry-After (hours) must not stall a whole run.
RETRY_AFTER_CAP = 60.0
BACKOFF_MAX = 30.0


@dataclass
class Transport:
    """One run's timeouts and host budgets, shared by every client of the run.

    `timeout`: seconds for connect + TLS + response headers of one attempt; a body gets
    `BODY_TIMEOUTS` times that; a host that answers nothing useful for `HOST_BUDGET_TIMEOUTS`
    times that is given up for the run. `reads`: registry reads in flight per host to start
    with (`ReadLimit`)."""

    timeout: float = DEFAULT_TIMEOUT
    reads: int = DEFAULT_READS
    # TLS contexts of the run, one per `verify` value: a CA bundle is loaded once, not per
    # connection (`tls_contexts`).
    tls: TlsContexts = field(default_factory=TlsContexts, init=False, repr=False)
    _hosts: dict[str, Host] = field(default_factory=dict, init=False, repr=False)
    _read_limits: dict[str, ReadLimit] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, not {self.timeout!r}")
        if self.reads < 1:
            raise ValueError(f"reads must be at least 1, not {self.reads!r}")

    def read_limit(self, netloc: str) -> ReadLimit:
        """The reads-in-flight limit of the host `netloc` (`host[:port]`), one per run."""
        name = netloc.lower()
        with REAPER.cond:
            limit = self._read_limits.get(name)
            if limit is None:
                limit = self._read_limits[name] = ReadLimit(self.reads)
            return limit

    def _throttled(self, host: Host, sent: float, retry_after: float) -> None:
        """`host` answered a request sent at `sent` with 429/503 (asking for `retry_after`
        seconds, 0 if it named none): its reads limit backs off."""
        with REAPER.cond:
            limit = self._read_limits.get(host.name)
        if limit is not None:  # a host no registry client reads from (a provider's API)
            limit.throttled(sent, retry_after or None)

    @property
    def body_timeout(self) -> float:
        return BODY_TIMEOUTS * self.timeout

    @property
    def host_budget(self) -> float:
        return HOST_BUDGET_TIMEOUTS * self.timeout

    def adapter(
        self,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        methods: frozenset[str] = frozenset({"GET", "HEAD"}),
        statuses: frozenset[int] = RETRY_STATUSES,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
    ) -> DeadlineAdapter:
        """An adapter to mount on a `requests.Session` for http:// and https://."""
        return DeadlineAdapter(
            self,
            retries=retries,
            backoff=backoff,
            methods=methods,
            statuses=statuses,
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
        )

    def host(self, url: str) -> Host:
        name = urlsplit(url).netloc.lower()
        with REAPER.cond:
            host = self._hosts.get(name)
            if host is None:
                host = self._hosts[name] = Host(name, self.host_budget, self.timeout)
            return host

    # Host bookkeeping, under the reaper's lock (the reaper reads it).

    def _check(self, host: Host) -> None:
        with REAPER.cond:
            if host.down is None and time.monotonic() < host.budget_end():
                return
            message = host.give_up()
        raise HostDown(message)

    def _answered(self, host: Host) -> None:
        with REAPER.cond:
            host.last_answer = time.monotonic()
            host.failing_since = None

    def _failed(self, host: Host, started: float, failure: str) -> None:
        """An attempt begun at `started` got no useful answer: the host has been failing since
        then, unless it answered another request after that."""
        with REAPER.cond:
            since = max(started, host.last_answer)
            if host.failing_since is None or since < host.failing_since:
                host.failing_since = since
            host.failure = failure
            REAPER.cond.notify()  # in-flight attempts may now have an earlier end

    def _pause(self, host: Host, wait: float) -> None:
        """Sleep `wait` seconds, or until the host's budget ends (then `HostDown`)."""
        with REAPER.cond:
            end = host.budget_end()
        now = time.monotonic()
        if now + wait >= end:
            time.sleep(max(0.0, end - now))
            self._check(host)
        time.sleep(wait)


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with the deadlines, retries and host budget of a `Transport`.

    The `timeout` a caller passes to requests is ignored: the transport's applies. Requests
    whose method is in `methods` are retried on timeouts, broken connections and `statuses`;
    any request is retried when its connection could not be made (nothing was sent yet)."""

    def __init__(
        self,
        transport: Transport,
        *,
        retries: int,
        backoff: float,
        methods: frozenset[str],
        statuses: frozenset[int],
        pool_connections: int,
        pool_maxsize: int,
    ) -> None:
        self._transport = transport
        self._retries = retries
        self._backoff = backoff
        self._methods = methods
        self._statuses = statuses
        # No retries inside urllib3: they are ours, counted and bounded (requests' default
        # is Retry(0, read=False): errors come out as they are).
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[_HostParams, _PoolKwargs]:
        """requests' pool key, with the run's shared TLS context for `verify` instead of a CA
        path that urllib3 would load for every new connection (the override requests
        documents for a custom `SSLContext`, requests 2.32-2.34 adapters.py)."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            context = self._transport.tls.for_verify(verify)
            if context is not None:
                pool_kwargs.pop("ca_certs", None)
                pool_kwargs.pop("ca_cert_dir", None)
                pool_kwargs["ssl_context"] = context
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        # requests checks the bundle still exists and names it in `ca_certs` again, which
        # would make urllib3 load it into the shared context once more per connection.
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]  # untyped in the stubs
        if verify and getattr(conn, "conn_kw", {}).get("ssl_context") is not None:
            conn.ca_certs = conn.ca_cert_dir = None  # the pool's; the context holds them

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        response.__class__ = DeadlineResponse
        return response

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        transport = self._transport
        host = transport.host(request.url or "")
        method = (request.method or "GET").upper()
        began = time.monotonic()
        attempts = timeouts = 0
        while True:
            attempts += 1
            transport._check(host)
            now = time.monotonic()
            attempt = Attempt(host, started=now, at=now + transport.timeout)
            token = CURRENT_ATTEMPT.set(attempt)
            error: requests.exceptions.RequestException | None = None
            try:
                response = super().send(
                    request,
                    stream=stream,
                    timeout=transport.timeout,
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
            except requests.exceptions.RequestException as exc:
                error = exc
            finally:
                CURRENT_ATTEMPT.reset(token)
            if error is None and attempt.cut is not None:
                response.close()  # the headers came just as the deadline passed: too late
                error = requests.exceptions.ReadTimeout("cut at the deadline", request=request)
            if error is not None:
                if attempt.cut == "budget" or host.down is not None:
                    raise HostDown(host.give_up(), request=request) from error
                kind = _kind(error, attempt)
                if kind == "tls" or kind == "other":
                    _count(error, attempts, began)
                    raise error
                timed_out = kind == "timeout"
                failure = "no answer" if timed_out else "connections failing"
                transport._failed(host, attempt.started, failure)
                timeouts += timed_out
                sent = attempt.stage in (HEADERS, BODY)
                retry = attempts <= self._retries and (not sent or method in self._methods)
                if timed_out and timeouts >= TIMEOUT_ATTEMPTS:
                    retry = False
                if not retry:
                    if timed_out:
                        raise NoAnswer(
                            f"no answer from {host.name} within {transport.timeout:g}s "
                            f"({attempt.stage}; {_attempts(attempts)}, "
                            f"{seconds(time.monotonic() - began)} in all)",
                            request=request,
                        ) from error
                    _count(error, attempts, began)
                    raise error
                # A timeout already waited a whole timeout: try again at once.
                wait = 0.0 if timed_out else self._backoff_for(attempts)
                what = f"no answer within {transport.timeout:g}s ({attempt.stage})" if timed_out else kind
                log.info(
                    "%s %s: %s; attempt %d in %s", method, request.url, what, attempts + 1, seconds(wait)
                )
                transport._pause(host, wait)
                continue
            status = response.status_code
            if status not in self._statuses:
                transport._answered(host)
                break
            transport._failed(host, attempt.started, f"only {status} answers")
            if status in _RETRY_AFTER_STATUSES:
                transport._throttled(
                    host, attempt.started, _retry_after(response.headers.get("Retry-After"), 0.0)
                )
            if attempts > self._retries or method not in self._methods:
                break
            wait = self._backoff_for(attempts)
            if status in _RETRY_AFTER_STATUSES:
                wait = _retry_after(response.headers.get("Retry-After"), wait)
            log.info(
                "%s %s: %s answered %d; attempt %d in %s",
                method,
                request.url,
                host.name,
                status,
                attempts + 1,
                seconds(wait),
            )
            response.close()
            transport._pause(host, wait)
        REAPER.extend(attempt, time.monotonic() + transport.body_timeout, BODY)
        assert isinstance(response, DeadlineResponse)
        response.attempts = attempts
        response._mirrorspec_attempt = attempt
        response._mirrorspec_body_timeout = transport.body_timeout
        return response

    def _backoff_for(self, attempts: int) -> float:
        wait = self._backoff * 2.0 ** (attempts - 1) + random.uniform(0, self._backoff)
        return min(wait, BACKOFF_MAX)


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _count(error: BaseException, attempts: int, began: float) -> None:
    error.attempts = attempts  # type: ignore[attr-defined]
    error.elapsed = time.monotonic() - began  # type: ignore[attr-defined]


def _reason(error: BaseException) -> BaseException | None:
    inner = error.args[0] if error.args else None
    if isinstance(inner, urllib3.exceptions.MaxRetryError):
        return inner.reason
    return inner if isinstance(inner, BaseException) else None


def _kind(error: requests.exceptions.RequestException, attempt: Attempt) -> str:
    """timeout, connect (nothing sent), tls, broken (after sending) or other."""
    if attempt.cut is not None or isinstance(
        error, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout)
    ):
        return "timeout"
    reason = _reason(error)
    # urllib3 makes NewConnectionError (refused, unresolvable) a ConnectTimeoutError subclass.
    if isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    ):
        return "timeout"
    if isinstance(error, requests.exceptions.SSLError):
        return "tls"
    if isinstance(error, requests.exceptions.ConnectionError):
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return "connect"
        if attempt.stage == TLS:
            return "tls"  # a hang-up in the handshake: a plain-HTTP server, say; no retry
        return "broken"
    return "other"


def _retry_after(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        wait = float(Retry().parse_retry_after(value))
    except urllib3.exceptions.InvalidHeader:
        return default
    return min(max(wait, 0.0), RETRY_AFTER_CAP)
