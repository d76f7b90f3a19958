"""PAIRS' exactly reducible block primitives: what the blockwise passes compose.

Owns the channel checks and the block primitives of
:mod:`~synapse_pipelines.science.paired_puncta`; each runs the compiled kernels
(:mod:`.paired_puncta_kernels`) or, without numba, the numpy/scipy reference
(:mod:`.paired_puncta_reference`), with identical results. The geometry ``g`` is
:func:`synapse_pipelines.science.paired_puncta_geometry.geometry` of the *whole* volume.

Coordinates are global voxel indices of the volume being detected; ``box`` is a block core
and ``read_box`` the box the channels were read over: at least ``box`` grown by the pass's
halo, except where the volume border stops it (``box.grow(g.halo[pass], within=volume)``;
an edge-padded read that extends past the border works too). Inside, reads beyond
``read_box`` are clamped, which at the volume border is the detector's edge-replication
rule. ``detect_paired_puncta(pre, post, voxel_size=v, **p)`` is exactly::

    g = geometry(volume_shape, v, **p)
    hist = SectionHistograms.empty()
    for box in any tiling:                               # pass 1, halo g.halo["histograms"]
        hist = hist + block_histograms(pre[read], post[read], box, read_box, g)
    thr = section_thresholds(hist, g)                    # needs every section
    seeds = number_seeds([block_seeds(pre[read], post[read], box, read_box, thr, g)
                          for box in any tiling])        # pass 2, halo g.halo["seeds"]
    for box in any tiling:                               # pass 3, halo g.halo["labels"]
        labels[box] = block_labels(pre[read], post[read], box, read_box, thr, g, seeds)
    if g.min_voxels > 1:                                 # optional size filter
        ids, counts = sum of region_voxels(labels[box]) over blocks (add counts by id)
        labels = size_filter_lut(ids, counts, g)[labels]

``SectionHistograms`` and ``SectionThresholds`` (:mod:`.paired_puncta_thresholds`, re-exported
here) have ``to_dict``/``from_dict`` (JSON:
sparse counts; an infinite threshold, a section without any positive ``D``, is ``null``);
histograms of any blocks add with ``+``. Seeds are int64 ``(n, 3)`` global coordinates in
raster order; seed ``i`` of ``number_seeds`` is synapse ``i + 1``. When no synapse is
found, ``block_puncta`` (halo ``"seeds"``) gathered over the blocks gives
``explain_empty`` its per-channel puncta.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import (
    paired_puncta_kernels as kernels,
    paired_puncta_reference as reference,
    paired_puncta_seed_kernels as seed_kernels,
)
from synapse_pipelines.science.histogram_bins import N_BINS
from synapse_pipelines.science.paired_puncta_thresholds import (
    CHANNELS,
    CONTINUITY_ROW,
    CONTINUITY_SUMS,
    HIST_ROWS,
    SectionHistograms,
    SectionThresholds,
    pixel_difference_counts,
    pixel_noise_sigma,
    section_stats,
    section_thresholds,
    strong_seed_levels,
)
from synapse_pipelines.science.section_continuity import continuity_sums

if TYPE_CHECKING:
    from synapse_pipelines.science.paired_puncta_geometry import PairsGeometry

__all__ = [
    "CHANNELS",
    "HIST_ROWS",
    "SectionHistograms",
    "SectionThresholds",
    "block_evidence",
    "block_histograms",
    "block_labels",
    "block_puncta",
    "block_seeds",
    "check_channels",
    "number_seeds",
    "pixel_difference_counts",
    "pixel_noise_sigma",
    "region_voxels",
    "section_stats",
    "section_thresholds",
    "size_filter_lut",
    "strong_seed_levels",
]

SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
#: Candidate seeds a pass records, per voxel of its region (8 B each): 0.25 B/voxel at
#: most; beyond it the seed test scans E instead. Typical AT data has ~0.5 %.
CANDIDATE_FRACTION = 1 / 32

# --------------------------------------------------------------------------- channels


def _check_channel(volume: Any, name: str) -> np.ndarray:
    if not isinstance(volume, np.ndarray):
        raise DetectionError(
            f"expected a numpy array, got {type(volume).__name__}",
            field=name,
            hint="pass the channel as a numpy.ndarray",
        )
    if volume.dtype.kind == "u" and volume.dtype.itemsize == 2 and not volume.dtype.isnative:
        volume = volume.astype(np.uint16)  # big-endian TIFF data: same integers, native order
    if volume.dtype not in SUPPORTED_DTYPES:
        raise DetectionError(
            f"dtype {volume.dtype} is not supported",
            field=name,
            hint="pass the raw uint8 or uint16 intensities (no float, signed or rescaled data)",
        )
    if volume.ndim != 3:
        raise DetectionError(
            f"expected a 3-D (z, y, x) volume, got {volume.ndim} dimension(s) with shape "
            f"{volume.shape}",
            field=name,
            hint="pass one channel as a ZYX array; a single plane as shape (1, Y, X)",
        )
    return volume


def check_channels(pre: Any, post: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both channels as C-contiguous uint8/uint16 ZYX arrays of one non-empty shape, or a
    :class:`DetectionError` naming the channel (or ``volume``) and the fix."""
    pre = _check_channel(pre, "presynaptic")
    post = _check_channel(post, "postsynaptic")
    if pre.shape != post.shape:
        raise DetectionError(
            f"channel shapes differ: presynaptic {pre.shape}, postsynaptic {post.shape}",
            field="postsynaptic",
            hint="cut both channels from the same z/y/x box",
        )
    if pre.size == 0:
        raise DetectionError(
            f"the volume {pre.shape} is empty", field="volume", hint="request a non-empty box"
        )
    return np.ascontiguousarray(pre), np.ascontiguousarray(post)


# --------------------------------------------------------------------------- evidence, seeds


def _core_in_read(
    box: Box, read_box: Box, need: tuple[int, int, int], g: PairsGeometry
) -> kernels.Core:
    """``box`` in the read array's coordinates, after checking the read covers its halo."""
    volume = Box.from_shape(g.volume_shape)
    if box.is_empty() or not volume.contains(box):
        raise DetectionError(
            f"block {box} is empty or not inside the volume {volume}",
            field="box",
            hint="use boxes of a tiling of the volume",
        )
    # Each side of the read must hold the full halo or reach the volume border: there the
    # kernels' clamped reads (or an edge-padded read past the border) are the border rule.
    if not read_box.contains(box.grow(need, within=volume)):
        raise DetectionError(
            f"read box {read_box} does not cover {box} grown by the halo {need}",
            field="read_box",
            hint="read box.grow(halo, within=the whole volume)",
        )
    return _relative(box, read_box)


def _relative(box: Box, origin: Box) -> kernels.Core:
    return tuple((s.start, s.stop) for s in box.slices(origin.start))  # type: ignore[return-value]


def _block_inputs(pre: Any, post: Any, read_box: Box) -> tuple[np.ndarray, np.ndarray]:
    pre, post = check_channels(pre, post)
    if pre.shape != read_box.shape:
        raise DetectionError(
            f"block read has shape {pre.shape}, expected {read_box.shape} for {read_box}",
            field="read_box",
            hint="pass the channels read over read_box",
        )
    return pre, post


def region_evidence(
    pre: np.ndarray,
    post: np.ndarray,
    read_box: Box,
    region: Box,
    thr: SectionThresholds,
    g: PairsGeometry,
    *,
    mode: int = 0,
    mark: bool = False,
    level: float | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """``E`` of ``region`` from channels read over ``read_box``; optionally the foreground
    mark (1 where ``E >= assignment_level``) and the candidates (linear indices into ``E``)
    with ``E >= level``. Returns ``(E, mark, candidates, counts)``, ``counts`` as
    :func:`.paired_puncta_kernels.evidence` gives them (-1 candidates: too many, scan E).
    ``mode`` 1 / 2: the presynaptic / postsynaptic ratio ``D / T`` alone. ``out``: a
    float32 array of the region's shape to write ``E`` into (compiled path)."""
    core = _relative(region, read_box)
    inv = thr.inverse(region.start[0], region.stop[0])
    fg_level = np.float32(g.params["assignment_level"])
    seed_level = np.float32(g.params["seed_level"])
    cand_level = np.float32(seed_level if level is None else level)
    if kernels.compiled():
        e = np.empty(region.shape, np.float32) if out is None else out
        marks = np.empty(region.shape if mark else kernels.NO_MARK, np.uint8)
        capacity = max(4096, int(region.size * CANDIDATE_FRACTION)) if level is not None else 0
        cand = np.empty(capacity, np.int64)
        counts = kernels.evidence(
            pre, post, core, g.filters(pre.dtype, post.dtype), inv, e, marks,
            (fg_level, cand_level, seed_level), cand, mode, g.candidate_peaks,
        )  # fmt: skip
        return e, (marks if mark else None), cand[: max(counts[0], 0)], counts
    sl = tuple(slice(a, b) for a, b in core)
    d_pre = reference.bandpass(pre, g.orders, g.widths)[sl] if mode != 2 else None
    d_post = reference.bandpass(post, g.orders, g.widths)[sl] if mode != 1 else None
    e = reference.evidence(d_pre, d_post, inv[0], inv[1], mode)
    above = [
        int(np.count_nonzero(d * inv[c][:, None, None] >= 1.0)) if d is not None else 0
        for c, d in enumerate((d_pre, d_post))
    ]
    cand = np.flatnonzero(e >= cand_level) if level is not None else np.zeros(0, np.int64)
    n_seed = int(np.count_nonzero(e >= seed_level))
    counts = np.array([len(cand), *above, n_seed], np.int64)
    return e, ((e >= fg_level).astype(np.uint8) if mark else None), cand, counts


def region_seeds(
    e: np.ndarray,
    cand: np.ndarray,
    n_cand: int,
    core: kernels.Core,
    g: PairsGeometry,
    level: float,
    weak: seed_kernels.WeakSeeds | None = None,
    strong: np.ndarray | None = None,
) -> np.ndarray:
    """Seeds (array coordinates of ``e``, raster order) of ``e[core]`` (``weak``: the
    weak-seed rule, ``strong`` its level per section of ``e``; None: every maximum at or
    above ``level``)."""
    if kernels.compiled():
        lin = seed_kernels.seeds(
            e, cand, n_cand, g.seed_radii, np.float32(level), core, weak, strong
        )
        return np.stack(np.unravel_index(lin, e.shape), axis=1).astype(np.int64).reshape(-1, 3)
    sl = tuple(slice(a, b) for a, b in core)
    return reference.find_seeds(e, g.seed_radii, np.float32(level), sl, weak, strong)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the passes


def block_histograms(
    pre: np.ndarray, post: np.ndarray, box: Box, read_box: Box, g: PairsGeometry
) -> SectionHistograms:
    """Pass 1: histograms of the lattice voxels of ``box`` (halo ``g.halo["histograms"]``)."""
    pre, post = _block_inputs(pre, post, read_box)
    core = _core_in_read(box, read_box, g.halo["histograms"], g)
    counts = np.zeros((box.shape[0], 2, HIST_ROWS, N_BINS), np.int64)
    if kernels.compiled():
        lattice = (read_box.start[1], read_box.start[2], g.hist_stride)
        band = counts[:, :, :2]
        kernels.histograms(pre, post, core, lattice, g.filters(pre.dtype, post.dtype), band)
    else:
        sl = tuple(slice(a, b) for a, b in core)
        for c, vol in enumerate((pre, post)):
            d = reference.bandpass(vol, g.orders, g.widths)[sl]
            counts[:, c, :2] = reference.section_histograms(d, g.hist_stride, box.start[1:])
    diff_lattice = (read_box.start[1], read_box.start[2], g.noise_stride, g.volume_shape[2])
    continuity_lattice = (*read_box.start, g.continuity_stride, g.volume_shape[0])
    for c, vol in enumerate((pre, post)):
        counts[:, c, 2] = pixel_difference_counts(vol, core, diff_lattice)
        counts[:, c, CONTINUITY_ROW, :CONTINUITY_SUMS] = continuity_sums(
            vol, core, continuity_lattice, g.orders[1:], g.widths, g.continuity_shift
        )  # type: ignore[arg-type]
    return SectionHistograms(box.start[0], counts)


def block_evidence(
    pre: np.ndarray,
    post: np.ndarray,
    box: Box,
    read_box: Box,
    thr: SectionThresholds,
    g: PairsGeometry,
) -> np.ndarray:
    """``E`` (float32) of ``box`` (halo ``g.halo["labels"]``: the band-pass's)."""
    pre, post = _block_inputs(pre, post, read_box)
    _core_in_read(box, read_box, g.filter_halo, g)
    return region_evidence(pre, post, read_box, box, thr, g)[0]


def block_seeds(
    pre: np.ndarray,
    post: np.ndarray,
    box: Box,
    read_box: Box,
    thr: SectionThresholds,
    g: PairsGeometry,
) -> np.ndarray:
    """Pass 2: global (z, y, x) of the seeds in ``box``, raster order (halo ``"seeds"``)."""
    pre, post = _block_inputs(pre, post, read_box)
    _core_in_read(box, read_box, g.halo["seeds"], g)
    # E around the box out to the seed radius (a seed is the maximum of its box) and the
    # assignment radius (a weak seed's support)
    region = box.grow(g.seed_context, within=Box.from_shape(g.volume_shape))
    level = g.weak_level
    e, _, cand, counts = region_evidence(pre, post, read_box, region, thr, g, level=level)
    core = _relative(box, region)
    strong = strong_seed_levels(thr, g, region.start[0], region.stop[0])
    seeds = region_seeds(e, cand, int(counts[0]), core, g, level, g.weak_seeds, strong)
    return seeds + np.array(region.start)


def block_puncta(
    pre: np.ndarray,
    post: np.ndarray,
    box: Box,
    read_box: Box,
    thr: SectionThresholds,
    g: PairsGeometry,
) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's candidate puncta in ``box`` (halo ``"seeds"``): global (z, y, x) of
    the maxima of ``D / T`` at or above ``seed_level`` within the seed radius. Only needed
    to explain an empty result (``explain_empty``); gather them like seeds."""
    pre, post = _block_inputs(pre, post, read_box)
    _core_in_read(box, read_box, g.halo["seeds"], g)
    region = box.grow(g.seed_radii, within=Box.from_shape(g.volume_shape))
    level = g.params["seed_level"]
    found = []
    for mode in (1, 2):
        e, _, cand, counts = region_evidence(
            pre, post, read_box, region, thr, g, mode=mode, level=level
        )
        seeds = region_seeds(e, cand, int(counts[0]), _relative(box, region), g, level)
        found.append(seeds + np.array(region.start))
    return found[0], found[1]


def number_seeds(parts: Sequence[np.ndarray]) -> np.ndarray:
    """All blocks' seeds in raster order (any gathering order): seed ``i`` is synapse
    ``i + 1``."""
    arrays = [np.asarray(p, np.int64).reshape(-1, 3) for p in parts]
    seeds = np.concatenate(arrays) if arrays else np.zeros((0, 3), np.int64)
    return seeds[np.lexsort((seeds[:, 2], seeds[:, 1], seeds[:, 0]))]


def block_labels(
    pre: np.ndarray,
    post: np.ndarray,
    box: Box,
    read_box: Box,
    thr: SectionThresholds,
    g: PairsGeometry,
    seeds: np.ndarray,
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """Pass 3: uint32 labels of ``box`` (halo ``"labels"``).

    ``seeds``: global (z, y, x), any superset of the seeds within the assignment radius
    of ``box``; ``ids``: their synapse numbers (default ``1..len(seeds)``: ``seeds`` is
    the whole ``number_seeds`` list).
    """
    pre, post = _block_inputs(pre, post, read_box)
    _core_in_read(box, read_box, g.halo["labels"], g)
    seeds = np.asarray(seeds, np.int64).reshape(-1, 3)
    ids = np.arange(1, len(seeds) + 1) if ids is None else np.asarray(ids, np.int64)
    reach = np.array(g.assignment_radii)
    lo, hi = np.array(box.start) - reach, np.array(box.stop) + reach
    near = np.all((seeds >= lo) & (seeds < hi), axis=1)
    order = np.argsort(ids[near], kind="stable")  # the lower number first: it wins ties
    local = seeds[near][order] - np.array(box.start)
    local_ids = ids[near][order].astype(np.uint32)
    _, mark, _, _ = region_evidence(pre, post, read_box, box, thr, g, mark=True)
    assert mark is not None
    radius = g.params["assignment_radius_nm"]
    if kernels.compiled():
        labels = np.empty(box.shape, np.uint32)
        kernels.assign(mark, labels, local, g.assignment_radii, g.voxel_size, radius)
        on = mark == kernels.MARK_LABELLED
        out = np.zeros(box.shape, np.uint32)
        out[on] = local_ids[labels[on] - 1]
        return out
    lab = reference.assign(mark > 0, local, g.assignment_radii, g.voxel_size, radius)
    return np.append(np.uint32(0), local_ids)[lab]


def region_voxels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, voxel counts) of the labels in a block; counts of one id add over blocks."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return ids.astype(np.int64), counts.astype(np.int64)


def size_filter_lut(ids: np.ndarray, counts: np.ndarray, g: PairsGeometry) -> np.ndarray:
    """uint32 lookup table ``old label -> new label`` (0: dropped) for the size filter.

    ``ids``/``counts``: every label's total voxels (``region_voxels`` summed over blocks).
    Kept labels (at least ``g.min_voxels``) are renumbered 1..m in order.
    """
    n = int(ids.max()) if len(ids) else 0
    voxels = np.zeros(n + 1, np.int64)
    np.add.at(voxels, ids, counts)
    keep = voxels >= max(g.min_voxels, 1)
    keep[0] = False
    lut = np.cumsum(keep).astype(np.uint32)
    lut[~keep] = 0
    return lut
