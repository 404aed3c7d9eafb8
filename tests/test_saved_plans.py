"""Saved plans (issue 18, item 3): `plan SPEC --out FILE`, reviewed, then `apply FILE` carries
out exactly that plan, or refuses it in one line, exit 1, nothing applied, when the spec or
what the plan observed has changed since.

Through the real `mirrorspec` console script, real skopeo and real docker-registry servers
shared with the other modules (`conftest.py`): the plain HTTP `plain_registry` upstream, the
TLS `tls_registry` with a login (alice, its password from `DEST_PASSWORD`) as destination.
Each test mirrors repositories of its own name, so that tests share the registries, not tags.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import cli_runner
import pytest
from conftest import ALICE
from jsonschema import Draft202012Validator
from spec_text import DEST_LOGIN, lab_target
from testbed import RegistryServer, push_image

from mirrorspec import redaction, saved_plan
from mirrorspec.errors import MirrorspecError
from mirrorspec.oci import RegistryClient
from mirrorspec.plan import Note, Plan, TargetPlan
from mirrorspec.schemas import schema

PASSWORD = ALICE[1]
# The secret in every form that could reach a file: raw, base64 of the password alone (at
# each of the three alignments its bytes can have in a longer value) and of a Basic login.
SECRETS = (
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode().rstrip("="),
    base64.b64encode(f"x{PASSWORD}".encode()).decode()[4:-4],
    base64.b64encode(f"xy{PASSWORD}".encode()).decode()[4:-4],
    base64.b64encode(f"alice:{PASSWORD}".encode()).decode().rstrip("="),
)
ENV = cli_runner.environment(DEST_PASSWORD=PASSWORD)


def _spec(up: RegistryServer, down: RegistryServer, repository: str, tags: list[str]) -> str:
    return (
        f"{DEST_LOGIN}sources:\n"
        f"  - registry: {up.host}\n"
        "    insecure: true\n"
        "    repositories:\n"
        f"      - {{name: {repository}, tags: {json.dumps(tags)}}}\n"
        f"{lab_target(down)}"
    )


def _run(cwd: Path, *args: str, check: int | None = 0) -> Any:
    return cli_runner.run(*args, env=ENV, cwd=cwd, check=check, never=SECRETS, timeout=180)


def _destination(up: RegistryServer, repository: str) -> str:
    return f"mirror/{up.host.replace(':', '_')}/{repository}"


def _digests(down: RegistryServer, repository: str, tags: list[str]) -> dict[str, str | None]:
    with RegistryClient(down.host, username=ALICE[0], password=PASSWORD, ca_bundle=str(down.ca_file)) as c:
        return {tag: c.digest(repository, tag) for tag in tags}


def _stale(proc: Any) -> str:
    """The one line of a refused saved plan."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: plan.json: the plan is stale: "), lines[0]
    again = "nothing was applied: make a new plan: mirrorspec plan spec.yaml"
    assert again in lines[0] and lines[0].endswith(" --out plan.json"), lines[0]
    return str(lines[0])


def test_a_saved_plan_is_carried_out_exactly_once(
    plain_registry: RegistryServer, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    up, down, repository = plain_registry, tls_registry, "saved-plans/exact/app"
    pushed = {tag: push_image(up, repository, tag, seed=f"exact-{tag}") for tag in ("1.0", "2.0")}
    (tmp_path / "spec.yaml").write_text(_spec(up, down, repository, ["1.0", "2.0"]))

    # --target and --shard are part of the saved plan: apply plans with them again.
    options = ["--target", "lab", "--shard", "0/1"]
    shown = _run(
        tmp_path, "plan", "spec.yaml", *options, "--out", "plan.json", "--detailed-exitcode", check=2
    )
    assert "Saved the plan to plan.json" in shown.stderr
    saved_text = (tmp_path / "plan.json").read_text()
    for secret in SECRETS:
        assert secret not in saved_text
    saved = json.loads(saved_text)
    assert list(saved)[:2] == ["format", "version"] and saved["format"] == saved_plan.FORMAT
    assert saved["spec"]["path"] == "spec.yaml" and len(saved["spec"]["sha256"]) == 64
    assert (saved["targets"], saved["prune"], saved["shard"]) == (["lab"], False, "0/1")
    assert list(Draft202012Validator(schema("saved-plan")).iter_errors(saved)) == []
    (copy,) = saved["plan"]["targets"][0]["copies"]
    assert {t["tag"]: t["digest"] for t in copy["tags"]} == pushed
    mode = stat.S_IMODE((tmp_path / "plan.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # a plain file's mode: it holds no secret (`saved_plan`)
    assert {p.name for p in tmp_path.iterdir()} == {"spec.yaml", "plan.json"}  # no temporary left

    # Only apply carries a saved plan out; no question asked (stdin is no terminal): reviewed.
    refused = _run(tmp_path, "plan", "plan.json", check=1)
    assert "plan.json is a saved plan" in refused.stderr and "mirrorspec apply plan.json" in refused.stderr
    applied = _run(tmp_path, "apply", "plan.json")
    assert "the saved plan is current" in applied.stdout
    assert "2 of 2 tag(s) copied and verified" in applied.stdout
    assert _digests(down, _destination(up, repository), ["1.0", "2.0"]) == pushed

    # A second time: what it copied is there now, so it is stale; nothing is done again.
    again = _stale(_run(tmp_path, "apply", "plan.json", check=1))
    assert "nothing is left to do: it was applied already" in again
    assert again.endswith("mirrorspec plan spec.yaml --target lab --shard 0/1 --out plan.json")


def test_a_stale_plan_is_refused_and_nothing_is_applied(
    plain_registry: RegistryServer, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    up, down, repository = plain_registry, tls_registry, "saved-plans/stale/app"
    destination = _destination(up, repository)
    first = push_image(up, repository, "1.0", seed="stale-1.0")
    spec = tmp_path / "spec.yaml"
    spec.write_text(_spec(up, down, repository, ["1.0"]))

    # The spec edited after the plan: refused before any registry is read.
    _run(tmp_path, "plan", "spec.yaml", "--out", "plan.json")
    spec.write_text(_spec(up, down, repository, ["1.0", "1.1"]))
    said = _stale(_run(tmp_path, "apply", "plan.json", check=1))
    assert "the spec spec.yaml changed since the plan was made" in said
    assert _digests(down, destination, ["1.0"]) == {"1.0": None}
    # Comments and layout are not meaning: the same spec rewritten does not make it stale.
    spec.write_text(_spec(up, down, repository, ["1.0"]))
    _run(tmp_path, "plan", "spec.yaml", "--out", "plan.json")
    spec.write_text("# reviewed\n" + _spec(up, down, repository, ["1.0"]).replace("tags: [", "tags:  ["))

    # The tag moved upstream after the plan: refused, naming both digests.
    moved = push_image(up, repository, "1.0", seed="stale-1.0-moved")
    said = _stale(_run(tmp_path, "apply", "plan.json", check=1))
    expected = f"{up.host}/{repository}:1.0 moved upstream from {first[:19]}… to {moved[:19]}…"
    assert expected in said, said
    assert _digests(down, destination, ["1.0"]) == {"1.0": None}

    # The destination changed by someone else after the plan: refused.
    _run(tmp_path, "plan", "spec.yaml", "--out", "plan.json")
    other = push_image(down, destination, "1.0", seed="stale-someone-else", user="alice")
    said = _stale(_run(tmp_path, "apply", "plan.json", check=1))
    assert f"{down.host}/{destination}:1.0 changed at the destination" in said, said
    assert _digests(down, destination, ["1.0"]) == {"1.0": other}  # not overwritten


@pytest.fixture(scope="module")
def saved_file(
    plain_registry: RegistryServer, tls_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A real saved plan, made once; the tests below damage copies of it."""
    up, repository = plain_registry, "saved-plans/damaged/app"
    push_image(up, repository, "1.0", seed="damaged-1.0")
    directory = tmp_path_factory.mktemp("saved")
    (directory / "spec.yaml").write_text(_spec(up, tls_registry, repository, ["1.0"]))
    shown = _run(directory, "plan", "spec.yaml", "--out", "plan.json", "--format", "json")
    saved = json.loads((directory / "plan.json").read_text())
    assert saved["plan"] == json.loads(shown.stdout)  # stdout is the plan alone; the file holds it
    assert (saved["targets"], saved["prune"], saved["shard"]) == ([], False, None)
    return directory / "plan.json"


def _damaged(saved_file: Path, text: str) -> str:
    """`apply plan.json` with `text` in plan.json: its one error line (exit 1)."""
    (saved_file.parent / "plan.json").write_text(text)
    proc = _run(saved_file.parent, "apply", "plan.json", check=1)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""  # refused before anything was planned or shown
    return str(lines[0])


def test_a_damaged_plan_file_is_one_line_through_the_cli(saved_file: Path) -> None:
    good = saved_file.read_text()
    doc = json.loads(good)
    try:
        assert "ends too soon (truncated?)" in _damaged(saved_file, good[: len(good) // 2])
        said = _damaged(saved_file, json.dumps({**doc, "version": 2}))
        assert "a saved plan of version 2 (written by mirrorspec " in said and "this mirrorspec (" in said
        edited = json.loads(good)
        edited["plan"]["targets"][0]["copies"][0]["tags"][0]["digest"] = "sha256:" + "0" * 64
        said = _damaged(saved_file, json.dumps(edited, indent=2))
        assert "edited or damaged after it was written (its fingerprint does not match)" in said
        # The spec's path is as given to `plan`, from the working directory: elsewhere, no spec.
        saved_file.write_text(good)
        proc = _run(saved_file.parent.parent, "apply", f"{saved_file.parent.name}/plan.json", check=1)
        assert "its spec spec.yaml is not a file here" in proc.stderr and proc.stdout == ""
        # What to plan was decided by `plan --out`: an option that would change it is refused.
        proc = _run(saved_file.parent, "apply", "plan.json", "--prune-tags", check=1)
        assert proc.stderr.startswith("error: --prune-tags cannot be given with a saved plan")
        # Where a spec is expected, a saved plan is named as one (JSON is valid YAML).
        for command in (("validate",), ("plan",), ("audit",)):
            proc = _run(saved_file.parent, *command, "plan.json", check=1)
            assert proc.stderr == (
                "error: plan.json is a saved plan (mirrorspec plan --out), not a spec: "
                "`mirrorspec apply plan.json` carries it out\n"
            ), proc.stderr
    finally:
        saved_file.write_text(good)


def _load_error(saved_file: Path, document: Any) -> str:
    if isinstance(document, bytes):
        data = document
    else:
        data = (document if isinstance(document, str) else json.dumps(document)).encode()
    with pytest.raises(MirrorspecError) as raised:
        saved_plan.load(saved_file, data)
    message = str(raised.value)
    assert message.startswith(f"{saved_file}: ") and "\n" not in message
    return message


def test_every_damage_is_named(saved_file: Path, tmp_path: Path) -> None:
    """The same checks as above, without a process each: what each kind of damage is called."""
    doc = json.loads(saved_file.read_text())
    assert "invalid JSON at line 1" in _load_error(saved_file, '{"format": "mirrorspec-saved-plan" 7}')
    assert "not UTF-8" in _load_error(saved_file, b'{"format": "\xff"}')
    assert "its first key must be" in _load_error(saved_file, {**doc, "format": "other"})
    assert '"version" must be a number' in _load_error(saved_file, {**doc, "version": "1"})
    assert "unknown key 'extra'" in _load_error(saved_file, {**doc, "extra": 1})
    assert "no 'fingerprint'" in _load_error(saved_file, {k: v for k, v in doc.items() if k != "fingerprint"})
    bad_sha = {**doc, "spec": {"path": "spec.yaml", "sha256": "x"}}
    assert "'spec.sha256' is not what plan writes there" in _load_error(saved_file, bad_sha)
    assert "'targets' is not what plan writes there" in _load_error(saved_file, {**doc, "targets": "lab"})
    assert "nested too deeply" in _load_error(saved_file, "[" * 100_000 + "]" * 100_000)
    # Keys reordered by hand: still recognised as a saved plan, and checked whole.
    reordered = json.dumps({k: doc[k] for k in reversed(list(doc))})
    (tmp_path / "reordered.json").write_text(reordered)
    assert saved_plan.detect(tmp_path / "reordered.json") is not None
    assert saved_plan.detect(saved_file.parent / "spec.yaml") is None
    assert saved_plan.load(saved_file, reordered.encode()).spec_path == "spec.yaml"


def test_plan_out_never_overwrites_the_spec_or_a_file_that_is_not_a_plan(saved_file: Path) -> None:
    directory = saved_file.parent
    spec_before = (directory / "spec.yaml").read_text()
    proc = _run(directory, "plan", "spec.yaml", "--out", "spec.yaml", check=1)
    assert "--out spec.yaml is the spec itself" in proc.stderr
    (directory / "notes.txt").write_text("mine\n")
    proc = _run(directory, "plan", "spec.yaml", "--out", "notes.txt", check=1)
    assert "--out notes.txt exists and is not a saved plan; not overwritten" in proc.stderr
    assert (directory / "spec.yaml").read_text() == spec_before
    assert (directory / "notes.txt").read_text() == "mine\n"
    proc = _run(directory, "plan", "spec.yaml", "--out", "missing-dir/plan.json", check=1)
    assert "--out missing-dir/plan.json: no directory missing-dir" in proc.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt", "plan.json", "spec.yaml"]


@pytest.mark.parametrize(
    "form", [PASSWORD, base64.b64encode(f"alice:{PASSWORD}".encode()).decode()], ids=["raw", "basic-base64"]
)
def test_a_plan_that_would_hold_a_secret_is_not_written(tmp_path: Path, form: str) -> None:
    """No provider puts a secret in a plan; if one ever did (here a note echoing a server's
    answer), the file is not written at all, in the raw form or base64 alike."""
    redaction.register_secret(PASSWORD)  # as reading `{env: DEST_PASSWORD}` does
    note = Note("warning", f"the registry answered: Authorization: Basic {form}")
    the_plan = Plan(
        spec="spec.yaml", targets=(TargetPlan("lab", "registry", "r.example", notes=(note,)),), artifacts=()
    )
    with pytest.raises(MirrorspecError, match="not written: the plan holds a credential"):
        saved_plan.write(
            tmp_path / "plan.json",
            the_plan,
            spec_path="spec.yaml",
            spec_sha256="0" * 64,
            targets=(),
            prune=False,
            shard=None,
        )
    assert list(tmp_path.iterdir()) == []
