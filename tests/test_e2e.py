"""End to end through the local runtime: the real ASL in moto, the real Lambda handlers, the
real Batch step CLI as local processes, the project's local BOSS over real HTTP with intern.

One module-scoped stack (local BOSS + local AWS) serves every test; volumes are small. The
last test scans everything the runs produced for the token.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_publish import labels_channel_name, mask_channel_name
from synapse_pipelines.io.boss_resources import CoordinateFrame
from synapse_pipelines.io.ome_tiff import read_volume
from synapse_pipelines.io.outputs import verify_manifest
from synapse_pipelines.local import demo, deployment, moto_batch, runtime as lr
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.science.synthetic import MATCH_NM, make_experiment
from synapse_pipelines.workflow import run_names, wiring as wf

pytestmark = pytest.mark.slow

SHAPE = (16, 192, 192)
FLAT_EXPERIMENT = "flat_experiment"  # channels exist, no data: Detect fails on a flat channel


class _Records(logging.Handler):
    """Every log record emitted in this process during the module (Lambdas, steps, moto)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__!r}")


@dataclass
class E2E:
    token: str
    boss: LocalBossServer
    rt: lr.LocalRuntime
    experiment: Any
    job_lines: list[str]
    records: _Records
    out: Path
    results: dict[str, Any] = field(default_factory=dict)

    def request(self, **overrides: Any) -> dict[str, Any]:
        data = demo.demo_request(self.boss.host, SHAPE)
        data.update(overrides)
        return data


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    token = "e2e-" + secrets.token_urlsafe(24)
    records = _Records()
    loggers = [logging.getLogger(), logging.getLogger(wf.POWERTOOLS_SERVICE)]
    job_lines: list[str] = []
    exp = make_experiment(SHAPE, seed=3, profile="sparse")
    with LocalBossServer(tmp_path_factory.mktemp("boss"), token) as boss:
        client = BossClient(boss.host, "http", token)
        demo.seed_synthetic_experiment(client, demo.DEMO_COLLECTION, demo.DEMO_EXPERIMENT, exp)
        frame = CoordinateFrame(
            extent=Box((0, 0, 0), SHAPE),
            voxel_size=exp.voxel_size,
            voxel_unit=exp.voxel_unit,
            name="flat_frame",
        )
        for name in (exp.presynaptic, exp.postsynaptic):
            client.ensure_channel(
                demo.DEMO_COLLECTION,
                FLAT_EXPERIMENT,
                name,
                datatype="uint8",
                type="image",
                frame=frame,
            )
        with lr.LocalRuntime(job_log_sink=lambda n, i, line: job_lines.append(line)) as rt:
            rt.set_token(token)
            # after the handlers are loaded: powertools formats with its logger's first handler
            for logger in loggers:
                logger.addHandler(records)
            yield E2E(
                token=token,
                boss=boss,
                rt=rt,
                experiment=exp,
                job_lines=job_lines,
                records=records,
                out=tmp_path_factory.mktemp("results"),
            )
    for logger in loggers:
        logger.removeHandler(records)
    moto_batch.clear_batch_host_failures()


def _submitted_jobs(history: list[dict[str, Any]]) -> int:
    return sum(1 for e in history if e["type"] == "TaskSubmitted")


def test_success_path(e2e: E2E) -> None:
    rt = e2e.rt
    request = e2e.request()
    sub = rt.submit(request)
    assert not sub.duplicate
    events: list[lr.ProgressEvent] = []
    result = rt.wait(sub.execution_arn, on_event=events.append, timeout=240)
    e2e.results["success"] = result
    assert result.succeeded, (result.error, result.cause)
    entered = result.states_entered()
    for state in ("ValidateRequest", "Detect", "Report", "PublishToBoss", "PublishToS3", "Notify"):
        assert state in entered
    assert entered.index("Detect") < entered.index("Report") < entered.index("Publish")
    assert {"Detect", "Report", "PublishToBoss"} <= {e.state for e in events if e.kind == "job"}
    assert all(result.step_seconds[s] > 0 for s in ("Detect", "Report", "PublishToBoss"))

    files = rt.download_results(sub.results_key, e2e.out)
    assert set(wf.ARTEFACTS) <= set(files)
    mask = read_volume(files[wf.PREDICTIONS])
    ids = read_volume(files[wf.SYNAPSE_IDS])
    assert mask.data.shape == SHAPE and mask.data.dtype == np.uint8
    assert set(np.unique(mask.data)) <= {0, 255}
    assert mask.voxel_size == pytest.approx(e2e.experiment.voxel_size)
    # the labelled ids are the mask's objects, one row of synapses.csv each
    assert ((ids.data > 0) == (mask.data == 255)).all()
    rows = files[wf.SYNAPSES_CSV].read_text().strip().splitlines()
    n = len(np.unique(ids.data[ids.data > 0]))
    assert len(rows) - 1 == n > 0
    manifest = json.loads(files[wf.MANIFEST].read_text())
    assert manifest["results_key"] == sub.results_key
    assert manifest["execution_id"] == sub.execution_arn
    assert verify_manifest(files[wf.MANIFEST].parent) == []  # every listed file, by sha256
    assert "<html" in files[wf.REPORT].read_text()[:2000].lower()
    assert "neuroglancer" in files[wf.LINKS].read_text().lower()

    # the predictions were pushed to BOSS and read back identical
    client = BossClient(e2e.boss.host, "http", e2e.token)
    pushed = client.pull(
        request["output_collection"],
        request["output_experiment"],
        mask_channel_name(sub.results_key),
        Box((0, 0, 0), SHAPE),
    )
    assert np.array_equal(pushed, mask.data)

    # the detector finds most synthetic synapses (centroid matching, as the demo scores it)
    from synapse_pipelines.science.evaluation import evaluate_labels

    score = evaluate_labels(
        ids.data,
        e2e.experiment.synapse_centroids,
        max_distance=MATCH_NM,
        voxel_size=e2e.experiment.voxel_size,
    )
    assert score.f1 > 0.6, score

    (notice,) = rt.notifications()
    assert str(n) in notice["Subject"]
    assert sub.results_key in notice["Message"]
    emitted = rt.emitted_events()
    assert [e["detail-type"] for e in emitted] == [wf.DETAIL_TYPE_SUCCEEDED]
    assert emitted[0]["detail"]["synapses"] == n


def test_duplicate_request_does_not_run_twice(e2e: E2E) -> None:
    rt = e2e.rt
    assert "success" in e2e.results, "needs test_success_path first"
    before = rt.executions()
    again = rt.submit(e2e.request())
    assert again.duplicate
    # the same request as an event: StartFromEvent derives the same name and starts nothing
    rt.put_request_event(lr.LocalRuntime.execution_input(parse_request(e2e.request())))
    import time

    time.sleep(2)  # the rule's Lambda target runs asynchronously
    assert len(rt.executions()) == len(before)


def test_other_settings_of_the_same_box_never_overwrite_a_published_run(e2e: E2E) -> None:
    """The same box with other detector settings is a new run under a new key: the first
    run's BOSS channels and S3 results stay as they were (an audit found them replaced)."""
    rt = e2e.rt
    assert "success" in e2e.results, "needs test_success_path first"
    request = e2e.request()
    first_key = parse_request(request).results_key
    client = BossClient(e2e.boss.host, "http", e2e.token)
    out_col, out_exp = request["output_collection"], request["output_experiment"]
    box = Box((0, 0, 0), SHAPE)

    def published_ids(key: str) -> np.ndarray:
        return client.pull(out_col, out_exp, labels_channel_name(key), box)

    def manifest(key: str) -> bytes:
        obj = rt.client("s3").get_object(
            Bucket=rt.res.bucket, Key=wf.artefact_key(key, wf.MANIFEST)
        )
        return obj["Body"].read()

    first_ids, first_manifest = published_ids(first_key), manifest(first_key)
    settings = {"seed_level": 1.5, "weak_seed_level": 1.5, "assignment_level": 1.0}
    sub = rt.submit(e2e.request(pipeline_parameters=settings))
    assert not sub.duplicate  # another request: another run
    result = rt.wait(sub.execution_arn, timeout=240)
    assert result.succeeded, (result.error, result.cause)

    assert np.array_equal(published_ids(first_key), first_ids)
    assert manifest(first_key) == first_manifest
    assert sub.results_key.startswith(first_key + "_settings_")
    assert not np.array_equal(published_ids(sub.results_key), first_ids)  # settings matter
    assert json.loads(manifest(sub.results_key))["results_key"] == sub.results_key
    # the very same request again is the same run: nothing new starts
    assert rt.submit(e2e.request(pipeline_parameters=settings)).duplicate
    rt.notifications()
    rt.emitted_events()


def test_eventbridge_triggered_run(e2e: E2E) -> None:
    rt = e2e.rt
    request = e2e.request(y_range=[0, 96], x_range=[0, 96])
    detail = lr.LocalRuntime.execution_input(parse_request(request))
    before = {e["executionArn"] for e in rt.executions()}
    rt.put_request_event(detail)
    rt.put_request_event(detail)  # sent twice: one run
    import time

    deadline = time.monotonic() + 30
    new: list[dict[str, Any]] = []
    while not new and time.monotonic() < deadline:
        new = [e for e in rt.executions() if e["executionArn"] not in before]
        time.sleep(0.1)
    assert len(new) == 1
    req = parse_request(request)
    assert new[0]["name"] == run_names.execution_name(detail, req.results_key)
    result = rt.wait(new[0]["executionArn"], timeout=240)
    e2e.results["events"] = result
    assert result.succeeded, (result.error, result.cause)
    time.sleep(1)
    assert len([e for e in rt.executions() if e["executionArn"] not in before]) == 1
    assert set(wf.ARTEFACTS) <= set(k.rsplit("/", 1)[1] for k in rt.result_keys(req.results_key))
    rt.notifications()
    rt.emitted_events()


def test_validation_failure_is_clear_and_starts_no_batch_job(e2e: E2E) -> None:
    rt = e2e.rt
    jobs_before = len(rt.batch_jobs())
    sub = rt.submit(e2e.request(z_range=[0, SHAPE[0] + 8]))  # beyond the coordinate frame
    result = rt.wait(sub.execution_arn, timeout=60)
    e2e.results["validation"] = result
    assert result.status == "FAILED"
    assert result.error in ("BossError", "RequestValidationError")
    assert "z_range" in (result.cause or "")
    assert str(SHAPE[0]) in (result.cause or "")  # names the frame's extent
    assert "Traceback" not in (result.cause or "")
    assert _submitted_jobs(result.history) == 0
    assert len(rt.batch_jobs()) == jobs_before
    (notice,) = rt.notifications()
    assert "z_range" in notice["Message"]
    assert [e["detail-type"] for e in rt.emitted_events()] == [wf.DETAIL_TYPE_FAILED]


def test_batch_failure_is_retried_then_notified_with_its_cause(e2e: E2E) -> None:
    rt = e2e.rt
    # a Spot reclaim on the first attempt (Batch retries it), then a real error: both
    # channels of this experiment are empty, which the detector refuses (not retried)
    moto_batch.inject_batch_host_failure(deployment.STACK_NAME + "-Detect", count=1)
    # NOMADS refuses a flat channel (PAIRS, the default, explains it as an empty result)
    sub = rt.submit(e2e.request(experiment=FLAT_EXPERIMENT, pipeline="nomads-unsupervised"))
    result = rt.wait(sub.execution_arn, timeout=120)
    e2e.results["batch_failure"] = result
    assert result.status == "FAILED"
    entered = result.states_entered()
    assert "Detect" in entered and "Report" not in entered
    assert "NotifyFailure" in entered
    (job,) = [
        j for j in rt.batch_jobs() if j["jobName"].startswith("detect-") and j["status"] == "FAILED"
    ]
    attempts = job["attempts"]
    assert len(attempts) == 2
    assert attempts[0]["statusReason"].startswith("Host EC2")
    assert attempts[1]["container"]["exitCode"] == wf.USER_ERROR_EXIT_CODE
    (notice,) = rt.notifications()
    assert "Detect" in notice["Subject"]
    # the cause is the step's own clear message (channel, problem, fix), not a Batch blob
    assert result.error == "DetectionError"
    assert "constant" in (result.cause or "") and "Fix:" in (result.cause or "")
    assert "DetectionError" in notice["Message"]
    assert (result.cause or "") in notice["Message"]
    assert [e["detail-type"] for e in rt.emitted_events()] == [wf.DETAIL_TYPE_FAILED]


def test_an_empty_result_runs_through_and_is_explained(e2e: E2E, tmp_path: Path) -> None:
    """The default detector on the flat experiment: the run succeeds with zero synapses and
    the manifest, the report header and the success notice say why (never a silent 0)."""
    rt = e2e.rt
    rt.notifications(), rt.emitted_events()
    sub = rt.submit(e2e.request(experiment=FLAT_EXPERIMENT))
    result = rt.wait(sub.execution_arn, timeout=300)
    assert result.succeeded, (result.error, result.cause)
    files = rt.download_results(sub.results_key, tmp_path)
    manifest = json.loads(files[wf.MANIFEST].read_text())
    assert manifest["counts"]["synapses"] == 0
    explanation = manifest["explanation"]
    assert "flat" in explanation, explanation
    assert explanation in files[wf.REPORT].read_text()
    (notice,) = rt.notifications()
    assert f"Synapses found: 0 -- {explanation}" in notice["Message"]


def test_token_never_leaks(e2e: E2E) -> None:
    """History, state payloads, logs, SNS messages, events, S3 objects, files: no token."""
    assert {"success", "events", "validation", "batch_failure"} <= set(e2e.results)
    rt = e2e.rt
    token = e2e.token
    places: dict[str, str] = {}
    sfn = rt.client("stepfunctions")
    for ex in rt.executions():
        arn = ex["executionArn"]
        places[f"history {ex['name']}"] = json.dumps(rt.history(arn), default=str)
        places[f"describe {ex['name']}"] = json.dumps(
            sfn.describe_execution(executionArn=arn), default=str
        )
    places["definition"] = sfn.describe_state_machine(stateMachineArn=rt.res.state_machine_arn)[
        "definition"
    ]
    places["job logs (CloudWatch)"] = json.dumps(rt.job_logs())
    places["job output lines"] = "\n".join(e2e.job_lines)
    places["batch jobs"] = json.dumps(rt.batch_jobs(), default=str)
    places["log records"] = "\n".join(e2e.records.lines)
    places["notifications"] = json.dumps(rt.notifications())
    places["events"] = json.dumps(rt.emitted_events())
    lam = rt.client("lambda")
    for fn in rt.res.functions.values():
        places[f"lambda {fn}"] = json.dumps(lam.get_function_configuration(FunctionName=fn))
    s3 = rt.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=rt.res.bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=rt.res.bucket, Key=obj["Key"])["Body"].read()
            places[f"s3 {obj['Key']}"] = body.decode("latin-1")
    for path in e2e.out.rglob("*"):
        if path.is_file():
            places[f"file {path}"] = path.read_bytes().decode("latin-1")
    assert len(places) > 20
    leaks = [where for where, text in places.items() if token in text]
    assert leaks == []
    # and the scan can fail: the token is where it belongs
    secret = rt.client("secretsmanager").get_secret_value(SecretId=rt.res.secret_arn)
    assert secret["SecretString"] == token


def test_a_request_reads_the_resolution_level_it_names(e2e: E2E, tmp_path: Path) -> None:
    """An experiment stored at 70 x 25 x 25 nm (PAIRS' band-pass would overflow there, as on
    collman15v2's 70 x 2.24 x 2.24 nm): level 0 fails before reading BOSS and names the
    level that would run; level 2 (70 x 100 x 100 nm) before the channels are downsampled is
    refused at validation; once they are, the run detects on level 2, exactly as PAIRS on
    the volume BOSS's pooling gives back (the 4 x 4 copies of each voxel average to it), and
    publishes to a level-2 output experiment by default."""
    from intern.remote.boss import BossRemote
    from intern.resource.boss.resource import ExperimentResource

    from synapse_pipelines.io import boss_downsample as ds
    from synapse_pipelines.local.boss_loading import load_experiment
    from synapse_pipelines.science.paired_puncta import detect_paired_puncta

    exp = e2e.experiment
    names = (exp.presynaptic, exp.postsynaptic)
    fine = {n: np.repeat(np.repeat(exp.channels[n], 4, axis=1), 4, axis=2) for n in names}
    client = BossClient(e2e.boss.host, "http", e2e.token)
    col, name = demo.DEMO_COLLECTION, "fine_experiment"
    load_experiment(client, col, name, fine, voxel_size=(70.0, 25.0, 25.0))
    remote = BossRemote({"protocol": "http", "host": e2e.boss.host, "token": e2e.token})
    resource = remote.get_project(ExperimentResource(name, col))
    resource.num_hierarchy_levels = 3
    remote.update_project(name, resource)
    rt = e2e.rt
    rt.notifications(), rt.emitted_events()  # drain earlier tests' messages
    base = e2e.request(experiment=name)
    del base["output_experiment"]

    z, y, x = fine[names[0]].shape
    seen = len(e2e.job_lines)
    sub = rt.submit({**base, "z_range": [0, z], "y_range": [0, y], "x_range": [0, x]})
    result = rt.wait(sub.execution_arn, timeout=300)
    assert not result.succeeded and "DetectionError" in (result.error or "")
    assert "resolution: paired-puncta cannot run on voxels of 70 x 25 x 25 nm" in result.cause
    assert "Fix: set resolution to 1 (voxels of 70 x 50 x 50 nm" in result.cause
    job = e2e.job_lines[seen:]  # the Detect job ran, and stopped before its first read
    assert any(line.startswith("error: resolution:") for line in job), job
    assert not any("pulling" in line for line in e2e.job_lines[seen:]), "it read BOSS first"

    level2 = {**base, "resolution": 2, "y_range": [0, y // 4], "x_range": [0, x // 4]}
    sub = rt.submit(level2)
    result = rt.wait(sub.execution_arn, timeout=120)
    assert not result.succeeded and "resolution: channel" in (result.cause or "")
    assert "NOT_DOWNSAMPLED" in result.cause and "Fix:" in result.cause
    assert "Detect" not in result.states_entered()

    for channel in names:
        ds.start_downsample(client, col, name, channel)
        assert ds.wait_for_downsample(client, col, name, channel, timeout=120, poll=0.1).status == (
            ds.DOWNSAMPLED
        )
    # one section less: another request (the same one would find its failed execution)
    sub = rt.submit({**level2, "z_range": [0, z - 1]})
    assert not sub.duplicate
    result = rt.wait(sub.execution_arn, timeout=300)
    assert result.succeeded, (result.error, result.cause)
    assert sub.results_key.endswith("_res_2")
    files = rt.download_results(sub.results_key, tmp_path)
    ids = read_volume(files[wf.SYNAPSE_IDS])
    pre, post = (exp.channels[n][: z - 1] for n in names)
    assert ids.data.shape == pre.shape
    assert ids.voxel_size == pytest.approx((70.0, 100.0, 100.0))
    direct = detect_paired_puncta(pre, post, voxel_size=(70.0, 100.0, 100.0))
    assert np.array_equal(ids.data, direct.labels) and direct.n_synapses > 0
    manifest = json.loads(files[wf.MANIFEST].read_text())
    assert manifest["request"]["resolution"] == 2
    assert manifest["request"]["output_experiment"] == "nomads_predictions_res2"
    pushed = client.pull(
        base["output_collection"],
        "nomads_predictions_res2",
        labels_channel_name(sub.results_key),
        Box((0, 0, 0), ids.data.shape),
    )
    assert np.array_equal(pushed, ids.data)
    assert client.coordinate_frame(
        base["output_collection"], "nomads_predictions_res2"
    ).voxel_size == (
        70.0,
        100.0,
        100.0,
    )
