"""The workflow's steps: thin glue between the state machine and the science/BOSS modules.

Each step is a function of small typed inputs (the request dict, the bucket, the results key)
and does its I/O at the edges: S3 through boto3, BOSS through :mod:`synapse_pipelines.io.boss`.
The same functions run in the Lambda handlers (``functions/*/app.py``), in the Batch container
(``synapse-pipelines step ...``, :mod:`synapse_pipelines.cli.step_commands`) and in the local
runtime.

Steps after ValidateRequest never receive the request through the state: they read the
validated request that ValidateRequest stored at
:func:`~synapse_pipelines.workflow.wiring.validated_request_key`. The BOSS token is resolved with
:func:`~synapse_pipelines.core.request.resolve_token` (``BOSS_TOKEN`` from the job definition's
secret in Batch, the secret named by ``BOSS_TOKEN_SECRET`` in Lambda) and never stored,
logged or put into an error message.

Heavy modules (numpy, scipy, the report) are imported inside the steps that need them, so the
Lambda package only carries the request model, intern and boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from synapse_pipelines.core.errors import RequestValidationError, SynapsePipelinesError
from synapse_pipelines.core.request import (
    SynapseRequest,
    parse_request,
    resolve_token,
    select_channels,
)
from synapse_pipelines.workflow import wiring as wf

#: Largest cause/message kept in a notification (SNS allows 256 KiB; people read less).
MAX_CAUSE_CHARS = 4000
#: SNS subjects: ASCII, one line, at most 100 characters.
MAX_SUBJECT_CHARS = 100

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


# -- typed events -------------------------------------------------------------------------------


class ValidateEvent(BaseModel):
    """ValidateRequest's payload: the execution input (a request) and the execution name."""

    model_config = ConfigDict(extra="ignore")
    request: dict[str, Any]
    execution_name: str | None = None


class StepEvent(BaseModel):
    """Payload of the steps after validation: only where the results are."""

    model_config = ConfigDict(extra="ignore")
    bucket: str
    results_key: str
    execution_id: str | None = None


class FailureEvent(BaseModel):
    """DescribeFailure's payload: the whole state at the failure and the execution id."""

    model_config = ConfigDict(extra="ignore")
    state: dict[str, Any]
    execution_id: str | None = None


def task_error(exc: SynapsePipelinesError) -> Exception:
    """The exception a Lambda handler raises for a user error.

    The Lambda runtime reports ``type(exc).__name__`` as the error name that Step Functions
    matches and shows; the project's subclasses do not all carry their ``error_type`` as class
    name, so re-raise under a class named exactly ``error_type``, with the clear message.
    """
    cls = type(exc.error_type, (SynapsePipelinesError,), {"error_type": exc.error_type})
    err = cls.__new__(cls)
    Exception.__init__(err, str(exc))
    err.message, err.field, err.hint = str(exc), None, None
    return err


# -- S3 helpers ---------------------------------------------------------------------------------


def _s3(client: Any | None) -> Any:
    if client is not None:
        return client
    import boto3
    from botocore.config import Config

    # SigV4 everywhere: presigned URLs then last up to 7 days (SigV2 ones are not accepted
    # by newer regions), and uploads carry SHA-256 checksums
    return boto3.client("s3", config=Config(signature_version="s3v4"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def put_json(s3: Any, bucket: str, key: str, data: Any) -> None:
    body = json.dumps(data, indent=2, sort_keys=False, default=str).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".tif": "image/tiff",
}


def upload_folder(
    s3: Any, folder: Path, bucket: str, results_key: str, names: list[str] | None = None
) -> dict[str, str]:
    """Upload files of ``folder`` under ``<results_key>/``; return name -> sha256.

    The sha256 travels as object metadata, so the manifest can be checked against S3 without
    downloading (and S3 verifies its own SHA-256 checksum of the upload).
    """
    uploaded = {}
    paths = [folder / n for n in names] if names else sorted(p for p in folder.rglob("*"))
    for path in paths:
        if not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        digest = _sha256(path)
        extra = {
            "Metadata": {"sha256": digest},
            "ContentType": _CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
            "ChecksumAlgorithm": "SHA256",
        }
        s3.upload_file(str(path), bucket, wf.artefact_key(results_key, name), ExtraArgs=extra)
        uploaded[name] = digest
    return uploaded


def download(s3: Any, bucket: str, results_key: str, names: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        s3.download_file(bucket, wf.artefact_key(results_key, name), str(folder / name))


# -- the validated request ----------------------------------------------------------------------


class Validated(BaseModel):
    """What ValidateRequest stored at ``<results_key>/_workflow/request.json``."""

    model_config = ConfigDict(extra="ignore")
    request: dict[str, Any]
    results_key: str
    presynaptic_channel: str
    postsynaptic_channel: str
    channels: list[str]  # every image channel of the experiment (the feature table uses them)
    voxel_size: tuple[float, float, float]  # z, y, x
    voxel_unit: str
    frame_name: str
    frame_extent: tuple[tuple[int, int, int], tuple[int, int, int]]  # start, stop (z, y, x)
    pipeline_parameters: dict[str, int | float]  # checked, defaults filled in
    detect_mode: str
    execution_name: str | None = None
    validated_at: str

    def synapse_request(self) -> SynapseRequest:
        return parse_request(self.request, max_voxels=None)

    def coordinate_frame(self) -> Any:
        from synapse_pipelines.core.geometry import Box
        from synapse_pipelines.io.boss_resources import CoordinateFrame

        start, stop = self.frame_extent
        return CoordinateFrame(
            extent=Box(start, stop),
            voxel_size=self.voxel_size,
            voxel_unit=self.voxel_unit,
            name=self.frame_name,
        )


def load_validated(s3: Any, bucket: str, results_key: str) -> Validated:
    key = wf.validated_request_key(results_key)
    try:
        data = get_json(s3, bucket, key)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise SynapsePipelinesError(
            f"no validated request at s3://{bucket}/{key} ({code})",
            field="results_key",
            hint="run ValidateRequest first (start the state machine with the request)",
        ) from None
    return Validated.model_validate(data)


# -- ValidateRequest ----------------------------------------------------------------------------


def _secret_matches(requested: str, deployed: str) -> bool:
    """True when a request's token_secret names the deployment's secret (name or ARN)."""
    if requested == deployed:
        return True
    if ":secret:" in deployed:
        full_name = deployed.split(":secret:", 1)[1]
        # Secrets Manager appends "-" and 6 random characters to the name in the ARN
        name = full_name[:-7] if len(full_name) > 7 and full_name[-7] == "-" else full_name
        return requested in (full_name, name)
    return False


def _check_token_fields(data: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    problems = []
    if data.get("token") not in (None, ""):
        problems.append(
            (
                "token",
                "a literal token must never be sent to AWS (it would be kept in the execution "
                "history); remove it and store the token in the deployment's Secrets Manager "
                "secret (stack output BossTokenSecretArn)",
            )
        )
    deployed = environ.get(wf.ENV_BOSS_TOKEN_SECRET)
    requested = data.get("token_secret")
    if requested and deployed and not _secret_matches(str(requested), deployed):
        problems.append(
            (
                "token_secret",
                f"this deployment's Batch jobs read the token only from secret {deployed}; "
                "put your token there and omit token_secret",
            )
        )
    if problems:
        raise RequestValidationError(problems)


def validate(
    event: Mapping[str, Any],
    *,
    bucket: str,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    secrets_client: Any | None = None,
    sns: Any | None = None,
    boss_factory: Callable[[SynapseRequest, str], Any] | None = None,
) -> dict[str, Any]:
    """Check a request against BOSS and store it; return the small ``$.job`` state.

    Raises :class:`SynapsePipelinesError` with the same messages as the CLI on a malformed
    request, a missing collection/experiment/channel, a box outside the coordinate frame or
    too large for any Detect job. Nothing is written and no job starts in that case.
    """
    env = os.environ if environ is None else environ
    parsed = ValidateEvent.model_validate(event if "request" in event else {"request": dict(event)})
    _check_token_fields(parsed.request, env)
    request = parse_request(parsed.request, environ=env)
    token = resolve_token(request, environ=env, secrets_client=secrets_client)
    boss = (boss_factory or _boss_client)(request, token)

    from synapse_pipelines.io import boss_client as boss_module

    parameters = checked_parameters(request)
    channels = boss_module.image_channels(boss, request.collection, request.experiment)
    selection = select_channels(channels, request)
    frame = boss.validate_box(request.collection, request.experiment, request.box)

    bytes_per_voxel = boss_module.bytes_per_voxel(
        boss, request.collection, request.experiment, channels
    )
    mode = choose_detect_mode(request, bytes_per_voxel, env)
    key = request.results_key
    record = Validated(
        request=request.public_dict(),
        results_key=key,
        presynaptic_channel=selection.presynaptic,
        postsynaptic_channel=selection.postsynaptic,
        channels=list(channels),
        voxel_size=tuple(float(v) for v in frame.voxel_size),  # type: ignore[arg-type]
        voxel_unit=str(frame.voxel_unit),
        frame_name=str(frame.name),
        frame_extent=(frame.extent.start, frame.extent.stop),
        pipeline_parameters=parameters,
        detect_mode=mode,
        execution_name=parsed.execution_name,
        validated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    client = _s3(s3)
    put_json(client, bucket, wf.validated_request_key(key), record.model_dump(mode="json"))
    topic = env.get(wf.ENV_TOPIC_ARN)
    if request.notification_email and topic:
        ensure_email_subscription(sns, topic, request.notification_email)
    return wf.JobState(
        bucket=bucket,
        results_key=key,
        request_key=wf.validated_request_key(key),
        job_name=wf.job_name_stem(key),
        detect_mode=mode,
        voxel_count=request.voxel_count,
        presynaptic_channel=selection.presynaptic,
        postsynaptic_channel=selection.postsynaptic,
        notify=request.notification_email or wf.NO_EMAIL,
    ).to_state()


def checked_parameters(request: SynapseRequest) -> dict[str, int | float]:
    """The request's pipeline parameters checked by the pipeline, defaults filled in.

    Loading a pipeline imports its science stack; where that is not installed (a Lambda
    package built without it) the check is left to Detect, which runs it again anyway.
    """
    from synapse_pipelines.core.pipelines import get_pipeline, validate_parameters

    try:
        pipeline = get_pipeline(request.pipeline)
    except ImportError:
        return dict(request.pipeline_parameters)
    return validate_parameters(pipeline, request.pipeline_parameters)


def choose_detect_mode(
    request: SynapseRequest, bytes_per_voxel: int, environ: Mapping[str, str]
) -> str:
    """``standard`` or ``large`` from the estimated Detect memory and the deployed job sizes;
    ``blockwise`` (Distributed Map over blocks) when no single job can take the box (by memory;
    where no job sizes are known, above ``SYNAPSE_PIPELINES_MAX_VOXELS``), or when the
    deployment asks for it at this size (``SYNAPSE_BLOCKWISE_MIN_VOXELS``)."""
    from synapse_pipelines.core.request import has_blockwise, single_job_voxel_limit
    from synapse_pipelines.core.sizing import wants_blockwise

    blockwise_ok = has_blockwise(request.pipeline)
    if blockwise_ok and wants_blockwise(request.voxel_count, environ):
        return "blockwise"
    need = wf.detect_memory_mib(request.voxel_count, bytes_per_voxel)
    standard = int(environ.get(wf.ENV_DETECT_MEMORY_MIB, "0") or 0)
    large = int(environ.get(wf.ENV_LARGE_DETECT_MEMORY_MIB, "0") or 0)
    if not standard:
        # job sizes unknown (local runs): one job up to the voxel limit, then blockwise
        single_limit = single_job_voxel_limit(environ)
        over = single_limit is not None and request.voxel_count > single_limit
        return "blockwise" if blockwise_ok and over else "standard"
    if need <= standard:
        return "standard"
    if large and need <= large:
        return "large"
    if blockwise_ok:
        return "blockwise"
    raise RequestValidationError(
        [
            (
                "z_range/y_range/x_range",
                f"the box {request.box} ({request.voxel_count:,} voxels) needs about "
                f"{need / 1024:.1f} GiB in one Detect job, more than the largest job of this "
                f"deployment ({max(standard, large) / 1024:.1f} GiB); request a smaller box or "
                "raise largeJobMemoryMiB in the CDK context",
            )
        ]
    )


def ensure_email_subscription(sns: Any | None, topic_arn: str, email: str) -> None:
    """Subscribe ``email`` to the topic, filtered to messages about its own requests.

    SNS sends a confirmation mail the first time; later requests reuse the subscription.
    """
    if sns is None:
        import boto3

        sns = boto3.client("sns")
    paginator = sns.get_paginator("list_subscriptions_by_topic")
    for page in paginator.paginate(TopicArn=topic_arn):
        for sub in page.get("Subscriptions", []):
            if sub.get("Protocol") == "email" and sub.get("Endpoint") == email:
                return
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="email",
        Endpoint=email,
        Attributes={"FilterPolicy": json.dumps({wf.EMAIL_ATTRIBUTE: [email]})},
    )


def _boss_client(request: SynapseRequest, token: str) -> Any:
    from synapse_pipelines.io.boss_client import BossClient

    return BossClient(request.boss_host, request.boss_protocol, token)


def _open_run(
    bucket: str,
    results_key: str,
    environ: Mapping[str, str] | None,
    s3: Any | None,
    boss_factory: Callable[[SynapseRequest, str], Any] | None,
) -> tuple[Any, Validated, SynapseRequest, Any]:
    """S3 client, the validated run, its request and a BOSS client with the run's token."""
    client = _s3(s3)
    validated = load_validated(client, bucket, results_key)
    request = validated.synapse_request()
    token = resolve_token(request, environ=os.environ if environ is None else environ)
    return client, validated, request, (boss_factory or _boss_client)(request, token)


# -- Detect (Batch) -----------------------------------------------------------------------------


def detect(
    bucket: str,
    results_key: str,
    *,
    workdir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    boss_factory: Callable[[SynapseRequest, str], Any] | None = None,
    log: Log = _print,
) -> dict[str, Any]:
    """Pull the channels from BOSS, run the pipeline, write and upload the results folder."""
    import numpy as np

    from synapse_pipelines.core.pipelines import get_pipeline
    from synapse_pipelines.io import outputs
    from synapse_pipelines.science import features

    client, validated, request, boss = _open_run(bucket, results_key, environ, s3, boss_factory)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    log(f"pulling {len(validated.channels)} channels of {request.box} from {request.boss_host}")
    volumes = boss.pull_channels(
        request.collection, request.experiment, validated.channels, request.box
    )
    timings["pull"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pipeline = get_pipeline(request.pipeline)
    log(f"running {request.pipeline}")
    result = pipeline.run(
        volumes,
        validated.presynaptic_channel,
        validated.postsynaptic_channel,
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
    del volumes

    with _workdir(workdir) as tmp:
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
            parameters=dict(validated.pipeline_parameters),
            channels={
                "presynaptic": validated.presynaptic_channel,
                "postsynaptic": validated.postsynaptic_channel,
                "features": list(validated.channels),
            },
            timings=timings,
            overwrite=True,
        )
        uploaded = upload_folder(client, folder, bucket, results_key)
    log(f"uploaded {len(uploaded)} files to s3://{bucket}/{results_key}/")
    return {"synapses": len(table), "files": sorted(uploaded)}


def _mask_and_labels(result: Any) -> tuple[Any, Any]:
    """Accept a pipeline result object (``.mask``, ``.labels``) or a (mask, labels) pair."""
    if hasattr(result, "mask") and hasattr(result, "labels"):
        return result.mask, result.labels
    mask, labels = result
    return mask, labels


class _workdir:
    """A given folder, or a temporary one removed afterwards."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            return self.folder
        self._tmp = tempfile.TemporaryDirectory(prefix="synapse-step-")
        return Path(self._tmp.name)

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


# -- Report (Batch) -----------------------------------------------------------------------------


def report(
    bucket: str,
    results_key: str,
    *,
    workdir: Path | None = None,
    s3: Any | None = None,
    log: Log = _print,
) -> dict[str, Any]:
    """Build report.html and clustering.json from synapses.csv; upload them and the manifest."""
    from synapse_pipelines.io import outputs
    from synapse_pipelines.report import build_report

    client = _s3(s3)
    validated = load_validated(client, bucket, results_key)
    request = validated.synapse_request()
    with _workdir(workdir) as tmp:
        folder = tmp / results_key
        names = [outputs.SYNAPSES_CSV, outputs.MANIFEST]
        if object_exists(client, bucket, wf.artefact_key(results_key, outputs.SYNAPSES_META)):
            names.append(outputs.SYNAPSES_META)
        download(client, bucket, results_key, names, folder)
        log(f"building the report for {results_key}")
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


# -- PublishToBoss (Batch) ----------------------------------------------------------------------


def publish_boss(
    bucket: str,
    results_key: str,
    *,
    workdir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    boss_factory: Callable[[SynapseRequest, str], Any] | None = None,
    log: Log = _print,
) -> dict[str, Any]:
    """Push the prediction mask and the synapse ids to the request's output experiment in BOSS."""
    from synapse_pipelines.io import boss_publish as boss_module, outputs

    client, validated, request, boss = _open_run(bucket, results_key, environ, s3, boss_factory)
    if validated.detect_mode == "blockwise":
        # the volumes are chunked Zarr: push them block by block (the state machine runs the
        # same blocks as a Distributed Map; this is the one-job path, e.g. a re-publish)
        from synapse_pipelines.workflow.blockwise_job import BlockwiseJob

        job = BlockwiseJob(
            bucket, results_key, s3=client, environ=environ, boss_factory=lambda *_: boss, log=log
        )
        return job.publish_all()
    with _workdir(workdir) as tmp:
        folder = tmp / results_key
        download(client, bucket, results_key, [outputs.PREDICTIONS, outputs.SYNAPSE_IDS], folder)
        mask = outputs.read_volume(folder / outputs.PREDICTIONS).data
        labels = outputs.read_volume(folder / outputs.SYNAPSE_IDS).data
    log(f"publishing predictions to {request.output_collection}/{request.output_experiment}")
    frame = boss.coordinate_frame(request.collection, request.experiment)
    published = boss_module.publish_predictions(boss, request, mask, labels, frame)
    info = published.to_dict()
    put_json(client, bucket, publish_boss_key(results_key), info)
    log(f"published channels {info.get('mask_channel')} and {info.get('labels_channel')}")
    return info


def publish_boss_key(results_key: str) -> str:
    """Where PublishToBoss records the channels it wrote."""
    return f"{results_key}/{wf.WORKFLOW_PREFIX}/publish_boss.json"


# -- PublishToS3 (Lambda) -----------------------------------------------------------------------


def publish_s3(
    bucket: str,
    results_key: str,
    *,
    execution_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
) -> dict[str, Any]:
    """manifest.json (with S3 locations and checksums), links.csv, presigned URLs, messages."""
    from synapse_pipelines.io import boss_links as boss_module

    env = os.environ if environ is None else environ
    client = _s3(s3)
    validated = load_validated(client, bucket, results_key)
    request = validated.synapse_request()
    expires = int(env.get(wf.ENV_PRESIGN_SECONDS, wf.DEFAULT_PRESIGN_SECONDS))
    viewer = env.get(wf.ENV_NEUROGLANCER_URL, wf.DEFAULT_NEUROGLANCER_URL)

    links = boss_module.result_links(
        request,
        raw_channels=[validated.presynaptic_channel, validated.postsynaptic_channel],
        frame=validated.coordinate_frame(),
        neuroglancer_url=viewer,
    )
    links_csv = boss_module.links_csv_text(links)
    client.put_object(
        Bucket=bucket,
        Key=wf.artefact_key(results_key, wf.LINKS),
        Body=links_csv.encode(),
        ContentType="text/csv; charset=utf-8",
        Metadata={"sha256": hashlib.sha256(links_csv.encode()).hexdigest()},
    )

    manifest_key = wf.artefact_key(results_key, wf.MANIFEST)
    manifest = get_json(client, bucket, manifest_key)
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
    put_json(client, bucket, manifest_key, manifest)

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
    return {
        "manifest_key": manifest_key,
        "notification": success_notification(request, detail, urls, expires),
        "event_detail": detail,
    }


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


# -- notifications ------------------------------------------------------------------------------


def _subject(text: str) -> str:
    ascii_text = text.encode("ascii", "replace").decode().replace("\n", " ").strip()
    return ascii_text[:MAX_SUBJECT_CHARS]


def success_notification(
    request: SynapseRequest, detail: Mapping[str, Any], urls: Mapping[str, str], expires: int
) -> dict[str, str]:
    lines = [
        f"Synapse detection finished for {request.collection}/{request.experiment} {request.box}.",
        f"Synapses found: {detail.get('synapses', 0)}",
        f"Results: s3://{detail['bucket']}/{detail['prefix']}",
    ]
    if detail.get("neuroglancer_url"):
        lines.append(f"Neuroglancer: {detail['neuroglancer_url']}")
    if urls:
        lines += [
            "",
            f"Download links (valid for up to {expires // 3600} h, or until the signing role's "
            "session ends, whichever is first):",
        ]
        lines += [f"  {name}: {url}" for name, url in urls.items()]
    lines += [
        "",
        "Fresh links at any time: synapse-pipelines results "
        f"{detail['results_key']} --stack <stack name>",
    ]
    return {
        "subject": _subject(f"Synapse detection finished: {detail.get('synapses', 0)} synapses"),
        "message": "\n".join(lines),
    }


def describe_failure(
    state: Mapping[str, Any],
    *,
    execution_id: str | None = None,
    s3: Any | None = None,
) -> dict[str, Any]:
    """Error, cause and notification text for a caught failure.

    A user error keeps its own type and message: from a Lambda it arrives as the runtime's
    error JSON (``errorType``/``errorMessage``); from a Batch step the container recorded it
    at :func:`~synapse_pipelines.workflow.wiring.step_error_key` before exiting with status 2. Other
    Batch failures are summarised from the job description (status reason, exit code, log
    stream).
    """
    failure = dict(state.get("failure") or {})
    step = str(failure.get("step", "unknown"))
    caught = failure.get("error") or {}
    error = str(caught.get("Error", "States.Unknown"))
    raw_cause = str(caught.get("Cause", ""))
    job = state.get("job") or {}
    parsed: Any = None
    try:
        parsed = json.loads(raw_cause) if raw_cause.lstrip().startswith("{") else None
    except ValueError:
        parsed = None
    cause = raw_cause
    if isinstance(parsed, dict) and "errorType" in parsed:
        error = str(parsed.get("errorType") or error)
        cause = str(parsed.get("errorMessage", raw_cause))
        step = "PublishToS3" if step == "Publish" else step
    elif isinstance(parsed, dict) and ("JobId" in parsed or "JobName" in parsed):
        step = "PublishToBoss" if step == "Publish" else step
        recorded = _recorded_step_error(s3, job, parsed, step)
        if recorded is not None:
            error, cause = recorded
        else:
            error, cause = "BatchJobFailed", _batch_cause(parsed)
    cause = cause[:MAX_CAUSE_CHARS]
    request_data = {k: v for k, v in state.items() if k in ValidateFields}
    email = request_data.get("notification_email") or wf.NO_EMAIL
    where = ""
    if request_data.get("collection") and request_data.get("experiment"):
        where = f" for {request_data['collection']}/{request_data['experiment']}"
    message = "\n".join(
        [
            f"Synapse detection failed{where} at step {step}.",
            f"Error: {error}",
            f"Cause: {cause}",
            *([f"Execution: {execution_id}"] if execution_id else []),
        ]
    )
    detail = {
        "step": step,
        "error": error,
        "cause": cause,
        "execution_id": execution_id,
        "results_key": job.get("results_key"),
        "bucket": job.get("bucket"),
    }
    return {
        "error": error,
        "cause": cause,
        "subject": _subject(f"Synapse detection failed at {step}: {error}"),
        "message": message,
        "notify": str(email) if isinstance(email, str) else wf.NO_EMAIL,
        "detail": detail,
    }


#: Request fields DescribeFailure may read from the state (the execution input is the request).
ValidateFields = frozenset({"collection", "experiment", "notification_email"})


#: Where each failed state's Batch job records a user error (``step_error_key``'s step).
_ERROR_RECORD_STEPS = {
    "Detect": "detect",
    "Report": "report",
    "Publish": "publish-boss",
    "PublishToBoss": "publish-boss",
}


def _recorded_step_error(
    s3: Any | None, job: Mapping[str, Any], description: Mapping[str, Any], failed_state: str
) -> tuple[str, str] | None:
    bucket, key = job.get("bucket"), job.get("results_key")
    name = str(description.get("JobName", ""))
    # the failed state says which step (every Detect variant records under "detect");
    # the job name's prefix is the fallback
    step = _ERROR_RECORD_STEPS.get(failed_state) or next(
        (s for s in ("publish-boss", "detect", "report") if name.startswith(s)), None
    )
    if not (bucket and key and step):
        return None
    try:
        data = get_json(_s3(s3), str(bucket), wf.step_error_key(str(key), step))
    except Exception:
        return None
    return str(data.get("error_type", "SynapsePipelinesError")), str(data.get("message", ""))


def _batch_cause(description: Mapping[str, Any]) -> str:
    parts = [f"job {description.get('JobName', '?')} {description.get('Status', 'FAILED')}"]
    if description.get("StatusReason"):
        parts.append(str(description["StatusReason"]))
    attempts = description.get("Attempts") or []
    if attempts:
        last = attempts[-1]
        container = last.get("Container") or {}
        bits = [f"{len(attempts)} attempt(s)"]
        if "ExitCode" in container:
            bits.append(f"last exit code {container['ExitCode']}")
        if container.get("Reason"):
            bits.append(str(container["Reason"]))
        if container.get("LogStreamName"):
            bits.append(f"log stream /aws/batch/job {container['LogStreamName']}")
        parts.append(", ".join(bits))
    return "; ".join(parts)


def record_step_error(
    s3: Any | None, bucket: str, results_key: str, step: str, exc: SynapsePipelinesError
) -> None:
    """Store a Batch step's user error where DescribeFailure finds it (best effort)."""
    try:
        put_json(
            _s3(s3),
            bucket,
            wf.step_error_key(results_key, step),
            {"error_type": exc.error_type, "message": str(exc)},
        )
    except Exception as put_exc:  # the exit status and the log still carry the failure
        _print(f"could not record the error in S3: {type(put_exc).__name__}")


def clear_step_error(s3: Any | None, bucket: str, results_key: str, step: str) -> None:
    try:
        _s3(s3).delete_object(Bucket=bucket, Key=wf.step_error_key(results_key, step))
    except Exception as exc:  # nothing to clear is fine; anything else shows in the log
        _print(f"could not clear an earlier error record: {type(exc).__name__}")


# -- StartFromEvent (Lambda) --------------------------------------------------------------------


def start_from_event(
    event: Mapping[str, Any], *, state_machine_arn: str, sfn: Any | None = None
) -> dict[str, Any]:
    """Start an execution for a "Synapse Detection Requested" event, named from the request.

    EventBridge cannot name executions, so this function does: the same request sent twice
    maps to the same name and Step Functions refuses the second start.
    """
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise RequestValidationError([("detail", "the event has no request object in 'detail'")])
    if detail.get("token") not in (None, ""):
        raise RequestValidationError(
            [("detail.token", "never put a token in an event; use the deployment's secret")]
        )
    request = parse_request(detail)
    public = request.public_dict()
    name = wf.execution_name(public, request.results_key)
    return start_execution(sfn, state_machine_arn, name, public)


def start_execution(
    sfn: Any | None, state_machine_arn: str, name: str, request_input: Mapping[str, Any]
) -> dict[str, Any]:
    """StartExecution that treats "already exists" as the duplicate it is."""
    if sfn is None:
        import boto3

        sfn = boto3.client("stepfunctions")
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(dict(request_input))
        )
        return {"execution_arn": response["executionArn"], "name": name, "duplicate": False}
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code != "ExecutionAlreadyExists":
            raise
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        return {"execution_arn": arn, "name": name, "duplicate": True}


def correlation_id(request_data: Mapping[str, Any], fallback: str | None = None) -> str | None:
    """The request's results key for log correlation, without raising on a bad request."""
    try:
        return parse_request(request_data, max_voxels=None).results_key
    except Exception:  # a bad request is reported by the step itself
        return fallback
