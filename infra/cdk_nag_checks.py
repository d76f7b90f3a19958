"""cdk-nag AwsSolutions acknowledgements: each one with the reason it is acceptable.

cdk-nag 3 runs as a CDK validation plugin (``infra/app.py``); an unacknowledged finding fails
``cdk synth`` and the infra tests. Acknowledgements go on the narrowest construct that owns
the finding, through CDK's ``Validations.of(construct).acknowledge``.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import IConstruct

PACK = "AwsSolutions"

LAMBDA_BASIC = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
)
ECS_INSTANCE = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
)


def ack(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``IAM5[Resource::*]``) on ``construct`` and its children."""
    cdk.Validations.of(construct).acknowledge(
        cdk.Acknowledgment(id=f"{PACK}::{PACK}-{rule}", reason=reason)
    )


def acknowledge_findings(stack: Any) -> None:
    """Every acknowledged finding of the stack (see each reason)."""
    storage, compute, functions, workflow = (
        stack.storage,
        stack.batch_compute,
        stack.lambda_functions,
        stack.state_machine,
    )
    triggers = stack.event_triggers
    results_objects = f"Resource::<{stack.get_logical_id(storage.results.node.default_child)}.Arn>"

    ack(
        storage.boss_token,
        "SMG4",
        "The BOSS token is issued by the BOSS service (api.bossdb.io), which offers no rotation "
        "API a rotation Lambda could call; operators replace it with put-secret-value.",
    )
    ack(
        triggers.dead_letters,
        "SQS3",
        "This queue is itself the dead-letter queue of the EventBridge rule's target.",
    )

    # --- Lambda functions
    for fn in functions.functions.values():
        ack(
            fn,
            "L1",
            "Python 3.13 is the newest runtime the project supports (pyproject: "
            "requires-python <3.14; the science stack is tested up to 3.13).",
        )
        ack(
            fn,
            f"IAM4[{LAMBDA_BASIC}]",
            "AWSLambdaBasicExecutionRole only allows writing the function's own CloudWatch "
            "logs (CreateLogGroup/CreateLogStream/PutLogEvents).",
        )
        ack(
            fn,
            "IAM5[Resource::*]",
            "X-Ray tracing: xray:PutTraceSegments/PutTelemetryRecords do not support "
            "resource-level permissions.",
        )
    ack(
        functions.functions["PublishToS3"],
        f"IAM5[{results_objects}/*]",
        "Results live under one prefix per request (<results_key>/...); the keys are only "
        "known at run time. Actions are limited to GetObject/PutObject on the results bucket.",
    )
    ack(
        functions.functions["ValidateRequest"],
        f"IAM5[{results_objects}/*/_workflow/request.json]",
        "ValidateRequest may only write each request's validated copy, "
        "<results_key>/_workflow/request.json; the results key is known at run time.",
    )
    ack(
        functions.functions["DescribeFailure"],
        f"IAM5[{results_objects}/*/_workflow/errors/*]",
        "DescribeFailure only reads the error records of the failed request's steps; the "
        "results key is known at run time.",
    )

    # --- Batch
    ack(
        compute.job_role,
        f"IAM5[{results_objects}/*]",
        "Batch steps read and write one request's results folder (<results_key>/...); the "
        "key is a job parameter known at run time. Actions: Get/Put/DeleteObject only.",
    )
    for container in compute.containers.values():
        ack(
            container,
            "IAM5[Resource::*]",
            "Task execution role: ecr:GetAuthorizationToken does not support resource-level "
            "permissions (the pull itself is limited to the asset repository).",
        )
    ack(
        compute.ec2_spot,
        f"IAM4[{ECS_INSTANCE}]",
        "The ECS agent on Batch-managed EC2 instances needs AmazonEC2ContainerServiceforEC2Role "
        "(AWS Batch documentation); jobs get their own job role.",
    )

    # --- state machine
    machine = workflow.state_machine_name
    ack(
        workflow.role,
        "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
        f"execution:{machine}/*]",
        "A Distributed Map watches and stops the child executions it starts; their names are "
        "generated per map run under this state machine's own execution prefix.",
    )
    ack(
        workflow.role,
        f"IAM5[{results_objects}/*/_workflow/*]",
        "The Distributed Map reads its block manifest (ItemReader) and writes its results "
        "(ResultWriter) under each request's <results_key>/_workflow/ prefix, known at run time.",
    )
    ack(
        workflow.role,
        "IAM5[Resource::*]",
        "batch:DescribeJobs/TerminateJob (used by submitJob.sync), X-Ray and CloudWatch Logs "
        "delivery actions do not support resource-level permissions.",
    )
