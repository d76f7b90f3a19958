"""The price table and the estimate: regions, dates, sizes against cdk.json, the plan of
both Detect modes and of a blockwise run (the same blocks the plan stage cuts), the ASL's
job names and transitions, and the budget cap's parsing and message."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from synapse_pipelines.blockwise.nomads import BYTES_PER_VOXEL
from synapse_pipelines.core import budget, cost_estimate as ce, pricing
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.workflow import job_costs, wiring as wf
from synapse_pipelines.workflow.blockwise_job import BlockwiseJob

REPO = Path(__file__).resolve().parents[1]
US = pricing.price_table("us-east-1")


def _request(z: int, y: int, x: int) -> Any:
    return parse_request(
        {
            "collection": "collman",
            "experiment": "collman15v2",
            "z_range": [0, z],
            "y_range": [0, y],
            "x_range": [0, x],
        },
        environ={},
    )


def _estimate(z: int, y: int, x: int, environ: dict[str, str] | None = None) -> ce.CostEstimate:
    return job_costs.estimate_request(
        _request(z, y, x), US, channels=13, bytes_per_channel=1, environ=environ or {}
    )


# -- the price table ----------------------------------------------------------------------------


def test_price_table_is_dated_and_regional() -> None:
    assert pricing.PRICE_TABLE_DATE == "2026-11-30"
    assert pricing.known_regions() == ("eu-west-1", "us-east-1", "us-east-2", "us-west-2")
    assert pricing.price_table().region == "us-east-1"  # the default
    assert US.record() == {"date": "2026-11-30", "region": "us-east-1"}
    # Fargate Spot at AWS's "up to 70 % off" on-demand; Step Functions per transition
    assert US.fargate_spot_vcpu_hour == pytest.approx(0.04048 * 0.3)
    assert US.fargate_spot_gib_hour == pytest.approx(0.004445 * 0.3)
    assert US.sfn_transition == pytest.approx(0.025 / 1000)
    assert US.lambda_request == pytest.approx(0.2e-6)
    assert (US.s3_put, US.s3_get) == (pytest.approx(5e-6), pytest.approx(4e-7))
    assert pricing.price_table("eu-west-1").ec2_class("r6i").on_demand_hour == 2.256


def test_ec2_spot_job_pays_for_the_instance_share_it_occupies() -> None:
    r6i = US.ec2_class("r6i")
    assert r6i.spot_hour == pytest.approx(2.016 * 0.35)
    # the default large job (32 vCPU, 240 GiB) fills an r6i.8xlarge
    assert r6i.job_hour(32, 240) == pytest.approx(r6i.spot_hour)
    # memory-bound: 4 vCPU with 64 GiB occupy 8 of the class's vCPUs (8 GiB each)
    assert r6i.job_hour(4, 64) == pytest.approx(8 * r6i.spot_vcpu_hour)


@pytest.mark.parametrize("region", ["ap-south-1", "", "US-EAST-1"])
def test_unknown_region_is_a_clear_error(region: str) -> None:
    if not region:
        assert pricing.price_table(region).region == "us-east-1"
        return
    with pytest.raises(pricing.PricingError) as info:
        pricing.price_table(region, field="--region")
    text = str(info.value)
    assert text.startswith("--region: ") and repr(region) in text
    for known in pricing.known_regions():
        assert known in text
    assert "Fix:" in text
    with pytest.raises(pricing.PricingError, match=r"largeInstanceClasses.*r5, r6i"):
        US.ec2_class("x2idn")


def test_region_from_the_environment() -> None:
    assert pricing.region_from_environment({}) == ("us-east-1", pricing.ENV_PRICE_REGION)
    assert pricing.region_from_environment({"AWS_REGION": "us-west-2"}) == (
        "us-west-2",
        "AWS_REGION",
    )
    env = {"AWS_REGION": "ap-south-1", pricing.ENV_PRICE_REGION: "us-east-1"}
    assert pricing.region_from_environment(env) == ("us-east-1", pricing.ENV_PRICE_REGION)


def test_default_job_sizes_are_the_deployed_ones() -> None:
    context = json.loads((REPO / "cdk.json").read_text())["context"]["synapse-pipelines"]
    for size, key in (
        ("detect", "detectJob"),
        ("large", "largeDetectJob"),
        ("report", "reportJob"),
        ("publish", "publishJob"),
    ):
        job = ce.DEFAULT_JOB_SIZES[size]
        assert (job.vcpu, job.memory_mib) == (context[key]["vcpu"], context[key]["memoryMiB"])
    assert tuple(context["largeInstanceClasses"]) == ce.DEFAULT_LARGE_INSTANCE_CLASSES
    assert {spec.size for spec in wf.BATCH_JOBS.values()} <= set(ce.DEFAULT_JOB_SIZES)
    assert ce.DEFAULT_JOB_SIZES["large"].platform == pricing.EC2_SPOT
    assert wf.BATCH_JOBS["DetectLarge"].size == "large"
    sizes = ce.deployed_job_sizes({wf.ENV_DETECT_MEMORY_MIB: "16384"})
    assert (sizes["detect"].vcpu, sizes["detect"].memory_mib) == (4, 16384)


# -- the estimate -------------------------------------------------------------------------------


def test_small_request_is_one_fargate_job() -> None:
    cost = _estimate(27, 1024, 1024)
    assert cost.plan.mode == "standard"
    assert [g.step for g in cost.groups] == ["detect", "report", "publish-boss"]
    assert all(g.jobs == 1 and g.size.platform == pricing.FARGATE_SPOT for g in cost.groups)
    detect = cost.group("detect")
    assert detect is not None and detect.size == ce.DEFAULT_JOB_SIZES["detect"]
    voxels = 27 * 1024 * 1024
    expected = (
        ce.JOB_START_S
        + voxels * 13 / ce.BOSS_BYTES_PER_S
        + voxels / ce.DETECT_VOXELS_PER_S
        + voxels * 13 / ce.TABLE_CHANNEL_VOXELS_PER_S
        + voxels / ce.WRITE_VOXELS_PER_S
    )
    assert detect.seconds == pytest.approx(expected)
    assert detect.vcpu_hours == pytest.approx(expected / 3600 * 4)
    assert detect.gib_hours == pytest.approx(expected / 3600 * 30)
    assert set(cost.services) == {
        "batch_fargate_spot",
        "step_functions",
        "lambda",
        "s3",
        "nat_gateway",
    }
    assert cost.total_usd == pytest.approx(sum(cost.services.values()))
    assert cost.step_functions_usd == pytest.approx(ce.SINGLE_JOB_TRANSITIONS * 0.025 / 1000)
    assert 0.001 < cost.total_usd < 0.2  # cents, as docs/aws.md's typical run
    text = "\n".join(cost.lines())
    needles = ["one Detect job on the standard queue", "vCPU-h", "GiB-h", "Fargate Spot"]
    needles += ["Step Functions", "Lambda", "S3", "us-east-1", "2026-11-30", "total"]
    assert [n for n in needles if n not in text] == []


def test_a_box_too_large_for_fargate_is_one_ec2_spot_job() -> None:
    cost = _estimate(1000, 1000, 1000)  # 1 Gvoxel x 37 B > 30 GiB: the large queue
    assert cost.plan.mode == "large"
    detect = cost.group("detect")
    assert detect is not None and detect.size.platform == pricing.EC2_SPOT
    assert cost.platform_cost(pricing.EC2_SPOT) == pytest.approx(
        detect.hours * US.ec2_class("r6i").spot_hour
    )
    assert "batch_ec2_spot" in cost.services and "EC2 Spot" in "\n".join(cost.lines())


def test_large_request_is_blockwise_with_the_plan_stages_blocks() -> None:
    cost = _estimate(1000, 10_000, 10_000)
    plan = cost.plan
    assert plan.mode == "blockwise"
    # the automatic block shape for the default 16 GiB job memory (docs/scale.md's table)
    assert plan.block_shape == (1008, 512, 512) and plan.n_blocks == 400
    assert plan.grid_shape == (1, 20, 20)
    steps = {g.step: g for g in cost.groups}
    assert set(steps) == set(ce.ONCE_STEPS) - {"detect", "publish-boss"} | set(ce.MAP_STEPS)
    assert [steps[s].jobs for s in ce.MAP_STEPS] == [400] * 4
    assert cost.transitions == ce.BLOCKWISE_TRANSITIONS + 4 * 3 * 400
    # the BOSS traffic (13 channels + the covariance reads, ~1.5 TB) dominates, through NAT
    assert 1400 < cost.nat_gb < 1700
    assert cost.nat_usd > cost.batch_usd
    assert "400 blocks of 1008 x 512 x 512" in plan.describe(cost.sizes)
    grouped = _estimate(1000, 10_000, 10_000, {"SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM": "8"})
    assert grouped.plan.n_items == 50 and grouped.transitions < cost.transitions
    assert grouped.batch_usd < cost.batch_usd  # fewer container starts


def test_work_plan_cuts_the_blocks_the_plan_stage_cuts() -> None:
    assert job_costs.BLOCKWISE_BYTES_PER_VOXEL == BYTES_PER_VOXEL
    request = _request(100, 3000, 2000)
    env = {
        "SYNAPSE_BLOCKWISE_MIN_VOXELS": "1",
        "SYNAPSE_BLOCKWISE_JOB_MEMORY_MIB": "8192",
        "SYNAPSE_BLOCKWISE_ALIGNMENT": "16,256,256",
    }
    work = job_costs.work_plan(request, channels=2, bytes_per_channel=1, environ=env)
    stand_in = SimpleNamespace(env=env, request=request, kernel=SimpleNamespace(halo=(1, 1, 1)))
    planned = BlockwiseJob.make_plan(stand_in)  # type: ignore[arg-type]
    assert work.mode == "blockwise"
    assert (work.block_shape, work.n_blocks) == (planned.block_shape, planned.n_blocks)
    env["SYNAPSE_BLOCKWISE_BLOCK_SHAPE"] = "32,512,512"
    work = job_costs.work_plan(request, channels=2, bytes_per_channel=1, environ=env)
    assert work.block_shape == BlockwiseJob.make_plan(stand_in).block_shape == (32, 512, 512)


def test_record_is_compact_json() -> None:
    cost = _estimate(1000, 10_000, 10_000)
    record = json.loads(json.dumps(cost.record()))
    assert record["total_usd"] == pytest.approx(cost.total_usd, rel=1e-6)
    assert record["price_table"] == {"date": "2026-11-30", "region": "us-east-1"}
    assert [j["step"] for j in record["jobs"]] == [g.step for g in cost.groups]
    assert len(json.dumps(record)) < 4000


# -- the ASL's job names and transitions --------------------------------------------------------


def _asl() -> dict[str, Any]:
    return json.loads(wf.definition_template())


def _task_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, state in states.items():
        found[name] = state
        for branch in state.get("Branches", []):
            found.update(_task_states(branch["States"]))
        processor = state.get("ItemProcessor")
        if processor:
            found.update(_task_states(processor["States"]))
    return found


def test_job_steps_are_the_asl_job_name_prefixes() -> None:
    prefixes = set()
    for state in _task_states(_asl()["States"]).values():
        fmt = (state.get("Parameters") or {}).get("JobName.$")
        if fmt:
            # States.Format('detect-bc-{}-{}', $.block, $.job_name)
            template = fmt.split("'")[1]
            assert template.endswith("{}"), fmt  # the stem comes last
            head = template[: -len("-{}")]
            if head.endswith("-{}"):
                head = head[: -len("-{}")]
                assert head in ce.MAP_STEPS, fmt
            else:
                assert head in ce.ONCE_STEPS, fmt
            assert (head + "-").startswith(job_costs.JOB_NAME_PREFIXES)
            prefixes.add(head)
    assert prefixes == set(ce.ONCE_STEPS) | set(ce.MAP_STEPS)


def _path(mode: str) -> list[str]:
    """The states a successful run of ``mode`` enters (both Publish branches)."""
    states = _asl()["States"]
    seen, name = [], _asl()["StartAt"]
    while name:
        state = states[name]
        seen.append(name)
        if state["Type"] == "Choice":
            name = next(
                (c["Next"] for c in state["Choices"] if c.get("StringEquals") == mode),
                state["Default"],
            )
            continue
        for branch in state.get("Branches", []):
            inner, branch_states = branch["StartAt"], branch["States"]
            while inner:
                seen.append(inner)
                step = branch_states[inner]
                if step["Type"] == "Choice":
                    inner = next(
                        (c["Next"] for c in step["Choices"] if c.get("StringEquals") == mode),
                        step["Default"],
                    )
                else:
                    inner = None if step.get("End") else step.get("Next")
        name = None if state.get("End") or state["Type"] == "Succeed" else state.get("Next")
    return seen


def test_transitions_cover_the_success_path() -> None:
    single, blockwise = _path("standard"), _path("blockwise")
    assert "Detect" in single and "PublishToS3" in single and single[-1] == "Succeeded"
    assert "BlockwiseCovariance" in blockwise and "PublishToBossBlocks" in blockwise
    assert len(single) <= ce.SINGLE_JOB_TRANSITIONS < len(single) + 5
    assert len(blockwise) <= ce.BLOCKWISE_TRANSITIONS < len(blockwise) + 5
    maps = [s for s in blockwise if _task_states(_asl()["States"])[s]["Type"] == "Map"]
    assert len(maps) == ce.BLOCKWISE_MAPS


# -- the budget cap -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_budget(value: str | None) -> None:
    assert budget.parse_budget(value) is None
    assert budget.budget_from_environment({}) is None


@pytest.mark.parametrize("value", ["-5", "0", "abc", "nan", "inf", -1.0])
def test_bad_budget_names_the_setting_and_the_fix(value: object) -> None:
    with pytest.raises(SynapsePipelinesError) as info:
        budget.budget_from_environment({budget.ENV_BUDGET_USD: str(value)})
    text = str(info.value)
    assert text.startswith(f"{budget.ENV_BUDGET_USD}: ") and "positive number" in text
    assert "Fix: set it to e.g. 25" in text
    with pytest.raises(SynapsePipelinesError, match=r"^--budget: "):
        budget.parse_budget(value, field="--budget")


def test_budget_check_names_estimate_cap_and_fixes() -> None:
    cost = _estimate(1000, 10_000, 10_000)
    budget.check_budget(cost, None)
    budget.check_budget(cost, math.ceil(cost.total_usd))
    with pytest.raises(budget.BudgetExceededError) as info:
        budget.check_budget(cost, 10)
    text = str(info.value)
    assert info.value.error_type == "BudgetExceeded"
    assert ce.usd(cost.total_usd) in text and "$10.00" in text
    assert budget.ENV_BUDGET_USD in text and "budgetUsd" in text
    assert "smaller box" in text and "raise the cap" in text
    assert "400 blocks" in text and "us-east-1" in text
