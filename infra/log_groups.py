"""The stack's one log-group setup: every component's log group keeps the configured retention
and goes with the stack (logs are this deployment's diagnostics, not results)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.stack_settings import VALID_LOG_RETENTION_DAYS

#: CDK's retention members in the order of CloudWatch's day counts; the last member, INFINITE,
#: is never configured (``logRetentionDays`` is one of the day counts).
_RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = dict(
    zip(VALID_LOG_RETENTION_DAYS, list(logs.RetentionDays)[:-1], strict=True)
)


def log_retention(days: int) -> logs.RetentionDays:
    """CDK's retention for a validated ``logRetentionDays``."""
    return _RETENTION_BY_DAYS[days]


def retained_log_group(
    scope: Construct, construct_id: str, retention: logs.RetentionDays
) -> logs.LogGroup:
    """A log group with ``retention``, deleted with the stack."""
    return logs.LogGroup(
        scope, construct_id, retention=retention, removal_policy=cdk.RemovalPolicy.DESTROY
    )
