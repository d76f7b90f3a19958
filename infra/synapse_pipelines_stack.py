"""The stack: storage, notifications, compute, functions, workflow and triggers composed.

Environment-agnostic (no account/region lookups), so ``cdk synth`` works offline without
credentials. Outputs name everything a user needs (``synapse-pipelines submit --stack``
reads them).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam, aws_logs as logs
from constructs import Construct

from infra.batch_compute.batch_compute_construct import BatchCompute
from infra.cdk_nag_checks import acknowledge_findings
from infra.event_triggers.event_triggers_construct import EventTriggers
from infra.lambda_functions.lambda_functions_construct import LambdaFunctions
from infra.notifications.notifications_construct import Notifications
from infra.stack_settings import VALID_LOG_RETENTION_DAYS, Settings
from infra.state_machine.state_machine_construct import SynapseDetectionStateMachine
from infra.storage.storage_construct import Storage
from synapse_pipelines.workflow import wiring as wf

RETENTION = dict(zip(VALID_LOG_RETENTION_DAYS, list(logs.RetentionDays)[:-1], strict=True))


class SynapsePipelinesStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="synapse-pipelines: synapse detection on BOSS volumes",
            **kwargs,
        )
        self.settings = settings
        retention = RETENTION[settings.log_retention_days]

        storage = Storage(
            self,
            "Storage",
            noncurrent_version_days=settings.results_noncurrent_version_days,
            infrequent_access_days=settings.results_infrequent_access_days,
        )
        notifications = Notifications(
            self, "Notifications", notification_email=settings.notification_email
        )
        compute = BatchCompute(
            self,
            "Compute",
            settings=settings,
            results=storage.results,
            boss_token=storage.boss_token,
            log_retention=retention,
        )
        bucket = storage.results.bucket_name
        functions = LambdaFunctions(
            self,
            "Functions",
            log_retention=retention,
            environment={
                "ValidateRequest": {
                    wf.ENV_RESULTS_BUCKET: bucket,
                    wf.ENV_BOSS_TOKEN_SECRET: storage.boss_token.secret_arn,
                    wf.ENV_TOPIC_ARN: notifications.topic.topic_arn,
                    wf.ENV_DETECT_MEMORY_MIB: str(settings.detect_job.memory_mib),
                    wf.ENV_LARGE_DETECT_MEMORY_MIB: str(settings.large_detect_job.memory_mib),
                },
                "PublishToS3": {
                    wf.ENV_RESULTS_BUCKET: bucket,
                    wf.ENV_PRESIGN_SECONDS: str(settings.presign_expiry_seconds),
                    wf.ENV_NEUROGLANCER_URL: settings.neuroglancer_url,
                },
                "DescribeFailure": {wf.ENV_RESULTS_BUCKET: bucket},
                # the state machine ARN is set below (it depends on the other functions)
                "StartFromEvent": {wf.ENV_STATE_MACHINE_ARN: "set-after-the-state-machine"},
            },
        )
        fns = functions.functions
        results_arn = storage.results.bucket_arn
        objects = storage.results.arn_for_objects("*")
        # explicit actions, no s3:* style wildcards; object keys are per request (<key>/...)
        fns["ValidateRequest"].add_to_role_policy(
            iam.PolicyStatement(
                sid="StoreValidatedRequest",
                actions=["s3:PutObject"],
                resources=[storage.results.arn_for_objects("*/_workflow/request.json")],
            )
        )
        storage.boss_token.grant_read(fns["ValidateRequest"])
        fns["ValidateRequest"].add_to_role_policy(
            iam.PolicyStatement(
                sid="SubscribeRequesters",
                actions=["sns:Subscribe", "sns:ListSubscriptionsByTopic"],
                resources=[notifications.topic.topic_arn],
            )
        )
        fns["PublishToS3"].add_to_role_policy(
            iam.PolicyStatement(
                sid="PublishResults", actions=["s3:GetObject", "s3:PutObject"], resources=[objects]
            )
        )
        fns["PublishToS3"].add_to_role_policy(
            iam.PolicyStatement(
                # without ListBucket a missing artefact answers 403 instead of 404
                sid="SeeMissingArtefacts",
                actions=["s3:ListBucket"],
                resources=[results_arn],
            )
        )
        fns["DescribeFailure"].add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadStepErrors",
                actions=["s3:GetObject"],
                resources=[storage.results.arn_for_objects("*/_workflow/errors/*")],
            )
        )

        workflow = SynapseDetectionStateMachine(
            self,
            "Workflow",
            functions=fns,
            job_queue=compute.queue,
            large_job_queue=compute.large_queue,
            job_definitions=compute.job_definitions,
            topic=notifications.topic,
            event_bus=notifications.event_bus,
            results_bucket_name=bucket,
            results_bucket_arn=storage.results.bucket_arn,
            log_retention=retention,
            state_machine_name=f"{settings.stack_name}-synapse-detection",
            settings_overrides=settings.asl_settings,
        )
        state_machine = workflow.state_machine
        fns["StartFromEvent"].add_environment(
            wf.ENV_STATE_MACHINE_ARN, state_machine.state_machine_arn
        )
        state_machine.grant_start_execution(fns["StartFromEvent"])
        triggers = EventTriggers(
            self, "Triggers", event_bus=notifications.event_bus, starter=fns["StartFromEvent"]
        )

        outputs = {
            wf.OUTPUT_STATE_MACHINE_ARN: (state_machine.state_machine_arn, "Start runs here"),
            wf.OUTPUT_RESULTS_BUCKET: (bucket, "Results: s3://<bucket>/<results_key>/"),
            wf.OUTPUT_TOKEN_SECRET_ARN: (
                storage.boss_token.secret_arn,
                "Put your BOSS token here (aws secretsmanager put-secret-value)",
            ),
            wf.OUTPUT_TOPIC_ARN: (notifications.topic.topic_arn, "Success/failure messages"),
            wf.OUTPUT_EVENT_BUS_NAME: (
                notifications.event_bus.event_bus_name,
                f"Put '{wf.DETAIL_TYPE_REQUESTED}' events here; completion events come out",
            ),
            wf.OUTPUT_JOB_QUEUE_ARN: (compute.queue.job_queue_arn, "Fargate Spot job queue"),
            wf.OUTPUT_LARGE_JOB_QUEUE_ARN: (
                compute.large_queue.job_queue_arn,
                "EC2 Spot large-memory job queue",
            ),
            "JobLogGroup": (compute.log_group.log_group_name, "Batch job logs"),
            "ExecutionLogGroup": (workflow.log_group.log_group_name, "State machine logs"),
            "DeadLetterQueueUrl": (triggers.dead_letters.queue_url, "Undeliverable requests"),
        }
        for logical_id, jd in compute.job_definitions.items():
            outputs[f"{logical_id}JobDefinitionArn"] = (jd.job_definition_arn, f"{logical_id} job")
        for logical_id, fn in fns.items():
            outputs[f"{logical_id}FunctionName"] = (fn.function_name, f"{logical_id} Lambda")
        for key, (value, description) in outputs.items():
            cdk.CfnOutput(self, key, value=value, description=description)

        self.storage, self.batch_compute, self.lambda_functions = storage, compute, functions
        self.notifications, self.state_machine, self.event_triggers = (
            notifications,
            workflow,
            triggers,
        )
        acknowledge_findings(self)
