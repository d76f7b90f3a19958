"""PAIRS' parameters and geometry: everything derived from the volume shape, the voxel
size and the parameters of :mod:`~synapse_pipelines.science.paired_puncta`.

Owns :data:`PARAMETERS` (with their defaults and checks), :class:`PairsGeometry` (binomial
orders, background box, seed and assignment radii, the Otsu fraction ``k``, the histogram
stride, the size filter in voxels, the halo each blockwise pass reads) and the functions
:func:`geometry` and :func:`halo`. Sizes are physical lengths turned into voxels; see the
method's description in :mod:`~synapse_pipelines.science.paired_puncta`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.pipelines import ParameterSpec
from synapse_pipelines.science import paired_puncta_kernels as kernels
from synapse_pipelines.science.paired_puncta_reference import white_noise_gain
from synapse_pipelines.science.paired_puncta_seed_kernels import WeakSeeds
from synapse_pipelines.science.section_continuity import continuity_stride, sum_shift
from synapse_pipelines.science.voxel_units import (
    ASSUMED_VOXEL_NM,
    FWHM_PER_SIGMA,
    check_voxel_size,
)

__all__ = [
    "DEFAULTS",
    "DEFAULT_VOXEL_SIZE",
    "PARAMETERS",
    "PairsGeometry",
    "geometry",
    "halo",
]

#: Voxel size assumed when none is given: array tomography, 70 nm sections, 100 nm pixels.
DEFAULT_VOXEL_SIZE = ASSUMED_VOXEL_NM
#: Lattice samples per section the histogram stride keeps at least. Counting them is a
#: scattered increment per sample: at 2**18 it was half the band-pass time on 1024 x 1024
#: sections; 2**16 (stride 4 there) moves the thresholds by a median 0.3-1.7 % (at most 4 %,
#: about one histogram bin) on at_example and the realistic default volume.
HIST_SAMPLES = 1 << 16
#: Neighbouring-pixel differences per section the pixel-noise estimate keeps at least (a
#: median of 4096 samples is within ~2 %): a coarser lattice of its own, so that counting
#: them costs ~3 % of a detection at 1024 x 1024.
NOISE_SAMPLES = 1 << 12
#: |D| must stay below 2**53: exact as float64 (the evidence) and in int64.
_MAX_D_BITS = 53

PARAMETERS: Mapping[str, ParameterSpec] = {
    "smoothing_sigma_nm": ParameterSpec(
        float, 60.0, "sigma of the integer binomial smoothing, nm", 0.0, 2000.0
    ),
    "background_radius_nm": ParameterSpec(
        float, 500.0, "half-width of the in-plane local-background box, nm", 1.0, 20000.0
    ),
    "pair_offset_nm": ParameterSpec(
        float,
        250.0,
        "largest expected distance between a synapse's pre and post puncta, nm",
        0.0,
        5000.0,
    ),
    "punctum_fwhm_nm": ParameterSpec(
        float, 300.0, "full width at half maximum of a punctum, nm", 1.0, 5000.0
    ),
    "noise_floor_sigma": ParameterSpec(
        float, 2.5, "no threshold below this many noise standard deviations", 0.0, 100.0
    ),
    "noise_guard_sigma": ParameterSpec(
        float,
        4.0,
        "a seed whose band-pass, in either channel, is below this many pixel-noise standard "
        "deviations (carried through the band-pass) needs the weak seeds' support (0: off)",
        0.0,
        100.0,
    ),
    "seed_radius_nm": ParameterSpec(
        float, 150.0, "a seed is the maximum of the evidence within this radius, nm", 0.0, 5000.0
    ),
    "assignment_radius_nm": ParameterSpec(
        float,
        250.0,
        "voxels within this distance of a seed may join its synapse, nm",
        0.0,
        5000.0,
    ),
    "assignment_level": ParameterSpec(
        float, 0.5, "evidence a voxel needs to join a synapse (<= seed_level)", 0.01, 100.0
    ),
    "seed_level": ParameterSpec(
        float, 1.0, "evidence a seed needs (1: both channels at their thresholds)", 0.01, 100.0
    ),
    "weak_seed_level": ParameterSpec(
        float,
        0.5,
        "evidence a seed below seed_level needs when it has weak_seed_support_um3 of "
        "foreground around it (at or above seed_level: no weak seeds)",
        0.01,
        100.0,
    ),
    "weak_seed_support_um3": ParameterSpec(
        float,
        0.0084,
        "foreground (evidence >= assignment_level) a weak seed needs within "
        "assignment_radius_nm, cubic micrometres (12 voxels of 70 x 100 x 100 nm; on one "
        "plane that count over the z smoothing's width in sections: 8 pixels)",
        0.0,
        1000.0,
    ),
    "min_volume_um3": ParameterSpec(
        float, 0.0, "drop synapses smaller than this, cubic micrometres (0: keep all)", 0.0, 1000.0
    ),
}
DEFAULTS: dict[str, float] = {name: float(spec.default) for name, spec in PARAMETERS.items()}

# --------------------------------------------------------------------------- validation


def _check_params(params: Mapping[str, Any]) -> dict[str, float]:
    """Parameters with defaults filled in; DetectionError naming the first bad one."""
    resolved = dict(DEFAULTS)
    for name, value in params.items():
        if name not in PARAMETERS:
            raise DetectionError(
                f"unknown parameter {name!r}",
                field=name,
                hint=f"use one of: {', '.join(sorted(PARAMETERS))}",
            )
        checked, message = PARAMETERS[name].check(name, value)
        if message is not None:
            spec = PARAMETERS[name]
            raise DetectionError(
                message, field=name, hint=f"{spec.description}; default {spec.default}"
            )
        resolved[name] = float(checked)  # type: ignore[arg-type]
    if resolved["assignment_level"] > resolved["seed_level"]:
        raise DetectionError(
            f"assignment_level {resolved['assignment_level']} is above seed_level "
            f"{resolved['seed_level']}, so a seed could fall outside its own synapse",
            field="assignment_level",
            hint="use an assignment_level no larger than seed_level (default 0.5 and 1.0)",
        )
    given_weak = "weak_seed_level" in params
    if given_weak and resolved["assignment_level"] > resolved["weak_seed_level"]:
        raise DetectionError(
            f"weak_seed_level {resolved['weak_seed_level']} is below assignment_level "
            f"{resolved['assignment_level']}, so a weak seed could fall outside its own synapse",
            field="weak_seed_level",
            hint="use a weak_seed_level at least assignment_level (default 0.5 and 0.5), or "
            "equal to seed_level for no weak seeds",
        )
    return resolved


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class PairsGeometry:
    """Everything derived from the volume shape, the voxel size and the parameters."""

    volume_shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    params: dict[str, float]
    orders: tuple[int, int, int]  # binomial order per axis (z, y, x)
    widths: tuple[int, int]  # in-plane background box (w_y, w_x)
    seed_radii: tuple[int, int, int]
    assignment_radii: tuple[int, int, int]
    smoothing_nm: tuple[float, float, float]  # sigma actually applied per axis
    k: float  # Otsu fraction from the pair geometry
    hist_stride: int
    min_voxels: int  # size filter in voxels (<= 1: keep every region)
    support_voxels: int  # foreground a weak seed needs around it, voxels
    noise_stride: int  # lattice of the pixel-noise differences (y, x multiples of it)

    @property
    def weak_level(self) -> float:
        """The level of the seed candidates: ``weak_seed_level`` within
        [``assignment_level``, ``seed_level``] (the default follows a raised
        ``assignment_level``; an explicit one below it is refused by the checks)."""
        p = self.params
        return min(max(p["weak_seed_level"], p["assignment_level"]), p["seed_level"])

    @property
    def weak_seeds(self) -> WeakSeeds:
        """The weak-seed rule (see :class:`.paired_puncta_seed_kernels.WeakSeeds`)."""
        return WeakSeeds(
            self.params["seed_level"],
            self.params["assignment_level"],
            self.support_voxels,
            self.assignment_radii,
            self.voxel_size,
            self.params["assignment_radius_nm"],
        )

    @property
    def log_split(self) -> bool:
        """One plane: each split may also come from ``log D`` (``section_stats``); no z
        smoothing carries a neighbouring section's background into its noise floor."""
        return self.volume_shape[0] == 1

    @property
    def candidate_peaks(self) -> int:
        """Which neighbours the evidence pass may rule candidates out by (bit 1: along x,
        bit 2: the rows above and below): those inside the seed box."""
        return (self.seed_radii[2] > 0) | (self.seed_radii[1] > 0) << 1

    @property
    def seed_context(self) -> tuple[int, int, int]:
        """``E`` a seed test reads around a voxel: its box, and a weak seed's ellipsoid."""
        if self.weak_level >= self.params["seed_level"]:
            return self.seed_radii
        pairs = zip(self.seed_radii, self.assignment_radii, strict=True)
        return tuple(max(a, b) for a, b in pairs)  # type: ignore[return-value]

    @property
    def n_s(self) -> int:
        return 1 << sum(self.orders)

    @property
    def white_noise_gain(self) -> float:
        """Standard deviation of ``D`` per grey level of white pixel noise (the root sum
        of squares of the band-pass kernel, away from the border)."""
        return white_noise_gain(self.orders, self.widths)

    @property
    def continuity_gain(self) -> float:
        """The in-plane band-pass's white-noise gain (:mod:`.section_continuity`)."""
        return white_noise_gain((0, *self.orders[1:]), self.widths)  # type: ignore[arg-type]

    @property
    def continuity_shift(self) -> int:
        """Bits the in-plane band-pass is shifted right by before its products are summed
        (the worst case, uint16 input, for every dtype: one rule for every run)."""
        return sum_shift(self.orders[1:], self.widths, 0xFFFF)  # type: ignore[arg-type]

    @property
    def continuity_stride(self) -> int:
        return continuity_stride(self.volume_shape)

    @property
    def scale(self) -> int:
        """``D`` units per grey level: ``N_s w_y w_x``."""
        return self.n_s * self.widths[0] * self.widths[1]

    @property
    def filter_halo(self) -> tuple[int, int, int]:
        """Context ``D`` needs: smoothing in z; the larger of smoothing and box in y, x."""
        nz, ny, nx = self.orders
        return (nz // 2, max(ny // 2, self.widths[0] // 2), max(nx // 2, self.widths[1] // 2))

    @property
    def halo(self) -> dict[str, tuple[int, int, int]]:
        f = self.filter_halo
        seeds = tuple(a + b for a, b in zip(f, self.seed_context, strict=True))
        # pass 1 also compares each section with the next (section continuity)
        hist = (max(f[0], 1 if self.volume_shape[0] > 1 else 0), f[1], f[2])
        return {"histograms": hist, "seeds": seeds, "labels": f}  # type: ignore[dict-item]

    def filters(self, *dtypes: np.dtype) -> kernels.Filters:
        """The kernels' filters for inputs of these dtypes (their integer widths follow the
        largest possible value)."""
        top = max(int(np.iinfo(d).max) for d in dtypes)
        return kernels.Filters.make(self.orders, self.widths, top)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.params,
            "voxel_size_nm": list(self.voxel_size),
            "smoothing_orders": list(self.orders),
            "smoothing_applied_nm": [round(s, 3) for s in self.smoothing_nm],
            "background_width_voxels": list(self.widths),
            "seed_radius_voxels": list(self.seed_radii),
            "assignment_radius_voxels": list(self.assignment_radii),
            "halo_voxels": {name: list(h) for name, h in self.halo.items()},
            "otsu_fraction_k": self.k,
            "histogram_stride": self.hist_stride,
            "pixel_noise_stride": self.noise_stride,
            "section_continuity_stride": self.continuity_stride,
            "band_pass_units_per_grey_level": self.scale,
            "min_voxels": self.min_voxels,
            "weak_seed_support_voxels": self.support_voxels,
            "band_pass_white_noise_gain": self.white_noise_gain,
            "otsu_split_scale": "linear, or log above the noise floor if lower"
            if self.log_split
            else "linear",
        }


def _radius(length_nm: float, voxel_nm: float, axis_len: int) -> int:
    return math.floor(length_nm / voxel_nm + 0.5) if axis_len > 1 else 0


def geometry(
    volume_shape: Sequence[int],
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    **params: float,
) -> PairsGeometry:
    """Validated geometry of a detection on a volume of ``volume_shape`` (z, y, x)."""
    p = _check_params(params)
    vs = check_voxel_size(voxel_size)
    if len(volume_shape) != 3 or any(int(n) < 1 for n in volume_shape):
        raise DetectionError(
            f"volume shape {tuple(volume_shape)} is not three positive sizes",
            field="volume",
            hint="pass the (z, y, x) shape of a non-empty volume",
        )
    shape = (int(volume_shape[0]), int(volume_shape[1]), int(volume_shape[2]))
    sigma = p["smoothing_sigma_nm"]
    stack_orders = tuple(2 * round(2.0 * (sigma / v) ** 2) for v in vs)  # every axis > 1 voxel
    orders = tuple(o if n > 1 else 0 for o, n in zip(stack_orders, shape, strict=True))
    widths = tuple(
        2 * _radius(p["background_radius_nm"], v, n) + 1
        for v, n in zip(vs[1:], shape[1:], strict=True)
    )
    seed_radii = tuple(_radius(p["seed_radius_nm"], v, n) for v, n in zip(vs, shape, strict=True))
    assignment_radii = tuple(
        math.floor(p["assignment_radius_nm"] / v) if n > 1 else 0
        for v, n in zip(vs, shape, strict=True)
    )
    # a binomial kernel of order n has variance n / 4 voxels**2
    smoothing_nm = tuple(math.sqrt(n / 4.0) * v for n, v in zip(orders, vs, strict=True))
    in_plane = [s**2 for s, n in zip(smoothing_nm[1:], shape[1:], strict=True) if n > 1]
    s_s2 = sum(in_plane) / len(in_plane) if in_plane else 0.0  # the pair lies in the plane
    s_p = p["punctum_fwhm_nm"] / FWHM_PER_SIGMA
    k = math.exp(-((p["pair_offset_nm"] / 2.0) ** 2) / (2.0 * (s_p**2 + s_s2)))
    bits = sum(orders) + math.log2(widths[0] * widths[1]) + 16  # uint16 input, the worst case
    if bits >= _MAX_D_BITS:
        raise DetectionError(
            f"smoothing_sigma_nm {sigma:g} and background_radius_nm "
            f"{p['background_radius_nm']:g} at voxels of {vs} nm need binomial orders "
            f"{orders} and a {widths[0]}x{widths[1]} box: the exact integer band-pass would "
            "overflow",
            field="smoothing_sigma_nm",
            hint="use coarser voxels (downsample) or smaller lengths",
        )
    voxel_um3 = vs[0] * vs[1] * vs[2] / 1e9
    min_voxels = math.ceil(p["min_volume_um3"] / voxel_um3 - 1e-9)
    support_voxels = _support_voxels(p["weak_seed_support_um3"] / voxel_um3, stack_orders, shape)
    stride = max(1, math.isqrt(shape[1] * shape[2] // HIST_SAMPLES))
    noise_stride = max(1, math.isqrt(shape[1] * shape[2] // NOISE_SAMPLES))
    return PairsGeometry(
        shape, vs, p, orders, widths, seed_radii, assignment_radii, smoothing_nm, k, stride,
        min_voxels, support_voxels, noise_stride,
    )  # type: ignore[arg-type]  # fmt: skip


def _support_voxels(
    stack_count: float, stack_orders: tuple[int, ...], shape: tuple[int, int, int]
) -> int:
    """The weak seeds' support in voxels: ``stack_count`` (the support volume over the voxel
    volume) in a stack. Along an axis one voxel long (one plane) the count is divided by the
    full width at half maximum, in voxels, of the smoothing that axis would have had in a
    stack (``stack_orders``; 1.67 sections at 70 nm):
    smoothing makes the evidence of neighbouring sections alike, so a patch of noise that
    covers 12 voxels of a stack covers about 12 / 1.67 pixels of one of its planes. With
    that count, pure noise makes weak seeds on a plane about as rarely per voxel as in a
    stack (measured: 20 against 45 per million voxels at 70 x 100 x 100 nm); the stack's 12
    asked one plane for 12 of the 21 pixels within 250 nm, and weak seeds all but vanished."""
    count = stack_count
    for order, n in zip(stack_orders, shape, strict=True):
        if n == 1:  # a binomial kernel of order m has variance m / 4
            count /= max(1.0, FWHM_PER_SIGMA * math.sqrt(order / 4.0))
    return math.ceil(count - 1e-9)


def halo(
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    volume_shape: Sequence[int] | None = None,
    **params: float,
) -> dict[str, tuple[int, int, int]]:
    """Voxels of context each blockwise pass reads around a block (per axis, each side).

    Without ``volume_shape`` every axis is assumed longer than one voxel (a bound that holds
    for any volume); with it, axes of length 1 need none.
    """
    return geometry(volume_shape or (2, 2, 2), voxel_size, **params).halo
