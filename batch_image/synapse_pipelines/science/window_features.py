"""The original NOMADS windowed feature: per-z-slice z-score statistics and window sums.

Pure: arrays in, arrays out. Owns the window rule (:data:`WINDOW_OFFSETS`, clipping at the
volume border), the per-slice statistics (:class:`SliceSums`, reducible over blocks), the
window sums (:func:`window_raw_sums`, two strategies with identical results, and
:func:`finish_window_sums`), and :func:`exact_sum_dtype`, the accumulator type that keeps
every partial sum exact. The synapse table that carries these sums as its
``<channel>_window_zsum`` columns is :mod:`synapse_pipelines.science.features`'s.

The windowed feature
--------------------
The original (nomads_cloud, 2018) z-scored every channel *per z-slice* (each slice minus
its mean, divided by its population standard deviation) and summed the z-scored values in
the slices ``[c-2:c+2]`` along z and ``[c-5:c+5]`` along y and x around the integer
centroid ``c``: an asymmetric 4 x 10 x 10 window, offsets -2..+1 in z and -5..+4 in y/x.
We reproduce that window exactly, anchored at the centroid rounded down to a voxel
(``floor``; the centroid of an object always lies inside the volume, so the anchor does).

The original silently dropped synapses whose window crossed the volume border, so the
table had fewer rows than the detector found objects. Rule here: **every object gets a
row**; the window is clipped to the volume, ``window_voxels`` records how many voxels it
covered and ``window_clipped`` flags the clipped rows. The sum is a sum (not rescaled),
so a consumer who wants the original's population filters ``~window_clipped`` and one who
wants a density divides by ``window_voxels``.

A slice whose standard deviation is 0 (a flat slice) z-scores to 0 everywhere, never NaN.

Because the z-score is affine per slice, the window sum is computed exactly from raw sums:
``sum_z (S_z - n_yx * mean_z) / std_z`` where ``S_z`` is the raw sum of the y-x window in
slice ``z`` (an exact int64 sum for integer data) and ``n_yx`` its area.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Window of the original feature, as half-open offsets from the anchor voxel (z, y, x).
WINDOW_OFFSETS: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = (
    (-2, 2),
    (-5, 5),
    (-5, 5),
)
#: Voxels in an unclipped window (4 * 10 * 10).
WINDOW_FULL_VOXELS: int = math.prod(b - a for a, b in WINDOW_OFFSETS)


def exact_sum_dtype(dtype: np.dtype) -> type:
    """Exact int64 sums for integers up to 32 bits; float64 otherwise.

    64-bit integers (e.g. a uint64 annotation channel passed as a feature channel) would
    wrap around in int64, so they are summed in float64 instead: approximate, never wrong
    by overflow.
    """
    if np.issubdtype(dtype, np.integer) and np.dtype(dtype).itemsize <= 4:
        return np.int64
    return np.float64


@dataclass(frozen=True)
class SliceSums:
    """Per-z-slice voxel count, sum and sum of squares of a channel; ``a + b`` merges.

    Stored as Python numbers (object arrays over the volume's z range): exact integers for
    8- and 16-bit data (any volume size); float64 for floats and 32/64-bit integers.
    """

    count: np.ndarray  # (Z,) object: int
    total: np.ndarray  # (Z,) object: int or float
    total_sq: np.ndarray  # (Z,) object: int or float

    def __add__(self, other: SliceSums) -> SliceSums:
        return SliceSums(
            self.count + other.count, self.total + other.total, self.total_sq + other.total_sq
        )

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-slice mean and population std (float64); 0 and 0 for an empty slice.

        For integers: ``mean = S / n`` and ``std = sqrt(n * SS - S**2) / n`` computed from
        exact Python integers (one rounding at the end).
        """
        z = self.count.shape[0]
        mean = np.zeros(z, dtype=np.float64)
        std = np.zeros(z, dtype=np.float64)
        for k in range(z):  # slices, not voxels
            n, s, ss = self.count[k], self.total[k], self.total_sq[k]
            if not n:
                continue
            mean[k] = s / n
            if isinstance(s, int) and isinstance(ss, int):
                std[k] = math.sqrt(max(n * ss - s * s, 0)) / n
            else:
                std[k] = math.sqrt(max(ss / n - (s / n) ** 2, 0.0))
        return mean, std


def slice_sums(volume: np.ndarray, *, z_offset: int = 0, depth: int | None = None) -> SliceSums:
    """Per-slice sums of one block (``volume`` starting at slice ``z_offset`` of ``depth``)."""
    z = volume.shape[0]
    depth = z_offset + z if depth is None else depth
    count = np.zeros(depth, dtype=object)
    total = np.zeros(depth, dtype=object)
    total_sq = np.zeros(depth, dtype=object)
    plane = int(np.prod(volume.shape[1:]))
    small_int = np.issubdtype(volume.dtype, np.integer) and volume.dtype.itemsize <= 2
    for k in range(z):  # one slice at a time: temporaries stay one slice big
        s = volume[k]
        if small_int:
            # the narrowest type that holds a square: uint8 -> uint16, uint16 -> uint32
            square_type = {1: np.uint16, 2: np.uint32}[volume.dtype.itemsize]
            wide = s.astype(np.int64 if volume.dtype.kind == "i" else square_type)
            t = int(wide.sum(dtype=np.int64))
            tsq = int(np.multiply(wide, wide).sum(dtype=np.int64))
        else:  # floats, and 32/64-bit integers whose squares overflow int64: float64
            f = s.astype(np.float64)
            t = float(f.sum())
            tsq = float(np.multiply(f, f).sum())
        count[z_offset + k] += plane
        total[z_offset + k] += t
        total_sq[z_offset + k] += tsq
    return SliceSums(count, total, total_sq)


def slice_zscore_stats(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-z-slice mean and population standard deviation (float64), as the original used."""
    return slice_sums(volume).mean_std()


def window_bounds(
    anchors: np.ndarray, shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped half-open window ``[lo, hi)`` per object and axis, and the covered voxels."""
    offs = np.asarray(WINDOW_OFFSETS, dtype=np.int64)
    lo = np.clip(anchors + offs[:, 0], 0, np.asarray(shape, dtype=np.int64))
    hi = np.clip(anchors + offs[:, 1], 0, np.asarray(shape, dtype=np.int64))
    voxels = np.prod(hi - lo, axis=1)
    return lo, hi, voxels


_WINDOW_DEPTH = WINDOW_OFFSETS[0][1] - WINDOW_OFFSETS[0][0]


def window_raw_sums(
    volume: np.ndarray,
    anchors: np.ndarray,
    *,
    offset: Sequence[int] = (0, 0, 0),
    method: str = "auto",
) -> np.ndarray:
    """Raw sums of each window's part in each of its 4 slices, over this block only.

    ``volume`` is a block cut at ``offset``; ``anchors`` are (n, 3) anchor voxels in
    volume coordinates. Returns (n, 4) sums (int64 for integer data up to 32 bits: exact,
    so blocks add up to the whole volume's value), column ``j`` for slice
    ``anchor_z + WINDOW_OFFSETS[0][0] + j``. Two strategies with identical results:

    - ``"gather"``: read the 4 x 10 x 10 voxels of every window by fancy indexing, in
      chunks of objects; ~400 reads per object, best when objects are sparse;
    - ``"sat"``: one 2-D summed-area table per z-slice touched, four reads per object and
      slice; one pass over those slices, best when objects are dense.
    """
    anchors = np.asarray(anchors, dtype=np.int64).reshape(-1, 3)
    acc = exact_sum_dtype(volume.dtype)
    out = np.zeros((anchors.shape[0], _WINDOW_DEPTH), dtype=acc)
    off = np.asarray([int(v) for v in offset], dtype=np.int64)
    shape = np.asarray(volume.shape, dtype=np.int64)
    offs = np.asarray(WINDOW_OFFSETS, dtype=np.int64)
    # only the windows that overlap this block
    touch = np.all((anchors + offs[:, 1] > off) & (anchors + offs[:, 0] < off + shape), axis=1)
    sel_all = np.flatnonzero(touch)
    if sel_all.size == 0 or volume.size == 0:
        return out
    local = anchors[sel_all] - off
    if method == "auto":
        method = "gather" if sel_all.size * WINDOW_FULL_VOXELS * 4 < volume.size else "sat"
    if method == "gather":
        ranges = [np.arange(a, b, dtype=np.int64) for a, b in WINDOW_OFFSETS]
        chunk = 8192  # 8192 objects x 400 voxels x 8 bytes = 26 MB of temporaries
        for c0 in range(0, local.shape[0], chunk):
            a = local[c0 : c0 + chunk]
            idx, ok = [], []
            for axis in range(3):
                raw_idx = a[:, axis, None] + ranges[axis]
                ok.append((raw_idx >= 0) & (raw_idx < volume.shape[axis]))
                idx.append(np.clip(raw_idx, 0, volume.shape[axis] - 1))
            vals = volume[
                idx[0][:, :, None, None], idx[1][:, None, :, None], idx[2][:, None, None, :]
            ]
            inside = ok[0][:, :, None, None] & ok[1][:, None, :, None] & ok[2][:, None, None, :]
            out[sel_all[c0 : c0 + chunk]] = np.where(inside, vals, 0).sum(axis=(2, 3), dtype=acc)
        return out
    if method != "sat":
        raise ValueError(f"unknown method {method!r}")
    lo, hi, _ = window_bounds(local, volume.shape)
    z_first = local[:, 0] + WINDOW_OFFSETS[0][0]
    for k in range(int(lo[:, 0].min()), int(hi[:, 0].max())):
        sel = np.flatnonzero((lo[:, 0] <= k) & (k < hi[:, 0]))
        if sel.size == 0:
            continue
        sat = np.zeros((volume.shape[1] + 1, volume.shape[2] + 1), dtype=acc)
        np.cumsum(volume[k], axis=0, dtype=acc, out=sat[1:, 1:])
        np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
        y0, y1, x0, x1 = lo[sel, 1], hi[sel, 1], lo[sel, 2], hi[sel, 2]
        out[sel_all[sel], k - z_first[sel]] = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return out


def finish_window_sums(
    raw: np.ndarray,
    anchors: np.ndarray,
    shape: Sequence[int],
    mean: np.ndarray,
    std: np.ndarray,
) -> np.ndarray:
    """Window sums of the per-slice z-scored channel from raw per-slice window sums.

    ``sum_j (raw_j - area * mean_z) / std_z`` over the window's slices inside the volume
    (``area`` = the window's y-x extent clipped to the volume); a slice with std 0
    contributes 0. The slices are added in z order, so the result does not depend on how
    ``raw`` was computed or tiled.
    """
    anchors = np.asarray(anchors, dtype=np.int64).reshape(-1, 3)
    n = anchors.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    lo, hi, _ = window_bounds(anchors, shape)
    area = ((hi[:, 1] - lo[:, 1]) * (hi[:, 2] - lo[:, 2])).astype(np.float64)
    inv_std = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    for j in range(_WINDOW_DEPTH):  # four slices, in z order
        z = anchors[:, 0] + WINDOW_OFFSETS[0][0] + j
        ok = (z >= 0) & (z < shape[0])
        zc = np.clip(z, 0, shape[0] - 1)
        contrib = (raw[:, j] - area * mean[zc]) * inv_std[zc]
        out = out + np.where(ok, contrib, 0.0)
    return out


def window_zscore_sums(
    volume: np.ndarray,
    anchors: np.ndarray,
    *,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Sum of the per-slice z-scored ``volume`` over each object's clipped window.

    ``anchors``: (n, 3) anchor voxels (floor of the centroids). ``stats`` (per-slice
    mean and std) default to the volume's own. See :func:`window_raw_sums` (the two
    strategies) and :func:`finish_window_sums` (the z-score).
    """
    mean, std = stats if stats is not None else slice_zscore_stats(volume)
    raw = window_raw_sums(volume, anchors, method=method)
    return finish_window_sums(raw, anchors, volume.shape, mean, std)
