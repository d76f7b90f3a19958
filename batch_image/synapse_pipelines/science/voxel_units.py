"""Voxel sizes and sizes in physical units, shared by the detectors.

A detector receives the voxel size (z, y, x) in nanometres from the coordinate frame or the
file, or ``None`` when it is unknown; :func:`check_voxel_size` turns that into three positive
floats (array tomography's usual sampling, :data:`ASSUMED_VOXEL_NM`, when unknown) or a
:class:`DetectionError` naming ``voxel_size``. :func:`min_size_voxels` maps a volume limit in
cubic micrometres to the voxel count a component must exceed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from synapse_pipelines.core.errors import DetectionError

__all__ = [
    "ASSUMED_VOXEL_NM",
    "FWHM_PER_SIGMA",
    "MAX_VOXEL_NM",
    "check_voxel_size",
    "min_size_voxels",
]

#: The voxel size assumed when the caller gives none (array tomography's usual sampling).
ASSUMED_VOXEL_NM: tuple[float, float, float] = (70.0, 100.0, 100.0)
#: Larger voxels than a millimetre are a unit mistake, not microscopy.
MAX_VOXEL_NM = 1e6
#: A Gaussian's full width at half maximum over its sigma, 2 sqrt(2 ln 2) (2.355): puncta
#: are given by their FWHM, smoothing kernels by their variance.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def check_voxel_size(voxel_size: Any) -> tuple[float, float, float]:
    """The voxel size (z, y, x) in nm as three finite positive floats (at most
    :data:`MAX_VOXEL_NM`); :data:`ASSUMED_VOXEL_NM` when ``None``."""
    if voxel_size is None:
        return ASSUMED_VOXEL_NM
    hint = "give the (z, y, x) voxel size in nanometers, e.g. (70, 100, 100)"
    try:
        values = tuple(voxel_size)
    except TypeError:
        raise DetectionError(
            f"expected three numbers, got {voxel_size!r}", field="voxel_size", hint=hint
        ) from None
    numbers = len(values) == 3 and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        for v in values
    )
    if not numbers or not all(
        math.isfinite(float(v)) and 0 < float(v) <= MAX_VOXEL_NM for v in values
    ):
        raise DetectionError(
            f"expected three finite positive sizes in nm (at most 1e6), got {voxel_size!r}",
            field="voxel_size",
            hint=hint,
        )
    return (float(values[0]), float(values[1]), float(values[2]))


def min_size_voxels(min_volume_um3: float, voxel_size_nm: tuple[float, float, float]) -> int:
    """The voxel count a component must exceed to be larger than ``min_volume_um3``.

    A plane counts as one section of its thickness, so the rule is the same in 2-D.
    The rounding slack keeps "more than 30 voxels" exact at the voxel size it came from.
    """
    voxel_um3 = math.prod(voxel_size_nm) * 1e-9
    return math.floor(min_volume_um3 / voxel_um3 + 1e-9)
