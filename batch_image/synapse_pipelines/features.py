"""The synapse table: one row per labelled object, with geometry and per-channel features.

Pure: arrays in, a :class:`pandas.DataFrame` out. Nothing here loops over voxels in Python;
per-object reductions use one sort of the foreground voxels plus ``np.add.reduceat`` /
``np.minimum.reduceat``, and the windowed sums gather each window's voxels by fancy
indexing (sparse objects) or use one 2-D summed-area table per z-slice (dense objects).

Columns (stable; the report and publishing steps read them by name)
-------------------------------------------------------------------
==========================  ===========================================================
``id``                      label id (uint64), rows sorted by id
``centroid_z|y|x``          centroid in voxels, in the experiment's global frame
                            (``origin`` added), float
``centroid_z|y|x_physical`` centroid times the voxel size, in ``voxel_unit``
``volume_voxels``           number of voxels in the object
``volume_physical``         ``volume_voxels`` times the voxel volume (``voxel_unit`` cubed)
``bbox_z0|y0|x0``           first voxel of the bounding box (global, inclusive)
``bbox_z1|y1|x1``           end of the bounding box (global, exclusive: half-open like
                            :class:`synapse_pipelines.geometry.Box`)
``window_voxels``           voxels covered by the feature window after clipping (<= 400)
``window_clipped``          True when the window was clipped by the volume border
``<channel>_window_zsum``   the original NOMADS feature (below), one per channel
``<channel>_mean``          mean raw intensity of the channel inside the object
==========================  ===========================================================

The windowed feature
--------------------
The original (nomads_cloud, 2018) z-scored every channel *per z-slice* (each slice minus
its mean, divided by its population standard deviation) and summed the z-scored values in
the slices ``[c-2:c+2]`` along z and ``[c-5:c+5]`` along y and x around the integer
centroid ``c``: an asymmetric 4 x 10 x 10 window, offsets -2..+1 in z and -5..+4 in y/x.
We reproduce that window exactly, anchored at the centroid rounded down to a voxel
(``floor``; the centroid of an object always lies inside the volume, so the anchor does).

The original silently dropped synapses whose window crossed the volume border, so the
table had fewer rows than the detector found objects. Rule here: **every object gets a
row**; the window is clipped to the volume, ``window_voxels`` records how many voxels it
covered and ``window_clipped`` flags the clipped rows. The sum is a sum (not rescaled),
so a consumer who wants the original's population filters ``~window_clipped`` and one who
wants a density divides by ``window_voxels``.

A slice whose standard deviation is 0 (a flat slice) z-scores to 0 everywhere, never NaN.

Because the z-score is affine per slice, the window sum is computed exactly from raw sums:
``sum_z (S_z - n_yx * mean_z) / std_z`` where ``S_z`` is the raw sum of the y-x window in
slice ``z`` (an exact int64 sum for integer data) and ``n_yx`` its area.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from synapse_pipelines.errors import SynapsePipelinesError

#: Window of the original feature, as half-open offsets from the anchor voxel (z, y, x).
WINDOW_OFFSETS: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = (
    (-2, 2),
    (-5, 5),
    (-5, 5),
)
#: Voxels in an unclipped window (4 * 10 * 10).
WINDOW_FULL_VOXELS: int = math.prod(b - a for a, b in WINDOW_OFFSETS)

WINDOW_SUFFIX = "_window_zsum"
MEAN_SUFFIX = "_mean"
SCHEMA_VERSION = 1

AXES = ("z", "y", "x")
CENTROID_COLUMNS = tuple(f"centroid_{a}" for a in AXES)
PHYSICAL_COLUMNS = tuple(f"centroid_{a}_physical" for a in AXES)
BBOX_COLUMNS = tuple(f"bbox_{a}0" for a in AXES) + tuple(f"bbox_{a}1" for a in AXES)
#: Columns present in every table, in order, before the per-channel feature columns.
BASE_COLUMNS: tuple[str, ...] = (
    "id",
    *CENTROID_COLUMNS,
    *PHYSICAL_COLUMNS,
    "volume_voxels",
    "volume_physical",
    *BBOX_COLUMNS,
    "window_voxels",
    "window_clipped",
)


class FeatureInputError(SynapsePipelinesError):
    """The label volume or a channel cannot be used to build the synapse table."""

    error_type = "FeatureInputError"


def window_column(channel: str) -> str:
    return f"{channel}{WINDOW_SUFFIX}"


def mean_column(channel: str) -> str:
    return f"{channel}{MEAN_SUFFIX}"


def table_channels(table: pd.DataFrame) -> list[str]:
    """Channel names of a synapse table, in column order (from its feature columns)."""
    if "channels" in table.attrs:
        return list(table.attrs["channels"])
    return [c[: -len(WINDOW_SUFFIX)] for c in table.columns if c.endswith(WINDOW_SUFFIX)]


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The per-channel feature columns (window sums, then means), in channel order."""
    chans = table_channels(table)
    return [window_column(c) for c in chans] + [mean_column(c) for c in chans]


def _accumulator(dtype: np.dtype) -> type:
    """Exact int64 sums for integers up to 32 bits; float64 otherwise.

    64-bit integers (e.g. a uint64 annotation channel passed as a feature channel) would
    wrap around in int64, so they are summed in float64 instead: approximate, never wrong
    by overflow.
    """
    if np.issubdtype(dtype, np.integer) and np.dtype(dtype).itemsize <= 4:
        return np.int64
    return np.float64


@dataclass(frozen=True)
class ObjectGeometry:
    """Per-object reductions of a label volume (local voxel coordinates, no origin)."""

    ids: np.ndarray  # (n,) uint64, sorted
    counts: np.ndarray  # (n,) int64
    centroids: np.ndarray  # (n, 3) float64, z y x
    bbox_min: np.ndarray  # (n, 3) int64, inclusive
    bbox_max: np.ndarray  # (n, 3) int64, inclusive
    # foreground voxels (flat C-order indices) grouped by object, and the group starts:
    # lets callers reduce any channel over the objects with one reduceat
    order_flat: np.ndarray
    starts: np.ndarray

    def reduce_sum(self, volume: np.ndarray) -> np.ndarray:
        """Sum of ``volume`` inside each object (exact int64 for integer data)."""
        if self.ids.size == 0:
            return np.zeros(0)
        values = volume.reshape(-1)[self.order_flat]
        acc = _accumulator(values.dtype)
        return np.add.reduceat(values.astype(acc, copy=False), self.starts)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise FeatureInputError(
            f"the label volume must be 3-D (z, y, x); got shape {labels.shape}",
            field="labels",
            hint="pass one z, y, x volume of integer synapse ids (0 = background)",
        )
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise FeatureInputError(
            f"the label volume must hold integer ids; got dtype {labels.dtype}",
            field="labels",
            hint="label a mask first (e.g. scipy.ndimage.label) or pass the synapse ids volume",
        )
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0:
        raise FeatureInputError(
            "the label volume holds negative ids",
            field="labels",
            hint="ids must be >= 0, with 0 for background",
        )
    return labels


def object_geometry(labels: np.ndarray) -> ObjectGeometry:
    """Ids, voxel counts, centroids and bounding boxes of every non-zero label.

    One stable sort of the foreground voxels groups them by id; every reduction is then a
    ``reduceat`` over those groups. Cost O(f log f) for f foreground voxels, plus one pass
    over the volume to find them; memory about 40 bytes per foreground voxel.
    """
    labels = _check_labels(labels)
    flat = labels.reshape(-1)
    fg = np.flatnonzero(flat)
    values = flat[fg]
    order = np.argsort(values, kind="stable")
    order_flat = fg[order]
    sorted_ids = values[order]
    if sorted_ids.size == 0:
        empty3f = np.zeros((0, 3), dtype=np.float64)
        empty3i = np.zeros((0, 3), dtype=np.int64)
        return ObjectGeometry(
            ids=np.zeros(0, dtype=np.uint64),
            counts=np.zeros(0, dtype=np.int64),
            centroids=empty3f,
            bbox_min=empty3i,
            bbox_max=empty3i,
            order_flat=order_flat,
            starts=np.zeros(0, dtype=np.int64),
        )
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    counts = np.diff(np.r_[starts, sorted_ids.size]).astype(np.int64)
    coords = np.unravel_index(order_flat, labels.shape)
    centroids = np.empty((starts.size, 3), dtype=np.float64)
    bmin = np.empty((starts.size, 3), dtype=np.int64)
    bmax = np.empty((starts.size, 3), dtype=np.int64)
    for axis, c in enumerate(coords):  # three axes, not voxels
        centroids[:, axis] = np.add.reduceat(c, starts) / counts
        bmin[:, axis] = np.minimum.reduceat(c, starts)
        bmax[:, axis] = np.maximum.reduceat(c, starts)
    return ObjectGeometry(
        ids=sorted_ids[starts].astype(np.uint64),
        counts=counts,
        centroids=centroids,
        bbox_min=bmin,
        bbox_max=bmax,
        order_flat=order_flat,
        starts=starts,
    )


def slice_zscore_stats(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-z-slice mean and population standard deviation (float64), as the original used.

    Integer data up to 16 bits: exact integer sums ``S`` and ``SS`` per slice, then
    ``var = (n * SS - S**2) / n**2`` in Python integers (no rounding before the final
    division; cheaper than a float copy). Other data: float64 two-pass per slice.
    """
    z = volume.shape[0]
    mean = np.zeros(z, dtype=np.float64)
    std = np.zeros(z, dtype=np.float64)
    n = int(np.prod(volume.shape[1:]))
    if n == 0:
        return mean, std
    small_int = np.issubdtype(volume.dtype, np.integer) and volume.dtype.itemsize <= 2
    for k in range(z):  # one slice at a time: temporaries stay one slice big
        if small_int:
            # the narrowest type that holds a square: uint8 -> uint16, uint16 -> uint32
            square_type = {1: np.uint16, 2: np.uint32}[volume.dtype.itemsize]
            wide = volume[k].astype(np.int64 if volume.dtype.kind == "i" else square_type)
            total = int(wide.sum(dtype=np.int64))
            total_sq = int(np.multiply(wide, wide).sum(dtype=np.int64))
            mean[k] = total / n
            std[k] = math.sqrt(max(n * total_sq - total * total, 0)) / n
        else:
            s = volume[k].astype(np.float64)
            mean[k] = s.mean()
            std[k] = s.std()
    return mean, std


def window_bounds(
    anchors: np.ndarray, shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped half-open window ``[lo, hi)`` per object and axis, and the covered voxels."""
    offs = np.asarray(WINDOW_OFFSETS, dtype=np.int64)
    lo = np.clip(anchors + offs[:, 0], 0, np.asarray(shape, dtype=np.int64))
    hi = np.clip(anchors + offs[:, 1], 0, np.asarray(shape, dtype=np.int64))
    voxels = np.prod(hi - lo, axis=1)
    return lo, hi, voxels


def window_zscore_sums(
    volume: np.ndarray,
    anchors: np.ndarray,
    *,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Sum of the per-slice z-scored ``volume`` over each object's clipped window.

    ``anchors``: (n, 3) integer anchor voxels (floor of the centroids). The z-score is
    affine per slice, so each slice's contribution is ``(S - area * mean) / std`` with
    ``S`` the raw (exact int64 for integer data) sum of the window's part in that slice.
    Two exact strategies, chosen by cost (``method="auto"``):

    - ``"gather"``: read the 4 x 10 x 10 voxels of every window by fancy indexing, in
      chunks of objects; costs ~400 reads per object, best when objects are sparse;
    - ``"sat"``: one 2-D summed-area table per z-slice touched, four reads per object and
      slice; costs one pass over those slices, best when objects are dense.

    ``stats`` (per-slice mean and std) may be given when the volume is a block of a larger
    one. A slice with std 0 contributes 0.
    """
    anchors = np.asarray(anchors, dtype=np.int64).reshape(-1, 3)
    n = anchors.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    mean, std = stats if stats is not None else slice_zscore_stats(volume)
    inv_std = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    if method == "auto":
        method = "gather" if n * WINDOW_FULL_VOXELS * 4 < volume.size else "sat"
    acc = _accumulator(volume.dtype)
    if method == "gather":
        offs = [np.arange(a, b, dtype=np.int64) for a, b in WINDOW_OFFSETS]
        chunk = 8192  # 8192 objects x 400 voxels x 8 bytes = 26 MB of temporaries
        for c0 in range(0, n, chunk):
            a = anchors[c0 : c0 + chunk]
            idx, ok = [], []
            for axis in range(3):
                raw_idx = a[:, axis, None] + offs[axis]
                ok.append((raw_idx >= 0) & (raw_idx < volume.shape[axis]))
                idx.append(np.clip(raw_idx, 0, volume.shape[axis] - 1))
            vals = volume[
                idx[0][:, :, None, None], idx[1][:, None, :, None], idx[2][:, None, None, :]
            ]
            inside = ok[1][:, None, :, None] & ok[2][:, None, None, :]
            raw = np.where(inside, vals, 0).sum(axis=(2, 3), dtype=acc)  # (m, 4) per slice
            area = (ok[1].sum(axis=1) * ok[2].sum(axis=1)).astype(np.float64)
            zk = idx[0]
            contrib = (raw - area[:, None] * mean[zk]) * inv_std[zk]
            out[c0 : c0 + chunk] = np.where(ok[0], contrib, 0.0).sum(axis=1)
        return out
    if method != "sat":
        raise ValueError(f"unknown method {method!r}")
    lo, hi, _ = window_bounds(anchors, volume.shape)
    area = ((hi[:, 1] - lo[:, 1]) * (hi[:, 2] - lo[:, 2])).astype(np.float64)
    for k in range(int(lo[:, 0].min()), int(hi[:, 0].max())):
        sel = np.flatnonzero((lo[:, 0] <= k) & (k < hi[:, 0]))
        if sel.size == 0 or std[k] == 0:  # a flat slice z-scores to 0 everywhere
            continue
        sat = np.zeros((volume.shape[1] + 1, volume.shape[2] + 1), dtype=acc)
        np.cumsum(volume[k], axis=0, dtype=acc, out=sat[1:, 1:])
        np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
        y0, y1, x0, x1 = lo[sel, 1], hi[sel, 1], lo[sel, 2], hi[sel, 2]
        raw = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
        out[sel] += (raw - area[sel] * mean[k]) * inv_std[k]
    return out


def _check_channel(name: str, volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.shape != shape:
        raise FeatureInputError(
            f"channel {name!r} has shape {volume.shape} but the labels have shape {shape}",
            field=f"channels[{name}]",
            hint="pass channels cut from the same box as the label volume",
        )
    if not (np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)):
        raise FeatureInputError(
            f"channel {name!r} has unsupported dtype {volume.dtype}",
            field=f"channels[{name}]",
            hint="pass integer or floating-point intensities",
        )
    return volume


def synapse_table(
    labels: np.ndarray,
    channels: Mapping[str, np.ndarray],
    *,
    voxel_size: tuple[float, float, float],
    voxel_unit: str = "nanometers",
    origin: tuple[int, int, int] = (0, 0, 0),
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One row per synapse id of ``labels`` with geometry and per-channel features.

    ``labels``: z, y, x integer ids (0 = background). ``channels``: name -> z, y, x
    intensities of the same shape (every channel of the experiment). ``voxel_size``: z, y,
    x size of a voxel in ``voxel_unit``. ``origin``: global voxel coordinates of
    ``labels[0, 0, 0]`` (e.g. the request's z/y/x range starts). See the module docstring
    for the columns and the window rule. ``table.attrs`` carries the metadata.
    ``progress``, if given, is called with each channel's name once its features are done.
    """
    labels = _check_labels(labels)
    if len(voxel_size) != 3 or not all(
        math.isfinite(float(v)) and float(v) > 0 for v in voxel_size
    ):
        raise FeatureInputError(
            f"voxel size must be three positive numbers (z, y, x); got {tuple(voxel_size)}",
            field="voxel_size",
            hint="read it from the experiment's coordinate frame",
        )
    if len(origin) != 3:
        raise FeatureInputError(
            f"origin must be three integers (z, y, x); got {tuple(origin)}", field="origin"
        )
    vs = np.asarray([float(v) for v in voxel_size], dtype=np.float64)
    org = np.asarray([int(v) for v in origin], dtype=np.int64)
    checked = {str(k): _check_channel(str(k), v, labels.shape) for k, v in channels.items()}

    geo = object_geometry(labels)
    n = geo.ids.size
    anchors = np.floor(geo.centroids).astype(np.int64)
    _, _, wvox = window_bounds(anchors, labels.shape)

    cols: dict[str, np.ndarray] = {"id": geo.ids}
    centroid_global = geo.centroids + org
    for axis, name in enumerate(CENTROID_COLUMNS):
        cols[name] = centroid_global[:, axis]
    for axis, name in enumerate(PHYSICAL_COLUMNS):
        cols[name] = centroid_global[:, axis] * vs[axis]
    cols["volume_voxels"] = geo.counts
    cols["volume_physical"] = geo.counts * float(np.prod(vs))
    for axis, a in enumerate(AXES):
        cols[f"bbox_{a}0"] = geo.bbox_min[:, axis] + org[axis]
    for axis, a in enumerate(AXES):
        cols[f"bbox_{a}1"] = geo.bbox_max[:, axis] + 1 + org[axis]
    cols["window_voxels"] = wvox.astype(np.int64)
    cols["window_clipped"] = wvox < WINDOW_FULL_VOXELS
    means: dict[str, np.ndarray] = {}
    for name, vol in checked.items():
        cols[window_column(name)] = window_zscore_sums(vol, anchors)
        means[mean_column(name)] = (
            geo.reduce_sum(vol) / geo.counts if n else np.zeros(0, dtype=np.float64)
        )
        if progress is not None:
            progress(name)
    cols.update(means)  # all window sums first, then all means
    table = pd.DataFrame(cols)  # insertion order: base columns, window sums, means
    table.attrs.update(
        {
            "schema_version": SCHEMA_VERSION,
            "voxel_size": vs.tolist(),
            "voxel_unit": voxel_unit,
            "origin": org.tolist(),
            "shape": list(labels.shape),
            "channels": list(checked),
            "window_offsets": [list(w) for w in WINDOW_OFFSETS],
            "window_full_voxels": WINDOW_FULL_VOXELS,
            "window_anchor": "floor(centroid)",
            "zscore": "per z-slice, population std; flat slice -> 0",
        }
    )
    return table


_DTYPES = {
    "id": "uint64",
    "volume_voxels": "int64",
    "window_voxels": "int64",
    "window_clipped": "bool",
    **{c: "int64" for c in BBOX_COLUMNS},
}


def write_synapse_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as a plain CSV (header row, no index) plus ``<path>.json`` metadata.

    The CSV stays plain so that spreadsheet tools, R and ``pandas.read_csv`` read it as is;
    the metadata (voxel size and unit, origin, window rule) goes in a small companion JSON
    and is also copied into the results manifest by :mod:`synapse_pipelines.outputs`.
    Floats are written with 17 significant digits, so a round trip is exact.
    """
    path = Path(path)
    table.to_csv(path, index=False, float_format="%.17g", lineterminator="\n")
    meta_path = path.with_name(path.name + ".json")
    meta_path.write_text(json.dumps(dict(table.attrs), indent=2, sort_keys=True) + "\n")
    return path


def read_synapse_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_synapse_table` (metadata into ``attrs`` if present)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureInputError(
            f"no synapse table at {path}",
            field="synapses.csv",
            hint="pass the synapses.csv of a results folder",
        )
    try:
        head = pd.read_csv(path, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FeatureInputError(
            f"{path} is not a readable CSV ({exc})", field="synapses.csv"
        ) from exc
    dtypes = {c: t for c, t in _DTYPES.items() if c in head.columns}
    table = pd.read_csv(path, dtype=dtypes)
    meta_path = path.with_name(path.name + ".json")
    if meta_path.is_file():
        table.attrs.update(json.loads(meta_path.read_text()))
    return table
