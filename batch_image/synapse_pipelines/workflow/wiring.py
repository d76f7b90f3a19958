"""The one definition of the workflow wiring.

Both the CDK app (``infra/``) and the local runtime (:mod:`synapse_pipelines.local.runtime`)
import this module, so AWS and a laptop execute the same state machine with the same steps:

* :data:`ASL_PATH` — the state machine definition (JSONPath ASL with ``${Name}`` placeholders);
  :data:`SUBSTITUTIONS` names every placeholder and what fills it; :func:`render_definition`
  fills them (CDK passes the same names as ``definition_substitutions``).
* :data:`LAMBDA_FUNCTIONS` — the Lambda tasks: logical name, source folder under
  ``functions/``, handler (``<name>.handler``), environment variable names;
  :func:`load_handler` imports a handler (the local runtime calls the real handler
  in-process).
* :data:`BATCH_JOBS` — the Batch tasks: job definition command (the arguments after
  the image's entrypoint, :data:`IMAGE_ENTRYPOINT`), ``Ref::`` parameters, environment and
  secrets (the token reaches a container only as the secret ``BOSS_TOKEN``).
* The S3 layout: ``s3://<bucket>/<results_key>/<artefact>``; :func:`artefact_key` and the
  workflow's own bookkeeping keys under ``<results_key>/_workflow/``.
* Execution and Batch job names derived from the request are in
  :mod:`synapse_pipelines.workflow.run_names`.

The ASL (``state_machines/``) and the handlers (``functions/``) live at the top of the
repository and are shipped in the package as ``synapse_pipelines.state_machines`` and
``synapse_pipelines.functions`` (pyproject maps those folders), so an installed wheel runs
the local workflow with the very files CDK deploys: one copy of each.

Only S3 keys and small values travel in the state: the validated request is stored at
:func:`validated_request_key` and every later step reads it from there.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from synapse_pipelines.core.artefacts import (  # re-exported: the S3 layout's file names
    ARTEFACTS as ARTEFACTS,
    CLUSTERING as CLUSTERING,
    LINKS as LINKS,
    MANIFEST as MANIFEST,
    PREDICTIONS as PREDICTIONS,
    REPORT as REPORT,
    SYNAPSE_IDS as SYNAPSE_IDS,
    SYNAPSES_CSV as SYNAPSES_CSV,
)
from synapse_pipelines.core.boss_token import BOSS_TOKEN_ENV, BOSS_TOKEN_SECRET_ENV
from synapse_pipelines.core.budget import ENV_BUDGET_USD as ENV_BUDGET_USD
from synapse_pipelines.core.pricing import ENV_PRICE_REGION as ENV_PRICE_REGION
from synapse_pipelines.core.sizing import (  # re-exported: ValidateRequest's environment
    ENV_DETECT_MEMORY_MIB as ENV_DETECT_MEMORY_MIB,
    ENV_LARGE_DETECT_MEMORY_MIB as ENV_LARGE_DETECT_MEMORY_MIB,
)

#: The state machine definition, JSONPath ASL (``state_machines/`` of the repository; in an
#: editable install this is that very file).
ASL_PATH = Path(str(resources.files("synapse_pipelines.state_machines"))) / (
    "synapse_detection.asl.json"
)
#: The package holding the Lambda handlers, one subpackage per function with its handler
#: module, plus the handlers' shared ``handler_support`` (``functions/`` of the repository).
FUNCTIONS_PACKAGE = "synapse_pipelines.functions"
#: Lambda handler sources, one folder per function (what CDK zips for each function).
FUNCTIONS_DIR = Path(str(resources.files(FUNCTIONS_PACKAGE)))

# -- names shared by the state machine, the events and the CLI ------------------------------

#: EventBridge ``source`` of every event the workflow publishes or accepts.
EVENT_SOURCE = "synapse-pipelines"
#: detail-type that starts a run (the rule on the custom bus matches it).
DETAIL_TYPE_REQUESTED = "Synapse Detection Requested"
DETAIL_TYPE_SUCCEEDED = "Synapse Detection Succeeded"
DETAIL_TYPE_FAILED = "Synapse Detection Failed"
DETAIL_TYPE_CANCELLED = "Synapse Detection Cancelled"
#: The EventBridge rule pattern (CDK rule and the local runtime's pattern matcher).
REQUESTED_EVENT_PATTERN: dict[str, Any] = {"detail-type": [DETAIL_TYPE_REQUESTED]}

#: Step Functions' own event when an execution changes status (the local runtime emits it).
EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"


def aborted_event_pattern(state_machine_arn: str) -> dict[str, Any]:
    """The default bus's rule sending a stopped execution to FinishCancelledRun."""
    detail = {"status": ["ABORTED"], "stateMachineArn": [state_machine_arn]}
    return {"source": ["aws.states"], "detail-type": [EXECUTION_STATUS_CHANGE], "detail": detail}


#: SNS message attribute carrying the request's ``notification_email`` ("-" when none);
#: per-request email subscriptions filter on it.
EMAIL_ATTRIBUTE = "notification_email"
NO_EMAIL = "-"

# -- environment variable names ---------------------------------------------------------------

ENV_BOSS_TOKEN = BOSS_TOKEN_ENV  # the token itself: Batch injects it from Secrets Manager
ENV_BOSS_TOKEN_SECRET = BOSS_TOKEN_SECRET_ENV  # Lambdas: the secret's ARN, read by the handler
ENV_RESULTS_BUCKET = "RESULTS_BUCKET"
ENV_TOPIC_ARN = "NOTIFICATION_TOPIC_ARN"  # ValidateRequest subscribes per-request emails
ENV_STATE_MACHINE_ARN = "STATE_MACHINE_ARN"  # StartFromEvent
ENV_PRESIGN_SECONDS = "PRESIGN_EXPIRY_SECONDS"
ENV_NEUROGLANCER_URL = "NEUROGLANCER_URL"
ENV_EVENT_BUS = "EVENT_BUS_NAME"  # FinishCancelledRun's "Synapse Detection Cancelled" event
ENV_JOB_QUEUES = "JOB_QUEUE_ARNS"  # comma-separated: where a run's Batch jobs are found
ENV_JOB_LOG_GROUP = "JOB_LOG_GROUP"  # the Batch jobs' CloudWatch log group
ENV_STACK_NAME = "STACK_NAME"  # names the deployment in the commands a notice prints
# optional, not in a LambdaSpec: ENV_BUDGET_USD (ValidateRequest's cap), ENV_PRICE_REGION

#: powertools service name and CloudWatch metrics namespace of the Lambda handlers.
POWERTOOLS_SERVICE = "synapse-pipelines"
METRICS_NAMESPACE = "SynapsePipelines"


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """X-Ray only where a daemon is (Lambda with active tracing sets its address)."""
    return bool(environ.get("AWS_XRAY_DAEMON_ADDRESS"))


DEFAULT_PRESIGN_SECONDS = 7 * 24 * 3600  # the SigV4 maximum; role sessions may cut it short
DEFAULT_NEUROGLANCER_URL = "https://neuroglancer.bossdb.io/"

# -- S3 layout --------------------------------------------------------------------------------

#: The workflow's own bookkeeping, next to the artefacts.
WORKFLOW_PREFIX = "_workflow"


def results_prefix(results_key: str) -> str:
    """The S3 prefix of one request's results (``<results_key>/``)."""
    return f"{results_key}/"


def artefact_key(results_key: str, name: str) -> str:
    """S3 key of an artefact (or any file of the results folder)."""
    return f"{results_key}/{name}"


def validated_request_key(results_key: str) -> str:
    """S3 key of the validated request that every step after ValidateRequest reads."""
    return f"{results_key}/{WORKFLOW_PREFIX}/request.json"


def run_status_key(results_key: str) -> str:
    """S3 key of the run's end record (failed or cancelled; see ``workflow/run_status.py``)."""
    return f"{results_key}/{WORKFLOW_PREFIX}/run_status.json"


def step_error_key(results_key: str, step: str) -> str:
    """S3 key where a Batch step records a user error (error_type + message) before exiting."""
    return f"{results_key}/{WORKFLOW_PREFIX}/errors/{step}.json"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


# -- state machine ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Substitution:
    """One ``${name}`` placeholder of the ASL and what fills it."""

    name: str
    description: str


SUBSTITUTIONS: tuple[Substitution, ...] = (
    Substitution("ValidateRequestFunctionArn", "ARN of the ValidateRequest Lambda"),
    Substitution("PublishToS3FunctionArn", "ARN of the PublishToS3 Lambda"),
    Substitution("DescribeFailureFunctionArn", "ARN of the DescribeFailure Lambda"),
    Substitution("JobQueueArn", "Batch job queue (Fargate Spot)"),
    Substitution("LargeJobQueueArn", "Batch job queue for large-memory jobs (EC2 Spot)"),
    Substitution("DetectJobDefinitionArn", "job definition of the Detect step"),
    Substitution("DetectLargeJobDefinitionArn", "job definition of Detect on the large queue"),
    Substitution("ReportJobDefinitionArn", "job definition of the Report step"),
    Substitution("PublishToBossJobDefinitionArn", "job definition of the PublishToBoss step"),
    Substitution("NotificationTopicArn", "SNS topic for success and failure messages"),
    Substitution("EventBusName", "custom event bus for completion and failure events"),
    Substitution("ResultsBucket", "name of the results bucket"),
    Substitution("BlockwiseJobDefinitionArn", "job definition of the blockwise Detect stages"),
    Substitution("BlockwiseMaxConcurrency", "blockwise Distributed Map MaxConcurrency (number)"),
)

#: Values of the blockwise Distributed Map settings when the deployment says nothing: at
#: most 100 block jobs at once (Batch queues them anyway). No failed block is ever tolerated:
#: the ASL's Maps say ToleratedFailureCount/Percentage 0 (a missing block would make the
#: answer differ from the single job's), so that is no setting.
BLOCKWISE_SETTING_DEFAULTS: dict[str, int] = {"BlockwiseMaxConcurrency": 100}
#: Environment variables that override :data:`BLOCKWISE_SETTING_DEFAULTS` (local runtime).
BLOCKWISE_SETTING_ENV: dict[str, str] = {
    "BlockwiseMaxConcurrency": "SYNAPSE_BLOCKWISE_MAX_CONCURRENCY",
}


def setting_substitutions(
    overrides: Mapping[str, int | float] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The numeric ASL settings (the blockwise Map concurrency), checked: defaults, then
    ``environ`` (:data:`BLOCKWISE_SETTING_ENV`), then ``overrides``."""
    unknown = sorted(set(overrides or {}) - set(BLOCKWISE_SETTING_DEFAULTS))
    if unknown:  # e.g. the former BlockwiseToleratedFailurePercentage
        raise ValueError(
            f"unknown state machine settings {unknown}: only {sorted(BLOCKWISE_SETTING_DEFAULTS)}"
            " (failed blocks are never tolerated: the ASL's Maps fix that at 0)"
        )
    from_env = {
        name: float(environ[var])
        for name, var in BLOCKWISE_SETTING_ENV.items()
        if environ is not None and environ.get(var)
    }
    values = {**BLOCKWISE_SETTING_DEFAULTS, **from_env, **dict(overrides or {})}
    concurrency = int(values["BlockwiseMaxConcurrency"])
    if not 0 <= concurrency <= 10_000:  # 0 = no limit; Distributed Map runs at most 10,000
        raise ValueError(f"BlockwiseMaxConcurrency {concurrency} is not within 0..10000")
    return {"BlockwiseMaxConcurrency": str(concurrency)}


SUBSTITUTION_NAMES: tuple[str, ...] = tuple(s.name for s in SUBSTITUTIONS)

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def definition_template() -> str:
    """The ASL text with its ``${...}`` placeholders."""
    return ASL_PATH.read_text()


def placeholders(text: str | None = None) -> set[str]:
    """Every placeholder name used in the ASL."""
    return set(_PLACEHOLDER.findall(definition_template() if text is None else text))


def render_definition(values: Mapping[str, str], text: str | None = None) -> str:
    """Fill every placeholder; refuse missing or unknown names (a typo would deploy silently)."""
    template = definition_template() if text is None else text
    used = placeholders(template)
    missing = sorted(used - set(values))
    unknown = sorted(set(values) - set(SUBSTITUTION_NAMES))
    if missing or unknown:
        raise ValueError(f"ASL substitutions: missing {missing}, unknown {unknown}")
    # values are inserted into JSON strings: escape them the way JSON would
    return _PLACEHOLDER.sub(lambda m: json.dumps(str(values[m.group(1)]))[1:-1], template)


# -- Lambda tasks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LambdaSpec:
    """A Lambda task: ``functions/<name>/<name>.py`` with ``handler`` and its environment."""

    logical_id: str  # CDK construct id and the ASL substitution stem
    name: str  # folder under functions/, and the handler's module in it
    description: str
    environment: tuple[str, ...]  # names of the environment variables the handler reads
    timeout_seconds: int = 60
    memory_mib: int = 512

    @property
    def handler(self) -> str:
        """The Lambda ``handler`` setting: ``<module>.handler`` (a unique module name, so the
        handlers never shadow one another, in the package or in one process)."""
        return f"{self.name}.handler"

    @property
    def source_dir(self) -> Path:
        """The function's code asset (what CDK zips for it)."""
        return FUNCTIONS_DIR / self.name

    @property
    def handler_file(self) -> Path:
        return self.source_dir / f"{self.handler.rpartition('.')[0]}.py"

    @property
    def substitution(self) -> str | None:
        name = f"{self.logical_id}FunctionArn"
        return name if name in SUBSTITUTION_NAMES else None


LAMBDA_FUNCTIONS: dict[str, LambdaSpec] = {
    spec.logical_id: spec
    for spec in (
        LambdaSpec(
            "ValidateRequest",
            "validate_request",
            "Validate a request against BOSS before any Batch job starts",
            (
                ENV_RESULTS_BUCKET,
                ENV_BOSS_TOKEN_SECRET,
                ENV_TOPIC_ARN,
                ENV_DETECT_MEMORY_MIB,
                ENV_LARGE_DETECT_MEMORY_MIB,
            ),
        ),
        LambdaSpec(
            "PublishToS3",
            "publish_s3",
            "Write manifest.json and links.csv, presign the results, build the notification",
            (ENV_RESULTS_BUCKET, ENV_PRESIGN_SECONDS, ENV_NEUROGLANCER_URL),
            timeout_seconds=120,
        ),
        LambdaSpec(
            "DescribeFailure",
            "describe_failure",
            "Turn a caught failure into a clear notification, error and cause",
            (ENV_RESULTS_BUCKET, ENV_JOB_QUEUES, ENV_JOB_LOG_GROUP, ENV_STACK_NAME),
        ),
        LambdaSpec(
            "FinishCancelledRun",
            "finish_cancelled_run",
            "Finish a stopped run: terminate its Batch jobs, mark it cancelled, notify",
            (ENV_RESULTS_BUCKET, ENV_JOB_QUEUES, ENV_TOPIC_ARN, ENV_EVENT_BUS, ENV_STACK_NAME),
        ),
        LambdaSpec(
            "StartFromEvent",
            "start_from_event",
            "Start an execution named from the request of a 'Synapse Detection Requested' event",
            (ENV_STATE_MACHINE_ARN,),
        ),
    )
}


def load_handler(logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
    """Import the handler module of a Lambda task (``synapse_pipelines.functions.<name>.
    <name>``) and return its handler."""
    spec = LAMBDA_FUNCTIONS[logical_id]
    module_name, _, attr = spec.handler.rpartition(".")
    module = importlib.import_module(f"{FUNCTIONS_PACKAGE}.{spec.name}.{module_name}")
    return getattr(module, attr)


# -- Batch tasks ------------------------------------------------------------------------------

#: The project CLI (console script): the Batch image's ENTRYPOINT. A job definition's command
#: holds only the arguments after it (``step detect --results-key Ref::results_key``), as
#: Docker appends a command to the entrypoint; the local runtime prepends :data:`IMAGE_ENTRYPOINT`
#: the same way, so the container and a laptop run exactly the same argv.
CLI_PROGRAM = "synapse-pipelines"
IMAGE_ENTRYPOINT: tuple[str, ...] = (CLI_PROGRAM,)
#: Batch job parameter carrying the results key (``Ref::results_key`` in commands).
PARAM_RESULTS_KEY = "results_key"

#: Batch job parameters of the blockwise stages (``Ref::stage``, ``Ref::block``).
PARAM_BLOCK_STAGE = "stage"
PARAM_BLOCK = "block"

#: Exit status of a step that failed on a user error: Batch must not retry it.
USER_ERROR_EXIT_CODE = 2


@dataclass(frozen=True)
class BatchJobSpec:
    """A Batch task: one job definition per step; its command is built from ``Ref::`` params."""

    logical_id: str  # CDK construct id / ASL state
    step: str  # `synapse-pipelines step <step>` and the job-name prefix
    description: str
    command: tuple[str, ...]
    parameters: tuple[str, ...] = (PARAM_RESULTS_KEY,)
    environment: tuple[str, ...] = (ENV_RESULTS_BUCKET,)
    secrets: tuple[str, ...] = (ENV_BOSS_TOKEN,)  # env name -> the stack's BOSS token secret
    large: bool = False  # runs on the EC2 Spot large-memory queue
    attempts: int = 3
    #: which deployed size it gets (CDK context): "detect", "large", "report" or "publish"
    size: str = "detect"

    @property
    def substitution(self) -> str:
        return f"{self.logical_id}JobDefinitionArn"

    def render_command(self, parameters: Mapping[str, str]) -> list[str]:
        """The command with ``Ref::name`` replaced, as Batch does when it starts the job."""
        return [_ref(arg, parameters) for arg in self.command]


def _ref(arg: str, parameters: Mapping[str, str]) -> str:
    if arg.startswith("Ref::"):
        name = arg[len("Ref::") :]
        if name not in parameters:
            raise KeyError(f"job parameter {name!r} missing (command argument {arg})")
        return str(parameters[name])
    return arg


def _step_command(step: str, *parameters: str) -> tuple[str, ...]:
    """``step <step> [--<param> Ref::<param> ...] --results-key Ref::results_key``."""
    options = [arg for name in parameters for arg in (f"--{name}", f"Ref::{name}")]
    return ("step", step, *options, "--results-key", f"Ref::{PARAM_RESULTS_KEY}")


BATCH_JOBS: dict[str, BatchJobSpec] = {
    spec.logical_id: spec
    for spec in (
        BatchJobSpec(
            "Detect",
            "detect",
            "Pull the channels from BOSS, run the pipeline, build the synapse table",
            _step_command("detect"),
        ),
        BatchJobSpec(
            "DetectLarge",
            "detect",
            "Detect on the EC2 Spot large-memory queue",
            _step_command("detect"),
            large=True,
            size="large",
        ),
        BatchJobSpec(
            "Report",
            "report",
            "Build the PyMEDA-style report from synapses.csv",
            _step_command("report"),
            secrets=(),
            size="report",
        ),
        BatchJobSpec(
            "Blockwise",
            "blocks",
            "One stage of a blockwise run: plan, a block's covariance, labels, result chunks "
            "or BOSS push, a reduction, or the merge (synapse_pipelines.workflow.blockwise_job)",
            _step_command("blocks", PARAM_BLOCK_STAGE, PARAM_BLOCK),
            parameters=(PARAM_RESULTS_KEY, PARAM_BLOCK_STAGE, PARAM_BLOCK),
        ),
        BatchJobSpec(
            "PublishToBoss",
            "publish-boss",
            "Push the prediction mask and the synapse ids to the output experiment in BOSS",
            _step_command("publish-boss"),
            size="publish",
        ),
    )
}

#: Batch retry strategy (job definitions): retry only when the host went away (Spot
#: reclaimed the EC2 instance or the Fargate task), exit on anything else - a user error exits 2
#: and a bug exits 1, and neither gets better by running again. Batch evaluates the rules in
#: order and *retries* when none matches, hence the two catch-all EXIT rules at the end.
BATCH_RETRY_ON_STATUS_REASONS: tuple[str, ...] = (
    "Host EC2*",  # EC2 Spot: "Host EC2 (instance i-...) terminated."
    "Your Spot Task was interrupted*",  # Fargate Spot
)


def batch_retry_strategy(attempts: int) -> dict[str, Any]:
    """The job definitions' ``retryStrategy`` in AWS Batch API shape (CDK and local runtime)."""
    rules: list[dict[str, str]] = [
        {"onStatusReason": reason, "action": "RETRY"} for reason in BATCH_RETRY_ON_STATUS_REASONS
    ]
    rules += [{"onExitCode": "*", "action": "EXIT"}, {"onStatusReason": "*", "action": "EXIT"}]
    return {"attempts": attempts, "evaluateOnExit": rules}


#: Step Functions retries: AWS service errors and transient Lambda errors only.
LAMBDA_TRANSIENT_ERRORS: tuple[str, ...] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)


# -- stack outputs (CDK writes them; the CLI reads them with CloudFormation) ---------------------

OUTPUT_STATE_MACHINE_ARN = "StateMachineArn"
OUTPUT_RESULTS_BUCKET = "ResultsBucketName"
OUTPUT_TOKEN_SECRET_ARN = "BossTokenSecretArn"
OUTPUT_TOPIC_ARN = "NotificationTopicArn"
OUTPUT_EVENT_BUS_NAME = "EventBusName"
OUTPUT_JOB_QUEUE_ARN = "JobQueueArn"
OUTPUT_LARGE_JOB_QUEUE_ARN = "LargeJobQueueArn"
OUTPUT_JOB_LOG_GROUP = "JobLogGroup"


# -- what the state carries -------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    """Output of ValidateRequest, kept at ``$.job``: small values only."""

    bucket: str
    results_key: str
    request_key: str
    job_name: str
    detect_mode: str  # one of core.sizing.DETECT_MODES
    voxel_count: int
    presynaptic_channel: str
    postsynaptic_channel: str
    notify: str = NO_EMAIL

    def to_state(self) -> dict[str, Any]:
        return asdict(self)
