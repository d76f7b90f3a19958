"""Bend moto (pinned 5.2.5) so it executes the project's real ASL on one machine, without Docker.

moto's Step Functions port (``moto.stepfunctions.parser``, LocalStack's interpreter) really runs
a state machine when ``execute_state_machine`` is on, but the services it calls only pretend.

Each gap, what this module does, and the moto internal it replaces:

- Non-Docker Lambda echoes the payload. -> Call the handler registered for the function
  in-process, with the function's environment; an exception sets ``x-amz-function-error`` and
  an AWS-shaped error payload, so Step Functions sees ``errorType``/``errorMessage``.
  (``LambdaSimpleBackend.invoke``)
- Non-Docker Batch marks every job SUCCEEDED without running it. -> Run the job definition's
  command (``Ref::`` substituted from the job parameters) as a local subprocess with its
  environment and its ``secrets`` resolved from moto's Secrets Manager into env vars (never
  argv); honour ``retryStrategy`` (attempts, evaluateOnExit); FAILED jobs carry a
  ``statusReason``; output goes to CloudWatch Logs. (``BatchSimpleBackend._mark_job_as_finished``)
- ``batch:submitJob.sync`` fails with States.Runtime ``'JobName'`` because the port left
  ``_normalise_parameters`` an empty stub. -> Normalise request/response shapes through
  botocore's operation model. (``StateTaskServiceBatch._normalise_parameters`` /
  ``_normalise_response``)
- EventBridge rule -> Step Functions (or Lambda) target raises NotImplementedError. -> Match
  with moto's own ``EventPattern`` (as ``send_to_targets`` does), then start a *named*
  execution of the target state machine (named after the event id, as EventBridge does) or
  invoke the Lambda asynchronously, with the target's input (Input, InputPath,
  InputTransformer or the whole event). (``Rule.send_to_targets``)
- ``StartExecution`` without a name gives an ARN ending in ``:None``. -> Generate a name, as
  AWS does. (``StepFunctionsParserBackend.start_execution``)

Everything runs in *server mode* (:class:`LocalAws`: a ``ThreadedMotoServer`` on 127.0.0.1)
because Batch jobs are separate processes that must reach the same emulated S3 / Secrets
Manager over HTTP; the Step Functions interpreter reaches it at ``localhost:$MOTO_PORT``.

:func:`check_moto_internals` asserts that every internal patched here still exists with the
signature it was written against; :func:`install` calls it, so a moto upgrade fails loudly at
start-up instead of silently echoing payloads. ``tests/test_moto_compat.py`` checks the same
and exercises every patch against a small ASL.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import inspect
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import moto

#: the moto version every patch below was checked against (pyproject pins it)
SUPPORTED_MOTO_VERSION = "5.2.5"

#: moto's executing mode: run the ASL, never Docker for Lambda or Batch
MOTO_CONFIG: dict[str, dict[str, bool]] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}

#: the local "container" runs the project CLI with the current interpreter, so a job uses
#: exactly the installed package of this process even when the console script is not on PATH
COMMAND_ALIASES: dict[str, list[str]] = {
    "synapse-pipelines": [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'synapse-pipelines'; "
        "from synapse_pipelines.cli import main; main()",
    ],
}

#: environment variables never inherited by a local Batch job from this process: the token
#: reaches a job only through the job definition's ``secrets``, as on AWS
_NEVER_INHERITED = ("BOSS_TOKEN",)

#: AWS Batch's status reason when the container exits non-zero
ESSENTIAL_CONTAINER_EXITED = "Essential container in task exited"

LambdaHandler = Callable[[Any, Any], Any]


class MotoCompatError(RuntimeError):
    """moto's internals differ from what this module patches (upgrade without re-checking)."""


# --------------------------------------------------------------------------------------------
# internals we touch, checked before patching
# --------------------------------------------------------------------------------------------


def _internals() -> dict[str, tuple[Any, str, list[str]]]:
    """name -> (owner class, attribute, expected positional parameter names)."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.events.models import Rule
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch as sfn_batch,
    )
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    return {
        "lambda.invoke": (
            LambdaSimpleBackend,
            "invoke",
            ["self", "function_name", "qualifier", "body", "headers", "response_headers"],
        ),
        "batch.mark_finished": (
            BatchSimpleBackend,
            "_mark_job_as_finished",
            ["self", "include_start_attempt", "job"],
        ),
        "sfn.batch.normalise_parameters": (
            sfn_batch.StateTaskServiceBatch,
            "_normalise_parameters",
            ["self", "parameters", "boto_service_name", "service_action_name"],
        ),
        "sfn.batch.normalise_response": (
            sfn_batch.StateTaskServiceBatch,
            "_normalise_response",
            ["self", "response", "boto_service_name", "service_action_name"],
        ),
        "events.send_to_targets": (
            Rule,
            "send_to_targets",
            ["self", "original_event", "transform_input"],
        ),
        "sfn.start_execution": (
            StepFunctionsParserBackend,
            "start_execution",
            ["self", "state_machine_arn", "name", "execution_input", "trace_header"],
        ),
    }


def check_moto_internals() -> None:
    """Raise :class:`MotoCompatError` if anything patched here changed in the installed moto."""
    problems: list[str] = []
    if moto.__version__ != SUPPORTED_MOTO_VERSION:
        problems.append(
            f"moto {moto.__version__} is installed; moto_compat was checked against "
            f"{SUPPORTED_MOTO_VERSION} (pyproject pins it)"
        )
    try:
        internals = _internals()
    except ImportError as exc:  # a module moved
        raise MotoCompatError(f"moto internals moved: {exc}") from exc
    for key, (owner, attr, params) in internals.items():
        fn = _ORIGINALS.get(key) or getattr(owner, attr, None)
        if fn is None:
            problems.append(f"{owner.__qualname__}.{attr} no longer exists ({key})")
            continue
        got = list(inspect.signature(fn).parameters)
        if got != params:
            problems.append(f"{owner.__qualname__}.{attr}{tuple(got)} != expected {tuple(params)}")
    # attributes the patches read or write on moto objects
    from moto.batch.models import Job, JobDefinition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (  # noqa: E501
        StateTaskService,
    )

    for owner, attr in [
        (Job, "_mark_stopped"),
        (Job, "_add_parameters_to_command"),
        (Job, "_get_container_property"),
        (Job, "_get_attempt_duration"),
        (JobDefinition, "_get_resource_requirement"),
        (StateTaskService, "_to_boto_request"),
        (StateTaskService, "_from_boto_response"),
        (StateTaskService, "_get_boto_service_name"),
        (StateTaskService, "_get_boto_service_action"),
    ]:
        if not hasattr(owner, attr):
            problems.append(f"{owner.__qualname__}.{attr} no longer exists")
    if problems:
        raise MotoCompatError("moto internals changed:\n- " + "\n- ".join(problems))


# --------------------------------------------------------------------------------------------
# Lambda: registered in-process handlers
# --------------------------------------------------------------------------------------------

_LAMBDA_HANDLERS: dict[str, LambdaHandler] = {}
# os.environ is process-wide: one in-process Lambda at a time sees its function's environment
_LAMBDA_LOCK = threading.RLock()


def register_lambda_handler(function_name: str, handler: LambdaHandler) -> None:
    """Make invocations of ``function_name`` call ``handler(event, context)`` in-process."""
    _LAMBDA_HANDLERS[function_name] = handler


def unregister_lambda_handler(function_name: str) -> None:
    _LAMBDA_HANDLERS.pop(function_name, None)


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers (and powertools) read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    timeout_s: int = 900
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


@contextlib.contextmanager
def _overlay_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _lambda_invoke(
    self: Any,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> str | bytes | None:
    fn = self.get_function(function_name, qualifier)  # resolves names, ARNs, versions
    handler = _LAMBDA_HANDLERS.get(fn.function_name)
    if handler is None:  # not ours: keep moto's echo behaviour
        return _ORIGINALS["lambda.invoke"](
            self, function_name, qualifier, body, headers, response_headers
        )
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    event = json.loads(body) if body else {}
    context = LambdaContext(
        function_name=fn.function_name,
        invoked_function_arn=fn.function_arn,
        memory_limit_in_mb=int(fn.memory_size or 128),
        log_group_name=f"/aws/lambda/{fn.function_name}",
        log_stream_name=f"local/{uuid.uuid4().hex}",
        timeout_s=int(fn.timeout or 900),
    )
    env = {str(k): str(v) for k, v in (fn.environment_vars or {}).items()}
    env.update(
        AWS_LAMBDA_FUNCTION_NAME=fn.function_name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(context.memory_limit_in_mb),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
    )
    with _LAMBDA_LOCK, _overlay_environ(env):
        try:
            result = handler(event, context)
            payload = json.dumps(result)
        except Exception as exc:
            # the shape the Lambda runtime returns for an unhandled exception; Step Functions
            # takes errorType as the error name and this whole JSON as the cause
            if isinstance(exc, TypeError) and "JSON serializable" in str(exc):
                error_type, message = "Runtime.MarshalError", f"Unable to marshal response: {exc}"
            else:
                error_type, message = type(exc).__name__, str(exc)
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(
                {
                    "errorMessage": message,
                    "errorType": error_type,
                    "requestId": context.aws_request_id,
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }
            )
    return payload.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Batch: local subprocesses with the job definition's command, environment and secrets
# --------------------------------------------------------------------------------------------


@dataclass
class BatchSettings:
    """How local Batch jobs run: set by :class:`LocalAws` (endpoint, credentials)."""

    #: added to every job's environment (AWS endpoint, region, dummy credentials)
    environment: dict[str, str] = field(default_factory=dict)
    #: called with (job name, job id, one output line) for every line a job prints
    log_sink: Callable[[str, str, str], None] | None = None
    #: working directory of the job processes (None: current directory)
    cwd: str | None = None
    #: the image's ENTRYPOINT: prepended to every job's command, as Docker does
    entrypoint: tuple[str, ...] = ()


BATCH = BatchSettings()

# job definition name -> status reasons of simulated host failures still to deliver
_HOST_FAILURES: dict[str, list[str]] = {}
_HOST_FAILURES_LOCK = threading.Lock()


def inject_batch_host_failure(
    job_definition_name: str,
    *,
    count: int = 1,
    status_reason: str = "Host EC2 (instance i-0123456789abcdef0) terminated.",
) -> None:
    """Make the next ``count`` attempts of this job definition end like a Spot reclaim.

    The attempt does not run; it stops with ``status_reason`` and no exit code, which is
    what a job definition's ``evaluateOnExit`` (``onStatusReason: "Host EC2*"``) is for.
    Used by tests to exercise Batch-native retries.
    """
    with _HOST_FAILURES_LOCK:
        _HOST_FAILURES.setdefault(job_definition_name, []).extend([status_reason] * count)


def clear_batch_host_failures() -> None:
    with _HOST_FAILURES_LOCK:
        _HOST_FAILURES.clear()


def _take_host_failure(job_definition_name: str) -> str | None:
    with _HOST_FAILURES_LOCK:
        queue = _HOST_FAILURES.get(job_definition_name)
        return queue.pop(0) if queue else None


def _glob(pattern: str | None, value: str | None) -> bool:
    """Batch's evaluateOnExit matching: exact, or a trailing ``*`` wildcard; absent = any."""
    if pattern is None:
        return True
    return fnmatch.fnmatchcase(value or "", pattern)


def retry_action(
    retry_strategy: Mapping[str, Any] | None,
    *,
    exit_code: int | None,
    status_reason: str | None,
    reason: str | None,
) -> str:
    """``"retry"`` or ``"exit"`` for a failed attempt, per AWS Batch's ``evaluateOnExit``.

    The first entry whose every given condition matches decides; when none matches (or there
    are no entries) the job is retried while attempts remain.
    """
    for rule in (retry_strategy or {}).get("evaluateOnExit") or []:
        if (
            _glob(rule.get("onExitCode"), None if exit_code is None else str(exit_code))
            and _glob(rule.get("onStatusReason"), status_reason)
            and _glob(rule.get("onReason"), reason)
        ):
            return str(rule.get("action", "retry")).lower()
    return "retry"


def resolve_secret(value_from: str, account_id: str, region: str) -> str:
    """Value of a job definition secret: a Secrets Manager name/ARN, optionally
    ``arn:...:secret:name-xxxxxx:json-key:version-stage:version-id`` as in ECS."""
    from moto.secretsmanager.models import secretsmanager_backends

    if value_from.startswith("arn:") and ":ssm:" in value_from:
        raise MotoCompatError("SSM parameter secrets are not supported by the local runtime")
    secret_id, json_key, stage, version_id = value_from, "", "", ""
    parts = value_from.split(":")
    if value_from.startswith("arn:") and len(parts) > 7:
        secret_id = ":".join(parts[:7])
        extra = [*parts[7:], "", "", ""]
        json_key, stage, version_id = extra[0], extra[1], extra[2]
    backend = secretsmanager_backends[account_id][region]
    value = backend.get_secret_value(secret_id, version_id or None, stage or None)
    text = value.get("SecretString")
    if text is None:
        raise MotoCompatError(f"secret {secret_id} has no SecretString")
    if json_key:
        text = str(json.loads(text)[json_key])
    return text


def _now_ms() -> int:
    return int(time.time() * 1000)


def _job_process(job: Any) -> tuple[list[str], dict[str, str]]:
    """argv and environment of one job attempt, as the container would get them."""
    command = [
        *BATCH.entrypoint,
        *job._add_parameters_to_command(job._get_container_property("command", [])),
    ]
    unresolved = [c for c in command if "Ref::" in c]
    if unresolved:
        raise MotoCompatError(f"job {job.job_name}: no parameter for {unresolved}")
    if command and command[0] in COMMAND_ALIASES:
        command = [*COMMAND_ALIASES[command[0]], *command[1:]]
    elif command and shutil.which(command[0]) is None:
        raise MotoCompatError(f"job {job.job_name}: {command[0]!r} is not on PATH")
    env = {k: v for k, v in os.environ.items() if k not in _NEVER_INHERITED}
    env.update(BATCH.environment)
    for var in job._get_container_property("environment", []):
        env[var["name"]] = str(var["value"])
    props = job.job_definition.container_properties or {}
    for secret in props.get("secrets") or []:
        env[secret["name"]] = resolve_secret(
            secret["valueFrom"], job.backend.account_id, job.backend.region_name
        )
    env["AWS_BATCH_JOB_ID"] = job.job_id
    env["AWS_BATCH_JQ_NAME"] = job.job_queue.name
    if "index" in (job.array_properties or {}):
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_properties["index"])
    return command, env


def _put_logs(job: Any, lines: list[str]) -> None:
    """Job output to CloudWatch Logs (/aws/batch/job), as the awslogs driver does."""
    if not lines:
        return
    logs = job._log_backend
    group = job._log_group
    if group not in logs.groups:
        with contextlib.suppress(Exception):  # another job created it meanwhile
            logs.create_log_group(group, {})
    stream = job._stream_name
    logs.ensure_log_stream(group, stream)
    now = _now_ms()
    logs.put_log_events(group, stream, [{"timestamp": now, "message": m} for m in lines])


# job processes still running: LocalAws.stop() kills them (an interrupted demo leaves none)
_LIVE_PROCESSES: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()


def kill_running_jobs() -> int:
    """Kill every local Batch job process still running; return how many there were."""
    with _LIVE_LOCK:
        procs = list(_LIVE_PROCESSES)
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
    return len(procs)


def _run_attempt(job: Any, attempt_no: int) -> dict[str, Any]:
    """Run one attempt; return the Batch ``attempts`` entry (exitCode, statusReason...)."""
    started = _now_ms()
    container: dict[str, Any] = {"logStreamName": job._stream_name}
    attempt: dict[str, Any] = {"container": container, "startedAt": started}
    host_failure = _take_host_failure(job.job_definition.name)
    if host_failure is not None:
        attempt.update(stoppedAt=_now_ms(), statusReason=host_failure)
        return attempt
    try:
        argv, env = _job_process(job)
    except Exception as exc:  # a missing secret or parameter: the task cannot start
        container["reason"] = f"CannotStartContainerError: {exc}"[:255]
        attempt.update(stoppedAt=_now_ms(), statusReason="Task failed to start")
        return attempt
    env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt_no)
    timeout = job._get_attempt_duration()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=BATCH.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    with _LIVE_LOCK:
        _LIVE_PROCESSES.add(proc)
    reader_lines: list[str] = []

    def _read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            reader_lines.append(line)
            if BATCH.log_sink is not None:
                with contextlib.suppress(Exception):
                    BATCH.log_sink(job.job_name, job.job_id, line)

    reader = threading.Thread(target=_read, daemon=True)
    reader.start()
    deadline = None if not timeout else time.monotonic() + float(timeout)
    status_reason: str | None = None
    while proc.poll() is None:
        if job.stop:  # TerminateJob / CancelJob
            proc.kill()
            status_reason = job.job_stopped_reason or "Terminated"
        elif deadline is not None and time.monotonic() > deadline:
            proc.kill()
            status_reason = "Job attempt duration exceeded timeout"
        time.sleep(0.05)
    reader.join(timeout=10)
    with _LIVE_LOCK:
        _LIVE_PROCESSES.discard(proc)
    _put_logs(job, reader_lines)
    exit_code = proc.returncode
    container["exitCode"] = exit_code
    if exit_code != 0 and status_reason is None:
        status_reason = ESSENTIAL_CONTAINER_EXITED
    attempt.update(stoppedAt=_now_ms())
    if status_reason is not None:
        attempt["statusReason"] = status_reason
    return attempt


def _run_job(job: Any) -> None:
    """All attempts of a job, per its job definition's retryStrategy; then SUCCEEDED/FAILED."""
    strategy = job.job_definition.retry_strategy or {}
    max_attempts = int(strategy.get("attempts") or 1)
    success = False
    try:
        for attempt_no in range(1, max_attempts + 1):
            attempt = _run_attempt(job, attempt_no)
            job.attempts.append(attempt)
            exit_code = attempt["container"].get("exitCode")
            if exit_code == 0:
                success = True
                break
            job.job_stopped_reason = attempt.get("statusReason")
            job.exit_code = exit_code
            if job.stop:
                break
            action = retry_action(
                strategy,
                exit_code=exit_code,
                status_reason=attempt.get("statusReason"),
                reason=attempt["container"].get("reason"),
            )
            if action != "retry":
                break
    except Exception as exc:  # a bug here must still end the job, with the reason visible
        job.job_stopped_reason = f"local runtime error: {type(exc).__name__}: {exc}"[:255]
        success = False
    if success:
        job.exit_code = 0
        job.job_stopped_reason = None
    job.latest_attempt = None  # attempts are complete; _mark_stopped must not rewrite them
    job._mark_stopped(success=success)


def _batch_mark_job_as_finished(self: Any, include_start_attempt: bool, job: Any) -> None:
    self.backend._jobs[job.job_id] = job
    job.job_started_at = datetime.now()
    job.log_stream_name = job._stream_name
    if job.job_definition.container_properties is None:
        raise MotoCompatError("only container job definitions run locally")
    if not include_start_attempt:
        # an array parent: finishes when its children (started just before it) have
        children = [j for j in self.backend._jobs.values() if j.job_id.startswith(job.job_id + ":")]

        def _wait_children() -> None:
            while any(not c.job_stopped for c in children):
                time.sleep(0.1)
            job._mark_stopped(success=all(c.status == "SUCCEEDED" for c in children))

        threading.Thread(target=_wait_children, daemon=True).start()
        return
    threading.Thread(target=_run_job, args=(job,), name=f"batch-{job.job_id}", daemon=True).start()


# --------------------------------------------------------------------------------------------
# Step Functions: batch:submitJob.sync shapes; named executions
# --------------------------------------------------------------------------------------------


def _operation_model(service: str, action_snake: str) -> Any:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    for op in model.operation_names:
        if xform_name(op) == action_snake:
            return model.operation_model(op)
    raise MotoCompatError(f"botocore has no operation {service}.{action_snake}")


def _task_operation(
    task: Any, boto_service_name: str | None, service_action_name: str | None
) -> Any:
    """botocore's model of the operation a service-integration task state calls."""
    return _operation_model(
        task._get_boto_service_name(boto_service_name),
        task._get_boto_service_action(service_action_name),
    )


def _sfn_normalise_parameters(
    self: Any,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    # ASL writes Batch parameters in PascalCase (JobName); boto3 wants the API's camelCase
    op = _task_operation(self, boto_service_name, service_action_name)
    if op.input_shape is not None:
        self._to_boto_request(parameters, op.input_shape)


def _sfn_normalise_response(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    # and the results come back PascalCase, as on AWS (JobId, Status, Container.ExitCode)
    op = _task_operation(self, boto_service_name, service_action_name)
    if op.output_shape is not None:
        self._from_boto_response(response, op.output_shape)


def _sfn_start_execution(
    self: Any,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Any:
    return _ORIGINALS["sfn.start_execution"](
        self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
    )


# --------------------------------------------------------------------------------------------
# EventBridge -> Step Functions
# --------------------------------------------------------------------------------------------


def _target_input(target: Mapping[str, Any], event: dict[str, Any]) -> Any:
    """The input a target receives: Input, InputPath, InputTransformer or the whole event."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        from jsonpath_ng.ext import parse

        found = [m.value for m in parse(target["InputPath"]).find(event)]
        return found[0] if found else {}
    if "InputTransformer" in target:
        from moto.events.utils import EventTemplateParser

        transformer = target["InputTransformer"]
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
    return event


def start_execution_for_event(target_arn: str, event: dict[str, Any], payload: Any) -> str:
    """StartExecution on a rule target, named after the event id as EventBridge does."""
    from moto.stepfunctions.responses import get_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target_arn)
    backend = get_backend(arn.account, arn.region)
    text = payload if isinstance(payload, str) else json.dumps(payload)
    execution = backend.start_execution(target_arn, str(event.get("id") or uuid.uuid4()), text)
    return execution.execution_arn


#: failed asynchronous (EventBridge) Lambda invocations: {"function", "payload"}, newest last
ASYNC_FAILURES: list[dict[str, Any]] = []
_ASYNC_LOCK = threading.Lock()


def invoke_lambda_for_event(target_arn: str, payload: Any) -> None:
    """Asynchronous ("Event") invocation of a Lambda target, as EventBridge does."""
    from moto.awslambda.utils import get_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target_arn)
    backend = get_backend(arn.account, arn.region)
    body = payload if isinstance(payload, str) else json.dumps(payload)

    def _invoke() -> None:
        # an async invocation's failure is not the sender's; AWS keeps it in the function's
        # logs / failure destination - here in ASYNC_FAILURES, for callers to show
        headers: dict[str, str] = {}
        try:
            payload_out = backend.invoke(
                target_arn, None, body, {"X-Amz-Invocation-Type": "Event"}, headers
            )
        except Exception as exc:
            payload_out = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
            headers["x-amz-function-error"] = "Unhandled"
        if headers.get("x-amz-function-error"):
            text = payload_out.decode() if isinstance(payload_out, bytes) else str(payload_out)
            with _ASYNC_LOCK:
                ASYNC_FAILURES.append({"function": target_arn, "payload": json.loads(text)})
                del ASYNC_FAILURES[:-100]

    threading.Thread(target=_invoke, name="events-lambda-target", daemon=True).start()


#: target services this module delivers to (moto raises NotImplementedError for them)
_OUR_TARGETS = ("states", "lambda")


def _events_send_to_targets(
    self: Any, original_event: dict[str, Any], transform_input: bool = True
) -> None:
    from moto.utilities.arns import parse_arn

    ours = [t for t in self.targets if parse_arn(t["Arn"]).service in _OUR_TARGETS]
    if not ours:
        return _ORIGINALS["events.send_to_targets"](self, original_event, transform_input)
    if not self.event_pattern.matches_event(original_event):
        return None
    others = [t for t in self.targets if t not in ours]
    for target in ours:
        payload = _target_input(target, copy.deepcopy(original_event))
        if parse_arn(target["Arn"]).service == "states":
            start_execution_for_event(target["Arn"], original_event, payload)
        else:
            invoke_lambda_for_event(target["Arn"], payload)
    if others:  # moto's own handling for the other targets of the same rule
        saved = self.targets
        try:
            self.targets = others
            _ORIGINALS["events.send_to_targets"](self, original_event, transform_input)
        finally:
            self.targets = saved
    return None


# --------------------------------------------------------------------------------------------
# install / uninstall
# --------------------------------------------------------------------------------------------

_ORIGINALS: dict[str, Callable[..., Any]] = {}
# keys whose attribute was inherited (not in the owner's own __dict__): uninstall deletes ours
_INHERITED: set[str] = set()
_PATCHES: dict[str, Callable[..., Any]] = {
    "lambda.invoke": _lambda_invoke,
    "batch.mark_finished": _batch_mark_job_as_finished,
    "sfn.batch.normalise_parameters": _sfn_normalise_parameters,
    "sfn.batch.normalise_response": _sfn_normalise_response,
    "events.send_to_targets": _events_send_to_targets,
    "sfn.start_execution": _sfn_start_execution,
}
_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Check moto's internals, then patch them (idempotent)."""
    with _INSTALL_LOCK:
        if _ORIGINALS:
            return
        check_moto_internals()
        for key, (owner, attr, _params) in _internals().items():
            if attr not in owner.__dict__:
                _INHERITED.add(key)
            _ORIGINALS[key] = getattr(owner, attr)
            setattr(owner, attr, _PATCHES[key])


def uninstall() -> None:
    """Restore moto's own methods."""
    with _INSTALL_LOCK:
        for key, (owner, attr, _params) in _internals().items():
            if key in _INHERITED:
                delattr(owner, attr)
            elif key in _ORIGINALS:
                setattr(owner, attr, _ORIGINALS[key])
        _ORIGINALS.clear()
        _INHERITED.clear()


def installed() -> bool:
    return bool(_ORIGINALS)


# --------------------------------------------------------------------------------------------
# the emulated AWS endpoint
# --------------------------------------------------------------------------------------------

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"  # moto's default account id


class LocalAws:
    """moto in server mode on 127.0.0.1, with the patches above and executing mode on.

    One per process: moto's backends are process-global. ``MOTO_PORT`` is set in this
    process's environment while it runs, because the Step Functions interpreter addresses
    its service calls to ``localhost:$MOTO_PORT``.
    """

    def __init__(self, *, port: int = 0, region: str = DEFAULT_REGION) -> None:
        self.region = region
        self._port = port
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_config: dict[str, Any] = {}
        self._installed_here = False
        self.endpoint_url = ""

    # credentials are dummies: moto accepts anything, and real ones must never be used here
    def environment(self) -> dict[str, str]:
        """Environment a process needs to use this endpoint with boto3 (no real credentials)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def start(self) -> LocalAws:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        # leave moto as we found it on stop(): other code in this process (e.g. tests using
        # mock_aws) must not inherit executing mode or our patches
        self._saved_config = copy.deepcopy(dict(default_user_config))
        self._installed_here = not installed()
        install()
        # werkzeug logs every request to stderr: noise for users, and a place secrets could leak
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # the interpreter logs every caught task failure at ERROR with the component's repr;
        # the same facts are in the execution history, where callers read them
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):
            server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        env = {"MOTO_PORT": str(port), **self.environment()}
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        BATCH.environment = self.environment()
        # moto's backends are process-global and outlive a server: start from nothing
        self.reset()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        kill_running_jobs()
        self._server.stop()
        self._server = None
        from moto.core.config import default_user_config

        default_user_config.clear()
        default_user_config.update(self._saved_config)  # type: ignore[typeddict-item]
        if self._installed_here:
            uninstall()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        BATCH.environment = {}

    def reset(self) -> None:
        """Forget every emulated resource (moto's /moto-api/reset)."""
        import requests

        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30).raise_for_status()
        requests.post(
            f"{self.endpoint_url}/moto-api/config", json=MOTO_CONFIG, timeout=10
        ).raise_for_status()

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
