"""BOSS (BossDB) I/O through ``intern``: pull, push, Neuroglancer links.

Everything in the project that talks to BOSS goes through this module. It wraps intern's
``BossRemote`` (the official SDK) and adds what the original nomads_cloud lacked: bounded
concurrency without multiprocessing, retries, cuboid-aligned pieces, and clear errors.

Client API (stable; used by ``steps.py``, the local runtime and the CLI)::

    client = BossClient(host, protocol, token, *, max_workers=8, max_retries=5,
                        timeout=120.0, backoff=0.5, piece_shape=PIECE_SHAPE)
    client = BossClient.for_request(request, token)          # host/protocol from the request
    client.close()  /  with BossClient(...) as client:        # stops the worker threads

    client.list_collections() / client.list_experiments(collection) -> list[str]
    client.list_channels(collection, experiment) -> list[str]
    client.channel(collection, experiment, name) -> ChannelInfo(name, datatype, type)
    client.coordinate_frame(collection, experiment)
        -> CoordinateFrame(extent: geometry.Box, voxel_size: (z, y, x), voxel_unit: str, name)
    client.validate_box(collection, experiment, box) -> CoordinateFrame
        # raises BossError(field="z_range"/"y_range"/"x_range") naming the axis and the extent;
        # half-open boxes: stop == extent stop is valid (the original rejected it)
    client.pull(collection, experiment, channel, box) -> np.ndarray   # ZYX, channel dtype, writable
    client.pull_channels(collection, experiment, channels, box) -> dict[str, np.ndarray]
    client.push(collection, experiment, channel, box, data) -> None   # zero pieces overwrite too
    client.ensure_channel(collection, experiment, name, *, datatype, type, sources=(),
                          description="", frame=None) -> ChannelInfo
        # creates collection / experiment (on ``frame``'s coordinate frame) / channel if missing;
        # refuses an existing channel with another datatype or type
    client.ensure_experiment(collection, experiment, frame) -> CoordinateFrame
    client.channel_description(collection, experiment, name) -> str | None
    load_experiment(client, collection, experiment, volumes, *, voxel_size, voxel_unit,
                    annotations=None, origin=(0, 0, 0), extent=None) -> CoordinateFrame

    publish_predictions(client, request, mask, labels=None, frame=None) -> PublishedChannels
        # PublishedChannels(host, protocol, collection, experiment, mask_channel,
        #                   labels_channel, box).to_dict()
    mask_channel_name(results_key) / labels_channel_name(results_key) -> str
    neuroglancer_link(host, protocol, layers, frame, box) -> str
    result_links(request, *, raw_channels=None, frame=None, neuroglancer_url=...) -> dict
    links_csv_text(links) -> str
    image_channels(client, col, exp) -> list[str]; check_box(frame, box) -> None
    bytes_per_voxel(client, col, exp, channels) -> int
    write_links_csv(path, links) -> Path

Errors are :class:`~synapse_pipelines.core.errors.BossError`: 401/403 say the token lacks
permission on the resource, 404 names the missing collection, experiment or channel, 5xx /
timeouts / dropped connections are retried ``max_retries`` times with exponential backoff and
full jitter before failing. The token is never part of ``repr()``, a log line or a message.

Pieces: reads and writes are split on a grid of ``piece_shape`` (a multiple of BOSS's
16x512x512 cuboids, anchored at voxel 0), so every request is cuboid-aligned inside, no two
pieces share a cuboid (concurrent writes never race on a read-modify-write), and each piece
stays far below BOSS's 520 MiB per-request limit. Pieces run on a ``ThreadPoolExecutor``
(intern's own splitting uses a multiprocessing Pool, which fails where /dev/shm is missing,
e.g. Lambda); each worker thread has its own ``BossRemote`` so no HTTP session is shared.

Output channel names: the original pushed the 0/255 mask as channel
``results_key + "_" + key`` where ``key`` was the key of its ``data_dict`` — in
nomads_cloud's ``driver.py`` that dict was ``{results_key: results}``, so the channel was
``<results_key>_<results_key>``. :func:`mask_channel_name` keeps that name so old links and
scripts still find the data. The labelled ids (new) go to ``<results_key>_synapse_ids``, a
uint64 ``annotation`` channel whose source is the mask channel.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import blosc
import numpy as np
import requests
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)
from intern.service.boss.v1.volume import CacheMode

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import AXES, CUBOID_SHAPE, Box, iter_aligned_blocks

if TYPE_CHECKING:
    from synapse_pipelines.core.request import SynapseRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Default piece of a pull or push, z, y, x: 2 cuboids deep. 8 Mi voxels (8 MiB of uint8,
#: 64 MiB of uint64): small enough to keep 8 workers busy on a 64x1024x1024 volume,
#: large enough that per-request overhead is negligible.
PIECE_SHAPE: tuple[int, int, int] = (32, 512, 512)
#: BOSS's per-request limit on the uncompressed cutout size.
MAX_REQUEST_BYTES = 520 * 1024 * 1024
SUPPORTED_DATATYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint64": np.uint64}
#: Description prefix of every channel this project creates; lets publish tell its own
#: earlier outputs (safe to overwrite) from a user's data channels (never overwritten).
OUTPUT_MARKER = "synapse-pipelines output"
NEUROGLANCER_VIEWER = "https://neuroglancer.bossdb.io/"
MAX_NAME_LENGTH = 255
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_UNIT_TO_METRES = {
    "nanometers": 1e-9,
    "nanometer": 1e-9,
    "nm": 1e-9,
    "micrometers": 1e-6,
    "micrometer": 1e-6,
    "um": 1e-6,
    "millimeters": 1e-3,
    "millimeter": 1e-3,
    "mm": 1e-3,
    "centimeters": 1e-2,
    "meters": 1.0,
}


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    datatype: str  # "uint8" | "uint16" | "uint64"
    type: str  # "image" | "annotation"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.datatype)


@dataclass(frozen=True)
class CoordinateFrame:
    extent: Box  # half-open, z, y, x
    voxel_size: tuple[float, float, float]  # z, y, x
    voxel_unit: str
    name: str


@dataclass(frozen=True)
class PublishedChannels:
    host: str
    protocol: str
    collection: str
    experiment: str
    mask_channel: str  # uint8 image, 0/255
    labels_channel: str | None  # uint64 annotation, synapse ids
    box: Box

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (for state payloads and manifests); no token anywhere."""
        return {
            "boss_url": f"{self.protocol}://{self.host}",
            "collection": self.collection,
            "experiment": self.experiment,
            "mask_channel": self.mask_channel,
            "labels_channel": self.labels_channel,
            "z_range": [self.box.start[0], self.box.stop[0]],
            "y_range": [self.box.start[1], self.box.stop[1]],
            "x_range": [self.box.start[2], self.box.stop[2]],
        }


@dataclass(frozen=True)
class LinkLayer:
    """One Neuroglancer layer: ``kind`` is ``"image"`` or ``"segmentation"``."""

    name: str
    collection: str
    experiment: str
    channel: str
    kind: str = "image"


# ----------------------------------------------------------------------------- client


class BossClient:
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
        if protocol not in ("http", "https"):
            raise BossError(
                f"protocol must be 'http' or 'https', not {protocol!r}", field="boss_protocol"
            )
        if not token:
            raise BossError(
                "no BOSS token was given",
                field="token",
                hint="set BOSS_TOKEN or the request's token_secret",
            )
        if max_workers < 1 or max_retries < 0:
            raise ValueError("max_workers must be >= 1 and max_retries >= 0")
        for axis, size, cub in zip(AXES, piece_shape, CUBOID_SHAPE, strict=True):
            if size <= 0 or size % cub:
                raise ValueError(f"piece_shape along {axis} must be a positive multiple of {cub}")
        self.host = host
        self.protocol = protocol
        self.max_workers = max_workers
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.piece_shape = piece_shape
        self.__token = token
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._channels: dict[tuple[str, str, str], ChannelResource] = {}
        self._channels_lock = threading.Lock()
        #: called with the delay before each retry sleep; tests use it to count retries
        self.sleep: Callable[[float], None] = time.sleep

    @classmethod
    def for_request(cls, request: SynapseRequest, token: str, **kwargs: Any) -> BossClient:
        return cls(request.boss_host, request.boss_protocol, token, **kwargs)

    def __repr__(self) -> str:
        return f"BossClient({self.protocol}://{self.host}, max_workers={self.max_workers})"

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}"

    # -- plumbing
    def _remote(self) -> BossRemote:
        """This thread's BossRemote (requests.Session is not guaranteed thread-safe)."""
        remote = getattr(self._local, "remote", None)
        if remote is None:
            remote = BossRemote(
                {"protocol": self.protocol, "host": self.host, "token": self.__token}
            )
            opts = {"timeout": self.timeout}
            for service in (remote.project_service, remote.volume_service):
                service.session_send_opts = dict(opts)
            self._local.remote = remote
        return remote

    def _scrub(self, text: str) -> str:
        return text.replace(self.__token, "***") if self.__token else text

    def _call(self, what: str, resource: str, fn: Callable[[BossRemote], T]) -> T:
        """Run ``fn`` with retries; map failures to BossError naming ``resource``."""
        attempt = 0
        while True:
            try:
                return fn(self._remote())
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in _RETRY_STATUS and attempt < self.max_retries:
                    self._pause(attempt, what, resource, f"HTTP {status}")
                    attempt += 1
                    continue
                raise self._http_error(what, resource, status, exc) from None
            except requests.exceptions.SSLError:
                # a certificate problem does not heal by retrying
                raise BossError(
                    f"TLS handshake with {self.url} failed for {what} {resource}",
                    field="boss_host",
                    hint="check the host name and protocol (http for the local server)",
                ) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                # the server or network dropped us; every request here is idempotent
                # (GET, PUT to_black, POST of a whole region), so retrying is safe
                if attempt < self.max_retries:
                    self._pause(attempt, what, resource, type(exc).__name__)
                    attempt += 1
                    self._local.remote = None  # fresh session: the old socket may be dead
                    continue
                raise BossError(
                    f"{what} {resource} on {self.url} failed after {attempt + 1} attempts: "
                    f"{type(exc).__name__}",
                    hint="check that BOSS is reachable and retry later",
                ) from None
            except requests.RequestException as exc:  # malformed URL and the like
                raise BossError(
                    f"cannot send {what} {resource} to {self.url}: {type(exc).__name__}",
                    field="boss_host",
                    hint="give host[:port] without a path, and protocol http or https",
                ) from None

    def _pause(self, attempt: int, what: str, resource: str, reason: str) -> None:
        # exponential backoff with full jitter: spreads the retries of concurrent pieces
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        log.warning(
            "BOSS %s %s: %s; retry %d/%d in %.2fs",
            what,
            resource,
            reason,
            attempt + 1,
            self.max_retries,
            delay,
        )
        self.sleep(delay)

    def _http_error(
        self, what: str, resource: str, status: int | None, exc: requests.HTTPError
    ) -> BossError:
        detail = ""
        if exc.response is not None:
            try:
                detail = str(exc.response.json().get("message", ""))
            except ValueError:
                detail = exc.response.text[:200]
        detail = self._scrub(detail)
        suffix = f" (BOSS said: {detail})" if detail else ""
        if status in (401, 403):
            return BossError(
                f"the token lacks permission on {resource} at {self.url} "
                f"(HTTP {status} on {what}){suffix}",
                status=status,
                field="token",
                hint="use a token with read access to the input and write access to the output",
            )
        if status == 404:
            return BossError(f"{resource} was not found on {self.url}{suffix}", status=404)
        if status == 413:
            return BossError(
                f"{what} {resource}: BOSS refused the request as too large{suffix}",
                status=413,
                hint="use a smaller piece_shape",
            )
        if status is not None and status >= 500:
            return BossError(
                f"{what} {resource} failed on {self.url} with HTTP {status} after "
                f"{self.max_retries + 1} attempts{suffix}",
                status=status,
                hint="BOSS is failing; retry later",
            )
        return BossError(f"{what} {resource} failed with HTTP {status}{suffix}", status=status)

    def _missing_resource(
        self, collection: str, experiment: str | None, channel: str | None
    ) -> str:
        """Which of collection / experiment / channel is missing, for a 404's message."""
        probes: list[tuple[str, Any]] = [
            (f"collection {collection!r}", CollectionResource(collection))
        ]
        if experiment is not None:
            probes.append(
                (
                    f"experiment {experiment!r} in collection {collection!r}",
                    ExperimentResource(experiment, collection),
                )
            )
        if channel is not None and experiment is not None:
            probes.append(
                (
                    f"channel {channel!r} in {collection}/{experiment}",
                    ChannelResource(channel, collection, experiment),
                )
            )
        for label, resource in probes:
            try:
                self._remote().get_project(resource)
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return label
                break
            except requests.RequestException:
                break
        return label if channel is None else f"{collection}/{experiment}/{channel}"

    def _project_call(
        self,
        what: str,
        collection: str,
        experiment: str | None,
        channel: str | None,
        fn: Callable[[BossRemote], T],
    ) -> T:
        name = "/".join(p for p in (collection, experiment, channel) if p is not None)
        try:
            return self._call(what, name, fn)
        except BossError as err:
            if err.status == 404:
                missing = self._missing_resource(collection, experiment, channel)
                raise BossError(
                    f"{missing} does not exist on {self.url}",
                    status=404,
                    field="collection" if missing.startswith("collection") else None,
                    hint="check the names (they are case-sensitive) with "
                    "`synapse-pipelines boss ls`",
                ) from None
            raise

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

    def coordinate_frame(self, collection: str, experiment: str) -> CoordinateFrame:
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
        return CoordinateFrame(
            extent=Box((cf.z_start, cf.y_start, cf.x_start), (cf.z_stop, cf.y_stop, cf.x_stop)),
            voxel_size=(float(cf.z_voxel_size), float(cf.y_voxel_size), float(cf.x_voxel_size)),
            voxel_unit=str(cf.voxel_unit),
            name=str(cf.name),
        )

    def validate_box(self, collection: str, experiment: str, box: Box) -> CoordinateFrame:
        """Check ``box`` lies in the experiment's frame; return the frame."""
        frame = self.coordinate_frame(collection, experiment)
        check_box_in_frame(box, frame, f"{collection}/{experiment}")
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

    def pull(self, collection: str, experiment: str, channel: str, box: Box) -> np.ndarray:
        """The voxels of ``box`` (ZYX, the channel's dtype, a fresh writable array)."""
        return self.pull_channels(collection, experiment, [channel], box)[channel]

    def pull_channels(
        self, collection: str, experiment: str, channels: Iterable[str], box: Box
    ) -> dict[str, np.ndarray]:
        """Several channels of one box; the pieces of all channels share the worker pool
        (a small box is one piece per channel, so channels are what runs in parallel)."""
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
                lambda r: _get_cutout(r, chan, piece),
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
                fn = lambda r: _post_cutout(r, chan, piece, block)  # noqa: E731
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
        used instead. Returns the experiment's actual frame (an existing experiment is left
        as it is: callers check their box against the returned frame)."""
        if self._get_or_none(CollectionResource(collection), f"collection {collection!r}") is None:
            self._create(
                CollectionResource(collection, f"{OUTPUT_MARKER}: predictions"),
                f"collection {collection!r}",
            )
        exp_label = f"experiment {collection}/{experiment}"
        if self._get_or_none(ExperimentResource(experiment, collection), exp_label) is None:
            frame_name = frame.name
            existing = self._get_or_none(
                CoordinateFrameResource(frame_name), f"coordinate frame {frame_name!r}"
            )
            if existing is None or not _same_frame(existing, frame):
                frame_name = (
                    f"{frame.name}_synapse_pipelines" if existing is not None else frame_name
                )
                unit = _boss_voxel_unit(frame.voxel_unit)
                if (
                    self._get_or_none(
                        CoordinateFrameResource(frame_name), f"coordinate frame {frame_name!r}"
                    )
                    is None
                ):
                    (z0, y0, x0), (z1, y1, x1) = frame.extent.start, frame.extent.stop
                    vz, vy, vx = frame.voxel_size
                    self._create(
                        CoordinateFrameResource(
                            frame_name,
                            f"{OUTPUT_MARKER}: copy of {frame.name}",
                            x0,
                            x1,
                            y0,
                            y1,
                            z0,
                            z1,
                            vx,
                            vy,
                            vz,
                            unit,
                        ),
                        f"coordinate frame {frame_name!r}",
                    )
            self._create(
                ExperimentResource(
                    experiment,
                    collection,
                    frame_name,
                    f"{OUTPUT_MARKER}: synapse predictions",
                    num_hierarchy_levels=1,
                    hierarchy_method="anisotropic",
                ),
                exp_label,
            )
        return self.coordinate_frame(collection, experiment)

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
        if len(name) > MAX_NAME_LENGTH:
            raise BossError(
                f"output channel name {name!r} is {len(name)} characters; BOSS allows "
                f"{MAX_NAME_LENGTH}",
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


def _get_cutout(remote: BossRemote, chan: ChannelResource, piece: Box) -> np.ndarray:
    """GET one piece through intern's volume service (its URL, headers, session).

    Same request as ``remote.get_cutout(..., parallel=False)``, but the body is read in one
    call: requests' ``.content`` (which intern uses) reads in 10 KiB steps, which cost more
    CPU than everything else on an 8 MiB incompressible piece.
    """
    (z0, y0, x0), (z1, y1, x1) = piece.start, piece.stop
    service = remote.volume_service
    req = service.service.get_cutout_request(
        chan, "GET", "application/blosc", service.url_prefix, service.auth,
        0, [x0, x1], [y0, y1], [z0, z1], None, access_mode=CacheMode.no_cache,
    )  # fmt: skip
    prep = service.session.prepare_request(req)
    prep.headers["Accept"] = "application/blosc"
    resp = service.session.send(prep, stream=True, **service.session_send_opts)
    try:
        if resp.status_code != 200:
            _ = resp.content  # keep the error body for the message
            raise requests.HTTPError(
                f"Get cutout failed on {chan.name}, got HTTP response: ({resp.status_code})",
                request=req,
                response=resp,
            )
        raw = resp.raw.read()
    finally:
        resp.close()
    dtype = np.dtype(chan.datatype)
    data = np.frombuffer(blosc.decompress(raw), dtype=dtype)
    if data.size != piece.size:
        raise BossError(
            f"BOSS returned {data.size} voxels for {piece} of {chan.name} ({piece.size} expected)"
        )
    return data.reshape(piece.shape)


def _post_cutout(remote: BossRemote, chan: ChannelResource, piece: Box, block: np.ndarray) -> None:
    """POST one piece through intern's volume service (its URL, headers, session).

    Same request as ``remote.create_cutout`` minus two costs that dominated the push
    profile: a full ``np.sum`` of the block (intern's all-zero test; ours is ``any()``) and
    blosc at its default level 9 with typesize = bit width. LZ4 at level 1 with byte
    shuffle is several times faster and BOSS decompresses any blosc frame.
    """
    (z0, y0, x0), (z1, y1, x1) = piece.start, piece.stop
    service = remote.volume_service
    body = blosc.compress(
        block.tobytes() if not block.flags.c_contiguous else block,
        typesize=block.dtype.itemsize,
        clevel=1,
        shuffle=blosc.SHUFFLE,
        cname="lz4",
    )
    req = service.service.get_cutout_request(
        chan, "POST", "application/blosc", service.url_prefix, service.auth,
        0, [x0, x1], [y0, y1], [z0, z1], None, numpyVolume=body,
    )  # fmt: skip
    resp = service.session.send(service.session.prepare_request(req), **service.session_send_opts)
    if resp.status_code != 201:
        raise requests.HTTPError(
            f"Create cutout failed on {chan.name}, got HTTP response: ({resp.status_code})",
            request=req,
            response=resp,
        )


_BOSS_UNITS = ("nanometers", "micrometers", "millimeters", "centimeters")


def _boss_voxel_unit(unit: str) -> str:
    """BOSS's spelling of a length unit (it accepts only these four)."""
    lowered = unit.lower()
    aliases = {"nm": "nanometers", "um": "micrometers", "µm": "micrometers", "mm": "millimeters",
               "cm": "centimeters"}  # fmt: skip
    lowered = aliases.get(lowered, lowered)
    if not lowered.endswith("s"):
        lowered += "s"
    if lowered not in _BOSS_UNITS:
        raise BossError(
            f"voxel unit {unit!r} is not one BOSS accepts ({', '.join(_BOSS_UNITS)})",
            field="voxel_unit",
            hint="give the voxel size in nanometers, e.g. --voxel-unit nanometers",
        )
    return lowered


def _same_frame(cf: Any, frame: CoordinateFrame) -> bool:
    extent = Box((cf.z_start, cf.y_start, cf.x_start), (cf.z_stop, cf.y_stop, cf.x_stop))
    sizes = (float(cf.z_voxel_size), float(cf.y_voxel_size), float(cf.x_voxel_size))
    return (
        extent == frame.extent
        and np.allclose(sizes, frame.voxel_size)
        and str(cf.voxel_unit) == _boss_voxel_unit(frame.voxel_unit)
    )


def check_box_in_frame(box: Box, frame: CoordinateFrame, where: str) -> None:
    """Raise BossError naming the first axis of ``box`` outside ``frame`` (half-open)."""
    for axis, a, b, lo, hi in zip(
        AXES, box.start, box.stop, frame.extent.start, frame.extent.stop, strict=True
    ):
        if b <= a:
            raise BossError(
                f"{axis} range {a}:{b} is empty",
                field=f"{axis}_range",
                hint="give start < stop (ranges are half-open)",
            )
        if a < lo or b > hi:
            raise BossError(
                f"{axis} range {a}:{b} is outside the coordinate frame of {where} "
                f"({axis} {lo}:{hi}, half-open)",
                field=f"{axis}_range",
                hint=f"use a {axis} range within {lo}:{hi}",
            )


# ----------------------------------------------------------------------------- publishing


def mask_channel_name(results_key: str) -> str:
    """The original's channel for the 0/255 mask: ``<results_key>_<key>``, key = results_key."""
    return f"{results_key}_{results_key}"


def labels_channel_name(results_key: str) -> str:
    return f"{results_key}_synapse_ids"


def publish_predictions(
    client: BossClient,
    request: SynapseRequest,
    mask: np.ndarray,
    labels: np.ndarray | None = None,
    frame: CoordinateFrame | None = None,
    **_ignored: Any,
) -> PublishedChannels:
    """Push the 0/255 mask (and the uint64 synapse ids) of ``request.box`` to the output.

    ``frame`` is the input experiment's coordinate frame (from :meth:`BossClient.validate_box`;
    fetched when omitted): a missing output experiment is created on it. ``labels`` may be
    omitted (then only the mask channel is written and ``labels_channel`` is None). Extra
    keyword arguments (e.g. ``voxel_size``/``voxel_unit`` from an older caller) are ignored:
    the input's coordinate frame in BOSS is the authority on voxel sizes.
    Idempotent: a re-run writes the same values to the same region (all-zero pieces included).
    Refuses to write into the request's input channels, and into an existing output channel
    of another datatype or type.
    """
    box = request.box
    if tuple(mask.shape) != box.shape or (labels is not None and tuple(labels.shape) != box.shape):
        shapes = f"mask {mask.shape}" + (f", labels {labels.shape}" if labels is not None else "")
        raise BossError(f"{shapes} must have the request's shape {box.shape} (z, y, x)")
    published = prepare_publication(client, request, frame, labels=labels is not None)
    push_predictions(client, published, box, mask, labels)
    return published


def prepare_publication(
    client: BossClient,
    request: SynapseRequest,
    frame: CoordinateFrame | None = None,
    *,
    labels: bool = True,
) -> PublishedChannels:
    """Check and create the output channels of ``request`` (once, before any push): refuses
    the request's input channels and channels of another datatype or type; creates a missing
    output experiment on the input's coordinate ``frame`` (fetched when omitted)."""
    box = request.box
    if frame is None:
        frame = client.coordinate_frame(request.collection, request.experiment)
    col, exp, key = request.output_collection, request.output_experiment, request.results_key
    mask_name, labels_name = mask_channel_name(key), labels_channel_name(key)
    targets = (mask_name, labels_name) if labels else (mask_name,)
    _refuse_input_channels(client, request, targets)

    out_frame = client.ensure_experiment(col, exp, frame)
    check_box_in_frame(box, out_frame, f"output experiment {col}/{exp}")
    description = f"{OUTPUT_MARKER}: {key}"
    client.ensure_channel(
        col, exp, mask_name, datatype="uint8", type="image", description=f"{description} mask"
    )
    if labels:
        client.ensure_channel(
            col,
            exp,
            labels_name,
            datatype="uint64",
            type="annotation",
            sources=[mask_name],
            description=f"{description} synapse ids",
        )
    return published_channels(client, request, labels=labels)


def published_channels(
    client: BossClient, request: SynapseRequest, *, labels: bool = True
) -> PublishedChannels:
    """Where ``request``'s predictions go (no BOSS call: block jobs of a blockwise publish
    find the channels :func:`prepare_publication` made)."""
    key = request.results_key
    return PublishedChannels(
        host=client.host,
        protocol=client.protocol,
        collection=request.output_collection,
        experiment=request.output_experiment,
        mask_channel=mask_channel_name(key),
        labels_channel=labels_channel_name(key) if labels else None,
        box=request.box,
    )


def push_predictions(
    client: BossClient,
    published: PublishedChannels,
    box: Box,
    mask: np.ndarray,
    labels: np.ndarray | None = None,
) -> None:
    """Write one box (the request's, or one block of it) of the mask as 0/255 and of the
    ids to channels made by :func:`prepare_publication`."""
    if not published.box.contains(box):
        raise BossError(f"{box} lies outside the published box {published.box}")
    col, exp = published.collection, published.experiment
    # the original's values: any detection is 255
    client.push(
        col, exp, published.mask_channel, box, np.where(mask > 0, np.uint8(255), np.uint8(0))
    )
    if labels is not None and published.labels_channel is not None:
        if labels.size and labels.min() < 0:
            raise BossError("synapse ids must be non-negative integers")
        client.push(col, exp, published.labels_channel, box, labels.astype(np.uint64, copy=False))


def _refuse_input_channels(
    client: BossClient, request: SynapseRequest, targets: Sequence[str]
) -> None:
    explicit = {c for c in (request.presynaptic_channel, request.postsynaptic_channel) if c}
    same_experiment = (request.output_collection, request.output_experiment) == (
        request.collection,
        request.experiment,
    )
    for name in targets:
        if same_experiment and name in explicit:
            raise _input_channel_error(request, name)
        if same_experiment:
            desc = client.channel_description(request.collection, request.experiment, name)
            if desc is not None and not desc.startswith(OUTPUT_MARKER):
                raise _input_channel_error(request, name)


def _input_channel_error(request: SynapseRequest, name: str) -> BossError:
    return BossError(
        f"output channel {request.output_collection}/{request.output_experiment}/{name} is an "
        "input channel of this request (it exists and was not written by synapse-pipelines); "
        "refusing to overwrite input data",
        field="output_experiment",
        hint="choose an output_collection/output_experiment other than the input's",
    )


# ----------------------------------------------------------------------------- links


def boss_source(protocol: str, host: str, collection: str, experiment: str, channel: str) -> str:
    """Neuroglancer's data source for a BOSS channel."""
    return f"boss://{protocol}://{host}/{collection}/{experiment}/{channel}"


def neuroglancer_link(
    host: str,
    protocol: str,
    layers: Sequence[LinkLayer],
    frame: CoordinateFrame | None,
    box: Box,
    *,
    viewer: str = NEUROGLANCER_VIEWER,
) -> str:
    """A Neuroglancer URL showing ``layers``, centred on ``box``.

    With a ``frame`` the state carries the physical voxel size; without one (e.g. in a Lambda
    that does not call BOSS) Neuroglancer takes the dimensions from the BOSS sources, and the
    position is still in voxels.
    """
    center = [(a + b) / 2 for a, b in zip(box.start, box.stop, strict=True)]
    state: dict[str, Any] = {}
    if frame is not None:
        scale = _UNIT_TO_METRES.get(frame.voxel_unit.lower(), 1e-9)
        vz, vy, vx = frame.voxel_size
        # round away binary noise (100 * 1e-9 is 1.0000000000000001e-07)
        state["dimensions"] = {
            axis: [float(f"{size * scale:.12g}"), "m"]
            for axis, size in (("x", vx), ("y", vy), ("z", vz))
        }
    state.update(
        position=[center[2], center[1], center[0]],
        crossSectionScale=1,
        projectionScale=max(box.shape[1:]) or 1,
        layers=[
            {
                "type": layer.kind,
                "source": boss_source(
                    protocol, host, layer.collection, layer.experiment, layer.channel
                ),
                "name": layer.name,
                **({"opacity": 0.5} if layer.kind == "segmentation" else {}),
            }
            for layer in layers
        ],
        layout="4panel",
    )
    text = json.dumps(state, separators=(",", ":"))
    base = viewer if viewer.endswith("/") else viewer + "/"
    return f"{base}#!{urllib.parse.quote(text, safe='')}"


def result_links(
    request: SynapseRequest,
    *,
    raw_channels: Sequence[str] | None = None,
    frame: CoordinateFrame | None = None,
    neuroglancer_url: str = NEUROGLANCER_VIEWER,
    include_labels: bool = True,
) -> dict[str, str]:
    """Links for links.csv, computed from the request alone (no BOSS call needed).

    ``all`` shows the raw channels as image layers and the predictions as segmentation
    layers; then one link per raw channel and per output channel. ``raw_channels`` defaults
    to the request's explicit pre/postsynaptic channels. Output channel names are the ones
    :func:`publish_predictions` writes (:func:`mask_channel_name`, :func:`labels_channel_name`).
    """
    host, protocol = request.boss_host, request.boss_protocol
    if raw_channels is None:
        raw_channels = [c for c in (request.presynaptic_channel, request.postsynaptic_channel) if c]
    raw_layers = [
        LinkLayer(ch, request.collection, request.experiment, ch, "image") for ch in raw_channels
    ]
    col, exp, key = request.output_collection, request.output_experiment, request.results_key
    out_layers = [LinkLayer("predictions", col, exp, mask_channel_name(key), "segmentation")]
    if include_labels:
        out_layers.append(
            LinkLayer("synapse_ids", col, exp, labels_channel_name(key), "segmentation")
        )
    box = request.box
    links = {
        "all": neuroglancer_link(
            host, protocol, raw_layers + out_layers, frame, box, viewer=neuroglancer_url
        )
    }
    for layer in raw_layers + out_layers:
        links[layer.name] = neuroglancer_link(
            host, protocol, [layer], frame, box, viewer=neuroglancer_url
        )
    return links


def links_csv_text(links: Mapping[str, str]) -> str:
    """``name,url`` rows with a header, like the original's NDVIS_links.csv (key, link)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "url"])
    for name, url in links.items():
        writer.writerow([name, url])
    return buf.getvalue()


def write_links_csv(path: str | Path, links: Mapping[str, str]) -> Path:
    """Write :func:`links_csv_text` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(links_csv_text(links))
    return path


# ----------------------------------------------------------------------------- helpers


def image_channels(client: BossClient, collection: str, experiment: str) -> list[str]:
    """The experiment's image channels (annotation channels such as ``annotation`` are not
    microscopy data), in BOSS's listing order."""
    names = client.list_channels(collection, experiment)
    return [n for n in names if client.channel(collection, experiment, n).type == "image"]


def check_box(frame: CoordinateFrame, box: Box) -> None:
    """Raise BossError naming the axis when ``box`` is not inside ``frame`` (half-open)."""
    check_box_in_frame(box, frame, f"coordinate frame {frame.name!r}")


def bytes_per_voxel(
    client: BossClient, collection: str, experiment: str, channels: Iterable[str]
) -> int:
    """Bytes one voxel of the box costs when all ``channels`` are pulled."""
    return sum(client.channel(collection, experiment, c).dtype.itemsize for c in channels)


def load_experiment(
    client: BossClient,
    collection: str,
    experiment: str,
    volumes: Mapping[str, np.ndarray],
    *,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    voxel_unit: str = "nanometers",
    annotations: Mapping[str, np.ndarray] | None = None,
    origin: tuple[int, int, int] = (0, 0, 0),
    extent: Box | None = None,
) -> CoordinateFrame:
    """Create an experiment holding ``volumes`` (image channels, ZYX, dtype kept) and
    ``annotations`` (uint64 annotation channels) at ``origin``; used by ``boss load``, the
    demo and the tests. The coordinate frame (``<collection>_<experiment>``) is ``extent`` or
    exactly the volumes' box. Returns the experiment's frame."""
    if not volumes:
        raise BossError("load_experiment needs at least one image channel")
    shapes = {tuple(v.shape) for v in [*volumes.values(), *(annotations or {}).values()]}
    if len(shapes) != 1:
        raise BossError(f"all channels must have the same ZYX shape, got {sorted(shapes)}")
    box = Box(origin, tuple(o + n for o, n in zip(origin, shapes.pop(), strict=True)))  # type: ignore[arg-type]
    frame = CoordinateFrame(
        extent=extent or Box((0, 0, 0), box.stop),
        voxel_size=tuple(float(v) for v in voxel_size),  # type: ignore[arg-type]
        voxel_unit=voxel_unit,
        name=f"{collection}_{experiment}",
    )
    check_box_in_frame(box, frame, f"{collection}/{experiment}")
    client.ensure_experiment(collection, experiment, frame)
    for name, data in volumes.items():
        datatype = np.dtype(data.dtype).name
        if datatype not in SUPPORTED_DATATYPES:
            raise BossError(f"channel {name}: dtype {datatype} is not one of uint8/uint16/uint64")
        client.ensure_channel(collection, experiment, name, datatype=datatype, type="image")
        client.push(collection, experiment, name, box, data)
    first = next(iter(volumes))
    for name, data in (annotations or {}).items():
        client.ensure_channel(
            collection, experiment, name, datatype="uint64", type="annotation", sources=[first]
        )
        client.push(collection, experiment, name, box, data.astype(np.uint64, copy=False))
    return client.coordinate_frame(collection, experiment)
