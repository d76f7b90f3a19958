"""The CDK app of synapse-pipelines: one stack composed of one construct per concern."""

from pathlib import Path

#: The repository (the CDK app only ever runs from a checkout: it stages the Docker context
#: and the Lambda sources from here).
REPO_ROOT = Path(__file__).resolve().parents[1]
