"""ValidateRequest: check a request against BOSS before any Batch job starts.

Input: ``{"request": <execution input>, "execution_name": ...}``. Output: the small ``$.job``
state (``synapse_pipelines.workflow.wiring.JobState``). A user error fails the task with the
error's type as Error and its clear message (field + fix) as the message.
"""

from __future__ import annotations

import os
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.functions.handler_support import count, lambda_handler, logger, reject
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.events import ValidateEvent, correlation_id
from synapse_pipelines.workflow.validate_step import validate


@lambda_handler(log_event=False)  # the event is a request: never log it raw
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        parsed = ValidateEvent.parse(event)
        logger.set_correlation_id(correlation_id(parsed.request, parsed.execution_name))
        job = validate(parsed, bucket=os.environ[wf.ENV_RESULTS_BUCKET])
    except SynapsePipelinesError as exc:
        raise reject(exc, "request rejected", "RequestsRejected") from None
    count("RequestsValidated")
    count("RequestVoxels", job["voxel_count"])
    logger.info("request valid", extra={"detect_mode": job["detect_mode"]})
    return job
