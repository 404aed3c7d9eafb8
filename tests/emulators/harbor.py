"""A contract emulator of Harbor's API v2.0 (v2.15.2) whose replication executions really copy.

:class:`HarborEmulator` is an HTTPS server (trustme CA) on 127.0.0.1 that answers the parts of
``/api/v2.0`` a replication tool uses — registries, replication adapters, policies, executions,
tasks and their logs, projects — and serves Harbor's own registry API under ``/v2/`` from a real
``docker-registry`` (the *backing* registry; a repository's first path component is its project).
Upstream registries are real ``docker-registry`` servers too, reached by the host name of each
registry endpoint's URL through :attr:`HarborEmulator.upstreams` (``hub.docker.com`` for
``docker-hub``, ``ghcr.io`` for ``github-ghcr``, the URL's host otherwise): that map is "the
network Harbor can reach". Executions list the upstream's repositories and tags over the
distribution API, select them with Harbor's filter semantics and copy each tag with skopeo, so a
plan → apply → ``audit --content`` round trip moves and verifies real bytes.

Every request is validated against the official contract (``shared/harbor/swagger.yaml``) with
:mod:`swagger_contract` — stricter than Harbor on unknown fields and nulls, see there. A request
that breaks it is answered like go-swagger answers a parameter validation failure, ``422
UNPROCESSABLE_ENTITY`` "validation failure list: ..." (goharbor/harbor#13765 shows the wording),
and recorded in :attr:`HarborEmulator.violations`. Every response is validated too; one that
breaks the contract is an emulator bug: it is replaced by a 500, recorded in
:attr:`HarborEmulator.internal_errors`, and :meth:`HarborEmulator.check` (and leaving the ``with``
block) raise both lists. Statuses Harbor really sends although the document does not declare them
for the operation (422 everywhere, 403 from the CSRF middleware, 404 from getProject and
startReplication, 412 for starting a disabled policy) are allowed, with the ``Errors`` body shape.

Behaviour and its source (research/harbor.md unless noted):

- Auth (§1): HTTP basic with :attr:`users`; wrong credentials → 401. Only ``/ping`` and
  ``/health`` are anonymous. No token service.
- CSRF (§1): every response sets a ``sid`` session cookie, as Harbor's session middleware does;
  an unsafe method that sends ``sid`` back gets ``403 FORBIDDEN`` "CSRF token invalid". A client
  that keeps cookies therefore fails its second write, as in goharbor/harbor#10890.
- ``X-Request-Id`` is echoed, or generated when absent.
- Lists (§1): ``page`` (default 1), ``page_size`` (default **10**, max 100 by the contract),
  ``X-Total-Count``, and a ``Link`` header of host-relative URLs with an unescaped query, joined by
  ``" , "``. ``q`` supports ``name=<exact>`` and ``name=~<substring>``.
- Creates (§1): ``201`` with ``Location: /api/v2.0/<collection>/<id>`` and **no body**.
- Registries (§2): the name is required (≤ 64 characters) and unique (409); the type must be a
  known adapter (the whitelist only filters ``/replication/adapters``, §3); creating or updating
  health-checks the endpoint — ``GET /v2/`` on the mapped upstream with the stored credentials —
  and answers ``400 the registry is unhealthy`` when it fails. Reads mask ``access_secret`` as
  ``*****``. ``PUT`` is a partial update with flat credential fields; the type cannot change.
  ``DELETE`` answers 412 while a policy or a proxy-cache project uses the registry.
- Policies (§4, §5): ``model.Validate`` — a name; exactly one of source and destination registry
  (pull = ``src_registry``); the registry exists; ``dest_namespace`` is a repository path; filter
  types ``name|tag|label|resource``, ``decoration`` only on tag and label filters, resource
  ``image|artifact``; trigger ``manual|scheduled|event_based``; a scheduled trigger's cron as
  ``utils.ValidateCronString`` checks it (robfig's 6 fields, seconds ``0``) plus a minutes field
  other than ``*``; ``single_active_replication`` refused with ``event_based``. ``PUT`` rebuilds
  the policy from the body: omitted ``enabled`` is false, omitted ``dest_namespace_replace_count``
  is -1 (flatten), ``replicate_deletion`` is ignored on write and ``deletion`` is what is stored;
  reads return both. Policies embed full registry objects; the local Harbor is registry 0.
  Deleting a policy with a running execution → 412.
- Executions (§6): ``POST {policy_id}`` → 201 + Location; a disabled policy → 412 "the policy N is
  disabled" (controller ``Start``); with ``single_active_replication``, a start while another
  execution of the policy is ``InProgress`` → 201, the new one ``Failed`` at once with
  ``status_text`` "Execution skipped: active replication still in progress." (Harbor v2.14.0+).
  :attr:`HarborEmulator.release` holds executions ``InProgress`` while a test keeps it clear. The
  flow: the first name filter, when specific (``IsSpecificPath``: no ``*?[]`` and at most one
  ``{a,b}`` per path component), is expanded into candidate names; otherwise the upstream's
  ``/v2/_catalog`` is read (``github-ghcr`` fails instead: "only support specific repository
  name"). Each candidate must pass every name filter; its tags must pass every tag filter
  (``matches``/``excludes``, chained); a repository without a matching tag yields no task.
  Destinations follow Harbor's ``replaceNamespace`` (-1: namespace + last component; 0: namespace
  + path; n: drop n leading components; more than the components before the last, or a result of
  one component: the execution fails). A missing destination project is created; a proxy-cache
  destination project is skipped. **One task per repository**, whose resources read ``"<repo> [<n>
  item(s) in total]"`` (flow/stage.go ``getResourceName``). A tag already at the destination with
  the same digest, or with another digest while ``override`` is false, is not copied. An execution
  that matched nothing ends ``Succeed`` with ``total`` 0. ``PUT`` stops it (``Stopped``).
- Filters (§5) use doublestar v1 semantics, :func:`doublestar_match`: ``*`` within a path
  component, ``**`` as a whole component across ``/``, ``?``, ``[abc]``/``[a-z]``/``[^x]`` (``!`` is
  no negation in v1), ``{a,b}`` (nested allowed), ``\\`` escapes; an empty pattern matches
  everything; a malformed part is an error only when matching reaches it. Checked against
  doublestar v1.3.4's and Harbor's own test tables (tests/test_harbor_golden.py).
- Projects (§7): ``project_name`` matches Harbor's ``^[a-z0-9]+(?:[._-][a-z0-9]+)*$``; a
  ``registry_id`` makes a proxy-cache project, only for the permitted adapter types, and gives it
  a retention policy (``metadata.retention_id``; Harbor's is "pulled within 7 days"). Deleting a
  project that still holds repositories (in the backing registry) → 412.

NOT emulated: event-based triggers and schedules (a cron is validated and stored, never run);
push-based policies (their executions fail); labels (a label filter never matches); per-adapter
listing quirks (Docker Hub's namespace listing, Quay, GitLab APIs); robot accounts and RBAC (every
authenticated user is an admin); ``/v2/`` writes (the proxy serves GET and HEAD only) and Harbor's
bearer-token service (``/v2/`` answers a Basic challenge); copy-by-chunk and speed limits; the
periodic registry health check (``status`` is the result of the last create or update).

Faults (429, 5xx, reset connections, slow answers) are not emulated here: a
``testbed.faults.FaultProxy`` in front, serving :attr:`HarborEmulator.ssl_context`, injects them.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests
from testbed import MANIFEST_ACCEPT, RegistryServer
from testbed.server import Handler, HttpServerBase, reply

from .swagger_contract import Operation, SwaggerContract, load_contract

__all__ = [
    "ALL_ADAPTERS",
    "AT_LEAST_TWO",
    "DEFAULT_WHITELIST",
    "FILTERS_COLUMN",
    "ONLY_TWO",
    "PROXY_CACHE_TYPES",
    "SKIPPED",
    "SWAGGER_PATH",
    "HarborApiError",
    "HarborEmulator",
    "RequestRecord",
    "doublestar_match",
    "filters_column",
    "is_specific_path",
    "is_specific_path_component",
    "replace_namespace",
]

# The official contract, saved verbatim in tests/contracts/ (a copy of shared/harbor/swagger.yaml).
SWAGGER_PATH = Path(
    os.environ.get(
        "HARBOR_SWAGGER", Path(__file__).resolve().parents[1] / "contracts" / "harbor" / "swagger.yaml"
    )
)
BASE = "/api/v2.0"
MASK = "*****"
# research/harbor.md §3: every registered adapter, and the v2.14+ defaults of the two env lists.
ALL_ADAPTERS = frozenset(
    {
        "harbor",
        "docker-hub",
        "docker-registry",
        "github-ghcr",
        "aws-ecr",
        "azure-acr",
        "google-gcr",
        "ali-acr",
        "jfrog-artifactory",
        "huawei-SWR",
        "tencent-tcr",
        "volcengine-cr",
        "quay",
        "gitlab",
        "dtr",
    }
)
DEFAULT_WHITELIST = [
    "ali-acr",
    "aws-ecr",
    "azure-acr",
    "docker-hub",
    "docker-registry",
    "github-ghcr",
    "google-gcr",
    "harbor",
    "huawei-SWR",
    "jfrog-artifactory",
    "tencent-tcr",
    "volcengine-cr",
]
PROXY_CACHE_TYPES = frozenset(
    {
        "docker-hub",
        "harbor",
        "azure-acr",
        "ali-acr",
        "aws-ecr",
        "google-gcr",
        "docker-registry",
        "github-ghcr",
        "jfrog-artifactory",
    }
)
_FIXED_UPSTREAM_HOST = {"docker-hub": "hub.docker.com", "github-ghcr": "ghcr.io"}
_PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REPOSITORY_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    412: "PRECONDITION",
    422: "UNPROCESSABLE_ENTITY",
    500: "UNKNOWN",
}
# Statuses Harbor sends although the operation does not declare them (module docstring).
_UNDECLARED_EVERYWHERE = frozenset({403, 422})
_UNDECLARED = {"getProject": frozenset({404}), "startReplication": frozenset({404, 412})}
_ANONYMOUS = frozenset({"getPing", "getHealth"})
_SKOPEO_TIMEOUT = 120

JsonObject = dict[str, Any]


# --- doublestar v1 ---------------------------------------------------------------------------


def doublestar_match(pattern: str, name: str) -> bool:
    """Harbor's `util.Match`: doublestar v1 `Match(pattern, name)`; an empty pattern matches all.

    Raises ValueError for a malformed pattern (doublestar's ErrBadPattern) — as doublestar v1.3.4
    does, only when matching reaches the malformed part: `a[` against `a` is no match, against
    `ab` an error (its own test table, see tests/test_harbor_golden.py)."""
    if pattern == "":
        return True
    try:
        regex = _doublestar_regex(pattern)
    except _BadPattern as bad:
        prefix = _doublestar_regex(pattern[: bad.position])
        if re.match(prefix + "(?=[^/])", name, flags=re.DOTALL):
            raise ValueError(f"bad pattern {pattern!r}: {bad.reason}") from None
        return False
    return re.fullmatch(regex, name, flags=re.DOTALL) is not None


class _BadPattern(Exception):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position = position  # where the malformed term starts, at the pattern's top level
        self.reason = reason


def _doublestar_regex(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise _BadPattern(i, "trailing backslash")
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "*":
            whole = pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/")
            if whole and i + 2 == n:
                out.append(".*")
                i += 2
            elif whole and pattern[i + 2] == "/":
                out.append("(?:.*/)?")  # zero or more whole components
                i += 3
            else:
                j = i
                while j < n and pattern[j] == "*":
                    j += 1
                out.append("[^/]*")
                i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = _class_end(pattern, i + 1)
            if end < 0:
                raise _BadPattern(i, "unclosed [")
            out.append(_class_regex(pattern[i + 1 : end], i))
            i = end + 1
        elif c == "{":
            depth, j, start, alternatives = 1, i + 1, i + 1, []
            while j < n and depth:
                if pattern[j] == "\\":
                    j += 2
                    continue
                if pattern[j] == "{":
                    depth += 1
                elif pattern[j] == "}":
                    depth -= 1
                    if depth == 0:
                        alternatives.append(pattern[start:j])
                elif pattern[j] == "," and depth == 1:
                    alternatives.append(pattern[start:j])
                    start = j + 1
                j += 1
            if depth:
                raise _BadPattern(i, "unclosed {")
            try:
                regexes = [_doublestar_regex(a) if a else "" for a in alternatives]
            except _BadPattern as bad:
                raise _BadPattern(i, bad.reason) from None
            out.append("(?:" + "|".join(regexes) + ")")
            i = j
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """The index of the `]` closing a class whose body starts at `start` (an escaped `]` does
    not close it; an empty body is malformed later), or -1."""
    j = start
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "]":
            return j
        j += 1
    return -1


def _class_regex(body: str, position: int) -> str:
    """A doublestar v1 character class: `^` negates (`!` is an ordinary character there), items
    are a character, `\\`-escaped character or `lo-hi` range; a bare `-` starting an item or
    ending a range, and an empty class, are malformed."""
    negate = body.startswith("^")
    items = body[1:] if negate else body
    if not body:
        raise _BadPattern(position, "empty class")
    if not items:  # `[^]`: doublestar v1 lets it match any one character
        return "[^/]"
    parts: list[str] = []
    k = 0

    def char() -> str:
        nonlocal k
        if items[k] == "\\":
            if k + 1 >= len(items):
                raise _BadPattern(position, "trailing backslash in class")
            k += 2
            return items[k - 1]
        k += 1
        return items[k - 1]

    while k < len(items):
        if items[k] == "-":
            raise _BadPattern(position, "class item starts with -")
        low = char()
        high = low
        if k < len(items) and items[k] == "-":
            k += 1
            if k >= len(items) or items[k] == "-":
                raise _BadPattern(position, "unfinished range")
            high = char()
        parts.append(re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}")
    return f"(?!/)[{'^' if negate else ''}{''.join(parts)}]"


def is_specific_path(pattern: str) -> list[str] | None:
    """`util.IsSpecificPath`: the names a wildcard-free name filter stands for, or None.

    goharbor/harbor src/pkg/reg/util/pattern.go (59c3de10a65890517fced56b1923e98e9ab9e002): every
    `/`-separated component must be specific; the names are every combination of theirs."""
    if not pattern:
        return None
    names: list[str] = []
    for component in pattern.split("/"):
        choices = is_specific_path_component(component)
        if choices is None:
            return None
        names = [f"{prefix}/{choice}" for prefix in names for choice in choices] if names else choices
    return names


def is_specific_path_component(component: str) -> list[str] | None:
    """`util.IsSpecificPathComponent`: not empty, none of `*?[\\]^/`; a component with any of
    `{},` must hold exactly one `{` before its last `}`, whose comma-separated insides, each
    between what precedes the `{` and what follows the last `}`, are the names."""
    if not component or any(ch in component for ch in "*?[\\]^/"):
        return None
    if not any(ch in component for ch in "{},"):
        return [component]
    opening, closing = component.find("{"), component.rfind("}")
    if component.count("{") > 1 or opening < 0 or closing < 0 or opening > closing:
        return None
    prefix, suffix = component[:opening], component[closing + 1 :]
    return [prefix + choice + suffix for choice in component[opening + 1 : closing].split(",")]


# --- cron as Harbor validates it ---------------------------------------------------------------


def _cron_error(cron: str) -> str | None:
    """robfig/cron with Second|Minute|Hour|Dom|Month|Dow, then Harbor's own two rules."""
    fields = cron.split()
    if len(fields) != 6:
        return f"expected exactly 6 fields, found {len(fields)}: [{cron}]"
    limits = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    for position, (text, (low, high)) in enumerate(zip(fields, limits, strict=True)):
        names = months if position == 4 else days if position == 5 else []
        for part in text.split(","):
            span, _, step = part.partition("/")
            if "/" in part and (not step.isdigit() or int(step) == 0):
                return f"failed to parse int from {step}"
            if span in ("*", "?"):
                continue
            bounds = []
            for value in span.split("-", 1):
                if value.lower() in names:
                    bounds.append(names.index(value.lower()) + low)
                elif value.isdigit():
                    bounds.append(int(value))
                else:
                    return f"failed to parse int from {value}"
            if bounds[0] < low or bounds[-1] > high or bounds[0] > bounds[-1]:
                return f"value out of range ({low}-{high}): {span}"
    if cron.split(" ")[0] != "0":
        return "the 1st field (indicating Seconds of time) of the cron setting must be 0"
    if fields[1] == "*":
        return "* is not allowed for the Minutes field of the cron setting of replication policy"
    return None


# --- the emulator ------------------------------------------------------------------------------


# The backing registry's answer headers the emulator's /v2/ passes on.
_REGISTRY_HEADERS = frozenset(
    {"content-type", "docker-content-digest", "docker-distribution-api-version", "etag", "link"}
)


class HarborApiError(Exception):
    """An answer in Harbor's error shape: `{"errors": [{"code": ..., "message": ...}]}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: Mapping[str, list[str]]
    status: int
    operation: str | None
    request_id: str | None  # the client's X-Request-Id, if it sent one
    sent_cookie: bool
    body: Any  # decoded JSON body, or None


@dataclass
class _State:
    registries: dict[int, JsonObject] = field(default_factory=dict)
    policies: dict[int, JsonObject] = field(default_factory=dict)
    executions: dict[int, JsonObject] = field(default_factory=dict)
    tasks: dict[int, JsonObject] = field(default_factory=dict)
    projects: dict[int, JsonObject] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)

    def new_id(self, kind: str) -> int:
        self.next_id[kind] = self.next_id.get(kind, 0) + 1
        return self.next_id[kind]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HarborEmulator(HttpServerBase[RequestRecord]):
    """Harbor's API and registry on one HTTPS host; see the module docstring.

    `registry` is the backing `docker-registry` (plain HTTP, no auth) that holds what Harbor
    stores; `upstreams` maps the host names Harbor can reach to local registries.
    """

    title = "Harbor emulator"
    violation_label = "request broke the contract"

    def __init__(
        self,
        registry: RegistryServer,
        *,
        upstreams: Mapping[str, RegistryServer] | None = None,
        users: Mapping[str, str] | None = None,
        whitelist: list[str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self._workdir = Path(workdir or tempfile.mkdtemp(prefix="harbor-emulator-"))
        self._own_workdir = workdir is None
        super().__init__(
            name="harbor-emulator",
            tls=True,
            ca_file=self._workdir / "certs" / "ca.crt",
            methods=("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"),
        )
        self.registry = registry
        self.upstreams: dict[str, RegistryServer] = dict(upstreams or {})
        self.users = dict(users or {"admin": "Harbor12345"})
        self.whitelist = list(DEFAULT_WHITELIST if whitelist is None else whitelist)
        self.contract: SwaggerContract = load_contract(SWAGGER_PATH)
        self._state = _State()
        self._threads: list[threading.Thread] = []
        # Executions start their flow only while this is set: a test clears it to hold them
        # `InProgress` (as a long real replication would be) and sets it to let them run.
        self.release = threading.Event()
        self.release.set()
        self._handlers: dict[str, Callable[[_Request], _Answer]] = {
            "getPing": self._ping,
            "getHealth": self._health,
            "listRegistries": self._list_registries,
            "createRegistry": self._create_registry,
            "getRegistry": self._get_registry,
            "updateRegistry": self._update_registry,
            "deleteRegistry": self._delete_registry,
            "pingRegistry": self._ping_registry,
            "listRegistryProviderTypes": self._adapters,
            "listReplicationPolicies": self._list_policies,
            "createReplicationPolicy": self._create_policy,
            "getReplicationPolicy": self._get_policy,
            "updateReplicationPolicy": self._update_policy,
            "deleteReplicationPolicy": self._delete_policy,
            "startReplication": self._start_execution,
            "listReplicationExecutions": self._list_executions,
            "getReplicationExecution": self._get_execution,
            "stopReplication": self._stop_execution,
            "listReplicationTasks": self._list_tasks,
            "getReplicationLog": self._task_log,
            "listProjects": self._list_projects,
            "createProject": self._create_project,
            "getProject": self._get_project,
            "deleteProject": self._delete_project,
        }
        self._init_state()

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self.release.set()
        for thread in list(self._threads):
            thread.join(timeout=_SKOPEO_TIMEOUT)
        super().stop()
        if self._own_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def reset(self) -> None:
        self.wait_idle()
        with self._lock:
            self._state = _State()
            self.requests.clear()
            self.violations.clear()
            self.internal_errors.clear()
            self._init_state()

    def wait_idle(self, timeout: float = _SKOPEO_TIMEOUT) -> None:
        """Wait for every running execution to end."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _init_state(self) -> None:
        # Harbor ships with the public project `library` (id 1).
        self._state.projects[self._state.new_id("project")] = {
            "name": "library",
            "registry_id": 0,
            "metadata": {"public": "true"},
            "creation_time": _now(),
            "update_time": _now(),
        }

    # -- test helpers (state, not through the API) ----------------------------------------

    def api(
        self, method: str, path: str, *, json_body: Any = None, user: str = "admin", **kwargs: Any
    ) -> requests.Response:
        """One call to the emulator's API as `user`, with a fresh session (so no cookie)."""
        with requests.Session() as session:
            session.trust_env = False
            return session.request(
                method,
                f"{self.url}{BASE}{path}",
                json=json_body,
                auth=(user, self.users[user]),
                verify=str(self.ca_file),
                timeout=60,
                **kwargs,
            )

    def stored_secret(self, registry_name: str) -> str | None:
        """The unmasked secret Harbor holds for a registry endpoint (never readable via the API)."""
        with self._lock:
            for registry in self._state.registries.values():
                if registry["name"] == registry_name:
                    return registry.get("access_secret")  # type: ignore[no-any-return]
        return None

    def operations(self) -> list[str]:
        return [r.operation or f"{r.method} {r.path}" for r in self.requests]

    # -- HTTP -----------------------------------------------------------------------------

    def handle(self, handler: Handler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if parts.path == "/v2" or parts.path.startswith("/v2/"):
            self._serve_registry(handler, parts.path, parts.query)
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        request_id = handler.headers.get("X-Request-Id")
        cookie = handler.headers.get("Cookie", "")
        sent_sid = any(c.strip().startswith("sid=") for c in cookie.split(";"))
        found = self.contract.operation(handler.command, parts.path)
        op: Operation | None = found[0] if found else None
        try:
            decoded = json.loads(body) if body.strip() else None
        except ValueError:
            decoded = None
        try:
            status, payload, headers = self._answer(handler, found, query, body, sent_sid)
        except Exception:  # a bug in the emulator: say so loudly, answer 500
            self.internal_errors.append(traceback.format_exc())
            status, payload, headers = self._error(500, "internal error in the emulator")
        raw, content_type = self._encode(payload)
        headers = {"X-Request-Id": request_id or uuid.uuid4().hex, **headers}
        if content_type:
            headers["Content-Type"] = content_type
        if op is not None:
            problems = self.contract.validate_response(
                op,
                status=status,
                headers=headers,
                body=raw,
                undeclared_ok=_UNDECLARED_EVERYWHERE | _UNDECLARED.get(op.operation_id, frozenset()),
            )
            if problems:
                self.internal_errors.append(f"{op.operation_id} answered {status}: {'; '.join(problems)}")
                status, payload, headers = self._error(500, "the emulator broke the contract")
                raw, content_type = self._encode(payload)
                headers["Content-Type"] = content_type or "application/json"
        with self._lock:
            self.requests.append(
                RequestRecord(
                    handler.command,
                    parts.path,
                    query,
                    status,
                    op.operation_id if op else None,
                    request_id,
                    sent_sid,
                    decoded,
                )
            )
        # Harbor's session middleware hands every caller a session cookie.
        cookie = f"sid={secrets.token_hex(16)}; Path=/; HttpOnly; Secure"
        reply(handler, status, [*headers.items(), ("Set-Cookie", cookie)], raw)

    @staticmethod
    def _encode(payload: Any) -> tuple[bytes, str | None]:
        if payload is None:
            return b"", None
        if isinstance(payload, _Text):
            return payload.text.encode(), "text/plain; charset=utf-8"
        return json.dumps(payload).encode(), "application/json"

    @staticmethod
    def _error(status: int, message: str) -> _Answer:
        return status, {"errors": [{"code": _ERROR_CODES.get(status, "UNKNOWN"), "message": message}]}, {}

    def _answer(
        self,
        handler: Handler,
        found: tuple[Operation, dict[str, str]] | None,
        query: dict[str, list[str]],
        body: bytes,
        sent_sid: bool,
    ) -> _Answer:
        if sent_sid and handler.command not in ("GET", "HEAD", "OPTIONS"):
            return self._error(403, "CSRF token invalid")
        user = self._authenticate(handler.headers.get("Authorization"))
        if user is False:
            return self._error(401, "unauthorized")
        if found is None:
            self.violations.append(f"{handler.command} {handler.path}: no such operation in the contract")
            return self._error(404, f"no operation {handler.command} {urlsplit(handler.path).path}")
        op, path_params = found
        problems = self.contract.validate_request(
            op, path_params=path_params, query=query, headers=dict(handler.headers.items()), body=body
        )
        if problems:
            with self._lock:
                self.violations.append(f"{op.operation_id}: {'; '.join(problems)}")
            return self._error(422, "validation failure list:\n" + "\n".join(problems))
        if user is None and op.operation_id not in _ANONYMOUS:
            return self._error(401, "UnAuthorized")
        handle = self._handlers.get(op.operation_id)
        if handle is None:
            raise NotImplementedError(f"{op.operation_id} is not emulated")
        request = _Request(
            op, path_params, query, json.loads(body) if body.strip() else None, handler.headers
        )
        try:
            with self._lock:
                return handle(request)
        except HarborApiError as exc:
            return self._error(exc.status, exc.message)

    def _authenticate(self, header: str | None) -> str | bool | None:
        """The user name, None for anonymous, False for wrong credentials."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token).decode().partition(":")
        except ValueError:
            return False
        return user if self.users.get(user) == password else False

    # -- /v2/: Harbor's registry, from the backing docker-registry ------------------------

    def _serve_registry(self, handler: Handler, path: str, query: str) -> None:
        user = self._authenticate(handler.headers.get("Authorization"))
        if not user:
            raw = b'{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized to access repository"}]}'
            headers = [
                ("WWW-Authenticate", 'Basic realm="harbor"'),
                ("Docker-Distribution-Api-Version", "registry/2.0"),
                ("Content-Type", "application/json"),
            ]
            reply(handler, 401, headers, raw)
            return
        if handler.command not in ("GET", "HEAD"):
            raw = b'{"errors":[{"code":"UNSUPPORTED","message":"the emulator serves /v2/ read-only"}]}'
            reply(handler, 405, [("Content-Type", "application/json")], raw)
            return
        connection = http.client.HTTPConnection(self.registry.host, timeout=60)
        try:
            asked = {k: v for k, v in handler.headers.items() if k.lower() in ("accept", "range")}
            connection.request(handler.command, path + (f"?{query}" if query else ""), headers=asked)
            response = connection.getresponse()
            raw = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() in _REGISTRY_HEADERS]
            length = response.getheader("Content-Length")
            if handler.command == "HEAD" and length:  # what a GET would get
                headers.append(("Content-Length", length))
            reply(handler, response.status, headers, raw)
        finally:
            connection.close()

    # -- lists ----------------------------------------------------------------------------

    def _page(self, request: _Request, items: list[JsonObject]) -> _Answer:
        page = int(request.query.get("page", ["1"])[0])
        size = int(request.query.get("page_size", ["10"])[0])
        if page < 1 or size < 1:
            # Harbor treats these as the defaults; keep it simple and explicit.
            page, size = max(page, 1), max(size, 1)
        total = len(items)
        chunk = items[(page - 1) * size : page * size]
        links = []
        others = [
            (k, v) for k, values in request.query.items() if k not in ("page", "page_size") for v in values
        ]
        extra = "".join(f"&{k}={v}" for k, v in others)  # unescaped, as Harbor writes it
        path = BASE + request.op.template.format(**request.path_params)
        if page > 1:
            links.append(f'<{path}?page={page - 1}&page_size={size}{extra}>; rel="prev"')
        if page * size < total:
            links.append(f'<{path}?page={page + 1}&page_size={size}{extra}>; rel="next"')
        headers = {"X-Total-Count": str(total)}
        if links:
            headers["Link"] = " , ".join(links)
        return 200, chunk, headers

    @staticmethod
    def _query_filter(request: _Request, items: list[JsonObject], key: str = "name") -> list[JsonObject]:
        for term in (request.query.get("q", [""])[0]).split(","):
            if not term:
                continue
            name, _, value = term.partition("=")
            value = value.strip()
            fuzzy = value.startswith("~")
            value = value.removeprefix("~").strip("'\"")
            if name != key:
                raise HarborApiError(400, f"unsupported query key {name}")
            items = [i for i in items if (value in i[key] if fuzzy else i[key] == value)]
        return items

    # -- ping / health --------------------------------------------------------------------

    def _ping(self, request: _Request) -> _Answer:
        return 200, _Text("Pong"), {}

    def _health(self, request: _Request) -> _Answer:
        return 200, {"status": "healthy", "components": []}, {}

    # -- registries -----------------------------------------------------------------------

    def _registry_out(self, registry: JsonObject) -> JsonObject:
        out = {k: registry[k] for k in ("id", "name", "url", "type", "insecure", "description", "status")}
        out["creation_time"] = registry["creation_time"]
        out["update_time"] = registry["update_time"]
        if registry.get("ca_certificate"):
            out["ca_certificate"] = registry["ca_certificate"]
        if registry.get("access_key") or registry.get("access_secret"):
            out["credential"] = {
                "type": registry.get("credential_type") or "basic",
                "access_key": registry.get("access_key") or "",
                "access_secret": MASK,
            }
        return out

    @staticmethod
    def _local_registry() -> JsonObject:
        return {
            "id": 0,
            "name": "Local",
            "url": "http://core:8080",
            "type": "harbor",
            "insecure": True,
            "description": "",
            "status": "healthy",
            "creation_time": "0001-01-01T00:00:00.000Z",
            "update_time": "0001-01-01T00:00:00.000Z",
        }

    def _find_registry(self, ident: int) -> JsonObject:
        registry = self._state.registries.get(ident)
        if registry is None:
            raise HarborApiError(404, f"registry {ident} not found")
        return registry

    def _upstream(self, registry: JsonObject) -> RegistryServer | None:
        host = _FIXED_UPSTREAM_HOST.get(registry["type"]) or urlsplit(registry["url"]).netloc
        return self.upstreams.get(host)

    def _session_for(self, server: RegistryServer, registry: JsonObject) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        if registry.get("access_key") or registry.get("access_secret"):
            session.auth = (registry.get("access_key") or "", registry.get("access_secret") or "")
        session.verify = str(server.ca_file) if server.ca_file else True
        return session

    def _healthy(self, registry: JsonObject) -> bool:
        server = self._upstream(registry)
        if server is None:
            return False
        with self._session_for(server, registry) as session:
            try:
                return session.get(f"{server.url}/v2/", timeout=10).status_code == 200
            except requests.RequestException:
                return False

    def _list_registries(self, request: _Request) -> _Answer:
        items = [self._registry_out(r) for _, r in sorted(self._state.registries.items())]
        if "name" in request.query:
            items = [i for i in items if request.query["name"][0] in i["name"]]
        return self._page(request, self._query_filter(request, items))

    def _get_registry(self, request: _Request) -> _Answer:
        return 200, self._registry_out(self._find_registry(int(request.path_params["id"]))), {}

    def _check_registry_fields(self, registry: JsonObject, ident: int | None) -> None:
        name = registry.get("name") or ""
        if not name:
            raise HarborApiError(400, "name is required")
        if len(name) > 64:
            raise HarborApiError(400, "the max length of name is 64")
        url = urlsplit(registry.get("url") or "")
        if url.scheme not in ("http", "https") or not url.netloc:
            raise HarborApiError(400, f"invalid URL: {registry.get('url')!r}")
        for other_id, other in self._state.registries.items():
            if other["name"] == name and other_id != ident:
                raise HarborApiError(409, f"registry {name} already exists")
        if registry.get("credential_type") not in (None, "", "basic", "oauth", "secret"):
            raise HarborApiError(400, f"invalid credential type {registry['credential_type']}")

    def _create_registry(self, request: _Request) -> _Answer:
        body = request.body or {}
        credential = body.get("credential") or {}
        registry = {
            "name": body.get("name") or "",
            "url": (body.get("url") or "").rstrip("/"),
            "type": body.get("type") or "",
            "insecure": bool(body.get("insecure")),
            "description": body.get("description") or "",
            "ca_certificate": body.get("ca_certificate"),
            "credential_type": credential.get("type") or ("basic" if credential else None),
            "access_key": credential.get("access_key"),
            "access_secret": credential.get("access_secret"),
        }
        self._check_registry_fields(registry, None)
        if registry["type"] not in ALL_ADAPTERS:
            raise HarborApiError(400, f"adapter factory for {registry['type']} not found")
        if not self._healthy(registry):
            raise HarborApiError(400, "the registry is unhealthy")
        ident = self._state.new_id("registry")
        registry.update(id=ident, status="healthy", creation_time=_now(), update_time=_now())
        self._state.registries[ident] = registry
        return 201, None, {"Location": f"{BASE}/registries/{ident}"}

    def _update_registry(self, request: _Request) -> _Answer:
        ident = int(request.path_params["id"])
        current = self._find_registry(ident)
        body = request.body or {}
        updated = dict(current)
        for key in (
            "name",
            "description",
            "url",
            "insecure",
            "ca_certificate",
            "access_key",
            "access_secret",
        ):
            if body.get(key) is not None:
                updated[key] = body[key]
        if body.get("credential_type") is not None:
            updated["credential_type"] = body["credential_type"]
        updated["url"] = updated["url"].rstrip("/")
        self._check_registry_fields(updated, ident)
        if not self._healthy(updated):
            raise HarborApiError(400, "the registry is unhealthy")
        updated.update(status="healthy", update_time=_now())
        self._state.registries[ident] = updated
        return 200, None, {}

    def _delete_registry(self, request: _Request) -> _Answer:
        ident = int(request.path_params["id"])
        self._find_registry(ident)
        users = [p["name"] for p in self._state.policies.values() if ident in (p["src_id"], p["dest_id"])]
        if users:
            raise HarborApiError(412, f"the registry {ident} is referenced by policies, cannot delete it")
        proxies = [p["name"] for p in self._state.projects.values() if p.get("registry_id") == ident]
        if proxies:
            raise HarborApiError(412, f"the registry {ident} is referenced by proxy cache projects")
        del self._state.registries[ident]
        return 200, None, {}

    def _ping_registry(self, request: _Request) -> _Answer:
        body = request.body or {}
        registry: JsonObject = {}
        if body.get("id") is not None:
            registry = dict(self._find_registry(int(body["id"])))
        for key in ("type", "url", "insecure", "access_key", "access_secret", "ca_certificate"):
            if body.get(key) is not None:
                registry[key] = body[key]
        if not registry.get("type") or not registry.get("url"):
            raise HarborApiError(400, "type and url are required")
        if not self._healthy(registry):
            raise HarborApiError(400, "the registry is unhealthy")
        return 200, None, {}

    def _adapters(self, request: _Request) -> _Answer:
        return 200, sorted(t for t in ALL_ADAPTERS if t in self.whitelist), {}

    # -- policies -------------------------------------------------------------------------

    def _policy_from_body(self, body: JsonObject) -> JsonObject:
        """`model.Validate` and the handler's conversion: the body *is* the new policy."""
        name = body.get("name") or ""
        if not name:
            raise HarborApiError(400, "empty name")
        src_id = int((body.get("src_registry") or {}).get("id") or 0)
        dest_id = int((body.get("dest_registry") or {}).get("id") or 0)
        if (src_id == 0) == (dest_id == 0):
            raise HarborApiError(
                400,
                "either src_registry or dest_registry should be empty and the other one shouldn't be empty",
            )
        for ident in (src_id, dest_id):
            if ident and ident not in self._state.registries:
                raise HarborApiError(400, f"registry {ident} not found")
        namespace = body.get("dest_namespace") or ""
        if namespace and not _REPOSITORY_PATH.match(namespace):
            raise HarborApiError(400, f"invalid destination namespace: {namespace}")
        if len(name) > POLICY_COLUMNS or len(namespace) > POLICY_COLUMNS:
            raise HarborApiError(500, "internal server error")  # PostgreSQL 22001, see POLICY_COLUMNS
        filters = []
        for item in body.get("filters") or []:
            kind, value, decoration = item.get("type"), item.get("value"), item.get("decoration") or ""
            if kind in ("name", "tag", "resource"):
                if not isinstance(value, str):
                    raise HarborApiError(400, f"{kind} filters should be string type")
                if kind == "resource" and value not in ("image", "artifact"):
                    raise HarborApiError(400, f"invalid resource filter: {value}")
            elif kind == "label":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise HarborApiError(400, "label filters should be []string type")
            else:
                raise HarborApiError(400, "invalid filter type")
            if decoration and kind not in ("tag", "label"):
                raise HarborApiError(400, "only tag and label filter support decoration")
            if decoration not in ("", "matches", "excludes"):
                raise HarborApiError(400, f"invalid filter decoration, :{decoration}")
            filters.append({"type": kind, "value": value, "decoration": decoration})
        trigger = body.get("trigger") or {"type": "manual"}
        kind = trigger.get("type") or "manual"
        if kind not in ("manual", "scheduled", "event_based"):
            raise HarborApiError(400, f"invalid trigger type: {kind}")
        cron = ((trigger.get("trigger_settings") or {}).get("cron")) or ""
        if kind == "scheduled":
            if not cron:
                raise HarborApiError(
                    400, "the cron string cannot be empty when the trigger type is scheduled"
                )
            problem = _cron_error(cron)
            if problem:
                raise HarborApiError(400, f"invalid cron string for scheduled trigger: {cron}: {problem}")
        single = bool(body.get("single_active_replication"))
        if single and kind == "event_based":
            raise HarborApiError(400, "single active replication is not allowed for event_based triggers")
        count = body.get("dest_namespace_replace_count")
        speed = body.get("speed")
        return {
            "name": name,
            "description": body.get("description") or "",
            "src_id": src_id,
            "dest_id": dest_id,
            "dest_namespace": namespace,
            "dest_namespace_replace_count": -1 if count is None else int(count),
            "trigger": {"type": kind, "trigger_settings": {"cron": cron}},
            "filters": filters,
            "deletion": bool(body.get("deletion")),  # replicate_deletion is ignored on write
            "override": bool(body.get("override")),
            "enabled": bool(body.get("enabled")),
            "speed": max(int(speed or 0), 0),
            "copy_by_chunk": bool(body.get("copy_by_chunk")),
            "single_active_replication": single,
        }

    def _policy_out(self, ident: int, policy: JsonObject) -> JsonObject:
        def registry(rid: int) -> JsonObject:
            return self._local_registry() if rid == 0 else self._registry_out(self._state.registries[rid])

        out = {k: v for k, v in policy.items() if k not in ("src_id", "dest_id")}
        out["filters"] = [{k: v for k, v in f.items() if k != "decoration" or v} for f in policy["filters"]]
        out.update(
            id=ident,
            src_registry=registry(policy["src_id"]),
            dest_registry=registry(policy["dest_id"]),
            replicate_deletion=policy["deletion"],
        )
        return out

    def _find_policy(self, ident: int) -> JsonObject:
        policy = self._state.policies.get(ident)
        if policy is None:
            raise HarborApiError(404, f"policy {ident} not found")
        return policy

    def _list_policies(self, request: _Request) -> _Answer:
        items = [self._policy_out(i, p) for i, p in sorted(self._state.policies.items())]
        if "name" in request.query:
            items = [i for i in items if request.query["name"][0] in i["name"]]
        return self._page(request, self._query_filter(request, items))

    def _get_policy(self, request: _Request) -> _Answer:
        ident = int(request.path_params["id"])
        return 200, self._policy_out(ident, self._find_policy(ident)), {}

    def _create_policy(self, request: _Request) -> _Answer:
        policy = self._policy_from_body(request.body or {})
        _check_filters_column(policy["filters"])
        if any(p["name"] == policy["name"] for p in self._state.policies.values()):
            raise HarborApiError(409, f"policy {policy['name']} already exists")
        ident = self._state.new_id("policy")
        policy.update(creation_time=_now(), update_time=_now())
        self._state.policies[ident] = policy
        return 201, None, {"Location": f"{BASE}/replication/policies/{ident}"}

    def _update_policy(self, request: _Request) -> _Answer:
        ident = int(request.path_params["id"])
        current = self._find_policy(ident)
        policy = self._policy_from_body(request.body or {})
        _check_filters_column(policy["filters"])
        if any(p["name"] == policy["name"] for i, p in self._state.policies.items() if i != ident):
            raise HarborApiError(409, f"policy {policy['name']} already exists")
        policy.update(creation_time=current["creation_time"], update_time=_now())
        self._state.policies[ident] = policy
        return 200, None, {}

    def _delete_policy(self, request: _Request) -> _Answer:
        ident = int(request.path_params["id"])
        self._find_policy(ident)
        if any(
            e["policy_id"] == ident and e["status"] == "InProgress" for e in self._state.executions.values()
        ):
            raise HarborApiError(412, f"the policy {ident} has running executions, can not be deleted")
        del self._state.policies[ident]
        for eid in [e for e, ex in self._state.executions.items() if ex["policy_id"] == ident]:
            del self._state.executions[eid]
        return 200, None, {}

    # -- executions -----------------------------------------------------------------------

    def _start_execution(self, request: _Request) -> _Answer:
        ident = int((request.body or {}).get("policy_id") or 0)
        policy = self._state.policies.get(ident)
        if policy is None:
            raise HarborApiError(404, f"policy {ident} not found")
        if not policy["enabled"]:
            raise HarborApiError(412, f"the policy {ident} is disabled")
        # With single_active_replication (Harbor v2.14.0+, goharbor/harbor#21347), a run started
        # while another execution of the policy runs is created and at once marked Error with
        # this message, which the API shows as status Failed / status_text (controller
        # replication/execution.go `Start`, handler/replication.go `convertExecution`, at
        # c50c7ddd6ea4e335a480b49c618281882ab7eec9). Still 201 with its Location.
        skipped = policy["single_active_replication"] and any(
            e["policy_id"] == ident and e["status"] == "InProgress" for e in self._state.executions.values()
        )
        eid = self._state.new_id("execution")
        self._state.executions[eid] = {
            "id": eid,
            "policy_id": ident,
            "status": "InProgress",
            "status_text": "",
            "trigger": "manual",
            "start_time": _now(),
            "total": 0,
            "failed": 0,
            "succeed": 0,
            "in_progress": 0,
            "stopped": 0,
            "_stop": False,
        }
        if skipped:
            self._state.executions[eid].update(status="Failed", status_text=SKIPPED, end_time=_now())
            return 201, None, {"Location": f"{BASE}/replication/executions/{eid}"}
        snapshot = json.loads(json.dumps(policy))
        source = dict(self._state.registries[policy["src_id"]]) if policy["src_id"] else None
        thread = threading.Thread(
            target=self._run_execution,
            args=(eid, snapshot, source),
            name=f"harbor-execution-{eid}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()
        return 201, None, {"Location": f"{BASE}/replication/executions/{eid}"}

    @staticmethod
    def _execution_out(execution: JsonObject) -> JsonObject:
        return {k: v for k, v in execution.items() if not k.startswith("_")}

    def _find_execution(self, ident: int) -> JsonObject:
        execution = self._state.executions.get(ident)
        if execution is None:
            raise HarborApiError(404, f"execution {ident} not found")
        return execution

    def _list_executions(self, request: _Request) -> _Answer:
        # Newest first (Harbor's default, start time descending); `sort=id` is oldest first.
        oldest_first = request.query.get("sort", ["-id"])[0] == "id"
        ordered = sorted(self._state.executions.items(), reverse=not oldest_first)
        items = [self._execution_out(e) for _, e in ordered]
        if "policy_id" in request.query:
            items = [e for e in items if e["policy_id"] == int(request.query["policy_id"][0])]
        if "status" in request.query:
            items = [e for e in items if e["status"] == request.query["status"][0]]
        return self._page(request, items)

    def _get_execution(self, request: _Request) -> _Answer:
        return 200, self._execution_out(self._find_execution(int(request.path_params["id"]))), {}

    def _stop_execution(self, request: _Request) -> _Answer:
        execution = self._find_execution(int(request.path_params["id"]))
        execution["_stop"] = True
        return 200, None, {}

    def _list_tasks(self, request: _Request) -> _Answer:
        eid = int(request.path_params["id"])
        self._find_execution(eid)
        items = [
            {k: v for k, v in t.items() if not k.startswith("_")}
            for _, t in sorted(self._state.tasks.items())
            if t["execution_id"] == eid
        ]
        if "status" in request.query:
            items = [t for t in items if t["status"] == request.query["status"][0]]
        return self._page(request, items)

    def _task_log(self, request: _Request) -> _Answer:
        task = self._state.tasks.get(int(request.path_params["task_id"]))
        if task is None or task["execution_id"] != int(request.path_params["id"]):
            raise HarborApiError(404, "task not found")
        return 200, _Text(task["_log"]), {}

    # -- the replication flow (runs in its own thread) -------------------------------------

    def _finish(self, eid: int, status: str, text: str = "") -> None:
        with self._lock:
            execution = self._state.executions.get(eid)
            if execution is None:
                return
            execution.update(status=status, status_text=text, end_time=_now())

    def _run_execution(self, eid: int, policy: JsonObject, source: JsonObject | None) -> None:
        try:
            self._replicate(eid, policy, source)
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            self._finish(eid, "Failed", "emulator error")

    def _replicate(self, eid: int, policy: JsonObject, source: JsonObject | None) -> None:
        self.release.wait(timeout=_SKOPEO_TIMEOUT)
        if source is None:
            self._finish(eid, "Failed", "push-based replication is not emulated")
            return
        server = self._upstream(source)
        if server is None:
            self._finish(
                eid,
                "Failed",
                f"failed to fetch artifacts: dial tcp: lookup {urlsplit(source['url']).netloc}: no such host",
            )
            return
        names = [f["value"] for f in policy["filters"] if f["type"] == "name"]
        tag_filters = [f for f in policy["filters"] if f["type"] == "tag"]
        labels = [f for f in policy["filters"] if f["type"] == "label"]
        with self._session_for(server, source) as session:
            try:
                candidates = self._candidates(session, server, source, names[0] if names else "")
                resources = []
                for repository in candidates:
                    if not all(doublestar_match(n, repository) for n in names):
                        continue
                    tags = self._upstream_tags(session, server, repository)
                    tags = [t for t in tags if self._tag_selected(t, tag_filters)]
                    if labels:
                        tags = []  # labels exist only on Harbor sources
                    if tags:
                        resources.append((repository, tags))
            except (ValueError, requests.RequestException, RuntimeError) as exc:
                self._finish(eid, "Failed", f"failed to fetch artifacts: {exc}")
                return
        plan = []
        for repository, tags in resources:
            count = policy["dest_namespace_replace_count"]
            # The local Harbor is the destination of a pull: AT_LEAST_TWO components
            # (src/pkg/reg/adapter/harbor/base/adapter.go, SupportedRepositoryPathComponentType).
            destination = replace_namespace(repository, policy["dest_namespace"], count, AT_LEAST_TWO)
            if destination is None:
                depth = len(repository.split("/")) - 1
                reason = (
                    _replace_namespace_error(repository, count)
                    if 0 <= depth < count
                    else f"the destination repository for {repository} contains only 1 path components, "
                    "but the destination registry requires at least 2"
                )
                self._finish(eid, "Failed", reason)
                return
            if self._prepare_project(destination.split("/", 1)[0]):
                plan.append((repository, destination, tags))
        with self._lock:
            task_ids = []
            for repository, destination, tags in plan:
                tid = self._state.new_id("task")
                self._state.tasks[tid] = {
                    "id": tid,
                    "execution_id": eid,
                    "status": "Pending",
                    "job_id": uuid.uuid4().hex[:24],
                    "operation": "copy",
                    "resource_type": "image",
                    "src_resource": f"{repository} [{len(tags)} item(s) in total]",
                    "dst_resource": f"{destination} [{len(tags)} item(s) in total]",
                    "start_time": _now(),
                    "_log": "",
                }
                task_ids.append(tid)
            self._state.executions[eid].update(total=len(plan), in_progress=len(plan))
        for tid, (repository, destination, tags) in zip(task_ids, plan, strict=True):
            with self._lock:
                stop = self._state.executions[eid]["_stop"]
                self._state.tasks[tid]["status"] = "Stopped" if stop else "InProgress"
            if stop:
                self._count(eid, tid, "Stopped")
                continue
            ok, log = self._copy_task(server, source, repository, destination, tags, policy["override"])
            with self._lock:
                self._state.tasks[tid].update(_log=log, end_time=_now())
            self._count(eid, tid, "Succeed" if ok else "Failed")
        with self._lock:
            execution = self._state.executions[eid]
            status = "Failed" if execution["failed"] else "Stopped" if execution["stopped"] else "Succeed"
        self._finish(eid, status)

    def _count(self, eid: int, tid: int, status: str) -> None:
        with self._lock:
            self._state.tasks[tid]["status"] = status
            execution = self._state.executions[eid]
            execution["in_progress"] -= 1
            key = {"Succeed": "succeed", "Failed": "failed", "Stopped": "stopped"}[status]
            execution[key] += 1

    def _candidates(
        self, session: requests.Session, server: RegistryServer, source: JsonObject, name_filter: str
    ) -> list[str]:
        specific = is_specific_path(name_filter)
        if specific is not None:
            return specific
        if source["type"] == "github-ghcr":
            raise RuntimeError("only support specific repository name")
        response = session.get(f"{server.url}/v2/_catalog", params={"n": 1000}, timeout=30)
        response.raise_for_status()
        return list(response.json().get("repositories") or [])

    @staticmethod
    def _upstream_tags(session: requests.Session, server: RegistryServer, repository: str) -> list[str]:
        response = session.get(f"{server.url}/v2/{repository}/tags/list", timeout=30)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("tags") or [])

    @staticmethod
    def _tag_selected(tag: str, filters: list[JsonObject]) -> bool:
        for item in filters:
            matched = doublestar_match(item["value"], tag)
            if matched == (item.get("decoration") == "excludes"):
                return False
        return True

    def _prepare_project(self, name: str) -> bool:
        """Create a missing destination project; False when it is a proxy-cache project."""
        with self._lock:
            for project in self._state.projects.values():
                if project["name"] == name:
                    return not project.get("registry_id")
            if not _PROJECT_NAME.match(name):
                raise ValueError(f"invalid project name {name}")
            self._state.projects[self._state.new_id("project")] = {
                "name": name,
                "registry_id": 0,
                "metadata": {"public": "false"},
                "creation_time": _now(),
                "update_time": _now(),
            }
            return True

    def _digest(self, repository: str, tag: str) -> str | None:
        response = requests.head(
            f"{self.registry.url}/v2/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=30,
        )
        return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None

    def _copy_task(
        self,
        server: RegistryServer,
        source: JsonObject,
        repository: str,
        destination: str,
        tags: list[str],
        override: bool,
    ) -> tuple[bool, str]:
        lines = []
        ok = True
        with (
            self._session_for(server, source) as session,
            tempfile.TemporaryDirectory(prefix="harbor-task-") as tmp,
        ):
            home = Path(tmp)
            (home / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
            authfile = home / "auth.json"
            auths = {}
            if source.get("access_key") or source.get("access_secret"):
                token = f"{source.get('access_key') or ''}:{source.get('access_secret') or ''}".encode()
                auths[server.host] = {"auth": base64.b64encode(token).decode()}
            fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"auths": auths}, handle)
            env = {
                k: v
                for k, v in os.environ.items()
                if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REGISTRY_AUTH_FILE")
            }
            env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home), XDG_CONFIG_HOME=str(home / ".config"))
            src_tls = [f"--src-cert-dir={server.cert_dir}"] if server.tls else ["--src-tls-verify=false"]
            for tag in tags:
                head = session.head(
                    f"{server.url}/v2/{repository}/manifests/{tag}",
                    headers={"Accept": MANIFEST_ACCEPT},
                    timeout=30,
                )
                wanted = head.headers.get("Docker-Content-Digest")
                present = self._digest(destination, tag)
                if present is not None and (present == wanted or not override):
                    lines.append(f"{destination}:{tag} exists at the destination ({present}), skip")
                    continue
                argv = [
                    "skopeo",
                    "--policy",
                    str(home / "policy.json"),
                    "copy",
                    "--all",
                    "--preserve-digests",
                    f"--src-authfile={authfile}",
                    *src_tls,
                    "--dest-tls-verify=false",
                    f"docker://{server.host}/{repository}:{tag}",
                    f"docker://{self.registry.host}/{destination}:{tag}",
                ]
                proc = subprocess.run(
                    argv,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=_SKOPEO_TIMEOUT,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
                if proc.returncode != 0:  # Harbor's transfer stops at the first failure
                    ok = False
                    lines.append(
                        f"copying {repository}:{tag} failed: {proc.stderr.strip().splitlines()[-1:]}"
                    )
                else:
                    lines.append(f"copied {repository}:{tag} to {destination}:{tag}")
                if not ok:
                    break
        return ok, "\n".join(lines) + "\n"

    # -- projects -------------------------------------------------------------------------

    def _project_out(self, ident: int, project: JsonObject) -> JsonObject:
        out: JsonObject = {
            "project_id": ident,
            "owner_id": 1,
            "name": project["name"],
            "creation_time": project["creation_time"],
            "update_time": project["update_time"],
            "deleted": False,
            "owner_name": "admin",
            "togglable": True,
            "current_user_role_id": 1,
            "current_user_role_ids": [1],
            "repo_count": len(self._repositories_of(project["name"])),
            "metadata": dict(project["metadata"]),
            "cve_allowlist": {"id": ident, "project_id": ident, "items": []},
        }
        if project.get("registry_id"):
            out["registry_id"] = project["registry_id"]
        return out

    def _repositories_of(self, project: str) -> list[str]:
        response = requests.get(f"{self.registry.url}/v2/_catalog", params={"n": 1000}, timeout=30)
        response.raise_for_status()
        return [r for r in response.json().get("repositories") or [] if r.startswith(project + "/")]

    def _find_project(self, request: _Request) -> tuple[int, JsonObject]:
        key = request.path_params["project_name_or_id"]
        by_name = (request.headers.get("X-Is-Resource-Name") or "").lower() == "true" or not key.isdigit()
        for ident, project in self._state.projects.items():
            if (project["name"] == key) if by_name else (ident == int(key)):
                return ident, project
        raise HarborApiError(404, f"project {key} not found")

    def _list_projects(self, request: _Request) -> _Answer:
        items = [self._project_out(i, p) for i, p in sorted(self._state.projects.items())]
        if "name" in request.query:
            items = [i for i in items if request.query["name"][0] in i["name"]]
        return self._page(request, self._query_filter(request, items))

    def _get_project(self, request: _Request) -> _Answer:
        return 200, self._project_out(*self._find_project(request)), {}

    def _create_project(self, request: _Request) -> _Answer:
        body = request.body or {}
        name = body.get("project_name") or ""
        if not _PROJECT_NAME.match(name):
            raise HarborApiError(
                400, f"project name is not in lower case or contains illegal characters: {name}"
            )
        if any(p["name"] == name for p in self._state.projects.values()):
            raise HarborApiError(409, f"the project named {name} already exists")
        metadata = {
            "public": "false",
            **{k: v for k, v in (body.get("metadata") or {}).items() if v is not None},
        }
        registry_id = int(body.get("registry_id") or 0)
        if registry_id:
            registry = self._state.registries.get(registry_id)
            if registry is None:
                raise HarborApiError(400, f"registry {registry_id} not found")
            if registry["type"] not in PROXY_CACHE_TYPES:
                raise HarborApiError(400, f"unsupported registry type {registry['type']}")
        ident = self._state.new_id("project")
        if registry_id:
            # Harbor gives a proxy-cache project a "pulled within 7 days" retention policy.
            metadata["retention_id"] = str(self._state.new_id("retention"))
        self._state.projects[ident] = {
            "name": name,
            "registry_id": registry_id,
            "metadata": metadata,
            "creation_time": _now(),
            "update_time": _now(),
        }
        in_location = (request.headers.get("X-Resource-Name-In-Location") or "").lower() == "true"
        return 201, None, {"Location": f"{BASE}/projects/{quote(name) if in_location else ident}"}

    def _delete_project(self, request: _Request) -> _Answer:
        ident, project = self._find_project(request)
        if self._repositories_of(project["name"]):
            raise HarborApiError(
                412, f"the project {project['name']} contains repositories, can not be deleted"
            )
        del self._state.projects[ident]
        return 200, None, {}

    # -- iteration helpers for tests ------------------------------------------------------

    def policies(self) -> Iterator[JsonObject]:
        with self._lock:
            items = [self._policy_out(i, p) for i, p in sorted(self._state.policies.items())]
        yield from items


# `replication_policy.filters` is `varchar(1024)`: goharbor/harbor
# make/migrations/postgresql/0001_initial_schema.up.sql (last changed in 5fa8eb78542b), and no
# later migration alters the column (checked up to c50c7ddd6ea4e335a480b49c618281882ab7eec9).
FILTERS_COLUMN = 1024
# `replication_policy.name` varchar(256) (0001_initial_schema.up.sql) and `dest_namespace`
# varchar(256) (0004_1.8.0_schema.up.sql); Harbor's `Policy.Validate` checks neither length, so
# PostgreSQL refuses a longer value (22001) and `SendError` answers it as a bare 500.
POLICY_COLUMNS = 256


def filters_column(filters: list[JsonObject]) -> str:
    """What Harbor stores in `replication_policy.filters`: `json.Marshal` of the policy's
    `[]*model.Filter` (src/controller/replication/model/model.go `To`), whose fields are
    `type`, `value`, `decoration,omitempty` (src/pkg/reg/model/policy.go) — compact, with Go's
    escaping of `<`, `>`, `&`, U+2028 and U+2029; no filters store ''."""
    if not filters:
        return ""
    items = []
    for item in filters:
        out = {"type": item["type"], "value": item["value"]}
        if item.get("decoration"):
            out["decoration"] = item["decoration"]
        items.append(out)
    text = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _check_filters_column(filters: list[JsonObject]) -> None:
    """PostgreSQL refuses a longer value (22001, "value too long for type character varying
    (1024)"); Harbor maps no code for it, so the insert's or update's error becomes a 500 whose
    body hides it: src/lib/http/error.go `SendError` answers every status >= 500 with code
    UNKNOWN and "internal server error". varchar(n) counts characters, not bytes."""
    if len(filters_column(filters)) > FILTERS_COLUMN:
        raise HarborApiError(500, "internal server error")


SKIPPED = "Execution skipped: active replication still in progress."
ONLY_TWO = "ONLY_TWO"  # model.RepositoryPathComponentTypeOnlyTwo (docker-hub)
AT_LEAST_TWO = "AT_LEAST_TWO"  # model.RepositoryPathComponentTypeAtLeastTwo (harbor: a pull's destination)


def replace_namespace(repository: str, namespace: str, count: int, path_type: str = "") -> str | None:
    """Harbor's flow/stage.go `replaceNamespace`; None where Harbor returns an error (and the
    execution fails). goharbor/harbor src/controller/replication/flow/stage.go at
    c50c7ddd6ea4e335a480b49c618281882ab7eec9: an empty namespace keeps the repository; a
    negative count keeps only the last component; otherwise `count` leading components are
    dropped, and a count above the number of components *before the last* is an error; the
    result is then checked against the destination adapter's path component type."""
    if not namespace:
        return repository
    components = repository.split("/")
    if count < 0:
        prefix = namespace
    elif count > len(components) - 1:
        return None
    else:
        prefix = "/".join([namespace, *components[count:-1]])
    destination = f"{prefix}/{components[-1]}"
    length = len(destination.split("/"))
    if (path_type == ONLY_TWO and length != 2) or (path_type == AT_LEAST_TWO and length < 2):
        return None
    return destination


def _replace_namespace_error(repository: str, count: int) -> str:
    """The message of replaceNamespace's error for a count beyond the repository's depth."""
    components = repository.split("/")
    return (
        f"the source repository {json.dumps(repository)} contains only {len(components) - 1} path "
        f"components [{' '.join(components[:-1])}] excepting the last one, but the destination "
        f"namespace flattening level is {count}"
    )


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Request:
    op: Operation
    path_params: Mapping[str, str]
    query: Mapping[str, list[str]]
    body: Any
    headers: Any


_Answer = tuple[int, Any, dict[str, str]]
