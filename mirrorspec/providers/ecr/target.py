"""The `type: ecr` block of a spec: its pydantic model, what its patterns mean in an error, and
the checks only the whole block shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field

from ...spec import Prefix, SpecModel, TargetBase

__all__ = ["EcrReplication", "EcrTarget"]

_ECR_REGISTRY = r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"


class EcrReplication(SpecModel):
    """A replication destination: another region, optionally in another account."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    profile: str | None = None


class EcrTarget(TargetBase):
    """Amazon ECR (private registry)."""

    type: Literal["ecr"]
    registry: str = Field(pattern=_ECR_REGISTRY)
    prefix: Prefix | None = None
    profile: str | None = None
    replicate_to: list[EcrReplication] = Field(default_factory=list, fail_fast=True)

    PATTERN_MEANINGS: ClassVar[dict[str, str]] = {
        _ECR_REGISTRY: "an ECR registry host (<12-digit account>.dkr.ecr.<region>.amazonaws.com)",
    }

    def problems(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        # ECR would get the same destination twice in one replication rule.
        own = self.registry.split(".", 1)[0]
        destinations: dict[tuple[str, str], int] = {}
        for d, replica in enumerate(self.replicate_to):
            j = destinations.setdefault((replica.region, replica.account or own), d)
            if j != d:
                yield (
                    f"region '{replica.region}' of account {replica.account or own} is listed twice "
                    f"(also replicate-to[{j}])",
                    ("replicate-to", d),
                )
