"""The ``nomads-unsupervised`` pipeline: NOMADS as a plug-in, with its size limit in
physical units.

The original kept components of more than 30 voxels at collman15v2's sampling; here the
limit is a volume (``min_volume_um3``, default those 30 voxels) converted to voxels at the
data's own voxel size (:mod:`~synapse_pipelines.science.voxel_units`), so anisotropic and
coarser data are handled. The detector itself is
:func:`~synapse_pipelines.science.detection.detect`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from synapse_pipelines.core.pipelines import (
    DetectionResult,
    ParameterSpec,
    channel_pair,
    validate_parameters,
)
from synapse_pipelines.science.connected_components import DEFAULT_MIN_SIZE
from synapse_pipelines.science.detection import detect
from synapse_pipelines.science.nomads_primitives import DEFAULT_WINDOW, MAX_WINDOW
from synapse_pipelines.science.voxel_units import check_voxel_size, min_size_voxels

__all__ = ["COLLMAN15V2_VOXEL_NM", "DEFAULT_MIN_VOLUME_UM3", "NomadsUnsupervised"]


#: collman15v2's voxel (z, y, x) in nm, the data the original's "more than 30 voxels" was
#: written for (BOSS frame collman_collman15v2: the immunofluorescence is resampled onto the
#: EM's 2.24 nm grid; NeuroData's feature code cuts 245 x 245 px around a synapse there).
COLLMAN15V2_VOXEL_NM: tuple[float, float, float] = (70.0, 2.24, 2.24)
#: The original's size limit as a volume: 30 collman15v2 voxels, ~1.05e-5 um^3 -- less than
#: one voxel at array tomography's usual 70 x 100 x 100 nm, so it removes nothing there.
DEFAULT_MIN_VOLUME_UM3 = DEFAULT_MIN_SIZE * math.prod(COLLMAN15V2_VOXEL_NM) * 1e-9


class NomadsUnsupervised:
    """The ``nomads-unsupervised`` pipeline (entry point target)."""

    name = "nomads-unsupervised"
    description = (
        "NOMADS (the original's intent): local covariance of z-scored synapsin and PSD95 "
        "(3x3x3, 3x3 per plane in thin stacks), Otsu on the positive covariance clipped at "
        "its 99.5th percentile, 26-connected components larger than min_volume_um3"
    )
    parameters: Mapping[str, ParameterSpec] = {
        "window": ParameterSpec(
            int, DEFAULT_WINDOW, "edge of the cubic covariance window, voxels", 3, MAX_WINDOW, True
        ),
        "min_volume_um3": ParameterSpec(
            float,
            DEFAULT_MIN_VOLUME_UM3,
            "keep components larger than this volume, cubic micrometres (the original's 30 "
            "collman15v2 voxels)",
            0.0,
            1e6,
        ),
    }

    def run(
        self,
        channels: Mapping[str, np.ndarray],
        presynaptic: str,
        postsynaptic: str,
        *,
        voxel_size: tuple[float, float, float] | None = None,
        **params: int | float,
    ) -> DetectionResult:
        resolved = validate_parameters(self, params)
        pre, post = channel_pair(channels, presynaptic, postsynaptic)
        voxel = check_voxel_size(voxel_size)
        min_volume = float(resolved["min_volume_um3"])
        result = detect(
            pre,
            post,
            window=int(resolved["window"]),
            min_size=min_size_voxels(min_volume, voxel),
        )
        result.parameters.update(
            {"min_volume_um3": min_volume, "voxel_size_nm": list(voxel)}
            | ({"voxel_size_assumed": True} if voxel_size is None else {})
        )
        return result
