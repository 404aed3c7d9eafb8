"""Everything mirrorspec does with skopeo, the copier of last resort.

What registries cannot replicate natively is copied by running Debian's skopeo (1.9.3) one
tag per process (`schedule`); `render skopeo` writes the plan as `skopeo sync` YAML for teams
that run skopeo themselves (`sync_yaml`); `import skopeo` turns such a file into a spec
(`import_sync`). Import from the submodule that holds a name: this package imports nothing,
so that reading a sync file does not load the copier, nor copying the YAML reader.
"""

from __future__ import annotations

__all__: list[str] = []
