"""workflow.execution_history: the one reading of an execution's history, on real histories
(the ASL run by moto's interpreter) and on AWS-shaped ones moto does not produce (a retried
Task; the Distributed Map failure below is copied from a local blockwise run's history)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fixtures.histories import (
    FAILED_BRANCH_THEN_STOPPED,
    PARALLEL_MAP_FAIL,
    history_event,
)
from moto import mock_aws

from synapse_pipelines.workflow.execution_history import (
    HistoryReader,
    ProgressEvent,
    execution_steps,
    read_history,
)
from synapse_pipelines.workflow.runs import failure_notice_of, history


@pytest.fixture
def sfn(aws_env: None) -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions")


def _run(
    sfn: Any, definition: dict[str, Any], data: dict[str, Any], *, stop_in: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Run ``definition`` in moto (stopping it once it has entered ``stop_in``); its status
    and history."""
    machine = sfn.create_state_machine(
        name="history",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/states",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="run", input=json.dumps(data))[
        "executionArn"
    ]
    deadline = time.monotonic() + 60
    while (status := sfn.describe_execution(executionArn=arn)["status"]) == "RUNNING":
        assert time.monotonic() < deadline
        entered = [visit.name for visit in read_history(history(sfn, arn)).visits]
        if stop_in is not None and stop_in in entered:
            sfn.stop_execution(executionArn=arn, error="Stopped", cause="by the test")
        time.sleep(0.05)
    return status, history(sfn, arn)


def _progress(events: list[dict[str, Any]]) -> list[ProgressEvent]:
    reader = HistoryReader()
    return [p for event in events for p in reader.feed(event)]


def test_a_real_history_pairs_branches_iterations_and_keeps_the_failure_and_its_cause(
    sfn: Any,
) -> None:
    status, events = _run(sfn, PARALLEL_MAP_FAIL, {"items": [1, 2]})
    assert status == "FAILED"
    reader = read_history(events)
    visits = {(v.name, i): v for i, v in enumerate(reader.visits)}
    names = [name for name, _ in visits]
    # the two branches start together: which is entered first is up to the scheduler (B1
    # came first once on a loaded host), so their first states are compared as a set
    assert names[0] == "P" and sorted(names[1:3]) == ["A1", "B1"]
    assert names[3:] == ["A2", "M", "I", "I", "T", "Failed"]
    by_name = {v.name: v for v in reader.visits}
    # B1 exits while A1 waits: each exit closed its own state, the Parallel closes last
    assert by_name["A1"].seconds() >= 1.0
    assert by_name["B1"].exited_at < by_name["A1"].exited_at
    assert by_name["P"].exited_at >= by_name["A2"].exited_at
    assert [v.open for v in reader.visits if v.name == "I"] == [False] * 2
    task = by_name["T"]
    assert task.failed and not task.open and task.error == "SNS.NotFoundException"
    assert task.cause and "does not exist" in task.cause
    assert by_name["Failed"].open  # a Fail state never exits
    assert execution_steps(events, status) == [
        {"step": name, "state": "failed" if name in ("T", "Failed") else "done"} for name in names
    ]
    lines = [(p.kind, p.state, p.detail) for p in _progress(events) if p.kind != "entered"]
    assert ("error", "T", "SNS.NotFoundException") in lines
    assert ("failed", "T", "SNS.NotFoundException") in lines
    assert lines[-1] == ("failed", "execution", "E")
    assert [s for kind, s, _ in lines if kind == "succeeded"] == [
        "B1", "A1", "A2", "P", "I", "I", "M",
    ]  # fmt: skip
    assert reader.step_names() == ["P", "M", "T"]
    seconds = reader.step_seconds()
    assert seconds["I"] == pytest.approx(sum(v.seconds() for v in reader.visits if v.name == "I"))
    assert seconds["P"] >= seconds["A1"]


def test_a_failed_branch_fails_its_parallel_and_a_stop_leaves_the_rest_cancelled(
    sfn: Any,
) -> None:
    """moto: the branch's TaskFailed, then ParallelStateFailed (no error of its own, chained
    to the branch's event), the Parallel's exit into its Catch; the stop ends the run in C."""
    status, events = _run(sfn, FAILED_BRANCH_THEN_STOPPED, {}, stop_in="C")
    assert status == "ABORTED"
    reader = read_history(events)
    parallel = reader.visits[0]
    assert parallel.name == "P" and parallel.failed and not parallel.open
    assert parallel.error == "SNS.NotFoundException"  # the branch's, which failed it
    steps = execution_steps(events, status)
    assert steps[0] == {"step": "P", "state": "failed"}
    # W and T start their branches together, so either may come first (T did once in CI
    # on a loaded host): the pair is compared without its order
    assert sorted(steps[1:3], key=lambda s: s["step"]) == [
        {"step": "T", "state": "failed"},
        {"step": "W", "state": "cancelled"},  # its Parallel ended while it waited
    ]
    assert steps[3:] == [{"step": "C", "state": "cancelled"}]
    lines = [(p.kind, p.state, p.detail) for p in _progress(events) if p.kind != "entered"]
    assert lines[:2] == [
        ("error", "T", "SNS.NotFoundException"),
        ("failed", "P", "SNS.NotFoundException"),  # was "succeeded": its Catch took it
    ]
    assert lines[-1][:2] == ("failed", "execution")


def test_interleaved_parallel_branches_are_attributed_by_previous_event_id() -> None:
    events = [
        history_event(
            1, 0, "ParallelStateEntered", 0, stateEnteredEventDetails={"name": "Publish"}
        ),
        history_event(
            2, 1, "TaskStateEntered", 0, stateEnteredEventDetails={"name": "PublishToBoss"}
        ),
        history_event(
            3, 1, "TaskStateEntered", 0, stateEnteredEventDetails={"name": "PublishToS3"}
        ),
        history_event(4, 2, "TaskScheduled", 0.1, taskScheduledEventDetails={}),
        history_event(5, 3, "TaskScheduled", 0.1, taskScheduledEventDetails={}),
        history_event(6, 4, "TaskStarted", 0.2, taskStartedEventDetails={}),
        history_event(
            7, 6, "TaskSubmitted", 0.3, taskSubmittedEventDetails={"output": '{"JobId": "job-1"}'}
        ),
        history_event(8, 5, "TaskFailed", 1.0, taskFailedEventDetails={"error": "BossError"}),
        history_event(
            9, 8, "TaskStateExited", 1.0, stateExitedEventDetails={"name": "PublishToS3"}
        ),
        history_event(10, 7, "TaskSucceeded", 4.0, taskSucceededEventDetails={}),
        history_event(
            11, 10, "TaskStateExited", 4.0, stateExitedEventDetails={"name": "PublishToBoss"}
        ),
    ]
    summary = [(p.kind, p.state, p.seconds, p.detail) for p in _progress(events)]
    assert [s for s in summary if s[0] != "entered"] == [
        ("job", "PublishToBoss", None, "job-1"),
        ("error", "PublishToS3", None, "BossError"),
        ("failed", "PublishToS3", 1.0, "BossError"),
        ("succeeded", "PublishToBoss", 4.0, None),
    ]


def test_a_task_retried_then_succeeded_is_done_not_failed() -> None:
    """One visit (a Retry does not re-enter the state): the attempt's failure is shown as it
    happens, then the state succeeds. The local progress said "failed" here."""
    events = [
        history_event(1, 0, "TaskStateEntered", 0, stateEnteredEventDetails={"name": "Detect"}),
        history_event(2, 1, "TaskScheduled", 0, taskScheduledEventDetails={}),
        history_event(3, 2, "TaskStarted", 0, taskStartedEventDetails={}),
        history_event(
            4, 3, "TaskFailed", 1, taskFailedEventDetails={"error": "Batch.ServerException"}
        ),
        history_event(5, 4, "TaskScheduled", 3, taskScheduledEventDetails={}),
        history_event(6, 5, "TaskStarted", 3, taskStartedEventDetails={}),
        history_event(7, 6, "TaskSucceeded", 9, taskSucceededEventDetails={"output": "{}"}),
        history_event(8, 7, "TaskStateExited", 9, stateExitedEventDetails={"name": "Detect"}),
    ]
    lines = [(p.kind, p.state, p.seconds, p.detail) for p in _progress(events)]
    assert lines[1:] == [
        ("error", "Detect", None, "Batch.ServerException"),
        ("succeeded", "Detect", 9.0, None),
    ]
    assert execution_steps(events, "SUCCEEDED") == [{"step": "Detect", "state": "done"}]


#: A Distributed Map whose items failed beyond its tolerance, caught (a local blockwise run's
#: history: MapRunFailed has the error and cause, MapStateFailed none).
MAP_RUN_FAILED = [
    history_event(
        29, 28, "MapStateEntered", 19.0, stateEnteredEventDetails={"name": "BlockwiseLabel"}
    ),
    history_event(30, 29, "MapStateStarted", 19.0, mapStateStartedEventDetails={"length": 0}),
    history_event(
        31, 30, "MapRunStarted", 19.0, mapRunStartedEventDetails={"mapRunArn": "arn:run"}
    ),
    history_event(
        32,
        31,
        "MapRunFailed",
        27.1,
        mapRunFailedEventDetails={
            "error": "States.ExceedToleratedFailureThreshold",
            "cause": "The specified tolerated failure threshold was exceeded",
        },
    ),
    history_event(33, 32, "MapStateFailed", 27.1),
    history_event(
        34, 33, "MapStateExited", 27.1, stateExitedEventDetails={"name": "BlockwiseLabel"}
    ),
    history_event(
        35, 34, "PassStateEntered", 27.1, stateEnteredEventDetails={"name": "DetectFailed"}
    ),
]


def test_a_failed_distributed_map_is_failed_with_its_runs_error() -> None:
    """The local progress showed it as succeeded ("✓ BlockwiseLabel")."""
    lines = [(p.kind, p.state, p.detail) for p in _progress(MAP_RUN_FAILED)]
    assert lines[1:3] == [
        ("error", "BlockwiseLabel", "States.ExceedToleratedFailureThreshold"),
        ("failed", "BlockwiseLabel", "States.ExceedToleratedFailureThreshold"),
    ]
    (label, _) = read_history(MAP_RUN_FAILED).visits
    assert label.cause == "The specified tolerated failure threshold was exceeded"
    assert label.seconds() == pytest.approx(8.1)
    assert execution_steps(MAP_RUN_FAILED, "RUNNING") == [
        {"step": "BlockwiseLabel", "state": "failed"},
        {"step": "DetectFailed", "state": "running"},
    ]


def test_an_uncaught_failure_is_reported_at_the_execution_end() -> None:
    events = [
        history_event(1, 0, "TaskStateEntered", 0, stateEnteredEventDetails={"name": "Detect"}),
        history_event(
            2, 1, "TaskFailed", 2.5, taskFailedEventDetails={"error": "States.TaskFailed"}
        ),
        history_event(3, 2, "ExecutionFailed", 2.6, executionFailedEventDetails={"error": "X"}),
    ]
    failed = [(p.state, p.seconds, p.detail) for p in _progress(events) if p.kind == "failed"]
    assert failed == [("Detect", 2.6, "States.TaskFailed"), ("execution", None, "X")]
    assert read_history(events).step_seconds() == {"Detect": 2.6}


def test_the_failure_notice_is_read_from_describe_failures_exit() -> None:
    notice = {"error": "DetectionError", "detail": {"step": "Detect"}}
    output = json.dumps({"failure_notice": notice})
    events = [
        history_event(
            1, 0, "TaskStateEntered", 0, stateEnteredEventDetails={"name": "DescribeFailure"}
        ),
        history_event(2, 1, "TaskFailed", 1, taskFailedEventDetails={"error": "Lambda.Unknown"}),
        history_event(
            3, 2, "TaskStateExited", 1, stateExitedEventDetails={"name": "DescribeFailure"}
        ),
        history_event(4, 3, "PassStateEntered", 1, stateEnteredEventDetails={"name": "Fallback"}),
    ]
    assert failure_notice_of(events) == {}  # its output holds no notice
    fallback = {"name": "DescribeFailureFallback", "output": output}
    events[3:] = [
        history_event(
            4, 3, "PassStateEntered", 1, stateEnteredEventDetails={"name": fallback["name"]}
        ),
        history_event(5, 4, "PassStateExited", 1, stateExitedEventDetails=fallback),
    ]
    assert failure_notice_of(events) == notice
    assert failure_notice_of(events[:1]) is None  # not exited yet
