"""PAIRS' per-section histograms and thresholds: the hand-off between pass 1 and the rest.

Owns :class:`SectionHistograms` (exact integer counts of the band-pass ``D`` per section
and channel, and of the raw channel's neighbouring-pixel differences, added over any
blocks; :func:`pixel_difference_counts` makes the latter), :func:`section_stats` (median,
noise, Otsu split and threshold of one section), :func:`pixel_noise_sigma`,
:class:`SectionThresholds`, :func:`section_thresholds` and :func:`strong_seed_levels` (the
noise guard on seeds). Both classes have ``to_dict``/``from_dict`` (JSON) so blockwise jobs
can pass them on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.science.histogram_bins import (
    N_BINS,
    SUB_BITS,
    bin_index,
    bin_lower_edges,
    otsu_split,
)
from synapse_pipelines.science.section_continuity import (
    continuity_warnings,
    pair_continuity,
    summarise_continuity,
)

if TYPE_CHECKING:
    from synapse_pipelines.science.paired_puncta_geometry import PairsGeometry

__all__ = [
    "CHANNELS",
    "SectionHistograms",
    "SectionThresholds",
    "continuity_per_section",
    "pixel_difference_counts",
    "pixel_noise_sigma",
    "result_parameters",
    "section_stats",
    "section_thresholds",
    "strong_seed_levels",
]

CHANNELS = ("presynaptic", "postsynaptic")
#: Median absolute deviation to standard deviation, for Gaussian noise.
MAD_TO_SIGMA = 1.4826
STAT_KEYS = (
    "median",
    "noise_sigma",
    "otsu_split",
    "threshold",
    "pixel_noise_sigma",
    "section_continuity",
)
#: Rows of a section's histograms per channel: ``D >= 0``, ``D < 0`` (by the bin of
#: ``-D``), ``|v(y, x + 1) - v(y, x)|`` of the raw channel (the pixel noise), and in its
#: first four entries the sums of the section's continuity with the next section
#: (:func:`.section_continuity.continuity_sums`; exact integers that add like counts).
HIST_ROWS = 4
#: Row 3's entries: the continuity sums.
CONTINUITY_ROW, CONTINUITY_SUMS = 3, 4
#: What a JSON ``null`` stands for, per statistic: infinite (a flat section's threshold)
#: unless listed (a continuity that cannot be told).
_NULL_MEANS = {"section_continuity": math.nan}


# --------------------------------------------------------------------------- histograms


@dataclass(frozen=True)
class SectionHistograms:
    """Exact counts per section: ``counts[z - z0, channel, row, bin]`` (int64).

    Row 0 counts ``D >= 0`` by the bin of ``D``; row 1 counts ``D < 0`` by the bin of
    ``-D``; row 2 counts the raw channel's differences to the next pixel along x
    (:func:`pixel_difference_counts`); row 3 holds, in its first four entries, the sums of
    the section's continuity with the next one (:func:`.section_continuity.continuity_sums`,
    which may be negative). Adding two merges blocks (their z ranges may differ or
    overlap).
    """

    z0: int = 0
    counts: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 2, HIST_ROWS, N_BINS), np.int64)
    )

    @classmethod
    def empty(cls) -> SectionHistograms:
        return cls()

    def __add__(self, other: SectionHistograms) -> SectionHistograms:
        if not len(self.counts):
            return other
        if not len(other.counts):
            return self
        z0 = min(self.z0, other.z0)
        z1 = max(self.z0 + len(self.counts), other.z0 + len(other.counts))
        out = np.zeros((z1 - z0, 2, HIST_ROWS, N_BINS), np.int64)
        for part in (self, other):
            out[part.z0 - z0 : part.z0 - z0 + len(part.counts)] += part.counts
        return SectionHistograms(z0, out)

    def to_dict(self) -> dict[str, Any]:
        """Sparse JSON form: the flat indices and values of the non-zero counts."""
        flat = self.counts.reshape(-1)
        index = np.flatnonzero(flat)
        return {
            "z0": int(self.z0),
            "sections": len(self.counts),
            "index": index.tolist(),
            "count": flat[index].tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SectionHistograms:
        counts = np.zeros((int(data["sections"]), 2, HIST_ROWS, N_BINS), np.int64)
        index = np.asarray(data["index"], np.int64)
        counts.reshape(-1)[index] = np.asarray(data["count"], np.int64)
        return cls(int(data["z0"]), counts)


def pixel_difference_counts(
    volume: np.ndarray,
    core: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    lattice: tuple[int, int, int, int],
) -> np.ndarray:
    """int64 ``[sections of the core, N_BINS]``: ``|v(z, y, x + 1) - v(z, y, x)|`` by its
    bin, at the core's voxels on a lattice (global ``y`` and ``x`` multiples of the stride,
    ``PairsGeometry.noise_stride``) whose right neighbour is inside the volume, leaving out
    pairs of two zeros
    (background clipped at zero says nothing about the noise).

    ``core``: array coordinates; ``lattice``: (global y, x of the array's first voxel,
    stride, the volume's X). Any tiling counts the same pairs: a block's read box holds
    the neighbour (its halo, or the volume's border).
    """
    (z0, z1), (y0, y1), (x0, x1) = core
    gy, gx, stride, n_x = lattice
    ys = np.arange(y0 + (-(gy + y0)) % stride, y1, stride)
    xs = np.arange(x0 + (-(gx + x0)) % stride, x1, stride)
    xs = xs[gx + xs + 1 < n_x]
    out = np.zeros((z1 - z0, N_BINS), np.int64)
    if not len(ys) or not len(xs):
        return out
    for z in range(z0, z1):
        left = volume[z][np.ix_(ys, xs)].astype(np.int64)
        right = volume[z][np.ix_(ys, xs + 1)].astype(np.int64)
        diff = np.abs(right - left)[(left > 0) | (right > 0)]
        out[z - z0] = np.bincount(bin_index(diff), minlength=N_BINS)
    return out


_EDGES = bin_lower_edges().astype(np.float64)
#: Value of each bin: its integer below 2**SUB_BITS, else the midpoint of its lower edges.
_CENTRES = np.append((_EDGES[:-1] + _EDGES[1:]) / 2.0, _EDGES[-1])
_CENTRES[: 1 << SUB_BITS] = np.arange(1 << SUB_BITS)
_SIGNED_VALUES = np.concatenate([-_CENTRES[::-1], _CENTRES])


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    cum = np.cumsum(counts)
    return float(values[np.searchsorted(cum, (cum[-1] + 1) // 2)])


def pixel_noise_sigma(counts: np.ndarray) -> float:
    """The pixel noise of one section and channel, in grey levels, from its ``[N_BINS]``
    counts of neighbouring-pixel differences: ``1.4826 median |dv| / sqrt(2)`` (a difference
    of two pixels carries twice the noise variance; structure is smooth at the pixel scale
    and moves the median little). 0 without counts."""
    if not counts.any():
        return 0.0
    return MAD_TO_SIGMA * _weighted_median(_CENTRES, counts) / math.sqrt(2.0)


#: The log split may lower the linear one to this fraction at most (see section_stats).
LOG_SPLIT_BOUND = 0.5


def _upper_class_start(values: np.ndarray, weights: np.ndarray, log: bool = False) -> float:
    """The first value of Otsu's upper class over the bins ``values`` (split on their
    logarithm when ``log``)."""
    split = otsu_split(weights.astype(np.float64), np.log(values) if log else values)
    return float(values[split + 1]) if split >= 0 else float(values[0])


def _log_split(values: np.ndarray, weights: np.ndarray, above: float) -> float:
    """Otsu's split of ``log D`` over the bins above ``above`` (the noise floor): the first
    value of the upper class; infinite with fewer than two bins there."""
    keep = values > max(above, 0.0)
    if np.count_nonzero(keep) < 2:
        return math.inf
    return _upper_class_start(values[keep], weights[keep], log=True)


def section_stats(
    counts: np.ndarray, k: float, floor: float, log_split: bool = False
) -> tuple[float, float, float, float]:
    """(median, noise sigma, Otsu split, threshold) of one section's ``[2, N_BINS]`` counts.

    Bins stand for their centres. ``sigma = 1.4826 median(m - D | D <= m)``: the spread of
    the background half (puncta only add positive values); Otsu splits the positive ``D``
    (punctum against dim foreground); ``T = max(k o, floor sigma, 1)``. A section without
    a positive ``D`` has nothing brighter than its surroundings: ``T`` is infinite.

    ``log_split`` (one plane): the split is the lower of that one and Otsu's split of
    ``log D`` above the noise floor, bounded below at ``LOG_SPLIT_BOUND`` of it. Why: puncta
    brightness is multiplicative, and on a linear scale a few very bright puncta (or a
    saturated artifact) take Otsu's upper class to themselves and raise the split above
    most puncta; on a log scale they weigh no more than their share. Why only one plane: the
    log split starts at the noise floor, and in a stack the z smoothing carries a
    neighbouring section's background (its gain drift) into this section's ``D`` and so
    into the floor. Why the bound: without any noise (sigma 0) the log scale reaches down
    to the faintest tail and its split collapses. (docs/detection.md, "The split of one
    plane".)
    """
    signed = np.concatenate([counts[1][::-1], counts[0]])
    keep = signed > 0
    values, weights = _SIGNED_VALUES[keep], signed[keep]
    if not len(weights):
        return 0.0, 0.0, math.inf, math.inf
    median = _weighted_median(values, weights)
    low = values <= median
    sigma = MAD_TO_SIGMA * _weighted_median((median - values[low])[::-1], weights[low][::-1])
    pos = values > 0
    if not pos.any():
        return median, sigma, math.inf, math.inf
    pv, pw = values[pos], weights[pos]
    otsu = _upper_class_start(pv, pw)
    if log_split:
        otsu = max(min(otsu, _log_split(pv, pw, floor * sigma)), LOG_SPLIT_BOUND * otsu)
    return median, sigma, otsu, max(k * otsu, floor * sigma, 1.0)


@dataclass(frozen=True)
class SectionThresholds:
    """Per-section statistics of each channel, in ``D`` units (arrays of length Z).

    ``stats[channel]`` (``"presynaptic"``, ``"postsynaptic"``) has ``median``,
    ``noise_sigma``, ``otsu_split`` and ``threshold`` (``D`` units) and
    ``pixel_noise_sigma`` (grey levels) and ``section_continuity`` (with the next section;
    ``nan``, JSON ``null``, for the last section or where it cannot be told);
    ``threshold`` (and ``otsu_split``) is infinite for a section without any positive
    ``D`` (flat).
    """

    stats: dict[str, dict[str, np.ndarray]]

    @classmethod
    def from_stats(cls, stats: np.ndarray) -> SectionThresholds:
        """From ``stats[channel, z]`` = ``section_stats`` of that section, then its
        ``pixel_noise_sigma`` and ``section_continuity``."""
        return cls(
            {
                name: {key: stats[c, :, i].copy() for i, key in enumerate(STAT_KEYS)}
                for c, name in enumerate(CHANNELS)
            }
        )

    def inverse(self, z0: int, z1: int) -> np.ndarray:
        """float64 ``[2, z1 - z0]`` reciprocal thresholds (0 where a threshold is infinite)."""
        return np.stack([1.0 / self.stats[c]["threshold"][z0:z1] for c in CHANNELS])

    def to_dict(self) -> dict[str, Any]:
        return {
            ch: {
                name: [float(v) if math.isfinite(v) else None for v in values]
                for name, values in per.items()
            }
            for ch, per in self.stats.items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SectionThresholds:
        return cls(
            {
                ch: {
                    name: np.array(
                        [_NULL_MEANS.get(name, math.inf) if v is None else v for v in values],
                        np.float64,
                    )
                    for name, values in per.items()
                }
                for ch, per in data.items()
            }
        )


def section_thresholds(hist: SectionHistograms, g: PairsGeometry) -> SectionThresholds:
    """Thresholds of every section from the histograms summed over all blocks."""
    n_z = g.volume_shape[0]
    if hist.z0 != 0 or len(hist.counts) != n_z:
        raise DetectionError(
            f"histograms cover sections {hist.z0}..{hist.z0 + len(hist.counts)}, the volume "
            f"has 0..{n_z}",
            field="histograms",
            hint="sum block_histograms over a tiling of the whole volume",
        )
    floor = g.params["noise_floor_sigma"]
    stats = np.zeros((2, n_z, len(STAT_KEYS)))
    for c in (0, 1):
        for z in range(n_z):
            stats[c, z, :4] = section_stats(hist.counts[z, c, :2], g.k, floor, g.log_split)
            stats[c, z, 4] = pixel_noise_sigma(hist.counts[z, c, 2])
        stats[c, :, 5] = continuity_per_section(
            hist.counts[:, c, CONTINUITY_ROW, :CONTINUITY_SUMS], stats[c, :, 4], g
        )
    return SectionThresholds.from_stats(stats)


def continuity_per_section(
    sums: np.ndarray, pixel_sigma: np.ndarray, g: PairsGeometry
) -> np.ndarray:
    """float64 ``[Z]``: each section's continuity with the next (``nan`` for the last and
    where it cannot be told), from the summed ``[Z, 4]`` sums and the sections' pixel
    noise (:mod:`.section_continuity`)."""
    out = np.full(len(sums), math.nan)
    gain, shift = g.continuity_gain, g.continuity_shift
    for z in range(len(sums) - 1):
        out[z] = pair_continuity(sums[z], pixel_sigma[z], pixel_sigma[z + 1], gain, shift)
    return out


def strong_seed_levels(thr: SectionThresholds, g: PairsGeometry, z0: int, z1: int) -> np.ndarray:
    """float32 ``[z1 - z0]``: the evidence a seed of each section needs to count without
    the weak seeds' support. ``seed_level``, raised to ``noise_guard_sigma`` times the
    pixel noise carried through the band-pass (``pixel_noise_sigma`` x
    ``white_noise_gain``), over the threshold, in whichever channel that is larger: a seed
    whose evidence could be a coincidence of pixel noise in one channel must also show a
    punctum's extent. 0 turns the guard off."""
    level = np.full(z1 - z0, g.params["seed_level"], np.float64)
    guard = g.params["noise_guard_sigma"] * g.white_noise_gain
    if guard > 0:
        for c in CHANNELS:
            noise = thr.stats[c]["pixel_noise_sigma"][z0:z1] * guard
            level = np.maximum(level, noise / thr.stats[c]["threshold"][z0:z1])
    return level.astype(np.float32)


def result_parameters(g: PairsGeometry, thr: SectionThresholds) -> dict[str, Any]:
    """A result's ``parameters``: the geometry, every section's statistics, the median
    section continuity per channel and the warnings it gives (one rule for one job and
    blockwise runs)."""
    per_section = thr.to_dict()
    continuity = summarise_continuity({c: per_section[c]["section_continuity"] for c in CHANNELS})
    return {
        **g.to_dict(),
        **per_section,
        "section_continuity": continuity,
        "warnings": continuity_warnings(continuity, g.voxel_size[0], g.params["punctum_fwhm_nm"]),
    }
