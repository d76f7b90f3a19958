"""Cancelling a run: stop the execution, terminate its Batch jobs, say so everywhere.

Stopping an execution (``StopExecution``: ``synapse-pipelines cancel``, the console, the API)
ends it at once as ABORTED; no state of the workflow runs after that, so the finishing is
done outside it. Step Functions emits an "Execution Status Change" event; a rule on the
default bus (``wiring.aborted_event_pattern``) sends the ABORTED ones of the state machine
to the FinishCancelledRun Lambda (:func:`finish_cancelled_run`), which

1. terminates every job of the run still queued or running, the block jobs of the
   Distributed Maps included (found by the request's job-name stem, :mod:`.run_jobs`);
   Step Functions also stops the ``.sync`` jobs of the states it aborts, on a best-effort
   basis, and the local runtime does not, so this is what makes sure;
2. marks the run cancelled (:mod:`.run_status`: the run record, and the manifest when the
   results folder has one), so nothing half-written looks complete;
3. publishes the cancel notification (SNS) and the "Synapse Detection Cancelled" event.

It is idempotent: a run already finished (``notified`` in its record) is left alone, so
EventBridge's at-least-once delivery never notifies twice. :func:`cancel_run` is the
command's side: it stops a running execution (a finished one is reported and left as it
is), terminates the jobs itself for a prompt answer, and waits for the finisher's record
(finishing the run itself if the finisher does not answer in time).

Light (boto3 only): the Lambda uses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.events import StatusChangeEvent
from synapse_pipelines.workflow.notification_text import cancel_notification
from synapse_pipelines.workflow.run_jobs import terminate_run_jobs, to_ms
from synapse_pipelines.workflow.run_status import (
    CANCELLED,
    mark_run_ended,
    read_run_status,
    update_run_status,
)
from synapse_pipelines.workflow.runs import Deployment, describe, request_of

#: The reason Batch records on every job a cancel terminates.
TERMINATE_REASON = "synapse-pipelines: the run was cancelled"
#: Error name the command gives StopExecution (AWS keeps it in the execution's history).
CANCEL_ERROR = "Cancelled"


@dataclass
class FinishTarget:
    """Where FinishCancelledRun works (its environment) and its clients."""

    bucket: str
    job_queues: tuple[str, ...]
    stack_name: str
    sfn: Any
    s3: Any
    batch: Any
    sns: Any = None
    events: Any = None
    topic_arn: str | None = None
    event_bus: str | None = None

    @classmethod
    def of(cls, deployment: Deployment) -> FinishTarget:
        client = deployment.client
        return cls(
            bucket=deployment.bucket,
            job_queues=deployment.job_queues,
            stack_name=deployment.stack_name,
            sfn=client("stepfunctions"),
            s3=client("s3"),
            batch=client("batch"),
            sns=client("sns") if deployment.topic_arn else None,
            events=client("events") if deployment.event_bus else None,
            topic_arn=deployment.topic_arn,
            event_bus=deployment.event_bus,
        )


def finish_cancelled_run(
    event: StatusChangeEvent | Mapping[str, Any], target: FinishTarget
) -> dict[str, Any]:
    """Finish a stopped execution (see the module docstring); what was done."""
    parsed = event if isinstance(event, StatusChangeEvent) else StatusChangeEvent.parse(event)
    arn = parsed.execution_arn
    if parsed.status != "ABORTED" or parsed.is_child_execution or not arn:
        return {"finished": False, "why": "not a stopped run", "execution_arn": arn}
    detail = dict(parsed.detail)
    if not detail.get("input"):  # EventBridge leaves out inputs over 256 KiB
        detail.update(describe(target.sfn, arn) or {})
    request = request_of(detail)
    if request is None:  # it never was a run: nothing of it in S3 or Batch to finish
        return {"finished": False, "why": "the input is not a request", "execution_arn": arn}
    key = request.results_key
    previous = read_run_status(target.s3, target.bucket, key, arn)
    if previous and previous.get("status") == CANCELLED and previous.get("notified"):
        return {"finished": False, "why": "already finished", "execution_arn": arn}
    terminated = terminate_run_jobs(
        target.batch,
        target.job_queues,
        run_names.job_name_stem(key),
        reason=TERMINATE_REASON,
        since=_start_ms(detail),
    )
    name = str(detail.get("name") or arn.rsplit(":", 1)[-1])
    record = mark_run_ended(
        target.s3,
        target.bucket,
        key,
        status=CANCELLED,
        execution_arn=arn,
        detail={
            "execution_name": name,
            "reason": detail.get("cause") or "the execution was stopped",
            "stopped_at": _iso(detail.get("stopDate")),
            "terminated_jobs": [job.summary() for job in terminated],
        },
    )
    where = f" for {request.collection}/{request.experiment} {request.box}"
    retry = f"{wf.CLI_PROGRAM} retry {name} --stack {target.stack_name}"
    notice = cancel_notification(
        where=where,
        execution=arn,
        results=wf.s3_uri(target.bucket, wf.results_prefix(key)),
        terminated=len(terminated),
        retry_command=retry,
    )
    if target.sns is not None and target.topic_arn:
        target.sns.publish(
            TopicArn=target.topic_arn,
            Subject=notice["subject"],
            Message=notice["message"],
            MessageAttributes={
                wf.EMAIL_ATTRIBUTE: {
                    "DataType": "String",
                    "StringValue": request.notification_email or wf.NO_EMAIL,
                }
            },
        )
    event_detail = {
        "execution_id": arn,
        "results_key": key,
        "bucket": target.bucket,
        "cancelled_at": record["at"],
        "terminated_jobs": len(terminated),
        "retry_command": retry,
    }
    if target.events is not None and target.event_bus:
        target.events.put_events(
            Entries=[
                {
                    "EventBusName": target.event_bus,
                    "Source": wf.EVENT_SOURCE,
                    "DetailType": wf.DETAIL_TYPE_CANCELLED,
                    "Detail": json.dumps(event_detail),
                }
            ]
        )
    update_run_status(target.s3, target.bucket, key, {"notified": True})
    return {"finished": True, **event_detail, "manifest_marked": "manifest_marked" in record}


def _ended(sfn: Any, arn: str, wait_seconds: float) -> dict[str, Any] | None:
    """The execution's description once it is no longer RUNNING (AWS reports a stop at once;
    the local runtime's interpreter a moment later)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = describe(sfn, arn)
        if found is None or found.get("status") != "RUNNING" or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _start_ms(detail: Mapping[str, Any]) -> int | None:
    return to_ms(detail.get("startDate"))


def _iso(value: Any) -> str | None:
    ms = to_ms(value)
    return None if ms is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@dataclass
class CancelOutcome:
    """What ``cancel`` did: ``changed`` False when the run had already ended."""

    execution_arn: str
    name: str
    status: str
    changed: bool
    terminated: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] | None = None
    finished_here: bool = False


def cancel_run(
    deployment: Deployment,
    description: Mapping[str, Any],
    *,
    reason: str = "cancelled with synapse-pipelines cancel",
    wait_seconds: float = 60.0,
    poll_seconds: float = 1.0,
) -> CancelOutcome:
    """Stop the run ``description`` describes, terminate its jobs and wait until it is
    marked cancelled and notified; a run that already ended is left as it is."""
    sfn = deployment.client("stepfunctions")
    arn, name = str(description["executionArn"]), str(description["name"])
    if description.get("status") != "RUNNING":
        return CancelOutcome(arn, name, str(description.get("status")), changed=False)
    sfn.stop_execution(executionArn=arn, error=CANCEL_ERROR, cause=reason[:32768])
    after = _ended(sfn, arn, wait_seconds) or dict(description)
    if after.get("status") != "ABORTED":  # it ended on its own just before the stop
        return CancelOutcome(arn, name, str(after.get("status")), changed=False)
    target = FinishTarget.of(deployment)
    request = request_of(after)
    outcome = CancelOutcome(arn, name, "ABORTED", changed=True)
    if request is None:
        return outcome
    key = request.results_key
    terminated = terminate_run_jobs(
        target.batch,
        target.job_queues,
        run_names.job_name_stem(key),
        reason=TERMINATE_REASON,
        since=_start_ms(after),
    )
    outcome.terminated = [job.summary() for job in terminated]
    deadline = time.monotonic() + wait_seconds
    while True:
        record = read_run_status(target.s3, target.bucket, key, arn)
        if record and record.get("notified"):
            break
        if time.monotonic() >= deadline:  # no finisher answered (an old stack?): finish here
            event = {"detail": {**after, "status": "ABORTED", "executionArn": arn}}
            finish_cancelled_run(event, target)
            outcome.finished_here = True
            record = read_run_status(target.s3, target.bucket, key, arn)
            break
        time.sleep(poll_seconds)
    if record:
        jobs = record.get("terminated_jobs") or []
        known = {job["job_id"] for job in outcome.terminated}
        outcome.terminated += [job for job in jobs if job.get("job_id") not in known]
    outcome.record = record
    return outcome
