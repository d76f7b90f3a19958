"""Run every blockwise pass on one machine, with memory bounded by the block size.

:func:`run_blockwise` is the laptop twin of the Distributed Map workflow: the same pass
functions, the same store layout and completion records, executed in a loop. Re-running it
on the same work folder skips every recorded block; a block that raises is retried (up to
``max_attempts``) without touching the others — what Batch's retry strategy does per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapse_pipelines.blockwise import passes
from synapse_pipelines.blockwise.finalize import TableSpec
from synapse_pipelines.blockwise.passes import Kernel, PassContext
from synapse_pipelines.blockwise.plan import BlockPlan, manifest_json
from synapse_pipelines.blockwise.sources import VolumeSource
from synapse_pipelines.blockwise.store import Store, open_store
from synapse_pipelines.core.geometry import Box

log = logging.getLogger(__name__)

#: ``sink(box, ids)`` receives the global ids of each block's owned voxels (absolute box).
Sink = Callable[[Box, np.ndarray], None]
Progress = Callable[[str, int, int], None]


@dataclass
class BlockwiseResult:
    plan: BlockPlan
    stats: dict[str, Any]
    threshold: dict[str, Any]
    n_objects: int
    n_voxels: int
    #: per pass: how many blocks were computed / skipped because already recorded
    computed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: the synapse table, when the run was given a :class:`TableSpec`
    table: pd.DataFrame | None = None


def write_plan(store: Store, plan: BlockPlan) -> None:
    """``plan.json`` and the manifest (idempotent: same plan, same bytes)."""
    store.put(passes.PLAN_KEY, plan.to_json().encode())
    store.put(passes.MANIFEST_KEY, manifest_json(plan))


def run_blockwise(
    volume_source: VolumeSource,
    plan: BlockPlan,
    workdir: str | Path | Store,
    *,
    kernel: Kernel | None = None,
    sink: Sink | None = None,
    max_attempts: int = 3,
    progress: Progress | None = None,
    source_id: str | None = None,
    table: TableSpec | None = None,
) -> BlockwiseResult:
    """Run covariance -> threshold -> label -> stitch -> write over every block of ``plan``.

    ``kernel`` defaults to NOMADS (:class:`synapse_pipelines.blockwise.nomads.NomadsKernel`
    with default parameters). ``sink`` receives each block's global ids (pass a writer to a
    memmap, a Zarr array or BOSS); without it, nothing is assembled — the per-block labels
    and lookup tables stay in ``workdir``. ``source_id`` names the data (records made from
    another source are recomputed, not reused). With ``table``, the finalize and merge
    passes also run: ``synapse_ids.zarr`` / ``predictions.zarr`` block by block into
    ``table.results`` and the synapse table (``result.table``) from per-block partials.
    """
    if kernel is None:
        from synapse_pipelines.blockwise.nomads import NomadsKernel

        kernel = NomadsKernel()
    store = workdir if not isinstance(workdir, str | Path) else open_store(workdir)
    ctx = PassContext(
        plan=plan, store=store, kernel=kernel, source=volume_source, source_id=source_id
    )
    ctx.require_source()
    check_volume = getattr(kernel, "check_volume", None)
    if check_volume is not None:
        check_volume(plan.box)
    write_plan(store, plan)
    result = BlockwiseResult(plan, {}, {}, 0, 0)

    def each_block(name: str, fn: Callable[[int], bool]) -> None:
        start = time.perf_counter()
        done = skipped = retried = 0
        for i in range(plan.n_blocks):
            for attempt in range(1, max_attempts + 1):
                try:
                    if fn(i):
                        done += 1
                    else:
                        skipped += 1
                    break
                except Exception:
                    if attempt == max_attempts:
                        raise
                    retried += 1
                    log.warning("%s: block %d failed (attempt %d), retrying", name, i, attempt)
            if progress is not None:
                progress(name, i + 1, plan.n_blocks)
        result.computed[name] = done
        result.skipped[name] = skipped
        result.retried[name] = retried
        result.seconds[name] = time.perf_counter() - start

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        result.seconds[name] = time.perf_counter() - start
        return value

    each_block("covariance", lambda i: passes.run_covariance_block(ctx, i))
    stats, threshold = timed("reduce_threshold", lambda: passes.reduce_threshold(ctx))
    each_block("label", lambda i: passes.run_label_block(ctx, i, stats, threshold))
    summary = timed("reduce_stitch", lambda: passes.reduce_stitch(ctx, stats, threshold))
    if sink is not None:

        def write(i: int) -> bool:
            sink(plan.block(i), passes.block_ids(ctx, i, stats, threshold))
            return True

        each_block("write", write)
    if table is not None:
        arrays = table.arrays(plan, int(summary["n_objects"]))
        each_block("finalize", lambda i: table.finalize_block(ctx, i, stats, threshold, arrays))
        result.table, _ = timed("merge", lambda: table.reduce(ctx, stats, threshold))
        arrays.write_metadata(table.attributes(plan))
    result.stats = stats
    result.threshold = threshold
    result.n_objects = int(summary["n_objects"])
    result.n_voxels = int(summary["n_voxels"])
    return result


def array_sink(out: np.ndarray, volume: Box) -> Sink:
    """A sink writing ids into ``out`` (an array or memmap covering ``volume``)."""

    def sink(box: Box, ids: np.ndarray) -> None:
        out[box.slices(volume.start)] = ids

    return sink


def npy_sink(path: str | Path, volume: Box, dtype: Any = np.uint32) -> Sink:
    """A sink writing ids into a new ``.npy`` file covering ``volume``, one block at a time.

    The file is memory-mapped only while a block is written, so the writer's resident
    memory stays one block, whatever the volume size.
    """
    path = Path(path)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=volume.shape)
    del out

    def sink(box: Box, ids: np.ndarray) -> None:
        mapped = np.load(path, mmap_mode="r+")
        try:
            # no flush per block: msync would force a disk write of every block; unmapping
            # leaves the pages to the OS's write-back like any file write
            mapped[box.slices(volume.start)] = ids
        finally:
            del mapped

    return sink


def zarr_sink(
    path: str | Path, volume: Box, chunks: tuple[int, int, int], dtype: Any = np.uint32
) -> Sink:
    """A sink writing ids into a new uncompressed Zarr array with one chunk per block
    (``chunks`` = the plan's block shape, volume starting on the block grid): every block
    is one contiguous file write."""
    import zarr

    array = zarr.create_array(
        store=str(path),
        shape=volume.shape,
        chunks=chunks,
        dtype=dtype,
        compressors=None,
        fill_value=0,
        overwrite=True,
    )

    def sink(box: Box, ids: np.ndarray) -> None:
        array[box.slices(volume.start)] = ids

    return sink


def folder_sink(path: str | Path, volume: Box) -> Sink:
    """A sink writing each block's ids as its own ``.npy`` file, named by the block's start
    (``z_y_x.npy``) in ``path``: one contiguous write per block, nothing shared between
    blocks (what each Batch job of the write pass would put to S3)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)

    def sink(box: Box, ids: np.ndarray) -> None:
        np.save(folder / ("_".join(str(v) for v in box.start) + ".npy"), ids)

    return sink


def read_folder(path: str | Path, volume: Box, dtype: Any = np.uint32) -> np.ndarray:
    """Assemble what :func:`folder_sink` wrote (tests, benchmarks)."""
    out = np.zeros(volume.shape, dtype=dtype)
    for file in Path(path).glob("*.npy"):
        start = tuple(int(v) for v in file.stem.split("_"))
        block = np.load(file)
        box = Box(start, tuple(a + s for a, s in zip(start, block.shape, strict=True)))  # type: ignore[arg-type]
        out[box.slices(volume.start)] = block
    return out
