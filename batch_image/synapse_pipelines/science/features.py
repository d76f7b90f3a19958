"""The synapse table: one row per labelled object, with geometry and per-channel features.

Pure: arrays in, a :class:`pandas.DataFrame` out. Owns the columns (below), the
per-object reductions of a label volume (:func:`object_geometry`, and
:class:`ObjectSums`, reducible over blocks) and the table's assembly
(:func:`assemble_table`, :func:`synapse_table`). The windowed feature (the window rule,
per-slice z-score statistics, window sums) is
:mod:`synapse_pipelines.science.window_features`'s; reading and writing ``synapses.csv``
is :mod:`synapse_pipelines.io.synapse_table_files`'s.

Nothing here loops over voxels in Python; per-object reductions use one sort of the
foreground voxels plus ``np.add.reduceat`` / ``np.minimum.reduceat``, and the windowed
sums gather each window's voxels by fancy indexing (sparse objects) or use one 2-D
summed-area table per z-slice (dense objects).

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
                            :class:`synapse_pipelines.core.geometry.Box`)
``window_voxels``           voxels covered by the feature window after clipping (<= 400)
``window_clipped``          True when the window was clipped by the volume border
``<channel>_window_zsum``   the original NOMADS feature (``window_features``), one per
                            channel
``<channel>_mean``          mean raw intensity of the channel inside the object
==========================  ===========================================================

Every object gets a row: a window that crosses the volume border is clipped
(``window_voxels``, ``window_clipped``); see :mod:`~synapse_pipelines.science.window_features`.

Decomposition (for a blockwise run; tested to give the identical table)
-----------------------------------------------------------------------
:func:`synapse_table` is :func:`assemble_table` over one block. For any tiling of the
volume into boxes ``b`` (start ``b0``), with ``labels`` already carrying final ids
(``slice_sums`` and ``window_raw_sums`` are :mod:`~synapse_pipelines.science.window_features`'s)::

    objects = sum(object_sums(labels[b], {c: ch[c][b]}, offset=b0))      # ObjectSums.__add__
    stats = {c: sum(slice_sums(ch[c][b], z_offset=b0[0], depth=Z))}     # SliceSums.__add__
    anchors = objects.anchors()                                          # after the reduce
    raw = {c: sum(window_raw_sums(ch[c][b], anchors, offset=b0))}        # (n, 4) arrays
    table = assemble_table(objects, raw, stats, shape=(Z, Y, X), voxel_size=..., origin=...)

No halo is needed: each block adds only its own voxels' contributions. All partials are
exact integers for 8/16-bit channels, so the table is bit-identical to the single job
(floats and 32/64-bit channels: equal up to float64 summation order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.science.window_features import (
    WINDOW_FULL_VOXELS,
    WINDOW_OFFSETS,
    SliceSums,
    exact_sum_dtype,
    finish_window_sums,
    slice_sums,
    window_bounds,
    window_raw_sums,
)

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


@dataclass(frozen=True)
class ObjectGeometry:
    """Per-object reductions of a label volume (local voxel coordinates, no origin)."""

    ids: np.ndarray  # (n,) uint64, sorted
    counts: np.ndarray  # (n,) int64
    coord_sums: np.ndarray  # (n, 3) int64, z y x: exact, so partial sums reduce exactly
    bbox_min: np.ndarray  # (n, 3) int64, inclusive
    bbox_max: np.ndarray  # (n, 3) int64, inclusive
    # foreground voxels (flat C-order indices) grouped by object, and the group starts:
    # lets callers reduce any channel over the objects with one reduceat
    order_flat: np.ndarray
    starts: np.ndarray

    @property
    def centroids(self) -> np.ndarray:
        """(n, 3) float64 centroids, z y x."""
        return _centroids(self.coord_sums, self.counts)

    def reduce_sum(self, volume: np.ndarray) -> np.ndarray:
        """Sum of ``volume`` inside each object (exact int64 for integer data)."""
        if self.ids.size == 0:
            return np.zeros(0, dtype=exact_sum_dtype(volume.dtype))
        values = volume.reshape(-1)[self.order_flat]
        acc = exact_sum_dtype(values.dtype)
        return np.add.reduceat(values.astype(acc, copy=False), self.starts)


def window_anchors(coord_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n, 3) int64 anchors of the feature windows: the floor of each centroid (one
    definition, so a blockwise reduce places every window where the single job does)."""
    return np.floor(_centroids(coord_sums, counts)).astype(np.int64)


def _centroids(coord_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    if counts.size == 0:
        return np.zeros((0, 3), dtype=np.float64)
    return coord_sums / counts[:, None]


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
    """Ids, voxel counts, coordinate sums and bounding boxes of every non-zero label.

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
        empty3i = np.zeros((0, 3), dtype=np.int64)
        return ObjectGeometry(
            ids=np.zeros(0, dtype=np.uint64),
            counts=np.zeros(0, dtype=np.int64),
            coord_sums=empty3i,
            bbox_min=empty3i,
            bbox_max=empty3i,
            order_flat=order_flat,
            starts=np.zeros(0, dtype=np.int64),
        )
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    counts = np.diff(np.r_[starts, sorted_ids.size]).astype(np.int64)
    coords = np.unravel_index(order_flat, labels.shape)
    sums = np.empty((starts.size, 3), dtype=np.int64)
    bmin = np.empty((starts.size, 3), dtype=np.int64)
    bmax = np.empty((starts.size, 3), dtype=np.int64)
    for axis, c in enumerate(coords):  # three axes, not voxels
        sums[:, axis] = np.add.reduceat(c, starts)
        bmin[:, axis] = np.minimum.reduceat(c, starts)
        bmax[:, axis] = np.maximum.reduceat(c, starts)
    return ObjectGeometry(
        ids=sorted_ids[starts].astype(np.uint64),
        counts=counts,
        coord_sums=sums,
        bbox_min=bmin,
        bbox_max=bmax,
        order_flat=order_flat,
        starts=starts,
    )


# -- reducible partial results (one definition for the single job and for blocks) ---------


@dataclass(frozen=True)
class ObjectSums:
    """Per-object sums over part of a volume, in volume coordinates; ``a + b`` merges.

    Integer fields (and channel sums of integer data up to 32 bits) are exact, so any
    tiling of the volume reduces to the same values as the whole volume at once.
    """

    ids: np.ndarray  # (n,) uint64, sorted, unique
    counts: np.ndarray  # (n,) int64
    coord_sums: np.ndarray  # (n, 3) int64
    bbox_min: np.ndarray  # (n, 3) int64, inclusive
    bbox_max: np.ndarray  # (n, 3) int64, inclusive
    channel_sums: dict[str, np.ndarray]  # name -> (n,) int64 or float64

    @property
    def centroids(self) -> np.ndarray:
        return _centroids(self.coord_sums, self.counts)

    def anchors(self) -> np.ndarray:
        """(n, 3) int64 window anchors: the floor of each centroid."""
        return window_anchors(self.coord_sums, self.counts)

    def __add__(self, other: ObjectSums) -> ObjectSums:
        if list(self.channel_sums) != list(other.channel_sums):
            raise ValueError("cannot merge object sums of different channels")
        ids = np.concatenate([self.ids, other.ids])
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if ids.size == 0:
            return self
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])

        def red(ufunc: np.ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return ufunc.reduceat(np.concatenate([a, b])[order], starts)

        return ObjectSums(
            ids=ids[starts],
            counts=red(np.add, self.counts, other.counts),
            coord_sums=red(np.add, self.coord_sums, other.coord_sums),
            bbox_min=red(np.minimum, self.bbox_min, other.bbox_min),
            bbox_max=red(np.maximum, self.bbox_max, other.bbox_max),
            channel_sums={
                k: red(np.add, v, other.channel_sums[k]) for k, v in self.channel_sums.items()
            },
        )


def object_sums(
    labels: np.ndarray,
    channels: Mapping[str, np.ndarray],
    *,
    offset: Sequence[int] = (0, 0, 0),
) -> ObjectSums:
    """Per-object sums of one block: ``labels`` and ``channels`` cut at ``offset``.

    ``labels`` must carry the final (volume-wide) ids, e.g. after the blockwise stitch.
    """
    geo = object_geometry(labels)
    off = np.asarray([int(v) for v in offset], dtype=np.int64)
    return ObjectSums(
        ids=geo.ids,
        counts=geo.counts,
        coord_sums=geo.coord_sums + geo.counts[:, None] * off,
        bbox_min=geo.bbox_min + off,
        bbox_max=geo.bbox_max + off,
        channel_sums={str(k): geo.reduce_sum(np.asarray(v)) for k, v in channels.items()},
    )


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


def _check_frame(voxel_size: Sequence[float], origin: Sequence[int]) -> tuple:
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
    return vs, org


def assemble_table(
    objects: ObjectSums,
    window_raw: Mapping[str, np.ndarray],
    slice_stats: Mapping[str, SliceSums],
    *,
    shape: Sequence[int],
    voxel_size: Sequence[float],
    voxel_unit: str = "nanometers",
    origin: Sequence[int] = (0, 0, 0),
) -> pd.DataFrame:
    """The synapse table from reduced partial results (see :func:`synapse_table`).

    ``objects``: the sum of :func:`object_sums` over a tiling of the volume;
    ``window_raw``: per channel, the sum of :func:`window_raw_sums` over the same tiling
    (with ``objects.anchors()``); ``slice_stats``: per channel, the sum of
    :func:`slice_sums`. ``shape``: the whole volume's shape. Channel order = the order of
    ``objects.channel_sums``.
    """
    vs, org = _check_frame(voxel_size, origin)
    shape = tuple(int(s) for s in shape)
    names = list(objects.channel_sums)
    centroids = objects.centroids
    anchors = objects.anchors()
    _, _, wvox = window_bounds(anchors, shape)
    cols: dict[str, np.ndarray] = {"id": objects.ids.astype(np.uint64)}
    centroid_global = centroids + org
    for axis, name in enumerate(CENTROID_COLUMNS):
        cols[name] = centroid_global[:, axis]
    for axis, name in enumerate(PHYSICAL_COLUMNS):
        cols[name] = centroid_global[:, axis] * vs[axis]
    cols["volume_voxels"] = objects.counts.astype(np.int64)
    cols["volume_physical"] = objects.counts * float(np.prod(vs))
    for axis, a in enumerate(AXES):
        cols[f"bbox_{a}0"] = objects.bbox_min[:, axis] + org[axis]
    for axis, a in enumerate(AXES):
        cols[f"bbox_{a}1"] = objects.bbox_max[:, axis] + 1 + org[axis]
    cols["window_voxels"] = wvox.astype(np.int64)
    cols["window_clipped"] = wvox < WINDOW_FULL_VOXELS
    for name in names:
        mean, std = slice_stats[name].mean_std()
        cols[window_column(name)] = finish_window_sums(window_raw[name], anchors, shape, mean, std)
    for name in names:
        sums = objects.channel_sums[name]
        cols[mean_column(name)] = (
            sums / objects.counts if objects.counts.size else np.zeros(0, dtype=np.float64)
        )
    table = pd.DataFrame(cols)  # insertion order: base columns, window sums, means
    table.attrs.update(
        {
            "schema_version": SCHEMA_VERSION,
            "voxel_size": vs.tolist(),
            "voxel_unit": voxel_unit,
            "origin": org.tolist(),
            "shape": list(shape),
            "channels": names,
            "window_offsets": [list(w) for w in WINDOW_OFFSETS],
            "window_full_voxels": WINDOW_FULL_VOXELS,
            "window_anchor": "floor(centroid)",
            "zscore": "per z-slice, population std; flat slice -> 0",
        }
    )
    return table


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

    This is :func:`assemble_table` over a single block (the whole volume): a blockwise
    run that sums the same partials over any tiling gets the same table.
    """
    labels = _check_labels(labels)
    _check_frame(voxel_size, origin)
    checked = {str(k): _check_channel(str(k), v, labels.shape) for k, v in channels.items()}
    geo = object_geometry(labels)
    sums: dict[str, np.ndarray] = {}
    raw: dict[str, np.ndarray] = {}
    stats: dict[str, SliceSums] = {}
    anchors = window_anchors(geo.coord_sums, geo.counts)
    for name, vol in checked.items():
        sums[name] = geo.reduce_sum(vol)
        stats[name] = slice_sums(vol)
        raw[name] = window_raw_sums(vol, anchors)
        if progress is not None:
            progress(name)
    objects = ObjectSums(
        ids=geo.ids,
        counts=geo.counts,
        coord_sums=geo.coord_sums,
        bbox_min=geo.bbox_min,
        bbox_max=geo.bbox_max,
        channel_sums=sums,
    )
    return assemble_table(
        objects,
        raw,
        stats,
        shape=labels.shape,
        voxel_size=voxel_size,
        voxel_unit=voxel_unit,
        origin=origin,
    )
