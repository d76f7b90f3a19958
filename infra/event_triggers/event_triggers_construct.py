"""Event triggers: the EventBridge rules that start a run and finish a cancelled one.

- "Synapse Detection Requested" (the stack's bus): EventBridge cannot name a Step Functions
  execution, and the execution name is what makes a duplicate request harmless, so the rule
  targets the StartFromEvent Lambda, which starts the state machine with the name derived
  from the request.
- The state machine's ABORTED executions (Step Functions' "Execution Status Change" events,
  on the default bus; ``wiring.aborted_event_pattern``): a stopped execution runs no further
  state, so the FinishCancelledRun Lambda terminates its Batch jobs, marks it cancelled and
  notifies.

Undeliverable events go to an SQS dead-letter queue (encrypted, TLS only) after EventBridge's
retries.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import (
    aws_events as events,
    aws_events_targets as targets,
    aws_lambda as lambda_,
    aws_sqs as sqs,
    aws_stepfunctions as sfn,
)
from constructs import Construct

from synapse_pipelines.workflow import wiring as wf


class EventTriggers(Construct):
    """The "Synapse Detection Requested" rule (-> ``starter``), the rule on the stopped
    executions of ``state_machine`` (-> ``finisher``), and their dead letters."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        event_bus: events.IEventBus,
        starter: lambda_.IFunction,
        finisher: lambda_.IFunction,
        state_machine: sfn.IStateMachine,
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
        aborted = wf.aborted_event_pattern(state_machine.state_machine_arn)
        self.cancelled_rule = events.Rule(
            self,
            "CancelledRule",
            description="Finish synapse-pipelines runs whose execution was stopped",
            event_pattern=events.EventPattern(
                source=aborted["source"],
                detail_type=aborted["detail-type"],
                detail=aborted["detail"],
            ),
            targets=[
                targets.LambdaFunction(
                    finisher,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=4,
                    max_event_age=cdk.Duration.hours(2),
                )
            ],
        )
