"""The blockwise passes: per-block work, and the reductions between them.

The stages, in the order and with the kinds of :data:`synapse_pipelines.blockwise.stages.STAGES`
(each ``map`` stage is one Distributed Map over the block manifest on AWS, one loop on a
laptop; each ``reduce`` is one small job; ``plan`` writes :data:`PLAN_KEY` and
:data:`MANIFEST_KEY` first)::

    covariance (map)    read the block + halo: exact integer channel sums of the owned
                        voxels, fixed-bin histogram of their covariance numerators
    threshold  (reduce) -> global channel statistics and threshold     global/threshold.json
    label      (map)    read again, numerators of the block + 1-voxel high shell,
                        foreground = numerator >= threshold; 26-connected labels of the
                        extended block; sparse labels, sizes, first voxels, shell and
                        low-face records
    stitch     (reduce) -> per-block lookup tables local label -> global id   stitch/<i>.npy
                        every object's size, coordinate sums, box         global/objects.npz
                        the feature windows reaching each block          windows/<i>.npz
    finalize   (map)    ids and mask as Zarr chunks + synapse-table partials   (finalize.py)
    merge      (reduce) -> synapses.csv                                        (finalize.py)

A local run may add one pass after the stitch that is not a stage: ``write``, the ids
``table[labels]`` of each block into a sink (an array, a file; ``runner.run_blockwise``).

The covariance numerator does not depend on the global statistics (the z-score only
rescales it), so the statistics and the histogram are reduced together after one read of
the data. The numerators are recomputed in the label pass rather than stored: re-reading
the two uint8 channels moves 2 bytes per voxel, storing and reloading int32 numerators 8.
Every map output is recorded with checksums (:mod:`.store`): a re-run skips
recorded blocks, a failed block is recomputed alone. The science is delegated to a
:class:`Kernel` (the detector's primitives), so these passes only move blocks around.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synapse_pipelines.blockwise.kernel_protocol import Kernel
from synapse_pipelines.blockwise.plan import BlockPlan
from synapse_pipelines.blockwise.sources import VolumeSource
from synapse_pipelines.blockwise.stitch import (
    dense_labels,
    extended_box,
    label_block,
    shell_slabs,
    stitch,
)
from synapse_pipelines.blockwise.store import (
    Store,
    completed,
    decode_array,
    decode_arrays,
    encode_array,
    encode_arrays,
    encode_json,
    fingerprint,
    write_outputs,
)
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import features, window_features

THRESHOLD_KEY = "global/threshold.json"
STITCH_KEY = "global/stitch.json"
#: every kept object's size, coordinate sums and box (ids 1..n by row): the synapse table's
#: geometry, reduced by the stitch from the blocks' per-label sums
OBJECTS_KEY = "global/objects.npz"
#: label pass outputs: the owned voxels' labels (read by finalize) and the small records the
#: stitch reads (sizes, first voxels, geometry, borders) — so a reduce never holds voxels
VOXELS = "voxels.npz"
BORDERS = "borders.npz"
PLAN_KEY = "plan.json"
MANIFEST_KEY = "manifest.json"


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


class MissingBlockError(RuntimeError):
    """A reduce found a block without a valid recorded output (rerun that block)."""

    def __init__(self, pass_name: str, index: int):
        self.pass_name = pass_name
        self.index = index
        where = f"block {index}" if index >= 0 else "the reduction"
        super().__init__(
            f"{where} has no valid recorded '{pass_name}' output: run the "
            f"'{pass_name}' pass again (a re-run skips the blocks already done)"
        )


def _block_output(
    ctx: PassContext, pass_name: str, index: int, inputs: str, names: Sequence[str]
) -> dict[str, bytes]:
    # lengths only: the outputs were verified when the pass decided to skip or wrote them
    out = completed(ctx.store, pass_name, index, inputs=inputs, names=names, verify=False)
    if out is None:
        raise MissingBlockError(pass_name, index)
    return out


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


# -- covariance ----------------------------------------------------------------------------
def covariance_inputs(ctx: PassContext) -> str:
    return fingerprint("covariance", *ctx.base_inputs())


def _read_extended(ctx: PassContext, index: int) -> tuple[Box, Box, Box, Any, Any]:
    """A block, its extended box (+1 high shell) and the channels read over the extended box
    grown by the halo (clipped to the volume)."""
    block = ctx.plan.block(index)
    ext = extended_box(block, ctx.volume)
    read_box = ext.grow(ctx.kernel.halo, within=ctx.volume)
    pre, post = ctx.require_source().read(read_box)
    return block, ext, read_box, pre, post


def run_covariance_block(ctx: PassContext, index: int, *, force: bool = False) -> bool:
    """Channel sums and covariance histogram of one block's owned voxels, plus its
    foreground *candidates*. True when computed, False when skipped (valid record)."""
    inputs = covariance_inputs(ctx)
    if not force and completed(ctx.store, "covariance", index, inputs=inputs) is not None:
        return False
    block, ext, read_box, pre, post = _read_extended(ctx, index)
    owned = block.slices(read_box.start)
    sums = ctx.kernel.block_stats(pre[owned], post[owned])
    owned_histogram = getattr(ctx.kernel, "owned_histogram", None)
    if owned_histogram is not None:  # a SeededKernel histograms its owned voxels itself
        part = owned_histogram(pre, post, block, read_box, ctx.volume)
        outputs = {"stats.json": encode_json(sums), "hist.npy": encode_array(part)}
        write_outputs(ctx.store, "covariance", index, outputs, inputs=inputs)
        return True
    cov = ctx.kernel.covariance(pre, post, ext, read_box, ctx.volume)
    del pre, post
    # histogram of the owned voxels = whole extended block minus its thin shell slabs
    # (exact integer counts; avoids copying the owned part out of the extended array)
    hist_ext = ctx.kernel.histogram(cov)
    hist = hist_ext
    for _, slab in shell_slabs(block, ext):
        hist = hist - ctx.kernel.histogram(cov[slab])
    outputs = {"stats.json": encode_json(sums), "hist.npy": encode_array(hist)}
    # Candidates: the extended block's voxels at or above a cutoff chosen from the block's
    # own histogram so that at most a few percent qualify. When the global threshold is at
    # or above the cutoff (the usual case: foreground is rare), the label pass builds the
    # mask from them alone; otherwise it re-reads the block. Exact either way, and far
    # cheaper than keeping every numerator (4 B/voxel).
    cutoff_fn = getattr(ctx.kernel, "candidate_cutoff", None)
    if cutoff_fn is not None:
        cutoff = cutoff_fn(hist_ext, cov.size)
        flat = cov.reshape(-1)
        where = np.flatnonzero(flat >= cutoff)
        outputs["candidates.npz"] = encode_arrays(
            {"cutoff": np.asarray(cutoff), "index": where, "values": flat[where]}
        )
    del cov
    write_outputs(ctx.store, "covariance", index, outputs, inputs=inputs)
    return True


def _add_arrays(total: np.ndarray | None, part: np.ndarray) -> np.ndarray:
    return part if total is None else total + part


def reduce_threshold(ctx: PassContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """Global statistics and threshold from every block's sums and histogram."""
    inputs = covariance_inputs(ctx)
    parts = []
    total: Any = None
    add = getattr(ctx.kernel, "add_histogram", None) or _add_arrays  # a SeededKernel's own
    for i in range(ctx.plan.n_blocks):
        out = _block_output(ctx, "covariance", i, inputs, ("stats.json", "hist.npy"))
        parts.append(json.loads(out["stats.json"]))
        hist = decode_array(out["hist.npy"]).astype(np.int64)
        total = add(total, hist)
    assert total is not None
    stats = ctx.kernel.reduce_stats(parts)
    threshold = ctx.kernel.threshold(total, stats)
    ctx.store.put(
        THRESHOLD_KEY, encode_json({"inputs": inputs, "stats": stats, "threshold": threshold})
    )
    return stats, threshold


def load_threshold(ctx: PassContext) -> tuple[dict[str, Any], dict[str, Any]]:
    if not ctx.store.exists(THRESHOLD_KEY):
        raise MissingBlockError("threshold", -1)
    data = ctx.load_json(THRESHOLD_KEY)
    if data["inputs"] != covariance_inputs(ctx):
        raise MissingBlockError("threshold", -1)
    return data["stats"], data["threshold"]


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
    label_extended = getattr(ctx.kernel, "label_extended", None)
    if label_extended is not None:  # a SeededKernel: labels with seed keys
        _seeded_label_block(ctx, index, threshold, label_extended, inputs)
        return True
    mask = _candidate_mask(ctx, index, threshold)
    block = ctx.plan.block(index)
    if mask is None:  # the threshold is below this block's cutoff: recompute the numerators
        block, ext, read_box, pre, post = _read_extended(ctx, index)
        cov = ctx.kernel.covariance(pre, post, ext, read_box, ctx.volume)
        del pre, post
        mask = ctx.kernel.mask(cov, threshold)
        del cov
    labels = label_block(mask, block, ctx.volume, label=ctx.kernel.label)
    del mask
    outputs = {
        VOXELS: encode_arrays(labels.voxel_arrays()),
        BORDERS: encode_arrays(labels.border_arrays()),
    }
    write_outputs(ctx.store, "label", index, outputs, inputs=inputs)
    return True


def _seeded_label_block(
    ctx: PassContext,
    index: int,
    threshold: dict[str, Any],
    label_extended: Callable[..., tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]],
    inputs: str,
) -> None:
    block, ext, read_box, pre, post = _read_extended(ctx, index)
    raw, keys, extras = label_extended(pre, post, block, ext, read_box, ctx.volume, threshold)
    del pre, post
    labels = label_block(
        raw > 0, block, ctx.volume, label=lambda _mask: (raw, len(keys)), keys=keys
    )
    outputs = {
        VOXELS: encode_arrays(labels.voxel_arrays()),
        BORDERS: encode_arrays({**labels.border_arrays(), **extras}),
    }
    write_outputs(ctx.store, "label", index, outputs, inputs=inputs)


def _candidate_mask(ctx: PassContext, index: int, threshold: dict[str, Any]) -> np.ndarray | None:
    """The extended block's mask from its recorded candidates, or None when the threshold
    lies below the block's cutoff (some foreground voxels were not recorded)."""
    covers = getattr(ctx.kernel, "threshold_covers", None)
    if covers is None:
        return None
    out = completed(
        ctx.store,
        "covariance",
        index,
        inputs=covariance_inputs(ctx),
        names=("candidates.npz",),
        verify=False,
    )
    if out is None:
        raise MissingBlockError("covariance", index)
    cand = decode_arrays(out["candidates.npz"])
    if not covers(threshold, cand["cutoff"].item()):
        return None
    ext = extended_box(ctx.plan.block(index), ctx.volume)
    mask = np.zeros(ext.shape, dtype=bool)
    keep = ctx.kernel.mask(cand["values"], threshold)
    mask.reshape(-1)[cand["index"][keep]] = True
    return mask


def load_block_voxels(
    ctx: PassContext, index: int, stats: dict[str, Any], threshold: dict[str, Any]
) -> dict[str, np.ndarray]:
    out = _block_output(ctx, "label", index, label_inputs(ctx, stats, threshold), (VOXELS,))
    return decode_arrays(out[VOXELS])


def load_block_borders(
    ctx: PassContext, index: int, stats: dict[str, Any], threshold: dict[str, Any]
) -> dict[str, np.ndarray]:
    out = _block_output(ctx, "label", index, label_inputs(ctx, stats, threshold), (BORDERS,))
    return decode_arrays(out[BORDERS])


def stitch_key(index: int) -> str:
    return f"stitch/{index}.npy"


def windows_key(index: int) -> str:
    return f"windows/{index}.npz"


def reduce_stitch(
    ctx: PassContext, stats: dict[str, Any], threshold: dict[str, Any]
) -> dict[str, Any]:
    """Union-find over all blocks' border records; writes one lookup table per block, the
    objects' geometry, and per block the feature windows that reach into it."""
    blocks = [load_block_borders(ctx, i, stats, threshold) for i in range(ctx.plan.n_blocks)]
    result = stitch(blocks, min_size=ctx.kernel.min_size)
    summarize = getattr(ctx.kernel, "summarize", None)  # a SeededKernel's additions
    extra = summarize(blocks, result, threshold) if summarize is not None else {}
    del blocks
    for i, table in enumerate(result.tables):
        ctx.store.put(stitch_key(i), encode_array(table))
    ctx.store.put(
        OBJECTS_KEY,
        encode_arrays(
            {
                "counts": result.sizes,
                "coord_sums": result.coord_sums,
                "bbox_min": result.bbox_min,
                "bbox_max": result.bbox_max,
            }
        ),
    )
    anchors = features.window_anchors(result.coord_sums, result.sizes)
    ids = np.arange(1, result.n_objects + 1, dtype=np.uint64)
    for i, rows in enumerate(window_blocks(ctx.plan, anchors)):
        ctx.store.put(windows_key(i), encode_arrays({"ids": ids[rows], "anchors": anchors[rows]}))
    summary = {
        "inputs": label_inputs(ctx, stats, threshold),
        "n_objects": result.n_objects,
        "n_voxels": int(result.sizes.sum()),
        "n_components": result.n_components,
        "largest_component": result.largest,
        **extra,
    }
    ctx.store.put(STITCH_KEY, encode_json(summary))
    return summary


def window_blocks(plan: BlockPlan, anchors: np.ndarray) -> list[np.ndarray]:
    """Per block, the rows of ``anchors`` (request-box coordinates) whose feature window
    (:data:`window_features.WINDOW_OFFSETS`, clipped to the box) overlaps the block: a window is
    smaller than a block, so it reaches at most two blocks along each axis."""
    lo, hi, _ = window_features.window_bounds(anchors, plan.box.shape)
    first = [plan.box.start[a] // plan.block_shape[a] for a in range(3)]

    def grid(coord: np.ndarray, axis: int) -> np.ndarray:
        return (coord + plan.box.start[axis]) // plan.block_shape[axis] - first[axis]

    low = [grid(lo[:, a], a) for a in range(3)]
    high = [grid(hi[:, a] - 1, a) for a in range(3)]
    _, ny, nx = plan.grid_shape
    rows = np.arange(anchors.shape[0], dtype=np.int64)
    pairs = []
    for pz in (low[0], high[0]):
        for py in (low[1], high[1]):
            for px in (low[2], high[2]):
                pairs.append((pz * ny + py) * nx + px)
    block = np.concatenate(pairs) if pairs else np.zeros(0, np.int64)
    row = np.tile(rows, 8)
    unique = np.unique(block * max(anchors.shape[0], 1) + row)
    block, row = np.divmod(unique, max(anchors.shape[0], 1))
    cuts = np.searchsorted(block, np.arange(plan.n_blocks + 1))
    return [row[cuts[i] : cuts[i + 1]] for i in range(plan.n_blocks)]


def load_stitch(ctx: PassContext, stats: dict[str, Any], threshold: dict[str, Any]) -> dict:
    if not ctx.store.exists(STITCH_KEY):
        raise MissingBlockError("stitch", -1)
    summary = ctx.load_json(STITCH_KEY)
    if summary["inputs"] != label_inputs(ctx, stats, threshold):
        raise MissingBlockError("stitch", -1)
    return summary


# -- write ---------------------------------------------------------------------------------
Sink = Callable[[Box, np.ndarray], None]


def block_ids(
    ctx: PassContext, index: int, stats: dict[str, Any], threshold: dict[str, Any]
) -> np.ndarray:
    """Global synapse ids of one block's owned voxels (dense array of the block)."""
    table = decode_array(ctx.store.get(stitch_key(index)))
    return dense_labels(load_block_voxels(ctx, index, stats, threshold), table)
