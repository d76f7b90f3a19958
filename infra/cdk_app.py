"""CDK app entry point (``cdk.json``: ``python3 -m infra.cdk_app``).

``build_app`` is what the tests synthesise too, with cdk.json's context: one definition of
the app. cdk-nag's AwsSolutions checks run on every synth; an unacknowledged finding is an
error and fails ``cdk synth``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

# silences jsii's Node 20 end-of-life notice on every run; read when importing aws_cdk
# starts jsii, hence before that import
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk

from infra import REPO_ROOT
from infra.cdk_nag_checks import add_checks
from infra.stack_settings import CONTEXT_KEY, settings_from_app_context
from infra.synapse_pipelines_stack import SynapsePipelinesStack

CDK_JSON = REPO_ROOT / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` block of cdk.json (feature flags and the project's settings)."""
    return dict(json.loads(CDK_JSON.read_text())["context"])


def build_app(
    context: Mapping[str, Any] | None = None, **app_kwargs: Any
) -> tuple[cdk.App, SynapsePipelinesStack]:
    """The app and its one stack. ``context=None``: the CDK CLI supplies it (cdk.json, -c)."""
    app = cdk.App(context=dict(context) if context is not None else None, **app_kwargs)
    defaults = cdk_json_context().get(CONTEXT_KEY) or {}
    settings = settings_from_app_context(app.node, defaults)
    stack = SynapsePipelinesStack(app, settings.stack_name, settings=settings)
    add_checks(app)
    return app, stack


def main() -> None:
    """Synthesise the app (what ``cdk synth`` and ``cdk deploy`` run)."""
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
