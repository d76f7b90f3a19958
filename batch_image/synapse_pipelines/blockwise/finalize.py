"""The blockwise results: ids and mask written block by block, the synapse table reduced.

After the stitch every block knows its global ids, so the results never need the whole
volume in one place:

    finalize (map)   per block: ids = lookup table[local labels]; encode the block as one
                     chunk of ``synapse_ids.zarr`` and of ``predictions.zarr`` in the results
                     folder, and the block's chunks of the OME-Zarr copies and of the raw
                     cutout at every pyramid level (:mod:`.ome_chunks`); read every
                     feature channel of the block once and record the
                     synapse table's exactly reducible partials (per-object channel sums,
                     per-slice sums, the raw sums of the feature windows reaching the block)
    merge (reduce)   add the partials up -> ``synapses.csv`` (the single job's table, same
                     rows and values), then the arrays' ``zarr.json`` (and the OME-Zarr
                     metadata) and the manifest

Memory: finalize holds one block; merge holds a few numbers per synapse. The arrays are
Zarr v3 in **absolute BOSS voxel coordinates** (shape = the request box's stop; only the box
holds data) with one chunk per block: blocks are aligned to the chunk grid, so the block jobs
never write the same object, and a viewer or ``zarr.open_array`` indexes them with the same
numbers as BOSS. See ``features.py`` ("Decomposition") for why the table is exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import MemoryStore as ZarrMemoryStore  # not blockwise.store.MemoryStore

from synapse_pipelines.blockwise import passes
from synapse_pipelines.blockwise.ome_chunks import OmeZarrBlocks
from synapse_pipelines.blockwise.passes import PassContext
from synapse_pipelines.blockwise.plan import BlockPlan
from synapse_pipelines.blockwise.store import (
    Store,
    checksum,
    completed,
    decode_arrays,
    encode_arrays,
    encode_json,
    fingerprint,
    write_outputs,
)
from synapse_pipelines.core.artefacts import PREDICTIONS_ZARR, SYNAPSE_IDS_ZARR
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import features, window_features

#: ``read_channels(box) -> {name: array}``: every feature channel over an absolute box
ChannelReader = Callable[[Box], Mapping[str, np.ndarray]]

#: Zarr compression of the result chunks: ids and masks are mostly zeros, which zstd turns
#: into a few hundred bytes per empty block at GB/s
ZSTD_LEVEL = 1

FEATURES = "features.npz"
CHUNKS = "chunks.json"
#: the dtypes the raw channels were read in (the merge writes their OME-Zarr metadata)
RAW_DTYPES = "raw_dtypes.json"


def ids_dtype(n_objects: int) -> np.dtype:
    """uint32 like the single job's ``synapse_ids.ome.tif``; uint64 past 2**32 - 1 synapses."""
    return np.dtype(np.uint32 if n_objects < 2**32 - 1 else np.uint64)


@dataclass
class ResultArrays:
    """``synapse_ids.zarr`` and ``predictions.zarr`` of one blockwise run, in ``store``
    (the results folder or S3 prefix; keys are ``<array>/zarr.json``, ``<array>/c/i/j/k``)."""

    plan: BlockPlan
    store: Store
    ids_dtype: np.dtype
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0)
    voxel_unit: str = "nanometers"

    @property
    def ome(self) -> OmeZarrBlocks:
        """The OME-Zarr copies (and raw cutout) written next to the Zarr v3 arrays."""
        return OmeZarrBlocks(self.plan, self.ids_dtype, self.voxel_size, self.voxel_unit)

    def _spec(self, name: str) -> dict[str, Any]:

        dtype = self.ids_dtype if name == SYNAPSE_IDS_ZARR else np.dtype(np.uint8)
        return {
            "shape": tuple(self.plan.box.stop),
            "chunks": tuple(self.plan.block_shape),
            "dtype": dtype,
            "fill_value": 0,
            "compressors": zarr.codecs.ZstdCodec(level=ZSTD_LEVEL),
        }

    def _memory_array(self, name: str, objects: dict[str, Any], **kwargs: Any) -> Any:

        # all-zero blocks are written too: a re-run must replace an older non-empty chunk
        return zarr.create_array(
            store=ZarrMemoryStore(objects),
            config={"write_empty_chunks": True},
            **self._spec(name),
            **kwargs,
        )

    def chunk_key(self, name: str, index: int) -> str:
        block = self.plan.block(index)
        grid = [a // s for a, s in zip(block.start, self.plan.block_shape, strict=True)]
        return f"{name}/c/{'/'.join(str(g) for g in grid)}"

    def encode_block(self, index: int, ids: np.ndarray) -> dict[str, bytes]:
        """The two chunks of one block (ids, and the 0/255 mask), encoded by zarr itself."""
        block = self.plan.block(index)
        out = {}
        for name, data in (
            (SYNAPSE_IDS_ZARR, ids.astype(self.ids_dtype, copy=False)),
            (PREDICTIONS_ZARR, np.where(ids != 0, np.uint8(255), np.uint8(0))),
        ):
            objects: dict[str, Any] = {}
            array = self._memory_array(name, objects)
            array[block.slices()] = data
            key = self.chunk_key(name, index)
            out[key] = objects[key[len(name) + 1 :]].to_bytes()
        return out

    def write_block(
        self, index: int, ids: np.ndarray, raw: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Write a block's chunks (and its OME-Zarr chunks, with the ``raw`` channels);
        their checksums (recorded by the finalize pass)."""
        sums = {}
        objects = {**self.encode_block(index, ids), **self.ome.encode_block(index, ids, raw)}
        for key, data in objects.items():
            self.store.put(key, data)
            sums[key] = checksum(data)
        return sums

    def write_metadata(
        self, attributes: Mapping[str, Any], raw_dtypes: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each array's ``zarr.json`` and the OME-Zarr metadata (written last, by the merge:
        an array is complete once it is readable)."""
        sums = {}
        for key, data in self.ome.metadata(raw_dtypes or {}).items():
            self.store.put(key, data)
            sums[key] = checksum(data)
        for name in (SYNAPSE_IDS_ZARR, PREDICTIONS_ZARR):
            objects: dict[str, Any] = {}
            self._memory_array(name, objects, attributes=dict(attributes))
            data = objects["zarr.json"].to_bytes()
            self.store.put(f"{name}/zarr.json", data)
            sums[f"{name}/zarr.json"] = checksum(data)
        return sums

    def read_block(self, name: str, index: int) -> np.ndarray:
        """One block of an array, from its ``zarr.json`` and its chunk only."""

        wrap = default_buffer_prototype().buffer.from_bytes
        objects = {"zarr.json": wrap(self.store.get(f"{name}/zarr.json"))}
        key = self.chunk_key(name, index)
        if self.store.exists(key):
            objects[key[len(name) + 1 :]] = wrap(self.store.get(key))
        array = zarr.open_array(store=ZarrMemoryStore(objects, read_only=True), mode="r")
        return np.asarray(array[self.plan.block(index).slices()])


@dataclass
class TableSpec:
    """What the finalize and merge passes need besides the pass context: where the result
    arrays go, how to read the feature channels of a box, and the coordinate frame."""

    results: Store
    #: identity of the results location (part of the finalize fingerprint)
    results_id: str
    read_channels: ChannelReader
    channel_names: Sequence[str]
    voxel_size: Sequence[float]
    voxel_unit: str = "nanometers"

    def arrays(self, plan: BlockPlan, n_objects: int) -> ResultArrays:
        return ResultArrays(
            plan, self.results, ids_dtype(n_objects), tuple(self.voxel_size), self.voxel_unit
        )

    def finalize_block(
        self,
        ctx: PassContext,
        index: int,
        stats: dict[str, Any],
        threshold: dict[str, Any],
        arrays: ResultArrays,
    ) -> bool:
        """:func:`run_finalize_block` for this spec."""
        return run_finalize_block(
            ctx,
            index,
            stats,
            threshold,
            arrays=arrays,
            read_channels=self.read_channels,
            channel_names=self.channel_names,
            results=self.results_id,
        )

    def reduce(
        self, ctx: PassContext, stats: dict[str, Any], threshold: dict[str, Any]
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """:func:`reduce_table` for this spec."""
        return reduce_table(
            ctx,
            stats,
            threshold,
            channel_names=self.channel_names,
            results=self.results_id,
            voxel_size=self.voxel_size,
            voxel_unit=self.voxel_unit,
        )

    def attributes(self, plan: BlockPlan, results_key: str | None = None) -> dict[str, Any]:
        """The arrays' ``zarr.json`` attributes: where the data lies and in which frame."""
        return {
            "synapse_pipelines": {
                "results_key": results_key,
                "coordinates": "absolute voxel coordinates of the BOSS experiment (z, y, x)",
                "box": [list(plan.box.start), list(plan.box.stop)],
                "voxel_size": [float(v) for v in self.voxel_size],
                "voxel_unit": self.voxel_unit,
                "values": {
                    SYNAPSE_IDS_ZARR: "synapse id (0 = background), the synapses.csv id",
                    PREDICTIONS_ZARR: "255 where a synapse was found, 0 elsewhere",
                },
            }
        }


# -- finalize (map) ------------------------------------------------------------------------
def finalize_inputs(
    ctx: PassContext,
    stats: dict[str, Any],
    threshold: dict[str, Any],
    summary: Mapping[str, Any],
    channel_names: Sequence[str],
    results: str,
) -> str:
    return fingerprint(
        "finalize",
        passes.label_inputs(ctx, stats, threshold),
        int(summary["n_objects"]),
        list(channel_names),
        results,
    )


def _chunks_hold(store: Store, recorded: Mapping[str, Mapping[str, Any]]) -> bool:
    for key, digest in recorded.items():
        if not store.exists(key) or checksum(store.get(key)) != digest:
            return False
    return True


def _slice_arrays(sums: window_features.SliceSums, small_int: bool) -> dict[str, np.ndarray]:
    # per-block slice sums fit int64 for 8/16-bit data; the merge adds them as Python ints
    dtype = np.int64 if small_int else np.float64
    return {
        "slice_total": np.asarray(list(sums.total), dtype=dtype),
        "slice_total_sq": np.asarray(list(sums.total_sq), dtype=dtype),
    }


def run_finalize_block(
    ctx: PassContext,
    index: int,
    stats: dict[str, Any],
    threshold: dict[str, Any],
    *,
    arrays: ResultArrays,
    read_channels: ChannelReader,
    channel_names: Sequence[str],
    results: str,
    force: bool = False,
) -> bool:
    """Write one block's ids and mask chunks and record its synapse-table partials.
    True when computed, False when skipped (record, partials and chunks all intact)."""
    summary = passes.load_stitch(ctx, stats, threshold)
    inputs = finalize_inputs(ctx, stats, threshold, summary, channel_names, results)
    if not force:
        done = completed(ctx.store, "finalize", index, inputs=inputs)
        if done is not None and _chunks_hold(arrays.store, json.loads(done[CHUNKS])):
            return False
    block = ctx.plan.block(index)
    ids = passes.block_ids(ctx, index, stats, threshold)
    channels = read_channels(block)
    missing = [c for c in channel_names if c not in channels]
    if missing:
        raise ValueError(f"the channel reader gave no {missing} for block {index}")
    raw = {name: np.asarray(channels[name]) for name in channel_names}
    chunks = arrays.write_block(index, ids, raw)
    offset = tuple(a - o for a, o in zip(block.start, ctx.volume.start, strict=True))
    windows = decode_arrays(ctx.store.get(passes.windows_key(index)))
    geo = features.object_geometry(ids)
    partial: dict[str, np.ndarray] = {
        "object_ids": geo.ids,
        "window_ids": windows["ids"],
        "slice_count": np.full(block.shape[0], block.shape[1] * block.shape[2], np.int64),
    }
    for j, name in enumerate(channel_names):
        volume = np.asarray(channels[name])
        if volume.shape != block.shape:
            raise ValueError(f"channel {name!r} of block {index} has shape {volume.shape}")
        small_int = np.issubdtype(volume.dtype, np.integer) and volume.dtype.itemsize <= 2
        partial[f"sum_{j}"] = geo.reduce_sum(volume)
        partial[f"window_{j}"] = window_features.window_raw_sums(
            volume, windows["anchors"], offset=offset
        )
        for key, value in _slice_arrays(window_features.slice_sums(volume), small_int).items():
            partial[f"{key}_{j}"] = value
    outputs = {
        FEATURES: encode_arrays(partial),
        CHUNKS: encode_json(chunks),
        RAW_DTYPES: encode_json({name: raw[name].dtype.str for name in channel_names}),
    }
    write_outputs(ctx.store, "finalize", index, outputs, inputs=inputs)
    return True


# -- merge (reduce) ------------------------------------------------------------------------
def reduce_table(
    ctx: PassContext,
    stats: dict[str, Any],
    threshold: dict[str, Any],
    *,
    channel_names: Sequence[str],
    results: str,
    voxel_size: Sequence[float],
    voxel_unit: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The synapse table from every block's partials (the single job's table), and what the
    finalize pass wrote (chunk count and bytes; the raw channels' dtypes) for the manifest."""
    summary = passes.load_stitch(ctx, stats, threshold)
    inputs = finalize_inputs(ctx, stats, threshold, summary, channel_names, results)
    objects = decode_arrays(ctx.store.get(passes.OBJECTS_KEY))
    n = int(summary["n_objects"])
    depth = ctx.volume.shape[0]
    acc: dict[str, np.ndarray] = {}
    raw: dict[str, np.ndarray] = {}
    slices: dict[str, list[np.ndarray]] = {}
    written: dict[str, Any] = {
        "chunks": 0,
        "bytes": 0,
        "ome_chunks": 0,
        "ome_bytes": 0,
        "raw_dtypes": {},
    }
    for i in range(ctx.plan.n_blocks):
        out = completed(ctx.store, "finalize", i, inputs=inputs, verify=False)
        if out is None:
            raise passes.MissingBlockError("finalize", i)
        if i == 0 and RAW_DTYPES in out:
            written["raw_dtypes"] = json.loads(out[RAW_DTYPES])
        for key, digest in json.loads(out[CHUNKS]).items():
            # the Zarr v3 arrays' chunks, apart from the OME-Zarr copies' (all levels, raw)
            kind = "" if key.split("/", 1)[0] in (SYNAPSE_IDS_ZARR, PREDICTIONS_ZARR) else "ome_"
            written[f"{kind}chunks"] += 1
            written[f"{kind}bytes"] += int(digest["bytes"])
        part = decode_arrays(out[FEATURES])
        rows = part["object_ids"].astype(np.int64) - 1  # unique per block
        wrows = part["window_ids"].astype(np.int64) - 1
        z0 = ctx.plan.block(i).start[0] - ctx.volume.start[0]
        for j, name in enumerate(channel_names):
            sums, window = part[f"sum_{j}"], part[f"window_{j}"]
            if name not in acc:  # first block (a plan has at least one): the partials' dtypes
                acc[name] = np.zeros(n, dtype=sums.dtype)
                raw[name] = np.zeros((n, window.shape[1]), dtype=window.dtype)
                slices[name] = [np.zeros(depth, dtype=object) for _ in range(3)]
            acc[name][rows] += sums
            raw[name][wrows] += window
            count, total, total_sq = slices[name]
            z1 = z0 + part["slice_count"].size
            # Python integers: exact for any volume size (int64 could overflow a whole slice)
            count[z0:z1] += part["slice_count"].astype(object)
            total[z0:z1] += part[f"slice_total_{j}"].astype(object)
            total_sq[z0:z1] += part[f"slice_total_sq_{j}"].astype(object)
    object_sums = features.ObjectSums(
        ids=np.arange(1, n + 1, dtype=np.uint64),
        counts=objects["counts"],
        coord_sums=objects["coord_sums"],
        bbox_min=objects["bbox_min"],
        bbox_max=objects["bbox_max"],
        channel_sums={name: acc[name] for name in channel_names},
    )
    table = features.assemble_table(
        object_sums,
        raw,
        {name: window_features.SliceSums(*slices[name]) for name in channel_names},
        shape=ctx.volume.shape,
        voxel_size=voxel_size,
        voxel_unit=voxel_unit,
        origin=ctx.volume.start,
    )
    return table, written
