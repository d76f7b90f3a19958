"""The Lambda functions: one per ``synapse_pipelines.workflow.wiring.LAMBDA_FUNCTIONS`` entry.

Code: ``functions/<name>/<name>.py`` (tiny, one asset each) plus the shared dependencies
layer (``dependencies_layer.py``). Each function gets its log group, the environment its spec
declares (:func:`function_environment`; a declared name without a value stops the synth)
and its permissions (``function_policies.py``). StartFromEvent needs the state machine, which
needs the other functions: :meth:`LambdaFunctions.start_runs_of` connects it afterwards;
FinishCancelledRun is granted its state machine's executions the same way
(:meth:`LambdaFunctions.finish_runs_of`).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import (
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_s3 as s3,
    aws_secretsmanager as secretsmanager,
    aws_sns as sns,
    aws_stepfunctions as sfn,
)
from constructs import Construct

from infra.lambda_functions.dependencies_layer import ARCHITECTURE, RUNTIME, dependencies_layer
from infra.lambda_functions.function_policies import (
    RunResources,
    grant_describe_executions,
    grant_function_access,
)
from infra.log_groups import retained_log_group
from infra.stack_settings import Settings
from infra.wiring_checks import require_values
from synapse_pipelines.workflow import wiring as wf

#: What a handler folder may hold that the function must not ship: byte code that local runs
#: and tests write there (it would make the asset, and so each deployment, depend on them).
_NOT_SHIPPED = ["__pycache__", "*.pyc"]

#: StartFromEvent's state machine ARN until :meth:`LambdaFunctions.start_runs_of` sets it.
_STATE_MACHINE_ARN_PENDING = "set-after-the-state-machine"


def function_environment(
    settings: Settings,
    *,
    results: s3.IBucket,
    boss_token: secretsmanager.ISecret,
    topic: sns.ITopic,
    runs: RunResources,
) -> dict[str, dict[str, str]]:
    """Each function's environment beyond powertools' (names: ``wiring.ENV_*``)."""
    bucket = results.bucket_name
    queues = ",".join(q.job_queue_arn for q in runs.job_queues)
    return {
        "ValidateRequest": {
            wf.ENV_RESULTS_BUCKET: bucket,
            wf.ENV_BOSS_TOKEN_SECRET: boss_token.secret_arn,
            wf.ENV_TOPIC_ARN: topic.topic_arn,
            wf.ENV_DETECT_MEMORY_MIB: str(settings.detect_job.memory_mib),
            wf.ENV_LARGE_DETECT_MEMORY_MIB: str(settings.large_detect_job.memory_mib),
            **({wf.ENV_BUDGET_USD: f"{settings.budget_usd:g}"} if settings.budget_usd else {}),
        },
        "PublishToS3": {
            wf.ENV_RESULTS_BUCKET: bucket,
            wf.ENV_PRESIGN_SECONDS: str(settings.presign_expiry_seconds),
            wf.ENV_NEUROGLANCER_URL: settings.neuroglancer_url,
        },
        "DescribeFailure": {
            wf.ENV_RESULTS_BUCKET: bucket,
            wf.ENV_JOB_QUEUES: queues,
            wf.ENV_JOB_LOG_GROUP: runs.job_log_group.log_group_name,
            wf.ENV_STACK_NAME: settings.stack_name,
        },
        "FinishCancelledRun": {
            wf.ENV_RESULTS_BUCKET: bucket,
            wf.ENV_JOB_QUEUES: queues,
            wf.ENV_TOPIC_ARN: topic.topic_arn,
            wf.ENV_EVENT_BUS: runs.event_bus.event_bus_name,
            wf.ENV_STACK_NAME: settings.stack_name,
        },
        "StartFromEvent": {wf.ENV_STATE_MACHINE_ARN: _STATE_MACHINE_ARN_PENDING},
    }


class LambdaFunctions(Construct):
    """The Lambda handlers, their dependencies layer, log groups, environment and permissions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        results: s3.IBucket,
        boss_token: secretsmanager.ISecret,
        topic: sns.ITopic,
        runs: RunResources,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.layer = dependencies_layer(self)
        environment = function_environment(
            settings, results=results, boss_token=boss_token, topic=topic, runs=runs
        )
        self.functions: dict[str, lambda_.Function] = {}
        for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
            log_group = retained_log_group(self, f"{logical_id}Logs", log_retention)
            env = {
                "POWERTOOLS_SERVICE_NAME": wf.POWERTOOLS_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": wf.METRICS_NAMESPACE,
                **environment.get(logical_id, {}),
            }
            require_values(logical_id, "environment", spec.environment, env)
            self.functions[logical_id] = lambda_.Function(
                self,
                logical_id,
                description=spec.description,
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                handler=spec.handler,
                code=lambda_.Code.from_asset(str(spec.source_dir), exclude=_NOT_SHIPPED),
                layers=[self.layer],
                timeout=cdk.Duration.seconds(spec.timeout_seconds),
                memory_size=spec.memory_mib,
                environment=env,
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
            )
        grant_function_access(
            self.functions, results=results, boss_token=boss_token, topic=topic, runs=runs
        )

    def start_runs_of(self, state_machine: sfn.StateMachine) -> None:
        """Let StartFromEvent start ``state_machine`` (its ARN and the permission)."""
        starter = self.functions["StartFromEvent"]
        starter.add_environment(wf.ENV_STATE_MACHINE_ARN, state_machine.state_machine_arn)
        state_machine.grant_start_execution(starter)

    def finish_runs_of(self, state_machine_name: str) -> None:
        """Let FinishCancelledRun read the stopped executions of ``state_machine_name``
        (their input is the request; EventBridge leaves it out above 256 KiB)."""
        grant_describe_executions(self.functions["FinishCancelledRun"], state_machine_name)
