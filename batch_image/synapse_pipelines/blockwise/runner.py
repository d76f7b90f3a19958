"""Run every blockwise pass on one machine, with memory bounded by the block size.

:func:`run_blockwise` is the laptop twin of the Distributed Map workflow: the same pass
functions, the same store layout and completion records, the same stages in the same order
(the ``Detect`` stages of :mod:`synapse_pipelines.blockwise.stages`), executed in a loop.
Re-running it on the same work folder skips every recorded block; a block that raises is
retried (up to ``max_attempts``) without touching the others — what Batch's retry strategy
does per job. The kernel (the detector's blockwise primitives) is passed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from synapse_pipelines.blockwise import passes
from synapse_pipelines.blockwise.finalize import ResultArrays, TableSpec
from synapse_pipelines.blockwise.kernel_protocol import Kernel
from synapse_pipelines.blockwise.passes import PassContext
from synapse_pipelines.blockwise.plan import BlockPlan, manifest_json, plan_request
from synapse_pipelines.blockwise.sources import VolumeSource
from synapse_pipelines.blockwise.stages import DETECT, stages_of
from synapse_pipelines.blockwise.store import MemoryStore, Store, open_store
from synapse_pipelines.core.geometry import Box

log = logging.getLogger(__name__)

#: ``sink(box, ids)`` receives the global ids of each block's owned voxels (absolute box).
Sink = Callable[[Box, np.ndarray], None]
Progress = Callable[[str, int, int], None]
T = TypeVar("T")


@dataclass
class BlockwiseResult:
    plan: BlockPlan
    stats: dict[str, Any]
    threshold: dict[str, Any]
    n_objects: int
    n_voxels: int
    #: the kernel's reason when nothing was found (None otherwise)
    explanation: str | None = None
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
    kernel: Kernel,
    sink: Sink | None = None,
    max_attempts: int = 3,
    progress: Progress | None = None,
    source_id: str | None = None,
    table: TableSpec | None = None,
) -> BlockwiseResult:
    """Run the Detect stages of :data:`~synapse_pipelines.blockwise.stages.STAGES`, in that
    order, over every block of ``plan``.

    ``kernel`` is the detector's blockwise primitives (NOMADS:
    :class:`synapse_pipelines.blockwise.nomads.NomadsKernel`). ``sink`` receives each block's
    global ids after the stitch (pass a writer to a memmap, a Zarr array or BOSS); without it,
    nothing is assembled — the per-block labels and lookup tables stay in ``workdir``.
    ``source_id`` names the data (records made from another source are recomputed, not
    reused). With ``table``, the finalize and merge stages run too: ``synapse_ids.zarr`` /
    ``predictions.zarr`` block by block into ``table.results`` and the synapse table
    (``result.table``) from per-block partials; without it they are skipped.
    """
    store = workdir if not isinstance(workdir, str | Path) else open_store(workdir)
    ctx = PassContext(
        plan=plan, store=store, kernel=kernel, source=volume_source, source_id=source_id
    )
    ctx.require_source()
    kernel.check_volume(plan.box)
    run = _LocalRun(ctx, max_attempts, progress, sink, table)
    for stage in stages_of(DETECT):
        run.STAGES[stage.name](run)
    return run.result


class _LocalRun:
    """One :func:`run_blockwise` call: each Detect stage as a method, and what the reduce
    stages hand to the stages after them."""

    def __init__(
        self,
        ctx: PassContext,
        max_attempts: int,
        progress: Progress | None,
        sink: Sink | None,
        table: TableSpec | None,
    ) -> None:
        self.ctx = ctx
        self.plan = ctx.plan
        self.max_attempts = max_attempts
        self.progress = progress
        self.sink = sink
        self.table = table
        self.result = BlockwiseResult(ctx.plan, {}, {}, 0, 0)
        self.arrays: ResultArrays | None = None

    def each_block(self, name: str, fn: Callable[[int], bool]) -> None:
        """``fn`` on every block, a failing block retried up to ``max_attempts`` times."""
        result, n_blocks = self.result, self.plan.n_blocks
        start = time.perf_counter()
        done = skipped = retried = 0
        for i in range(n_blocks):
            for attempt in range(1, self.max_attempts + 1):
                try:
                    if fn(i):
                        done += 1
                    else:
                        skipped += 1
                    break
                except Exception:
                    if attempt == self.max_attempts:
                        raise
                    retried += 1
                    log.warning("%s: block %d failed (attempt %d), retrying", name, i, attempt)
            if self.progress is not None:
                self.progress(name, i + 1, n_blocks)
        result.computed[name] = done
        result.skipped[name] = skipped
        result.retried[name] = retried
        result.seconds[name] = time.perf_counter() - start

    def timed(self, name: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        value = fn()
        self.result.seconds[name] = time.perf_counter() - start
        return value

    def store_plan(self) -> None:
        write_plan(self.ctx.store, self.plan)

    def covariance(self) -> None:
        self.each_block("covariance", lambda i: passes.run_covariance_block(self.ctx, i))

    def threshold(self) -> None:
        stats, threshold = self.timed("reduce_threshold", lambda: passes.reduce_threshold(self.ctx))
        self.result.stats, self.result.threshold = stats, threshold

    def label(self) -> None:
        stats, threshold = self.result.stats, self.result.threshold
        self.each_block("label", lambda i: passes.run_label_block(self.ctx, i, stats, threshold))

    def stitch(self) -> None:
        ctx, stats, threshold = self.ctx, self.result.stats, self.result.threshold
        summary = self.timed("reduce_stitch", lambda: passes.reduce_stitch(ctx, stats, threshold))
        self.result.n_objects = int(summary["n_objects"])
        self.result.n_voxels = int(summary["n_voxels"])
        self.result.explanation = self.ctx.kernel.explain_empty(summary, threshold)
        sink = self.sink
        if sink is not None:  # a local run's extra pass: the global ids of each block

            def write(i: int) -> bool:
                sink(self.plan.block(i), passes.block_ids(ctx, i, stats, threshold))
                return True

            self.each_block("write", write)

    def finalize(self) -> None:
        table = self.table
        if table is None:
            return
        ctx, stats, threshold = self.ctx, self.result.stats, self.result.threshold
        arrays = table.arrays(self.plan, self.result.n_objects)
        self.arrays = arrays
        self.each_block(
            "finalize", lambda i: table.finalize_block(ctx, i, stats, threshold, arrays)
        )

    def merge(self) -> None:
        table, arrays = self.table, self.arrays
        if table is None or arrays is None:
            return
        stats, threshold = self.result.stats, self.result.threshold
        self.result.table, written = self.timed(
            "merge", lambda: table.reduce(self.ctx, stats, threshold)
        )
        arrays.write_metadata(table.attributes(self.plan), written.get("raw_dtypes"))

    #: The method that runs each Detect stage here.
    STAGES: ClassVar[dict[str, Callable[[_LocalRun], None]]] = {
        "plan": store_plan,
        "covariance": covariance,
        "threshold": threshold,
        "label": label,
        "stitch": stitch,
        "finalize": finalize,
        "merge": merge,
    }


def array_sink(out: np.ndarray, volume: Box) -> Sink:
    """A sink writing ids into ``out`` (an array or memmap covering ``volume``)."""

    def sink(box: Box, ids: np.ndarray) -> None:
        out[box.slices(volume.start)] = ids

    return sink


def run_into_array(
    source: VolumeSource,
    kernel: Kernel,
    *,
    plan: BlockPlan | None,
    block_shape: tuple[int, int, int] | None,
    alignment: tuple[int, int, int],
    bytes_per_voxel: float,
    workdir: str | Path | Store | None,
) -> tuple[np.ndarray, BlockwiseResult]:
    """The one-machine blockwise run of a detector: plan the source (unless ``plan`` is
    given) with the kernel's halo, run every stage (per-block outputs in memory without
    ``workdir``) and write the ids into one uint32 array covering the source's box."""
    if plan is None:
        plan = plan_request(
            source.box,
            mode="blockwise",
            block_shape=block_shape,
            alignment=alignment,
            halo=kernel.halo,
            bytes_per_voxel=bytes_per_voxel,
        )
    labels = np.zeros(source.box.shape, dtype=np.uint32)
    res = run_blockwise(
        source,
        plan,
        MemoryStore() if workdir is None else workdir,
        kernel=kernel,
        sink=array_sink(labels, source.box),
    )
    return labels, res
