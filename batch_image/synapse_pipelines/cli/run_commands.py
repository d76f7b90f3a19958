"""``synapse-pipelines list | cancel | retry | logs``: operate the runs of a deployment.

- ``list [--status S] [--since DATE] [--limit N] [--next TOKEN]``: one line per run, newest
  first (:mod:`synapse_pipelines.workflow.run_listing`).
- ``cancel REQUEST_OR_EXECUTION``: stop the run, terminate its Batch jobs, mark it cancelled,
  notify (:mod:`synapse_pipelines.workflow.run_cancel`); a finished run is left as it is.
- ``retry REQUEST_OR_EXECUTION`` / ``retry --failed-since DATE``: the next attempt of a
  failed or cancelled run, or of every failed run since a date
  (:mod:`synapse_pipelines.workflow.run_retry`).
- ``logs REQUEST_OR_EXECUTION [--step NAME] [--failed]``: the run's Batch job logs from
  CloudWatch Logs (:mod:`synapse_pipelines.workflow.job_logs`).

A run is named by its execution ARN or name (``list`` shows them) or by the request's JSON
file (its latest attempt). Every command takes ``--stack NAME``: the deployment is read from
the stack's outputs. The local runtime publishes its stack too (``synapse-pipelines-local``,
reached with the ``AWS_ENDPOINT_URL`` and test credentials that ``run --local --serve``
prints). Each ``*_run(s)`` function below does the work for a
:class:`~synapse_pipelines.workflow.runs.Deployment` and writes through ``echo``, so tests
drive them with the local runtime's clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow.job_logs import run_job_logs, select_jobs, steps_with_jobs
from synapse_pipelines.workflow.run_cancel import cancel_run
from synapse_pipelines.workflow.run_jobs import list_run_jobs
from synapse_pipelines.workflow.run_listing import check_limit, format_table, list_runs
from synapse_pipelines.workflow.run_names import job_name_stem
from synapse_pipelines.workflow.run_retry import RetryOutcome, retry_failed_since, retry_run
from synapse_pipelines.workflow.runs import (
    Deployment,
    find_execution,
    parse_since,
    request_of,
    shown_status,
)

from .aws_commands import REGION, STACK, deployment_of, load_request

Echo = Callable[[str], None]
RUN = typer.Argument(
    ..., help="Execution ARN or name (`synapse-pipelines list` shows them), or the request file."
)


def find_run(deployment: Deployment, value: str) -> dict[str, Any]:
    """DescribeExecution of the run ``value`` names (see the module docstring)."""
    path = Path(value)
    if value.endswith(".json") and path.is_file():
        return find_execution(deployment, value, request=load_request(path))
    return find_execution(deployment, value)


def list_command(
    deployment: Deployment,
    *,
    status: str | None = None,
    since: str | None = None,
    limit: int = 20,
    next_token: str | None = None,
    as_json: bool = False,
    echo: Echo = typer.echo,
) -> None:
    check_limit(limit)
    when = None if since is None else parse_since(since)
    lines, token = list_runs(
        deployment, status=status, since=when, limit=limit, next_token=next_token
    )
    if as_json:
        echo(json.dumps({"runs": [line.to_dict() for line in lines], "next": token}, indent=2))
        return
    if not lines:
        echo("no runs" + (" match" if status or since else ""))
    else:
        for row in format_table(lines):
            echo(row)
    if token:
        again = ["synapse-pipelines list", f"--stack {deployment.stack_name}"]
        again += [f"--status {status}"] if status else []
        again += [f"--since {since}"] if since else []
        echo(f"more: {' '.join(again)} --limit {limit} --next {token}")


def cancel_command(
    deployment: Deployment,
    run: str,
    *,
    reason: str | None = None,
    wait_seconds: float = 60.0,
    echo: Echo = typer.echo,
) -> bool:
    """Cancel the run; True when it changed anything."""
    description = find_run(deployment, run)
    outcome = cancel_run(
        deployment,
        description,
        reason=reason or "cancelled with synapse-pipelines cancel",
        wait_seconds=wait_seconds,
    )
    if not outcome.changed:
        echo(f"{outcome.name} already ended: {shown_status(outcome.status)}; nothing changed")
        return False
    echo(f"{outcome.name}: CANCELLED (execution stopped)")
    for job in outcome.terminated:
        block = f" block {job['block']}" if job.get("block") else ""
        echo(f"  terminated {job['step']}{block}: {job['job_name']} ({job['job_id']})")
    record = outcome.record or {}
    if record.get("notified"):
        where = "manifest and run record" if record.get("manifest_marked") else "run record"
        echo(f"marked cancelled ({where}); notification and event sent")
    echo(f"run it again: synapse-pipelines retry {outcome.name} --stack {deployment.stack_name}")
    return True


def _retry_line(outcome: RetryOutcome) -> str:
    if outcome.started:
        shown = shown_status(outcome.previous_status)
        return f"{outcome.previous} ({shown}) -> started {outcome.name}"
    return f"{outcome.previous}: not retried, {outcome.why}"


def retry_command(
    deployment: Deployment,
    run: str | None = None,
    *,
    failed_since: str | None = None,
    echo: Echo = typer.echo,
) -> list[RetryOutcome]:
    if (run is None) == (failed_since is None):
        raise SynapsePipelinesError(
            "give one run, or --failed-since DATE",
            field="REQUEST_OR_EXECUTION",
            hint="e.g. `retry <execution name>` or `retry --failed-since 2026-11-30`",
        )
    if failed_since is not None:
        outcomes = retry_failed_since(deployment, parse_since(failed_since, field="--failed-since"))
        if not outcomes:
            echo(f"no failed runs since {failed_since}")
    else:
        assert run is not None
        outcomes = [retry_run(deployment, find_run(deployment, run))]
    for outcome in outcomes:
        echo(_retry_line(outcome))
    return outcomes


def logs_command(
    deployment: Deployment,
    run: str,
    *,
    step: str | None = None,
    failed: bool = False,
    echo: Echo = typer.echo,
) -> int:
    """Print the run's job logs; the number of log streams printed."""
    description = find_run(deployment, run)
    request = request_of(description)
    if request is None:
        raise SynapsePipelinesError(
            f"execution {description['name']} did not run a request", field="REQUEST_OR_EXECUTION"
        )
    jobs = list_run_jobs(
        deployment.client("batch"),
        deployment.job_queues,
        job_name_stem(request.results_key),
        since=description.get("startDate"),
        until=description.get("stopDate"),
    )
    chosen = select_jobs(jobs, step=step, failed=failed)
    if not chosen:
        what = f" of step {step}" if step else ""
        line = f"no {'failed ' if failed else ''}Batch jobs{what} in {description['name']}"
        others = steps_with_jobs(jobs, failed=failed) if step else []
        if others:
            kind = "failed jobs" if failed else "jobs"
            if len(others) == 1:
                line += f"; it has {kind} of step {others[0]}: pass it as --step"
            else:
                line += f"; it has {kind} of steps {', '.join(others)}: pass one as --step"
        echo(line)
        return 0
    printed = 0
    for log in run_job_logs(deployment.client("logs"), deployment.job_log_group, chosen):
        echo(log.header())
        for line in log.lines:
            echo(line)
        printed += 1
    return printed


def register(app: typer.Typer) -> None:
    """Add list, cancel, retry and logs."""

    @app.command("list")
    def list_(
        stack: str = STACK,
        status: str | None = typer.Option(
            None, "--status", help="RUNNING, SUCCEEDED, FAILED, CANCELLED or TIMED_OUT."
        ),
        since: str | None = typer.Option(
            None, "--since", help="Started since: 2026-11-30, 2026-11-30T08:00 (UTC), 3d, 12h."
        ),
        limit: int = typer.Option(20, "--limit", help="Runs per page (1 or more)."),
        next_token: str | None = typer.Option(None, "--next", help="Continue a listing."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        region: str | None = REGION,
    ) -> None:
        """One line per run: request, status, start, duration, synapses, cost, results."""
        check_limit(limit)
        list_command(
            deployment_of(stack, region),
            status=status,
            since=since,
            limit=limit,
            next_token=next_token,
            as_json=as_json,
        )

    @app.command()
    def cancel(
        run: str = RUN,
        stack: str = STACK,
        reason: str | None = typer.Option(None, "--reason", help="Recorded with the run."),
        wait: float = typer.Option(
            60.0, "--wait", help="Seconds to wait for the run to be marked and notified."
        ),
        region: str | None = REGION,
    ) -> None:
        """Stop a run and terminate its Batch jobs (a finished run is left as it is)."""
        cancel_command(deployment_of(stack, region), run, reason=reason, wait_seconds=wait)

    @app.command()
    def retry(
        run: str | None = typer.Argument(
            None, help="Execution ARN or name, or the request file (or use --failed-since)."
        ),
        failed_since: str | None = typer.Option(
            None, "--failed-since", help="Retry every run that failed since this date."
        ),
        stack: str = STACK,
        region: str | None = REGION,
    ) -> None:
        """Run a failed or cancelled run again (completed blocks are reused)."""
        retry_command(deployment_of(stack, region), run, failed_since=failed_since)

    @app.command()
    def logs(
        run: str = RUN,
        step: str | None = typer.Option(
            None, "--step", help="Only this step's jobs (e.g. Detect, BlockwiseLabel)."
        ),
        failed: bool = typer.Option(False, "--failed", help="Only the jobs that failed."),
        stack: str = STACK,
        region: str | None = REGION,
    ) -> None:
        """Print a run's Batch job logs (CloudWatch Logs), job by job."""
        logs_command(deployment_of(stack, region), run, step=step, failed=failed)
