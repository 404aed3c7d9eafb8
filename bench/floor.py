"""B3's floor: the registry requests of a plan, made by a bare keep-alive `requests.Session`.

What no registry client can beat on this machine: the same requests a `mirrorspec plan` of the
B3 spec makes (per repository one `GET tags/list` and one `HEAD` per selected tag at the source,
then one `HEAD` per selected tag at the destination, credentials sent up front), with the same
concurrency (`concurrency` requests in flight per registry, each repository's destination HEADs
started as soon as its source digests are known), and nothing else: no spec, no validation, no
retries, no deadlines, no limits on what a registry answers. It runs as its own process, so
Python's start-up and `import requests` count as they do for mirrorspec.

Run by `bench/run.py` with one JSON argument (see `main`); prints one JSON line with its counts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def session(ca: str, concurrency: int, auth: tuple[str, str] | None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    s.auth = auth
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
    s.mount("https://", adapter)
    return s


def registry_requests(
    config: dict[str, Any], dest_auth: Callable[[], tuple[str, str] | None]
) -> Counter[str]:
    """The plan's registry requests (see the module docstring); `dest_auth()` gives the
    destination's login, waiting for it if it is still being fetched (a provider's API call)."""
    n = int(config["concurrency"])
    wanted = set(config["tags"])
    src = session(config["source_ca"], n, None)
    dst: list[requests.Session] = []  # built by the first destination request
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    futures: list[Future[None]] = []

    def count(what: str) -> None:
        with lock:
            counts[what] += 1

    def dest_session() -> requests.Session:
        with lock:
            if not dst:
                dst.append(session(config["dest_ca"], n, dest_auth()))
            return dst[0]

    def destination(repo: str, tag: str) -> None:
        url = f"{config['dest']}/v2/{config['prefix']}/{repo}/manifests/{tag}"
        with dest_session().head(url, headers={"Accept": ACCEPT}) as resp:
            count(f"destination HEAD {resp.status_code}")

    def source(repo: str) -> None:
        with src.get(f"{config['source']}/v2/{repo}/tags/list") as resp:
            resp.raise_for_status()
            tags = sorted(set(resp.json()["tags"] or ()) & wanted)
        count("source GET tags/list")
        for tag in tags:
            with src.head(f"{config['source']}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}) as r:
                r.raise_for_status()
                assert r.headers["Docker-Content-Digest"]
            count("source HEAD 200")
            with lock:
                futures.append(dest_lane.submit(destination, repo, tag))

    with ThreadPoolExecutor(n) as source_lane, ThreadPoolExecutor(n) as dest_lane:
        for done in [source_lane.submit(source, repo) for repo in config["repos"]]:
            done.result()
        for future in list(futures):
            future.result()
    return counts


def main() -> None:
    """argv[1]: {"source": url, "source_ca": path, "dest": url, "dest_ca": path, "user": name,
    "password_env": variable, "repos": [...], "tags": [...] (the selected ones), "prefix":
    destination path before the repository, "concurrency": n}."""
    config: dict[str, Any] = json.loads(sys.argv[1])
    login = (config["user"], os.environ[config["password_env"]])
    print(json.dumps(dict(registry_requests(config, lambda: login))))


if __name__ == "__main__":
    main()
