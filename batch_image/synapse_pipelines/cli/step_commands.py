"""``synapse-pipelines step ...``: the Batch container's step commands.

The job definitions (``synapse_pipelines.workflow.wiring.BATCH_JOBS``) run, e.g.::

    synapse-pipelines step detect --results-key <Ref::results_key>

with ``RESULTS_BUCKET`` in the environment and ``BOSS_TOKEN`` from the job definition's
Secrets Manager secret. A user error (bad BOSS resource, ...) is recorded in S3 for the
failure notification, printed as one line and exits with status 2, which the job
definitions' retry strategy does not retry; any other exception keeps its traceback and
exits 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.run_record import clear_step_error, record_step_error

step_app = typer.Typer(
    name="step",
    help="Run one workflow step (the AWS Batch container's commands).",
    no_args_is_help=True,
)

RESULTS_KEY = typer.Option(..., "--results-key", help="The request's results key (S3 prefix).")
BUCKET = typer.Option(
    None,
    "--bucket",
    help=f"Results bucket (default: ${wf.ENV_RESULTS_BUCKET}).",
    show_default=False,
)
WORKDIR = typer.Option(
    None, "--workdir", help="Scratch folder (default: a temporary folder, removed afterwards)."
)


def _bucket(bucket: str | None) -> str:
    value = bucket or os.environ.get(wf.ENV_RESULTS_BUCKET)
    if not value:
        raise SynapsePipelinesError(
            "no results bucket given",
            field="--bucket",
            hint=f"pass --bucket or set {wf.ENV_RESULTS_BUCKET}",
        )
    return value


def _run(step: str, bucket: str | None, results_key: str, call: Callable[[str], Any]) -> None:
    name = _bucket(bucket)
    clear_step_error(None, name, results_key, step)
    try:
        result = call(name)
    except SynapsePipelinesError as exc:
        record_step_error(None, name, results_key, step, exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(wf.USER_ERROR_EXIT_CODE) from None
    print(f"{step} done: {result}", flush=True)


@step_app.command("detect")
def detect(
    results_key: str = RESULTS_KEY,
    bucket: str | None = BUCKET,
    workdir: Path | None = WORKDIR,
) -> None:
    """Pull from BOSS, detect synapses, write the synapse table; upload the results to S3."""
    # start-up time: the step loads the science stack, which no other command needs
    from synapse_pipelines.workflow.detect_step import detect as detect_step

    _run("detect", bucket, results_key, lambda b: detect_step(b, results_key, workdir=workdir))


@step_app.command("report")
def report(
    results_key: str = RESULTS_KEY,
    bucket: str | None = BUCKET,
    workdir: Path | None = WORKDIR,
) -> None:
    """Build report.html and clustering.json from synapses.csv in S3."""
    # start-up time: the step loads the report stack (plotly, scikit-learn)
    from synapse_pipelines.workflow.report_step import report as report_step

    _run("report", bucket, results_key, lambda b: report_step(b, results_key, workdir=workdir))


@step_app.command("publish-boss")
def publish_boss(
    results_key: str = RESULTS_KEY,
    bucket: str | None = BUCKET,
    workdir: Path | None = WORKDIR,
) -> None:
    """Push the prediction mask and the synapse ids to the request's output experiment in BOSS."""
    # start-up time: the step loads BOSS I/O and the blockwise stack (zarr, scipy)
    from synapse_pipelines.workflow.publish_boss_step import publish_boss as publish_boss_step

    _run(
        "publish-boss",
        bucket,
        results_key,
        lambda b: publish_boss_step(b, results_key, workdir=workdir),
    )


def register(app: typer.Typer) -> None:
    """Add the ``step`` command group to the root app."""
    app.add_typer(step_app, name="step")
