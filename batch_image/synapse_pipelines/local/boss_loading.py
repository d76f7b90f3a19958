"""Loading an experiment from local volumes into a BOSS (``boss load``, the demo, the tests).

Owns :func:`load_experiment`: one coordinate frame, one experiment, an image channel per
volume and a uint64 annotation channel per label volume, pushed through
:class:`~synapse_pipelines.io.boss_client.BossClient` (so any BOSS works, the local server
being the usual target).

Nothing already stored is overwritten by mistake: into an existing experiment, the volumes
must cover its coordinate frame exactly (a smaller file would replace only a corner of a
channel, and nothing would say so), and an existing channel is written only with
``overwrite=True`` (``boss load --overwrite``) and when its datatype and type match. Every
check runs before the first write. The error messages name ``boss load``'s options, the
user-facing way in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_resources import (
    SUPPORTED_DATATYPES,
    CoordinateFrame,
    check_box_in_frame,
)


@dataclass(frozen=True)
class LoadReport:
    """What a load did: the experiment's ``frame``, the ``box`` actually written, and the
    existing channels it replaced (only with ``overwrite=True``)."""

    frame: CoordinateFrame
    box: Box
    replaced: tuple[str, ...]


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
    overwrite: bool = False,
) -> LoadReport:
    """Write ``volumes`` (image channels, ZYX, dtype kept) and ``annotations`` (uint64
    annotation channels whose source is the first image channel) at ``origin``.

    A new experiment gets the coordinate frame ``<collection>_<experiment>``: ``extent`` or
    exactly the volumes' box. An existing experiment keeps its frame, which the volumes must
    cover exactly; its existing channels are replaced only with ``overwrite``. Returns the
    experiment's frame, the box written and the channels replaced."""
    if not volumes:
        raise BossError("load_experiment needs at least one image channel")
    annotations = annotations or {}
    shapes = {tuple(v.shape) for v in [*volumes.values(), *annotations.values()]}
    if len(shapes) != 1:
        raise BossError(f"all channels must have the same ZYX shape, got {sorted(shapes)}")
    box = Box(origin, tuple(o + n for o, n in zip(origin, shapes.pop(), strict=True)))  # type: ignore[arg-type]
    for name, data in volumes.items():
        if np.dtype(data.dtype).name not in SUPPORTED_DATATYPES:
            raise BossError(
                f"channel {name}: dtype {np.dtype(data.dtype).name} is not one of "
                "uint8/uint16/uint64"
            )
    wanted = {name: (np.dtype(d.dtype).name, "image") for name, d in volumes.items()}
    wanted.update({name: ("uint64", "annotation") for name in annotations})
    replaced = _check_existing(client, collection, experiment, box, wanted, overwrite=overwrite)

    frame = CoordinateFrame(
        extent=extent or Box((0, 0, 0), box.stop),
        voxel_size=tuple(float(v) for v in voxel_size),  # type: ignore[arg-type]
        voxel_unit=voxel_unit,
        name=f"{collection}_{experiment}",
    )
    check_box_in_frame(box, frame, f"{collection}/{experiment}")
    client.ensure_experiment(collection, experiment, frame)
    for name, data in volumes.items():
        client.ensure_channel(collection, experiment, name, datatype=wanted[name][0], type="image")
        client.push(collection, experiment, name, box, data)
    first = next(iter(volumes))
    for name, data in annotations.items():
        client.ensure_channel(
            collection, experiment, name, datatype="uint64", type="annotation", sources=[first]
        )
        client.push(collection, experiment, name, box, data.astype(np.uint64, copy=False))
    return LoadReport(client.coordinate_frame(collection, experiment), box, replaced)


def _zyx(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape)


def _check_existing(
    client: BossClient,
    collection: str,
    experiment: str,
    box: Box,
    wanted: Mapping[str, tuple[str, str]],
    *,
    overwrite: bool,
) -> tuple[str, ...]:
    """Refuse a load that would overwrite stored data by mistake (module docstring); return
    the existing channels it replaces. Nothing is written here."""
    if collection not in client.list_collections():
        return ()
    if experiment not in client.list_experiments(collection):
        return ()
    where = f"{collection}/{experiment}"
    frame = client.coordinate_frame(collection, experiment)
    if box != frame.extent:
        raise BossError(
            f"its frame is {frame.extent} ({_zyx(frame.extent.shape)} voxels, z, y, x), but "
            f"the volumes are {_zyx(box.shape)} at {box}; a load into an existing experiment "
            "writes its whole frame, and this one would write only part of it",
            field=f"experiment {where}",
            hint=f"give volumes of {_zyx(frame.extent.shape)} voxels, or load these into a "
            "new experiment (another --experiment name)",
        )
    existing = sorted(set(wanted) & set(client.list_channels(collection, experiment)))
    if existing and not overwrite:
        one = len(existing) == 1
        raise BossError(
            f"already exist{'s' if one else ''}; refusing to overwrite the data stored in "
            f"{'it' if one else 'them'}",
            field=f"channel{'' if one else 's'} {where}/{', '.join(existing)}",
            hint=f"pass --overwrite to replace {'it' if one else 'them'}, or load under "
            "another channel name (--channel NAME=PATH) or into another --experiment",
        )
    for name in existing:
        info = client.channel(collection, experiment, name)
        if (info.datatype, info.type) != wanted[name]:
            datatype, kind = wanted[name]
            raise BossError(
                f"is a {info.datatype} {info.type} channel, but this load has a {datatype} "
                f"{kind} volume for it; refusing to write into it",
                field=f"channel {where}/{name}",
                hint="load the volume under another channel name, or convert it to "
                f"{info.datatype}",
            )
    return tuple(existing)
