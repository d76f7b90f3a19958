"""Event triggers component: the EventBridge rule that starts a run for a
"Synapse Detection Requested" event, and its dead-letter queue.

The rule targets the StartFromEvent Lambda (deployed by ``infra/lambda_functions/``, source
``functions/start_from_event/``); the event pattern is the package's
(``synapse_pipelines.workflow.wiring.REQUESTED_EVENT_PATTERN``).

- ``event_triggers_construct``:
  :class:`~infra.event_triggers.event_triggers_construct.EventTriggers`.
"""
