"""DescribeFailure (Lambda): a caught failure as a clear error, cause and notification.

A user error keeps its own type and message: from a Lambda it arrives as the runtime's
error JSON (``errorType``/``errorMessage``); from a Batch step the container recorded it
(:func:`~synapse_pipelines.workflow.run_record.record_step_error`) before exiting with
status 2. Other Batch failures are summarised from the job description (status reason,
exit code, log stream). It never raises for a malformed state: a notification must always
go out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.notification_text import MAX_CAUSE_CHARS, failure_notification
from synapse_pipelines.workflow.run_record import read_step_error

#: Request fields DescribeFailure may read from the state (the execution input is the request).
REQUEST_FIELDS = frozenset({"collection", "experiment", "notification_email"})

#: Where each failed state's Batch job records a user error (``step_error_key``'s step).
ERROR_RECORD_STEPS = {
    "Detect": "detect",
    "Report": "report",
    "Publish": "publish-boss",
    "PublishToBoss": "publish-boss",
}


def describe_failure(
    state: Mapping[str, Any],
    *,
    execution_id: str | None = None,
    s3: Any | None = None,
) -> dict[str, Any]:
    """Error, cause, notification (subject, message, email attribute) and the failure
    event's detail for the state at a caught failure (see the module docstring)."""
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
    cause = cause[:MAX_CAUSE_CHARS]
    request_data = {k: v for k, v in state.items() if k in REQUEST_FIELDS}
    email = request_data.get("notification_email") or wf.NO_EMAIL
    where = ""
    if request_data.get("collection") and request_data.get("experiment"):
        where = f" for {request_data['collection']}/{request_data['experiment']}"
    detail = {
        "step": step,
        "error": error,
        "cause": cause,
        "execution_id": execution_id,
        "results_key": job.get("results_key"),
        "bucket": job.get("bucket"),
    }
    notification = failure_notification(
        step=step, error=error, cause=cause, where=where, execution_id=execution_id
    )
    return {
        "error": error,
        "cause": cause,
        "subject": notification["subject"],
        "message": notification["message"],
        "notify": str(email) if isinstance(email, str) else wf.NO_EMAIL,
        "detail": detail,
    }


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
