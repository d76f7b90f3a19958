"""``synapse-pipelines submit | status | results`` against moto (CloudFormation outputs,
Step Functions, EventBridge, S3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.histories import PARALLEL_MAP_FAIL
from typer.testing import CliRunner

from synapse_pipelines.cli import app
from synapse_pipelines.cli.aws_commands import StackError
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import wiring as wf

STACK = "SynapseTest"
REQUEST = {
    "collection": "collman",
    "experiment": "collman15v2",
    "z_range": "0,16",
    "y_range": "0,512",
    "x_range": "0,512",
}


@pytest.fixture
def stack(aws: Any) -> dict[str, str]:
    """A stack with the outputs the CLI reads, and the resources they name."""
    sfn = aws.client("stepfunctions")
    definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(
        name="synapse",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/states",
    )["stateMachineArn"]
    aws.client("events").create_event_bus(Name="synapse-bus")
    template = {
        "Resources": {"Results": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "res"}}},
        "Outputs": {
            wf.OUTPUT_STATE_MACHINE_ARN: {"Value": machine},
            wf.OUTPUT_RESULTS_BUCKET: {"Value": {"Ref": "Results"}},
            wf.OUTPUT_EVENT_BUS_NAME: {"Value": "synapse-bus"},
        },
    }
    aws.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return {"machine": machine, "bucket": "res", "bus": "synapse-bus"}


@pytest.fixture
def request_file(tmp_path: Path) -> Path:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))
    return path


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_submit_twice_starts_one_named_execution(
    aws: Any, stack: dict[str, str], request_file: Path
) -> None:
    first = _run("submit", str(request_file), "--stack", STACK)
    assert first.exit_code == 0, first.output
    assert "started arn:aws:states:" in first.output
    assert "paired-puncta_collman_collman15v2_z_0_16_y_0_512_x_0_512" in first.output
    second = _run("submit", str(request_file), "--stack", STACK)
    assert second.exit_code == 0, second.output
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=stack["machine"])
    names = [e["name"] for e in executions["executions"]]
    assert len(names) == 1
    assert names[0].startswith("paired-puncta_collman_collman15v2")
    # moto lets a same-name start through or refuses it; either way there is one execution
    assert "already submitted" in second.output or "started" in second.output


def test_submit_via_events_puts_the_request_on_the_bus(
    aws: Any, stack: dict[str, str], request_file: Path
) -> None:
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="seen")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events = aws.client("events")
    events.put_rule(
        Name="requested",
        EventBusName=stack["bus"],
        EventPattern=json.dumps(wf.REQUESTED_EVENT_PATTERN),
    )
    events.put_targets(
        Rule="requested", EventBusName=stack["bus"], Targets=[{"Id": "q", "Arn": queue_arn}]
    )
    result = _run("submit", str(request_file), "--stack", STACK, "--via-events")
    assert result.exit_code == 0, result.output
    assert "event sent" in result.output
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
    event = json.loads(messages[0]["Body"])
    assert event["detail-type"] == wf.DETAIL_TYPE_REQUESTED
    assert event["detail"]["collection"] == "collman"
    assert event["detail"]["z_range"] == [0, 16]
    # nothing was started directly: the rule's target (StartFromEvent) does that
    listed = aws.client("stepfunctions").list_executions(stateMachineArn=stack["machine"])
    assert listed["executions"] == []


def test_status_by_request_file(aws: Any, stack: dict[str, str], request_file: Path) -> None:
    assert _run("submit", str(request_file), "--stack", STACK).exit_code == 0
    result = _run("status", str(request_file), "--stack", STACK)
    assert result.exit_code == 0, result.output
    assert "paired-puncta_collman_collman15v2" in result.output
    assert any(s in result.output for s in ("RUNNING", "SUCCEEDED"))


def test_results_prints_the_manifest_and_fresh_links(aws: Any, stack: dict[str, str]) -> None:
    s3 = aws.client("s3")
    key = "paired-puncta_collman_collman15v2_z_0_16_y_0_512_x_0_512"
    manifest = {"results_key": key, "counts": {"synapses": 42}, "links": {"all": "https://ng/#"}}
    s3.put_object(Bucket="res", Key=f"{key}/{wf.MANIFEST}", Body=json.dumps(manifest).encode())
    s3.put_object(Bucket="res", Key=f"{key}/{wf.SYNAPSES_CSV}", Body=b"id\n1\n")
    result = _run("results", key, "--stack", STACK, "--json", "--expires", "3600")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["manifest"]["counts"]["synapses"] == 42
    assert set(found["links"]) == {wf.MANIFEST, wf.SYNAPSES_CSV}
    assert "X-Amz-Expires=3600" in found["links"][wf.SYNAPSES_CSV]
    text = _run("results", key, "--stack", STACK)
    assert "synapses:    42" in text.output and "neuroglancer: https://ng/#" in text.output


def test_results_for_a_missing_key_is_a_clear_error(aws: Any, stack: dict[str, str]) -> None:
    result = _run("results", "no_such_key", "--stack", STACK)
    assert isinstance(result.exception, SynapsePipelinesError)
    assert "no results at s3://res/no_such_key/manifest.json" in str(result.exception)


def test_unknown_stack_is_a_clear_error(aws: Any, request_file: Path) -> None:
    result = _run("submit", str(request_file), "--stack", "Nope")
    assert isinstance(result.exception, StackError)
    assert "--stack" in str(result.exception) and "Nope" in str(result.exception)


def test_a_token_in_the_request_file_is_refused_unsent(
    aws: Any, stack: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "leaky.json"
    path.write_text(json.dumps({**REQUEST, "token": "real-token-value-99"}))
    result = _run("submit", str(path), "--stack", STACK)
    assert isinstance(result.exception, SynapsePipelinesError)
    assert "real-token-value-99" not in str(result.exception) + result.output
    listed = aws.client("stepfunctions").list_executions(stateMachineArn=stack["machine"])
    assert listed["executions"] == []


def test_wait_reports_steps_until_the_end() -> None:
    from synapse_pipelines.cli.aws_commands import wait_for

    class FakeSfn:
        """Three polls: Validate running, Validate done + Detect running, then success."""

        def __init__(self) -> None:
            self.polls = 0

        def describe_execution(self, executionArn: str) -> dict[str, Any]:
            self.polls += 1
            status = "SUCCEEDED" if self.polls >= 3 else "RUNNING"
            return {"name": "n", "status": status, "startDate": "t"}

        def get_paginator(self, _name: str) -> Any:
            polls = self.polls

            class Pages:
                def paginate(self, **_kwargs: Any) -> list[dict[str, Any]]:
                    events = [
                        {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "V"}}
                    ]
                    if polls >= 2:
                        events += [
                            {"type": "TaskStateExited"},
                            {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "D"}},
                        ]
                    return [{"events": events}]

            return Pages()

    seen: list[tuple[str, str]] = []
    summary = wait_for(FakeSfn(), "arn", poll_seconds=0, on_step=lambda s, st: seen.append((s, st)))
    assert summary["status"] == "SUCCEEDED"
    # the last poll: the execution ended, so D (entered, never exited) is no longer running
    assert seen == [("V", "running"), ("V", "done"), ("D", "running"), ("D", "done")]


@pytest.mark.parametrize("outcome", ["FAILED", "SUCCEEDED"])
def test_status_of_a_finished_run_shows_no_step_running(aws_env: None, outcome: str) -> None:
    """Real moto histories: the Parallel's and the Map's exits come after their branches' and
    iterations' (which interleave), a caught Task failure still exits, a Fail state never
    exits. Each exit closes the state of its own name; a finished run shows nothing running."""
    from moto import mock_aws

    from synapse_pipelines.cli.aws_commands import execution_summary, wait_for

    definition = json.loads(json.dumps(PARALLEL_MAP_FAIL))
    if outcome == "SUCCEEDED":
        definition["States"]["T"] = {"Type": "Pass", "Next": "Succeeded"}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        import boto3

        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="steps",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/states",
        )["stateMachineArn"]
        arn = sfn.start_execution(
            stateMachineArn=machine, name="run-1", input=json.dumps({"items": [1, 2]})
        )["executionArn"]
        summary = wait_for(sfn, arn, poll_seconds=0.2, timeout_seconds=60)
        assert summary["status"] == outcome
        steps = [(s["step"], s["state"]) for s in execution_summary(sfn, arn)["steps"]]
    # the branches run in threads: their order in the history is not fixed, their states are
    assert steps[0] == ("P", "done")
    assert sorted(steps[1:4]) == [("A1", "done"), ("A2", "done"), ("B1", "done")]
    assert steps[4:7] == [("M", "done"), ("I", "done"), ("I", "done")]
    if outcome == "FAILED":
        assert steps[7:] == [("T", "failed"), ("Failed", "failed")]
    else:
        assert steps[7:] == [("T", "done"), ("Succeeded", "done")]


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "REQUEST", "--stack", STACK, "--wait"],
        ["status", "some-run", "--stack", STACK],
        ["results", "some_key", "--stack", STACK],
        ["list", "--stack", STACK],
        ["cancel", "some-run", "--stack", STACK],
        ["retry", "some-run", "--stack", STACK],
        ["logs", "some-run", "--stack", STACK],
    ],
)
def test_no_region_configured_is_a_clear_error_naming_region(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request_file: Path,
    args: list[str],
) -> None:
    """No AWS_DEFAULT_REGION/AWS_REGION, no --region, an empty config file: botocore's
    NoRegionError becomes one message naming --region and AWS_DEFAULT_REGION, exit status 2."""
    import subprocess
    import sys

    config = tmp_path / "aws-config"
    config.write_text("")
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config))
    result = _run(*[str(request_file) if a == "REQUEST" else a for a in args])
    assert isinstance(result.exception, SynapsePipelinesError), result.output
    assert result.exception.field == "--region"
    assert "AWS_DEFAULT_REGION" in str(result.exception)
    # through the console script: one line on stderr, exit status 2, no traceback
    code = "import sys; from synapse_pipelines.cli import main; sys.argv[0] = 'x'; main()"
    argv = [str(request_file) if a == "REQUEST" else a for a in args]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "--region" in done.stderr
