"""Fixed log-linear histogram bins and Otsu's split on a histogram, shared by the detectors.

Owns the bin lattice both detectors count on (NOMADS' covariance numerators in
:mod:`~synapse_pipelines.science.detection`, PAIRS' band-passed intensities in
:mod:`~synapse_pipelines.science.paired_puncta`). The bins are fixed in advance, HDR-histogram
style: every integer below ``2**SUB_BITS`` has its own bin, then ``2**SUB_BITS`` bins per power
of two (~3 % wide), ``N_BINS`` bins covering every int64 magnitude. Because the edges never
depend on the data, a histogram of a block is an exact integer count and the histograms of
any tiling add up to the histogram of the whole volume.

- ``bin_index(values)`` -- bin of each non-negative integer (exact, no float rounding);
- ``bin_lower_edges()`` -- smallest integer of every bin;
- ``bin_lut()`` -- ``bin_index(0 .. 2**16 - 1)`` as int16, for compiled kernels;
- ``otsu_split(weights, centres)`` -- Otsu's maximum between-class variance split.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "LUT_SIZE",
    "N_BINS",
    "SUB_BITS",
    "bin_index",
    "bin_lower_edges",
    "bin_lut",
    "otsu_split",
]

#: log2 of the number of bins per power of two (HDR-histogram "significant bits").
SUB_BITS = 5
_SUB = 1 << SUB_BITS
#: Bins cover every int64 magnitude: exact values below 2**SUB_BITS, then _SUB per octave.
N_BINS = (63 - SUB_BITS + 1) * _SUB
#: Entries of :func:`bin_lut`.
LUT_SIZE = 1 << 16


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


@functools.cache
def bin_lut() -> np.ndarray:
    """``bin_index`` of ``0 .. LUT_SIZE - 1`` (int16): compiled kernels look small values up."""
    return bin_index(np.arange(LUT_SIZE)).astype(np.int16)


def otsu_split(weights: np.ndarray, centres: np.ndarray) -> int:
    """Otsu's split of a histogram: the index of the last bin of the lower class.

    Maximises the between-class variance ``w0 * w1 * (mean0 - mean1)**2`` over the splits
    that leave weight on both sides; the first maximum wins (deterministic). ``weights`` and
    ``centres`` are float arrays of one length (zero-weight bins are allowed). Returns -1
    when fewer than two bins carry weight (no split exists).
    """
    w = np.asarray(weights, dtype=np.float64)
    c = np.asarray(centres, dtype=np.float64)
    if np.count_nonzero(w) < 2:
        return -1
    w0 = np.cumsum(w)[:-1]
    m0 = np.cumsum(w * c)[:-1]
    total, mtotal = w.sum(), (w * c).sum()
    w1 = total - w0
    valid = (w0 > 0) & (w1 > 0)
    mean0 = m0 / np.where(valid, w0, 1.0)
    mean1 = (mtotal - m0) / np.where(valid, w1, 1.0)
    between = np.where(valid, w0 * w1 * (mean0 - mean1) ** 2, -1.0)
    return int(np.argmax(between))
