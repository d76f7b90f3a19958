"""Blockwise 26-connected labelling + stitching equals whole-volume labelling."""

from __future__ import annotations

import numpy as np
import pytest

from synapse_pipelines.blockwise.plan import plan_request
from synapse_pipelines.blockwise.stitch import (
    extended_box,
    label_block,
    reference_labels,
    stitch,
)
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science.features import object_geometry


def blockwise_labels(
    mask: np.ndarray, block_shape: tuple[int, int, int], min_size: int
) -> np.ndarray:
    volume = Box.from_shape(mask.shape)
    plan = plan_request(volume, block_shape=block_shape, alignment=(1, 1, 1))
    per_block = [
        label_block(mask[extended_box(b, volume).slices()], b, volume) for b in plan.blocks()
    ]
    result = stitch(per_block, min_size=min_size)
    out = np.zeros(mask.shape, dtype=np.uint32)
    for b, labels, table in zip(plan.blocks(), per_block, result.tables, strict=True):
        out[b.slices()] = labels.dense(table)
    assert result.n_objects == int(out.max())
    # the reduced geometry (sizes, coordinate sums, boxes) is the whole volume's
    geo = object_geometry(out)
    assert geo.ids.tolist() == list(range(1, result.n_objects + 1))
    np.testing.assert_array_equal(result.sizes, geo.counts)
    np.testing.assert_array_equal(result.coord_sums, geo.coord_sums)
    np.testing.assert_array_equal(result.bbox_min, geo.bbox_min)
    np.testing.assert_array_equal(result.bbox_max, geo.bbox_max)
    return out


def test_object_across_a_face_edge_and_corner_is_one_object() -> None:
    # blocks of 4x4x4; a diagonal chain of voxels crosses a block corner at (4, 4, 4):
    # (3,3,3) and (4,4,4) touch only by a corner and lie in 8 different blocks' reach
    mask = np.zeros((8, 8, 8), bool)
    for i in range(1, 7):
        mask[i, i, i] = True
    out = blockwise_labels(mask, (4, 4, 4), min_size=0)
    assert out.max() == 1 and (out[mask] == 1).all()
    # an edge crossing: (3, 3, y) -> (4, 4, y) touch by an edge between 4 blocks
    mask = np.zeros((8, 8, 8), bool)
    mask[3, 3, 1:6] = True
    mask[4, 4, 1:6] = True
    assert blockwise_labels(mask, (4, 4, 4), min_size=0).max() == 1


def test_corner_only_contact_between_two_blocks_diagonal_in_x_and_z() -> None:
    # u in block (0, 0, 1), v in block (1, 0, 0): the covering block is (0, 0, 0), which
    # owns neither voxel — its shell must still join them
    mask = np.zeros((4, 2, 4), bool)
    mask[1, 0, 2] = True
    mask[2, 0, 1] = True
    out = blockwise_labels(mask, (2, 2, 2), min_size=0)
    assert out[1, 0, 2] == out[2, 0, 1] == 1


def test_size_filter_uses_global_sizes() -> None:
    # a 5x2x2 = 20-voxel rod split 2/3 across blocks survives min_size 15 only as a whole
    mask = np.zeros((6, 6, 6), bool)
    mask[1:6, 1:3, 1:3] = True
    mask[0, 5, 5] = True  # a 1-voxel speck, touching nothing, is dropped
    out = blockwise_labels(mask, (3, 2, 2), min_size=15)
    assert out.max() == 1 and (out > 0).sum() == 20
    assert (out == reference_labels(mask, min_size=15)).all()
    assert blockwise_labels(mask, (3, 2, 2), min_size=20).max() == 0


@pytest.mark.parametrize("seed", range(40))
def test_random_masks_equal_whole_volume_labelling(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 24, 3))
    mask = rng.random(shape) < rng.uniform(0.03, 0.45)
    block = tuple(int(v) for v in rng.integers(1, 9, 3))  # uneven border blocks
    min_size = int(rng.integers(0, 8))
    ref = reference_labels(mask, min_size=min_size)
    out = blockwise_labels(mask, block, min_size=min_size)
    # raster-ordered numbering makes the ids equal, not just bijective
    np.testing.assert_array_equal(out, ref)


def test_empty_mask_and_single_block() -> None:
    mask = np.zeros((5, 6, 7), bool)
    assert blockwise_labels(mask, (2, 2, 2), min_size=0).max() == 0
    rng = np.random.default_rng(7)
    mask = rng.random((9, 9, 9)) < 0.3
    np.testing.assert_array_equal(
        blockwise_labels(mask, (16, 16, 16), min_size=3), reference_labels(mask, min_size=3)
    )


def test_disagreeing_overlap_is_detected() -> None:
    volume = Box.from_shape((4, 2, 2))
    plan = plan_request(volume, block_shape=(2, 2, 2), alignment=(1, 1, 1))
    b0, b1 = list(plan.blocks())
    mask = np.ones((4, 2, 2), bool)
    first = label_block(mask[extended_box(b0, volume).slices()], b0, volume)
    wrong = mask.copy()
    wrong[2] = False  # block 1 sees a different mask at the shared shell plane
    second = label_block(wrong[extended_box(b1, volume).slices()], b1, volume)
    with pytest.raises(RuntimeError, match="shell voxels"):
        stitch([first, second], min_size=0)
