"""What people read: the SNS subject and message of a finished, failed or cancelled run.

PublishToS3 builds the success message (:func:`success_notification`: counts, where the
results are, presigned links), DescribeFailure the failure message
(:func:`failure_notification`: step, error, cause, the failing job's log stream and the
command that prints it, failed blocks), FinishCancelledRun the cancel message
(:func:`cancel_notification`). Subjects follow SNS's rules (:func:`sns_subject`). Pure
text, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from synapse_pipelines.core.request import SynapseRequest

#: Largest cause/message kept in a notification (SNS allows 256 KiB; people read less).
MAX_CAUSE_CHARS = 4000
#: Failed blocks a failure notice lists one by one (the event's detail carries them all).
MAX_LISTED_BLOCKS = 20
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
        f"Synapses found: {detail.get('synapses', 0)}"
        + (f" -- {detail['explanation']}" if detail.get("explanation") else ""),
        *(f"Warning: {warning}" for warning in detail.get("warnings") or []),
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
    *,
    step: str,
    error: str,
    cause: str,
    where: str,
    execution_id: str | None,
    logs: Mapping[str, Any] | None = None,
    failed_blocks: Sequence[Mapping[str, Any]] = (),
) -> dict[str, str]:
    """Subject and message of a failed run (``where``: " for <collection>/<experiment>" or "";
    ``logs``: the failing job's ``log_group``, ``log_stream`` and ``command``)."""
    lines = [
        f"Synapse detection failed{where} at step {step}.",
        f"Error: {error}",
        f"Cause: {cause}",
        *([f"Execution: {execution_id}"] if execution_id else []),
    ]
    if failed_blocks:
        lines.append(f"Failed blocks ({len(failed_blocks)}):")
        for block in failed_blocks[:MAX_LISTED_BLOCKS]:
            why = block.get("status_reason") or "failed"
            if block.get("exit_code") is not None:
                why += f", exit code {block['exit_code']}"
            lines.append(
                f"  {block.get('step')} block {block.get('block')}: job {block.get('job_name')} "
                f"({why}); log stream {block.get('log_stream') or '-'}"
            )
        if len(failed_blocks) > MAX_LISTED_BLOCKS:
            lines.append(f"  ... and {len(failed_blocks) - MAX_LISTED_BLOCKS} more")
    if logs and logs.get("log_stream"):
        lines.append(f"Log of the failing job: {logs.get('log_group')} {logs['log_stream']}")
    if logs and logs.get("command"):
        lines.append(f"Print it: {logs['command']}")
    return {
        "subject": sns_subject(f"Synapse detection failed at {step}: {error}"),
        "message": "\n".join(lines),
    }


def cancel_notification(
    *, where: str, execution: str, results: str, terminated: int, retry_command: str
) -> dict[str, str]:
    """Subject and message of a cancelled run (``where`` as for failures)."""
    message = "\n".join(
        [
            f"Synapse detection was cancelled{where}.",
            f"Execution: {execution}",
            f"Batch jobs terminated: {terminated}",
            f"Results folder (incomplete, its manifest says cancelled): {results}",
            f"Run it again (completed blocks are reused): {retry_command}",
        ]
    )
    return {"subject": sns_subject(f"Synapse detection cancelled{where}"), "message": message}
