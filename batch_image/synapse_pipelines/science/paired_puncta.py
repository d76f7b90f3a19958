"""PAIRS (paired puncta): the synapse detector, built from exactly reducible primitives.

Owns the method (described below), the one-job entry point :func:`detect_paired_puncta`
and the ``paired-puncta`` plug-in (:class:`PairedPuncta`). Its parameters (:data:`PARAMETERS`)
and geometry (:func:`geometry`, :func:`halo`) live in :mod:`.paired_puncta_geometry`, the
explanation of an empty result (:func:`explain_empty`) in :mod:`.paired_puncta_explain`, the
block primitives in :mod:`.paired_puncta_blocks`; all are re-exported here.

What it computes
================
Inputs: presynaptic ``pre`` (synapsin) and postsynaptic ``post`` (PSD-95), uint8 or uint16
used as exact integers, shape (Z, Y, X) with Z >= 1, and the voxel size (z, y, x) in nm.
Every size is a physical length turned into voxels, ``r = floor(L / v + 0.5)``; an axis of
length 1 gets no filtering, so one plane is 2-D detection and thin stacks are accepted.

1. **Smoothing**: integer binomial kernel per axis of order ``n = 2 round(2 (s / v)**2)``
   (``s = smoothing_sigma_nm``, 60): [1, 2, 1] at 100 nm pixels and 70 nm sections. ``S`` is
   the integer sum, weight ``N_s = 2**(n_z + n_y + n_x)``. Small enough that a pair's
   evidence stays peaked between its two puncta.
2. **Local background**: in-plane box sum ``B`` over ``w_y x w_x`` pixels per section,
   ``w = 2 round(background_radius_nm / pixel) + 1`` (11 at 100 nm). Band-pass
   ``D = S w_y w_x - N_s B``, exact (int32 whenever it fits). Per section and in-plane, so
   section-to-section gain drift cannot leak across z.
3. **Thresholds per section and channel**, from integer histograms of ``D`` on the fixed
   log-linear bins of :mod:`.histogram_bins`, counted on the fixed global lattice
   ``y = x = 0 (mod s)``, ``s = floor(sqrt(Y X / 2**16))`` (1 below 2**18 pixels per section):
   median ``m``; noise ``sigma = 1.4826 median(m - D | D <= m)`` (the background half:
   puncta only add positive values); ``o`` = Otsu split of the positive ``D``;
   ``T = max(k o, noise_floor_sigma sigma, 1)`` with
   ``k = exp(-(d / 2)**2 / (2 (s_p**2 + s_s**2)))``, ``d = pair_offset_nm``,
   ``s_p = punctum_fwhm_nm / 2.355``, ``s_s`` the applied in-plane smoothing: the attenuation of
   a punctum at the midpoint of a pre/post pair ``d`` apart (0.69 at the defaults). Every
   quantity is a ratio within one section and channel: gain, offset, dtype and drift cancel.
4. **Evidence** ``E = min(D_pre / T_pre(z), D_post / T_post(z))`` (computed as ``D * (1/T)``
   in float64, stored as float32): ``E >= 1`` where both channels exceed their thresholds.
5. **Seeds**, one per synapse: voxels that are the maximum of ``E`` in a box of
   ``seed_radius_nm`` per axis (clipped at the volume border; on equal values the first
   voxel in raster order wins) with ``E >= seed_level`` (strong seeds), or with
   ``weak_seed_level <= E < seed_level`` and at least ``weak_seed_support_um3`` of
   foreground (``E >= assignment_level``) within ``assignment_radius_nm`` of them (weak
   seeds; the ellipsoid is clipped at the border; one plane asks for the stack's count over
   the width of the z smoothing a stack would get, 8 pixels at 70 nm sections). A dim
   synapse is a punctum-sized patch of moderate evidence; a chance overlap of two puncta's
   tails, or of noise, is a speck.
   **Noise guard**: in a section where ``noise_guard_sigma`` (4) pixel-noise sigmas, carried
   through the band-pass, exceed a channel's threshold, a seed needs that support up to the
   level ``E`` at which both channels clear them (``strong_seed_levels``): a coincidence of
   pixel noise in both channels can pass the threshold there, but it has no extent. The
   pixel noise is ``1.4826 median |v(x + 1) - v(x)| / sqrt(2)`` of the raw section, counted
   on a lattice of ~4096 pairs per section (pairs of two zeros left out). Real AT data
   (thresholds >= 10 pixel-noise sigmas) never meets it.
6. **Labels**: a voxel with ``E >= assignment_level`` inside the ``assignment_radius_nm``
   ellipsoid of one or more seeds gets the number of the nearest seed (squared physical
   distance; ties to the lower number). Seeds are numbered 1..n in raster order. Optional
   size filter: regions smaller than ``min_volume_um3`` are dropped and the rest renumbered.

Alongside step 3, pass 1 measures each channel's **section continuity** (how alike each
section and the next are, :mod:`.section_continuity`); a channel whose sections do not
line up gets a sentence in ``parameters["warnings"]``. It changes no label.

Border rule: edge replication (reads outside the volume take the nearest voxel) for the
smoothing and the background box; the seed box and the assignment ellipsoid are clipped.

Decomposition (for the blockwise passes; signatures are stable)
==============================================================
``detect_paired_puncta`` is exactly the composition of the block primitives of
:mod:`.paired_puncta_blocks` (re-exported here): ``geometry``/``halo`` (this module),
``block_histograms`` summed over any tiling (``SectionHistograms.__add__``),
``section_thresholds``, ``block_seeds`` gathered by ``number_seeds``, ``block_labels``,
and for the optional size filter ``region_voxels``/``size_filter_lut``; that module's
docstring gives the recipe. The one-job path computes the same numbers section by section
(``paired_puncta_kernels.SectionPasses``); tests check the two voxel for voxel.

Implementation: numba kernels on one core (:mod:`.paired_puncta_kernels`), about 5 bytes
per voxel beyond the inputs (``E`` float32, whose memory then holds the uint32 labels, and
the uint8 mask); without numba the numpy/scipy reference (:mod:`.paired_puncta_reference`),
which tests require to give identical output.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import (
    DetectionResult,
    ParameterSpec,
    channel_pair,
    validate_parameters,
)
from synapse_pipelines.science import (
    paired_puncta_kernels as kernels,
    paired_puncta_reference as reference,
    paired_puncta_seed_kernels as seed_kernels,
)
from synapse_pipelines.science.histogram_bins import N_BINS
from synapse_pipelines.science.paired_puncta_blocks import (
    CANDIDATE_FRACTION,
    SectionHistograms,
    SectionThresholds,
    block_evidence,
    block_histograms,
    block_labels,
    block_puncta,
    block_seeds,
    check_channels,
    number_seeds,
    pixel_difference_counts,
    pixel_noise_sigma,
    region_evidence,
    region_voxels,
    section_stats,
    section_thresholds,
    size_filter_lut,
    strong_seed_levels,
)
from synapse_pipelines.science.paired_puncta_explain import explain_empty, whole_volume_puncta
from synapse_pipelines.science.paired_puncta_geometry import (
    DEFAULT_VOXEL_SIZE,
    PARAMETERS,
    PairsGeometry,
    geometry,
    halo,
)
from synapse_pipelines.science.paired_puncta_thresholds import (
    STAT_KEYS,
    continuity_per_section,
    result_parameters,
)
from synapse_pipelines.science.section_continuity import continuity_sums

__all__ = [
    "DEFAULT_VOXEL_SIZE",
    "PARAMETERS",
    "PairedPuncta",
    "PairsGeometry",
    "SectionHistograms",
    "SectionThresholds",
    "block_evidence",
    "block_histograms",
    "block_labels",
    "block_puncta",
    "block_seeds",
    "detect_paired_puncta",
    "explain_empty",
    "geometry",
    "halo",
    "number_seeds",
    "region_voxels",
    "section_thresholds",
    "size_filter_lut",
]

# --------------------------------------------------------------------------- one job


def _detect_compiled(
    pre: np.ndarray, post: np.ndarray, g: PairsGeometry, timings: dict[str, float]
) -> tuple[SectionThresholds, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The one-job composition with the kernels, section by section: about 5 bytes per
    voxel (``E``, whose memory then holds the labels, and the mask) plus two planes."""
    shape = g.volume_shape
    t0 = time.perf_counter()
    labels = np.empty(shape, np.uint32)
    e = labels.view(np.float32)  # E lives in the labels' memory until the seeds are known
    mark = np.empty(shape, np.uint8)
    cand = np.empty(max(4096, int(labels.size * CANDIDATE_FRACTION)), np.int64)
    levels = np.array(
        [g.params["assignment_level"], g.weak_level, g.params["seed_level"]], np.float32
    )
    tallies = np.zeros(5, np.int64)  # see paired_puncta_kernels._e_row
    passes = kernels.SectionPasses(pre, post, g.hist_stride, g.filters(pre.dtype, post.dtype))
    counts = np.zeros((2, 2, N_BINS), np.int64)
    stats = np.zeros((2, shape[0], len(STAT_KEYS)))
    whole = tuple((0, n) for n in shape)
    lattice = (0, 0, g.noise_stride, shape[2])
    continuity_lattice = (0, 0, 0, g.continuity_stride, shape[0])
    for c, vol in enumerate((pre, post)):
        diffs = pixel_difference_counts(vol, whole, lattice)  # type: ignore[arg-type]
        stats[c, :, 4] = [pixel_noise_sigma(row) for row in diffs]
        sums = continuity_sums(
            vol, whole, continuity_lattice, g.orders[1:], g.widths, g.continuity_shift
        )  # type: ignore[arg-type]
        stats[c, :, 5] = continuity_per_section(sums, stats[c, :, 4], g)
    floor = g.params["noise_floor_sigma"]
    band = 0.0
    for z in range(shape[0]):
        t = time.perf_counter()
        counts[:] = 0
        passes.band(z, counts)  # D of section z, its lattice histogram
        band += time.perf_counter() - t
        for c in (0, 1):
            stats[c, z, :4] = section_stats(counts[c], g.k, floor, g.log_split)
        inv = (1.0 / stats[0, z, 3], 1.0 / stats[1, z, 3])
        passes.evidence(z, inv, e, mark, levels, cand, tallies, g.candidate_peaks)
    del passes
    thr = SectionThresholds.from_stats(stats)
    t1 = time.perf_counter()
    level = float(levels[1])
    core = tuple((0, n) for n in shape)
    strong = strong_seed_levels(thr, g, 0, shape[0])
    lin = seed_kernels.seeds(
        e, cand, int(tallies[0]), g.seed_radii, np.float32(level), core, g.weak_seeds, strong
    )  # type: ignore[arg-type]
    seeds = np.stack(np.unravel_index(lin, shape), axis=1).astype(np.int64).reshape(-1, 3)
    del cand, lin
    t2 = time.perf_counter()
    radius = g.params["assignment_radius_nm"]
    kernels.assign(mark, labels, seeds, g.assignment_radii, g.voxel_size, radius)
    kernels.finalize(mark, labels)
    t3 = time.perf_counter()
    timings.update(
        band_pass=band, thresholds_and_evidence=t1 - t0 - band, seeds=t2 - t1, labels=t3 - t2
    )
    return thr, labels, mark, seeds, tallies[1:4]


def _detect_reference(
    pre: np.ndarray, post: np.ndarray, g: PairsGeometry, timings: dict[str, float]
) -> tuple[SectionThresholds, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same composition with the numpy/scipy reference, on the whole volume."""
    whole = Box.from_shape(g.volume_shape)
    t0 = time.perf_counter()
    thr = section_thresholds(block_histograms(pre, post, whole, whole, g), g)
    level = g.weak_level
    e, mark, _, counts = region_evidence(pre, post, whole, whole, thr, g, mark=True, level=level)
    assert mark is not None
    t1 = time.perf_counter()
    everything = tuple(slice(0, n) for n in g.volume_shape)
    strong = strong_seed_levels(thr, g, 0, g.volume_shape[0])
    seeds = reference.find_seeds(
        e, g.seed_radii, np.float32(level), everything, g.weak_seeds, strong
    )  # type: ignore[arg-type]
    t2 = time.perf_counter()
    radius = g.params["assignment_radius_nm"]
    labels = reference.assign(mark > 0, seeds, g.assignment_radii, g.voxel_size, radius)
    t3 = time.perf_counter()
    timings.update(band_pass_and_evidence=t1 - t0, seeds=t2 - t1, labels=t3 - t2)
    return thr, labels, (labels > 0).astype(np.uint8) * 255, seeds, counts[1:]


def detect_paired_puncta(
    pre: np.ndarray,
    post: np.ndarray,
    *,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    **params: float,
) -> DetectionResult:
    """Run PAIRS on two ZYX channels (see the module docstring for the exact method).

    ``voxel_size`` is (z, y, x) in nanometers; ``params`` are those of :data:`PARAMETERS`.
    Raises :class:`DetectionError` naming the field for any bad input or parameter.
    """
    pre, post = check_channels(pre, post)
    g = geometry(pre.shape, voxel_size, **params)
    timings: dict[str, float] = {}
    if kernels.compiled():
        thr, labels, mask, seeds, above = _detect_compiled(pre, post, g, timings)
    else:  # pragma: no cover - numba is a declared dependency
        thr, labels, mask, seeds, above = _detect_reference(pre, post, g, timings)
    n = len(seeds)
    largest = 0
    if g.min_voxels > 1 and n:
        t0 = time.perf_counter()
        ids, counts = region_voxels(labels)
        largest = int(counts.max()) if len(counts) else 0
        lut = size_filter_lut(ids, counts, g)
        np.take(np.append(lut, np.zeros(n + 1 - len(lut), np.uint32)), labels, out=labels)
        np.copyto(mask, 0, where=labels == 0)
        n = int(lut.max()) if len(lut) else 0
        timings["size_filter"] = time.perf_counter() - t0
    explanation = None
    parameters = result_parameters(g, thr)
    parameters["voxels_above_threshold"] = {
        "presynaptic": int(above[0]), "postsynaptic": int(above[1]), "both": int(above[2])
    }  # fmt: skip
    if n == 0:
        t0 = time.perf_counter()
        pre_puncta, post_puncta = whole_volume_puncta(pre, post, thr, g, labels)
        explanation = explain_empty(
            g, thr, presynaptic_puncta=pre_puncta, postsynaptic_puncta=post_puncta,
            seeds=len(seeds), largest_region_voxels=largest, voxels_in_both=int(above[2]),
        )  # fmt: skip
        parameters["puncta"] = {"presynaptic": len(pre_puncta), "postsynaptic": len(post_puncta)}
        timings["explanation"] = time.perf_counter() - t0
    return DetectionResult(
        labels=labels,
        mask=mask,
        threshold=float(g.params["seed_level"]),
        n_synapses=n,
        parameters=parameters,
        timings=timings,
        explanation=explanation,
    )


# --------------------------------------------------------------------------- plug-in


class PairedPuncta:
    """The ``paired-puncta`` pipeline (entry point target)."""

    name = "paired-puncta"
    description = (
        "PAIRS: synapsin and PSD-95 puncta that overlap (both above per-section thresholds), "
        "one detection per synapse; sizes in nm from the voxel size"
    )
    parameters: Mapping[str, ParameterSpec] = PARAMETERS
    #: One level scales the three evidence levels together (docs/detection.md "Operating
    #: point"): the strong seeds' level, the weak seeds' and the foreground's, which keeps
    #: weak seeds at half a strong one's evidence and the foreground as low as them.
    operating_point: Mapping[str, float] = {
        name: float(PARAMETERS[name].default)
        for name in ("seed_level", "weak_seed_level", "assignment_level")
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
        pre, post = channel_pair(channels, presynaptic, postsynaptic)
        result = detect_paired_puncta(
            pre,
            post,
            voxel_size=DEFAULT_VOXEL_SIZE if voxel_size is None else voxel_size,
            **resolved,
        )
        result.parameters["voxel_size_assumed"] = voxel_size is None
        return result

    def check_volume(
        self,
        shape: tuple[int, int, int],
        *,
        voxel_size: tuple[float, float, float] | None = None,
        **params: int | float,
    ) -> None:
        """Raise what :meth:`run` would raise for a volume of ``shape`` at ``voxel_size``
        because of its geometry alone (e.g. voxels so fine that the exact band-pass would
        overflow), before any voxel is read."""
        resolved = validate_parameters(self, params)
        geometry(shape, DEFAULT_VOXEL_SIZE if voxel_size is None else voxel_size, **resolved)
