"""The state machine: the ASL file from ``state_machines/`` with its substitutions.

The definition stays a file (``DefinitionBody.from_string`` + ``definition_substitutions``):
the local runtime executes the very same text. Because CDK cannot see inside it, every
permission is granted here by hand: invoke the three Lambdas, submit/describe/terminate Batch
jobs plus the managed EventBridge rule that ``.sync`` uses, publish to the topic and put
events on the bus. Logging ALL (with execution data) to a log group with retention, X-Ray on.
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
    aws_sns as sns,
    aws_stepfunctions as sfn,
)
from constructs import Construct

from synapse_pipelines.workflow import wiring as wf


class SynapseDetectionStateMachine(Construct):
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
        results_bucket_name: str,
        results_bucket_arn: str,
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
            "ResultsBucket": results_bucket_name,
        }
        for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
            if spec.substitution:
                substitutions[spec.substitution] = functions[logical_id].function_arn
        for logical_id, spec in wf.BATCH_JOBS.items():
            substitutions[spec.substitution] = job_definitions[logical_id].job_definition_arn
        # numeric settings of the definition (e.g. the blockwise Map's concurrency), checked
        substitutions.update(wf.setting_substitutions(settings_overrides))
        missing = set(wf.SUBSTITUTION_NAMES) - set(substitutions)
        if missing:
            raise ValueError(f"no value for ASL substitutions {sorted(missing)}")

        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
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
            definition_body=sfn.DefinitionBody.from_string(wf.definition_template()),
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
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeStepFunctions",
                actions=["lambda:InvokeFunction"],
                resources=[
                    fn.function_arn
                    for logical_id, fn in functions.items()
                    if wf.LAMBDA_FUNCTIONS[logical_id].substitution
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="SubmitStepJobs",
                actions=["batch:SubmitJob"],
                resources=[
                    job_queue.job_queue_arn,
                    large_job_queue.job_queue_arn,
                    # the ASL submits the exact revision CloudFormation created
                    *[jd.job_definition_arn for jd in job_definitions.values()],
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WaitForJobs",
                # DescribeJobs/TerminateJob do not support resource-level permissions
                actions=["batch:DescribeJobs", "batch:TerminateJob"],
                resources=["*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="SyncIntegrationRule",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    stack.format_arn(
                        service="events",
                        resource="rule",
                        resource_name="StepFunctionsGetEventsForBatchJobsRule",
                    )
                ],
            )
        )
        # the topic uses the AWS-managed SNS key, whose key policy already admits publishers
        # of this account through SNS: no KMS grant (and no kms key/* wildcard) needed
        self.role.add_to_policy(
            iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[topic.topic_arn])
        )
        event_bus.grant_put_events_to(self.role)
        for statement in distributed_map_statements(
            wf.definition_template(), stack, state_machine_name, results_bucket_arn
        ):
            self.role.add_to_policy(statement)


def distributed_map_statements(
    definition: str, stack: cdk.Stack, state_machine_name: str, results_bucket_arn: str
) -> list[iam.PolicyStatement]:
    """What a Distributed Map in the definition needs: start and watch its child executions
    (its own state machine), read the ItemReader's object, write the ResultWriter's objects.
    Nothing when the definition has no Distributed Map."""
    if '"DISTRIBUTED"' not in definition:
        return []
    machine = stack.format_arn(
        service="states",
        resource="stateMachine",
        resource_name=state_machine_name,
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )
    executions = stack.format_arn(
        service="states",
        resource="execution",
        resource_name=f"{state_machine_name}/*",
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )
    statements = [
        iam.PolicyStatement(
            sid="DistributedMapChildren", actions=["states:StartExecution"], resources=[machine]
        ),
        iam.PolicyStatement(
            sid="DistributedMapWatch",
            actions=["states:DescribeExecution", "states:StopExecution"],
            resources=[executions],
        ),
    ]
    if '"ItemReader"' in definition or '"ResultWriter"' in definition:
        statements.append(
            iam.PolicyStatement(
                sid="DistributedMapItemsAndResults",
                # the block manifest (ItemReader) and the Map results (ResultWriter) live
                # under each request's <results_key>/_workflow/ prefix
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[f"{results_bucket_arn}/*/_workflow/*"],
            )
        )
    return statements
