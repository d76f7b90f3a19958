"""Rendering primitives of the realistic synthetic AT model (used by ``synthetic``).

Owns the pieces that turn object positions into images: per-section image frames
(registration error), sub-pixel Gaussian puncta, the warped diffuse staining, correlated
shot + read noise, nuclei and the ground-truth annotation. Where objects are placed (the
tissue fields and the sampling rules) is :mod:`synapse_pipelines.science.synthetic_tissue`.
Nothing here chooses parameter values: the calibrated values and the public API are in
:mod:`synapse_pipelines.science.synthetic`. Pure numpy + scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "BAD_SECTION_CORR",
    "PunctaGroup",
    "SectionFrames",
    "annotate_synapses",
    "correlated_noise",
    "grid_displacement",
    "render_nuclei",
    "render_puncta",
    "rotation_matrix",
    "section_walk",
    "soft_clip",
    "unit_vectors",
    "warp_field",
]


# ---------------------------------------------------------------------------- geometry
def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class PunctaGroup:
    """Expanded puncta of one object group: sub-blob positions (tissue frame, voxels), the
    parent object's amplitude / size z-scores, and per-blob amplitude / size factors."""

    pos: np.ndarray
    zlog: np.ndarray
    zsize: np.ndarray
    ampf: np.ndarray
    sizef: np.ndarray
    parent: np.ndarray

    def subset(self, keep: np.ndarray) -> PunctaGroup:
        m = keep[self.parent]
        return PunctaGroup(
            self.pos[m], self.zlog[m], self.zsize[m], self.ampf[m], self.sizef[m], self.parent[m]
        )


# ----------------------------------------------------------------------------- render
def rotation_matrix(theta_deg: float) -> np.ndarray:
    t = math.radians(theta_deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


@dataclass(frozen=True)
class SectionFrames:
    """Tissue -> image frame of one channel, per section: p -> A (p - c) + c + t + w(p).

    ``mats`` (Z, 2, 2) rotations, ``trans`` (Z, 2) translations (voxels), ``warp`` (Z, gy,
    gx, 2) a smooth non-rigid displacement sampled on a coarse node grid of ``spacing`` px
    (bilinear between nodes), ``centre`` (2,) the rotation centre."""

    mats: np.ndarray
    trans: np.ndarray
    warp: np.ndarray
    spacing: float
    centre: np.ndarray

    def displacement(self, z: np.ndarray, yx: np.ndarray) -> np.ndarray:
        """Non-rigid displacement (N, 2) at (N,) sections and (N, 2) positions."""
        gy, gx = self.warp.shape[1:3]
        u = np.clip(yx[:, 0] / self.spacing, 0, gy - 1.001)
        v = np.clip(yx[:, 1] / self.spacing, 0, gx - 1.001)
        iu, iv = u.astype(np.int64), v.astype(np.int64)
        fu, fv = (u - iu)[:, None], (v - iv)[:, None]
        w = self.warp
        return (
            w[z, iu, iv] * (1 - fu) * (1 - fv)
            + w[z, iu + 1, iv] * fu * (1 - fv)
            + w[z, iu, iv + 1] * (1 - fu) * fv
            + w[z, iu + 1, iv + 1] * fu * fv
        )

    def to_image(self, z: np.ndarray, yx: np.ndarray) -> np.ndarray:
        c = self.centre
        out = np.einsum("nij,nj->ni", self.mats[z], yx - c) + c + self.trans[z]
        return out + self.displacement(z, yx)

    def to_tissue(self, z: int, yx: np.ndarray) -> np.ndarray:
        """Approximate inverse (the warp is smooth and small): image -> tissue."""
        zz = np.full(len(yx), z)
        q = yx - self.trans[z] - self.displacement(zz, yx) - self.centre
        return q @ np.linalg.inv(self.mats[z]).T + self.centre


#: Noise-correlation weight in "bad" (noisy) sections: nearly white.
BAD_SECTION_CORR = 0.15
#: Stamps (per punctum and section) are cut where they fall below this many grey levels.
_MIN_STAMP = 0.25


def render_puncta(
    shape: tuple[int, int, int],
    pts: np.ndarray,
    amp: np.ndarray,
    size: np.ndarray,
    sigma_xy: float,
    sigma_z: float,
    frames: SectionFrames,
) -> np.ndarray:
    """Render anisotropic Gaussian puncta (peak ``amp``) section by section.

    Each punctum's z profile is evaluated analytically at every section within 3 sigma;
    its in-plane centre is mapped into that section's image frame (``frames``) and an exact
    sub-pixel separable Gaussian stamp (cut at 3 sigma or where it falls below
    ``_MIN_STAMP``) is accumulated; all stamps go through a single ``bincount``.
    """
    z_n, y_n, x_n = shape
    if len(pts) == 0:
        return np.zeros(shape, np.float32)
    sz = sigma_z * size
    k = math.ceil(3.0 * float(sz.max())) + 1
    dz = np.arange(-k, k + 1)
    zc = np.floor(pts[:, 0]).astype(np.int64)[:, None] + dz[None, :]  # (N, 2k+1) sections
    w = np.exp(-0.5 * ((zc - pts[:, [0]]) / sz[:, None]) ** 2) * amp[:, None]
    # Keep section stamps whose peak is above 1/4 grey level (and within 3 sigma).
    ok = (zc >= 0) & (zc < z_n) & (w > max(_MIN_STAMP, 0.0)) & (w > 0.011 * amp[:, None])
    ii, jj = np.nonzero(ok)
    zs = zc[ii, jj]
    ww = w[ii, jj].astype(np.float32)
    yx = frames.to_image(zs, pts[ii, 1:])
    sxy = (sigma_xy * size[ii]).astype(np.float32)
    # In-plane radius: where the stamp falls below _MIN_STAMP, at most 3 sigma.
    reach = np.sqrt(2.0 * np.log(np.maximum(ww / _MIN_STAMP, 1.0 + 1e-6)))
    radius = np.ceil(sxy * np.minimum(reach, 3.0)).astype(np.int64)
    idx_l, w_l = [], []
    plane = y_n * x_n
    for r in np.unique(radius):
        sel = np.flatnonzero(radius == r)
        off = np.arange(-r, r + 1)
        cy = np.rint(yx[sel, 0]).astype(np.int64)
        cx = np.rint(yx[sel, 1]).astype(np.int64)
        py = cy[:, None] + off[None, :]  # (n, 2r+1)
        px = cx[:, None] + off[None, :]
        s = (-0.5 / sxy[sel] ** 2)[:, None]
        gy = np.exp(s * (py - yx[sel, 0][:, None]).astype(np.float32) ** 2)
        gx = np.exp(s * (px - yx[sel, 1][:, None]).astype(np.float32) ** 2)
        gy *= ww[sel][:, None]
        gy[(py < 0) | (py >= y_n)] = 0.0
        gx[(px < 0) | (px >= x_n)] = 0.0
        rows = zs[sel][:, None] * plane + np.clip(py, 0, y_n - 1) * x_n  # (n, 2r+1)
        idx = rows[:, :, None] + np.clip(px, 0, x_n - 1)[:, None, :]
        idx_l.append(idx.reshape(-1))
        w_l.append((gy[:, :, None] * gx[:, None, :]).reshape(-1))
    flat = np.bincount(
        np.concatenate(idx_l), weights=np.concatenate(w_l), minlength=z_n * y_n * x_n
    )
    return flat.astype(np.float32).reshape(shape)


def _upsample2(a: np.ndarray, out_yx: tuple[int, int]) -> np.ndarray:
    """Linear x2 upsampling in y and x (low-res pixel j sits at full-res 2 j)."""

    def up(v: np.ndarray, axis: int, n: int) -> np.ndarray:
        v = np.moveaxis(v, axis, -1)
        out = np.empty((*v.shape[:-1], 2 * v.shape[-1] - 1), np.float32)
        out[..., 0::2] = v
        out[..., 1::2] = 0.5 * (v[..., :-1] + v[..., 1:])
        return np.moveaxis(out[..., :n], -1, axis)

    return up(up(a, 1, out_yx[0]), 2, out_yx[1])


def _interp_matrix(n_out: int, step_out: float, spacing: float, n_nodes: int) -> np.ndarray:
    """(n_out, n_nodes) linear-interpolation weights from a node grid of ``spacing`` px
    onto output pixels at ``step_out`` px (clamped at the ends)."""
    u = np.clip(np.arange(n_out) * step_out / spacing, 0, n_nodes - 1.001)
    i = u.astype(np.int64)
    f = u - i
    m = np.zeros((n_out, n_nodes))
    m[np.arange(n_out), i] = 1 - f
    m[np.arange(n_out), i + 1] += f
    return m


def grid_displacement(frames: SectionFrames, ly: int, lx: int, step: float) -> np.ndarray:
    """Non-rigid displacement (Z, ly, lx, 2) on a regular grid of ``step`` px (separable
    bilinear interpolation of the node grid; identical to ``SectionFrames.displacement``)."""
    gy, gx = frames.warp.shape[1:3]
    ky = _interp_matrix(ly, step, frames.spacing, gy)
    kx = _interp_matrix(lx, step, frames.spacing, gx)
    # Two small einsums (no BLAS: tiny matrices, and BLAS threads spin on busy machines).
    tmp = np.einsum("ya,zabc->zybc", ky, frames.warp)
    return np.einsum("zybc,xb->zyxc", tmp, kx).astype(np.float32)


def warp_field(
    lowres: np.ndarray,
    f: int,
    z0: int,
    shape: tuple[int, int, int],
    frames: SectionFrames,
    disp: np.ndarray,
) -> np.ndarray:
    """Warp a half-resolution tissue-frame field into each section's image frame
    (bilinear, at half resolution), then upsample x2 to full resolution. ``disp`` is
    ``grid_displacement(frames, ly, lx, f)`` (shared by every channel)."""
    if f != 2:
        raise ValueError("fields are generated at half resolution")
    ly, lx = shape[1] // 2 + 1, shape[2] // 2 + 1
    oy = (np.arange(ly, dtype=np.float32) * f)[:, None]
    ox = (np.arange(lx, dtype=np.float32) * f)[None, :]
    out = np.empty((shape[0], ly, lx), np.float32)
    src_h, src_w = lowres.shape[1:]
    c = frames.centre.astype(np.float32)
    for z in range(shape[0]):
        inv = np.linalg.inv(frames.mats[z]).astype(np.float32) / f
        t = frames.trans[z].astype(np.float32)
        qy = oy - t[0] - disp[z, :, :, 0] - c[0]
        qx = ox - t[1] - disp[z, :, :, 1] - c[1]
        py = inv[0, 0] * qy + inv[0, 1] * qx + c[0] / f
        px = inv[1, 0] * qy + inv[1, 1] * qx + c[1] / f
        np.clip(py, 0, src_h - 1.001, out=py)
        np.clip(px, 0, src_w - 1.001, out=px)
        iy = py.astype(np.int32)
        ix = px.astype(np.int32)
        fy = py - iy
        fx = px - ix
        plane = lowres[z + z0]
        top = plane[iy, ix] * (1 - fx) + plane[iy, ix + 1] * fx
        bot = plane[iy + 1, ix] * (1 - fx) + plane[iy + 1, ix + 1] * fx
        out[z] = top * (1 - fy) + bot * fy
    return _upsample2(out, shape[1:])


def correlated_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], c: np.ndarray
) -> np.ndarray:
    """Unit-variance noise, correlated in y and x by a [c, 1, c] kernel per section
    (``c`` (Z,) in [0, 0.5]); uniform noise summed over 9 pixels is close to Gaussian."""
    u = rng.random(shape, dtype=np.float32)
    u -= np.float32(0.5)
    cz = np.asarray(c, np.float32)[:, None, None]
    tmp = np.empty(shape, np.float32)
    b = u.copy()
    np.multiply(u, cz, out=tmp)  # c * u, shifted along y then x below
    b[:, 1:] += tmp[:, :-1]
    b[:, :-1] += tmp[:, 1:]
    out = b.copy()
    np.multiply(b, cz, out=tmp)
    out[:, :, 1:] += tmp[:, :, :-1]
    out[:, :, :-1] += tmp[:, :, 1:]
    out *= np.float32(math.sqrt(12.0)) / (np.float32(1.0) + np.float32(2.0) * cz * cz)
    return out


def soft_clip(x: np.ndarray, knee: float, top: float = 255.0) -> np.ndarray:
    """Identity below ``knee``, smoothly compressed towards ``top`` above it."""
    span = top - knee
    hi = x > knee
    x[hi] = knee + span * np.tanh((x[hi] - knee) / span)
    return x


def section_walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """A zero-mean, unit-sd random walk along z (smooth drift)."""
    w = np.cumsum(rng.standard_normal(n))
    w -= w.mean()
    sd = w.std()
    return w / sd if sd > 0 else w


def render_nuclei(
    shape: tuple[int, int, int],
    centres: np.ndarray,
    voxel: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Large soft ellipsoids (~8 um across) with coarse chromatin texture."""
    img = np.zeros(shape, np.float32)
    for c in centres:
        r = np.array([4000.0, 4000.0, 4000.0]) * rng.uniform(0.8, 1.2, 3) / voxel
        amp = np.float32(rng.uniform(90, 140))
        lo = np.maximum(np.floor(c - 1.3 * r).astype(int), 0)
        hi = np.minimum(np.ceil(c + 1.3 * r).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        zz, yy, xx = (np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi, strict=True))
        d2 = (
            (((zz - c[0]) / r[0]) ** 2)[:, None, None]
            + (((yy - c[1]) / r[1]) ** 2)[None, :, None]
            + (((xx - c[2]) / r[2]) ** 2)[None, None, :]
        )
        box = amp / (1.0 + np.exp(np.minimum((d2 - 1.0) * 8.0, 60.0)))
        tex = rng.standard_normal(box.shape, dtype=np.float32)
        tex = ndi.uniform_filter(tex, (1, 5, 5)) * np.float32(5.0 * 0.5)
        img[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += np.maximum(box * (1.0 + tex), 0)
    return img


def annotate_synapses(
    shape: tuple[int, int, int],
    pre: np.ndarray,
    post: np.ndarray,
    pre_size: np.ndarray,
    post_size: np.ndarray,
    pre_sigma: np.ndarray,
    post_sigma: np.ndarray,
) -> np.ndarray:
    """uint64 labels: synapse i (1-based) on voxels within 1.5 sigma of either punctum;
    where synapses overlap the lower label wins. Puncta are processed in groups of equal
    box size (vectorised)."""
    ann = np.zeros(shape, np.uint64)
    n = len(pre)
    if n == 0:
        ann.setflags(write=False)
        return ann
    dims = np.array(shape)
    idx_all, lab_all = [], []
    labels_all = np.arange(1, n + 1)
    for cen_all, size_all, sig in ((pre, pre_size, pre_sigma), (post, post_size, post_sigma)):
        s_all = (sig[None, :] * size_all[:, None]).astype(np.float32)  # (n, 3)
        r_all = np.ceil(1.5 * s_all).astype(np.int64)
        keys = r_all[:, 0] * 10_000 + r_all[:, 1] * 100 + r_all[:, 2]
        for key in np.unique(keys):
            sel = np.flatnonzero(keys == key)
            r = r_all[sel[0]]
            cen, s = cen_all[sel], s_all[sel]
            m = len(sel)
            base = np.rint(cen).astype(np.int64)
            d2: np.ndarray | None = None
            coords = []
            for ax in range(3):
                o = np.arange(-r[ax], r[ax] + 1)
                c = base[:, ax][:, None] + o[None, :]  # (m, k)
                d = ((c - cen[:, ax][:, None]) / s[:, ax][:, None]) ** 2
                d = np.where((c >= 0) & (c < dims[ax]), d, np.inf).astype(np.float32)
                shp = [m, 1, 1, 1]
                shp[ax + 1] = len(o)
                d2 = d.reshape(shp) if d2 is None else d2 + d.reshape(shp)
                coords.append(np.clip(c, 0, dims[ax] - 1).reshape(shp))
            assert d2 is not None
            ok = np.asarray(d2 <= 2.25)
            flat_idx = (coords[0] * dims[1] + coords[1]) * dims[2] + coords[2]
            idx_all.append(np.broadcast_to(flat_idx, ok.shape)[ok])
            lab_all.append(np.broadcast_to(labels_all[sel].reshape(m, 1, 1, 1), ok.shape)[ok])
    idx = np.concatenate(idx_all)
    lab = np.concatenate(lab_all)
    # Lower label wins: write in descending label order so the smallest is written last.
    order = np.argsort(-lab, kind="stable")
    flat = ann.reshape(-1)
    flat[idx[order]] = lab[order].astype(np.uint64)
    ann.setflags(write=False)
    return ann
