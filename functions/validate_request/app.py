"""ValidateRequest: check a request against BOSS before any Batch job starts.

Input: ``{"request": <execution input>, "execution_name": ...}``. Output: the small ``$.job``
state (``synapse_pipelines.workflow.wiring.JobState``). A user error fails the task with the error's
type as Error and its clear message (field + fix) as the message.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from synapse_pipelines.core.errors import RequestValidationError, SynapsePipelinesError
from synapse_pipelines.workflow import steps, wiring as wf

logger = Logger(service=wf.POWERTOOLS_SERVICE)
tracer = Tracer(service=wf.POWERTOOLS_SERVICE, disabled=not wf.tracing_enabled(os.environ))
metrics = Metrics(namespace=wf.METRICS_NAMESPACE, service=wf.POWERTOOLS_SERVICE)


@logger.inject_lambda_context(log_event=False)  # the event is a request: never log it raw
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = event.get("request", event) if isinstance(event, dict) else event
    if not isinstance(request, dict):  # e.g. an execution started with a string or a list
        problem = [("request", "the execution input must be a JSON object: the request")]
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        raise steps.task_error(RequestValidationError(problem)) from None
    name = event.get("execution_name") if isinstance(event, dict) else None
    logger.set_correlation_id(steps.correlation_id(request, name))
    try:
        job = steps.validate(
            {"request": request, "execution_name": name},
            bucket=os.environ[wf.ENV_RESULTS_BUCKET],
        )
    except SynapsePipelinesError as exc:
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        logger.warning("request rejected", extra={"error_type": exc.error_type, "reason": str(exc)})
        raise steps.task_error(exc) from None
    metrics.add_metric(name="RequestsValidated", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RequestVoxels", unit=MetricUnit.Count, value=job["voxel_count"])
    logger.info("request valid", extra={"detect_mode": job["detect_mode"]})
    return job
