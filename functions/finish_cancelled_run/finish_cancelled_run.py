"""FinishCancelledRun: the target of the rule on the state machine's ABORTED executions.

A stopped execution runs no further state, so this function finishes the run instead:
terminates its Batch jobs (the Distributed Maps' block jobs included), marks its run record
and manifest cancelled, publishes the cancel notification and the "Synapse Detection
Cancelled" event (:func:`synapse_pipelines.workflow.run_cancel.finish_cancelled_run`;
idempotent, so EventBridge's retries notify once).
"""

from __future__ import annotations

import os
from typing import Any

import boto3

from synapse_pipelines.functions.handler_support import count, lambda_handler, logger
from synapse_pipelines.io.s3_objects import s3_client
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.events import StatusChangeEvent
from synapse_pipelines.workflow.run_cancel import FinishTarget, finish_cancelled_run
from synapse_pipelines.workflow.run_jobs import queues_from_env


def target(environ: Any = os.environ) -> FinishTarget:
    """Where this function works: its environment (``wiring.LAMBDA_FUNCTIONS``) and clients."""
    return FinishTarget(
        bucket=environ[wf.ENV_RESULTS_BUCKET],
        job_queues=queues_from_env(environ),
        stack_name=environ.get(wf.ENV_STACK_NAME, "<stack name>"),
        sfn=boto3.client("stepfunctions"),
        s3=s3_client(),
        batch=boto3.client("batch"),
        sns=boto3.client("sns"),
        events=boto3.client("events"),
        topic_arn=environ.get(wf.ENV_TOPIC_ARN),
        event_bus=environ.get(wf.ENV_EVENT_BUS),
    )


@lambda_handler(log_event=False)  # the event's detail holds the execution input (a request)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = StatusChangeEvent.parse(event)
    logger.set_correlation_id(parsed.execution_arn)
    result = finish_cancelled_run(parsed, target())
    if result["finished"]:
        count("ExecutionsCancelled")
        count("JobsTerminatedOnCancel", result["terminated_jobs"])
    logger.info(
        "cancelled run finished" if result["finished"] else "nothing to finish",
        extra={k: v for k, v in result.items() if k != "retry_command"},
    )
    return result
