"""NOMADS' threshold: the fixed-bin histogram of covariance numerators, added over blocks,
and the Otsu threshold taken from it.

Owns :class:`CovarianceHistogram` (exact integer counts, so any tiling sums to the same
histogram), :func:`covariance_histogram` (the compiled counter of
:mod:`~synapse_pipelines.science.nomads_kernels`), its numpy reference
:func:`histogram_reference`, and :func:`threshold_from_histogram`. The numerators come from
:mod:`~synapse_pipelines.science.nomads_primitives`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from synapse_pipelines.science.histogram_bins import (
    LUT_SIZE,
    N_BINS,
    SUB_BITS,
    bin_index,
    bin_lower_edges,
    bin_lut,
    otsu_split,
)
from synapse_pipelines.science.nomads_kernels import histogram_kernel

__all__ = [
    "CLIP_QUANTILE",
    "CovarianceHistogram",
    "covariance_histogram",
    "histogram_reference",
    "threshold_from_histogram",
]

#: Positive numerators above this quantile count as its bin in the threshold's Otsu (a few
#: saturated specks must not pull the split up); see threshold_from_histogram.
CLIP_QUANTILE = 0.995


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


def histogram_reference(numerator: np.ndarray) -> CovarianceHistogram:
    flat = numerator.ravel()
    pos = flat[flat > 0]
    neg = flat[flat < 0]
    return CovarianceHistogram(
        np.bincount(bin_index(pos), minlength=N_BINS).astype(np.int64),
        np.bincount(bin_index(-neg.astype(np.int64)), minlength=N_BINS).astype(np.int64),
    )


def covariance_histogram(numerator: np.ndarray) -> CovarianceHistogram:
    """Histogram of one block's numerators (sum blocks with ``+``)."""
    if histogram_kernel is None:  # pragma: no cover
        return histogram_reference(numerator)
    hist = CovarianceHistogram.empty()
    histogram_kernel(
        np.ascontiguousarray(numerator),
        hist.positive,
        hist.negative,
        bin_lut(),
        SUB_BITS,
        np.zeros(2 * LUT_SIZE, np.uint32),
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
    split = otsu_split(counts[lo:], centres)  # two filled bins: lo and top
    return int(edges[lo + split + 1])
