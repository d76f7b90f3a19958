"""The local BOSS server's data model: collections, coordinate frames, experiments, channels.

Owns :class:`BossMetadata`: BOSS's v1 project service (list / create / get / update / delete
with BOSS's JSON shapes, name rules and refusals: a parent that still has children, or a
coordinate frame still used by an experiment, is not deleted), id reservations, and
:meth:`BossMetadata.resolve_volume`, the snapshot of a channel (:class:`ChannelVolume`)
that a cutout needs. Persisted as ``<data_dir>/metadata.json``, rewritten atomically under a
lock. Channels have internal uids, so renames move no data and a deleted-then-recreated
channel starts empty; the voxels themselves are :mod:`synapse_pipelines.local.boss_storage`'s.
A channel's ``downsample_status`` changes through :meth:`BossMetadata.set_downsample_status`
(the downsample jobs are :mod:`synapse_pipelines.local.boss_pyramid`'s).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synapse_pipelines.local.boss_api_errors import (
    INVALID_REQUEST,
    RESOURCE_EXISTS,
    RESOURCE_IN_USE,
    ApiError,
    not_found,
)

DATATYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint64": np.uint64}
CHANNEL_TYPES = ("image", "annotation")
NAME_RE = re.compile(r"^[\w-]+$")


@dataclass(frozen=True)
class ChannelVolume:
    """What serving a cutout of one channel needs, snapshot from the data model."""

    uid: str
    dtype: np.dtype
    datatype: str
    type: str
    default_time_sample: int
    start: tuple[int, int, int, int]  # t, z, y, x (frame coordinates)
    stop: tuple[int, int, int, int]
    name: str
    base_resolution: int = 0
    num_hierarchy_levels: int = 1
    hierarchy_method: str = "anisotropic"
    resolution: int = 0  # of this snapshot's array (boss_pyramid.level_volume makes r > 0)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]


class BossMetadata:
    """The data model (collections, frames, experiments, channels), kept in metadata.json."""

    def __init__(self, data_dir: str | os.PathLike[str], *, creator: str = "local-boss"):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.creator = creator
        self._meta_path = self.data_dir / "metadata.json"
        self._meta_lock = threading.RLock()
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
            raise not_found("collection", c) from None

    def _experiment(self, c: str, e: str) -> dict[str, Any]:
        try:
            return self._collection(c)["experiments"][e]
        except KeyError:
            raise not_found("experiment", f"{c}/{e}") from None

    def _channel(self, c: str, e: str, ch: str) -> dict[str, Any]:
        try:
            return self._experiment(c, e)["channels"][ch]
        except KeyError:
            raise not_found("channel", f"{c}/{e}/{ch}") from None

    def _coord(self, name: str) -> dict[str, Any]:
        try:
            return self.meta["coords"][name]
        except KeyError:
            raise not_found("coordinate frame", name) from None

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

    def delete_channel(self, c: str, e: str, ch: str) -> str:
        """Delete the channel from the data model; return its uid (whose voxels are now
        unreachable: :class:`~synapse_pipelines.local.boss_storage.BossStore` removes them)."""
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
            return str(chan["uid"])

    # -- ids service
    def reserve_ids(self, c: str, e: str, ch: str, count: int) -> int:
        with self._meta_lock:
            chan = self._channel(c, e, ch)
            if chan["type"] != "annotation":
                raise ApiError(400, INVALID_REQUEST, f"channel {ch!r} is not an annotation channel")
            first = int(chan.get("next_id", 1))
            chan["next_id"] = first + count
            self._save()
            return first

    # -- volume service
    def resolve_volume(self, c: str, e: str, ch: str) -> ChannelVolume:
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
            return ChannelVolume(
                uid=chan["uid"],
                dtype=np.dtype(DATATYPES[chan["datatype"]]),
                datatype=chan["datatype"],
                type=chan["type"],
                default_time_sample=chan["default_time_sample"],
                start=start,
                stop=stop,
                name=f"{c}/{e}/{ch}",
                base_resolution=int(chan.get("base_resolution", 0)),
                num_hierarchy_levels=int(exp.get("num_hierarchy_levels", 1)),
                hierarchy_method=str(exp.get("hierarchy_method") or "anisotropic"),
            )

    # -- downsample service (the jobs are boss_pyramid's)
    def set_downsample_status(
        self, c: str, e: str, ch: str, status: str, *, only_from: tuple[str, ...] | None = None
    ) -> str:
        """Set the channel's ``downsample_status`` (only when it is one of ``only_from``,
        if given: a compare-and-set); return the status it had."""
        with self._meta_lock:
            chan = self._channel(c, e, ch)
            before = str(chan.get("downsample_status", "NOT_DOWNSAMPLED"))
            if before != status and (only_from is None or before in only_from):
                chan["downsample_status"] = status
                self._save()
            return before

    def channels_with_status(self, statuses: tuple[str, ...]) -> list[tuple[str, str, str]]:
        """(collection, experiment, channel) of every channel whose downsample status is one
        of ``statuses``."""
        with self._meta_lock:
            return [
                (c, e, ch)
                for c, col in self.meta["collections"].items()
                for e, exp in col["experiments"].items()
                for ch, chan in exp["channels"].items()
                if chan.get("downsample_status") in statuses
            ]


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
