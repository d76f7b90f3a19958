"""The Batch jobs of one request and what they cost: planned before the run, measured after.

Before (ValidateRequest's budget check, ``synapse-pipelines estimate`` and ``submit
--dry-run``): :func:`work_plan` plans the request the way the run will (the Detect mode,
and for a blockwise run the blocks ``blockwise.plan.plan_request`` cuts, with the settings
``BlockwiseJob.make_plan`` reads) and :func:`estimate_request` prices it
(:func:`synapse_pipelines.core.cost_estimate.estimate`).

After (PublishToS3, :func:`run_costs`): :func:`find_request_jobs` lists the request's jobs
with ListJobs on the job queues, by the job-name stem every job of the request ends with
(``run_names.job_name_stem``; the ASL names them ``<step>-[<block>-]<stem>``), created since
the run was validated, and DescribeJobs gives each one's attempts. :func:`job_cost` turns
a job's ``startedAt``/``stoppedAt`` (per attempt: a Spot-reclaimed attempt was paid for
too) and its vCPU and memory into hours and USD. A job without both times (still running:
PublishToS3 runs alongside PublishToBoss) gets ``duration_s: null`` and a note, never a
guess; the run's total then counts the validation-time estimate for it, and says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from synapse_pipelines.blockwise.plan import (
    DEFAULT_HALO,
    DEFAULT_JOB_MEMORY_BYTES,
    padded_voxels,
    plan_request,
)
from synapse_pipelines.core.cost_estimate import (
    DEFAULT_LARGE_INSTANCE_CLASSES,
    MAP_STEPS,
    ONCE_STEPS,
    CostEstimate,
    JobSize,
    WorkPlan,
    deployed_job_sizes,
    estimate,
    job_hour_price,
)
from synapse_pipelines.core.geometry import CUBOID_SHAPE, parse_zyx
from synapse_pipelines.core.pricing import EC2_SPOT, FARGATE_SPOT, PriceTable
from synapse_pipelines.core.request import SynapseRequest
from synapse_pipelines.core.sizing import (
    ENV_ALIGNMENT,
    ENV_BLOCK_SHAPE,
    ENV_BLOCKS_PER_ITEM,
    ENV_DETECT_MEMORY_MIB,
    ENV_JOB_MEMORY_MIB,
    ENV_LARGE_DETECT_MEMORY_MIB,
    choose_detect_mode,
)

#: Working bytes per block voxel the blockwise planner budgets
#: (``blockwise.nomads.BYTES_PER_VOXEL``, which imports the science stack; a test keeps the
#: two equal).
BLOCKWISE_BYTES_PER_VOXEL = 24

# -- before the run ----------------------------------------------------------------------------


def _shape(environ: Mapping[str, str], name: str) -> tuple[int, int, int] | None:
    text = environ.get(name)
    return parse_zyx(text, field=name) if text else None


def work_plan(
    request: SynapseRequest,
    *,
    channels: int,
    bytes_per_channel: float,
    environ: Mapping[str, str],
    mode: str | None = None,
) -> WorkPlan:
    """How the run will go: ``mode`` (default: what ValidateRequest would choose with the
    deployed job sizes) and, for a blockwise run, the block grid of the plan stage."""
    sizes = deployed_job_sizes(environ)
    env = {
        ENV_DETECT_MEMORY_MIB: str(sizes["detect"].memory_mib),
        ENV_LARGE_DETECT_MEMORY_MIB: str(sizes["large"].memory_mib),
        **environ,
    }
    if mode is None:
        mode = choose_detect_mode(request, math.ceil(channels * bytes_per_channel), env)
    common = {"shape": request.box.shape, "channels": channels}
    if mode != "blockwise":
        return WorkPlan(mode=mode, bytes_per_channel=bytes_per_channel, **common)
    memory_mib = env.get(ENV_JOB_MEMORY_MIB)
    plan = plan_request(  # the arguments of BlockwiseJob.make_plan
        request.box,
        mode="blockwise",
        block_shape=_shape(env, ENV_BLOCK_SHAPE),
        alignment=_shape(env, ENV_ALIGNMENT) or CUBOID_SHAPE,
        halo=DEFAULT_HALO,
        memory_bytes=int(memory_mib) * 2**20 if memory_mib else DEFAULT_JOB_MEMORY_BYTES,
        bytes_per_voxel=BLOCKWISE_BYTES_PER_VOXEL,
    )
    return WorkPlan(
        mode=mode,
        bytes_per_channel=bytes_per_channel,
        n_blocks=plan.n_blocks,
        block_shape=plan.block_shape,
        grid_shape=plan.grid_shape,
        padded_block_voxels=padded_voxels(plan.block_shape, plan.halo),
        blocks_per_item=int(env.get(ENV_BLOCKS_PER_ITEM) or 1),
        **common,
    )


def estimate_request(
    request: SynapseRequest,
    prices: PriceTable,
    *,
    channels: int,
    bytes_per_channel: float,
    environ: Mapping[str, str],
    mode: str | None = None,
) -> CostEstimate:
    """The priced plan of ``request`` (see :func:`work_plan`)."""
    plan = work_plan(
        request,
        channels=channels,
        bytes_per_channel=bytes_per_channel,
        environ=environ,
        mode=mode,
    )
    return estimate(plan, prices, sizes=deployed_job_sizes(environ))


# -- after the run: find the jobs ------------------------------------------------------------

#: The first word of every Batch job name the ASL gives (``detect-``, ``detect-bc-17-``,
#: ``report-``, ``publish-boss-``, ``publish-bb-3-``...): ListJobs matches name prefixes
#: only, so the request's jobs are these prefixes' jobs whose names end with its stem.
JOB_NAME_PREFIXES: tuple[str, ...] = ("detect-", "report-", "publish-")
#: A map step's job: ``<step>-<block>-<stem>``, the block ``17`` or ``16-24``.
_MAP_STEP = re.compile(rf"^({'|'.join(MAP_STEPS)})-\d+(?:-\d+)?$")


def job_step(job_name: str, stem: str) -> str | None:
    """The step (job-name prefix) of one of the request's jobs; ``None`` for another name."""
    if not job_name.endswith("-" + stem):
        return None
    head = job_name[: -len(stem) - 1]
    match = _MAP_STEP.match(head)
    if match:
        return match.group(1)
    return head if head in ONCE_STEPS else None


def job_queues(batch: Any) -> list[str]:
    """Every job queue of the account and region (the request's jobs are on two of them)."""
    queues: list[str] = []
    for page in batch.get_paginator("describe_job_queues").paginate():
        queues += [q["jobQueueArn"] for q in page.get("jobQueues", [])]
    return queues


def find_request_jobs(
    batch: Any,
    stem: str,
    *,
    queues: Iterable[str] | None = None,
    since_ms: int | None = None,
    results_bucket: str | None = None,
) -> list[dict[str, Any]]:
    """DescribeJobs of the request's jobs (oldest first): names ending with ``-<stem>`` on
    ``queues`` (default: every queue), created at or after ``since_ms``; with
    ``results_bucket``, only jobs whose environment names that bucket (another stack's run
    of the same request writes elsewhere)."""
    found: dict[str, dict[str, Any]] = {}
    for queue in list(queues) if queues is not None else job_queues(batch):
        for prefix in JOB_NAME_PREFIXES:
            pages = batch.get_paginator("list_jobs").paginate(
                jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [prefix + "*"]}]
            )
            for page in pages:
                for summary in page.get("jobSummaryList", []):
                    created = int(summary.get("createdAt") or 0)
                    if job_step(summary["jobName"], stem) is None:
                        continue
                    if since_ms is None or created >= since_ms:
                        found[summary["jobId"]] = summary
    ids = sorted(found)
    jobs: list[dict[str, Any]] = []
    for i in range(0, len(ids), 100):  # DescribeJobs takes at most 100 ids
        jobs += batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]
    if results_bucket:
        jobs = [j for j in jobs if _bucket_of(j) in (None, results_bucket)]
    return sorted(jobs, key=lambda j: (int(j.get("createdAt") or 0), j["jobName"]))


def _bucket_of(job: Mapping[str, Any]) -> str | None:
    for var in (job.get("container") or {}).get("environment") or []:
        if var.get("name") == "RESULTS_BUCKET":
            return str(var.get("value"))
    return None


def milliseconds(iso_time: str) -> int:
    """An ISO time (ValidateRequest's ``validated_at``) as epoch milliseconds."""
    return int(datetime.fromisoformat(iso_time).timestamp() * 1000)


# -- after the run: what each job cost ---------------------------------------------------------


def job_size(job: Mapping[str, Any], *, large: bool) -> JobSize:
    """vCPU and memory a job asked for (``resourceRequirements``, or moto's ``vcpus`` and
    ``memory``) and its platform (``platformCapabilities``; without it, the large-memory
    queue's jobs are EC2 Spot and every other job Fargate Spot, as deployed)."""
    container = job.get("container") or {}
    needs = {r.get("type"): r.get("value") for r in container.get("resourceRequirements") or []}
    vcpu = float(needs.get("VCPU") or container.get("vcpus") or 0)
    memory = int(float(needs.get("MEMORY") or container.get("memory") or 0))
    capabilities = job.get("platformCapabilities") or []
    if "FARGATE" in capabilities:
        platform = FARGATE_SPOT
    elif "EC2" in capabilities:
        platform = EC2_SPOT
    else:
        platform = EC2_SPOT if large else FARGATE_SPOT
    return JobSize(vcpu, memory, platform)


def job_duration(job: Mapping[str, Any]) -> float | None:
    """Seconds the job ran: the sum over its attempts of ``stoppedAt - startedAt`` (each
    attempt was paid for), else the job's own two times; ``None`` without them."""
    spans = [
        (int(a["stoppedAt"]) - int(a["startedAt"])) / 1000
        for a in job.get("attempts") or []
        if a.get("startedAt") is not None and a.get("stoppedAt") is not None
    ]
    if spans:
        return max(0.0, sum(spans))
    if job.get("startedAt") is not None and job.get("stoppedAt") is not None:
        return max(0.0, (int(job["stoppedAt"]) - int(job["startedAt"])) / 1000)
    return None


def job_cost(
    job: Mapping[str, Any],
    stem: str,
    prices: PriceTable,
    *,
    detect_mode: str,
    classes: tuple[str, ...] = DEFAULT_LARGE_INSTANCE_CLASSES,
) -> dict[str, Any]:
    """One job's record for the manifest: name, step, status, size, duration and USD."""
    step = job_step(job["jobName"], stem) or "?"
    size = job_size(job, large=step == "detect" and detect_mode == "large")
    seconds = job_duration(job)
    record: dict[str, Any] = {
        "job_name": job["jobName"],
        "job_id": job["jobId"],
        "step": step,
        "status": job.get("status"),
        "attempts": len(job.get("attempts") or []),
        "vcpu": size.vcpu,
        "memory_mib": size.memory_mib,
        "platform": size.platform,
        "duration_s": None if seconds is None else round(seconds, 3),
    }
    if seconds is None:
        record["usd"] = None
        record["note"] = (
            f"duration unknown: the job was {job.get('status')} and Batch reported no "
            "startedAt/stoppedAt for it when the costs were recorded"
        )
        return record
    hours = seconds / 3600
    record["vcpu_hours"] = round(hours * size.vcpu, 6)
    record["gib_hours"] = round(hours * size.memory_gib, 6)
    record["usd"] = round(hours * job_hour_price(size, prices, classes), 6)
    return record


def run_costs(
    jobs: Iterable[Mapping[str, Any]],
    stem: str,
    prices: PriceTable,
    *,
    detect_mode: str,
    planned: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``manifest["cost"]``: every job's duration and cost; ``total_usd`` = the measured jobs
    + the planned cost (``planned``: the validation-time estimate's record) of the jobs not
    measured yet + the other services' planned cost. Without a plan there is no total."""
    records = [job_cost(j, stem, prices, detect_mode=detect_mode) for j in jobs]
    measured = [r for r in records if r["usd"] is not None]
    out: dict[str, Any] = {
        "jobs": records,
        "batch_measured_usd": round(sum(r["usd"] for r in measured), 6),
        "vcpu_hours": round(sum(r["vcpu_hours"] for r in measured), 6),
        "gib_hours": round(sum(r["gib_hours"] for r in measured), 6),
        "price_table": prices.record(),
    }
    notes = [
        "Measured: each job's startedAt-stoppedAt per attempt (Batch's times; Fargate also "
        "bills the image download before startedAt) at the price table's Spot prices."
    ]
    if planned is None:
        notes.append(
            "No estimate was recorded at validation, so the jobs not measured and the other "
            "services are not priced: no total."
        )
        out["notes"] = notes
        return out
    unmeasured = 0.0
    missing: list[str] = []
    for group in planned.get("jobs", []):
        done = sum(1 for r in measured if r["step"] == group["step"])
        if done < group["jobs"]:
            unmeasured += group["usd"] * (group["jobs"] - done) / group["jobs"]
            missing.append(f"{group['step']} ({group['jobs'] - done} of {group['jobs']})")
    services = {
        k: v for k, v in dict(planned.get("services_usd", {})).items() if not k.startswith("batch")
    }
    out["batch_planned_usd"] = round(unmeasured, 6)
    out["services_planned_usd"] = services
    out["estimate_usd"] = planned.get("total_usd")
    out["total_usd"] = round(out["batch_measured_usd"] + unmeasured + sum(services.values()), 6)
    if missing:
        notes.append(
            "Not measured yet, counted at their estimate: " + ", ".join(missing) + " (jobs "
            "still running or not started when the costs were recorded)."
        )
    notes.append(
        "Step Functions, Lambda, S3 and NAT gateway are counted at their estimate "
        "(services_planned_usd)."
    )
    out["notes"] = notes
    return out
