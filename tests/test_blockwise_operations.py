"""Blockwise runs through the local runtime with the real ASL: a failed block never ends as
success and is named in the failure notice; a retry reuses the completed blocks; a cancel
terminates the block jobs of the Distributed Map's iterations.

8 blocks (8x64x64 of a 16x128x128 box), 4 per Map item, so each Distributed Map runs two
iterations; a block's failure is injected into the local Batch (``inject_job_fault``: the
next attempt of the job named like a pattern runs a stand-in that prints a line and exits 1,
or holds until terminated).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.operations import OpsStack, local_stack, wait_until

from synapse_pipelines.cli import run_commands
from synapse_pipelines.cli.aws_commands import run_summary
from synapse_pipelines.local import moto_batch
from synapse_pipelines.workflow import run_names, wiring as wf
from synapse_pipelines.workflow.run_status import read_run_status
from synapse_pipelines.workflow.runs import find_execution

pytestmark = pytest.mark.slow

SHAPE = (16, 128, 128)
BLOCK = "8,64,64"  # 2 x 2 x 2 = 8 blocks
ENV = {
    "SYNAPSE_BLOCKWISE_MIN_VOXELS": "1",  # every request goes blockwise
    "SYNAPSE_BLOCKWISE_BLOCK_SHAPE": BLOCK,
    "SYNAPSE_BLOCKWISE_ALIGNMENT": BLOCK,
    "SYNAPSE_BLOCKWISE_MAX_CONCURRENCY": "2",
    "SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM": "4",  # Map items "0-4" and "4-8"
}
BROKE = "injected: label of blocks 4-8 broke"
HOLD = "held by the test until terminated"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    with local_stack(tmp_path_factory.mktemp("bops"), shape=SHAPE, seed=21, env=ENV) as stack:
        yield stack


def _s3_keys(ops: OpsStack, prefix: str) -> list[str]:
    s3 = ops.rt.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=ops.rt.res.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_failed_block_fails_the_run_and_the_notice_names_it(ops: OpsStack) -> None:
    rt = ops.rt
    rt.notifications(), rt.emitted_events()
    moto_batch.inject_job_fault("detect-bl-4-8-*", exit_code=1, message=BROKE)
    sub = rt.submit(ops.request())
    result = rt.wait(sub.execution_arn, timeout=900)
    # the Map failed as a whole: nothing after it ran, nothing says success
    assert result.status == "FAILED", (result.error, result.cause)
    assert result.error == "States.ExceedToleratedFailureThreshold", result.cause  # as on AWS
    entered = result.states_entered()
    assert "BlockwiseLabel" in entered and "DescribeFailure" in entered
    assert not {"BlockwiseStitch", "Report", "Publish", "Notify", "EmitSucceeded"} & set(entered)
    events = rt.emitted_events()
    assert [e["detail-type"] for e in events] == [wf.DETAIL_TYPE_FAILED]
    detail = events[0]["detail"]
    (block,) = [b for b in detail["failed_blocks"] if b["block"] == "4-8"]
    assert block["step"] == "BlockwiseLabel" and block["exit_code"] == 1
    assert block["job_name"] == f"detect-bl-4-8-{run_names.job_name_stem(sub.results_key)}"
    assert detail["step"] == "BlockwiseLabel" and detail["log_stream"] == block["log_stream"]
    command = (
        f"synapse-pipelines logs {sub.name} --step BlockwiseLabel --failed "
        "--stack synapse-pipelines-local"
    )
    assert detail["logs_command"] == command
    (notice,) = rt.notifications()
    assert "failed" in notice["Subject"] and "BlockwiseLabel" in notice["Subject"]
    assert f"BlockwiseLabel block 4-8: job {block['job_name']}" in notice["Message"]
    assert block["log_stream"] in notice["Message"] and command in notice["Message"]
    # the run record says failed; no manifest was written (the merge never ran)
    s3 = rt.client("s3")
    record = read_run_status(s3, rt.res.bucket, sub.results_key, sub.execution_arn)
    assert record and record["status"] == "FAILED" and record["failed_blocks"]
    assert wf.artefact_key(sub.results_key, wf.MANIFEST) not in _s3_keys(ops, sub.results_key)
    # status lists the block, logs prints the failing job's own output
    summary = run_summary(ops.deployment, find_execution(ops.deployment, sub.name))
    assert [b["block"] for b in summary["failed_blocks"]] == [
        b["block"] for b in detail["failed_blocks"]
    ]
    assert summary["logs_command"] == command
    out: list[str] = []
    printed = run_commands.logs_command(
        ops.deployment, sub.name, step="BlockwiseLabel", failed=True, echo=out.append
    )
    assert printed >= 1 and BROKE in out
    assert out[0].startswith("== BlockwiseLabel block 4-8: job detect-bl-4-8-")
    listed: list[str] = []
    run_commands.list_command(ops.deployment, status="FAILED", as_json=True, echo=listed.append)
    (row,) = json.loads(listed[0])["runs"]
    assert row["name"] == sub.name and row["synapses"] is None and row["results"] is None
    ops.results["failed"] = sub


def test_retry_reuses_the_completed_blocks_and_succeeds(ops: OpsStack) -> None:
    rt = ops.rt
    failed = ops.results["failed"]
    out: list[str] = []
    (outcome,) = run_commands.retry_command(ops.deployment, failed.name, echo=out.append)
    assert outcome.started and outcome.name == failed.name[: -17 - 3] + failed.name[-17:] + "-r2"
    result = rt.wait(outcome.execution_arn, timeout=1200)
    assert result.succeeded, (result.error, result.cause)
    # every covariance block was reused, the failed label blocks computed
    cov: list[str] = []
    run_commands.logs_command(
        ops.deployment, outcome.name, step="BlockwiseCovariance", echo=cov.append
    )
    assert sum("already recorded" in line for line in cov) == 8
    assert not any(": computed" in line for line in cov), cov
    label: list[str] = []
    run_commands.logs_command(ops.deployment, outcome.name, step="LabelBlock", echo=label.append)
    assert {f"label block {i}: computed" for i in range(4, 8)} <= set(label)
    # a blockwise run has no Detect job: logs says which steps did run jobs
    none: list[str] = []
    assert (
        run_commands.logs_command(ops.deployment, outcome.name, step="Detect", echo=none.append)
        == 0
    )
    (line,) = none
    assert line.startswith(f"no Batch jobs of step Detect in {outcome.name}; it has jobs of steps ")
    assert "BlockwiseCovariance, " in line and "BlockwiseLabel" in line
    assert line.endswith(": pass one as --step")
    (notice,) = [n for n in rt.notifications() if "finished" in n["Subject"]]
    assert failed.results_key in notice["Message"]
    manifest = json.loads(
        rt.client("s3")
        .get_object(Bucket=rt.res.bucket, Key=wf.artefact_key(failed.results_key, wf.MANIFEST))[
            "Body"
        ]
        .read()
    )
    assert "status" not in manifest and manifest["execution_id"] == outcome.execution_arn
    rt.emitted_events()


def test_cancel_terminates_the_block_jobs_of_the_map_iterations(ops: OpsStack) -> None:
    rt = ops.rt
    rt.notifications(), rt.emitted_events()
    os.environ["SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM"] = "2"  # the plan job reads it: 2 items
    try:
        moto_batch.inject_job_fault("detect-bc-*", count=2, hold=True, message=HOLD)
        sub = rt.submit(ops.request(x_range=[0, 64]))  # 4 blocks
        stem = run_names.job_name_stem(sub.results_key)

        def held() -> list[dict[str, Any]]:
            if sum(HOLD in line for line in ops.job_lines) < 2:
                return []
            return [
                j
                for j in rt.batch_jobs()
                if j["jobName"].startswith("detect-bc-")
                and run_names.job_of_run(j["jobName"], stem)
            ]

        jobs = wait_until("both covariance iterations' jobs", held, timeout=300)
        assert {j["jobName"].split("-")[2] for j in jobs} == {"0", "2"}
        out: list[str] = []
        assert run_commands.cancel_command(ops.deployment, sub.name, echo=out.append)
    finally:
        os.environ["SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM"] = ENV["SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM"]
    terminated = [line for line in out if line.startswith("  terminated BlockwiseCovariance")]
    assert len(terminated) == 2, out
    assert moto_batch.kill_running_jobs() == 0
    ended = {j["jobName"]: j for j in rt.batch_jobs() if run_names.job_of_run(j["jobName"], stem)}
    assert all(j["status"] in ("FAILED", "SUCCEEDED") for j in ended.values())
    assert all("cancelled" in ended[j["jobName"]]["statusReason"] for j in jobs)
    time.sleep(3)  # the stopped Map starts nothing more
    assert {
        j["jobName"] for j in rt.batch_jobs() if run_names.job_of_run(j["jobName"], stem)
    } == set(ended)
    # no manifest yet: the run record says cancelled; one notice, one event, no success
    record = read_run_status(rt.client("s3"), rt.res.bucket, sub.results_key, sub.execution_arn)
    assert record and record["status"] == "CANCELLED" and len(record["terminated_jobs"]) == 2
    assert wf.artefact_key(sub.results_key, wf.MANIFEST) not in _s3_keys(ops, sub.results_key)
    (notice,) = rt.notifications()
    assert "cancelled" in notice["Subject"] and "Batch jobs terminated: 2" in notice["Message"]
    assert [e["detail-type"] for e in rt.emitted_events()] == [wf.DETAIL_TYPE_CANCELLED]
    summary = run_summary(ops.deployment, find_execution(ops.deployment, sub.name))
    assert summary["status"] == "ABORTED" and len(summary["cancelled"]["terminated_jobs"]) == 2
