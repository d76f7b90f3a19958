"""Report (Batch): the PyMEDA-style report from a run's synapse table.

It downloads ``synapses.csv`` (and its metadata) and the manifest, builds ``report.html`` and
``clustering.json``, records the report in the manifest and uploads the three. The
synaptograms and the overlay read only the chunks of the OME-Zarr volumes they crop,
straight from S3. It needs no BOSS token (the job definition has no secret).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synapse_pipelines.io import outputs
from synapse_pipelines.io.ome_zarr import Getter
from synapse_pipelines.io.s3_objects import (
    download_files,
    object_exists,
    s3_client,
    upload_folder,
)
from synapse_pipelines.report import ResultVolumes, build_report
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.batch_run import Log, print_line, scratch_folder
from synapse_pipelines.workflow.run_record import load_validated


def report(
    bucket: str,
    results_key: str,
    *,
    workdir: Path | None = None,
    s3: Any | None = None,
    log: Log = print_line,
) -> dict[str, Any]:
    """Build report.html and clustering.json from synapses.csv; upload them and the manifest."""
    client = s3_client(s3)
    validated = load_validated(client, bucket, results_key)
    request = validated.synapse_request()
    with scratch_folder(workdir) as tmp:
        folder = tmp / results_key
        names = [outputs.SYNAPSES_CSV, outputs.MANIFEST]
        if object_exists(client, bucket, wf.artefact_key(results_key, outputs.SYNAPSES_META)):
            names.append(outputs.SYNAPSES_META)
        download_files(client, bucket, results_key, names, folder)
        log(f"building the report for {results_key}")
        recorded = outputs.read_manifest(folder)
        summary = build_report(
            folder / outputs.SYNAPSES_CSV,
            title=f"Synapses in {request.collection}/{request.experiment} {request.box}",
            out_html=folder / outputs.REPORT,
            out_clustering_json=folder / outputs.CLUSTERING,
            voxel_size=validated.voxel_size,
            voxel_unit=validated.voxel_unit,
            box_shape=request.box.shape,
            request_info=request.public_dict(),
            results_key=results_key,
            explanation=recorded.get("explanation"),
            warnings=recorded.get("warnings") or [],
            volumes=ResultVolumes.from_manifest(
                recorded, lambda root: s3_getter(client, bucket, f"{results_key}/{root}")
            ),
        )
        manifest = outputs.read_manifest(folder)
        timings = {**manifest.get("timings_seconds", {}), "report": round(summary.seconds, 4)}
        outputs.update_manifest(
            folder,
            timings_seconds=timings,
            report={"clusters": summary.n_clusters, "plots": list(summary.plots)},
        )
        upload = [outputs.REPORT, outputs.CLUSTERING, outputs.MANIFEST]
        uploaded = upload_folder(client, folder, bucket, results_key, names=upload)
    log(f"uploaded {', '.join(sorted(uploaded))}")
    return {"files": sorted(uploaded)}


def s3_getter(client: Any, bucket: str, prefix: str) -> Getter:
    """The objects under ``s3://bucket/prefix/`` as an OME-Zarr getter (None when missing)."""

    def get(key: str) -> bytes | None:
        try:
            return client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    return get
