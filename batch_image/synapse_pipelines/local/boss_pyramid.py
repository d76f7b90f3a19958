"""The local BOSS server's downsample service: BOSS's ``/v1/downsample/`` and a real pyramid.

Owns :class:`Downsampler` (the endpoint's answers and one background worker, as BOSS runs one
downsample step function at a time off a queue), :func:`level_volume` (a channel's array at
resolution r, validated as BOSS validates a cutout's resolution) and the pooling rules.

The endpoint, as jhuapl-boss/boss defines it (``bossspatialdb/views.py`` ``Downsample``,
``bossspatialdb/downsample.py``, spdb ``project/resource.py``):

- ``GET  downsample/C/E/CH/[?iso=true]`` 200 ``{"status", "num_hierarchy_levels", "voxel_size":
  {"0": [x, y, z], ...}, "extent": {...}, "cuboid_size": {...}}``; voxel sizes double in x, y
  per level (and z too above the near-isotropic level when ``iso=true``); extents are
  ``ceil(stop / 2)`` per level. An anisotropic frame with x voxel size != y: 400, code 9001.
- ``POST`` 201 (empty body): NOT_DOWNSAMPLED or FAILED -> QUEUED -> IN_PROGRESS ->
  DOWNSAMPLED (or FAILED); 409 code 2006 when QUEUED, IN_PROGRESS or DOWNSAMPLED (BOSS lets
  admins re-run a DOWNSAMPLED channel; this server has no admins).
- ``DELETE`` 204: a QUEUED or IN_PROGRESS downsample is cancelled, status NOT_DOWNSAMPLED;
  409 code 2006 otherwise.

Levels ``base_resolution + 1 .. num_hierarchy_levels - 1`` are built, each from the one
below, 2x2x1 (x and y halved, z kept: BOSS's ``anisotropic`` hierarchy; an ``isotropic``
experiment is refused here). The extent of level r is ``[start // 2**r, ceil(stop / 2**r))``.
Image channels (uint8, uint16): the mean of the 2x2 voxels inside the level's extent, rounded
to nearest, halves up. Annotation channels (uint64): the most frequent non-zero id of the 2x2
voxels, ties to the smaller id, 0 only when all four are 0 (a one-voxel synapse stays
visible one level up; the tie rule is deterministic and independent of scan order). Level r
of a channel with uid U is the Zarr array ``volumes/U.r<r>.zarr``; a start drops the old
levels first; cuboids whose source is empty are skipped (never written).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from synapse_pipelines.local.boss_api_errors import (
    BOSS_SYSTEM_ERROR,
    INVALID_REQUEST,
    INVALID_STATE,
    METHOD_NOT_ALLOWED,
    RESOURCE_NOT_FOUND,
    TYPE_ERROR,
    ApiError,
)
from synapse_pipelines.local.boss_metadata import ChannelVolume
from synapse_pipelines.local.boss_storage import CHUNK, CUBOID, BossStore

log = logging.getLogger(__name__)

NOT_DOWNSAMPLED, QUEUED, IN_PROGRESS = "NOT_DOWNSAMPLED", "QUEUED", "IN_PROGRESS"
DOWNSAMPLED, FAILED = "DOWNSAMPLED", "FAILED"
RUNNING = (QUEUED, IN_PROGRESS)
#: BOSS's cuboid as its downsample JSON gives it: [x, y, z].
CUBOID_XYZ = [CUBOID[2], CUBOID[1], CUBOID[0]]


# -- geometry -----------------------------------------------------------------------------
def level_volume(vol: ChannelVolume, resolution: int) -> ChannelVolume:
    """The channel's array at ``resolution`` (resolution 0 is ``vol`` itself). BOSS accepts
    resolutions ``base_resolution .. base_resolution + num_hierarchy_levels - 1`` (400,
    code 1002, otherwise)."""
    base, levels = vol.base_resolution, vol.num_hierarchy_levels
    if resolution not in range(base, base + levels):
        raise ApiError(
            400,
            TYPE_ERROR,
            f"Invalid resolution {resolution}. The resolution has to be within {base} and "
            f"{base + levels}",
        )
    if resolution == 0:
        return vol
    f = 2**resolution
    fz = f if vol.hierarchy_method == "isotropic" else 1
    (t0, z0, y0, x0), (t1, z1, y1, x1) = vol.start, vol.stop
    return replace(
        vol,
        uid=f"{vol.uid}.r{resolution}",
        start=(t0, z0 // fz, y0 // f, x0 // f),
        stop=(t1, -(-z1 // fz), -(-y1 // f), -(-x1 // f)),
        resolution=resolution,
    )


def isotropic_level(method: str, vx: float, vy: float, vz: float) -> int:
    """spdb's ``get_isotropic_level``: the level whose x voxel size is closest to z's."""
    if method == "isotropic":
        return 0
    if vx != vy:
        raise ValueError(
            "X voxel size != Y voxel size. Currently unable to determine isotropic level"
        )
    ratios = np.array([vz / (vx * 2**r) for r in range(30)])
    return int(np.abs(ratios - 1).argmin())


def hierarchy_json(
    exp: dict[str, Any], frame: dict[str, Any], status: str, *, iso: bool = False
) -> dict[str, Any]:
    """BOSS's GET /downsample body for a channel of ``exp`` on ``frame``."""
    levels, method = int(exp["num_hierarchy_levels"]), str(exp["hierarchy_method"])
    voxel = [float(frame[f"{a}_voxel_size"]) for a in "xyz"]
    extent = [int(frame[f"{a}_stop"]) for a in "xyz"]
    try:
        iso_level = isotropic_level(method, *voxel)
    except ValueError as err:
        raise ApiError(
            400, BOSS_SYSTEM_ERROR, f"Error while getting downsampled voxel dimensions: {err}"
        ) from None
    voxel_dims, extent_dims = [voxel], [extent]
    for r in range(1, levels):
        z_too = method == "isotropic" or (iso and r > iso_level)
        vx, vy, vz = voxel_dims[-1]
        ex, ey, ez = extent_dims[-1]
        voxel_dims.append([vx * 2, vy * 2, vz * 2 if z_too else vz])
        extent_dims.append(
            [math.ceil(ex / 2), math.ceil(ey / 2), math.ceil(ez / 2) if z_too else ez]
        )
    return {
        "status": status,
        "num_hierarchy_levels": levels,
        "voxel_size": {str(r): d for r, d in enumerate(voxel_dims)},
        "extent": {str(r): d for r, d in enumerate(extent_dims)},
        "cuboid_size": {str(r): list(CUBOID_XYZ) for r in range(levels)},
    }


# -- pooling --------------------------------------------------------------------------------
def _quads(a: np.ndarray) -> list[np.ndarray]:
    """The four voxels of every 2x2 block of the last two axes (both even)."""
    return [a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]]


def average_pool(block: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 block over its ``valid`` voxels (those inside the level's extent),
    rounded to nearest with halves up; ``block`` is uint8 or uint16, last two axes even."""
    total = sum(q.astype(np.uint32) for q in _quads(block))
    count = sum(q.astype(np.uint32) for q in _quads(valid))
    count = np.maximum(count, 1)  # blocks wholly outside the extent (none are asked for)
    return ((2 * total + count) // (2 * count)).astype(block.dtype)


def mode_pool(block: np.ndarray) -> np.ndarray:
    """Most frequent non-zero id of each 2x2 block, ties to the smaller id, 0 only when all
    four are 0; last two axes even (voxels outside the extent are passed as 0)."""
    v = _quads(block)
    best, best_n = v[0].copy(), np.zeros(v[0].shape, dtype=np.uint8)
    for cand in v:
        n = sum((cand == other).astype(np.uint8) for other in v) * (cand != 0)
        better = (n > best_n) | ((n == best_n) & (cand < best))
        best = np.where(better, cand, best)
        best_n = np.where(better, n, best_n)
    return best


def pool_region(
    data: np.ndarray, offset: tuple[int, int], out_shape: tuple[int, int], annotation: bool
) -> np.ndarray:
    """Pool ``data`` (..., h, w: the source voxels inside the extent) into ``out_shape``
    (y, x) target voxels; ``offset`` is where ``data`` starts in the target's 2x source grid
    (1 on an axis whose extent starts at an odd coordinate)."""
    (oy, ox), (ny, nx) = offset, out_shape
    h, w = data.shape[-2:]
    full = np.zeros((*data.shape[:-2], 2 * ny, 2 * nx), dtype=data.dtype)
    full[..., oy : oy + h, ox : ox + w] = data
    if annotation:
        return np.stack([mode_pool(s) for s in full.reshape(-1, 2 * ny, 2 * nx)]).reshape(
            *data.shape[:-2], ny, nx
        )
    valid = np.zeros((2 * ny, 2 * nx), dtype=bool)
    valid[oy : oy + h, ox : ox + w] = True
    return average_pool(full, valid)


# -- the service ------------------------------------------------------------------------------
@dataclass
class _Job:
    names: tuple[str, str, str]
    uid: str
    cancelled: threading.Event = field(default_factory=threading.Event)


class Downsampler:
    """The downsample endpoint of one store, and its background worker (one job at a time)."""

    def __init__(self, store: BossStore):
        self.store = store
        self._queue: deque[_Job] = deque()
        self._current: _Job | None = None
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Test hook: called with (channel "C/E/CH", level) before each level is built; it
        #: may block (to watch IN_PROGRESS) or raise (to watch FAILED).
        self.level_hook: Callable[[str, int], None] | None = None
        # jobs a previous process left queued or running start again
        for names in store.channels_with_status(RUNNING):
            store.set_downsample_status(*names, QUEUED)
            self._enqueue(names)

    def handle(self, method: str, rest: list[str], query: dict[str, list[str]]) -> tuple[int, Any]:
        """(HTTP status, JSON payload or None) for ``downsample/<rest>``."""
        if len(rest) != 3:
            raise ApiError(
                404, RESOURCE_NOT_FOUND, f"no such API endpoint: downsample/{'/'.join(rest)}"
            )
        c, e, ch = rest
        if method == "GET":
            iso = query.get("iso", ["false"])[0].lower() == "true"
            chan = self.store.get_channel(c, e, ch)
            exp = self.store.get_experiment(c, e)
            frame = self.store.get_coord(exp["coord_frame"])
            return 200, hierarchy_json(exp, frame, chan["downsample_status"], iso=iso)
        if method == "POST":
            self.start(c, e, ch)
            return 201, None
        if method == "DELETE":
            self.cancel(c, e, ch)
            return 204, None
        raise ApiError(405, METHOD_NOT_ALLOWED, f"{method} is not allowed on downsample/")

    def start(self, c: str, e: str, ch: str) -> None:
        vol = self.store.resolve_volume(c, e, ch)
        exp = self.store.get_experiment(c, e)
        hierarchy_json(exp, self.store.get_coord(exp["coord_frame"]), "")  # BOSS's frame check
        if vol.hierarchy_method != "anisotropic":
            raise ApiError(
                400,
                INVALID_REQUEST,
                "this local BOSS server builds anisotropic (2x2x1) hierarchies only",
            )
        before = self.store.set_downsample_status(
            c, e, ch, QUEUED, only_from=(NOT_DOWNSAMPLED, FAILED)
        )
        refusals = {
            IN_PROGRESS: "Channel is currently being downsampled. Invalid Request.",
            QUEUED: "Channel is already waiting to be downsampled. Invalid Request.",
            DOWNSAMPLED: "Channel is already downsampled. Invalid Request.",
        }
        if before in refusals:
            raise ApiError(409, INVALID_STATE, refusals[before])
        self._enqueue((c, e, ch))

    def cancel(self, c: str, e: str, ch: str) -> None:
        uid = self.store.resolve_volume(c, e, ch).uid
        before = self.store.set_downsample_status(c, e, ch, NOT_DOWNSAMPLED, only_from=RUNNING)
        if before not in RUNNING:
            raise ApiError(
                409,
                INVALID_STATE,
                "You can only cancel a queued or in-progress downsample operation.",
            )
        with self._cv:
            for job in [j for j in self._queue if j.uid == uid]:
                self._queue.remove(job)
            if self._current is not None and self._current.uid == uid:
                self._current.cancelled.set()

    def close(self) -> None:
        """Stop the worker after its current cuboid (a running job is left IN_PROGRESS and
        starts again when a server opens this data directory)."""
        with self._cv:
            self._closed = True
            if self._current is not None:
                self._current.cancelled.set()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _enqueue(self, names: tuple[str, str, str]) -> None:
        job = _Job(names, self.store.resolve_volume(*names).uid)
        with self._cv:
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="local-boss-downsample", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = self._current = self._queue.popleft()
            try:
                self._run(job)
            except Exception:
                log.exception("downsample of %s failed", "/".join(job.names))
                self.store.set_downsample_status(*job.names, FAILED, only_from=(IN_PROGRESS,))
            finally:
                with self._cv:
                    self._current = None

    def _run(self, job: _Job) -> None:
        names = job.names
        if self.store.set_downsample_status(*names, IN_PROGRESS, only_from=(QUEUED,)) != QUEUED:
            return  # cancelled before it started
        vol = self.store.resolve_volume(*names)
        if vol.uid != job.uid:
            return  # the channel was deleted (and maybe recreated) meanwhile
        self.store.drop_levels(vol.uid)
        source = level_volume(vol, vol.base_resolution)
        for resolution in range(vol.base_resolution + 1, vol.num_hierarchy_levels):
            if self.level_hook is not None:
                self.level_hook(vol.name, resolution)
            target = level_volume(vol, resolution)
            self._build_level(source, target, vol.type == "annotation", job)
            if job.cancelled.is_set():
                return
            source = target
        self.store.set_downsample_status(*names, DOWNSAMPLED, only_from=(IN_PROGRESS,))

    def _build_level(
        self, source: ChannelVolume, target: ChannelVolume, annotation: bool, job: _Job
    ) -> None:
        """Every cuboid of ``target`` from the 2x2 cuboids of ``source`` below it."""
        counts = [-(-n // c) for n, c in zip(target.shape, CHUNK, strict=True)]
        for key in itertools.product(*(range(n) for n in counts)):
            if job.cancelled.is_set():
                return
            region = tuple(
                slice(k * n, min((k + 1) * n, lim))
                for k, n, lim in zip(key, CHUNK, target.shape, strict=True)
            )
            src_region, offset = [region[0], region[1]], []
            for axis in (2, 3):  # y, x: target voxel X covers source 2X, 2X + 1 (absolute)
                lo = 2 * (target.start[axis] + region[axis].start)
                hi = 2 * (target.start[axis] + region[axis].stop)
                a, b = max(lo, source.start[axis]), min(hi, source.stop[axis])
                src_region.append(slice(a - source.start[axis], b - source.start[axis]))
                offset.append(a - lo)
            if not self.store.has_chunks(source, tuple(src_region)):
                continue  # nothing written below: the (dropped) target stays empty
            data = self.store.read(source, tuple(src_region))
            out_shape = (region[2].stop - region[2].start, region[3].stop - region[3].start)
            pooled = pool_region(data, (offset[0], offset[1]), out_shape, annotation)
            self.store.write(target, region, pooled)
