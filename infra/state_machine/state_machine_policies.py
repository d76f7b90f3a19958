"""What the state machine's role may do. CDK cannot see inside an ASL file, so every
permission its tasks need is granted here by hand:

- invoke the workflow's Lambda tasks (those the ASL names; StartFromEvent is not one);
- submit jobs to the two queues with the job definitions, and describe/terminate
  them plus the managed EventBridge rule that ``.sync`` integrations use;
- publish to the topic (putting events on the bus is ``EventBus.grant_put_events_to``);
- for a Distributed Map: start and watch its child executions, read its items and write its
  results under each request's ``_workflow/`` prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import aws_cdk as cdk
from aws_cdk import (
    aws_batch as batch,
    aws_iam as iam,
    aws_lambda as lambda_,
    aws_s3 as s3,
    aws_sns as sns,
)

from infra.storage.results_bucket_policies import WORKFLOW_RECORDS, objects_statement
from synapse_pipelines.workflow import wiring as wf

#: The rule Step Functions manages for ``batch:submitJob.sync``.
BATCH_SYNC_RULE = "StepFunctionsGetEventsForBatchJobsRule"


def task_statements(
    stack: cdk.Stack,
    *,
    functions: Mapping[str, lambda_.IFunction],
    job_queues: Iterable[batch.IJobQueue],
    job_definitions: Iterable[batch.IJobDefinition],
    topic: sns.ITopic,
) -> list[iam.PolicyStatement]:
    """The Lambda, Batch and SNS tasks of the definition."""
    return [
        iam.PolicyStatement(
            sid="InvokeStepFunctions",
            actions=["lambda:InvokeFunction"],
            resources=[
                fn.function_arn
                for logical_id, fn in functions.items()
                if wf.LAMBDA_FUNCTIONS[logical_id].substitution
            ],
        ),
        iam.PolicyStatement(
            sid="SubmitStepJobs",
            actions=["batch:SubmitJob"],
            resources=[
                *[queue.job_queue_arn for queue in job_queues],
                # the ASL submits the exact revision CloudFormation created
                *[jd.job_definition_arn for jd in job_definitions],
            ],
        ),
        iam.PolicyStatement(
            sid="WaitForJobs",
            # DescribeJobs/TerminateJob do not support resource-level permissions
            actions=["batch:DescribeJobs", "batch:TerminateJob"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="SyncIntegrationRule",
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[
                stack.format_arn(service="events", resource="rule", resource_name=BATCH_SYNC_RULE)
            ],
        ),
        # the topic uses the AWS-managed SNS key, whose key policy already admits publishers
        # of this account through SNS: no KMS grant (and no kms key/* wildcard) needed
        iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[topic.topic_arn]),
    ]


def distributed_map_statements(
    definition: str, stack: cdk.Stack, state_machine_name: str, results: s3.IBucket
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
            # the block manifest (ItemReader) and the Map results (ResultWriter) live under
            # each request's <results_key>/_workflow/ prefix
            objects_statement(
                results,
                sid="DistributedMapItemsAndResults",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                keys=WORKFLOW_RECORDS,
            )
        )
    return statements
