"""Event triggers: the EventBridge rule that starts a run for "Synapse Detection Requested".

EventBridge cannot name a Step Functions execution, and the execution name is what makes a
duplicate request harmless, so the rule targets the StartFromEvent Lambda, which starts the
state machine with the name derived from the request. Undeliverable events go to an SQS
dead-letter queue (encrypted, TLS only) after EventBridge's retries.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import (
    aws_events as events,
    aws_events_targets as targets,
    aws_lambda as lambda_,
    aws_sqs as sqs,
)
from constructs import Construct

from synapse_pipelines.workflow import wiring as wf


class EventTriggers(Construct):
    """The "Synapse Detection Requested" rule, targeting ``starter``, and its dead letters."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        event_bus: events.IEventBus,
        starter: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.rule = events.Rule(
            self,
            "RequestedRule",
            event_bus=event_bus,
            description=f"Start synapse-pipelines for '{wf.DETAIL_TYPE_REQUESTED}' events",
            event_pattern=events.EventPattern(
                detail_type=list(wf.REQUESTED_EVENT_PATTERN["detail-type"])
            ),
            targets=[
                targets.LambdaFunction(
                    starter,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=4,
                    max_event_age=cdk.Duration.hours(2),
                )
            ],
        )
