"""cdk-nag: the AwsSolutions checks every synth runs, and each acknowledged finding with the
reason it is acceptable (one list to review).

cdk-nag 3 runs as a CDK validation plugin (:func:`add_checks`); an unacknowledged finding
fails ``cdk synth`` and the infra tests. Acknowledgements go on the narrowest construct that
owns the finding, through CDK's ``Validations.of(construct).acknowledge``; the results-key
patterns they name are the ones the policies grant (``infra/storage/results_bucket_policies.py``).
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra.batch_compute.batch_compute_construct import BatchCompute
from infra.event_triggers.event_triggers_construct import EventTriggers
from infra.lambda_functions.lambda_functions_construct import LambdaFunctions
from infra.state_machine.state_machine_construct import SynapseDetectionStateMachine
from infra.storage.results_bucket_policies import (
    EVERY_RESULT,
    MANIFESTS,
    RUN_STATUS_RECORDS,
    STEP_ERROR_RECORDS,
    VALIDATED_REQUESTS,
    WORKFLOW_RECORDS,
)
from infra.storage.storage_construct import Storage

PACK = "AwsSolutions"

LAMBDA_BASIC = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
)
ECS_INSTANCE = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
)


def add_checks(app: cdk.App) -> None:
    """Run the AwsSolutions pack on every synth of ``app`` (findings fail the synth)."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def ack(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``IAM5[Resource::*]``) on ``construct`` and its children."""
    cdk.Validations.of(construct).acknowledge(
        cdk.Acknowledgment(id=f"{PACK}::{PACK}-{rule}", reason=reason)
    )


def acknowledge_findings(
    stack: cdk.Stack,
    *,
    storage: Storage,
    batch_compute: BatchCompute,
    lambda_functions: LambdaFunctions,
    state_machine: SynapseDetectionStateMachine,
    event_triggers: EventTriggers,
) -> None:
    """Every acknowledged finding of the stack (see each reason)."""
    results_arn = f"Resource::<{stack.get_logical_id(storage.results.node.default_child)}.Arn>"

    def results_objects(keys: str) -> str:
        """How a finding names a results-objects resource (``<keys>``: a policy pattern)."""
        return f"{results_arn}/{keys}"

    ack(
        storage.boss_token,
        "SMG4",
        "The BOSS token is issued by the BOSS service (api.bossdb.io), which offers no rotation "
        "API a rotation Lambda could call; operators replace it with put-secret-value.",
    )
    ack(
        event_triggers.dead_letters,
        "SQS3",
        "This queue is itself the dead-letter queue of the EventBridge rule's target.",
    )

    # --- Lambda functions
    functions = lambda_functions.functions
    find_jobs = ("DescribeFailure", "FinishCancelledRun")  # list a run's Batch jobs by name
    for logical_id, fn in functions.items():
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
            "resource-level permissions"
            + (
                "; nor do batch:ListJobs/DescribeJobs, which find the run's jobs by name."
                if logical_id in find_jobs
                else "; nor do PublishToS3's read-only Batch calls (DescribeJobQueues, "
                "ListJobs, DescribeJobs: the run's job costs)."
                if logical_id == "PublishToS3"
                else "."
            ),
        )
    ack(
        functions["PublishToS3"],
        f"IAM5[{results_objects(EVERY_RESULT)}]",
        "Results live under one prefix per request (<results_key>/...); the keys are only "
        "known at run time. Actions are limited to GetObject/PutObject on the results bucket.",
    )
    ack(
        functions["ValidateRequest"],
        f"IAM5[{results_objects(VALIDATED_REQUESTS)}]",
        "ValidateRequest may only write each request's validated copy, "
        "<results_key>/_workflow/request.json; the results key is known at run time.",
    )
    ack(
        functions["DescribeFailure"],
        f"IAM5[{results_objects(STEP_ERROR_RECORDS)}]",
        "DescribeFailure only reads the error records of the failed request's steps; the "
        "results key is known at run time.",
    )

    for logical_id in find_jobs:
        ack(
            functions[logical_id],
            f"IAM5[{results_objects(RUN_STATUS_RECORDS)}]",
            "A failed or cancelled run is recorded in its own <results_key>/_workflow/"
            "run_status.json; the results key is known at run time.",
        )
        ack(
            functions[logical_id],
            f"IAM5[{results_objects(MANIFESTS)}]",
            "A failed or cancelled run's <results_key>/manifest.json is marked so that nothing "
            "half-written looks complete; the results key is known at run time.",
        )
    finisher = functions["FinishCancelledRun"]
    ack(
        finisher,
        "IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*]",
        "A cancelled run's Batch jobs are terminated; job ids are generated by Batch at run time "
        "(the function finds them by the run's job-name stem).",
    )
    ack(
        finisher,
        "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
        f"execution:{state_machine.state_machine_name}:*]",
        "DescribeExecution of this state machine's stopped executions (to read the request when "
        "the status-change event leaves the input out); execution names are made at run time.",
    )

    # --- Batch
    ack(
        batch_compute.job_role,
        f"IAM5[{results_objects(EVERY_RESULT)}]",
        "Batch steps read and write one request's results folder (<results_key>/...); the "
        "key is a job parameter known at run time. Actions: Get/Put/DeleteObject only.",
    )
    for container in batch_compute.containers.values():
        ack(
            container,
            "IAM5[Resource::*]",
            "Task execution role: ecr:GetAuthorizationToken does not support resource-level "
            "permissions (the pull itself is limited to the asset repository).",
        )
    ack(
        batch_compute.ec2_spot,
        f"IAM4[{ECS_INSTANCE}]",
        "The ECS agent on Batch-managed EC2 instances needs AmazonEC2ContainerServiceforEC2Role "
        "(AWS Batch documentation); jobs get their own job role.",
    )

    # --- state machine
    machine = state_machine.state_machine_name
    ack(
        state_machine.role,
        "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
        f"execution:{machine}/*]",
        "A Distributed Map watches and stops the child executions it starts; their names are "
        "generated per map run under this state machine's own execution prefix.",
    )
    ack(
        state_machine.role,
        f"IAM5[{results_objects(WORKFLOW_RECORDS)}]",
        "The Distributed Map reads its block manifest (ItemReader) and writes its results "
        "(ResultWriter) under each request's <results_key>/_workflow/ prefix, known at run time.",
    )
    ack(
        state_machine.role,
        "IAM5[Resource::*]",
        "batch:DescribeJobs/TerminateJob (used by submitJob.sync), X-Ray and CloudWatch Logs "
        "delivery actions do not support resource-level permissions.",
    )
