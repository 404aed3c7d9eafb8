"""`render skopeo`: the plan's copies as `skopeo sync` YAML, for teams that run skopeo themselves.

skopeo sync names destinations `DEST/<last component of the repository>` unless `--scoped`,
which breaks on `host:port` (research/sync.md §1.1). So repositories are grouped by their
destination *directory*: each group is one YAML document synced to that directory, which
reproduces the DESIGN destination paths exactly. Version constraints are written as
`images-by-semver` only for skopeo >= 1.15 (older versions ignore the key and exit 0);
otherwise, and for Helm dependencies, as explicit tag lists. Credentials are never written:
each document says which auth file option to pass.
"""

from __future__ import annotations

import io
import posixpath
import shlex
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML

from .. import paths
from ..chart_images import is_pinned
from ..context import RunContext
from ..plan import Artifact
from ..spec import Target, check_ca_bundle

__all__ = ["SyncDocument", "dump_config", "skopeo_documents", "to_yaml"]


class SyncDocument:
    """One `skopeo sync --src yaml` input and the destination directory it syncs to.

    `source_ca` is the absolute path of the source's `ca-bundle`, `source_auth` whether its
    entry names credentials; `target` gives the destination's flags (`command`)."""

    def __init__(
        self,
        source: str,
        destination: str,
        config: dict[str, Any],
        note: str,
        *,
        source_ca: str | None = None,
        source_auth: bool = False,
        target: Target | None = None,
    ) -> None:
        self.source = source
        self.destination = destination
        self.config = config
        self.note = note
        self.source_ca = source_ca
        self.source_auth = source_auth
        self.dest_auth = target is None or getattr(target, "credentials", None) is not None
        self.dest_insecure = bool(getattr(target, "insecure", False))
        self.dest_ca = bool(getattr(target, "ca_bundle", None))

    def command(self, filename: str, *, dest_cert_dir: str = "DEST_CERT_DIR") -> str:
        """The `skopeo sync` command line. The source's TLS settings are in the document
        (`tls-verify`, `cert-dir`): skopeo 1.9.3 sets each YAML registry's certificate path
        from its `cert-dir`, over `--src-cert-dir` (cmd/skopeo/sync.go,
        imagesToCopyFromRegistry: `serverCtx.DockerCertPath = cfg.CertDir`; checked here: a
        document without `cert-dir` fails on a private-CA source even with `--src-cert-dir`). The
        destination's are flags: `--dest-cert-dir` (a directory holding the CA as `ca.crt`)
        and `--dest-tls-verify=false`."""
        flags = ["--all", "--src", "yaml", "--dest", "docker"]
        if self.source_auth:
            flags += ["--src-authfile", "SRC_AUTH.json"]
        if self.dest_auth:
            flags += ["--dest-authfile", "DEST_AUTH.json"]
        if self.dest_ca:
            flags += ["--dest-cert-dir", dest_cert_dir]
        if self.dest_insecure:
            flags.append("--dest-tls-verify=false")
        return shlex.join(["skopeo", "sync", *flags, filename, self.destination])


def skopeo_documents(
    ctx: RunContext,
    target: Target,
    artifacts: Sequence[Artifact],
    *,
    endpoint_host: str,
    semver_capable: bool,
) -> list[SyncDocument]:
    groups: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for artifact in artifacts:
        dest = target.destination(ctx.spec, artifact.registry, artifact.repository)
        directory = posixpath.dirname(dest)
        # A chart's image pinned by digest has no such tag upstream: skopeo sync takes the
        # digest itself in an `images` list (skopeo-sync(1), "images ... along with image with
        # digest"), and pushes it by digest.
        tag = artifact.digest if is_pinned(artifact.tag) else artifact.tag
        groups[(artifact.registry, directory)][artifact.repository].append(tag)
    constraints = {
        (
            paths.normalize_registry(s.registry),
            paths.normalize_repository(s.registry, r.name),
        ): r.versions
        for s in ctx.spec.sources
        for r in s.repositories
        if r.versions
    }
    documents = []
    for (registry, directory), repos in sorted(groups.items()):
        source = next((s for s in ctx.spec.sources if paths.normalize_registry(s.registry) == registry), None)
        block: dict[str, Any] = {}
        images = {}
        by_semver = {}
        for repo, tags in sorted(repos.items()):
            constraint = constraints.get((registry, repo))
            # skopeo reads tags with Masterminds' semver.NewVersion, which rejects Helm's `_`
            # build tags: a range would silently skip them, so such repositories stay explicit.
            if (
                semver_capable
                and constraint
                and not _has_dependency_tags(artifacts, registry, repo)
                and not any("_" in tag for tag in tags)
            ):
                by_semver[repo] = constraint
            else:
                images[repo] = sorted(set(tags))
        if images:
            block["images"] = images
        if by_semver:
            block["images-by-semver"] = by_semver
        if source is not None and source.insecure:
            block["tls-verify"] = False
        note = "no source credentials"
        if source is not None and source.credentials:
            note = f"source credentials '{source.credentials}': pass them with --src-authfile SRC_AUTH.json"
        source_ca = check_ca_bundle(ctx.spec, source.ca_bundle) if source and source.ca_bundle else None
        destination = f"{endpoint_host}/{directory}" if directory else endpoint_host
        documents.append(
            SyncDocument(
                registry,
                destination,
                {registry: block},
                note,
                source_ca=source_ca,
                source_auth=bool(source and source.credentials),
                target=target,
            )
        )
    return documents


def _has_dependency_tags(artifacts: Sequence[Artifact], registry: str, repo: str) -> bool:
    return any(a.dependency_of for a in artifacts if a.registry == registry and a.repository == repo)


def dump_config(config: dict[str, Any]) -> str:
    """One document's YAML, as `to_yaml` writes it."""
    out = io.StringIO()
    _yaml().dump(config, out)
    return out.getvalue()


def _yaml() -> YAML:
    yaml = YAML()
    yaml.default_flow_style = False
    return yaml


def to_yaml(documents: Sequence[SyncDocument]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    for i, document in enumerate(documents, 1):
        filename = f"sync-{i}.yaml"
        out.write(f"# {filename}: {document.note}\n")
        if document.source_ca:
            out.write(
                f"# source ca-bundle {document.source_ca}: skopeo reads it as ca.crt in the directory "
                "this document's cert-dir names (render skopeo --output-dir writes both)\n"
            )
        if document.dest_ca:
            out.write("# DEST_CERT_DIR: a directory holding the target's ca-bundle as ca.crt\n")
        out.write(f"# run: {document.command(filename)}\n")
        yaml.dump(document.config, out)
        if i < len(documents):
            out.write("---\n")
    return out.getvalue()
