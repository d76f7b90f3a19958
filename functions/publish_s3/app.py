"""PublishToS3: manifest.json with S3 locations and checksums, links.csv, presigned URLs.

Input: ``{"bucket", "results_key", "execution_id"}``. Output: ``manifest_key``, the
notification (subject, message) and the completion event's detail.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import steps, wiring as wf

logger = Logger(service=wf.POWERTOOLS_SERVICE)
tracer = Tracer(service=wf.POWERTOOLS_SERVICE, disabled=not wf.tracing_enabled(os.environ))
metrics = Metrics(namespace=wf.METRICS_NAMESPACE, service=wf.POWERTOOLS_SERVICE)


@logger.inject_lambda_context(log_event=True)  # keys only: safe to log
@tracer.capture_lambda_handler(capture_response=False)  # presigned URLs stay out of traces
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = steps.StepEvent.model_validate(event)
    logger.set_correlation_id(parsed.results_key)
    try:
        result = steps.publish_s3(
            parsed.bucket, parsed.results_key, execution_id=parsed.execution_id
        )
    except SynapsePipelinesError as exc:
        logger.warning("publish failed", extra={"error_type": exc.error_type, "reason": str(exc)})
        raise steps.task_error(exc) from None
    metrics.add_metric(name="ResultsPublished", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="SynapsesFound", unit=MetricUnit.Count, value=result["event_detail"]["synapses"]
    )
    logger.info("results published", extra={"manifest_key": result["manifest_key"]})
    return result
