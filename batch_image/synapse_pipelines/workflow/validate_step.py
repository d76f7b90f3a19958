"""ValidateRequest (Lambda): check a request against BOSS before any Batch job starts.

It parses the request (the same model and messages as the CLI), refuses a literal token or
a foreign ``token_secret``, checks the pipeline parameters, the channels, the box against the
coordinate frame and its size (:func:`~synapse_pipelines.core.sizing.choose_detect_mode`),
prices the run and refuses it above the deployment's budget cap (:func:`planned_cost`),
stores the validated request (:mod:`.run_record`) and subscribes the request's email. It
returns the small ``$.job`` state (:class:`~synapse_pipelines.workflow.wiring.JobState`).

Light (no science stack): it runs in the Lambda layer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3

from synapse_pipelines.core.boss_token import resolve_token
from synapse_pipelines.core.budget import budget_from_environment, check_budget
from synapse_pipelines.core.channel_selection import select_channels
from synapse_pipelines.core.errors import RequestValidationError
from synapse_pipelines.core.pipelines import checked_parameters
from synapse_pipelines.core.pricing import PricingError, price_table, region_from_environment
from synapse_pipelines.core.request import SynapseRequest, parse_request
from synapse_pipelines.core.sizing import choose_detect_mode
from synapse_pipelines.io.boss_client import BossClient, bytes_per_voxel, image_channels
from synapse_pipelines.io.boss_downsample import require_level
from synapse_pipelines.io.s3_objects import put_json, s3_client
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.events import ValidateEvent
from synapse_pipelines.workflow.job_costs import estimate_request
from synapse_pipelines.workflow.run_record import ValidatedRequest


def validate(
    event: ValidateEvent | Mapping[str, Any],
    *,
    bucket: str,
    environ: Mapping[str, str] | None = None,
    s3: Any | None = None,
    secrets_client: Any | None = None,
    sns: Any | None = None,
    boss_factory: Callable[[SynapseRequest, str], Any] | None = None,
) -> dict[str, Any]:
    """Check a request against BOSS and store it; return the small ``$.job`` state.

    Raises :class:`~synapse_pipelines.core.errors.SynapsePipelinesError` with the same
    messages as the CLI on a malformed request, a missing collection/experiment/channel, a
    box outside the coordinate frame or too large for any Detect job. Nothing is written and
    no job starts in that case.
    """
    env = os.environ if environ is None else environ
    parsed = event if isinstance(event, ValidateEvent) else ValidateEvent.parse(event)
    _check_token_fields(parsed.request, env)
    request = parse_request(parsed.request, environ=env)
    token = resolve_token(request, environ=env, secrets_client=secrets_client)
    boss = (boss_factory or BossClient.for_request)(request, token)

    parameters = checked_parameters(request)
    channels = image_channels(boss, request.collection, request.experiment)
    selection = select_channels(channels, request)
    frame = boss.validate_box(
        request.collection, request.experiment, request.box, request.resolution
    )
    require_level(boss, request.collection, request.experiment, channels, request.resolution)

    voxel_bytes = bytes_per_voxel(boss, request.collection, request.experiment, channels)
    mode = choose_detect_mode(request, voxel_bytes, env)
    planned = planned_cost(request, len(channels), voxel_bytes, mode, env)
    key = request.results_key
    record = ValidatedRequest(
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
        cost_estimate=planned,
    )
    client = s3_client(s3)
    put_json(client, bucket, wf.validated_request_key(key), record.model_dump(mode="json"))
    topic = env.get(wf.ENV_TOPIC_ARN)
    if request.notification_email and topic:
        ensure_email_subscription(sns, topic, request.notification_email)
    return wf.JobState(
        bucket=bucket,
        results_key=key,
        request_key=wf.validated_request_key(key),
        job_name=run_names.job_name_stem(key),
        detect_mode=mode,
        voxel_count=request.voxel_count,
        presynaptic_channel=selection.presynaptic,
        postsynaptic_channel=selection.postsynaptic,
        notify=request.notification_email or wf.NO_EMAIL,
    ).to_state()


def planned_cost(
    request: SynapseRequest,
    channels: int,
    voxel_bytes: int,
    mode: str,
    environ: Mapping[str, str],
) -> dict[str, Any] | None:
    """The run's estimate, checked against the budget cap (``SYNAPSE_PIPELINES_BUDGET_USD``):
    above it, :class:`~synapse_pipelines.core.budget.BudgetExceededError` (estimate,
    cap, fixes) before anything is written or any job starts. Prices are the Lambda's region's
    (``SYNAPSE_PIPELINES_PRICE_REGION`` overrides it); a region without prices is an error
    only when there is a cap to check, otherwise the run just has no estimate."""
    cap = budget_from_environment(environ)
    region, source = region_from_environment(environ)
    try:
        prices = price_table(region, field=source)
    except PricingError:
        if cap is None:
            return None
        raise
    cost = estimate_request(
        request,
        prices,
        channels=channels,
        bytes_per_channel=voxel_bytes / max(channels, 1),
        environ=environ,
        mode=mode,
    )
    check_budget(cost, cap)
    return cost.record()


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


def ensure_email_subscription(sns: Any | None, topic_arn: str, email: str) -> None:
    """Subscribe ``email`` to the topic, filtered to messages about its own requests.

    SNS sends a confirmation mail the first time; later requests reuse the subscription.
    """
    client = sns if sns is not None else boto3.client("sns")
    paginator = client.get_paginator("list_subscriptions_by_topic")
    for page in paginator.paginate(TopicArn=topic_arn):
        for sub in page.get("Subscriptions", []):
            if sub.get("Protocol") == "email" and sub.get("Endpoint") == email:
                return
    client.subscribe(
        TopicArn=topic_arn,
        Protocol="email",
        Endpoint=email,
        Attributes={"FilterPolicy": json.dumps({wf.EMAIL_ATTRIBUTE: [email]})},
    )
