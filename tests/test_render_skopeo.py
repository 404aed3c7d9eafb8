"""`mirrorspec render skopeo` proven by running what it renders.

The upstream holds charts with a Helm dependency and images whose last path components collide
(`app`, `a/b/app`, `c/app`, `charts/app`, each with different content). Every rendered document's
own `# run:` command is executed with the real skopeo (1.9.3 here), and then
`mirrorspec audit --content` must find every wanted tag at its DESIGN destination path with the
upstream digest — which fails if skopeo's last-component naming made two repositories collide.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cli_runner
import pytest
from ruamel.yaml import YAML
from spec_text import DEST_LOGIN, lab_target
from testbed import RegistryServer, push_chart, push_image

from mirrorspec import RunContext, parse_spec
from mirrorspec.plan import Artifact
from mirrorspec.skopeo.sync_yaml import skopeo_documents, to_yaml

CANARY = "canary-Dest-Pa55-9e2a71"


@dataclass
class Document:
    comment: list[str]
    command: str
    config: dict[str, Any]
    text: str


def _split(output: str) -> list[Document]:
    documents = []
    for text in output.split("\n---\n"):
        comment = [line for line in text.splitlines() if line.startswith("#")]
        (run,) = [line.removeprefix("# run: ") for line in comment if line.startswith("# run: ")]
        documents.append(Document(comment, run, YAML(typ="safe").load(text), text))
    return documents


def _tag_sets(config: dict[str, Any]) -> dict[str, Any]:
    """A document's config with each tag list as a set (skopeo does not care about order),
    after checking that no tag is listed twice."""
    out: dict[str, Any] = {}
    for registry, block in config.items():
        out[registry] = dict(block)
        if "images" in block:
            for tags in block["images"].values():
                assert all(isinstance(t, str) for t in tags) and len(tags) == len(set(tags))
            out[registry]["images"] = {repo: set(tags) for repo, tags in block["images"].items()}
    return out


@dataclass
class Bed:
    upstream: RegistryServer
    destination: RegistryServer
    spec: Path
    env: dict[str, str]
    tmp: Path

    def mirrorspec(self, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
        return cli_runner.run(*args, env=self.env, check=check, never=[CANARY], timeout=120)

    @property
    def scope(self) -> str:
        return f"mirror/{self.upstream.host.replace(':', '_')}"


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Bed:
    upstream = registry_factory()
    destination = registry_factory(tls=True, users={"alice": CANARY})
    for version in ("17.9.0", "18.0.1", "18.0.4"):
        push_chart(upstream, "charts/redis", version)
    redis = [{"name": "redis", "version": "~18.0.0", "repository": f"oci://{upstream.host}/charts"}]
    for version in ("1.0.0", "1.2.0", "1.5.3", "2.0.0"):
        push_chart(upstream, "charts/platform", version, dependencies=redis)
    # four repositories called `app`, same tag names, different content
    for repository, tags in (
        ("app", ("1.9", "1.10", "2.0")),
        ("a/b/app", ("v1.0.0", "v1.1.0", "v2.0.0")),
        ("c/app", ("v1.0.0", "v1.1.0", "on")),  # `on` is a bool to YAML 1.1 (skopeo's yaml.v2)
        ("charts/app", ("v1.0.0", "v1.1.0")),
    ):
        for tag in tags:
            push_image(upstream, repository, tag, seed=repository)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
{DEST_LOGIN}sources:
  - registry: {upstream.host}
    insecure: true
    repositories:
      - name: charts/platform
        versions: ">=1.2.0 <2.0.0"
        helm-dependencies: true
      - name: app
        tags: ["1.*"]
      - name: a/b/app
        tags: ["v1.*"]
      - name: c/app
        tags: ["v1.*", "on"]
      - name: charts/app
        tags: ["v1.0.0"]
{lab_target(destination)}"""
    )
    env = {**os.environ, "DEST_PASSWORD": CANARY}
    return Bed(upstream, destination, spec, env, tmp_path)


def _skopeo_env(home: Path) -> dict[str, str]:
    """A private HOME and an empty registries.conf; the machine's CA variables are dropped."""
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
    return env


def _auth_file(path: Path, host: str, username: str, password: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        json.dump({"auths": {host: {"auth": auth}}}, handle)
    return path


def test_rendered_skopeo_sync_documents_reproduce_the_design_paths(bed: Bed) -> None:
    rendered = bed.mirrorspec("render", "skopeo", str(bed.spec), "--target", "lab").stdout
    documents = _split(rendered)
    host, dest = bed.upstream.host, bed.destination.host

    # one document per destination directory, explicit tag lists only (skopeo 1.9.3 < 1.15)
    assert "images-by-semver" not in rendered
    by_destination = {shlex.split(d.command)[-1]: _tag_sets(d.config) for d in documents}
    assert by_destination == {
        f"{dest}/{bed.scope}": {host: {"images": {"app": {"1.9", "1.10"}}, "tls-verify": False}},
        f"{dest}/{bed.scope}/a/b": {host: {"images": {"a/b/app": {"v1.0.0", "v1.1.0"}}, "tls-verify": False}},
        f"{dest}/{bed.scope}/c": {
            host: {"images": {"c/app": {"v1.0.0", "v1.1.0", "on"}}, "tls-verify": False}
        },
        f"{dest}/{bed.scope}/charts": {
            host: {
                "images": {
                    "charts/app": {"v1.0.0"},
                    "charts/platform": {"1.2.0", "1.5.3"},
                    "charts/redis": {"18.0.1", "18.0.4"},  # the Helm dependency closure
                },
                "tls-verify": False,
            }
        },
    }
    for document in documents:
        assert "no source credentials" in document.comment[0]
        assert "DEST_AUTH.json" in document.command

    bed.mirrorspec("audit", str(bed.spec), "--content", check=2)  # nothing there yet

    home = bed.tmp / "skopeo-home"
    home.mkdir()
    env = _skopeo_env(home)
    auth = _auth_file(home / "dest-auth.json", dest, "alice", CANARY)
    workdir = bed.tmp / "sync"
    workdir.mkdir()
    for document in documents:
        argv = shlex.split(document.command)
        filename = argv[-2]
        (workdir / filename).write_text(document.text)
        assert argv[:2] == ["skopeo", "sync"]
        # The destination's CA is this test bed's own, a directory holding it as ca.crt where
        # the command says DEST_CERT_DIR; the plain-HTTP upstream needs no flag: the
        # document's `tls-verify: false` must be enough.
        given = {"DEST_AUTH.json": str(auth), "DEST_CERT_DIR": str(bed.destination.cert_dir)}
        argv = [given.get(arg, arg) for arg in argv]
        proc = subprocess.run(
            argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"{argv}\n{proc.stderr}"

    bed.mirrorspec("audit", str(bed.spec), "--content")
    report = json.loads(bed.mirrorspec("audit", str(bed.spec), "--content", "--format", "json").stdout)
    content = [c for t in report["targets"] for c in t["content"]]
    assert len(content) == 12
    assert {c["status"] for c in content} == {"present"}


# --- the rendering rules, without any registry ------------------------------------------------


def _ctx() -> RunContext:
    spec = parse_spec(
        """\
version: 1
credentials:
  up:
    username: bob
    password: {env: UP_PASSWORD}
sources:
  - registry: reg.example.com
    credentials: up
    repositories:
      - name: charts/platform
        versions: ">=1.2.0 <2.0.0"
        helm-dependencies: true
      - name: charts/redis
        versions: "18.0.4"
      - name: tools/cli
        versions: ">=1.0.0"
      - name: tools/builds
        versions: ">=1.0.0"
  - registry: insecure.example.com:5000
    insecure: true
    repositories:
      - name: redis
        tags: ["7.*"]
targets:
  - name: lab
    type: registry
    registry: mirror.example.com
    prefix: vendor
"""
    )
    return RunContext(spec)


_PLATFORM = "reg.example.com/charts/platform:1.2.0"
_ARTIFACTS = [
    Artifact("reg.example.com", "charts/platform", "1.2.0", "sha256:" + "1" * 64),
    Artifact("reg.example.com", "charts/platform", "1.5.3", "sha256:" + "2" * 64),
    Artifact("reg.example.com", "charts/redis", "18.0.1", "sha256:" + "3" * 64, _PLATFORM),
    Artifact("reg.example.com", "charts/redis", "18.0.4", "sha256:" + "4" * 64),
    Artifact("reg.example.com", "tools/cli", "v1.0.0", "sha256:" + "5" * 64),
    Artifact("reg.example.com", "tools/builds", "1.0.0_build.2", "sha256:" + "6" * 64),
    Artifact("insecure.example.com:5000", "redis", "7.2.4", "sha256:" + "7" * 64),
]


def _render(*, semver_capable: bool) -> dict[str, dict[str, Any]]:
    ctx = _ctx()
    documents = skopeo_documents(
        ctx,
        ctx.spec.target("lab"),
        _ARTIFACTS,
        endpoint_host="mirror.example.com",
        semver_capable=semver_capable,
    )
    return {d.destination: d.config for d in documents}


def test_old_skopeo_gets_explicit_tags_and_insecure_sources_tls_verify_false() -> None:
    assert _render(semver_capable=False) == {
        "mirror.example.com/vendor/insecure.example.com_5000": {
            "insecure.example.com:5000": {"images": {"redis": ["7.2.4"]}, "tls-verify": False}
        },
        "mirror.example.com/vendor/reg.example.com/charts": {
            "reg.example.com": {
                "images": {"charts/platform": ["1.2.0", "1.5.3"], "charts/redis": ["18.0.1", "18.0.4"]}
            }
        },
        "mirror.example.com/vendor/reg.example.com/tools": {
            "reg.example.com": {"images": {"tools/builds": ["1.0.0_build.2"], "tools/cli": ["v1.0.0"]}}
        },
    }


def test_new_skopeo_gets_semver_only_where_it_selects_the_same_tags() -> None:
    docs = _render(semver_capable=True)
    charts = docs["mirror.example.com/vendor/reg.example.com/charts"]["reg.example.com"]
    # the chart's own range, but its dependency repository (also asked for directly) stays explicit
    assert charts["images-by-semver"] == {"charts/platform": ">=1.2.0 <2.0.0"}
    assert charts["images"] == {"charts/redis": ["18.0.1", "18.0.4"]}
    tools = docs["mirror.example.com/vendor/reg.example.com/tools"]["reg.example.com"]
    assert tools["images-by-semver"] == {"tools/cli": ">=1.0.0"}
    # skopeo parses tags with Masterminds' semver.NewVersion, which rejects Helm's `_` build
    # tags: `images-by-semver` would silently skip 1.0.0_build.2, so it must stay explicit
    assert tools["images"] == {"tools/builds": ["1.0.0_build.2"]}


def test_rendered_yaml_names_credentials_never_their_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UP_PASSWORD", CANARY)
    ctx = _ctx()
    documents = skopeo_documents(
        ctx, ctx.spec.target("lab"), _ARTIFACTS, endpoint_host="mirror.example.com", semver_capable=False
    )
    text = to_yaml(documents)
    assert CANARY not in text and "bob" not in text
    (secured,) = [d for d in documents if "tools" in d.destination]
    assert "source credentials 'up'" in secured.note and "--src-authfile" in secured.note
    assert "credentials" not in json.dumps(secured.config)
    assert text.count("# run: skopeo sync ") == 3


# --- --output-dir: files, certificate directories and commands that work ------------------------

UP_PASSWORD = "canary-Up-Pa55-41c9e0"


def test_output_dir_commands_work_against_private_ca_registries(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """Both ends TLS with their own private CAs and logins: the source's ca-bundle must reach
    skopeo as the document's cert-dir, the target's as --dest-cert-dir. The printed commands
    run as they are (only the auth files, which are never written, are given)."""
    upstream = registry_factory(tls=True, users={"bob": UP_PASSWORD})
    destination = registry_factory(tls=True, users={"alice": CANARY})
    for repository, tag in (("team/app", "1.0.0"), ("team/app", "1.1.0"), ("tools/cli", "2.0.0")):
        push_image(upstream, repository, tag, seed=repository)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
credentials:
  up: {{username: bob, password: {{env: UP_PASSWORD}}}}
  dest: {{username: alice, password: {{env: DEST_PASSWORD}}}}
sources:
  - registry: {upstream.host}
    credentials: up
    ca-bundle: {upstream.ca_file}
    repositories:
      - name: team/app
        versions: ">=1.0.0"
      - name: tools/cli
        tags: ["2.*"]
{lab_target(destination)}"""
    )
    env = {**os.environ, "DEST_PASSWORD": CANARY, "UP_PASSWORD": UP_PASSWORD}
    never = [CANARY, UP_PASSWORD]
    out = tmp_path / "rendered"

    done = cli_runner.run("render", "skopeo", str(spec), "--output-dir", str(out), env=env, never=never)

    commands = done.stdout.splitlines()
    assert len(commands) == 2  # team/ and tools/ are two destination directories
    assert sorted(p.name for p in out.iterdir()) == ["certs", "sync-1.yaml", "sync-2.yaml"]
    certs = {p.parent.name: p.read_bytes() for p in out.glob("certs/*/ca.crt")}
    assert certs == {
        upstream.host.replace(":", "_"): upstream.ca_file.read_bytes(),  # type: ignore[union-attr]
        destination.host.replace(":", "_"): destination.ca_file.read_bytes(),  # type: ignore[union-attr]
    }
    for path in out.glob("sync-*.yaml"):
        text = path.read_text()
        assert CANARY not in text and UP_PASSWORD not in text and "bob" not in text
        config = YAML(typ="safe").load(text)
        assert config[upstream.host]["cert-dir"] == str(out / "certs" / upstream.host.replace(":", "_"))

    home = tmp_path / "skopeo-home"
    home.mkdir()
    skopeo_env = _skopeo_env(home)
    auth = {
        "SRC_AUTH.json": str(_auth_file(home / "src-auth.json", upstream.host, "bob", UP_PASSWORD)),
        "DEST_AUTH.json": str(_auth_file(home / "dest-auth.json", destination.host, "alice", CANARY)),
    }
    # Without the source's cert-dir (the stdout document as it was), skopeo cannot trust the
    # source: what --output-dir adds is what makes it work.
    first = shlex.split(commands[0])
    bare = YAML(typ="safe").load(Path(first[-2]).read_text())
    del bare[upstream.host]["cert-dir"]
    (tmp_path / "bare.yaml").write_text(json.dumps(bare))
    failing = [auth.get(a, str(tmp_path / "bare.yaml") if a == first[-2] else a) for a in first]
    refused = subprocess.run(
        failing, env=skopeo_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode != 0 and "x509" in refused.stderr, refused.stderr

    cli_runner.run("audit", str(spec), "--content", env=env, never=never, check=2)
    for command in commands:
        argv = [auth.get(arg, arg) for arg in shlex.split(command)]
        assert argv[:2] == ["skopeo", "sync"]
        proc = subprocess.run(
            argv, env=skopeo_env, cwd=home, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, f"{argv}\n{proc.stderr}"
    cli_runner.run("audit", str(spec), "--content", env=env, never=never)  # every tag, by digest


def test_output_dir_must_be_new_or_empty(bed: Bed) -> None:
    out = bed.tmp / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    done = bed.mirrorspec("render", "skopeo", str(bed.spec), "--output-dir", str(out), check=1)
    assert done.stderr == f"error: --output-dir {out} exists and is not an empty directory\n"
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
