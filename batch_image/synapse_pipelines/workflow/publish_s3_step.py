"""PublishToS3 (Lambda): make a finished run's results folder usable from S3.

It writes ``links.csv`` (Neuroglancer links to the BOSS channels), completes ``manifest.json``
with every file's S3 location and checksum and the run's costs (``manifest["cost"]``,
:func:`recorded_costs`), presigns the artefacts (the bucket is never public) and builds the
success notification and the completion event's detail.
:func:`presigned_urls` also serves ``synapse-pipelines results``.

Light (no science stack): it runs in the Lambda layer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from synapse_pipelines.core.errors import aws_error_code
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pricing import PricingError, price_table, region_from_environment
from synapse_pipelines.io.boss_links import links_csv_text, result_links
from synapse_pipelines.io.boss_resources import CoordinateFrame
from synapse_pipelines.io.s3_objects import object_exists, s3_client, update_json
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.job_costs import find_request_jobs, milliseconds, run_costs
from synapse_pipelines.workflow.notification_text import success_notification
from synapse_pipelines.workflow.run_record import ValidatedRequest, load_validated


def publish_s3(
    bucket: str,
    results_key: str,
    *,
    execution_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    batch: Any | None = None,
) -> dict[str, Any]:
    """manifest.json (with S3 locations, checksums and costs), links.csv, presigned URLs,
    messages. ``batch``: the Batch client the costs are read with (default: boto3's)."""
    env = os.environ if environ is None else environ
    client = s3_client(s3)
    validated = load_validated(client, bucket, results_key)
    request = validated.synapse_request()
    expires = int(env.get(wf.ENV_PRESIGN_SECONDS, wf.DEFAULT_PRESIGN_SECONDS))
    viewer = env.get(wf.ENV_NEUROGLANCER_URL, wf.DEFAULT_NEUROGLANCER_URL)

    links = result_links(
        request,
        raw_channels=[validated.presynaptic_channel, validated.postsynaptic_channel],
        frame=_coordinate_frame(validated),
        neuroglancer_url=viewer,
    )
    links_csv = links_csv_text(links)
    client.put_object(
        Bucket=bucket,
        Key=wf.artefact_key(results_key, wf.LINKS),
        Body=links_csv.encode(),
        ContentType="text/csv; charset=utf-8",
        Metadata={"sha256": hashlib.sha256(links_csv.encode()).hexdigest()},
    )

    manifest_key = wf.artefact_key(results_key, wf.MANIFEST)

    # the costs read Batch: once, before the conditional write (which may run complete twice)
    cost = recorded_costs(bucket, validated, environ=env, batch=batch)

    def complete(manifest: dict[str, Any]) -> dict[str, Any]:
        files = dict(manifest.get("files", {}))
        files[wf.LINKS] = {
            "sha256": hashlib.sha256(links_csv.encode()).hexdigest(),
            "bytes": len(links_csv.encode()),
        }
        for name, entry in files.items():
            entry["s3_uri"] = wf.s3_uri(bucket, wf.artefact_key(results_key, name))
        manifest["files"] = files
        for name, entry in dict(manifest.get("arrays") or {}).items():
            # a blockwise run's chunked volumes: a prefix (open with zarr), not one object
            entry["s3_uri"] = wf.s3_uri(bucket, wf.artefact_key(results_key, name)) + "/"
        manifest["s3"] = {"bucket": bucket, "prefix": wf.results_prefix(results_key)}
        manifest["links"] = links
        manifest["published"] = datetime.now(UTC).isoformat(timespec="seconds")
        if execution_id:
            manifest["execution_id"] = execution_id
        manifest["cost"] = cost
        return manifest

    # PublishToBoss adds its downsample report to the same object at the same time
    manifest = update_json(client, bucket, manifest_key, complete)

    urls = presigned_urls(client, bucket, results_key, expires=expires)
    counts = manifest.get("counts", {})
    detail = {
        "results_key": results_key,
        "bucket": bucket,
        "prefix": wf.results_prefix(results_key),
        "manifest_key": manifest_key,
        "synapses": int(counts.get("synapses", 0)),
        "execution_id": execution_id,
        "neuroglancer_url": links.get("all"),
    }
    if manifest.get("explanation"):  # zero synapses on a non-empty box: say why
        detail["explanation"] = manifest["explanation"]
    if manifest.get("warnings"):  # e.g. sections that do not line up: the result is in doubt
        detail["warnings"] = list(manifest["warnings"])
    return {
        "manifest_key": manifest_key,
        "notification": success_notification(request, detail, urls, expires),
        "event_detail": detail,
    }


def recorded_costs(
    bucket: str,
    validated: ValidatedRequest,
    *,
    environ: Mapping[str, str],
    batch: Any | None = None,
) -> dict[str, Any]:
    """``manifest["cost"]``: the request's Batch jobs of this run, as Batch reports them now,
    priced in the Lambda's region (:func:`~synapse_pipelines.workflow.job_costs.run_costs`).
    Costs never fail the publish: a region without prices or jobs Batch will not list are
    a note in the record instead."""
    region, source = region_from_environment(environ)
    try:
        prices = price_table(region, field=source)
    except PricingError as exc:
        return {"notes": [f"no costs recorded: {exc}"]}
    stem = run_names.job_name_stem(validated.results_key)
    try:
        jobs = find_request_jobs(
            batch if batch is not None else boto3.client("batch"),
            stem,
            since_ms=milliseconds(validated.validated_at),
            results_bucket=bucket,
        )
    except (BotoCoreError, ClientError) as exc:
        code = aws_error_code(exc) or type(exc).__name__
        return {
            "price_table": prices.record(),
            "notes": [
                f"no costs recorded: the request's Batch jobs could not be read ({code}); "
                "PublishToS3's role needs batch:DescribeJobQueues, ListJobs and DescribeJobs"
            ],
        }
    return run_costs(
        jobs,
        stem,
        prices,
        detect_mode=validated.detect_mode,
        planned=validated.cost_estimate,
    )


def _coordinate_frame(validated: ValidatedRequest) -> CoordinateFrame:
    """The experiment's coordinate frame as ValidateRequest read it from BOSS."""
    start, stop = validated.frame_extent
    return CoordinateFrame(
        extent=Box(start, stop),
        voxel_size=validated.voxel_size,
        voxel_unit=validated.voxel_unit,
        name=validated.frame_name,
    )


def presigned_urls(
    s3: Any, bucket: str, results_key: str, *, expires: int = wf.DEFAULT_PRESIGN_SECONDS
) -> dict[str, str]:
    """Presigned GET URLs of every artefact present (the bucket is never public)."""
    urls = {}
    for name in wf.ARTEFACTS:
        key = wf.artefact_key(results_key, name)
        if object_exists(s3, bucket, key):
            urls[name] = s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
            )
    return urls
