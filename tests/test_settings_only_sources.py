"""Settings-only sources (issue 16, item 1): a `sources:` entry without `repositories` gives a
host's credentials and TLS settings to whatever the spec reaches there, here a Helm
dependency on another host that takes TLS with a private CA and a login.

Through the real CLI, real docker-registry servers and real skopeo: the chart's host A is plain
HTTP; the dependency's host B is TLS + htpasswd and named only by a settings-only entry; the
destination is plain HTTP. Without B's entry the plan fails on B's certificate and says how to
give B settings. `validate` says which hosts are read anonymously with default TLS, and a plan
notes once, sorted, each host it reached that has no entry (in-process: only a host the
system's CAs trust is reached without one, so `registry_overrides` stands the names in for
local registries).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cli_runner
import pytest
import trustme
from testbed import RegistryServer, push_chart

from mirrorspec import engine
from mirrorspec.context import Endpoint, RunContext
from mirrorspec.oci import RegistryClient
from mirrorspec.spec import load_spec

CANARY = "canary-b0b-Pa55-4e1d7c"

SPEC = """\
version: 1
credentials:
  b-login:
    username: bob
    password: {{env: B_PASSWORD}}
sources:
  - registry: {a}
    insecure: true
    repositories:
      - name: charts/app
        versions: "1.0.0"
        helm-dependencies: true
{b_entry}targets:
  - name: lab
    type: registry
    registry: {dest}
    insecure: true
"""

B_ENTRY = """\
  - registry: {b}
    credentials: b-login
    ca-bundle: {ca}
"""


@dataclass
class Bed:
    a: RegistryServer
    b: RegistryServer
    dest: RegistryServer
    workdir: Path

    def spec(self, *, b_entry: bool = True) -> Path:
        entry = B_ENTRY.format(b=self.b.host, ca=self.b.ca_file) if b_entry else ""
        path = self.workdir / ("spec.yaml" if b_entry else "spec-without-b.yaml")
        path.write_text(SPEC.format(a=self.a.host, b_entry=entry, dest=self.dest.host))
        return path

    def run(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        env = cli_runner.environment(B_PASSWORD=CANARY)
        return cli_runner.run(*args, env=env, check=check, never=[CANARY])

    def dest_tags(self, repository: str) -> list[str]:
        with RegistryClient(self.dest.host, insecure=True) as client:
            return sorted(client.list_tags(f"{self.b.host.replace(':', '_')}/{repository}"))


@pytest.fixture
def bed(registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> Bed:
    a = registry_factory()
    b = registry_factory(tls=True, users={"bob": CANARY})
    dest = registry_factory()
    for version in ("2.0.0", "2.1.0", "3.0.0"):
        push_chart(b, "charts/dep", version)
    dep = [{"name": "dep", "version": "^2.0.0", "repository": f"oci://{b.host}/charts"}]
    push_chart(a, "charts/app", "1.0.0", dependencies=dep)
    return Bed(a, b, dest, tmp_path)


def test_a_dependency_on_a_tls_login_host_is_copied_with_its_settings_only_entry(bed: Bed) -> None:
    spec = str(bed.spec())
    plan = json.loads(bed.run("plan", spec, "--format", "json").stdout)
    (target,) = plan["targets"]
    copies = {c["source"]: c for c in target["copies"]}
    dep = copies[f"{bed.b.host}/charts/dep"]
    assert [t["tag"] for t in dep["tags"]] == ["2.0.0", "2.1.0"]
    assert {t["dependency_of"] for t in dep["tags"]} == {f"{bed.a.host}/charts/app:1.0.0"}
    assert not [n for n in target["notes"] if "no sources: entry" in n["message"]]

    applied = bed.run("apply", spec, "--yes")
    assert "3 of 3 tag(s) copied and verified" in applied.stdout
    assert bed.dest_tags("charts/dep") == ["2.0.0", "2.1.0"]
    bed.run("plan", spec, "--detailed-exitcode", check=0)
    bed.run("audit", spec, "--content", check=0)


def test_without_the_entry_the_plan_fails_on_the_hosts_certificate(bed: Bed) -> None:
    failed = bed.run("plan", str(bed.spec(b_entry=False)), check=1)
    assert failed.stdout == ""
    assert failed.stderr == (
        f"error: cannot list tags of {bed.b.host}/charts/dep: TLS certificate of {bed.b.host} is not "
        f"trusted (unknown authority): set ca-bundle to the CA that signed it ({bed.b.host} has no "
        "sources: entry; one without repositories gives it credentials, ca-bundle or insecure)\n"
    )


def test_the_plan_notes_each_host_it_reached_without_an_entry_once_sorted(
    registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    a, deps = registry_factory(), registry_factory()
    for name in ("x", "y", "z"):
        push_chart(deps, f"charts/{name}", "1.0.0")
    needs = [
        {"name": "x", "version": "1.0.0", "repository": "oci://deps-b.example.test/charts"},
        {"name": "y", "version": "1.0.0", "repository": "oci://deps-a.example.test/charts"},
        {"name": "z", "version": "1.0.0", "repository": "oci://deps-c.example.test/charts"},
    ]
    for version in ("1.0.0", "1.1.0"):  # both lead to every host: still one note each
        push_chart(a, "charts/app", version, dependencies=needs, seed=version)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
sources:
  - registry: {a.host}
    insecure: true
    repositories:
      - {{name: charts/app, versions: "1.x", helm-dependencies: true}}
  - registry: deps-c.example.test
    insecure: true
targets:
  - {{name: lab, type: registry, registry: {registry_factory().host}, insecure: true}}
  - {{name: edge, type: registry, registry: {registry_factory().host}, insecure: true}}
"""
    )
    served = Endpoint(deps.host, insecure=True)
    hosts = ("deps-a.example.test", "deps-b.example.test", "deps-c.example.test")
    ctx = RunContext(load_spec(spec), registry_overrides=dict.fromkeys(hosts, served))
    try:
        plan = engine.plan(ctx)
    finally:
        ctx.close()

    assert len({a.registry for a in plan.artifacts}) == 4  # every host was reached
    for target in plan.targets:
        noted = [n for n in target.notes if "no sources: entry" in n.message]
        assert [(n.level, n.message.split(":")[0]) for n in noted] == [
            ("info", "deps-a.example.test"),
            ("info", "deps-b.example.test"),
        ]
        assert noted[0].message == (
            "deps-a.example.test: no sources: entry, so it is read anonymously with default TLS "
            "(an entry without repositories gives it credentials, ca-bundle or insecure)"
        )


# --- validate (offline) ------------------------------------------------------------------


def validate(tmp_path: Path, sources: str, *, check: int = 0) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\ncredentials:\n  hub: {username: u, password: {env: HUB_TOKEN}}\n"
        f"sources:\n{sources}"
        "targets:\n  - {name: lab, type: registry, registry: internal.example.com}\n"
    )
    return cli_runner.run("validate", str(spec), check=check)


def test_validate_names_the_declared_hosts_read_anonymously_with_default_tls(tmp_path: Path) -> None:
    proc = validate(
        tmp_path,
        "  - {registry: quay.io, repositories: [{name: a/b, tags: [v1]}]}\n"
        "  - {registry: docker.io, credentials: hub, repositories: [{name: c, tags: [v1]}]}\n"
        "  - {registry: registry-1.docker.io}\n"  # Docker Hub again: one host, one settings
        "  - {registry: 'ghcr.io', repositories: [{name: d/e, tags: [v1]}]}\n"
        "  - {registry: private.example.com, ca-bundle: ca.pem}\n"
        "  - {registry: plain.example.com, insecure: true}\n",
        check=1,
    )
    # Docker Hub's two spellings are one host, read one way: refused, as for two repository lists.
    assert "registry 'docker.io' is also sources[1], with another credentials" in proc.stderr

    (tmp_path / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    proc = validate(
        tmp_path,
        "  - {registry: quay.io, repositories: [{name: a/b, tags: [v1]}]}\n"
        "  - {registry: docker.io, credentials: hub}\n"
        "  - {registry: 'ghcr.io', repositories: [{name: d/e, tags: [v1]}]}\n"
        "  - {registry: private.example.com, ca-bundle: ca.pem}\n"
        "  - {registry: plain.example.com, insecure: true}\n",
    )
    spec = tmp_path / "spec.yaml"
    assert proc.stdout == (
        f"{spec}: valid (5 source(s), 3 of them settings only, 2 repository(ies), 1 target(s))\n"
        "reached anonymously with default TLS: ghcr.io, quay.io\n"
    )


def test_validate_says_hosts_charts_lead_to_are_read_anonymously_without_an_entry(tmp_path: Path) -> None:
    proc = validate(
        tmp_path,
        "  - registry: docker.io\n    credentials: hub\n    repositories:\n"
        "      - {name: charts/app, versions: '1.x', helm-dependencies: true}\n",
    )
    assert proc.stdout.splitlines()[1:] == [
        "reached anonymously with default TLS: any host that Helm dependencies lead to without a "
        "sources: entry"
    ]
    many = "".join(
        f"  - {{registry: h{i:02}.example.com, repositories: [{{name: a, tags: [v1]}}]}}\n" for i in range(12)
    )
    proc = validate(
        tmp_path,
        many
        + "  - registry: docker.io\n"
        + "    repositories: [{name: c, versions: '1.x', helm-dependencies: newest}]\n",
    )
    assert proc.stdout.splitlines()[1:] == [
        "reached anonymously with default TLS: docker.io, h00.example.com, h01.example.com, "
        "h02.example.com, h03.example.com, h04.example.com, h05.example.com, h06.example.com, "
        "h07.example.com, h08.example.com and 3 more; and any host that Helm dependencies lead to "
        "without a sources: entry"
    ]


def test_an_empty_repositories_list_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = validate(tmp_path, "  - registry: quay.io\n    repositories: []\n", check=1)
    spec = tmp_path / "spec.yaml"
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: {spec}:6:5: sources[0] (registry='quay.io') › repositories: an empty list selects "
        "nothing: list repositories, or leave the key out for an entry that only gives this host's settings\n"
    )


def test_the_spec_schema_shows_repositories_optional_and_says_what_leaving_it_out_means() -> None:
    schema = json.loads(cli_runner.run("schema").stdout)
    source = schema["$defs"]["Source"]
    # one of registry and oci-layout (an OCI image layout read offline)
    assert "required" not in source
    assert source["oneOf"] == [{"required": ["registry"]}, {"required": ["oci-layout"]}]
    repositories = source["properties"]["repositories"]
    assert repositories["minItems"] == 1  # `repositories: []` is refused, as loading does
    assert (
        "Without it, the entry selects nothing and only gives the host's settings"
        in (repositories["description"])
    )
