"""The stack: storage, notifications, Batch compute, Lambda functions, the state machine and
the event triggers composed, the stack's outputs, and the cdk-nag acknowledgements applied.

Environment-agnostic (no account/region lookups), so ``cdk synth`` works offline without
credentials. Outputs name everything a user needs (``synapse-pipelines submit --stack``
reads them). The construct ids ("Storage", "Compute", "Functions", "Workflow", ...) are part
of every logical id: they stay as first deployed, so an update replaces nothing.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.batch_compute.batch_compute_construct import BatchCompute
from infra.cdk_nag_checks import acknowledge_findings
from infra.event_triggers.event_triggers_construct import EventTriggers
from infra.lambda_functions.function_policies import RunResources
from infra.lambda_functions.lambda_functions_construct import LambdaFunctions
from infra.log_groups import log_retention
from infra.notifications.notifications_construct import Notifications
from infra.stack_settings import Settings
from infra.state_machine.state_machine_construct import SynapseDetectionStateMachine
from infra.storage.storage_construct import Storage
from synapse_pipelines.workflow import wiring as wf


class SynapsePipelinesStack(cdk.Stack):
    """The whole service in one stack; ``settings`` come from CDK context."""

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
        retention = log_retention(settings.log_retention_days)

        self.storage = Storage(
            self,
            "Storage",
            noncurrent_version_days=settings.results_noncurrent_version_days,
            infrequent_access_days=settings.results_infrequent_access_days,
        )
        results, boss_token = self.storage.results, self.storage.boss_token
        self.notifications = Notifications(
            self, "Notifications", notification_email=settings.notification_email
        )
        topic, event_bus = self.notifications.topic, self.notifications.event_bus
        self.batch_compute = BatchCompute(
            self,
            "Compute",
            settings=settings,
            results=results,
            boss_token=boss_token,
            log_retention=retention,
        )
        self.lambda_functions = LambdaFunctions(
            self,
            "Functions",
            settings=settings,
            results=results,
            boss_token=boss_token,
            topic=topic,
            runs=RunResources(
                job_queues=(self.batch_compute.queue, self.batch_compute.large_queue),
                job_log_group=self.batch_compute.log_group,
                event_bus=event_bus,
            ),
            log_retention=retention,
        )
        functions = self.lambda_functions.functions
        self.state_machine = SynapseDetectionStateMachine(
            self,
            "Workflow",
            functions=functions,
            job_queue=self.batch_compute.queue,
            large_job_queue=self.batch_compute.large_queue,
            job_definitions=self.batch_compute.job_definitions,
            topic=topic,
            event_bus=event_bus,
            results=results,
            log_retention=retention,
            state_machine_name=f"{settings.stack_name}-synapse-detection",
            settings_overrides=settings.asl_settings,
        )
        state_machine = self.state_machine.state_machine
        self.lambda_functions.start_runs_of(state_machine)
        self.lambda_functions.finish_runs_of(self.state_machine.state_machine_name)
        self.event_triggers = EventTriggers(
            self,
            "Triggers",
            event_bus=event_bus,
            starter=functions["StartFromEvent"],
            finisher=functions["FinishCancelledRun"],
            state_machine=state_machine,
        )
        self._add_outputs()
        acknowledge_findings(
            self,
            storage=self.storage,
            batch_compute=self.batch_compute,
            lambda_functions=self.lambda_functions,
            state_machine=self.state_machine,
            event_triggers=self.event_triggers,
        )

    def _add_outputs(self) -> None:
        compute = self.batch_compute
        outputs = {
            wf.OUTPUT_STATE_MACHINE_ARN: (
                self.state_machine.state_machine.state_machine_arn,
                "Start runs here",
            ),
            wf.OUTPUT_RESULTS_BUCKET: (
                self.storage.results.bucket_name,
                "Results: s3://<bucket>/<results_key>/",
            ),
            wf.OUTPUT_TOKEN_SECRET_ARN: (
                self.storage.boss_token.secret_arn,
                "Put your BOSS token here (aws secretsmanager put-secret-value)",
            ),
            wf.OUTPUT_TOPIC_ARN: (self.notifications.topic.topic_arn, "Success/failure messages"),
            wf.OUTPUT_EVENT_BUS_NAME: (
                self.notifications.event_bus.event_bus_name,
                f"Put '{wf.DETAIL_TYPE_REQUESTED}' events here; completion events come out",
            ),
            wf.OUTPUT_JOB_QUEUE_ARN: (compute.queue.job_queue_arn, "Fargate Spot job queue"),
            wf.OUTPUT_LARGE_JOB_QUEUE_ARN: (
                compute.large_queue.job_queue_arn,
                "EC2 Spot large-memory job queue",
            ),
            wf.OUTPUT_JOB_LOG_GROUP: (compute.log_group.log_group_name, "Batch job logs"),
            "ExecutionLogGroup": (
                self.state_machine.log_group.log_group_name,
                "State machine logs",
            ),
            "DeadLetterQueueUrl": (
                self.event_triggers.dead_letters.queue_url,
                "Undeliverable requests",
            ),
        }
        for logical_id, jd in compute.job_definitions.items():
            outputs[f"{logical_id}JobDefinitionArn"] = (jd.job_definition_arn, f"{logical_id} job")
        for logical_id, fn in self.lambda_functions.functions.items():
            outputs[f"{logical_id}FunctionName"] = (fn.function_name, f"{logical_id} Lambda")
        for key, (value, description) in outputs.items():
            cdk.CfnOutput(self, key, value=value, description=description)
