"""The blockwise Detect on AWS: what each Batch job of the Distributed Map flow does.

For a request ValidateRequest marked ``detect_mode: blockwise``, the state machine runs the
stages of :data:`~synapse_pipelines.blockwise.stages.STAGES` in order, each as
``step blocks --stage <name> [--block i]``: the ``Detect`` stages (plan, the map and reduce
passes, merge), then the unchanged Report, then the ``PublishToBoss`` stages (prepare the
output channels once, push block by block, then start BOSS's downsampling of the channels
once every block is written). :meth:`BlockwiseJob.run_stage` runs one.

All per-block state lives under ``s3://<bucket>/<results_key>/_workflow/blockwise/`` with
completion records (:mod:`synapse_pipelines.blockwise.store`), so a retried or re-run job skips
finished blocks. Only S3 keys and small values travel in the state; the Map items are
``{"block": i, "z": [..], "y": [..], "x": [..]}``.

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
from synapse_pipelines.blockwise.kernel_protocol import Kernel
from synapse_pipelines.blockwise.nomads import BYTES_PER_VOXEL, NomadsKernel
from synapse_pipelines.blockwise.pairs import PairsKernel
from synapse_pipelines.blockwise.plan import (
    DEFAULT_JOB_MEMORY_BYTES,
    BlockPlan,
    PlanningError,
    manifest_json,
    parse_block_range,
    plan_request,
)
from synapse_pipelines.blockwise.sources import CallableSource
from synapse_pipelines.blockwise.stages import STAGE_NAMES, find_stage
from synapse_pipelines.blockwise.store import S3Store
from synapse_pipelines.core.boss_token import resolve_token
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import (
    CUBOID_SHAPE,
    Box,
    parse_zyx,
    voxel_size_nanometers,
)
from synapse_pipelines.core.pipelines import validate_parameters
from synapse_pipelines.core.sizing import (
    BLOCKWISE_PIPELINES,
    ENV_ALIGNMENT,
    ENV_BLOCK_SHAPE,
    ENV_BLOCKS_PER_ITEM,
    ENV_JOB_MEMORY_MIB,
    has_blockwise,
)
from synapse_pipelines.io import boss_publish, outputs
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.s3_objects import put_json, s3_client, upload_folder
from synapse_pipelines.io.viewable_volumes import ome_zarr_section
from synapse_pipelines.science.nomads_plugin import NomadsUnsupervised
from synapse_pipelines.science.paired_puncta import PairedPuncta
from synapse_pipelines.science.voxel_units import check_voxel_size, min_size_voxels
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.resolution_check import check_detectable
from synapse_pipelines.workflow.run_record import (
    downsample_wait_seconds,
    load_validated,
    publish_boss_key,
    record_boss_downsample,
)

Log = Callable[[str], None]
#: What a map stage runs for one block: True when computed, False when already recorded.
BlockFunction = Callable[[int], bool]


def blockwise_prefix(results_key: str) -> str:
    return f"{results_key}/{wf.WORKFLOW_PREFIX}/blockwise"


def manifest_key(results_key: str) -> str:
    """S3 key of the block manifest (what the Distributed Map's ItemReader reads)."""
    return f"{blockwise_prefix(results_key)}/{passes.MANIFEST_KEY}"


def _shape(environ: Mapping[str, str], name: str) -> tuple[int, int, int] | None:
    """A z,y,x shape from the environment variable ``name`` (None when unset)."""
    text = environ.get(name)
    return parse_zyx(text, field=name) if text else None


def nomads_kernel(
    parameters: Mapping[str, int | float],
    voxel_size_nm: tuple[float, float, float] | None,
    volume_shape: tuple[int, int, int],
) -> NomadsKernel:
    """The NOMADS kernel with the request's (checked) pipeline parameters, its physical
    size limit in voxels of this request's coordinate frame."""
    pipeline = NomadsUnsupervised()
    resolved = validate_parameters(pipeline, parameters)
    voxel = check_voxel_size(voxel_size_nm)
    return NomadsKernel(
        window=int(resolved["window"]),
        min_size=min_size_voxels(float(resolved["min_volume_um3"]), voxel),
        sections=volume_shape[0],
    )


def pairs_kernel(
    parameters: Mapping[str, int | float],
    voxel_size_nm: tuple[float, float, float] | None,
    volume_shape: tuple[int, int, int],
) -> PairsKernel:
    """The PAIRS kernel with the request's (checked) parameters and the geometry of the
    whole request box (no voxel size: the plug-in's assumed one)."""
    resolved = validate_parameters(PairedPuncta(), parameters)
    voxel = check_voxel_size(voxel_size_nm)
    return PairsKernel.make(volume_shape, voxel, **resolved)


#: ``factory(parameters, voxel size in nm or None, volume shape) -> Kernel``.
KernelFactory = Callable[
    [Mapping[str, int | float], tuple[float, float, float] | None, tuple[int, int, int]], Kernel
]
#: The blockwise kernel of each pipeline in ``core.sizing.BLOCKWISE_PIPELINES``, made from
#: the request's pipeline parameters and coordinate frame.
BLOCKWISE_KERNELS: dict[str, KernelFactory] = {
    "nomads-unsupervised": nomads_kernel,
    "paired-puncta": pairs_kernel,  # type: ignore[dict-item]
}


def kernel_for(
    pipeline: str,
    parameters: Mapping[str, int | float],
    voxel_size_nm: tuple[float, float, float] | None = None,
    volume_shape: tuple[int, int, int] = (16, 16, 16),
) -> Kernel:
    """The blockwise kernel of ``pipeline``; a clear error for one that has none."""
    if not has_blockwise(pipeline) or pipeline not in BLOCKWISE_KERNELS:
        raise SynapsePipelinesError(
            f"pipeline {pipeline!r} has no blockwise implementation",
            field="pipeline",
            hint=f"use {' or '.join(sorted(BLOCKWISE_PIPELINES))} for requests this large, "
            "or a smaller box",
        )
    return BLOCKWISE_KERNELS[pipeline](parameters, voxel_size_nm, volume_shape)


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
        self.env = os.environ if environ is None else environ
        self.s3 = s3_client(s3)
        self.bucket = bucket
        self.results_key = results_key
        self.validated = load_validated(self.s3, bucket, results_key)
        self.request = self.validated.synapse_request()
        voxel_nm = voxel_size_nanometers(self.validated.voxel_size, self.validated.voxel_unit)
        check_detectable(
            self.request.pipeline,
            self.validated.pipeline_parameters,
            self.request.box,
            voxel_nm,
            self.request.resolution,
        )
        self.kernel = kernel_for(
            self.request.pipeline,
            self.validated.pipeline_parameters,
            voxel_nm,
            self.request.box.shape,
        )
        self.store = S3Store(bucket, blockwise_prefix(results_key), client=self.s3)
        self._boss_factory = boss_factory
        self._boss: Any = None
        self._context: passes.PassContext | None = None
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
            bytes_per_voxel=getattr(self.kernel, "bytes_per_voxel", BYTES_PER_VOXEL),
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
            token = resolve_token(self.request, environ=self.env)
            if self._boss_factory is not None:
                self._boss = self._boss_factory(self.request, token)
            else:
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
            self.request.collection,
            self.request.experiment,
            [pre, post],
            box,
            self.request.resolution,
        )
        return got[pre], got[post]

    def context(self) -> passes.PassContext:
        """What the passes need, with the stored plan (read once per job)."""
        if self._context is None:
            plan = self.load_plan()
            self._context = passes.PassContext(
                plan=plan,
                store=self.store,
                kernel=self.kernel,
                source=CallableSource(plan.box, self.read),
                source_id=self.source_id(),
            )
        return self._context

    # -- result arrays and the synapse table ----------------------------------------------
    def results_store(self) -> S3Store:
        return S3Store(self.bucket, self.results_key, client=self.s3)

    def table_spec(self) -> TableSpec:
        request, validated = self.request, self.validated

        def read_channels(box: Box) -> dict[str, np.ndarray]:
            return self._client().pull_channels(
                request.collection,
                request.experiment,
                validated.channels,
                box,
                request.resolution,
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
        found = find_stage(stage)
        if found is None:
            raise SynapsePipelinesError(
                f"unknown stage {stage!r}", field="--stage", hint=f"use one of {STAGE_NAMES}"
            )
        if stage != "plan":
            self.context()  # every stage after plan reads the plan: a clear error without one
        if found.kind != "map":
            return ONE_JOB_STAGES[stage](self)
        if block is None:
            raise SynapsePipelinesError(
                f"stage {stage} needs --block", field="--block", hint="pass the item's block"
            )
        ctx = self.context()
        run_block = BLOCK_STAGES[stage](self, ctx)
        computed = []
        for i in parse_block_range(block, ctx.plan.n_blocks):
            done = run_block(i)
            self.log(f"{stage} block {i}: {'computed' if done else 'already recorded'}")
            if done:
                computed.append(i)
        return {"block": str(block), "computed": len(computed)}

    def reduce_threshold(self) -> dict[str, Any]:
        _stats, threshold = passes.reduce_threshold(self.context())
        self.log(f"threshold {threshold}")
        return {"threshold_numerator": threshold.get("numerator")}

    def reduce_stitch(self) -> dict[str, Any]:
        ctx = self.context()
        stats, threshold = passes.load_threshold(ctx)
        summary = passes.reduce_stitch(ctx, stats, threshold)
        self.log(f"stitched {summary['n_objects']} synapses")
        return {"synapses": summary["n_objects"]}

    def covariance_blocks(self, ctx: passes.PassContext) -> BlockFunction:
        return lambda i: passes.run_covariance_block(ctx, i)

    def label_blocks(self, ctx: passes.PassContext) -> BlockFunction:
        stats, threshold = passes.load_threshold(ctx)
        return lambda i: passes.run_label_block(ctx, i, stats, threshold)

    def finalize_blocks(self, ctx: passes.PassContext) -> BlockFunction:
        stats, threshold = passes.load_threshold(ctx)
        arrays = self.arrays(ctx)
        spec = self.table_spec()
        return lambda i: spec.finalize_block(ctx, i, stats, threshold, arrays)

    def publish_blocks(self, ctx: passes.PassContext) -> BlockFunction:
        arrays = self.arrays(ctx)
        return lambda i: self.publish_block(arrays, i)

    def merge(self) -> dict[str, Any]:
        """The synapse table from the blocks' partials, the arrays' metadata and the
        manifest: the results folder Report and Publish consume (the volumes as Zarr)."""
        ctx = self.context()
        stats, threshold = passes.load_threshold(ctx)
        summary = passes.load_stitch(ctx, stats, threshold)
        spec = self.table_spec()
        plan = ctx.plan
        t0 = time.perf_counter()
        table, written = spec.reduce(ctx, stats, threshold)
        timings = {"merge": time.perf_counter() - t0}
        arrays = spec.arrays(plan, summary["n_objects"])
        arrays.write_metadata(spec.attributes(plan, self.results_key), written["raw_dtypes"])
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
                parameters={
                    **self.validated.pipeline_parameters,
                    **self.kernel.result_parameters(threshold),
                },
                explanation=self.kernel.explain_empty(summary, threshold),
                extra={
                    "ome_zarr": ome_zarr_section(
                        list(written["raw_dtypes"]), arrays.ome.offset, arrays.ome.levels
                    ),
                    "blockwise": {
                        "n_blocks": plan.n_blocks,
                        "block_shape": list(plan.block_shape),
                        "alignment": list(plan.alignment),
                        "chunks_written": written["chunks"],
                        "chunk_bytes": written["bytes"],
                        "ome_zarr_chunks_written": written["ome_chunks"],
                        "ome_zarr_chunk_bytes": written["ome_bytes"],
                    },
                },
                channels={
                    "presynaptic": self.validated.presynaptic_channel,
                    "postsynaptic": self.validated.postsynaptic_channel,
                    "features": list(self.validated.channels),
                },
                timings=timings,
                overwrite=True,
            )
            uploaded = upload_folder(self.s3, folder, self.bucket, self.results_key)
        self.log(f"merged {plan.n_blocks} blocks: {len(table)} synapses, {len(uploaded)} files")
        return {"synapses": len(table), "files": sorted(uploaded)}

    # -- PublishToBoss, block by block -----------------------------------------------------
    def prepare_publication(self) -> dict[str, Any]:
        """Check and create the output channels once, before the blocks are pushed."""
        client = self._client()
        frame = client.coordinate_frame(
            self.request.collection, self.request.experiment, self.request.resolution
        )
        info = boss_publish.prepare_publication(client, self.request, frame).to_dict()
        put_json(self.s3, self.bucket, publish_boss_key(self.results_key), info)
        self.log(f"output channels {info['mask_channel']} and {info['labels_channel']} ready")
        return info

    def publish_block(self, arrays: ResultArrays, index: int) -> bool:
        """Push one block's mask and ids (read from the result arrays) to BOSS; pushes are
        idempotent (same values to the same voxels), so a retried job simply repeats them."""
        ids = arrays.read_block(outputs.SYNAPSE_IDS_ZARR, index)
        client = self._client()
        published = boss_publish.published_channels(client, self.request)
        boss_publish.push_predictions(client, published, arrays.plan.block(index), ids, ids)
        return True

    def finish_publication(self) -> dict[str, Any]:
        """After every block is pushed: start BOSS's downsampling of the output channels and
        record the report (PublishToBoss's record, ``manifest["boss_downsample"]``)."""
        return {"boss_downsample": self._downsample()["outcome"]}

    def _downsample(self) -> dict[str, Any]:
        client = self._client()
        published = boss_publish.published_channels(client, self.request)
        wait = downsample_wait_seconds(self.env)
        report = boss_publish.downsample_predictions(client, published, wait_seconds=wait)
        record_boss_downsample(self.s3, self.bucket, self.results_key, report, log=self.log)
        return report

    def publish_all(self) -> dict[str, Any]:
        """The whole PublishToBoss in one job, block after block (memory: one block), then
        the downsample request."""
        info = self.prepare_publication()
        ctx = self.context()
        arrays = self.arrays(ctx)
        for i in range(ctx.plan.n_blocks):
            self.publish_block(arrays, i)
        return {**info, "boss_downsample": self._downsample()}


#: The job's method of each stage that runs once (setup and reduce stages).
ONE_JOB_STAGES: dict[str, Callable[[BlockwiseJob], dict[str, Any]]] = {
    "plan": BlockwiseJob.plan,
    "threshold": BlockwiseJob.reduce_threshold,
    "stitch": BlockwiseJob.reduce_stitch,
    "merge": BlockwiseJob.merge,
    "publish-prepare": BlockwiseJob.prepare_publication,
    "publish-finish": BlockwiseJob.finish_publication,
}
#: The job's method giving each map stage's per-block function.
BLOCK_STAGES: dict[str, Callable[[BlockwiseJob, passes.PassContext], BlockFunction]] = {
    "covariance": BlockwiseJob.covariance_blocks,
    "label": BlockwiseJob.label_blocks,
    "finalize": BlockwiseJob.finalize_blocks,
    "publish": BlockwiseJob.publish_blocks,
}
