"""Boxes, cuboid-aligned block splitting, and "z,y,x" text."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import CUBOID_SHAPE, Box, iter_aligned_blocks, parse_zyx


def test_box_basics():
    box = Box.from_ranges((2, 10), (0, 5), (3, 4))
    assert box.shape == (8, 5, 1)
    assert box.size == 40
    assert box.slices(origin=(2, 0, 0)) == (slice(0, 8), slice(0, 5), slice(3, 4))
    assert str(box) == "z=2:10 y=0:5 x=3:4"
    with pytest.raises(ValueError, match="before start"):
        Box((5, 0, 0), (4, 1, 1))


def test_grow_and_intersect():
    frame = Box.from_shape((10, 10, 10))
    inner = Box((0, 4, 9), (2, 6, 10))
    assert inner.grow((1, 1, 1), within=frame) == Box((0, 3, 8), (3, 7, 10))
    assert frame.contains(inner) and not inner.contains(frame)
    assert Box((0, 0, 0), (1, 1, 1)).intersect(Box((5, 5, 5), (6, 6, 6))).is_empty()


@pytest.mark.parametrize(
    ("box", "block"),
    [
        (Box((0, 0, 0), (40, 1100, 600)), (16, 512, 512)),
        (Box((5, 100, 700), (37, 1500, 1800)), (32, 1024, 512)),
        (Box((16, 512, 512), (32, 1024, 1024)), (16, 512, 512)),
    ],
)
def test_aligned_blocks_tile_the_box_exactly(box, block):
    blocks = list(iter_aligned_blocks(box, block))
    covered = np.zeros(box.shape, dtype=np.uint8)
    for b in blocks:
        assert box.contains(b) and not b.is_empty()
        covered[b.slices(origin=box.start)] += 1
        # inner faces sit on the block grid, which is a multiple of the BOSS cuboid
        for lo, hi, outer_lo, outer_hi, size, cuboid in zip(
            b.start, b.stop, box.start, box.stop, block, CUBOID_SHAPE, strict=True
        ):
            assert lo == outer_lo or lo % size == 0
            assert hi == outer_hi or hi % size == 0
            assert size % cuboid == 0
    assert covered.min() == 1 and covered.max() == 1
    assert blocks == sorted(blocks)


def test_block_size_must_be_cuboid_multiple():
    with pytest.raises(ValueError, match="multiple of 512"):
        list(iter_aligned_blocks(Box.from_shape((16, 16, 16)), (16, 100, 512)))
    small = list(iter_aligned_blocks(Box.from_shape((3, 3, 3)), (2, 2, 2), alignment=(1, 1, 1)))
    assert len(small) == 8
    assert {b.shape for b in small} == set(itertools.product((2, 1), repeat=3))


def test_parse_zyx_reads_triples_and_names_the_field() -> None:
    assert parse_zyx("16, 512,512", field="--size") == (16, 512, 512)
    assert parse_zyx("16x512x512", field="--size") == (16, 512, 512)
    assert parse_zyx("70,100.5,100", field="--voxel-size", kind=float) == (70.0, 100.5, 100.0)
    assert parse_zyx("0,0,8", field="--origin", allow_zero=True) == (0, 0, 8)
    bad = [
        ("16,512", int, False),
        ("a,b,c", int, False),
        ("0,512,512", int, False),
        ("-1,0,0", int, True),
        ("70,0,100", float, False),
        ("nan,1,1", float, False),
        ("", int, False),
    ]
    for text, kind, allow_zero in bad:
        with pytest.raises(SynapsePipelinesError, match="three") as err:
            parse_zyx(text, field="SOME_FIELD", kind=kind, allow_zero=allow_zero)
        assert err.value.field == "SOME_FIELD"
