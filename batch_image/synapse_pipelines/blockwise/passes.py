"""The blockwise passes: per-block work, and the reductions between them.

Pass order (each ``map`` pass is one Distributed Map over the block manifest on AWS, one
loop on a laptop; each ``reduce`` is one small job)::

    stats      (map)    integer channel sums of the owned voxels
    stats      (reduce) -> global per-channel mean / std               global/stats.json
    covariance (map)    window covariance of the block + 1-voxel high shell, read with a
                        halo; histogram of the owned voxels; the covariance is kept
    threshold  (reduce) -> the global threshold from the summed histogram  global/threshold.json
    label      (map)    mask = covariance > threshold; 26-connected labels of the extended
                        block; sizes, first voxels, shell and low-face records
    stitch     (reduce) -> per-block lookup tables local label -> global id   stitch/<i>.npy
    write      (map)    ids = table[labels]; mask = ids > 0; into the output

Every map output is recorded with checksums (:mod:`.store`): a re-run skips recorded
blocks, a failed block is recomputed alone. The science is delegated to a
:class:`Kernel` (the detector's primitives), so these passes only move blocks around.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from synapse_pipelines.blockwise.plan import BlockPlan
from synapse_pipelines.blockwise.sources import VolumeSource
from synapse_pipelines.blockwise.stitch import (
    BlockLabels,
    extended_box,
    label_block,
    stitch,
)
from synapse_pipelines.blockwise.store import (
    Store,
    completed,
    decode_arrays,
    encode_arrays,
    encode_json,
    fingerprint,
    write_outputs,
)
from synapse_pipelines.geometry import Box

PASSES = ("stats", "covariance", "label", "write")
REDUCES = ("stats", "threshold", "stitch")

STATS_KEY = "global/stats.json"
THRESHOLD_KEY = "global/threshold.json"
STITCH_KEY = "global/stitch.json"
PLAN_KEY = "plan.json"
MANIFEST_KEY = "manifest.json"


class Kernel(Protocol):
    """The detector's decomposable primitives, as the passes need them.

    All global values (``stats``, ``threshold``) are JSON-serialisable so they can be
    recorded, fingerprinted and passed between jobs.
    """

    #: context voxels the covariance window needs on each side (z, y, x)
    halo: tuple[int, int, int]
    #: objects keep voxels when their global size is larger than this
    min_size: int

    def parameters(self) -> dict[str, Any]:
        """Everything that changes the answer (for fingerprints)."""
        ...

    def block_stats(self, pre: np.ndarray, post: np.ndarray) -> dict[str, Any]:
        """Exactly reducible (integer) per-channel sums of one block."""
        ...

    def reduce_stats(self, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Global statistics from the per-block sums."""
        ...

    def covariance(
        self,
        pre: np.ndarray,
        post: np.ndarray,
        box: Box,
        read_box: Box,
        volume: Box,
        stats: dict[str, Any],
    ) -> np.ndarray:
        """Covariance of ``box`` from channels read over ``read_box`` (``box`` grown by the
        halo and clipped to ``volume``); the kernel pads at the volume border by its rule."""
        ...

    def histogram(self, cov: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
        """Exactly reducible (integer counts, fixed edges) histogram of covariance values."""
        ...

    def threshold(self, histogram: np.ndarray, stats: dict[str, Any]) -> dict[str, Any]:
        """The global threshold from the summed histogram."""
        ...

    def mask(self, cov: np.ndarray, threshold: dict[str, Any]) -> np.ndarray:
        """Foreground voxels."""
        ...


@dataclass
class PassContext:
    """What every pass of one run needs."""

    plan: BlockPlan
    store: Store
    kernel: Kernel
    source: VolumeSource | None = None
    #: identity of the data (e.g. ``boss://host/collection/experiment/pre,post``): records
    #: made from another source are never reused
    source_id: str | None = None

    @property
    def volume(self) -> Box:
        return self.plan.box

    def base_inputs(self) -> list[Any]:
        return [self.plan.fingerprint(), self.kernel.parameters(), self.source_id]

    def load_json(self, key: str) -> Any:
        return json.loads(self.store.get(key))

    def require_source(self) -> VolumeSource:
        if self.source is None:
            raise ValueError("this pass reads the volume: give a source")
        if self.source.box != self.plan.box:
            raise ValueError(f"source covers {self.source.box}, the plan {self.plan.box}")
        return self.source


def border_pad_widths(
    box: Box, read_box: Box, halo: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``np.pad`` widths that complete ``read_box`` to ``box`` grown by ``halo``: non-zero
    only where the volume border clipped the read, i.e. where the border rule applies."""
    widths = []
    for a, b, ra, rb, h in zip(
        box.start, box.stop, read_box.start, read_box.stop, halo, strict=True
    ):
        widths.append((h - (a - ra), h - (rb - b)))
    return tuple(widths)  # type: ignore[return-value]


# -- stats ---------------------------------------------------------------------------------
def stats_inputs(ctx: PassContext) -> str:
    return fingerprint("stats", *ctx.base_inputs())


def run_stats_block(ctx: PassContext, index: int, *, force: bool = False) -> bool:
    """Per-block channel sums. Returns True when computed, False when skipped (recorded)."""
    inputs = stats_inputs(ctx)
    if not force and completed(ctx.store, "stats", index, inputs=inputs) is not None:
        return False
    pre, post = ctx.require_source().read(ctx.plan.block(index))
    sums = ctx.kernel.block_stats(pre, post)
    write_outputs(ctx.store, "stats", index, {"json": encode_json(sums)}, inputs=inputs)
    return True


def _block_output(ctx: PassContext, pass_name: str, index: int, inputs: str) -> dict[str, bytes]:
    out = completed(ctx.store, pass_name, index, inputs=inputs)
    if out is None:
        raise MissingBlockError(pass_name, index)
    return out


class MissingBlockError(RuntimeError):
    """A reduce found a block without a valid recorded output (rerun that block)."""

    def __init__(self, pass_name: str, index: int):
        self.pass_name = pass_name
        self.index = index
        super().__init__(
            f"block {index} has no valid recorded '{pass_name}' output: run the "
            f"'{pass_name}' pass for it again (a re-run skips the blocks already done)"
        )


def reduce_stats(ctx: PassContext) -> dict[str, Any]:
    inputs = stats_inputs(ctx)
    parts = [
        json.loads(_block_output(ctx, "stats", i, inputs)["json"]) for i in range(ctx.plan.n_blocks)
    ]
    stats = ctx.kernel.reduce_stats(parts)
    ctx.store.put(STATS_KEY, encode_json({"inputs": inputs, "stats": stats}))
    return stats


def load_stats(ctx: PassContext) -> dict[str, Any]:
    data = ctx.load_json(STATS_KEY)
    if data["inputs"] != stats_inputs(ctx):
        raise MissingBlockError("stats", -1)
    return data["stats"]


# -- covariance ----------------------------------------------------------------------------
def covariance_inputs(ctx: PassContext, stats: dict[str, Any]) -> str:
    return fingerprint("covariance", *ctx.base_inputs(), stats)


def run_covariance_block(
    ctx: PassContext, index: int, stats: dict[str, Any], *, force: bool = False
) -> bool:
    inputs = covariance_inputs(ctx, stats)
    if not force and completed(ctx.store, "covariance", index, inputs=inputs) is not None:
        return False
    block = ctx.plan.block(index)
    ext = extended_box(block, ctx.volume)
    read_box = ext.grow(ctx.kernel.halo, within=ctx.volume)
    pre, post = ctx.require_source().read(read_box)
    cov = ctx.kernel.covariance(pre, post, ext, read_box, ctx.volume, stats)
    del pre, post
    hist = ctx.kernel.histogram(cov[block.slices(ext.start)], stats)
    write_outputs(
        ctx.store,
        "covariance",
        index,
        {"npz": encode_arrays({"cov": cov, "hist": hist})},
        inputs=inputs,
    )
    return True


def reduce_threshold(ctx: PassContext, stats: dict[str, Any]) -> dict[str, Any]:
    inputs = covariance_inputs(ctx, stats)
    total: np.ndarray | None = None
    for i in range(ctx.plan.n_blocks):
        hist = decode_arrays(_block_output(ctx, "covariance", i, inputs)["npz"])["hist"]
        total = hist.astype(np.int64) if total is None else total + hist
    assert total is not None
    threshold = ctx.kernel.threshold(total, stats)
    ctx.store.put(THRESHOLD_KEY, encode_json({"inputs": inputs, "threshold": threshold}))
    return threshold


def load_threshold(ctx: PassContext, stats: dict[str, Any]) -> dict[str, Any]:
    data = ctx.load_json(THRESHOLD_KEY)
    if data["inputs"] != covariance_inputs(ctx, stats):
        raise MissingBlockError("covariance", -1)
    return data["threshold"]


# -- label ---------------------------------------------------------------------------------
def label_inputs(ctx: PassContext, stats: dict[str, Any], threshold: dict[str, Any]) -> str:
    return fingerprint("label", *ctx.base_inputs(), stats, threshold)


def run_label_block(
    ctx: PassContext,
    index: int,
    stats: dict[str, Any],
    threshold: dict[str, Any],
    *,
    force: bool = False,
) -> bool:
    inputs = label_inputs(ctx, stats, threshold)
    if not force and completed(ctx.store, "label", index, inputs=inputs) is not None:
        return False
    cov_out = _block_output(ctx, "covariance", index, covariance_inputs(ctx, stats))
    cov = decode_arrays(cov_out["npz"])["cov"]
    mask = ctx.kernel.mask(cov, threshold)
    del cov
    labels = label_block(mask, ctx.plan.block(index), ctx.volume)
    write_outputs(ctx.store, "label", index, {"npz": encode_arrays(labels.arrays())}, inputs=inputs)
    return True


_RECORD_FIELDS = ("sizes", "first", "shell_index", "shell_label", "face_index", "face_label")


def reduce_stitch(
    ctx: PassContext, stats: dict[str, Any], threshold: dict[str, Any]
) -> dict[str, Any]:
    """Union-find over all blocks' records; writes one lookup table per block."""
    inputs = label_inputs(ctx, stats, threshold)
    records = []
    for i in range(ctx.plan.n_blocks):
        arrays = decode_arrays(_block_output(ctx, "label", i, inputs)["npz"])
        records.append({k: arrays[k] for k in _RECORD_FIELDS})
    result = stitch(records, min_size=ctx.kernel.min_size)
    for i, table in enumerate(result.tables):
        ctx.store.put(f"stitch/{i}.npy", encode_arrays({"table": table}))
    summary = {
        "inputs": inputs,
        "n_objects": result.n_objects,
        "n_voxels": int(result.sizes.sum()),
        "dtype": str(result.tables[0].dtype) if result.tables else "uint32",
    }
    ctx.store.put(STITCH_KEY, encode_json(summary))
    return summary


def load_table(ctx: PassContext, index: int) -> np.ndarray:
    return decode_arrays(ctx.store.get(f"stitch/{index}.npy"))["table"]


# -- write ---------------------------------------------------------------------------------
Sink = Callable[[Box, np.ndarray], None]


def block_ids(ctx: PassContext, index: int, stats: dict[str, Any], threshold: dict[str, Any]):
    """Global synapse ids of one block's owned voxels."""
    arrays = decode_arrays(
        _block_output(ctx, "label", index, label_inputs(ctx, stats, threshold))["npz"]
    )
    labels = BlockLabels.from_arrays(arrays).labels
    return load_table(ctx, index)[labels]
