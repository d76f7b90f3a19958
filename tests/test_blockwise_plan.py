"""Planner: aligned blocks, halos, memory-driven block size, manifest sizes vs Step Functions."""

from __future__ import annotations

import json

import pytest

from synapse_pipelines.blockwise.plan import (
    MEMORY_FRACTION,
    BlockPlan,
    PlanningError,
    choose_block_shape,
    manifest_item,
    manifest_json,
    padded_voxels,
    plan_request,
)
from synapse_pipelines.core.geometry import CUBOID_SHAPE, Box, iter_aligned_blocks

#: Step Functions quota: 256 KiB per state input/output, execution input and child
#: execution (= one Distributed Map item) input.
PAYLOAD_LIMIT = 256 * 1024

BIG = Box.from_ranges((0, 1000), (0, 10_000), (0, 10_000))  # 10,000 x 10,000 x 1,000 (x, y, z)


def test_large_request_plan_block_count_and_alignment() -> None:
    plan = plan_request(BIG, memory_bytes=16 * 2**30)
    assert plan.mode == "blockwise"
    # every block shape is a multiple of the BOSS cuboid and fits the job memory
    assert all(b % a == 0 for b, a in zip(plan.block_shape, CUBOID_SHAPE, strict=True))
    assert padded_voxels(plan.block_shape, plan.halo) * plan.bytes_per_voxel <= (
        16 * 2**30 * MEMORY_FRACTION
    )
    blocks = list(plan.blocks())
    expected = 1
    for n, b in zip(BIG.shape, plan.block_shape, strict=True):
        expected *= -(-n // b)
    assert plan.n_blocks == len(blocks) == expected
    assert plan.block_shape == (1008, 1024, 512) and plan.n_blocks == 200
    # the blocks tile the box exactly: no gaps, no overlaps
    assert sum(b.size for b in blocks) == BIG.size
    assert blocks == list(iter_aligned_blocks(BIG, plan.block_shape, plan.alignment))
    # interior faces on cuboid boundaries (the grid is anchored at voxel 0)
    for b in blocks:
        for axis in range(3):
            if b.start[axis] != BIG.start[axis]:
                assert b.start[axis] % CUBOID_SHAPE[axis] == 0


@pytest.mark.parametrize("memory_gib", [4, 16, 60])
def test_large_request_payloads_under_step_functions_limits(memory_gib: int) -> None:
    plan = plan_request(BIG, memory_bytes=memory_gib * 2**30)
    # the plan travels in the state: small
    assert len(plan.to_json().encode()) < 1024
    # every Distributed Map item (a child execution's input) is tiny
    sizes = [len(json.dumps(manifest_item(plan, i)).encode()) for i in range(plan.n_blocks)]
    assert max(sizes) < 200 < PAYLOAD_LIMIT
    manifest = manifest_json(plan)
    assert json.loads(manifest)[-1]["block"] == plan.n_blocks - 1
    # the manifest lives in S3: it is read by ItemReader, never put in the state
    assert len(manifest) < 10 * 2**20
    # a child's input = item + the run's S3 location (ItemSelector): still far below 256 KiB
    child = {"block": manifest_item(plan, 0), "run": "s3://" + "b" * 63 + "/" + "k" * 1024}
    assert len(json.dumps(child).encode()) < PAYLOAD_LIMIT
    # Distributed Map runs at most 10,000 children at once; more items just queue, but the
    # plan stays well inside one Map Run's practical size
    assert plan.n_blocks <= 100_000


def test_small_memory_means_more_smaller_blocks() -> None:
    small = plan_request(BIG, memory_bytes=4 * 2**30)
    large = plan_request(BIG, memory_bytes=60 * 2**30)
    assert small.n_blocks > large.n_blocks
    assert padded_voxels(small.block_shape, small.halo) < padded_voxels(
        large.block_shape, large.halo
    )


def test_small_request_is_a_single_job() -> None:
    box = Box.from_ranges((0, 27), (0, 1024), (0, 1024))
    plan = plan_request(box)
    assert plan.mode == "single" and plan.n_blocks == 1 and plan.block(0) == box


def test_single_job_keeps_unaligned_box_whole() -> None:
    box = Box.from_ranges((5, 40), (300, 1500), (700, 1900))
    plan = plan_request(box, mode="single")
    assert plan.n_blocks == 1 and plan.block(0) == box


def test_block_shape_override_and_thin_requests() -> None:
    box = Box.from_ranges((0, 27), (0, 4518), (0, 6306))  # collman15v2-like
    plan = plan_request(box, block_shape=(16, 1024, 1024))
    assert plan.mode == "blockwise" and plan.grid_shape == (2, 5, 7)
    # the last blocks are smaller (uneven border blocks)
    assert plan.block(plan.n_blocks - 1).shape == (11, 4518 - 4096, 6306 - 6144)
    # automatic choice on a thin request: z stops at the request depth, x/y grow
    shape = choose_block_shape(box, memory_bytes=2 * 2**30)
    assert shape[0] == 32 and shape[1] >= 512


def test_unaligned_request_start_gives_partial_first_block() -> None:
    box = Box.from_ranges((10, 40), (100, 1100), (0, 600))
    plan = plan_request(box, block_shape=(16, 512, 512))
    assert plan.block(0) == Box.from_ranges((10, 16), (100, 512), (0, 512))
    assert sum(b.size for b in plan.blocks()) == box.size


def test_bad_block_shapes_are_clear_errors() -> None:
    with pytest.raises(PlanningError, match=r"block_shape.*multiple"):
        plan_request(BIG, block_shape=(10, 512, 512))
    with pytest.raises(PlanningError, match="job_memory"):
        choose_block_shape(BIG, memory_bytes=2**20)
    with pytest.raises(PlanningError, match="mode"):
        plan_request(BIG, mode="fast")  # type: ignore[arg-type]


def test_plan_round_trip_and_neighbours() -> None:
    plan = plan_request(Box.from_shape((10, 9, 8)), block_shape=(4, 3, 3), alignment=(1, 1, 1))
    again = BlockPlan.from_json(plan.to_json())
    assert again == plan and again.fingerprint() == plan.fingerprint()
    assert plan.grid_shape == (3, 3, 3)
    assert sorted(plan.upper_neighbours(0)) == [1, 3, 4, 9, 10, 12, 13]
    assert plan.upper_neighbours(plan.n_blocks - 1) == []
    for i in range(plan.n_blocks):
        assert plan.block_index(plan.grid_position(i)) == i
    with pytest.raises(PlanningError, match="version"):
        BlockPlan.from_dict({**plan.to_dict(), "version": 99})
