"""mirrorspec: mirror upstream images and Helm charts into your registries, natively where possible.

The library API is what the CLI uses:

```python
from mirrorspec import RunContext, load_spec, plan, apply, audit

ctx = RunContext(load_spec("spec.yaml"), workers=8)
the_plan = plan(ctx)            # reads registries, writes nothing
result = apply(ctx, the_plan)   # executes exactly that plan; result.failures lists what failed
report = audit(ctx, content=True)
ctx.close()
```
"""

from __future__ import annotations

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING, Any as _Any

from ._version import __version__ as __version__
from .errors import (
    CopyError,
    CredentialError,
    MirrorspecError,
    ProviderAuthError,
    ProviderConflict,
    ProviderError,
    ProviderThrottled,
    RegistryError,
    ResolveError,
    SpecError,
)

if _TYPE_CHECKING:
    from .context import Endpoint, RunContext
    from .engine import ApplyResult, apply, audit, plan
    from .plan import (
        Artifact,
        Audit,
        Change,
        ContentCheck,
        Copy,
        CopyTag,
        Note,
        Plan,
        TargetAudit,
        TargetPlan,
    )
    from .spec import Spec, load_spec, parse_spec

# The library's names, imported at first use (PEP 562): `import mirrorspec` (and so every
# start of the CLI, whose modules live in this package) costs no engine, registry client or
# pydantic model it does not use (bench/run.py, B5).
_LAZY = {
    **dict.fromkeys(("Endpoint", "RunContext"), "context"),
    **dict.fromkeys(("ApplyResult", "apply", "audit", "plan"), "engine"),
    **dict.fromkeys(
        (
            "Artifact",
            "Audit",
            "Change",
            "ContentCheck",
            "Copy",
            "CopyTag",
            "Note",
            "Plan",
            "TargetAudit",
            "TargetPlan",
        ),
        "plan",
    ),
    **dict.fromkeys(("Spec", "load_spec", "parse_spec"), "spec"),
}

# `plan` is the engine's function, but the first import of the submodule `mirrorspec.plan`
# (by whichever module) binds the package's `plan` to that module. It imports only the
# standard library: import it now and drop the binding, so that `plan` comes from the engine.
from . import plan as _plan_module  # noqa: E402, F401

del globals()["plan"]


def __getattr__(name: str) -> _Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # once: the next access is a plain attribute
    return value


__all__ = [
    "ApplyResult",
    "Artifact",
    "Audit",
    "Change",
    "ContentCheck",
    "Copy",
    "CopyError",
    "CopyTag",
    "CredentialError",
    "Endpoint",
    "MirrorspecError",
    "Note",
    "Plan",
    "ProviderAuthError",
    "ProviderConflict",
    "ProviderError",
    "ProviderThrottled",
    "RegistryError",
    "ResolveError",
    "RunContext",
    "Spec",
    "SpecError",
    "TargetAudit",
    "TargetPlan",
    "apply",
    "audit",
    "load_spec",
    "parse_spec",
    "plan",
]
