"""Runs of a deployment: where they live, how a person names one, what a run is about.

:class:`Deployment` holds what the run commands (``list``, ``cancel``, ``retry``, ``logs``,
``status``) need of one deployment: its state machine, results bucket, job queues, job log
group and a client factory. The CLI builds it from a CDK stack's outputs
(:meth:`Deployment.from_outputs`); the local runtime from its own resources
(``LocalRuntime.deployment()``), so the same functions serve both.

A run is one execution of the state machine. People name it by execution ARN, execution
name, or the request itself (the JSON file: the latest attempt of that request,
:func:`latest_attempt`); :func:`find_execution` resolves all three with a clear error.
:func:`parse_since` reads the dates the commands take.

Light (boto3 only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError, aws_error_code
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.execution_history import read_history

#: Execution statuses that end an execution.
ENDED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
#: How the commands show an execution status (a stopped run is a cancelled run).
SHOWN_STATUS = {"ABORTED": "CANCELLED"}
#: Highest attempt number :func:`latest_attempt` looks for.
MAX_ATTEMPTS = 99


def shown_status(status: str) -> str:
    """An execution status as every command shows it (ABORTED is CANCELLED)."""
    return SHOWN_STATUS.get(status, status)


class RunNotFoundError(SynapsePipelinesError):
    error_type = "RunNotFoundError"


@dataclass(frozen=True)
class Deployment:
    """One deployment's run-related resources and a client factory (``client("batch")``)."""

    state_machine_arn: str
    bucket: str
    job_queues: tuple[str, ...]
    job_log_group: str
    stack_name: str
    client: Callable[[str], Any]
    topic_arn: str | None = None
    event_bus: str | None = None

    @classmethod
    def from_outputs(
        cls, outputs: Mapping[str, str], *, stack: str, client: Callable[[str], Any]
    ) -> Deployment:
        """From a stack's outputs (names: ``wiring.OUTPUT_*``)."""
        queues = (wf.OUTPUT_JOB_QUEUE_ARN, wf.OUTPUT_LARGE_JOB_QUEUE_ARN)
        return cls(
            state_machine_arn=outputs[wf.OUTPUT_STATE_MACHINE_ARN],
            bucket=outputs[wf.OUTPUT_RESULTS_BUCKET],
            job_queues=tuple(outputs[q] for q in queues if outputs.get(q)),
            job_log_group=outputs.get(wf.OUTPUT_JOB_LOG_GROUP, "/aws/batch/job"),
            stack_name=stack,
            client=client,
            topic_arn=outputs.get(wf.OUTPUT_TOPIC_ARN),
            event_bus=outputs.get(wf.OUTPUT_EVENT_BUS_NAME),
        )

    def execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def describe(sfn: Any, execution_arn: str) -> dict[str, Any] | None:
    """DescribeExecution, or None when there is no such execution."""
    try:
        return dict(sfn.describe_execution(executionArn=execution_arn))
    except Exception as exc:
        if aws_error_code(exc) in ("ExecutionDoesNotExist", "InvalidArn"):
            return None
        raise


def request_of(description: Mapping[str, Any]) -> SynapseRequest | None:
    """The request an execution ran (its input), or None when it is not one."""
    try:
        return parse_request(json.loads(description.get("input") or "{}"), max_voxels=None)
    except (ValueError, SynapsePipelinesError):
        return None


def latest_attempt(
    deployment: Deployment, run_input: Mapping[str, Any], results_key: str
) -> dict[str, Any] | None:
    """The newest execution started with ``run_input``: its first, or its latest retry."""
    sfn = deployment.client("stepfunctions")
    latest = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = run_names.execution_name(run_input, results_key, attempt=attempt)
        found = describe(sfn, deployment.execution_arn(name))
        if found is None:
            break
        latest = found
    return latest


def latest_of_request(deployment: Deployment, request: SynapseRequest) -> dict[str, Any] | None:
    """The newest execution of ``request`` (started by ``submit``, an event or the local
    runtime, whose input leaves out ``token_secret``)."""
    public = request.public_dict()
    inputs = [public, {k: v for k, v in public.items() if k != "token_secret"}]
    for run_input in inputs[: 1 + ("token_secret" in public)]:
        found = latest_attempt(deployment, run_input, request.results_key)
        if found is not None:
            return found
    return None


def find_execution(
    deployment: Deployment, value: str, *, request: SynapseRequest | None = None
) -> dict[str, Any]:
    """DescribeExecution of the run ``value`` names (ARN or execution name), or of the
    latest attempt of ``request``; a clear error when there is none."""
    sfn = deployment.client("stepfunctions")
    if request is not None:
        found = latest_of_request(deployment, request)
        if found is None:
            raise RunNotFoundError(
                f"no run of this request ({request.results_key}) in {deployment.stack_name}",
                field="REQUEST_OR_EXECUTION",
                hint="submit it first, or give an execution name from `synapse-pipelines list`",
            )
        return found
    arn = value if value.startswith("arn:") else deployment.execution_arn(value)
    found = describe(sfn, arn) if re.fullmatch(r"[A-Za-z0-9_:/.-]+", arn) else None
    if found is None:
        raise RunNotFoundError(
            f"no execution {value!r} in {deployment.stack_name}",
            field="REQUEST_OR_EXECUTION",
            hint="give an execution ARN or name (`synapse-pipelines list` shows them) "
            "or the request's JSON file",
        )
    return found


_AGE = re.compile(r"^(\d+)\s*([dhm])$")


def parse_since(value: str, *, field: str = "--since", now: datetime | None = None) -> datetime:
    """A date (``2026-11-30``), an ISO 8601 time (``2026-11-30T08:00``, UTC unless it says)
    or an age (``3d``, ``12h``, ``30m``), as an aware datetime."""
    text = value.strip()
    age = _AGE.match(text.lower())
    if age:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[age.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: int(age.group(1))})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SynapsePipelinesError(
            f"{value!r} is not a date",
            field=field,
            hint="give a date (2026-11-30), a UTC time (2026-11-30T08:00) or an age (3d, 12h)",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def failure_notice_of(history: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What DescribeFailure said about a failed execution (its ``failure_notice``: error,
    cause, and the detail with the failed step, job, blocks, log stream and command)."""
    described = read_history(history).last_exit(("DescribeFailure", "DescribeFailureFallback"))
    if described is None:
        return None
    try:
        return dict(json.loads(described.output or "{}").get("failure_notice") or {})
    except ValueError:
        return None


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """The whole execution history, oldest first."""
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events += page["events"]
    return events
