"""A local BOSS-compatible server: the v1 API subset that ``intern`` uses.

Why: no usable local BOSS exists (bossphorus is broken on numpy 2), yet every BOSS test and
the demo must talk real HTTP to something that behaves like BossDB. This module is that
something; it is the embedded default for ``synapse-pipelines demo`` and the server behind
``tests/fixtures/boss_server.py``.

Implemented (paths relative to ``/v1/``; a trailing slash is optional everywhere):

* ``collection/`` list, ``collection/C`` create (POST 201) / get / update (PUT 200) /
  delete (204); likewise ``coord/CF``, ``collection/C/experiment/E`` and
  ``collection/C/experiment/E/channel/CH``, with BOSS's JSON shapes (``creator``,
  ``downsample_status``...). Deleting a parent that still has children, or a coordinate frame
  still used by an experiment, is refused (400) as BOSS does.
* ``cutout/C/E/CH/0/x0:x1/y0:y1/z0:z1/[t0:t1/]`` GET (``application/blosc``: blosc-compressed
  C-order ZYX or TZYX array in the channel's dtype; ``?filter=id,id`` on annotation channels)
  and POST (same body, 201); ``cutout/to_black/...`` PUT (200).
* ``reserve/C/E/CH/N`` ids reservation, ``ids/C/E/CH/0/x/y/z/`` ids in a region,
  ``boundingbox/C/E/CH/0/ID/`` loose (cuboid-aligned) bounding box of an id.
* Token authentication (``Authorization: Token <t>``): 401 without a valid token; tokens
  given as ``read_only_tokens`` may read but get 403 (code 3001) on any write.
* Errors are BOSS-shaped JSON ``{"status", "code", "message"}``: 1001 invalid cutout
  arguments (400), 2000 request too large (413), 2001 datatype mismatch (400), 3001 missing
  permission (403), 4000 resource not found (404), 4003 resource already exists (400), 4004
  resource in use (400), 1004 invalid request body (400), 9002 unhandled (500).
* Only resolution 0 is stored (no downsampling); datatypes uint8, uint16, uint64.

Storage: ``<data_dir>/metadata.json`` (the data model, rewritten atomically) and one Zarr v3
array per channel, ``<data_dir>/volumes/<uid>.zarr``, shaped (T, Z, Y, X) over the coordinate
frame with BOSS's 16x512x512 cuboids as chunks (blosc-lz4). Chunks are only written when
touched, so a frame larger than memory or disk costs nothing until data arrives, and data
survives restarts. Concurrency: requests run on waitress worker threads; writes and reads
take striped per-cuboid locks (in sorted order, so they cannot deadlock), which makes the
read-modify-write of a partially covered cuboid atomic.

Use :class:`LocalBossServer` to run it in-process (tests, the demo) or
``synapse-pipelines boss serve`` to run it as a process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import blosc
import numpy as np
import zarr
from zarr.codecs import BloscCodec

log = logging.getLogger(__name__)

#: BOSS's per-request limit on the uncompressed size of a cutout (bytes).
MAX_CUTOUT_BYTES = 520 * 1024 * 1024
#: BOSS cuboid, (z, y, x); the chunk shape of every stored channel (with t = 1).
CUBOID = (16, 512, 512)
#: Chunk of the stored (T, Z, Y, X) arrays: one cuboid of one time sample.
CHUNK = (1, *CUBOID)
DATATYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint64": np.uint64}
CHANNEL_TYPES = ("image", "annotation")
NAME_RE = re.compile(r"^[\w-]+$")
_LOCK_STRIPES = 1024

# BOSS error codes used here (see module docstring).
INVALID_CUTOUT_ARGS = 1001
INVALID_REQUEST = 1004
REQUEST_TOO_LARGE = 2000
DATATYPE_MISMATCH = 2001
MISSING_PERMISSION = 3001
INVALID_TOKEN = 3000
RESOURCE_NOT_FOUND = 4000
RESOURCE_EXISTS = 4003
RESOURCE_IN_USE = 4004
UNHANDLED = 9002
METHOD_NOT_ALLOWED = 1005

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


class ApiError(Exception):
    """An HTTP error answered as BOSS does: ``{"status", "code", "message"}``."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, RESOURCE_NOT_FOUND, f"{kind} {name!r} not found")


# ----------------------------------------------------------------------------- storage


class BossStore:
    """The data model (collections, frames, experiments, channels) and the voxels on disk."""

    def __init__(self, data_dir: str | os.PathLike[str], *, creator: str = "local-boss"):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "volumes").mkdir(exist_ok=True)
        self.creator = creator
        self._meta_path = self.data_dir / "metadata.json"
        self._meta_lock = threading.RLock()
        self._chunk_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._arrays: dict[str, bool] = {}  # uids whose zarr.json exists
        self._arrays_lock = threading.Lock()
        if self._meta_path.exists():
            self.meta: dict[str, Any] = json.loads(self._meta_path.read_text())
        else:
            self.meta = {"collections": {}, "coords": {}, "next_uid": 1}
            self._save()

    # -- metadata persistence
    def _save(self) -> None:
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta, indent=1, sort_keys=True))
        os.replace(tmp, self._meta_path)

    def _new_uid(self) -> str:
        uid = self.meta["next_uid"]
        self.meta["next_uid"] = uid + 1
        return f"ch{uid:06d}"

    # -- lookups (callers hold _meta_lock)
    def _collection(self, c: str) -> dict[str, Any]:
        try:
            return self.meta["collections"][c]
        except KeyError:
            raise _not_found("collection", c) from None

    def _experiment(self, c: str, e: str) -> dict[str, Any]:
        try:
            return self._collection(c)["experiments"][e]
        except KeyError:
            raise _not_found("experiment", f"{c}/{e}") from None

    def _channel(self, c: str, e: str, ch: str) -> dict[str, Any]:
        try:
            return self._experiment(c, e)["channels"][ch]
        except KeyError:
            raise _not_found("channel", f"{c}/{e}/{ch}") from None

    def _coord(self, name: str) -> dict[str, Any]:
        try:
            return self.meta["coords"][name]
        except KeyError:
            raise _not_found("coordinate frame", name) from None

    # -- views (the JSON BOSS returns)
    def _collection_view(self, name: str) -> dict[str, Any]:
        col = self._collection(name)
        return {
            "name": name,
            "description": col["description"],
            "experiments": sorted(col["experiments"]),
            "creator": col["creator"],
            "public": col.get("public", False),
        }

    def _experiment_view(self, c: str, e: str) -> dict[str, Any]:
        exp = self._experiment(c, e)
        view = {k: v for k, v in exp.items() if k != "channels"}
        view.update(name=e, collection=c, channels=sorted(exp["channels"]))
        return view

    def _channel_view(self, c: str, e: str, ch: str) -> dict[str, Any]:
        view = {k: v for k, v in self._channel(c, e, ch).items() if k != "uid"}
        view.update(name=ch, experiment=e)
        return view

    def _coord_view(self, name: str) -> dict[str, Any]:
        return {"name": name, **self._coord(name)}

    # -- project service
    def list_collections(self) -> list[str]:
        with self._meta_lock:
            return sorted(self.meta["collections"])

    def list_coords(self) -> list[str]:
        with self._meta_lock:
            return sorted(self.meta["coords"])

    def list_experiments(self, c: str) -> list[str]:
        with self._meta_lock:
            return sorted(self._collection(c)["experiments"])

    def list_channels(self, c: str, e: str) -> list[str]:
        with self._meta_lock:
            return sorted(self._experiment(c, e)["channels"])

    def get_collection(self, c: str) -> dict[str, Any]:
        with self._meta_lock:
            return self._collection_view(c)

    def get_coord(self, name: str) -> dict[str, Any]:
        with self._meta_lock:
            return self._coord_view(name)

    def get_experiment(self, c: str, e: str) -> dict[str, Any]:
        with self._meta_lock:
            return self._experiment_view(c, e)

    def get_channel(self, c: str, e: str, ch: str) -> dict[str, Any]:
        with self._meta_lock:
            return self._channel_view(c, e, ch)

    def create_collection(self, c: str, body: dict[str, Any]) -> dict[str, Any]:
        _check_name("collection", c, body)
        with self._meta_lock:
            if c in self.meta["collections"]:
                raise ApiError(400, RESOURCE_EXISTS, f"collection {c!r} already exists")
            self.meta["collections"][c] = {
                "description": str(body.get("description") or ""),
                "creator": self.creator,
                "experiments": {},
            }
            self._save()
            return self._collection_view(c)

    def create_coord(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        _check_name("coordinate frame", name, body)
        frame: dict[str, Any] = {"description": str(body.get("description") or "")}
        for axis in "xyz":
            start = _int_field(body, f"{axis}_start")
            stop = _int_field(body, f"{axis}_stop")
            if stop <= start:
                raise ApiError(
                    400,
                    INVALID_REQUEST,
                    f"{axis}_stop ({stop}) must be greater than {axis}_start ({start})",
                )
            frame[f"{axis}_start"], frame[f"{axis}_stop"] = start, stop
            size = body.get(f"{axis}_voxel_size", 1.0)
            try:
                frame[f"{axis}_voxel_size"] = float(size)
            except (TypeError, ValueError):
                raise ApiError(
                    400, INVALID_REQUEST, f"{axis}_voxel_size must be a number"
                ) from None
        frame["voxel_unit"] = str(body.get("voxel_unit") or "nanometers")
        with self._meta_lock:
            if name in self.meta["coords"]:
                raise ApiError(400, RESOURCE_EXISTS, f"coordinate frame {name!r} already exists")
            self.meta["coords"][name] = frame
            self._save()
            return self._coord_view(name)

    def create_experiment(self, c: str, e: str, body: dict[str, Any]) -> dict[str, Any]:
        _check_name("experiment", e, body)
        with self._meta_lock:
            col = self._collection(c)
            if e in col["experiments"]:
                raise ApiError(400, RESOURCE_EXISTS, f"experiment {c}/{e} already exists")
            coord = body.get("coord_frame")
            if coord not in self.meta["coords"]:
                raise ApiError(
                    400, INVALID_REQUEST, f"coord_frame {coord!r} does not exist: create it first"
                )
            col["experiments"][e] = {
                "description": str(body.get("description") or ""),
                "coord_frame": coord,
                "num_hierarchy_levels": int(body.get("num_hierarchy_levels") or 1),
                "hierarchy_method": str(body.get("hierarchy_method") or "anisotropic"),
                "num_time_samples": max(1, int(body.get("num_time_samples") or 1)),
                "time_step": body.get("time_step"),
                "time_step_unit": body.get("time_step_unit"),
                "creator": self.creator,
                "public": False,
                "channels": {},
            }
            self._save()
            return self._experiment_view(c, e)

    def create_channel(self, c: str, e: str, ch: str, body: dict[str, Any]) -> dict[str, Any]:
        _check_name("channel", ch, body)
        datatype = str(body.get("datatype") or "uint8")
        if datatype not in DATATYPES:
            raise ApiError(
                400,
                INVALID_REQUEST,
                f"datatype {datatype!r} is not supported; use one of {sorted(DATATYPES)}",
            )
        ctype = str(body.get("type") or "image")
        if ctype not in CHANNEL_TYPES:
            raise ApiError(400, INVALID_REQUEST, f"type {ctype!r} must be image or annotation")
        sources = list(body.get("sources") or [])
        related = list(body.get("related") or [])
        with self._meta_lock:
            exp = self._experiment(c, e)
            if ch in exp["channels"]:
                raise ApiError(400, RESOURCE_EXISTS, f"channel {c}/{e}/{ch} already exists")
            if ctype == "annotation" and not sources:
                raise ApiError(
                    400, INVALID_REQUEST, "annotation channels require at least one source channel"
                )
            for other in sources + related:
                if other not in exp["channels"]:
                    raise ApiError(
                        400,
                        INVALID_REQUEST,
                        f"source/related channel {other!r} does not exist in {c}/{e}",
                    )
            exp["channels"][ch] = {
                "description": str(body.get("description") or ""),
                "default_time_sample": int(body.get("default_time_sample") or 0),
                "type": ctype,
                "base_resolution": int(body.get("base_resolution") or 0),
                "datatype": datatype,
                "creator": self.creator,
                "sources": sources,
                "related": related,
                "downsample_status": "NOT_DOWNSAMPLED",
                "uid": self._new_uid(),
            }
            self._save()
            return self._channel_view(c, e, ch)

    def update_collection(self, c: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._meta_lock:
            col = self._collection(c)
            new = self._rename(self.meta["collections"], c, body, "collection")
            col["description"] = str(body.get("description", col["description"]) or "")
            self._save()
            return self._collection_view(new)

    def update_coord(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._meta_lock:
            frame = self._coord(name)
            new = self._rename(self.meta["coords"], name, body, "coordinate frame")
            frame["description"] = str(body.get("description", frame["description"]) or "")
            if new != name:  # experiments refer to their frame by name
                for col in self.meta["collections"].values():
                    for exp in col["experiments"].values():
                        if exp["coord_frame"] == name:
                            exp["coord_frame"] = new
            self._save()
            return self._coord_view(new)

    def update_experiment(self, c: str, e: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._meta_lock:
            exp = self._experiment(c, e)
            new = self._rename(self._collection(c)["experiments"], e, body, "experiment")
            for key in ("description", "hierarchy_method"):
                if key in body:
                    exp[key] = str(body[key] or "")
            if "num_hierarchy_levels" in body:
                exp["num_hierarchy_levels"] = int(body["num_hierarchy_levels"])
            self._save()
            return self._experiment_view(c, new)

    def update_channel(self, c: str, e: str, ch: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._meta_lock:
            exp = self._experiment(c, e)
            chan = self._channel(c, e, ch)
            for key in ("sources", "related"):
                for other in body.get(key) or []:
                    if other not in exp["channels"] or other == ch:
                        raise ApiError(
                            400, INVALID_REQUEST, f"{key} channel {other!r} is not in {c}/{e}"
                        )
            new = self._rename(exp["channels"], ch, body, "channel")
            if "description" in body:
                chan["description"] = str(body["description"] or "")
            for key in ("sources", "related"):
                if key in body:
                    chan[key] = list(body[key] or [])
            if "base_resolution" in body:
                chan["base_resolution"] = int(body["base_resolution"])
            if new != ch:
                for other in exp["channels"].values():
                    for key in ("sources", "related"):
                        other[key] = [new if s == ch else s for s in other[key]]
            self._save()
            return self._channel_view(c, e, new)

    def _rename(self, table: dict[str, Any], old: str, body: dict[str, Any], kind: str) -> str:
        new = str(body.get("name") or old)
        if new != old:
            if not NAME_RE.match(new):
                raise ApiError(400, INVALID_REQUEST, f"{kind} name {new!r} must match [\\w-]+")
            if new in table:
                raise ApiError(400, RESOURCE_EXISTS, f"{kind} {new!r} already exists")
            table[new] = table.pop(old)
        return new

    def delete_collection(self, c: str) -> None:
        with self._meta_lock:
            col = self._collection(c)
            if col["experiments"]:
                raise ApiError(
                    400,
                    RESOURCE_IN_USE,
                    f"collection {c!r} still has experiments {sorted(col['experiments'])}: "
                    "delete them first",
                )
            del self.meta["collections"][c]
            self._save()

    def delete_coord(self, name: str) -> None:
        with self._meta_lock:
            self._coord(name)
            for cname, col in self.meta["collections"].items():
                for ename, exp in col["experiments"].items():
                    if exp["coord_frame"] == name:
                        raise ApiError(
                            400,
                            RESOURCE_IN_USE,
                            f"coordinate frame {name!r} is used by experiment {cname}/{ename}",
                        )
            del self.meta["coords"][name]
            self._save()

    def delete_experiment(self, c: str, e: str) -> None:
        with self._meta_lock:
            exp = self._experiment(c, e)
            if exp["channels"]:
                raise ApiError(
                    400,
                    RESOURCE_IN_USE,
                    f"experiment {c}/{e} still has channels {sorted(exp['channels'])}: "
                    "delete them first",
                )
            del self._collection(c)["experiments"][e]
            self._save()

    def delete_channel(self, c: str, e: str, ch: str) -> None:
        with self._meta_lock:
            exp = self._experiment(c, e)
            chan = self._channel(c, e, ch)
            for oname, other in exp["channels"].items():
                if oname != ch and ch in other["sources"]:
                    raise ApiError(
                        400,
                        RESOURCE_IN_USE,
                        f"channel {ch!r} is a source of channel {oname!r}: delete that first",
                    )
            del exp["channels"][ch]
            for other in exp["channels"].values():
                other["related"] = [r for r in other["related"] if r != ch]
            self._save()
            uid = chan["uid"]
        with self._arrays_lock:
            self._arrays.pop(uid, None)
        path = self._volume_path(uid)
        if path.exists():
            # rename first so a half-finished delete never leaves a readable partial volume
            trash = path.with_name(f"{path.name}.deleted-{secrets.token_hex(4)}")
            os.replace(path, trash)
            _rmtree(trash)

    # -- volume service
    def _volume_path(self, uid: str) -> Path:
        return self.data_dir / "volumes" / f"{uid}.zarr"

    def resolve_volume(self, c: str, e: str, ch: str) -> Volume:
        """Everything needed to serve a cutout, snapshot under the metadata lock."""
        with self._meta_lock:
            chan = self._channel(c, e, ch)
            exp = self._experiment(c, e)
            frame = self._coord(exp["coord_frame"])
            start = (0, frame["z_start"], frame["y_start"], frame["x_start"])
            stop = (
                exp["num_time_samples"],
                frame["z_stop"],
                frame["y_stop"],
                frame["x_stop"],
            )
            return Volume(
                uid=chan["uid"],
                dtype=np.dtype(DATATYPES[chan["datatype"]]),
                datatype=chan["datatype"],
                type=chan["type"],
                default_time_sample=chan["default_time_sample"],
                start=start,
                stop=stop,
                name=f"{c}/{e}/{ch}",
            )

    def _ensure_array(self, vol: Volume) -> Path:
        """Create the channel's Zarr array metadata on first write; return its folder.

        Only ``zarr.json`` is written through zarr: chunks are read and written directly
        below (zarr's own path costs ~3x more CPU per cuboid), in exactly zarr's layout and
        codec (``c/t/z/y/x``, blosc frames), so ``zarr.open_array(<data_dir>/volumes/<uid>
        .zarr)`` reads every channel.
        """
        path = self._volume_path(vol.uid)
        with self._arrays_lock:
            if vol.uid not in self._arrays and not (path / "zarr.json").exists():
                zarr.create_array(
                    store=str(path),
                    shape=vol.shape,
                    chunks=CHUNK,
                    dtype=vol.dtype,
                    fill_value=0,
                    # lz4 + byte shuffle: fast both ways; sparse masks shrink ~50x
                    compressors=BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),
                    config={"write_empty_chunks": False},
                )
            self._arrays[vol.uid] = True
        return path

    def _chunk_file(self, vol: Volume, key: tuple[int, ...]) -> Path:
        return self._volume_path(vol.uid).joinpath("c", *(str(k) for k in key))

    def _load_chunk(self, vol: Volume, key: tuple[int, ...]) -> np.ndarray | None:
        try:
            raw = self._chunk_file(vol, key).read_bytes()
        except FileNotFoundError:
            return None
        return np.frombuffer(blosc.decompress(raw), dtype=vol.dtype).reshape(CHUNK)

    def _store_chunk(self, vol: Volume, key: tuple[int, ...], chunk: np.ndarray) -> None:
        path = self._chunk_file(vol, key)
        if not chunk.any():  # zarr's write_empty_chunks=False: absent means all fill (0)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        raw = blosc.compress(
            np.ascontiguousarray(chunk), typesize=vol.dtype.itemsize, clevel=1,
            shuffle=blosc.SHUFFLE, cname="lz4",
        )  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a reader never sees half a chunk, a crash never leaves one
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)

    @staticmethod
    def _chunk_keys(region: tuple[slice, ...]) -> Iterator[tuple[int, ...]]:
        ranges = [
            range(sl.start // n, (sl.stop - 1) // n + 1)
            for sl, n in zip(region, CHUNK, strict=True)
        ]
        return itertools.product(*ranges)  # type: ignore[return-value]

    @staticmethod
    def _overlap(
        key: tuple[int, ...], region: tuple[slice, ...]
    ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(slices in the chunk, slices in the region's array) of their intersection."""
        in_chunk, in_region = [], []
        for k, n, sl in zip(key, CHUNK, region, strict=True):
            lo, hi = max(sl.start, k * n), min(sl.stop, (k + 1) * n)
            in_chunk.append(slice(lo - k * n, hi - k * n))
            in_region.append(slice(lo - sl.start, hi - sl.start))
        return tuple(in_chunk), tuple(in_region)

    @contextlib.contextmanager
    def _locked(self, vol: Volume, region: tuple[slice, ...]) -> Iterator[None]:
        stripes = {hash((vol.uid, *key)) % _LOCK_STRIPES for key in self._chunk_keys(region)}
        locks = [self._chunk_locks[i] for i in sorted(stripes)]
        for lock in locks:
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(locks):
                lock.release()

    def read(self, vol: Volume, region: tuple[slice, ...]) -> np.ndarray:
        """Read a (T, Z, Y, X) region given in array indices."""
        out = np.zeros(tuple(s.stop - s.start for s in region), dtype=vol.dtype)
        if vol.uid not in self._arrays and not self._volume_path(vol.uid).exists():
            return out
        with self._locked(vol, region):
            for key in self._chunk_keys(region):
                chunk = self._load_chunk(vol, key)
                if chunk is not None:
                    in_chunk, in_region = self._overlap(key, region)
                    out[in_region] = chunk[in_chunk]
        return out

    def write(self, vol: Volume, region: tuple[slice, ...], data: np.ndarray | int) -> None:
        """Write ``data`` (shaped like ``region``, or a scalar) to a (T, Z, Y, X) region."""
        self._ensure_array(vol)
        scalar = not isinstance(data, np.ndarray)
        with self._locked(vol, region):
            for key in self._chunk_keys(region):
                in_chunk, in_region = self._overlap(key, region)
                covered = all(
                    sl.start == 0 and (sl.stop == n or k * n + sl.stop == lim)
                    for k, n, sl, lim in zip(key, CHUNK, in_chunk, vol.shape, strict=True)
                )
                if covered and not scalar and data[in_region].shape == CHUNK:  # type: ignore[index]
                    # an interior cuboid replaced whole: encode the caller's slab directly
                    self._store_chunk(vol, key, data[in_region])  # type: ignore[index]
                    continue
                old = None if covered else self._load_chunk(vol, key)
                # (a loaded chunk is a read-only frombuffer view: copy it)
                chunk = np.zeros(CHUNK, dtype=vol.dtype) if old is None else old.copy()
                chunk[in_chunk] = data if scalar else data[in_region]  # type: ignore[index]
                self._store_chunk(vol, key, chunk)

    def stored_chunks(self, vol: Volume) -> Iterator[tuple[slice, ...]]:
        """Regions of the cuboids that have been written (for id searches)."""
        path = self._volume_path(vol.uid) / "c"
        if not path.exists():
            return
        for file in path.rglob("*"):
            if file.is_file() and not file.name.startswith("."):
                t, z, y, x = (int(p) for p in file.relative_to(path).parts)
                starts = (t, z * CUBOID[0], y * CUBOID[1], x * CUBOID[2])
                yield tuple(
                    slice(s, min(s + n, lim))
                    for s, n, lim in zip(starts, (1, *CUBOID), vol.shape, strict=True)
                )

    def reserve_ids(self, c: str, e: str, ch: str, count: int) -> int:
        with self._meta_lock:
            chan = self._channel(c, e, ch)
            if chan["type"] != "annotation":
                raise ApiError(400, INVALID_REQUEST, f"channel {ch!r} is not an annotation channel")
            first = int(chan.get("next_id", 1))
            chan["next_id"] = first + count
            self._save()
            return first


@dataclass(frozen=True)
class Volume:
    uid: str
    dtype: np.dtype
    datatype: str
    type: str
    default_time_sample: int
    start: tuple[int, int, int, int]  # t, z, y, x (frame coordinates)
    stop: tuple[int, int, int, int]
    name: str

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _check_name(kind: str, name: str, body: dict[str, Any]) -> None:
    if not NAME_RE.match(name):
        raise ApiError(400, INVALID_REQUEST, f"{kind} name {name!r} must match [\\w-]+")
    if "name" in body and body["name"] != name:
        raise ApiError(
            400, INVALID_REQUEST, f"name in the body ({body['name']!r}) differs from the URL"
        )


def _int_field(body: dict[str, Any], key: str) -> int:
    try:
        return int(body[key])
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, INVALID_REQUEST, f"{key} is required and must be an integer") from None


# ----------------------------------------------------------------------------- HTTP


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
    body = b"" if status == 204 else json.dumps(payload).encode()
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
    def _region(self, vol: Volume, args: list[str]) -> tuple[tuple[slice, ...], bool]:
        """Array-index region (t, z, y, x) for res/x/y/z[/t]; and whether t was given."""
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
        if resolution != 0:
            raise ApiError(
                400,
                INVALID_CUTOUT_ARGS,
                f"resolution {resolution} is not available: this server stores resolution 0 only",
            )
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
        return tuple(region), has_t

    def _cutout(self, req: _Request, rest: list[str]) -> Response:
        if len(rest) < 3:
            raise ApiError(400, INVALID_CUTOUT_ARGS, "cutout needs collection/experiment/channel")
        vol = self.store.resolve_volume(*rest[:3])
        region, has_t = self._region(vol, rest[3:])
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
            return 201, [("Content-Type", "application/json")], b""
        raise self._method_error(req)

    def _decode(self, vol: Volume, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
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

    def _filter(self, vol: Volume, data: np.ndarray, text: str) -> np.ndarray:
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
        vol = self.store.resolve_volume(*rest[:3])
        region, _ = self._region(vol, rest[3:])
        self.store.write(vol, region, 0)
        return _json_response(200, {})

    def _ids(self, req: _Request, rest: list[str]) -> Response:
        if len(rest) < 3:
            raise ApiError(400, INVALID_CUTOUT_ARGS, "ids needs collection/experiment/channel")
        vol = self.store.resolve_volume(*rest[:3])
        if vol.type != "annotation":
            raise ApiError(400, INVALID_REQUEST, f"{vol.name} is not an annotation channel")
        region, _ = self._region(vol, rest[3:])
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


# ----------------------------------------------------------------------------- running it


def make_server(
    data_dir: str | os.PathLike[str],
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = 8,
    read_only_tokens: Iterable[str] = (),
    max_cutout_bytes: int = MAX_CUTOUT_BYTES,
) -> tuple[Any, BossApp]:
    """A waitress server (not yet serving) and its app; ``port=0`` picks a free port."""
    from waitress.server import create_server

    app = BossApp(
        BossStore(data_dir),
        [token],
        read_only_tokens=read_only_tokens,
        max_cutout_bytes=max_cutout_bytes,
    )
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=max_cutout_bytes + (1 << 20),
        # big cutouts: larger socket buffers cut syscalls on loopback
        recv_bytes=1 << 18,
        outbuf_overflow=1 << 30,
        inbuf_overflow=1 << 30,
        connection_limit=256,
        channel_timeout=300,
        clear_untrusted_proxy_headers=True,
        ident="synapse-pipelines-local-boss",
    )
    return server, app


class LocalBossServer:
    """Run the server in a background thread of this process.

    >>> with LocalBossServer(tmp_dir, token="secret") as srv:
    ...     remote = BossRemote({"protocol": "http", "host": srv.host, "token": "secret"})

    ``host`` is ``"127.0.0.1:<port>"`` (what intern's config and a request's boss_host want);
    ``url`` is ``"http://127.0.0.1:<port>"``. The token never appears in ``repr()``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        token: str,
        *,
        port: int = 0,
        bind: str = "127.0.0.1",
        threads: int = 8,
        read_only_tokens: Iterable[str] = (),
        max_cutout_bytes: int = MAX_CUTOUT_BYTES,
    ):
        self.data_dir = Path(data_dir)
        self._token = token
        self._server, self.app = make_server(
            data_dir,
            token,
            host=bind,
            port=port,
            threads=threads,
            read_only_tokens=read_only_tokens,
            max_cutout_bytes=max_cutout_bytes,
        )
        self.port: int = self._server.effective_port
        self.host = f"{bind}:{self.port}"
        self.url = f"http://{self.host}"
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LocalBossServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    @property
    def store(self) -> BossStore:
        return self.app.store

    def start(self) -> LocalBossServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.run, name=f"local-boss-{self.port}", daemon=True
            )
            self._thread.start()
            _wait_for_port("127.0.0.1" if self.host.startswith("0.0.0.0") else self.host)
        return self

    def stop(self) -> None:
        """Close every connection (idle keep-alive ones too) and wait for the loop to end."""
        if self._thread is None:
            return
        server = self._server

        def close_all() -> None:  # runs in the server's own loop thread
            for channel in list(server._map.values()):
                with contextlib.suppress(Exception):
                    channel.close()

        try:
            server.trigger.pull_trigger(close_all)
        except OSError:
            # Seen rarely at the end of a long test session: the trigger pipe's fd is already
            # closed, so the loop cannot be woken. Close the channels from here instead; the
            # loop then finds its map empty and ends.
            close_all()
        self._thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=5)
        self._thread = None

    def __enter__(self) -> LocalBossServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_for_port(host: str, timeout: float = 10.0) -> None:
    name, _, port = host.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((name or "127.0.0.1", int(port)), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def serve(
    data_dir: str | os.PathLike[str],
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 8,
    read_only_tokens: Iterable[str] = (),
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (the ``boss serve`` command)."""
    server, app = make_server(
        data_dir, token, host=host, port=port, threads=threads, read_only_tokens=read_only_tokens
    )
    app.access_log = True
    if ready is not None:
        ready(f"http://{host}:{server.effective_port}")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


class BossServerProcess:
    """Run the server as a child process (``python -m synapse_pipelines.local.boss_server``).

    Same interface as :class:`LocalBossServer` (``host``, ``url``, ``port``, context
    manager); use it when the caller's own threads should not share a GIL with the server
    (benchmarks, the demo). The token travels in the child's environment, never in argv.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        token: str,
        *,
        port: int = 0,
        bind: str = "127.0.0.1",
        threads: int = 8,
        startup_timeout: float = 30.0,
    ):
        self.data_dir = Path(data_dir)
        self._token = token
        self._port = port
        self._bind = bind
        self._threads = threads
        self._timeout = startup_timeout
        self._proc: Any = None
        self.port = 0
        self.host = ""
        self.url = ""

    def __repr__(self) -> str:
        return f"BossServerProcess(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    def start(self) -> BossServerProcess:
        import subprocess
        import sys

        env = {**os.environ, _TOKEN_ENV: self._token}
        cmd = [sys.executable, "-m", "synapse_pipelines.local.boss_server", "--data-dir",
               str(self.data_dir), "--port", str(self._port), "--bind", self._bind,
               "--threads", str(self._threads)]  # fmt: skip
        self._proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + self._timeout
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # "LISTENING http://host:port"
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"local BOSS server failed to start (said {line!r})")
        self.url = line.split()[1]
        self.host = self.url.split("://", 1)[1]
        self.port = int(self.host.rsplit(":", 1)[1])
        _wait_for_port(self.host, timeout=max(1.0, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except Exception:
                self._proc.kill()
                self._proc.wait(timeout=10)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def __enter__(self) -> BossServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_TOKEN_ENV = "LOCAL_BOSS_TOKEN"


def _main(argv: list[str] | None = None) -> None:
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description="local BOSS-compatible server")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    token = os.environ.get(_TOKEN_ENV) or os.environ.get("BOSS_TOKEN")
    if not token:
        parser.error(f"set the token in ${_TOKEN_ENV} or $BOSS_TOKEN")
    # SIGTERM -> KeyboardInterrupt: serve() closes the server cleanly
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def ready(url: str) -> None:
        print(f"LISTENING {url}", flush=True)

    serve(args.data_dir, token, host=args.bind, port=args.port, threads=args.threads,
          ready=ready)  # fmt: skip
    sys.exit(0)


if __name__ == "__main__":
    _main()
