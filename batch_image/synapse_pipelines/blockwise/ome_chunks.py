"""A blockwise run's OME-Zarr volumes (ids, mask, raw cutout), written one block at a time.

Owns :class:`OmeZarrBlocks`: the NGFF 0.5 (Zarr v3) volumes of a plan (``predictions.ome.zarr``,
``synapse_ids.ome.zarr``, ``raw/<channel>.ome.zarr``), whose chunk grid divides the block
grid, so each finalize job encodes the chunks of its own block at every pyramid level
(:meth:`OmeZarrBlocks.encode_block`) and no two jobs write the same object; the merge writes
the metadata last (:meth:`OmeZarrBlocks.metadata`). No job holds more than one block.

Frame: the volumes start at the block-grid corner at or before the request box's start
(``offset``, recorded as the NGFF translation and in the manifest), so their chunks line up
with the blocks; voxels between that corner and the box are zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synapse_pipelines.blockwise.plan import BlockPlan
from synapse_pipelines.core.artefacts import (
    PREDICTIONS_OME_ZARR,
    SYNAPSE_IDS_OME_ZARR,
    raw_channel_path,
)
from synapse_pipelines.io.ome_zarr import DEFAULT_CHUNKS, OmeZarrSpec


@dataclass(frozen=True)
class OmeZarrBlocks:
    """The OME-Zarr volumes of one blockwise plan."""

    plan: BlockPlan
    ids_dtype: np.dtype
    voxel_size: Sequence[float]
    voxel_unit: str = "nanometers"

    @property
    def offset(self) -> tuple[int, int, int]:
        """The block-grid corner at or before the box's start (absolute voxels)."""
        return tuple(  # type: ignore[return-value]
            (a // b) * b for a, b in zip(self.plan.box.start, self.plan.block_shape, strict=True)
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(  # type: ignore[return-value]
            b - o for b, o in zip(self.plan.box.stop, self.offset, strict=True)
        )

    @property
    def chunks(self) -> tuple[int, int, int]:
        """The largest chunk up to :data:`DEFAULT_CHUNKS` that divides the block shape."""
        return tuple(  # type: ignore[return-value]
            math.gcd(int(b), int(c))
            for b, c in zip(self.plan.block_shape, DEFAULT_CHUNKS, strict=True)
        )

    def spec(self, name: str, dtype: Any, kind: str) -> OmeZarrSpec:
        return OmeZarrSpec.for_volume(
            name.removesuffix(".ome.zarr").rsplit("/", 1)[-1],
            self.shape,
            dtype,
            voxel_size=self.voxel_size,
            voxel_unit=self.voxel_unit,
            offset=self.offset,
            kind=kind,  # type: ignore[arg-type]
            chunks=self.chunks,
        )

    def specs(self, raw_dtypes: Mapping[str, Any]) -> dict[str, OmeZarrSpec]:
        """Root path -> spec of every volume (raw channels with the dtypes they were read in)."""
        specs = {
            SYNAPSE_IDS_OME_ZARR: self.spec(SYNAPSE_IDS_OME_ZARR, self.ids_dtype, "labels"),
            PREDICTIONS_OME_ZARR: self.spec(PREDICTIONS_OME_ZARR, np.uint8, "labels"),
        }
        for channel, dtype in raw_dtypes.items():
            path = raw_channel_path(channel)
            specs[path] = self.spec(path, dtype, "image")
        return specs

    @property
    def levels(self) -> int:
        return self.spec(PREDICTIONS_OME_ZARR, np.uint8, "labels").levels

    def encode_block(
        self, index: int, ids: np.ndarray, raw: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, bytes]:
        """Every chunk object (key under the results root) of one block, at every level."""
        block = self.plan.block(index)
        start = tuple(a - o for a, o in zip(block.start, self.offset, strict=True))
        volumes: dict[str, np.ndarray] = {
            SYNAPSE_IDS_OME_ZARR: ids.astype(self.ids_dtype, copy=False),
            PREDICTIONS_OME_ZARR: np.where(ids != 0, np.uint8(255), np.uint8(0)),
        }
        raw = dict(raw or {})
        specs = self.specs({name: np.asarray(v).dtype for name, v in raw.items()})
        for name, volume in raw.items():
            volumes[raw_channel_path(name)] = np.asarray(volume)
        out = {}
        for root, data in volumes.items():
            for key, payload in specs[root].encode_region(data, start):
                out[f"{root}/{key}"] = payload
        return out

    def metadata(self, raw_dtypes: Mapping[str, Any]) -> dict[str, bytes]:
        """Every volume's group ``zarr.json`` and each level's ``<level>/zarr.json``."""
        out = {}
        for root, spec in self.specs(raw_dtypes).items():
            for key, payload in spec.metadata_objects().items():
                out[f"{root}/{key}"] = payload
        return out
