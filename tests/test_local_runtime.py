"""LocalRuntime: the local "stack" matches workflow.py; the time per step of a history.

The full runs are in tests/test_e2e*.py; here the deployment is checked resource by resource
against the one workflow definition, without running a pipeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.histories import history_event
from rich.console import Console

from synapse_pipelines.cli import local_commands
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.local import moto_batch, moto_lambda, runtime as lr
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.execution_history import HistoryReader


@pytest.fixture(scope="module")
def rt() -> Iterator[lr.LocalRuntime]:
    with lr.LocalRuntime() as runtime:
        yield runtime


def test_state_machine_is_the_asl_file_with_every_substitution(rt: lr.LocalRuntime) -> None:
    sfn = rt.client("stepfunctions")
    definition = sfn.describe_state_machine(stateMachineArn=rt.res.state_machine_arn)["definition"]
    assert "${" not in definition
    template = json.loads(wf.definition_template())
    deployed = json.loads(definition)
    assert deployed["StartAt"] == template["StartAt"]
    assert set(deployed["States"]) == set(template["States"])
    states = deployed["States"]
    assert states["Detect"]["Parameters"]["JobDefinition"] == rt.res.job_definitions["Detect"]
    assert states["Detect"]["Parameters"]["JobQueue"] == rt.res.job_queues["standard"]
    assert states["DetectLarge"]["Parameters"]["JobQueue"] == rt.res.job_queues["large"]
    assert (
        states["ValidateRequest"]["Parameters"]["FunctionName"]
        == rt.res.functions["ValidateRequest"]
    )
    assert states["Notify"]["Parameters"]["TopicArn"] == rt.res.topic_arn


def test_job_definitions_follow_workflow(rt: lr.LocalRuntime) -> None:
    batch = rt.client("batch")
    for logical_id, spec in wf.BATCH_JOBS.items():
        (jd,) = batch.describe_job_definitions(jobDefinitions=[rt.res.job_definitions[logical_id]])[
            "jobDefinitions"
        ]
        props = jd["containerProperties"]
        assert props["command"] == list(spec.command)
        assert props["command"][0] == "step"  # after the image's ENTRYPOINT, the CLI
        assert [e["name"] for e in props["environment"]] == list(spec.environment)
        # the token reaches a job only as a secret from the stack's secret
        assert [(s["name"], s["valueFrom"]) for s in props["secrets"]] == [
            (name, rt.res.secret_arn) for name in spec.secrets
        ]
        expected = wf.batch_retry_strategy(spec.attempts)
        got = jd["retryStrategy"]
        assert got["attempts"] == expected["attempts"]
        lower = [{k: str(v).lower() for k, v in r.items()} for r in expected["evaluateOnExit"]]
        assert [{k: str(v).lower() for k, v in r.items()} for r in got["evaluateOnExit"]] == lower


def test_retry_strategy_retries_spot_reclaims_only() -> None:
    strategy = wf.batch_retry_strategy(3)
    for reason in wf.BATCH_RETRY_ON_STATUS_REASONS:
        host = reason.replace("*", " (instance i-1) terminated.")
        assert (
            moto_batch.retry_action(strategy, exit_code=None, status_reason=host, reason=None)
            == "retry"
        )
    for code in (wf.USER_ERROR_EXIT_CODE, 1, 137):
        assert (
            moto_batch.retry_action(
                strategy,
                exit_code=code,
                status_reason=moto_batch.ESSENTIAL_CONTAINER_EXITED,
                reason=None,
            )
            == "exit"
        )


def test_lambdas_and_event_rule_follow_workflow(rt: lr.LocalRuntime) -> None:
    lam = rt.client("lambda")
    for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
        conf = lam.get_function_configuration(FunctionName=rt.res.functions[logical_id])
        variables = conf["Environment"]["Variables"]
        assert set(spec.environment) <= set(variables)
        assert conf["Handler"] == spec.handler
        assert conf["Timeout"] == spec.timeout_seconds
        handler = moto_lambda._LAMBDA_HANDLERS[conf["FunctionName"]]
        module = spec.handler.rpartition(".")[0]
        assert handler.__module__ == f"{wf.FUNCTIONS_PACKAGE}.{spec.name}.{module}"
    events = rt.client("events")
    rule = events.describe_rule(Name=rt.res.rule_name, EventBusName=rt.res.event_bus)
    assert json.loads(rule["EventPattern"]) == wf.REQUESTED_EVENT_PATTERN
    (target,) = events.list_targets_by_rule(Rule=rt.res.rule_name, EventBusName=rt.res.event_bus)[
        "Targets"
    ]
    assert target["Arn"] == rt.res.functions["StartFromEvent"]


def test_token_goes_to_the_secret_only(rt: lr.LocalRuntime) -> None:
    with pytest.raises(SynapsePipelinesError, match="token"):
        rt.set_token("")
    rt.set_token("tok-local-runtime-test")
    value = rt.client("secretsmanager").get_secret_value(SecretId=rt.res.secret_arn)
    assert value["SecretString"] == "tok-local-runtime-test"
    request = parse_request(
        {
            "boss_host": "127.0.0.1:1",
            "boss_protocol": "http",
            "collection": "c",
            "experiment": "e",
            "z_range": [0, 1],
            "y_range": [0, 1],
            "x_range": [0, 1],
            "token": "tok-local-runtime-test",
            "token_secret": "some/other-secret",
        }
    )
    data = lr.LocalRuntime.execution_input(request)
    assert "token" not in data and "token_secret" not in data
    assert "tok-local-runtime-test" not in json.dumps(data)


# ---------------------------------------------------------------- the time per step


def test_step_table_lists_every_step_that_ran_maps_and_blockwise_stages_too() -> None:
    """The time table `run --local` prints: blockwise Tasks and Maps (whose iterations run
    as child executions) get their rows; Choice and Pass states, which do no work, do not."""
    names = [
        ("TaskStateEntered", "ValidateRequest", 0, 1),
        ("ChoiceStateEntered", "ChooseDetectMode", 1, 1),
        ("PassStateEntered", "BlockwiseSettings", 1, 1),
        ("TaskStateEntered", "BlockwisePlan", 1, 3),
        ("MapStateEntered", "BlockwiseCovariance", 3, 20),
        ("TaskStateEntered", "BlockwiseThreshold", 20, 22),
        ("MapStateEntered", "BlockwiseLabel", 22, 40),
        ("TaskStateEntered", "Report", 40, 45),
    ]
    history, i = [], 0
    for kind, name, start, end in names:
        exited = kind.replace("Entered", "Exited")
        history.append(
            history_event(i + 1, i, kind, start, stateEnteredEventDetails={"name": name})
        )
        history.append(
            history_event(i + 2, i + 1, exited, end, stateExitedEventDetails={"name": name})
        )
        i += 2
    reader = HistoryReader()
    events = [e for ev in history for e in reader.feed(ev)]
    result = lr.ExecutionResult(
        arn="a", name="n", status="SUCCEEDED", error=None, cause=None, output=None,
        seconds=45.0, step_seconds=reader.step_seconds(), history=history,
    )  # fmt: skip
    assert result.steps() == [
        ("ValidateRequest", 1.0),
        ("BlockwisePlan", 2.0),
        ("BlockwiseCovariance", 17.0),
        ("BlockwiseThreshold", 2.0),
        ("BlockwiseLabel", 18.0),
        ("Report", 5.0),
    ]
    assert [e.state for e in events if e.kind == "succeeded" and e.is_step] == [
        name for name, _ in result.steps()
    ]
    console = Console(width=80, record=True)
    console.print(local_commands._step_table(result.steps()))
    table = console.export_text()
    for name, secs in result.steps():
        assert name in table and f"{secs:.1f}" in table
    assert "ChooseDetectMode" not in table


def test_download_results_refuses_then_replaces_the_whole_folder(
    rt: lr.LocalRuntime, tmp_path: Path
) -> None:
    """A blockwise run's results, then a one-job run's: the folder never mixes the two."""
    s3, key = rt.client("s3"), "download-twice"

    def run_outputs(files: dict[str, str]) -> None:
        listed = s3.list_objects_v2(Bucket=rt.res.bucket, Prefix=wf.results_prefix(key))
        for obj in listed.get("Contents", []):
            s3.delete_object(Bucket=rt.res.bucket, Key=obj["Key"])
        for name, body in files.items():
            s3.put_object(Bucket=rt.res.bucket, Key=wf.artefact_key(key, name), Body=body)

    run_outputs({"manifest.json": "blockwise", "synapses.csv": "b", "predictions.zarr/c/0": "z",
                 "synapse_ids.zarr/zarr.json": "{}"})  # fmt: skip
    first = rt.download_results(key, tmp_path)
    folder = lr.LocalRuntime.results_folder(tmp_path, key)
    blockwise = {"manifest.json", "synapses.csv", "predictions.zarr/c/0"}
    assert set(first) == blockwise | {"synapse_ids.zarr/zarr.json"}
    assert all(path.is_file() and path.parent.is_relative_to(folder) for path in first.values())
    run_outputs({"manifest.json": "one job", "synapses.csv": "j", "predictions.ome.tif": "t"})
    with pytest.raises(SynapsePipelinesError) as refused:
        rt.download_results(key, tmp_path)
    assert refused.value.field == "--out" and "already holds results" in str(refused.value)
    assert "--overwrite" in str(refused.value)
    assert (folder / "manifest.json").read_text() == "blockwise"  # untouched
    second = rt.download_results(key, tmp_path, overwrite=True)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(second) == {"manifest.json", "synapses.csv", "predictions.ome.tif"}
    assert (folder / "manifest.json").read_text() == "one job"
    assert [p.name for p in tmp_path.iterdir()] == [key]  # no staging folder left behind
    run_outputs({})  # a run that left nothing: the folder stays as it was
    assert rt.download_results(key, tmp_path, overwrite=True) == {}
    assert (folder / "manifest.json").read_text() == "one job"


# ---------------------------------------------------------------- CLI refusals (no run)


def test_run_local_refuses_an_occupied_results_folder_before_the_run(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    data = {"boss_host": "127.0.0.1:9", "collection": "c", "experiment": "e"}
    data |= {"z_range": [0, 4], "y_range": [0, 16], "x_range": [0, 16]}
    request.write_text(json.dumps(data))
    folder = lr.LocalRuntime.results_folder(tmp_path / "runs", parse_request(data).results_key)
    (folder / "synapse_ids.zarr").mkdir(parents=True)  # a blockwise run's results
    (folder / "manifest.json").write_text("{}")
    # no token and no terminal: the refusal comes first, before the prompt and the run
    proc = _cli("run", str(request), "--local", "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    assert "already holds results" in err and "--out" in err and "--overwrite" in err
    assert "Traceback" not in proc.stderr and (folder / "manifest.json").read_text() == "{}"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from synapse_pipelines.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_refuses_bad_input_clearly(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"collection": "c", "experiment": "e", "z_range": [3, 1]}))
    proc = _cli("run", str(request))
    assert proc.returncode == 2
    assert "--local" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("run", str(request), "--local")
    assert proc.returncode == 2
    assert "z_range" in proc.stderr and "y_range" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("demo", "--size", "16,512")
    assert proc.returncode == 2
    assert "--size" in proc.stderr
