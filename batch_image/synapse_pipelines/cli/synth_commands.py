"""``synapse-pipelines synth``: write a seeded synthetic experiment (channels, truth,
annotation) to try the detectors on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from synapse_pipelines.cli.terminal_output import (
    TimedSteps,
    out_console,
    progress_display,
    summary_table,
)
from synapse_pipelines.core.geometry import parse_zyx
from synapse_pipelines.io.ome_tiff import OutputError, write_volume
from synapse_pipelines.io.staging import check_creatable
from synapse_pipelines.io.volumes import (
    VolumeInputError,
)
from synapse_pipelines.science.synthetic import MATCH_NM, PROFILES, make_experiment

SYNTH_CHANNELS = "channels.ome.tif"
SYNTH_TRUTH = "truth.csv"
SYNTH_ANNOTATION = "annotation.ome.tif"


def synth(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the experiment into.")
    ] = Path("synthetic"),
    shape: Annotated[str, typer.Option(help="Volume shape z,y,x in voxels.")] = "16,256,256",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same experiment).")] = 0,
    profile: Annotated[
        str,
        typer.Option(
            help="realistic (calibrated to real AT data) or sparse (the first build's clean, "
            "well-separated puncta; for old regression tests)."
        ),
    ] = "realistic",
    snr: Annotated[float, typer.Option(help="Punctum brightness, x the calibrated.")] = 1.0,
    density: Annotated[
        float, typer.Option(help="Number of every kind of punctum, x the calibrated.")
    ] = 1.0,
    unpaired: Annotated[
        float, typer.Option(help="Unpaired puncta per channel, x the calibrated.")
    ] = 1.0,
    drift: Annotated[
        float, typer.Option(help="Section-to-section gain and level drift, x the calibrated.")
    ] = 1.0,
    shift_nm: Annotated[
        float, typer.Option(help="Constant in-plane shift of PSD95 against synapsin, nm.")
    ] = 50.0,
    misregistration: Annotated[
        float,
        typer.Option(
            help="Per-section misregistration: 0 = none, 1 = like the real at_example volume."
        ),
    ] = 0.0,
    dtype: Annotated[str, typer.Option(help="uint8 or uint16.")] = "uint8",
    n_synapses: Annotated[
        int | None,
        typer.Option(help="Number of true synapses (--profile sparse only)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace files already in --out.")] = False,
) -> None:
    """Write a seeded synthetic experiment (channels, truth, annotation) to try detect on.

    Files: channels.ome.tif (all channels, named, with voxel sizes), truth.csv (true
    synapse centroids) and annotation.ome.tif (labelled synapses, like collman15v2's
    annotation channel). The default realistic profile looks like real array-tomography
    data (dense puncta, most unpaired, dark background); see docs/detection.md.
    """

    dims = parse_zyx(shape, field="--shape")  # positive integers, or an error naming --shape
    check_creatable(out_dir, option="--out", folder=True)
    targets = [out_dir / n for n in (SYNTH_CHANNELS, SYNTH_TRUTH, SYNTH_ANNOTATION)]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{out_dir} already holds {', '.join(existing)}",
            field="--out",
            hint="choose another folder or pass --overwrite",
        )
    if profile not in PROFILES:
        raise VolumeInputError(
            f"unknown profile {profile!r}", field="--profile", hint=f"use one of {PROFILES}"
        )
    if dtype not in ("uint8", "uint16"):
        raise VolumeInputError(
            f"unsupported dtype {dtype!r}", field="--dtype", hint="use uint8 or uint16"
        )
    kwargs: dict[str, Any] = {"seed": seed, "profile": profile, "dtype": dtype}
    knobs = {
        "--snr": ("snr", snr, 1.0),
        "--density": ("density", density, 1.0),
        "--unpaired": ("unpaired", unpaired, 1.0),
        "--drift": ("drift", drift, 1.0),
        "--shift-nm": ("shift_nm", shift_nm, 50.0),
        "--misregistration": ("misregistration", misregistration, 0.0),
    }
    for option, (key, value, default) in knobs.items():
        if not (np.isfinite(value) and (value >= 0 or key == "shift_nm")):
            raise VolumeInputError(
                f"{option} must be a finite number >= 0, got {value}", field=option
            )
        if value != default:
            if profile == "sparse":
                raise VolumeInputError(
                    f"{option} applies to the realistic profile",
                    field=option,
                    hint="drop it, or use --profile realistic",
                )
            kwargs[key] = value
    if n_synapses is not None:
        if profile != "sparse":
            raise VolumeInputError(
                "--n-synapses applies to --profile sparse",
                field="--n-synapses",
                hint="set the realistic profile's number of synapses with --density",
            )
        kwargs["n_synapses"] = n_synapses
    with progress_display() as progress:
        steps = TimedSteps(progress)
        with steps.step("generate", f"generating {'x'.join(map(str, dims))} (seed {seed})"):
            exp = make_experiment(tuple(dims), **kwargs)
        with steps.step("write", f"writing {out_dir}"):
            names = list(exp.channels)
            write_volume(
                out_dir / SYNTH_CHANNELS,
                np.stack([exp.channels[n] for n in names]),
                voxel_size=exp.voxel_size,
                voxel_unit=exp.voxel_unit,
                channel_names=names,
                name="synthetic experiment",
                attributes={"seed": seed, "profile": profile, **exp.params},
            )
            write_volume(
                out_dir / SYNTH_ANNOTATION,
                exp.annotation,
                voxel_size=exp.voxel_size,
                voxel_unit=exp.voxel_unit,
                name="annotation",
            )
            cents = np.asarray(exp.synapse_centroids, dtype=np.float64).reshape(-1, 3)
            vs = np.asarray(exp.voxel_size, dtype=np.float64)
            truth = pd.DataFrame(
                {
                    "id": np.arange(1, len(cents) + 1, dtype=np.int64),
                    "centroid_z": cents[:, 0],
                    "centroid_y": cents[:, 1],
                    "centroid_x": cents[:, 2],
                    "centroid_z_physical": cents[:, 0] * vs[0],
                    "centroid_y_physical": cents[:, 1] * vs[1],
                    "centroid_x_physical": cents[:, 2] * vs[2],
                }
            )
            truth.to_csv(out_dir / SYNTH_TRUTH, index=False, float_format="%.17g")
    shown = {k: v for k, v in kwargs.items() if k not in ("seed", "profile")}
    rows = [
        ("volume", f"{'x'.join(map(str, dims))} voxels (z,y,x), channels {', '.join(names)}"),
        ("voxel size", f"{','.join(f'{v:g}' for v in exp.voxel_size)} {exp.voxel_unit}"),
        ("profile", f"{profile} {json.dumps(shown)}"),
        ("true synapses", str(len(cents))),
        ("files", ", ".join(str(p) for p in targets)),
        ("next", f"synapse-pipelines detect {out_dir / SYNTH_CHANNELS} --out {out_dir}/results"),
        (
            "then",
            f"synapse-pipelines evaluate {out_dir}/results --truth {out_dir / SYNTH_TRUTH} "
            f"--max-distance {MATCH_NM:g} --unit nm",
        ),
    ]
    out_console().print(summary_table("synapse-pipelines synth", rows))


def register(app: typer.Typer) -> None:
    """Add ``synth`` to the root app."""
    app.command("synth")(synth)
