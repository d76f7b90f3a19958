"""Notifications: the SNS topic (success and failure messages) and the custom event bus.

The topic is encrypted with the AWS-managed SNS key and refuses non-TLS publishers. An email
subscription for the operator comes from CDK context (``notificationEmail``); requesters who
give ``notification_email`` are subscribed by ValidateRequest with a filter policy on the
``notification_email`` message attribute, so each person only gets their own runs.
"""

from __future__ import annotations

from aws_cdk import (
    aws_events as events,
    aws_kms as kms,
    aws_sns as sns,
    aws_sns_subscriptions as subscriptions,
)
from constructs import Construct


class Notifications(Construct):
    """The SNS topic and the custom event bus."""

    def __init__(
        self, scope: Construct, construct_id: str, *, notification_email: str | None
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="synapse-pipelines",
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
        if notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(notification_email))
        self.event_bus = events.EventBus(
            self,
            "Bus",
            description="synapse-pipelines: requests in, completion and failure events out",
        )
