"""The steps of an execution, read from its history: each state entered, in order, and how it
ended (``status``, ``submit --wait``).

A history is a flat list of events, but the states in it nest and overlap: a Parallel's
branches run at the same time (their entered and exited events interleave) and a Map's
iterations too, and the Parallel or Map itself exits only after all of them. So an exited
event closes the open entry *of its own name* (``stateExitedEventDetails.name``), never
simply the last one entered. Failures are read from the events that report them: a task's
(``TaskFailed``, ``LambdaFunctionFailed``, ...) belongs to the Task state it chains back to
through ``previousEventId``; a Map's or Parallel's (``MapStateFailed``) to the open state of
that type. A state that failed and was caught still exits (its Catch moves on): it stays
"failed"; one that was retried and then succeeded is "done".

Some states never exit: a Fail state ends the execution (no ``FailStateExited``), and a
state running when the execution failed, timed out or was stopped is left open. In a
finished execution nothing is "running": a Fail state is "failed", an open state of a
succeeded run "done", of a cancelled run "cancelled" (the word ``list`` uses), of a failed
or timed-out run "stopped" (unless it reported its own failure: "failed").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RUNNING = "running"
DONE = "done"
FAILED = "failed"
STOPPED = "stopped"
CANCELLED = "cancelled"

#: Execution states that end an execution.
FINISHED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})

#: Events that report a failure of the state they belong to.
FAILURE_EVENTS = frozenset(
    {
        "TaskFailed",
        "TaskTimedOut",
        "TaskStartFailed",
        "TaskSubmitFailed",
        "LambdaFunctionFailed",
        "LambdaFunctionTimedOut",
        "LambdaFunctionStartFailed",
        "LambdaFunctionScheduleFailed",
        "ActivityFailed",
        "ActivityTimedOut",
        "ActivityScheduleFailed",
        "MapStateFailed",
        "MapStateAborted",
        "ParallelStateFailed",
        "ParallelStateAborted",
    }
)
#: Events that report a success (after a retried failure, the state is fine again).
SUCCESS_EVENTS = frozenset(
    {
        "TaskSucceeded",
        "LambdaFunctionSucceeded",
        "ActivitySucceeded",
        "MapStateSucceeded",
        "ParallelStateSucceeded",
    }
)

#: How an open state of a finished execution is shown, by the execution's status.
LEFT_OPEN = {"SUCCEEDED": DONE, "ABORTED": CANCELLED, "FAILED": STOPPED, "TIMED_OUT": STOPPED}


def _state_type(event_type: str) -> str:
    """``TaskStateEntered`` -> ``Task``; ``LambdaFunctionFailed`` -> ``Task`` (a task's own
    events belong to a Task state); ``MapStateFailed`` -> ``Map``."""
    for kind in ("Map", "Parallel"):
        if event_type.startswith(kind + "State"):
            return kind
    if event_type.startswith(("Task", "LambdaFunction", "Activity")):
        return "Task"
    return event_type.split("State", 1)[0]


class _Entry:
    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.open = True
        self.failed = False


def execution_steps(events: Iterable[Mapping[str, Any]], status: str) -> list[dict[str, str]]:
    """Each state entered, in history order, with how it ended (see the module docstring):
    ``{"step": name, "state": "running" | "done" | "failed" | "stopped" | "cancelled"}``."""
    entries: list[_Entry] = []
    entry_of_event: dict[Any, _Entry] = {}  # event id -> the state entry it belongs to
    for event in events:
        kind = str(event["type"])
        entry: _Entry | None = None
        if kind.endswith("StateEntered"):
            entry = _Entry(str(event["stateEnteredEventDetails"]["name"]), _state_type(kind))
            entries.append(entry)
        else:
            entry = _owner(event, entries, entry_of_event)
            if entry is not None and kind.endswith("StateExited"):
                entry.open = False
            elif entry is not None and kind in FAILURE_EVENTS:
                entry.failed = True
            elif entry is not None and kind in SUCCESS_EVENTS:
                entry.failed = False
        if entry is not None and event.get("id") is not None:
            entry_of_event[event["id"]] = entry
    return [{"step": e.name, "state": _shown(e, status)} for e in entries]


def _owner(
    event: Mapping[str, Any], entries: list[_Entry], entry_of_event: Mapping[Any, _Entry]
) -> _Entry | None:
    """The open state entry an event (not an entered one) belongs to, or None."""
    kind = str(event["type"])
    if kind.endswith("StateExited"):
        name = (event.get("stateExitedEventDetails") or {}).get("name")
        return _last_open(entries, lambda e: name is None or e.name == name)
    state_type = _state_type(kind)
    if state_type == "Task":  # TaskScheduled -> TaskStarted -> TaskFailed chain back to it
        chained = entry_of_event.get(event.get("previousEventId"))
        if chained is not None and chained.open and chained.kind == "Task":
            return chained
    if kind in FAILURE_EVENTS or kind in SUCCESS_EVENTS or state_type == "Task":
        return _last_open(entries, lambda e: e.kind == state_type)
    return None


def _last_open(entries: list[_Entry], matches: Any) -> _Entry | None:
    for entry in reversed(entries):
        if entry.open and matches(entry):
            return entry
    return None


def _shown(entry: _Entry, status: str) -> str:
    if entry.failed or (entry.kind == "Fail" and status in FINISHED):
        return FAILED
    if not entry.open:
        return DONE
    return LEFT_OPEN.get(status, RUNNING)
