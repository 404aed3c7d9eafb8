"""Harbor replication executions: start a policy's execution, wait for it, re-run one Harbor skipped,
and native copies (`copy()`) checked against the execution's tasks.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from ...context import RunContext
from ...plan import Copy
from ...redaction import clip
from .api import _Api, _HarborError, _json, _mapped, _session, endpoint
from .native import _filter_tags, _policy_name
from .target import HarborTarget

__all__ = [
    "EXECUTION_TIMEOUT",
    "POLL_INTERVAL",
    "SKIPPED_RUNS",
    "copy",
]

log = logging.getLogger(__package__)
EXECUTION_TIMEOUT = 3600.0  # seconds one execution may run before apply stops it
SKIPPED_RUNS = 3  # re-runs after Harbor skipped ours for a running execution of the policy
POLL_INTERVAL = (0.2, 5.0)  # first and longest wait between execution polls, seconds

# --- executions --------------------------------------------------------------------------


def _run_policy(api: _Api, target: HarborTarget, policy_id: int, name: str) -> dict[str, Any]:
    """Start an execution of a policy, wait for it, fail unless it replicated something.

    Our policies set `single_active_replication`, so Harbor (v2.14.0+) skips a run started while
    another execution of the policy is running — a schedule's, or another apply's — and marks it
    `Failed` "Execution skipped: ..." at once. That is no copy failure: wait for the running one
    to end and run again (the running one may predate our policy update), at most
    SKIPPED_RUNS times, all within EXECUTION_TIMEOUT."""
    deadline = time.monotonic() + EXECUTION_TIMEOUT
    skipped = 0
    while True:
        execution = _start_and_wait(api, target, policy_id, name, deadline)
        if not _was_skipped(execution):
            break
        skipped += 1
        if skipped > SKIPPED_RUNS:
            raise _HarborError(
                409,
                "SKIPPED",
                f"replication execution {execution['id']} of {name} was skipped {skipped} times: other "
                "executions of the policy keep running (single active replication); re-run apply later",
            )
        _wait_for_running(api, target, policy_id, name, int(execution["id"]), deadline)
    status = execution.get("status")
    if status != "Succeed":
        detail = _failure_detail(api, execution["id"]) or execution.get("status_text") or ""
        raise _HarborError(
            500,
            str(status).upper(),
            f"replication execution {execution['id']} of {name} ended {status}"
            + (f": {detail}" if detail else ""),
        )
    if not execution.get("total"):
        raise _HarborError(
            500,
            "NOTHING_REPLICATED",
            f"replication execution {execution['id']} of {name} succeeded but matched nothing upstream "
            "(Harbor reports success for an empty run): check the endpoint's URL and credentials",
        )
    return execution


def _was_skipped(execution: Mapping[str, Any]) -> bool:
    """Harbor's single-active-replication skip: the execution is marked Error (shown `Failed`)
    with "Execution skipped: active replication still in progress." — goharbor/harbor
    src/controller/replication/execution.go `Start` (added in 221037378ad2, v2.14.0) and
    src/server/v2.0/handler/replication.go `convertExecution`, at c50c7ddd6ea4."""
    return execution.get("status") == "Failed" and str(execution.get("status_text") or "").startswith(
        "Execution skipped"
    )


def _start_and_wait(
    api: _Api, target: HarborTarget, policy_id: int, name: str, deadline: float
) -> dict[str, Any]:
    """Start one execution and poll it until it is no longer InProgress (stopping it at the
    deadline: it is ours)."""
    before = _latest_execution(api, policy_id)

    def lost() -> int | None:
        latest = _latest_execution(api, policy_id)
        return latest if latest is not None and latest != before else None

    execution_id = api.create("/replication/executions", {"policy_id": policy_id}, lost=lost)
    log.info("%s: replication policy %s: execution %d started", target.name, name, execution_id)
    wait, last = POLL_INTERVAL[0], None
    while True:
        execution: dict[str, Any] = api.get(f"/replication/executions/{execution_id}")
        progress = (execution.get("succeed", 0), execution.get("failed", 0), execution.get("total", 0))
        if progress != last:
            log.info(
                "%s: %s: execution %d %s, %d of %d task(s) done, %d failed",
                target.name,
                name,
                execution_id,
                execution.get("status"),
                progress[0] + progress[1],
                progress[2],
                progress[1],
            )
            last = progress
        if execution.get("status") != "InProgress":
            return execution
        if time.monotonic() > deadline:
            api.put(f"/replication/executions/{execution_id}", None)
            raise _HarborError(
                408,
                "TIMEOUT",
                f"execution {execution_id} still running after {EXECUTION_TIMEOUT:.0f}s; stopped it",
            )
        time.sleep(wait)
        wait = min(wait * 1.5, POLL_INTERVAL[1])


def _wait_for_running(
    api: _Api, target: HarborTarget, policy_id: int, name: str, skipped_id: int, deadline: float
) -> None:
    """Wait until no execution of the policy is InProgress. Not ours to stop: at the deadline,
    fail and say which are still running."""
    wait, logged = POLL_INTERVAL[0], ""
    while True:
        running = api.list("/replication/executions", {"policy_id": policy_id, "status": "InProgress"})
        if not running:
            return
        ids = ", ".join(str(e.get("id")) for e in running)
        if time.monotonic() > deadline:
            raise _HarborError(
                408,
                "TIMEOUT",
                f"replication execution {skipped_id} of {name} was skipped while execution(s) {ids} ran, "
                f"still running after {EXECUTION_TIMEOUT:.0f}s; re-run apply when they end",
            )
        if ids != logged:
            log.info(
                "%s: %s: execution %d skipped while execution(s) %s run (single active replication); "
                "waiting to run it again",
                target.name,
                name,
                skipped_id,
                ids,
            )
            logged = ids
        time.sleep(wait)
        wait = min(wait * 1.5, POLL_INTERVAL[1])


def _latest_execution(api: _Api, policy_id: int) -> int | None:
    """The id of the policy's newest execution, or None before its first."""
    response = api.request(
        "GET",
        "/replication/executions",
        params={"policy_id": policy_id, "sort": "-id", "page": 1, "page_size": 1},
    )
    executions = _json(response)
    return int(executions[0]["id"]) if isinstance(executions, list) and executions else None


def _failure_detail(api: _Api, execution_id: int) -> str:
    tasks = api.list(f"/replication/executions/{execution_id}/tasks", {"status": "Failed"})
    if not tasks:
        return ""
    task = tasks[0]
    text = api.text(f"/replication/executions/{execution_id}/tasks/{task['id']}/log")
    lines = [line for line in text.splitlines() if line.strip()]
    failing = [line for line in lines if re.search(r"error|fail", line, re.IGNORECASE)]
    last = (failing or lines or [""])[-1]
    return clip(f"{task.get('src_resource', '')}: {last}")


def copy(copy: Copy, target: Any, ctx: RunContext) -> None:
    """Bring the missing tags of one repository in through its policies' executions.

    Apply already ran an execution of every policy it changed; tags that one brought in are
    not replicated twice. For the rest, every policy part listing a missing tag runs again,
    and each run must show a succeeded task for the source repository (an execution whose
    filters matched nothing also ends `Succeed`). The engine then checks every digest.
    """
    repository, destination = copy.source_repository, copy.destination_repository
    registry = ctx.client(endpoint(target, ctx))
    missing = {t.tag for t in copy.tags if registry.digest(destination, t.tag) != t.digest}
    if not missing:
        return
    base_name = _policy_name(destination, 1)
    with _session(target, ctx) as api, _mapped(target, f"replicate {copy.source}"):
        mine = [
            p
            for p in api.list("/replication/policies", {"q": f"name=~{base_name}"})
            if p.get("name") == base_name or str(p.get("name")).startswith(base_name + "#")
        ]
        chosen, covered = [], set()
        for policy in mine:
            listed: set[str] = set()
            for item in policy.get("filters") or []:
                if item.get("type") == "tag":
                    listed |= _filter_tags(str(item.get("value")))
            if listed & missing:
                chosen.append(policy)
                covered |= listed
        if missing - covered:
            raise _HarborError(
                404,
                "NOT_FOUND",
                f"no replication policy {base_name} lists {', '.join(sorted(missing - covered))} "
                "(was its change applied?)",
            )
        for policy in chosen:
            execution = _run_policy(api, target, int(policy["id"]), str(policy["name"]))
            tasks = api.list(f"/replication/executions/{execution['id']}/tasks")
            if not any(
                t.get("status") == "Succeed" and _resource_name(t.get("src_resource")) == repository
                for t in tasks
            ):
                raise _HarborError(
                    500,
                    "NOTHING_REPLICATED",
                    f"replication execution {execution['id']} of {policy['name']} succeeded but copied "
                    f"nothing from {repository}",
                )


def _resource_name(resource: Any) -> str:
    """`library/redis [3 item(s) in total]` → `library/redis` (flow/stage.go getResourceName)."""
    return str(resource or "").split(" [", 1)[0]
