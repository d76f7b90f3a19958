"""The blockwise Detect on AWS: what each Batch job of the Distributed Map flow does.

The state machine runs, for a request ValidateRequest marked ``detect_mode: blockwise``::

    blocks plan                      plan.json + manifest.json (the ItemReader's JSON array)
    Map: blocks covariance --block i one job per manifest item (read from BOSS with halo)
    blocks threshold                 global statistics + threshold (reads small outputs only)
    Map: blocks label --block i
    blocks stitch                    union-find -> per-block lookup tables, object geometry
    Map: blocks finalize --block i   ids + mask chunks of the result arrays, table partials
    blocks merge                     synapses.csv, the arrays' metadata, manifest.json
    ... Report (unchanged) ...
    blocks publish-prepare           check and create the output channels in BOSS (once)
    Map: blocks publish --block i    push the block's mask and ids to BOSS

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

from synapse_pipelines.blockwise import passes
from synapse_pipelines.blockwise.finalize import (
    ResultArrays,
    TableSpec,
)
from synapse_pipelines.blockwise.nomads import BYTES_PER_VOXEL, NomadsKernel
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
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import CUBOID_SHAPE, Box
from synapse_pipelines.core.sizing import (
    BLOCKWISE_PIPELINE,
    ENV_ALIGNMENT,
    ENV_BLOCK_SHAPE,
    ENV_BLOCKS_PER_ITEM,
    ENV_JOB_MEMORY_MIB,
)
from synapse_pipelines.workflow import wiring as wf

STAGES = (
    "plan",
    "covariance",
    "threshold",
    "label",
    "stitch",
    "finalize",
    "merge",
    "publish-prepare",
    "publish",
)
#: stages that run once per block (the Distributed Map items)
BLOCK_STAGES = ("covariance", "label", "finalize", "publish")
#: the stages of PublishToBoss (their errors are recorded under that step, not Detect)
PUBLISH_STAGES = ("publish-prepare", "publish")

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
        from synapse_pipelines.workflow import steps

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
            from synapse_pipelines.core.request import resolve_token

            token = resolve_token(self.request, environ=self.env)
            if self._boss_factory is not None:
                self._boss = self._boss_factory(self.request, token)
            else:
                from synapse_pipelines.io.boss_client import BossClient

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

    # -- result arrays and the synapse table ----------------------------------------------
    def results_store(self) -> S3Store:
        return S3Store(self.bucket, self.results_key, client=self.s3)

    def table_spec(self) -> TableSpec:
        request, validated = self.request, self.validated

        def read_channels(box: Box) -> dict[str, np.ndarray]:
            return self._client().pull_channels(
                request.collection, request.experiment, validated.channels, box
            )

        store = self.results_store()
        return TableSpec(
            results=store,
            results_id=store.location(""),
            read_channels=read_channels,
            channel_names=list(validated.channels),
            voxel_size=validated.voxel_size,
            voxel_unit=validated.voxel_unit,
        )

    def arrays(self, ctx: passes.PassContext) -> ResultArrays:
        """The run's result arrays (their ids dtype follows the stitched synapse count)."""
        stats, threshold = passes.load_threshold(ctx)
        summary = passes.load_stitch(ctx, stats, threshold)
        return self.table_spec().arrays(ctx.plan, summary["n_objects"])

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
            run_block = self._block_runner(stage, ctx)
            computed = []
            for i in parse_block_range(block, ctx.plan.n_blocks):
                done = run_block(i)
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
        if stage == "publish-prepare":
            return self.prepare_publication()
        return self.merge(ctx)

    def _block_runner(self, stage: str, ctx: passes.PassContext) -> Callable[[int], bool]:
        if stage == "covariance":
            return lambda i: passes.run_covariance_block(ctx, i)
        stats, threshold = passes.load_threshold(ctx)
        if stage == "label":
            return lambda i: passes.run_label_block(ctx, i, stats, threshold)
        arrays = self.arrays(ctx)
        if stage == "publish":
            return lambda i: self.publish_block(arrays, i)
        spec = self.table_spec()
        return lambda i: spec.finalize_block(ctx, i, stats, threshold, arrays)

    def merge(self, ctx: passes.PassContext) -> dict[str, Any]:
        """The synapse table from the blocks' partials, the arrays' metadata and the
        manifest: the results folder Report and Publish consume (the volumes as Zarr)."""
        from synapse_pipelines.io import outputs
        from synapse_pipelines.workflow import steps

        stats, threshold = passes.load_threshold(ctx)
        summary = passes.load_stitch(ctx, stats, threshold)
        spec = self.table_spec()
        plan = ctx.plan
        t0 = time.perf_counter()
        table, written = spec.reduce(ctx, stats, threshold)
        timings = {"merge": time.perf_counter() - t0}
        arrays = spec.arrays(plan, summary["n_objects"])
        arrays.write_metadata(spec.attributes(plan, self.results_key))
        described = {
            name: {
                "format": "zarr v3",
                "dtype": str(dtype),
                "shape": list(plan.box.stop),
                "chunks": list(plan.block_shape),
                "coordinates": "absolute BOSS voxel coordinates (z, y, x)",
                "box": [list(plan.box.start), list(plan.box.stop)],
            }
            for name, dtype in (
                (outputs.SYNAPSE_IDS_ZARR, arrays.ids_dtype),
                (outputs.PREDICTIONS_ZARR, np.dtype(np.uint8)),
            )
        }
        with tempfile.TemporaryDirectory(prefix="synapse-merge-") as tmp:
            folder = Path(tmp) / self.results_key
            outputs.write_table_results(
                folder,
                table=table,
                shape=plan.box.shape,
                foreground_voxels=int(summary["n_voxels"]),
                arrays=described,
                voxel_size=spec.voxel_size,
                voxel_unit=spec.voxel_unit,
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
                        "chunks_written": written["chunks"],
                        "chunk_bytes": written["bytes"],
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

    # -- PublishToBoss, block by block -----------------------------------------------------
    def prepare_publication(self) -> dict[str, Any]:
        """Check and create the output channels once, before the blocks are pushed."""
        from synapse_pipelines.io import boss_publish as boss_module
        from synapse_pipelines.workflow import steps

        client = self._client()
        frame = client.coordinate_frame(self.request.collection, self.request.experiment)
        info = boss_module.prepare_publication(client, self.request, frame).to_dict()
        steps.put_json(self.s3, self.bucket, steps.publish_boss_key(self.results_key), info)
        self.log(f"output channels {info['mask_channel']} and {info['labels_channel']} ready")
        return info

    def publish_block(self, arrays: ResultArrays, index: int) -> bool:
        """Push one block's mask and ids (read from the result arrays) to BOSS; pushes are
        idempotent (same values to the same voxels), so a retried job simply repeats them."""
        from synapse_pipelines.io import boss_publish as boss_module, outputs

        ids = arrays.read_block(outputs.SYNAPSE_IDS_ZARR, index)
        client = self._client()
        published = boss_module.published_channels(client, self.request)
        boss_module.push_predictions(client, published, arrays.plan.block(index), ids, ids)
        return True

    def publish_all(self) -> dict[str, Any]:
        """The whole PublishToBoss in one job, block after block (memory: one block)."""
        info = self.prepare_publication()
        ctx = self.context()
        arrays = self.arrays(ctx)
        for i in range(ctx.plan.n_blocks):
            self.publish_block(arrays, i)
        return info
