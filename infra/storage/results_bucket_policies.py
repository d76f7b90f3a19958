"""Who may touch which results keys: the key patterns and the IAM statements granting them.

Results live under one prefix per request (``<results_key>/...``), known only at run time, so
object resources end in wildcards. The patterns are derived from the package's S3 layout
(``synapse_pipelines.workflow.wiring``): a layout change moves the permissions with it. The
Batch, Lambda and state machine components grant through these helpers, and the cdk-nag
acknowledgements (``infra/cdk_nag_checks.py``) name the same patterns. Actions are always
listed one by one (no ``s3:*``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from aws_cdk import aws_iam as iam, aws_s3 as s3

from synapse_pipelines.workflow import wiring as wf

#: Every object of every request's results folder.
EVERY_RESULT = "*"
#: Each request's validated copy, written by ValidateRequest: ``*/_workflow/request.json``.
VALIDATED_REQUESTS = wf.validated_request_key("*")
#: How each request's run ended (failed, cancelled): ``*/_workflow/run_status.json``.
RUN_STATUS_RECORDS = wf.run_status_key("*")
#: Each request's manifest (marked failed or cancelled): ``*/manifest.json``.
MANIFESTS = wf.artefact_key("*", wf.MANIFEST)
#: The user errors Batch steps record: ``*/_workflow/errors/*``.
STEP_ERROR_RECORDS = posixpath.join(posixpath.dirname(wf.step_error_key("*", "step")), "*")
#: The workflow's bookkeeping of each request (Distributed Map items and results):
#: ``*/_workflow/*``.
WORKFLOW_RECORDS = f"*/{wf.WORKFLOW_PREFIX}/*"


def objects_statement(
    bucket: s3.IBucket, *, sid: str, actions: Sequence[str], keys: str
) -> iam.PolicyStatement:
    """Allow ``actions`` on the objects of ``bucket`` matching ``keys`` (one of the patterns)."""
    return iam.PolicyStatement(
        sid=sid, actions=list(actions), resources=[bucket.arn_for_objects(keys)]
    )


def listing_statement(bucket: s3.IBucket, *, sid: str) -> iam.PolicyStatement:
    """Allow listing ``bucket``: without ListBucket a missing object answers 403, not 404."""
    return iam.PolicyStatement(sid=sid, actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
