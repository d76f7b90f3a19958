"""DescribeFailure: turn a caught failure into a clear error, cause and notification.

Input: ``{"state": <the state at the failure>, "execution_id"}``. Output: ``error``,
``cause``, ``subject``, ``message``, ``notify`` (email attribute) and the failure event's
``detail``. It never raises for a malformed state: a notification must always go out.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from synapse_pipelines.workflow import steps, wiring as wf

logger = Logger(service=wf.POWERTOOLS_SERVICE)
tracer = Tracer(service=wf.POWERTOOLS_SERVICE, disabled=not wf.tracing_enabled(os.environ))
metrics = Metrics(namespace=wf.METRICS_NAMESPACE, service=wf.POWERTOOLS_SERVICE)


@logger.inject_lambda_context(log_event=False)  # the state holds the request: never log it raw
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = steps.FailureEvent.model_validate(event)
    job = parsed.state.get("job") or {}
    logger.set_correlation_id(job.get("results_key") or parsed.execution_id)
    result = steps.describe_failure(parsed.state, execution_id=parsed.execution_id)
    metrics.add_metric(name="ExecutionsFailed", unit=MetricUnit.Count, value=1)
    logger.info(
        "failure described", extra={"step": result["detail"]["step"], "error": result["error"]}
    )
    return result
