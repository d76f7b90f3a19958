"""Before a Detect job reads BOSS: can the pipeline run at the request's resolution level?

A detector that works in physical units needs voxels within a range: PAIRS' exact integer
band-pass overflows on voxels far finer than light resolves (collman15v2 stores its
immunofluorescence at 70 x 2.24 x 2.24 nm, 45 times finer than its optics). Such a request
would otherwise pull gigabytes and then fail. :func:`check_detectable` asks the pipeline's
optional ``check_volume`` hook (``core.pipelines``) with the box's shape and the level's voxel
size, and when it refuses, names the coarser BOSS resolution level at which it would run.

Local volumes (``detect`` on files) have no BOSS levels to choose from, so
:func:`run_on_a_grid_that_runs` makes that level itself: the two channels the pipeline reads
are averaged onto the first coarser in-plane grid (2**k x 2**k pixels, as BOSS's levels)
at which the pipeline runs, detected there, and the labels and mask expanded back to the
input's voxels, said in the result's warnings. A caller may ask for a level itself (the
CLI's ``--resolution``), checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box, voxel_size_text
from synapse_pipelines.core.pipelines import DetectionResult, get_pipeline
from synapse_pipelines.science.pyramid import downsample_region, expand_labels, level_extent

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
        suggestion = coarser_level(check, parameters, box, voxel_size_nm)
        if suggestion is None:
            raise
        up, voxel = suggestion
        level = resolution + up
        raise DetectionError(
            f"{pipeline} cannot run on voxels of {voxel_size_text(voxel_size_nm)} nm "
            f"(resolution {resolution}): {err.message}",
            field="resolution",
            hint=f"set resolution to {level} (voxels of {voxel_size_text(voxel)} nm; BOSS "
            "halves x and y per level) and give the ranges in that level's voxels, once the "
            "channels are downsampled there",
        ) from None


def level_grid(
    box: Box, voxel_size_nm: tuple[float, float, float], up: int
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """``box`` (voxels of ``voxel_size_nm``) ``up`` levels coarser: its shape there and the
    voxel size (x and y halved per level, BOSS's anisotropic hierarchy)."""
    vz, vy, vx = voxel_size_nm
    z, y, x = box.ranges
    f = 2**up
    return Box.from_ranges(z, level_extent(*y, f), level_extent(*x, f)).shape, (vz, vy * f, vx * f)


def coarser_level(
    check: Callable[..., None],
    parameters: Mapping[str, int | float],
    box: Box,
    voxel_size_nm: tuple[float, float, float],
) -> tuple[int, tuple[float, float, float]] | None:
    """How many levels up (x and y halved per level, BOSS's anisotropic hierarchy) ``check``
    first accepts ``box`` (voxels of ``voxel_size_nm``), and the voxel size there; None if
    not within LEVELS_TRIED."""
    for up in range(1, LEVELS_TRIED + 1):
        shape, voxel = level_grid(box, voxel_size_nm, up)
        try:
            check(shape, voxel_size=voxel, **parameters)
        except DetectionError:
            continue
        return up, voxel
    return None


def run_on_a_grid_that_runs(
    pipeline: str,
    channels: Mapping[str, np.ndarray],
    presynaptic: str,
    postsynaptic: str,
    voxel_size_nm: tuple[float, float, float] | None,
    parameters: Mapping[str, int | float],
    level: int | None = None,
) -> DetectionResult:
    """``pipeline`` on local volumes, at the voxel size given or, where the pipeline cannot
    run there but can on a coarser in-plane grid, on the first such grid (module
    docstring); ``level`` k asks for the 2**k grid itself (0: the input's), as a BOSS
    request's resolution does, and is refused (field ``level``) where the pipeline cannot
    run there. A binned run records ``detection_level`` (k: 2**k x 2**k pixels averaged)
    and ``detection_voxel_size_nm`` in the result's parameters, and says so first among its
    warnings."""
    runner = get_pipeline(pipeline)
    check = getattr(runner, "check_volume", None)
    shape = channels[presynaptic].shape
    up, coarse, reason = 0, voxel_size_nm, ""
    if level is not None:
        if voxel_size_nm is None:
            raise DetectionError(
                "a detection level needs the voxel size: its grid is 2**level pixels of it",
                field="level",
                hint="give the voxel size (--voxel-size z,y,x), or leave the level out",
            )
        up, coarse, reason = _asked_level(pipeline, check, parameters, shape, voxel_size_nm, level)
    elif check is not None and voxel_size_nm is not None:
        try:
            check(shape, voxel_size=voxel_size_nm, **parameters)
        except DetectionError as refusal:
            found = coarser_level(check, parameters, Box.from_shape(shape), voxel_size_nm)
            if found is None:
                raise
            (up, coarse) = found
            reason = (
                f"{pipeline} cannot run on the input's {voxel_size_text(voxel_size_nm)} nm "
                f"({refusal.message})"
            )
    if up == 0:
        return runner.run(
            channels, presynaptic, postsynaptic, voxel_size=voxel_size_nm, **parameters
        )
    binned = {
        name: downsample_region(channels[name], (0, 0), up, "image")[0]
        for name in (presynaptic, postsynaptic)
    }
    result = runner.run(binned, presynaptic, postsynaptic, voxel_size=coarse, **parameters)
    f = 2**up
    note = (
        f"detected on the channels averaged over {f} x {f} pixels (voxels of "
        f"{voxel_size_text(coarse)} nm), because {reason}; the labels are expanded back to "
        "the input's voxels"
    )
    params = dict(result.parameters)
    params.update(
        detection_level=up,
        detection_voxel_size_nm=list(coarse),
        warnings=[note, *params.get("warnings", [])],
    )
    return replace(
        result,
        labels=expand_labels(result.labels, up, shape[1:]),
        mask=expand_labels(result.mask, up, shape[1:]),
        parameters=params,
    )


def _asked_level(
    pipeline: str,
    check: Callable[..., None] | None,
    parameters: Mapping[str, int | float],
    shape: tuple[int, ...],
    voxel_size_nm: tuple[float, float, float],
    level: int,
) -> tuple[int, tuple[float, float, float], str]:
    """The grid ``level`` asks for (levels up, voxel size, why), checked with the
    pipeline's ``check_volume``; refused with the level that runs where it cannot run."""
    if level < 0:
        raise DetectionError(
            f"level must be 0 or more, got {level}",
            field="level",
            hint="0 is the input's grid; k averages 2**k x 2**k pixels",
        )
    binned, coarse = level_grid(Box.from_shape(shape), voxel_size_nm, level)  # type: ignore[arg-type]
    if any(b == 1 < n for b, n in zip(binned[1:], shape[1:], strict=True)):
        raise DetectionError(
            f"level {level} averages the whole {shape[1]} x {shape[2]} pixel plane into "
            f"{binned[1]} x {binned[2]}",
            field="level",
            hint="choose a lower level (each halves y and x)",
        )
    if check is not None:
        try:
            check(binned, voxel_size=coarse, **parameters)
        except DetectionError as refusal:
            found = coarser_level(check, parameters, Box.from_shape(shape), voxel_size_nm)
            runs = f"level {found[0]} runs" if found else "no coarser in-plane grid runs"
            raise DetectionError(
                f"{pipeline} cannot run at level {level} ({voxel_size_text(coarse)} nm): "
                f"{refusal.message}",
                field="level",
                hint=f"choose another level ({runs}), or leave it out for the first that runs",
            ) from None
    return level, coarse, f"level {level} was asked for"
