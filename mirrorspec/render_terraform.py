"""`render terraform`: one target's native rules as a Terraform `.tf.json` file.

For teams that want Terraform to own the registry settings instead of `mirrorspec apply`. The
resources come from the provider's own `translate()`, after the same resolution the plan does
(repositories a pull-through cache serves are not resolved, the rest are): `engine.translated`
takes those steps, so the file declares exactly the native resources `apply` would create. The
provider writes them, with its Terraform provider's real resource types and argument names,
through its optional `render_terraform` hook, into the `TerraformDocument` built here
(`terraform_document`); a provider without the hook has no native rules Terraform can manage.

Secrets are `variable` blocks marked `sensitive` — a login becomes `<credentials>_username` and
`<credentials>_password`, set with `TF_VAR_...` — and never values: rendering reads no secret
into the file (a literal username in the spec becomes the variable's default). Nothing is read
from the target either; only the upstream registries, to resolve versions.

What Terraform cannot express is left out and said in the file's top-level `//` comment and
as notes: copies (skopeo, or the registry's own imports: `mirrorspec sync` does them) and
whatever a provider's hook leaves out (`TerraformDocument.leave_out`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import engine, providers
from .context import RunContext
from .plan import Artifact, Note
from .providers.base import Desired
from .spec import Target
from .terraform_document import TerraformDocument, TerraformFile

__all__ = ["TerraformFile", "render", "terraform_providers"]


def terraform_providers() -> dict[str, tuple[str, str]]:
    """Terraform provider → (source, version constraint), of every installed provider's hook."""
    found: dict[str, tuple[str, str]] = {}
    for type_name in sorted(providers.available()):
        found.update(getattr(providers.get(type_name), "TERRAFORM_PROVIDERS", {}))
    return found


def render(ctx: RunContext, target: Target, *, spec_name: str = "") -> TerraformFile:
    """The target's native resources, as `apply` would create them, as Terraform JSON."""
    translation = engine.translated(ctx, target.name)
    desired, stored = translation.desired, translation.stored
    provider: Any = translation.provider  # the hooks below are optional
    out = TerraformDocument(ctx, target, getattr(provider, "TERRAFORM_PROVIDERS", {}))
    out.notes += translation.notes
    hook = getattr(provider, "render_terraform", None)
    if hook is not None:
        hook(out, desired.resources, target)
    for resource in desired.resources:
        key = (resource.kind, resource.id)
        if key not in out.addresses and key not in out.left_out:
            out.leave_out(resource, "mirrorspec has no Terraform mapping for this kind of resource")
    _copies_note(
        out, target, stored, desired, spec_name or "SPEC", getattr(provider, "terraform_copies", None)
    )
    return out.finish(spec_name, native_rules=hook is not None)


def _copies_note(
    out: TerraformDocument,
    target: Target,
    stored: Sequence[Artifact],
    desired: Desired,
    spec_name: str,
    terraform_copies: Any,
) -> None:
    """Say how the stored tags get copied: with skopeo, or by the registry itself as the
    provider's optional `terraform_copies(all_native) -> (how, needs sync)` describes."""
    if not stored:
        return
    repositories = {f"{a.registry}/{a.repository}" for a in stored}
    native = repositories & desired.native
    how, needs_sync = "copied with skopeo", True
    if native and terraform_copies is not None:
        how, needs_sync = terraform_copies(native == repositories)
    message = f"{len(stored)} tag(s) of {len(repositories)} repository(ies) are {how}"
    if needs_sync:
        message += (
            ", which Terraform has no resource for: "
            f"run `mirrorspec sync {spec_name} --target {target.name}` after terraform apply"
        )
    out.notes.append(Note("info", message))
