"""PublishToS3: manifest.json with S3 locations and checksums, links.csv, presigned URLs.

Input: ``{"bucket", "results_key", "execution_id"}``. Output: ``manifest_key``, the
notification (subject, message) and the completion event's detail.
"""

from __future__ import annotations

from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.functions.handler_support import count, lambda_handler, logger, reject
from synapse_pipelines.workflow.events import ResultsEvent
from synapse_pipelines.workflow.publish_s3_step import publish_s3


@lambda_handler(log_event=True)  # keys only: safe to log
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = ResultsEvent.parse(event)
    logger.set_correlation_id(parsed.results_key)
    try:
        result = publish_s3(parsed.bucket, parsed.results_key, execution_id=parsed.execution_id)
    except SynapsePipelinesError as exc:
        raise reject(exc, "publish failed") from None
    count("ResultsPublished")
    count("SynapsesFound", result["event_detail"]["synapses"])
    logger.info("results published", extra={"manifest_key": result["manifest_key"]})
    return result
