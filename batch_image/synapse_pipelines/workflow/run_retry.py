"""Retrying runs: one failed (or cancelled) run, or every failed run since a date.

A retry is a new execution of the same request (the previous execution's input), named
``run_names.execution_name(request, key, attempt=n)``: the request's own name plus ``-r<n>``,
so it stays tied to the request, within Step Functions' 80 characters, and a retry cannot be
started twice. It runs every step again; the blockwise stages skip each block whose
completion record still holds (``blockwise/store.py``), so the blocks a failed or cancelled
attempt finished are reused.

Only the latest attempt of a request is retried: a run with a newer attempt says so, a
running one must end (or be cancelled) first, a succeeded one has nothing to retry.

Light (boto3 only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import run_names
from synapse_pipelines.workflow.events import start_execution
from synapse_pipelines.workflow.runs import (
    MAX_ATTEMPTS,
    SHOWN_STATUS,
    Deployment,
    latest_attempt,
    request_of,
)

#: Execution statuses a retry starts again from.
RETRYABLE = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
#: What ``retry --failed-since`` retries (a cancel was meant: retry those one by one).
FAILED_STATUSES = ("FAILED", "TIMED_OUT")


@dataclass
class RetryOutcome:
    """One run's retry: ``started`` False (and ``why``) when nothing was started."""

    previous: str  # the execution name retried (or looked at)
    previous_status: str
    started: bool
    name: str | None = None
    execution_arn: str | None = None
    attempt: int | None = None
    why: str | None = None


def retry_run(deployment: Deployment, description: Mapping[str, Any]) -> RetryOutcome:
    """Start the next attempt of the run ``description`` describes (see the module)."""
    name = str(description["name"])
    raw_input = str(description.get("input") or "{}")
    request = request_of(description)
    if request is None:
        raise SynapsePipelinesError(
            f"execution {name} did not run a request; there is nothing to retry",
            field="REQUEST_OR_EXECUTION",
            hint="give a run listed by `synapse-pipelines list`",
        )
    run_input = json.loads(raw_input)
    latest = latest_attempt(deployment, run_input, request.results_key) or dict(description)
    latest_name = str(latest["name"])
    status = str(latest["status"])
    shown = SHOWN_STATUS.get(status, status)
    if status == "RUNNING":
        raise SynapsePipelinesError(
            f"{latest_name} is still running",
            field="REQUEST_OR_EXECUTION",
            hint="wait for it to end, or cancel it first (synapse-pipelines cancel)",
        )
    if status not in RETRYABLE:
        who = "it" if latest_name == name else f"its latest attempt {latest_name}"
        why = f"{who} {shown.lower()}; there is nothing to retry"
        return RetryOutcome(name, str(description["status"]), False, why=why)
    parsed = run_names.parse_execution_name(latest_name)
    attempt = (parsed[1] if parsed else 1) + 1
    if attempt > MAX_ATTEMPTS:
        raise SynapsePipelinesError(
            f"{latest_name} is attempt {attempt - 1}; retries stop at {MAX_ATTEMPTS}",
            field="REQUEST_OR_EXECUTION",
            hint="fix the cause (synapse-pipelines logs) and submit a changed request",
        )
    new_name = run_names.execution_name(run_input, request.results_key, attempt=attempt)
    started = start_execution(
        deployment.client("stepfunctions"), deployment.state_machine_arn, new_name, run_input
    )
    return RetryOutcome(
        latest_name,
        status,
        started=not started["duplicate"],
        name=new_name,
        execution_arn=str(started["execution_arn"]),
        attempt=attempt,
        why="that attempt already exists" if started["duplicate"] else None,
    )


def failed_since(deployment: Deployment, since: datetime) -> list[dict[str, Any]]:
    """The FAILED and TIMED_OUT executions started since ``since``, newest first."""
    sfn = deployment.client("stepfunctions")
    found: list[dict[str, Any]] = []
    for status in FAILED_STATUSES:
        paginator = sfn.get_paginator("list_executions")
        for page in paginator.paginate(
            stateMachineArn=deployment.state_machine_arn, statusFilter=status
        ):
            recent = [e for e in page.get("executions", []) if e["startDate"] >= since]
            found += recent
            if len(recent) < len(page.get("executions", [])):
                break  # newest first: the rest started before ``since``
    return sorted(found, key=lambda e: e["startDate"], reverse=True)


def retry_failed_since(deployment: Deployment, since: datetime) -> list[RetryOutcome]:
    """Retry every request whose latest attempt failed, among runs started since ``since``
    (one retry per request, however many of its attempts failed)."""
    outcomes: list[RetryOutcome] = []
    seen: set[str] = set()
    sfn = deployment.client("stepfunctions")
    for summary in failed_since(deployment, since):
        parsed = run_names.parse_execution_name(str(summary["name"]))
        group = parsed[0] if parsed else str(summary["name"])
        if group in seen:
            continue
        seen.add(group)
        description = sfn.describe_execution(executionArn=summary["executionArn"])
        try:
            outcomes.append(retry_run(deployment, description))
        except SynapsePipelinesError as exc:  # e.g. a newer attempt still running
            outcomes.append(
                RetryOutcome(str(summary["name"]), str(summary["status"]), False, why=exc.message)
            )
    return outcomes
