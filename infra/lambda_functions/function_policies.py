"""What each workflow function may do, beyond writing its logs and traces.

| function | may |
|---|---|
| ValidateRequest | write each request's validated copy; read the BOSS token; subscribe requesters |
| PublishToS3 | read and write results; list the bucket (a missing artefact is a 404); read jobs \
  (the run's job costs) |
| DescribeFailure | read the step error records; list and describe the run's Batch jobs \
  (failed blocks, log streams); mark the run failed (run record, manifest) |
| FinishCancelledRun | list, describe and terminate the run's Batch jobs; mark the run \
  cancelled; notify (topic, bus); describe the stopped execution (``finish_runs_of``) |
| StartFromEvent | start the state machine (granted by ``LambdaFunctions.start_runs_of``) |

Results permissions come from ``infra/storage/results_bucket_policies.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import (
    aws_batch as batch,
    aws_events as events,
    aws_iam as iam,
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_s3 as s3,
    aws_secretsmanager as secretsmanager,
    aws_sns as sns,
)

from infra.storage.results_bucket_policies import (
    EVERY_RESULT,
    MANIFESTS,
    RUN_STATUS_RECORDS,
    STEP_ERROR_RECORDS,
    VALIDATED_REQUESTS,
    listing_statement,
    objects_statement,
)


@dataclass(frozen=True)
class RunResources:
    """What the functions looking at a run's jobs need: the job queues, the jobs' log group,
    and the bus of the workflow's events."""

    job_queues: tuple[batch.IJobQueue, ...]
    job_log_group: logs.ILogGroup
    event_bus: events.IEventBus


def grant_function_access(
    functions: Mapping[str, lambda_.Function],
    *,
    results: s3.IBucket,
    boss_token: secretsmanager.ISecret,
    topic: sns.ITopic,
    runs: RunResources,
) -> None:
    """Add each function's statements to its role (see the table above)."""
    validate = functions["ValidateRequest"]
    validate.add_to_role_policy(
        objects_statement(
            results, sid="StoreValidatedRequest", actions=["s3:PutObject"], keys=VALIDATED_REQUESTS
        )
    )
    boss_token.grant_read(validate)
    validate.add_to_role_policy(
        iam.PolicyStatement(
            sid="SubscribeRequesters",
            actions=["sns:Subscribe", "sns:ListSubscriptionsByTopic"],
            resources=[topic.topic_arn],
        )
    )
    publish = functions["PublishToS3"]
    publish.add_to_role_policy(
        objects_statement(
            results,
            sid="PublishResults",
            actions=["s3:GetObject", "s3:PutObject"],
            keys=EVERY_RESULT,
        )
    )
    publish.add_to_role_policy(listing_statement(results, sid="SeeMissingArtefacts"))
    publish.add_to_role_policy(
        iam.PolicyStatement(  # none of the three supports resource-level permissions
            sid="ReadJobCosts",
            actions=["batch:DescribeJobQueues", "batch:ListJobs", "batch:DescribeJobs"],
            resources=["*"],
        )
    )
    functions["DescribeFailure"].add_to_role_policy(
        objects_statement(
            results, sid="ReadStepErrors", actions=["s3:GetObject"], keys=STEP_ERROR_RECORDS
        )
    )
    describe = functions["DescribeFailure"]
    finish = functions["FinishCancelledRun"]
    for fn in (describe, finish):
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="FindRunJobs",
                # ListJobs and DescribeJobs do not support resource-level permissions
                actions=["batch:ListJobs", "batch:DescribeJobs"],
                resources=["*"],
            )
        )
        for keys, sid in ((RUN_STATUS_RECORDS, "RecordRunEnd"), (MANIFESTS, "MarkManifest")):
            fn.add_to_role_policy(
                objects_statement(
                    results, sid=sid, actions=["s3:GetObject", "s3:PutObject"], keys=keys
                )
            )
        fn.add_to_role_policy(listing_statement(results, sid="SeeMissingRecords"))
    finish.add_to_role_policy(
        iam.PolicyStatement(
            sid="TerminateRunJobs",
            actions=["batch:TerminateJob"],
            resources=[
                cdk.Stack.of(finish).format_arn(service="batch", resource="job", resource_name="*")
            ],
        )
    )
    finish.add_to_role_policy(
        iam.PolicyStatement(
            sid="NotifyCancel", actions=["sns:Publish"], resources=[topic.topic_arn]
        )
    )
    runs.event_bus.grant_put_events_to(finish)


def grant_describe_executions(fn: lambda_.Function, state_machine_name: str) -> None:
    """DescribeExecution on the executions of ``state_machine_name`` (their names are made
    at run time)."""
    fn.add_to_role_policy(
        iam.PolicyStatement(
            sid="DescribeStoppedExecutions",
            actions=["states:DescribeExecution"],
            resources=[
                cdk.Stack.of(fn).format_arn(
                    service="states",
                    resource="execution",
                    resource_name=f"{state_machine_name}:*",
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )
    )
