"""Tiny images and Helm charts, built offline and pushed with skopeo (the reference client).

Each artifact is written as a hand-made OCI layout (`oci-layout`, `blobs/sha256/…`,
`index.json` with `org.opencontainers.image.ref.name`; research/testbed.md §2.4) and copied with
`skopeo copy oci:<layout>:<tag> docker://<host>/<repo>:<tag>`. Content is a pure function of
(repository, tag, seed), so the same call always yields the same digest and different seeds
yield different ones.

skopeo is isolated from the machine (testbed.md §0.2, §0.4, §3): `HOME`/`XDG_RUNTIME_DIR` point
at a temp dir, credentials go only through a 0600 `--dest-authfile` (never `--creds` on a
command line), the CA through `--dest-cert-dir`, and the inherited `SSL_CERT_FILE`/`SSL_CERT_DIR`
are dropped because skopeo would otherwise trust those instead.

`user` picks which of the server's users pushes (default: the first one). The few direct HTTP
calls (delete, bulk tagging) authenticate with that user's basic credentials, or with a token
minted by the test bed's own issuer, so they do not show up in the issuer's request counter.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests

from .registry import RegistryServer, TestbedError

__all__ = [
    "CHART_CONFIG_MEDIA_TYPE",
    "CHART_LAYER_MEDIA_TYPE",
    "MANIFEST_ACCEPT",
    "OCI_MANIFEST",
    "add_tags",
    "chart_archive",
    "chart_tag",
    "delete_tag",
    "push_chart",
    "push_image",
    "retag",
    "run_skopeo",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CHART_CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_LAYER_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
# Without every type, 2.8.2 answers 404 for OCI manifests and rewrites schema2 to schema1
# (testbed.md §5.2).
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
SKOPEO_TIMEOUT = 60


def chart_tag(version: str) -> str:
    """OCI tags cannot hold `+`; Helm stores it as `_` (research/sync.md §3)."""
    return version.replace("+", "_")


def push_image(
    server: RegistryServer,
    repository: str,
    tag: str,
    *,
    seed: str = "",
    docker_format: bool = False,
    user: str | None = None,
    filler: int = 0,
) -> str:
    """Push a one-layer image and return its manifest digest.

    `docker_format=True` lets skopeo convert it to a Docker schema2 manifest (`--format v2s2`).
    `filler` adds a file of that many pseudo-random bytes (a function of `seed`) to the layer:
    they do not compress, so the layer is a little larger than `filler`.
    """
    text = f"repository={repository}\ntag={tag}\nseed={seed}\n".encode()
    files = {"testbed.txt": text}
    if filler:
        files["filler.bin"] = random.Random(f"filler:{seed}").randbytes(filler)
    tar = _tar(files)
    layer = _gzip(tar)
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"testbed.seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
            # a history entry keeps a later schema1 conversion possible (testbed.md §5.2)
            "history": [{"created_by": "mirrorspec testbed"}],
        }
    )
    return _push_layout(
        server,
        repository,
        tag,
        config=(OCI_CONFIG, config),
        layers=[(OCI_LAYER, layer)],
        annotations={},
        extra_args=["--format", "v2s2"] if docker_format else [],
        user=user,
    )


def push_chart(
    server: RegistryServer,
    repository: str,
    version: str,
    *,
    name: str | None = None,
    dependencies: Iterable[Mapping[str, Any]] = (),
    seed: str = "",
    user: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes] | None = None,
    package: bytes | None = None,
) -> str:
    """Push a Helm-style OCI chart under tag `chart_tag(version)`; return its manifest digest.

    The config blob is Chart.yaml as JSON, as `helm push` writes it; each dependency is a
    mapping with `name`, `version` (a range) and `repository` (e.g. `oci://host/path`).
    `metadata` adds Chart.yaml keys (`appVersion`, `annotations`); `files` adds or replaces
    files of the chart archive, by their path in the chart's directory (`values.yaml`,
    `.relok8s-images.yaml`, `charts/redis-17.0.0.tgz` from `chart_archive`); `package` replaces
    the whole archive (a hostile one).
    """
    name = name or repository.rsplit("/", 1)[-1]
    deps = [dict(d) for d in dependencies]
    meta: dict[str, Any] = {"name": name, "version": version, "apiVersion": "v2", **(metadata or {})}
    if seed:
        meta["description"] = f"testbed seed {seed}"
    if deps:
        meta["dependencies"] = deps  # helm omits the key when empty (omitempty)
    if package is None:
        package = chart_archive(
            name, meta, {"values.yaml": f"seed: {json.dumps(seed)}\n".encode(), **(files or {})}
        )
    return _push_layout(
        server,
        repository,
        chart_tag(version),
        config=(CHART_CONFIG_MEDIA_TYPE, _json(meta)),
        layers=[(CHART_LAYER_MEDIA_TYPE, package)],
        annotations={
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": version,
        },
        extra_args=[],
        user=user,
    )


def chart_archive(name: str, metadata: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """A chart archive as `helm package` lays it out: `<name>/Chart.yaml` (from `metadata`, one
    JSON value per key, which YAML reads as written) and `files` under `<name>/`."""
    chart_yaml = "".join(f"{k}: {json.dumps(v)}\n" for k, v in metadata.items()).encode()
    entries = {f"{name}/Chart.yaml": chart_yaml, **{f"{name}/{path}": data for path, data in files.items()}}
    return _gzip(_tar(entries))


def retag(server: RegistryServer, repository: str, tag: str, *, seed: str, user: str | None = None) -> str:
    """Move `tag` to a different image (new content from `seed`); return the new digest."""
    return push_image(server, repository, tag, seed=seed, user=user)


def delete_tag(server: RegistryServer, repository: str, tag: str, *, user: str | None = None) -> None:
    """Delete the manifest `tag` points to.

    2.8.2 cannot delete by tag (400 DIGEST_INVALID), and deleting the digest removes *every*
    tag that points at it (testbed.md §5.3).
    """
    with _Http(server, repository, user) as http:
        head = http.request("HEAD", f"/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        digest = head.headers.get("Docker-Content-Digest")
        if head.status_code != 200 or not digest:
            raise TestbedError(f"HEAD {repository}:{tag} gave {head.status_code}, no digest")
        resp = http.request("DELETE", f"/manifests/{digest}")
        if resp.status_code != 202:
            raise TestbedError(f"DELETE {repository}@{digest} gave {resp.status_code}")


def add_tags(
    server: RegistryServer,
    repository: str,
    source: str,
    tags: Iterable[str],
    *,
    user: str | None = None,
) -> str:
    """Point many more tags at the manifest `source` by re-PUTting its bytes (one HTTP call per
    tag, far faster than one skopeo run each); return the manifest digest."""
    with _Http(server, repository, user) as http:
        got = http.request("GET", f"/manifests/{source}", headers={"Accept": MANIFEST_ACCEPT})
        if got.status_code != 200:
            raise TestbedError(f"GET {repository}:{source} gave {got.status_code}")
        media_type = got.headers["Content-Type"].split(";")[0]
        for tag in tags:
            put = http.request(
                "PUT",
                f"/manifests/{tag}",
                data=got.content,
                headers={"Content-Type": media_type},
            )
            if put.status_code != 201:
                raise TestbedError(f"PUT {repository}:{tag} gave {put.status_code}: {put.text}")
        return "sha256:" + hashlib.sha256(got.content).hexdigest()


def run_skopeo(server: RegistryServer, args: list[str], *, user: str | None = None) -> str:
    """Run skopeo against `server` with isolated config; `args` must not carry TLS/auth flags.

    The destination flags are added for `copy`; for other commands (`inspect`, `list-tags`)
    the generic `--tls-verify`/`--cert-dir`/`--authfile` flags are used.
    """
    with tempfile.TemporaryDirectory(prefix="testbed-skopeo-") as tmp:
        home = Path(tmp)
        policy = home / "policy.json"
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        registries = home / "registries.conf"
        registries.write_text("")
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"SSL_CERT_FILE", "SSL_CERT_DIR", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG"}
        }
        env.update(
            HOME=str(home),
            XDG_RUNTIME_DIR=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            CONTAINERS_REGISTRIES_CONF=str(registries),
        )
        command, rest = args[0], args[1:]
        prefix = "--dest-" if command == "copy" else "--"
        flags: list[str] = []
        if server.tls:
            flags.append(f"{prefix}cert-dir={server.cert_dir}")
        else:
            flags.append(f"{prefix}tls-verify=false")
        credentials = _credentials(server, user)
        if credentials is not None:
            authfile = home / "auth.json"
            fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                auth = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
                json.dump({"auths": {server.host: {"auth": auth}}}, handle)
            flags.append(f"{prefix}authfile={authfile}")
        argv = ["skopeo", "--policy", str(policy), command, *flags, *rest]
        try:
            proc = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=SKOPEO_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise TestbedError("skopeo not found on PATH: run `make setup`") from None
        if proc.returncode != 0:
            raise TestbedError(
                f"skopeo {command} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout.decode(errors="replace")


# -- internals -------------------------------------------------------------------------------


def _push_layout(
    server: RegistryServer,
    repository: str,
    tag: str,
    *,
    config: tuple[str, bytes],
    layers: list[tuple[str, bytes]],
    annotations: dict[str, str],
    extra_args: list[str],
    user: str | None,
) -> str:
    with tempfile.TemporaryDirectory(prefix="testbed-layout-") as tmp:
        layout = Path(tmp) / "layout"
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _write_blob(layout, config[0], config[1]),
            "layers": [_write_blob(layout, media, data) for media, data in layers],
        }
        if annotations:
            manifest["annotations"] = annotations
        descriptor = _write_blob(layout, OCI_MANIFEST, _json(manifest))
        descriptor["annotations"] = {"org.opencontainers.image.ref.name": tag}
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (layout / "index.json").write_bytes(
            _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]})
        )
        digestfile = Path(tmp) / "digest"
        run_skopeo(
            server,
            [
                "copy",
                "--quiet",
                "--retry-times=2",
                f"--digestfile={digestfile}",
                *extra_args,
                f"oci:{layout}:{tag}",
                f"docker://{server.host}/{repository}:{tag}",
            ],
            user=user,
        )
        return digestfile.read_text().strip()


def _credentials(server: RegistryServer, user: str | None) -> tuple[str, str] | None:
    if not server.users:
        return None
    name = user or next(iter(server.users))
    return name, server.users[name]


class _Http:
    """requests against one repository of a testbed registry, already authenticated."""

    def __init__(self, server: RegistryServer, repository: str, user: str | None) -> None:
        self.base = f"{server.url}/v2/{repository}"
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (§0.1)
        self.verify: str | bool = str(server.ca_file) if server.ca_file else True
        if server.token_issuer is not None:
            subject = user or next(iter(server.users), None)
            access = [{"type": "repository", "name": repository, "actions": ["*"]}]
            token = server.token_issuer.mint(subject, access)
            self.session.headers["Authorization"] = f"Bearer {token}"
        else:
            credentials = _credentials(server, user)
            if credentials is not None:
                self.session.auth = credentials

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, verify=self.verify, timeout=30, **kwargs)

    def __enter__(self) -> _Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _write_blob(layout: Path, media_type: str, data: bytes) -> dict[str, Any]:
    digest = _digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0  # reproducible digests
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
