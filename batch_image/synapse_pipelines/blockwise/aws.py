"""The blockwise Detect on AWS: what each Batch job of the Distributed Map flow does.

The state machine runs, for a request ValidateRequest marked ``detect_mode: blockwise``::

    blocks plan                      plan.json + manifest.json (the ItemReader's JSON array)
    Map: blocks covariance --block i one job per manifest item (read from BOSS with halo)
    blocks threshold                 global statistics + threshold (reads small outputs only)
    Map: blocks label --block i
    blocks stitch                    union-find -> per-block lookup tables
    blocks merge                     the same results folder the single Detect job writes

All per-block state lives under ``s3://<bucket>/<results_key>/_workflow/blockwise/`` with
completion records (:mod:`.store`), so a retried or re-run job skips finished blocks. Only
S3 keys and small values travel in the state; the Map items are ``{"block": i, "z": [..],
"y": [..], "x": [..]}``.

Configuration (environment of the jobs and of ValidateRequest; every value optional):

- ``SYNAPSE_BLOCKWISE_BLOCK_SHAPE`` ("z,y,x"): block shape; default from the job memory.
- ``SYNAPSE_BLOCKWISE_ALIGNMENT`` ("z,y,x"): grid the blocks align to; default BOSS cuboids.
- ``SYNAPSE_BLOCKWISE_JOB_MEMORY_MIB``: memory of one block job, for the automatic shape.
- ``SYNAPSE_BLOCKWISE_MIN_VOXELS``: requests at least this large go blockwise even when one
  job could take them (ValidateRequest); requests too large for one job always do.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from synapse_pipelines import workflow as wf
from synapse_pipelines.blockwise import passes
from synapse_pipelines.blockwise.config import (
    BLOCKWISE_PIPELINE,
    ENV_ALIGNMENT,
    ENV_BLOCK_SHAPE,
    ENV_BLOCKS_PER_ITEM,
    ENV_JOB_MEMORY_MIB,
)
from synapse_pipelines.blockwise.nomads import BYTES_PER_VOXEL, NomadsKernel, detection_result
from synapse_pipelines.blockwise.plan import (
    DEFAULT_JOB_MEMORY_BYTES,
    BlockPlan,
    PlanningError,
    manifest_json,
    parse_block_range,
    plan_request,
)
from synapse_pipelines.blockwise.sources import CallableSource
from synapse_pipelines.blockwise.store import S3Store
from synapse_pipelines.errors import SynapsePipelinesError
from synapse_pipelines.geometry import CUBOID_SHAPE, Box

STAGES = ("plan", "covariance", "threshold", "label", "stitch", "merge")
#: stages that run once per block (the Distributed Map items)
BLOCK_STAGES = ("covariance", "label")

Log = Callable[[str], None]


def blockwise_prefix(results_key: str) -> str:
    return f"{results_key}/{wf.WORKFLOW_PREFIX}/blockwise"


def manifest_key(results_key: str) -> str:
    """S3 key of the block manifest (what the Distributed Map's ItemReader reads)."""
    return f"{blockwise_prefix(results_key)}/{passes.MANIFEST_KEY}"


def _shape(environ: Mapping[str, str], name: str) -> tuple[int, int, int] | None:
    text = environ.get(name)
    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise SynapsePipelinesError(
            f"{text!r} is not three positive integers",
            field=name,
            hint="write z,y,x, e.g. 64,1024,1024",
        )
    return values  # type: ignore[return-value]


def kernel_for(pipeline: str, parameters: Mapping[str, int | float]) -> NomadsKernel:
    if pipeline != BLOCKWISE_PIPELINE:
        raise SynapsePipelinesError(
            f"pipeline {pipeline!r} has no blockwise implementation",
            field="pipeline",
            hint=f"use {BLOCKWISE_PIPELINE} for requests this large, or a smaller box",
        )
    return NomadsKernel(
        window=int(parameters.get("window", NomadsKernel().window)),
        min_size=int(parameters.get("min_size", NomadsKernel().min_size)),
    )


class BlockwiseJob:
    """One request's blockwise state in S3, and the BOSS reads of its blocks."""

    def __init__(
        self,
        bucket: str,
        results_key: str,
        *,
        s3: Any | None = None,
        environ: Mapping[str, str] | None = None,
        boss_factory: Callable[[Any, str], Any] | None = None,
        log: Log = print,
    ):
        from synapse_pipelines import steps

        self.env = os.environ if environ is None else environ
        self.s3 = steps._s3(s3)
        self.bucket = bucket
        self.results_key = results_key
        self.validated = steps.load_validated(self.s3, bucket, results_key)
        self.request = self.validated.synapse_request()
        self.kernel = kernel_for(self.request.pipeline, self.validated.pipeline_parameters)
        self.store = S3Store(bucket, blockwise_prefix(results_key), client=self.s3)
        self._boss_factory = boss_factory
        self._boss: Any = None
        self.log = log

    # -- plan ----------------------------------------------------------------------------
    def make_plan(self) -> BlockPlan:
        memory_mib = self.env.get(ENV_JOB_MEMORY_MIB)
        return plan_request(
            self.request.box,
            mode="blockwise",
            block_shape=_shape(self.env, ENV_BLOCK_SHAPE),
            alignment=_shape(self.env, ENV_ALIGNMENT) or CUBOID_SHAPE,
            halo=self.kernel.halo,
            memory_bytes=int(memory_mib) * 2**20 if memory_mib else DEFAULT_JOB_MEMORY_BYTES,
            bytes_per_voxel=BYTES_PER_VOXEL,
        )

    def plan(self) -> dict[str, Any]:
        self.kernel.check_volume(self.request.box)
        plan = self.make_plan()
        self.store.put(passes.PLAN_KEY, plan.to_json().encode())
        per_item = int(self.env.get(ENV_BLOCKS_PER_ITEM) or 1)
        self.store.put(passes.MANIFEST_KEY, manifest_json(plan, per_item))
        self.log(f"planned {plan.n_blocks} blocks of {plan.block_shape} over {plan.box}")
        return {"n_blocks": plan.n_blocks, "block_shape": list(plan.block_shape)}

    def load_plan(self) -> BlockPlan:
        if not self.store.exists(passes.PLAN_KEY):
            raise PlanningError(
                f"no block plan at {self.store.location(passes.PLAN_KEY)}",
                field="results_key",
                hint="run the 'plan' stage first",
            )
        return BlockPlan.from_json(self.store.get(passes.PLAN_KEY))

    # -- BOSS ----------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._boss is None:
            from synapse_pipelines.request import resolve_token

            token = resolve_token(self.request, environ=self.env)
            if self._boss_factory is not None:
                self._boss = self._boss_factory(self.request, token)
            else:
                from synapse_pipelines.boss import BossClient

                self._boss = BossClient.for_request(self.request, token)
        return self._boss

    def source_id(self) -> str:
        r = self.request
        return (
            f"boss://{r.boss_host}/{r.collection}/{r.experiment}/"
            f"{self.validated.presynaptic_channel},{self.validated.postsynaptic_channel}"
        )

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        pre, post = self.validated.presynaptic_channel, self.validated.postsynaptic_channel
        got = self._client().pull_channels(
            self.request.collection, self.request.experiment, [pre, post], box
        )
        return got[pre], got[post]

    def context(self, plan: BlockPlan | None = None) -> passes.PassContext:
        plan = plan or self.load_plan()
        return passes.PassContext(
            plan=plan,
            store=self.store,
            kernel=self.kernel,
            source=CallableSource(plan.box, self.read),
            source_id=self.source_id(),
        )

    # -- stages --------------------------------------------------------------------------
    def run_stage(self, stage: str, block: str | int | None = None) -> dict[str, Any]:
        """Run one stage; ``block`` is a manifest item's value (``17`` or ``"16-24"``)."""
        if stage not in STAGES:
            raise SynapsePipelinesError(
                f"unknown stage {stage!r}", field="--stage", hint=f"use one of {STAGES}"
            )
        if stage == "plan":
            return self.plan()
        ctx = self.context()
        if stage in BLOCK_STAGES:
            if block is None:
                raise SynapsePipelinesError(
                    f"stage {stage} needs --block", field="--block", hint="pass the item's block"
                )
            computed = []
            if stage == "label":
                stats, threshold = passes.load_threshold(ctx)
            for i in parse_block_range(block, ctx.plan.n_blocks):
                if stage == "covariance":
                    done = passes.run_covariance_block(ctx, i)
                else:
                    done = passes.run_label_block(ctx, i, stats, threshold)
                self.log(f"{stage} block {i}: {'computed' if done else 'already recorded'}")
                if done:
                    computed.append(i)
            return {"block": str(block), "computed": len(computed)}
        if stage == "threshold":
            stats, threshold = passes.reduce_threshold(ctx)
            self.log(f"threshold {threshold}")
            return {"threshold_numerator": threshold["numerator"]}
        if stage == "stitch":
            stats, threshold = passes.load_threshold(ctx)
            summary = passes.reduce_stitch(ctx, stats, threshold)
            self.log(f"stitched {summary['n_objects']} synapses")
            return {"synapses": summary["n_objects"]}
        return self.merge(ctx)

    def merge(self, ctx: passes.PassContext) -> dict[str, Any]:
        """Assemble ids and mask, then write and upload the single Detect job's results
        folder (same files, same table code), which Report and Publish consume unchanged."""
        from synapse_pipelines import features, outputs, steps

        stats, threshold = passes.load_threshold(ctx)
        summary = passes.load_stitch(ctx, stats, threshold)
        plan = ctx.plan
        t0 = time.perf_counter()
        labels = np.zeros(plan.box.shape, dtype=np.uint32)
        for i in range(plan.n_blocks):
            labels[plan.block(i).slices(plan.box.start)] = passes.block_ids(
                ctx, i, stats, threshold
            )
        result = detection_result(labels, summary["n_objects"], self.kernel, stats, threshold)
        timings = {"assemble": time.perf_counter() - t0}
        t0 = time.perf_counter()
        volumes = self._client().pull_channels(
            self.request.collection, self.request.experiment, self.validated.channels, plan.box
        )
        timings["pull"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = features.synapse_table(
            result.labels,
            volumes,
            voxel_size=self.validated.voxel_size,
            voxel_unit=self.validated.voxel_unit,
            origin=plan.box.start,
        )
        timings["features"] = time.perf_counter() - t0
        del volumes
        with tempfile.TemporaryDirectory(prefix="synapse-merge-") as tmp:
            folder = Path(tmp) / self.results_key
            outputs.write_results(
                folder,
                mask=result.mask,
                labels=result.labels,
                table=table,
                voxel_size=self.validated.voxel_size,
                voxel_unit=self.validated.voxel_unit,
                origin=plan.box.start,
                results_key=self.results_key,
                request=self.request,
                pipeline=self.request.pipeline,
                parameters=dict(self.validated.pipeline_parameters),
                extra={
                    "blockwise": {
                        "n_blocks": plan.n_blocks,
                        "block_shape": list(plan.block_shape),
                        "alignment": list(plan.alignment),
                    }
                },
                channels={
                    "presynaptic": self.validated.presynaptic_channel,
                    "postsynaptic": self.validated.postsynaptic_channel,
                    "features": list(self.validated.channels),
                },
                timings=timings,
                overwrite=True,
            )
            uploaded = steps.upload_folder(self.s3, folder, self.bucket, self.results_key)
        self.log(f"merged {plan.n_blocks} blocks: {len(table)} synapses, {len(uploaded)} files")
        return {"synapses": len(table), "files": sorted(uploaded)}
