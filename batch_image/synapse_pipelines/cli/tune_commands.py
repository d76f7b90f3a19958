"""``synapse-pipelines tune``: choose a pipeline's operating point from the user's own
annotation of part of an experiment (``workflow.operating_point_sweep``).

The command only parses, calls the sweep and formats: a table of the levels, the held-out
F1, and the ``-p`` options (and request parameters) that run the chosen level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from synapse_pipelines.cli.evaluate_commands import (
    check_json_target,
    load_points,
    matching_frame,
)
from synapse_pipelines.cli.local_volume_input import (
    ChannelNamesOption,
    ChannelOption,
    OriginOption,
    PostsynapticOption,
    PresynapticOption,
    ResolutionOption,
    VoxelSizeOption,
    VoxelUnitOption,
    parse_params,
    parse_volume_options,
    read_local_volumes,
    resolve_pipeline,
)
from synapse_pipelines.cli.terminal_output import (
    TimedSteps,
    err_console,
    out_console,
    progress_display,
    summary_table,
)
from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.pipelines import DEFAULT_PIPELINE, operating_point_parameters
from synapse_pipelines.io.volumes import VolumeInputError
from synapse_pipelines.workflow.operating_point_sweep import (
    DEFAULT_LEVELS,
    OperatingPointSweep,
    level_parameters,
    sweep_operating_point,
)


def _levels(text: str | None) -> tuple[float, ...]:
    if text is None:
        return DEFAULT_LEVELS
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) <= 0:
        raise VolumeInputError(
            f"expected positive numbers separated by commas, got {text!r}",
            field="--levels",
            hint="e.g. --levels 0.5,0.7,1,1.4,2 (1 is the pipeline's default)",
        )
    return values


def _flags(parameters: dict[str, float]) -> str:
    return " ".join(f"-p {k}={v:g}" for k, v in parameters.items())


def tune(
    truth: Annotated[
        Path,
        typer.Option(
            help="The annotation, in the volume's voxels: a point CSV (z,y,x or y,x), an .npz "
            "with 'synapses_zyx' or 'synapses_yx', or a labelled volume (as evaluate reads).",
            show_default=False,
        ),
    ],
    max_distance: Annotated[
        float,
        typer.Option(help="Largest centroid distance of a match, in --unit.", show_default=False),
    ],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="INPUT",
            help="Volume files, as for detect: a multi-channel TIFF/OME-TIFF/.npy/Zarr or one "
            "3-D file per channel. Give the annotated region (a crop), not the whole experiment.",
            show_default=False,
        ),
    ] = None,
    unit: Annotated[
        str | None,
        typer.Option(
            help="Unit of the match distance: nm, um, mm or px (default: the voxel size's)."
        ),
    ] = None,
    levels: Annotated[
        str | None,
        typer.Option(
            help="Levels to try, comma separated (default: 0.5 to 2 in 11 steps; 1 is the "
            "pipeline's default, lower finds more and dimmer synapses)."
        ),
    ] = None,
    strips: Annotated[
        int,
        typer.Option(
            help="Strips along x for the held-out F1: each is scored at the level chosen on "
            "the others (1: none)."
        ),
    ] = 2,
    channel: ChannelOption = None,
    channel_names: ChannelNamesOption = None,
    presynaptic_channel: PresynapticOption = None,
    postsynaptic_channel: PostsynapticOption = None,
    voxel_size: VoxelSizeOption = None,
    voxel_unit: VoxelUnitOption = None,
    origin: OriginOption = None,
    resolution: ResolutionOption = None,
    pipeline: Annotated[str, typer.Option(help="Pipeline to tune.")] = DEFAULT_PIPELINE,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="Another pipeline parameter KEY=NUMBER, fixed. Repeatable."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the sweep as JSON here.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the --json file if it exists.")] = False,
) -> None:
    """Choose the operating point that reproduces your annotation of part of an experiment.

    Runs the pipeline at each level of its operating point (paired-puncta: the seed,
    weak-seed and foreground evidence levels, scaled together), scores each against
    --truth as evaluate does, and prints the level with the best F1, its held-out F1 and
    the -p options that run it on the whole experiment (detect, or a request's
    pipeline_parameters).

    Examples:

      synapse-pipelines tune crop_syn.tif crop_psd.tif --truth points.csv --max-distance 3 --unit px

      synapse-pipelines tune crop.ome.tif --truth crop.npz --max-distance 300 --unit nm
    """

    if strips < 1:
        raise VolumeInputError(
            f"must be at least 1, got {strips}",
            field="--strips",
            hint="use 2 or more for a held-out F1, or 1 for none",
        )
    wanted = _levels(levels)
    options = parse_volume_options(
        channel_names=channel_names,
        voxel_size=voxel_size,
        voxel_unit=voxel_unit,
        origin=origin,
        presynaptic_channel=presynaptic_channel,
        postsynaptic_channel=postsynaptic_channel,
    )
    fixed = parse_params(param or [])
    runner, _ = resolve_pipeline(pipeline, fixed)
    clash = sorted(set(fixed) & set(operating_point_parameters(runner, 1.0) or {}))
    if clash:
        raise VolumeInputError(
            f"tune sets {', '.join(clash)} itself (the operating point)",
            field="--param",
            hint="drop those -p options; give --levels to choose which levels are tried",
        )
    try:
        level_parameters(runner, fixed, wanted, field="--levels")
    except DetectionError as exc:  # the pipeline's own field, as this CLI's option
        field = "--pipeline" if exc.field == "pipeline" else exc.field
        raise VolumeInputError(exc.message, field=field, hint=exc.hint) from exc
    if json_out is not None:
        check_json_target(json_out, overwrite=overwrite)
    points = load_points(truth, "--truth")
    with progress_display() as progress:
        steps = TimedSteps(progress)
        sources = list(inputs or [])
        with steps.step("read", f"reading {len(sources) + len(channel or [])} file(s)"):
            local = read_local_volumes(options, sources, channel or [])
        for note in local.conversions:
            err_console().print(f"note: {note}", highlight=False)
        shape = local.channels.shape
        scale, distance, shown_unit = matching_frame(
            max_distance,
            unit,
            voxel_size=None if local.voxel_size_missing else local.voxel_size,
            voxel_unit=None if local.voxel_size_missing else local.voxel_unit,
            extents=[(local.origin, tuple(shape))],
            recorded_in="the volume files",
        )
        with steps.step("sweep", f"{pipeline}: {len(set(wanted) | {1.0})} levels"):
            try:
                sweep = sweep_operating_point(
                    pipeline,
                    local.channels.channels,
                    local.selection.presynaptic,
                    local.selection.postsynaptic,
                    local.voxel_size_nm,
                    fixed,
                    points.centroids,
                    origin=local.origin,
                    max_distance=distance,
                    matching_scale=scale,
                    levels=wanted,
                    strips=strips,
                    grid_level=resolution,
                )
            except DetectionError as exc:  # the detection grid's level: --resolution here
                if exc.field != "level":
                    raise
                raise VolumeInputError(exc.message, field="--resolution", hint=exc.hint) from exc
    _print(sweep, points.description, max_distance, shown_unit)
    if json_out is not None:
        data = sweep.to_dict()
        data.update(truth=str(truth), max_distance=max_distance, unit=shown_unit)
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n")


def _print(sweep: OperatingPointSweep, truth: str, max_distance: float, unit: str) -> None:
    table = Table(title=f"{sweep.pipeline}: F1 at each operating-point level")
    for name in ("level", "", "detections", "P", "R", "F1"):
        table.add_column(name, justify="right" if name else "left")
    for s in sweep.levels:
        notes = [n for n, on in (("default", s.level == 1.0), ("best", s is sweep.best)) if on]
        table.add_row(
            f"{s.level:g}",
            ", ".join(notes),
            str(s.detections),
            f"{s.precision:.3f}",
            f"{s.recall:.3f}",
            f"{s.f1:.3f}",
        )
    out_console().print(table)
    rows = [
        ("truth", f"{truth}, matched within {max_distance:g} {unit}"),
        ("default (level 1)", f"F1 {sweep.default.f1:.3f}"),
        ("best level", f"{sweep.best.level:g}: F1 {sweep.best.f1:.3f} on every point"),
    ]
    if sweep.held_out_f1 is not None:
        picks = ", ".join(f"{s.chosen_level:g}" for s in sweep.strips)
        rows.append(
            (
                "held out",
                f"F1 {sweep.held_out_f1:.3f} (default {sweep.held_out_default_f1:.3f}): "
                f"each of {len(sweep.strips)} strips along x scored at the level chosen on "
                f"the others ({picks})",
            )
        )
    rows.append(("use", f"detect ... {_flags(sweep.best.parameters)}"))
    rows.append(("request", f'"pipeline_parameters": {json.dumps(sweep.best.parameters)}'))
    out_console().print(summary_table("synapse-pipelines tune", rows))
    for text in sweep.warnings:
        err_console().print(f"[yellow]warning:[/] {escape(text)}")


def register(app: typer.Typer) -> None:
    """Add ``tune`` to the root app."""
    app.command("tune")(tune)
