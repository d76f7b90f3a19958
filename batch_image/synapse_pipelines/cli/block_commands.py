"""``synapse-pipelines step blocks``: the Batch jobs of the blockwise Detect flow.

One command for every stage so one job definition serves them all (its command is
``step blocks --stage Ref::stage --block Ref::block --results-key Ref::results_key``), e.g.::

    synapse-pipelines step blocks --stage plan --results-key K
    synapse-pipelines step blocks --stage covariance --block 17 --results-key K

The stages, their order and which take ``--block``: :mod:`synapse_pipelines.blockwise.stages`.
User errors are recorded for the failure notification (under the stage's workflow step) and
exit with status 2 (not retried by Batch), exactly like the other step commands.
"""

from __future__ import annotations

import os
import sys

import typer

from synapse_pipelines.blockwise.stages import DETECT, MAP_STAGES, STAGE_NAMES, find_stage
from synapse_pipelines.cli.step_commands import step_app
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.run_record import record_step_error


def blocks(
    stage: str = typer.Option(..., "--stage", help=f"One of: {', '.join(STAGE_NAMES)}."),
    results_key: str = typer.Option(..., "--results-key", help="The request's results key."),
    block: str = typer.Option(
        "-", "--block", help=f"Block index or range i0-i1 ({', '.join(MAP_STAGES)})."
    ),
    bucket: str | None = typer.Option(
        None,
        "--bucket",
        help=f"Results bucket (default: ${wf.ENV_RESULTS_BUCKET}).",
        show_default=False,
    ),
) -> None:
    """Run one stage of the blockwise Detect (one Batch job of the Distributed Map flow)."""
    # start-up time: the blockwise job loads numpy, scipy and zarr, which no other command needs
    from synapse_pipelines.workflow.blockwise_job import BlockwiseJob

    name = bucket or os.environ.get(wf.ENV_RESULTS_BUCKET)
    if not name:
        raise SynapsePipelinesError(
            "no results bucket given",
            field="--bucket",
            hint=f"pass --bucket or set {wf.ENV_RESULTS_BUCKET}",
        )
    # recorded under the step DescribeFailure looks in for this job's error
    found = find_stage(stage)
    step = wf.BATCH_JOBS[found.workflow_step if found else DETECT].step
    try:
        job = BlockwiseJob(name, results_key, log=lambda m: print(m, flush=True))
        result = job.run_stage(stage, None if block in ("-", "") else block)
    except SynapsePipelinesError as exc:
        record_step_error(None, name, results_key, step, exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(wf.USER_ERROR_EXIT_CODE) from None
    print(f"blocks {stage} done: {result}", flush=True)


def register(app: typer.Typer) -> None:
    """Add ``blocks`` to the ``step`` command group (the container's step commands)."""
    step_app.command("blocks")(blocks)
