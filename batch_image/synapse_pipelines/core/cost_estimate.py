"""What a request will cost, before it runs: its Batch jobs, their vCPU-hours and GiB-hours,
and each service's share, priced by :mod:`.pricing`.

Input: a :class:`WorkPlan` (the Detect mode :func:`~.sizing.choose_detect_mode` chose, the
box, the channels pulled and, for a blockwise run, the block grid of
``blockwise.plan.plan_request``; ``workflow.job_costs.work_plan`` builds it, since core
cannot import the planner). :func:`estimate` turns it into job groups (one per Batch task
of the state machine, named by the job-name prefix the ASL gives those jobs), their hours
from the throughput figures below, and a :class:`CostEstimate` with the cost of Batch
(Fargate Spot or EC2 Spot, whichever the plan uses), Step Functions, Lambda, S3 and the NAT
gateway the BOSS traffic crosses. :mod:`.budget` refuses an estimate above the deployment's
cap.

The throughput figures come from the project's benchmarks, reduced to what AWS is assumed
to sustain; docs/costs.md explains each and how far to trust the result (a factor of two).
numpy-free: ValidateRequest's Lambda runs the budget check.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from synapse_pipelines.core.pricing import EC2_SPOT, FARGATE_SPOT, PLATFORM_NAMES, PriceTable
from synapse_pipelines.core.sizing import ENV_DETECT_MEMORY_MIB, ENV_LARGE_DETECT_MEMORY_MIB

# -- throughput and sizes (the project's benchmarks; docs/costs.md) ---------------------------

#: Detection voxels per second of one job. The kernels run on one core whatever the job's
#: vCPUs, so this is one vCPU's rate: measured 87-112 Mvoxel/s for ``detect()``
#: (docs/detection.md, benchmarks/bench_detection.py) and 72 Mvoxel/s for the blockwise
#: detection passes (docs/scale.md, benchmarks/bench_blockwise.py) on the development
#: machine; docs/scale.md assumes 25 Mvoxel/s per vCPU on AWS (BOSS decoding, S3 writes,
#: Spot noise), used here.
DETECT_VOXELS_PER_S = 25e6
#: Share of the blockwise detection time spent in the label pass (bench_blockwise: label
#: 0.86 s of the 3.67 s detection passes); the rest is the covariance pass.
LABEL_SHARE = 0.25
#: The synapse table, channel-voxels per second: 209 M measured (docs/outputs.md,
#: benchmarks/bench_features.py); docs/scale.md assumes 100 M per vCPU for finalize.
TABLE_CHANNEL_VOXELS_PER_S = 100e6
#: Writing the result volumes: the single job's table + OME-TIFF writing took ~7 s for
#: 268 Mvoxel (docs/scale.md benchmark), ~4.5 s of it writing: ~60 Mvoxel/s; assumed 50.
WRITE_VOXELS_PER_S = 50e6
#: BOSS transfer of one job, pulls and pushes: docs/scale.md assumes 50 MB/s per job from
#: the real BOSS (the loopback benchmark, docs/boss.md, reaches ~1,000 MB/s: not the internet).
BOSS_BYTES_PER_S = 50e6
#: A push sends the uint8 mask and the uint64 ids: 9 bytes per voxel before compression,
#: on the wire (what the NAT gateway counts) mostly zeros: ~0.5 % foreground
#: (docs/scale.md) x 9 B, doubled for blosc's overhead: 0.1 B.
PUSH_BYTES_PER_VOXEL = 9
PUSH_WIRE_BYTES_PER_VOXEL = 0.1
#: Per job: Batch starting the container (Fargate bills from the image download), the
#: interpreter and the numba cache (10.5 s, docs/aws.md): assumed 60 s.
JOB_START_S = 60.0
#: A blockwise setup or reduce stage (plan, threshold, stitch, merge, publish-prepare) reads
#: kilobytes per block: assumed 60 s of work each.
REDUCE_STAGE_S = 60.0
#: Report: 100,000 synapses x 12 features in 4.2 s (README, benchmarks/bench_report.py);
#: synapses per voxel assumed 1e-4 (the blockwise benchmark volume: 6.7e-5); at least 30 s.
REPORT_S_PER_SYNAPSE = 4.2e-5
SYNAPSES_PER_VOXEL = 1e-4
REPORT_MIN_S = 30.0

#: Step Functions transitions of a successful run: the states on its path (a test counts
#: them in the ASL), and per Distributed Map item (a child execution: start, task, end;
#: docs/scale.md), four Maps in a blockwise run (covariance, label, finalize, publish).
SINGLE_JOB_TRANSITIONS = 12
BLOCKWISE_TRANSITIONS = 20
TRANSITIONS_PER_MAP_ITEM = 3
BLOCKWISE_MAPS = 4
#: Lambda: ValidateRequest and PublishToS3, 512 MB each (workflow.wiring), ~5 s each.
LAMBDA_REQUESTS = 2
LAMBDA_GB_SECONDS = 2 * 0.5 * 5.0
#: S3 requests: a single run writes and reads ~25 objects; a blockwise run ~14 PUTs per block
#: (docs/scale.md) and as many GETs, plus the single run's.
SINGLE_JOB_S3_REQUESTS = 25
S3_REQUESTS_PER_BLOCK = 14
#: Stored for a month: the single job's results ~1.5 B/voxel (docs/aws.md); a blockwise
#: run's result chunks ~0.01 B/voxel plus its intermediates (candidates <= 0.32 B/voxel,
#: docs/scale.md) until a lifecycle rule removes them.
SINGLE_JOB_STORED_BYTES_PER_VOXEL = 1.5
BLOCKWISE_STORED_BYTES_PER_VOXEL = 0.33

#: The Batch steps of a run, by the job-name prefix the ASL gives their jobs
#: (``<step>-<stem>``); a map step's jobs add their block (``detect-bc-17-<stem>``). A test
#: checks them against the ASL's ``JobName`` formats.
ONCE_STEPS: tuple[str, ...] = (
    "detect", "report", "publish-boss",
    "detect-bp", "detect-bt", "detect-bs", "detect-bm", "publish-bp", "publish-bd",
)  # fmt: skip
MAP_STEPS: tuple[str, ...] = ("detect-bc", "detect-bl", "detect-bf", "publish-bb")

# -- deployed job sizes ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSize:
    """vCPU, memory and platform of one kind of Batch job."""

    vcpu: float
    memory_mib: int
    platform: str = FARGATE_SPOT  # pricing.FARGATE_SPOT or pricing.EC2_SPOT

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    def __str__(self) -> str:
        return f"{self.vcpu:g} vCPU / {self.memory_gib:g} GiB"


#: The deployed sizes by ``BatchJobSpec.size`` (cdk.json ``detectJob``, ``largeDetectJob``,
#: ``reportJob``, ``publishJob``; a test keeps them equal). The blockwise stages run with the
#: ``detect`` size.
DEFAULT_JOB_SIZES: dict[str, JobSize] = {
    "detect": JobSize(4, 30720),
    "large": JobSize(32, 245760, EC2_SPOT),
    "report": JobSize(2, 8192),
    "publish": JobSize(2, 16384),
}
#: cdk.json ``largeInstanceClasses``.
DEFAULT_LARGE_INSTANCE_CLASSES: tuple[str, ...] = ("r6i", "r5")


def deployed_job_sizes(environ: Mapping[str, str]) -> dict[str, JobSize]:
    """The default sizes, with the Detect memories ValidateRequest's environment gives."""
    sizes = dict(DEFAULT_JOB_SIZES)
    for name, var in (("detect", ENV_DETECT_MEMORY_MIB), ("large", ENV_LARGE_DETECT_MEMORY_MIB)):
        if environ.get(var):
            sizes[name] = JobSize(sizes[name].vcpu, int(environ[var]), sizes[name].platform)
    return sizes


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkPlan:
    """What the estimate needs to know of a planned run."""

    mode: str  # one of core.sizing.DETECT_MODES
    shape: tuple[int, int, int]  # the request box (z, y, x)
    channels: int  # image channels pulled (Detect and finalize pull every channel)
    bytes_per_channel: float = 1.0  # bytes per voxel of one channel (uint8: 1)
    n_blocks: int = 1
    block_shape: tuple[int, int, int] | None = None
    grid_shape: tuple[int, int, int] | None = None
    padded_block_voxels: int = 0  # one full block with its halo and shell (what it reads)
    blocks_per_item: int = 1

    @property
    def voxel_count(self) -> int:
        return math.prod(self.shape)

    @property
    def n_items(self) -> int:
        """Jobs per Distributed Map (one per item of ``blocks_per_item`` blocks)."""
        return -(-self.n_blocks // self.blocks_per_item)

    def describe(self, sizes: Mapping[str, JobSize]) -> str:
        if self.mode == "blockwise" and self.block_shape is not None:
            grid = " x ".join(str(n) for n in self.grid_shape or ())
            per_item = f", {self.blocks_per_item} per job" if self.blocks_per_item > 1 else ""
            return (
                f"blockwise: {self.n_blocks:,} blocks of "
                f"{' x '.join(str(n) for n in self.block_shape)} (z, y, x; grid {grid}"
                f"{per_item}) on Distributed Maps, block jobs {sizes['detect']} "
                f"({PLATFORM_NAMES[sizes['detect'].platform]})"
            )
        size = sizes["large" if self.mode == "large" else "detect"]
        queue = "large-memory queue" if self.mode == "large" else "standard queue"
        return f"one Detect job on the {queue}: {size} ({PLATFORM_NAMES[size.platform]})"


# -- the estimate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobGroup:
    """Jobs of one Batch task of the state machine (``step``: its job-name prefix)."""

    step: str
    what: str
    jobs: int
    seconds: float  # all its jobs together
    size: JobSize

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def vcpu_hours(self) -> float:
        return self.hours * self.size.vcpu

    @property
    def gib_hours(self) -> float:
        return self.hours * self.size.memory_gib

    def cost(self, prices: PriceTable, classes: tuple[str, ...]) -> float:
        return self.hours * job_hour_price(self.size, prices, classes)


def job_hour_price(size: JobSize, prices: PriceTable, classes: tuple[str, ...]) -> float:
    """What one job of ``size`` pays per hour on its platform."""
    if size.platform == EC2_SPOT:
        return prices.ec2_job_hour(size.vcpu, size.memory_gib, classes)
    return prices.fargate_job_hour(size.vcpu, size.memory_gib)


@dataclass(frozen=True)
class CostEstimate:
    """A planned run's jobs and what each service charges for it (USD)."""

    plan: WorkPlan
    prices: PriceTable
    sizes: Mapping[str, JobSize]
    large_instance_classes: tuple[str, ...]
    groups: tuple[JobGroup, ...]
    transitions: int
    s3_puts: int
    s3_gets: int
    s3_gb_months: float
    nat_gb: float
    #: where the number of channels pulled came from (``estimate``: BOSS, --channels, assumed)
    channels_source: str | None = None

    def platform_cost(self, platform: str) -> float:
        return sum(
            g.cost(self.prices, self.large_instance_classes)
            for g in self.groups
            if g.size.platform == platform
        )

    @property
    def batch_usd(self) -> float:
        return sum(g.cost(self.prices, self.large_instance_classes) for g in self.groups)

    @property
    def vcpu_hours(self) -> float:
        return sum(g.vcpu_hours for g in self.groups)

    @property
    def gib_hours(self) -> float:
        return sum(g.gib_hours for g in self.groups)

    @property
    def step_functions_usd(self) -> float:
        return self.transitions * self.prices.sfn_transition

    @property
    def lambda_usd(self) -> float:
        p = self.prices
        return LAMBDA_REQUESTS * p.lambda_request + LAMBDA_GB_SECONDS * p.lambda_gb_second

    @property
    def s3_usd(self) -> float:
        p = self.prices
        return self.s3_puts * p.s3_put + self.s3_gets * p.s3_get + self.s3_gb_months * p.s3_gb_month

    @property
    def nat_usd(self) -> float:
        return self.nat_gb * self.prices.nat_gb

    @property
    def services(self) -> dict[str, float]:
        """Cost per service, Batch split by platform (only those the plan uses)."""
        out = {
            f"batch_{platform.replace('-', '_')}": self.platform_cost(platform)
            for platform in (FARGATE_SPOT, EC2_SPOT)
            if any(g.size.platform == platform for g in self.groups)
        }
        out["step_functions"] = self.step_functions_usd
        out["lambda"] = self.lambda_usd
        out["s3"] = self.s3_usd
        out["nat_gateway"] = self.nat_usd
        return out

    @property
    def total_usd(self) -> float:
        return sum(self.services.values())

    def group(self, step: str) -> JobGroup | None:
        return next((g for g in self.groups if g.step == step), None)

    def record(self) -> dict[str, object]:
        """A compact JSON form (the validated request keeps it; the manifest shows it)."""
        classes = self.large_instance_classes
        return {
            "plan": self.plan.describe(self.sizes),
            "mode": self.plan.mode,
            "n_blocks": self.plan.n_blocks,
            "channels": self.plan.channels,
            "bytes_per_channel": self.plan.bytes_per_channel,
            "vcpu_hours": round(self.vcpu_hours, 4),
            "gib_hours": round(self.gib_hours, 4),
            "jobs": [
                {
                    "step": g.step,
                    "jobs": g.jobs,
                    "seconds": round(g.seconds, 1),
                    "vcpu": g.size.vcpu,
                    "memory_mib": g.size.memory_mib,
                    "platform": g.size.platform,
                    "usd": round(g.cost(self.prices, classes), 6),
                }
                for g in self.groups
            ],
            "services_usd": {k: round(v, 6) for k, v in self.services.items()},
            "total_usd": round(self.total_usd, 6),
            "price_table": self.prices.record(),
        }

    def lines(self) -> list[str]:
        """The estimate as text: plan, jobs, hours, each service, total, prices."""
        p, classes = self.plan, self.large_instance_classes
        out = [
            textwrap.fill(
                p.describe(self.sizes), WIDTH, initial_indent="plan:    ", subsequent_indent=" " * 9
            ),
            f"volume:  {' x '.join(str(n) for n in p.shape)} = {p.voxel_count:,} voxels, "
            f"{p.channels} channels x {p.bytes_per_channel:g} byte pulled"
            + (f" ({self.channels_source})" if self.channels_source else ""),
            f"prices:  {self.prices.region}, price table of {self.prices.date} "
            "(Spot prices assumed; docs/costs.md)",
            "",
            _row("Batch jobs", "jobs", "hours", "vCPU-h", "GiB-h", "cost"),
        ]
        for g in self.groups:
            out.append(
                _row(
                    f"  {g.step}  {g.what}",
                    g.jobs,
                    g.hours,
                    g.vcpu_hours,
                    g.gib_hours,
                    usd(g.cost(self.prices, classes)),
                )
            )
        for platform in (FARGATE_SPOT, EC2_SPOT):
            chosen = [g for g in self.groups if g.size.platform == platform]
            if chosen:
                out.append(
                    _row(
                        f"  Batch on {PLATFORM_NAMES[platform]}",
                        sum(g.jobs for g in chosen),
                        sum(g.hours for g in chosen),
                        sum(g.vcpu_hours for g in chosen),
                        sum(g.gib_hours for g in chosen),
                        usd(self.platform_cost(platform)),
                    )
                )
        gets = f"{self.s3_puts:,} PUT, {self.s3_gets:,} GET, {self.s3_gb_months:,.2f} GB-month"
        rows = (
            ("Step Functions", f"{self.transitions:,} state transitions", self.step_functions_usd),
            ("Lambda", f"{LAMBDA_REQUESTS} requests, {LAMBDA_GB_SECONDS:g} GB-s", self.lambda_usd),
            ("S3", gets, self.s3_usd),
            ("NAT gateway", f"{self.nat_gb:,.1f} GB to and from BOSS", self.nat_usd),
        )
        out.append("")
        out += [f"{name:<16}{what:<{WIDTH - 27}}{usd(cost):>11}" for name, what, cost in rows]
        out.append(f"{'total':<{WIDTH - 11}}{usd(self.total_usd):>11}")
        return out


#: Width of the estimate's text (:meth:`CostEstimate.lines`).
WIDTH = 92


def _row(name: str, jobs: object, hours: object, vcpu_h: object, gib_h: object, cost: str) -> str:
    """One line of the jobs table: numbers right-aligned under their headings."""

    def num(value: object, spec: str) -> str:
        return value if isinstance(value, str) else format(value, spec)  # type: ignore[return-value]

    return (
        f"{name:<{WIDTH - 47}}{num(jobs, ',d'):>7}{num(hours, ',.2f'):>9}"
        f"{num(vcpu_h, ',.2f'):>10}{num(gib_h, ',.1f'):>10}{cost:>11}"
    )


def usd(value: float) -> str:
    """Dollars with the precision a small amount needs."""
    if value < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}" if value < 1000 else f"${value:,.0f}"


def _single_groups(plan: WorkPlan, sizes: Mapping[str, JobSize]) -> list[JobGroup]:
    voxels = plan.voxel_count
    pull = voxels * plan.channels * plan.bytes_per_channel / BOSS_BYTES_PER_S
    work = (
        voxels / DETECT_VOXELS_PER_S
        + voxels * plan.channels / TABLE_CHANNEL_VOXELS_PER_S
        + voxels / WRITE_VOXELS_PER_S
    )
    detect = sizes["large" if plan.mode == "large" else "detect"]
    push = voxels * PUSH_BYTES_PER_VOXEL / BOSS_BYTES_PER_S
    return [
        JobGroup("detect", "pull, detect, table", 1, JOB_START_S + pull + work, detect),
        _report_group(voxels, sizes),
        JobGroup("publish-boss", "push to BOSS", 1, JOB_START_S + push, sizes["publish"]),
    ]


def _report_group(voxels: int, sizes: Mapping[str, JobSize]) -> JobGroup:
    seconds = max(REPORT_MIN_S, voxels * SYNAPSES_PER_VOXEL * REPORT_S_PER_SYNAPSE)
    return JobGroup("report", "HTML report", 1, JOB_START_S + seconds, sizes["report"])


def _blockwise_groups(plan: WorkPlan, sizes: Mapping[str, JobSize]) -> list[JobGroup]:
    size = sizes["detect"]  # the Blockwise job definition has the Detect size
    voxels, items = plan.voxel_count, plan.n_items
    block = plan.block_shape or plan.shape
    # reads with halo and shell: the full block's ratio, applied to every (edge) block
    halo_ratio = plan.padded_block_voxels / math.prod(block) if plan.padded_block_voxels else 1.0
    detection = voxels * halo_ratio / DETECT_VOXELS_PER_S
    covariance_read = voxels * halo_ratio * 2 * plan.bytes_per_channel / BOSS_BYTES_PER_S
    finalize = (
        voxels * plan.channels * plan.bytes_per_channel / BOSS_BYTES_PER_S
        + voxels * plan.channels / TABLE_CHANNEL_VOXELS_PER_S
        + voxels / WRITE_VOXELS_PER_S
    )
    push = voxels * PUSH_BYTES_PER_VOXEL / BOSS_BYTES_PER_S
    start = items * JOB_START_S

    def once(step: str, what: str) -> JobGroup:
        return JobGroup(step, what, 1, JOB_START_S + REDUCE_STAGE_S, size)

    return [
        once("detect-bp", "plan"),
        JobGroup(
            "detect-bc",
            "covariance: 2 channels + halo",
            items,
            start + covariance_read + (1 - LABEL_SHARE) * detection,
            size,
        ),
        once("detect-bt", "threshold"),
        JobGroup("detect-bl", "label", items, start + LABEL_SHARE * detection, size),
        once("detect-bs", "stitch"),
        JobGroup("detect-bf", "finalize: all channels, table", items, start + finalize, size),
        once("detect-bm", "merge"),
        _report_group(voxels, sizes),
        once("publish-bp", "create BOSS channels"),
        JobGroup("publish-bb", "push to BOSS", items, start + push, size),
        once("publish-bd", "start BOSS downsampling"),
    ]


def estimate(
    plan: WorkPlan,
    prices: PriceTable,
    *,
    sizes: Mapping[str, JobSize] | None = None,
    large_instance_classes: tuple[str, ...] = DEFAULT_LARGE_INSTANCE_CLASSES,
) -> CostEstimate:
    """The cost of running ``plan`` at ``prices`` with the deployed job ``sizes``."""
    sizes = dict(sizes or DEFAULT_JOB_SIZES)
    for name in large_instance_classes:
        prices.ec2_class(name)  # an unknown class is an error even if no job uses it
    voxels = plan.voxel_count
    pulled = voxels * plan.channels * plan.bytes_per_channel
    if plan.mode == "blockwise":
        groups = _blockwise_groups(plan, sizes)
        block = plan.block_shape or plan.shape
        halo_ratio = plan.padded_block_voxels / math.prod(block) if plan.padded_block_voxels else 1
        pulled += voxels * halo_ratio * 2 * plan.bytes_per_channel  # the covariance reads
        transitions = (
            BLOCKWISE_TRANSITIONS + BLOCKWISE_MAPS * TRANSITIONS_PER_MAP_ITEM * plan.n_items
        )
        requests = SINGLE_JOB_S3_REQUESTS + S3_REQUESTS_PER_BLOCK * plan.n_blocks
        stored = voxels * BLOCKWISE_STORED_BYTES_PER_VOXEL
    else:
        groups = _single_groups(plan, sizes)
        transitions = SINGLE_JOB_TRANSITIONS
        requests = SINGLE_JOB_S3_REQUESTS
        stored = voxels * SINGLE_JOB_STORED_BYTES_PER_VOXEL
    return CostEstimate(
        plan=plan,
        prices=prices,
        sizes=sizes,
        large_instance_classes=tuple(large_instance_classes),
        groups=tuple(groups),
        transitions=transitions,
        s3_puts=requests,
        s3_gets=requests,
        s3_gb_months=stored / 1e9,
        nat_gb=(pulled + voxels * PUSH_WIRE_BYTES_PER_VOXEL) / 1e9,
    )
