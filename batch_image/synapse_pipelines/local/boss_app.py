"""The local BOSS server's web app: the v1 API subset that ``intern`` uses, over WSGI.

Owns :class:`BossApp`: token authentication (``Authorization: Token <t>``; 401 without a
valid token; ``read_only_tokens`` may only read, 403 code 3001 on a write), routing of the
paths intern builds (relative to ``/v1/``, a trailing slash optional everywhere), and the
answers:

* ``collection/``, ``coord/``, ``collection/C/experiment/``, ``.../channel/`` lists;
  ``collection/C``, ``coord/CF``, ``collection/C/experiment/E``, ``.../channel/CH`` create
  (POST 201) / get / update (PUT 200) / delete (204), with BOSS's JSON shapes;
* ``cutout/C/E/CH/R/x0:x1/y0:y1/z0:z1/[t0:t1/]`` GET (``application/blosc``: blosc-compressed
  C-order ZYX or TZYX array in the channel's dtype; ``?filter=id,id`` on annotation channels)
  and POST (same body, 201); ``cutout/to_black/...`` PUT (200); resolution R within the
  experiment's ``num_hierarchy_levels`` (coordinates in that level's voxels); a write makes
  a DOWNSAMPLED channel NOT_DOWNSAMPLED, as BOSS does;
* ``downsample/C/E/CH/`` GET / POST / DELETE
  (:class:`~synapse_pipelines.local.boss_pyramid.Downsampler`; ``app.downsampler = None``
  makes the server answer like a BOSS without that service);
* ``reserve/C/E/CH/N``, ``ids/C/E/CH/0/x/y/z/``, ``boundingbox/C/E/CH/0/ID/`` (loose,
  cuboid-aligned);
* errors as BOSS answers them (:mod:`synapse_pipelines.local.boss_api_errors`); a request
  body whose blosc header announces the wrong size is refused before decompression; more than
  520 MiB uncompressed per cutout is refused (413).

Storage is :class:`~synapse_pipelines.local.boss_storage.BossStore`; running the app is
:mod:`synapse_pipelines.local.boss_process`'s.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import blosc
import numpy as np

from synapse_pipelines.local.boss_api_errors import (
    DATATYPE_MISMATCH,
    INVALID_CUTOUT_ARGS,
    INVALID_REQUEST,
    INVALID_TOKEN,
    METHOD_NOT_ALLOWED,
    MISSING_PERMISSION,
    REQUEST_TOO_LARGE,
    RESOURCE_NOT_FOUND,
    UNHANDLED,
    ApiError,
)
from synapse_pipelines.local.boss_metadata import ChannelVolume
from synapse_pipelines.local.boss_pyramid import Downsampler, level_volume
from synapse_pipelines.local.boss_storage import BossStore

log = logging.getLogger(__name__)

#: BOSS's per-request limit on the uncompressed size of a cutout (bytes).
MAX_CUTOUT_BYTES = 520 * 1024 * 1024

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


@dataclass
class _Request:
    method: str
    parts: list[str]
    query: dict[str, list[str]]
    environ: dict[str, Any]

    def body(self, limit: int) -> bytes:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise ApiError(
                413,
                REQUEST_TOO_LARGE,
                f"request body of {length} bytes exceeds the {limit} byte limit: "
                "split the cutout into smaller requests",
            )
        stream = self.environ["wsgi.input"]
        # one read: waitress has the whole body buffered already (size checked above)
        data = stream.read(length) if length else b""
        while len(data) < length:  # a short read from another server: keep reading
            more = stream.read(length - len(data))
            if not more:
                break
            data += more
        return data

    def json(self) -> dict[str, Any]:
        raw = self.body(1 << 20)
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, INVALID_REQUEST, "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, INVALID_REQUEST, "request body must be a JSON object")
        return data


Response = tuple[int, list[tuple[str, str]], bytes]


def _json_response(status: int, payload: Any) -> Response:
    body = b"" if status == 204 or payload is None else json.dumps(payload).encode()
    return status, [("Content-Type", "application/json")], body


def _parse_range(text: str, axis: str) -> tuple[int, int]:
    m = re.fullmatch(r"(-?\d+):(-?\d+)", text)
    if not m:
        raise ApiError(400, INVALID_CUTOUT_ARGS, f"{axis} range {text!r} must look like start:stop")
    a, b = int(m.group(1)), int(m.group(2))
    if b <= a:
        raise ApiError(
            400, INVALID_CUTOUT_ARGS, f"{axis} range {text!r}: stop must be greater than start"
        )
    return a, b


class BossApp:
    """The WSGI application."""

    def __init__(
        self,
        store: BossStore,
        tokens: Iterable[str],
        *,
        read_only_tokens: Iterable[str] = (),
        max_cutout_bytes: int = MAX_CUTOUT_BYTES,
    ):
        self.store = store
        self.tokens = frozenset(tokens)
        self.read_only_tokens = frozenset(read_only_tokens)
        if not self.tokens:
            raise ValueError("the local BOSS server needs at least one token")
        self.max_cutout_bytes = max_cutout_bytes
        #: Optional hook for tests: called with (method, path) before routing; it may raise
        #: ApiError to simulate a failing BOSS (e.g. a 503 for the client's retry tests).
        self.fault_hook: Callable[[str, str], None] | None = None
        self.request_count = 0
        self._count_lock = threading.Lock()
        #: log every request at INFO (``boss serve`` turns it on; embedded servers stay quiet)
        self.access_log = False
        #: the downsample service; None answers ``/v1/downsample/`` like a BOSS without it
        self.downsampler: Downsampler | None = Downsampler(store)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "")
        started = time.perf_counter()
        with self._count_lock:
            self.request_count += 1
        try:
            self._authenticate(environ, method)
            if self.fault_hook is not None:
                self.fault_hook(method, path)
            parts = [p for p in path.split("/") if p]
            req = _Request(method, parts, parse_qs(environ.get("QUERY_STRING", "")), environ)
            status, headers, body = self._route(req)
        except ApiError as err:
            status, headers, body = _json_response(
                err.status, {"status": err.status, "code": err.code, "message": err.message}
            )
        except Exception:  # a bug: answer like BOSS, keep the traceback in our log
            log.exception("unhandled error serving %s %s", method, path)
            status, headers, body = _json_response(
                500, {"status": 500, "code": UNHANDLED, "message": "unhandled server error"}
            )
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS.get(status, 'Unknown')}", headers)
        # access log: method, path (names and ranges only; the token is in a header), status
        if self.access_log:
            log.info(
                "%s %s %d %dB %.1fms",
                method, path, status, len(body), 1000 * (time.perf_counter() - started),
            )  # fmt: skip
        return [body]

    def _authenticate(self, environ: dict[str, Any], method: str) -> None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "token" or not token:
            raise ApiError(
                401, INVALID_TOKEN, "authentication required: send 'Authorization: Token <token>'"
            )
        if token in self.tokens:
            return
        if token in self.read_only_tokens:
            if method in ("GET", "HEAD"):
                return
            raise ApiError(
                403, MISSING_PERMISSION, "this token has read-only permission on this server"
            )
        raise ApiError(401, INVALID_TOKEN, "invalid token")

    # -- routing
    def _route(self, req: _Request) -> Response:
        p = req.parts
        if len(p) < 2 or p[0] != "v1":
            raise ApiError(404, RESOURCE_NOT_FOUND, f"no such API endpoint: /{'/'.join(p)}")
        service, rest = p[1], p[2:]
        if service == "collection":
            return self._project(req, rest)
        if service == "coord":
            return self._coords(req, rest)
        if service == "cutout":
            if rest and rest[0] == "to_black" and req.method == "PUT":
                return self._to_black(req, rest[1:])
            return self._cutout(req, rest)
        if service == "reserve" and len(rest) == 4 and req.method == "GET":
            try:
                count = int(rest[3])
            except ValueError:
                raise ApiError(
                    400, INVALID_REQUEST, "the number of ids must be an integer"
                ) from None
            if count < 1:
                raise ApiError(400, INVALID_REQUEST, "the number of ids must be positive")
            first = self.store.reserve_ids(rest[0], rest[1], rest[2], count)
            return _json_response(200, {"start_id": first, "count": count})
        if service == "ids" and req.method == "GET":
            return self._ids(req, rest)
        if service == "boundingbox" and req.method == "GET":
            return self._bounding_box(req, rest)
        if service == "downsample" and self.downsampler is not None:
            return _json_response(*self.downsampler.handle(req.method, rest, req.query))
        raise ApiError(404, RESOURCE_NOT_FOUND, f"no such API endpoint: /{'/'.join(p)}")

    def _method_error(self, req: _Request) -> ApiError:
        return ApiError(
            405, METHOD_NOT_ALLOWED, f"{req.method} is not allowed on /{'/'.join(req.parts)}"
        )

    def _resource(self, req: _Request, kind: str, *names: str) -> Response:
        """GET/POST/PUT/DELETE one resource through the store's ``<verb>_<kind>`` methods,
        with BOSS's status codes (201 on create, 204 on delete)."""
        s, m = self.store, req.method
        if m == "GET":
            return _json_response(200, getattr(s, f"get_{kind}")(*names))
        if m == "POST":
            return _json_response(201, getattr(s, f"create_{kind}")(*names, req.json()))
        if m == "PUT":
            return _json_response(200, getattr(s, f"update_{kind}")(*names, req.json()))
        if m == "DELETE":
            getattr(s, f"delete_{kind}")(*names)
            return _json_response(204, None)
        raise self._method_error(req)

    def _project(self, req: _Request, rest: list[str]) -> Response:
        s, m = self.store, req.method
        n = len(rest)
        experiment = n >= 2 and rest[1] == "experiment"
        channel = n >= 4 and experiment and rest[3] == "channel"
        if n == 0:
            if m == "GET":
                return _json_response(200, {"collections": s.list_collections()})
        elif n == 1:
            return self._resource(req, "collection", rest[0])
        elif n == 2 and experiment:
            if m == "GET":
                return _json_response(200, {"experiments": s.list_experiments(rest[0])})
        elif n == 3 and experiment:
            return self._resource(req, "experiment", rest[0], rest[2])
        elif n == 4 and channel:
            if m == "GET":
                return _json_response(200, {"channels": s.list_channels(rest[0], rest[2])})
        elif n == 5 and channel:
            return self._resource(req, "channel", rest[0], rest[2], rest[4])
        else:
            raise ApiError(404, RESOURCE_NOT_FOUND, f"no such API endpoint: /{'/'.join(req.parts)}")
        raise self._method_error(req)

    def _coords(self, req: _Request, rest: list[str]) -> Response:
        if not rest and req.method == "GET":
            return _json_response(200, {"coords": self.store.list_coords()})
        if len(rest) == 1:
            return self._resource(req, "coord", rest[0])
        raise self._method_error(req)

    # -- cutouts
    def _region(
        self, vol: ChannelVolume, args: list[str]
    ) -> tuple[ChannelVolume, tuple[slice, ...], bool]:
        """The array of the resolution, the array-index region (t, z, y, x) for
        res/x/y/z[/t], and whether t was given."""
        if len(args) not in (4, 5):
            raise ApiError(
                400,
                INVALID_CUTOUT_ARGS,
                "cutout arguments must be resolution/x0:x1/y0:y1/z0:z1[/t0:t1]",
            )
        try:
            resolution = int(args[0])
        except ValueError:
            raise ApiError(400, INVALID_CUTOUT_ARGS, "resolution must be an integer") from None
        vol = level_volume(vol, resolution)  # BOSS's resolution check (400, code 1002)
        x, y, z = (_parse_range(a, ax) for a, ax in zip(args[1:4], "xyz", strict=True))
        has_t = len(args) == 5
        if has_t:
            t = _parse_range(args[4], "t")
        else:
            t = (vol.default_time_sample, vol.default_time_sample + 1)
        region = []
        for axis, (a, b), lo, hi in zip("tzyx", (t, z, y, x), vol.start, vol.stop, strict=True):
            if a < lo or b > hi:
                what = "time samples" if axis == "t" else "the coordinate frame"
                raise ApiError(
                    400,
                    INVALID_CUTOUT_ARGS,
                    f"{axis} range {a}:{b} is outside {what} ({lo}:{hi})",
                )
            region.append(slice(a - lo, b - lo))
        nbytes = vol.dtype.itemsize
        for sl in region:
            nbytes *= sl.stop - sl.start
        if nbytes > self.max_cutout_bytes:
            raise ApiError(
                413,
                REQUEST_TOO_LARGE,
                f"cutout of {nbytes} bytes exceeds the {self.max_cutout_bytes} byte limit: "
                "request smaller pieces",
            )
        return vol, tuple(region), has_t

    def _cutout(self, req: _Request, rest: list[str]) -> Response:
        if len(rest) < 3:
            raise ApiError(400, INVALID_CUTOUT_ARGS, "cutout needs collection/experiment/channel")
        vol, region, has_t = self._region(self.store.resolve_volume(*rest[:3]), rest[3:])
        if req.method == "GET":
            data = self.store.read(vol, region)
            if "filter" in req.query:
                data = self._filter(vol, data, req.query["filter"][0])
            if not has_t:
                data = data[0]
            body = blosc.compress(
                np.ascontiguousarray(data), typesize=vol.dtype.itemsize, cname="lz4", clevel=1
            )
            return 200, [("Content-Type", "application/blosc")], body
        if req.method == "POST":
            shape = tuple(sl.stop - sl.start for sl in region)
            data = self._decode(vol, req.body(self.max_cutout_bytes + 65536), shape)
            self.store.write(vol, region, data)
            self._written(rest[:3])
            return 201, [("Content-Type", "application/json")], b""
        raise self._method_error(req)

    def _decode(self, vol: ChannelVolume, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
        expected = int(np.prod(shape)) * vol.dtype.itemsize
        if len(raw) < 16:
            raise ApiError(400, INVALID_REQUEST, "cutout body is not blosc-compressed data")
        # blosc header: bytes 4..8 hold the uncompressed size; check it before allocating
        (nbytes,) = struct.unpack("<I", raw[4:8])
        if nbytes != expected:
            voxels = int(np.prod(shape))
            if voxels and nbytes % voxels == 0 and nbytes // voxels in (1, 2, 8):
                raise ApiError(
                    400,
                    DATATYPE_MISMATCH,
                    f"data has {8 * nbytes // voxels}-bit voxels but channel {vol.name} is "
                    f"{vol.datatype}",
                )
            raise ApiError(
                400,
                INVALID_CUTOUT_ARGS,
                f"data holds {nbytes} bytes but the cutout region {shape} of {vol.datatype} "
                f"needs {expected}",
            )
        try:
            buf = blosc.decompress(raw)
        except Exception:
            raise ApiError(400, INVALID_REQUEST, "cutout body is not valid blosc data") from None
        return np.frombuffer(buf, dtype=vol.dtype).reshape(shape)

    def _filter(self, vol: ChannelVolume, data: np.ndarray, text: str) -> np.ndarray:
        if vol.type != "annotation":
            raise ApiError(400, INVALID_CUTOUT_ARGS, "filter is only valid on annotation channels")
        try:
            ids = np.array([int(v) for v in text.split(",") if v.strip()], dtype=np.uint64)
        except ValueError:
            raise ApiError(400, INVALID_CUTOUT_ARGS, "filter must be comma-separated ids") from None
        return np.where(np.isin(data, ids), data, 0).astype(vol.dtype, copy=False)

    def _to_black(self, req: _Request, rest: list[str]) -> Response:
        if len(rest) < 3:
            raise ApiError(400, INVALID_CUTOUT_ARGS, "cutout needs collection/experiment/channel")
        vol, region, _ = self._region(self.store.resolve_volume(*rest[:3]), rest[3:])
        self.store.write(vol, region, 0)
        self._written(rest[:3])
        return _json_response(200, {})

    def _written(self, names: list[str]) -> None:
        # as BOSS: new data makes a DOWNSAMPLED channel NOT_DOWNSAMPLED again
        self.store.set_downsample_status(
            names[0], names[1], names[2], "NOT_DOWNSAMPLED", only_from=("DOWNSAMPLED",)
        )

    def _ids(self, req: _Request, rest: list[str]) -> Response:
        if len(rest) < 3:
            raise ApiError(400, INVALID_CUTOUT_ARGS, "ids needs collection/experiment/channel")
        vol = self.store.resolve_volume(*rest[:3])
        if vol.type != "annotation":
            raise ApiError(400, INVALID_REQUEST, f"{vol.name} is not an annotation channel")
        vol, region, _ = self._region(vol, rest[3:])
        ids = np.unique(self.store.read(vol, region))
        return _json_response(200, {"ids": [str(int(i)) for i in ids if i != 0]})

    def _bounding_box(self, req: _Request, rest: list[str]) -> Response:
        if len(rest) != 5:
            raise ApiError(
                400, INVALID_REQUEST, "boundingbox needs collection/experiment/channel/res/id"
            )
        vol = self.store.resolve_volume(*rest[:3])
        if vol.type != "annotation":
            raise ApiError(400, INVALID_REQUEST, f"{vol.name} is not an annotation channel")
        try:
            target = int(rest[4])
        except ValueError:
            raise ApiError(400, INVALID_REQUEST, "id must be an integer") from None
        lo: list[int] | None = None
        hi: list[int] = []
        for region in self.store.stored_chunks(vol):
            if (self.store.read(vol, region) == target).any():
                starts = [sl.start for sl in region]
                stops = [sl.stop for sl in region]
                if lo is None:
                    lo, hi = starts, stops
                else:
                    lo = [min(a, b) for a, b in zip(lo, starts, strict=True)]
                    hi = [max(a, b) for a, b in zip(hi, stops, strict=True)]
        if lo is None:
            raise ApiError(404, RESOURCE_NOT_FOUND, f"id {target} not found in {vol.name}")
        off = vol.start
        return _json_response(
            200,
            {
                "t_range": [lo[0] + off[0], hi[0] + off[0]],
                "z_range": [lo[1] + off[1], hi[1] + off[1]],
                "y_range": [lo[2] + off[2], hi[2] + off[2]],
                "x_range": [lo[3] + off[3], hi[3] + off[3]],
            },
        )
