"""The results folder's viewable volumes: predictions, ids and the raw cutout as OME-Zarr.

Owns :func:`write_viewable_volumes` (a single job's whole volumes, written next to the
OME-TIFFs) and :func:`ome_zarr_section` (the manifest's ``ome_zarr`` section, which the
viewer and the report read to find them). A blockwise run writes the same names chunk by
chunk (:mod:`synapse_pipelines.blockwise.finalize`).

Layout::

    predictions.ome.zarr        0/255 uint8 mask (NGFF labels, nearest-neighbour pyramid)
    synapse_ids.ome.zarr        synapse ids, the synapses.csv ``id`` (NGFF labels)
    raw/<channel>.ome.zarr      the cutout the detector read, one image per channel
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synapse_pipelines.core.artefacts import (
    PREDICTIONS_OME_ZARR,
    SYNAPSE_IDS_OME_ZARR,
    raw_channel_path,
)
from synapse_pipelines.io.ome_zarr import OmeZarrSpec, write_ome_zarr


def ome_zarr_section(
    channels: Sequence[str], offset: Sequence[int], levels: int | None = None
) -> dict[str, Any]:
    """The manifest's ``ome_zarr`` section: where each OME-Zarr volume lies."""
    return {
        "format": "OME-Zarr NGFF 0.5 (Zarr v3), 2x2 in y and x per level",
        "offset_voxels": [int(v) for v in offset],
        "predictions": PREDICTIONS_OME_ZARR,
        "synapse_ids": SYNAPSE_IDS_OME_ZARR,
        "raw": {str(c): raw_channel_path(str(c)) for c in channels},
        **({"levels": int(levels)} if levels is not None else {}),
    }


def write_viewable_volumes(
    folder: str | Path,
    *,
    mask_u8: np.ndarray,
    ids: np.ndarray,
    raw: Mapping[str, np.ndarray] | None,
    voxel_size: Sequence[float],
    voxel_unit: str,
    origin: Sequence[int],
    chunks: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Write predictions, ids and every raw channel as OME-Zarr; return the manifest section.

    ``origin``: absolute voxel coordinate of the volumes' first voxel (the request box's
    start), kept as each volume's translation so all of them share the experiment's frame.
    """
    folder = Path(folder)
    common: dict[str, Any] = {
        "voxel_size": voxel_size,
        "voxel_unit": voxel_unit,
        "offset": origin,
        "chunks": chunks,
    }
    levels = 1
    for name, data, kind in (
        (PREDICTIONS_OME_ZARR, mask_u8, "labels"),
        (SYNAPSE_IDS_OME_ZARR, ids, "labels"),
    ):
        spec = OmeZarrSpec.for_volume(
            name.removesuffix(".ome.zarr"), data.shape, data.dtype, kind=kind, **common
        )
        write_ome_zarr(folder / name, spec, data)
        levels = spec.levels
    for channel, volume in (raw or {}).items():
        data = np.asarray(volume)
        if data.shape != tuple(mask_u8.shape):
            raise ValueError(f"raw channel {channel!r} has shape {data.shape}, not the mask's")
        spec = OmeZarrSpec.for_volume(str(channel), data.shape, data.dtype, kind="image", **common)
        write_ome_zarr(folder / raw_channel_path(str(channel)), spec, data)
    return ome_zarr_section(list(raw or {}), origin, levels)
