"""The workflow steps called in-process (workflow/*_step.py, events.py): ValidateRequest
checks a request against the local BOSS (over real HTTP through intern) and stores it in S3
(moto), failing clearly and writing nothing; DescribeFailure turns any failure into a
notice; StartFromEvent names executions from the request; and Detect -> Report ->
PublishToBoss -> PublishToS3 chain on the synthetic experiment. Their entry points (Lambda
handlers, step CLI): test_steps_entry_points.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.workflow_steps import state_machine as _state_machine, step_request as _request

from synapse_pipelines.core.errors import (
    BossError,
    ChannelSelectionError,
    RequestValidationError,
)
from synapse_pipelines.core.request import SynapseRequest
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.events import start_execution, start_from_event
from synapse_pipelines.workflow.failure_step import describe_failure
from synapse_pipelines.workflow.notification_text import success_notification
from synapse_pipelines.workflow.publish_s3_step import publish_s3
from synapse_pipelines.workflow.run_record import clear_step_error, record_step_error
from synapse_pipelines.workflow.validate_step import ensure_email_subscription, validate


def _all_objects(s3: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_validate_stores_the_request_and_returns_small_state(
    aws: Any, lambda_env: dict[str, str], boss_server: Any, boss_synthetic: Any
) -> None:
    bucket = lambda_env[wf.ENV_RESULTS_BUCKET]
    request = _request(boss_server, boss_synthetic)
    state = validate({"request": request, "execution_name": "run-1"}, bucket=bucket)

    assert set(state) >= {"bucket", "results_key", "request_key", "job_name", "detect_mode"}
    assert state["detect_mode"] == "standard"
    assert state["presynaptic_channel"] == "Synapsin647"
    assert state["postsynaptic_channel"] == "PSD95_488"
    assert len(json.dumps(state)) < 2000  # only keys and small values travel in the state
    s3 = aws.client("s3")
    stored = json.loads(s3.get_object(Bucket=bucket, Key=state["request_key"])["Body"].read())
    assert stored["results_key"] == state["results_key"]
    assert "annotation" not in stored["channels"]  # annotation channels are not images
    assert stored["voxel_size"] == list(boss_synthetic.frame.voxel_size)
    assert boss_server.token not in json.dumps(stored)


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"presynaptic_channel": "Synapsin"}, ChannelSelectionError, "presynaptic_channel"),
        ({"z_range": [0, 10_000]}, BossError, "z_range"),
        ({"experiment": "no_such_experiment"}, BossError, None),
        ({"z_range": [5, 2]}, RequestValidationError, None),
        ({"pipeline_parameters": {"no_such_parameter": 1}}, RequestValidationError, None),
    ],
)
def test_validate_fails_clearly_and_writes_nothing(
    aws: Any,
    lambda_env: dict[str, str],
    boss_server: Any,
    boss_synthetic: Any,
    changes: dict[str, Any],
    error: type[Exception],
    field: str | None,
) -> None:
    if "pipeline_parameters" in changes:
        pytest.importorskip("synapse_pipelines.science.detection")
    bucket = lambda_env[wf.ENV_RESULTS_BUCKET]
    with pytest.raises(error) as caught:
        validate({"request": _request(boss_server, boss_synthetic, **changes)}, bucket=bucket)
    if field:
        assert field in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert _all_objects(aws.client("s3"), bucket) == {}


def test_channel_error_lists_the_experiments_channels(
    aws: Any, lambda_env: dict[str, str], boss_server: Any, boss_synthetic: Any
) -> None:
    with pytest.raises(ChannelSelectionError) as caught:
        validate(
            {"request": _request(boss_server, boss_synthetic, postsynaptic_channel="psd")},
            bucket=lambda_env[wf.ENV_RESULTS_BUCKET],
        )
    assert "PSD95_488" in str(caught.value)


def test_a_literal_token_is_refused_without_echoing_it(
    aws: Any, lambda_env: dict[str, str], boss_server: Any, boss_synthetic: Any
) -> None:
    leaked = "my-real-token-1234567890"
    with pytest.raises(RequestValidationError) as caught:
        validate(
            {"request": _request(boss_server, boss_synthetic, token=leaked)},
            bucket=lambda_env[wf.ENV_RESULTS_BUCKET],
        )
    assert "token" in str(caught.value)
    assert leaked not in str(caught.value)


def test_token_secret_must_be_the_deployments(
    aws: Any, lambda_env: dict[str, str], boss_server: Any, boss_synthetic: Any
) -> None:
    bucket = lambda_env[wf.ENV_RESULTS_BUCKET]
    same = _request(boss_server, boss_synthetic, token_secret="synapse-pipelines/boss-token")
    assert validate({"request": same}, bucket=bucket)["results_key"]
    other = _request(boss_server, boss_synthetic, token_secret="someone-elses-secret")
    with pytest.raises(RequestValidationError, match="token_secret"):
        validate({"request": other}, bucket=bucket)


def test_detect_mode_follows_the_deployed_job_sizes() -> None:
    from synapse_pipelines.core.request import parse_request
    from synapse_pipelines.core.sizing import DETECT_MODES, choose_detect_mode

    def mode(voxels_z: int, env: dict[str, str]) -> str:
        request = parse_request(
            {
                "collection": "c",
                "experiment": "e",
                "z_range": [0, voxels_z],
                "y_range": [0, 1024],
                "x_range": [0, 1024],
            },
            max_voxels=None,
        )
        return choose_detect_mode(request, 13, env)

    env = {wf.ENV_DETECT_MEMORY_MIB: "30720", wf.ENV_LARGE_DETECT_MEMORY_MIB: "245760"}
    assert mode(16, env) == "standard"  # 16 Mvoxel * 37 B = 0.6 GiB
    assert mode(1024, env) == "large"  # 1 Gvoxel * 37 B = 37 GiB
    # 8 Gvoxel: 296 GiB, more than any single job: blockwise where the deployment has it
    if "blockwise" in DETECT_MODES:
        assert mode(8192, env) == "blockwise"
    else:
        with pytest.raises(RequestValidationError, match="largeJobMemoryMiB"):
            mode(8192, env)
    # no sizes known (local runs): one job up to SYNAPSE_PIPELINES_MAX_VOXELS, then blockwise
    assert mode(512, {}) == "standard"
    assert mode(8192, {}) == "blockwise"


def test_email_subscription_is_filtered_and_not_duplicated(aws: Any) -> None:
    sns = aws.client("sns")
    topic = sns.create_topic(Name="t")["TopicArn"]
    ensure_email_subscription(sns, topic, "a@example.org")
    ensure_email_subscription(sns, topic, "a@example.org")
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert len(subs) == 1
    attrs = sns.get_subscription_attributes(SubscriptionArn=subs[0]["SubscriptionArn"])
    policy = json.loads(attrs["Attributes"]["FilterPolicy"])
    assert policy == {wf.EMAIL_ATTRIBUTE: ["a@example.org"]}


# -- DescribeFailure ----------------------------------------------------------------------------


def test_describe_failure_keeps_a_lambda_user_error() -> None:
    cause = json.dumps(
        {
            "errorType": "ChannelSelectionError",
            "errorMessage": "presynaptic_channel: no channel name contains 'synapsin'",
            "stackTrace": ["..."],
        }
    )
    state = {
        "collection": "col",
        "experiment": "exp",
        "notification_email": "a@example.org",
        "failure": {
            "step": "ValidateRequest",
            "error": {"Error": "ChannelSelectionError", "Cause": cause},
        },
    }
    out = describe_failure(state, execution_id="arn:exec")
    assert out["error"] == "ChannelSelectionError"
    assert out["cause"].startswith("presynaptic_channel: no channel")
    assert "stackTrace" not in out["message"]
    assert "col/exp" in out["message"] and "ValidateRequest" in out["message"]
    assert out["notify"] == "a@example.org"
    assert len(out["subject"]) <= 100 and "\n" not in out["subject"]
    assert out["detail"]["step"] == "ValidateRequest"


def test_describe_failure_reads_the_batch_steps_recorded_error(
    aws: Any, results_bucket: str
) -> None:
    s3 = aws.client("s3")
    record_step_error(
        s3, results_bucket, "key1", "detect", BossError("no such channel", field="channels")
    )
    description = {
        "JobName": "detect-key1-abc",
        "JobId": "j1",
        "Status": "FAILED",
        "StatusReason": "Essential container in task exited",
        "Attempts": [{"Container": {"ExitCode": 2, "LogStreamName": "detect/default/x"}}],
    }
    state = {
        "job": {"bucket": results_bucket, "results_key": "key1"},
        "failure": {
            "step": "Detect",
            "error": {"Error": "States.TaskFailed", "Cause": json.dumps(description)},
        },
    }
    out = describe_failure(state, s3=s3)
    assert out["error"] == "BossError"
    assert out["cause"] == "channels: no such channel"
    # without a record: a summary of the job description
    clear_step_error(s3, results_bucket, "key1", "detect")
    out = describe_failure(state, s3=s3)
    assert out["error"] == "BatchJobFailed"
    assert "exit code 2" in out["cause"] and "detect/default/x" in out["cause"]


def test_describe_failure_names_the_parallel_branch_and_survives_garbage() -> None:
    lambda_cause = json.dumps({"errorType": "KeyError", "errorMessage": "'x'"})
    state = {"failure": {"step": "Publish", "error": {"Error": "KeyError", "Cause": lambda_cause}}}
    assert describe_failure(state)["detail"]["step"] == "PublishToS3"
    out = describe_failure({"failure": {"step": "Notify", "error": {"Error": "X"}}})
    assert out["error"] == "X" and out["notify"] == wf.NO_EMAIL
    assert describe_failure({})["error"] == "States.Unknown"


# -- StartFromEvent -----------------------------------------------------------------------------


def test_start_from_event_names_the_execution_from_the_request(aws: Any) -> None:
    arn = _state_machine(aws)
    detail = {
        "collection": "col",
        "experiment": "exp",
        "z_range": "0,16",
        "y_range": "0,512",
        "x_range": "0,512",
    }
    event = {"detail-type": wf.DETAIL_TYPE_REQUESTED, "source": "me", "detail": detail}
    sfn = aws.client("stepfunctions")
    first = start_from_event(event, state_machine_arn=arn, sfn=sfn)
    assert not first["duplicate"]
    assert first["name"].startswith("paired-puncta_col_exp_z_0_16")
    assert len(first["name"]) <= run_names.EXECUTION_NAME_MAX
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert [e["name"] for e in executions] == [first["name"]]
    started_input = json.loads(sfn.describe_execution(executionArn=first["execution_arn"])["input"])
    assert started_input["z_range"] == [0, 16]  # the normalised public request
    # a different request gets another name
    other = {**event, "detail": {**detail, "x_range": "0,256"}}
    assert start_from_event(other, state_machine_arn=arn, sfn=sfn)["name"] != first["name"]


def test_start_from_event_treats_already_exists_as_duplicate() -> None:
    class Sfn:
        def start_execution(self, **kwargs: Any) -> dict[str, Any]:
            error = Exception("exists")
            error.response = {"Error": {"Code": "ExecutionAlreadyExists"}}  # type: ignore[attr-defined]
            raise error

    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:sm"
    out = start_execution(Sfn(), arn, "n1", {"a": 1})
    assert out == {
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:sm:n1",
        "name": "n1",
        "duplicate": True,
    }


def test_start_from_event_refuses_a_token() -> None:
    event = {"detail": {"collection": "c", "token": "secret-value-123"}}
    with pytest.raises(RequestValidationError) as caught:
        start_from_event(event, state_machine_arn="arn", sfn=object())
    assert "secret-value-123" not in str(caught.value)


def test_execution_names_are_deterministic_and_valid() -> None:
    public = {"collection": "c" * 150, "experiment": "e"}
    name = run_names.execution_name(public, "k" * 200)
    assert name == run_names.execution_name(dict(reversed(public.items())), "k" * 200)
    assert len(name) == run_names.EXECUTION_NAME_MAX
    assert name != run_names.execution_name({**public, "experiment": "f"}, "k" * 200)
    assert len(run_names.job_name_stem("x" * 300)) <= run_names.JOB_NAME_STEM_MAX


# -- the whole chain, in-process ----------------------------------------------------------------


def test_steps_chain_detect_report_publish(
    aws: Any,
    lambda_env: dict[str, str],
    boss_server: Any,
    boss_synthetic: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytest.importorskip("synapse_pipelines.science.detection")
    from synapse_pipelines.io import boss_publish as boss_module
    from synapse_pipelines.workflow.detect_step import detect
    from synapse_pipelines.workflow.publish_boss_step import publish_boss
    from synapse_pipelines.workflow.report_step import report

    bucket = lambda_env[wf.ENV_RESULTS_BUCKET]
    output = boss_server.unique("chain")
    request = _request(boss_server, boss_synthetic, output_experiment=output)
    state = validate({"request": request}, bucket=bucket)
    key = state["results_key"]
    # the container's environment: the token arrives as BOSS_TOKEN (job definition secret)
    monkeypatch.setenv(wf.ENV_BOSS_TOKEN, boss_server.token)
    lines: list[str] = []
    detected = detect(bucket, key, workdir=tmp_path / "d", log=lines.append)
    assert detected["synapses"] > 0
    reported = report(bucket, key, workdir=tmp_path / "r", log=lines.append)
    assert set(reported["files"]) == {wf.REPORT, wf.CLUSTERING, wf.MANIFEST}
    published = publish_boss(bucket, key, workdir=tmp_path / "p", log=lines.append)
    assert published["mask_channel"] == boss_module.mask_channel_name(key)
    monkeypatch.delenv(wf.ENV_BOSS_TOKEN)
    out = publish_s3(bucket, key, execution_id="arn:exec")

    s3 = aws.client("s3")
    objects = _all_objects(s3, bucket)
    for name in wf.ARTEFACTS:
        assert wf.artefact_key(key, name) in objects, name
    manifest = json.loads(objects[wf.artefact_key(key, wf.MANIFEST)])
    assert manifest["counts"]["synapses"] == detected["synapses"]
    import hashlib

    for name, entry in manifest["files"].items():
        body = objects[wf.artefact_key(key, name)]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], name
        assert entry["s3_uri"] == f"s3://{bucket}/{key}/{name}"
    assert out["event_detail"]["synapses"] == detected["synapses"]
    assert "X-Amz-Signature" in out["notification"]["message"]
    assert out["event_detail"]["neuroglancer_url"].startswith(wf.DEFAULT_NEUROGLANCER_URL)
    # the pushed mask is in BOSS, where the links point
    pulled = boss_server.client().pull(
        "steps_out", output, published["mask_channel"], boss_module.Box(*_box(request))
    )
    assert set(pulled.ravel().tolist()) <= {0, 255} and pulled.any()
    # the token is nowhere: not in S3, not in the step outputs, not in the logs
    blob = b"".join(objects.values()).decode("latin-1") + json.dumps(out) + "\n".join(lines)
    assert boss_server.token not in blob


def test_the_success_notice_carries_the_detectors_warnings() -> None:
    request = SynapseRequest.model_validate(
        {"collection": "c", "experiment": "e", "z_range": [0, 4], "y_range": [0, 64],
         "x_range": [0, 64]}
    )  # fmt: skip
    detail = {"bucket": "b", "prefix": "k/", "results_key": "k", "synapses": 12}
    plain = success_notification(request, detail, {}, 3600)["message"]
    assert "Warning" not in plain
    warned = {**detail, "warnings": ["the sections do not line up: register them"]}
    message = success_notification(request, warned, {}, 3600)["message"]
    assert "Synapses found: 12\nWarning: the sections do not line up: register them\n" in message


def _box(request: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ranges = [request[f"{a}_range"] for a in ("z", "y", "x")]
    return tuple(r[0] for r in ranges), tuple(r[1] for r in ranges)
