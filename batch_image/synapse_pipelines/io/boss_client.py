"""The BOSS client: metadata, cuboid-aligned concurrent pull and push, creating resources.

Everything in the project that talks to BOSS goes through :class:`BossClient`, a wrapper
over intern's ``BossRemote`` (the official SDK). Retries, error messages and the lean cutout
requests come from :class:`~synapse_pipelines.io.boss_transport.BossConnection`; this module
adds what the original nomads_cloud lacked on top: bounded concurrency without
multiprocessing and cuboid-aligned pieces. API::

    client = BossClient(host, protocol, token, *, max_workers=8, max_retries=5,
                        timeout=120.0, backoff=0.5, piece_shape=PIECE_SHAPE)
    client = BossClient.for_request(request, token)          # host/protocol from the request
    client.close()  /  with BossClient(...) as client:        # stops the worker threads

    client.list_collections() / client.list_experiments(collection) -> list[str]
    client.list_channels(collection, experiment) -> list[str]
    client.channel(collection, experiment, name) -> ChannelInfo(name, datatype, type)
    client.coordinate_frame(collection, experiment, resolution=0) -> CoordinateFrame
    client.resolution_levels(collection, experiment) -> (hierarchy method, [frame per level])
    client.validate_box(collection, experiment, box, resolution=0) -> CoordinateFrame
        # BossError(field="z_range"/"y_range"/"x_range") naming the axis and the extent;
        # half-open boxes: stop == extent stop is valid (the original rejected it);
        # field="resolution" for a level the experiment lacks
    client.pull(collection, experiment, channel, box, resolution=0) -> np.ndarray   # ZYX, writable
    client.pull_channels(collection, experiment, channels, box, resolution=0)
        -> dict[str, np.ndarray]       # box and frame in the voxels of that resolution level
    client.push(collection, experiment, channel, box, data) -> None   # zero pieces overwrite too
    client.ensure_experiment(collection, experiment, frame) -> CoordinateFrame
    client.ensure_channel(collection, experiment, name, *, datatype, type, sources=(),
                          description="", frame=None) -> ChannelInfo
    client.channel_description(collection, experiment, name) -> str | None
    image_channels(client, collection, experiment) -> list[str]
    bytes_per_voxel(client, collection, experiment, channels) -> int

Pieces: reads and writes are split on a grid of ``piece_shape`` (a multiple of BOSS's
16x512x512 cuboids, anchored at voxel 0), so every request is cuboid-aligned inside, no two
pieces share a cuboid (concurrent writes never race on a read-modify-write), and each piece
stays far below BOSS's 520 MiB per-request limit. Pieces run on a ``ThreadPoolExecutor``
(intern's own splitting uses a multiprocessing Pool, which fails where /dev/shm is missing,
e.g. Lambda); each worker thread has its own ``BossRemote`` so no HTTP session is shared.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import AXES, CUBOID_SHAPE, Box, iter_aligned_blocks
from synapse_pipelines.io.boss_resources import (
    BOSS_MAX_NAME_LENGTH,
    OUTPUT_MARKER,
    SUPPORTED_DATATYPES,
    ChannelInfo,
    CoordinateFrame,
    boss_voxel_unit,
    check_box_in_frame,
    hierarchy_levels_to_fit,
    level_frame,
)
from synapse_pipelines.io.boss_transport import BossConnection, get_cutout, post_cutout

if TYPE_CHECKING:
    from synapse_pipelines.core.request import SynapseRequest

log = logging.getLogger(__name__)

#: Default piece of a pull or push, z, y, x: 2 cuboids deep. 8 Mi voxels (8 MiB of uint8,
#: 64 MiB of uint64): small enough to keep 8 workers busy on a 64x1024x1024 volume,
#: large enough that per-request overhead is negligible.
PIECE_SHAPE: tuple[int, int, int] = (32, 512, 512)


class BossClient(BossConnection):
    """A BOSS client for one host and token. Thread-safe; see the module docstring."""

    def __init__(
        self,
        host: str,
        protocol: str,
        token: str,
        *,
        max_workers: int = 8,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        piece_shape: tuple[int, int, int] = PIECE_SHAPE,
    ):
        super().__init__(
            host,
            protocol,
            token,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        for axis, size, cub in zip(AXES, piece_shape, CUBOID_SHAPE, strict=True):
            if size <= 0 or size % cub:
                raise ValueError(f"piece_shape along {axis} must be a positive multiple of {cub}")
        self.max_workers = max_workers
        self.piece_shape = piece_shape
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._channels: dict[tuple[str, str, str], ChannelResource] = {}
        self._channels_lock = threading.Lock()

    @classmethod
    def for_request(cls, request: SynapseRequest, token: str, **kwargs: Any) -> BossClient:
        return cls(request.boss_host, request.boss_protocol, token, **kwargs)

    def __repr__(self) -> str:
        return f"BossClient({self.protocol}://{self.host}, max_workers={self.max_workers})"

    # -- metadata
    def list_collections(self) -> list[str]:
        return list(self._call("list", "collections", lambda r: r.list_collections()))

    def list_experiments(self, collection: str) -> list[str]:
        return list(
            self._project_call(
                "list experiments of",
                collection,
                None,
                None,
                lambda r: r.list_experiments(collection),
            )
        )

    def list_channels(self, collection: str, experiment: str) -> list[str]:
        return list(
            self._project_call(
                "list channels of",
                collection,
                experiment,
                None,
                lambda r: r.list_channels(collection, experiment),
            )
        )

    def _channel_resource(self, collection: str, experiment: str, name: str) -> ChannelResource:
        key = (collection, experiment, name)
        with self._channels_lock:
            cached = self._channels.get(key)
        if cached is not None:
            return cached
        chan = self._project_call(
            "get channel",
            collection,
            experiment,
            name,
            lambda r: r.get_project(ChannelResource(name, collection, experiment)),
        )
        if chan.datatype not in SUPPORTED_DATATYPES:
            raise BossError(
                f"channel {collection}/{experiment}/{name} has datatype {chan.datatype!r}; "
                f"supported: {', '.join(SUPPORTED_DATATYPES)}"
            )
        with self._channels_lock:
            self._channels[key] = chan
        return chan

    def channel(self, collection: str, experiment: str, name: str) -> ChannelInfo:
        chan = self._channel_resource(collection, experiment, name)
        return ChannelInfo(name=chan.name, datatype=chan.datatype, type=chan.type)

    def coordinate_frame(
        self, collection: str, experiment: str, resolution: int = 0
    ) -> CoordinateFrame:
        """The experiment's coordinate frame as seen at ``resolution``
        (:func:`~synapse_pipelines.io.boss_resources.level_frame`); a level the experiment
        does not have is a BossError naming ``resolution``."""
        frame, levels, method = self._frame_and_hierarchy(collection, experiment)
        return level_frame(frame, resolution, levels, method, f"{collection}/{experiment}")

    def resolution_levels(
        self, collection: str, experiment: str
    ) -> tuple[str, list[CoordinateFrame]]:
        """The experiment's hierarchy method and its frame at each resolution level."""
        frame, levels, method = self._frame_and_hierarchy(collection, experiment)
        where = f"{collection}/{experiment}"
        return method, [level_frame(frame, r, levels, method, where) for r in range(levels)]

    def _frame_and_hierarchy(
        self, collection: str, experiment: str
    ) -> tuple[CoordinateFrame, int, str]:
        """Level 0's frame, the number of resolution levels and the hierarchy method."""
        exp = self._project_call(
            "get experiment",
            collection,
            experiment,
            None,
            lambda r: r.get_project(ExperimentResource(experiment, collection)),
        )
        cf = self._call(
            "get coordinate frame",
            f"coordinate frame {exp.coord_frame!r}",
            lambda r: r.get_project(CoordinateFrameResource(exp.coord_frame)),
        )
        frame = CoordinateFrame(
            extent=Box((cf.z_start, cf.y_start, cf.x_start), (cf.z_stop, cf.y_stop, cf.x_stop)),
            voxel_size=(float(cf.z_voxel_size), float(cf.y_voxel_size), float(cf.x_voxel_size)),
            voxel_unit=str(cf.voxel_unit),
            name=str(cf.name),
        )
        return frame, int(exp.num_hierarchy_levels or 1), str(exp.hierarchy_method)

    def validate_box(
        self, collection: str, experiment: str, box: Box, resolution: int = 0
    ) -> CoordinateFrame:
        """Check ``box`` (voxels of ``resolution``) lies in the experiment's frame at that
        level; return that frame."""
        frame = self.coordinate_frame(collection, experiment, resolution)
        where = f"{collection}/{experiment}"
        if resolution:
            where += f" at resolution {resolution}"
        check_box_in_frame(box, frame, where)
        return frame

    # -- cutouts
    def _pieces(self, box: Box) -> list[Box]:
        return list(iter_aligned_blocks(box, self.piece_shape))

    def _executor(self) -> ThreadPoolExecutor:
        # one pool for the client's lifetime: its threads keep their BossRemote and
        # keep-alive connections between calls (a pool per call would reconnect every time)
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix="boss"
                )
            return self._pool

    def close(self) -> None:
        """Stop the worker threads (the client stays usable: they restart on demand)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BossClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, fn: Callable[[Any], None], pieces: Sequence[Any]) -> None:
        if len(pieces) == 1:
            fn(pieces[0])
            return
        futures = [self._executor().submit(fn, p) for p in pieces]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise

    def pull(
        self, collection: str, experiment: str, channel: str, box: Box, resolution: int = 0
    ) -> np.ndarray:
        """The voxels of ``box`` (ZYX, the channel's dtype, a fresh writable array) at
        resolution level ``resolution`` (``box`` in that level's voxels)."""
        return self.pull_channels(collection, experiment, [channel], box, resolution)[channel]

    def pull_channels(
        self,
        collection: str,
        experiment: str,
        channels: Iterable[str],
        box: Box,
        resolution: int = 0,
    ) -> dict[str, np.ndarray]:
        """Several channels of one box (voxels of ``resolution``); the pieces of all
        channels share the worker pool (a small box is one piece per channel, so channels
        are what runs in parallel). BOSS's cuboids have the same shape at every level, so
        the pieces stay cuboid-aligned."""
        if box.is_empty():
            raise BossError(
                f"the box {box} is empty", field="z_range", hint="give start < stop on every axis"
            )
        names = list(dict.fromkeys(channels))
        resources = {ch: self._channel_resource(collection, experiment, ch) for ch in names}
        outs = {ch: np.empty(box.shape, dtype=np.dtype(r.datatype)) for ch, r in resources.items()}
        pieces = self._pieces(box)

        def fetch(job: tuple[str, Box]) -> None:
            channel, piece = job
            chan = resources[channel]
            data = self._project_call(
                f"read {piece} of",
                collection,
                experiment,
                channel,
                lambda r: get_cutout(r, chan, piece, resolution),
            )
            outs[channel][piece.slices(box.start)] = data

        log.debug("pulling %d channels of %s in %d pieces each", len(names), box, len(pieces))
        self._run(fetch, [(ch, p) for ch in names for p in pieces])
        return outs

    def push(
        self, collection: str, experiment: str, channel: str, box: Box, data: np.ndarray
    ) -> None:
        """Write ``data`` (ZYX, shaped like ``box``) to the channel; all-zero pieces too."""
        chan = self._channel_resource(collection, experiment, channel)
        if tuple(data.shape) != box.shape:
            raise ValueError(f"data shape {data.shape} does not match the box shape {box.shape}")
        dtype = np.dtype(chan.datatype)
        if data.dtype != dtype:
            if not np.can_cast(data.dtype, dtype, casting="safe") and data.size:
                lo, hi = int(data.min()), int(data.max())
                info = np.iinfo(dtype)
                if lo < info.min or hi > info.max:
                    raise BossError(
                        f"values {lo}..{hi} do not fit channel "
                        f"{collection}/{experiment}/{channel} ({chan.datatype})"
                    )
            data = data.astype(dtype)

        def send(piece: Box) -> None:
            (z0, y0, x0), (z1, y1, x1) = piece.start, piece.stop
            block = np.ascontiguousarray(data[piece.slices(box.start)])
            if not block.any():
                # intern's create_cutout silently sends nothing for an all-zero array, which
                # would leave an earlier run's data in place: blank the region explicitly
                fn: Callable[[BossRemote], None] = lambda r: r.create_cutout_to_black(  # noqa: E731
                    chan, 0, [x0, x1], [y0, y1], [z0, z1]
                )
            else:
                fn = lambda r: post_cutout(r, chan, piece, block)  # noqa: E731
            self._project_call(f"write {piece} of", collection, experiment, channel, fn)

        self._run(send, self._pieces(box))

    # -- creating output resources
    def _get_or_none(self, resource: Any, label: str) -> Any | None:
        try:
            return self._call("get", label, lambda r: r.get_project(resource))
        except BossError as err:
            if err.status == 404:
                return None
            raise

    def _create(self, resource: Any, label: str) -> Any:
        try:
            return self._call("create", label, lambda r: r.create_project(resource))
        except BossError as err:
            # another job created it between our get and create: fine, use theirs
            if err.status == 400 and "exist" in str(err).lower():
                return self._call("get", label, lambda r: r.get_project(resource))
            raise

    def ensure_experiment(
        self, collection: str, experiment: str, frame: CoordinateFrame
    ) -> CoordinateFrame:
        """Create the collection / experiment if missing. A new experiment uses ``frame``'s
        coordinate frame by name (created here if this host lacks it); if this host has a
        *different* frame of that name, an equivalent frame ``<name>_synapse_pipelines`` is
        used instead. Its ``num_hierarchy_levels`` lets BOSS's downsampling reach one cuboid
        (:func:`hierarchy_levels_to_fit`); an earlier output experiment of ours with fewer
        levels is raised to that. Returns the experiment's actual frame (an existing
        experiment keeps its frame: callers check their box against the returned frame)."""
        if self._get_or_none(CollectionResource(collection), f"collection {collection!r}") is None:
            self._create(
                CollectionResource(collection, f"{OUTPUT_MARKER}: predictions"),
                f"collection {collection!r}",
            )
        exp_label = f"experiment {collection}/{experiment}"
        levels = hierarchy_levels_to_fit(frame.extent)
        exp = self._get_or_none(ExperimentResource(experiment, collection), exp_label)
        if exp is None:
            frame_name = self._ensure_frame(frame)
            self._create(
                ExperimentResource(
                    experiment,
                    collection,
                    frame_name,
                    f"{OUTPUT_MARKER}: synapse predictions",
                    num_hierarchy_levels=levels,
                    hierarchy_method="anisotropic",
                ),
                exp_label,
            )
        elif str(exp.description or "").startswith(OUTPUT_MARKER) and (
            int(exp.num_hierarchy_levels or 1) < levels
        ):
            # an earlier output experiment of ours, made with too few levels for BOSS's
            # downsampling to reach one cuboid: raise them (a user's experiment is left alone)
            exp.num_hierarchy_levels = levels
            self._call("update", exp_label, lambda r: r.update_project(experiment, exp))
        return self.coordinate_frame(collection, experiment)

    def _ensure_frame(self, frame: CoordinateFrame) -> str:
        """The name of a coordinate frame on this host equal to ``frame`` (created if needed):
        ``frame.name``, or ``<name>_synapse_pipelines`` when that name holds another frame."""
        frame_name = frame.name
        existing = self._get_or_none(
            CoordinateFrameResource(frame_name), f"coordinate frame {frame_name!r}"
        )
        if existing is not None and _same_frame(existing, frame):
            return frame_name
        if existing is not None:
            frame_name = f"{frame.name}_synapse_pipelines"
        unit = boss_voxel_unit(frame.voxel_unit)
        label = f"coordinate frame {frame_name!r}"
        if self._get_or_none(CoordinateFrameResource(frame_name), label) is None:
            (z0, y0, x0), (z1, y1, x1) = frame.extent.start, frame.extent.stop
            vz, vy, vx = frame.voxel_size
            self._create(
                CoordinateFrameResource(
                    frame_name, f"{OUTPUT_MARKER}: copy of {frame.name}",
                    x0, x1, y0, y1, z0, z1, vx, vy, vz, unit,
                ),
                label,
            )  # fmt: skip
        return frame_name

    def ensure_channel(
        self,
        collection: str,
        experiment: str,
        name: str,
        *,
        datatype: str,
        type: str,
        sources: Sequence[str] = (),
        description: str = "",
        frame: CoordinateFrame | None = None,
    ) -> ChannelInfo:
        """Get or create a channel; an existing one must have this datatype and type."""
        if len(name) > BOSS_MAX_NAME_LENGTH:
            raise BossError(
                f"output channel name {name!r} is {len(name)} characters; BOSS allows "
                f"{BOSS_MAX_NAME_LENGTH}",
                field="output_experiment",
                hint="use shorter collection/experiment names or a smaller request",
            )
        if frame is not None:
            self.ensure_experiment(collection, experiment, frame)
        label = f"channel {collection}/{experiment}/{name}"
        chan = self._get_or_none(ChannelResource(name, collection, experiment), label)
        if chan is None:
            chan = self._create(
                ChannelResource(
                    name,
                    collection,
                    experiment,
                    type=type,
                    description=description,
                    datatype=datatype,
                    sources=list(sources),
                ),
                label,
            )
        if chan.datatype != datatype or chan.type != type:
            raise BossError(
                f"{label} already exists as a {chan.datatype} {chan.type} channel, but this "
                f"output needs a {datatype} {type} channel; refusing to write into it",
                field="output_experiment",
                hint="choose another output_collection/output_experiment or delete that channel",
            )
        with self._channels_lock:
            self._channels[(collection, experiment, name)] = chan
        return ChannelInfo(name=chan.name, datatype=chan.datatype, type=chan.type)

    def channel_description(self, collection: str, experiment: str, name: str) -> str | None:
        """The channel's description, or None when it does not exist."""
        chan = self._get_or_none(
            ChannelResource(name, collection, experiment),
            f"channel {collection}/{experiment}/{name}",
        )
        return None if chan is None else str(chan.description or "")


def _same_frame(cf: Any, frame: CoordinateFrame) -> bool:
    """Whether intern's coordinate frame resource ``cf`` describes ``frame``."""
    extent = Box((cf.z_start, cf.y_start, cf.x_start), (cf.z_stop, cf.y_stop, cf.x_stop))
    sizes = (float(cf.z_voxel_size), float(cf.y_voxel_size), float(cf.x_voxel_size))
    return (
        extent == frame.extent
        and np.allclose(sizes, frame.voxel_size)
        and str(cf.voxel_unit) == boss_voxel_unit(frame.voxel_unit)
    )


def image_channels(client: BossClient, collection: str, experiment: str) -> list[str]:
    """The experiment's image channels (annotation channels such as ``annotation`` are not
    microscopy data), in BOSS's listing order."""
    names = client.list_channels(collection, experiment)
    return [n for n in names if client.channel(collection, experiment, n).type == "image"]


def bytes_per_voxel(
    client: BossClient, collection: str, experiment: str, channels: Iterable[str]
) -> int:
    """Bytes one voxel of the box costs when all ``channels`` are pulled."""
    return sum(client.channel(collection, experiment, c).dtype.itemsize for c in channels)
