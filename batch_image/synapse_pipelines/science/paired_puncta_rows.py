"""PAIRS' compiled row machinery: the band-pass ``D`` one image row at a time, and its
histogram counter; the building blocks of :mod:`.paired_puncta_kernels`.

Owns the compilation switch (:func:`compiled`, ``_jit``), the integer filters
(:class:`Filters`), the row helpers with clamped reads (edge replication without a padded
copy), ``_band_row`` (a row of ``D`` from a ring of smoothed rows and a running box sum,
see :mod:`.paired_puncta_kernels` for how the passes use it) and ``_count`` (the
branch-free histogram of a row through one 24 KiB bin table, ``_bin_lut``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from synapse_pipelines.science.histogram_bins import N_BINS, SUB_BITS, bin_index

try:  # pragma: no branch
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a declared dependency
    _numba = None

__all__ = ["SUBS", "Filters", "compiled"]

#: The histogram bin of |D| < 2**26 by one lookup in a 24 KiB table (fits the L1 cache):
#: tier t (|D| < 2**12, < 2**19, < 2**26) looks up |D| >> 7t at offset 4096 t.
_TIER_BITS = 12
_TIER_SHIFT = 7
_LUT_LIMIT = 1 << 26
_SIGN_OFFSET = 3 << _TIER_BITS
#: Sub-histograms per channel the kernels count into (a power of two; see _count).
SUBS = 4


def compiled() -> bool:
    """Whether the compiled kernels are available (numba is installed)."""
    return _numba is not None


def _jit(func: Any) -> Any:
    """Compile with a persistent cache (falls back to no cache on a read-only install)."""
    if _numba is None:  # pragma: no cover
        return func
    options = {"nogil": True, "boundscheck": False, "error_model": "numpy"}
    try:
        return _numba.njit(cache=True, **options)(func)
    except RuntimeError:  # pragma: no cover - read-only install without a cache dir
        return _numba.njit(**options)(func)


@functools.cache
def _bin_lut() -> np.ndarray:
    """int16 table of ``_count``: entry ``4096 t + i`` is ``bin_index(i << 7t)``, and the
    second half (offset ``_SIGN_OFFSET``) the same plus ``N_BINS``: the counter of ``-D``.

    A bin is set by the leading ``SUB_BITS + 1`` bits of the value, so for
    ``|D| >= 2**(7t + SUB_BITS)`` (true in tier t >= 1) dropping the low ``7t`` bits keeps
    the bin: the table is exact on every tier's range.
    """
    i = np.arange(1 << _TIER_BITS, dtype=np.int64)
    bins = np.concatenate([bin_index(i << (_TIER_SHIFT * t)) for t in range(3)])
    return np.concatenate([bins, bins + N_BINS]).astype(np.int16)


@dataclass(frozen=True)
class Filters:
    """The band-pass's integer filters, in the integer types the kernels use.

    ``kz``, ``ky``: binomial weights across sections and along y; ``geo``: int64 (x order,
    box height, box width); ``consts``: (box area, ``N_s``) in the type of ``D``; ``small``:
    the type of the smoothed and box-summed rows before ``D`` is formed.
    """

    kz: np.ndarray
    ky: np.ndarray
    geo: np.ndarray
    consts: np.ndarray
    small: np.dtype

    @classmethod
    def make(cls, orders: tuple[int, int, int], widths: tuple[int, int], top: int) -> Filters:
        """Filters for inputs up to ``top``: ``D`` in int32 whenever every ``|D|`` fits,
        else int64; the rows in int16 when both sums fit (uint8 at the default geometry),
        which doubles the values per vector instruction."""
        n_s = 1 << sum(orders)
        area = widths[0] * widths[1]
        acc = np.dtype(np.int32) if n_s * area * top < 2**31 else np.dtype(np.int64)
        small = np.dtype(np.int16) if max(n_s, area) * top < 2**15 else acc

        def binomial(order: int) -> np.ndarray:
            return np.array([math.comb(order, i) for i in range(order + 1)], dtype=acc)

        return cls(
            binomial(orders[0]),
            binomial(orders[1]),
            np.array([orders[2], widths[0], widths[1]], np.int64),
            np.array([area, n_s], acc),
            small,
        )

    def scratch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Buffers of ``_band_row`` for one channel and rows of ``n`` columns: the rows
        (``small``), the row ids, one row of ``D``."""
        nx, wx = int(self.geo[0]), int(self.geo[2])
        width = n + max(wx - 1, nx + 1)
        buf = np.zeros((len(self.ky) + 5, width), self.small)
        return buf, np.zeros(len(self.ky) + 1, np.int64), np.zeros(n, self.consts.dtype)

    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.kz, self.ky, self.geo, self.consts


# --------------------------------------------------------------------------- row helpers


# Indexing ``src[xs + k]`` with an arbitrary offset makes numba check for negative indices
# on every element, which stops vectorisation (10x slower): the interior loops below index
# slices from 0 instead.


@_jit
def _span(size, xs, n):  # type: ignore[no-untyped-def]
    """Columns ``k < n`` of ``xs + k``: ``[0, lo)`` left of the array, ``[lo, hi)`` inside."""
    lo = min(max(-xs, 0), n)
    return lo, max(min(size - xs, n), lo)


@_jit
def _load(src, xs, out, n):  # type: ignore[no-untyped-def]
    """``out[k] = src[clamp(xs + k)]`` for ``k < n`` (edge replication along x)."""
    size = src.shape[0]
    lo, hi = _span(size, xs, n)
    for k in range(lo):
        out[k] = src[0]
    s = src[xs + lo : xs + hi]
    o = out[lo:hi]
    for k in range(hi - lo):
        o[k] = s[k]
    for k in range(hi, n):
        out[k] = src[size - 1]


@_jit
def _add(src, xs, weight, out, n):  # type: ignore[no-untyped-def]
    """``out[k] += weight * src[clamp(xs + k)]`` for ``k < n``."""
    size = src.shape[0]
    lo, hi = _span(size, xs, n)
    for k in range(lo):
        out[k] += weight * src[0]
    s = src[xs + lo : xs + hi]
    o = out[lo:hi]
    for k in range(hi - lo):
        o[k] += weight * s[k]
    for k in range(hi, n):
        out[k] += weight * src[size - 1]


@_jit
def _load121(a, b, c, xs, out, n):  # type: ignore[no-untyped-def]
    """``out[k] = a + 2 b + c`` at ``clamp(xs + k)``: the [1, 2, 1] sum over sections."""
    size = a.shape[0]
    lo, hi = _span(size, xs, n)
    for k in range(lo):
        out[k] = a[0] + 2 * b[0] + c[0]
    sa = a[xs + lo : xs + hi]
    sb = b[xs + lo : xs + hi]
    sc = c[xs + lo : xs + hi]
    o = out[lo:hi]
    for k in range(hi - lo):
        o[k] = sa[k] + 2 * sb[k] + sc[k]
    for k in range(hi, n):
        out[k] = a[size - 1] + 2 * b[size - 1] + c[size - 1]


@_jit
def _add_sub(plus, minus, xs, out, n):  # type: ignore[no-untyped-def]
    """``out[k] += plus[clamp(xs + k)] - minus[clamp(xs + k)]`` (a running box sum step)."""
    size = plus.shape[0]
    lo, hi = _span(size, xs, n)
    for k in range(lo):
        out[k] += plus[0] - minus[0]
    sp = plus[xs + lo : xs + hi]
    sm = minus[xs + lo : xs + hi]
    o = out[lo:hi]
    for k in range(hi - lo):
        o[k] += sp[k] - sm[k]
    for k in range(hi, n):
        out[k] += plus[size - 1] - minus[size - 1]


@_jit
def _smoothed_row(vol, z, r, xs, n, kz, nx, tmp, out):  # type: ignore[no-untyped-def]
    """Row ``r`` of section ``z`` summed over sections with ``kz`` and smoothed along x with
    the binomial kernel of order ``nx``; ``out[:n]`` gets the ``n`` columns starting at
    ``xs + nx // 2`` (clamped reads)."""
    n_sections = vol.shape[0]
    hz = (kz.shape[0] - 1) // 2
    length = n + nx
    if kz.shape[0] == 3:  # [1, 2, 1] across sections, the default geometry: one sweep
        last = n_sections - 1
        _load121(vol[max(z - 1, 0), r], vol[z, r], vol[min(z + 1, last), r], xs, tmp, length)
    else:
        p = min(max(z - hz, 0), n_sections - 1)
        _load(vol[p, r], xs, tmp, length)  # binomial weights start with 1
        for j in range(1, kz.shape[0]):
            p = min(max(z + j - hz, 0), n_sections - 1)
            _add(vol[p, r], xs, kz[j], tmp, length)
    if nx == 0:
        for k in range(n):
            out[k] = tmp[k]
    elif nx == 2:  # the default geometry: one fused [1, 2, 1] sweep
        for k in range(n):
            out[k] = tmp[k] + 2 * tmp[k + 1] + tmp[k + 2]
    else:  # order nx as nx passes of [1, 1]
        for p in range(nx):
            for k in range(length - 1 - p):
                tmp[k] = tmp[k] + tmp[k + 1]
        for k in range(n):
            out[k] = tmp[k]


@_jit
def _box_row(vbox, wx, out, n):  # type: ignore[no-untyped-def]
    """``out[k] = sum(vbox[k : k + wx])`` for ``k < n``."""
    for k in range(n):
        out[k] = vbox[k]
    for t in range(1, wx):
        for k in range(n):
            out[k] += vbox[k + t]


@_jit
def _band_row(vol, z, y, x0, n, kz, ky, geo, consts, buf, ids, d):  # type: ignore[no-untyped-def]
    """``D`` of row ``y`` of section ``z``, columns ``x0 .. x0 + n``, into ``d[:n]``.

    ``geo`` = (x smoothing order, box height, box width); ``consts`` = (box area,
    ``N_s``) in the accumulator type. ``buf`` (see ``Filters.scratch``) holds the ring of
    smoothed rows (rows ``0 .. len(ky) - 1``, keyed by unclamped row number in
    ``ids[1:]``), the vertical box sum of row ``ids[0]``, and scratch rows. Both are valid
    within one section: ``_reset`` before a new section.
    """
    n_rows = vol.shape[1]
    nx, wy, wx = geo[0], geo[1], geo[2]
    area, n_s = consts[0], consts[1]
    ny = ky.shape[0] - 1
    hy = ny // 2
    n_ring = ny + 1
    vbox = buf[n_ring]
    tmp = buf[n_ring + 1]
    srow = buf[n_ring + 2]
    brow = buf[n_ring + 3]
    for j in range(n_ring):
        yy = y - hy + j
        slot = yy % n_ring
        if ids[1 + slot] != yy:
            _smoothed_row(
                vol, z, min(max(yy, 0), n_rows - 1), x0 - nx // 2, n, kz, nx, tmp, buf[slot]
            )
            ids[1 + slot] = yy
    ry = wy // 2
    rx = wx // 2
    nb = n + wx - 1
    last = ids[0]
    plane = vol[z]
    if last < y and y - last <= wy:
        for r in range(last + 1, y + 1):
            plus = plane[min(r + ry, n_rows - 1)]
            minus = plane[max(r - ry - 1, 0)]
            _add_sub(plus, minus, x0 - rx, vbox, nb)
    else:
        _load(plane[min(max(y - ry, 0), n_rows - 1)], x0 - rx, vbox, nb)
        for r in range(y - ry + 1, y + ry + 1):
            _add(plane[min(max(r, 0), n_rows - 1)], x0 - rx, 1, vbox, nb)
    ids[0] = y
    if ny == 2 and wx == 11:
        # the default geometry: the y smoothing and the 11-wide box in one sweep in the
        # rows' own type (int16 for uint8: twice the values per instruction), then D
        a = buf[(y - 1) % 3]
        b = buf[y % 3]
        c = buf[(y + 1) % 3]
        for k in range(n):
            srow[k] = a[k] + 2 * b[k] + c[k]
            brow[k] = (
                vbox[k] + vbox[k + 1] + vbox[k + 2] + vbox[k + 3] + vbox[k + 4] + vbox[k + 5]
                + vbox[k + 6] + vbox[k + 7] + vbox[k + 8] + vbox[k + 9] + vbox[k + 10]
            )  # fmt: skip
        for k in range(n):
            d[k] = srow[k] * area - n_s * brow[k]
        return
    src = buf[(y - hy) % n_ring]
    for k in range(n):
        srow[k] = src[k]
    for j in range(1, n_ring):
        src = buf[(y - hy + j) % n_ring]
        w = ky[j]
        for k in range(n):
            srow[k] += w * src[k]
    _box_row(vbox, wx, brow, n)
    for k in range(n):
        d[k] = srow[k] * area - n_s * brow[k]


@_jit
def _reset(ids):  # type: ignore[no-untyped-def]
    for j in range(ids.shape[0]):
        ids[j] = -(1 << 62)


# --------------------------------------------------------------------------- histograms


@_jit
def _bin_slow(m):  # type: ignore[no-untyped-def]
    """Bin of ``m >= 2**26`` (rare: large uint16 values or coarse geometries)."""
    e = 0
    t = m
    while t > 1:  # floor(log2 m), exact for every int64
        t >>= 1
        e += 1
    sub = 1 << SUB_BITS
    return (e - SUB_BITS + 1) * sub + (m >> (e - SUB_BITS)) - sub


@_jit
def _count(d, first, n, step, hist, lut, idx):  # type: ignore[no-untyped-def]
    """Histogram ``d[first:n:step]`` into ``hist`` ([SUBS, 2 N_BINS]: ``[0, N_BINS)`` counts
    ``D >= 0`` by the bin of ``D``, ``[N_BINS, 2 N_BINS)`` counts ``D < 0`` by the bin of
    ``-D``; sample ``i`` goes to sub-histogram ``i % SUBS``, the caller adds them up).

    Two sweeps: the table index of every value without a branch (vectorised; ``idx`` is a
    scratch row), then the lookups and increments. Branching on the sign or the tier per
    value mispredicted often enough to triple the cost. Neighbouring samples of the smooth
    ``D`` often share a bin: the sub-histograms keep their increments independent.
    """
    for k in range(n):
        v = np.int64(d[k])
        s = v >> 63  # -1 when negative, else 0
        m = (v ^ s) - s
        t = np.int64(m >= (1 << _TIER_BITS)) + np.int64(m >= (1 << (_TIER_BITS + _TIER_SHIFT)))
        j = (t << _TIER_BITS) + (m >> (_TIER_SHIFT * t)) + (s & _SIGN_OFFSET)
        idx[k] = j if m < _LUT_LIMIT else -1
    for i, k in enumerate(range(first, n, step)):
        j = idx[k]
        if j >= 0:
            b = lut[j]
        else:  # |D| >= 2**26: rare
            v = np.int64(d[k])
            b = _bin_slow(-v) + N_BINS if v < 0 else _bin_slow(v)
        hist[i & (SUBS - 1), b] += 1
