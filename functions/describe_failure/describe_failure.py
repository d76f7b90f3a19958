"""DescribeFailure: turn a caught failure into a clear error, cause and notification.

Input: ``{"state": <the state at the failure>, "execution_id", "execution_start"}``.
Output: ``error``, ``cause``, ``subject``, ``message``, ``notify`` (email attribute) and the
failure event's ``detail`` (with the failed blocks, the failing job's log stream and the
command that prints it). It marks the run failed in S3. It never raises for a malformed
state: a notification must always go out.
"""

from __future__ import annotations

from typing import Any

from synapse_pipelines.functions.handler_support import count, lambda_handler, logger
from synapse_pipelines.workflow.events import FailureEvent
from synapse_pipelines.workflow.failure_step import describe_failure


@lambda_handler(log_event=False)  # the state holds the request: never log it raw
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = FailureEvent.parse(event)
    job = parsed.state.get("job") or {}
    logger.set_correlation_id(job.get("results_key") or parsed.execution_id)
    result = describe_failure(
        parsed.state, execution_id=parsed.execution_id, execution_start=parsed.execution_start
    )
    count("ExecutionsFailed")
    logger.info(
        "failure described",
        extra={
            "step": result["detail"]["step"],
            "error": result["error"],
            "failed_blocks": len(result["detail"]["failed_blocks"]),
        },
    )
    return result
