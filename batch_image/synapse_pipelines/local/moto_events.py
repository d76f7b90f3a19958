"""EventBridge in moto: rules deliver to Step Functions and Lambda targets.

moto's ``Rule.send_to_targets`` raises NotImplementedError for Step Functions targets. Its
replacement, :func:`events_send_to_targets`, matches with moto's own ``EventPattern`` (as
before), then starts a *named* execution (named after the event id, as EventBridge does) or
invokes the Lambda asynchronously, with the target's ``Input``/``InputPath``/
``InputTransformer`` or the whole event. Other targets go to moto's code. A failed
asynchronous invocation is not the sender's: it is kept in :data:`ASYNC_FAILURES` for callers
to show, as AWS keeps it in the function's logs.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from jsonpath_ng.ext import parse as parse_jsonpath
from moto.awslambda.utils import get_backend as lambda_backend
from moto.events.utils import EventTemplateParser
from moto.stepfunctions.responses import get_backend as stepfunctions_backend
from moto.utilities.arns import parse_arn

from synapse_pipelines.local.moto_internals import ORIGINALS


def _target_input(target: Mapping[str, Any], event: dict[str, Any]) -> Any:
    """The input a target receives: Input, InputPath, InputTransformer or the whole event."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        found = [m.value for m in parse_jsonpath(target["InputPath"]).find(event)]
        return found[0] if found else {}
    if "InputTransformer" in target:
        transformer = target["InputTransformer"]
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
    return event


def start_execution_for_event(target_arn: str, event: dict[str, Any], payload: Any) -> str:
    """StartExecution on a rule target, named after the event id as EventBridge does."""
    arn = parse_arn(target_arn)
    backend = stepfunctions_backend(arn.account, arn.region)
    text = payload if isinstance(payload, str) else json.dumps(payload)
    execution = backend.start_execution(target_arn, str(event.get("id") or uuid.uuid4()), text)
    return execution.execution_arn


#: failed asynchronous (EventBridge) Lambda invocations: {"function", "payload"}, newest last
ASYNC_FAILURES: list[dict[str, Any]] = []
_ASYNC_LOCK = threading.Lock()


def invoke_lambda_for_event(target_arn: str, payload: Any) -> None:
    """Asynchronous ("Event") invocation of a Lambda target, as EventBridge does."""
    arn = parse_arn(target_arn)
    backend = lambda_backend(arn.account, arn.region)
    body = payload if isinstance(payload, str) else json.dumps(payload)

    def _invoke() -> None:
        # an async invocation's failure is not the sender's; AWS keeps it in the function's
        # logs / failure destination - here in ASYNC_FAILURES, for callers to show
        headers: dict[str, str] = {}
        try:
            payload_out = backend.invoke(
                target_arn, None, body, {"X-Amz-Invocation-Type": "Event"}, headers
            )
        except Exception as exc:
            payload_out = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
            headers["x-amz-function-error"] = "Unhandled"
        if headers.get("x-amz-function-error"):
            text = payload_out.decode() if isinstance(payload_out, bytes) else str(payload_out)
            with _ASYNC_LOCK:
                ASYNC_FAILURES.append({"function": target_arn, "payload": json.loads(text)})
                del ASYNC_FAILURES[:-100]

    threading.Thread(target=_invoke, name="events-lambda-target", daemon=True).start()


#: target services this module delivers to (moto raises NotImplementedError for them)
_OUR_TARGETS = ("states", "lambda")


def events_send_to_targets(
    self: Any, original_event: dict[str, Any], transform_input: bool = True
) -> None:
    ours = [t for t in self.targets if parse_arn(t["Arn"]).service in _OUR_TARGETS]
    if not ours:
        return ORIGINALS["events.send_to_targets"](self, original_event, transform_input)
    if not self.event_pattern.matches_event(original_event):
        return None
    others = [t for t in self.targets if t not in ours]
    for target in ours:
        payload = _target_input(target, copy.deepcopy(original_event))
        if parse_arn(target["Arn"]).service == "states":
            start_execution_for_event(target["Arn"], original_event, payload)
        else:
            invoke_lambda_for_event(target["Arn"], payload)
    if others:  # moto's own handling for the other targets of the same rule
        saved = self.targets
        try:
            self.targets = others
            ORIGINALS["events.send_to_targets"](self, original_event, transform_input)
        finally:
            self.targets = saved
    return None
