"""StartFromEvent: the EventBridge rule's target for "Synapse Detection Requested".

EventBridge cannot name a Step Functions execution, so the rule invokes this function, which
starts the state machine with the execution name derived from the request: the same request
sent twice starts one run.
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


@logger.inject_lambda_context(log_event=False)  # the event's detail is a request
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = event.get("detail") if isinstance(event, dict) else None
    logger.set_correlation_id(steps.correlation_id(detail or {}, event.get("id")))
    try:
        started = steps.start_from_event(
            event, state_machine_arn=os.environ[wf.ENV_STATE_MACHINE_ARN]
        )
    except SynapsePipelinesError as exc:
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
        logger.warning("event rejected", extra={"error_type": exc.error_type, "reason": str(exc)})
        raise steps.task_error(exc) from None
    metrics.add_metric(
        name="DuplicateRequests" if started["duplicate"] else "ExecutionsStarted",
        unit=MetricUnit.Count,
        value=1,
    )
    # "name" is a LogRecord attribute: pass the fields under other keys
    logger.info(
        "execution started",
        extra={
            "execution_name": started["name"],
            "execution_arn": started["execution_arn"],
            "duplicate": started["duplicate"],
        },
    )
    return started
