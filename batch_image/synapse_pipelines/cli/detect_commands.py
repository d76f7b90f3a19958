"""``synapse-pipelines detect``: run a registered pipeline on local volume files and write a
results folder (the same one the workflow's Detect step writes).

The command only parses, calls the pipeline and the results writer, and formats.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from typer.core import TyperCommand

from synapse_pipelines.cli.help_text import reflow
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
from synapse_pipelines.core import pipelines
from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.pipelines import DEFAULT_PIPELINE, available_pipelines
from synapse_pipelines.io.outputs import (
    check_results_folder,
    write_results,
)
from synapse_pipelines.science.features import synapse_table
from synapse_pipelines.workflow.resolution_check import run_on_a_grid_that_runs

# -- detect -------------------------------------------------------------------------------


def _pipeline_names() -> str:

    return ", ".join(available_pipelines()) or "none installed"


def detect(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="INPUT",
            help="Volume files: a multi-channel TIFF/OME-TIFF/.npy/Zarr (channels first) or "
            "one 3-D file per channel, named after the file (PSD95_488.tif -> PSD95_488).",
            show_default=False,
        ),
    ] = None,
    channel: ChannelOption = None,
    channel_names: ChannelNamesOption = None,
    presynaptic_channel: PresynapticOption = None,
    postsynaptic_channel: PostsynapticOption = None,
    voxel_size: VoxelSizeOption = None,
    voxel_unit: VoxelUnitOption = None,
    origin: OriginOption = None,
    resolution: ResolutionOption = None,
    pipeline: Annotated[
        str, typer.Option(help=f"Registered pipeline to run ({_pipeline_names()}).")
    ] = DEFAULT_PIPELINE,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Pipeline parameter KEY=NUMBER (e.g. seed_level=1.5, or window=3). Repeatable.",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path,
        typer.Option("--out", "-o", help="Results folder to write (created if needed)."),
    ] = Path("results"),
    overwrite: Annotated[bool, typer.Option(help="Replace results already in --out.")] = False,
) -> None:
    """Detect synapses in local volumes and write a results folder.

    Writes predictions.ome.tif, synapse_ids.ome.tif, synapses.csv and manifest.json into
    --out, the same artefacts as a BOSS request.

    Examples:

      synapse-pipelines detect demo/channels.ome.tif --out demo/results

      synapse-pipelines detect synapsin.tif psd95.tif --voxel-size 70,100,100

      synapse-pipelines detect stack.npy --channel-names Synapsin647,PSD95_488

      synapse-pipelines detect synapsin.tif psd95.tif -p seed_level=1.2 -o strict

    Each pipeline's parameters (-p KEY=NUMBER) are listed below.
    """

    options = parse_volume_options(
        channel_names=channel_names,
        voxel_size=voxel_size,
        voxel_unit=voxel_unit,
        origin=origin,
        presynaptic_channel=presynaptic_channel,
        postsynaptic_channel=postsynaptic_channel,
    )
    # an unknown pipeline or parameter, or an occupied --out, fails before any file is read
    _, params = resolve_pipeline(pipeline, parse_params(param or []))
    check_results_folder(out_dir, overwrite=overwrite, option="--out")

    with progress_display() as progress:
        steps = TimedSteps(progress)
        sources = list(inputs or [])
        with steps.step("read", f"reading {len(sources) + len(channel or [])} file(s)"):
            local = read_local_volumes(options, sources, channel or [])
        chans, selection = local.channels, local.selection
        voxel, unit, start = local.voxel_size, local.voxel_unit, local.origin
        unit_warning = local.unit_warning
        if unit_warning:  # said before the run, and again beside an empty result
            err_console().print(f"warning: {unit_warning}", highlight=False)
        for note in local.conversions:  # said now, and kept among the manifest's warnings
            err_console().print(f"note: {note}", highlight=False)
        with steps.step(
            "detect", f"{pipeline}: {selection.presynaptic} x {selection.postsynaptic}"
        ):
            try:
                result = run_on_a_grid_that_runs(
                    pipeline,
                    chans.channels,
                    selection.presynaptic,
                    selection.postsynaptic,
                    local.voxel_size_nm,
                    params,
                    resolution,
                )
            except DetectionError as exc:  # say which files the detector refused
                used = {
                    n: chans.sources[n] for n in (selection.presynaptic, selection.postsynaptic)
                }
                raise DetectionError(
                    f"{exc.message} (channels: "
                    + ", ".join(f"{n} from {src}" for n, src in used.items())
                    + ")",
                    field="--resolution" if exc.field == "level" else exc.field,
                    hint=exc.hint,
                ) from exc
        with steps.step("table", "synapse table", total=len(chans.channels)) as advance:
            table = synapse_table(
                result.labels,
                chans.channels,
                voxel_size=voxel,
                voxel_unit=unit,
                origin=start,
                progress=advance,
            )
        with steps.step("write", f"writing {out_dir}"):
            manifest = write_results(
                out_dir,
                mask=result.mask,
                labels=result.labels,
                table=table,
                voxel_size=voxel,
                voxel_unit=unit,
                origin=start,
                request={
                    "source": "local",
                    "inputs": chans.sources,
                    "presynaptic_channel": presynaptic_channel,
                    "postsynaptic_channel": postsynaptic_channel,
                },
                pipeline=pipeline,
                parameters=_with_notes(
                    dict(getattr(result, "parameters", None) or params), local.conversions
                ),
                channels={
                    "presynaptic": selection.presynaptic,
                    "postsynaptic": selection.postsynaptic,
                    "all": list(chans.channels),
                },
                timings=steps.timings,
                counts={"synapses_detected": int(result.n_synapses)},
                explanation=(
                    f"{unit_warning}. Also: {result.explanation}"
                    if unit_warning and result.explanation
                    else result.explanation
                ),
                extra={"threshold": _jsonable(getattr(result, "threshold", None))},
                raw=chans.channels,
                overwrite=overwrite,
            )
    shape = "x".join(str(s) for s in chans.shape)
    voxel_row = f"{','.join(f'{v:g}' for v in voxel)} {unit}"
    if unit_warning:
        voxel_row += " (implausible: check the unit)"
    # the detector's physical sizes need a voxel size: say which one it assumed
    assumed = result.parameters.get("voxel_size_nm")
    if local.voxel_size_missing:
        used = (
            f"{pipeline} assumed {','.join(f'{v:g}' for v in assumed)} nm (array tomography)"
            if result.parameters.get("voxel_size_assumed") and assumed
            else f"{pipeline} counted in voxels"
        )
        voxel_row += f"; not in the files: {used}"
        err_console().print(
            f"note: no voxel size in the files or options: {used} for its physical sizes; "
            "the synapse table is in pixels (pass --voxel-size z,y,x in nm for your data)",
            highlight=False,
        )
    rows = [
        ("volume", f"{shape} voxels (z,y,x), {len(chans.channels)} channel(s)"),
        ("voxel size", voxel_row),
        ("channels", f"{selection.presynaptic} (pre), {selection.postsynaptic} (post)"),
        ("pipeline", f"{pipeline} {json.dumps(params)}"),
        ("synapses", _synapse_count(manifest)),
        *(("warning", w) for w in manifest.get("warnings", [])),
        ("foreground voxels", str(manifest["counts"]["foreground_voxels"])),
        ("time", ", ".join(f"{k} {v:.2f}s" for k, v in steps.timings.items())),
        ("results", str(out_dir)),
    ]
    out_console().print(summary_table("synapse-pipelines detect", rows))


def _with_notes(parameters: dict[str, Any], notes: Sequence[str]) -> dict[str, Any]:
    """The result's parameters with the input's conversions first among its warnings."""
    if notes:
        parameters["warnings"] = [*notes, *(parameters.get("warnings") or [])]
    return parameters


def _synapse_count(manifest: dict[str, Any]) -> str:
    """The count, and when it is zero, why (never a silent 0)."""
    count = int(manifest["counts"]["synapses"])
    return str(count) if count else f"0 - {manifest['explanation']}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- evaluate -----------------------------------------------------------------------------


def parameters_help() -> str:
    """Every registered pipeline's parameters with their defaults, for ``detect --help``."""
    parts = []
    for name in available_pipelines():
        pipeline = pipelines.get_pipeline(name)
        default = " (the default)" if name == DEFAULT_PIPELINE else ""
        lines = [f"  {key} = {spec.default:g}: {spec.description}"
                 for key, spec in pipeline.parameters.items()]  # fmt: skip
        parts.append(f"Parameters of {name}{default}:\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


class _DetectCommand(TyperCommand):
    """``detect`` whose help ends with the parameters: built when the help is shown, since
    listing them loads every pipeline (numba included), which no other command needs."""

    @property  # type: ignore[override]
    def epilog(self) -> str | None:
        return reflow(parameters_help())

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass  # click's constructor sets it; the property above supplies it


def register(app: typer.Typer) -> None:
    """Add ``detect`` to the root app."""
    app.command("detect", cls=_DetectCommand)(detect)
