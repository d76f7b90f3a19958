"""The exactly reducible primitives of NOMADS: channel statistics, window sums and the
covariance numerator (its histogram and the threshold: :mod:`.nomads_threshold`).

Every primitive works on one block and returns something that adds up exactly over any
tiling (Python integers, integer numerators, fixed-bin integer histograms), which is what
lets the blockwise runner reproduce :func:`~synapse_pipelines.science.detection.detect`
voxel for voxel. The bins are :mod:`~synapse_pipelines.science.histogram_bins`'; the
compiled kernels are :mod:`~synapse_pipelines.science.nomads_kernels`'; each has its numpy
reference (``numerator_reference`` here, ``histogram_reference`` there), which the tests compare
with the kernels and which runs when numba is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science.histogram_bins import (
    LUT_SIZE,
    N_BINS,
    SUB_BITS,
    bin_lut,
)
from synapse_pipelines.science.nomads_kernels import (
    numerator_kernel,
    value_counts_kernel,
)
from synapse_pipelines.science.nomads_threshold import CovarianceHistogram

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_WINDOW",
    "NO_THRESHOLD",
    "SUPPORTED_DTYPES",
    "ChannelStats",
    "WindowShape",
    "channel_stats",
    "check_channels",
    "check_dtype",
    "check_min_size",
    "check_window",
    "covariance_numerator",
    "effective_window",
    "extended_block",
    "halo",
    "halo_shape",
    "numerator_dtype",
    "numerator_reference",
    "numerator_scale",
    "pad_to_extended",
    "run_numerator",
    "window_shape",
]

DEFAULT_WINDOW = 3  # the original's 3x3x3 mean kernel
MAX_WINDOW = 15
#: Threshold meaning "nothing is foreground".
NO_THRESHOLD = np.iinfo(np.int64).max
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


# --------------------------------------------------------------------------- input checks


def check_dtype(volume: Any, name: str) -> None:
    if not isinstance(volume, np.ndarray):
        raise DetectionError(
            f"expected a numpy array, got {type(volume).__name__}",
            field=name,
            hint="pass the channel as a numpy.ndarray",
        )
    if volume.dtype not in SUPPORTED_DTYPES:
        raise DetectionError(
            f"dtype {volume.dtype} is not supported",
            field=name,
            hint="pass uint8 or uint16 intensities (BOSS image channels are one of these)",
        )


def check_window(window: Any) -> None:
    if isinstance(window, bool) or not isinstance(window, int | np.integer):
        raise DetectionError(
            f"window must be an integer, got {window!r}", field="window", hint="use e.g. 3"
        )
    if window < 3 or window > MAX_WINDOW or window % 2 == 0:
        raise DetectionError(
            f"window must be an odd integer between 3 and {MAX_WINDOW}, got {window}",
            field="window",
            hint="use 3 (the original) or another odd size",
        )


def check_min_size(min_size: Any) -> None:
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 0:
        raise DetectionError(
            f"min_size must be a non-negative integer, got {min_size!r}",
            field="min_size",
            hint="use 30 (the original) or another voxel count",
        )


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class ChannelStats:
    """Exact per-channel sums; add two to merge blocks."""

    count: int
    total: int
    total_sq: int
    minimum: int
    maximum: int

    def __add__(self, other: ChannelStats) -> ChannelStats:
        return ChannelStats(
            self.count + other.count,
            self.total + other.total,
            self.total_sq + other.total_sq,
            min(self.minimum, other.minimum),
            max(self.maximum, other.maximum),
        )

    @classmethod
    def empty(cls) -> ChannelStats:
        return cls(0, 0, 0, 2**63, -1)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def std(self) -> float:
        """Population standard deviation, from exact integers (no cancellation)."""
        if not self.count:
            return 0.0
        var_num = self.count * self.total_sq - self.total * self.total  # exact, >= 0
        return float(np.sqrt(float(var_num))) / self.count


def _value_counts(volume: np.ndarray) -> np.ndarray:
    """How many voxels hold each value (length 256 or 65536), int64."""
    counts = np.zeros(np.iinfo(volume.dtype).max + 1, dtype=np.int64)
    if value_counts_kernel is not None:
        value_counts_kernel(np.ascontiguousarray(volume), counts)
    else:  # pragma: no cover
        counts += np.bincount(volume.ravel(), minlength=counts.size)
    return counts


def channel_stats(volume: np.ndarray) -> ChannelStats:
    """Exact count, sum, sum of squares, min and max of a uint8/uint16 block."""
    check_dtype(volume, "volume")
    if volume.size == 0:
        return ChannelStats.empty()
    # A value histogram gives every moment exactly and is faster than sums of squares.
    counts = _value_counts(volume)
    present = np.nonzero(counts)[0]
    total = sum(int(c) * int(v) for c, v in zip(counts[present], present, strict=True))
    total_sq = sum(int(c) * int(v) * int(v) for c, v in zip(counts[present], present, strict=True))
    return ChannelStats(int(volume.size), total, total_sq, int(present[0]), int(present[-1]))


def check_channels(
    pre: ChannelStats,
    post: ChannelStats,
    names: tuple[str, str] = ("presynaptic", "postsynaptic"),
) -> None:
    """Raise :class:`DetectionError` if a channel is empty or constant (no z-score)."""
    for stats, name in zip((pre, post), names, strict=True):
        if stats.count == 0:
            raise DetectionError("the volume is empty", field=name, hint="request a non-empty box")
        if stats.minimum == stats.maximum:
            raise DetectionError(
                f"the {name} channel is constant (every voxel is {stats.minimum}), so it "
                "cannot be z-scored and holds no puncta",
                field=name,
                hint="check that the z/y/x ranges cover imaged tissue and that the right "
                "channel was selected",
            )


def numerator_scale(
    pre: ChannelStats, post: ChannelStats, window: int | WindowShape = DEFAULT_WINDOW
) -> float:
    """Divide a covariance numerator by this to get the z-scored local covariance."""
    n = math.prod(window_shape(window))
    return float(n * n) * pre.std * post.std


# --------------------------------------------------------------------------- windows

#: A window's extent along (z, y, x), odd sizes.
WindowShape = tuple[int, int, int]


def window_shape(window: int | WindowShape) -> WindowShape:
    """``(w, w, w)`` for an int (the original's cubic window), a shape as given."""
    if isinstance(window, tuple):
        return window
    return (window, window, window)


def effective_window(window: int, volume_shape: tuple[int, ...]) -> WindowShape:
    """The window detect() uses on a volume: cubic, or ``(1, w, w)`` -- per-plane, 2-D
    detection -- when the volume has fewer sections than the window (a single plane, or a
    stack thinner than the window, is detected section by section instead of refused)."""
    return (window if volume_shape[0] >= window else 1, window, window)


def halo(window: int) -> int:
    """Voxels a block needs on each side for a cubic window's sums."""
    return window // 2


def halo_shape(window: int | WindowShape) -> tuple[int, int, int]:
    """Voxels a block needs on each side, per axis (z, y, x)."""
    wz, wy, wx = window_shape(window)
    return (wz // 2, wy // 2, wx // 2)


def pad_to_extended(
    read: np.ndarray,
    box: Box,
    volume_shape: tuple[int, int, int],
    window: int | WindowShape,
) -> np.ndarray:
    """Pad ``read`` (the data of ``box.grow(halo, within=volume)``) to the full halo.

    The volume border rule: replicate the edge voxel (``numpy.pad(mode="edge")``).
    """
    h = halo_shape(window)
    whole = Box.from_shape(volume_shape)
    grown = box.grow(h, within=whole)
    if tuple(read.shape) != grown.shape:
        raise DetectionError(
            f"block read has shape {read.shape}, expected {grown.shape} for {box}",
            field="block",
            hint="read box.grow(halo_shape(window), within=the whole volume)",
        )
    pads = [
        (ha - (b0 - g0), ha - (g1 - b1))
        for b0, b1, g0, g1, ha in zip(box.start, box.stop, grown.start, grown.stop, h, strict=True)
    ]
    if any(p for pair in pads for p in pair):
        return np.pad(read, pads, mode="edge")
    return read


def extended_block(
    volume: np.ndarray, box: Box, window: int | WindowShape = DEFAULT_WINDOW
) -> np.ndarray:
    """``volume[box]`` with the window's halo, edge-replicated at the volume border."""
    grown = box.grow(halo_shape(window), within=Box.from_shape(volume.shape))
    return pad_to_extended(volume[grown.slices()], box, volume.shape, window)


def numerator_dtype(max_value: int, window: int | WindowShape) -> np.dtype:
    n = math.prod(window_shape(window))
    return np.dtype(np.int32) if n * n * max_value * max_value < 2**31 else np.dtype(np.int64)


def _accumulator_dtype(max_value: int, window: int | WindowShape) -> np.dtype:
    """Window sums of x*y (the largest) fit int32 when n * max**2 < 2**31."""
    n = math.prod(window_shape(window))
    return np.dtype(np.int32) if n * max_value * max_value < 2**31 else np.dtype(np.int64)


def _box_sum_valid(a: np.ndarray, window: int | WindowShape) -> np.ndarray:
    """Sum over the window along every axis ("valid" mode), exact integers."""
    for axis, width in enumerate(window_shape(window)):
        n_out = a.shape[axis] - width + 1
        idx = [slice(None)] * 3
        idx[axis] = slice(0, n_out)
        acc = a[tuple(idx)].copy()
        for k in range(1, width):
            idx[axis] = slice(k, k + n_out)
            acc += a[tuple(idx)]
        a = acc
    return a


def numerator_reference(
    pre_ext: np.ndarray, post_ext: np.ndarray, window: int | WindowShape
) -> np.ndarray:
    """Reference implementation of covariance_numerator (numpy, ~10x slower)."""
    max_value = max(np.iinfo(pre_ext.dtype).max, np.iinfo(post_ext.dtype).max)
    acc = _accumulator_dtype(max_value, window)
    x = pre_ext.astype(acc)
    y = post_ext.astype(acc)
    sxy = _box_sum_valid(x * y, window)
    sx = _box_sum_valid(x, window)
    sy = _box_sum_valid(y, window)
    del x, y
    n = math.prod(window_shape(window))
    out = numerator_dtype(max_value, window)
    return (n * sxy.astype(np.int64) - sx.astype(np.int64) * sy.astype(np.int64)).astype(out)


class _Workspace:
    """Scratch buffers of the numerator kernel for rows of ``nx`` voxels."""

    #: Target size of the strip ring (w planes x strip rows x 3 sums): fits in L2.
    RING_BYTES = 512 * 1024

    def __init__(self, nx: int, window: WindowShape, acc: np.dtype):
        wz, w, _ = window
        h = w // 2
        itemsize = acc.itemsize
        strip = int(np.clip(self.RING_BYTES // (wz * max(nx, 1) * 3 * itemsize), 1, 256))
        self.strip = strip
        self.rows = [np.empty(nx + 2 * h, acc) for _ in range(3)]
        self.h = [np.empty((strip + 2 * h, nx), acc) for _ in range(3)]
        self.ring = [np.empty((wz, strip, nx), acc) for _ in range(3)]
        self.t = [np.empty(nx, acc) for _ in range(3)]
        self.small = np.zeros(2 * LUT_SIZE, np.uint32)
        self.hist_pos = np.zeros(N_BINS, np.int64)
        self.hist_neg = np.zeros(N_BINS, np.int64)


def run_numerator(
    x: np.ndarray,
    y: np.ndarray,
    box: Box,
    window: int | WindowShape,
    out: np.ndarray,
    *,
    histogram: bool,
) -> CovarianceHistogram | None:
    """Numerators of ``box`` (reads clamped to the arrays = edge replication) into out."""
    shape = window_shape(window)
    if shape[1] != shape[2]:
        raise DetectionError(
            f"window {shape} is not square in-plane", field="window", hint="use (wz, w, w)"
        )
    max_value = max(np.iinfo(x.dtype).max, np.iinfo(y.dtype).max)
    ws = _Workspace(box.shape[2], shape, _accumulator_dtype(max_value, shape))
    (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
    numerator_kernel(
        x, y, z0, z1, y0, y1, x0, x1, shape[0], shape[1], out, ws.hist_pos, ws.hist_neg,
        bin_lut(), SUB_BITS, *ws.rows, *ws.h, *ws.ring, *ws.t, ws.small, histogram,
    )  # fmt: skip
    if histogram:
        return CovarianceHistogram(ws.hist_pos, ws.hist_neg)
    return None


def covariance_numerator(
    pre_ext: np.ndarray, post_ext: np.ndarray, *, window: int | WindowShape = DEFAULT_WINDOW
) -> np.ndarray:
    """``n * S_xy - S_x * S_y`` for every voxel of an extended block (exact integers).

    ``pre_ext``/``post_ext`` carry the window's halo on each side (see
    :func:`extended_block`); the result has shape ``ext.shape - (window - 1)``. ``window``
    is an odd int (cubic) or a ``(wz, w, w)`` shape (``(1, w, w)``: per-plane).
    """
    shape = window_shape(window)
    check_window(shape[1])
    if shape[0] not in (1, shape[1]) or shape[2] != shape[1]:
        raise DetectionError(
            f"window {shape} must be (w, w, w) or (1, w, w)",
            field="window",
            hint="use an odd int, or effective_window() for thin volumes",
        )
    check_dtype(pre_ext, "presynaptic")
    check_dtype(post_ext, "postsynaptic")
    if pre_ext.shape != post_ext.shape or pre_ext.ndim != 3:
        raise DetectionError(
            f"extended blocks differ in shape or are not 3-D: {pre_ext.shape} vs {post_ext.shape}",
            field="block",
            hint="extend both channels with the same box and window",
        )
    h = halo_shape(shape)
    if any(s <= 2 * ha for s, ha in zip(pre_ext.shape, h, strict=True)):
        raise DetectionError(
            f"extended block {pre_ext.shape} has no voxel inside its {h}-voxel halo",
            field="block",
            hint="extend the block with extended_block() or pad_to_extended()",
        )
    if numerator_kernel is None:  # pragma: no cover
        return numerator_reference(pre_ext, post_ext, shape)
    max_value = max(np.iinfo(pre_ext.dtype).max, np.iinfo(post_ext.dtype).max)
    inner = Box(h, tuple(s - ha for s, ha in zip(pre_ext.shape, h, strict=True)))  # type: ignore[arg-type]
    out = np.empty(inner.shape, dtype=numerator_dtype(max_value, shape))
    run_numerator(
        np.ascontiguousarray(pre_ext),
        np.ascontiguousarray(post_ext),
        inner,
        shape,
        out,
        histogram=False,
    )
    return out
