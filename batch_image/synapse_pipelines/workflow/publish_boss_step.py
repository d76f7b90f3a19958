"""PublishToBoss (Batch): push a run's prediction mask and synapse ids to BOSS.

The request's output collection/experiment gets two channels (mask and ids, named from the
results key); what was written is recorded at
:func:`~synapse_pipelines.workflow.run_record.publish_boss_key`. Once both are written,
BOSS's downsample service is started on them
(:func:`~synapse_pipelines.io.boss_publish.downsample_predictions`), so the outputs are
viewable at every zoom; its report (started / already downsampled / not supported / failed
with the reason) goes to the step's output, that record and ``manifest["boss_downsample"]``.
A blockwise run's volumes are chunked Zarr: they are pushed block by block
(:meth:`.blockwise_job.BlockwiseJob.publish_all`; the state machine runs the same blocks as a
Distributed Map, this is the one-job path, e.g. a re-publish).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synapse_pipelines.io import boss_publish, ome_tiff, outputs
from synapse_pipelines.io.s3_objects import download_files, put_json
from synapse_pipelines.workflow.batch_run import (
    BossFactory,
    Log,
    open_run,
    print_line,
    scratch_folder,
)
from synapse_pipelines.workflow.blockwise_job import BlockwiseJob
from synapse_pipelines.workflow.run_record import (
    downsample_wait_seconds,
    publish_boss_key,
    record_boss_downsample,
)


def publish_boss(
    bucket: str,
    results_key: str,
    *,
    workdir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    boss_factory: BossFactory | None = None,
    log: Log = print_line,
) -> dict[str, Any]:
    """Push the prediction mask and the synapse ids to the request's output experiment in BOSS."""
    run = open_run(bucket, results_key, environ=environ, s3=s3, boss_factory=boss_factory)
    request, boss = run.request, run.boss
    if run.validated.detect_mode == "blockwise":
        job = BlockwiseJob(
            bucket, results_key, s3=run.s3, environ=environ, boss_factory=lambda *_: boss, log=log
        )
        return job.publish_all()
    with scratch_folder(workdir) as tmp:
        folder = tmp / results_key
        download_files(
            run.s3, bucket, results_key, [outputs.PREDICTIONS, outputs.SYNAPSE_IDS], folder
        )
        mask = ome_tiff.read_volume(folder / outputs.PREDICTIONS).data
        labels = ome_tiff.read_volume(folder / outputs.SYNAPSE_IDS).data
    log(f"publishing predictions to {request.output_collection}/{request.output_experiment}")
    frame = boss.coordinate_frame(request.collection, request.experiment, request.resolution)
    published = boss_publish.publish_predictions(boss, request, mask, labels, frame)
    info = published.to_dict()
    put_json(run.s3, bucket, publish_boss_key(results_key), info)
    log(f"published channels {info.get('mask_channel')} and {info.get('labels_channel')}")
    env = os.environ if environ is None else environ
    wait = downsample_wait_seconds(env)
    info["boss_downsample"] = boss_publish.downsample_predictions(
        boss, published, wait_seconds=wait
    )
    record_boss_downsample(run.s3, bucket, results_key, info["boss_downsample"], log=log)
    return info
