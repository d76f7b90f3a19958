"""Batch in moto without Docker: jobs run as local processes, with Batch's retry strategy.

moto's non-Docker Batch (``BatchSimpleBackend._mark_job_as_finished``) marks every job
SUCCEEDED without running it. Its replacement, :func:`batch_mark_job_as_finished`, starts a
thread that runs each attempt as a subprocess: the job definition's command (the image's
:attr:`BatchSettings.entrypoint` prepended, ``Ref::`` substituted by moto's own
``Job._add_parameters_to_command``), its environment (definition + overrides +
``AWS_BATCH_JOB_ID``/``ATTEMPT``) and its ``secrets`` resolved from moto's Secrets Manager
into environment variables (never argv; a ``BOSS_TOKEN`` of this process is not inherited).
``retryStrategy`` is honoured (:func:`retry_action`: ``attempts``, ``evaluateOnExit`` matched
in order, retrying when no rule matches, as Batch documents). A failed job gets a
``statusReason`` and per-attempt ``exitCode``; output goes to CloudWatch Logs
``/aws/batch/job`` and, line by line, to :attr:`BatchSettings.log_sink`.
:func:`inject_batch_host_failure` makes the next attempts end like a Spot reclaim, so the job
definitions' Spot retry rules can be tested; :func:`inject_job_fault` makes the next attempts
of the jobs whose name matches a pattern (one block of a Distributed Map, say) run a stand-in
process instead that prints a line and exits with a code, or runs until it is terminated, so
failed blocks and cancellation can be tested; :func:`kill_running_jobs` leaves no process
behind.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.secretsmanager.models import secretsmanager_backends

from synapse_pipelines.local.moto_internals import MotoCompatError

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


@dataclass
class JobFault:
    """A stand-in for the next attempts of the jobs whose name matches ``pattern``."""

    pattern: str  # fnmatch glob on the job name, e.g. "detect-bl-4-8-*"
    count: int  # attempts still to replace
    exit_code: int
    message: str
    hold: bool  # run until terminated (TerminateJob, the attempt timeout) instead of exiting


_JOB_FAULTS: list[JobFault] = []


def inject_job_fault(
    pattern: str,
    *,
    count: int = 1,
    exit_code: int = 1,
    message: str = "injected failure",
    hold: bool = False,
) -> None:
    """Make the next ``count`` attempts of jobs named like ``pattern`` run a stand-in process
    (same environment, logs and retry strategy as the job): it prints ``message`` and exits
    with ``exit_code``, or, with ``hold``, prints it and runs until the job is terminated."""
    with _HOST_FAILURES_LOCK:
        _JOB_FAULTS.append(JobFault(pattern, count, exit_code, message, hold))


def clear_job_faults() -> None:
    with _HOST_FAILURES_LOCK:
        _JOB_FAULTS.clear()


def _take_job_fault(job_name: str) -> JobFault | None:
    with _HOST_FAILURES_LOCK:
        for fault in _JOB_FAULTS:
            if fault.count > 0 and fnmatch.fnmatchcase(job_name, fault.pattern):
                fault.count -= 1
                return fault
    return None


def _fault_argv(fault: JobFault) -> list[str]:
    code = f"import sys, time; print({fault.message!r}, flush=True); " + (
        "time.sleep(3600)" if fault.hold else f"sys.exit({int(fault.exit_code)})"
    )
    return [sys.executable, "-c", code]


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
    fault = _take_job_fault(job.job_name)
    if fault is not None:
        argv = _fault_argv(fault)
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


def batch_mark_job_as_finished(self: Any, include_start_attempt: bool, job: Any) -> None:
    """Replaces ``BatchSimpleBackend._mark_job_as_finished``: run the job, then finish it."""
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
