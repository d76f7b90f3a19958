"""Section continuity: do neighbouring sections show the same puncta at the same pixels?

PAIRS treats z like the other axes (it smooths across sections and gives a synapse one
seed over several sections), so it expects sections aligned to about a pixel. Real stacks
are not always: at_example's sections and channels are not registered to each other, and
there a synapse spanning several sections is found once per displaced piece or not at all
(docs/detection.md, "Limits (measured)"). This module measures it, so that a run on such
data says so instead of returning a plausible-looking table.

The statistic, per channel and pair of neighbouring sections ``(z, z + 1)``: the
correlation of the in-plane band-pass (PAIRS' smoothing and background box within each
section, no z smoothing, which would correlate neighbours by itself) at the same pixels,
with the pixel noise's share taken out of both variances::

    r = S_ab / sqrt((S_aa - n (g s_z)**2) (S_bb - n (g s_z+1)**2))

``S`` are sums over ``n`` pixels of a sparse lattice (``CONTINUITY_SAMPLES`` per section),
``s`` the sections' pixel noise (``pixel_noise_sigma``, grey levels) and ``g`` the in-plane
band-pass's white-noise gain (:func:`.paired_puncta_reference.white_noise_gain`). Without
the correction a sparse, noisy volume would look misaligned; a pair where either corrected
variance is below the noise's own (too little structure to tell) is not measurable
(``nan``). Aligned synthetic stacks give 0.63-0.99, sections shifted by 2 px (sd)
0.15-0.20, at_example 0.07 / -0.03 (synapsin / PSD-95).

The sums are exact integers (the band-pass values shifted right by :func:`sum_shift` bits
where uint16 data would overflow int64), summed over blocks in the histograms' fourth row
(:class:`~.paired_puncta_thresholds.SectionHistograms`), so a blockwise run reports the
same figures as one job. About 1,000 pixels per section: the band-pass at those pixels is
a small numba kernel (:func:`band_pass_at`; :func:`.paired_puncta_reference.bandpass` is
its reference and runs without numba), ~1 ms per 1024 x 1024 section and channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from synapse_pipelines.science.paired_puncta_reference import bandpass, binomial
from synapse_pipelines.science.paired_puncta_rows import _jit, compiled
from synapse_pipelines.science.voxel_units import FWHM_PER_SIGMA

__all__ = [
    "CONTINUITY_SAMPLES",
    "CONTINUITY_WARNING_FRACTION",
    "band_pass_at",
    "continuity_stride",
    "continuity_sums",
    "continuity_warnings",
    "expected_continuity",
    "pair_continuity",
    "sum_shift",
    "summarise_continuity",
]

#: Lattice pixels per section: the correlation's sampling error is ~0.03.
CONTINUITY_SAMPLES = 1 << 10
#: A channel whose median continuity is below this fraction of what an aligned stack gives
#: (:func:`expected_continuity`) is reported as not lining up: 0.46 at 70 nm sections and
#: puncta of 300 nm. Aligned synthetic stacks measure >= 0.63 (SNR down to 0.25, drift x
#: 3, 50-100 nm sections), sections shifted by 1 px (sd) 0.61-0.76 (PAIRS unaffected), by
#: 2 px 0.15-0.20 (F1 0.91 -> 0.65).
CONTINUITY_WARNING_FRACTION = 0.5
#: |band-pass| is kept below 2**this before products are summed (int64 headroom for
#: products summed over up to 2**14 pixels per section).
_MAX_VALUE_BITS = 24


def continuity_stride(volume_shape: Sequence[int]) -> int:
    """The lattice: global ``y`` and ``x`` multiples of this (~``CONTINUITY_SAMPLES``)."""
    return max(1, math.isqrt(int(volume_shape[1]) * int(volume_shape[2]) // CONTINUITY_SAMPLES))


def sum_shift(orders_yx: tuple[int, int], widths: tuple[int, int], top: int) -> int:
    """Right shift applied to the band-pass before its products are summed: enough that
    ``|D| < 2**24`` for input values up to ``top`` (0 for uint8 at the defaults)."""
    largest = top * (1 << (orders_yx[0] + orders_yx[1])) * widths[0] * widths[1]
    return max(0, largest.bit_length() - _MAX_VALUE_BITS)


@_jit
def _band_pass_at_compiled(
    plane: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    wy: np.ndarray,
    wx: np.ndarray,
    hy: int,
    hx: int,
    n_s: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled; equal to the reference band-pass (tested)
    ny, nx = plane.shape
    oy, ox = (len(wy) - 1) // 2, (len(wx) - 1) // 2
    area = (2 * hy + 1) * (2 * hx + 1)
    for i in range(len(ys)):
        y = ys[i]
        for j in range(len(xs)):
            x = xs[j]
            smooth = 0
            for a in range(len(wy)):
                r = min(max(y + a - oy, 0), ny - 1)
                row = 0
                for b in range(len(wx)):
                    row += wx[b] * np.int64(plane[r, min(max(x + b - ox, 0), nx - 1)])
                smooth += wy[a] * row
            box = 0
            for a in range(-hy, hy + 1):
                r = min(max(y + a, 0), ny - 1)
                for b in range(-hx, hx + 1):
                    box += np.int64(plane[r, min(max(x + b, 0), nx - 1)])
            out[i, j] = smooth * area - n_s * box


def band_pass_at(
    plane: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    orders_yx: tuple[int, int],
    widths: tuple[int, int],
) -> np.ndarray:
    """int64 in-plane band-pass ``S w_y w_x - N_s B`` of ``plane`` at the pixels ``ys x
    xs`` (edge replication at the array border): :func:`.paired_puncta_reference.bandpass`
    with no z smoothing, sampled, computed at those pixels only when numba is installed."""
    if not compiled():  # pragma: no cover - numba is a declared dependency
        return bandpass(plane[None], (0, *orders_yx), widths)[0][np.ix_(ys, xs)]
    out = np.empty((len(ys), len(xs)), np.int64)
    _band_pass_at_compiled(
        plane, ys.astype(np.int64), xs.astype(np.int64), binomial(orders_yx[0]),
        binomial(orders_yx[1]), widths[0] // 2, widths[1] // 2,
        1 << (orders_yx[0] + orders_yx[1]), out,
    )  # fmt: skip
    return out


def continuity_sums(
    volume: np.ndarray,
    core: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    lattice: tuple[int, int, int, int, int],
    orders_yx: tuple[int, int],
    widths: tuple[int, int],
    shift: int,
) -> np.ndarray:
    """int64 ``[sections of the core, 4]``: for each core section ``z`` whose next section
    is inside the volume, ``(S_ab, S_aa, S_bb, n)`` of the in-plane band-passes ``a`` of
    ``z`` and ``b`` of ``z + 1`` (each ``>> shift``) at the core's lattice pixels; zeros
    for the volume's last section.

    ``core``: array coordinates (the array holds the core's in-plane halo and section
    ``z + 1``, or the volume border); ``lattice``: (global z, y, x of the array's first
    voxel, stride, the volume's Z). Any tiling sums to the same figures.
    """
    (z0, z1), (y0, y1), (x0, x1) = core
    gz, gy, gx, stride, n_z = lattice
    ys = np.arange(y0 + (-(gy + y0)) % stride, y1, stride)
    xs = np.arange(x0 + (-(gx + x0)) % stride, x1, stride)
    out = np.zeros((z1 - z0, 4), np.int64)
    last = min(z1, n_z - 1 - gz)  # sections with a next one inside the volume
    if not len(ys) or not len(xs) or last <= z0:
        return out
    planes = {
        z: band_pass_at(volume[z], ys, xs, orders_yx, widths) >> shift for z in range(z0, last + 1)
    }
    for z in range(z0, last):
        a, b = planes[z], planes[z + 1]
        out[z - z0] = ((a * b).sum(), (a * a).sum(), (b * b).sum(), a.size)
    return out


def pair_continuity(
    sums: np.ndarray, sigma_a: float, sigma_b: float, gain: float, shift: int
) -> float:
    """The noise-corrected correlation of one pair of sections from its ``(S_ab, S_aa,
    S_bb, n)``, within [-1, 1]; ``nan`` when there is no pair or too little structure to
    tell (either variance, net of the noise, below the noise's)."""
    s_ab, s_aa, s_bb, n = (float(v) for v in sums)
    if n <= 0:
        return math.nan
    unit = gain / (1 << shift)
    noise_a, noise_b = n * (sigma_a * unit) ** 2, n * (sigma_b * unit) ** 2
    var_a, var_b = s_aa - noise_a, s_bb - noise_b
    if var_a <= 0 or var_b <= 0 or var_a < noise_a or var_b < noise_b:
        return math.nan
    # a noise estimate a little high (shot noise, structure at the pixel scale) can push
    # the ratio past 1: it is still a correlation
    return min(max(s_ab / math.sqrt(var_a * var_b), -1.0), 1.0)


def summarise_continuity(per_section: Mapping[str, Sequence[float]]) -> dict[str, float | None]:
    """Median over the measurable pairs of sections, per channel (None: none measurable,
    e.g. one plane or pure noise)."""
    out: dict[str, float | None] = {}
    for channel, values in per_section.items():
        v = np.asarray([x for x in values if x is not None], np.float64)
        v = v[np.isfinite(v)]
        out[channel] = round(float(np.median(v)), 3) if len(v) else None
    return out


def expected_continuity(section_nm: float, punctum_fwhm_nm: float) -> float:
    """The continuity of aligned sections ``section_nm`` apart through a Gaussian punctum
    of ``punctum_fwhm_nm``: its autocorrelation at that distance, ``exp(-d**2 / (4
    s**2))`` (0.93 at 70 nm and 300 nm: thicker sections see less of the same punctum)."""
    s = punctum_fwhm_nm / FWHM_PER_SIGMA
    return math.exp(-(section_nm**2) / (4.0 * s**2))


def continuity_warnings(
    summary: Mapping[str, float | None], section_nm: float, punctum_fwhm_nm: float
) -> list[str]:
    """Plain-words warnings for channels whose sections do not line up: median continuity
    below ``CONTINUITY_WARNING_FRACTION`` of :func:`expected_continuity`."""
    expected = expected_continuity(section_nm, punctum_fwhm_nm)
    level = CONTINUITY_WARNING_FRACTION * expected
    low = {c: r for c, r in summary.items() if r is not None and r < level}
    if not low:
        return []
    figures = " and ".join(f"{r:.2f} in the {c} channel" for c, r in low.items())
    return [
        f"the sections do not line up: neighbouring sections correlate {figures}, below "
        f"{level:.2f}, half of what puncta of {punctum_fwhm_nm:g} nm give in aligned "
        f"{section_nm:g} nm sections ({expected:.2f}); a synapse spanning several sections "
        "is then split or missed: register the sections (and the channels) before "
        "detecting"
    ]
