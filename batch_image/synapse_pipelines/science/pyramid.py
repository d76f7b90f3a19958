"""Multiscale pyramids of z, y, x volumes: 2 x 2 in y and x per level, z kept (as BOSS does).

Owns :func:`pyramid_depth` (how many levels a volume and its chunking allow),
:func:`downsample_region` (one region of level 0 -> the same region at level ``k``) and
:func:`expand_labels` (labels of level ``k`` -> level 0: each voxel back over its group).
Pure: arrays in, arrays out.

Alignment: level ``k`` voxel ``j`` covers level-0 voxels ``[j * 2**k, (j + 1) * 2**k)`` in y
and x, counted from the array's own origin. A region whose start is not a multiple of
``2**k`` is padded at the front with its edge values, so every block of a blockwise run
computes its part of every level alone, and blocks aligned to a chunk grid whose chunk is a
multiple of ``2**k`` never share a level-``k`` voxel.

- images: the mean of each 2**k x 2**k group (rounded, same dtype);
- labels (synapse ids, masks): the group's first voxel (nearest neighbour), so no id is
  invented and a mask stays 0/255.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Kind = Literal["image", "labels"]

#: The coarsest level keeps at least this many voxels along y or x.
MIN_LEVEL_EXTENT = 64

#: A pyramid never has more levels than this (level 0 included).
MAX_LEVELS = 6


def pyramid_depth(
    shape: Sequence[int], chunks: Sequence[int] | None = None, *, max_levels: int = MAX_LEVELS
) -> int:
    """Number of levels (>= 1) for a volume of ``shape`` (z, y, x).

    A level is added while the larger of y and x stays at least :data:`MIN_LEVEL_EXTENT`
    and, when ``chunks`` is given, while ``2**k`` divides the y and x chunk sizes (each
    block then writes whole chunks at every level).
    """
    levels = 1
    while levels < max_levels:
        factor = 2**levels
        if max(int(shape[1]), int(shape[2])) // factor < MIN_LEVEL_EXTENT:
            break
        if chunks is not None and (int(chunks[1]) % factor or int(chunks[2]) % factor):
            break
        levels += 1
    return levels


def level_extent(start: int, stop: int, factor: int) -> tuple[int, int]:
    """``[start, stop)`` at level 0 -> the level's ``[start, stop)`` (floor / ceil)."""
    return start // factor, -(-stop // factor)


def downsample_region(
    data: np.ndarray, start_yx: Sequence[int], level: int, kind: Kind
) -> tuple[np.ndarray, tuple[int, int]]:
    """A z, y, x region of level 0 starting at ``start_yx`` (y, x) -> (level data, its y, x
    start at that level). Level 0 returns ``data`` itself."""
    if level == 0:
        return data, (int(start_yx[0]), int(start_yx[1]))
    factor = 2**level
    pads = []
    starts = []
    for axis, s in enumerate(start_yx):
        size = data.shape[axis + 1]
        lo, hi = level_extent(int(s), int(s) + size, factor)
        front = int(s) - lo * factor
        back = hi * factor - (int(s) + size)
        pads.append((front, back))
        starts.append(lo)
    if data.shape[1] == 0 or data.shape[2] == 0:
        empty = np.zeros((data.shape[0], 0, 0), dtype=data.dtype)
        return empty, (starts[0], starts[1])
    padded = np.pad(data, ((0, 0), pads[0], pads[1]), mode="edge")
    if kind == "labels":
        return np.ascontiguousarray(padded[:, ::factor, ::factor]), (starts[0], starts[1])
    z, y, x = padded.shape
    grouped = padded.reshape(z, y // factor, factor, x // factor, factor)
    mean = grouped.mean(axis=(2, 4), dtype=np.float64)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(data.dtype), (starts[0], starts[1])


def expand_labels(labels: np.ndarray, level: int, shape_yx: Sequence[int]) -> np.ndarray:
    """Labels of level ``level`` of a volume whose level 0 is ``shape_yx`` (y, x) in plane
    -> level 0: every level-0 voxel takes the label of the level voxel covering it (the
    inverse of :func:`downsample_region`'s alignment from the origin), cropped to
    ``shape_yx``."""
    y, x = int(shape_yx[0]), int(shape_yx[1])
    factor = 2**level
    if labels.shape[1:] != level_extent(0, y, factor)[1:] + level_extent(0, x, factor)[1:]:
        raise ValueError(f"labels of shape {labels.shape} are not level {level} of y, x {y}, {x}")
    if level == 0:
        return labels
    expanded = np.repeat(np.repeat(labels, factor, axis=1), factor, axis=2)
    return np.ascontiguousarray(expanded[:, :y, :x])
