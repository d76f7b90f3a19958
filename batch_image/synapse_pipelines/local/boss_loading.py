"""Loading an experiment from local volumes into a BOSS (``boss load``, the demo, the tests).

Owns :func:`load_experiment`: one coordinate frame, one experiment, an image channel per
volume and a uint64 annotation channel per label volume, pushed through
:class:`~synapse_pipelines.io.boss_client.BossClient` (so any BOSS works, the local server
being the usual target).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_resources import (
    SUPPORTED_DATATYPES,
    CoordinateFrame,
    check_box_in_frame,
)


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
    ``annotations`` (uint64 annotation channels whose source is the first image channel) at
    ``origin``. The coordinate frame (``<collection>_<experiment>``) is ``extent`` or exactly
    the volumes' box. Returns the experiment's frame."""
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
