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

3. **Threshold** (Otsu on the positive covariance). The positive numerators are counted on
   fixed log-linear bins (HDR-histogram style: exact integers below ``2**5``, then 32 bins
   per power of two, ~3 % wide; the edges are the same for every volume, see
   :mod:`~synapse_pipelines.science.histogram_bins`). The negative values (a punctum in one
   channel beside background in the other) carry no synapse and are left out: on real
   tissue they are so many that Otsu over the whole map splits them off instead of the
   synapses. The counts are clipped at their 99.5th percentile (a few saturated specks must
   not pull the split up) and Otsu's method (maximum between-class variance, linear bin
   centres, as the original's ``threshold_otsu``) gives the integer numerator ``T``; a voxel
   is foreground when ``numerator >= T``. With no positive value nothing is foreground.
   Thin stacks (fewer sections than the window) use a one-section window (``1 x w x w``).
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
The numpy/scipy reference implementations (``numerator_reference``,
``histogram_reference``, ``label_reference``, ``_detect_numpy``) give identical results
and are what the tests compare the kernels with; they run when numba is not installed.

Where each part lives: the primitives in :mod:`~synapse_pipelines.science.nomads_primitives`
(re-exported here), the components in :mod:`~synapse_pipelines.science.connected_components`,
the kernels in :mod:`~synapse_pipelines.science.nomads_kernels`, the plug-in in
:mod:`~synapse_pipelines.science.nomads_plugin` and the 2018 code in
:mod:`~synapse_pipelines.science.nomads_original`.

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
- ``threshold_from_histogram(hist) -> int`` -- numerator threshold ``T`` (1 when nothing
  co-varies).
- ``numerator_scale(pre_stats, post_stats, window) -> float`` -- ``n**2 * std_x * std_y``:
  divide a numerator by it to get the z-scored covariance (reporting only).
- ``label_components(mask) -> (labels int32, sizes int64)`` -- 26-connected, raster order.
- ``filter_components(labels, sizes, min_size) -> (labels uint32, n)`` -- keep ``> min_size``,
  renumber ``1..n`` keeping order (in place on ``labels``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import DetectionResult
from synapse_pipelines.science.connected_components import (
    DEFAULT_MIN_SIZE,
    filter_components,
    label_components,
    label_foreground,
    label_reference,
)
from synapse_pipelines.science.histogram_bins import bin_index
from synapse_pipelines.science.nomads_kernels import HAVE_NUMBA, relabel_kernel, select_kernel
from synapse_pipelines.science.nomads_primitives import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    NO_THRESHOLD,
    SUPPORTED_DTYPES,
    ChannelStats,
    WindowShape,
    channel_stats,
    check_channels,
    check_dtype,
    check_min_size,
    check_window,
    covariance_numerator,
    effective_window,
    extended_block,
    halo,
    halo_shape,
    numerator_dtype,
    numerator_reference,
    numerator_scale,
    pad_to_extended,
    run_numerator,
    window_shape,
)
from synapse_pipelines.science.nomads_threshold import (
    CovarianceHistogram,
    covariance_histogram,
    histogram_reference,
    threshold_from_histogram,
)

# The primitives are re-exported: ``detection`` is the NOMADS API the blockwise runner,
# the benchmarks and the tests use (see "Decomposition" above).
__all__ = [
    "DEFAULT_MIN_SIZE",
    "DEFAULT_WINDOW",
    "MAX_WINDOW",
    "NO_THRESHOLD",
    "SUPPORTED_DTYPES",
    "ChannelStats",
    "CovarianceHistogram",
    "DetectionResult",
    "channel_stats",
    "check_channels",
    "check_min_size",
    "check_window",
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
    "numerator_scale",
    "pad_to_extended",
    "threshold_from_histogram",
    "window_shape",
]


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


def _check_inputs(pre: Any, post: Any, window: int) -> None:
    check_dtype(pre, "presynaptic")
    check_dtype(post, "postsynaptic")
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
    numerator = np.empty(shape, dtype=numerator_dtype(max_value, window))
    # Reads clamped to the volume = the edge-replication border rule; no padded copy.
    hist = run_numerator(
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
        found = select_kernel(numerator.reshape(-1), t_num, fg)
        assert found == n_fg, (found, n_fg)
    del numerator
    timings["threshold"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = np.zeros(shape, dtype=np.uint32)
    flat = labels.reshape(-1)
    sizes = label_foreground(shape, fg, flat)
    keep = sizes > min_size
    keep[0] = False
    lut = np.cumsum(keep).astype(np.uint32)
    lut[~keep] = 0
    n = int(keep.sum())
    mask = np.zeros(shape, dtype=np.uint8)
    relabel_kernel(fg, flat, lut, mask.reshape(-1))
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
    numerator = numerator_reference(
        extended_block(pre, whole, window), extended_block(post, whole, window), window
    )
    hist = histogram_reference(numerator)
    timings["covariance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    t_num = threshold_from_histogram(hist)
    mask = numerator >= t_num
    del numerator
    timings["threshold"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels, sizes = label_reference(mask)
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
    check_window(window)
    check_min_size(min_size)
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

    run = _detect_numpy if not HAVE_NUMBA else _detect_compiled
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
