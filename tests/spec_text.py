"""Spec text the CLI tests share: the opening of a spec whose destinations log in as the
`tls_registry` fixture's user (`conftest.py`), the password read from `DEST_PASSWORD`."""

from __future__ import annotations

from testbed import RegistryServer

__all__ = ["DEST_LOGIN", "MINIMAL_SPEC", "lab_target"]

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


# A spec that validates offline and names nothing local: for the commands that never connect.
MINIMAL_SPEC = """\
version: 1
sources:
  - registry: docker.io
    repositories:
      - name: redis
        tags: ["7.2.4"]
targets:
  - name: lab
    type: registry
    registry: internal.example.com
"""
