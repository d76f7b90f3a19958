"""The local "stack": what the CDK stack builds, built in moto from ``workflow/wiring.py``.

Owns :func:`deploy` and :class:`LocalResources`. Resources, one function per kind: an IAM
role, the results bucket, the SNS topic, the BOSS token secret, the custom event bus, the
Batch compute environment with its two job queues and one job definition per
:data:`~synapse_pipelines.workflow.wiring.BATCH_JOBS` entry (command with ``Ref::``
parameters, environment, ``secrets``, retry strategy), one Lambda function per
:data:`~synapse_pipelines.workflow.wiring.LAMBDA_FUNCTIONS` entry (its invocations call the
real handler in-process), the state machine from the ASL file with every substitution filled,
the "Synapse Detection Requested" rule targeting StartFromEvent and the default bus's rule
sending the state machine's stopped (ABORTED) executions to FinishCancelledRun, and a
CloudFormation stack carrying the CDK stack's outputs (so ``--stack`` finds it). Names,
commands, handler paths, environment variable names and substitution keys all come from
:mod:`synapse_pipelines.workflow.wiring`; nothing here re-describes the workflow.

Two resources exist only locally, to read what a user or automation would receive: an SQS
queue subscribed to the topic and a rule sending the workflow's own events to another.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synapse_pipelines.local.moto_lambda import register_lambda_handler
from synapse_pipelines.local.moto_server import DEFAULT_ACCOUNT
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.job_logs import DEFAULT_JOB_LOG_GROUP

#: the names of the local resources (one local "stack" per process)
STACK_NAME = "synapse-pipelines-local"
#: a placeholder secret value until the runtime stores the real token
NO_TOKEN = "no-token-set"

#: a boto3 client for a service name, of the emulated endpoint
ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class LocalResources:
    """What the local "stack" consists of (the CDK stack outputs' local counterparts)."""

    bucket: str
    topic_arn: str
    secret_arn: str
    event_bus: str
    rule_name: str
    cancel_rule_name: str  # default bus: ABORTED executions -> FinishCancelledRun
    state_machine_arn: str
    functions: dict[str, str]  # logical id -> function ARN
    job_queues: dict[str, str]  # "standard" / "large" -> ARN
    job_definitions: dict[str, str]  # logical id -> ARN
    notices_queue_url: str  # SQS subscribed to the topic (raw=False: subject + attributes)
    events_queue_url: str  # SQS target of a rule capturing the workflow's own events


def function_name(logical_id: str) -> str:
    """The local name of the Lambda function ``logical_id`` of the workflow wiring."""
    return f"{STACK_NAME}-{logical_id}"


def deploy(client: ClientFactory, region: str) -> LocalResources:
    """Create every resource of the local stack through ``client(service)``."""
    role = _create_role(client("iam"))
    bucket = _create_bucket(client("s3"))
    topic_arn = client("sns").create_topic(Name=f"{STACK_NAME}-notifications")["TopicArn"]
    secret_arn = client("secretsmanager").create_secret(
        Name=f"{STACK_NAME}/boss-token", SecretString=NO_TOKEN
    )["ARN"]
    bus = f"{STACK_NAME}-bus"
    client("events").create_event_bus(Name=bus)
    notices_url, events_url = _create_capture_queues(client, topic_arn, bus)

    env_values = _environment_values(bucket, secret_arn, topic_arn)
    queues = _create_job_queues(client("batch"), role)
    env_values[wf.ENV_JOB_QUEUES] = ",".join(queues.values())
    env_values[wf.ENV_EVENT_BUS] = bus
    job_definitions = _register_job_definitions(client("batch"), env_values, secret_arn)
    # the state machine's ARN is known before it exists (it is named): the Lambdas need it
    state_machine_name = f"{STACK_NAME}-workflow"
    arn_prefix = f"arn:aws:states:{region}:{DEFAULT_ACCOUNT}"
    state_machine_arn = f"{arn_prefix}:stateMachine:{state_machine_name}"
    env_values[wf.ENV_STATE_MACHINE_ARN] = state_machine_arn
    functions = _create_functions(client("lambda"), role, env_values)
    substitutions: dict[str, str] = {
        "JobQueueArn": queues["standard"],
        "LargeJobQueueArn": queues["large"],
        "NotificationTopicArn": topic_arn,
        "EventBusName": bus,
        "ResultsBucket": bucket,
    }
    created = _create_state_machine(
        client("stepfunctions"), state_machine_name, role, substitutions, functions, job_definitions
    )
    if created != state_machine_arn:
        raise RuntimeError(f"state machine ARN {created} != expected {state_machine_arn}")
    rule = _create_request_rule(client("events"), bus, functions["StartFromEvent"])
    cancel_rule = _create_cancel_rule(
        client("events"), state_machine_arn, functions["FinishCancelledRun"]
    )
    _publish_outputs(
        client("cloudformation"),
        {
            wf.OUTPUT_STATE_MACHINE_ARN: state_machine_arn,
            wf.OUTPUT_RESULTS_BUCKET: bucket,
            wf.OUTPUT_TOKEN_SECRET_ARN: secret_arn,
            wf.OUTPUT_TOPIC_ARN: topic_arn,
            wf.OUTPUT_EVENT_BUS_NAME: bus,
            wf.OUTPUT_JOB_QUEUE_ARN: queues["standard"],
            wf.OUTPUT_LARGE_JOB_QUEUE_ARN: queues["large"],
            wf.OUTPUT_JOB_LOG_GROUP: DEFAULT_JOB_LOG_GROUP,
        },
    )
    return LocalResources(
        bucket=bucket,
        topic_arn=topic_arn,
        secret_arn=secret_arn,
        event_bus=bus,
        rule_name=rule,
        cancel_rule_name=cancel_rule,
        state_machine_arn=state_machine_arn,
        functions=functions,
        job_queues=queues,
        job_definitions=job_definitions,
        notices_queue_url=notices_url,
        events_queue_url=events_url,
    )


def _publish_outputs(cloudformation: Any, outputs: Mapping[str, str]) -> None:
    """A CloudFormation stack named :data:`STACK_NAME` holding only the outputs the CDK stack
    has (``wiring.OUTPUT_*``), so the CLI's ``--stack synapse-pipelines-local`` finds the local
    deployment as it finds a real one (``list``, ``cancel``, ``retry``, ``logs``, ``status``
    with ``AWS_ENDPOINT_URL`` pointing at the local endpoint)."""
    template = {
        "Description": "synapse-pipelines local runtime: the outputs of the local stack",
        "Resources": {},  # moto accepts an outputs-only template; the resources exist already
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cloudformation.create_stack(StackName=STACK_NAME, TemplateBody=json.dumps(template))


def _create_role(iam: Any) -> str:
    """One role for everything: IAM is not enforced by moto."""
    return str(
        iam.create_role(
            RoleName=f"{STACK_NAME}-role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
    )


def _create_bucket(s3: Any) -> str:
    bucket = f"{STACK_NAME}-results"
    s3.create_bucket(Bucket=bucket)
    return bucket


def _create_capture_queues(client: ClientFactory, topic_arn: str, bus: str) -> tuple[str, str]:
    """SQS queues receiving what users and automation would: SNS messages, our own events."""
    sqs, events = client("sqs"), client("events")
    notices_url = sqs.create_queue(QueueName=f"{STACK_NAME}-notices")["QueueUrl"]
    events_url = sqs.create_queue(QueueName=f"{STACK_NAME}-events")["QueueUrl"]

    def queue_arn(url: str) -> str:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn(notices_url))
    events.put_rule(
        Name=f"{STACK_NAME}-capture",
        EventBusName=bus,
        EventPattern=json.dumps({"source": [wf.EVENT_SOURCE]}),
    )
    events.put_targets(
        Rule=f"{STACK_NAME}-capture",
        EventBusName=bus,
        Targets=[{"Id": "capture", "Arn": queue_arn(events_url)}],
    )
    return notices_url, events_url


def _environment_values(bucket: str, secret_arn: str, topic_arn: str) -> dict[str, str]:
    """The value of every environment variable a job definition or function may declare."""
    memory = _memory_mib()
    return {
        wf.ENV_RESULTS_BUCKET: bucket,
        wf.ENV_BOSS_TOKEN_SECRET: secret_arn,
        wf.ENV_TOPIC_ARN: topic_arn,
        # both queues are this machine: what ValidateRequest may plan a Detect job with
        wf.ENV_DETECT_MEMORY_MIB: str(int(memory * 0.6)),
        wf.ENV_LARGE_DETECT_MEMORY_MIB: str(int(memory * 0.8)),
        wf.ENV_PRESIGN_SECONDS: str(wf.DEFAULT_PRESIGN_SECONDS),
        wf.ENV_NEUROGLANCER_URL: wf.DEFAULT_NEUROGLANCER_URL,
        wf.ENV_JOB_LOG_GROUP: DEFAULT_JOB_LOG_GROUP,  # where the local Batch writes job output
        wf.ENV_STACK_NAME: STACK_NAME,
    }


def _create_job_queues(batch: Any, role: str) -> dict[str, str]:
    """One unmanaged compute environment (this machine) behind both queues."""
    ce = batch.create_compute_environment(
        computeEnvironmentName=f"{STACK_NAME}-ce", type="UNMANAGED", serviceRole=role
    )["computeEnvironmentArn"]
    return {
        kind: batch.create_job_queue(
            jobQueueName=f"{STACK_NAME}-{kind}",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )["jobQueueArn"]
        for kind in ("standard", "large")
    }


def _register_job_definitions(
    batch: Any, env_values: Mapping[str, str], secret_arn: str
) -> dict[str, str]:
    return {
        logical_id: batch.register_job_definition(
            jobDefinitionName=f"{STACK_NAME}-{logical_id}",
            type="container",
            parameters={},
            containerProperties={
                "image": "synapse-pipelines:local",
                "command": list(spec.command),
                "resourceRequirements": [
                    {"type": "VCPU", "value": "1"},
                    {"type": "MEMORY", "value": env_values[wf.ENV_DETECT_MEMORY_MIB]},
                ],
                "environment": [
                    {"name": name, "value": env_values[name]} for name in spec.environment
                ],
                "secrets": [{"name": name, "valueFrom": secret_arn} for name in spec.secrets],
            },
            retryStrategy=wf.batch_retry_strategy(spec.attempts),
        )["jobDefinitionArn"]
        for logical_id, spec in wf.BATCH_JOBS.items()
    }


def _create_functions(lam: Any, role: str, env_values: Mapping[str, str]) -> dict[str, str]:
    """One function per wiring entry; its invocations call the real handler in-process."""
    functions: dict[str, str] = {}
    for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
        name = function_name(logical_id)
        register_lambda_handler(name, wf.load_handler(logical_id))
        functions[logical_id] = lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler=spec.handler,
            Code={"ZipFile": _zip_stub()},
            Description=spec.description,
            Timeout=spec.timeout_seconds,
            MemorySize=spec.memory_mib,
            Environment={
                "Variables": {
                    **{n: env_values[n] for n in spec.environment},
                    "POWERTOOLS_SERVICE_NAME": wf.POWERTOOLS_SERVICE,
                }
            },
        )["FunctionArn"]
    return functions


def _create_state_machine(
    sfn: Any,
    name: str,
    role: str,
    substitutions: Mapping[str, str],
    functions: Mapping[str, str],
    job_definitions: Mapping[str, str],
) -> str:
    """The ASL file with every substitution filled: the stack's resources, the functions and
    job definitions of the wiring, and the numeric settings (with their env overrides)."""
    values = dict(substitutions)
    for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
        if spec.substitution:
            values[spec.substitution] = functions[logical_id]
    for logical_id, spec in wf.BATCH_JOBS.items():
        values[spec.substitution] = job_definitions[logical_id]
    values.update(wf.setting_substitutions(environ=os.environ))
    definition = wf.render_definition(
        {k: v for k, v in values.items() if k in wf.SUBSTITUTION_NAMES}
    )
    return str(
        sfn.create_state_machine(name=name, definition=definition, roleArn=role)["stateMachineArn"]
    )


def _create_request_rule(events: Any, bus: str, start_function_arn: str) -> str:
    """The "Synapse Detection Requested" rule -> StartFromEvent (which names the execution)."""
    rule = f"{STACK_NAME}-requested"
    events.put_rule(
        Name=rule, EventBusName=bus, EventPattern=json.dumps(wf.REQUESTED_EVENT_PATTERN)
    )
    events.put_targets(
        Rule=rule, EventBusName=bus, Targets=[{"Id": "start", "Arn": start_function_arn}]
    )
    return rule


def _create_cancel_rule(events: Any, state_machine_arn: str, finish_function_arn: str) -> str:
    """Default bus: the state machine's ABORTED executions -> FinishCancelledRun (the local
    runtime emits Step Functions' status-change event, ``moto_stepfunctions``)."""
    rule = f"{STACK_NAME}-cancelled"
    events.put_rule(Name=rule, EventPattern=json.dumps(wf.aborted_event_pattern(state_machine_arn)))
    events.put_targets(Rule=rule, Targets=[{"Id": "finish", "Arn": finish_function_arn}])
    return rule


def _memory_mib() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (ValueError, OSError, AttributeError):
        return 4096


def _zip_stub() -> bytes:
    """Lambda needs a code package; the handler itself runs from functions/ in-process."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "local runtime: handler runs in-process from functions/\n")
    return buf.getvalue()
