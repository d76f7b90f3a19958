"""Boxes in voxel space, their alignment to BOSS cuboids, and "z,y,x" text.

All boxes are half-open ``[start, stop)`` and ordered z, y, x — the order of the arrays
BOSS returns (C-order ZYX). BOSS stores data in cuboids of 16 x 512 x 512 (z, y, x);
requests aligned to cuboid boundaries are the cheapest for it to serve. :func:`parse_zyx`
is the one parser of "z,y,x" triples given as text (CLI options, environment variables).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError

#: BOSS cuboid shape, z, y, x.
CUBOID_SHAPE: tuple[int, int, int] = (16, 512, 512)

AXES = ("z", "y", "x")


@dataclass(frozen=True, order=True)
class Box:
    """A half-open box ``[start, stop)`` per axis, in z, y, x order."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    def __post_init__(self) -> None:
        if len(self.start) != 3 or len(self.stop) != 3:
            raise ValueError("a Box has exactly three axes (z, y, x)")
        object.__setattr__(self, "start", tuple(int(v) for v in self.start))
        object.__setattr__(self, "stop", tuple(int(v) for v in self.stop))
        for axis, a, b in zip(AXES, self.start, self.stop, strict=True):
            if b < a:
                raise ValueError(f"{axis}: stop {b} is before start {a}")

    @classmethod
    def from_ranges(cls, z: tuple[int, int], y: tuple[int, int], x: tuple[int, int]) -> Box:
        return cls((z[0], y[0], x[0]), (z[1], y[1], x[1]))

    @classmethod
    def from_shape(cls, shape: tuple[int, int, int]) -> Box:
        return cls((0, 0, 0), tuple(shape))  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    @property
    def size(self) -> int:
        z, y, x = self.shape
        return z * y * x

    @property
    def ranges(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        return tuple(zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    def is_empty(self) -> bool:
        return self.size == 0

    def slices(self, origin: tuple[int, int, int] = (0, 0, 0)) -> tuple[slice, slice, slice]:
        """Slices selecting this box from an array whose first voxel is at ``origin``."""
        return tuple(
            slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, origin, strict=True)
        )  # type: ignore[return-value]

    def intersect(self, other: Box) -> Box:
        start = tuple(max(a, b) for a, b in zip(self.start, other.start, strict=True))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop, strict=True))
        stop = tuple(max(s, e) for s, e in zip(start, stop, strict=True))
        return Box(start, stop)  # type: ignore[arg-type]

    def contains(self, other: Box) -> bool:
        return all(a <= c for a, c in zip(self.start, other.start, strict=True)) and all(
            d <= b for b, d in zip(self.stop, other.stop, strict=True)
        )

    def grow(self, halo: tuple[int, int, int], within: Box | None = None) -> Box:
        """This box enlarged by ``halo`` on every side, clipped to ``within`` if given."""
        grown = Box(
            tuple(a - h for a, h in zip(self.start, halo, strict=True)),  # type: ignore[arg-type]
            tuple(b + h for b, h in zip(self.stop, halo, strict=True)),  # type: ignore[arg-type]
        )
        return grown.intersect(within) if within is not None else grown

    def __str__(self) -> str:
        return " ".join(f"{ax}={a}:{b}" for ax, (a, b) in zip(AXES, self.ranges, strict=True))


def iter_aligned_blocks(
    box: Box,
    block_shape: tuple[int, int, int],
    alignment: tuple[int, int, int] = CUBOID_SHAPE,
) -> Iterator[Box]:
    """Split ``box`` into blocks whose inner faces lie on a grid of ``block_shape``.

    The grid is anchored at voxel 0 (not at ``box.start``) so that block faces fall on
    BOSS cuboid boundaries whenever ``block_shape`` is a multiple of ``alignment``; the
    first and last block along an axis may be smaller. Blocks are yielded in C order
    (z slowest). ``block_shape`` must be a positive multiple of ``alignment``.
    """
    for axis, b, a in zip(AXES, block_shape, alignment, strict=True):
        if b <= 0 or b % a:
            raise ValueError(f"block size along {axis} ({b}) must be a positive multiple of {a}")
    edges = []
    for lo, hi, b in zip(box.start, box.stop, block_shape, strict=True):
        cuts = list(range((lo // b + 1) * b, hi, b)) if hi > lo else []
        points = [lo, *cuts, hi] if hi > lo else []
        edges.append(list(itertools.pairwise(points)))
    for (z0, z1), (y0, y1), (x0, x1) in itertools.product(*edges):
        yield Box((z0, y0, x0), (z1, y1, x1))


def parse_zyx(
    text: str, *, field: str, kind: type[int] | type[float] = int, allow_zero: bool = False
) -> tuple[Any, Any, Any]:
    """``"z,y,x"`` (or ``"16x512x512"``; spaces allowed) -> three values of ``kind``, z, y, x.

    Floats must be positive and finite (voxel sizes); integers positive (shapes), or
    non-negative with ``allow_zero`` (origins). Anything else raises
    :class:`~synapse_pipelines.core.errors.SynapsePipelinesError` naming ``field`` (the CLI
    option or environment variable the text came from).
    """
    parts = [p.strip() for p in text.replace("x", ",").split(",")] if text else []
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        values = ()
    if kind is float:
        ok = all(math.isfinite(v) and v > 0 for v in values)
        what, example = "positive numbers", "70,100,100"
    else:
        ok = all(v >= 0 if allow_zero else v > 0 for v in values)
        what = "non-negative integers" if allow_zero else "positive integers"
        example = "0,0,0" if allow_zero else "16,256,256"
    if len(values) != 3 or not ok:
        raise SynapsePipelinesError(
            f"expected three {what} z,y,x, got {text!r}",
            field=field,
            hint=f"write z,y,x, e.g. {example}",
        )
    return values  # type: ignore[return-value]


# -- physical units -------------------------------------------------------------------------

#: Spellings of length units in file metadata and options -> the canonical name.
UNIT_ALIASES = {
    "nm": "nanometers",
    "nanometer": "nanometers",
    "nanometers": "nanometers",
    "um": "micrometers",
    "µm": "micrometers",
    "\\u00B5m": "micrometers",  # as escaped in some OME-XML
    "\u03bcm": "micrometers",  # Greek mu, often typed for the micro sign
    "micron": "micrometers",
    "microns": "micrometers",
    "micrometer": "micrometers",
    "micrometers": "micrometers",
    "mm": "millimeters",
    "millimeter": "millimeters",
    "millimeters": "millimeters",
    # a length in voxels (a pixel in-plane, a section along z): no physical size
    "pixel": "pixel",
    "pixels": "pixel",
    "px": "pixel",
    "voxel": "pixel",
    "voxels": "pixel",
}
#: The canonical name of a length in voxels.
PIXEL = "pixel"
#: Nanometres per unit of each physical length unit.
NANOMETERS_PER_UNIT = {"nanometers": 1.0, "micrometers": 1e3, "millimeters": 1e6}


def normalise_unit(unit: str | None) -> str | None:
    """The canonical unit name (``"um"`` -> ``"micrometers"``); None when unknown."""
    if unit is None:
        return None
    return UNIT_ALIASES.get(str(unit).strip().lower(), UNIT_ALIASES.get(str(unit).strip()))


def voxel_size_nanometers(
    voxel_size: tuple[float, float, float] | list[float], unit: str | None
) -> tuple[float, float, float] | None:
    """The voxel size in nm, for a detector's physical sizes; None when the unit is not a
    length (pixels, unknown): the detector then assumes a sampling and says so."""
    scale = NANOMETERS_PER_UNIT.get(normalise_unit(unit) or "")
    if scale is None:
        return None
    z, y, x = (float(v) * scale for v in voxel_size)
    return (z, y, x)


def voxel_size_text(voxel_size: tuple[float, ...] | list[float]) -> str:
    """``70 x 2.24 x 2.24``: a voxel size (z, y, x) as messages and listings show it."""
    return " x ".join(f"{float(v):g}" for v in voxel_size)


#: Voxel edges, nm, of the microscopes synapses are imaged with (electron microscopy's few
#: nm to light microscopy's sections of about a micrometre). Outside this range a voxel
#: size is almost always a unit mistake (nanometres given as micrometres, or the reverse).
PLAUSIBLE_VOXEL_NM = (1.0, 2000.0)


def implausible_voxel_size(voxel_nm: tuple[float, float, float] | None) -> str | None:
    """A sentence naming the likely unit mistake when a voxel edge in nm lies outside
    :data:`PLAUSIBLE_VOXEL_NM`; None when the size is plausible or unknown."""
    if voxel_nm is None:
        return None
    low, high = PLAUSIBLE_VOXEL_NM
    if all(low <= v <= high for v in voxel_nm):
        return None
    shown = ",".join(f"{v:g}" for v in voxel_nm)
    return (
        f"the voxel size {shown} nm (z,y,x) is outside the {low:g}-{high:g} nm of synapse "
        "imaging, so the detector's physical sizes are unlikely to fit the data: check "
        "--voxel-size and --voxel-unit (e.g. 70,100,100 nanometers is 0.07,0.1,0.1 "
        "micrometers)"
    )
