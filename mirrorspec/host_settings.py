"""Which registry hosts a spec reaches without settings: anonymously, with default TLS.

A host's settings (credentials, `ca-bundle`, `insecure`) come from its `sources:` entry, which
may list no repositories and only give them (`RunContext.source_endpoint` reads them for every
read and copy from that host). A host with no entry, or an entry without any of them, is read
anonymously and its certificate checked against the system's CAs. `validate` is offline, so it
can name only the declared hosts and say that hosts charts lead to count too; the plan, which
resolves, names each host it reached that has no entry.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import paths
from .plan import Note
from .spec import Spec

__all__ = [
    "anonymous_sources",
    "discovers_hosts",
    "entry_hint",
    "reached_without_entry",
    "validate_summary",
]

# Hosts `validate` names on its line; a spec of many upstreams gets a count for the rest.
_SHOWN = 10


def anonymous_sources(spec: Spec) -> list[str]:
    """The declared hosts whose entries give no settings, normalised and sorted."""
    return sorted(
        {
            paths.normalize_registry(s.registry)
            for s in spec.sources
            if s.credentials is None and s.ca_bundle is None and not s.insecure and s.oci_layout is None
        }
    )


def discovers_hosts(spec: Spec) -> bool:
    """True when resolution may reach hosts the spec does not name: a chart whose `oci://`
    dependencies are followed may live anywhere, and so may the images a chart deploys
    (`chart-images: true`)."""
    return bool(_discovered_by(spec))


def _discovered_by(spec: Spec) -> str:
    """What leads resolution to hosts the spec does not name, for people; "" when nothing does."""
    repositories = [r for s in spec.sources for r in s.repositories]
    leads = [
        *(["Helm dependencies"] if any(r.follow_dependencies != "none" for r in repositories) else []),
        *(["chart images"] if any(r.chart_images for r in repositories) else []),
    ]
    return " or ".join(leads)


def validate_summary(spec: Spec) -> str | None:
    """`validate`'s line on the hosts read anonymously with default TLS; None when there are none."""
    hosts = anonymous_sources(spec)
    leads = _discovered_by(spec)
    discovered = f"any host that {leads} lead to without a sources: entry"
    if not hosts:
        return f"reached anonymously with default TLS: {discovered}" if leads else None
    shown = ", ".join(hosts[:_SHOWN]) + (f" and {len(hosts) - _SHOWN} more" if len(hosts) > _SHOWN else "")
    line = f"reached anonymously with default TLS: {shown}"
    return f"{line}; and {discovered}" if leads else line


def entry_hint(spec: Spec, host: str, status: int | None) -> str:
    """What to add to a read error from `host` when settings could be what is missing: the host
    has no `sources:` entry and did not answer (TLS, connection: `status` None) or refused the
    anonymous read (401, 403). Else ""."""
    declared = {paths.normalize_registry(s.registry) for s in spec.sources}
    if paths.normalize_registry(host) in declared or status not in (None, 401, 403):
        return ""
    return (
        f" ({host} has no sources: entry; one without repositories gives it credentials, "
        "ca-bundle or insecure)"
    )


def reached_without_entry(spec: Spec, hosts: Iterable[str]) -> list[Note]:
    """One note per host in `hosts` (those a run read from) that has no `sources:` entry, sorted."""
    declared = {paths.normalize_registry(s.registry) for s in spec.sources}
    return [
        Note(
            "info",
            f"{host}: no sources: entry, so it is read anonymously with default TLS "
            "(an entry without repositories gives it credentials, ca-bundle or insecure)",
        )
        for host in sorted({paths.normalize_registry(h) for h in hosts} - declared)
    ]
