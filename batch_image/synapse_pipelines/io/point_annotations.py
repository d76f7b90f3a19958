"""Reading point annotations: synapse positions marked by experts, as CSV or npz files.

A CSV holds z,y,x or y,x per row (header optional; a ``synapses.csv`` works too); an npz
holds a ``synapses_zyx`` or ``synapses_yx`` array (the weiler14_dev layout). A y,x file is
a single plane, or a 2-D annotation of every plane. Malformed files get an
:class:`~synapse_pipelines.science.evaluation.EvaluationInputError` naming the file, the
line and the fix.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synapse_pipelines.science.evaluation import EvaluationInputError

#: Header names accepted for each axis of a point CSV (lower case).
_AXIS_NAMES = {
    "z": ("z", "centroid_z", "z_voxel", "section", "plane", "slice"),
    "y": ("y", "centroid_y", "row", "y_voxel"),
    "x": ("x", "centroid_x", "col", "column", "x_voxel"),
}
#: Arrays of a point npz (the weiler14_dev layout), most specific first.
NPZ_KEYS = ("synapses_zyx", "synapses_yx")


@dataclass(frozen=True)
class PointAnnotations:
    """Annotated synapse positions in voxel coordinates of the annotated volume.

    ``points`` is (N, 3) z, y, x when ``axes == "zyx"`` and (N, 2) y, x when ``axes ==
    "yx"`` (a single plane, or a 2-D annotation of every plane of a stack).
    """

    points: np.ndarray
    axes: str
    source: str

    @property
    def description(self) -> str:
        return f"{len(self.points)} {','.join(self.axes)} points from {self.source}"


def _annotation_error(path: Path, what: str, option: str, hint: str) -> EvaluationInputError:
    return EvaluationInputError(f"{path}: {what}", field=option, hint=hint)


_CSV_HINT = (
    "write one synapse per line as z,y,x (or y,x for one plane) in voxels, numbers only, "
    "with an optional header line naming the columns (z,y,x or y,x)"
)


def _header_axes(header: list[str]) -> dict[str, int] | None:
    """Column index of each axis named in a header row, or None if it names none."""
    names = [h.strip().lower() for h in header]
    found: dict[str, int] = {}
    for axis, aliases in _AXIS_NAMES.items():
        for alias in aliases:
            if alias in names:
                found[axis] = names.index(alias)
                break
    return found or None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_points_csv(path: str | Path, *, option: str = "--truth") -> PointAnnotations:
    """Points from a CSV: ``z,y,x`` or ``y,x`` per line, header optional.

    Without a header, 3 columns are z, y, x and 2 are y, x. With one, the columns are found
    by name (``z``/``y``/``x``, ``centroid_z``/..., ``row``/``col``), so a results
    ``synapses.csv`` or a ``truth.csv`` from ``synth`` reads as z, y, x. Blank lines and
    lines starting with ``#`` are skipped.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _annotation_error(
            path, f"not a readable text file ({exc})", option, _CSV_HINT
        ) from exc
    rows = [
        (n, [c.strip() for c in row])
        for n, row in enumerate(csv.reader(text.splitlines()), start=1)
        if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
    ]
    if not rows:
        raise _annotation_error(path, "holds no points", option, _CSV_HINT)
    columns: list[int]
    first_line, first = rows[0]
    if all(_is_number(c) for c in first if c):
        width = len(first)
        if width not in (2, 3):
            raise _annotation_error(
                path,
                f"line {first_line} has {width} numbers; a point is z,y,x (3) or y,x (2)",
                option,
                "add a header naming the z,y,x (or y,x) columns, or drop the extra columns",
            )
        axes = "zyx" if width == 3 else "yx"
        columns = list(range(width))
    else:
        named = _header_axes(first)
        if named is None or not {"y", "x"} <= set(named):
            raise _annotation_error(
                path,
                f"the header {','.join(first)!r} names no y and x columns",
                option,
                "name the columns z,y,x (or y,x), or leave the header out",
            )
        axes = "zyx" if "z" in named else "yx"
        columns = [named[a] for a in axes]
        rows = rows[1:]
    points = np.zeros((len(rows), len(axes)), dtype=np.float64)
    for k, (line, row) in enumerate(rows):
        try:
            points[k] = [float(row[c]) for c in columns]
        except (IndexError, ValueError):
            raise _annotation_error(
                path,
                f"line {line} ({','.join(row)!r}) is not {len(axes)} numbers {','.join(axes)}",
                option,
                _CSV_HINT,
            ) from None
    if not np.isfinite(points).all():
        bad = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        raise _annotation_error(
            path, f"line {rows[bad][0]} holds NaN or infinity", option, "give finite numbers"
        )
    return PointAnnotations(points, axes, str(path))


def read_points_npz(path: str | Path, *, option: str = "--truth") -> PointAnnotations:
    """Points from an ``.npz`` holding ``synapses_zyx`` (N, 3) or ``synapses_yx`` (N, 2),
    the layout of weiler14_dev (row, column pixel coordinates)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k in NPZ_KEYS}
            names = list(data.files)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _annotation_error(
            path, f"not a readable .npz ({exc})", option, "save it with numpy.savez"
        ) from exc
    key = next((k for k in NPZ_KEYS if k in arrays), None)
    if key is None:
        raise _annotation_error(
            path,
            f"has no point array (found {', '.join(names) or 'no arrays'})",
            option,
            "store the points as 'synapses_zyx' (N x 3) or 'synapses_yx' (N x 2), in voxels",
        )
    width = 3 if key == "synapses_zyx" else 2
    pts = np.asarray(arrays[key])
    if pts.size == 0:
        pts = pts.reshape(0, width)
    if pts.ndim != 2 or pts.shape[1] != width or not np.issubdtype(pts.dtype, np.number):
        raise _annotation_error(
            path,
            f"'{key}' has shape {pts.shape} and dtype {pts.dtype}; expected (N, {width}) numbers",
            option,
            f"store one {'z,y,x' if width == 3 else 'row,column'} row per synapse",
        )
    pts = pts.astype(np.float64)
    if not np.isfinite(pts).all():
        raise _annotation_error(
            path, f"'{key}' holds NaN or infinity", option, "give finite numbers"
        )
    return PointAnnotations(pts, "zyx" if width == 3 else "yx", f"{path} ({key})")


def read_point_annotations(path: str | Path, *, option: str = "--truth") -> PointAnnotations:
    """Point annotations from a ``.csv`` (:func:`read_points_csv`) or ``.npz``
    (:func:`read_points_npz`); ``option`` names the command-line option in errors."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return read_points_npz(path, option=option)
    return read_points_csv(path, option=option)
