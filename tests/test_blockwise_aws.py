"""Blockwise AWS wiring without AWS: configuration parsing, detect-mode choice, manifest
items, Map settings, and the step CLI's user errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synapse_pipelines.blockwise.plan import (
    PlanningError,
    manifest_items,
    manifest_json,
    parse_block_range,
    plan_request,
)
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.core.sizing import (
    BLOCKWISE_PIPELINES,
    DETECT_MODES,
    ENV_BLOCK_SHAPE,
    ENV_MIN_VOXELS,
    choose_detect_mode,
    has_blockwise,
    wants_blockwise,
)
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.blockwise_job import (
    BLOCKWISE_KERNELS,
    _shape,
    kernel_for,
    manifest_key,
)


def request(**overrides: object) -> SynapseRequest:
    data = {
        "collection": "c",
        "experiment": "e",
        "z_range": [0, 100],
        "y_range": [0, 1000],
        "x_range": [0, 1000],
    }
    data.update(overrides)
    return parse_request(data, max_voxels=None)


def test_env_shapes_are_checked_with_the_variable_named() -> None:
    assert _shape({ENV_BLOCK_SHAPE: "16, 512,512"}, ENV_BLOCK_SHAPE) == (16, 512, 512)
    assert _shape({}, ENV_BLOCK_SHAPE) is None
    for bad in ("16,512", "a,b,c", "0,512,512"):
        with pytest.raises(SynapsePipelinesError, match=ENV_BLOCK_SHAPE):
            _shape({ENV_BLOCK_SHAPE: bad}, ENV_BLOCK_SHAPE)


def test_only_nomads_has_a_blockwise_kernel() -> None:
    # the physical size limit in voxels of the request's frame: 0.0035 um^3 = 5 voxels
    kernel = kernel_for(
        "nomads-unsupervised", {"min_volume_um3": 0.0035}, (70.0, 100.0, 100.0), (16, 64, 64)
    )
    assert kernel.min_size == 5 and kernel.window_shape == (3, 3, 3)
    thin = kernel_for("nomads-unsupervised", {}, (70.0, 100.0, 100.0), (1, 64, 64))
    assert thin.window_shape == (1, 3, 3) and thin.min_size == 0
    # the size policy (core, numpy-free) and the kernels (blockwise) name the same pipelines
    assert set(BLOCKWISE_KERNELS) == BLOCKWISE_PIPELINES
    assert has_blockwise("nomads-unsupervised") and not has_blockwise("another-detector")
    with pytest.raises(SynapsePipelinesError, match="pipeline"):
        kernel_for("another-detector", {})


def test_detect_mode_blockwise_when_no_job_fits_or_asked() -> None:
    env = {wf.ENV_DETECT_MEMORY_MIB: "4096", wf.ENV_LARGE_DETECT_MEMORY_MIB: "8192"}
    big = request(z_range=[0, 1000], y_range=[0, 10_000], x_range=[0, 10_000])
    assert choose_detect_mode(big, 13, env) == "blockwise"
    small = request(z_range=[0, 4], y_range=[0, 64], x_range=[0, 64])
    assert choose_detect_mode(small, 13, env) == "standard"
    assert choose_detect_mode(small, 13, {**env, ENV_MIN_VOXELS: "1000"}) == "blockwise"
    assert not wants_blockwise(999, {ENV_MIN_VOXELS: "1000"})
    # no job sizes configured (local runs): above what one job may take goes blockwise
    assert choose_detect_mode(big, 13, {}) == "blockwise"
    assert choose_detect_mode(small, 13, {"SYNAPSE_PIPELINES_MAX_VOXELS": "100"}) == ("blockwise")
    # a pipeline without a blockwise kernel still gets the clear "too large" error
    with pytest.raises(SynapsePipelinesError, match="largest job"):
        choose_detect_mode(
            # another detector (one without a blockwise kernel)
            big.model_copy(update={"pipeline": "other"}),
            13,
            env,
        )


def test_grouped_manifest_items_cover_every_block_once() -> None:
    plan = plan_request(Box.from_shape((10, 10, 10)), block_shape=(2, 5, 5), alignment=(1, 1, 1))
    items = list(manifest_items(plan, blocks_per_item=3))
    assert [it["block"] for it in items][:2] == ["0-3", "3-6"]
    covered = [i for it in items for i in parse_block_range(it["block"], plan.n_blocks)]
    assert covered == list(range(plan.n_blocks))
    assert json.loads(manifest_json(plan, 3)) == items
    assert list(parse_block_range(7, plan.n_blocks)) == [7]
    for bad in ("x", "5-2", str(plan.n_blocks), "0-999"):
        with pytest.raises(PlanningError, match="--block"):
            parse_block_range(bad, plan.n_blocks)
    with pytest.raises(PlanningError):
        list(manifest_items(plan, blocks_per_item=0))
    assert manifest_key("k") == "k/_workflow/blockwise/manifest.json"


def test_map_settings_substitutions_are_checked() -> None:
    assert wf.setting_substitutions() == {"BlockwiseMaxConcurrency": "100"}
    env = {"SYNAPSE_BLOCKWISE_MAX_CONCURRENCY": "8"}
    assert wf.setting_substitutions(environ=env)["BlockwiseMaxConcurrency"] == "8"
    assert wf.setting_substitutions({"BlockwiseMaxConcurrency": 3}, environ=env) == {
        "BlockwiseMaxConcurrency": "3"
    }
    with pytest.raises(ValueError, match="MaxConcurrency"):
        wf.setting_substitutions({"BlockwiseMaxConcurrency": 20_000})
    # failed blocks are never tolerated: the ASL fixes it, no setting can change it
    with pytest.raises(ValueError, match="never tolerated"):
        wf.setting_substitutions({"BlockwiseToleratedFailurePercentage": 0})


def test_asl_blockwise_maps_read_the_manifest_and_write_results() -> None:
    states = json.loads(wf.ASL_PATH.read_text())["States"]
    for name in ("BlockwiseCovariance", "BlockwiseLabel"):
        state = states[name]
        assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert state["ItemReader"]["ReaderConfig"]["InputType"] == "JSON"
        assert "ResultWriter" in state and "ItemBatcher" not in state  # moto rejects it
        assert state["MaxConcurrencyPath"] and state["ToleratedFailurePercentage"] == 0
        assert state["Catch"][0]["Next"] == "DetectFailed"
    choices = {c["StringEquals"]: c["Next"] for c in states["ChooseDetectMode"]["Choices"]}
    assert choices["blockwise"] == "BlockwiseSettings"
    assert states["BlockwiseMerge"]["Next"] == "Report"
    assert "blockwise" in DETECT_MODES


def test_step_blocks_cli_user_errors_exit_2() -> None:
    from synapse_pipelines.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["step", "blocks", "--stage", "plan", "--results-key", "k"], env={"RESULTS_BUCKET": ""}
    )
    assert res.exit_code != 0
    assert isinstance(res.exception, SynapsePipelinesError) and "--bucket" in str(res.exception)
    res = runner.invoke(app, ["step", "blocks", "--help"])
    assert res.exit_code == 0 and "--stage" in res.output


def test_the_block_job_runs_every_stage_of_the_table() -> None:
    from synapse_pipelines.blockwise.stages import MAP_STAGES, STAGE_NAMES
    from synapse_pipelines.workflow.blockwise_job import BLOCK_STAGES, ONE_JOB_STAGES

    assert set(BLOCK_STAGES) == set(MAP_STAGES)
    assert set(ONE_JOB_STAGES) == set(STAGE_NAMES) - set(MAP_STAGES)
