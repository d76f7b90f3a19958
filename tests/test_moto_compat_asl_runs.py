"""A tiny ASL of our own (Lambda -> batch:submitJob.sync -> Parallel -> SNS publish, with a
Catch to an SNS failure notice) executed on a real moto server with the moto adaptations
(local/moto_*.py) that let moto 5.2.5 run a real ASL without Docker: the Batch job is a
real subprocess (``python -c ...``) that gets its secret through env only, Lambda errors
and failed jobs are caught, Batch retries per strategy (Spot reclaims too), EventBridge
rules start named executions or invoke Lambdas, and running jobs can be killed. Moto's
internals and the pure helpers: test_moto_compat_internals.py.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_pipelines.local import moto_batch, moto_events, moto_lambda, moto_server

SECRET = "tok-3c1f9a7e-not-a-real-token"

# the "container": writes its argv and the secret it received through env to a file, then
# exits with the requested code; the secret must never be on its command line
JOB_CODE = (
    "import json, os, sys; "
    "out, message, rc = sys.argv[1:4]; "
    "open(out, 'a').write(json.dumps({'argv': sys.argv, 'message': message, "
    "'token': os.environ.get('TOKEN'), 'mode': os.environ.get('MODE'), "
    "'attempt': os.environ.get('AWS_BATCH_JOB_ATTEMPT'), "
    "'endpoint': os.environ.get('AWS_ENDPOINT_URL')}) + '\\n'); "
    "print('job says', message); sys.exit(int(rc))"
)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buf.getvalue()


class Stack:
    """The resources of the tiny workflow on a running LocalAws."""

    def __init__(self, aws: moto_server.LocalAws) -> None:
        self.aws = aws
        iam = aws.client("iam")
        self.role = iam.create_role(RoleName="compat-role", AssumeRolePolicyDocument="{}")["Role"][
            "Arn"
        ]
        lam = aws.client("lambda")
        self.fn = lam.create_function(
            FunctionName="compat-validate",
            Runtime="python3.11",
            Role=self.role,
            Handler="app.handler",
            Code={"ZipFile": _zip()},
            Environment={"Variables": {"GREETING": "hello from the function env"}},
        )["FunctionArn"]
        self.echo_fn = lam.create_function(
            FunctionName="compat-echo",
            Runtime="python3.11",
            Role=self.role,
            Handler="app.handler",
            Code={"ZipFile": _zip()},
        )["FunctionArn"]
        self.calls: list[dict[str, Any]] = []
        moto_lambda.register_lambda_handler("compat-validate", self._validate)
        self.secret = aws.client("secretsmanager").create_secret(
            Name="compat-token", SecretString=SECRET
        )["ARN"]
        batch = aws.client("batch")
        ce = batch.create_compute_environment(
            computeEnvironmentName="compat-ce", type="UNMANAGED", serviceRole=self.role
        )["computeEnvironmentArn"]
        self.queue = batch.create_job_queue(
            jobQueueName="compat-queue",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )["jobQueueArn"]
        self.job_def = batch.register_job_definition(
            jobDefinitionName="compat-job",
            type="container",
            containerProperties={
                "image": "local",
                "vcpus": 1,
                "memory": 512,
                "command": [sys.executable, "-c", JOB_CODE, "Ref::out", "Ref::message", "Ref::rc"],
                "environment": [{"name": "MODE", "value": "from-job-definition"}],
                "secrets": [{"name": "TOKEN", "valueFrom": self.secret}],
            },
            # Spot reclaims are retried; a program error is not
            retryStrategy={
                "attempts": 3,
                "evaluateOnExit": [
                    {"onStatusReason": "Host EC2*", "action": "RETRY"},
                    {"onExitCode": "75", "action": "RETRY"},
                    {"onReason": "*", "action": "EXIT"},
                ],
            },
        )["jobDefinitionArn"]
        sqs = aws.client("sqs")
        self.queue_url = sqs.create_queue(QueueName="compat-notices")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns = aws.client("sns")
        self.topic = sns.create_topic(Name="compat-topic")["TopicArn"]
        sns.subscribe(
            TopicArn=self.topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}]
        asl = {
            "StartAt": "Validate",
            "States": {
                "Validate": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": self.fn, "Payload.$": "$"},
                    "ResultSelector": {"value.$": "$.Payload"},
                    "ResultPath": "$.validated",
                    "Next": "Job",
                    "Catch": catch,
                },
                "Job": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::batch:submitJob.sync",
                    "Parameters": {
                        "JobName": "compat-job",
                        "JobQueue": self.queue,
                        "JobDefinition": self.job_def,
                        "Parameters": {
                            "out.$": "$.out",
                            "message.$": "$.validated.value.message",
                            "rc.$": "$.rc",
                        },
                    },
                    "ResultSelector": {
                        "status.$": "$.Status",
                        "jobId.$": "$.JobId",
                        "attempts.$": "States.ArrayLength($.Attempts)",
                    },
                    "ResultPath": "$.job",
                    "Next": "Publish",
                    "Catch": catch,
                },
                "Publish": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "Mark", "States": {"Mark": {"Type": "Pass", "End": True}}},
                        {
                            "StartAt": "Echo",
                            "States": {
                                "Echo": {
                                    "Type": "Task",
                                    "Resource": "arn:aws:states:::lambda:invoke",
                                    "Parameters": {
                                        "FunctionName": self.echo_fn,
                                        "Payload": {"k": "v"},
                                    },
                                    "OutputPath": "$.Payload",
                                    "End": True,
                                }
                            },
                        },
                    ],
                    "ResultPath": "$.published",
                    "Next": "Notify",
                    "Catch": catch,
                },
                "Notify": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sns:publish",
                    "Parameters": {
                        "TopicArn": self.topic,
                        "Message.$": "States.Format('done {}', $.validated.value.message)",
                    },
                    "ResultPath": None,
                    "End": True,
                },
                "NotifyFailure": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sns:publish",
                    "Parameters": {"TopicArn": self.topic, "Message.$": "$.error"},
                    "ResultPath": None,
                    "Next": "Failed",
                },
                "Failed": {"Type": "Fail", "Error": "WorkflowFailed"},
            },
        }
        self.sfn = aws.client("stepfunctions")
        self.state_machine = self.sfn.create_state_machine(
            name="compat-sm", definition=json.dumps(asl), roleArn=self.role
        )["stateMachineArn"]

    def _validate(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        import os

        self.calls.append({"event": event, "env": os.environ.get("GREETING"), "ctx": context})
        if event.get("fail"):
            raise ValueError(f"message: {event['fail']}. Fix: send a message")
        return {"message": event["message"]}

    def run(self, payload: dict[str, Any], name: str, timeout: float = 60) -> dict[str, Any]:
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine, name=name, input=json.dumps(payload)
        )["executionArn"]
        return wait(self.sfn, arn, timeout)

    def notices(self) -> list[str]:
        sqs = self.aws.client("sqs")
        out = []
        while True:
            msgs = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not msgs:
                return out
            for m in msgs:
                out.append(m["Body"])
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])


def wait(sfn: Any, arn: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.1)
    raise AssertionError(f"{arn} still running after {timeout} s")


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with moto_server.LocalAws() as aws:
        yield Stack(aws)
    moto_lambda.unregister_lambda_handler("compat-validate")
    moto_batch.clear_batch_host_failures()


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ the tiny ASL, executed


def test_success_path_runs_handler_job_parallel_and_sns(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    stack.notices()
    desc = stack.run({"message": "hi", "rc": "0", "out": str(out)}, "compat-ok")
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    # the registered handler ran in-process with its function's environment
    call = stack.calls[-1]
    assert call["event"]["message"] == "hi"
    assert call["env"] == "hello from the function env"
    assert call["ctx"].function_name == "compat-validate"
    # the Batch job really ran: Ref:: parameters on argv, env and the secret in its env only
    (record,) = _records(out)
    assert record["message"] == "hi"
    assert record["token"] == SECRET
    assert SECRET not in " ".join(record["argv"])
    assert record["mode"] == "from-job-definition"
    assert record["endpoint"] == stack.aws.endpoint_url
    # .sync returned the AWS (PascalCase) describe-jobs shape
    assert output["job"]["status"] == "SUCCEEDED"
    assert output["job"]["attempts"] == 1
    # unregistered functions keep moto's echo
    assert output["published"][1] == {"k": "v"}
    assert stack.notices() == ["done hi"]
    # job output reached CloudWatch Logs like the awslogs driver
    logs = stack.aws.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/batch/job")["logStreams"]
    messages = [
        e["message"]
        for s in streams
        for e in logs.get_log_events(
            logGroupName="/aws/batch/job", logStreamName=s["logStreamName"]
        )["events"]
    ]
    assert "job says hi" in messages
    # the secret never reached the execution history
    assert SECRET not in json.dumps(history(stack.sfn, desc["executionArn"]), default=str)


def test_lambda_failure_is_a_task_failure_with_type_and_message(stack: Stack) -> None:
    stack.notices()
    desc = stack.run({"fail": "missing", "rc": "0", "out": "/dev/null"}, "compat-lambda-fail")
    assert desc["status"] == "FAILED"
    assert desc["error"] == "WorkflowFailed"
    failed = [e for e in history(stack.sfn, desc["executionArn"]) if e["type"] == "TaskFailed"]
    details = failed[0]["taskFailedEventDetails"]
    assert details["error"] == "ValueError"
    cause = json.loads(details["cause"])
    assert cause["errorType"] == "ValueError"
    assert cause["errorMessage"] == "message: missing. Fix: send a message"
    # no Batch job started; NotifyFailure published the caught error
    types = [e["type"] for e in history(stack.sfn, desc["executionArn"])]
    assert "TaskSubmitted" not in types
    (notice,) = stack.notices()
    assert json.loads(notice)["Error"] == "ValueError"


def test_failed_batch_job_is_retried_per_strategy_then_caught(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    stack.notices()
    desc = stack.run({"message": "boom", "rc": "75", "out": str(out)}, "compat-batch-fail")
    assert desc["status"] == "FAILED"
    # exit 75 is retryable: all 3 attempts ran, then the job FAILED
    assert [r["attempt"] for r in _records(out)] == ["1", "2", "3"]
    (notice,) = stack.notices()
    error = json.loads(notice)
    assert error["Error"] == "States.TaskFailed"
    job = json.loads(error["Cause"])
    assert job["Status"] == "FAILED"
    assert job["StatusReason"] == moto_batch.ESSENTIAL_CONTAINER_EXITED
    assert [a["Container"]["ExitCode"] for a in job["Attempts"]] == [75, 75, 75]


def test_program_error_is_not_retried(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    desc = stack.run({"message": "bug", "rc": "1", "out": str(out)}, "compat-batch-bug")
    assert desc["status"] == "FAILED"
    assert len(_records(out)) == 1  # evaluateOnExit said EXIT


def test_spot_reclaim_is_retried_by_batch(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    moto_batch.inject_batch_host_failure("compat-job", count=1)
    desc = stack.run({"message": "spot", "rc": "0", "out": str(out)}, "compat-spot")
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"])["job"]["attempts"] == 2
    assert [r["attempt"] for r in _records(out)] == ["2"]


def test_eventbridge_rule_starts_a_named_execution(stack: Stack, tmp_path: Path) -> None:
    events = stack.aws.client("events")
    events.create_event_bus(Name="compat-bus")
    events.put_rule(
        Name="compat-rule",
        EventBusName="compat-bus",
        EventPattern=json.dumps(
            {"source": ["compat.test"], "detail-type": ["Something Requested"]}
        ),
    )
    events.put_targets(
        Rule="compat-rule",
        EventBusName="compat-bus",
        Targets=[
            {
                "Id": "sm",
                "Arn": stack.state_machine,
                "RoleArn": stack.role,
                "InputPath": "$.detail",
            }
        ],
    )
    before = stack.sfn.list_executions(stateMachineArn=stack.state_machine)["executions"]
    out = tmp_path / "job.jsonl"
    detail = {"message": "via events", "rc": "0", "out": str(out)}
    for detail_type in ["Something Else", "Something Requested"]:
        (entry,) = events.put_events(
            Entries=[
                {
                    "Source": "compat.test",
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": "compat-bus",
                }
            ]
        )["Entries"]
    after = stack.sfn.list_executions(stateMachineArn=stack.state_machine)["executions"]
    new = [e for e in after if e["executionArn"] not in {b["executionArn"] for b in before}]
    assert len(new) == 1  # the non-matching event started nothing
    assert new[0]["name"] == entry["EventId"]
    desc = wait(stack.sfn, new[0]["executionArn"])
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["input"]) == detail
    assert _records(out)[0]["message"] == "via events"


def test_unnamed_execution_gets_a_name_and_names_are_idempotent(stack: Stack) -> None:
    arn = stack.sfn.start_execution(
        stateMachineArn=stack.state_machine, input=json.dumps({"fail": "x"})
    )["executionArn"]
    assert not arn.endswith(":None")
    wait(stack.sfn, arn)
    # a finished execution's name cannot be reused: a duplicate request does not run twice
    name = arn.rsplit(":", 1)[1]
    with pytest.raises(stack.sfn.exceptions.ExecutionAlreadyExists):
        stack.sfn.start_execution(
            stateMachineArn=stack.state_machine, name=name, input=json.dumps({"fail": "x"})
        )


def test_eventbridge_rule_invokes_a_lambda_target(stack: Stack) -> None:
    events = stack.aws.client("events")
    events.put_rule(
        Name="compat-lambda-rule", EventPattern=json.dumps({"detail-type": ["Lambda Wanted"]})
    )
    events.put_targets(Rule="compat-lambda-rule", Targets=[{"Id": "fn", "Arn": stack.fn}])
    n = len(stack.calls)
    events.put_events(
        Entries=[
            {"Source": "compat.test", "DetailType": "Lambda Wanted", "Detail": '{"message": "e"}'}
        ]
    )
    deadline = time.monotonic() + 10
    while len(stack.calls) == n and time.monotonic() < deadline:
        time.sleep(0.05)
    event = stack.calls[-1]["event"]
    assert event["detail-type"] == "Lambda Wanted"  # the whole event, as EventBridge sends it
    assert event["detail"] == {"message": "e"}


def test_running_jobs_are_killed_on_request(stack: Stack) -> None:
    batch = stack.aws.client("batch")
    jd = batch.register_job_definition(
        jobDefinitionName="compat-sleep",
        type="container",
        containerProperties={
            "image": "local",
            "vcpus": 1,
            "memory": 128,
            "command": [sys.executable, "-c", "import time; time.sleep(120)"],
        },
    )["jobDefinitionArn"]
    job_id = batch.submit_job(jobName="sleepy", jobQueue=stack.queue, jobDefinition=jd)["jobId"]
    deadline = time.monotonic() + 20
    while not moto_batch._LIVE_PROCESSES and time.monotonic() < deadline:
        time.sleep(0.05)
    assert moto_batch.kill_running_jobs() == 1
    while time.monotonic() < deadline:
        (job,) = batch.describe_jobs(jobs=[job_id])["jobs"]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.05)
    assert job["status"] == "FAILED"
    assert job["attempts"][0]["container"]["exitCode"] != 0


def test_failed_async_lambda_target_is_recorded(stack: Stack) -> None:
    events = stack.aws.client("events")
    events.put_rule(Name="compat-fail-rule", EventPattern=json.dumps({"detail-type": ["Fail"]}))
    events.put_targets(
        Rule="compat-fail-rule", Targets=[{"Id": "fn", "Arn": stack.fn, "InputPath": "$.detail"}]
    )
    n = len(moto_events.ASYNC_FAILURES)
    events.put_events(
        Entries=[{"Source": "compat.test", "DetailType": "Fail", "Detail": '{"fail": "oops"}'}]
    )
    deadline = time.monotonic() + 10
    while len(moto_events.ASYNC_FAILURES) == n and time.monotonic() < deadline:
        time.sleep(0.05)
    failure = moto_events.ASYNC_FAILURES[-1]
    assert failure["function"] == stack.fn
    assert failure["payload"]["errorType"] == "ValueError"
    assert "oops" in failure["payload"]["errorMessage"]
