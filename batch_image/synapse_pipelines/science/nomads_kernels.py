"""Compiled (numba, one core) kernels of the NOMADS detector.

The kernels do exactly the integer arithmetic of the numpy references in
:mod:`~synapse_pipelines.science.nomads_primitives` and
:mod:`~synapse_pipelines.science.connected_components`; tests compare the two. Without numba
every ``*_kernel`` is ``None`` and the numpy path runs (about 10x slower). Reads outside the
array are clamped to the nearest voxel, which *is* the edge-replication border rule, so
``detect()`` needs no padded copy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["HAVE_NUMBA"]

try:  # pragma: no branch
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a declared dependency
    _numba = None

#: Whether the compiled kernels exist; without numba callers use the numpy references.
HAVE_NUMBA = _numba is not None


def _jit(func: Any) -> Any:
    if not HAVE_NUMBA:  # pragma: no cover
        return None
    try:
        return _numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:  # pragma: no cover - read-only install without a cache dir
        return _numba.njit(nogil=True)(func)


def _k_value_counts(volume, counts):  # type: ignore[no-untyped-def]
    flat = volume.reshape(-1)
    for i in range(flat.size):
        counts[flat[i]] += 1


def _k_plane_sums(x, y, p, y0, y1, x0, x1, w, rowx, rowy, rowxy, hx, hy, hxy, bx, by, bxy):  # type: ignore[no-untyped-def]
    """2-D window sums of x, y, x*y on plane ``p`` for rows y0:y1, cols x0:x1 (clamped).

    Inner loops run over contiguous columns so that LLVM vectorises them.
    """
    h = w // 2
    n_y, n_x = x.shape[1], x.shape[2]
    ny = y1 - y0
    nx = x1 - x0
    nxe = nx + 2 * h
    k_lo = max(0, h - x0)  # extended columns [k_lo, k_hi) need no clamping
    k_hi = min(nxe, n_x - x0 + h)
    for i in range(ny + 2 * h):
        r = min(max(y0 - h + i, 0), n_y - 1)
        xr = x[p, r]
        yr = y[p, r]
        for k in range(k_lo):
            rowx[k] = xr[0]
            rowy[k] = yr[0]
        for k in range(k_lo, k_hi):
            rowx[k] = xr[x0 - h + k]
            rowy[k] = yr[x0 - h + k]
        for k in range(k_hi, nxe):
            rowx[k] = xr[n_x - 1]
            rowy[k] = yr[n_x - 1]
        for k in range(nxe):
            rowxy[k] = rowx[k] * rowy[k]
        hxi = hx[i]
        hyi = hy[i]
        hxyi = hxy[i]
        for j in range(nx):
            hxi[j] = rowx[j]
            hyi[j] = rowy[j]
            hxyi[j] = rowxy[j]
        for d in range(1, w):
            for j in range(nx):
                hxi[j] += rowx[j + d]
                hyi[j] += rowy[j + d]
                hxyi[j] += rowxy[j + d]
    for i in range(ny):
        bxi = bx[i]
        byi = by[i]
        bxyi = bxy[i]
        src_x = hx[i]
        src_y = hy[i]
        src_xy = hxy[i]
        for j in range(nx):
            bxi[j] = src_x[j]
            byi[j] = src_y[j]
            bxyi[j] = src_xy[j]
        for d in range(1, w):
            src_x = hx[i + d]
            src_y = hy[i + d]
            src_xy = hxy[i + d]
            for j in range(nx):
                bxi[j] += src_x[j]
                byi[j] += src_y[j]
                bxyi[j] += src_xy[j]


def _k_bin(v, lut, sub_bits):  # type: ignore[no-untyped-def]
    """Bin of a positive int64 (same as bin_index)."""
    if v < lut.size:
        return lut[v]
    _, ex = math.frexp(float(v))
    e = ex - 1
    if v >= (1 << 53) and v < (1 << e):
        e -= 1
    sub = 1 << sub_bits
    return (e - sub_bits + 1) * sub + (v >> (e - sub_bits)) - sub


def _k_count_row(row, small, hist_pos, hist_neg, lut, sub_bits):  # type: ignore[no-untyped-def]
    """Histogram one row: |v| < half goes to a direct count table (folded later)."""
    half = small.size // 2
    for j in range(row.size):
        v = np.int64(row[j])
        if -half < v < half:
            small[v + half] += 1
        elif v > 0:
            hist_pos[bin_kernel(v, lut, sub_bits)] += 1
        else:
            hist_neg[bin_kernel(-v, lut, sub_bits)] += 1


def _k_fold_small(small, hist_pos, hist_neg, lut):  # type: ignore[no-untyped-def]
    half = small.size // 2
    for v in range(1, half):
        hist_pos[lut[v]] += small[half + v]
        hist_neg[lut[v]] += small[half - v]
        small[half + v] = 0
        small[half - v] = 0
    small[half] = 0


def _k_numerator(  # type: ignore[no-untyped-def]
    x,
    y,
    z0,
    z1,
    y0,
    y1,
    x0,
    x1,
    wz,
    w,
    out,
    hist_pos,
    hist_neg,
    lut,
    sub_bits,
    rowx,
    rowy,
    rowxy,
    hx,
    hy,
    hxy,
    ring_x,
    ring_y,
    ring_xy,
    tx,
    ty,
    txy,
    small,
    do_hist,
):
    """Numerator n*S_xy - S_x*S_y for the box [z0:z1, y0:y1, x0:x1] of x/y (clamped reads)
    into ``out`` (shape of the box); optionally accumulate the histograms. The window is
    ``wz`` planes of ``w x w`` pixels (``wz = 1``: per-plane, 2-D detection).

    Works in strips of ``ring_x.shape[1]`` rows so that the per-plane window sums of the
    ``wz`` planes in flight stay in the L2 cache; integer sums make the result independent
    of the strip height.
    """
    hz = wz // 2
    n = wz * w * w
    n_z = x.shape[0]
    nx = x1 - x0
    strip = ring_x.shape[1]
    slot_plane = np.empty(wz, dtype=np.int64)
    slots = np.empty(wz, dtype=np.int64)
    for sy0 in range(y0, y1, strip):
        sy1 = min(sy0 + strip, y1)
        slot_plane[:] = -1
        for z in range(z0, z1):
            for d in range(wz):
                p = min(max(z - hz + d, 0), n_z - 1)
                s = p % wz
                slots[d] = s
                if slot_plane[s] != p:
                    plane_sums_kernel(
                        x,
                        y,
                        p,
                        sy0,
                        sy1,
                        x0,
                        x1,
                        w,
                        rowx,
                        rowy,
                        rowxy,
                        hx,
                        hy,
                        hxy,
                        ring_x[s],
                        ring_y[s],
                        ring_xy[s],
                    )
                    slot_plane[s] = p
            oz = out[z - z0]
            for i in range(sy1 - sy0):
                s = slots[0]
                src_x = ring_x[s, i]
                src_y = ring_y[s, i]
                src_xy = ring_xy[s, i]
                for j in range(nx):
                    tx[j] = src_x[j]
                    ty[j] = src_y[j]
                    txy[j] = src_xy[j]
                for d in range(1, wz):
                    s = slots[d]
                    src_x = ring_x[s, i]
                    src_y = ring_y[s, i]
                    src_xy = ring_xy[s, i]
                    for j in range(nx):
                        tx[j] += src_x[j]
                        ty[j] += src_y[j]
                        txy[j] += src_xy[j]
                ozi = oz[sy0 - y0 + i]
                for j in range(nx):
                    ozi[j] = n * txy[j] - tx[j] * ty[j]
                if do_hist:
                    count_row_kernel(ozi, small, hist_pos, hist_neg, lut, sub_bits)
    if do_hist:
        fold_small_kernel(small, hist_pos, hist_neg, lut)


def _k_histogram(values, hist_pos, hist_neg, lut, sub_bits, small):  # type: ignore[no-untyped-def]
    flat = values.reshape(-1)
    count_row_kernel(flat, small, hist_pos, hist_neg, lut, sub_bits)
    fold_small_kernel(small, hist_pos, hist_neg, lut)


def _k_select(values, threshold, out):  # type: ignore[no-untyped-def]
    """Raster-order linear indices of voxels >= threshold; returns how many."""
    flat = values.reshape(-1)
    k = 0
    for i in range(flat.size):
        if flat[i] >= threshold:
            out[k] = i
            k += 1
    return k


def _k_find(parent, a):  # type: ignore[no-untyped-def]
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def _k_components(shape_z, shape_y, shape_x, fg, labels, sizes_out):  # type: ignore[no-untyped-def]
    """26-connected components of the voxels ``fg`` (sorted linear indices).

    Writes provisional ids into ``labels`` (flat), unions backward neighbours, and leaves
    in ``labels[fg]`` the component number 1..m (raster order of first voxel); returns m
    and fills ``sizes_out[1..m]``.
    """
    nfg = fg.size
    parent = np.arange(nfg)
    plane = shape_y * shape_x
    for k in range(nfg):
        labels[fg[k]] = k + 1
    for k in range(nfg):
        idx = fg[k]
        z = idx // plane
        rem = idx - z * plane
        yy = rem // shape_x
        xx = rem - yy * shape_x
        for dz in range(-1, 1):
            zz = z + dz
            if zz < 0:
                continue
            for dy in range(-1, 2):
                if dz == 0 and dy > 0:
                    break
                y2 = yy + dy
                if y2 < 0 or y2 >= shape_y:
                    continue
                for dx in range(-1, 2):
                    if dz == 0 and dy == 0 and dx >= 0:
                        break
                    x2 = xx + dx
                    if x2 < 0 or x2 >= shape_x:
                        continue
                    other = labels[zz * plane + y2 * shape_x + x2]
                    if other != 0:
                        ra = find_kernel(parent, k)
                        rb = find_kernel(parent, other - 1)
                        if ra < rb:
                            parent[rb] = ra
                        elif rb < ra:
                            parent[ra] = rb
    # roots are the smallest index of their component: its first voxel in raster order
    comp = np.zeros(nfg, dtype=np.int64)
    m = 0
    for k in range(nfg):
        r = find_kernel(parent, k)
        if r == k:
            m += 1
            comp[k] = m
        c = comp[r]
        labels[fg[k]] = c
        sizes_out[c] += 1
    return m


def _k_relabel(fg, labels, lut, mask):  # type: ignore[no-untyped-def]
    for k in range(fg.size):
        i = fg[k]
        v = lut[labels[i]]
        labels[i] = v
        if v != 0:
            mask[i] = 255


value_counts_kernel = _jit(_k_value_counts)
plane_sums_kernel = _jit(_k_plane_sums)
bin_kernel = _jit(_k_bin)
count_row_kernel = _jit(_k_count_row)
fold_small_kernel = _jit(_k_fold_small)
numerator_kernel = _jit(_k_numerator)
histogram_kernel = _jit(_k_histogram)
select_kernel = _jit(_k_select)
find_kernel = _jit(_k_find)
components_kernel = _jit(_k_components)
relabel_kernel = _jit(_k_relabel)
