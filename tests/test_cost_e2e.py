"""Costs through the local runtime: the real ASL in moto, the real Lambda handlers, the Batch
steps as local processes, the local BOSS over HTTP.

- A successful run's manifest records each Batch job's measured duration and cost, the
  total and the price table (what ``synapse-pipelines list`` shows as ``total_usd``).
- A budget cap below the estimate makes ValidateRequest refuse the request: the run fails
  with the estimate, the cap and the fix, before any Batch job is submitted; a negative cap
  is a clear configuration error, also before any job.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from synapse_pipelines.cli.cost_commands import request_estimate
from synapse_pipelines.core import pricing
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.boss_client import BossClient, bytes_per_voxel, image_channels
from synapse_pipelines.local import demo, runtime as lr
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.science.synthetic import make_experiment
from synapse_pipelines.workflow import wiring as wf

pytestmark = pytest.mark.slow

SHAPE = (16, 128, 128)


@dataclass
class Stack:
    boss: LocalBossServer
    rt: lr.LocalRuntime
    token: str

    def request(self, **overrides: Any) -> dict[str, Any]:
        return {**demo.demo_request(self.boss.host, SHAPE), **overrides}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    token = "cost-" + secrets.token_urlsafe(24)
    experiment = make_experiment(SHAPE, seed=5)
    with LocalBossServer(tmp_path_factory.mktemp("boss"), token) as boss:
        client = BossClient(boss.host, "http", token)
        demo.seed_synthetic_experiment(
            client, demo.DEMO_COLLECTION, demo.DEMO_EXPERIMENT, experiment
        )
        with lr.LocalRuntime() as rt:
            rt.set_token(token)
            yield Stack(boss=boss, rt=rt, token=token)


def _submitted_jobs(history: list[dict[str, Any]]) -> int:
    return sum(1 for e in history if e["type"] == "TaskSubmitted")


def test_manifest_records_each_jobs_duration_and_cost(stack: Stack) -> None:
    rt = stack.rt
    sub = rt.submit(stack.request())
    result = rt.wait(sub.execution_arn, timeout=300)
    assert result.succeeded, (result.error, result.cause)
    s3 = rt.client("s3")
    manifest = json.loads(
        s3.get_object(Bucket=rt.res.bucket, Key=wf.artefact_key(sub.results_key, wf.MANIFEST))[
            "Body"
        ].read()
    )
    cost = manifest["cost"]
    assert cost["price_table"] == {"date": pricing.PRICE_TABLE_DATE, "region": "us-east-1"}
    by_step = {j["step"]: j for j in cost["jobs"]}
    # Detect and Report ended before PublishToS3 ran: measured from Batch's own times
    for step in ("detect", "report"):
        job = by_step[step]
        assert job["status"] == "SUCCEEDED" and job["attempts"] == 1
        assert job["duration_s"] > 0 and job["usd"] > 0
        assert job["vcpu_hours"] == pytest.approx(job["duration_s"] / 3600 * job["vcpu"], rel=1e-3)
        assert job["platform"] == pricing.FARGATE_SPOT
    batch = {j["jobName"]: j for j in rt.batch_jobs()}
    detect = batch[by_step["detect"]["job_name"]]
    assert by_step["detect"]["duration_s"] == pytest.approx(
        sum(a["stoppedAt"] - a["startedAt"] for a in detect["attempts"]) / 1000
    )
    # PublishToBoss runs alongside PublishToS3: measured if it had ended, else estimated
    publish = by_step.get("publish-boss")
    if publish is not None and publish["duration_s"] is None:
        assert "duration unknown" in publish["note"]
    assert cost["total_usd"] > 0
    assert cost["total_usd"] == pytest.approx(
        cost["batch_measured_usd"]
        + cost["batch_planned_usd"]
        + sum(cost["services_planned_usd"].values()),
        abs=1e-6,
    )
    assert cost["estimate_usd"] > 0 and cost["notes"]
    # the estimate ValidateRequest made is kept with the validated request
    validated = json.loads(
        s3.get_object(Bucket=rt.res.bucket, Key=wf.validated_request_key(sub.results_key))[
            "Body"
        ].read()
    )
    assert validated["cost_estimate"]["mode"] == "standard"
    assert validated["cost_estimate"]["total_usd"] == cost["estimate_usd"]
    # `synapse-pipelines estimate` on the same request, told the experiment's image channels
    # and given ValidateRequest's settings (the local deployment sizes Detect to this
    # machine), prices it exactly as ValidateRequest did in the run
    settings = rt.client("lambda").get_function_configuration(
        FunctionName=rt.res.functions["ValidateRequest"]
    )["Environment"]["Variables"]
    client = BossClient(stack.boss.host, "http", stack.token)
    channels = image_channels(client, demo.DEMO_COLLECTION, demo.DEMO_EXPERIMENT)
    voxel_bytes = bytes_per_voxel(client, demo.DEMO_COLLECTION, demo.DEMO_EXPERIMENT, channels)
    assert voxel_bytes % len(channels) == 0
    cli = request_estimate(
        parse_request(stack.request()),
        region="us-east-1",
        channels=len(channels),
        channel_bytes=voxel_bytes // len(channels),
        environ=settings,
    )
    assert cli.record() == validated["cost_estimate"]
    rt.notifications()
    rt.emitted_events()


def test_budget_cap_refuses_before_any_batch_job(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = stack.rt
    monkeypatch.setenv(wf.ENV_BUDGET_USD, "0.0001")  # the Lambda reads its process's environment
    jobs_before = len(rt.batch_jobs())
    request = stack.request(y_range=[0, 64])
    sub = rt.submit(request)
    result = rt.wait(sub.execution_arn, timeout=90)
    assert result.status == "FAILED"
    assert result.error == "BudgetExceeded"
    cause = result.cause or ""
    assert "estimated cost of this request" in cause and "$0.0001" in cause
    assert wf.ENV_BUDGET_USD in cause and "smaller box" in cause and "raise the cap" in cause
    assert "Traceback" not in cause
    assert _submitted_jobs(result.history) == 0
    assert len(rt.batch_jobs()) == jobs_before
    key = parse_request(request).results_key
    assert rt.result_keys(key) == []  # nothing written: not even the validated request
    (notice,) = rt.notifications()
    assert "BudgetExceeded" in notice["Message"] and "raise the cap" in notice["Message"]
    assert [e["detail-type"] for e in rt.emitted_events()] == [wf.DETAIL_TYPE_FAILED]


def test_negative_budget_is_a_clear_failure(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = stack.rt
    monkeypatch.setenv(wf.ENV_BUDGET_USD, "-5")
    jobs_before = len(rt.batch_jobs())
    sub = rt.submit(stack.request(y_range=[0, 32]))
    result = rt.wait(sub.execution_arn, timeout=90)
    assert result.status == "FAILED"
    assert f"{wf.ENV_BUDGET_USD}: '-5' is not a budget" in (result.cause or "")
    assert "Fix:" in (result.cause or "")
    assert _submitted_jobs(result.history) == 0 and len(rt.batch_jobs()) == jobs_before
    rt.notifications()
    rt.emitted_events()
