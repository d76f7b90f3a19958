"""Operating runs through the local runtime with the real ASL: cancel, retry, list, logs and
status of one-job runs (the blockwise ones: ``test_blockwise_operations.py``).

One module-scoped stack (local BOSS + local AWS). The commands' functions are driven with
the local runtime's deployment (``LocalRuntime.deployment()``), exactly what the CLI calls
with a stack's; a last test drives the CLI itself against the local stack's outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.operations import (
    FLAT_EXPERIMENT,
    REFUSES_FLAT,
    OpsStack,
    local_stack,
    running_jobs,
    wait_until,
)

from synapse_pipelines.cli import run_commands
from synapse_pipelines.cli.aws_commands import run_summary
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.local import moto_batch
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.run_status import read_run_status
from synapse_pipelines.workflow.runs import RunNotFoundError, find_execution

pytestmark = pytest.mark.slow

SHAPE = (16, 128, 128)
HOLD = "held by the test until terminated"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    with local_stack(tmp_path_factory.mktemp("ops"), shape=SHAPE, seed=5) as stack:
        yield stack


def _key(request: dict[str, Any]) -> str:
    return parse_request(request).results_key


def _manifest(ops: OpsStack, key: str) -> dict[str, Any] | None:
    s3 = ops.rt.client("s3")
    try:
        body = s3.get_object(Bucket=ops.rt.res.bucket, Key=wf.artefact_key(key, wf.MANIFEST))
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body["Body"].read())


def test_cancel_stops_the_run_terminates_its_job_and_says_so(ops: OpsStack) -> None:
    rt = ops.rt
    rt.notifications(), rt.emitted_events()
    # Report runs a stand-in that holds until terminated: Detect has written the manifest
    moto_batch.inject_job_fault("report-*", hold=True, message=HOLD)
    request = ops.request()
    sub = rt.submit(request)
    (job,) = wait_until("the Report job", lambda: running_jobs(ops, "report-", HOLD))
    out: list[str] = []
    changed = run_commands.cancel_command(
        ops.deployment, sub.name, wait_seconds=60, echo=out.append
    )
    assert changed, out
    described = rt.client("stepfunctions").describe_execution(executionArn=sub.execution_arn)
    assert described["status"] == "ABORTED"
    # the job was terminated: its process killed, Batch says why
    ended = wait_until(
        "the terminated job",
        lambda: [
            j for j in rt.batch_jobs() if j["jobId"] == job["jobId"] and j["status"] == "FAILED"
        ],
    )
    assert "cancelled" in ended[0]["statusReason"]
    assert moto_batch.kill_running_jobs() == 0  # no process left behind
    assert any(job["jobName"] in line for line in out)
    # the run record and the manifest say cancelled; one notice, one event
    key = sub.results_key
    record = read_run_status(rt.client("s3"), rt.res.bucket, key, sub.execution_arn)
    assert record and record["status"] == "CANCELLED" and record["notified"]
    assert [j["job_id"] for j in record["terminated_jobs"]] == [job["jobId"]]
    manifest = _manifest(ops, key)
    assert manifest and manifest["status"] == "cancelled" and "published" not in manifest
    (notice,) = rt.notifications()
    assert "cancelled" in notice["Subject"] and sub.execution_arn in notice["Message"]
    assert f"retry {sub.name}" in notice["Message"]
    (event,) = rt.emitted_events()
    assert event["detail-type"] == wf.DETAIL_TYPE_CANCELLED
    assert event["detail"]["execution_id"] == sub.execution_arn
    assert event["detail"]["terminated_jobs"] == 1
    ops.results["cancelled"] = sub

    # cancelling it again changes nothing and says so
    again: list[str] = []
    assert not run_commands.cancel_command(ops.deployment, sub.name, echo=again.append)
    assert again == [f"{sub.name} already ended: CANCELLED; nothing changed"]
    assert rt.notifications() == [] and rt.emitted_events() == []
    assert read_run_status(rt.client("s3"), rt.res.bucket, key) == record


def test_retry_runs_the_cancelled_request_again_under_a_related_name(ops: OpsStack) -> None:
    rt = ops.rt
    cancelled = ops.results["cancelled"]
    out: list[str] = []
    (outcome,) = run_commands.retry_command(ops.deployment, cancelled.name, echo=out.append)
    assert outcome.started and outcome.attempt == 2
    # the word `list` and `cancel` use, not Step Functions' ABORTED
    assert out == [f"{cancelled.name} (CANCELLED) -> started {outcome.name}"]
    assert outcome.name == run_names.execution_name(
        rt.execution_input(parse_request(ops.request())), cancelled.results_key, attempt=2
    )
    assert outcome.name.endswith("-r2") and len(outcome.name) <= run_names.EXECUTION_NAME_MAX
    assert (
        run_names.parse_execution_name(outcome.name)[0]
        == run_names.parse_execution_name(cancelled.name)[0]
    )
    result = rt.wait(outcome.execution_arn, timeout=300)
    assert result.succeeded, (result.error, result.cause)
    manifest = _manifest(ops, cancelled.results_key)
    assert (
        manifest and "status" not in manifest and manifest["execution_id"] == outcome.execution_arn
    )
    ops.results["retried"] = outcome
    # the request file names the latest attempt; a succeeded run has nothing to retry
    latest = find_execution(ops.deployment, "", request=parse_request(ops.request()))
    assert latest["name"] == outcome.name
    (again,) = run_commands.retry_command(ops.deployment, cancelled.name, echo=out.append)
    assert not again.started and "nothing to retry" in (again.why or "")
    # and cancelling a finished run changes nothing
    assert not run_commands.cancel_command(ops.deployment, outcome.name, echo=out.append)
    rt.notifications(), rt.emitted_events()


def test_a_failed_job_names_its_log_stream_and_logs_prints_it(ops: OpsStack) -> None:
    rt = ops.rt
    rt.notifications(), rt.emitted_events()
    sub = rt.submit(ops.request(experiment=FLAT_EXPERIMENT, pipeline=REFUSES_FLAT))
    result = rt.wait(sub.execution_arn, timeout=240)
    assert result.status == "FAILED" and result.error == "DetectionError"
    (notice,) = rt.notifications()
    (job,) = [
        j
        for j in rt.batch_jobs()
        if j["jobName"] == f"detect-{run_names.job_name_stem(sub.results_key)}"
    ]
    stream = job["attempts"][-1]["container"]["logStreamName"]
    command = f"synapse-pipelines logs {sub.name} --step Detect --stack synapse-pipelines-local"
    assert f"Log of the failing job: /aws/batch/job {stream}" in notice["Message"]
    assert f"Print it: {command}" in notice["Message"]
    (event,) = rt.emitted_events()
    assert event["detail"]["log_stream"] == stream and event["detail"]["logs_command"] == command
    # status names them too
    summary = run_summary(ops.deployment, find_execution(ops.deployment, sub.name))
    assert summary["log_stream"] == stream and summary["logs_command"] == command
    # the run record says failed (Detect wrote no manifest)
    record = read_run_status(rt.client("s3"), rt.res.bucket, sub.results_key, sub.execution_arn)
    assert record and record["status"] == "FAILED" and record["step"] == "Detect"
    # and the command prints the job's output: the step's own error line
    out: list[str] = []
    assert run_commands.logs_command(ops.deployment, sub.name, step="detect", echo=out.append) == 1
    assert out[0].startswith("== Detect: job detect-") and stream in out[0]
    assert any(line.startswith("error: DetectionError") or "constant" in line for line in out[1:])
    ops.results["failed"] = sub


def test_list_shows_runs_with_status_synapses_and_where_results_are(ops: OpsStack) -> None:
    dep = ops.deployment
    out: list[str] = []
    run_commands.list_command(dep, echo=out.append)
    header, *rows = out
    assert header.split()[:3] == ["status", "request", "pipeline"]
    names = {r.split()[-1]: r for r in rows}
    retried, cancelled = ops.results["retried"], ops.results["cancelled"]
    # the pipeline column tells runs of the same box with different pipelines apart
    assert " paired-puncta " in names[retried.name]
    assert f" {REFUSES_FLAT} " in names[ops.results["failed"].name]
    assert names[retried.name].startswith("SUCCEEDED")
    assert f"s3://{ops.rt.res.bucket}/{cancelled.results_key}/" in names[retried.name]
    assert names[cancelled.name].startswith("CANCELLED")
    assert names[ops.results["failed"].name].startswith("FAILED")
    # JSON, status filter (CANCELLED is ABORTED), the cost PublishToS3 recorded
    text: list[str] = []
    run_commands.list_command(dep, status="cancelled", as_json=True, echo=text.append)
    listed = json.loads(text[0])
    assert [r["name"] for r in listed["runs"]] == [cancelled.name]
    assert listed["runs"][0]["pipeline"] == "paired-puncta"
    run_commands.list_command(dep, status="SUCCEEDED", as_json=True, echo=text.append)
    (done,) = json.loads(text[1])["runs"]
    assert done["synapses"] > 0 and done["cost_usd"] > 0 and done["attempt"] == 2
    # paging: one run per page, the token continues where the page ended
    page: list[str] = []
    run_commands.list_command(dep, limit=1, echo=page.append)
    assert page[-1].startswith("more: synapse-pipelines list --stack synapse-pipelines-local")
    token = page[-1].split("--next ")[1]
    following: list[str] = []
    run_commands.list_command(dep, limit=1, next_token=token, echo=following.append)
    assert following[1].split()[-1] != page[1].split()[-1]
    # --since in the future: nothing
    none: list[str] = []
    run_commands.list_command(dep, since="2999-01-01", echo=none.append)
    assert none == ["no runs match"]


def test_retry_failed_since_retries_each_failed_request_once(ops: OpsStack) -> None:
    rt = ops.rt
    failed = ops.results["failed"]
    out: list[str] = []
    started = find_execution(ops.deployment, failed.name)["startDate"]
    outcomes = run_commands.retry_command(
        ops.deployment, failed_since=started.strftime("%Y-%m-%d"), echo=out.append
    )
    # the flat-channel run is the one failed run (the cancelled one's latest attempt succeeded)
    (outcome,) = outcomes
    assert outcome.started and outcome.previous == failed.name and outcome.attempt == 2
    assert outcome.name == run_names.execution_name(
        rt.execution_input(
            parse_request(ops.request(experiment=FLAT_EXPERIMENT, pipeline=REFUSES_FLAT))
        ),
        failed.results_key,
        attempt=2,
    )
    assert out == [f"{failed.name} (FAILED) -> started {outcome.name}"]
    result = rt.wait(outcome.execution_arn, timeout=240)
    assert result.status == "FAILED"  # the channels are still flat
    # its logs are its own job's, not the first attempt's
    logs: list[str] = []
    assert run_commands.logs_command(ops.deployment, outcome.name, echo=logs.append) == 1
    (notice,) = rt.notifications()
    assert f"logs {outcome.name} --step Detect" in notice["Message"]
    rt.emitted_events()
    # since a day ago: the request's latest attempt (this one) again, the third attempt
    (third,) = run_commands.retry_command(ops.deployment, failed_since="1d", echo=out.append)
    assert third.previous == outcome.name and third.name == outcome.name[:-1] + "3"
    assert rt.wait(third.execution_arn, timeout=240).status == "FAILED"
    rt.notifications(), rt.emitted_events()
    ops.results["failed_latest"] = third.name


def test_the_cli_reaches_the_local_stack_by_its_outputs(ops: OpsStack, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synapse_pipelines.cli import app

    env = ops.rt.aws.environment()
    stack = ["--stack", "synapse-pipelines-local"]
    runner = CliRunner()
    listed = runner.invoke(app, ["list", *stack, "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.output)["runs"]
    assert {r["status"] for r in runs} == {"SUCCEEDED", "FAILED", "CANCELLED"}
    failed = ops.results["failed_latest"]
    logs = runner.invoke(app, ["logs", failed, "--step", "Detect", *stack], env=env)
    assert logs.exit_code == 0 and logs.output.startswith("== Detect: job detect-"), logs.output
    other = runner.invoke(app, ["logs", failed, "--step", "Report", *stack], env=env)
    assert other.exit_code == 0 and other.output == (
        f"no Batch jobs of step Report in {failed}; it has jobs of step Detect: pass it as --step\n"
    ), other.output
    status = runner.invoke(app, ["status", failed, *stack], env=env)
    assert status.exit_code == 0 and f"logs {failed} --step Detect" in status.output
    cancelled = ops.results["cancelled"].name
    shown = runner.invoke(app, ["status", cancelled, *stack], env=env)
    assert shown.exit_code == 0 and shown.output.startswith(f"{cancelled}: CANCELLED\n")
    assert "ABORTED" not in shown.output and ": running" not in shown.output, shown.output
    cancel = runner.invoke(app, ["cancel", failed, *stack], env=env)
    assert cancel.exit_code == 0 and "already ended: FAILED" in cancel.output
    # the request file names its latest attempt: `logs REQUEST --step NAME`
    request_file = tmp_path / "request.json"
    request_file.write_text(
        json.dumps(ops.request(experiment=FLAT_EXPERIMENT, pipeline=REFUSES_FLAT))
    )
    by_request = runner.invoke(
        app, ["logs", str(request_file), "--step", "detect", *stack], env=env
    )
    assert by_request.exit_code == 0 and by_request.output == logs.output


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda d: run_commands.list_command(d, limit=0), "--limit"),
        (lambda d: run_commands.list_command(d, since="last tuesday"), "--since"),
        (lambda d: run_commands.list_command(d, status="DONE"), "--status"),
        (lambda d: run_commands.cancel_command(d, "no-such-run"), "REQUEST_OR_EXECUTION"),
        (lambda d: run_commands.retry_command(d, "no-such-run"), "REQUEST_OR_EXECUTION"),
        (lambda d: run_commands.retry_command(d, None), "REQUEST_OR_EXECUTION"),
        (lambda d: run_commands.retry_command(d, None, failed_since="soon"), "--failed-since"),
        (lambda d: run_commands.logs_command(d, "no-such-run"), "REQUEST_OR_EXECUTION"),
    ],
)
def test_bad_input_is_a_clear_error_naming_the_field(ops: OpsStack, call: Any, field: str) -> None:
    with pytest.raises(SynapsePipelinesError) as caught:
        call(ops.deployment)
    assert caught.value.field == field and caught.value.hint


def test_unknown_step_names_the_known_ones(ops: OpsStack) -> None:
    with pytest.raises(SynapsePipelinesError, match="BlockwiseLabel") as caught:
        run_commands.logs_command(ops.deployment, ops.results["failed"].name, step="Detection")
    assert caught.value.field == "--step"
    with pytest.raises(RunNotFoundError):
        find_execution(ops.deployment, "arn:aws:states:us-east-1:123456789012:execution:x:y")
