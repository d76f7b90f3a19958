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
"""

from __future__ import annotations

import uuid
from typing import Any

import botocore.session
from botocore import xform_name

from synapse_pipelines.local.moto_internals import ORIGINALS, MotoCompatError


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
