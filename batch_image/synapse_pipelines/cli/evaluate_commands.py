"""``synapse-pipelines evaluate``: object-level precision, recall and F1 of a results folder
against label volumes or point annotations (CSV, npz), matched one-to-one within a distance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from scipy import ndimage

from synapse_pipelines.cli.local_volume_input import parse_voxel_unit
from synapse_pipelines.cli.results_manifest import manifest_beside, recorded_warnings
from synapse_pipelines.cli.terminal_output import (
    err_console,
    out_console,
    summary_table,
)
from synapse_pipelines.core.geometry import (
    NANOMETERS_PER_UNIT,
    PIXEL,
    normalise_unit,
    parse_zyx,
)
from synapse_pipelines.io.ome_tiff import OutputError
from synapse_pipelines.io.outputs import (
    SYNAPSE_IDS,
    SYNAPSES_CSV,
    check_complete_results,
)
from synapse_pipelines.io.point_annotations import read_point_annotations
from synapse_pipelines.io.staging import check_creatable
from synapse_pipelines.io.volumes import (
    VolumeInputError,
    read_volume_file,
)
from synapse_pipelines.science.evaluation import (
    centroids_from_labels,
    distance_in_voxel_unit,
    evaluate_per_slice,
    evaluate_points,
    length_unit,
    matching_rule,
    points_outside,
)


@dataclass
class _Points:
    centroids: np.ndarray  # global voxel coordinates, z y x (or y x: a 2-D annotation)
    voxel_size: tuple[float, float, float] | None
    description: str
    labels: np.ndarray | None = None  # the label volume, when read from one
    origin: tuple[int, int, int] = (0, 0, 0)
    voxel_unit: str | None = None
    # the volume the points come from (origin, shape), when known: a label volume's, or the
    # manifest's next to a results folder's synapses.csv
    extent: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    # what the detection warned about (the manifest's ``warnings``), for a results folder
    detection_warnings: tuple[str, ...] = ()


POINT_SUFFIXES = (".csv", ".npz")

#: The widest match radius evaluate accepts, nm: a synapse's puncta lie a few hundred nm
#: apart and published scores match within 0.1-1 um, so anything wider is a unit mistake
#: (a distance in nm read in micrometres) that would match everything.
MAX_MATCH_NM = 5000.0
_SYNAPSE_SCALE = "give a synapse-scale distance, e.g. --max-distance 300 --unit nm, or 3 --unit px"


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


def _manifest_extent(manifest: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The analysed box (origin, shape) a results folder's manifest records, if any."""
    try:
        volume = manifest.get("volume") or {}
        shape = tuple(int(v) for v in volume["shape"])
        origin = tuple(int(v) for v in volume.get("origin") or (0,) * len(shape))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # no box recorded: the box is unknown, nothing is checked
    return origin, shape


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
        extent=(tuple(int(v) for v in start), tuple(int(v) for v in data.shape)),
    )


def load_points(
    path: Path,
    option: str,
    *,
    want_labels: bool = False,
    origin: tuple[int, int, int] | None = None,
) -> _Points:

    if path.is_dir() and (path / SYNAPSES_CSV).is_file():  # a results folder
        path = path / (SYNAPSE_IDS if want_labels else SYNAPSES_CSV)
    else:  # volumes without their table and manifest: a run was cut off
        check_complete_results(path, option=option)
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
        points = _points_from_file(path, option)
    else:
        points = _points_from_volume(path, option, origin)
    if path.name in (SYNAPSES_CSV, SYNAPSE_IDS):  # a results folder's: its manifest
        manifest = manifest_beside(path)
        points.extent = points.extent or _manifest_extent(manifest)
        points.detection_warnings = tuple(recorded_warnings(manifest))
    return points


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
    overwrite: Annotated[bool, typer.Option(help="Replace the --json file if it exists.")] = False,
) -> None:
    """Object-level precision, recall and F1 by one-to-one centroid matching.

    Examples:

      synapse-pipelines evaluate results --truth truth.csv --max-distance 300 --unit nm

      synapse-pipelines evaluate results --truth crop.npz --max-distance 3 --unit px

    300 nm (about one punctum) is the project's distance for synthetic truth (synth's
    suggestion, demo's F1); 3 px is the one for weiler14_dev's expert points.
    """

    if json_out is not None:  # before any input is read
        check_json_target(json_out, overwrite=overwrite)
    vs_opt = parse_zyx(voxel_size, field="--voxel-size", kind=float) if voxel_size else None
    t_org = (
        parse_zyx(truth_origin, field="--truth-origin", allow_zero=True) if truth_origin else None
    )
    unit_name = length_unit(unit) if unit is not None else None  # a bad --unit fails first
    vu_opt = parse_voxel_unit(voxel_unit)
    pred = load_points(predicted, "PREDICTED", want_labels=per_slice)
    true = load_points(truth, "--truth", want_labels=per_slice, origin=t_org)
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
    scale, distance, shown_unit = matching_frame(
        max_distance,
        unit,
        voxel_size=vs,
        voxel_unit=vunit,
        extents=[p.extent for p in (pred, true) if p.extent is not None],
    )
    in_voxels = unit_name == PIXEL
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
    out_console().print(summary_table("synapse-pipelines evaluate", rows))
    outside = None if pred.extent is None else points_outside(true.centroids, *pred.extent)
    warning = _outside_warning(len(true.centroids), outside, pred.extent, vs, vunit)
    warnings = [f"the detection warned: {w}" for w in pred.detection_warnings]
    warnings += [] if warning is None else [warning]
    for text in warnings:
        err_console().print(f"[yellow]warning:[/] {escape(text)}")
    if json_out is not None:
        data = result.to_dict(include_matches=True)
        if outside is not None:
            data["truth_outside_volume"] = outside
        if warnings:
            data["warnings"] = warnings
        data["predicted"] = str(predicted)
        data["truth"] = str(truth)
        data["mode"] = mode
        data["rule"] = rule
        data["unit"] = shown_unit
        data["requested_max_distance"] = max_distance
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n")


def check_json_target(path: Path, *, overwrite: bool) -> None:
    """Refuse a --json path that cannot be written, or holds a file and --overwrite is off."""
    check_creatable(path, option="--json", folder=False)
    if path.exists() and not overwrite:
        raise OutputError(
            f"{path} already exists",
            field="--json",
            hint="choose another path, or pass --overwrite to replace it",
        )


def matching_frame(
    max_distance: float,
    unit: str | None,
    *,
    voxel_size: tuple[float, ...] | None,
    voxel_unit: str | None,
    extents: list[tuple[tuple[int, ...], tuple[int, ...]]],
    recorded_in: str = "the predictions or the truth",
) -> tuple[tuple[float, ...], float, str]:
    """How points are matched: (coordinate scale, --max-distance in those coordinates, the
    unit shown). ``unit`` px matches in voxels; any other unit needs the voxel size. A
    radius no synapse comparison means is refused (:func:`_check_distance`)."""
    unit_name = length_unit(unit) if unit is not None else None
    in_voxels = unit_name == PIXEL
    if voxel_size is None and not in_voxels:
        raise VolumeInputError(
            f"the voxel size is not recorded in {recorded_in}",
            field="--voxel-size",
            hint="pass --voxel-size z,y,x (and --voxel-unit), or give --max-distance in "
            "voxels with --unit px",
        )
    if in_voxels:
        scale, distance, shown_unit = (1.0, 1.0, 1.0), max_distance, "px"
    else:
        assert voxel_size is not None
        scale = voxel_size
        distance = (
            max_distance
            if unit is None
            else distance_in_voxel_unit(max_distance, unit_name or "", voxel_unit)
        )
        shown_unit = unit or voxel_unit or "(voxel size unit)"
    _check_distance(
        max_distance,
        unit,
        distance=distance,
        unit_of_distance=PIXEL if in_voxels else voxel_unit,
        scale=scale,
        extents=extents,
    )
    return scale, distance, shown_unit


def _check_distance(
    max_distance: float,
    unit: str | None,
    *,
    distance: float,
    unit_of_distance: str | None,
    scale: tuple[float, ...],
    extents: list[tuple[tuple[int, ...], tuple[int, ...]]],
) -> None:
    """Refuse a match radius no synapse comparison means: beyond :data:`MAX_MATCH_NM`, or
    wider than the volume's largest side (every prediction could then match every truth).

    ``distance`` is ``max_distance`` in ``unit_of_distance`` (the voxel size's unit, or
    pixels), the coordinates matching runs in after scaling by ``scale``."""
    given = f"--max-distance {max_distance:g} {unit or unit_of_distance or ''}".rstrip()
    per_nm = NANOMETERS_PER_UNIT.get(normalise_unit(unit_of_distance) or "")
    if per_nm is not None and distance * per_nm > MAX_MATCH_NM:
        um = distance * per_nm / 1000
        if unit is None:  # the usual cause: a distance in nm read in the voxels' unit
            raise VolumeInputError(
                f"{given} (read in the voxel size's unit, as no --unit was given) is a "
                f"{um:g} um radius, far beyond synapse scale (at most "
                f"{MAX_MATCH_NM / 1000:g} um)",
                field="--max-distance",
                hint=f"say the unit: --max-distance {max_distance:g} --unit nm (or um, px)",
            )
        raise VolumeInputError(
            f"{given} is a {um:g} um radius, far beyond synapse scale (at most "
            f"{MAX_MATCH_NM / 1000:g} um)",
            field="--max-distance",
            hint=_SYNAPSE_SCALE,
        )
    for _, shape in extents:
        sides = [n * s for n, s in zip(shape[::-1], scale[::-1], strict=False)]
        if sides and distance > max(sides):
            size = "x".join(str(n) for n in shape)
            raise VolumeInputError(
                f"{given} is wider than the volume ({size} voxels, largest side "
                f"{max(sides):g} {'px' if unit_of_distance == PIXEL else unit_of_distance}): "
                "every prediction could match every truth point",
                field="--max-distance",
                hint=_SYNAPSE_SCALE,
            )


def _outside_warning(
    n: int,
    outside: int | None,
    extent: tuple[tuple[int, ...], tuple[int, ...]] | None,
    vs: tuple[float, ...] | None,
    vunit: str | None,
) -> str | None:
    """A plain warning when most of the ``n`` truth points (``outside`` of them) lie outside
    the predictions' volume ``extent``: a truth file in physical units (nm) where evaluate
    reads voxels, one relative to a crop, or a truth that covers a larger region."""
    if extent is None or outside is None or n == 0 or outside * 2 <= n:
        return None
    origin, shape = extent
    box = ", ".join(
        f"{axis} {o}..{o + s}"
        for axis, o, s in zip("zyx"[-len(shape) :], origin, shape, strict=True)
    )
    size = f" ({', '.join(f'{v:g}' for v in vs)} {vunit or 'nanometers'})" if vs else ""
    return (
        f"{outside} of {n} truth points ({100 * outside / n:.0f} %) lie outside the "
        f"predictions' volume ({box} voxels), so they cannot match. --truth is read in voxel "
        f"coordinates: if the file holds physical coordinates (e.g. nm), divide them by the "
        f"voxel size{size}; if they are relative to a crop, add the crop's origin; if the "
        f"truth covers a larger region than the predictions, the points outside are simply "
        f"not in this volume and count as misses: keep only those inside the box above."
    )


# -- synth --------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the root app."""
    app.command("evaluate")(evaluate)
