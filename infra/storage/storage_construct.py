"""Where results and the BOSS token live.

Results bucket: private (block public access, SSL only, bucket-owner-enforced), SSE-S3,
versioned (a re-run never destroys earlier results), lifecycle rules (older versions expire,
results move to Infrequent Access, stale multipart uploads are aborted), server access logs
into a second private bucket. Results are shared with presigned URLs, never public-read as the
original did.

BOSS token: one Secrets Manager secret. Batch containers get it through their job
definitions' ``secrets``; the Lambdas read it by ARN. It starts with a random placeholder:
put the real token in it after deploying (see docs/aws.md).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3, aws_secretsmanager as secretsmanager
from constructs import Construct

#: What both buckets share: private, encrypted, TLS only, kept when the stack is deleted.
_PRIVATE_BUCKET: dict[str, Any] = {
    "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
    "encryption": s3.BucketEncryption.S3_MANAGED,
    "enforce_ssl": True,
    "removal_policy": cdk.RemovalPolicy.RETAIN,
}


class Storage(Construct):
    """The results bucket, its access-log bucket and the BOSS token secret."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        noncurrent_version_days: int,
        infrequent_access_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            **_PRIVATE_BUCKET,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=cdk.Duration.days(365))],
        )
        self.results = s3.Bucket(
            self,
            "Results",
            **_PRIVATE_BUCKET,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="results/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="old-versions",
                    noncurrent_version_expiration=cdk.Duration.days(noncurrent_version_days),
                ),
                s3.LifecycleRule(
                    id="infrequent-access",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=cdk.Duration.days(infrequent_access_days),
                        )
                    ],
                ),
                s3.LifecycleRule(
                    id="abort-uploads",
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                ),
            ],
        )
        self.boss_token = secretsmanager.Secret(
            self,
            "BossToken",
            description=(
                "BOSS API token used by synapse-pipelines (Batch jobs via job-definition "
                "secrets, Lambdas by ARN). Replace the placeholder with your token."
            ),
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=40
            ),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
