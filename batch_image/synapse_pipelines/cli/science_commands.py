"""Science commands: ``detect`` and ``evaluate`` on local volumes, ``synth`` to make some.

Commands only parse, call the pure modules, and format. Progress and notes go to stderr,
so stdout carries the summary (or JSON) alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from scipy import ndimage

from synapse_pipelines.core import pipelines
from synapse_pipelines.core.errors import (
    DetectionError,
    RequestValidationError,
    SynapsePipelinesError,
)
from synapse_pipelines.core.geometry import normalise_unit, voxel_size_nanometers
from synapse_pipelines.core.pipelines import available_pipelines
from synapse_pipelines.core.request import select_channels
from synapse_pipelines.io.ome_tiff import OutputError, write_volume
from synapse_pipelines.io.outputs import (
    SYNAPSE_IDS,
    SYNAPSES_CSV,
    check_results_folder,
    write_results,
)
from synapse_pipelines.io.volumes import (
    VolumeInputError,
    load_channels,
    parse_triple,
    read_volume_file,
)
from synapse_pipelines.science.evaluation import (
    centroids_from_labels,
    distance_in_voxel_unit,
    evaluate_per_slice,
    evaluate_points,
    length_unit,
    matching_rule,
    read_point_annotations,
)
from synapse_pipelines.science.features import synapse_table
from synapse_pipelines.science.synthetic import PROFILES, make_experiment


def _err() -> Console:
    # created per command, not at import, so the terminal width is read when it is used
    return Console(stderr=True)


def _out() -> Console:
    return Console()


DEFAULT_PIPELINE = "nomads-unsupervised"


@dataclass(frozen=True)
class _ChannelChoice:
    """The two fields of a request that :func:`request.select_channels` reads."""

    presynaptic_channel: str | None
    postsynaptic_channel: str | None


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err(),
        transient=False,
    )


class _Steps:
    """Times named steps and shows each one on a rich progress display."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, description: str, total: int = 1) -> Iterator[Callable[..., Any]]:
        task = self.progress.add_task(description, total=total)
        start = time.perf_counter()

        def advance(*_: Any) -> None:
            self.progress.advance(task)

        yield advance
        self.timings[name] = time.perf_counter() - start
        self.progress.update(task, completed=total)


def _parse_params(items: Sequence[str]) -> dict[str, int | float]:
    params: dict[str, int | float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            number: int | float = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
        if not sep or not key.strip() or not np.isfinite(number):
            raise VolumeInputError(
                f"expected KEY=NUMBER, got {item!r}",
                field="--param",
                hint="write e.g. --param window=3 --param min_size=30",
            )
        params[key.strip()] = number
    return params


def _resolve_pipeline(name: str, params: dict[str, int | float]) -> tuple[Any, dict]:
    """The registered pipeline and its checked parameters (defaults filled in)."""

    pipeline = pipelines.get_pipeline(name)
    try:
        return pipeline, pipelines.validate_parameters(pipeline, params)
    except RequestValidationError as exc:
        listing = "; ".join(
            f"{f.removeprefix('pipeline_parameters.')}: {m}" for f, m in exc.problems
        )
        raise VolumeInputError(
            f"bad parameter for pipeline {name!r}: {listing}",
            field="--param",
            hint="see the pipeline's parameters in docs/detection.md",
        ) from exc


def _summary_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    return table


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
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            "-c",
            help="A channel as NAME=PATH (a 3-D TIFF, .npy or Zarr). Repeat for more.",
            show_default=False,
        ),
    ] = None,
    channel_names: Annotated[
        str | None,
        typer.Option(help="Comma-separated names of a multi-channel INPUT's channels, in order."),
    ] = None,
    presynaptic_channel: Annotated[
        str | None,
        typer.Option(help="Presynaptic channel (default: the one whose name contains 'synapsin')."),
    ] = None,
    postsynaptic_channel: Annotated[
        str | None,
        typer.Option(help="Postsynaptic channel (default: the one whose name contains 'psd')."),
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option(help="Voxel size z,y,x (default: from the file's metadata, else 1,1,1)."),
    ] = None,
    voxel_unit: Annotated[
        str | None,
        typer.Option(
            help="Unit of the voxel size: nanometers, micrometers or millimeters (default: "
            "the file's unit when the size comes from the file, else nanometers)."
        ),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option(help="Global z,y,x voxel of the volume's first voxel (default: 0,0,0)."),
    ] = None,
    pipeline: Annotated[
        str, typer.Option(help=f"Registered pipeline to run ({_pipeline_names()}).")
    ] = DEFAULT_PIPELINE,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Pipeline parameter KEY=NUMBER (e.g. window=3, min_size=30). Repeatable.",
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

      synapse-pipelines detect Synapsin647.tif PSD95_488.npy --voxel-size 70,100,100 -o out

      synapse-pipelines detect stack.npy --channel-names Synapsin647,PSD95_488 -p min_size=50
    """

    names = [n.strip() for n in channel_names.split(",")] if channel_names else None
    vs = parse_triple(voxel_size, option="--voxel-size") if voxel_size else None
    org = parse_triple(origin, option="--origin", kind=int) if origin else None
    unit_opt = None
    if voxel_unit is not None:
        unit_opt = normalise_unit(voxel_unit)
        if unit_opt is None:
            raise VolumeInputError(
                f"unknown unit {voxel_unit!r}",
                field="--voxel-unit",
                hint="use nanometers, micrometers or millimeters",
            )
    # an unknown pipeline or parameter, or an occupied --out, fails before any file is read
    runner, params = _resolve_pipeline(pipeline, _parse_params(param or []))
    check_results_folder(out_dir, overwrite=overwrite, option="--out")

    with _progress() as progress:
        steps = _Steps(progress)
        sources = list(inputs or [])
        with steps.step("read", f"reading {len(sources) + len(channel or [])} file(s)"):
            chans = load_channels(sources, channel or [], channel_names=names)
        selection = select_channels(
            list(chans.channels), _ChannelChoice(presynaptic_channel, postsynaptic_channel)
        )
        if vs is None and chans.voxel_size is None:
            _err().print(
                "note: no voxel size in the files or options; using 1,1,1 pixel "
                "(pass --voxel-size z,y,x for physical units)",
                highlight=False,
            )
        voxel = vs or chans.voxel_size or (1.0, 1.0, 1.0)
        unit = (
            unit_opt
            or (chans.voxel_unit if vs is None else None)
            or ("pixel" if vs is None and chans.voxel_size is None else "nanometers")
        )
        start = org or chans.origin or (0, 0, 0)
        with steps.step(
            "detect", f"{pipeline}: {selection.presynaptic} x {selection.postsynaptic}"
        ):
            try:
                result = runner.run(
                    chans.channels,
                    selection.presynaptic,
                    selection.postsynaptic,
                    voxel_size=voxel_size_nanometers(voxel, unit),
                    **params,
                )
            except DetectionError as exc:  # say which files the detector refused
                used = {
                    n: chans.sources[n] for n in (selection.presynaptic, selection.postsynaptic)
                }
                raise DetectionError(
                    f"{exc.message} (channels: "
                    + ", ".join(f"{n} from {src}" for n, src in used.items())
                    + ")",
                    field=exc.field,
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
                parameters=dict(getattr(result, "parameters", None) or params),
                channels={
                    "presynaptic": selection.presynaptic,
                    "postsynaptic": selection.postsynaptic,
                    "all": list(chans.channels),
                },
                timings=steps.timings,
                counts={"synapses_detected": int(result.n_synapses)},
                explanation=result.explanation,
                extra={"threshold": _jsonable(getattr(result, "threshold", None))},
                overwrite=overwrite,
            )
    shape = "x".join(str(s) for s in chans.shape)
    rows = [
        ("volume", f"{shape} voxels (z,y,x), {len(chans.channels)} channel(s)"),
        ("voxel size", f"{','.join(f'{v:g}' for v in voxel)} {unit}"),
        ("channels", f"{selection.presynaptic} (pre), {selection.postsynaptic} (post)"),
        ("pipeline", f"{pipeline} {json.dumps(params)}"),
        ("synapses", _synapse_count(manifest)),
        ("foreground voxels", str(manifest["counts"]["foreground_voxels"])),
        ("time", ", ".join(f"{k} {v:.2f}s" for k, v in steps.timings.items())),
        ("results", str(out_dir)),
    ]
    _out().print(_summary_table("synapse-pipelines detect", rows))


def _synapse_count(manifest: dict[str, Any]) -> str:
    """The count, and when it is zero, why (never a silent 0)."""
    count = int(manifest["counts"]["synapses"])
    return str(count) if count else f"0 - {manifest['explanation']}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- evaluate -----------------------------------------------------------------------------


@dataclass
class _Points:
    centroids: np.ndarray  # global voxel coordinates, z y x (or y x: a 2-D annotation)
    voxel_size: tuple[float, float, float] | None
    description: str
    labels: np.ndarray | None = None  # the label volume, when read from one
    origin: tuple[int, int, int] = (0, 0, 0)
    voxel_unit: str | None = None


POINT_SUFFIXES = (".csv", ".npz")


def _points_from_file(path: Path, option: str) -> _Points:
    """A point list: CSV (z,y,x or y,x, header optional; a synapses.csv) or npz."""

    points = read_point_annotations(path, option=option)
    meta_path = path.with_name(path.name + ".json")  # a synapses.csv's metadata
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    vs = meta.get("voxel_size")
    return _Points(
        centroids=points.points,
        voxel_size=tuple(float(v) for v in vs) if vs else None,  # type: ignore[arg-type]
        description=points.description,
        voxel_unit=meta.get("voxel_unit"),
    )


def _points_from_volume(
    path: Path, option: str, origin: tuple[int, int, int] | None = None
) -> _Points:


    vf = read_volume_file(path, option=option)
    data = np.asarray(vf.data)
    if data.ndim == 4:
        if data.shape[0] != 1:
            raise VolumeInputError(
                f"{path} holds {data.shape[0]} channels; expected one label or mask volume",
                field=option,
                hint="pass synapse_ids.ome.tif, predictions.ome.tif or an annotation volume",
            )
        data = data[0]
    if not np.issubdtype(data.dtype, np.integer) and data.dtype != bool:
        raise VolumeInputError(
            f"{path} holds {data.dtype} values, not labels",
            field=option,
            hint="pass an integer label volume (0 = background) or a 0/255 mask",
        )
    kind = "labels"
    is_mask = data.dtype == bool
    if data.dtype == np.uint8:
        values = set(np.unique(data).tolist())
        is_mask = values <= {0, 255} or values <= {0, 1}
    if is_mask:
        # a 0/255 mask (predictions.ome.tif) or a 0/1 one (published detections):
        # objects are its 26-connected components
        data, _ = ndimage.label(data > 0, structure=np.ones((3, 3, 3), dtype=bool))
        kind = "mask components"
    _, cents = centroids_from_labels(data)
    start = origin or vf.origin or (0, 0, 0)
    return _Points(
        centroids=cents + np.asarray(start, dtype=np.float64),
        voxel_size=vf.voxel_size,
        description=f"{len(cents)} {kind} from {path}",
        labels=data,
        origin=tuple(int(v) for v in start),  # type: ignore[arg-type]
        voxel_unit=vf.voxel_unit,
    )


def _load_points(
    path: Path,
    option: str,
    *,
    want_labels: bool = False,
    origin: tuple[int, int, int] | None = None,
) -> _Points:

    if path.is_dir() and (path / SYNAPSES_CSV).is_file():  # a results folder
        path = path / (SYNAPSE_IDS if want_labels else SYNAPSES_CSV)
    if not path.exists():
        raise VolumeInputError(f"no such file: {path}", field=option, hint="check the path")
    if path.suffix.lower() in POINT_SUFFIXES:
        if want_labels:
            raise VolumeInputError(
                f"--per-slice needs label volumes, and {path} is a list of points",
                field=option,
                hint="pass synapse_ids.ome.tif (or a results folder) and an annotation volume",
            )
        if origin is not None:
            raise VolumeInputError(
                "--truth-origin applies to a truth volume; point files are already global",
                field="--truth-origin",
                hint="drop --truth-origin, or pass the annotation volume",
            )
        return _points_from_file(path, option)
    return _points_from_volume(path, option, origin)


def evaluate(
    predicted: Annotated[
        Path,
        typer.Argument(
            help="Predictions: a results folder, its synapses.csv, synapse_ids.ome.tif or "
            "predictions.ome.tif (0/255 mask, split into 26-connected objects), or a point "
            "CSV / npz like --truth.",
            show_default=False,
        ),
    ],
    truth: Annotated[
        Path,
        typer.Option(
            help="Ground truth in voxels: a point CSV (z,y,x per line, or y,x for one plane "
            "or a 2-D annotation of every plane; header optional; synapses.csv and synth's "
            "truth.csv work too), an .npz with a 'synapses_zyx' or 'synapses_yx' array, or "
            "a labelled annotation volume (TIFF/.npy/Zarr).",
            show_default=False,
        ),
    ],
    max_distance: Annotated[
        float,
        typer.Option(
            help="Largest centroid distance of a match, in --unit.",
            show_default=False,
        ),
    ],
    unit: Annotated[
        str | None,
        typer.Option(
            help="Unit of --max-distance: nm, um, mm, or px (voxels; matching then runs in "
            "voxel coordinates). Default: the voxel size's unit.",
        ),
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option(help="Voxel size z,y,x (default: from the predictions' metadata)."),
    ] = None,
    voxel_unit: Annotated[
        str | None,
        typer.Option(help="Unit of --voxel-size (default: nanometers)."),
    ] = None,
    truth_origin: Annotated[
        str | None,
        typer.Option(
            help="Global z,y,x voxel of a truth volume's first voxel (default: recorded in "
            "the file, else 0,0,0)."
        ),
    ] = None,
    per_slice: Annotated[
        bool,
        typer.Option(
            "--per-slice",
            help="2-D evaluation: each (label, z-slice) piece is an object and matches stay "
            "within a slice (how published collman15v2 scores were computed). Needs label "
            "volumes on both sides.",
        ),
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the scores (and matches) as JSON here."),
    ] = None,
) -> None:
    """Object-level precision, recall and F1 by one-to-one centroid matching.

    Examples:

      synapse-pipelines evaluate results --truth truth.csv --max-distance 300 --unit nm

      synapse-pipelines evaluate results --truth crop.npz --max-distance 3 --unit px
    """

    vs_opt = parse_triple(voxel_size, option="--voxel-size") if voxel_size else None
    t_org = parse_triple(truth_origin, option="--truth-origin", kind=int) if truth_origin else None
    unit_name = length_unit(unit) if unit is not None else None  # a bad --unit fails first
    vu_opt = None
    if voxel_unit is not None:
        vu_opt = normalise_unit(voxel_unit)
        if vu_opt is None:
            raise VolumeInputError(
                f"unknown unit {voxel_unit!r}",
                field="--voxel-unit",
                hint="use nanometers, micrometers or millimeters",
            )
    pred = _load_points(predicted, "PREDICTED", want_labels=per_slice)
    true = _load_points(truth, "--truth", want_labels=per_slice, origin=t_org)
    if pred.centroids.ndim == 2 and pred.centroids.shape[1] == 2:
        raise VolumeInputError(
            f"{pred.description}: predictions need z,y,x (a 2-D list can only be the truth)",
            field="PREDICTED",
            hint="pass the results folder or its synapses.csv, or give the points a z column",
        )
    if vs_opt is not None:
        vs, vunit = vs_opt, vu_opt or "nanometers"
    elif pred.voxel_size is not None:
        vs, vunit = pred.voxel_size, pred.voxel_unit
    else:
        vs, vunit = true.voxel_size, true.voxel_unit
    in_voxels = unit_name == "voxels"
    if vs is None and not in_voxels:
        raise VolumeInputError(
            "the voxel size is not recorded in the predictions or the truth",
            field="--voxel-size",
            hint="pass --voxel-size z,y,x (and --voxel-unit), or give --max-distance in "
            "voxels with --unit px",
        )
    if in_voxels:
        scale, distance, shown_unit = (1.0, 1.0, 1.0), max_distance, "px"
    else:
        assert vs is not None
        scale = vs
        distance = (
            max_distance
            if unit is None
            else distance_in_voxel_unit(max_distance, unit_name or "", vunit)
        )
        shown_unit = unit or vunit or "(voxel size unit)"
    if per_slice:
        assert pred.labels is not None and true.labels is not None
        if pred.labels.shape != true.labels.shape or pred.origin != true.origin:
            raise VolumeInputError(
                f"per-slice evaluation needs both volumes on one box; predictions "
                f"{pred.labels.shape} at {pred.origin}, truth {true.labels.shape} at "
                f"{true.origin}",
                field="--truth",
                hint="cut the annotation from the same z,y,x box (or set --truth-origin)",
            )
        result = evaluate_per_slice(
            pred.labels, true.labels, max_distance=distance, voxel_size=scale
        )
        mode = "2-D per slice"
    else:
        result = evaluate_points(
            pred.centroids, true.centroids, max_distance=distance, voxel_size=scale
        )
        mode = "2-D (y,x)" if true.centroids.shape[1] == 2 else "3-D"
    rule = matching_rule(
        mode=mode,
        max_distance=max_distance,
        unit=shown_unit,
        voxel_size=scale if in_voxels else vs,  # type: ignore[arg-type]
        voxel_unit=None if in_voxels else vunit,
    )
    rows = [
        ("predicted", pred.description),
        ("truth", true.description),
        ("matching", rule),
        ("TP / FP / FN", f"{result.tp} / {result.fp} / {result.fn}"),
        ("precision", f"{result.precision:.4f}"),
        ("recall", f"{result.recall:.4f}"),
        ("F1", f"{result.f1:.4f}"),
    ]
    _out().print(_summary_table("synapse-pipelines evaluate", rows))
    if json_out is not None:
        data = result.to_dict(include_matches=True)
        data["predicted"] = str(predicted)
        data["truth"] = str(truth)
        data["mode"] = mode
        data["rule"] = rule
        data["unit"] = shown_unit
        data["requested_max_distance"] = max_distance
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n")


# -- synth --------------------------------------------------------------------------------

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


    dims = parse_triple(shape, option="--shape", kind=int)
    if min(dims) < 1:
        raise VolumeInputError(
            f"every axis needs at least one voxel, got {shape!r}",
            field="--shape",
            hint="write e.g. --shape 16,256,256",
        )
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
    with _progress() as progress:
        steps = _Steps(progress)
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
    suggested = 3 * float(exp.voxel_size[1])  # ~ one punctum: a match at light resolution
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
            f"--max-distance {suggested:g} --unit nm",
        ),
    ]
    _out().print(_summary_table("synapse-pipelines synth", rows))


def register(app: typer.Typer) -> None:
    """Add ``detect``, ``evaluate`` and ``synth`` to the root app."""
    app.command("detect")(detect)
    app.command("evaluate")(evaluate)
    app.command("synth")(synth)


__all__ = ["SynapsePipelinesError", "detect", "evaluate", "register", "synth"]
