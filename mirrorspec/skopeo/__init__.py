"""Everything mirrorspec does with skopeo, the copier of last resort.

What registries cannot replicate natively is copied by running Debian's skopeo (1.9.3) one
tag per process (`copier`, built from `jobs`, `schedule`, `process`, `workspace` and
`failures`); `render skopeo` writes the plan as `skopeo sync` YAML for teams
that run skopeo themselves (`sync_yaml`); `import skopeo` turns such a file into a spec
(`import_sync`). Import from the submodule that holds a name; the package itself
re-exports nothing, so each caller names the part it uses.
"""

from __future__ import annotations

__all__: list[str] = []
