"""PAIRS' per-section histograms and thresholds: the hand-off between pass 1 and the rest.

Owns :class:`SectionHistograms` (exact integer counts of the band-pass ``D`` per section
and channel, added over any blocks), :func:`section_stats` (median, noise, Otsu split and
threshold of one section), :class:`SectionThresholds` and :func:`section_thresholds`. Both
classes have ``to_dict``/``from_dict`` (JSON) so blockwise jobs can pass them on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.science.histogram_bins import N_BINS, SUB_BITS, bin_lower_edges, otsu_split

if TYPE_CHECKING:
    from synapse_pipelines.science.paired_puncta_geometry import PairsGeometry

__all__ = [
    "CHANNELS",
    "SectionHistograms",
    "SectionThresholds",
    "section_stats",
    "section_thresholds",
]

CHANNELS = ("presynaptic", "postsynaptic")
#: Median absolute deviation to standard deviation, for Gaussian noise.
MAD_TO_SIGMA = 1.4826
STAT_KEYS = ("median", "noise_sigma", "otsu_split", "threshold")


# --------------------------------------------------------------------------- histograms


@dataclass(frozen=True)
class SectionHistograms:
    """Exact counts of ``D`` per section: ``counts[z - z0, channel, sign, bin]`` (int64).

    ``sign`` 0 counts ``D >= 0`` by the bin of ``D``; 1 counts ``D < 0`` by the bin of
    ``-D``. Adding two merges blocks (their z ranges may differ or overlap).
    """

    z0: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 2, N_BINS), np.int64))

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
        out = np.zeros((z1 - z0, 2, 2, N_BINS), np.int64)
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
        counts = np.zeros((int(data["sections"]), 2, 2, N_BINS), np.int64)
        index = np.asarray(data["index"], np.int64)
        counts.reshape(-1)[index] = np.asarray(data["count"], np.int64)
        return cls(int(data["z0"]), counts)


_EDGES = bin_lower_edges().astype(np.float64)
#: Value of each bin: its integer below 2**SUB_BITS, else the midpoint of its lower edges.
_CENTRES = np.append((_EDGES[:-1] + _EDGES[1:]) / 2.0, _EDGES[-1])
_CENTRES[: 1 << SUB_BITS] = np.arange(1 << SUB_BITS)
_SIGNED_VALUES = np.concatenate([-_CENTRES[::-1], _CENTRES])


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    cum = np.cumsum(counts)
    return float(values[np.searchsorted(cum, (cum[-1] + 1) // 2)])


def section_stats(counts: np.ndarray, k: float, floor: float) -> tuple[float, float, float, float]:
    """(median, noise sigma, Otsu split, threshold) of one section's ``[2, N_BINS]`` counts.

    Bins stand for their centres. ``sigma = 1.4826 median(m - D | D <= m)``: the spread of
    the background half (puncta only add positive values); Otsu splits the positive ``D``
    (punctum against dim foreground); ``T = max(k o, floor sigma, 1)``. A section without
    a positive ``D`` has nothing brighter than its surroundings: ``T`` is infinite.
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
    split = otsu_split(pw.astype(np.float64), pv)
    otsu = float(pv[split + 1]) if split >= 0 else float(pv[0])
    return median, sigma, otsu, max(k * otsu, floor * sigma, 1.0)


@dataclass(frozen=True)
class SectionThresholds:
    """Per-section statistics of each channel, in ``D`` units (arrays of length Z).

    ``stats[channel]`` (``"presynaptic"``, ``"postsynaptic"``) has ``median``,
    ``noise_sigma``, ``otsu_split`` and ``threshold``; ``threshold`` (and ``otsu_split``)
    is infinite for a section without any positive ``D`` (flat).
    """

    stats: dict[str, dict[str, np.ndarray]]

    @classmethod
    def from_stats(cls, stats: np.ndarray) -> SectionThresholds:
        """From ``stats[channel, z]`` = ``section_stats`` of that section."""
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
                    name: np.array([math.inf if v is None else v for v in values], np.float64)
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
    stats = [[section_stats(hist.counts[z, c], g.k, floor) for z in range(n_z)] for c in (0, 1)]
    return SectionThresholds.from_stats(np.array(stats))
