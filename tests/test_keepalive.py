"""Every connection reused: a plan over many repositories opens about as many TCP connections per
registry as it has requests in flight, not one per request (issue 15, item 1).

The real CLI plans against a real TLS + htpasswd `docker-registry`, reached through a
`ConnectionCounter` per role (source, destination) so that each registry host's connections are
counted. Before the fix, HEAD answers (a digest check), 401s and 404s were closed unread and
`requests` dropped their sockets: one new TLS connection per HEAD.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from testbed import MANIFEST_ACCEPT, RegistryServer, access_records, push_image
from testbed.counting import ConnectionCounter

MIRRORSPEC = str(Path(sys.executable).with_name("mirrorspec"))
USER, PASSWORD = "alice", "wonderland-pw"  # the tls_registry fixture's user
REPOSITORIES = 60
WORKERS = 4  # the plan's requests in flight; RunContext gives each registry a pool of max(4, it)
# Connections beyond the pool a client may honestly open: the https probe of a fresh client and
# a socket the server closed while idle. Far below the requests of the plan (3 per repository).
SLACK = 2


@pytest.fixture(scope="module")
def many(tls_registry: RegistryServer) -> str:
    """`REPOSITORIES` repositories `<prefix>/repo-NN` with tags 1.0.0 and 2.0.0, by blob mounts
    and manifest PUTs (a skopeo run each would take minutes); their prefix."""
    prefix = f"ka{uuid.uuid4().hex[:8]}"
    base = f"{prefix}/base"
    push_image(tls_registry, base, "1.0.0", seed=prefix, user=USER)
    session = requests.Session()
    session.trust_env = False
    session.auth = (USER, PASSWORD)
    session.verify = str(tls_registry.ca_file)
    got = session.get(f"{tls_registry.url}/v2/{base}/manifests/1.0.0", headers={"Accept": MANIFEST_ACCEPT})
    got.raise_for_status()
    manifest = json.loads(got.content)
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]

    def make(i: int) -> None:
        repository = f"{prefix}/repo-{i:02d}"
        for digest in blobs:
            mounted = session.post(
                f"{tls_registry.url}/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": base}
            )
            assert mounted.status_code == 201, mounted.text
        for tag in ("1.0.0", "2.0.0"):
            put = session.put(
                f"{tls_registry.url}/v2/{repository}/manifests/{tag}",
                data=got.content,
                headers={"Content-Type": got.headers["Content-Type"]},
            )
            assert put.status_code == 201, put.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(make, range(REPOSITORIES)))
    session.close()
    return prefix


@pytest.fixture
def counters(tls_registry: RegistryServer) -> Iterator[tuple[ConnectionCounter, ConnectionCounter]]:
    """Two counting relays to the one registry: the plan's source and its destination."""
    source, destination = ConnectionCounter(tls_registry.host), ConnectionCounter(tls_registry.host)
    with source.start(), destination.start():
        yield source, destination


def test_plan_reuses_connections(
    tls_registry: RegistryServer,
    many: str,
    counters: tuple[ConnectionCounter, ConnectionCounter],
    tmp_path: Path,
) -> None:
    source, destination = counters
    repositories = "".join(
        f'      - name: {many}/repo-{i:02d}\n        versions: ">=1.0.0 <2.0.0"\n'
        for i in range(REPOSITORIES)
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
credentials:
  lab:
    username: {USER}
    password: {{env: LAB_PASSWORD}}
sources:
  - registry: {source.host}
    credentials: lab
    ca-bundle: {tls_registry.ca_file}
    repositories:
{repositories}targets:
  - name: lab
    type: registry
    registry: {destination.host}
    prefix: mirror-{many}
    credentials: lab
    ca-bundle: {tls_registry.ca_file}
"""
    )
    before = len(access_records(tls_registry))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MIRRORSPEC_")}
    environment["LAB_PASSWORD"] = PASSWORD
    proc = subprocess.run(
        [MIRRORSPEC, "plan", str(spec), "-j", str(WORKERS)],
        capture_output=True,
        text=True,
        env=environment,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{REPOSITORIES} tag(s) to copy" in proc.stdout, proc.stdout[-2000:]

    served = access_records(tls_registry)[before:]
    # source: a tag list and a HEAD per repository; destination: a HEAD (404) per repository
    assert len(served) >= 3 * REPOSITORIES
    pool = max(WORKERS, 4)
    assert source.accepted <= pool + SLACK, (source.accepted, len(served))
    assert destination.accepted <= pool + SLACK, (destination.accepted, len(served))
    # The scheme (basic) is learnt once per registry and then sent up front: one 401 per host.
    assert [r.status for r in served].count(401) <= 2
