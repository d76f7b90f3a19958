"""Before a Detect job reads BOSS: can the pipeline run at the request's resolution level?

A detector that works in physical units needs voxels within a range: PAIRS' exact integer
band-pass overflows on voxels far finer than light resolves (collman15v2 stores its
immunofluorescence at 70 x 2.24 x 2.24 nm, 45 times finer than its optics). Such a request
would otherwise pull gigabytes and then fail. :func:`check_detectable` asks the pipeline's
optional ``check_volume`` hook (``core.pipelines``) with the box's shape and the level's voxel
size, and when it refuses, names the coarser BOSS resolution level at which it would run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box, voxel_size_text
from synapse_pipelines.core.pipelines import get_pipeline
from synapse_pipelines.science.pyramid import level_extent

#: How many levels above the request's one are tried for a suggestion (2**8 = 256x coarser).
LEVELS_TRIED = 8


def check_detectable(
    pipeline: str,
    parameters: Mapping[str, int | float],
    box: Box,
    voxel_size_nm: tuple[float, float, float] | None,
    resolution: int,
) -> None:
    """Raise :class:`DetectionError` (field ``resolution`` when a coarser level would do)
    where ``pipeline`` cannot run on ``box`` (voxels of BOSS level ``resolution``, of
    ``voxel_size_nm``); a pipeline without ``check_volume`` is not checked."""
    check = getattr(get_pipeline(pipeline), "check_volume", None)
    if check is None:
        return
    try:
        check(box.shape, voxel_size=voxel_size_nm, **parameters)
    except DetectionError as err:
        if voxel_size_nm is None:
            raise
        suggestion = _coarser_level(check, parameters, box, voxel_size_nm, resolution)
        if suggestion is None:
            raise
        level, voxel = suggestion
        raise DetectionError(
            f"{pipeline} cannot run on voxels of {voxel_size_text(voxel_size_nm)} nm "
            f"(resolution {resolution}): {err.message}",
            field="resolution",
            hint=f"set resolution to {level} (voxels of {voxel_size_text(voxel)} nm; BOSS "
            "halves x and y per level) and give the ranges in that level's voxels, once the "
            "channels are downsampled there",
        ) from None


def _coarser_level(
    check: Callable[..., None],
    parameters: Mapping[str, int | float],
    box: Box,
    voxel_size_nm: tuple[float, float, float],
    resolution: int,
) -> tuple[int, tuple[float, float, float]] | None:
    """The first level above ``resolution`` (x and y halved per level, BOSS's anisotropic
    hierarchy) at which ``check`` accepts the box; None if none within LEVELS_TRIED."""
    vz, vy, vx = voxel_size_nm
    z, y, x = box.ranges
    for up in range(1, LEVELS_TRIED + 1):
        f = 2**up
        shape = Box.from_ranges(z, level_extent(*y, f), level_extent(*x, f)).shape
        voxel = (vz, vy * f, vx * f)
        try:
            check(shape, voxel_size=voxel, **parameters)
        except DetectionError:
            continue
        return resolution + up, voxel
    return None
