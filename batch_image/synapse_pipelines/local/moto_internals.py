"""The guard on moto's internals: the version and the exact signatures this package patches.

moto 5.2.5 is pinned (``pyproject.toml``) because the local runtime replaces six of its
internals (:mod:`~synapse_pipelines.local.moto_lambda`, :mod:`~synapse_pipelines.local.moto_batch`,
:mod:`~synapse_pipelines.local.moto_stepfunctions`, :mod:`~synapse_pipelines.local.moto_events`;
installed by :mod:`~synapse_pipelines.local.moto_server`). Owns :func:`internals` (what is
replaced, with the parameters it was written against), :func:`check_moto_internals` (run on
every install and by ``tests/test_moto_compat.py``: an upgrade fails loudly at start-up
instead of silently echoing payloads) and :data:`ORIGINALS`, moto's own methods while the
patches are installed (a patch hands what is not ours back to them).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import moto

#: the moto version every patch was checked against (pyproject pins it)
SUPPORTED_MOTO_VERSION = "5.2.5"

#: moto's own methods while the patches are installed: internals() key -> method
ORIGINALS: dict[str, Callable[..., Any]] = {}


class MotoCompatError(RuntimeError):
    """moto's internals differ from what this package patches (upgrade without re-checking)."""


def internals() -> dict[str, tuple[Any, str, list[str]]]:
    """name -> (owner class, attribute, expected positional parameter names)."""
    # imported here, inside check_moto_internals' ImportError guard: a moved module becomes
    # a MotoCompatError naming it
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.events.models import Rule
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch as sfn_batch,
    )
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    return {
        "lambda.invoke": (
            LambdaSimpleBackend,
            "invoke",
            ["self", "function_name", "qualifier", "body", "headers", "response_headers"],
        ),
        "batch.mark_finished": (
            BatchSimpleBackend,
            "_mark_job_as_finished",
            ["self", "include_start_attempt", "job"],
        ),
        "sfn.batch.normalise_parameters": (
            sfn_batch.StateTaskServiceBatch,
            "_normalise_parameters",
            ["self", "parameters", "boto_service_name", "service_action_name"],
        ),
        "sfn.batch.normalise_response": (
            sfn_batch.StateTaskServiceBatch,
            "_normalise_response",
            ["self", "response", "boto_service_name", "service_action_name"],
        ),
        "events.send_to_targets": (
            Rule,
            "send_to_targets",
            ["self", "original_event", "transform_input"],
        ),
        "sfn.start_execution": (
            StepFunctionsParserBackend,
            "start_execution",
            ["self", "state_machine_arn", "name", "execution_input", "trace_header"],
        ),
    }


def check_moto_internals() -> None:
    """Raise :class:`MotoCompatError` if anything patched changed in the installed moto."""
    problems: list[str] = []
    if moto.__version__ != SUPPORTED_MOTO_VERSION:
        problems.append(
            f"moto {moto.__version__} is installed; the local runtime was checked against "
            f"{SUPPORTED_MOTO_VERSION} (pyproject pins it)"
        )
    try:
        table = internals()
    except ImportError as exc:  # a module moved
        raise MotoCompatError(f"moto internals moved: {exc}") from exc
    for key, (owner, attr, params) in table.items():
        fn = ORIGINALS.get(key) or getattr(owner, attr, None)
        if fn is None:
            problems.append(f"{owner.__qualname__}.{attr} no longer exists ({key})")
            continue
        got = list(inspect.signature(fn).parameters)
        if got != params:
            problems.append(f"{owner.__qualname__}.{attr}{tuple(got)} != expected {tuple(params)}")
    # attributes the patches read or write on moto objects (imported here for the same reason)
    from moto.batch.models import Job, JobDefinition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (  # noqa: E501
        StateTaskService,
    )

    for owner, attr in [
        (Job, "_mark_stopped"),
        (Job, "_add_parameters_to_command"),
        (Job, "_get_container_property"),
        (Job, "_get_attempt_duration"),
        (JobDefinition, "_get_resource_requirement"),
        (StateTaskService, "_to_boto_request"),
        (StateTaskService, "_from_boto_response"),
        (StateTaskService, "_get_boto_service_name"),
        (StateTaskService, "_get_boto_service_action"),
    ]:
        if not hasattr(owner, attr):
            problems.append(f"{owner.__qualname__}.{attr} no longer exists")
    if problems:
        raise MotoCompatError("moto internals changed:\n- " + "\n- ".join(problems))
