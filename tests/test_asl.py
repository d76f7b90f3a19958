"""Quality gates of the state machine definition (state_machines/synapse_detection.asl.json)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import REPO_ROOT
from synapse_pipelines.workflow import wiring as wf

NPM_HINT = "run `npm ci` in the repository root (installs the pinned asl-validator and aws-cdk)"


def _definition() -> dict[str, Any]:
    return json.loads(wf.ASL_PATH.read_text())


def _all_states(states: dict[str, Any]) -> dict[str, Any]:
    """Every state, including those inside Parallel branches and Map processors."""
    found = dict(states)
    for state in states.values():
        for branch in state.get("Branches", []):
            found.update(_all_states(branch["States"]))
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.update(_all_states(processor["States"]))
    return found


def _asl_validator() -> Path:
    binary = REPO_ROOT / "node_modules" / ".bin" / "asl-validator"
    if not binary.exists():
        pytest.fail(f"asl-validator is not installed: {NPM_HINT}")
    return binary


def test_asl_validator_accepts_the_definition() -> None:
    result = subprocess.run(
        [str(_asl_validator()), "--json-path", str(wf.ASL_PATH)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_asl_validator_rejects_a_dangling_next(tmp_path: Path) -> None:
    """The gate can fail: a state pointing at a missing state is refused."""
    broken = _definition()
    broken["States"]["Report"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run(
        [str(_asl_validator()), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0


def test_placeholders_are_exactly_the_declared_substitutions() -> None:
    used = wf.placeholders()
    declared = set(wf.SUBSTITUTION_NAMES)
    assert used <= declared, f"undeclared placeholders: {used - declared}"
    # ResultsBucket is declared for the blockwise branch (ItemReader/ResultWriter)
    assert declared - used <= {"ResultsBucket"}


def test_render_fills_everything_and_refuses_typos() -> None:
    values = {name: f"value-of-{name}" for name in wf.SUBSTITUTION_NAMES}
    rendered = wf.render_definition(values)
    assert "${" not in rendered
    assert "value-of-DetectJobDefinitionArn" in rendered
    json.loads(rendered)
    with pytest.raises(ValueError, match="missing"):
        wf.render_definition({k: v for k, v in values.items() if k != "JobQueueArn"})
    with pytest.raises(ValueError, match="unknown"):
        wf.render_definition({**values, "JobQueueARN": "x"})


def test_flow_and_failure_handling() -> None:
    asl = _definition()
    states = _all_states(asl["States"])
    assert asl["StartAt"] == "ValidateRequest"
    assert "QueryLanguage" not in asl or asl["QueryLanguage"] == "JSONPath"
    # the happy path, in order
    path, name = [], asl["StartAt"]
    while name:
        path.append(name)
        state = states[name]
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")
    assert path == [
        "ValidateRequest",
        "ChooseDetectMode",
        "Detect",
        "Report",
        "Publish",
        "Notify",
        "EmitSucceeded",
        "Succeeded",
    ]
    branches = [b["StartAt"] for b in states["Publish"]["Branches"]]
    assert branches == ["ChoosePublishToBoss", "PublishToS3"]
    # a blockwise run pushes its blocks on a Distributed Map; every other run in one job
    choose = states["ChoosePublishToBoss"]
    assert choose["Default"] == "PublishToBoss"
    assert choose["Choices"] == [
        {
            "Variable": "$.job.detect_mode",
            "StringEquals": "blockwise",
            "Next": "PublishToBossPrepare",
        }
    ]
    assert states["PublishToBossPrepare"]["Next"] == "PublishToBossBlocks"
    assert (
        states["PublishToBossBlocks"]["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    )
    # every top-level task (and the Parallel) catches everything and ends in Failed
    for name, state in asl["States"].items():
        if state["Type"] in ("Task", "Parallel"):
            assert state.get("Catch"), f"{name} has no Catch"
            assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
    failure_targets = {c["Next"] for s in asl["States"].values() for c in s.get("Catch", [])}
    for target in failure_targets:
        name, seen = target, set()
        while asl["States"][name]["Type"] != "Fail":
            assert name not in seen
            seen.add(name)
            name = asl["States"][name]["Next"]
        assert name == "Failed"
    assert states["NotifyFailure"]["Resource"] == "arn:aws:states:::sns:publish"
    assert states["EmitFailed"]["Resource"] == "arn:aws:states:::events:putEvents"


def test_batch_tasks_match_the_workflow_jobs() -> None:
    """Every Batch state submits one of workflow.BATCH_JOBS with its queue and parameters,
    and every job definition is used by at least one state."""
    states = _all_states(_definition()["States"])
    by_substitution = {spec.substitution: spec for spec in wf.BATCH_JOBS.values()}
    batch_states = {
        name: s
        for name, s in states.items()
        if s.get("Resource") == "arn:aws:states:::batch:submitJob.sync"
    }
    used = set()
    for name, state in batch_states.items():
        params = state["Parameters"]
        placeholder = re.fullmatch(r"\$\{(\w+)\}", params["JobDefinition"])
        assert placeholder and placeholder.group(1) in by_substitution, name
        spec = by_substitution[placeholder.group(1)]
        used.add(spec.logical_id)
        queue = "LargeJobQueueArn" if spec.large else "JobQueueArn"
        assert params["JobQueue"] == f"${{{queue}}}", name
        given = {k.removesuffix(".$") for k in params["Parameters"]}
        assert given == set(spec.parameters), name
        assert params["JobName.$"].startswith("States.Format('"), name
        # Batch failures are retried by the job definition (Spot), not by Step Functions
        for retry in state.get("Retry", []):
            assert "States.ALL" not in retry["ErrorEquals"], name
            assert "States.TaskFailed" not in retry["ErrorEquals"], name
        # nothing large in the state: the job description is reduced or dropped
        assert "ResultSelector" in state or state.get("ResultPath", "$") is None, name
    assert used == set(wf.BATCH_JOBS)
    for name in ("Detect", "DetectLarge", "Report", "PublishToBoss"):
        assert batch_states[name]["Parameters"]["JobName.$"].startswith(
            f"States.Format('{wf.BATCH_JOBS[name].step}-"
        )
        assert batch_states[name]["ResultSelector"] == {"job_id.$": "$.JobId"}


def test_lambda_tasks_match_the_workflow_functions() -> None:
    states = _all_states(_definition()["States"])
    lambda_states = {
        name: s
        for name, s in states.items()
        if s.get("Resource") == "arn:aws:states:::lambda:invoke"
    }
    assert set(lambda_states) == {n for n, spec in wf.LAMBDA_FUNCTIONS.items() if spec.substitution}
    for name, state in lambda_states.items():
        assert state["Parameters"]["FunctionName"] == f"${{{name}FunctionArn}}"
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert retried == set(wf.LAMBDA_TRANSIENT_ERRORS), name
        for spec in wf.LAMBDA_FUNCTIONS.values():
            assert spec.handler_file.is_file()


def test_no_secret_can_enter_the_state() -> None:
    text = wf.ASL_PATH.read_text().lower()
    assert "token" not in text
    assert "secret" not in text


def _blockwise_stages(states: dict[str, Any], start: str) -> list[tuple[str, str]]:
    """(stage, "map" | "one job") of each blockwise Batch state from ``start`` on, following
    ``Next`` while the states run blockwise stages (a Map's stage is its processor's)."""
    found = []
    name: str | None = start
    while name:
        state = states[name]
        if state["Type"] == "Map":
            inner = state["ItemProcessor"]["States"]
            stages = {s["Parameters"]["Parameters"].get("stage") for s in inner.values()}
            assert len(stages) == 1, name
            found.append((stages.pop(), "map"))
            assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED", name
        elif state["Type"] == "Task":
            stage = state["Parameters"].get("Parameters", {}).get("stage")
            if stage is None:
                break
            found.append((stage, "one job"))
        name = state.get("Next")
    return found


def test_blockwise_states_run_the_stage_table_in_order() -> None:
    """The ASL writes the stage names literally; they are blockwise.stages.STAGES': the same
    stages in the same order, the map stages (and only they) inside Distributed Maps."""
    from synapse_pipelines.blockwise.stages import DETECT, PUBLISH_TO_BOSS, STAGES, stages_of

    top = _definition()["States"]
    states = _all_states(top)

    def expected(step: str) -> list[tuple[str, str]]:
        return [(s.name, "map" if s.kind == "map" else "one job") for s in stages_of(step)]

    def blockwise_branch(choice: str) -> str:
        (target,) = [
            c["Next"] for c in states[choice]["Choices"] if c["StringEquals"] == "blockwise"
        ]
        return target

    detect = _blockwise_stages(states, blockwise_branch("ChooseDetectMode"))
    assert detect == expected(DETECT)
    assert states[top["BlockwiseMerge"]["Next"]] is states["Report"]
    publish = _blockwise_stages(states, blockwise_branch("ChoosePublishToBoss"))
    assert publish == expected(PUBLISH_TO_BOSS)
    assert [name for name, _ in detect + publish] == [s.name for s in STAGES]
    # the stages' workflow steps are Batch tasks of the workflow (their errors are recorded
    # under those steps' names)
    assert {s.workflow_step for s in STAGES} <= set(wf.BATCH_JOBS)
