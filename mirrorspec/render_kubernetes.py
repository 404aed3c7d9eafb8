"""`mirrorspec render kubernetes`: the manifests that run one target's mirror as a sharded CronJob.

Offline: the spec is loaded and checked, no registry is read and no secret is resolved. Written:
a ConfigMap holding the spec file as it is, and a CronJob (`batch/v1`, `concurrencyPolicy:
Forbid`, so a slow run is never overlapped by the next) whose Job is an Indexed Job with
completions = parallelism = N: pod i runs `mirrorspec apply SPEC --yes --target T --shard
$(JOB_COMPLETION_INDEX)/N` (`shards.py`), so the N pods together copy every tag once. Each
shard retries on its own (`backoffLimitPerIndex`), so a failing shard never stops the others,
and a shard's pod is replaced only once it has stopped (`podReplacementPolicy: Failed`), so one
shard never has two writers: Kubernetes `MIN_KUBERNETES` (1.29) or later, as the file's header says.

Why `$(JOB_COMPLETION_INDEX)` works in `args`: the Job controller adds the environment variable
`JOB_COMPLETION_INDEX` (a downward-API reference to the pod's
`batch.kubernetes.io/job-completion-index` annotation) to every container of an Indexed Job's
pods (Kubernetes `pkg/controller/job/indexed_job_utils.go`, `addCompletionIndexEnvVariables`;
"Indexed Job for Parallel Processing with Static Work Assignment", kubernetes.io/docs/tasks/job/
indexed-parallel-processing-static), and the kubelet expands `$(VAR_NAME)` in a container's
`command` and `args` from that container's environment ("Define a Command and Arguments for a
Container", kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container:
"The environment variable appears in parentheses, "$(VAR)". This is required for the variable to
be expanded in the command or args field."). A reference that cannot be resolved is left as it
is, and `--shard` then refuses `$(JOB_COMPLETION_INDEX)/N` in one line rather than guessing.

Credentials: every secret reference the target and the sources need is mapped, never resolved.
`{env: VAR}` → the container's `VAR` from key `VAR` of Secret `<name>-env` (`secretKeyRef`);
`{file: path}` → that key of Secret `<name>-files`, mounted read-only at the path the spec
resolves it to in the pod (relative paths start at the spec's directory, `SPEC_DIR`); a
`ca-bundle` → ConfigMap `<name>-ca-bundles`, mounted the same way. A reference a cloud registry
reads itself (a kind a provider declares in `SECRET_REFERENCES`) needs nothing here.

The Secrets and the CA bundles' ConfigMap are not rendered, not even with placeholders: a
manifest with placeholder data, applied again after the real Secret was made (as `kubectl apply
-f` of this whole file would be, at every spec change), would overwrite the real credentials
with the placeholders. The file's leading comment lists the `kubectl create` commands that make
them, with names and keys only; their values never pass through mirrorspec.

The pod runs as `RUN_AS` (the user the `Containerfile` creates), non-root, with a read-only root
file system, no capabilities, no privilege escalation and the runtime's default seccomp profile;
`TMPDIR` (mirrorspec's private workspace of CA cert dirs; containers/image's temporary files for
big blobs) is an `emptyDir` at `/tmp`. The pod never talks to the Kubernetes API, so no service
account token is mounted unless `--service-account` names one (e.g. for a cloud identity).
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from ._version import __version__
from .errors import MirrorspecError, SpecError
from .shards import MAX_SHARDS
from .spec import Spec
from .spec.model import EnvRef, FileRef

__all__ = [
    "DEFAULT_IMAGE",
    "ENTRYPOINT",
    "MAX_NAME",
    "MIN_KUBERNETES",
    "RETRIES_PER_SHARD",
    "RUN_AS",
    "SPEC_DIR",
    "SPEC_PATH",
    "Manifests",
    "render",
]

# What the Containerfile at the repository's root builds and these manifests run: a change to
# one is a change to the other (`tests/test_render_kubernetes.py` reads both).
RUN_AS = 10001
ENTRYPOINT = ("mirrorspec",)
DEFAULT_IMAGE = f"mirrorspec:{__version__}"
SPEC_DIR = "/etc/mirrorspec"
SPEC_PATH = f"{SPEC_DIR}/spec.yaml"
TMP_DIR = "/tmp"

# The oldest Kubernetes whose Jobs honour what the Job spec here sets: `backoffLimitPerIndex`
# (feature gate JobBackoffLimitPerIndex) and `podReplacementPolicy` (JobPodReplacementPolicy)
# were alpha and off by default in 1.28, beta and on by default from 1.29, and are GA in 1.33
# and 1.34 (kubernetes/website content/en/docs/reference/command-line-tools-reference/
# feature-gates/JobBackoffLimitPerIndex.md and JobPodReplacementPolicy.md; KEP-3850, KEP-3939).
MIN_KUBERNETES = "1.29"
# Retries of one shard's pod before its index is marked failed: one, as before on average
# (`backoffLimit: N` over N shards); the next scheduled run starts afresh anyway.
RETRIES_PER_SHARD = 1

# A CronJob's name is at most 52 characters: the Job controller appends 11 (`-<minutes since the
# epoch>`) and a Job name is a DNS label of at most 63 ("CronJob" in
# kubernetes.io/docs/concepts/workloads/controllers/cron-jobs: "The name must be no longer than
# 52 characters").
MAX_NAME = 52
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
# "The data stored in a ConfigMap cannot exceed 1 MiB" (kubernetes.io/docs/concepts/configuration/
# configmap); the key and the object's own fields take a little of it.
MAX_CONFIGMAP_DATA = (1 << 20) - 4096
# Five fields of the standard cron syntax (numbers, names, `*`, `,`, `-`, `/`, `?`) or one of the
# macros the CronJob controller's parser (robfig/cron) accepts. The controller is the judge; this
# catches a schedule that cannot be right (a missing field, a TZ= prefix, which batch/v1 refuses
# in `schedule` since 1.27: use the CronJob's `timeZone`).
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?,/-]+")
_CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
# A Secret's or ConfigMap's key ("must consist of alphanumeric characters, '-', '_' or '.'").
_KEY_UNSAFE = re.compile(r"[^-._a-zA-Z0-9]")


@dataclass(frozen=True)
class _Mount:
    path: str  # where the spec resolves the file in the pod
    key: str
    spec_path: str  # as the spec names it, for the kubectl command


@dataclass
class _Needs:
    """The secret references and CA bundles one run of the target needs."""

    env: dict[str, None] = field(default_factory=dict)  # variable names, in spec order
    files: dict[str, _Mount] = field(default_factory=dict)  # by path in the pod
    ca_bundles: dict[str, _Mount] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifests:
    """The rendered YAML and the objects it expects to exist (names and keys only)."""

    text: str
    needs: tuple[str, ...]  # the `kubectl create` commands, also in the text's leading comment


def render(
    spec: Spec,
    spec_text: str,
    *,
    target: str,
    schedule: str,
    shards: int,
    image: str = DEFAULT_IMAGE,
    name: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
    spec_name: str = "spec.yaml",
    spec_dir: str = ".",
) -> Manifests:
    """The manifests for `target` of `spec` (whose file's text is `spec_text`); `spec_dir`: the
    spec's directory as the user named it, for the paths in the `kubectl create` commands."""
    chosen = spec.target(target)
    _refuse_layouts(spec, chosen)
    if not 1 <= shards <= MAX_SHARDS:
        raise MirrorspecError(f"--shards {shards}: must be 1 to {MAX_SHARDS} (an Indexed Job's limit)")
    schedule = _checked_schedule(schedule)
    name = _checked_name(name if name is not None else f"mirrorspec-{chosen.name}"[:MAX_NAME].rstrip("-"))
    if namespace is not None and (len(namespace) > 63 or not _NAME.fullmatch(namespace)):
        raise MirrorspecError(f"--namespace {namespace!r}: not a namespace name (a DNS label)")
    if not image or any(c.isspace() for c in image):
        raise MirrorspecError(f"--image {image!r}: not an image reference")
    if len(spec_text.encode()) > MAX_CONFIGMAP_DATA:
        raise MirrorspecError(
            f"{spec_name} is {len(spec_text.encode())} bytes: a ConfigMap holds at most 1 MiB; "
            "split the spec by target"
        )
    needs = _needs(spec, chosen)
    metadata = _metadata(name, namespace)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**metadata, "name": f"{name}-spec"},
        "data": {"spec.yaml": spec_text},
    }
    cron_job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": metadata["labels"]},
                "spec": {
                    "completionMode": "Indexed",
                    "completions": shards,
                    "parallelism": shards,
                    # Each shard's own retries (batch/v1 JobSpec `backoffLimitPerIndex`): a job-wide
                    # `backoffLimit` counts every index's failures, so one failing shard would use it
                    # up and the controller would kill the other shards' pods mid-copy. With it set,
                    # `backoffLimit` defaults to 2147483647 and every index runs to its end; no
                    # `maxFailedIndexes`, which would again stop the healthy shards once exceeded.
                    "backoffLimitPerIndex": RETRIES_PER_SHARD,
                    # A replacement pod only once the one it replaces has stopped (phase Failed or
                    # Succeeded): the default (`TerminatingOrFailed`) starts it while an evicted pod
                    # still terminates, and two writers would copy into one shard's repositories.
                    "podReplacementPolicy": "Failed",
                    "template": _pod(name, chosen.name, shards, image, needs, service_account, metadata),
                },
            },
        },
    }
    commands = _commands(name, namespace, needs, spec_dir)
    header = [
        f"# mirrorspec {__version__} render kubernetes: target '{chosen.name}' of {spec_name}, "
        f"{shards} shard(s), schedule '{schedule}'.",
        f"# Needs Kubernetes {MIN_KUBERNETES} or later: the Job's backoffLimitPerIndex and "
        "podReplacementPolicy, on by default since then (an older API server refuses them as unknown "
        "fields, or ignores them where their feature gates are off).",
        f"# Runs image {image} (built from mirrorspec's Containerfile) as user {RUN_AS}.",
        "# Re-render and apply after every change to the spec: the ConfigMap holds a copy of it.",
    ]
    if commands:
        header.append("# Create these first; their values are never rendered (names and keys only):")
        header += [f"#   {command}" for command in commands]
    documents = [yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=1000) for d in (config_map, cron_job)]
    return Manifests("\n".join(header) + "\n---\n" + "---\n".join(documents), tuple(commands))


def _refuse_layouts(spec: Spec, target: Any) -> None:
    if target.type == "oci-layout":
        raise MirrorspecError(
            f"target '{target.name}' is an OCI layout, a directory: a CronJob's pods have no "
            "shared one; render kubernetes runs registry targets"
        )
    for source in spec.sources:
        if source.oci_layout is not None:
            raise MirrorspecError(
                f"source oci-layout '{source.oci_layout}' is a directory on this machine, not in "
                "a pod: render kubernetes needs registry sources"
            )


def _checked_schedule(schedule: str) -> str:
    text = " ".join(schedule.split())
    fields = text.split(" ")
    if text in _CRON_MACROS or (len(fields) == 5 and all(_CRON_FIELD.fullmatch(f) for f in fields)):
        return text
    raise MirrorspecError(
        f"--schedule {schedule[:60]!r}: expected five cron fields (minute hour day-of-month month "
        "day-of-week, e.g. '0 3 * * *') or @hourly, @daily, @weekly, @monthly, @yearly"
    )


def _checked_name(name: str) -> str:
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise MirrorspecError(
            f"--name {name[:60]!r}: a CronJob's name is lower-case letters, digits and '-', "
            f"at most {MAX_NAME} characters"
        )
    return name


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = {"app.kubernetes.io/name": "mirrorspec", "app.kubernetes.io/instance": name}
    return metadata


def _pod(
    name: str,
    target: str,
    shards: int,
    image: str,
    needs: _Needs,
    service_account: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "TMPDIR", "value": TMP_DIR},
        {"name": "HOME", "value": TMP_DIR},  # read-only root: nothing may expect to write home
    ]
    env += [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": f"{name}-env", "key": var}}} for var in needs.env
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": SPEC_PATH, "subPath": "spec.yaml", "readOnly": True},
        {"name": "tmp", "mountPath": TMP_DIR},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": f"{name}-spec"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    # One file per mount (`subPath`), at exactly the path the spec resolves it to: a directory
    # mount would hide what the image has there, and the spec's own directory is a mount too.
    for volume, kind, source, found in (
        ("files", "secret", {"secretName": f"{name}-files"}, needs.files),
        ("ca-bundles", "configMap", {"name": f"{name}-ca-bundles"}, needs.ca_bundles),
    ):
        if not found:
            continue
        volumes.append({"name": volume, kind: source})
        mounts += [
            {"name": volume, "mountPath": m.path, "subPath": m.key, "readOnly": True} for m in found.values()
        ]
    # `$` is doubled so the kubelet passes it through (`$$` → `$`); only the shard is expanded.
    args = ["apply", SPEC_PATH, "--yes", "--target", target.replace("$", "$$")]
    args += ["--shard", f"$(JOB_COMPLETION_INDEX)/{shards}"]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": service_account is not None,
    }
    if service_account is not None:
        pod_spec["serviceAccountName"] = service_account
    pod_spec |= {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "mirrorspec",
                "image": image,
                "command": list(ENTRYPOINT),
                "args": args,
                "env": env,
                "resources": {
                    # skopeo streams each blob; a copy's memory is its buffers, not the image.
                    "requests": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
                    "limits": {"memory": "2Gi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    return {"metadata": {"labels": metadata["labels"]}, "spec": pod_spec}


def _needs(spec: Spec, target: Any) -> _Needs:
    """What the run needs from Secrets and ConfigMaps: the references of the credentials the
    sources and the target name, and of the target's own fields; every `ca-bundle`."""
    needs = _Needs()
    named = [s.credentials for s in spec.sources]
    named += [
        value for key, value in _fields(target) if key.endswith("credentials") and isinstance(value, str)
    ]
    models: list[BaseModel] = [spec.credentials[n] for n in dict.fromkeys(named) if n in spec.credentials]
    models.append(target)
    for model in models:
        for ref in _references(model):
            if isinstance(ref, EnvRef):
                needs.env.setdefault(ref.env, None)
            else:
                _add(needs.files, ref.file)
    for item in [*spec.sources, target]:
        bundle = getattr(item, "ca_bundle", None)
        if bundle:
            _add(needs.ca_bundles, bundle)
    return needs


def _add(found: dict[str, _Mount], spec_path: str) -> None:
    """Record the file `spec_path` (as the spec names it) under the path it has in the pod and a
    key of its own (its name, made a valid key, numbered when two files share it)."""
    path = posixpath.normpath(posixpath.join(SPEC_DIR, spec_path))
    if path in found:
        return
    if path in (SPEC_PATH, TMP_DIR) or path.startswith(f"{TMP_DIR}/"):
        raise SpecError(
            f"{spec_path}: in the pod this is {path}, where the manifests mount the spec or the "
            "temporary directory; move it"
        )
    base = _KEY_UNSAFE.sub("_", posixpath.basename(path))[:200] or "file"
    keys = {m.key for m in found.values()}
    key, n = base, 1
    while key in keys:
        n += 1
        key = f"{base}-{n}"
    found[path] = _Mount(path, key, spec_path)


def _fields(model: BaseModel) -> Iterator[tuple[str, Any]]:
    for key in type(model).model_fields:
        yield key, getattr(model, key)


def _references(value: Any) -> Iterator[EnvRef | FileRef]:
    """Every `{env:}` and `{file:}` reference in `value`, depth first."""
    if isinstance(value, (EnvRef, FileRef)):
        yield value
    elif isinstance(value, BaseModel):
        for _, item in _fields(value):
            yield from _references(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


def _commands(name: str, namespace: str | None, needs: _Needs, spec_dir: str) -> list[str]:
    ns = f" -n {namespace}" if namespace else ""

    def here(spec_path: str) -> str:  # where the file is from where the user rendered
        return shlex.quote(os.path.normpath(os.path.join(spec_dir, spec_path)))

    commands = []
    if needs.env:
        literals = " ".join(f"--from-literal={var}=..." for var in needs.env)
        commands.append(f"kubectl{ns} create secret generic {name}-env {literals}")
    for what, kind, found in (
        ("files", "secret generic", needs.files),
        ("ca-bundles", "configmap", needs.ca_bundles),
    ):
        if found:
            sources = " ".join(f"--from-file={m.key}={here(m.spec_path)}" for m in found.values())
            commands.append(f"kubectl{ns} create {kind} {name}-{what} {sources}")
    return commands


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the spec in its ConfigMap) as literal blocks, readable in review; no
    anchors and aliases (`&id001`) for the labels written three times: plain YAML to review."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)
