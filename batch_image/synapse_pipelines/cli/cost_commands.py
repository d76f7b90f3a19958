"""``synapse-pipelines estimate REQUEST [--region R]``: what a request will cost, before it runs.

It plans the request as ValidateRequest and the plan stage would (one job on the standard
queue, one large-memory job, or N blocks of a block shape; the deployed default job sizes,
overridden by ``DETECT_MEMORY_MIB``/``LARGE_DETECT_MEMORY_MIB`` and the
``SYNAPSE_BLOCKWISE_*`` settings in the environment) and prices it from the dated price table
of ``synapse_pipelines.core.pricing``: the jobs' vCPU-hours and GiB-hours, Batch on Fargate
Spot or EC2 Spot, Step Functions, Lambda, S3 and the NAT gateway. Nothing contacts AWS.
Detect pulls every image channel of the experiment: ``--channels`` / ``--channel-bytes`` give
them; else, with a BOSS token at hand (``BOSS_TOKEN``), they are counted on BOSS as
ValidateRequest counts them; else collman15v2's 13 uint8 channels are assumed, and the
estimate says so (:func:`pulled_channels`). ``--budget`` checks the estimate against a cap as
ValidateRequest does with ``SYNAPSE_PIPELINES_BUDGET_USD``. ``submit --dry-run`` prints the
same (:func:`print_estimate`). Both first check the pipeline parameters with ValidateRequest's
own check (:func:`~synapse_pipelines.core.pipelines.checked_parameters`), so a request the
workflow would refuse is refused here with the same message; with a BOSS token at hand they
also run the Detect job's first check (:func:`check_detector_on_boss`: can the pipeline run
at the voxel size of the request's resolution level?), so a run that would pull its channels
and then fail is refused before it is priced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from synapse_pipelines.core.boss_token import BOSS_TOKEN_ENV
from synapse_pipelines.core.budget import ENV_BUDGET_USD, check_budget, parse_budget
from synapse_pipelines.core.cost_estimate import CostEstimate, usd
from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import voxel_size_nanometers
from synapse_pipelines.core.pipelines import checked_parameters
from synapse_pipelines.core.pricing import DEFAULT_REGION, known_regions, price_table
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.workflow.job_costs import estimate_request
from synapse_pipelines.workflow.resolution_check import check_detectable

if TYPE_CHECKING:  # the client itself is imported only when a token is at hand (start-up)
    from synapse_pipelines.io.boss_client import BossClient

#: Image channels assumed when neither --channels nor BOSS says: collman15v2's 13 (uint8).
DEFAULT_CHANNELS = 13

CHANNELS = typer.Option(
    None,
    "--channels",
    min=2,
    help="Image channels of the experiment (Detect pulls every one). Default: counted on "
    "BOSS when BOSS_TOKEN is set, else 13 (collman15v2's) assumed.",
    show_default=False,
)
CHANNEL_BYTES = typer.Option(
    None,
    "--channel-bytes",
    min=1,
    max=8,
    help="Bytes per voxel of a channel (uint8: 1, uint16: 2). Default: BOSS's, else 1.",
    show_default=False,
)


def boss_at_hand(request: SynapseRequest, environ: Mapping[str, str]) -> BossClient | None:
    """A BOSS client for the request's host when a token is at hand (``BOSS_TOKEN``, or the
    request's literal token of a local run), else None. Building it contacts nothing."""
    token = environ.get(BOSS_TOKEN_ENV) or (
        request.token.get_secret_value() if request.token is not None else ""
    )
    if not token:
        return None
    # start-up time: the BOSS client loads intern (~0.3 s); only the estimate's lookups need it
    from synapse_pipelines.io.boss_client import BossClient

    return BossClient.for_request(request, token)


def check_detector_on_boss(request: SynapseRequest, boss: BossClient | None) -> None:
    """The Detect job's first check, before an estimate: the request's pipeline at the voxel
    size of its resolution level (:func:`~synapse_pipelines.workflow.resolution_check.
    check_detectable`). Raises Detect's DetectionError (field ``resolution``, the level that
    would run) where Detect would fail after pulling the channels (collman15v2 at level 0).
    It needs the level's voxel size from BOSS: without a client (no token), or when BOSS
    does not answer, nothing is checked here (Detect still checks before it reads)."""
    if boss is None:
        return
    try:
        frame = boss.coordinate_frame(request.collection, request.experiment, request.resolution)
    except BossError:  # offline or refused: the channel count says why it assumes
        return
    check_detectable(
        request.pipeline,
        checked_parameters(request),
        request.box,
        voxel_size_nanometers(frame.voxel_size, frame.voxel_unit),
        request.resolution,
    )


def pulled_channels(
    request: SynapseRequest,
    channels: int | None,
    channel_bytes: int | None,
    boss: BossClient | None,
) -> tuple[int, float, str]:
    """How many image channels Detect will pull, bytes per voxel of one, and where that came
    from: ``--channels``; else the experiment's image channels counted on BOSS as
    ValidateRequest counts them, when a client is at hand (:func:`boss_at_hand`); else
    collman15v2's 13 uint8 channels, said to be assumed."""
    if channels is None and boss is not None:
        # loaded with the client (boss_at_hand): intern is imported by now
        from synapse_pipelines.io.boss_client import bytes_per_voxel, image_channels

        try:
            names = image_channels(boss, request.collection, request.experiment)
            voxel = bytes_per_voxel(boss, request.collection, request.experiment, names)
        except BossError as exc:  # an estimate is still useful offline: say why it assumes
            return (
                DEFAULT_CHANNELS,
                channel_bytes or 1,
                f"assumed, collman15v2's: BOSS could not count them ({exc.message}); "
                "give --channels N",
            )
        per_channel = voxel / max(len(names), 1) if channel_bytes is None else channel_bytes
        where = f"{request.collection}/{request.experiment}'s image channels, on BOSS"
        return len(names), per_channel, where
    if channels is not None:
        return channels, channel_bytes or 1, "--channels"
    return (
        DEFAULT_CHANNELS,
        channel_bytes or 1,
        f"assumed, collman15v2's; give --channels N or set {BOSS_TOKEN_ENV} to count them",
    )


def request_estimate(
    request: SynapseRequest,
    *,
    region: str | None,
    channels: int | None = None,
    channel_bytes: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> CostEstimate:
    """The estimate of ``request`` at ``region``'s prices (default us-east-1; an unknown
    region is a clear error naming ``--region``), pulling :func:`pulled_channels`, once
    :func:`check_detector_on_boss` has found nothing Detect would refuse."""
    env = os.environ if environ is None else environ
    prices = price_table(region or DEFAULT_REGION, field="--region")
    boss = boss_at_hand(request, env)
    check_detector_on_boss(request, boss)
    count, per_channel, source = pulled_channels(request, channels, channel_bytes, boss)
    cost = estimate_request(
        request, prices, channels=count, bytes_per_channel=per_channel, environ=env
    )
    return replace(cost, channels_source=source)


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
        channels: int | None = CHANNELS,
        channel_bytes: int | None = CHANNEL_BYTES,
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
