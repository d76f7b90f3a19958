"""The state machine: the ASL file from ``state_machines/`` with its substitutions.

The definition stays a file (``DefinitionBody.from_string`` + ``definition_substitutions``):
the local runtime executes the very same text. Every ``${...}`` placeholder the wiring
declares gets a value (the Lambda and Batch ARNs, the queues, topic, bus, bucket and the
numeric settings); the role's permissions are in ``state_machine_policies.py``. Logging ALL
(with execution data) to a log group with retention, X-Ray on.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import (
    aws_batch as batch,
    aws_events as events,
    aws_iam as iam,
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_s3 as s3,
    aws_sns as sns,
    aws_stepfunctions as sfn,
)
from constructs import Construct

from infra.log_groups import retained_log_group
from infra.state_machine.state_machine_policies import (
    distributed_map_statements,
    task_statements,
)
from infra.wiring_checks import require_values
from synapse_pipelines.workflow import wiring as wf


class SynapseDetectionStateMachine(Construct):
    """The state machine, its role and its execution log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        job_queue: batch.IJobQueue,
        large_job_queue: batch.IJobQueue,
        job_definitions: Mapping[str, batch.IJobDefinition],
        topic: sns.ITopic,
        event_bus: events.IEventBus,
        results: s3.IBucket,
        log_retention: logs.RetentionDays,
        state_machine_name: str,
        settings_overrides: Mapping[str, int | float] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.state_machine_name = state_machine_name
        substitutions = {
            "JobQueueArn": job_queue.job_queue_arn,
            "LargeJobQueueArn": large_job_queue.job_queue_arn,
            "NotificationTopicArn": topic.topic_arn,
            "EventBusName": event_bus.event_bus_name,
            "ResultsBucket": results.bucket_name,
        }
        for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
            if spec.substitution:
                substitutions[spec.substitution] = functions[logical_id].function_arn
        for logical_id, spec in wf.BATCH_JOBS.items():
            substitutions[spec.substitution] = job_definitions[logical_id].job_definition_arn
        # numeric settings of the definition (e.g. the blockwise Map's concurrency), checked
        substitutions.update(wf.setting_substitutions(settings_overrides))
        require_values(
            "the state machine", "ASL substitutions", wf.SUBSTITUTION_NAMES, substitutions
        )

        definition = wf.definition_template()
        self.log_group = retained_log_group(self, "ExecutionLogs", log_retention)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="synapse-pipelines state machine",
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # a fixed name lets the role name its own ARN (Distributed Map child executions)
            # without a circular reference
            state_machine_name=state_machine_name,
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions=substitutions,
            state_machine_type=sfn.StateMachineType.STANDARD,
            role=self.role,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            comment="synapse-pipelines: validate, detect, report, publish, notify",
        )

        stack = cdk.Stack.of(self)
        for statement in task_statements(
            stack,
            functions=functions,
            job_queues=(job_queue, large_job_queue),
            job_definitions=job_definitions.values(),
            topic=topic,
        ):
            self.role.add_to_policy(statement)
        event_bus.grant_put_events_to(self.role)
        for statement in distributed_map_statements(definition, stack, state_machine_name, results):
            self.role.add_to_policy(statement)
