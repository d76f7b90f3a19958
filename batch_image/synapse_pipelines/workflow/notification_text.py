"""What people read: the SNS subject and message of a finished or a failed run.

PublishToS3 builds the success message (:func:`success_notification`: counts, where the
results are, presigned links), DescribeFailure the failure message
(:func:`failure_notification`: step, error, cause). Subjects follow SNS's rules
(:func:`sns_subject`). Pure text, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synapse_pipelines.core.request import SynapseRequest

#: Largest cause/message kept in a notification (SNS allows 256 KiB; people read less).
MAX_CAUSE_CHARS = 4000
#: SNS subjects: ASCII, one line, at most 100 characters.
MAX_SUBJECT_CHARS = 100


def sns_subject(text: str) -> str:
    """``text`` as an SNS subject: ASCII, one line, at most :data:`MAX_SUBJECT_CHARS`."""
    ascii_text = text.encode("ascii", "replace").decode().replace("\n", " ").strip()
    return ascii_text[:MAX_SUBJECT_CHARS]


def success_notification(
    request: SynapseRequest, detail: Mapping[str, Any], urls: Mapping[str, str], expires: int
) -> dict[str, str]:
    """Subject and message of a finished run (``detail``: the completion event's detail)."""
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
        "subject": sns_subject(f"Synapse detection finished: {detail.get('synapses', 0)} synapses"),
        "message": "\n".join(lines),
    }


def failure_notification(
    *, step: str, error: str, cause: str, where: str, execution_id: str | None
) -> dict[str, str]:
    """Subject and message of a failed run (``where``: " for <collection>/<experiment>" or "")."""
    message = "\n".join(
        [
            f"Synapse detection failed{where} at step {step}.",
            f"Error: {error}",
            f"Cause: {cause}",
            *([f"Execution: {execution_id}"] if execution_id else []),
        ]
    )
    return {
        "subject": sns_subject(f"Synapse detection failed at {step}: {error}"),
        "message": message,
    }
