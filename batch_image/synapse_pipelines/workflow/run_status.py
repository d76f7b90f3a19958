"""A run's end in S3: nothing half-written looks complete.

A run that fails (DescribeFailure) or is cancelled (FinishCancelledRun) records how it ended
at :func:`~synapse_pipelines.workflow.wiring.run_status_key` (``<key>/_workflow/
run_status.json``: status, execution, when, and what the step knows) and, when the results
folder already holds a ``manifest.json`` (Detect wrote it; Report and PublishToS3 complete
it), marks the manifest too: ``"status": "failed"`` or ``"cancelled"`` and the same record
under ``"run"``. A manifest without ``status`` belongs to a run that is going on or that
succeeded; :func:`manifest_state` is how readers (``list``, ``results``) tell.

A retry re-runs the steps, and Detect (or the blockwise merge) writes a fresh manifest, so a
mark never outlives the attempt it describes; the run record names its execution, and readers
ignore one that names another.

Light (boto3 only): the Lambdas use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from synapse_pipelines.core.errors import aws_error_code
from synapse_pipelines.io.s3_objects import NOT_FOUND_CODES, get_json, put_json
from synapse_pipelines.workflow import wiring as wf

FAILED = "FAILED"
CANCELLED = "CANCELLED"
#: What a manifest's ``status`` says for each end (absent: going on or succeeded).
MANIFEST_STATUS = {FAILED: "failed", CANCELLED: "cancelled"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json_or_none(s3: Any, bucket: str, key: str) -> Any | None:
    """The JSON object at ``key``, or None when there is none (other errors propagate)."""
    try:
        return get_json(s3, bucket, key)
    except Exception as exc:
        if aws_error_code(exc) in NOT_FOUND_CODES:
            return None
        raise


def read_run_status(
    s3: Any, bucket: str, results_key: str, execution_arn: str | None = None
) -> dict[str, Any] | None:
    """The run's end record; with ``execution_arn``, only when it is that execution's."""
    record = read_json_or_none(s3, bucket, wf.run_status_key(results_key))
    if not isinstance(record, dict):
        return None
    if execution_arn is not None and record.get("execution_arn") != execution_arn:
        return None
    return record


def mark_run_ended(
    s3: Any,
    bucket: str,
    results_key: str,
    *,
    status: str,
    execution_arn: str | None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Record that the run ended ``status`` (FAILED or CANCELLED), in the run record and in
    the manifest when there is one; return the record."""
    if status not in MANIFEST_STATUS:
        raise ValueError(f"status {status!r} is not one of {sorted(MANIFEST_STATUS)}")
    record: dict[str, Any] = {
        "status": status,
        "execution_arn": execution_arn,
        "at": now_iso(),
        **dict(detail or {}),
    }
    put_json(s3, bucket, wf.run_status_key(results_key), record)
    manifest_key = wf.artefact_key(results_key, wf.MANIFEST)
    manifest = read_json_or_none(s3, bucket, manifest_key)
    if isinstance(manifest, dict):
        manifest["status"] = MANIFEST_STATUS[status]
        manifest["run"] = record
        put_json(s3, bucket, manifest_key, manifest)
        record = {**record, "manifest_marked": True}
    return record


def update_run_status(
    s3: Any, bucket: str, results_key: str, changes: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Add ``changes`` to the run record (e.g. ``notified``); None when there is none."""
    record = read_run_status(s3, bucket, results_key)
    if record is None:
        return None
    record.update(changes)
    put_json(s3, bucket, wf.run_status_key(results_key), record)
    return record


def manifest_state(manifest: Mapping[str, Any] | None, execution_arn: str | None = None) -> str:
    """What a manifest says about its run: "missing", "failed", "cancelled", "complete" (the
    run's PublishToS3 finished it; with ``execution_arn``: that execution's PublishToS3) or
    "partial" (written by a step, not published by that run)."""
    if not manifest:
        return "missing"
    status = manifest.get("status")
    if status in MANIFEST_STATUS.values():
        return str(status)
    published_by = manifest.get("execution_id")
    if manifest.get("published") and (execution_arn is None or published_by == execution_arn):
        return "complete"
    return "partial"
