"""What a BOSS channel and coordinate frame are to this project, and BOSS's rules on them.

Owns the value types every BOSS module shares (:class:`ChannelInfo`,
:class:`CoordinateFrame`), the datatypes and name length BOSS accepts, its spelling of voxel
units, the check that a box lies in a frame, the resolution levels a frame needs
(:func:`hierarchy_levels_to_fit`), and :data:`OUTPUT_MARKER`, the description prefix of every
resource this project creates. No I/O: the client
(:mod:`synapse_pipelines.io.boss_client`) reads and creates these resources; publication and
links only describe them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import AXES, CUBOID_SHAPE, Box
from synapse_pipelines.science.pyramid import level_extent

#: The channel datatypes BOSS (through intern) stores.
SUPPORTED_DATATYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint64": np.uint64}
#: BOSS stores names in 255-character fields.
BOSS_MAX_NAME_LENGTH = 255
#: Description prefix of every collection, frame, experiment and channel this project creates;
#: lets publication tell its own earlier outputs (safe to overwrite) from a user's data
#: channels (never overwritten).
OUTPUT_MARKER = "synapse-pipelines output"
#: The length units BOSS accepts for voxel sizes.
BOSS_UNITS = ("nanometers", "micrometers", "millimeters", "centimeters")
_UNIT_ALIASES = {
    "nm": "nanometers",
    "um": "micrometers",
    "µm": "micrometers",
    "mm": "millimeters",
    "cm": "centimeters",
}


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    datatype: str  # "uint8" | "uint16" | "uint64"
    type: str  # "image" | "annotation"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.datatype)


@dataclass(frozen=True)
class CoordinateFrame:
    extent: Box  # half-open, z, y, x
    voxel_size: tuple[float, float, float]  # z, y, x
    voxel_unit: str
    name: str


def level_frame(
    frame: CoordinateFrame, resolution: int, levels: int, method: str, where: str
) -> CoordinateFrame:
    """``frame`` as BOSS serves it at ``resolution`` of an experiment with ``levels``
    hierarchy levels built by ``method``: x and y (and z too when ``"isotropic"``) voxels
    ``2**resolution`` times larger, the extent ``[start // f, ceil(stop / f))`` per axis (as
    BOSS measures downsampled extents), named ``<frame>_res<r>`` (a frame of its own when
    predictions made at that level are published). A level the experiment lacks is a
    BossError naming ``resolution``."""
    if not 0 <= resolution < max(levels, 1):
        raise BossError(
            f"{where} has {levels} resolution level(s) (0..{levels - 1}); resolution "
            f"{resolution} does not exist there",
            field="resolution",
            hint=f"use a resolution within 0..{levels - 1}",
        )
    if resolution == 0:
        return frame
    f = 2**resolution
    factors = (f if method == "isotropic" else 1, f, f)
    ranges = [level_extent(a, b, k) for (a, b), k in zip(frame.extent.ranges, factors, strict=True)]
    return CoordinateFrame(
        extent=Box.from_ranges(*ranges),
        voxel_size=tuple(v * k for v, k in zip(frame.voxel_size, factors, strict=True)),  # type: ignore[arg-type]
        voxel_unit=frame.voxel_unit,
        name=f"{frame.name}_res{resolution}",
    )


def hierarchy_levels_to_fit(extent: Box) -> int:
    """How many resolution levels BOSS's anisotropic (2x2x1) downsampling needs until the
    frame's x and y fit one cuboid (512x512): the ``num_hierarchy_levels`` an output
    experiment is created with. BOSS measures the extent of level r as ``ceil(stop / 2**r)``
    (spdb ``get_downsampled_extent_dims`` uses the frame's stop, not stop - start)."""
    y, x = extent.stop[1], extent.stop[2]
    levels = 1
    while y > CUBOID_SHAPE[1] or x > CUBOID_SHAPE[2]:
        y, x = -(-y // 2), -(-x // 2)
        levels += 1
    return levels


def boss_voxel_unit(unit: str) -> str:
    """BOSS's spelling of a length unit (it accepts only :data:`BOSS_UNITS`)."""
    lowered = _UNIT_ALIASES.get(unit.lower(), unit.lower())
    if not lowered.endswith("s"):
        lowered += "s"
    if lowered not in BOSS_UNITS:
        raise BossError(
            f"voxel unit {unit!r} is not one BOSS accepts ({', '.join(BOSS_UNITS)})",
            field="voxel_unit",
            hint="give the voxel size in nanometers, e.g. --voxel-unit nanometers",
        )
    return lowered


def check_box_in_frame(box: Box, frame: CoordinateFrame, where: str) -> None:
    """Raise BossError naming the first axis of ``box`` outside ``frame`` (half-open)."""
    for axis, a, b, lo, hi in zip(
        AXES, box.start, box.stop, frame.extent.start, frame.extent.stop, strict=True
    ):
        if b <= a:
            raise BossError(
                f"{axis} range {a}:{b} is empty",
                field=f"{axis}_range",
                hint="give start < stop (ranges are half-open)",
            )
        if a < lo or b > hi:
            raise BossError(
                f"{axis} range {a}:{b} is outside the coordinate frame of {where} "
                f"({axis} {lo}:{hi}, half-open)",
                field=f"{axis}_range",
                hint=f"use {'an' if axis == 'x' else 'a'} {axis} range within {lo}:{hi}",
            )
