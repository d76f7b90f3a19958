"""What the Batch steps (Detect, Report, PublishToBoss) open before their work.

:func:`open_run`: the S3 client, the run's validated request and a BOSS client with the
run's token (``BOSS_TOKEN``, from the job definition's secret: never stored, logged or put
into a message). :func:`scratch_folder`: the step's working folder, a given one or a
temporary one removed afterwards. :func:`print_line`: the steps' default log (the job's
log stream).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synapse_pipelines.core.boss_token import resolve_token
from synapse_pipelines.core.request import SynapseRequest
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.s3_objects import s3_client
from synapse_pipelines.workflow.run_record import ValidatedRequest, load_validated

#: A step's progress log: one line per call.
Log = Callable[[str], None]
#: Makes the BOSS client of a request with its token (tests and the local runtime pass
#: their own).
BossFactory = Callable[[SynapseRequest, str], Any]


def print_line(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class BatchRun:
    """One run as a Batch step sees it."""

    s3: Any
    validated: ValidatedRequest
    request: SynapseRequest
    boss: Any  # a BossClient (or what the given factory made)


def open_run(
    bucket: str,
    results_key: str,
    *,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    boss_factory: BossFactory | None = None,
) -> BatchRun:
    """S3 client, the validated run, its request and a BOSS client with the run's token."""
    client = s3_client(s3)
    validated = load_validated(client, bucket, results_key)
    request = validated.synapse_request()
    token = resolve_token(request, environ=os.environ if environ is None else environ)
    boss = (boss_factory or BossClient.for_request)(request, token)
    return BatchRun(client, validated, request, boss)


@contextmanager
def scratch_folder(folder: Path | None) -> Iterator[Path]:
    """``folder`` (created if needed), or a temporary folder removed afterwards."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="synapse-step-") as tmp:
        yield Path(tmp)
