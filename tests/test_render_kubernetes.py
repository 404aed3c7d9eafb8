"""`mirrorspec render kubernetes` (issue 18, item 9), through the real console script: manifests
valid against the Kubernetes API schemas (`kubernetes-validate`, strict: no unknown field) of the
oldest and newest versions it bundles, running what the `Containerfile` builds, with every
credential a Secret reference and no secret value anywhere.

Offline: render reads the spec only, so no registry is started here. That the rendered command
really runs, once the Job controller's index is put in, is `test_shards.py`'s.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import cli_runner
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from mirrorspec import render_kubernetes as rk

CANARY = "k8s-canary-Pa55word-51e2"
REPOSITORY = Path(__file__).resolve().parent.parent
# The oldest Kubernetes the manifests need (`rk.MIN_KUBERNETES`, 1.29: the Job's
# backoffLimitPerIndex and podReplacementPolicy, beta and on by default since) and the newest
# kubernetes-validate bundles. Not 1.25, its oldest: its JobSpec schema has neither field (they
# arrived, alpha, in 1.28), so strict validation there would refuse them, rightly.
VERSIONS = (rk.MIN_KUBERNETES, latest_version())


def _spec(tmp_path: Path, *, targets: str = "") -> Path:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "upstream password").write_text(CANARY + "\n")
    (tmp_path / "ca.pem").write_text(_pem())
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""\
version: 1
credentials:
  upstream:
    username: bob
    password: {{file: "secrets/upstream password"}}
  dest:
    username: alice
    password: {{env: DEST_PASSWORD}}
  unused:
    username: carol
    password: {{env: NOT_NEEDED}}
sources:
  - registry: quay.io
    credentials: upstream
    repositories:
      - name: org/app
        tags: ["1.*"]
targets:
  - name: lab
    type: registry
    registry: registry.internal:5000
    credentials: dest
    ca-bundle: ca.pem
{targets}"""
    )
    return spec


def _pem() -> str:
    import trustme

    return trustme.CA().cert_pem.bytes().decode()


def _render(spec: Path, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
    env = cli_runner.environment(DEST_PASSWORD=CANARY)
    return cli_runner.run("render", "kubernetes", str(spec), *args, env=env, check=check, never=[CANARY])


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_the_manifests_are_valid_kubernetes_and_run_sharded_apply(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out" / "mirror.yaml"
    out.parent.mkdir()
    proc = _render(spec, "--schedule", "0 3 * * *", "--shards", "4", "-o", str(out), "-n", "mirrors")
    assert proc.stdout == ""
    text = out.read_text()
    assert CANARY not in text
    documents = _documents(text)
    for version in VERSIONS:
        for document in documents:
            kubernetes_validate.validate(document, version, strict=True)  # raises when invalid
    config_map, cron_job = documents
    assert [d["kind"] for d in documents] == ["ConfigMap", "CronJob"]
    assert config_map["data"]["spec.yaml"] == spec.read_text()
    assert {d["metadata"]["namespace"] for d in documents} == {"mirrors"}

    assert cron_job["apiVersion"] == "batch/v1"
    assert cron_job["spec"]["schedule"] == "0 3 * * *"
    assert cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron_job["spec"]["jobTemplate"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 4, 4)
    # Each shard retries on its own, and no job-wide budget or failed-index cap lets one failing
    # shard stop the others; a shard's pod is replaced only once it has stopped.
    assert job["backoffLimitPerIndex"] == 1 and job["podReplacementPolicy"] == "Failed"
    assert "backoffLimit" not in job and "maxFailedIndexes" not in job
    assert job["template"]["spec"]["restartPolicy"] == "Never"  # what backoffLimitPerIndex requires
    assert f"# Needs Kubernetes {rk.MIN_KUBERNETES} or later: the Job's backoffLimitPerIndex" in text
    with pytest.raises(kubernetes_validate.ValidationError):  # 1.27's Job has neither field
        kubernetes_validate.validate(cron_job, "1.27", strict=True)
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == list(rk.ENTRYPOINT)
    assert container["args"] == [
        "apply",
        rk.SPEC_PATH,
        "--yes",
        "--target",
        "lab",
        "--shard",
        "$(JOB_COMPLETION_INDEX)/4",
    ]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]

    # Non-root, read-only, nothing more than it needs.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == rk.RUN_AS
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/tmp"]["name"]] == {"name": "tmp", "emptyDir": {}}
    assert {"name": "TMPDIR", "value": "/tmp"} in container["env"]

    # {env:} → secretKeyRef; {file:} → a Secret's key mounted where the spec finds it in the pod;
    # ca-bundle → a ConfigMap's; the credential no source or target uses is not asked for.
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_env == {"DEST_PASSWORD": {"name": "mirrorspec-lab-env", "key": "DEST_PASSWORD"}}
    password = mounts["/etc/mirrorspec/secrets/upstream password"]
    assert volumes[password["name"]]["secret"] == {"secretName": "mirrorspec-lab-files"}
    assert password["subPath"] == "upstream_password" and password["readOnly"] is True
    bundle = mounts["/etc/mirrorspec/ca.pem"]
    assert volumes[bundle["name"]]["configMap"] == {"name": "mirrorspec-lab-ca-bundles"}
    assert mounts[rk.SPEC_PATH]["subPath"] == "spec.yaml"

    # No Secret object (placeholders would overwrite the real one at the next apply); the
    # leading comment and stderr say how to make them, by name and key.
    assert "Secret" not in {d["kind"] for d in documents}
    comments = [line for line in text.splitlines() if line.startswith("#")]
    wanted = [
        "kubectl -n mirrors create secret generic mirrorspec-lab-env --from-literal=DEST_PASSWORD=...",
        f"kubectl -n mirrors create secret generic mirrorspec-lab-files "
        f"--from-file=upstream_password='{tmp_path}/secrets/upstream password'",
        f"kubectl -n mirrors create configmap mirrorspec-lab-ca-bundles --from-file=ca.pem={tmp_path}/ca.pem",
    ]
    assert [c.removeprefix("#   ") for c in comments[-3:]] == wanted
    assert [line.removeprefix("note: create first: ") for line in proc.stderr.splitlines()[1:]] == wanted


def test_defaults_and_stdout(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    proc = _render(spec, "--schedule", "@daily", "--image", "registry.example.com/tools/mirrorspec:1")
    _, cron_job = _documents(proc.stdout)
    assert cron_job["metadata"]["name"] == "mirrorspec-lab"  # the only target, picked
    job = cron_job["spec"]["jobTemplate"]["spec"]
    assert (job["completions"], job["parallelism"]) == (1, 1)
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"][-1] == "$(JOB_COMPLETION_INDEX)/1"
    assert container["image"] == "registry.example.com/tools/mirrorspec:1"
    assert "namespace" not in cron_job["metadata"]
    assert "&id" not in proc.stdout and "*id" not in proc.stdout  # plain YAML, no aliases


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--schedule", "0 3 * *"], "expected five cron fields"),
        (["--schedule", "TZ=UTC 0 3 * * *"], "expected five cron fields"),
        (["--schedule", "@daily", "--shards", "0"], "--shards 0: must be 1 to 100000"),
        (["--schedule", "@daily", "--name", "x" * 53], "at most 52 characters"),
        (["--schedule", "@daily", "--name", "Mirror"], "lower-case letters"),
        (["--schedule", "@daily", "--target", "nope"], "no target named 'nope'"),
        (["--schedule", "@daily", "--namespace", "a_b"], "not a namespace name"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out.yaml"
    proc = _render(spec, *args, "-o", str(out), check=1)
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and says in line, line
    assert not out.exists()


def test_targets_it_cannot_run_are_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path, targets="  - name: disk\n    type: oci-layout\n    path: layout\n")
    proc = _render(spec, "--schedule", "@daily", check=1)
    assert "has 2 targets; choose one with --target (lab, disk)" in proc.stderr
    proc = _render(spec, "--schedule", "@daily", "--target", "disk", check=1)
    assert "target 'disk' is an OCI layout" in proc.stderr
    assert proc.stdout == ""


def test_the_containerfile_builds_what_the_manifests_run() -> None:
    containerfile = (REPOSITORY / "Containerfile").read_text()
    lines = [line.strip() for line in containerfile.splitlines() if line.strip() and not line.startswith("#")]
    # Same user (by id: runAsNonRoot can only check a numeric user), same entrypoint.
    assert f"USER {rk.RUN_AS}:{rk.RUN_AS}" in lines
    assert re.search(rf"useradd [^\n]*--uid {rk.RUN_AS}\b", containerfile)
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT "))
    assert yaml.safe_load(entrypoint.removeprefix("ENTRYPOINT ")) == list(rk.ENTRYPOINT)
    # The skopeo it installs is Debian's of the base image's release; this machine runs the same
    # release, so the skopeo these tests copy with (1.9.3) is the one the image gets.
    base = next(line for line in lines if line.startswith("FROM ")).split()[1]
    codename = re.fullmatch(r"docker\.io/library/python:3\.11-slim-(\w+)", base)
    assert codename is not None, base
    os_release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    assert os_release.get("VERSION_CODENAME") == codename[1]
    assert "apt-get install -y --no-install-recommends skopeo" in containerfile
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "skopeo"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith("1.9.3"), version
    # What it copies is what pyproject.toml builds from: the readme it names and the package.
    copied = {p for line in lines if line.startswith("COPY ") for p in line.split()[1:-1]}
    assert copied == {"pyproject.toml", "README.md", "mirrorspec"}
    assert 'readme = "README.md"' in (REPOSITORY / "pyproject.toml").read_text()
    assert 'mirrorspec = "mirrorspec.cli:main"' in (REPOSITORY / "pyproject.toml").read_text()
