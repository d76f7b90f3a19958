"""Names of a run: its Step Functions execution and its Batch jobs.

The execution name is derived from the request (:func:`execution_name`), so the same request
submitted twice (CLI, EventBridge, local) never starts a second run; a retry's name adds its
attempt (``-r<n>``, :func:`parse_execution_name` reads it back). :func:`job_name_stem` names a
run's Batch jobs, and :func:`job_of_run` tells whether a job belongs to a run. The CLI, the
workflow steps and the local runtime all name runs through this module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

#: Step Functions execution names: at most 80 characters of [A-Za-z0-9_-].
EXECUTION_NAME_MAX = 80


def request_fingerprint(public_request: Mapping[str, Any]) -> str:
    """SHA-256 of the request's canonical JSON (the request without its token)."""
    canonical = json.dumps(public_request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def execution_name(public_request: Mapping[str, Any], results_key: str, *, attempt: int = 1) -> str:
    """Deterministic execution name: readable results key prefix + request fingerprint, and
    for a retry (``attempt`` 2, 3, ...) the suffix ``-r<attempt>`` (the prefix gives way).

    Step Functions refuses a second execution with the same name (for 90 days), so a
    duplicate request - the same JSON submitted twice - cannot start a second run.
    """
    if attempt < 1:
        raise ValueError(f"attempt {attempt} < 1")
    digest = request_fingerprint(public_request)[:16]
    tail = f"-{digest}" + (f"{RETRY_SUFFIX}{attempt}" if attempt > 1 else "")
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", results_key)[: EXECUTION_NAME_MAX - len(tail)]
    return stem + tail


#: A retry's execution name ends in ``-r<attempt>``; see :func:`execution_name`.
RETRY_SUFFIX = "-r"
_NAME = re.compile(r"-(?P<digest>[0-9a-f]{16})(?:-r(?P<attempt>[0-9]+))?$")


def parse_execution_name(name: str) -> tuple[str, int] | None:
    """(request digest, attempt) of a name made by :func:`execution_name`, else None."""
    found = _NAME.search(name)
    return (found["digest"], int(found["attempt"] or 1)) if found else None


#: Longest Batch job-name stem: the ASL prefixes it with the step ("publish-boss-", 13 chars)
#: and Batch allows 128 characters of [A-Za-z0-9_-].
JOB_NAME_STEM_MAX = 100


def job_name_stem(results_key: str) -> str:
    """Stem of the Batch job names of one request (the ASL formats ``<step>-<stem>``)."""
    digest = hashlib.sha256(results_key.encode()).hexdigest()[:8]
    head = re.sub(r"[^A-Za-z0-9_-]", "_", results_key)[: JOB_NAME_STEM_MAX - len(digest) - 1]
    return f"{head}-{digest}"


def job_of_run(job_name: str, stem: str) -> bool:
    """True when a Batch job belongs to the run whose :func:`job_name_stem` is ``stem``
    (the ASL names every job ``<step>-[<block>-]<stem>``)."""
    return job_name.endswith(f"-{stem}")
