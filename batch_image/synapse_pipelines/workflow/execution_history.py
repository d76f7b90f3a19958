"""How an execution's history is read: the one reading of GetExecutionHistory's events, for
``status`` and ``submit --wait`` (:func:`execution_steps`), the local runtime's progress and
time per step (:class:`HistoryReader`, :class:`ProgressEvent`) and the failure notice
(:meth:`HistoryReader.last_exit`).

A history is a flat list of events, but the states in it nest and overlap: a Parallel's
branches run at the same time (their entered and exited events interleave) and a Map's
iterations too, and the Parallel or Map itself exits only after all of them. Each entry into a
state is a :class:`StateVisit`. An event belongs to the visit it chains back to through
``previousEventId`` (``TaskScheduled`` -> ``TaskStarted`` -> ``TaskFailed`` -> ``TaskStateExited``
of one visit), when that visit is still open and of the event's kind; otherwise an exited
event closes the last open visit *of its own name* (``stateExitedEventDetails.name``), never
simply the last one entered, and a Map's or Parallel's failure (``MapStateFailed``, whose
``previousEventId`` is the failed branch's event) the last open visit of that type.

Failures are read from the events that report them (``TaskFailed``, ``LambdaFunctionFailed``,
``MapRunFailed``...), with their error and cause; a ``MapStateFailed`` or ``ParallelStateFailed``
carries neither, so it keeps the failure reported just before it (the Map Run's, the
branch's). A state that failed and was caught still exits (its Catch moves on): it stays
failed; one that was retried and then succeeded is done.

Some states never exit: a Fail state ends the execution (no ``FailStateExited``), and a
state running when the execution failed, timed out or was stopped is left open. In a
finished execution nothing is "running": a Fail state is "failed", an open state of a
succeeded run "done", of a cancelled run "cancelled" (the word ``list`` uses), of a failed
or timed-out run "stopped" (unless it reported its own failure: "failed").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
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
        "MapRunFailed",
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
#: Events that end an execution other than by success.
EXECUTION_FAILURES = frozenset({"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"})

#: How an open state of a finished execution is shown, by the execution's status.
LEFT_OPEN = {"SUCCEEDED": DONE, "ABORTED": CANCELLED, "FAILED": STOPPED, "TIMED_OUT": STOPPED}

#: The state types that do work: a per-step time table lists these.
STEP_TYPES = frozenset({"Task", "Map", "Parallel"})


@dataclass(frozen=True)
class ProgressEvent:
    """One step of progress, derived from the execution history."""

    # "entered" | "succeeded" | "failed" (time spent, error) | "error" (a task attempt failed;
    # the state may retry or catch it) | "job" (Batch job submitted: detail is the job id)
    kind: str
    state: str
    timestamp: datetime | None  # None only for an event without one (never from AWS or moto)
    seconds: float | None = None  # for succeeded/failed: time spent in the state
    detail: str | None = None  # error name for failures, job id for "job"
    # the state's type as the history names it ("Task", "Map", "Parallel", "Choice", "Pass"...)
    state_type: str | None = None

    @property
    def is_step(self) -> bool:
        """A state that does work (a Task, Map or Parallel), not a Choice, Pass or end."""
        return self.state_type in STEP_TYPES


@dataclass(eq=False)
class StateVisit:
    """One entry into a state (a retried Task is one visit; a Map's iterations are one each)."""

    name: str
    type: str  # as the entered event names it: "Task", "Map", "Parallel", "Choice", "Fail"...
    entered_at: datetime | None
    exited_at: datetime | None = None
    open: bool = True
    failed: bool = False  # a failure was reported and no success after it
    error: str | None = None
    cause: str | None = None
    output: str | None = None  # the exited event's output

    def seconds(self, until: datetime | None = None) -> float | None:
        """Time in the state: to its exit, or to ``until`` while it is open."""
        end = self.exited_at or until
        if end is None or self.entered_at is None:
            return None
        return (end - self.entered_at).total_seconds()


def _event_state_type(event_type: str) -> str | None:
    """The type of state an event (not an entered or exited one) is about: ``TaskFailed``,
    ``LambdaFunctionFailed`` -> ``Task`` (a task's own events belong to a Task state),
    ``MapRunFailed`` -> ``Map``; None for an execution's events."""
    for kind in ("Map", "Parallel"):
        if event_type.startswith(kind):
            return kind
    if event_type.startswith(("Task", "LambdaFunction", "Activity")):
        return "Task"
    return None


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event's ``...EventDetails`` (each event has at most one), or {}."""
    return next((v for k, v in event.items() if k.endswith("EventDetails")), None) or {}


class HistoryReader:
    """Reads a history event by event (:meth:`feed`, as it grows) or whole (:func:`read_history`)
    into :attr:`visits`, in the order the states were entered (see the module docstring)."""

    def __init__(self) -> None:
        self.visits: list[StateVisit] = []
        self.ended_at: datetime | None = None  # when the execution failed, timed out or stopped
        self._visit_of_event: dict[Any, StateVisit] = {}  # event id -> the visit it belongs to
        self._last_failure: tuple[str | None, str | None] = (None, None)  # (error, cause)

    def feed(self, event: Mapping[str, Any]) -> list[ProgressEvent]:
        """Read the next event; the progress it makes."""
        kind = str(event["type"])
        ts: datetime | None = event.get("timestamp")
        if kind.endswith("StateEntered"):
            name = str(event["stateEnteredEventDetails"]["name"])
            visit = StateVisit(name, kind.removesuffix("StateEntered"), ts)
            self.visits.append(visit)
            self._remember(event, visit)
            return [ProgressEvent("entered", name, ts, state_type=visit.type)]
        if kind in EXECUTION_FAILURES:
            return self._execution_failed(ts, _details(event).get("error"))
        visit = self._owner(event, kind)
        if visit is None:
            return []
        self._remember(event, visit)
        details = _details(event)
        if kind.endswith("StateExited"):
            visit.open, visit.exited_at, visit.output = False, ts, details.get("output")
            outcome, error = ("failed", visit.error) if visit.failed else ("succeeded", None)
            return [ProgressEvent(outcome, visit.name, ts, visit.seconds(), error, visit.type)]
        if kind in FAILURE_EVENTS:
            return self._failed(visit, ts, details)
        if kind in SUCCESS_EVENTS:
            visit.failed, visit.error, visit.cause = False, None, None
        elif kind == "TaskSubmitted":
            job_id = json.loads(details.get("output") or "{}").get("JobId")
            if job_id:
                return [ProgressEvent("job", visit.name, ts, detail=str(job_id))]
        return []

    def _failed(
        self, visit: StateVisit, ts: datetime | None, details: Mapping[str, Any]
    ) -> list[ProgressEvent]:
        own = "error" in details or "cause" in details
        if own:
            self._last_failure = (details.get("error"), details.get("cause"))
        visit.failed = True
        visit.error, visit.cause = self._last_failure
        if not own:  # a Map's or Parallel's failure: its run's or branch's was reported already
            return []
        return [ProgressEvent("error", visit.name, ts, detail=visit.error)]

    def _execution_failed(self, ts: datetime | None, error: str | None) -> list[ProgressEvent]:
        """The failures nobody caught (their states never exit), then the execution's."""
        self.ended_at = ts
        uncaught = [
            ProgressEvent("failed", v.name, ts, v.seconds(ts), v.error, v.type)
            for v in self.visits
            if v.open and v.failed
        ]
        return [*uncaught, ProgressEvent("failed", "execution", ts, None, error)]

    def _remember(self, event: Mapping[str, Any], visit: StateVisit) -> None:
        if event.get("id") is not None:
            self._visit_of_event[event["id"]] = visit

    def _owner(self, event: Mapping[str, Any], kind: str) -> StateVisit | None:
        """The open visit an event (not an entered one) belongs to, or None."""
        chained = self._visit_of_event.get(event.get("previousEventId"))
        if kind.endswith("StateExited"):
            name = (event.get("stateExitedEventDetails") or {}).get("name")
            if chained is not None and chained.open and chained.name == name:
                return chained
            return self._last_open(lambda v: name is None or v.name == name)
        state_type = _event_state_type(kind)
        if state_type is None:
            return None
        if chained is not None and chained.open and chained.type == state_type:
            return chained
        if kind in FAILURE_EVENTS or kind in SUCCESS_EVENTS or state_type == "Task":
            return self._last_open(lambda v: v.type == state_type)
        return None

    def _last_open(self, matches: Callable[[StateVisit], bool]) -> StateVisit | None:
        return next((v for v in reversed(self.visits) if v.open and matches(v)), None)

    # -- what the history says ----------------------------------------------------------------

    def steps(self, status: str) -> list[dict[str, str]]:
        """Each state entered, in order, with how it ended, for an execution in ``status``:
        ``{"step": name, "state": "running" | "done" | "failed" | "stopped" | "cancelled"}``."""
        return [{"step": v.name, "state": _shown(v, status)} for v in self.visits]

    def step_seconds(self) -> dict[str, float]:
        """Time per state name, summed over its visits (a retried Task is one visit; a Map's
        iterations are one each): to each exit, or for a failure nobody caught, to the end."""
        totals: dict[str, float] = {}
        for v in self.visits:
            seconds = v.seconds() if not v.open else v.seconds(self.ended_at) if v.failed else None
            if seconds is not None:
                totals[v.name] = totals.get(v.name, 0.0) + seconds
        return totals

    def step_names(self) -> list[str]:
        """The Task, Map and Parallel states entered, each once, in the order first entered."""
        return list(dict.fromkeys(v.name for v in self.visits if v.type in STEP_TYPES))

    def last_exit(self, names: Iterable[str]) -> StateVisit | None:
        """The last visit to one of ``names`` that exited (its ``output`` is the state's)."""
        wanted = set(names)
        return next((v for v in reversed(self.visits) if not v.open and v.name in wanted), None)


def read_history(events: Iterable[Mapping[str, Any]]) -> HistoryReader:
    """A whole history, read."""
    reader = HistoryReader()
    for event in events:
        reader.feed(event)
    return reader


def execution_steps(events: Iterable[Mapping[str, Any]], status: str) -> list[dict[str, str]]:
    """Each state entered, in history order, with how it ended (:meth:`HistoryReader.steps`)."""
    return read_history(events).steps(status)


def _shown(visit: StateVisit, status: str) -> str:
    if visit.failed or (visit.type == "Fail" and status in FINISHED):
        return FAILED
    if not visit.open:
        return DONE
    return LEFT_OPEN.get(status, RUNNING)
