"""Where the realistic synthetic model puts things (used by ``synthetic_realistic``).

Owns the tissue: smooth Gaussian random fields for the voids, the neuropil density and the
two process networks (:func:`make_fields`, :class:`TissueFields`), and the placement of
objects in it: inhomogeneous Poisson sampling (:func:`sample_points`) with the hard-core
(:func:`hard_core`) and clearance (:func:`clear_of`) rules. Turning positions into images is
:mod:`synapse_pipelines.science.synthetic_render`. Pure numpy + scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import fft as sfft, ndimage as ndi
from scipy.spatial import cKDTree

__all__ = [
    "TissueFields",
    "TissueParams",
    "clear_of",
    "field_at",
    "gaussian_random_field",
    "hard_core",
    "make_fields",
    "sample_points",
]


class TissueParams(Protocol):
    """The tissue fields of a profile (:class:`synapse_pipelines.science.synthetic.Profile`)."""

    tissue_scale_nm: float
    void_fraction: float
    density_contrast: float
    density_scale_nm: float
    network_sigma_nm: float
    network_sigma_z_nm: float
    network_width: float
    network_correlation: float


def hard_core(points: np.ndarray, voxel: np.ndarray, min_nm: float) -> np.ndarray:
    """Boolean keep-mask of (N, 3) voxel points so that no two kept points are closer than
    ``min_nm`` (physical): points are visited in their given (random) order and a point is
    dropped when an earlier kept point is too close (sequential inhibition)."""
    keep = np.ones(len(points), dtype=bool)
    if min_nm <= 0 or len(points) < 2:
        return keep
    pairs = cKDTree(points * voxel).query_pairs(min_nm, output_type="ndarray")
    if len(pairs) == 0:
        return keep
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # query_pairs gives i < j
    for i, j in pairs:  # a few per cent of the points: a Python loop is fast enough
        if keep[i]:
            keep[j] = False
    return keep


def clear_of(
    points: np.ndarray, others: np.ndarray, voxel: np.ndarray, min_nm: float
) -> np.ndarray:
    """Boolean mask of the (N, 3) voxel points farther than ``min_nm`` from every point
    of ``others`` (physical distance)."""
    if min_nm <= 0 or len(points) == 0 or len(others) == 0:
        return np.ones(len(points), dtype=bool)
    d, _ = cKDTree(others * voxel).query(points * voxel, distance_upper_bound=min_nm)
    return ~np.isfinite(d)


# ------------------------------------------------------------------------------ fields
@dataclass(frozen=True)
class TissueFields:
    """Low-resolution tissue fields (factor ``f`` in y/x), in the tissue frame."""

    f: int
    tissue: np.ndarray  # (Z', Y', X') in [0, 1]
    net: dict[str, np.ndarray]  # "pre"/"post": process networks in [0, 1]
    z0: int  # low-res z index of image section 0 (margin)


def gaussian_random_field(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: Sequence[float]
) -> np.ndarray:
    """Unit-variance smooth periodic Gaussian random field: white noise filtered by a
    Gaussian of ``sigma`` (pixels per axis) in Fourier space."""
    g = rng.standard_normal(shape, dtype=np.float32)
    spec = sfft.rfftn(g)
    for axis, (n, s) in enumerate(zip(shape, sigma, strict=True)):
        freq = sfft.rfftfreq(n) if axis == len(shape) - 1 else sfft.fftfreq(n)
        h = np.exp(-2.0 * (np.pi * freq * s) ** 2).astype(np.float32)
        spec *= h.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    g = sfft.irfftn(spec, s=shape).astype(np.float32)
    sd = float(g.std())
    return g / sd if sd > 0 else g


def make_fields(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    margin: int,
    voxel: np.ndarray,
    prof: TissueParams,
) -> TissueFields:
    f = 2
    zl = shape[0] + 2 * margin
    yl, xl = -(-shape[1] // f) + 2, -(-shape[2] // f) + 2
    lo = (zl, yl, xl)
    # Voids and neuropil density: coarse fields (x4 coarser than the low-res grid),
    # combined, then upsampled once.
    ts = prof.tissue_scale_nm
    coarse = (-(-zl // 4) + 1, -(-yl // 4) + 1, -(-xl // 4) + 1)
    g = gaussian_random_field(
        rng, coarse, (ts / voxel[0] / 4, ts / voxel[1] / f / 4, ts / voxel[2] / f / 4)
    )
    thr = float(np.quantile(g, prof.void_fraction)) if prof.void_fraction > 0 else -np.inf
    tissue = 1.0 / (1.0 + np.exp(-(g - thr) / 0.25))
    # Neuropil density varies smoothly (log-normal), shared by every channel.
    if prof.density_contrast > 0:
        ds = prof.density_scale_nm
        g2 = gaussian_random_field(
            rng, coarse, (ds / voxel[0] / 4, ds / voxel[1] / f / 4, ds / voxel[2] / f / 4)
        )
        k = prof.density_contrast
        tissue = tissue * np.exp(k * g2 - 0.5 * k * k)
    tissue = ndi.zoom(
        tissue.astype(np.float32),
        [n / c for n, c in zip(lo, coarse, strict=True)],
        order=1,
        grid_mode=True,
        mode="grid-wrap",
    )[: lo[0], : lo[1], : lo[2]]
    s = (
        prof.network_sigma_z_nm / voxel[0],
        prof.network_sigma_nm / voxel[1] / f,
        prof.network_sigma_nm / voxel[2] / f,
    )
    h_pre = gaussian_random_field(rng, lo, s)
    h_ind = gaussian_random_field(rng, lo, s)
    rho = prof.network_correlation
    h_post = rho * h_pre + math.sqrt(max(1.0 - rho * rho, 0.0)) * h_ind
    net = {
        name: np.exp(-0.5 * (h / prof.network_width) ** 2).astype(np.float32)
        for name, h in (("pre", h_pre), ("post", h_post))
    }
    return TissueFields(f=f, tissue=tissue.astype(np.float32), net=net, z0=margin)


def field_at(fl: TissueFields, arr: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Nearest-neighbour value of a low-res field at (N, 3) full-res tissue voxels."""
    iz = np.clip(np.rint(pts[:, 0]).astype(int) + fl.z0, 0, arr.shape[0] - 1)
    iy = np.clip(np.rint(pts[:, 1] / fl.f).astype(int), 0, arr.shape[1] - 1)
    ix = np.clip(np.rint(pts[:, 2] / fl.f).astype(int), 0, arr.shape[2] - 1)
    return arr[iz, iy, ix]


def sample_points(
    rng: np.random.Generator,
    density_um3: float,
    weight: np.ndarray,
    fl: TissueFields,
    zrange: tuple[float, float],
    shape: tuple[int, int, int],
    voxel: np.ndarray,
) -> np.ndarray:
    """Inhomogeneous Poisson points (thinning) with intensity density * weight / mean."""
    mean_w = float(weight.mean())
    if density_um3 <= 0 or mean_w <= 0:
        return np.zeros((0, 3))
    max_w = float(weight.max())
    vol_um3 = (zrange[1] - zrange[0]) * shape[1] * shape[2] * float(np.prod(voxel)) / 1e9
    n = rng.poisson(density_um3 * vol_um3 * max_w / mean_w)
    lo = np.array([zrange[0], -0.5, -0.5])
    hi = np.array([zrange[1], shape[1] - 0.5, shape[2] - 0.5])
    pts = lo + rng.random((n, 3)) * (hi - lo)
    keep = rng.random(n) * max_w < field_at(fl, weight, pts)
    return pts[keep]
