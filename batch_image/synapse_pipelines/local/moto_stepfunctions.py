"""Step Functions in moto: ``batch:submitJob.sync`` shapes, and named executions.

- ``arn:aws:states:::batch:submitJob.sync`` fails in moto with States.Runtime ``'JobName'``
  because the port left ``StateTaskServiceBatch._normalise_parameters`` /
  ``_normalise_response`` empty stubs. Their replacements convert through botocore's
  operation model, with the interpreter's own shape walkers: ``JobName`` -> ``jobName`` for
  the request, ``jobId`` -> ``JobId`` (recursively) for the result, so results have the AWS
  ``.sync`` shape and the ASL's ``ResultSelector``s work unchanged. Patched on the Batch task
  only: SNS and Lambda already use the API's own casing.
- ``StartExecution`` without a name gives an ARN ending in ``:None``; the replacement of
  ``StepFunctionsParserBackend.start_execution`` generates a UUID name, as AWS does.
- moto's Distributed Map counts its failed, aborted and timed-out iterations but never fails:
  it ignores ``ToleratedFailureCount``/``ToleratedFailurePercentage`` ("no effect on the
  program evaluation") and ends as success - the fan-out that looks successful but is not.
  The replacement of ``DistributedIterationComponent._map_run`` runs the iterations as
  before, then fails the Map Run as AWS does when the failures exceed either threshold:
  ``States.ExceedToleratedFailureThreshold``, "The specified tolerated failure threshold was
  exceeded", into the state's Retry/Catch. Unlike AWS, the iterations still running when the
  threshold is crossed finish first (moto has no hook to stop them early).
- moto emits no "Step Functions Execution Status Change" events. ``StopExecution`` is the
  one the workflow needs (a rule sends ABORTED executions to FinishCancelledRun): the
  replacement of ``stop_execution`` stops as before, then, once the interpreter has ended the
  execution, puts the event AWS would put on the default bus (``source`` aws.states, the
  execution's ARN, name, status, start/stop dates in epoch ms, input), asynchronously as AWS.
- A Fail state whose ``ErrorPath`` gives a ``States.*`` name (the workflow's ``Failed`` state
  re-raises the error DescribeFailure stated, e.g. ``States.ExceedToleratedFailureThreshold``)
  ends moto's execution in ``States.Runtime`` (a ValueError: moto's custom error names refuse
  the prefix). AWS ends the execution with that error; the replacement of
  ``StateFail._eval_state`` does the same.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import botocore.session
from botocore import xform_name
from moto.events.models import events_backends
from moto.stepfunctions.parser.api import (
    HistoryEventType,
    MapRunFailedEventDetails,
    TaskFailedEventDetails,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

from synapse_pipelines.local.moto_internals import ORIGINALS, MotoCompatError
from synapse_pipelines.workflow import wiring as wf


def _operation_model(service: str, action_snake: str) -> Any:
    model = botocore.session.get_session().get_service_model(service)
    for op in model.operation_names:
        if xform_name(op) == action_snake:
            return model.operation_model(op)
    raise MotoCompatError(f"botocore has no operation {service}.{action_snake}")


def _task_operation(
    task: Any, boto_service_name: str | None, service_action_name: str | None
) -> Any:
    """botocore's model of the operation a service-integration task state calls."""
    return _operation_model(
        task._get_boto_service_name(boto_service_name),
        task._get_boto_service_action(service_action_name),
    )


def sfn_normalise_parameters(
    self: Any,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    # ASL writes Batch parameters in PascalCase (JobName); boto3 wants the API's camelCase
    op = _task_operation(self, boto_service_name, service_action_name)
    if op.input_shape is not None:
        self._to_boto_request(parameters, op.input_shape)


def sfn_normalise_response(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    # and the results come back PascalCase, as on AWS (JobId, Status, Container.ExitCode)
    op = _task_operation(self, boto_service_name, service_action_name)
    if op.output_shape is not None:
        self._from_boto_response(response, op.output_shape)


def sfn_start_execution(
    self: Any,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Any:
    return ORIGINALS["sfn.start_execution"](
        self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
    )


#: How long the status-change event waits for the interpreter to end a stopped execution.
STOP_WAIT_SECONDS = 30.0


def _epoch_ms(value: Any) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def status_change_detail(execution: Any) -> dict[str, Any]:
    """The detail of Step Functions' "Execution Status Change" event for ``execution``."""
    return {
        "executionArn": execution.execution_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": execution.status,
        "startDate": _epoch_ms(execution.start_date),
        "stopDate": _epoch_ms(execution.stop_date),
        "input": execution.execution_input,
        "inputDetails": {"included": True},
        "output": None,
        "outputDetails": None,
        "error": execution.error,
        "cause": execution.cause,
    }


def _emit_when_ended(execution: Any, account_id: str, region: str) -> None:
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while execution.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    if execution.status != "ABORTED":  # it ended otherwise before the stop took
        return
    events_backends[account_id][region].put_events(
        [
            {
                "Source": "aws.states",
                "DetailType": wf.EXECUTION_STATUS_CHANGE,
                "Detail": json.dumps(status_change_detail(execution), default=str),
                "Resources": [execution.execution_arn],
            }
        ]
    )


def sfn_stop_execution(self: Any, execution_arn: str) -> Any:
    execution = ORIGINALS["sfn.stop_execution"](self, execution_arn)
    threading.Thread(
        target=_emit_when_ended,
        args=(execution, self.account_id, self.region_name),
        name="sfn-status-change",
        daemon=True,
    ).start()
    return execution


#: AWS's cause of a Map Run that failed more items than it tolerates.
THRESHOLD_EXCEEDED = "The specified tolerated failure threshold was exceeded"


def threshold_exceeded(failed: int, total: int, count: int, percentage: float) -> bool:
    """AWS's rule: the Map Run fails when its failed items exceed ToleratedFailureCount or
    (as a share of all items) ToleratedFailurePercentage."""
    return failed > count or (total > 0 and 100.0 * failed / total > percentage)


def sfn_map_run(self: Any, env: Any, eval_input: Any) -> None:
    ORIGINALS["sfn.map_run"](self, env, eval_input)
    items = eval_input.map_run_record.item_counter
    failed = items.failed.get() + items.aborted.get() + items.timed_out.get()
    tolerated = (eval_input.tolerated_failure_count, eval_input.tolerated_failure_percentage)
    if not env.is_running() or not threshold_exceeded(failed, items.total.get(), *tolerated):
        return
    env.stack.pop()  # the iterations' outputs: the Map fails instead
    error = StatesErrorNameType.StatesExceedToleratedFailureThreshold
    raise FailureEventException(
        FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=error),
            event_type=HistoryEventType.MapRunFailed,
            event_details=EventDetails(
                mapRunFailedEventDetails=MapRunFailedEventDetails(
                    error=error.to_name(), cause=THRESHOLD_EXCEEDED
                )
            ),
        )
    )


class FailStateErrorName(ErrorName):
    """A Fail state's error exactly as the ASL evaluated it, ``States.*`` included."""


def sfn_fail_eval_state(self: Any, env: Any) -> None:
    """``StateFail._eval_state`` as moto's, with any error name a Fail state may give."""
    details = TaskFailedEventDetails()
    error_value = None
    if self.error:
        self.error.eval(env=env)
        error_value = env.stack.pop()
        details["error"] = error_value
    if self.cause:
        self.cause.eval(env=env)
        details["cause"] = env.stack.pop()
    raise FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=FailStateErrorName(error_value) if error_value else None,
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(taskFailedEventDetails=details),
        )
    )
