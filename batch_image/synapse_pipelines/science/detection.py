"""NOMADS unsupervised synapse detector, built from exactly reducible primitives.

What it computes
================
For a presynaptic channel ``x`` (synapsin) and a postsynaptic channel ``y`` (PSD95):

1. **z-score** each channel over the whole volume: ``x' = (x - mean_x) / std_x`` (population
   standard deviation, from exact integer sums).
2. **Local covariance** of the z-scored channels over a ``w x w x w`` window (``w = window``,
   ``n = w**3`` voxels, default 3)::

       cov(v) = mean_W(x'y') - mean_W(x') * mean_W(y')
              = (n * S_xy - S_x * S_y) / (n**2 * std_x * std_y)

   where ``S_x, S_y, S_xy`` are the integer window sums of the *raw* values ``x``, ``y`` and
   ``x*y`` around voxel ``v``. The z-score is affine, so it only rescales the covariance;
   the integer ``numerator = n * S_xy - S_x * S_y`` is exact and does not depend on where a
   block starts or the order of summation. Everything downstream works on that integer.

   *Why this statistic.* The original wrote ``convolve(x + y) - convolve(x) + convolve(y)``,
   which (convolution being linear) equals ``2 * convolve(y)``: it ignores the presynaptic
   channel and flags every bright PSD95 punctum, paired or not. The step's name
   ("convolutional covariance") and its 3x3x3 *mean* kernel name the local covariance of
   the two channels over the window, ``E_W[xy] - E_W[x] E_W[y]``; the line is that formula
   with two ``*`` typed as ``+`` (we did not have the original's source or paper to check
   further; this is the reading that makes the step a covariance at all). A synapse is
   where the two channels rise *together* (partially overlapping
   synapsin and PSD95 puncta): the covariance is large and positive. A punctum in one
   channel only pairs a strong gradient with independent noise, so its covariance is
   symmetric around zero -- which the threshold below exploits.

3. **Threshold** (robust Otsu). Histograms of the positive numerators and of the magnitudes
   of the negative numerators are built on fixed log-linear bins (HDR-histogram style:
   exact integers below ``2**5``, then 32 bins per power of two, ~3 % wide; edges are the
   same for every volume, see :func:`bin_lower_edges`). Noise and one-channel puncta give
   a covariance distribution symmetric around zero, so the negative histogram estimates how
   many positive values are *not* co-localisation. The *null floor* ``T0`` is the smallest
   value above which the mirrored negative tail is at most 5 % of the positive tail.
   Otsu's method (maximum between-class variance) then runs on the **excess**
   ``max(pos - neg, 0)`` of the bins above ``T0``, with log2 bin centres (a product of
   intensities is multiplicative), and ``T = max(T0, Otsu)``. Plain Otsu on a 256-bin
   histogram between min and max collapses when synapses are a tiny fraction of the volume
   (the bulk falls in one bin, or the heavy noise tail wins); this still separates one
   synapse in 8 million voxels (tests go down to ~6e-6) and finds nothing in pure noise.
   The threshold is an integer numerator ``T``; a voxel is foreground when
   ``numerator >= T``. When no value passes the null test, ``T`` lies above every value
   and the result is empty.
4. **Components**: 26-connected components of the foreground; keep components with **more
   than** ``min_size`` voxels (the original kept ``> 30``; ``min_size=30`` keeps 31+). Kept
   components are numbered ``1..N`` in the C (z, y, x raster) order of their first voxel.

Border rule: the volume is extended by ``window // 2`` voxels on each side by **edge
replication** (``numpy.pad(mode="edge")``, scipy's ``"nearest"``) before the window sums.

Input dtypes: uint8 and uint16 are used as exact integers, **no rescaling**. The original
rescaled uint16 to uint8 by the dtype maximum (``x * 255 / 65535``), which maps 12-bit
camera data (0..4095) to 0..15 and destroys the signal; since step 1 divides by each
channel's own standard deviation, the raw integers carry the same information with no
loss. Anything else (floats, signed, uint32/64, bool) is a :class:`DetectionError`, as are
mismatched shapes, non-3-D arrays and volumes thinner than the window. A constant channel
(e.g. all zeros) has no standard deviation: :class:`DetectionError` naming the channel.

Implementation
==============
The steps run as numba-compiled kernels (one core, no threads): one pass computes every
numerator and both histograms, with the per-plane window sums of the planes in flight kept
in an L2-sized ring of row strips and reads clamped to the volume (the border rule, without
a padded copy); a second pass lists the foreground voxels (their number is known from the
histogram); union-find over those voxels only labels the components. ``detect()`` holds the
int32 numerators (int64 for uint16 input) and then the uint32 labels + uint8 mask: about
5 bytes per voxel beyond its inputs for uint8 (see docs/detection.md for measured figures).
The numpy/scipy reference implementations (``_numerator_numpy``, ``_histogram_numpy``,
``_label_scipy``, ``_detect_numpy``) give identical results and are what the tests compare
the kernels with; they run when numba is not installed.

Decomposition (for the blockwise runner; signatures are stable)
==============================================================
``detect(pre, post, window=w, min_size=m)`` is exactly::

    sx, sy = channel_stats(pre), channel_stats(post)   # summable: ChannelStats.__add__
    check_channels(sx, sy)                              # DetectionError on flat channels
    hist = CovarianceHistogram.empty()
    for each block box (any tiling):                    # here: z-slabs of the volume
        num = covariance_numerator(extended_block(pre, box, window),
                                   extended_block(post, box, window), window=window)
        hist = hist + covariance_histogram(num)         # exact integer sum
    T = threshold_from_histogram(hist)                  # int numerator threshold
    mask = numerator >= T                               # per block, exact
    labels, sizes = label_components(mask)              # 26-connected, raster order
    labels, n = filter_components(labels, sizes, min_size)

Primitives:

- ``channel_stats(volume) -> ChannelStats`` -- ``count, total, total_sq`` as Python ints;
  ``a + b`` merges blocks; ``.mean``, ``.std`` (population).
- ``check_channels(pre_stats, post_stats, names=("presynaptic", "postsynaptic"))`` --
  raises :class:`DetectionError` for an empty or constant channel.
- ``halo(window) -> int`` -- ``window // 2``.
- ``extended_block(volume, box, window) -> ndarray`` -- ``volume[box]`` plus ``halo`` voxels
  on every side, edge-replicated where the box touches the volume border. For data not in
  memory: read ``box.grow((h, h, h), within=whole)`` and call
  ``pad_to_extended(read, box, volume_shape, window)``.
- ``covariance_numerator(pre_ext, post_ext, *, window=3) -> ndarray`` -- "valid" window sums
  on extended blocks; output shape = input shape - (window - 1) per axis; dtype int32 when
  ``n**2 * max_value**2 < 2**31`` (uint8 with window <= 5), else int64.
- ``covariance_histogram(numerator) -> CovarianceHistogram`` -- ``positive`` and
  ``negative`` int64 counts over ``N_BINS`` fixed bins; ``a + b`` merges blocks.
- ``bin_index(values) -> ndarray`` and ``bin_lower_edges() -> ndarray`` -- the fixed bins.
- ``threshold_from_histogram(hist) -> int`` -- numerator threshold ``T`` (when nothing
  co-varies, an edge above every value, so the mask is empty); ``null_floor(hist) -> int``
  is its first step (``NO_THRESHOLD`` when no edge passes).
- ``numerator_scale(pre_stats, post_stats, window) -> float`` -- ``n**2 * std_x * std_y``:
  divide a numerator by it to get the z-scored covariance (reporting only).
- ``label_components(mask) -> (labels int32, sizes int64)`` -- 26-connected, raster order.
- ``filter_components(labels, sizes, min_size) -> (labels uint32, n)`` -- keep ``> min_size``,
  renumber ``1..n`` keeping order (in place on ``labels``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import DetectionResult, ParameterSpec, validate_parameters
from synapse_pipelines.science.histogram_bins import (
    N_BINS,
    SUB_BITS,
    bin_index,
    bin_lower_edges,
    bin_lut as _bin_lut,
    otsu_split,
)

__all__ = [
    "DEFAULT_MIN_SIZE",
    "DEFAULT_WINDOW",
    "NO_THRESHOLD",
    "N_BINS",
    "ChannelStats",
    "CovarianceHistogram",
    "DetectionResult",
    "NomadsUnsupervised",
    "bin_index",
    "bin_lower_edges",
    "channel_stats",
    "check_channels",
    "covariance_histogram",
    "covariance_numerator",
    "detect",
    "extended_block",
    "filter_components",
    "halo",
    "label_components",
    "null_floor",
    "numerator_scale",
    "original_nomads",
    "pad_to_extended",
    "threshold_from_histogram",
]

DEFAULT_WINDOW = 3  # the original's 3x3x3 mean kernel
DEFAULT_MIN_SIZE = 30  # the original kept components with more than 30 voxels
MAX_WINDOW = 15
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))

#: Largest share of the voxels above the threshold that chance (the mirrored negative
#: tail) may explain; see threshold_from_histogram.
NULL_FRACTION = 0.05
#: Threshold meaning "nothing is foreground".
NO_THRESHOLD = np.iinfo(np.int64).max


# --------------------------------------------------------------------------- numba kernels
#
# The compiled kernels do exactly the integer arithmetic of the numpy reference below
# (``_numerator_numpy``, ``_label_scipy``); tests compare the two. Without numba the numpy
# path runs (about 10x slower). Reads outside the array are clamped to the nearest voxel,
# which *is* the edge-replication border rule, so detect() needs no padded copy.

try:  # pragma: no branch
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a declared dependency
    _numba = None


def _jit(func: Any) -> Any:
    if _numba is None:  # pragma: no cover
        return None
    try:
        return _numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:  # pragma: no cover - read-only install without a cache dir
        return _numba.njit(nogil=True)(func)


def _k_value_counts(volume, counts):  # type: ignore[no-untyped-def]
    flat = volume.reshape(-1)
    for i in range(flat.size):
        counts[flat[i]] += 1


def _k_plane_sums(x, y, p, y0, y1, x0, x1, w, rowx, rowy, rowxy, hx, hy, hxy, bx, by, bxy):  # type: ignore[no-untyped-def]
    """2-D window sums of x, y, x*y on plane ``p`` for rows y0:y1, cols x0:x1 (clamped).

    Inner loops run over contiguous columns so that LLVM vectorises them.
    """
    h = w // 2
    n_y, n_x = x.shape[1], x.shape[2]
    ny = y1 - y0
    nx = x1 - x0
    nxe = nx + 2 * h
    k_lo = max(0, h - x0)  # extended columns [k_lo, k_hi) need no clamping
    k_hi = min(nxe, n_x - x0 + h)
    for i in range(ny + 2 * h):
        r = min(max(y0 - h + i, 0), n_y - 1)
        xr = x[p, r]
        yr = y[p, r]
        for k in range(k_lo):
            rowx[k] = xr[0]
            rowy[k] = yr[0]
        for k in range(k_lo, k_hi):
            rowx[k] = xr[x0 - h + k]
            rowy[k] = yr[x0 - h + k]
        for k in range(k_hi, nxe):
            rowx[k] = xr[n_x - 1]
            rowy[k] = yr[n_x - 1]
        for k in range(nxe):
            rowxy[k] = rowx[k] * rowy[k]
        hxi = hx[i]
        hyi = hy[i]
        hxyi = hxy[i]
        for j in range(nx):
            hxi[j] = rowx[j]
            hyi[j] = rowy[j]
            hxyi[j] = rowxy[j]
        for d in range(1, w):
            for j in range(nx):
                hxi[j] += rowx[j + d]
                hyi[j] += rowy[j + d]
                hxyi[j] += rowxy[j + d]
    for i in range(ny):
        bxi = bx[i]
        byi = by[i]
        bxyi = bxy[i]
        src_x = hx[i]
        src_y = hy[i]
        src_xy = hxy[i]
        for j in range(nx):
            bxi[j] = src_x[j]
            byi[j] = src_y[j]
            bxyi[j] = src_xy[j]
        for d in range(1, w):
            src_x = hx[i + d]
            src_y = hy[i + d]
            src_xy = hxy[i + d]
            for j in range(nx):
                bxi[j] += src_x[j]
                byi[j] += src_y[j]
                bxyi[j] += src_xy[j]


def _k_bin(v, lut, sub_bits):  # type: ignore[no-untyped-def]
    """Bin of a positive int64 (same as bin_index)."""
    if v < lut.size:
        return lut[v]
    _, ex = math.frexp(float(v))
    e = ex - 1
    if v >= (1 << 53) and v < (1 << e):
        e -= 1
    sub = 1 << sub_bits
    return (e - sub_bits + 1) * sub + (v >> (e - sub_bits)) - sub


def _k_count_row(row, small, hist_pos, hist_neg, lut, sub_bits):  # type: ignore[no-untyped-def]
    """Histogram one row: |v| < half goes to a direct count table (folded later)."""
    half = small.size // 2
    for j in range(row.size):
        v = np.int64(row[j])
        if -half < v < half:
            small[v + half] += 1
        elif v > 0:
            hist_pos[_k_bin_j(v, lut, sub_bits)] += 1
        else:
            hist_neg[_k_bin_j(-v, lut, sub_bits)] += 1


def _k_fold_small(small, hist_pos, hist_neg, lut):  # type: ignore[no-untyped-def]
    half = small.size // 2
    for v in range(1, half):
        hist_pos[lut[v]] += small[half + v]
        hist_neg[lut[v]] += small[half - v]
        small[half + v] = 0
        small[half - v] = 0
    small[half] = 0


def _k_numerator(  # type: ignore[no-untyped-def]
    x,
    y,
    z0,
    z1,
    y0,
    y1,
    x0,
    x1,
    w,
    out,
    hist_pos,
    hist_neg,
    lut,
    sub_bits,
    rowx,
    rowy,
    rowxy,
    hx,
    hy,
    hxy,
    ring_x,
    ring_y,
    ring_xy,
    tx,
    ty,
    txy,
    small,
    do_hist,
):
    """Numerator n*S_xy - S_x*S_y for the box [z0:z1, y0:y1, x0:x1] of x/y (clamped reads)
    into ``out`` (shape of the box); optionally accumulate the histograms.

    Works in strips of ``ring_x.shape[1]`` rows so that the per-plane window sums of the
    ``w`` planes in flight stay in the L2 cache; integer sums make the result independent
    of the strip height.
    """
    h = w // 2
    n = w * w * w
    n_z = x.shape[0]
    nx = x1 - x0
    strip = ring_x.shape[1]
    slot_plane = np.empty(w, dtype=np.int64)
    slots = np.empty(w, dtype=np.int64)
    for sy0 in range(y0, y1, strip):
        sy1 = min(sy0 + strip, y1)
        slot_plane[:] = -1
        for z in range(z0, z1):
            for d in range(w):
                p = min(max(z - h + d, 0), n_z - 1)
                s = p % w
                slots[d] = s
                if slot_plane[s] != p:
                    _k_plane_sums_j(
                        x,
                        y,
                        p,
                        sy0,
                        sy1,
                        x0,
                        x1,
                        w,
                        rowx,
                        rowy,
                        rowxy,
                        hx,
                        hy,
                        hxy,
                        ring_x[s],
                        ring_y[s],
                        ring_xy[s],
                    )
                    slot_plane[s] = p
            oz = out[z - z0]
            for i in range(sy1 - sy0):
                s = slots[0]
                src_x = ring_x[s, i]
                src_y = ring_y[s, i]
                src_xy = ring_xy[s, i]
                for j in range(nx):
                    tx[j] = src_x[j]
                    ty[j] = src_y[j]
                    txy[j] = src_xy[j]
                for d in range(1, w):
                    s = slots[d]
                    src_x = ring_x[s, i]
                    src_y = ring_y[s, i]
                    src_xy = ring_xy[s, i]
                    for j in range(nx):
                        tx[j] += src_x[j]
                        ty[j] += src_y[j]
                        txy[j] += src_xy[j]
                ozi = oz[sy0 - y0 + i]
                for j in range(nx):
                    ozi[j] = n * txy[j] - tx[j] * ty[j]
                if do_hist:
                    _k_count_row_j(ozi, small, hist_pos, hist_neg, lut, sub_bits)
    if do_hist:
        _k_fold_small_j(small, hist_pos, hist_neg, lut)


def _k_histogram(values, hist_pos, hist_neg, lut, sub_bits, small):  # type: ignore[no-untyped-def]
    flat = values.reshape(-1)
    _k_count_row_j(flat, small, hist_pos, hist_neg, lut, sub_bits)
    _k_fold_small_j(small, hist_pos, hist_neg, lut)


def _k_select(values, threshold, out):  # type: ignore[no-untyped-def]
    """Raster-order linear indices of voxels >= threshold; returns how many."""
    flat = values.reshape(-1)
    k = 0
    for i in range(flat.size):
        if flat[i] >= threshold:
            out[k] = i
            k += 1
    return k


def _k_find(parent, a):  # type: ignore[no-untyped-def]
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def _k_components(shape_z, shape_y, shape_x, fg, labels, sizes_out):  # type: ignore[no-untyped-def]
    """26-connected components of the voxels ``fg`` (sorted linear indices).

    Writes provisional ids into ``labels`` (flat), unions backward neighbours, and leaves
    in ``labels[fg]`` the component number 1..m (raster order of first voxel); returns m
    and fills ``sizes_out[1..m]``.
    """
    nfg = fg.size
    parent = np.arange(nfg)
    plane = shape_y * shape_x
    for k in range(nfg):
        labels[fg[k]] = k + 1
    for k in range(nfg):
        idx = fg[k]
        z = idx // plane
        rem = idx - z * plane
        yy = rem // shape_x
        xx = rem - yy * shape_x
        for dz in range(-1, 1):
            zz = z + dz
            if zz < 0:
                continue
            for dy in range(-1, 2):
                if dz == 0 and dy > 0:
                    break
                y2 = yy + dy
                if y2 < 0 or y2 >= shape_y:
                    continue
                for dx in range(-1, 2):
                    if dz == 0 and dy == 0 and dx >= 0:
                        break
                    x2 = xx + dx
                    if x2 < 0 or x2 >= shape_x:
                        continue
                    other = labels[zz * plane + y2 * shape_x + x2]
                    if other != 0:
                        ra = _k_find_j(parent, k)
                        rb = _k_find_j(parent, other - 1)
                        if ra < rb:
                            parent[rb] = ra
                        elif rb < ra:
                            parent[ra] = rb
    # roots are the smallest index of their component: its first voxel in raster order
    comp = np.zeros(nfg, dtype=np.int64)
    m = 0
    for k in range(nfg):
        r = _k_find_j(parent, k)
        if r == k:
            m += 1
            comp[k] = m
        c = comp[r]
        labels[fg[k]] = c
        sizes_out[c] += 1
    return m


def _k_relabel(fg, labels, lut, mask):  # type: ignore[no-untyped-def]
    for k in range(fg.size):
        i = fg[k]
        v = lut[labels[i]]
        labels[i] = v
        if v != 0:
            mask[i] = 255


_k_value_counts_j = _jit(_k_value_counts)
_k_plane_sums_j = _jit(_k_plane_sums)
_k_bin_j = _jit(_k_bin)
_k_count_row_j = _jit(_k_count_row)
_k_fold_small_j = _jit(_k_fold_small)
_k_numerator_j = _jit(_k_numerator)
_k_histogram_j = _jit(_k_histogram)
_k_select_j = _jit(_k_select)
_k_find_j = _jit(_k_find)
_k_components_j = _jit(_k_components)
_k_relabel_j = _jit(_k_relabel)


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
    if _k_value_counts_j is not None:
        _k_value_counts_j(np.ascontiguousarray(volume), counts)
    else:  # pragma: no cover
        counts += np.bincount(volume.ravel(), minlength=counts.size)
    return counts


def channel_stats(volume: np.ndarray) -> ChannelStats:
    """Exact count, sum, sum of squares, min and max of a uint8/uint16 block."""
    _check_dtype(volume, "volume")
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


def numerator_scale(pre: ChannelStats, post: ChannelStats, window: int = DEFAULT_WINDOW) -> float:
    """Divide a covariance numerator by this to get the z-scored local covariance."""
    n = window**3
    return float(n * n) * pre.std * post.std


# --------------------------------------------------------------------------- windows


def halo(window: int) -> int:
    """Voxels a block needs on each side for its window sums."""
    return window // 2


def pad_to_extended(
    read: np.ndarray, box: Box, volume_shape: tuple[int, int, int], window: int
) -> np.ndarray:
    """Pad ``read`` (the data of ``box.grow(halo, within=volume)``) to the full halo.

    The volume border rule: replicate the edge voxel (``numpy.pad(mode="edge")``).
    """
    h = halo(window)
    whole = Box.from_shape(volume_shape)
    grown = box.grow((h, h, h), within=whole)
    if tuple(read.shape) != grown.shape:
        raise DetectionError(
            f"block read has shape {read.shape}, expected {grown.shape} for {box}",
            field="block",
            hint="read box.grow((h, h, h), within=the whole volume)",
        )
    pads = [
        (h - (b0 - g0), h - (g1 - b1))
        for b0, b1, g0, g1 in zip(box.start, box.stop, grown.start, grown.stop, strict=True)
    ]
    if any(p for pair in pads for p in pair):
        return np.pad(read, pads, mode="edge")
    return read


def extended_block(volume: np.ndarray, box: Box, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """``volume[box]`` with a ``window // 2`` halo, edge-replicated at the volume border."""
    h = halo(window)
    grown = box.grow((h, h, h), within=Box.from_shape(volume.shape))
    return pad_to_extended(volume[grown.slices()], box, volume.shape, window)


def _numerator_dtype(max_value: int, window: int) -> np.dtype:
    n = window**3
    return np.dtype(np.int32) if n * n * max_value * max_value < 2**31 else np.dtype(np.int64)


def _accumulator_dtype(max_value: int, window: int) -> np.dtype:
    """Window sums of x*y (the largest) fit int32 when n * max**2 < 2**31."""
    return np.dtype(np.int32) if window**3 * max_value * max_value < 2**31 else np.dtype(np.int64)


def _box_sum_valid(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over ``window``-wide windows along every axis ("valid" mode), exact integers."""
    for axis in range(3):
        n_out = a.shape[axis] - window + 1
        idx = [slice(None)] * 3
        idx[axis] = slice(0, n_out)
        acc = a[tuple(idx)].copy()
        for k in range(1, window):
            idx[axis] = slice(k, k + n_out)
            acc += a[tuple(idx)]
        a = acc
    return a


def _numerator_numpy(pre_ext: np.ndarray, post_ext: np.ndarray, window: int) -> np.ndarray:
    """Reference implementation of covariance_numerator (numpy, ~10x slower)."""
    max_value = max(np.iinfo(pre_ext.dtype).max, np.iinfo(post_ext.dtype).max)
    acc = _accumulator_dtype(max_value, window)
    x = pre_ext.astype(acc)
    y = post_ext.astype(acc)
    sxy = _box_sum_valid(x * y, window)
    sx = _box_sum_valid(x, window)
    sy = _box_sum_valid(y, window)
    del x, y
    n = window**3
    out = _numerator_dtype(max_value, window)
    return (n * sxy.astype(np.int64) - sx.astype(np.int64) * sy.astype(np.int64)).astype(out)


#: Values with |v| below this are histogrammed through a direct count table.
_SMALL = 1 << 16


class _Workspace:
    """Scratch buffers of the numerator kernel for rows of ``nx`` voxels."""

    #: Target size of the strip ring (w planes x strip rows x 3 sums): fits in L2.
    RING_BYTES = 512 * 1024

    def __init__(self, nx: int, window: int, acc: np.dtype):
        h = window // 2
        itemsize = acc.itemsize
        strip = int(np.clip(self.RING_BYTES // (window * max(nx, 1) * 3 * itemsize), 1, 256))
        self.strip = strip
        self.rows = [np.empty(nx + 2 * h, acc) for _ in range(3)]
        self.h = [np.empty((strip + 2 * h, nx), acc) for _ in range(3)]
        self.ring = [np.empty((window, strip, nx), acc) for _ in range(3)]
        self.t = [np.empty(nx, acc) for _ in range(3)]
        self.small = np.zeros(2 * _SMALL, np.uint32)
        self.hist_pos = np.zeros(N_BINS, np.int64)
        self.hist_neg = np.zeros(N_BINS, np.int64)


def _run_numerator(
    x: np.ndarray,
    y: np.ndarray,
    box: Box,
    window: int,
    out: np.ndarray,
    *,
    histogram: bool,
) -> CovarianceHistogram | None:
    """Numerators of ``box`` (reads clamped to the arrays = edge replication) into out."""
    max_value = max(np.iinfo(x.dtype).max, np.iinfo(y.dtype).max)
    ws = _Workspace(box.shape[2], window, _accumulator_dtype(max_value, window))
    (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
    _k_numerator_j(
        x, y, z0, z1, y0, y1, x0, x1, window, out, ws.hist_pos, ws.hist_neg, _bin_lut(),
        SUB_BITS, *ws.rows, *ws.h, *ws.ring, *ws.t, ws.small, histogram,
    )  # fmt: skip
    if histogram:
        return CovarianceHistogram(ws.hist_pos, ws.hist_neg)
    return None


def covariance_numerator(
    pre_ext: np.ndarray, post_ext: np.ndarray, *, window: int = DEFAULT_WINDOW
) -> np.ndarray:
    """``n * S_xy - S_x * S_y`` for every voxel of an extended block (exact integers).

    ``pre_ext``/``post_ext`` carry a ``window // 2`` halo on each side (see
    :func:`extended_block`); the result has shape ``ext.shape - (window - 1)``.
    """
    _check_window(window)
    _check_dtype(pre_ext, "presynaptic")
    _check_dtype(post_ext, "postsynaptic")
    if pre_ext.shape != post_ext.shape or pre_ext.ndim != 3:
        raise DetectionError(
            f"extended blocks differ in shape or are not 3-D: {pre_ext.shape} vs {post_ext.shape}",
            field="block",
            hint="extend both channels with the same box and window",
        )
    h = halo(window)
    if min(pre_ext.shape) <= 2 * h:
        raise DetectionError(
            f"extended block {pre_ext.shape} has no voxel inside its {h}-voxel halo",
            field="block",
            hint="extend the block with extended_block() or pad_to_extended()",
        )
    if _k_numerator_j is None:  # pragma: no cover
        return _numerator_numpy(pre_ext, post_ext, window)
    max_value = max(np.iinfo(pre_ext.dtype).max, np.iinfo(post_ext.dtype).max)
    inner = Box((h, h, h), tuple(s - h for s in pre_ext.shape))  # type: ignore[arg-type]
    out = np.empty(inner.shape, dtype=_numerator_dtype(max_value, window))
    _run_numerator(
        np.ascontiguousarray(pre_ext),
        np.ascontiguousarray(post_ext),
        inner,
        window,
        out,
        histogram=False,
    )
    return out


# --------------------------------------------------------------------------- histogram


@dataclass(frozen=True)
class CovarianceHistogram:
    """Counts of positive numerators and of |negative numerators| per fixed bin."""

    positive: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, np.int64))
    negative: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, np.int64))

    @classmethod
    def empty(cls) -> CovarianceHistogram:
        return cls()

    def __add__(self, other: CovarianceHistogram) -> CovarianceHistogram:
        return CovarianceHistogram(self.positive + other.positive, self.negative + other.negative)

    def to_dict(self) -> dict[str, list[int]]:
        return {"positive": self.positive.tolist(), "negative": self.negative.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, list[int]]) -> CovarianceHistogram:
        return cls(
            np.asarray(data["positive"], dtype=np.int64),
            np.asarray(data["negative"], dtype=np.int64),
        )


def _histogram_numpy(numerator: np.ndarray) -> CovarianceHistogram:
    flat = numerator.ravel()
    pos = flat[flat > 0]
    neg = flat[flat < 0]
    return CovarianceHistogram(
        np.bincount(bin_index(pos), minlength=N_BINS).astype(np.int64),
        np.bincount(bin_index(-neg.astype(np.int64)), minlength=N_BINS).astype(np.int64),
    )


def covariance_histogram(numerator: np.ndarray) -> CovarianceHistogram:
    """Histogram of one block's numerators (sum blocks with ``+``)."""
    if _k_histogram_j is None:  # pragma: no cover
        return _histogram_numpy(numerator)
    hist = CovarianceHistogram.empty()
    _k_histogram_j(
        np.ascontiguousarray(numerator),
        hist.positive,
        hist.negative,
        _bin_lut(),
        SUB_BITS,
        np.zeros(2 * _SMALL, np.uint32),
    )
    return hist


def null_floor(hist: CovarianceHistogram, *, null_fraction: float = NULL_FRACTION) -> int:
    """Smallest bin edge ``T0`` with ``neg(>= T0) <= null_fraction * pos(>= T0)``.

    Below it, more than ``null_fraction`` of the positive ("co-varying") voxels would be
    explained by chance, as estimated by the mirrored negative tail. :data:`NO_THRESHOLD`
    when no edge passes (e.g. an empty histogram).
    """
    pos_tail = np.cumsum(hist.positive[::-1])[::-1]
    neg_tail = np.cumsum(hist.negative[::-1])[::-1]
    passing = np.nonzero((pos_tail > 0) & (neg_tail <= null_fraction * pos_tail))[0]
    return int(bin_lower_edges()[passing[0]]) if passing.size else int(NO_THRESHOLD)


def threshold_from_histogram(
    hist: CovarianceHistogram, *, null_fraction: float = NULL_FRACTION
) -> int:
    """Robust Otsu threshold (integer numerator ``T``; foreground: ``numerator >= T``).

    1. The null floor ``T0`` (:func:`null_floor`): noise and one-channel puncta give a
       covariance distribution symmetric around zero, so the mirrored negative tail
       estimates how many positive values chance explains.
    2. Otsu's method (maximum between-class variance) on the **excess** counts
       ``max(pos - neg, 0)`` of the bins at or above ``T0``, with log2 bin centres (the
       numerator is a product of intensities: its scale is multiplicative).

    ``T = max(T0, Otsu split)``. When no edge passes the null test (nothing co-varies
    beyond chance), ``T`` is the first bin edge above every positive value (1 if there is
    none), so nothing is foreground and the threshold is still a finite number. On pure
    noise ``T0`` lies at the very top of the distribution and nothing survives the size
    filter.
    """
    floor = null_floor(hist, null_fraction=null_fraction)
    edges = bin_lower_edges()
    if floor == NO_THRESHOLD:
        # Nothing co-varies beyond chance: a finite threshold above every value, so the
        # reported threshold stays a plain number (JSON has no NaN or infinity).
        filled = np.nonzero(hist.positive)[0]
        if filled.size == 0:
            return 1
        top = int(filled[-1]) + 1
        return int(edges[top]) if top < N_BINS else int(NO_THRESHOLD)
    k0 = int(bin_index(np.array([floor]))[0])
    excess = np.clip(hist.positive - hist.negative, 0, None).astype(np.float64)
    excess[:k0] = 0.0
    nonzero = np.nonzero(excess)[0]
    if nonzero.size < 2:
        return floor
    lower = edges.astype(np.float64)
    upper = np.append(lower[1:], 2.0 * lower[-1])
    centres = np.log2(np.maximum(0.5 * (lower + upper - 1.0), 1.0))
    lo, hi = nonzero[0], nonzero[-1] + 1
    split = otsu_split(excess[lo:hi], centres[lo:hi])  # first maximum: deterministic
    return max(int(edges[lo + split + 1]), floor)


# --------------------------------------------------------------------------- components

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _label_scipy(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation of label_components (scipy)."""
    labels = np.empty(mask.shape, dtype=np.int32)
    ndimage.label(mask, structure=_STRUCTURE_26, output=labels)
    return labels, np.bincount(labels.ravel()).astype(np.int64)


def _components(shape: tuple[int, ...], fg: np.ndarray, labels_flat: np.ndarray) -> np.ndarray:
    """Union-find over the foreground voxels ``fg`` (sorted linear indices) only.

    Writes component numbers (raster order) into ``labels_flat[fg]``; returns sizes with
    ``sizes[0]`` = background voxels.
    """
    sizes = np.zeros(fg.size + 1, dtype=np.int64)
    m = _k_components_j(shape[0], shape[1], shape[2], fg, labels_flat, sizes)
    sizes = sizes[: m + 1]
    sizes[0] = int(np.prod(shape)) - fg.size
    return sizes


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected components numbered in raster order; ``sizes[k]`` = voxels of ``k``.

    Compiled: union-find over the foreground voxels only (they are a small fraction), so
    the cost is one scan of the mask plus work proportional to the foreground.
    """
    if _k_components_j is None or mask.ndim != 3:  # pragma: no cover
        return _label_scipy(mask)
    fg = np.flatnonzero(mask)
    labels = np.zeros(mask.shape, dtype=np.uint32)  # the dtype detect() uses: one compile
    sizes = _components(mask.shape, fg, labels.reshape(-1))
    return labels.view(np.int32), sizes


def filter_components(
    labels: np.ndarray, sizes: np.ndarray, min_size: int = DEFAULT_MIN_SIZE
) -> tuple[np.ndarray, int]:
    """Keep components with more than ``min_size`` voxels, renumbered ``1..n`` in order.

    Vectorised: one lookup table indexed by label (the original compared the whole volume
    with every label in turn, which is quadratic). Works in place on ``labels``.
    """
    keep = sizes > min_size
    keep[0] = False
    lut = np.cumsum(keep, dtype=np.int64)
    lut[~keep] = 0
    n = int(keep.sum())
    out_dtype = np.uint32 if n < 2**32 else np.uint64
    if labels.dtype.itemsize == np.dtype(out_dtype).itemsize:
        np.take(lut.astype(labels.dtype), labels, out=labels)
        return labels.view(out_dtype), n
    return lut.astype(out_dtype)[labels], n


# --------------------------------------------------------------------------- detect


def _check_dtype(volume: Any, name: str) -> None:
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


def _native_byte_order(volume: Any) -> Any:
    """Big-endian uint16 (e.g. from some TIFF files) as native uint16; anything else as is."""
    if (
        isinstance(volume, np.ndarray)
        and volume.dtype.kind == "u"
        and volume.dtype.itemsize == 2
        and not volume.dtype.isnative
    ):
        return volume.astype(np.uint16)
    return volume


def _check_window(window: Any) -> None:
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


def _check_min_size(min_size: Any) -> None:
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 0:
        raise DetectionError(
            f"min_size must be a non-negative integer, got {min_size!r}",
            field="min_size",
            hint="use 30 (the original) or another voxel count",
        )


def _check_inputs(pre: Any, post: Any, window: int) -> None:
    _check_dtype(pre, "presynaptic")
    _check_dtype(post, "postsynaptic")
    for volume, name in ((pre, "presynaptic"), (post, "postsynaptic")):
        if volume.ndim != 3:
            raise DetectionError(
                f"expected a 3-D (z, y, x) volume, got {volume.ndim} dimension(s) "
                f"with shape {volume.shape}",
                field=name,
                hint="pass one channel as a ZYX array",
            )
    if pre.shape != post.shape:
        raise DetectionError(
            f"channel shapes differ: presynaptic {pre.shape}, postsynaptic {post.shape}",
            field="postsynaptic",
            hint="cut both channels from the same z/y/x box",
        )
    if min(pre.shape) < window:
        raise DetectionError(
            f"volume {pre.shape} is thinner than the {window}x{window}x{window} window",
            field="volume",
            hint=f"request at least {window} voxels along every axis",
        )


def _detect_compiled(
    pre: np.ndarray, post: np.ndarray, window: int, min_size: int, timings: dict[str, float]
) -> tuple[int, np.ndarray, np.ndarray, int]:
    """detect() steps 2-4 with the compiled kernels, one pass each, ~5 bytes per voxel."""
    shape = pre.shape
    t0 = time.perf_counter()
    max_value = max(np.iinfo(pre.dtype).max, np.iinfo(post.dtype).max)
    numerator = np.empty(shape, dtype=_numerator_dtype(max_value, window))
    # Reads clamped to the volume = the edge-replication border rule; no padded copy.
    hist = _run_numerator(
        np.ascontiguousarray(pre),
        np.ascontiguousarray(post),
        Box.from_shape(shape),
        window,
        numerator,
        histogram=True,
    )
    assert hist is not None
    timings["covariance"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    t_num = threshold_from_histogram(hist)
    if t_num == NO_THRESHOLD:
        n_fg = 0
    else:  # T is a bin edge, so the histogram counts the foreground exactly
        n_fg = int(hist.positive[int(bin_index(np.array([t_num]))[0]) :].sum())
    fg = np.empty(n_fg, dtype=np.int64)
    if n_fg:
        found = _k_select_j(numerator.reshape(-1), t_num, fg)
        assert found == n_fg, (found, n_fg)
    del numerator
    timings["threshold"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = np.zeros(shape, dtype=np.uint32)
    flat = labels.reshape(-1)
    sizes = _components(shape, fg, flat)
    keep = sizes > min_size
    keep[0] = False
    lut = np.cumsum(keep).astype(np.uint32)
    lut[~keep] = 0
    n = int(keep.sum())
    mask = np.zeros(shape, dtype=np.uint8)
    _k_relabel_j(fg, flat, lut, mask.reshape(-1))
    timings["components"] = time.perf_counter() - t0
    return t_num, labels, mask, n


def _detect_numpy(
    pre: np.ndarray, post: np.ndarray, window: int, min_size: int, timings: dict[str, float]
) -> tuple[int, np.ndarray, np.ndarray, int]:
    """detect() steps 2-4 with the numpy/scipy reference implementations."""
    t0 = time.perf_counter()
    whole = Box.from_shape(pre.shape)
    numerator = _numerator_numpy(
        extended_block(pre, whole, window), extended_block(post, whole, window), window
    )
    hist = _histogram_numpy(numerator)
    timings["covariance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    t_num = threshold_from_histogram(hist)
    mask = numerator >= t_num
    del numerator
    timings["threshold"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels, sizes = _label_scipy(mask)
    labels, n = filter_components(labels, sizes, min_size)
    timings["components"] = time.perf_counter() - t0
    return t_num, labels, (labels > 0).astype(np.uint8) * 255, n


def detect(
    presynaptic: np.ndarray,
    postsynaptic: np.ndarray,
    *,
    window: int = DEFAULT_WINDOW,
    min_size: int = DEFAULT_MIN_SIZE,
) -> DetectionResult:
    """Run NOMADS on two ZYX channels (see the module docstring for the exact method)."""
    _check_window(window)
    _check_min_size(min_size)
    presynaptic = _native_byte_order(presynaptic)
    postsynaptic = _native_byte_order(postsynaptic)
    _check_inputs(presynaptic, postsynaptic, window)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    pre_stats = channel_stats(presynaptic)
    post_stats = channel_stats(postsynaptic)
    check_channels(pre_stats, post_stats)
    timings["stats"] = time.perf_counter() - t0

    if _numba is None:  # pragma: no cover - numba is a declared dependency
        t_num, labels, out_mask, n = _detect_numpy(
            presynaptic, postsynaptic, window, min_size, timings
        )
    else:
        t_num, labels, out_mask, n = _detect_compiled(
            presynaptic, postsynaptic, window, min_size, timings
        )
    scale = numerator_scale(pre_stats, post_stats, window)
    threshold = float(t_num) / scale  # finite: t_num is always a bin edge
    return DetectionResult(
        labels=labels,
        mask=out_mask,
        threshold=threshold,
        n_synapses=n,
        parameters={
            "window": window,
            "min_size": min_size,
            "threshold_numerator": int(t_num),
            "presynaptic_mean": pre_stats.mean,
            "presynaptic_std": pre_stats.std,
            "postsynaptic_mean": post_stats.mean,
            "postsynaptic_std": post_stats.std,
        },
        timings=timings,
    )


# --------------------------------------------------------------------------- original


def _otsu_256(values: np.ndarray) -> float:
    """skimage.filters.threshold_otsu as the original called it: 256 bins, min to max."""
    counts, edges = np.histogram(values, bins=256, range=(values.min(), values.max()))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts).astype(np.float64)
    w1 = np.cumsum(counts[::-1])[::-1].astype(np.float64)
    m0 = np.cumsum(counts * centres) / np.where(w0 > 0, w0, 1)
    m1 = (np.cumsum((counts * centres)[::-1]) / np.where(w1[::-1] > 0, w1[::-1], 1))[::-1]
    between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def original_nomads(presynaptic: np.ndarray, postsynaptic: np.ndarray) -> np.ndarray:
    """Faithful re-implementation of the 2018 NOMADS code, for tests and benchmarks only.

    Float64 z-score per channel, its covariance line ``convolve(x + y) - convolve(x) +
    convolve(y)`` with a 3x3x3 mean kernel (scipy's default ``reflect`` border), Otsu on
    256 bins between min and max, 26-connected labels, and the quadratic small-object
    filter (one full-volume comparison per label, dropping components of <= 30 voxels).
    Returns the 0/255 uint8 mask. Do not use it for detection: see the module docstring.
    """
    x = presynaptic.astype(np.float64)
    y = postsynaptic.astype(np.float64)
    x = (x - x.mean()) / x.std()
    y = (y - y.mean()) / y.std()
    kernel = np.full((3, 3, 3), 1.0 / 27.0)
    cov = (
        ndimage.convolve(x + y, kernel) - ndimage.convolve(x, kernel) + ndimage.convolve(y, kernel)
    )
    binary = cov > _otsu_256(cov)
    labels, n = ndimage.label(binary, structure=_STRUCTURE_26)
    for label in range(1, n + 1):  # the original's quadratic loop, kept on purpose
        component = labels == label
        if component.sum() <= DEFAULT_MIN_SIZE:
            binary[component] = False
    return binary.astype(np.uint8) * 255


# --------------------------------------------------------------------------- plug-in


class NomadsUnsupervised:
    """The ``nomads-unsupervised`` pipeline (entry point target)."""

    name = "nomads-unsupervised"
    description = (
        "NOMADS: local 3-D covariance of z-scored synapsin and PSD95, robust Otsu "
        "threshold, 26-connected components larger than min_size voxels"
    )
    parameters: Mapping[str, ParameterSpec] = {
        "window": ParameterSpec(
            int, DEFAULT_WINDOW, "edge of the cubic covariance window, voxels", 3, MAX_WINDOW, True
        ),
        "min_size": ParameterSpec(
            int, DEFAULT_MIN_SIZE, "keep components with more voxels than this", 0, 10**9
        ),
    }

    def run(
        self,
        channels: Mapping[str, np.ndarray],
        presynaptic: str,
        postsynaptic: str,
        *,
        voxel_size: tuple[float, float, float] | None = None,  # NOMADS works in voxels
        **params: int | float,
    ) -> DetectionResult:
        resolved = validate_parameters(self, params)
        for role, name in (("presynaptic", presynaptic), ("postsynaptic", postsynaptic)):
            if name not in channels:
                raise DetectionError(
                    f"channel {name!r} is not among the channels given "
                    f"({', '.join(sorted(channels))})",
                    field=role,
                    hint="pass the name of one of the pulled channels",
                )
        return detect(
            channels[presynaptic],
            channels[postsynaptic],
            window=int(resolved["window"]),
            min_size=int(resolved["min_size"]),
        )
