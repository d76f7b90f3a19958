"""Where the synapses are and how big: centroids, voxel size, volumes and the analysed box.

Pure: a table (and the request) in, a :class:`Geometry` out. Owns the unit conversion to
micrometres, :func:`parse_voxel_size` (``"z,y,x"``), the precedence of arguments over the
table's metadata over the request's ranges, and what the density needs (the box's volume
in µm³). The spatial figures are :mod:`synapse_pipelines.report.spatial_figures`'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synapse_pipelines.science.features import CENTROID_COLUMNS

from .feature_statistics import ReportInputError

#: Micrometres per unit, for the density (BOSS coordinate frames say "nanometers").
UNIT_TO_MICROMETRES: dict[str, float] = {
    "nanometers": 1e-3,
    "nanometer": 1e-3,
    "nm": 1e-3,
    "micrometers": 1.0,
    "micrometer": 1.0,
    "microns": 1.0,
    "micron": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "millimeters": 1e3,
    "millimeter": 1e3,
    "mm": 1e3,
}

VOLUME_COLUMN = "volume_voxels"
CLIPPED_COLUMN = "window_clipped"


@dataclass(frozen=True)
class Geometry:
    """Where the synapses are and how big they are, in voxels and (when known) micrometres."""

    centroids_voxels: np.ndarray | None  # (n, 3) z, y, x, or None when the table lacks them
    voxel_size_um: tuple[float, float, float] | None
    volumes_voxels: np.ndarray | None
    box_shape: tuple[int, int, int] | None  # analysed box in voxels
    box_source: str  # where the box came from (shown in the summary)
    clipped_windows: int | None = None  # rows whose feature window met the volume border
    notes: list[str] = field(default_factory=list)
    #: the voxel size and unit the micrometres were converted from, and where they came from
    #: ("given": an argument, or "table metadata"); the table's ``*_physical`` columns are in it
    voxel_size_given: tuple[float, float, float] | None = None
    voxel_unit_given: str | None = None
    voxel_size_from: str | None = None

    @property
    def voxel_volume_um3(self) -> float | None:
        return float(np.prod(self.voxel_size_um)) if self.voxel_size_um else None

    @property
    def box_volume_um3(self) -> float | None:
        if self.box_shape is None or self.voxel_volume_um3 is None:
            return None
        return float(np.prod(self.box_shape)) * self.voxel_volume_um3


def _to_micrometres(voxel_size: Sequence[float], unit: str) -> tuple[float, float, float] | None:
    factor = UNIT_TO_MICROMETRES.get(unit.strip().lower())
    if factor is None:
        return None
    return tuple(float(v) * factor for v in voxel_size)  # type: ignore[return-value]


def parse_voxel_size(value: Sequence[float] | str | None) -> tuple[float, float, float] | None:
    """``"z,y,x"`` or a 3-sequence of positive numbers -> tuple; None stays None."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        out = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) and v > 0 for v in out):
        raise ReportInputError(
            f"voxel size must be three positive numbers z,y,x; got {value!r}",
            field="voxel_size",
            hint="e.g. --voxel-size 50,2.24,2.24 (in --voxel-unit, nanometers by default)",
        )
    return out  # type: ignore[return-value]


def _box_from_request(info: Mapping[str, Any]) -> tuple[int, int, int] | None:
    try:
        ranges = [info[f"{a}_range"] for a in ("z", "y", "x")]
        shape = tuple(int(r[1]) - int(r[0]) for r in ranges)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return shape if all(s > 0 for s in shape) else None  # type: ignore[return-value]


def table_geometry(
    table: pd.DataFrame,
    *,
    voxel_size: Sequence[float] | None,
    voxel_unit: str | None,
    box_shape: Sequence[int] | None,
    request_info: Mapping[str, Any] | None,
) -> Geometry:
    """Centroids, voxel size (µm), volumes and the analysed box, from arguments or metadata.

    Precedence for the voxel size and its unit: the arguments, then ``table.attrs`` (written
    by the synapse table's companion JSON). For the box: the argument, then the request's
    z/y/x ranges, then ``table.attrs["shape"]``.
    """
    notes: list[str] = []
    attrs = dict(table.attrs)
    cols = set(map(str, table.columns))
    centroids = None
    if all(c in cols for c in CENTROID_COLUMNS):
        centroids = table[list(CENTROID_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    elif all(c in cols for c in ("z", "y", "x")):
        centroids = table[["z", "y", "x"]].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        notes.append(f"the table has no centroid columns ({', '.join(CENTROID_COLUMNS)})")

    size = voxel_size if voxel_size is not None else attrs.get("voxel_size")
    unit = voxel_unit if voxel_unit is not None else attrs.get("voxel_unit", "nanometers")
    size_um = given = None
    if size is not None:
        given = parse_voxel_size(size)
        size_um = _to_micrometres(given, str(unit))  # type: ignore[arg-type]
        if size_um is None:
            notes.append(
                f"voxel unit {unit!r} is not a length unit this report knows "
                f"({', '.join(sorted(UNIT_TO_MICROMETRES))}): physical sizes are not shown"
            )
    else:
        notes.append("voxel size unknown (no --voxel-size and no table metadata)")

    volumes = None
    if VOLUME_COLUMN in cols:
        volumes = table[VOLUME_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)

    clipped = None
    if CLIPPED_COLUMN in cols:
        flags = table[CLIPPED_COLUMN]
        if flags.dtype != bool:  # e.g. read from a CSV without the table's dtypes
            flags = flags.astype(str).str.strip().str.lower().isin({"true", "1"})
        clipped = int(flags.sum())

    shape: tuple[int, int, int] | None = None
    source = "unknown"
    if box_shape is not None:
        shape, source = tuple(int(s) for s in box_shape), "given"  # type: ignore[assignment]
    elif request_info and (req := _box_from_request(request_info)) is not None:
        shape, source = req, "request z/y/x ranges"
    elif isinstance(attrs.get("shape"), list | tuple) and len(attrs["shape"]) == 3:
        shape, source = tuple(int(s) for s in attrs["shape"]), "table metadata"  # type: ignore[assignment]
    return Geometry(
        centroids_voxels=centroids,
        voxel_size_um=size_um,
        volumes_voxels=volumes,
        box_shape=shape,
        box_source=source,
        clipped_windows=clipped,
        notes=notes,
        voxel_size_given=given,
        voxel_unit_given=str(unit) if given is not None else None,
        voxel_size_from=None
        if given is None
        else ("given" if voxel_size is not None else "table metadata"),
    )
