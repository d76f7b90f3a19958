"""The CDK app of synapse-pipelines: one stack composed of one component per concern.

Each component directory holds its construct and what deploying that concern needs (IAM
policy helpers, settings glue); the sources it deploys stay at the repository top
(``functions/``, ``state_machines/``, ``batch_image/``), read from :data:`REPO_ROOT`:

- ``storage/``: results bucket, access-log bucket, BOSS token secret; the results-key
  permissions every other component grants through.
- ``notifications/``: SNS topic and custom event bus.
- ``batch_compute/``: VPC, Spot compute environments and queues, the image
  (``batch_image/Dockerfile``), the job role and job definitions.
- ``lambda_functions/``: the handlers (``functions/``), their dependencies layer, environment
  and permissions.
- ``state_machine/``: the ASL (``state_machines/``) with its substitutions, role and logs.
- ``event_triggers/``: the "Synapse Detection Requested" rule and its dead-letter queue.

Beside them: ``cdk_app`` (entry point), ``synapse_pipelines_stack`` (composition and
outputs), ``stack_settings`` (validated CDK context), ``cdk_nag_checks`` (the checks and every
acknowledged finding), ``log_groups`` and ``wiring_checks`` (shared by the components), and
``tooling/`` (wheelhouse and image pins; never imports constructs).
"""

from pathlib import Path

#: The repository (the CDK app only ever runs from a checkout: it stages the Docker context
#: and the Lambda sources from here).
REPO_ROOT = Path(__file__).resolve().parents[1]
