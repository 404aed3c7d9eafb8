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

from ._version import __version__ as __version__
from .context import Endpoint, RunContext
from .engine import ApplyResult, apply, audit, plan
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
from .plan import Artifact, Audit, Change, ContentCheck, Copy, CopyTag, Note, Plan, TargetAudit, TargetPlan
from .spec import Spec, load_spec, parse_spec

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
