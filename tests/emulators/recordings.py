"""Real Azure sessions, read from the Azure CLI's vcrpy cassettes, for replay against ours.

The cassettes in ``tests/contracts/azure/recordings/`` (see its ``SOURCE.md``) were recorded by
Azure/azure-cli's own tests against real ACR, at api-versions newer than the 2023-07-01 contract
the emulator speaks. :func:`load` keeps the ACR management exchanges (registries' children and
their long-running-operation URLs), with each path reduced to a :attr:`Exchange.shape` that names
the operation without the names in it (``credentialSets/{name}``), so that a request of ours and
one of the recording can be compared as "the same operation".

:func:`key_paths` reduces a JSON body to the set of its key paths (``properties.authCredentials[].name``):
the shape (keys and their casing) that the comparison is about; values are compared only where a
test names the path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

__all__ = ["RECORDINGS", "Exchange", "key_paths", "load", "shape", "value_at"]

RECORDINGS = Path(__file__).resolve().parents[1] / "contracts" / "azure" / "recordings"
_REGISTRY = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/[^/]+",
    re.IGNORECASE,
)
_CHILD = re.compile(r"^/(credentialSets|cacheRules|replications)(?:/([^/]+))?(/operationStatuses/[^/]+)?$")
_RESULTS = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.ContainerRegistry/locations/[^/]+/operationResults/[^/]+$",
    re.IGNORECASE,
)

Json = Any


@dataclass(frozen=True)
class Exchange:
    """One recorded request and the real service's answer."""

    file: str
    index: int  # position in the cassette, as SOURCE.md and the citations count
    method: str
    path: str
    shape: str
    api_version: str
    request: Json
    status: int
    headers: dict[str, str]  # lower-case names, first value
    response: Json

    @property
    def polls(self) -> bool:
        return self.shape.endswith("/operationStatuses/{operation}") or self.shape == "operationResults"


def shape(path: str) -> str | None:
    """`credentialSets/{name}`, `cacheRules`, `replications/{name}/operationStatuses/{operation}`,
    `operationResults`, or `registry`; None for anything else (resource groups, identities)."""
    if _RESULTS.match(path):
        return "operationResults"
    found = _REGISTRY.match(path)
    if not found:
        return None
    rest = path[found.end() :]
    if not rest:
        return "registry"
    child = _CHILD.match(rest)
    if not child:
        return None
    out = child.group(1) + ("/{name}" if child.group(2) else "")
    return out + ("/operationStatuses/{operation}" if child.group(3) else "")


def _body(text: Any) -> Json:
    if text is None or text == "" or text == b"":
        return None
    if isinstance(text, bytes):
        text = text.decode()
    return json.loads(text)


def load(name: str) -> list[Exchange]:
    """The ACR management exchanges of one cassette, in recorded order."""
    with (RECORDINGS / name).open(encoding="utf-8") as handle:
        cassette = yaml.safe_load(handle)
    out = []
    for index, interaction in enumerate(cassette["interactions"]):
        request, response = interaction["request"], interaction["response"]
        url = urlsplit(request["uri"])
        found = shape(url.path)
        if found is None:
            continue
        out.append(
            Exchange(
                file=name,
                index=index,
                method=request["method"],
                path=url.path,
                shape=found,
                api_version=parse_qs(url.query)["api-version"][0],
                request=_body(request.get("body")),
                status=int(response["status"]["code"]),
                headers={k.lower(): v[0] for k, v in response["headers"].items()},
                response=_body(response["body"].get("string")),
            )
        )
    return out


def key_paths(value: Json, prefix: str = "") -> set[str]:
    """Every key path of a JSON value: `a.b`, `a.list[].c`; a map's keys that are resource IDs
    (userAssignedIdentities) count as `{id}`, and tag names as `{tag}`."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            # Map keys that are data, not schema: resource IDs and tag names.
            name = "{id}" if key.startswith("/subscriptions/") else "{tag}" if prefix == "tags" else key
            here = f"{prefix}.{name}" if prefix else name
            paths.add(here)
            paths |= key_paths(item, here)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, f"{prefix}[]")
    return paths


def _walk(value: Json, parts: list[str]) -> Iterator[Json]:
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    many = head.endswith("[]")
    key = head[:-2] if many else head
    if not isinstance(value, dict) or key not in value:
        return
    item = value[key]
    if many:
        for each in item if isinstance(item, list) else ():
            yield from _walk(each, rest)
    else:
        yield from _walk(item, rest)


def value_at(value: Json, path: str) -> list[Json]:
    """The values at a key path (several under a list)."""
    return list(_walk(value, path.split(".")))
