"""The example provider that lives outside the package (`tests/plugins/indexed_registry`), through
the real CLI: the installed console script in a subprocess, real docker-registry servers (plain
HTTP upstream; TLS + htpasswd destination) and real skopeo.

The plugin is installed into the test venv by `make setup` with its own entry point, as a
third-party provider would be; nothing here imports it. What installing it must give:
`validate` and `schema` know its `type:` and keys, `plan` shows its native resources next to
the engine's copies, `apply` writes both, `audit` is in sync afterwards and names drift when
its index file is edited by hand; without its entry point, a spec naming the type is the
spec's usual one-line error.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cli_runner
import pytest
from testbed import RegistryServer, push_image, start_registry

from mirrorspec import providers

MIRRORSPEC = cli_runner.MIRRORSPEC
PLUGIN = "mirrorspec-indexed-registry"
TYPE = "indexed-registry"
PASSWORD = "portal-Pa55word-2b7e41"

SPEC = """\
version: 1
credentials:
  portal:
    username: alice
    password: {{env: PORTAL_PASSWORD}}
sources:
  - registry: {upstream}
    insecure: true
    repositories:
{repositories}
targets:
  - name: portal
    type: indexed-registry
    registry: {destination}
    prefix: mirror
    credentials: portal
    ca-bundle: {ca_file}
    index: {index}
"""
APP = """\
      - name: team/app
        tags: ["v1.*"]
"""
TOOL = """\
      - name: team/tool
        tags: ["1.0"]
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, dict[str, str]]]:
    with start_registry(tmp_path_factory.mktemp("plugin-upstream")) as server:
        digests = {
            f"team/app:{tag}": push_image(server, "team/app", tag, seed=tag)
            for tag in ("v1.0.0", "v1.1.0", "v2.0.0")
        }
        digests["team/tool:1.0"] = push_image(server, "team/tool", "1.0", seed="tool")
        yield server, digests


@dataclass
class Bed:
    upstream: RegistryServer
    digests: dict[str, str]
    destination: RegistryServer
    spec: Path
    index: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: int | None = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return cli_runner.run(*args, env={**self.env, **(env or {})}, check=check, never=[PASSWORD])

    def json(self, *args: str, check: int = 0) -> Any:
        return json.loads(self.run(*args, "--format", "json", check=check).stdout)

    def write_spec(self, repositories: str = APP + TOOL, index: str = "index/mirror.json") -> None:
        self.spec.write_text(
            SPEC.format(
                upstream=self.upstream.host,
                repositories=repositories.rstrip("\n"),
                destination=self.destination.host,
                ca_file=self.destination.ca_file,
                index=index,
            )
        )

    def entries(self) -> dict[str, Any]:
        entries: dict[str, Any] = json.loads(self.index.read_text())["entries"]
        return entries

    def repository(self, name: str) -> str:
        """Where an upstream repository lands (scoped layout under the prefix)."""
        return f"mirror/{self.upstream.host.replace(':', '_')}/{name}"


@pytest.fixture
def bed(
    upstream: tuple[RegistryServer, dict[str, str]],
    registry_factory: Callable[..., RegistryServer],
    tmp_path: Path,
) -> Bed:
    destination = registry_factory(tls=True, users={"alice": PASSWORD})
    (tmp_path / "index").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MIRRORSPEC_DEBUG"}
    env["PORTAL_PASSWORD"] = PASSWORD
    bed = Bed(
        upstream[0], upstream[1], destination, tmp_path / "spec.yaml", tmp_path / "index" / "mirror.json", env
    )
    bed.write_spec()
    return bed


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), text
    return text.rstrip("\n")


# --- the spec knows the type ------------------------------------------------------------------


def test_the_plugin_is_installed_through_its_own_entry_point() -> None:
    (entry_point,) = [
        ep for ep in importlib.metadata.distribution(PLUGIN).entry_points if ep.group == providers.GROUP
    ]
    assert (entry_point.name, entry_point.value) == (TYPE, "mirrorspec_indexed_registry")
    assert providers.available()[TYPE] == "mirrorspec_indexed_registry"


def test_validate_accepts_the_plugins_type(bed: Bed) -> None:
    proc = bed.run("validate", str(bed.spec))
    assert proc.stdout == f"{bed.spec}: valid (1 source(s), 2 repository(ies), 1 target(s))\n"


@pytest.mark.parametrize(
    ("replace", "location", "message"),
    [
        pytest.param(
            ("index: index/mirror.json", "index: index/mirror.txt"),
            "21:12",
            "targets[0] (name='portal') › index: 'index/mirror.txt' is not a path to a .json file "
            "(pattern ^.+\\.json$)",
            id="pattern-with-its-meaning",
        ),
        pytest.param(
            ("index: index/mirror.json", "index: index/.json"),
            "21:12",
            "targets[0] (name='portal') › index: the index file needs a name before '.json'",
            id="whole-block-problem",
        ),
        pytest.param(
            ("    index: index/mirror.json\n", ""),
            "15:5",
            "targets[0] (name='portal'): missing required key 'index'",
            id="missing-key",
        ),
        pytest.param(
            ("    index:", "    bogus: 1\n    index:"),
            "21:5",
            "targets[0] (name='portal'): unknown key 'bogus' (expected one of: ca-bundle, "
            "credentials, index, insecure, layout, mode, name, prefix, registry, type)",
            id="unknown-key-lists-the-plugins-keys",
        ),
    ],
)
def test_validate_reports_the_plugins_keys_like_any_other(
    bed: Bed, replace: tuple[str, str], location: str, message: str
) -> None:
    text = bed.spec.read_text()
    assert replace[0] in text
    bed.spec.write_text(text.replace(*replace))

    proc = bed.run("validate", str(bed.spec), check=1)

    assert one_line(proc.stderr) == f"error: {bed.spec}:{location}: {message}"
    assert proc.stdout == ""


def test_schema_includes_the_plugins_type() -> None:
    proc = subprocess.run([MIRRORSPEC, "schema"], capture_output=True, text=True, timeout=60, check=True)
    schema = json.loads(proc.stdout)
    models = {
        definition["properties"]["type"]["const"]: definition
        for definition in schema["$defs"].values()
        if "const" in definition.get("properties", {}).get("type", {})
    }
    assert set(models) == set(providers.available())
    plugin = models[TYPE]
    assert plugin["properties"]["index"]["pattern"] == r"^.+\.json$"
    assert {"name", "type", "registry", "index"} <= set(plugin["required"])
    assert plugin["additionalProperties"] is False


# --- plan, apply, audit -----------------------------------------------------------------------


def test_plan_shows_the_native_entries_and_the_copies(bed: Bed) -> None:
    plan = bed.json("plan", str(bed.spec))

    (target,) = plan["targets"]
    assert (target["type"], target["registry"]) == (TYPE, bed.destination.host)
    app, tool = bed.repository("team/app"), bed.repository("team/tool")
    assert target["changes"] == [
        {
            "action": "create",
            "resource": "index-entry",
            "id": app,
            "before": None,
            "after": {"source": f"{bed.upstream.host}/team/app", "tags": ["v1.0.0", "v1.1.0"]},
            "reason": "",
        },
        {
            "action": "create",
            "resource": "index-entry",
            "id": tool,
            "before": None,
            "after": {"source": f"{bed.upstream.host}/team/tool", "tags": ["1.0"]},
            "reason": "",
        },
    ]
    copies = {c["destination"]: c for c in target["copies"]}
    assert set(copies) == {f"{bed.destination.host}/{app}", f"{bed.destination.host}/{tool}"}
    assert {c["engine"] for c in copies.values()} == {"skopeo"}  # no native copy engine
    assert [(t["tag"], t["digest"]) for t in copies[f"{bed.destination.host}/{app}"]["tags"]] == [
        ("v1.0.0", bed.digests["team/app:v1.0.0"]),
        ("v1.1.0", bed.digests["team/app:v1.1.0"]),
    ]
    assert not bed.index.exists()  # plan writes nothing
    assert bed.run("plan", str(bed.spec), "--detailed-exitcode", check=2).returncode == 2


def test_apply_writes_entries_and_copies_then_audit_is_in_sync(bed: Bed) -> None:
    applied = bed.run("apply", str(bed.spec), "--yes")

    assert "Applied: 2 change(s), 3 of 3 tag(s) copied and verified." in applied.stdout
    app, tool = bed.repository("team/app"), bed.repository("team/tool")
    assert bed.entries() == {
        app: {
            "source": f"{bed.upstream.host}/team/app",
            "tags": ["v1.0.0", "v1.1.0"],
            "managed-by": "mirrorspec",
        },
        tool: {"source": f"{bed.upstream.host}/team/tool", "tags": ["1.0"], "managed-by": "mirrorspec"},
    }
    assert bed.run("plan", str(bed.spec), "--detailed-exitcode").returncode == 0

    audit = bed.json("audit", str(bed.spec), "--content")
    (target,) = audit["targets"]
    assert audit["in_sync"] is True
    assert [(r["kind"], r["id"], r["managed"]) for r in target["resources"]] == [
        ("index-entry", app, True),
        ("index-entry", tool, True),
    ]
    assert target["drift"] == []
    assert [(c["tag"], c["status"]) for c in target["content"]] == [
        ("v1.0.0", "present"),
        ("v1.1.0", "present"),
        ("1.0", "present"),
    ]


def test_audit_names_drift_in_the_index_and_apply_repairs_it_leaving_others_entries(bed: Bed) -> None:
    bed.run("apply", str(bed.spec), "--yes")
    app, tool = bed.repository("team/app"), bed.repository("team/tool")
    entries = bed.entries()
    entries[app]["tags"] = ["v1.0.0"]  # edited by hand: a tag dropped
    entries[tool]["source"] = "elsewhere.example.com/tool"  # a changed source is not updated in place
    entries["vendor/other"] = {"source": "quay.io/vendor/other", "tags": ["1"]}  # someone else's
    bed.index.write_text(json.dumps({"entries": entries}))

    audit = bed.json("audit", str(bed.spec), check=2)

    (target,) = audit["targets"]
    assert audit["in_sync"] is False
    assert [(r["id"], r["managed"]) for r in target["resources"]] == [
        (app, True),
        (tool, True),
        ("vendor/other", False),
    ]
    assert [(d["action"], d["id"], d["reason"]) for d in target["drift"]] == [
        ("update", app, "differs in tags"),
        ("replace", tool, "differs in source"),
    ]
    table = bed.run("audit", str(bed.spec), check=2).stdout
    assert "foreign" in table and "vendor/other" in table and "DRIFT" in table

    repaired = bed.run("apply", str(bed.spec), "--yes")

    assert "Applied: 2 change(s), 0 of 0 tag(s) copied and verified." in repaired.stdout
    assert bed.entries()[app]["tags"] == ["v1.0.0", "v1.1.0"]
    assert bed.entries()[tool]["source"] == f"{bed.upstream.host}/team/tool"
    assert bed.entries()["vendor/other"] == {"source": "quay.io/vendor/other", "tags": ["1"]}
    assert bed.run("audit", str(bed.spec)).returncode == 0


def test_an_entry_the_spec_dropped_is_kept_until_prune(bed: Bed) -> None:
    bed.run("apply", str(bed.spec), "--yes")
    bed.write_spec(repositories=APP)
    tool = bed.repository("team/tool")

    plan = bed.json("plan", str(bed.spec))

    (target,) = plan["targets"]
    assert target["changes"] == [] and target["copies"] == []
    assert any(
        f"1 rule(s) mirrorspec made are no longer in the spec and are kept: index-entry {tool}"
        in n["message"]
        for n in target["notes"]
    )
    bed.run("apply", str(bed.spec), "--yes", "--prune")
    assert tool not in bed.entries()
    assert bed.repository("team/app") in bed.entries()


def test_someone_elses_entry_for_a_wanted_repository_is_refused_in_one_line(bed: Bed) -> None:
    app = bed.repository("team/app")
    foreign = json.dumps({"entries": {app: {"source": "quay.io/vendor/app", "tags": ["1"]}}})
    bed.index.write_text(foreign)

    proc = bed.run("apply", str(bed.spec), "--yes", check=1)

    assert one_line(proc.stderr) == (
        f"error: portal: index index/mirror.json: entry '{app}' was not written by mirrorspec "
        '(no "managed-by": "mirrorspec"); remove it or choose another prefix'
    )
    assert bed.index.read_text() == foreign  # nothing written, nothing copied
    assert "Applied" not in proc.stdout


def test_an_index_that_is_not_json_is_one_line(bed: Bed) -> None:
    bed.index.write_text("{not json")

    proc = bed.run("plan", str(bed.spec), check=1)

    assert one_line(proc.stderr).startswith("error: portal: index index/mirror.json: not JSON: ")
    assert proc.stdout == ""


# --- without the plugin's entry point ---------------------------------------------------------


def without_the_plugin(site: Path) -> dict[str, str]:
    """Environment in which the plugin's distribution has no entry point.

    `importlib.metadata.entry_points()` takes each distribution once, the first found on
    sys.path (`_unique` by normalised name, Lib/importlib/metadata/__init__.py), and PYTHONPATH
    comes before site-packages: a copy of the plugin's metadata without `entry_points.txt` there
    is what an environment that never installed it shows mirrorspec. Cheaper than a second
    venv, and the test in test_cli.py hides a built-in provider the same way.
    """
    dist = importlib.metadata.distribution(PLUGIN)
    info = site / f"{PLUGIN.replace('-', '_')}-{dist.version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(dist.read_text("METADATA") or "")
    return {"PYTHONPATH": str(site)}


def test_without_the_plugin_the_type_is_the_specs_usual_one_line_error(bed: Bed, tmp_path: Path) -> None:
    env = without_the_plugin(tmp_path / "site")
    others = ", ".join(sorted(set(providers.available()) - {TYPE}))

    for command in ("validate", "plan"):
        proc = bed.run(command, str(bed.spec), check=1, env=env)
        assert one_line(proc.stderr) == (
            f"error: {bed.spec}:16:11: targets[0] (name='portal'): type '{TYPE}' is not one of: {others}"
        )
        assert proc.stdout == ""
    assert not bed.index.exists()
