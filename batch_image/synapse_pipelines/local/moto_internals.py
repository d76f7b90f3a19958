"""The guard on moto's internals: the version and the exact signatures this package patches.

moto 5.2.5 is pinned (``pyproject.toml``) because the local runtime replaces nine of its
methods (:mod:`~synapse_pipelines.local.moto_lambda`, :mod:`~synapse_pipelines.local.moto_batch`,
:mod:`~synapse_pipelines.local.moto_stepfunctions`, :mod:`~synapse_pipelines.local.moto_events`;
installed by :mod:`~synapse_pipelines.local.moto_server`). Owns :data:`PATCHED` (what is
replaced, with the parameters it was written against) and :data:`USED` (what the adapters
read or call), :func:`check_moto_internals` (run on every install and by
``tests/test_moto_compat_internals.py``: an upgrade fails loudly at start-up instead of
silently echoing payloads) and :data:`ORIGINALS`, moto's own methods while the patches are
installed (a patch hands what is not ours back to them). Internals are named by module path
and imported by :func:`internals`, so one that moved is reported as such rather than failing
an import.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import moto

#: the moto version every patch was checked against (pyproject pins it)
SUPPORTED_MOTO_VERSION = "5.2.5"

_SFN_TASKS = "moto.stepfunctions.parser.asl.component.state.exec.state_task.service"

#: what the adapters replace: key -> (module, class, method, its positional parameters)
PATCHED: dict[str, tuple[str, str, str, list[str]]] = {
    "lambda.invoke": (
        "moto.awslambda_simple.models",
        "LambdaSimpleBackend",
        "invoke",
        ["self", "function_name", "qualifier", "body", "headers", "response_headers"],
    ),
    "batch.mark_finished": (
        "moto.batch_simple.models",
        "BatchSimpleBackend",
        "_mark_job_as_finished",
        ["self", "include_start_attempt", "job"],
    ),
    "sfn.batch.normalise_parameters": (
        f"{_SFN_TASKS}.state_task_service_batch",
        "StateTaskServiceBatch",
        "_normalise_parameters",
        ["self", "parameters", "boto_service_name", "service_action_name"],
    ),
    "sfn.batch.normalise_response": (
        f"{_SFN_TASKS}.state_task_service_batch",
        "StateTaskServiceBatch",
        "_normalise_response",
        ["self", "response", "boto_service_name", "service_action_name"],
    ),
    "events.send_to_targets": (
        "moto.events.models",
        "Rule",
        "send_to_targets",
        ["self", "original_event", "transform_input"],
    ),
    "sfn.start_execution": (
        "moto.stepfunctions.parser.models",
        "StepFunctionsParserBackend",
        "start_execution",
        ["self", "state_machine_arn", "name", "execution_input", "trace_header"],
    ),
    "sfn.map_run": (
        "moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration."
        "distributed_iteration_component",
        "DistributedIterationComponent",
        "_map_run",
        ["self", "env", "eval_input"],
    ),
    "sfn.stop_execution": (
        "moto.stepfunctions.parser.models",
        "StepFunctionsParserBackend",
        "stop_execution",
        ["self", "execution_arn"],
    ),
    "sfn.fail.eval_state": (
        "moto.stepfunctions.parser.asl.component.state.fail.state_fail",
        "StateFail",
        "_eval_state",
        ["self", "env"],
    ),
}

#: what the adapters read or call on moto objects: (module, class, attribute)
USED: tuple[tuple[str, str, str], ...] = (
    ("moto.batch.models", "Job", "_mark_stopped"),
    ("moto.batch.models", "Job", "_add_parameters_to_command"),
    ("moto.batch.models", "Job", "_get_container_property"),
    ("moto.batch.models", "Job", "_get_attempt_duration"),
    ("moto.batch.models", "JobDefinition", "_get_resource_requirement"),
    (f"{_SFN_TASKS}.state_task_service", "StateTaskService", "_to_boto_request"),
    (f"{_SFN_TASKS}.state_task_service", "StateTaskService", "_from_boto_response"),
    (f"{_SFN_TASKS}.state_task_service", "StateTaskService", "_get_boto_service_name"),
    (f"{_SFN_TASKS}.state_task_service", "StateTaskService", "_get_boto_service_action"),
)

#: moto's own methods while the patches are installed: PATCHED key -> method
ORIGINALS: dict[str, Callable[..., Any]] = {}


class MotoCompatError(RuntimeError):
    """moto's internals differ from what this package patches (upgrade without re-checking)."""


def _class(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def internals() -> dict[str, tuple[Any, str, list[str]]]:
    """PATCHED key -> (owner class, attribute, expected positional parameter names).

    Raises ImportError or AttributeError when a module or class moved."""
    return {key: (_class(m, c), attr, params) for key, (m, c, attr, params) in PATCHED.items()}


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
        used = [(_class(m, c), attr) for m, c, attr in USED]
    except (ImportError, AttributeError) as exc:  # a module or class moved
        raise MotoCompatError(f"moto internals moved: {exc}") from exc
    for key, (owner, attr, params) in table.items():
        fn = ORIGINALS.get(key) or getattr(owner, attr, None)
        if fn is None:
            problems.append(f"{owner.__qualname__}.{attr} no longer exists ({key})")
            continue
        got = list(inspect.signature(fn).parameters)
        if got != params:
            problems.append(f"{owner.__qualname__}.{attr}{tuple(got)} != expected {tuple(params)}")
    for owner, attr in used:
        if not hasattr(owner, attr):
            problems.append(f"{owner.__qualname__}.{attr} no longer exists")
    if problems:
        raise MotoCompatError("moto internals changed:\n- " + "\n- ".join(problems))
