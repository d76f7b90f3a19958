"""``synapse-pipelines estimate REQUEST [--region R]``: what a request will cost, before it runs.

It plans the request as ValidateRequest and the plan stage would (one job on the standard
queue, one large-memory job, or N blocks of a block shape; the deployed default job sizes,
overridden by ``DETECT_MEMORY_MIB``/``LARGE_DETECT_MEMORY_MIB`` and the
``SYNAPSE_BLOCKWISE_*`` settings in the environment) and prices it from the dated price table
of ``synapse_pipelines.core.pricing``: the jobs' vCPU-hours and GiB-hours, Batch on Fargate
Spot or EC2 Spot, Step Functions, Lambda, S3 and the NAT gateway. Nothing contacts AWS or
BOSS: the channels pulled are given (``--channels``, ``--channel-bytes``; collman15v2 has 13
uint8 image channels). ``--budget`` checks the estimate against a cap exactly as
ValidateRequest does with ``SYNAPSE_PIPELINES_BUDGET_USD``. ``submit --dry-run`` prints the
same (:func:`print_estimate`). Both first check the pipeline parameters with ValidateRequest's
own check (:func:`~synapse_pipelines.core.pipelines.checked_parameters`), so a request the
workflow would refuse is refused here with the same message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import typer

from synapse_pipelines.core.budget import ENV_BUDGET_USD, check_budget, parse_budget
from synapse_pipelines.core.cost_estimate import CostEstimate, usd
from synapse_pipelines.core.pipelines import checked_parameters
from synapse_pipelines.core.pricing import DEFAULT_REGION, known_regions, price_table
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.workflow.job_costs import estimate_request

#: Image channels Detect pulls when nothing else is said: collman15v2's 13 (uint8).
DEFAULT_CHANNELS = 13

CHANNELS = typer.Option(
    DEFAULT_CHANNELS,
    "--channels",
    min=2,
    help="Image channels of the experiment (Detect pulls every one; collman15v2: 13).",
)
CHANNEL_BYTES = typer.Option(
    1, "--channel-bytes", min=1, max=8, help="Bytes per voxel of a channel (uint8: 1, uint16: 2)."
)


def request_estimate(
    request: SynapseRequest,
    *,
    region: str | None,
    channels: int = DEFAULT_CHANNELS,
    channel_bytes: int = 1,
    environ: Mapping[str, str] | None = None,
) -> CostEstimate:
    """The estimate of ``request`` at ``region``'s prices (default us-east-1; an unknown
    region is a clear error naming ``--region``)."""
    return estimate_request(
        request,
        price_table(region or DEFAULT_REGION, field="--region"),
        channels=channels,
        bytes_per_channel=channel_bytes,
        environ=os.environ if environ is None else environ,
    )


def print_estimate(request: SynapseRequest, cost: CostEstimate, budget: float | None) -> None:
    """The estimate as text, then the budget check (an estimate above it exits 2 with the
    estimate, the cap and the fixes)."""
    typer.echo(f"request: {request.results_key}")
    for line in cost.lines():
        typer.echo(line)
    check_budget(cost, budget, source="--budget")
    if budget is not None:
        typer.echo(f"within the budget cap of {usd(budget)}")


def register(app: typer.Typer) -> None:
    """Add estimate."""

    @app.command()
    def estimate(
        request_file: Path = typer.Argument(..., help="JSON request (see docs/aws.md)."),
        region: str = typer.Option(
            DEFAULT_REGION,
            "--region",
            help=f"AWS region whose prices to use ({', '.join(known_regions())}).",
        ),
        channels: int = CHANNELS,
        channel_bytes: int = CHANNEL_BYTES,
        budget: str | None = typer.Option(
            None,
            "--budget",
            help=f"Refuse above this many USD, as ValidateRequest does with {ENV_BUDGET_USD}.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
    ) -> None:
        """Print a request's plan, vCPU-hours and GiB-hours, and each service's cost."""
        request = parse_request(request_file)
        checked_parameters(request)  # what ValidateRequest refuses, with its message
        cap = parse_budget(budget, field="--budget")
        cost = request_estimate(
            request, region=region, channels=channels, channel_bytes=channel_bytes
        )
        if as_json:
            check_budget(cost, cap, source="--budget")
            typer.echo(json.dumps(cost.record(), indent=2))
            return
        print_estimate(request, cost, cap)
