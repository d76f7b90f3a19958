"""What each workflow function may do, beyond writing its logs and traces.

| function | may |
|---|---|
| ValidateRequest | write each request's validated copy; read the BOSS token; subscribe requesters |
| PublishToS3 | read and write results; list the bucket (a 404 for a missing artefact); read jobs |
| DescribeFailure | read the step error records |
| StartFromEvent | start the state machine (granted by ``LambdaFunctions.start_runs_of``) |

Results permissions come from ``infra/storage/results_bucket_policies.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import (
    aws_iam as iam,
    aws_lambda as lambda_,
    aws_s3 as s3,
    aws_secretsmanager as secretsmanager,
    aws_sns as sns,
)

from infra.storage.results_bucket_policies import (
    EVERY_RESULT,
    STEP_ERROR_RECORDS,
    VALIDATED_REQUESTS,
    listing_statement,
    objects_statement,
)


def grant_function_access(
    functions: Mapping[str, lambda_.Function],
    *,
    results: s3.IBucket,
    boss_token: secretsmanager.ISecret,
    topic: sns.ITopic,
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
