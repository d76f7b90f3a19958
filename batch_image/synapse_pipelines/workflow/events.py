"""The Lambda tasks' typed events, and starting an execution (the StartFromEvent step).

Every Lambda handler parses its payload with one of the models here (``Model.parse``):
:class:`ValidateEvent` (ValidateRequest), :class:`ResultsEvent` (PublishToS3),
:class:`FailureEvent` (DescribeFailure), :class:`RequestedEvent` (StartFromEvent, the
EventBridge rule's target) and :class:`StatusChangeEvent` (FinishCancelledRun, the target of
the rule on the state machine's ABORTED executions). :func:`start_from_event` names the
execution from the request (EventBridge cannot), :func:`start_execution` starts one and
treats "already exists" as the duplicate it is (the CLI and the local runtime use it too),
and :func:`correlation_id` gives the logs a request's results key.

Light (pydantic, boto3): the Lambdas import it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from synapse_pipelines.core.errors import RequestValidationError, aws_error_code
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.workflow import run_names


class WorkflowEvent(BaseModel):
    """A Lambda task's payload (fields the task does not read are ignored)."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def parse(cls, payload: Any) -> Self:
        """The typed event of ``payload`` (what the Lambda runtime passes the handler)."""
        return cls.model_validate(payload)


class ValidateEvent(WorkflowEvent):
    """ValidateRequest's payload: the execution input (a request) and the execution name."""

    request: dict[str, Any]
    execution_name: str | None = None

    @classmethod
    def parse(cls, payload: Any) -> Self:
        """Also accepts the bare request; an input that is not a JSON object is refused as a
        :class:`RequestValidationError` (e.g. an execution started with a string)."""
        data = payload if isinstance(payload, Mapping) else {"request": payload}
        if "request" not in data:
            data = {"request": dict(data)}
        if not isinstance(data["request"], Mapping):
            raise RequestValidationError(
                [("request", "the execution input must be a JSON object: the request")]
            )
        return cls.model_validate(data)


class ResultsEvent(WorkflowEvent):
    """Payload of the steps after validation: only where the results are."""

    bucket: str
    results_key: str
    execution_id: str | None = None


class FailureEvent(WorkflowEvent):
    """DescribeFailure's payload: the whole state at the failure, the execution id and its
    start time (the run's Batch jobs were created after it)."""

    state: dict[str, Any]
    execution_id: str | None = None
    execution_start: str | None = None


class StatusChangeEvent(WorkflowEvent):
    """A "Step Functions Execution Status Change" EventBridge event (FinishCancelledRun's
    payload: the rule sends it the ABORTED ones of the state machine)."""

    id: str | None = None
    detail: dict[str, Any]

    @property
    def execution_arn(self) -> str:
        return str(self.detail.get("executionArn", ""))

    @property
    def status(self) -> str:
        return str(self.detail.get("status", ""))

    @property
    def is_child_execution(self) -> bool:
        """A Distributed Map's child execution (``...:execution:<machine>/<map run>:<id>``):
        its parent's run is what gets finished."""
        return "/" in self.execution_arn.partition(":execution:")[2]


class RequestedEvent(WorkflowEvent):
    """A "Synapse Detection Requested" EventBridge event: the request is its ``detail``
    (checked by :func:`start_from_event`, which refuses anything but a request object)."""

    id: str | None = None
    detail: Any = None

    def detail_mapping(self) -> Mapping[str, Any]:
        return self.detail if isinstance(self.detail, Mapping) else {}


def start_from_event(
    event: RequestedEvent | Mapping[str, Any], *, state_machine_arn: str, sfn: Any | None = None
) -> dict[str, Any]:
    """Start an execution for a "Synapse Detection Requested" event, named from the request.

    EventBridge cannot name executions, so this function does: the same request sent twice
    maps to the same name and Step Functions refuses the second start.
    """
    parsed = event if isinstance(event, RequestedEvent) else RequestedEvent.parse(event)
    detail = parsed.detail
    if not isinstance(detail, Mapping):
        raise RequestValidationError([("detail", "the event has no request object in 'detail'")])
    if detail.get("token") not in (None, ""):
        raise RequestValidationError(
            [("detail.token", "never put a token in an event; use the deployment's secret")]
        )
    request = parse_request(detail)
    public = request.public_dict()
    name = run_names.execution_name(public, request.results_key)
    return start_execution(sfn, state_machine_arn, name, public)


def start_execution(
    sfn: Any | None, state_machine_arn: str, name: str, request_input: Mapping[str, Any]
) -> dict[str, Any]:
    """StartExecution that treats "already exists" as the duplicate it is."""
    if sfn is None:
        # start-up time: boto3 takes ~0.5 s to import; the CLI (which imports this module
        # for every command) and the local runtime pass their own client
        import boto3

        sfn = boto3.client("stepfunctions")
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(dict(request_input))
        )
        return {"execution_arn": response["executionArn"], "name": name, "duplicate": False}
    except Exception as exc:
        if aws_error_code(exc) != "ExecutionAlreadyExists":
            raise
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        return {"execution_arn": arn, "name": name, "duplicate": True}


def correlation_id(request_data: Mapping[str, Any], fallback: str | None = None) -> str | None:
    """The request's results key for log correlation, without raising on a bad request."""
    try:
        return parse_request(request_data, max_voxels=None).results_key
    except Exception:  # a bad request is reported by the step itself
        return fallback
