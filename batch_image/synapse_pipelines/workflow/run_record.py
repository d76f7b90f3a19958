"""A run's records in S3: the validated request and the steps' error records.

ValidateRequest stores the checked request (:class:`ValidatedRequest`) at
:func:`~synapse_pipelines.workflow.wiring.validated_request_key`; every later step reads it
from there (:func:`load_validated`) instead of receiving it through the state. A Batch step
that fails on a user error records the error at
:func:`~synapse_pipelines.workflow.wiring.step_error_key` (:func:`record_step_error`) before
exiting, and DescribeFailure reads it back (:func:`read_step_error`). PublishToBoss records
the channels it wrote at :func:`publish_boss_key`, and BOSS's downsample report there and in
``manifest.json`` (:func:`record_boss_downsample`).

Light (pydantic, boto3): the Lambdas and the Batch steps both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from synapse_pipelines.core.errors import SynapsePipelinesError, aws_error_code
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.io.s3_objects import (
    NOT_FOUND_CODES,
    get_json,
    put_json,
    s3_client,
    update_json,
)
from synapse_pipelines.workflow import wiring as wf


class ValidatedRequest(BaseModel):
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
    #: the run's cost estimate (core.cost_estimate.CostEstimate.record), when priced
    cost_estimate: dict[str, Any] | None = None

    def synapse_request(self) -> SynapseRequest:
        return parse_request(self.request, max_voxels=None)


def load_validated(s3: Any, bucket: str, results_key: str) -> ValidatedRequest:
    """The validated request of a run; a clear error when ValidateRequest did not store one."""
    key = wf.validated_request_key(results_key)
    try:
        data = get_json(s3, bucket, key)
    except Exception as exc:
        code = aws_error_code(exc) or type(exc).__name__
        raise SynapsePipelinesError(
            f"no validated request at s3://{bucket}/{key} ({code})",
            field="results_key",
            hint="run ValidateRequest first (start the state machine with the request)",
        ) from None
    return ValidatedRequest.model_validate(data)


def publish_boss_key(results_key: str) -> str:
    """Where PublishToBoss records the channels it wrote."""
    return f"{results_key}/{wf.WORKFLOW_PREFIX}/publish_boss.json"


#: Seconds PublishToBoss waits for BOSS's downsampling to finish before it reports the status
#: it sees (default 0: report "started"; downsampling a large channel takes BOSS hours).
ENV_DOWNSAMPLE_WAIT = "SYNAPSE_BOSS_DOWNSAMPLE_WAIT_SECONDS"


def downsample_wait_seconds(environ: Mapping[str, str]) -> float:
    text = environ.get(ENV_DOWNSAMPLE_WAIT) or "0"
    try:
        return max(0.0, float(text))
    except ValueError:
        raise SynapsePipelinesError(
            f"{ENV_DOWNSAMPLE_WAIT}={text!r} is not a number of seconds",
            field=ENV_DOWNSAMPLE_WAIT,
            hint="give seconds, e.g. 0 (do not wait) or 600",
        ) from None


def record_boss_downsample(
    s3: Any,
    bucket: str,
    results_key: str,
    report: dict[str, Any],
    *,
    log: Callable[[str], None] = print,
) -> None:
    """Log BOSS's downsample report (a line per channel) and add it to PublishToBoss's
    record and to ``manifest.json`` (``manifest["boss_downsample"]``); both are updated in
    place, never replaced, so what PublishToS3 writes to the manifest at the same time stays."""
    for name, entry in report.get("channels", {}).items():
        log(f"BOSS downsample of {name}: {entry['outcome']} ({entry['message']})")

    def add(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "boss_downsample": report}

    update_json(s3, bucket, publish_boss_key(results_key), add)
    try:
        update_json(s3, bucket, wf.artefact_key(results_key, wf.MANIFEST), add)
    except Exception as exc:
        if aws_error_code(exc) not in NOT_FOUND_CODES:
            raise
        log("no manifest.json to record the downsample report in")


# -- step error records -------------------------------------------------------------------------


def record_step_error(
    s3: Any | None, bucket: str, results_key: str, step: str, exc: SynapsePipelinesError
) -> None:
    """Store a Batch step's user error where DescribeFailure finds it (best effort)."""
    try:
        put_json(
            s3_client(s3),
            bucket,
            wf.step_error_key(results_key, step),
            {"error_type": exc.error_type, "message": str(exc)},
        )
    except Exception as put_exc:  # the exit status and the log still carry the failure
        print(f"could not record the error in S3: {type(put_exc).__name__}", flush=True)


def clear_step_error(s3: Any | None, bucket: str, results_key: str, step: str) -> None:
    """Remove an earlier run's error record of ``step`` (a retried step starts clean)."""
    try:
        s3_client(s3).delete_object(Bucket=bucket, Key=wf.step_error_key(results_key, step))
    except Exception as exc:  # nothing to clear is fine; anything else shows in the log
        print(f"could not clear an earlier error record: {type(exc).__name__}", flush=True)


def read_step_error(
    s3: Any | None, bucket: str, results_key: str, step: str
) -> tuple[str, str] | None:
    """(error type, message) recorded by ``step``, or ``None`` when there is no record."""
    try:
        data = get_json(s3_client(s3), bucket, wf.step_error_key(results_key, step))
    except Exception:
        return None
    return str(data.get("error_type", "SynapsePipelinesError")), str(data.get("message", ""))
