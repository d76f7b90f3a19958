"""A run's job logs: which CloudWatch log stream holds each Batch job's output, and the
exact command that prints it.

A Batch job writes one log stream per attempt to the deployment's job log group (stack
output ``JobLogGroup``; ``/aws/batch/job`` in the local runtime). :func:`run_job_logs` finds a
run's jobs (:mod:`.run_jobs`: by the request's job-name stem in the job queues, blocks of the
Distributed Maps included) and reads their streams; :func:`logs_command_line` is the command a
failure notice and ``status`` print.

Light (boto3 only): DescribeFailure uses :func:`logs_command_line`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError, aws_error_code
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.run_jobs import RunJob, step_names

#: The log group the local runtime's Batch writes (moto's, as Batch's default).
DEFAULT_JOB_LOG_GROUP = "/aws/batch/job"
#: Events per GetLogEvents call (the API's maximum).
EVENTS_PER_CALL = 10_000


def logs_command_line(
    execution_name: str, *, step: str | None = None, failed: bool = False, stack: str | None = None
) -> str:
    """The command that prints a run's job logs (of one step; only failed jobs)."""
    words = [wf.CLI_PROGRAM, "logs", execution_name]
    if step:
        words += ["--step", step]
    if failed:
        words.append("--failed")
    words += ["--stack", stack or "<stack name>"]
    return shlex.join(words)


def select_jobs(jobs: Iterable[RunJob], *, step: str | None, failed: bool) -> list[RunJob]:
    """The jobs of ``step`` (a task state or its Distributed Map, any case), only FAILED ones
    with ``failed``; an unknown step is a clear error naming the known ones."""
    wanted = step.lower() if step else None
    if wanted is not None and wanted not in {n.lower() for n in step_names()}:
        raise SynapsePipelinesError(
            f"no step {step!r} runs Batch jobs",
            field="--step",
            hint=f"use one of {', '.join(step_names())}",
        )
    out = []
    for job in jobs:
        if wanted is not None and (job.job_step is None or wanted not in job.job_step.names()):
            continue
        if failed and job.status != "FAILED":
            continue
        out.append(job)
    return out


def steps_with_jobs(jobs: Iterable[RunJob], *, failed: bool = False) -> list[str]:
    """The steps (as ``logs --step`` takes them) that ran jobs among ``jobs`` (only FAILED
    ones with ``failed``), in the order their first job was created."""
    ordered = sorted(jobs, key=lambda j: j.created_ms)
    return list(dict.fromkeys(j.step for j in ordered if not failed or j.status == "FAILED"))


def stream_events(logs: Any, group: str, stream: str) -> Iterator[str]:
    """Every message of a log stream, oldest first (a missing stream: nothing)."""
    token: str | None = None
    while True:
        args: dict[str, Any] = {
            "logGroupName": group,
            "logStreamName": stream,
            "startFromHead": True,
            "limit": EVENTS_PER_CALL,
        }
        if token:
            args["nextToken"] = token
        try:
            page = logs.get_log_events(**args)
        except Exception as exc:
            if aws_error_code(exc) == "ResourceNotFoundException":
                return
            raise
        events = page.get("events", [])
        for event in events:
            yield str(event.get("message", ""))
        following = page.get("nextForwardToken")
        if not events or not following or following == token:
            return
        token = following


@dataclass(frozen=True)
class JobLog:
    """One attempt's output of one job."""

    job: RunJob
    attempt: int
    attempts: int
    group: str
    stream: str
    lines: list[str]

    def header(self) -> str:
        block = f" block {self.job.block}" if self.job.block else ""
        return (
            f"== {self.job.step}{block}: job {self.job.name} ({self.job.job_id}) "
            f"{self.job.status}, attempt {self.attempt}/{self.attempts}, "
            f"log stream {self.group} {self.stream}"
        )


def run_job_logs(logs: Any, group: str, jobs: Iterable[RunJob]) -> Iterator[JobLog]:
    """The output of every attempt of every job, in job order."""
    for job in jobs:
        streams = job.log_streams
        for index, stream in enumerate(streams, start=1):
            lines = list(stream_events(logs, group, stream))
            yield JobLog(job, index, len(streams), group, stream, lines)
