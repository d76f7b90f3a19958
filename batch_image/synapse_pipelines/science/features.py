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
                            :class:`synapse_pipelines.core.geometry.Box`)
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

Decomposition (for a blockwise run; tested to give the identical table)
-----------------------------------------------------------------------
:func:`synapse_table` is :func:`assemble_table` over one block. For any tiling of the
volume into boxes ``b`` (start ``b0``), with ``labels`` already carrying final ids::

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

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from synapse_pipelines.core.errors import SynapsePipelinesError

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
            return np.zeros(0, dtype=_accumulator(volume.dtype))
        values = volume.reshape(-1)[self.order_flat]
        acc = _accumulator(values.dtype)
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


@dataclass(frozen=True)
class SliceSums:
    """Per-z-slice voxel count, sum and sum of squares of a channel; ``a + b`` merges.

    Stored as Python numbers (object arrays over the volume's z range): exact integers for
    8- and 16-bit data (any volume size); float64 for floats and 32/64-bit integers.
    """

    count: np.ndarray  # (Z,) object: int
    total: np.ndarray  # (Z,) object: int or float
    total_sq: np.ndarray  # (Z,) object: int or float

    def __add__(self, other: SliceSums) -> SliceSums:
        return SliceSums(
            self.count + other.count, self.total + other.total, self.total_sq + other.total_sq
        )

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-slice mean and population std (float64); 0 and 0 for an empty slice.

        For integers: ``mean = S / n`` and ``std = sqrt(n * SS - S**2) / n`` computed from
        exact Python integers (one rounding at the end).
        """
        z = self.count.shape[0]
        mean = np.zeros(z, dtype=np.float64)
        std = np.zeros(z, dtype=np.float64)
        for k in range(z):  # slices, not voxels
            n, s, ss = self.count[k], self.total[k], self.total_sq[k]
            if not n:
                continue
            mean[k] = s / n
            if isinstance(s, int) and isinstance(ss, int):
                std[k] = math.sqrt(max(n * ss - s * s, 0)) / n
            else:
                std[k] = math.sqrt(max(ss / n - (s / n) ** 2, 0.0))
        return mean, std


def slice_sums(volume: np.ndarray, *, z_offset: int = 0, depth: int | None = None) -> SliceSums:
    """Per-slice sums of one block (``volume`` starting at slice ``z_offset`` of ``depth``)."""
    z = volume.shape[0]
    depth = z_offset + z if depth is None else depth
    count = np.zeros(depth, dtype=object)
    total = np.zeros(depth, dtype=object)
    total_sq = np.zeros(depth, dtype=object)
    plane = int(np.prod(volume.shape[1:]))
    small_int = np.issubdtype(volume.dtype, np.integer) and volume.dtype.itemsize <= 2
    for k in range(z):  # one slice at a time: temporaries stay one slice big
        s = volume[k]
        if small_int:
            # the narrowest type that holds a square: uint8 -> uint16, uint16 -> uint32
            square_type = {1: np.uint16, 2: np.uint32}[volume.dtype.itemsize]
            wide = s.astype(np.int64 if volume.dtype.kind == "i" else square_type)
            t = int(wide.sum(dtype=np.int64))
            tsq = int(np.multiply(wide, wide).sum(dtype=np.int64))
        else:  # floats, and 32/64-bit integers whose squares overflow int64: float64
            f = s.astype(np.float64)
            t = float(f.sum())
            tsq = float(np.multiply(f, f).sum())
        count[z_offset + k] += plane
        total[z_offset + k] += t
        total_sq[z_offset + k] += tsq
    return SliceSums(count, total, total_sq)


def slice_zscore_stats(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-z-slice mean and population standard deviation (float64), as the original used."""
    return slice_sums(volume).mean_std()


def window_bounds(
    anchors: np.ndarray, shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped half-open window ``[lo, hi)`` per object and axis, and the covered voxels."""
    offs = np.asarray(WINDOW_OFFSETS, dtype=np.int64)
    lo = np.clip(anchors + offs[:, 0], 0, np.asarray(shape, dtype=np.int64))
    hi = np.clip(anchors + offs[:, 1], 0, np.asarray(shape, dtype=np.int64))
    voxels = np.prod(hi - lo, axis=1)
    return lo, hi, voxels


_WINDOW_DEPTH = WINDOW_OFFSETS[0][1] - WINDOW_OFFSETS[0][0]


def window_raw_sums(
    volume: np.ndarray,
    anchors: np.ndarray,
    *,
    offset: Sequence[int] = (0, 0, 0),
    method: str = "auto",
) -> np.ndarray:
    """Raw sums of each window's part in each of its 4 slices, over this block only.

    ``volume`` is a block cut at ``offset``; ``anchors`` are (n, 3) anchor voxels in
    volume coordinates. Returns (n, 4) sums (int64 for integer data up to 32 bits: exact,
    so blocks add up to the whole volume's value), column ``j`` for slice
    ``anchor_z + WINDOW_OFFSETS[0][0] + j``. Two strategies with identical results:

    - ``"gather"``: read the 4 x 10 x 10 voxels of every window by fancy indexing, in
      chunks of objects; ~400 reads per object, best when objects are sparse;
    - ``"sat"``: one 2-D summed-area table per z-slice touched, four reads per object and
      slice; one pass over those slices, best when objects are dense.
    """
    anchors = np.asarray(anchors, dtype=np.int64).reshape(-1, 3)
    acc = _accumulator(volume.dtype)
    out = np.zeros((anchors.shape[0], _WINDOW_DEPTH), dtype=acc)
    off = np.asarray([int(v) for v in offset], dtype=np.int64)
    shape = np.asarray(volume.shape, dtype=np.int64)
    offs = np.asarray(WINDOW_OFFSETS, dtype=np.int64)
    # only the windows that overlap this block
    touch = np.all((anchors + offs[:, 1] > off) & (anchors + offs[:, 0] < off + shape), axis=1)
    sel_all = np.flatnonzero(touch)
    if sel_all.size == 0 or volume.size == 0:
        return out
    local = anchors[sel_all] - off
    if method == "auto":
        method = "gather" if sel_all.size * WINDOW_FULL_VOXELS * 4 < volume.size else "sat"
    if method == "gather":
        ranges = [np.arange(a, b, dtype=np.int64) for a, b in WINDOW_OFFSETS]
        chunk = 8192  # 8192 objects x 400 voxels x 8 bytes = 26 MB of temporaries
        for c0 in range(0, local.shape[0], chunk):
            a = local[c0 : c0 + chunk]
            idx, ok = [], []
            for axis in range(3):
                raw_idx = a[:, axis, None] + ranges[axis]
                ok.append((raw_idx >= 0) & (raw_idx < volume.shape[axis]))
                idx.append(np.clip(raw_idx, 0, volume.shape[axis] - 1))
            vals = volume[
                idx[0][:, :, None, None], idx[1][:, None, :, None], idx[2][:, None, None, :]
            ]
            inside = ok[0][:, :, None, None] & ok[1][:, None, :, None] & ok[2][:, None, None, :]
            out[sel_all[c0 : c0 + chunk]] = np.where(inside, vals, 0).sum(axis=(2, 3), dtype=acc)
        return out
    if method != "sat":
        raise ValueError(f"unknown method {method!r}")
    lo, hi, _ = window_bounds(local, volume.shape)
    z_first = local[:, 0] + WINDOW_OFFSETS[0][0]
    for k in range(int(lo[:, 0].min()), int(hi[:, 0].max())):
        sel = np.flatnonzero((lo[:, 0] <= k) & (k < hi[:, 0]))
        if sel.size == 0:
            continue
        sat = np.zeros((volume.shape[1] + 1, volume.shape[2] + 1), dtype=acc)
        np.cumsum(volume[k], axis=0, dtype=acc, out=sat[1:, 1:])
        np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
        y0, y1, x0, x1 = lo[sel, 1], hi[sel, 1], lo[sel, 2], hi[sel, 2]
        out[sel_all[sel], k - z_first[sel]] = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return out


def finish_window_sums(
    raw: np.ndarray,
    anchors: np.ndarray,
    shape: Sequence[int],
    mean: np.ndarray,
    std: np.ndarray,
) -> np.ndarray:
    """Window sums of the per-slice z-scored channel from raw per-slice window sums.

    ``sum_j (raw_j - area * mean_z) / std_z`` over the window's slices inside the volume
    (``area`` = the window's y-x extent clipped to the volume); a slice with std 0
    contributes 0. The slices are added in z order, so the result does not depend on how
    ``raw`` was computed or tiled.
    """
    anchors = np.asarray(anchors, dtype=np.int64).reshape(-1, 3)
    n = anchors.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    lo, hi, _ = window_bounds(anchors, shape)
    area = ((hi[:, 1] - lo[:, 1]) * (hi[:, 2] - lo[:, 2])).astype(np.float64)
    inv_std = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    for j in range(_WINDOW_DEPTH):  # four slices, in z order
        z = anchors[:, 0] + WINDOW_OFFSETS[0][0] + j
        ok = (z >= 0) & (z < shape[0])
        zc = np.clip(z, 0, shape[0] - 1)
        contrib = (raw[:, j] - area * mean[zc]) * inv_std[zc]
        out = out + np.where(ok, contrib, 0.0)
    return out


def window_zscore_sums(
    volume: np.ndarray,
    anchors: np.ndarray,
    *,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Sum of the per-slice z-scored ``volume`` over each object's clipped window.

    ``anchors``: (n, 3) anchor voxels (floor of the centroids). ``stats`` (per-slice
    mean and std) default to the volume's own. See :func:`window_raw_sums` (the two
    strategies) and :func:`finish_window_sums` (the z-score).
    """
    mean, std = stats if stats is not None else slice_zscore_stats(volume)
    raw = window_raw_sums(volume, anchors, method=method)
    return finish_window_sums(raw, anchors, volume.shape, mean, std)


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
    and is also copied into the results manifest by :mod:`synapse_pipelines.io.outputs`.
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
