"""PAIRS' seed test, compiled (numba, one core): which candidates are seeds.

Owns :class:`WeakSeeds` (the weak-seed rule) and :func:`seeds`: a candidate (a voxel the
evidence pass of :mod:`.paired_puncta_kernels` recorded, ``E >= level``) is a seed when it
is the maximum of ``E`` in its box with no equal value earlier in raster order, and, below
the strong level, when enough foreground surrounds it. It gives exactly the seeds of
:func:`.paired_puncta_reference.find_seeds` (tests compare them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synapse_pipelines.science.paired_puncta_rows import _jit

__all__ = ["WeakSeeds", "seeds"]


@dataclass(frozen=True)
class WeakSeeds:
    """The weak-seed rule: a maximum of ``E`` below ``strong_level`` (down to the candidate
    level) is a seed only when at least ``support_voxels`` voxels with ``E >= foreground``
    lie within ``radius_nm`` of it (the assignment ellipsoid, bounded by ``radii`` voxels
    per axis and clipped at the array border)."""

    strong_level: float
    foreground: float
    support_voxels: int
    radii: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    radius_nm: float

    @classmethod
    def none(cls, level: float) -> WeakSeeds:
        """No weak seeds: every candidate is strong."""
        return cls(level, level, 0, (0, 0, 0), (1.0, 1.0, 1.0), 0.0)

    def args(self) -> tuple[np.ndarray, np.ndarray]:
        """(float64 [strong, foreground, support, vz, vy, vx, r**2], int64 radii)."""
        rule = np.array(
            [self.strong_level, self.foreground, self.support_voxels, *self.voxel_size,
             float(self.radius_nm) ** 2], np.float64,
        )  # fmt: skip
        return rule, np.array(self.radii, np.int64)


@_jit
def _below_a_neighbour(e, z, y, x, v, rz, ry, rx):  # type: ignore[no-untyped-def]
    """A face neighbour inside the box holds a larger value: most candidates lie on the
    flank of a punctum, and six reads settle them before the whole box is scanned."""
    n_z, n_y, n_x = e.shape
    if rx > 0 and ((x > 0 and e[z, y, x - 1] > v) or (x + 1 < n_x and e[z, y, x + 1] > v)):
        return True
    if ry > 0 and ((y > 0 and e[z, y - 1, x] > v) or (y + 1 < n_y and e[z, y + 1, x] > v)):
        return True
    return rz > 0 and ((z > 0 and e[z - 1, y, x] > v) or (z + 1 < n_z and e[z + 1, y, x] > v))


@_jit
def _is_seed(e, z, y, x, rz, ry, rx):  # type: ignore[no-untyped-def]
    """No larger value in the box and no equal value earlier in raster order."""
    n_z, n_y, n_x = e.shape
    v = e[z, y, x]
    if _below_a_neighbour(e, z, y, x, v, rz, ry, rx):
        return False
    for zz in range(max(z - rz, 0), min(z + rz + 1, n_z)):
        for yy in range(max(y - ry, 0), min(y + ry + 1, n_y)):
            row = e[zz, yy]
            before = zz < z or (zz == z and yy < y)
            same_row = zz == z and yy == y
            for xx in range(max(x - rx, 0), min(x + rx + 1, n_x)):
                u = row[xx]
                if u > v:
                    return False
                if u == v and (before or (same_row and xx < x)):
                    return False
    return True


@_jit
def _supported(e, z, y, x, rule, radii):  # type: ignore[no-untyped-def]
    """Whether at least ``rule[2]`` voxels with ``E >= rule[1]`` lie within the ellipsoid
    of squared radius ``rule[6]`` nm**2 (voxel size ``rule[3:6]``) around (z, y, x), the
    box ``radii`` clipped at the array border: a weak seed's support."""
    n_z, n_y, n_x = e.shape
    fg = np.float32(rule[1])
    need = np.int64(rule[2])  # an integer count, carried in the float64 rule
    vz, vy, vx, r2 = rule[3], rule[4], rule[5], rule[6]
    rz, ry, rx = radii[0], radii[1], radii[2]
    n = 0
    for zz in range(max(z - rz, 0), min(z + rz + 1, n_z)):
        dz = ((zz - z) * vz) ** 2
        for yy in range(max(y - ry, 0), min(y + ry + 1, n_y)):
            dzy = dz + ((yy - y) * vy) ** 2
            if dzy > r2:
                continue
            row = e[zz, yy]
            for xx in range(max(x - rx, 0), min(x + rx + 1, n_x)):
                if dzy + ((xx - x) * vx) ** 2 <= r2 and row[xx] >= fg:
                    n += 1
                    if n >= need:
                        return True
    return n >= need


@_jit
def _keep_seed(e, z, y, x, rz, ry, rx, rule, radii, strong):  # type: ignore[no-untyped-def]
    """A maximum of its box; below its section's strong level ``strong[z]`` also
    supported."""
    if not _is_seed(e, z, y, x, rz, ry, rx):
        return False
    return e[z, y, x] >= strong[z] or _supported(e, z, y, x, rule, radii)


@_jit
def _seeds_from(e, cand, n_cand, rz, ry, rx, z0, z1, y0, y1, x0, x1, rule, radii, strong):  # type: ignore[no-untyped-def]
    """Keep the candidates (raster order) inside the core that are seeds; compacts them in
    place at the front of ``cand`` and returns how many."""
    n_y, n_x = e.shape[1], e.shape[2]
    plane = n_y * n_x
    n = 0
    for i in range(n_cand):
        idx = cand[i]
        z = idx // plane
        rem = idx - z * plane
        y = rem // n_x
        x = rem - y * n_x
        if z < z0 or z >= z1 or y < y0 or y >= y1 or x < x0 or x >= x1:
            continue
        if _keep_seed(e, z, y, x, rz, ry, rx, rule, radii, strong):
            cand[n] = idx
            n += 1
    return n


@_jit
def _seeds_scan(e, level, rz, ry, rx, z0, z1, y0, y1, x0, x1, out, rule, radii, strong):  # type: ignore[no-untyped-def]
    """Seeds of the core by a full scan (the candidate list overflowed); writes linear
    indices into ``out`` when it is large enough and returns how many there are."""
    n_y, n_x = e.shape[1], e.shape[2]
    n = 0
    for z in range(z0, z1):
        for y in range(y0, y1):
            row = e[z, y]
            for x in range(x0, x1):
                if row[x] >= level and _keep_seed(e, z, y, x, rz, ry, rx, rule, radii, strong):
                    if n < out.shape[0]:
                        out[n] = (z * n_y + y) * n_x + x
                    n += 1
    return n


def seeds(
    e: np.ndarray,
    cand: np.ndarray,
    n_cand: int,
    radii: tuple[int, int, int],
    level: np.float32,
    core: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    weak: WeakSeeds | None = None,
    strong: np.ndarray | None = None,
) -> np.ndarray:
    """Seeds of ``e[core]`` as int64 linear indices into ``e`` (raster order).

    ``cand[:n_cand]`` are the candidates pass 2 collected (``E >= level``); ``n_cand < 0``
    means it overflowed, and ``e`` is scanned instead. ``weak``: a candidate below
    ``weak.strong_level`` (or below ``strong[z]``, float32 per section of ``e``, when given)
    is a seed only with its support (:class:`WeakSeeds`); None: every maximum at or above
    ``level`` is. The result may be a view of ``cand``.
    """
    (z0, z1), (y0, y1), (x0, x1) = core
    rz, ry, rx = radii
    rule, support_radii = (weak or WeakSeeds.none(float(level))).args()
    levels = strong_levels(e.shape[0], rule[0], strong)
    args = (rule, support_radii, levels)
    if n_cand >= 0:
        n = _seeds_from(e, cand, n_cand, rz, ry, rx, z0, z1, y0, y1, x0, x1, *args)
        return cand[:n]
    empty = np.zeros(0, np.int64)
    n = _seeds_scan(e, level, rz, ry, rx, z0, z1, y0, y1, x0, x1, empty, *args)
    out = np.zeros(n, np.int64)
    _seeds_scan(e, level, rz, ry, rx, z0, z1, y0, y1, x0, x1, out, *args)
    return out


def strong_levels(n_z: int, strong_level: float, strong: np.ndarray | None) -> np.ndarray:
    """float32 ``[n_z]``: ``strong`` (one level per section), or ``strong_level`` in each."""
    if strong is None:
        return np.full(n_z, strong_level, np.float32)
    levels = np.ascontiguousarray(strong, np.float32)
    if levels.shape != (n_z,):
        raise ValueError(f"strong levels of shape {levels.shape} for {n_z} sections")
    return levels
