"""Lambda in moto without Docker: invocations call the registered handler in-process.

moto's non-Docker Lambda (``LambdaSimpleBackend.invoke``) echoes the payload. Its
replacement, :func:`lambda_invoke`, calls the handler registered for the function
(:func:`register_lambda_handler`) with the event, a Lambda-like context and the function's
environment (an ``os.environ`` overlay under a lock: one invocation at a time). An exception
returns the AWS error payload (``errorType``, ``errorMessage``, ``stackTrace``) and sets
``x-amz-function-error``, so the Step Functions interpreter raises the same error as on AWS
and ``Catch``/``Retry`` see the handler's error type and message. Functions without a
registered handler keep moto's behaviour.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from synapse_pipelines.local.moto_internals import ORIGINALS

LambdaHandler = Callable[[Any, Any], Any]

_LAMBDA_HANDLERS: dict[str, LambdaHandler] = {}
# os.environ is process-wide: one in-process Lambda at a time sees its function's environment
_LAMBDA_LOCK = threading.RLock()


def register_lambda_handler(function_name: str, handler: LambdaHandler) -> None:
    """Make invocations of ``function_name`` call ``handler(event, context)`` in-process."""
    _LAMBDA_HANDLERS[function_name] = handler


def unregister_lambda_handler(function_name: str) -> None:
    _LAMBDA_HANDLERS.pop(function_name, None)


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers (and powertools) read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    timeout_s: int = 900
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


@contextlib.contextmanager
def _overlay_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def lambda_invoke(
    self: Any,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> str | bytes | None:
    """Replaces ``LambdaSimpleBackend.invoke``: run the registered handler in-process."""
    fn = self.get_function(function_name, qualifier)  # resolves names, ARNs, versions
    handler = _LAMBDA_HANDLERS.get(fn.function_name)
    if handler is None:  # not ours: keep moto's echo behaviour
        return ORIGINALS["lambda.invoke"](
            self, function_name, qualifier, body, headers, response_headers
        )
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    event = json.loads(body) if body else {}
    context = LambdaContext(
        function_name=fn.function_name,
        invoked_function_arn=fn.function_arn,
        memory_limit_in_mb=int(fn.memory_size or 128),
        log_group_name=f"/aws/lambda/{fn.function_name}",
        log_stream_name=f"local/{uuid.uuid4().hex}",
        timeout_s=int(fn.timeout or 900),
    )
    env = {str(k): str(v) for k, v in (fn.environment_vars or {}).items()}
    env.update(
        AWS_LAMBDA_FUNCTION_NAME=fn.function_name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(context.memory_limit_in_mb),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
    )
    with _LAMBDA_LOCK, _overlay_environ(env):
        try:
            result = handler(event, context)
            payload = json.dumps(result)
        except Exception as exc:
            # the shape the Lambda runtime returns for an unhandled exception; Step Functions
            # takes errorType as the error name and this whole JSON as the cause
            if isinstance(exc, TypeError) and "JSON serializable" in str(exc):
                error_type, message = "Runtime.MarshalError", f"Unable to marshal response: {exc}"
            else:
                error_type, message = type(exc).__name__, str(exc)
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(
                {
                    "errorMessage": message,
                    "errorType": error_type,
                    "requestId": context.aws_request_id,
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }
            )
    return payload.encode("utf-8")
