"""Detect (Batch, one job): pull the channels from BOSS, run the pipeline, build the synapse
table, write the results folder and upload it to S3.

The blockwise Detect (a box too large for one job) is :mod:`.blockwise_job`'s instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from synapse_pipelines.core.geometry import voxel_size_nanometers
from synapse_pipelines.core.pipelines import get_pipeline
from synapse_pipelines.io import outputs
from synapse_pipelines.io.s3_objects import upload_folder
from synapse_pipelines.science import features
from synapse_pipelines.workflow.batch_run import (
    BossFactory,
    Log,
    open_run,
    print_line,
    scratch_folder,
)
from synapse_pipelines.workflow.resolution_check import check_detectable


def detect(
    bucket: str,
    results_key: str,
    *,
    workdir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    boss_factory: BossFactory | None = None,
    log: Log = print_line,
) -> dict[str, Any]:
    """Pull the channels from BOSS, run the pipeline, write and upload the results folder."""
    run = open_run(bucket, results_key, environ=environ, s3=s3, boss_factory=boss_factory)
    validated, request = run.validated, run.request
    timings: dict[str, float] = {}

    voxel_nm = voxel_size_nanometers(validated.voxel_size, validated.voxel_unit)
    check_detectable(
        request.pipeline, validated.pipeline_parameters, request.box, voxel_nm, request.resolution
    )
    t0 = time.perf_counter()
    level = f" at resolution {request.resolution}" if request.resolution else ""
    n = len(validated.channels)
    log(f"pulling {n} channels of {request.box}{level} from {request.boss_host}")
    volumes = run.boss.pull_channels(
        request.collection, request.experiment, validated.channels, request.box, request.resolution
    )
    timings["pull"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pipeline = get_pipeline(request.pipeline)
    log(f"running {request.pipeline}")
    result = pipeline.run(
        volumes,
        validated.presynaptic_channel,
        validated.postsynaptic_channel,
        voxel_size=voxel_nm,
        **validated.pipeline_parameters,
    )
    mask, labels = _mask_and_labels(result)
    timings["detect"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = features.synapse_table(
        labels,
        volumes,
        voxel_size=validated.voxel_size,
        voxel_unit=validated.voxel_unit,
        origin=request.box.start,
    )
    timings["features"] = time.perf_counter() - t0
    log(f"found {len(table)} synapses")
    explanation = getattr(result, "explanation", None)
    if explanation and not len(table):
        log(f"no synapses: {explanation}")
    for warning in (getattr(result, "parameters", None) or {}).get("warnings") or []:
        log(f"warning: {warning}")

    with scratch_folder(workdir) as tmp:
        folder = tmp / results_key
        outputs.write_results(
            folder,
            mask=np.asarray(mask),
            labels=labels,
            table=table,
            voxel_size=validated.voxel_size,
            voxel_unit=validated.voxel_unit,
            origin=request.box.start,
            results_key=results_key,
            request=request,
            pipeline=request.pipeline,
            parameters={
                **validated.pipeline_parameters,
                **(getattr(result, "parameters", None) or {}),
            },
            explanation=explanation,
            channels={
                "presynaptic": validated.presynaptic_channel,
                "postsynaptic": validated.postsynaptic_channel,
                "features": list(validated.channels),
            },
            timings=timings,
            raw=volumes,  # kept in the results (raw/<channel>.ome.zarr): the viewer needs it
            overwrite=True,
        )
        del volumes
        uploaded = upload_folder(run.s3, folder, bucket, results_key)
    log(f"uploaded {len(uploaded)} files to s3://{bucket}/{results_key}/")
    return {"synapses": len(table), "files": sorted(uploaded)}


def _mask_and_labels(result: Any) -> tuple[Any, Any]:
    """Accept a pipeline result object (``.mask``, ``.labels``) or a (mask, labels) pair."""
    if hasattr(result, "mask") and hasattr(result, "labels"):
        return result.mask, result.labels
    mask, labels = result
    return mask, labels
