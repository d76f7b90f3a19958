"""StartFromEvent: the EventBridge rule's target for "Synapse Detection Requested".

EventBridge cannot name a Step Functions execution, so the rule invokes this function, which
starts the state machine with the execution name derived from the request: the same request
sent twice starts one run.
"""

from __future__ import annotations

import os
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.functions.handler_support import count, lambda_handler, logger, reject
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.events import RequestedEvent, correlation_id, start_from_event


@lambda_handler(log_event=False)  # the event's detail is a request
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = RequestedEvent.parse(event)
    logger.set_correlation_id(correlation_id(parsed.detail_mapping(), parsed.id))
    try:
        started = start_from_event(parsed, state_machine_arn=os.environ[wf.ENV_STATE_MACHINE_ARN])
    except SynapsePipelinesError as exc:
        raise reject(exc, "event rejected", "EventsRejected") from None
    count("DuplicateRequests" if started["duplicate"] else "ExecutionsStarted")
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
