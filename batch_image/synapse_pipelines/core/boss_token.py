"""Where the BOSS token comes from: one lookup shared by the Lambdas, the Batch jobs and the CLI.

The token never travels in a request or a state payload. AWS Batch injects it from
Secrets Manager as :data:`BOSS_TOKEN_ENV`; a Lambda reads the secret named by the request's
``token_secret`` or by :data:`BOSS_TOKEN_SECRET_ENV`; a local run may carry a literal
``token`` (a :class:`pydantic.SecretStr` the request never prints).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from synapse_pipelines.core.errors import SynapsePipelinesError, aws_error_code
from synapse_pipelines.core.request import SynapseRequest

__all__ = ["BOSS_TOKEN_ENV", "BOSS_TOKEN_SECRET_ENV", "resolve_token"]

BOSS_TOKEN_ENV = "BOSS_TOKEN"
BOSS_TOKEN_SECRET_ENV = "BOSS_TOKEN_SECRET"


def resolve_token(
    request: SynapseRequest,
    *,
    environ: Mapping[str, str] | None = None,
    secrets_client: Any | None = None,
) -> str:
    """Find the BOSS token without ever logging it.

    Order: the ``BOSS_TOKEN`` environment variable (how AWS Batch injects the secret), the
    request's literal ``token`` (local runs), then the Secrets Manager secret named by the
    request's ``token_secret`` or the ``BOSS_TOKEN_SECRET`` environment variable. A secret's
    value may be the bare token or JSON ``{"token": "..."}``.
    """
    env = os.environ if environ is None else environ
    if env.get(BOSS_TOKEN_ENV):
        return env[BOSS_TOKEN_ENV]
    if request.token is not None and request.token.get_secret_value():
        return request.token.get_secret_value()
    secret_id = request.token_secret or env.get(BOSS_TOKEN_SECRET_ENV)
    if not secret_id:
        raise SynapsePipelinesError(
            "no BOSS token available",
            field="token_secret",
            hint=f"name a Secrets Manager secret in token_secret, or set {BOSS_TOKEN_ENV}",
        )
    if secrets_client is None:
        import boto3  # start-up time: ~0.5 s to import, and only this lookup needs it

        secrets_client = boto3.client("secretsmanager")
    try:
        value = secrets_client.get_secret_value(SecretId=secret_id)["SecretString"]
    except Exception as exc:  # botocore errors carry no secret value, only the id
        code = aws_error_code(exc) or type(exc).__name__
        raise SynapsePipelinesError(
            f"cannot read secret {secret_id!r} ({code})",
            field="token_secret",
            hint="check the secret exists and the role may call secretsmanager:GetSecretValue",
        ) from None
    value = value.strip()
    if value.startswith("{"):
        try:
            value = str(json.loads(value)["token"])
        except (ValueError, KeyError, TypeError):
            raise SynapsePipelinesError(
                f"secret {secret_id!r} holds JSON without a 'token' key",
                field="token_secret",
                hint='store the bare token or {"token": "<token>"}',
            ) from None
    if not value:
        raise SynapsePipelinesError(
            f"secret {secret_id!r} is empty",
            field="token_secret",
            hint="store the BOSS token in it",
        )
    return value
