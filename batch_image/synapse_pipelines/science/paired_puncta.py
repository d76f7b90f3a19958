"""PAIRS (paired puncta): the synapse detector, built from exactly reducible primitives.

Owns the method, its parameters (:data:`PARAMETERS`) and geometry (:func:`geometry`,
:func:`halo`), the one-job entry point :func:`detect_paired_puncta`, the explanation of an
empty result (:func:`explain_empty`) and the ``paired-puncta`` plug-in
(:class:`PairedPuncta`). The block primitives live in :mod:`.paired_puncta_blocks`.

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
   ``y = x = 0 (mod s)``, ``s = floor(sqrt(Y X / 2**18))`` (1 below 2**20 pixels per section):
   median ``m``; noise ``sigma = 1.4826 median(m - D | D <= m)`` (the background half:
   puncta only add positive values); ``o`` = Otsu split of the positive ``D``;
   ``T = max(k o, noise_floor_sigma sigma, 1)`` with
   ``k = exp(-(d / 2)**2 / (2 (s_p**2 + s_s**2)))``, ``d = pair_offset_nm``,
   ``s_p = punctum_fwhm_nm / 2.355``, ``s_s`` the applied in-plane smoothing: the attenuation of
   a punctum at the midpoint of a pre/post pair ``d`` apart (0.69 at the defaults). Every
   quantity is a ratio within one section and channel: gain, offset, dtype and drift cancel.
4. **Evidence** ``E = min(D_pre / T_pre(z), D_post / T_post(z))`` (computed as ``D * (1/T)``
   in float64, stored as float32): ``E >= 1`` where both channels exceed their thresholds.
5. **Seeds**, one per synapse: voxels with ``E >= seed_level`` that are the maximum of
   ``E`` in a box of ``seed_radius_nm`` per axis (clipped at the volume border); on equal
   values the first voxel in raster order wins.
6. **Labels**: a voxel with ``E >= assignment_level`` inside the ``assignment_radius_nm``
   ellipsoid of one or more seeds gets the number of the nearest seed (squared physical
   distance; ties to the lower number). Seeds are numbered 1..n in raster order. Optional
   size filter: regions smaller than ``min_volume_um3`` are dropped and the rest renumbered.

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

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import DetectionResult, ParameterSpec, validate_parameters
from synapse_pipelines.science import (
    paired_puncta_kernels as kernels,
    paired_puncta_reference as reference,
)
from synapse_pipelines.science.histogram_bins import N_BINS
from synapse_pipelines.science.paired_puncta_blocks import (
    CANDIDATE_FRACTION,
    CHANNELS,
    SectionHistograms,
    SectionThresholds,
    block_evidence,
    block_histograms,
    block_labels,
    block_puncta,
    block_seeds,
    check_channels,
    number_seeds,
    region_evidence,
    region_seeds,
    region_voxels,
    section_stats,
    section_thresholds,
    size_filter_lut,
)
from synapse_pipelines.science.voxel_units import ASSUMED_VOXEL_NM, check_voxel_size

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

#: Voxel size assumed when none is given: array tomography, 70 nm sections, 100 nm pixels.
DEFAULT_VOXEL_SIZE = ASSUMED_VOXEL_NM
#: Lattice samples per section the histogram stride keeps at least.
HIST_SAMPLES = 1 << 18
#: |D| must stay below 2**53: exact as float64 (the evidence) and in int64.
_MAX_D_BITS = 53

PARAMETERS: Mapping[str, ParameterSpec] = {
    "smoothing_sigma_nm": ParameterSpec(
        float, 60.0, "sigma of the integer binomial smoothing, nm", 0.0, 2000.0
    ),
    "background_radius_nm": ParameterSpec(
        float, 500.0, "half-width of the in-plane local-background box, nm", 1.0, 20000.0
    ),
    "pair_offset_nm": ParameterSpec(
        float,
        250.0,
        "largest expected distance between a synapse's pre and post puncta, nm",
        0.0,
        5000.0,
    ),
    "punctum_fwhm_nm": ParameterSpec(
        float, 300.0, "full width at half maximum of a punctum, nm", 1.0, 5000.0
    ),
    "noise_floor_sigma": ParameterSpec(
        float, 2.5, "no threshold below this many noise standard deviations", 0.0, 100.0
    ),
    "seed_radius_nm": ParameterSpec(
        float, 150.0, "a seed is the maximum of the evidence within this radius, nm", 0.0, 5000.0
    ),
    "assignment_radius_nm": ParameterSpec(
        float,
        250.0,
        "voxels within this distance of a seed may join its synapse, nm",
        0.0,
        5000.0,
    ),
    "assignment_level": ParameterSpec(
        float, 0.5, "evidence a voxel needs to join a synapse (<= seed_level)", 0.01, 100.0
    ),
    "seed_level": ParameterSpec(
        float, 1.0, "evidence a seed needs (1: both channels at their thresholds)", 0.01, 100.0
    ),
    "min_volume_um3": ParameterSpec(
        float, 0.0, "drop synapses smaller than this, cubic micrometres (0: keep all)", 0.0, 1000.0
    ),
}
DEFAULTS: dict[str, float] = {name: float(spec.default) for name, spec in PARAMETERS.items()}

# --------------------------------------------------------------------------- validation


def _check_params(params: Mapping[str, Any]) -> dict[str, float]:
    """Parameters with defaults filled in; DetectionError naming the first bad one."""
    resolved = dict(DEFAULTS)
    for name, value in params.items():
        if name not in PARAMETERS:
            raise DetectionError(
                f"unknown parameter {name!r}",
                field=name,
                hint=f"use one of: {', '.join(sorted(PARAMETERS))}",
            )
        checked, message = PARAMETERS[name].check(name, value)
        if message is not None:
            spec = PARAMETERS[name]
            raise DetectionError(
                message, field=name, hint=f"{spec.description}; default {spec.default}"
            )
        resolved[name] = float(checked)  # type: ignore[arg-type]
    if resolved["assignment_level"] > resolved["seed_level"]:
        raise DetectionError(
            f"assignment_level {resolved['assignment_level']} is above seed_level "
            f"{resolved['seed_level']}, so a seed could fall outside its own synapse",
            field="assignment_level",
            hint="use an assignment_level no larger than seed_level (default 0.5 and 1.0)",
        )
    return resolved


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class PairsGeometry:
    """Everything derived from the volume shape, the voxel size and the parameters."""

    volume_shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    params: dict[str, float]
    orders: tuple[int, int, int]  # binomial order per axis (z, y, x)
    widths: tuple[int, int]  # in-plane background box (w_y, w_x)
    seed_radii: tuple[int, int, int]
    assignment_radii: tuple[int, int, int]
    smoothing_nm: tuple[float, float, float]  # sigma actually applied per axis
    k: float  # Otsu fraction from the pair geometry
    hist_stride: int
    min_voxels: int  # size filter in voxels (<= 1: keep every region)

    @property
    def n_s(self) -> int:
        return 1 << sum(self.orders)

    @property
    def scale(self) -> int:
        """``D`` units per grey level: ``N_s w_y w_x``."""
        return self.n_s * self.widths[0] * self.widths[1]

    @property
    def filter_halo(self) -> tuple[int, int, int]:
        """Context ``D`` needs: smoothing in z; the larger of smoothing and box in y, x."""
        nz, ny, nx = self.orders
        return (nz // 2, max(ny // 2, self.widths[0] // 2), max(nx // 2, self.widths[1] // 2))

    @property
    def halo(self) -> dict[str, tuple[int, int, int]]:
        f = self.filter_halo
        seeds = tuple(a + b for a, b in zip(f, self.seed_radii, strict=True))
        return {"histograms": f, "seeds": seeds, "labels": f}  # type: ignore[dict-item]

    def filters(self, *dtypes: np.dtype) -> kernels.Filters:
        """The kernels' filters for inputs of these dtypes (their integer widths follow the
        largest possible value)."""
        top = max(int(np.iinfo(d).max) for d in dtypes)
        return kernels.Filters.make(self.orders, self.widths, top)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.params,
            "voxel_size_nm": list(self.voxel_size),
            "smoothing_orders": list(self.orders),
            "smoothing_applied_nm": [round(s, 3) for s in self.smoothing_nm],
            "background_width_voxels": list(self.widths),
            "seed_radius_voxels": list(self.seed_radii),
            "assignment_radius_voxels": list(self.assignment_radii),
            "halo_voxels": {name: list(h) for name, h in self.halo.items()},
            "otsu_fraction_k": self.k,
            "histogram_stride": self.hist_stride,
            "band_pass_units_per_grey_level": self.scale,
            "min_voxels": self.min_voxels,
        }


def _radius(length_nm: float, voxel_nm: float, axis_len: int) -> int:
    return math.floor(length_nm / voxel_nm + 0.5) if axis_len > 1 else 0


def geometry(
    volume_shape: Sequence[int],
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    **params: float,
) -> PairsGeometry:
    """Validated geometry of a detection on a volume of ``volume_shape`` (z, y, x)."""
    p = _check_params(params)
    vs = check_voxel_size(voxel_size)
    if len(volume_shape) != 3 or any(int(n) < 1 for n in volume_shape):
        raise DetectionError(
            f"volume shape {tuple(volume_shape)} is not three positive sizes",
            field="volume",
            hint="pass the (z, y, x) shape of a non-empty volume",
        )
    shape = (int(volume_shape[0]), int(volume_shape[1]), int(volume_shape[2]))
    sigma = p["smoothing_sigma_nm"]
    orders = tuple(
        2 * round(2.0 * (sigma / v) ** 2) if n > 1 else 0 for v, n in zip(vs, shape, strict=True)
    )
    widths = tuple(
        2 * _radius(p["background_radius_nm"], v, n) + 1
        for v, n in zip(vs[1:], shape[1:], strict=True)
    )
    seed_radii = tuple(_radius(p["seed_radius_nm"], v, n) for v, n in zip(vs, shape, strict=True))
    assignment_radii = tuple(
        math.floor(p["assignment_radius_nm"] / v) if n > 1 else 0
        for v, n in zip(vs, shape, strict=True)
    )
    # a binomial kernel of order n has variance n / 4 voxels**2
    smoothing_nm = tuple(math.sqrt(n / 4.0) * v for n, v in zip(orders, vs, strict=True))
    in_plane = [s**2 for s, n in zip(smoothing_nm[1:], shape[1:], strict=True) if n > 1]
    s_s2 = sum(in_plane) / len(in_plane) if in_plane else 0.0  # the pair lies in the plane
    s_p = p["punctum_fwhm_nm"] / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    k = math.exp(-((p["pair_offset_nm"] / 2.0) ** 2) / (2.0 * (s_p**2 + s_s2)))
    bits = sum(orders) + math.log2(widths[0] * widths[1]) + 16  # uint16 input, the worst case
    if bits >= _MAX_D_BITS:
        raise DetectionError(
            f"smoothing_sigma_nm {sigma:g} and background_radius_nm "
            f"{p['background_radius_nm']:g} at voxels of {vs} nm need binomial orders "
            f"{orders} and a {widths[0]}x{widths[1]} box: the exact integer band-pass would "
            "overflow",
            field="smoothing_sigma_nm",
            hint="use coarser voxels (downsample) or smaller lengths",
        )
    voxel_um3 = vs[0] * vs[1] * vs[2] / 1e9
    min_voxels = math.ceil(p["min_volume_um3"] / voxel_um3 - 1e-9)
    stride = max(1, math.isqrt(shape[1] * shape[2] // HIST_SAMPLES))
    return PairsGeometry(
        shape, vs, p, orders, widths, seed_radii, assignment_radii, smoothing_nm, k, stride,
        min_voxels,
    )  # type: ignore[arg-type]  # fmt: skip


def halo(
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    volume_shape: Sequence[int] | None = None,
    **params: float,
) -> dict[str, tuple[int, int, int]]:
    """Voxels of context each blockwise pass reads around a block (per axis, each side).

    Without ``volume_shape`` every axis is assumed longer than one voxel (a bound that holds
    for any volume); with it, axes of length 1 need none.
    """
    return geometry(volume_shape or (2, 2, 2), voxel_size, **params).halo


# --------------------------------------------------------------------------- explanation


def _puncta(
    pre: np.ndarray,
    post: np.ndarray,
    thr: SectionThresholds,
    g: PairsGeometry,
    labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel puncta: maxima of ``D / T`` >= ``seed_level`` within the seed radius.

    Only run for an empty result, whose (all-zero) ``labels`` lend their memory to the
    ratio and are zeroed again: the explanation costs no memory beyond the detection's.
    """
    whole = Box.from_shape(g.volume_shape)
    core: kernels.Core = tuple((0, n) for n in g.volume_shape)  # type: ignore[assignment]
    level = g.params["seed_level"]
    found = []
    for mode in (1, 2):
        e, _, cand, counts = region_evidence(
            pre, post, whole, whole, thr, g, mode=mode, level=level, out=labels.view(np.float32)
        )
        found.append(region_seeds(e, cand, int(counts[0]), core, g, level))
    labels.fill(0)
    return found[0], found[1]


def explain_empty(
    g: PairsGeometry,
    thr: SectionThresholds,
    *,
    presynaptic_puncta: np.ndarray,
    postsynaptic_puncta: np.ndarray,
    seeds: int = 0,
    largest_region_voxels: int = 0,
) -> str:
    """Why no synapse was found, in a sentence, from what the detector measured.

    ``*_puncta``: (n, 3) voxel coordinates of each channel's candidate puncta (maxima of
    ``D / T`` at or above ``seed_level``); ``seeds``/``largest_region_voxels``: what the
    size filter removed, when it removed everything.
    """
    floor = g.params["noise_floor_sigma"]
    flat = [c for c in CHANNELS if not np.isfinite(thr.stats[c]["threshold"]).any()]
    if flat:
        which = " and the ".join(flat)
        return (
            f"the {which} channel{'s are' if len(flat) > 1 else ' is'} flat: no voxel is "
            f"brighter than its surroundings within {g.params['background_radius_nm']:g} nm, "
            "so there are no puncta; check that the box covers imaged tissue and that the "
            "right channels were selected"
        )
    if seeds:
        um3 = largest_region_voxels * math.prod(g.voxel_size) / 1e9
        return (
            f"{seeds} synapse(s) were detected but every one is smaller than min_volume_um3 = "
            f"{g.params['min_volume_um3']:g} um^3 (the largest is {um3:.4f} um^3, "
            f"{largest_region_voxels} voxels); lower min_volume_um3"
        )
    at_floor = []
    for c in CHANNELS:
        s = thr.stats[c]
        finite = np.isfinite(s["otsu_split"])
        noise, otsu = s["noise_sigma"][finite], s["otsu_split"][finite]
        if finite.any() and np.all(floor * noise >= g.k * otsu):
            at_floor.append(c)
    counts = {"presynaptic": len(presynaptic_puncta), "postsynaptic": len(postsynaptic_puncta)}
    none = [c for c in CHANNELS if counts[c] == 0]
    if none:
        c = none[0]
        text = (
            f"the {c} channel has no punctum above its threshold"
            + (f" ({floor:g} sigma of its noise)" if c in at_floor else "")
            + f"; the {CHANNELS[1 - CHANNELS.index(c)]} channel has "
            f"{counts[CHANNELS[1 - CHANNELS.index(c)]]}"
        )
    else:
        scale = np.array(g.voxel_size)
        dist, _ = cKDTree(presynaptic_puncta * scale).query(postsynaptic_puncta * scale)
        nearest = float(np.min(dist))
        offset = g.params["pair_offset_nm"]
        text = (
            "no voxel where both channels exceed their thresholds: the presynaptic channel "
            f"has {counts['presynaptic']} candidate puncta, the postsynaptic "
            f"{counts['postsynaptic']}, "
            + (
                f"none within {offset:g} nm of each other (the nearest pair is "
                f"{nearest:.0f} nm apart)"
                if nearest > offset
                else f"and even the nearest pair ({nearest:.0f} nm apart) does not overlap "
                "enough for both channels to exceed their thresholds at one voxel"
            )
        )
    if at_floor:
        which = " and the ".join(at_floor)
        return (
            f"every section's threshold sits at the noise floor ({floor:g} sigma of the noise) "
            f"in the {which} channel{'s' if len(at_floor) > 1 else ''}: SNR too low for puncta "
            f"to stand out; {text}"
        )
    return f"{text}; check the channel choice and the channels' registration"


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
    levels = np.array([g.params["assignment_level"], g.params["seed_level"]], np.float32)
    tallies = np.zeros(4, np.int64)
    passes = kernels.SectionPasses(pre, post, g.hist_stride, g.filters(pre.dtype, post.dtype))
    counts = np.zeros((2, 2, N_BINS), np.int64)
    stats = np.zeros((2, shape[0], 4))
    floor = g.params["noise_floor_sigma"]
    band = 0.0
    for z in range(shape[0]):
        t = time.perf_counter()
        counts[:] = 0
        passes.band(z, counts)  # D of section z, its lattice histogram
        band += time.perf_counter() - t
        for c in (0, 1):
            stats[c, z] = section_stats(counts[c], g.k, floor)
        inv = (1.0 / stats[0, z, 3], 1.0 / stats[1, z, 3])
        passes.evidence(z, inv, e, mark, levels, cand, tallies)
    del passes
    thr = SectionThresholds.from_stats(stats)
    t1 = time.perf_counter()
    level = float(levels[1])
    core = tuple((0, n) for n in shape)
    lin = kernels.seeds(e, cand, int(tallies[0]), g.seed_radii, np.float32(level), core)  # type: ignore[arg-type]
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
    return thr, labels, mark, seeds, tallies[1:]


def _detect_reference(
    pre: np.ndarray, post: np.ndarray, g: PairsGeometry, timings: dict[str, float]
) -> tuple[SectionThresholds, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same composition with the numpy/scipy reference, on the whole volume."""
    whole = Box.from_shape(g.volume_shape)
    t0 = time.perf_counter()
    thr = section_thresholds(block_histograms(pre, post, whole, whole, g), g)
    level = g.params["seed_level"]
    e, mark, _, counts = region_evidence(pre, post, whole, whole, thr, g, mark=True, level=level)
    assert mark is not None
    t1 = time.perf_counter()
    everything = tuple(slice(0, n) for n in g.volume_shape)
    seeds = reference.find_seeds(e, g.seed_radii, np.float32(level), everything)  # type: ignore[arg-type]
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
    parameters = g.to_dict() | thr.to_dict()
    parameters["voxels_above_threshold"] = {
        "presynaptic": int(above[0]), "postsynaptic": int(above[1]), "both": int(above[2])
    }  # fmt: skip
    if n == 0:
        t0 = time.perf_counter()
        pre_puncta, post_puncta = _puncta(pre, post, thr, g, labels)
        explanation = explain_empty(
            g, thr, presynaptic_puncta=pre_puncta, postsynaptic_puncta=post_puncta,
            seeds=len(seeds), largest_region_voxels=largest,
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
        result = detect_paired_puncta(
            channels[presynaptic],
            channels[postsynaptic],
            voxel_size=DEFAULT_VOXEL_SIZE if voxel_size is None else voxel_size,
            **resolved,
        )
        result.parameters["voxel_size_assumed"] = voxel_size is None
        return result
