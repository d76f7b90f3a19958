"""DescribeFailure (Lambda): a caught failure as a clear error, cause and notification.

A user error keeps its own type and message: from a Lambda it arrives as the runtime's
error JSON (``errorType``/``errorMessage``); from a Batch step the container recorded it
(:func:`~synapse_pipelines.workflow.run_record.record_step_error`) before exiting with
status 2. Other Batch failures are summarised from the job description (status reason,
exit code, log stream). A Distributed Map fails as a whole (no block is tolerated); its
failed blocks are the run's FAILED Batch jobs (:mod:`.run_jobs`), listed in the notice and
the event. The notice names the failing job's log stream and the command that prints it
(:func:`~synapse_pipelines.workflow.job_logs.logs_command_line`), and the run is marked failed in
S3 (:mod:`.run_status`: nothing half-written looks complete). It never raises for a
malformed state or an AWS error on the way: a notification must always go out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from synapse_pipelines.io.s3_objects import s3_client
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.job_logs import DEFAULT_JOB_LOG_GROUP, logs_command_line
from synapse_pipelines.workflow.notification_text import MAX_CAUSE_CHARS, failure_notification
from synapse_pipelines.workflow.run_jobs import (
    RunJob,
    classify,
    failed_run_jobs,
    log_streams_of,
    queues_from_env,
)
from synapse_pipelines.workflow.run_record import read_step_error
from synapse_pipelines.workflow.run_status import FAILED, mark_run_ended

#: Request fields DescribeFailure may read from the state (the execution input is the request).
REQUEST_FIELDS = frozenset({"collection", "experiment", "notification_email"})

#: Where each failed state's Batch job records a user error (``step_error_key``'s step).
ERROR_RECORD_STEPS = {
    "Detect": "detect",
    "Report": "report",
    "Publish": "publish-boss",
    "PublishToBoss": "publish-boss",
    # blockwise stages record under the workflow step they belong to
    "BlockwiseCovariance": "detect",
    "BlockwiseLabel": "detect",
    "BlockwiseFinalize": "detect",
    "PublishToBossBlocks": "publish-boss",
}


def describe_failure(
    state: Mapping[str, Any],
    *,
    execution_id: str | None = None,
    execution_start: str | None = None,
    s3: Any | None = None,
    batch: Any | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Error, cause, notification (subject, message, email attribute) and the failure
    event's detail for the state at a caught failure (see the module docstring)."""
    env = os.environ if environ is None else environ
    failure = dict(state.get("failure") or {})
    step = str(failure.get("step", "unknown"))
    caught = failure.get("error") or {}
    error = str(caught.get("Error", "States.Unknown"))
    raw_cause = str(caught.get("Cause", ""))
    job = state.get("job") or {}
    parsed: Any = None
    try:
        parsed = json.loads(raw_cause) if raw_cause.lstrip().startswith("{") else None
    except ValueError:
        parsed = None
    cause = raw_cause
    failed_job: dict[str, Any] | None = None
    if isinstance(parsed, dict) and "errorType" in parsed:
        error = str(parsed.get("errorType") or error)
        cause = str(parsed.get("errorMessage", raw_cause))
        step = "PublishToS3" if step == "Publish" else step
    elif isinstance(parsed, dict) and ("JobId" in parsed or "JobName" in parsed):
        step = "PublishToBoss" if step == "Publish" else step
        recorded = _recorded_step_error(s3, job, parsed, step)
        if recorded is not None:
            error, cause = recorded
        else:
            error, cause = "BatchJobFailed", _batch_cause(parsed)
        failed_job = _job_of_cause(parsed, str(job.get("job_name") or ""))
    blocks = _failed_blocks(batch, env, job, execution_start)
    if blocks and failed_job is None:  # a Distributed Map failed: its blocks did
        step = str(blocks[0]["step"])
        failed_job = blocks[0]
        if any(b.get("exit_code") == wf.USER_ERROR_EXIT_CODE for b in blocks):
            recorded = _recorded_step_error(s3, job, {"JobName": failed_job["job_name"]}, step)
            error, cause = recorded or (error, cause)
    cause = cause[:MAX_CAUSE_CHARS]
    request_data = {k: v for k, v in state.items() if k in REQUEST_FIELDS}
    email = request_data.get("notification_email") or wf.NO_EMAIL
    where = ""
    if request_data.get("collection") and request_data.get("experiment"):
        where = f" for {request_data['collection']}/{request_data['experiment']}"
    name = (execution_id or "").rsplit(":", 1)[-1]
    logs = _logs(failed_job, name, bool(blocks), env)
    detail = {
        "step": step,
        "error": error,
        "cause": cause,
        "execution_id": execution_id,
        "results_key": job.get("results_key"),
        "bucket": job.get("bucket"),
        "failed_blocks": blocks,
        "log_group": logs.get("log_group"),
        "log_stream": logs.get("log_stream"),
        "logs_command": logs.get("command"),
    }
    notification = failure_notification(
        step=step,
        error=error,
        cause=cause,
        where=where,
        execution_id=execution_id,
        logs=logs,
        failed_blocks=blocks,
    )
    _mark_failed(s3, job, execution_id, detail)
    return {
        "error": error,
        "cause": cause,
        "subject": notification["subject"],
        "message": notification["message"],
        "notify": str(email) if isinstance(email, str) else wf.NO_EMAIL,
        "detail": detail,
    }


def _job_of_cause(description: Mapping[str, Any], stem: str) -> dict[str, Any]:
    """The failed job of a ``.sync`` task's cause (its description, keys capitalised)."""
    name = str(description.get("JobName", ""))
    job_step, block = classify(name, stem) if stem else (None, None)
    streams = log_streams_of(description)
    return {
        "step": job_step.step if job_step else None,
        "block": block,
        "job_name": name,
        "job_id": description.get("JobId"),
        "log_stream": streams[-1] if streams else None,
    }


def _failed_blocks(
    batch: Any | None, env: Mapping[str, str], job: Mapping[str, Any], since: str | None
) -> list[dict[str, Any]]:
    """The run's failed block jobs (Distributed Map iterations), oldest first; [] when the
    run has none or Batch cannot be asked (the notice goes out regardless)."""
    queues, stem = queues_from_env(env), str(job.get("job_name") or "")
    if not (queues and stem):
        return []
    try:
        client = batch if batch is not None else _batch_client()
        failed: list[RunJob] = failed_run_jobs(client, queues, stem, since=since)
    except Exception as exc:  # logged by the caller's print; the notice must go out
        print(f"could not list the run's failed jobs: {type(exc).__name__}: {exc}", flush=True)
        return []
    return [j.summary() for j in failed if j.block is not None]


def _batch_client() -> Any:
    # start-up time: boto3 takes ~0.5 s to import; tests and the local runtime pass clients
    import boto3

    return boto3.client("batch")


def _logs(
    failed_job: Mapping[str, Any] | None, execution_name: str, blocks: bool, env: Mapping[str, str]
) -> dict[str, Any]:
    """Where the failing job's output is and the command printing it ({} without a job)."""
    if not failed_job or not execution_name:
        return {}
    return {
        "log_group": env.get(wf.ENV_JOB_LOG_GROUP) or DEFAULT_JOB_LOG_GROUP,
        "log_stream": failed_job.get("log_stream"),
        "command": logs_command_line(
            execution_name,
            step=failed_job.get("step"),
            failed=blocks,
            stack=env.get(wf.ENV_STACK_NAME),
        ),
    }


def _mark_failed(
    s3: Any | None, job: Mapping[str, Any], execution_id: str | None, detail: Mapping[str, Any]
) -> None:
    """The run record and the manifest say failed (best effort: the notice goes out anyway)."""
    bucket, key = job.get("bucket"), job.get("results_key")
    if not (bucket and key):  # ValidateRequest failed: no results folder to mark
        return
    try:
        client = s3_client(s3)
        keep = ("step", "error", "cause", "failed_blocks", "log_stream", "logs_command")
        summary = {k: detail[k] for k in keep if k in detail}
        mark_run_ended(
            client, bucket, key, status=FAILED, execution_arn=execution_id, detail=summary
        )
    except Exception as exc:
        print(f"could not mark the run failed in S3: {type(exc).__name__}: {exc}", flush=True)


def _recorded_step_error(
    s3: Any | None, job: Mapping[str, Any], description: Mapping[str, Any], failed_state: str
) -> tuple[str, str] | None:
    bucket, key = job.get("bucket"), job.get("results_key")
    name = str(description.get("JobName", ""))
    # the failed state says which step (every Detect variant records under "detect");
    # the job name's prefix is the fallback
    step = ERROR_RECORD_STEPS.get(failed_state) or next(
        (s for s in ("publish-boss", "detect", "report") if name.startswith(s)), None
    )
    if not (bucket and key and step):
        return None
    return read_step_error(s3, str(bucket), str(key), step)


def _batch_cause(description: Mapping[str, Any]) -> str:
    parts = [f"job {description.get('JobName', '?')} {description.get('Status', 'FAILED')}"]
    if description.get("StatusReason"):
        parts.append(str(description["StatusReason"]))
    attempts = description.get("Attempts") or []
    if attempts:
        last = attempts[-1]
        container = last.get("Container") or {}
        bits = [f"{len(attempts)} attempt(s)"]
        if "ExitCode" in container:
            bits.append(f"last exit code {container['ExitCode']}")
        if container.get("Reason"):
            bits.append(str(container["Reason"]))
        if container.get("LogStreamName"):
            bits.append(f"log stream /aws/batch/job {container['LogStreamName']}")
        parts.append(", ".join(bits))
    return "; ".join(parts)
