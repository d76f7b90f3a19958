"""Compiled (numba, one core) kernels of the paired-puncta (PAIRS) detector.

Owns the passes (``histograms``, ``evidence``, ``SectionPasses``, ``assign``, ``finalize``;
the seed test between them is :mod:`.paired_puncta_seed_kernels`) built on the row
machinery of :mod:`.paired_puncta_rows`: the fast versions of the per-voxel steps of
:mod:`~synapse_pipelines.science.paired_puncta`; each gives exactly the output of its
numpy/scipy counterpart in :mod:`~synapse_pipelines.science.paired_puncta_reference`
(tests compare them). ``compiled()`` is False when numba is missing: callers then use the
reference.

How they are fast. The band-pass ``D`` is produced one image row at a time, never as a
volume: a row of the binomial sum ``S`` is the weighted sum of the input rows of the
neighbouring sections (read straight from the uint8/uint16 input), smoothed along x, then
combined along y from a ring of such rows; the in-plane box sum ``B`` is a running sum of
input rows along y and a sliding sum along x. Reads outside the array are clamped to the
nearest voxel, which *is* the edge-replication border rule, so no padded copy is made.
Integer arithmetic is int32 whenever the largest possible ``|D|`` fits (uint8 always,
uint16 at the default geometry). Histogram bins come from one 24 KiB table.

- Blocks: ``histograms`` (pass 1: lattice rows only) and ``evidence`` (pass 2: ``E``, the
  foreground mark, the seed candidates) each compute ``D`` of their block.
- One job: thresholds are per section, so a section's evidence needs only that section's
  histogram. ``SectionPasses`` computes ``D`` of a section once into two plane buffers,
  histograms it, and (once the caller has the section's thresholds) writes its ``E``:
  ``D`` is computed once per voxel and only two planes of it are ever held.
- The seed test visits only the candidates; ``assign`` writes the labels (into ``E``'s
  memory in the one-job path, once ``E`` is no longer needed) and ``finalize`` makes the
  mask.
"""

from __future__ import annotations

import numpy as np

from synapse_pipelines.science.histogram_bins import N_BINS
from synapse_pipelines.science.paired_puncta_rows import (
    SUBS,
    Filters,
    _band_row,
    _bin_lut,
    _count,
    _jit,
    _reset,
    compiled,
)

__all__ = [
    "MARK_FOREGROUND",
    "MARK_LABELLED",
    "NO_MARK",
    "SUBS",
    "Filters",
    "SectionPasses",
    "assign",
    "compiled",
    "evidence",
    "finalize",
    "histograms",
]

#: Values of the per-voxel mark array between evidence and assignment.
MARK_FOREGROUND = 1  # E >= the assignment level, no label yet
MARK_LABELLED = 255  # labelled: the label array holds a valid (local) seed number
#: Shape of the mark argument when no mark is wanted (one empty row keeps the type).
NO_MARK = (1, 1, 0)

Core = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


# --------------------------------------------------------------------------- histograms


@_jit
def _histograms(pre, post, core, lattice, kz, ky, geo, consts, hist, lut, bp, ip, dp, bq, iq, dq):  # type: ignore[no-untyped-def]
    """Pass 1: per-section histograms of ``D`` over the lattice voxels of the core
    (``core`` = z0, z1, y0, y1, x0, x1 in array coordinates; ``lattice`` = global y and x
    of array index 0, stride). ``hist[z - z0, channel]`` as in ``_count``."""
    z0, z1, y0, y1, x0, x1 = core[0], core[1], core[2], core[3], core[4], core[5]
    gy, gx, stride = lattice[0], lattice[1], lattice[2]
    n = x1 - x0
    first = (-(gx + x0)) % stride
    for z in range(z0, z1):
        _reset(ip)
        _reset(iq)
        for y in range(y0, y1):
            if (gy + y) % stride != 0:
                continue  # off the lattice: the ring and running sums catch up later
            _band_row(pre, z, y, x0, n, kz, ky, geo, consts, bp, ip, dp)
            _band_row(post, z, y, x0, n, kz, ky, geo, consts, bq, iq, dq)
            _count(dp, first, n, stride, hist[z - z0, 0], lut, bp[bp.shape[0] - 1])
            _count(dq, first, n, stride, hist[z - z0, 1], lut, bq[bq.shape[0] - 1])


def _core(core: Core) -> np.ndarray:
    return np.array([v for pair in core for v in pair], np.int64)


def histograms(
    pre: np.ndarray,
    post: np.ndarray,
    core: Core,
    lattice: tuple[int, int, int],
    filters: Filters,
    out: np.ndarray,
) -> None:
    """Add pass 1's counts for the core box (array coordinates) to ``out`` (int64
    ``[sections of the core, 2 channels, 2 signs, N_BINS]``); ``lattice`` = (global y, x of
    the array's first voxel, stride)."""
    n = core[2][1] - core[2][0]
    subs = np.zeros((out.shape[0], 2, SUBS, 2 * N_BINS), np.int64)
    _histograms(
        pre, post, _core(core), np.array(lattice, np.int64), *filters.args(), subs,
        _bin_lut(), *filters.scratch(n), *filters.scratch(n),
    )  # fmt: skip
    out += subs.sum(axis=2).reshape(out.shape)


# --------------------------------------------------------------------------- evidence


@_jit
def _e_row(
    dp, dq, n, ia, ib, mode, er, mr, has_mark, levels, peaks, prev, has_prev, cand, counts, base
):  # type: ignore[no-untyped-def]
    """One row of ``E`` from the rows of ``D``: ``er``; the mark ``mr``; candidates
    (``E >= levels[1]``) with linear index ``base + k`` appended to ``cand``; the tallies in
    ``counts`` (``counts[3]``: ``E >= levels[2]``; ``counts[4]``: where the row's
    candidates start in ``cand``).

    A voxel below a neighbour inside its seed box cannot be a seed: with ``peaks & 1`` a
    candidate below its neighbour in the row is left out, with ``peaks & 2`` one below the
    voxel of the previous row ``prev`` (``has_prev``: the row above in the same section;
    still in cache), and the previous row's candidates below this row are then removed."""
    fg_level, cand_level, seed_level = levels[0], levels[1], levels[2]
    cp = 0
    cq = 0
    cb = 0
    cc = 0
    if mode == 0:
        for k in range(n):
            a = dp[k] * ia
            b = dq[k] * ib
            e = np.float32(a if a < b else b)
            er[k] = e
            cp += a >= 1.0
            cq += b >= 1.0
            cb += e >= seed_level
            cc += e >= cand_level
    elif mode == 1:
        for k in range(n):
            a = dp[k] * ia
            e = np.float32(a)
            er[k] = e
            cp += a >= 1.0
            cb += e >= seed_level
            cc += e >= cand_level
    else:
        for k in range(n):
            b = dq[k] * ib
            e = np.float32(b)
            er[k] = e
            cq += b >= 1.0
            cb += e >= seed_level
            cc += e >= cand_level
    if has_mark:
        for k in range(n):
            mr[k] = 1 if er[k] >= fg_level else 0
    counts[1] += cp
    counts[2] += cq
    counts[3] += cb
    nc = counts[0]
    check_prev = peaks & 2 and has_prev
    if check_prev and nc >= 0:  # the row above's candidates, now that its next row is known
        kept = counts[4]
        above = base - n
        for i in range(counts[4], nc):
            k = cand[i] - above
            if er[k] <= prev[k]:
                cand[kept] = cand[i]
                kept += 1
        nc = kept
    counts[4] = nc
    if cc > 0 and nc >= 0:
        cap = cand.shape[0]
        for k in range(n):
            v = er[k]
            if v >= cand_level:
                if peaks & 1 and ((k > 0 and er[k - 1] > v) or (k + 1 < n and er[k + 1] > v)):
                    continue
                if check_prev and prev[k] > v:
                    continue
                if nc == cap:
                    nc = -1  # overflow: the caller scans E instead
                    break
                cand[nc] = base + k
                nc += 1
        counts[0] = nc


@_jit
def _evidence(
    pre,
    post,
    core,
    kz,
    ky,
    geo,
    consts,
    inv,
    mode,
    e_out,
    mark,
    levels,
    peaks,
    cand,
    counts,
    bp,
    ip,
    dp,
    bq,
    iq,
    dq,
):  # type: ignore[no-untyped-def]
    """Pass 2: ``E`` of the core into ``e_out`` (core-shaped), ``mark`` = MARK_FOREGROUND
    where ``E >= levels[0]`` (skipped when ``mark`` has shape NO_MARK), and the linear
    indices (into ``e_out``) of voxels with ``E >= levels[1]`` appended to ``cand``.

    ``inv[c, z - z0]``: reciprocal thresholds. ``counts``: [candidates (-1: ``cand``
    overflowed), voxels with ``D_pre >= T_pre``, with ``D_post >= T_post``, with
    ``E >= levels[2]``]. ``mode`` 1 / 2: ``E`` is the presynaptic / postsynaptic ratio.
    """
    z0, z1, y0, y1, x0, x1 = core[0], core[1], core[2], core[3], core[4], core[5]
    n = x1 - x0
    n_y = y1 - y0
    has_mark = mark.shape[2] > 0
    for z in range(z0, z1):
        _reset(ip)
        _reset(iq)
        for y in range(y0, y1):
            if mode != 2:
                _band_row(pre, z, y, x0, n, kz, ky, geo, consts, bp, ip, dp)
            if mode != 1:
                _band_row(post, z, y, x0, n, kz, ky, geo, consts, bq, iq, dq)
            mr = mark[z - z0, y - y0] if has_mark else mark[0, 0]
            base = ((z - z0) * n_y + (y - y0)) * n
            e_row = e_out[z - z0, y - y0]
            ia, ib = inv[0, z - z0], inv[1, z - z0]
            prev = e_out[z - z0, y - y0 - 1] if y > y0 else e_row
            _e_row(dp, dq, n, ia, ib, mode, e_row, mr, has_mark, levels, peaks, prev, y > y0, cand,
                   counts, base)  # fmt: skip


def evidence(
    pre: np.ndarray,
    post: np.ndarray,
    core: Core,
    filters: Filters,
    inv: np.ndarray,
    e_out: np.ndarray,
    mark: np.ndarray,
    levels: tuple[float, float, float],
    cand: np.ndarray,
    mode: int = 0,
    peaks: int = 0,
) -> np.ndarray:
    """Pass 2 over the core (array coordinates); returns ``counts`` (see ``_evidence``).

    ``inv``: float64 ``[2, sections of the core]`` reciprocal thresholds; ``levels``:
    (assignment level, candidate level, seed level), compared in float32; ``peaks``: leave
    out candidates below a neighbour along x (bit 1) or in the rows above and below (bit 2),
    where the seed box reaches them.
    """
    n = core[2][1] - core[2][0]
    counts = np.zeros(5, np.int64)
    _evidence(
        pre, post, _core(core), *filters.args(), inv, mode, e_out, mark,
        np.array(levels, np.float32), peaks, cand, counts, *filters.scratch(n),
        *filters.scratch(n),
    )  # fmt: skip
    return counts[:4]


# --------------------------------------------------------------------------- one job


@_jit
def _section_band(
    pre, post, z, lattice, kz, ky, geo, consts, hist, lut, bp, ip, _dp, bq, iq, _dq, d_pre, d_post
):  # type: ignore[no-untyped-def]
    """``D`` of every row of section ``z`` into ``d_pre``/``d_post`` and its lattice samples
    into ``hist[channel]`` (as in ``_count``)."""
    n_y, n = pre.shape[1], pre.shape[2]
    stride = lattice[2]
    _reset(ip)
    _reset(iq)
    for y in range(n_y):
        dp = d_pre[y]
        dq = d_post[y]
        _band_row(pre, z, y, 0, n, kz, ky, geo, consts, bp, ip, dp)
        _band_row(post, z, y, 0, n, kz, ky, geo, consts, bq, iq, dq)
        if y % stride == 0:
            _count(dp, 0, n, stride, hist[0], lut, bp[bp.shape[0] - 1])
            _count(dq, 0, n, stride, hist[1], lut, bq[bq.shape[0] - 1])


@_jit
def _section_evidence(d_pre, d_post, ia, ib, e_z, mark_z, levels, peaks, cand, counts, base):  # type: ignore[no-untyped-def]
    """``E``, the mark and the candidates of one section from its stored ``D`` planes."""
    n = d_pre.shape[1]
    for y in range(d_pre.shape[0]):
        row_base = base + y * n
        prev = e_z[y - 1] if y > 0 else e_z[y]
        _e_row(d_pre[y], d_post[y], n, ia, ib, 0, e_z[y], mark_z[y], True, levels, peaks, prev,
               y > 0, cand, counts, row_base)  # fmt: skip


class SectionPasses:
    """The one-job path, one section at a time (see the module docstring).

    ``band(z, hist)`` computes ``D`` of section ``z`` into two plane buffers and histograms
    its lattice voxels; the caller derives the section's thresholds; ``evidence(z, ...)``
    then writes the section's ``E`` and mark from the stored planes.
    """

    def __init__(self, pre: np.ndarray, post: np.ndarray, stride: int, filters: Filters):
        _, n_y, n_x = pre.shape
        acc = filters.consts.dtype
        self.pre, self.post, self.filters = pre, post, filters
        self.lattice = np.array([0, 0, stride], np.int64)
        self.planes = (np.empty((n_y, n_x), acc), np.empty((n_y, n_x), acc))
        self.scratch = (*filters.scratch(n_x), *filters.scratch(n_x))
        self.subs = np.zeros((2, SUBS, 2 * N_BINS), np.int64)

    def band(self, z: int, hist: np.ndarray) -> None:
        """``D`` of section ``z``; lattice counts added to ``hist`` ([2, 2, N_BINS])."""
        self.subs[:] = 0
        _section_band(
            self.pre, self.post, z, self.lattice, *self.filters.args(), self.subs,
            _bin_lut(), *self.scratch, *self.planes,
        )  # fmt: skip
        hist += self.subs.sum(axis=1).reshape(hist.shape)

    def evidence(
        self,
        z: int,
        inv: tuple[float, float],
        e: np.ndarray,
        mark: np.ndarray,
        levels: np.ndarray,
        cand: np.ndarray,
        counts: np.ndarray,
        peaks: int = 0,
    ) -> None:
        """``E`` and the mark of section ``z`` (the last ``band``) into ``e[z]``,
        ``mark[z]``; candidates are linear indices into ``e``; tallies add to ``counts``
        (as ``evidence``'s); ``levels`` = float32 (assignment, candidate, seed level);
        ``peaks`` as ``evidence``'s."""
        base = z * e.shape[1] * e.shape[2]
        planes = self.planes
        _section_evidence(*planes, inv[0], inv[1], e[z], mark[z], levels, peaks, cand, counts, base)


# --------------------------------------------------------------------------- labels


@_jit
def _assign(mark, labels, seeds, rz, ry, rx, vz, vy, vx, r2):  # type: ignore[no-untyped-def]
    """Give each foreground voxel (``mark``) within the ellipsoid of a seed the number
    ``1 + row`` of the nearest seed (ties: the lower number keeps it)."""
    n_z, n_y, n_x = mark.shape
    for i in range(seeds.shape[0]):
        sz = seeds[i, 0]
        sy = seeds[i, 1]
        sx = seeds[i, 2]
        sid = i + 1
        for z in range(max(sz - rz, 0), min(sz + rz + 1, n_z)):
            dz = ((z - sz) * vz) ** 2
            for y in range(max(sy - ry, 0), min(sy + ry + 1, n_y)):
                dy = dz + ((y - sy) * vy) ** 2
                mrow = mark[z, y]
                lrow = labels[z, y]
                for x in range(max(sx - rx, 0), min(sx + rx + 1, n_x)):
                    d2 = dy + ((x - sx) * vx) ** 2
                    if d2 > r2:
                        continue
                    m = mrow[x]
                    if m == 0:
                        continue
                    if m == 1:
                        lrow[x] = sid
                        mrow[x] = 255
                        continue
                    c = lrow[x] - 1
                    dc = ((z - seeds[c, 0]) * vz) ** 2 + ((y - seeds[c, 1]) * vy) ** 2
                    dc = dc + ((x - seeds[c, 2]) * vx) ** 2
                    if d2 < dc:
                        lrow[x] = sid


def assign(
    mark: np.ndarray,
    labels: np.ndarray,
    seeds: np.ndarray,
    radii: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    radius_nm: float,
) -> None:
    """Assignment in place (see ``_assign``); ``labels`` need not be initialised."""
    _assign(
        mark, labels, np.ascontiguousarray(seeds, dtype=np.int64), radii[0], radii[1], radii[2],
        float(voxel_size[0]), float(voxel_size[1]), float(voxel_size[2]),
        float(radius_nm) ** 2,
    )  # fmt: skip


@_jit
def _finalize(mark, labels):  # type: ignore[no-untyped-def]
    for i in range(mark.shape[0]):
        on = mark[i] == 255
        labels[i] = labels[i] if on else 0
        mark[i] = 255 if on else 0


def finalize(mark: np.ndarray, labels: np.ndarray) -> None:
    """Labels outside the labelled voxels become 0 and ``mark`` becomes the 0/255 mask."""
    _finalize(mark.reshape(-1), labels.reshape(-1))
