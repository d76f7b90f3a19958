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

import functools
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

__all__ = [
    "DEFAULT_MIN_SIZE",
    "DEFAULT_MIN_VOLUME_UM3",
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
    "check_voxel_size",
    "covariance_histogram",
    "covariance_numerator",
    "detect",
    "effective_window",
    "explain_empty",
    "extended_block",
    "filter_components",
    "halo",
    "halo_shape",
    "label_components",
    "min_size_voxels",
    "numerator_scale",
    "original_nomads",
    "pad_to_extended",
    "threshold_from_histogram",
    "window_shape",
]

DEFAULT_WINDOW = 3  # the original's 3x3x3 mean kernel
DEFAULT_MIN_SIZE = 30  # the original kept components with more than 30 voxels
MAX_WINDOW = 15
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))

#: log2 of the number of bins per power of two (HDR-histogram "significant bits").
SUB_BITS = 5
_SUB = 1 << SUB_BITS
#: Bins cover every int64 magnitude: exact values below 2**SUB_BITS, then _SUB per octave.
N_BINS = (63 - SUB_BITS + 1) * _SUB
#: Positive numerators above this quantile count as its bin in the threshold's Otsu (a few
#: saturated specks must not pull the split up); see threshold_from_histogram.
CLIP_QUANTILE = 0.995
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
    wz,
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
    into ``out`` (shape of the box); optionally accumulate the histograms. The window is
    ``wz`` planes of ``w x w`` pixels (``wz = 1``: per-plane, 2-D detection).

    Works in strips of ``ring_x.shape[1]`` rows so that the per-plane window sums of the
    ``wz`` planes in flight stay in the L2 cache; integer sums make the result independent
    of the strip height.
    """
    hz = wz // 2
    n = wz * w * w
    n_z = x.shape[0]
    nx = x1 - x0
    strip = ring_x.shape[1]
    slot_plane = np.empty(wz, dtype=np.int64)
    slots = np.empty(wz, dtype=np.int64)
    for sy0 in range(y0, y1, strip):
        sy1 = min(sy0 + strip, y1)
        slot_plane[:] = -1
        for z in range(z0, z1):
            for d in range(wz):
                p = min(max(z - hz + d, 0), n_z - 1)
                s = p % wz
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
                for d in range(1, wz):
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


def _numerator_dtype(max_value: int, window: int | WindowShape) -> np.dtype:
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


def _numerator_numpy(
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
    out = _numerator_dtype(max_value, window)
    return (n * sxy.astype(np.int64) - sx.astype(np.int64) * sy.astype(np.int64)).astype(out)


#: Values with |v| below this are histogrammed through a direct count table.
_SMALL = 1 << 16


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
        self.small = np.zeros(2 * _SMALL, np.uint32)
        self.hist_pos = np.zeros(N_BINS, np.int64)
        self.hist_neg = np.zeros(N_BINS, np.int64)


def _run_numerator(
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
    _k_numerator_j(
        x, y, z0, z1, y0, y1, x0, x1, shape[0], shape[1], out, ws.hist_pos, ws.hist_neg,
        _bin_lut(), SUB_BITS, *ws.rows, *ws.h, *ws.ring, *ws.t, ws.small, histogram,
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
    _check_window(shape[1])
    if shape[0] not in (1, shape[1]) or shape[2] != shape[1]:
        raise DetectionError(
            f"window {shape} must be (w, w, w) or (1, w, w)",
            field="window",
            hint="use an odd int, or effective_window() for thin volumes",
        )
    _check_dtype(pre_ext, "presynaptic")
    _check_dtype(post_ext, "postsynaptic")
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
    if _k_numerator_j is None:  # pragma: no cover
        return _numerator_numpy(pre_ext, post_ext, shape)
    max_value = max(np.iinfo(pre_ext.dtype).max, np.iinfo(post_ext.dtype).max)
    inner = Box(h, tuple(s - ha for s, ha in zip(pre_ext.shape, h, strict=True)))  # type: ignore[arg-type]
    out = np.empty(inner.shape, dtype=_numerator_dtype(max_value, shape))
    _run_numerator(
        np.ascontiguousarray(pre_ext),
        np.ascontiguousarray(post_ext),
        inner,
        shape,
        out,
        histogram=False,
    )
    return out


# --------------------------------------------------------------------------- histogram


def bin_index(values: np.ndarray) -> np.ndarray:
    """Fixed log-linear bin of each non-negative integer (exact, no float rounding)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return np.zeros(0, dtype=np.int64)
    # floor(log2 v): frexp is exact below 2**53; correct the rare round-up above it.
    _, exp = np.frexp(v.astype(np.float64))
    e = exp.astype(np.int64) - 1
    big = v >= 1 << 53
    if big.any():
        e[big] -= (v[big] < np.left_shift(np.int64(1), e[big])).astype(np.int64)
    small = v < _SUB
    shift = np.maximum(e - SUB_BITS, 0)
    idx = (e - SUB_BITS + 1) * _SUB + (v >> shift) - _SUB
    return np.where(small, v, idx)


def bin_lower_edges() -> np.ndarray:
    """Smallest integer of every bin (int64, length ``N_BINS``)."""
    k = np.arange(N_BINS, dtype=np.int64)
    group, rest = k // _SUB, k % _SUB
    shift = np.maximum(group - 1, 0)
    edges = np.where(group == 0, k, (_SUB + rest) << shift)
    return edges


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


@functools.cache
def _bin_lut() -> np.ndarray:
    """bin_index of 0 .. _SMALL - 1 (int16), used by the compiled histogram."""
    return bin_index(np.arange(_SMALL)).astype(np.int16)


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


def threshold_from_histogram(hist: CovarianceHistogram) -> int:
    """Otsu threshold of the positive numerators, clipped at their 99.5th percentile.

    Returns the integer numerator ``T``; foreground is ``numerator >= T``.

    - **Positive part only.** Where the two channels rise together the covariance is
      positive; the negative values (a punctum in one channel beside background in the
      other) carry no synapse, and on real tissue they are so many that Otsu over the whole
      map splits them off instead of the synapses.
    - **Clipped at the 99.5th percentile** (:data:`CLIP_QUANTILE`): a few saturated or
      autofluorescent specks pull plain Otsu so high that a crop collapses to one or two
      objects; values above the quantile's bin count as that bin.
    - **Otsu** (maximum between-class variance) on the fixed bins, with linear bin centres,
      as the original's ``threshold_otsu`` used the values themselves. The bins are the
      fixed log-linear ones (~3 % wide), so the histogram is an exact integer sum over
      blocks and ``T`` (a bin edge) does not depend on how the volume was cut.

    With no positive value ``T`` is 1 (nothing is foreground); with one filled bin, its
    lower edge (every co-varying voxel is foreground).
    """
    pos = hist.positive
    filled = np.nonzero(pos)[0]
    edges = bin_lower_edges()
    if filled.size == 0:
        return 1
    cum = np.cumsum(pos)
    top = int(np.searchsorted(cum, CLIP_QUANTILE * cum[-1]))  # the quantile's bin
    counts = pos[: top + 1].astype(np.float64)
    counts[top] += float(pos[top + 1 :].sum())
    lo = int(filled[0])
    if lo >= top:
        return int(edges[lo])
    lower = edges[lo : top + 1].astype(np.float64)
    upper = edges[lo + 1 : top + 2].astype(np.float64)
    centres = 0.5 * (lower + upper - 1.0)  # the mean integer of each bin
    w = counts[lo:]
    w0 = np.cumsum(w)[:-1]
    m0 = np.cumsum(w * centres)[:-1]
    w1 = w.sum() - w0
    valid = (w0 > 0) & (w1 > 0)
    mean0 = m0 / np.where(valid, w0, 1.0)
    mean1 = ((w * centres).sum() - m0) / np.where(valid, w1, 1.0)
    between = np.where(valid, w0 * w1 * (mean0 - mean1) ** 2, -1.0)
    split = int(np.argmax(between))  # first maximum: deterministic
    return int(edges[lo + split + 1])


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
    if min(pre.shape[1:]) < window:
        raise DetectionError(
            f"volume {pre.shape} is narrower than the {window}x{window} in-plane window",
            field="volume",
            hint=f"request at least {window} voxels along y and x",
        )


def _detect_compiled(
    pre: np.ndarray,
    post: np.ndarray,
    window: WindowShape,
    min_size: int,
    timings: dict[str, float],
) -> tuple[int, np.ndarray, np.ndarray, int, np.ndarray]:
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
    return t_num, labels, mask, n, sizes


def _detect_numpy(
    pre: np.ndarray,
    post: np.ndarray,
    window: WindowShape,
    min_size: int,
    timings: dict[str, float],
) -> tuple[int, np.ndarray, np.ndarray, int, np.ndarray]:
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
    return t_num, labels, (labels > 0).astype(np.uint8) * 255, n, sizes


def detect(
    presynaptic: np.ndarray,
    postsynaptic: np.ndarray,
    *,
    window: int = DEFAULT_WINDOW,
    min_size: int = DEFAULT_MIN_SIZE,
) -> DetectionResult:
    """Run NOMADS on two ZYX channels (see the module docstring for the exact method).

    A volume with fewer sections than ``window`` (a single plane, a thin stack) is detected
    plane by plane with a ``1 x window x window`` window (:func:`effective_window`).
    ``min_size`` is in voxels here; the pipeline (:class:`NomadsUnsupervised`) takes a
    physical volume and converts it with the voxel size.
    """
    _check_window(window)
    _check_min_size(min_size)
    presynaptic = _native_byte_order(presynaptic)
    postsynaptic = _native_byte_order(postsynaptic)
    _check_inputs(presynaptic, postsynaptic, window)
    shape = effective_window(window, presynaptic.shape)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    pre_stats = channel_stats(presynaptic)
    post_stats = channel_stats(postsynaptic)
    check_channels(pre_stats, post_stats)
    timings["stats"] = time.perf_counter() - t0

    run = _detect_numpy if _numba is None else _detect_compiled
    t_num, labels, out_mask, n, sizes = run(presynaptic, postsynaptic, shape, min_size, timings)
    scale = numerator_scale(pre_stats, post_stats, shape)
    threshold = float(t_num) / scale  # finite: t_num is always a bin edge
    return DetectionResult(
        labels=labels,
        mask=out_mask,
        threshold=threshold,
        n_synapses=n,
        parameters={
            "window": window,
            "window_shape": list(shape),
            "min_size": min_size,
            "threshold_numerator": int(t_num),
            "presynaptic_mean": pre_stats.mean,
            "presynaptic_std": pre_stats.std,
            "postsynaptic_mean": post_stats.mean,
            "postsynaptic_std": post_stats.std,
        },
        timings=timings,
        explanation=explain_empty(
            n, sizes.size - 1, int(sizes[1:].max(initial=0)), min_size, threshold
        ),
    )


def explain_empty(
    n: int, n_components: int, largest: int, min_size: int, threshold: float
) -> str | None:
    """Why NOMADS found nothing (``None`` when it found something): no co-varying voxel,
    or only components of at most ``min_size`` voxels. ``n_components`` and ``largest``
    describe the components before the size filter (a blockwise stitch reduces both)."""
    if n:
        return None
    if n_components == 0:
        return (
            "no voxel's local covariance reached the threshold "
            f"({threshold:.3g} in z-scored covariance units): the two channels do not rise "
            "together anywhere in this box; check the channel choice and that the box covers "
            "tissue"
        )
    return (
        f"{n_components} co-varying component(s) were found, all of {largest} voxels or "
        f"fewer, at or below the size limit of {min_size} voxels; lower min_volume_um3"
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


#: collman15v2's voxel (z, y, x) in nm, the data the original's "more than 30 voxels" was
#: written for (BOSS frame collman_collman15v2: the immunofluorescence is resampled onto the
#: EM's 2.24 nm grid; NeuroData's feature code cuts 245 x 245 px around a synapse there).
COLLMAN15V2_VOXEL_NM: tuple[float, float, float] = (70.0, 2.24, 2.24)
#: The original's size limit as a volume: 30 collman15v2 voxels, ~1.05e-5 um^3 -- less than
#: one voxel at array tomography's usual 70 x 100 x 100 nm, so it removes nothing there.
DEFAULT_MIN_VOLUME_UM3 = DEFAULT_MIN_SIZE * math.prod(COLLMAN15V2_VOXEL_NM) * 1e-9
#: The voxel size assumed when the caller gives none (array tomography's usual sampling).
ASSUMED_VOXEL_NM: tuple[float, float, float] = (70.0, 100.0, 100.0)


def min_size_voxels(min_volume_um3: float, voxel_size_nm: tuple[float, float, float]) -> int:
    """The voxel count a component must exceed to be larger than ``min_volume_um3``.

    A plane counts as one section of its thickness, so the rule is the same in 2-D.
    The rounding slack keeps "more than 30 voxels" exact at the voxel size it came from.
    """
    voxel_um3 = math.prod(voxel_size_nm) * 1e-9
    return math.floor(min_volume_um3 / voxel_um3 + 1e-9)


class NomadsUnsupervised:
    """The ``nomads-unsupervised`` pipeline (entry point target)."""

    name = "nomads-unsupervised"
    description = (
        "NOMADS (the original's intent): local covariance of z-scored synapsin and PSD95 "
        "(3x3x3, 3x3 per plane in thin stacks), Otsu on the positive covariance clipped at "
        "its 99.5th percentile, 26-connected components larger than min_volume_um3"
    )
    parameters: Mapping[str, ParameterSpec] = {
        "window": ParameterSpec(
            int, DEFAULT_WINDOW, "edge of the cubic covariance window, voxels", 3, MAX_WINDOW, True
        ),
        "min_volume_um3": ParameterSpec(
            float,
            DEFAULT_MIN_VOLUME_UM3,
            "keep components larger than this volume, cubic micrometres (the original's 30 "
            "collman15v2 voxels)",
            0.0,
            1e6,
        ),
    }

    def run(
        self,
        channels: Mapping[str, np.ndarray],
        presynaptic: str,
        postsynaptic: str,
        *,
        voxel_size: tuple[float, float, float] | None = None,
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
        voxel = check_voxel_size(voxel_size)
        min_volume = float(resolved["min_volume_um3"])
        result = detect(
            channels[presynaptic],
            channels[postsynaptic],
            window=int(resolved["window"]),
            min_size=min_size_voxels(min_volume, voxel),
        )
        result.parameters.update(
            {"min_volume_um3": min_volume, "voxel_size": list(voxel)}
            | ({"voxel_size_assumed": True} if voxel_size is None else {})
        )
        return result


def check_voxel_size(voxel_size: Any) -> tuple[float, float, float]:
    """The voxel size (z, y, x) in nm as three positive finite floats; the assumed AT
    sampling when ``None``; a :class:`DetectionError` naming ``voxel_size`` otherwise."""
    if voxel_size is None:
        return ASSUMED_VOXEL_NM
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise DetectionError(
            f"voxel size must be three positive numbers (z, y, x) in nm, got {voxel_size!r}",
            field="voxel_size",
            hint="give the coordinate frame's voxel size, e.g. (70, 100, 100)",
        )
    return values  # type: ignore[return-value]
