"""numpy/scipy reference implementation of the paired-puncta (PAIRS) steps.

Owns the plain, slow and obviously-correct version of every per-voxel step of
:mod:`~synapse_pipelines.science.paired_puncta`: the integer band-pass, the per-section
histograms on the fixed lattice, the evidence, the seeds and the voxel assignment. It runs
when numba is missing, and the tests require the compiled kernels
(:mod:`~synapse_pipelines.science.paired_puncta_kernels`) to give exactly its output. Every
function takes plain arrays and integers (the geometry is derived in ``paired_puncta``) and
works on whole arrays with edge replication at the array border: a caller computing a block
passes the block read with its halo, clipped to the volume (so the array border is the
volume border wherever a halo is missing), and crops the core.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from synapse_pipelines.science.histogram_bins import N_BINS, bin_index
from synapse_pipelines.science.paired_puncta_seed_kernels import WeakSeeds, strong_levels

__all__ = [
    "assign",
    "bandpass",
    "binomial",
    "evidence",
    "find_seeds",
    "section_histograms",
    "white_noise_gain",
]


def binomial(order: int) -> np.ndarray:
    """The integer binomial kernel of ``order`` (length ``order + 1``, sum ``2**order``)."""
    return np.array([math.comb(order, i) for i in range(order + 1)], dtype=np.int64)


def bandpass(
    volume: np.ndarray, orders: tuple[int, int, int], widths: tuple[int, int]
) -> np.ndarray:
    """``D = S * w_y * w_x - N_s * B``, exact int64, edge replication at the array border.

    ``S``: integer binomial sum of order ``orders[axis]`` along each axis (weight
    ``N_s = 2**sum(orders)``); ``B``: in-plane box sum over ``widths = (w_y, w_x)``.
    """
    s = volume.astype(np.int64)
    for axis, order in enumerate(orders):
        if order:
            s = ndimage.correlate1d(s, binomial(order), axis=axis, mode="nearest")
    b = volume.astype(np.int64)
    for axis, width in ((1, widths[0]), (2, widths[1])):
        if width > 1:
            b = ndimage.correlate1d(b, np.ones(width, np.int64), axis=axis, mode="nearest")
    n_s = 1 << sum(orders)
    return s * (widths[0] * widths[1]) - n_s * b


def white_noise_gain(orders: tuple[int, int, int], widths: tuple[int, int]) -> float:
    """Standard deviation of :func:`bandpass` per grey level of white pixel noise, away from
    the border: the root sum of squares of its kernel (``S w_y w_x`` minus ``N_s`` times the
    box of the centre section). ``orders[0] == 0``: the in-plane band-pass."""
    smooth = np.einsum("i,j,k->ijk", *(binomial(n).astype(np.float64) for n in orders))
    smooth *= widths[0] * widths[1]
    shape = (smooth.shape[0], *(max(a, b) for a, b in zip(smooth.shape[1:], widths, strict=True)))
    kernel = np.zeros(shape)
    offset = [(n - m) // 2 for n, m in zip(shape, smooth.shape, strict=True)]
    kernel[tuple(slice(o, o + m) for o, m in zip(offset, smooth.shape, strict=True))] = smooth
    cy, cx = ((n - w) // 2 for n, w in zip(shape[1:], widths, strict=True))
    kernel[shape[0] // 2, cy : cy + widths[0], cx : cx + widths[1]] -= 1 << sum(orders)
    return float(np.sqrt(np.sum(kernel**2)))


def section_histograms(d: np.ndarray, stride: int, origin: tuple[int, int]) -> np.ndarray:
    """int64 ``[sections, 2, N_BINS]``: ``[:, 0]`` counts ``D >= 0`` by the bin of ``D``,
    ``[:, 1]`` counts ``D < 0`` by the bin of ``-D``.

    Only voxels on the fixed lattice are counted: global ``y`` and ``x`` both multiples of
    ``stride``; ``origin`` is the global (y, x) of ``d[:, 0, 0]``, so any tiling counts the
    same voxels.
    """
    hist = np.zeros((d.shape[0], 2, N_BINS), np.int64)
    oy, ox = (-origin[0]) % stride, (-origin[1]) % stride
    for z in range(d.shape[0]):
        v = d[z, oy::stride, ox::stride].ravel()
        hist[z, 0] = np.bincount(bin_index(v[v >= 0]), minlength=N_BINS)
        hist[z, 1] = np.bincount(bin_index(-v[v < 0]), minlength=N_BINS)
    return hist


def evidence(
    d_pre: np.ndarray,
    d_post: np.ndarray | None,
    inv_pre: np.ndarray,
    inv_post: np.ndarray,
    mode: int = 0,
) -> np.ndarray:
    """``E = min(D_pre * inv_pre[z], D_post * inv_post[z])`` in float64, stored as float32.

    ``inv_*`` are per-section reciprocals of the thresholds. ``mode`` 1 (2) gives the
    presynaptic (postsynaptic) ratio alone, for the explanation of an empty result.
    """
    if mode == 2:
        assert d_post is not None
        return (d_post.astype(np.float64) * inv_post[:, None, None]).astype(np.float32)
    a = d_pre.astype(np.float64) * inv_pre[:, None, None]
    if mode == 1:
        return a.astype(np.float32)
    assert d_post is not None
    b = d_post.astype(np.float64) * inv_post[:, None, None]
    return np.minimum(a, b).astype(np.float32)


def find_seeds(
    e: np.ndarray,
    radii: tuple[int, int, int],
    level: np.float32,
    core: tuple[slice, slice, slice],
    weak: WeakSeeds | None = None,
    strong: np.ndarray | None = None,
) -> np.ndarray:
    """Seeds in ``e[core]``: ``E >= level``, the maximum of its box (``radii`` per axis, the
    box clipped at the array border), and no earlier voxel (raster order) of the box with
    the same value; below ``weak.strong_level`` (or ``strong[z]``, per section of ``e``,
    when given) also the weak seeds' support
    (:class:`~.paired_puncta_seed_kernels.WeakSeeds`). Returns int64 ``(n, 3)`` array
    coordinates in raster order."""
    size = tuple(2 * r + 1 for r in radii)
    peak = ndimage.maximum_filter(e, size=size, mode="constant", cval=-np.inf)
    inside = np.zeros(e.shape, bool)
    inside[core] = True
    found = np.argwhere((e >= level) & (e >= peak) & inside)
    keep = np.ones(len(found), bool)
    shape = np.array(e.shape)
    r = np.array(radii)
    levels = strong_levels(e.shape[0], weak.strong_level if weak else float(level), strong)
    for n, (z, y, x) in enumerate(found):
        lo = np.maximum([z, y, x] - r, 0)
        hi = np.minimum([z, y, x] + r + 1, shape)
        window = e[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        same = np.argwhere(window == e[z, y, x]) + lo
        linear = (same[:, 0] * shape[1] + same[:, 1]) * shape[2] + same[:, 2]
        if linear.min() < (z * shape[1] + y) * shape[2] + x:
            keep[n] = False  # an earlier voxel of the box holds the same maximum
        elif weak is not None and e[z, y, x] < levels[z]:
            keep[n] = _support(e, (z, y, x), weak) >= weak.support_voxels
    return found[keep].astype(np.int64)


def _support(e: np.ndarray, at: tuple[int, int, int], weak: WeakSeeds) -> int:
    """Voxels with ``E >= weak.foreground`` in the ellipsoid around ``at`` (clipped)."""
    box, d2 = _ellipsoid_box(at, weak.radii, weak.voxel_size, e.shape)
    inside = (d2 <= float(weak.radius_nm) ** 2) & (e[box] >= np.float32(weak.foreground))
    return int(np.count_nonzero(inside))


def _ellipsoid_box(
    at: tuple[int, int, int],
    radii: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    shape: tuple[int, ...],
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The box of ``radii`` voxels around ``at`` clipped to ``shape`` (it may be empty when
    ``at`` lies outside), and the squared physical distance of each of its voxels to ``at``
    (``dz + dy + dx`` in that order: the kernels add them alike)."""
    lo = [max(c - r, 0) for c, r in zip(at, radii, strict=True)]
    hi = [max(min(c + r + 1, s), a) for c, r, s, a in zip(at, radii, shape, lo, strict=True)]
    dz, dy, dx = (
        ((np.arange(a, b) - c) * v) ** 2 for a, b, c, v in zip(lo, hi, at, voxel_size, strict=True)
    )
    d2 = dz[:, None, None] + dy[None, :, None] + dx[None, None, :]
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), d2  # type: ignore[return-value]


def assign(
    foreground: np.ndarray,
    seeds: np.ndarray,
    radii: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    radius_nm: float,
) -> np.ndarray:
    """Label each foreground voxel within ``radius_nm`` of a seed with the nearest seed's
    number (``1 + row`` of ``seeds``; squared physical distance, ties to the lower number).

    ``seeds`` are array coordinates (they may lie outside the array: a block's neighbours);
    ``radii`` bound the ellipsoid in voxels per axis.
    """
    labels = np.zeros(foreground.shape, np.uint32)
    best = np.full(foreground.shape, np.inf)
    r2 = float(radius_nm) ** 2
    for n, (z, y, x) in enumerate(seeds):
        box, d2 = _ellipsoid_box((z, y, x), radii, voxel_size, foreground.shape)
        if not d2.size:
            continue
        sub_best = best[box]
        # strictly closer only: on a tie the earlier (lower-numbered) seed keeps the voxel
        take = (d2 <= r2) & foreground[box] & (d2 < sub_best)
        sub_best[take] = d2[take]
        labels[box][take] = n + 1
    return labels
