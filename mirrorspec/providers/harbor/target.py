"""The `type: harbor` block of a spec: its pydantic model and the replication schedule's cron
rules as Harbor applies them (`harbor_cron_problem`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ...spec import TargetBase

__all__ = ["HarborTarget", "harbor_cron_problem"]


class HarborTarget(TargetBase):
    """Harbor (API v2.0): replication policies pull from upstream."""

    type: Literal["harbor"]
    url: str = Field(pattern=r"^https?://[^/\s@]+/?$")
    project: str = Field(pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
    credentials: str | None = None
    schedule: str | None = None
    insecure: bool = False
    ca_bundle: str | None = None

    @field_validator("schedule")
    @classmethod
    def _six_fields(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 6:
            raise ValueError("Harbor cron has 6 fields (seconds first), e.g. '0 0 */6 * * *'")
        if value is not None:
            problem = harbor_cron_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("url", mode="before")
    @classmethod
    def _no_userinfo(cls, value: Any) -> Any:
        if isinstance(value, str) and "@" in value:
            # Not echoed: the part before '@' is probably a user name and password.
            raise ValueError("the url must not hold credentials (user:password@host): use `credentials:`")
        return value

    @model_validator(mode="after")
    def _plain_http_is_insecure(self) -> HarborTarget:
        # `insecure` is what every plan shows; a plain-HTTP URL must say so explicitly.
        if self.url.startswith("http://") and not self.insecure:
            raise ValueError("an http:// url is plain HTTP: set `insecure: true` to confirm, or use https://")
        return self

    @property
    def prefix(self) -> str:
        """Every repository of a Harbor target lives in its project: the project is the
        destination prefix (`<project>/<host>/<repository>`, DESIGN's path mapping)."""
        return self.project


# Harbor parses schedules with robfig/cron (Second|Minute|Hour|Dom|Month|Dow) and then
# requires the seconds field to be "0" (src/common/utils/utils.go ValidateCronString) and,
# for replication policies, a minutes field other than "*" (research/harbor.md §4).
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("seconds", 0, 59, ()),
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day-of-week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def harbor_cron_problem(cron: str) -> str | None:
    """Why Harbor would refuse `cron` as a replication schedule, or None when it accepts it."""
    fields = cron.split()
    if len(fields) != 6:
        return "Harbor cron has 6 fields (seconds first), e.g. '0 0 */6 * * *'"
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            problem = _cron_range_problem(part, low, high, names)
            if problem:
                return f"{name} field '{text}': {problem} (fields: seconds minutes hours day month weekday)"
    if fields[0] != "0":
        return f"Harbor requires the seconds field to be 0, found '{fields[0]}'"
    if fields[1] == "*":
        return "Harbor refuses '*' in the minutes field of a replication schedule (it would run every minute)"
    return None


def _cron_range_problem(part: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    span, slash, step_text = part.partition("/")
    if slash and (not step_text.isdigit() or int(step_text) == 0):
        return f"step '{step_text}' is not a positive number"
    if span in ("*", "?"):
        return None
    start_text, dash, end_text = span.partition("-")
    bounds = []
    for value in (start_text, end_text) if dash else (start_text,):
        if value.lower() in names:
            bounds.append(names.index(value.lower()) + low)
        elif value.isdigit():
            bounds.append(int(value))
        else:
            return f"'{value}' is not a number" + (f" or one of {', '.join(names)}" if names else "")
    if any(not low <= b <= high for b in bounds):
        return f"'{span}' is outside {low}-{high}"
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        return f"range '{span}' starts after it ends"
    return None
