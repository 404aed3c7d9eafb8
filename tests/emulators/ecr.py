"""A contract emulator for the ECR control-plane operations moto 5 lacks or gets wrong.

One ``endpoint_url`` serves a boto3 client for everything: :class:`EcrEmulator` is an HTTP
server that answers some ECR operations itself and forwards every other request (other ECR
operations, Secrets Manager, STS, S3…) byte for byte to a real moto server, returning moto's
answer byte for byte.

Emulated operations (research/ecr.md §3: moto 5.2.5 raises ``NotImplementedError`` for the PTC
and creation-template operations, rejects more than one replication rule, and rejects
``ecr:BatchImportUpstreamImage`` in registry policies):

- ``CreatePullThroughCacheRule`` / ``DescribePullThroughCacheRules`` /
  ``UpdatePullThroughCacheRule`` / ``ValidatePullThroughCacheRule`` /
  ``DeletePullThroughCacheRule``
- ``CreateRepositoryCreationTemplate`` / ``DescribeRepositoryCreationTemplates`` /
  ``UpdateRepositoryCreationTemplate`` / ``DeleteRepositoryCreationTemplate``
- ``PutReplicationConfiguration`` / ``DescribeRegistry``
- ``PutRegistryPolicy`` / ``GetRegistryPolicy`` / ``DeleteRegistryPolicy``

For each of them, the request body is validated against botocore's input shape with
:mod:`botocore_contract` (``max``, ``pattern``, ``enum``… which botocore does not check
client-side, research/ecr.md §2.2), failing with ``ValidationException`` in ECR's JSON error form
``{"__type": ..., "message": ...}``. The operation then runs on in-memory state per
(registry id, region); the region comes from the SigV4 credential scope and the account is
moto's ``123456789012`` (research/testbed.md §6). The response is validated against the output
shape; a violation, or an error code the model does not list for the operation, is a bug in the
emulator: it answers 500 ``ServerException`` and records it in :attr:`EcrEmulator.internal_errors`,
which :meth:`EcrEmulator.check` (and leaving the ``with`` block) turn into an ``AssertionError``.

Behaviour and its source:

- PTC upstreams (research/ecr.md §1.1): ``upstreamRegistryUrl`` must be the URL of its kind, from
  the model's doc string (bare host names, no scheme). ``cgr.dev`` for ``chainguard`` is
  unconfirmed. Anything else fails with ``UnsupportedUpstreamRegistryException``. When
  ``upstreamRegistry`` is omitted the kind is inferred from the URL (how ECR does it is
  unconfirmed).
- PTC credentials (§1.1, §1.2): docker-hub, github-, azure- and gitlab-container-registry and
  chainguard need ``credentialArn`` (missing → ``InvalidParameterException``). The
  ``ecr-pullthroughcache/`` name prefix comes from the model's pattern. The secret must exist in
  moto's Secrets Manager in the rule's account and Region: this is checked with
  ``DescribeSecret`` sent straight to moto, and failing it gives ``SecretNotFoundException``. A
  secret scheduled for deletion counts as missing. ``ValidatePullThroughCacheRule`` reads the
  secret value and requires the JSON keys ``username`` and ``accessToken`` (§1.2). It cannot test
  the login to the upstream.
- ``customRoleArn`` must be an IAM role in the registry's own account (model doc strings). An
  ``ecr`` upstream in another account needs one (§1.2).
- ``upstreamRepositoryPrefix`` is only allowed when ``ecrRepositoryPrefix`` is not ``ROOT``
  (§1.2). A trailing ``/`` is implied on prefixes, so ``hub`` and ``hub/`` are the same rule or
  template (model doc).
- At most 50 PTC rules per registry → ``LimitExceededException`` (§1.4). A duplicate prefix →
  ``PullThroughCacheRuleAlreadyExistsException``.
- Update (§1.3) only changes ``credentialArn`` and ``customRoleArn``. Setting neither →
  ``InvalidParameterException`` "Invalid input: Please set either credential arn or role arn to
  update the credentials".
- Describe* pagination: ``maxResults`` is honoured, defaults to 100 (model doc), and
  ``nextToken`` is opaque. Items are sorted by prefix. ``ecrRepositoryPrefixes`` naming an
  unknown rule → ``PullThroughCacheRuleNotFoundException``. Unknown template ``prefixes`` are
  skipped, because Describe lists no not-found error in the model.
- Creation templates (§2.6): ``TemplateAlreadyExistsException`` / ``TemplateNotFoundException``.
  ``repositoryPolicy`` and ``lifecyclePolicy`` must be JSON when non-empty
  (``InvalidParameterException``).
- Replication (§2.1, §2.2): the model's limits (25 rules, 100 destinations and 100 filters per
  rule, ``PREFIX_MATCH`` only) come through the validator. A destination equal to the source
  Region and account → ``InvalidParameterException``, with moto's wording. The document is stored
  verbatim, ``deleteReplication`` included. ``DescribeRegistry`` returns it, or ``{"rules": []}``.
- Registry policy (§2.4): the text must parse as a JSON policy whose ``Action`` entries are only
  ``ecr:ReplicateImage``, ``ecr:BatchImportUpstreamImage`` or ``ecr:CreateRepository``. Anything
  else → ``InvalidParameterException`` "... 'Invalid registry policy provided'". Get or Delete
  with no policy → ``RegistryPolicyNotFoundException``.

NOT emulated:

- No images are ever cached or replicated, and creation templates are never applied (moto's
  ``create_repository`` ignores them).
- The backfill, pull-time-exclusion and ``DescribeImageReplicationStatus`` operations are
  forwarded to moto, which answers them with an error.
- IAM or cross-account authorisation is not checked: a ``registryId`` naming another account just
  selects that account's state.
- No template quota (it is unconfirmed). No check that overlapping PTC prefixes, or ``ROOT`` and
  ``upstreamRepositoryPrefix`` for non-ECR upstreams, are accepted or rejected (§5, unconfirmed).
  Defaults the real service may fill in (``encryptionConfiguration``,
  ``upstreamRepositoryPrefix: ROOT``) are not invented; a template's ``imageTagMutability``
  defaults to ``MUTABLE``, as the model documents.
- Only the ``Action`` lists of registry policies are checked, not principals or resources.
- The ``failure`` texts of ``ValidatePullThroughCacheRule`` are the emulator's own.
- moto's state is global to the process. Entering ``mock_aws()`` in the same process wipes it
  (research/testbed.md §6).

Concurrent writers: ECR has no conditional write for its two per-registry documents (the
replication configuration and the registry policy), so a test must be able to make "someone
else" write one of them at a precise moment. :meth:`EcrEmulator.after` runs a callable once, right
after the emulator has answered the n-th request of an operation and before that answer is sent:
the client that made the request sees the state from before, and its next request sees the
other writer's change. The callable should act through the API (``emulator.client(...)``), as a
real concurrent writer would; it runs on the request's server thread, outside the state lock.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import ServiceModel, StructureShape
from moto.server import ThreadedMotoServer
from testbed.server import EmulatorBug, Handler, HttpServerBase, reply
from testbed.wire import read_body

from .botocore_contract import format_errors, validate_request, validate_response

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "EMULATED_OPERATIONS",
    "EcrApiError",
    "EcrEmulator",
    "EmulatorBug",
    "Interference",
]

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account (research/testbed.md §6)
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

MAX_PTC_RULES = 50  # research/ecr.md §1.4: "Pull through cache rules per registry: 50"
DEFAULT_PAGE_SIZE = 100  # model doc of maxResults for both Describe operations

# research/ecr.md §1.1; URLs from the model's upstreamRegistryUrl doc, chainguard's unconfirmed.
_FIXED_UPSTREAMS = {
    "public.ecr.aws": "ecr-public",
    "quay.io": "quay",
    "registry.k8s.io": "k8s",
    "registry-1.docker.io": "docker-hub",
    "ghcr.io": "github-container-registry",
    "registry.gitlab.com": "gitlab-container-registry",
    "cgr.dev": "chainguard",
}
_ACR_URL = re.compile(r"[a-z0-9]{5,50}\.azurecr\.io")
_ECR_URL = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com")
_AUTH_KINDS = frozenset(
    {
        "docker-hub",
        "github-container-registry",
        "azure-container-registry",
        "gitlab-container-registry",
        "chainguard",
    }
)
_ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::(?P<account>[0-9]{12}):role/[\w+=,.@/-]+")
# research/ecr.md §2.4 (re:Post answer); compared case-insensitively like IAM actions.
_REGISTRY_POLICY_ACTIONS = frozenset(
    {"ecr:replicateimage", "ecr:batchimportupstreamimage", "ecr:createrepository"}
)
_CREDENTIAL_SCOPE = re.compile(
    r"Credential=[^/,\s]+/[0-9]{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request"
)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)

JsonObject = dict[str, Any]


class EcrApiError(Exception):
    """An ECR error answer: ``code`` becomes ``__type``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Interference:
    """A write by "someone else", armed with :meth:`EcrEmulator.after`."""

    operation: str
    remaining: int  # answers of ``operation`` still to serve before ``action`` runs
    action: Callable[[], None]
    fired: bool = False


@dataclass
class _Registry:
    ptc_rules: dict[str, JsonObject] = field(default_factory=dict)
    templates: dict[str, JsonObject] = field(default_factory=dict)
    replication: JsonObject | None = None
    policy: str | None = None


@dataclass
class _Fidelity:
    """Issue 13: behaviour of the real services that moto 5 lacks or gets wrong.

    - ``cache_prefix_repositories``: (repository, rule prefix) for every repository created
      under a pull-through cache rule's prefix, or covered by a rule created later. The ECR
      user guide: "All repositories using this prefix become pull through cache-enabled
      repositories for the upstream registry defined in the rule. For example, a prefix of
      prod applies to all repositories beginning with prod/", and "There is always an
      assumed / applied to the end of the prefix"; ``ROOT`` covers every repository
      (https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-private-wildcards.html).
      The emulator has no data plane, so it cannot serve the upstream's content there; it
      records the repository and :meth:`EcrEmulator.check` fails the test, because a pull of a
      missing tag there would be fetched from the upstream (whether CreateRepository itself
      is refused there is undocumented: it is not refused).
    - ``secret_list_lag``: ListSecrets "might not reflect changes from the last five minutes.
      You can get more recent information for a specific secret by calling DescribeSecret"
      (botocore secretsmanager model, ListSecrets doc). While it is on, a ListSecrets request
      answered before gets that earlier answer again, byte for byte (a stale list); a request
      never answered before is forwarded.
    """

    cache_prefix_repositories: list[tuple[str, str]] = field(default_factory=list)
    secret_list_lag: bool = False
    secret_lists: dict[tuple[str, str], tuple[int, list[tuple[str, str]], bytes]] = field(
        default_factory=dict
    )


@dataclass(frozen=True)
class _Ctx:
    operation: str
    region: str
    registry_id: str


def _prefix_key(prefix: str) -> str:
    """ "There is always an assumed / applied to the end of the prefix" (model doc)."""
    return prefix.rstrip("/") or prefix


def _pick(shape: StructureShape, record: JsonObject) -> JsonObject:
    """The members of ``record`` that ``shape`` has, without nulls."""
    return {k: copy.deepcopy(v) for k, v in record.items() if k in shape.members and v is not None}


def _upstream_kind(url: str) -> str | None:
    if url in _FIXED_UPSTREAMS:
        return _FIXED_UPSTREAMS[url]
    if _ACR_URL.fullmatch(url):
        return "azure-container-registry"
    if _ECR_URL.fullmatch(url):
        return "ecr"
    return None


def _arn_account_region(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return (parts[4], parts[3]) if len(parts) > 5 else ("", "")


class EcrEmulator(HttpServerBase[tuple[str, JsonObject]]):
    """ECR control-plane emulator in front of a moto server; see the module docstring.

    ``EcrEmulator()`` starts and owns a ``ThreadedMotoServer`` on 127.0.0.1. Pass
    ``moto=<ThreadedMotoServer already started>`` or ``moto="http://host:port"`` to use an
    existing one (not stopped by :meth:`stop`).
    """

    def __init__(
        self,
        moto: ThreadedMotoServer | str | None = None,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(name="ecr-emulator", address=host, port=port)
        self.account_id = account_id
        self.skipped_checks: set[str] = set()  # patterns Python could not apply (none in ECR's model)
        self._given_moto = moto
        self._own_moto: ThreadedMotoServer | None = None
        self._moto_address: tuple[str, int] | None = None
        self._registries: dict[tuple[str, str], _Registry] = {}
        self._interferences: list[Interference] = []
        self._secrets_clients: dict[str, Any] = {}
        self.fidelity = _Fidelity()  # issue 13: what moto gets wrong or cannot show (see there)
        self.service_model: ServiceModel = botocore.session.get_session().get_service_model("ecr")
        self._handlers: dict[str, Callable[[_Ctx, JsonObject], JsonObject]] = {
            "CreatePullThroughCacheRule": self._create_ptc_rule,
            "DescribePullThroughCacheRules": self._describe_ptc_rules,
            "UpdatePullThroughCacheRule": self._update_ptc_rule,
            "ValidatePullThroughCacheRule": self._validate_ptc_rule,
            "DeletePullThroughCacheRule": self._delete_ptc_rule,
            "CreateRepositoryCreationTemplate": self._create_template,
            "DescribeRepositoryCreationTemplates": self._describe_templates,
            "UpdateRepositoryCreationTemplate": self._update_template,
            "DeleteRepositoryCreationTemplate": self._delete_template,
            "PutReplicationConfiguration": self._put_replication,
            "DescribeRegistry": self._describe_registry,
            "PutRegistryPolicy": self._put_registry_policy,
            "GetRegistryPolicy": self._get_registry_policy,
            "DeleteRegistryPolicy": self._delete_registry_policy,
        }
        assert set(self._handlers) == EMULATED_OPERATIONS

    # ----------------------------------------------------------------- lifecycle and API

    def start(self) -> EcrEmulator:
        if self.started:
            return self
        moto = self._given_moto
        if moto is None:
            moto = self._own_moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            moto.start()
        if isinstance(moto, str):
            parts = urlsplit(moto)
            assert parts.hostname and parts.port, f"moto URL needs host and port: {moto!r}"
            self._moto_address = (parts.hostname, parts.port)
        else:
            self._moto_address = moto.get_host_and_port()
        return super().start()

    def stop(self) -> None:
        super().stop()
        if self._own_moto is not None:
            self._own_moto.stop()
            self._own_moto = None
        with self._lock:
            for client in self._secrets_clients.values():
                client.close()
            self._secrets_clients.clear()

    @property
    def calls(self) -> list[tuple[str, JsonObject]]:
        """(operation, request body) of every emulated call, in order: the request log."""
        return self.requests

    @property
    def moto_url(self) -> str:
        """moto's own address (requests there bypass the emulator)."""
        assert self._moto_address is not None, "call start() first"
        return f"http://{self._moto_address[0]}:{self._moto_address[1]}"

    @property
    def operations(self) -> list[str]:
        """The ECR operation names of :attr:`calls`, in order."""
        with self._lock:
            return [name for name, _ in self.calls]

    def client(self, service: str, region: str = "eu-west-1", **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at :attr:`url` with dummy credentials.

        Everything is explicit, so ``AWS_ENDPOINT_URL*``, profiles and ``AWS_CA_BUNDLE`` in the
        environment do not matter. Retries are off unless ``config=`` says otherwise, so an
        emulator error surfaces at once.
        """
        config = kwargs.pop("config", Config(retries={"total_max_attempts": 1}))
        session = boto3.session.Session(region_name=region, **DUMMY_CREDENTIALS)
        return session.client(
            service, region_name=region, endpoint_url=self.url, config=config, **DUMMY_CREDENTIALS, **kwargs
        )

    def after(self, operation: str, action: Callable[[], None], *, nth: int = 1) -> Interference:
        """Run ``action`` once, right after the ``nth`` answer to ``operation`` from now on
        (error answers count) and before that answer reaches its client.

        An exception raised by ``action`` is recorded like an emulator bug (:meth:`check`).
        """
        if nth < 1:
            raise ValueError("nth counts answers from 1")
        interference = Interference(operation, nth, action)
        with self._lock:
            self._interferences.append(interference)
        return interference

    def _interfere(self, operation: str) -> None:
        with self._lock:
            due = []
            for interference in self._interferences:
                if interference.operation == operation:
                    interference.remaining -= 1
                    if interference.remaining == 0:
                        due.append(interference)
            self._interferences = [i for i in self._interferences if i not in due]
        for interference in due:  # outside the lock: the action makes requests of its own
            interference.fired = True
            try:
                interference.action()
            except Exception:
                with self._lock:
                    self.internal_errors.append(
                        f"interference after {operation} failed:\n{traceback.format_exc()}"
                    )

    def reset(self) -> None:
        """Forget the emulator's state, calls and armed interferences, and reset moto
        (``POST /moto-api/reset``)."""
        with self._lock:
            self._registries.clear()
            self.calls.clear()
            self._interferences.clear()
            self.fidelity = _Fidelity()
        status, _, body = self._moto_request("POST", "/moto-api/reset", [], b"")
        if status != 200:
            raise RuntimeError(f"moto reset failed: {status} {body!r}")

    title = "ECR emulator bug(s)"

    def problems(self) -> list[str]:
        """What :meth:`check` raises on: the emulator broke the contract while serving a request."""
        with self._lock:
            return super().problems() + [
                f"repository '{repo}' is under pull-through cache rule '{prefix}': real ECR serves it "
                "from the rule's upstream (a copy pushed there is not what a pull gets)"
                for repo, prefix in self.fidelity.cache_prefix_repositories
            ]

    # ----------------------------------------------------------------- HTTP plumbing

    def handle(self, handler: Handler) -> None:
        try:
            raw = read_body(handler)
            target = handler.headers.get("X-Amz-Target", "")
            operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else None
            corrected = self._fidelity_answer(handler, target, raw)
            if corrected is not None:
                status, headers, body = corrected
            elif operation in self._handlers:
                status, headers, body = self._serve(operation, handler, raw)
            else:
                if operation is not None:
                    self._record(operation, raw)
                status, headers, body = self._forward(handler, raw)
                self._fidelity_after_forward(handler, target, raw, status, body)
        except Exception:
            with self._lock:
                self.internal_errors.append(traceback.format_exc())
            status, headers, body = self._json(500, {"__type": "ServerException", "message": "emulator bug"})
        else:
            if operation is not None:
                self._interfere(operation)
        reply(handler, status, headers, body)

    def _record(self, operation: str, raw: bytes | JsonObject) -> None:
        if isinstance(raw, dict):
            body = copy.deepcopy(raw)
        else:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"<raw>": raw.decode("utf-8", "replace")}
        with self._lock:
            self.calls.append((operation, body))

    def _moto_request(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self._moto_address is not None
        conn = http.client.HTTPConnection(*self._moto_address, timeout=120)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if not any(name.lower() == "host" for name, _ in headers):
                conn.putheader("Host", f"{self._moto_address[0]}:{self._moto_address[1]}")
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            if method == "HEAD":
                length = response.getheader("Content-Length")
                if length is not None:
                    out.append(("Content-Length", length))
            return response.status, out, data
        finally:
            conn.close()

    def _forward(self, handler: Handler, raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [(k, v) for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP]
        return self._moto_request(handler.command, handler.path, headers, raw)

    @staticmethod
    def _json(status: int, payload: JsonObject) -> tuple[int, list[tuple[str, str]], bytes]:
        body = json.dumps(payload).encode()
        headers = [
            ("Content-Type", JSON_CONTENT_TYPE),
            ("x-amzn-RequestId", f"ecr-emulator-{time.time_ns()}"),
        ]
        if "__type" in payload:
            headers.append(("x-amzn-ErrorType", str(payload["__type"])))
        return status, headers, body

    def _error(self, operation: str, code: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
        listed = [shape.name for shape in self.service_model.operation_model(operation).error_shapes]
        if code not in listed:
            raise EmulatorBug(f"{operation} answered {code}, which the model does not list: {listed}")
        return self._json(400 if code != "ServerException" else 500, {"__type": code, "message": message})

    def _serve(
        self, operation: str, handler: Handler, raw: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._record(operation, raw)
            return self._error(operation, "ValidationException", "Request body is not valid JSON")
        if not isinstance(body, dict):
            self._record(operation, raw)
            return self._error(operation, "ValidationException", "Request body must be a JSON object")
        self._record(operation, body)
        match = _CREDENTIAL_SCOPE.search(handler.headers.get("Authorization", ""))
        region = match.group("region") if match else "us-east-1"
        listed = {shape.name for shape in self.service_model.operation_model(operation).error_shapes}
        skipped: list[str] = []
        problems = validate_request(self.service_model, operation, body, skipped=skipped)
        if skipped:
            with self._lock:
                self.skipped_checks.update(skipped)
        if problems:
            code = "ValidationException" if "ValidationException" in listed else "InvalidParameterException"
            return self._error(operation, code, format_errors(problems))
        ctx = _Ctx(operation, region, body.get("registryId") or self.account_id)
        try:
            with self._lock:
                result = self._handlers[operation](ctx, body)
        except EcrApiError as exc:
            return self._error(operation, exc.code, exc.message)
        problems = validate_response(self.service_model, operation, result)
        if problems:
            raise EmulatorBug(f"{operation} response breaks the output shape: {problems}\n{result!r}")
        return self._json(200, result)

    # ----------------------------------------------------------------- helpers

    def _registry(self, ctx: _Ctx) -> _Registry:
        return self._registries.setdefault((ctx.registry_id, ctx.region), _Registry())

    def _output(self, operation: str) -> StructureShape:
        shape = self.service_model.operation_model(operation).output_shape
        assert shape is not None
        return shape

    def _secrets(self, region: str) -> Any:
        client = self._secrets_clients.get(region)
        if client is None:
            session = boto3.session.Session(region_name=region, **DUMMY_CREDENTIALS)
            client = session.client(
                "secretsmanager",
                region_name=region,
                endpoint_url=self.moto_url,
                config=Config(retries={"total_max_attempts": 1}),
                **DUMMY_CREDENTIALS,
            )
            self._secrets_clients[region] = client
        return client

    def _require_secret(self, ctx: _Ctx, arn: str) -> None:
        """research/ecr.md §1.2: the secret exists, in the same account and Region as the rule."""
        account, region = _arn_account_region(arn)
        missing = EcrApiError(
            "SecretNotFoundException",
            f"The secret '{arn}' was not found in registry '{ctx.registry_id}' in region '{ctx.region}'.",
        )
        if account != ctx.registry_id or region != ctx.region:
            raise missing
        try:
            described = self._secrets(ctx.region).describe_secret(SecretId=arn)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                raise missing from exc
            raise EcrApiError(
                "UnableToAccessSecretException", f"Unable to access the secret '{arn}'."
            ) from exc
        if described.get("DeletedDate") is not None:
            raise missing

    def _check_role(self, ctx: _Ctx, role_arn: str) -> None:
        """Model doc: the role "must be in the same account as the registry"."""
        match = _ROLE_ARN.fullmatch(role_arn)
        if match is None:
            raise EcrApiError(
                "InvalidParameterException", f"Invalid parameter: '{role_arn}' is not an IAM role ARN"
            )
        if match.group("account") != ctx.registry_id:
            raise EcrApiError(
                "InvalidParameterException",
                f"Invalid parameter: the custom role '{role_arn}' must be in the registry's account "
                f"'{ctx.registry_id}'",
            )

    def _page(
        self, ctx: _Ctx, items: list[JsonObject], key: str, body: JsonObject
    ) -> tuple[list[JsonObject], str | None]:
        size: int = body.get("maxResults", DEFAULT_PAGE_SIZE)
        items = sorted(items, key=lambda item: _prefix_key(item[key]))
        start = 0
        token = body.get("nextToken")
        if token is not None:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                assert decoded["op"] == ctx.operation
                after = str(decoded["after"])
            except Exception as exc:
                raise EcrApiError(
                    "InvalidParameterException", "Invalid parameter: nextToken is not valid"
                ) from exc
            start = next((i for i, item in enumerate(items) if _prefix_key(item[key]) > after), len(items))
        page = items[start : start + size]
        if start + size >= len(items):
            return page, None
        marker = {"op": ctx.operation, "after": _prefix_key(page[-1][key])}
        return page, base64.urlsafe_b64encode(json.dumps(marker).encode()).decode()

    # ----------------------------------------------------------------- pull-through cache rules

    def _create_ptc_rule(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        prefix: str = body["ecrRepositoryPrefix"]
        url: str = body["upstreamRegistryUrl"]
        detected = _upstream_kind(url)
        kind: str | None = body.get("upstreamRegistry") or detected
        if detected is None or kind != detected:
            named = (
                f" for upstream registry '{body['upstreamRegistry']}'" if "upstreamRegistry" in body else ""
            )
            raise EcrApiError(
                "UnsupportedUpstreamRegistryException",
                f"The specified upstream registry URL '{url}'{named} isn't supported.",
            )
        credential = body.get("credentialArn")
        role = body.get("customRoleArn")
        if kind in _AUTH_KINDS and credential is None:
            raise EcrApiError(
                "InvalidParameterException",
                f"Invalid parameter: upstream registry '{kind}' requires a credentialArn",
            )
        if role is not None:
            self._check_role(ctx, role)
        if kind == "ecr":
            upstream = _ECR_URL.fullmatch(url)
            assert upstream is not None
            if upstream.group("account") != ctx.registry_id and role is None:
                raise EcrApiError(
                    "InvalidParameterException",
                    "Invalid parameter: a customRoleArn is required for an upstream ECR registry in "
                    "another account",
                )
        if body.get("upstreamRepositoryPrefix") is not None and prefix == "ROOT":
            raise EcrApiError(
                "InvalidParameterException",
                "Invalid parameter: upstreamRepositoryPrefix can only be set when ecrRepositoryPrefix "
                "is not ROOT",
            )
        registry = self._registry(ctx)
        if _prefix_key(prefix) in registry.ptc_rules:
            raise EcrApiError(
                "PullThroughCacheRuleAlreadyExistsException",
                f"A pull through cache rule with the prefix '{prefix}' already exists in registry "
                f"'{ctx.registry_id}'.",
            )
        if len(registry.ptc_rules) >= MAX_PTC_RULES:
            raise EcrApiError(
                "LimitExceededException",
                f"The maximum number of pull through cache rules ({MAX_PTC_RULES}) per registry "
                "has been reached.",
            )
        if credential is not None:
            self._require_secret(ctx, credential)
        now = time.time()
        rule: JsonObject = {
            "ecrRepositoryPrefix": prefix,
            "upstreamRegistryUrl": url,
            "createdAt": now,
            "updatedAt": now,
            "registryId": ctx.registry_id,
            "upstreamRegistry": kind,
            "credentialArn": credential,
            "customRoleArn": role,
            "upstreamRepositoryPrefix": body.get("upstreamRepositoryPrefix"),
        }
        registry.ptc_rules[_prefix_key(prefix)] = rule
        self._fidelity_rule_over_repositories(ctx, prefix)
        return _pick(self._output(ctx.operation), rule)

    def _find_rule(self, ctx: _Ctx, prefix: str) -> JsonObject:
        rule = self._registry(ctx).ptc_rules.get(_prefix_key(prefix))
        if rule is None:
            raise EcrApiError(
                "PullThroughCacheRuleNotFoundException",
                f"The pull through cache rule with prefix '{prefix}' does not exist in the registry with id "
                f"'{ctx.registry_id}'.",
            )
        return rule

    def _describe_ptc_rules(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        wanted: list[str] | None = body.get("ecrRepositoryPrefixes")
        if wanted is None:
            rules = list(self._registry(ctx).ptc_rules.values())
        else:
            rules = list({_prefix_key(p): self._find_rule(ctx, p) for p in wanted}.values())
        page, token = self._page(ctx, rules, "ecrRepositoryPrefix", body)
        entry = self.service_model.shape_for("PullThroughCacheRule")
        assert isinstance(entry, StructureShape)
        result: JsonObject = {"pullThroughCacheRules": [_pick(entry, rule) for rule in page]}
        if token is not None:
            result["nextToken"] = token
        return result

    def _update_ptc_rule(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        credential = body.get("credentialArn")
        role = body.get("customRoleArn")
        if credential is None and role is None:
            # research/ecr.md §1.3 (pulumi-aws#5714)
            raise EcrApiError(
                "InvalidParameterException",
                "Invalid input: Please set either credential arn or role arn to update the credentials",
            )
        rule = self._find_rule(ctx, body["ecrRepositoryPrefix"])
        if role is not None:
            self._check_role(ctx, role)
        if credential is not None:
            self._require_secret(ctx, credential)
            rule["credentialArn"] = credential
        if role is not None:
            rule["customRoleArn"] = role
        rule["updatedAt"] = max(time.time(), rule["createdAt"])
        return _pick(self._output(ctx.operation), rule)

    def _validate_ptc_rule(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        rule = self._find_rule(ctx, body["ecrRepositoryPrefix"])
        failure = self._secret_failure(ctx, rule["credentialArn"]) if rule["credentialArn"] else None
        result = _pick(self._output(ctx.operation), rule)
        result["isValid"] = failure is None
        if failure is not None:
            result["failure"] = failure
        return result

    def _secret_failure(self, ctx: _Ctx, arn: str) -> str | None:
        """research/ecr.md §1.2: the secret holds JSON with ``username`` and ``accessToken``."""
        try:
            self._require_secret(ctx, arn)
            value = self._secrets(ctx.region).get_secret_value(SecretId=arn)
        except EcrApiError as exc:
            return exc.message
        except ClientError as exc:
            return f"Unable to retrieve the secret value: {exc.response['Error'].get('Message', '')}"
        try:
            data = json.loads(value.get("SecretString") or "")
        except ValueError:
            return "The secret value is not a JSON object with the keys 'username' and 'accessToken'."
        if not isinstance(data, dict) or not all(
            isinstance(data.get(key), str) and data[key] for key in ("username", "accessToken")
        ):
            return "The secret value is not a JSON object with the keys 'username' and 'accessToken'."
        return None

    def _delete_ptc_rule(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        rule = self._find_rule(ctx, body["ecrRepositoryPrefix"])
        del self._registry(ctx).ptc_rules[_prefix_key(rule["ecrRepositoryPrefix"])]
        return _pick(self._output(ctx.operation), rule)

    # ----------------------------------------------------------------- repository creation templates

    _TEMPLATE_FIELDS = (
        "description",
        "encryptionConfiguration",
        "resourceTags",
        "imageTagMutability",
        "imageTagMutabilityExclusionFilters",
        "repositoryPolicy",
        "lifecyclePolicy",
        "appliedFor",
        "customRoleArn",
    )

    def _check_template_fields(self, ctx: _Ctx, body: JsonObject) -> None:
        for name in ("repositoryPolicy", "lifecyclePolicy"):
            text = body.get(name)
            if text:
                try:
                    json.loads(text)
                except ValueError as exc:
                    raise EcrApiError(
                        "InvalidParameterException",
                        f"Invalid parameter at '{name}': the text is not valid JSON",
                    ) from exc
        if body.get("customRoleArn") is not None:
            self._check_role(ctx, body["customRoleArn"])

    def _template_result(self, ctx: _Ctx, template: JsonObject) -> JsonObject:
        entry = self.service_model.shape_for("RepositoryCreationTemplate")
        assert isinstance(entry, StructureShape)
        return {"registryId": ctx.registry_id, "repositoryCreationTemplate": _pick(entry, template)}

    def _find_template(self, ctx: _Ctx, prefix: str) -> JsonObject:
        template = self._registry(ctx).templates.get(_prefix_key(prefix))
        if template is None:
            raise EcrApiError(
                "TemplateNotFoundException",
                f"The repository creation template with prefix '{prefix}' does not exist in the "
                f"registry with id '{ctx.registry_id}'.",
            )
        return template

    def _create_template(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        self._check_template_fields(ctx, body)
        registry = self._registry(ctx)
        prefix: str = body["prefix"]
        if _prefix_key(prefix) in registry.templates:
            raise EcrApiError(
                "TemplateAlreadyExistsException",
                f"A repository creation template with the prefix '{prefix}' already exists in the registry "
                f"with id '{ctx.registry_id}'.",
            )
        now = time.time()
        template: JsonObject = {"prefix": prefix, "createdAt": now, "updatedAt": now}
        template.update({k: copy.deepcopy(body[k]) for k in self._TEMPLATE_FIELDS if k in body})
        # "If this parameter is omitted, the default setting of MUTABLE will be used" (botocore
        # ecr model, CreateRepositoryCreationTemplateRequest.imageTagMutability); ECR reads the
        # template back with it, and terraform-provider-aws 5.100.0 plans a change on import if
        # it is missing (internal/service/ecr/repository_creation_template.go, schema default
        # MUTABLE, Read sets image_tag_mutability from the answer).
        template.setdefault("imageTagMutability", "MUTABLE")
        registry.templates[_prefix_key(prefix)] = template
        return self._template_result(ctx, template)

    def _describe_templates(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        registry = self._registry(ctx)
        wanted: list[str] | None = body.get("prefixes")
        if wanted is None:
            templates = list(registry.templates.values())
        else:
            found = {_prefix_key(p): registry.templates.get(_prefix_key(p)) for p in wanted}
            templates = [t for t in found.values() if t is not None]
        page, token = self._page(ctx, templates, "prefix", body)
        entry = self.service_model.shape_for("RepositoryCreationTemplate")
        assert isinstance(entry, StructureShape)
        result: JsonObject = {
            "registryId": ctx.registry_id,
            "repositoryCreationTemplates": [_pick(entry, t) for t in page],
        }
        if token is not None:
            result["nextToken"] = token
        return result

    def _update_template(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        template = self._find_template(ctx, body["prefix"])
        self._check_template_fields(ctx, body)
        template.update({k: copy.deepcopy(body[k]) for k in self._TEMPLATE_FIELDS if k in body})
        template["updatedAt"] = max(time.time(), template["createdAt"])
        return self._template_result(ctx, template)

    def _delete_template(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        template = self._find_template(ctx, body["prefix"])
        del self._registry(ctx).templates[_prefix_key(template["prefix"])]
        return self._template_result(ctx, template)

    # ----------------------------------------------------------------- replication and registry policy

    def _put_replication(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        config: JsonObject = body["replicationConfiguration"]
        for rule in config["rules"]:
            for destination in rule["destinations"]:
                if destination["region"] == ctx.region and destination["registryId"] == ctx.registry_id:
                    raise EcrApiError(
                        "InvalidParameterException",
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                        "'Replication destination cannot be the same as the source registry'",
                    )
        self._registry(ctx).replication = copy.deepcopy(config)
        return {"replicationConfiguration": copy.deepcopy(config)}

    def _describe_registry(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        config = self._registry(ctx).replication or {"rules": []}
        return {"registryId": ctx.registry_id, "replicationConfiguration": copy.deepcopy(config)}

    def _put_registry_policy(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        text: str = body["policyText"]
        invalid = EcrApiError(
            "InvalidParameterException",
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
            "'Invalid registry policy provided'",
        )
        try:
            policy = json.loads(text)
        except ValueError as exc:
            raise invalid from exc
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list) or not statements:
            raise invalid
        for statement in statements:
            if not isinstance(statement, dict) or "NotAction" in statement:
                raise invalid
            actions = statement.get("Action")
            if isinstance(actions, str):
                actions = [actions]
            if not isinstance(actions, list) or not actions:
                raise invalid
            if any(not isinstance(a, str) or a.lower() not in _REGISTRY_POLICY_ACTIONS for a in actions):
                raise invalid
        self._registry(ctx).policy = text
        return {"registryId": ctx.registry_id, "policyText": text}

    def _require_policy(self, ctx: _Ctx) -> str:
        policy = self._registry(ctx).policy
        if policy is None:
            raise EcrApiError(
                "RegistryPolicyNotFoundException",
                f"Registry policy does not exist in the registry with id '{ctx.registry_id}'",
            )
        return policy

    def _get_registry_policy(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        return {"registryId": ctx.registry_id, "policyText": self._require_policy(ctx)}

    def _delete_registry_policy(self, ctx: _Ctx, body: JsonObject) -> JsonObject:
        text = self._require_policy(ctx)
        self._registry(ctx).policy = None
        return {"registryId": ctx.registry_id, "policyText": text}

    # ----------------------------------------------------------------- fidelity (issue 13): see _Fidelity

    def cache_rule_for(
        self, repository: str, region: str = "eu-west-1", registry_id: str | None = None
    ) -> str | None:
        """The prefix of the pull-through cache rule that serves ``repository``, if any:
        ``ROOT`` serves every repository, any other prefix those that start with it plus the
        assumed ``/`` (ECR user guide, see :class:`_Fidelity`)."""
        ctx = _Ctx("", region, registry_id or self.account_id)
        with self._lock:
            prefixes = [rule["ecrRepositoryPrefix"] for rule in self._registry(ctx).ptc_rules.values()]
        for prefix in sorted(prefixes, key=len, reverse=True):
            if prefix == "ROOT" or repository.startswith(_prefix_key(prefix) + "/"):
                return str(prefix)
        return None

    def replicated_to(
        self, repository: str, region: str = "eu-west-1", registry_id: str | None = None
    ) -> list[JsonObject]:
        """Where ECR would replicate a push to ``repository``: the destinations of every rule
        whose ``PREFIX_MATCH`` filter is a plain string prefix of the name ("the repository
        name prefix", API reference RepositoryFilter: no path semantics, so ``vendor`` also
        matches ``vendor-tools/x``) or that has no filter ("If no filters are added, the
        contents of all repositories are replicated", same page)."""
        ctx = _Ctx("", region, registry_id or self.account_id)
        with self._lock:
            config = copy.deepcopy(self._registry(ctx).replication or {"rules": []})
        found: list[JsonObject] = []
        for rule in config["rules"]:
            filters = rule.get("repositoryFilters") or []
            if not filters or any(repository.startswith(f["filter"]) for f in filters):
                found += [d for d in rule["destinations"] if d not in found]
        return found

    def lag_secret_list(self, on: bool = True) -> None:
        """Make ListSecrets answer as it did before (see :class:`_Fidelity`)."""
        with self._lock:
            self.fidelity.secret_list_lag = on

    def _region_of(self, handler: Handler) -> str:
        match = _CREDENTIAL_SCOPE.search(handler.headers.get("Authorization", ""))
        return match.group("region") if match else "us-east-1"

    def _fidelity_answer(
        self, handler: Handler, target: str, raw: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """An answer that corrects moto, or None to go on as usual."""
        if not target.startswith(SECRETS_TARGET_PREFIX):
            return None
        operation = target[len(SECRETS_TARGET_PREFIX) :]
        region = self._region_of(handler)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return None  # moto answers the malformed request
        if not isinstance(body, dict):
            return None
        if operation == "ListSecrets":
            key = (region, json.dumps(body, sort_keys=True))
            with self._lock:
                stale = self.fidelity.secret_lists.get(key) if self.fidelity.secret_list_lag else None
            if stale is not None:
                return stale
            answer = self._forward(handler, raw)
            if answer[0] == 200:
                with self._lock:
                    self.fidelity.secret_lists[key] = answer
            return answer
        name = body.get("Name") if operation == "CreateSecret" else body.get("SecretId")
        if operation not in _SCHEDULED_DELETION_MESSAGES or not isinstance(name, str):
            return None
        if not self._scheduled_for_deletion(region, name):
            return None
        # moto 5.2 answers CreateSecret with ResourceExistsException here and accepts
        # PutSecretValue / UpdateSecret. Real Secrets Manager: InvalidRequestException, whose
        # model doc lists "The secret is scheduled for deletion" as a cause; CreateSecret's text
        # as AWS returns it: hashicorp/terraform-provider-aws#8219 (acceptance test output).
        payload = {"__type": "InvalidRequestException", "Message": _SCHEDULED_DELETION_MESSAGES[operation]}
        return self._json(400, payload)

    def _scheduled_for_deletion(self, region: str, secret_id: str) -> bool:
        try:
            described = self._secrets(region).describe_secret(SecretId=secret_id)
        except ClientError:
            return False
        return described.get("DeletedDate") is not None

    def _fidelity_after_forward(
        self, handler: Handler, target: str, raw: bytes, status: int, body: bytes
    ) -> None:
        """Record a repository created under a pull-through cache rule's prefix."""
        if target != TARGET_PREFIX + "CreateRepository" or status != 200:
            return
        created = json.loads(body)["repository"]
        region = self._region_of(handler)
        prefix = self.cache_rule_for(created["repositoryName"], region, created["registryId"])
        if prefix is not None:
            with self._lock:
                self.fidelity.cache_prefix_repositories.append((created["repositoryName"], prefix))

    def _fidelity_rule_over_repositories(self, ctx: _Ctx, prefix: str) -> None:
        """Record the repositories a new rule covers (they existed before it)."""
        client = self._moto_ecr(ctx.region)
        for page in client.get_paginator("describe_repositories").paginate(registryId=ctx.registry_id):
            for repo in page["repositories"]:
                name = repo["repositoryName"]
                if prefix == "ROOT" or name.startswith(_prefix_key(prefix) + "/"):
                    self.fidelity.cache_prefix_repositories.append((name, prefix))

    def _moto_ecr(self, region: str) -> Any:
        session = boto3.session.Session(region_name=region, **DUMMY_CREDENTIALS)
        return session.client(
            "ecr",
            region_name=region,
            endpoint_url=self.moto_url,
            config=Config(retries={"total_max_attempts": 1}),
            **DUMMY_CREDENTIALS,
        )


SECRETS_TARGET_PREFIX = "secretsmanager."
_SCHEDULED_DELETION_MESSAGES = {
    "CreateSecret": (
        "You can't create this secret because a secret with this name is already scheduled for deletion."
    ),
    "PutSecretValue": "You can't perform this operation on the secret because it was marked for deletion.",
    "UpdateSecret": "You can't perform this operation on the secret because it was marked for deletion.",
}


EMULATED_OPERATIONS = frozenset(
    {
        "CreatePullThroughCacheRule",
        "DescribePullThroughCacheRules",
        "UpdatePullThroughCacheRule",
        "ValidatePullThroughCacheRule",
        "DeletePullThroughCacheRule",
        "CreateRepositoryCreationTemplate",
        "DescribeRepositoryCreationTemplates",
        "UpdateRepositoryCreationTemplate",
        "DeleteRepositoryCreationTemplate",
        "PutReplicationConfiguration",
        "DescribeRegistry",
        "PutRegistryPolicy",
        "GetRegistryPolicy",
        "DeleteRegistryPolicy",
    }
)
