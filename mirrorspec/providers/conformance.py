"""`mypy --strict` checks here that every built-in provider package satisfies `base.Provider`
(as pre-commit types its `languages: dict[str, Language]`): a missing member, or a function
whose signature drifted from the protocol's, is a type error. Nothing runs here; the tests
(`test_providers.py`) check every installed provider, third-party ones too, by inspection.

For mypy to see a package's members, its `__all__` must not hide them: a provider's
`__all__` is `[*base.CONTRACT, its own names]` (the contract spelt once), which mypy cannot
evaluate, and a module whose `__all__` mypy cannot read exports nothing to it. So each
provider sets `__all__` under `if not TYPE_CHECKING:`, and re-exports what it imports as
`name as name`: mypy then reads the module's public names, every contract member among them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__: list[str] = []

if TYPE_CHECKING:
    from . import acr, ecr, harbor, oci_layout, registry
    from .base import Provider

    BUILT_IN: dict[str, Provider] = {
        "acr": acr,
        "ecr": ecr,
        "harbor": harbor,
        "oci-layout": oci_layout,
        "registry": registry,
    }
