"""A run's AWS Batch jobs: find them, name their step and block, terminate them.

Every job of a run, including the block jobs of the Distributed Map iterations, is named
``<prefix>-[<block>-]<stem>`` by the ASL (``States.Format('detect-bc-{}-{}', $.block,
$.job_name)``), where the stem is :func:`~synapse_pipelines.workflow.run_names.job_name_stem`
of the request's results key. So a run's jobs are found in its job queues by name
(:func:`list_run_jobs`; Batch's ``JOB_NAME`` filter only matches prefixes, so the stem is
matched here), and the prefixes read from the ASL itself (:func:`job_steps`) say which state
submitted a job and for which block. Used by cancellation (:func:`terminate_run_jobs`),
DescribeFailure (the failed jobs and blocks, their log streams) and ``logs``.

Light (boto3 only): the Lambdas use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from synapse_pipelines.workflow import run_names, wiring as wf

#: Batch job statuses before an end (TerminateJob cancels or stops these).
ACTIVE_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
ALL_STATUSES = (*ACTIVE_STATUSES, "SUCCEEDED", "FAILED")
#: Batch job ids per DescribeJobs call (the API's limit).
DESCRIBE_BATCH = 100
#: Jobs are created after their execution starts and before it stops; allow for the skew of
#: Batch's and Step Functions' clocks (both AWS's, in one region). Kept small: the attempts of
#: one request share the job names, and a retry starts as soon as the previous attempt has
#: ended, so a wide margin would count the previous attempt's jobs as the retry's.
SKEW_MS = 2_000

_FORMAT = re.compile(r"^States\.Format\('([^']*)'")


@dataclass(frozen=True)
class JobStep:
    """Batch task states sharing one job-name prefix (``detect-`` is Detect and DetectLarge)."""

    prefix: str  # "detect-bc-"
    states: tuple[str, ...]  # ("CovarianceBlock",)
    map_state: str | None  # the Distributed Map running it ("BlockwiseCovariance"), if any
    per_block: bool  # the name carries the Map item's block

    @property
    def step(self) -> str:
        """The name people know: the Map for a block job, else the (first) task state."""
        return self.map_state or self.states[0]

    def names(self) -> set[str]:
        return {s.lower() for s in (*self.states, *([self.map_state] if self.map_state else []))}


@cache
def job_steps() -> tuple[JobStep, ...]:
    """Every Batch task of the ASL by job-name prefix, longest prefix first."""
    found: dict[str, JobStep] = {}

    def walk(states: Mapping[str, Any], map_state: str | None) -> None:
        for name, state in states.items():
            resource = str(state.get("Resource", ""))
            job_name = (state.get("Parameters") or {}).get("JobName.$", "")
            matched = _FORMAT.match(str(job_name))
            if resource.startswith("arn:aws:states:::batch:submitJob") and matched:
                template = matched.group(1)
                prefix = template.split("{}", 1)[0]
                old = found.get(prefix)
                found[prefix] = JobStep(
                    prefix,
                    (*(old.states if old else ()), name),
                    map_state,
                    template.count("{}") > 1,
                )
            for branch in state.get("Branches") or []:
                walk(branch["States"], map_state)
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                walk(processor["States"], name)

    walk(json.loads(wf.definition_template())["States"], None)
    return tuple(sorted(found.values(), key=lambda s: -len(s.prefix)))


def step_names() -> list[str]:
    """The step names ``logs --step`` accepts (task states and Distributed Maps)."""
    names = {n for s in job_steps() for n in (*s.states, *([s.map_state] if s.map_state else []))}
    return sorted(names)


@dataclass
class RunJob:
    """One Batch job of a run, as ``describe_jobs`` tells it."""

    job_id: str
    name: str
    status: str
    created_ms: int
    step: str  # see JobStep.step; "?" when the name matches no prefix of the ASL
    job_step: JobStep | None
    block: str | None  # the Map item's block ("17" or "16-24"), for block jobs
    status_reason: str | None = None
    exit_code: int | None = None
    #: one log stream per attempt (Batch starts a new container, and stream, per attempt)
    log_streams: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON shape notices and events carry."""
        return {
            "step": self.step,
            "block": self.block,
            "job_name": self.name,
            "job_id": self.job_id,
            "status": self.status,
            "status_reason": self.status_reason,
            "exit_code": self.exit_code,
            "log_stream": self.log_streams[-1] if self.log_streams else None,
        }


def classify(job_name: str, stem: str) -> tuple[JobStep | None, str | None]:
    """The ASL task of a run's job name, and its block (None when it has none)."""
    body = job_name[: len(job_name) - len(stem)]  # "detect-bc-4-8-"
    for job_step in job_steps():
        if body.startswith(job_step.prefix):
            rest = body[len(job_step.prefix) :].rstrip("-")
            return job_step, (rest or None) if job_step.per_block else None
    return None, None


def log_streams_of(description: Mapping[str, Any]) -> list[str]:
    """Log stream of each attempt of a job (``describe_jobs``, or a ``.sync`` task's error
    cause, whose keys Step Functions capitalises)."""

    def get(d: Mapping[str, Any], key: str) -> Any:
        return d.get(key, d.get(key[0].upper() + key[1:]))

    streams: list[str] = []
    for attempt in get(description, "attempts") or []:
        stream = get(get(attempt, "container") or {}, "logStreamName")
        if stream and stream not in streams:
            streams.append(str(stream))
    current = get(get(description, "container") or {}, "logStreamName")
    if current and current not in streams:
        streams.append(str(current))
    return streams


def _exit_code(description: Mapping[str, Any]) -> int | None:
    attempts = description.get("attempts") or []
    code = ((attempts[-1].get("container") or {}) if attempts else {}).get("exitCode")
    if code is None:
        code = (description.get("container") or {}).get("exitCode")
    return None if code is None else int(code)


def run_job(description: Mapping[str, Any], stem: str) -> RunJob:
    job_step, block = classify(str(description["jobName"]), stem)
    return RunJob(
        job_id=str(description["jobId"]),
        name=str(description["jobName"]),
        status=str(description.get("status", "?")),
        created_ms=int(description.get("createdAt") or 0),
        step=job_step.step if job_step else "?",
        job_step=job_step,
        block=block,
        status_reason=description.get("statusReason"),
        exit_code=_exit_code(description),
        log_streams=log_streams_of(description),
    )


def to_ms(value: datetime | int | float | str | None) -> int | None:
    """Milliseconds since the epoch of a datetime, an ISO time or a number (s or ms)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        return to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return int(value * 1000) if value < 1e11 else int(value)


def _summaries(
    batch: Any, queue: str, statuses: Sequence[str] | None, since_ms: int | None
) -> Iterator[dict[str, Any]]:
    """Job summaries of one queue: by status, or (``statuses`` None) every job created
    after ``since_ms`` (Batch ignores ``jobStatus`` when a filter is given)."""
    paginator = batch.get_paginator("list_jobs")
    if statuses is None:
        after = str(max(0, (since_ms or 0) - SKEW_MS))
        queries: list[dict[str, Any]] = [
            {"filters": [{"name": "AFTER_CREATED_AT", "values": [after]}]}
        ]
    else:
        queries = [{"jobStatus": status} for status in statuses]
    for query in queries:
        for page in paginator.paginate(jobQueue=queue, **query):
            yield from page.get("jobSummaryList", [])


def list_run_jobs(
    batch: Any,
    queues: Iterable[str],
    stem: str,
    *,
    statuses: Sequence[str] | None = None,
    since: datetime | int | None = None,
    until: datetime | int | None = None,
) -> list[RunJob]:
    """The run's jobs (name ends in ``-<stem>``) in ``queues``, created within
    [since, until] (minus/plus a minute), oldest first, described (log streams)."""
    since_ms, until_ms = to_ms(since), to_ms(until)
    ids: dict[str, None] = {}
    for queue in queues:
        for summary in _summaries(batch, queue, statuses, since_ms):
            created = int(summary.get("createdAt") or 0)
            if not run_names.job_of_run(str(summary.get("jobName", "")), stem):
                continue
            if since_ms is not None and created and created < since_ms - SKEW_MS:
                continue
            if until_ms is not None and created and created > until_ms + SKEW_MS:
                continue
            ids[str(summary["jobId"])] = None
    jobs: list[RunJob] = []
    wanted = list(ids)
    for start in range(0, len(wanted), DESCRIBE_BATCH):
        described = batch.describe_jobs(jobs=wanted[start : start + DESCRIBE_BATCH])["jobs"]
        jobs += [run_job(d, stem) for d in described]
    return sorted(jobs, key=lambda j: (j.created_ms, j.name))


def terminate_run_jobs(
    batch: Any,
    queues: Iterable[str],
    stem: str,
    *,
    reason: str,
    since: datetime | int | None = None,
) -> list[RunJob]:
    """TerminateJob on every job of the run not yet ended (queued ones are cancelled,
    started ones stopped); return them. Terminating an ended job changes nothing."""
    active = list_run_jobs(batch, queues, stem, statuses=ACTIVE_STATUSES, since=since)
    for job in active:
        batch.terminate_job(jobId=job.job_id, reason=reason[:1024])
    return active


def failed_run_jobs(
    batch: Any, queues: Iterable[str], stem: str, *, since: datetime | int | None = None
) -> list[RunJob]:
    """The run's FAILED jobs (failed or terminated blocks included)."""
    return list_run_jobs(batch, queues, stem, statuses=("FAILED",), since=since)


def queues_from_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The job queue ARNs of :data:`~synapse_pipelines.workflow.wiring.ENV_JOB_QUEUES`."""
    return tuple(q for q in environ.get(wf.ENV_JOB_QUEUES, "").split(",") if q.strip())
