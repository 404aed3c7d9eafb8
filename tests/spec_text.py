"""Spec text the CLI tests share: the opening of a spec whose destinations log in as the
`tls_registry` fixture's user (`conftest.py`), the password read from `DEST_PASSWORD`."""

from __future__ import annotations

from testbed import RegistryServer

__all__ = ["DEST_LOGIN", "MINIMAL_HEAD", "MINIMAL_SPEC", "lab_target", "plain_http_spec"]

# Ends with a newline: `f"{DEST_LOGIN}sources: ..."`, or more `credentials:` entries after it.
DEST_LOGIN = "version: 1\ncredentials:\n  dest:\n    username: alice\n    password: {env: DEST_PASSWORD}\n"


def lab_target(destination: RegistryServer) -> str:
    """The `targets:` block that closes most CLI tests' specs: one `registry` target `lab` on a
    TLS `destination` (the `tls_registry` fixture), under `mirror/`, logging in as `dest`."""
    return (
        "targets:\n"
        "  - name: lab\n"
        "    type: registry\n"
        f"    registry: {destination.host}\n"
        "    prefix: mirror\n"
        "    credentials: dest\n"
        f"    ca-bundle: {destination.ca_file}\n"
    )


# The opening of a spec that validates offline and names nothing local (lines 1-6: tests that
# check positions count on them), and with a target, a whole spec for commands that never connect.
MINIMAL_HEAD = """\
version: 1
sources:
  - registry: docker.io
    repositories:
      - name: redis
        tags: ["7.2.4"]
"""
MINIMAL_SPEC = (
    MINIMAL_HEAD + "targets:\n  - name: lab\n    type: registry\n    registry: internal.example.com\n"
)


def plain_http_spec(upstream: str, destination: str, selection: str, *, prefix: str = "mirror") -> str:
    """One plain-HTTP source repository `team/app` selected by `selection` (a YAML mapping's
    key: value), copied to one plain-HTTP `registry` target `lab`."""
    return (
        f"version: 1\nsources:\n  - registry: {upstream}\n    insecure: true\n    repositories:\n"
        f"      - name: team/app\n        {selection}\ntargets:\n  - name: lab\n    type: registry\n"
        f"    registry: {destination}\n    prefix: {prefix}\n    insecure: true\n"
    )
