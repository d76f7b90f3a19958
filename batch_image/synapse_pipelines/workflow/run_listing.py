"""Listing runs: one line per execution, newest first, with where its results are.

Step Functions' ``ListExecutions`` gives the executions (status filter, pages); each one's
input is its request (collection, experiment, box, pipeline, results key), and the results folder's
``manifest.json`` gives the synapse count and the cost (``manifest["cost"]["total_usd"]``,
recorded by PublishToS3) - only when that manifest is this execution's finished one
(:func:`~synapse_pipelines.workflow.run_status.manifest_state`): a failed, cancelled or
still running run shows "-" rather than someone else's numbers.

Paging: at most ``limit`` lines per call, and the token to continue with (``list --next``);
``since`` stops at the first execution started before it (the list is newest first).

Light (boto3 only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.run_status import manifest_state, read_json_or_none
from synapse_pipelines.workflow.runs import Deployment, describe, request_of, shown_status

#: ``--status`` values: the execution statuses, and CANCELLED for ABORTED.
STATUS_FILTERS = {
    "RUNNING": "RUNNING",
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "TIMED_OUT": "TIMED_OUT",
    "ABORTED": "ABORTED",
    "CANCELLED": "ABORTED",
}
#: Executions per ListExecutions call at most (the API's limit).
PAGE_MAX = 1000


@dataclass
class RunLine:
    """One run as ``list`` shows it."""

    name: str
    execution_arn: str
    status: str
    pipeline: str | None  # the request's pipeline (paired-puncta, nomads-unsupervised, ...)
    collection: str | None
    experiment: str | None
    box: str | None
    started: str
    seconds: float | None
    synapses: int | None
    cost_usd: float | None
    results: str | None
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cells(self) -> list[str]:
        """The columns of :data:`COLUMNS`, as text."""
        what = f"{self.collection}/{self.experiment} {self.box}" if self.collection else "-"
        return [
            self.status,
            what,
            self.pipeline or "-",
            self.started,
            "-" if self.seconds is None else duration_text(self.seconds),
            "-" if self.synapses is None else str(self.synapses),
            "-" if self.cost_usd is None else f"${self.cost_usd:.4f}",
            self.results or "-",
            self.name,
        ]


COLUMNS = (
    "status",
    "request",
    "pipeline",
    "started (UTC)",
    "duration",
    "synapses",
    "cost",
    "results",
    "run",
)


def duration_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def status_filter(value: str | None) -> str | None:
    """The ListExecutions status filter for ``--status`` (any case); a clear error else."""
    if value is None:
        return None
    found = STATUS_FILTERS.get(value.strip().upper())
    if found is None:
        raise SynapsePipelinesError(
            f"unknown status {value!r}",
            field="--status",
            hint=f"use one of {', '.join(STATUS_FILTERS)}",
        )
    return found


def check_limit(limit: int) -> int:
    if limit < 1:
        raise SynapsePipelinesError(
            f"{limit} is not a number of runs", field="--limit", hint="give 1 or more"
        )
    return limit


def run_line(deployment: Deployment, summary: Mapping[str, Any]) -> RunLine:
    """The line of one execution (``ListExecutions`` item)."""
    arn = str(summary["executionArn"])
    description = describe(deployment.client("stepfunctions"), arn) or dict(summary)
    request = request_of(description)
    started: datetime = description["startDate"]
    stopped: datetime | None = description.get("stopDate")
    end = stopped or datetime.now(UTC)
    synapses = cost = results = None
    if request is not None:
        key = wf.artefact_key(request.results_key, wf.MANIFEST)
        manifest = read_json_or_none(deployment.client("s3"), deployment.bucket, key)
        if manifest_state(manifest, arn) == "complete":
            synapses = (manifest.get("counts") or {}).get("synapses")
            total = (manifest.get("cost") or {}).get("total_usd")
            cost = None if total is None else float(total)
            results = wf.s3_uri(deployment.bucket, wf.results_prefix(request.results_key))
    parsed = run_names.parse_execution_name(str(description["name"]))
    return RunLine(
        name=str(description["name"]),
        execution_arn=arn,
        status=shown_status(str(description["status"])),
        pipeline=request.pipeline if request else None,
        collection=request.collection if request else None,
        experiment=request.experiment if request else None,
        box=str(request.box) if request else None,
        started=started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        seconds=(end - started).total_seconds(),
        synapses=None if synapses is None else int(synapses),
        cost_usd=cost,
        results=results,
        attempt=parsed[1] if parsed else 1,
    )


def list_runs(
    deployment: Deployment,
    *,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
    next_token: str | None = None,
) -> tuple[list[RunLine], str | None]:
    """Up to ``limit`` runs, newest first, and the token of the next page (None: no more)."""
    check_limit(limit)
    sfn = deployment.client("stepfunctions")
    query: dict[str, Any] = {"stateMachineArn": deployment.state_machine_arn}
    if status_filter(status):
        query["statusFilter"] = status_filter(status)
    lines: list[RunLine] = []
    token = next_token
    while len(lines) < limit:
        page_query = {**query, "maxResults": min(PAGE_MAX, limit - len(lines))}
        if token:
            page_query["nextToken"] = token
        page = sfn.list_executions(**page_query)
        for summary in page.get("executions", []):
            if since is not None and summary["startDate"] < since:
                return lines, None
            lines.append(run_line(deployment, summary))
        token = page.get("nextToken")
        if not token:
            return lines, None
    return lines, token


def format_table(lines: list[RunLine]) -> list[str]:
    """The lines as an aligned text table (the last column, the run's name, unpadded)."""
    rows = [list(COLUMNS), *[line.cells() for line in lines]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
