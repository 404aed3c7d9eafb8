"""A contract emulator of the ACR management plane (ARM, api-version 2023-07-01), over HTTPS.

No Microsoft emulator exists for the ACR management API (research/acr.md §4.4), so this one
is written against the official spec: every request is checked with
:mod:`emulators.arm_contract` against
``tests/contracts/azure/containerregistry-2023-07-01.json`` (a verbatim copy of ``shared/azure/``)
(path, ``api-version``, body) and so is every response the emulator sends. A request the spec
rejects is answered 400 with ARM's error body and recorded in :attr:`AcrEmulator.violations`;
a response that breaks the spec is an emulator bug (500, :attr:`AcrEmulator.internal_errors`).
:meth:`AcrEmulator.check` (and leaving the ``with`` block) raise on either, so a test fails
whenever the client sent something the real API would refuse.

Serving (research/acr.md §1.3, §4.1-4.3):

- HTTPS with a ``trustme`` CA (:attr:`AcrEmulator.ca_file`): azure-core refuses bearer tokens
  over plain http. Point the SDK at it with ``base_url=emu.url, connection_verify=emu.ca_file``
  and the static :attr:`AcrEmulator.credential`; every request must carry its bearer token.
- PUT and PATCH answer 201 with ``Azure-AsyncOperation`` and ``Retry-After: 0``; the status
  URL answers 200 with ``{"status": <the provisioning state>}`` (``Creating``/``Updating``)
  once, then ``{"status": "Succeeded"}``, and carries ``Azure-AsyncOperation`` itself; the
  resource is read back with GET. As the real service did in the recordings
  (``tests/contracts/azure/recordings/``: test_acr_cache.yaml #2-#4, #14-#16, #21-#23;
  test_acr_create_replication.yaml #3-#5): bodies of nothing but ``status``.
  Note: azure-core 1.41 treats ``Retry-After: 0`` as absent and falls back to the client's
  ``polling_interval`` (30 s by default), so :meth:`AcrEmulator.client` sets it to 0.
- DELETE of cache rules, credential sets and replications answers 202 with ``Location`` (204
  when the resource does not exist); the Location URL answers 202 once, then 200 with an empty
  body (recordings: test_acr_cache.yaml #26-#27, #29-#30; test_acr_create_replication.yaml
  #19-#21).
- Identities read back with ``type: systemAssigned`` (lower-case s), although the request said
  ``SystemAssigned`` (recording test_acr_cache.yaml #2, #4, #5); ARM enums are case-insensitive.
- importImage answers 202 with ``Location``. The copy really happens, with skopeo, from the
  local ``docker-registry`` standing in for the source (``upstreams``, keyed by
  ``registryUri``; or a registered registry by ``resourceId``) into the registry's own
  ``docker-registry``. The Location URL waits up to half a second, then answers 202 while
  the copy runs, 200 when it is done, or an ARM error when it failed.
- Lists return ``page_size`` items and an absolute ``nextLink`` with ``$skipToken``.

Each registry also gets a login server (:meth:`AcrEmulator.login_host`): an HTTPS front that
answers ``POST /oauth2/exchange`` (our Azure token → a refresh token, as ACR does for
``az acr login``) and forwards everything else to the registry's ``docker-registry``, which
must accept user ``00000000-0000-0000-0000-000000000000`` with :attr:`AcrEmulator.refresh_token`.
It refuses manifest pushes into a cache rule's repository, as ACR does (Azure/acr#845).

Documented behaviour enforced (research/acr.md §1.1, §2, §3), with the emulator's own error
codes where the real ones are not documented:

- Cache rules: at most 1,000 per registry; the source's login server must be one the artifact
  cache supports; a Docker Hub rule needs a credential set (``EnforceDockerAuthentication``,
  the real message); the target repository must not exist (for a wildcard rule: no existing
  repository may match); two static rules may not share a target; wildcard rules may not
  overlap (same path, or one containing the other); a credential set must exist in the same
  registry. Only ``credentialSetResourceId`` can be changed (the PATCH schema has nothing
  else); a PUT that changes source or target of an existing rule is refused. Deleting a rule
  keeps its repository.
- Credential sets: identity ``SystemAssigned`` only (``UserAssigned`` is refused, Azure/acr#790);
  one credential named ``Credential1`` with Key Vault secret URIs; each set gets a principal ID.
  A new set is ``credentialHealth: {status: Unhealthy, errorCode: Forbidden, errorMessage: ...}``
  (the message in the recording's words, naming the set's principal and the vault) until a test
  grants that principal secret ``get`` on the vault (:meth:`AcrEmulator.grant_secret_get`), as
  real ACR answered in test_acr_cache.yaml #2-#12 (never granted there). Health is evaluated
  on every read.
- Cache rules: a PATCH with ``credentialSetResourceId: null`` leaves the credential set in
  place (test_acr_cache.yaml #21: ``az acr cache update --remove-cred-set`` sent null, and the
  rule read back at #24 still had it).
- Imports: ``NoForce`` refuses an existing target tag before copying anything; no import into
  a cache rule's repository (Azure/acr#845); exactly one of ``registryUri`` and ``resourceId``.
- Geo-replications: Premium registries only; not in the home region (whose replication
  exists and cannot be deleted).

UNCONFIRMED and enforced anyway, because a careful client must cope: a credential set's login
server must equal the rule's source login server; a credential set a rule uses cannot be
deleted; a PUT cannot change a credential set's login server.

NOT emulated: pulls through the cache (no content is ever cached), Key Vault itself (a secret
that does not exist still reads as Healthy once access is granted), ``untaggedTargetRepositories``
(recorded as an emulator gap), the preview APIs (ActiveSync, identities on rules: the 2023-07-01
contract has no ``identity`` on a cache rule, so such a body is a contract violation), any other
resource type.

Faults (429, 5xx, reset connections, slow answers) are not emulated here: a
``testbed.faults.FaultProxy`` in front of the ARM server or a login server, serving
:attr:`AcrEmulator.ssl_context`, injects them.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import re
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests
from testbed import RegistryServer, TestbedError, run_skopeo
from testbed.server import EmulatorBug, Handler, HttpServerBase, Listener, reply
from testbed.wire import read_body

from .arm_contract import ArmSpec, Operation

__all__ = ["API_VERSION", "TOKEN_USER", "AcrEmulator", "ArmError", "EmulatorBug", "StaticTokenCredential"]

API_VERSION = "2023-07-01"
SPEC = Path(__file__).resolve().parents[1] / "contracts" / "azure" / "containerregistry-2023-07-01.json"
TOKEN_USER = "00000000-0000-0000-0000-000000000000"
MAX_CACHE_RULES = 1000
PROVIDER = "Microsoft.ContainerRegistry"
# research/acr.md §1.1: hosts the artifact cache serves.
CACHE_UPSTREAMS = frozenset(
    {
        "docker.io",
        "dhi.io",
        "mcr.microsoft.com",
        "public.ecr.aws",
        "ghcr.io",
        "quay.io",
        "registry.k8s.io",
        "gcr.io",
        "nvcr.io",
        "registry.redhat.io",
        "registry.access.redhat.com",
    }
)
_KEY_VAULT_SECRET = re.compile(
    r"^https://[A-Za-z0-9-]+\.vault\.azure\.net/secrets/[A-Za-z0-9-]+(/[0-9a-f]{32})?/?$"
)
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_MANIFEST_PUT = re.compile(r"^/v2/(?P<repo>.+)/manifests/[^/]+$")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer"}
    | {"transfer-encoding", "upgrade", "expect", "content-length"}
)
# The application ID of ACR's first-party identity, as Key Vault named it in the recorded
# Forbidden message (test_acr_cache.yaml #2).
_ACR_APP_ID = "b86a8aec-b2f7-4aad-b8dd-2b0122c0eaca"
_ASYNC_POLL = re.compile(r"^(?P<resource>/subscriptions/.+)/operationStatuses/(?P<op>[^/]+)$", re.IGNORECASE)
_LOCATION_POLL = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/locations/[^/]+"
    r"/operationResults/(?P<op>[^/]+)$",
    re.IGNORECASE,
)

Json = Any


class ArmError(Exception):
    """An ARM error answer: `{"error": {"code", "message"}}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class StaticTokenCredential:
    """A TokenCredential that always gives the same token (azure-identity has none)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    operation: str  # operationId, or "poll"
    status: int
    body: Json = None


@dataclass
class _Registry:
    subscription: str
    resource_group: str
    name: str
    sku: str
    location: str
    backend: RegistryServer
    created: str
    rules: dict[str, Json] = field(default_factory=dict)
    credential_sets: dict[str, Json] = field(default_factory=dict)
    replications: dict[str, Json] = field(default_factory=dict)
    proxy: Listener | None = None  # its login server

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/registries/{self.name}"
        )

    @property
    def login_server(self) -> str:
        return f"{self.name.lower()}.azurecr.io"


@dataclass
class _Job:
    """A long-running operation: polls left before it is done, or a background copy."""

    kind: str  # "async" (Azure-AsyncOperation) or "location"
    polls_left: int = 1
    pending: str = "InProgress"  # what an async status poll says while running
    done: threading.Event = field(default_factory=threading.Event)
    error: ArmError | None = None
    finish: Callable[[], None] | None = None
    final_status: int = 200


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _system_data() -> Json:
    """ARM's `systemData`, which every resource in the recordings carries (common-types v5)."""
    now = _now()
    return {
        "createdBy": "test@example.com",
        "createdByType": "User",
        "createdAt": now,
        "lastModifiedBy": "test@example.com",
        "lastModifiedByType": "User",
        "lastModifiedAt": now,
    }


def _covers(rule_target: str, repository: str) -> bool:
    if rule_target == "*":
        return True
    if rule_target.endswith("/*"):
        return repository.startswith(rule_target[:-1])
    return rule_target == repository


def _wildcards_overlap(a: str, b: str) -> bool:
    """research/acr.md §1.1: same target path, or one path containing the other."""
    pa, pb = a[:-1], b[:-1]  # "library/*" -> "library/", "*" -> ""
    return pa.startswith(pb) or pb.startswith(pa)


# The methods ARM and the login servers answer; any other gets http.server's 501.
ARM_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class AcrEmulator(HttpServerBase[Call]):
    """The ACR management plane and login servers; see the module docstring.

    ``upstreams`` maps an import ``registryUri`` (``docker.io``…) to the local registry that
    stands in for it. Register registries with :meth:`add_registry`.
    """

    refresh_token = "acr-refresh-7f3c0a9e51d2"
    title = "ACR emulator"
    violation_label = "client request violates the spec"

    def __init__(
        self,
        *,
        upstreams: Mapping[str, RegistryServer] | None = None,
        token: str = "emulator-aad-token-5b2e91",
        page_size: int = 100,
        spec: Path = SPEC,
    ) -> None:
        # Every server (ARM and the login servers) serves a certificate of one CA, `ca_file`.
        super().__init__(name="acr-arm-emulator", tls=True, methods=ARM_METHODS)
        self.spec = ArmSpec(spec)
        self.upstreams = dict(upstreams or {})
        self.credential = StaticTokenCredential(token)
        self.page_size = page_size
        self.exchanges = 0
        self.login_requests: list[tuple[str, str]] = []  # (method, path) at the login servers
        self._registries: dict[tuple[str, str, str], _Registry] = {}
        self._jobs: dict[str, _Job] = {}
        self._granted: set[tuple[str, str]] = set()  # (Key Vault name, principal ID): grant_secret_get

    # ----------------------------------------------------------------- lifecycle

    @property
    def calls(self) -> list[Call]:
        """The ARM calls, in order: the request log."""
        return self.requests

    def client(self, subscription: str, **kwargs: Any) -> Any:
        """A ContainerRegistryManagementClient pointed here; retries off and no polling delay."""
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        kwargs.setdefault("retry_total", 0)
        kwargs.setdefault("api_version", API_VERSION)
        # azure-core reads `Retry-After: 0` as "no header" (`if delay:` in base_polling's
        # _extract_delay) and then waits polling_interval, 30 s by default.
        kwargs.setdefault("polling_interval", 0)
        base_url = kwargs.pop("base_url", self.url)  # a fault proxy in front, say
        return ContainerRegistryManagementClient(
            self.credential, subscription, base_url=base_url, connection_verify=str(self.ca_file), **kwargs
        )

    def add_registry(
        self,
        subscription: str,
        resource_group: str,
        name: str,
        *,
        backend: RegistryServer,
        sku: str = "Premium",
        location: str = "westeurope",
    ) -> str:
        """Register a registry whose content lives in `backend`; returns its login server name."""
        assert backend.users.get(TOKEN_USER) == self.refresh_token, "backend must accept the refresh token"
        registry = _Registry(subscription, resource_group, name, sku, location, backend, _now())
        registry.proxy = self.listen(lambda h: self._handle_login(registry, h), f"acr-login-{name}")
        if sku == "Premium":  # the home region's replication always exists
            registry.replications[location] = self._replication_json(registry, location, location, {})
        with self._lock:
            self._registries[(subscription.lower(), resource_group.lower(), name.lower())] = registry
        return registry.login_server

    def login_host(self, name: str) -> str:
        """`127.0.0.1:PORT` of a registry's login server (HTTPS with :attr:`ca_file`)."""
        proxy = self._by_name(name).proxy
        assert proxy is not None
        return proxy.host

    def reset(self) -> None:
        """Forget every registry's cache rules, credential sets and added replications, and the
        calls: a fresh start for the next scenario without new servers (registries stay)."""
        with self._lock:
            for registry in self._registries.values():
                registry.rules.clear()
                registry.credential_sets.clear()
                home = registry.replications.get(registry.location)
                registry.replications = {registry.location: home} if home is not None else {}
            self.calls.clear()

    @property
    def writes(self) -> list[Call]:
        """Calls that could change something (PUT, PATCH, DELETE, POST)."""
        with self._lock:
            return [c for c in self.calls if c.method in ("PUT", "PATCH", "DELETE", "POST")]

    def operations(self) -> list[str]:
        with self._lock:
            return [c.operation for c in self.calls]

    # ----------------------------------------------------------------- state for tests

    def _by_name(self, name: str) -> _Registry:
        with self._lock:
            found = [r for r in self._registries.values() if r.name.lower() == name.lower()]
        assert len(found) == 1, f"no single registry named {name}"
        return found[0]

    def cache_rules(self, name: str) -> dict[str, Json]:
        return json.loads(json.dumps(self._by_name(name).rules))  # type: ignore[no-any-return]

    def backend(self, name: str) -> RegistryServer:
        """The docker-registry holding a registry's content (to stand in for a cached pull)."""
        return self._by_name(name).backend

    def credential_sets(self, name: str) -> dict[str, Json]:
        return json.loads(json.dumps(self._by_name(name).credential_sets))  # type: ignore[no-any-return]

    def replications(self, name: str) -> dict[str, Json]:
        return json.loads(json.dumps(self._by_name(name).replications))  # type: ignore[no-any-return]

    def seed_cache_rule(self, name: str, rule: str, source: str, target: str) -> None:
        """Put a cache rule straight into the state, skipping the API (bulk set-up only)."""
        registry = self._by_name(name)
        with self._lock:
            registry.rules[rule] = self._rule_json(registry, rule, source, target, None, "Succeeded")

    # ----------------------------------------------------------------- ARM plumbing

    def handle(self, handler: Handler) -> None:
        """An ARM request."""
        op_name = "?"
        body: Json = None
        try:
            raw = read_body(handler)
            url = urlsplit(handler.path)
            query = parse_qs(url.query, keep_blank_values=True)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            status, headers, out, op_name = self._arm_request(handler, url.path, query, body)
        except Exception:
            with self._lock:
                self.internal_errors.append(traceback.format_exc())
            status, headers, out = (
                500,
                [],
                {"error": {"code": "InternalServerError", "message": "emulator bug"}},
            )
        self.record(Call(handler.command, urlsplit(handler.path).path, op_name, status, body))
        data = json.dumps(out).encode() if out is not None else b""
        headers = [*headers, ("x-ms-request-id", str(uuid.uuid4()))]
        if out is not None:
            headers.append(("Content-Type", "application/json; charset=utf-8"))
        reply(handler, status, headers, data)

    def _violation(self, what: str, errors: list[str]) -> tuple[int, list[tuple[str, str]], Json]:
        self.violation(f"{what}: {'; '.join(errors)}")
        return 400, [], {"error": {"code": "InvalidRequestContent", "message": "; ".join(errors)}}

    def _arm_request(
        self, handler: Handler, path: str, query: dict[str, list[str]], body: Json
    ) -> tuple[int, list[tuple[str, str]], Json, str]:
        method = handler.command
        what = f"{method} {path}"
        if handler.headers.get("Authorization") != f"Bearer {self.credential.token}":
            status, headers, out = 401, [], {"error": {"code": "AuthenticationFailed", "message": "no token"}}
            return status, headers, out, "auth"
        if isinstance(body, str):
            return (*self._violation(what, ["the body is not JSON"]), "?")
        if query.get("api-version") != [API_VERSION]:
            errors = [
                f"api-version must be {API_VERSION} (the spec this emulator speaks), "
                f"got {query.get('api-version')}"
            ]
            return (*self._violation(what, errors), "?")
        poll = _ASYNC_POLL.match(path) or _LOCATION_POLL.match(path)
        if poll and method == "GET":
            status, headers, out = self._poll(poll.group("op"), path)
            return status, headers, out, "poll"
        found = self.spec.match(method, path)
        if found is None:
            return (*self._violation(what, ["no operation of the spec has this method and path"]), "?")
        op, params = found
        errors = self.spec.request_errors(op, params, query, body)
        if errors:
            return (*self._violation(f"{op.operation_id} {what}", errors), op.operation_id)
        try:
            status, headers, out = self._operation(op, params, query, body)
        except ArmError as exc:
            status, headers, out = exc.status, [], {"error": {"code": exc.code, "message": exc.message}}
        problems = self.spec.response_errors(op, status, out, dict(headers))
        if problems:
            raise EmulatorBug(f"{op.operation_id} answer breaks the spec: {problems}\n{out!r}")
        return status, headers, out, op.operation_id

    def _operation(
        self, op: Operation, params: dict[str, str], query: dict[str, list[str]], body: Json
    ) -> tuple[int, list[tuple[str, str]], Json]:
        key = (
            params["subscriptionId"].lower(),
            params["resourceGroupName"].lower(),
            params["registryName"].lower(),
        )
        with self._lock:
            registry = self._registries.get(key)
            if registry is None:
                raise ArmError(404, "ResourceNotFound", f"registry {params['registryName']} was not found")
            handler = getattr(self, "_op_" + op.operation_id.lower(), None)
            if handler is None:
                raise EmulatorBug(f"{op.operation_id} is not emulated")
            return handler(registry, params, query, body)  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- LRO

    def _start_job(
        self, registry: _Registry, job: _Job, resource_id: str | None = None
    ) -> list[tuple[str, str]]:
        op_id = str(uuid.uuid4())
        self._jobs[op_id] = job
        if job.kind == "async":
            resource = quote(resource_id or registry.id)
            url = f"{self.url}{resource}/operationStatuses/{op_id}?api-version={API_VERSION}"
            return [("Azure-AsyncOperation", url), ("Retry-After", "0")]
        url = (
            f"{self.url}/subscriptions/{registry.subscription}/resourceGroups/{registry.resource_group}"
            f"/providers/{PROVIDER}/locations/{registry.location}/operationResults/{op_id}?api-version={API_VERSION}"
        )
        return [("Location", url), ("Retry-After", "0")]

    def _poll(self, op_id: str, path: str) -> tuple[int, list[tuple[str, str]], Json]:
        with self._lock:
            job = self._jobs.get(op_id)
        if job is None:
            raise ArmError(404, "OperationNotFound", f"operation {op_id} is unknown")
        if not job.done.is_set():
            job.done.wait(0.5)  # a background copy: wait a little instead of spinning
        with self._lock:
            running = not job.done.is_set() or job.polls_left > 0
            if job.done.is_set() and job.polls_left > 0:
                job.polls_left -= 1
            if not running and job.finish is not None:
                job.finish()
                job.finish = None
        retry = [("Retry-After", "0")]
        if job.kind == "async":
            # The recordings' status bodies hold `status` only, the provisioning state while
            # running ("Creating", "Updating"), and the poll repeats Azure-AsyncOperation.
            status = job.pending if running else ("Failed" if job.error else "Succeeded")
            out: Json = {"status": status}
            if job.error and not running:
                out["error"] = {"code": job.error.code, "message": job.error.message}
            return 200, [*retry, ("Azure-AsyncOperation", f"{self.url}{path}?api-version={API_VERSION}")], out
        if running:
            return 202, retry, None
        if job.error is not None:
            error = {"error": {"code": job.error.code, "message": job.error.message}}
            problems = self.spec.error_body_errors(error)
            if problems:
                raise EmulatorBug(f"poll error body breaks ErrorResponse: {problems}")
            return job.error.status, [], error
        return job.final_status, [], None

    def _accepted_put(
        self, registry: _Registry, resource_id: str, finish: Callable[[], None], out: Json
    ) -> tuple[int, list[tuple[str, str]], Json]:
        state = (out.get("properties") or {}).get("provisioningState") if isinstance(out, dict) else None
        job = _Job("async", finish=finish, pending=str(state or "Updating"))
        job.done.set()
        return 201, self._start_job(registry, job, resource_id), out

    def _accepted_delete(
        self, registry: _Registry, finish: Callable[[], None]
    ) -> tuple[int, list[tuple[str, str]], Json]:
        # Recordings: the Location URL ends with 200 and an empty body, not 204.
        job = _Job("location", finish=finish, final_status=200)
        job.done.set()
        return 202, self._start_job(registry, job), None

    # ----------------------------------------------------------------- registries

    def _op_registries_get(self, registry: _Registry, params: dict[str, str], query: Any, body: Json) -> Any:
        return (
            200,
            [],
            {
                "id": registry.id,
                "name": registry.name,
                "type": f"{PROVIDER}/registries",
                "location": registry.location,
                "tags": {},
                "sku": {"name": registry.sku, "tier": registry.sku},
                "properties": {
                    "loginServer": registry.login_server,
                    "creationDate": registry.created,
                    "provisioningState": "Succeeded",
                    "adminUserEnabled": False,
                    "publicNetworkAccess": "Enabled",
                },
            },
        )

    def _list(
        self, items: list[Json], path: str, query: dict[str, list[str]]
    ) -> tuple[int, list[tuple[str, str]], Json]:
        start = int((query.get("$skipToken") or ["0"])[0])
        page = items[start : start + self.page_size]
        out: Json = {"value": page}
        if start + self.page_size < len(items):
            out["nextLink"] = (
                f"{self.url}{quote(path)}?api-version={API_VERSION}&$skipToken={start + self.page_size}"
            )
        return 200, [], out

    # ----------------------------------------------------------------- cache rules

    def _rule_json(
        self, registry: _Registry, name: str, source: str, target: str, credential_set: str | None, state: str
    ) -> Json:
        properties: Json = {
            "sourceRepository": source,
            "targetRepository": target,
            "creationDate": _now(),
            "provisioningState": state,
        }
        if credential_set:
            properties["credentialSetResourceId"] = credential_set
        return {
            "id": f"{registry.id}/cacheRules/{name}",
            "name": name,
            "type": f"{PROVIDER}/registries/cacheRules",
            "systemData": _system_data(),
            "properties": properties,
        }

    def _op_cacherules_list(
        self, registry: _Registry, params: Any, query: dict[str, list[str]], body: Json
    ) -> Any:
        return self._list(list(registry.rules.values()), f"{registry.id}/cacheRules", query)

    def _op_cacherules_get(self, registry: _Registry, params: dict[str, str], query: Any, body: Json) -> Any:
        rule = registry.rules.get(params["cacheRuleName"])
        if rule is None:
            raise ArmError(404, "ResourceNotFound", f"cache rule {params['cacheRuleName']} was not found")
        return 200, [], rule

    def _credential_set_for(self, registry: _Registry, resource_id: str, source_host: str) -> str:
        prefix = f"{registry.id}/credentialSets/".lower()
        if not resource_id.lower().startswith(prefix):
            raise ArmError(
                400, "InvalidCredentialSet", f"{resource_id} is not a credential set of this registry"
            )
        found = registry.credential_sets.get(resource_id[len(prefix) :])
        if found is None:
            raise ArmError(404, "CredentialSetNotFound", f"credential set {resource_id} was not found")
        login = found["properties"]["loginServer"]
        if login != source_host:
            raise ArmError(
                400,
                "CredentialSetLoginServerMismatch",
                f"credential set is for {login}, the rule pulls from {source_host}",
            )
        return resource_id

    def _repositories(self, registry: _Registry) -> list[str]:
        """Repositories with content in the registry (the catalog, then each repo's tags)."""
        repositories: list[str] = []
        url: str | None = f"{registry.backend.url}/v2/_catalog?n=100"
        while url:
            response = requests.get(url, auth=(TOKEN_USER, self.refresh_token), timeout=10)
            response.raise_for_status()
            repositories += response.json().get("repositories") or []
            link = response.links.get("next", {}).get("url")
            url = f"{registry.backend.url}{link}" if link else None
        return [r for r in repositories if self._tags(registry, r)]

    def _tags(self, registry: _Registry, repository: str) -> list[str]:
        backend = registry.backend
        response = requests.get(
            f"{backend.url}/v2/{repository}/tags/list", auth=(TOKEN_USER, self.refresh_token), timeout=10
        )
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("tags") or [])

    def _op_cacherules_create(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        name = params["cacheRuleName"]
        properties = body.get("properties") or {}
        source = properties.get("sourceRepository")
        target = properties.get("targetRepository")
        if not source or not target:
            raise ArmError(400, "InvalidParameter", "sourceRepository and targetRepository are required")
        host = source.split("/", 1)[0]
        if host not in CACHE_UPSTREAMS and not host.endswith((".azurecr.io", ".pkg.dev")):
            raise ArmError(400, "UnsupportedUpstream", f"{host} is not a supported upstream registry")
        wildcard = target == "*" or target.endswith("/*")
        if wildcard != (source.endswith("/*")):
            raise ArmError(400, "InvalidParameter", "a wildcard must end both source and target repository")
        path = target[:-2] if target.endswith("/*") else target
        if target != "*" and not _REPOSITORY.match(path):
            raise ArmError(400, "InvalidParameter", f"{target} is not a valid repository")
        credential = properties.get("credentialSetResourceId")
        if credential:
            credential = self._credential_set_for(registry, credential, host)
        elif host == "docker.io":
            raise ArmError(
                400,
                "EnforceDockerAuthentication",
                "Cannot create cache rule pointing to Docker Hub without credentials",
            )
        existing = registry.rules.get(name)
        if existing is not None:
            old = existing["properties"]
            if (old["sourceRepository"], old["targetRepository"]) != (source, target):
                raise ArmError(
                    409, "CacheRuleImmutable", f"cache rule {name}: only the credential set can change"
                )
        else:
            if len(registry.rules) >= MAX_CACHE_RULES:
                raise ArmError(
                    409, "QuotaExceeded", f"a registry can have at most {MAX_CACHE_RULES} cache rules"
                )
            for other in registry.rules.values():
                theirs = other["properties"]["targetRepository"]
                their_wildcard = theirs == "*" or theirs.endswith("/*")
                if not wildcard and not their_wildcard and theirs == target:
                    raise ArmError(
                        409, "CacheRuleConflict", f"cache rule {other['name']} already targets {target}"
                    )
                if wildcard and their_wildcard and _wildcards_overlap(target, theirs):
                    raise ArmError(
                        409, "CacheRuleConflict", f"{target} overlaps the wildcard rule {other['name']}"
                    )
            # Real ACR refuses a rule over a repository that exists, static or wildcard (an ACR
            # maintainer: https://github.com/Azure/acr/issues/789); the codes are those real ACR
            # answered: TargetRepositoryAlreadyPresentInRegistry ("Cache rules cannot be created
            # for existing repositories in registry", Azure/ARO-HCP#2639) and, for a wildcard,
            # TargetRepositoryPrefixMatchesExistingRegistries (Azure/ARO-HCP#5176). Deleting a
            # rule keeps its repository, so this also refuses re-creating a rule that cached.
            taken = (
                [r for r in self._repositories(registry) if _covers(target, r)]
                if wildcard
                else ([target] if self._tags(registry, target) else [])
            )
            if taken:
                code = (
                    "TargetRepositoryPrefixMatchesExistingRegistries"
                    if wildcard
                    else "TargetRepositoryAlreadyPresentInRegistry"
                )
                raise ArmError(409, code, f"repository {taken[0]} already exists in the registry")
        rule = self._rule_json(
            registry, name, source, target, credential, "Creating" if existing is None else "Updating"
        )
        registry.rules[name] = rule

        def finish() -> None:
            rule["properties"]["provisioningState"] = "Succeeded"

        return self._accepted_put(registry, rule["id"], finish, json.loads(json.dumps(rule)))

    def _op_cacherules_update(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        name = params["cacheRuleName"]
        rule = registry.rules.get(name)
        if rule is None:
            raise ArmError(404, "ResourceNotFound", f"cache rule {name} was not found")
        properties = body.get("properties") or {}
        credential = properties.get("credentialSetResourceId")
        # null does not remove the credential set: real ACR answered the PATCH
        # `{"properties": {"credentialSetResourceId": null}}` 201 and kept it (recording
        # test_acr_cache.yaml #21 and the GET at #24).
        if credential is not None:
            host = rule["properties"]["sourceRepository"].split("/", 1)[0]
            rule["properties"]["credentialSetResourceId"] = self._credential_set_for(
                registry, credential, host
            )
        rule["properties"]["provisioningState"] = "Updating"

        def finish() -> None:
            rule["properties"]["provisioningState"] = "Succeeded"

        return self._accepted_put(registry, rule["id"], finish, json.loads(json.dumps(rule)))

    def _op_cacherules_delete(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        name = params["cacheRuleName"]
        if name not in registry.rules:
            return 204, [], None
        registry.rules[name]["properties"]["provisioningState"] = "Deleting"
        return self._accepted_delete(registry, lambda: registry.rules.pop(name, None))

    # ----------------------------------------------------------------- credential sets

    def _op_credentialsets_list(
        self, registry: _Registry, params: Any, query: dict[str, list[str]], body: Json
    ) -> Any:
        found = [self._with_health(registry, item) for item in registry.credential_sets.values()]
        return self._list(found, f"{registry.id}/credentialSets", query)

    def _op_credentialsets_get(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        found = registry.credential_sets.get(params["credentialSetName"])
        if found is None:
            raise ArmError(
                404, "ResourceNotFound", f"credential set {params['credentialSetName']} was not found"
            )
        return 200, [], self._with_health(registry, found)

    def _auth_credentials(self, credentials: Json) -> Json:
        if not isinstance(credentials, list) or len(credentials) != 1:
            raise ArmError(400, "InvalidParameter", "give exactly one auth credential")
        (credential,) = credentials
        if credential.get("name") != "Credential1":
            raise ArmError(400, "InvalidParameter", "the auth credential must be named Credential1")
        for key in ("usernameSecretIdentifier", "passwordSecretIdentifier"):
            if not _KEY_VAULT_SECRET.match(str(credential.get(key) or "")):
                raise ArmError(400, "InvalidParameter", f"{key} must be a Key Vault secret URI")
        return [dict(credential)]

    def grant_secret_get(self, vault: str, principal_id: str) -> None:
        """Let `principal_id` get the secrets of Key Vault `vault` (its name, `mycompany-kv`):
        what a role assignment ('Key Vault Secrets User') or an access policy does in Azure."""
        with self._lock:
            self._granted.add((vault.lower(), principal_id))

    def _with_health(self, registry: _Registry, found: Json) -> Json:
        """The set as read now: each credential's health from the grants (see the docstring).

        The Unhealthy answer is the one real ACR gave before access was granted (recording
        test_acr_cache.yaml #2-#12): errorCode `Forbidden` and Key Vault's message, which names
        the set's principal (oid) and the vault with the registry's location.
        """
        principal = found["identity"]["principalId"]
        tenant = found["identity"]["tenantId"]
        for credential in found["properties"]["authCredentials"]:
            vaults = [
                urlsplit(str(credential[key])).hostname or ""
                for key in ("usernameSecretIdentifier", "passwordSecretIdentifier")
            ]
            denied = [
                v.split(".", 1)[0]
                for v in vaults
                if (v.split(".", 1)[0].lower(), principal) not in self._granted
            ]
            if not denied:
                credential["credentialHealth"] = {"status": "Healthy"}
                continue
            credential["credentialHealth"] = {
                "status": "Unhealthy",
                "errorCode": "Forbidden",
                "errorMessage": (
                    "The user, group or application 'name=microsoft.containerregistry/registries;"
                    f"appid={_ACR_APP_ID};oid={principal};iss=https://sts.windows.net/{tenant}/' does not "
                    f"have secrets get permission on key vault '{denied[0]};location={registry.location}'. "
                    "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
                ),
            }
        return found

    def _op_credentialsets_create(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        name = params["credentialSetName"]
        identity = body.get("identity") or {}
        if identity.get("type") != "SystemAssigned":
            raise ArmError(
                400,
                "InvalidIdentityType",
                f"credential sets do not support creation of '{identity.get('type')}' resource identity",
            )
        properties = body.get("properties") or {}
        login = properties.get("loginServer")
        if not login:
            raise ArmError(400, "InvalidParameter", "loginServer is required")
        credentials = self._auth_credentials(properties.get("authCredentials"))
        existing = registry.credential_sets.get(name)
        if existing is not None and existing["properties"]["loginServer"] != login:
            raise ArmError(
                409, "CredentialSetImmutable", "the login server of a credential set cannot change"
            )
        principal = existing["identity"]["principalId"] if existing else str(uuid.uuid4())
        found = {
            "id": f"{registry.id}/credentialSets/{name}",
            "name": name,
            "type": f"{PROVIDER}/registries/credentialSets",
            "systemData": _system_data(),
            "identity": {
                # Sent as SystemAssigned, read back as systemAssigned (recording
                # test_acr_cache.yaml #2, #4, #5).
                "type": "systemAssigned",
                "principalId": principal,
                "tenantId": str(uuid.UUID(int=7)),
            },
            "properties": {
                "loginServer": login,
                "authCredentials": credentials,
                "creationDate": _now(),
                "provisioningState": "Creating" if existing is None else "Updating",
            },
        }
        registry.credential_sets[name] = found

        def finish() -> None:
            found["properties"]["provisioningState"] = "Succeeded"

        out = json.loads(json.dumps(self._with_health(registry, found)))
        return self._accepted_put(registry, found["id"], finish, out)

    def _op_credentialsets_update(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        name = params["credentialSetName"]
        found = registry.credential_sets.get(name)
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"credential set {name} was not found")
        identity = body.get("identity")
        if identity is not None and identity.get("type") != "SystemAssigned":
            raise ArmError(
                400, "InvalidIdentityType", "credential sets support SystemAssigned identities only"
            )
        credentials = (body.get("properties") or {}).get("authCredentials")
        if credentials is not None:
            found["properties"]["authCredentials"] = self._auth_credentials(credentials)
        found["properties"]["provisioningState"] = "Updating"

        def finish() -> None:
            found["properties"]["provisioningState"] = "Succeeded"

        out = json.loads(json.dumps(self._with_health(registry, found)))
        return self._accepted_put(registry, found["id"], finish, out)

    def _op_credentialsets_delete(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        name = params["credentialSetName"]
        found = registry.credential_sets.get(name)
        if found is None:
            return 204, [], None
        users = [
            r["name"]
            for r in registry.rules.values()
            if str(r["properties"].get("credentialSetResourceId", "")).lower() == found["id"].lower()
        ]
        if users:
            raise ArmError(
                409, "CredentialSetInUse", f"credential set {name} is used by cache rule {users[0]}"
            )
        found["properties"]["provisioningState"] = "Deleting"
        return self._accepted_delete(registry, lambda: registry.credential_sets.pop(name, None))

    # ----------------------------------------------------------------- replications

    def _replication_json(
        self, registry: _Registry, name: str, location: str, tags: Mapping[str, str]
    ) -> Json:
        return {
            "id": f"{registry.id}/replications/{name}",
            "name": name,
            "type": f"{PROVIDER}/registries/replications",
            "location": location,
            "tags": dict(tags),
            "systemData": _system_data(),
            "properties": {
                "provisioningState": "Succeeded",
                "status": {"displayStatus": "Ready", "timestamp": _now()},
                "regionEndpointEnabled": True,
                "zoneRedundancy": "Disabled",
            },
        }

    def _op_replications_list(
        self, registry: _Registry, params: Any, query: dict[str, list[str]], body: Json
    ) -> Any:
        if registry.sku != "Premium":
            raise ArmError(400, "RegistrySkuNotSupported", "geo-replication needs the Premium SKU")
        return self._list(list(registry.replications.values()), f"{registry.id}/replications", query)

    def _op_replications_get(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        found = registry.replications.get(params["replicationName"])
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"replication {params['replicationName']} was not found")
        return 200, [], found

    def _op_replications_create(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        if registry.sku != "Premium":
            raise ArmError(
                400,
                "RegistrySkuNotSupported",
                f"geo-replication needs the Premium SKU; {registry.name} is {registry.sku}",
            )
        name = params["replicationName"]
        location = str(body["location"]).lower().replace(" ", "")
        if location == registry.location and name != registry.location:
            raise ArmError(
                409, "ReplicationAlreadyExists", f"the registry's home region {location} is replicated"
            )
        found = self._replication_json(registry, name, location, body.get("tags") or {})
        found["properties"]["provisioningState"] = "Creating"
        # No displayStatus until the replica is ready (recording test_acr_create_replication.yaml
        # #3: `status: {timestamp}` in the 201; `displayStatus: Ready` from the GET at #6).
        found["properties"]["status"] = {"timestamp": _now()}
        enabled = (body.get("properties") or {}).get("regionEndpointEnabled")
        if enabled is not None:
            found["properties"]["regionEndpointEnabled"] = enabled
        registry.replications[name] = found

        def finish() -> None:
            found["properties"]["provisioningState"] = "Succeeded"
            found["properties"]["status"] = {"displayStatus": "Ready", "timestamp": _now()}

        return self._accepted_put(registry, found["id"], finish, json.loads(json.dumps(found)))

    def _op_replications_update(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        found = registry.replications.get(params["replicationName"])
        if found is None:
            raise ArmError(404, "ResourceNotFound", f"replication {params['replicationName']} was not found")
        if "tags" in body:
            found["tags"] = dict(body["tags"] or {})
        enabled = (body.get("properties") or {}).get("regionEndpointEnabled")
        if enabled is not None:
            found["properties"]["regionEndpointEnabled"] = enabled
        # "Updating" until the status poll says Succeeded (recording
        # test_acr_create_replication.yaml #14-#16).
        found["properties"]["provisioningState"] = "Updating"

        def finish() -> None:
            found["properties"]["provisioningState"] = "Succeeded"

        return self._accepted_put(registry, found["id"], finish, json.loads(json.dumps(found)))

    def _op_replications_delete(
        self, registry: _Registry, params: dict[str, str], query: Any, body: Json
    ) -> Any:
        name = params["replicationName"]
        if name not in registry.replications:
            return 204, [], None
        if registry.replications[name]["location"] == registry.location:
            raise ArmError(
                400, "CannotDeleteHomeReplication", "the home region's replication cannot be deleted"
            )
        return self._accepted_delete(registry, lambda: registry.replications.pop(name, None))

    # ----------------------------------------------------------------- imports

    def _op_registries_importimage(self, registry: _Registry, params: Any, query: Any, body: Json) -> Any:
        source = body["source"]
        if bool(source.get("registryUri")) == bool(source.get("resourceId")):
            raise ArmError(
                400, "InvalidParameter", "give exactly one of source.registryUri and source.resourceId"
            )
        if body.get("untaggedTargetRepositories"):
            with self._lock:
                self.internal_errors.append("emulator gap: untaggedTargetRepositories is not emulated")
            raise ArmError(400, "NotEmulated", "untaggedTargetRepositories is not emulated")
        if source.get("resourceId"):
            match = [
                r for r in self._registries.values() if r.id.lower() == str(source["resourceId"]).lower()
            ]
            if not match:
                raise ArmError(
                    404, "ResourceNotFound", f"source registry {source['resourceId']} was not found"
                )
            server, user = match[0].backend, (TOKEN_USER, self.refresh_token)
        else:
            uri = str(source["registryUri"])
            if uri not in self.upstreams:
                raise ArmError(400, "InvalidParameter", f"cannot reach source registry {uri}")
            server = self.upstreams[uri]
            credentials = source.get("credentials")
            user = (credentials.get("username") or "", credentials["password"]) if credentials else None
        image = str(source["sourceImage"])
        repo, _, reference = image.partition("@") if "@" in image else image.partition(":")
        reference = reference or "latest"
        separator = "@" if "@" in image else ":"
        targets = []
        for target in body.get("targetTags") or []:
            target_repo, _, tag = str(target).partition(":")
            if not tag:
                tag = reference if separator == ":" else "latest"
            targets.append((target_repo, tag))
        if not targets:
            raise ArmError(400, "InvalidParameter", "give targetTags")
        for target_repo, tag in targets:
            rule = next(
                (
                    r
                    for r in registry.rules.values()
                    if _covers(r["properties"]["targetRepository"], target_repo)
                ),
                None,
            )
            if rule is not None:
                raise ArmError(
                    409,
                    "CannotImportIntoCacheRuleRepository",
                    f"{target_repo} is the target of cache rule {rule['name']}",
                )
            if body.get("mode", "NoForce") == "NoForce" and tag in self._tags(registry, target_repo):
                raise ArmError(409, "Conflict", f"tag {target_repo}:{tag} already exists (mode NoForce)")
        job = _Job("location", final_status=200)
        job.polls_left = 0
        headers = self._start_job(registry, job)

        def run() -> None:
            try:
                for target_repo, tag in targets:
                    self._copy(
                        server,
                        user,
                        f"{repo}{separator}{reference}",
                        registry.backend,
                        f"{target_repo}:{tag}",
                    )
            except TestbedError as exc:
                message = str(exc)
                if user and user[1]:
                    message = message.replace(user[1], "***")
                job.error = ArmError(400, "ImportFailed", message.splitlines()[0][:500])
            except Exception:
                with self._lock:
                    self.internal_errors.append(traceback.format_exc())
                job.error = ArmError(500, "InternalServerError", "emulator bug")
            finally:
                job.done.set()

        threading.Thread(target=run, name="acr-import", daemon=True).start()
        return 202, headers, None

    def _copy(
        self,
        source: RegistryServer,
        user: tuple[str, str] | None,
        image: str,
        backend: RegistryServer,
        target: str,
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="acr-import-") as tmp:
            flags = [f"--src-cert-dir={source.cert_dir}"] if source.tls else ["--src-tls-verify=false"]
            authfile = Path(tmp) / "src-auth.json"
            auths = {}
            if user is not None:
                token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
                auths = {source.host: {"auth": token}}
            authfile.write_text(json.dumps({"auths": auths}))
            authfile.chmod(0o600)
            flags.append(f"--src-authfile={authfile}")
            run_skopeo(
                backend,
                [
                    "copy",
                    "--all",
                    "--preserve-digests",
                    "--quiet",
                    *flags,
                    f"docker://{source.host}/{image}",
                    f"docker://{backend.host}/{target}",
                ],
                user=TOKEN_USER,
            )

    # ----------------------------------------------------------------- login server

    def _handle_login(self, registry: _Registry, handler: Handler) -> None:
        try:
            raw = read_body(handler)
            path = urlsplit(handler.path).path
            with self._lock:
                self.login_requests.append((handler.command, path))
            if path == "/oauth2/exchange" and handler.command == "POST":
                status, headers, body = self._exchange(registry, raw)
            elif handler.command == "PUT" and (match := _MANIFEST_PUT.match(path)):
                rule = next(
                    (
                        r
                        for r in registry.rules.values()
                        if _covers(r["properties"]["targetRepository"], match["repo"])
                    ),
                    None,
                )
                if rule is not None:
                    error = {
                        "errors": [
                            {"code": "DENIED", "message": f"{match['repo']} is a cache rule's repository"}
                        ]
                    }
                    status, headers, body = (
                        403,
                        [("Content-Type", "application/json")],
                        json.dumps(error).encode(),
                    )
                else:
                    status, headers, body = self._forward(registry, handler, raw)
            else:
                status, headers, body = self._forward(registry, handler, raw)
        except Exception:
            with self._lock:
                self.internal_errors.append(traceback.format_exc())
            status, headers, body = 500, [], b"emulator bug"
        reply(handler, status, headers, body)

    def _exchange(self, registry: _Registry, raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        ok = (
            form.get("grant_type") == "access_token"
            and form.get("service") == registry.login_server
            and form.get("access_token") == self.credential.token
        )
        with self._lock:
            self.exchanges += 1
        if not ok:
            return 401, [("Content-Type", "application/json")], b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        body = json.dumps({"refresh_token": self.refresh_token}).encode()
        return 200, [("Content-Type", "application/json")], body

    def _forward(
        self, registry: _Registry, handler: Handler, raw: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = registry.backend.host.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.putrequest(handler.command, handler.path, skip_host=True, skip_accept_encoding=True)
            for name, value in handler.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.putheader("X-Forwarded-Proto", "https")
            connection.putheader("Content-Length", str(len(raw)))
            connection.endheaders(raw)
            response = connection.getresponse()
            data = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            if handler.command == "HEAD" and response.getheader("Content-Length") is not None:
                headers.append(("Content-Length", str(response.getheader("Content-Length"))))
            return response.status, headers, data
        finally:
            connection.close()
