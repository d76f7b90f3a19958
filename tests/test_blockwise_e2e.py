"""Blockwise Detect end to end in the local runtime: the real ASL (Choice -> Plan ->
Distributed Maps with ItemReader from S3 and ResultWriter -> reductions -> finalize -> merge)
in moto, every stage a real ``synapse-pipelines step blocks`` process reading the local BOSS
over HTTP, then the unchanged Report, PublishToBoss as a Distributed Map over the blocks, and
PublishToS3. 64 blocks; the ids, the mask, the synapse table and what lands in BOSS must
equal the single job's (``detection.detect()`` + ``features.synapse_table``)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from synapse_pipelines.core.artefacts import SYNAPSE_IDS_OME_ZARR
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io import outputs
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_publish import labels_channel_name, mask_channel_name
from synapse_pipelines.io.boss_resources import CoordinateFrame
from synapse_pipelines.io.neuroglancer_state import viewer_layout
from synapse_pipelines.io.ome_zarr import OmeZarrReader
from synapse_pipelines.io.outputs import verify_manifest
from synapse_pipelines.io.synapse_table_files import write_synapse_table
from synapse_pipelines.local import demo, deployment, moto_batch, runtime as lr
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.science import detection, features
from synapse_pipelines.science.synthetic import make_experiment
from synapse_pipelines.workflow.blockwise_job import blockwise_prefix

pytestmark = pytest.mark.slow

SHAPE = (16, 128, 128)
FLAT = "flat_experiment"
BLOCK = "4,32,32"  # 4 x 4 x 4 = 64 blocks
ENV = {
    "SYNAPSE_BLOCKWISE_MIN_VOXELS": "1",  # every request goes blockwise
    "SYNAPSE_BLOCKWISE_BLOCK_SHAPE": BLOCK,
    "SYNAPSE_BLOCKWISE_ALIGNMENT": BLOCK,
    "SYNAPSE_BLOCKWISE_MAX_CONCURRENCY": "4",  # block jobs at once on this 2-core machine
    "SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM": "8",  # 8 Map items of 8 blocks: fewer processes
}


def nomads_request(boss_host: str, **kwargs: Any) -> dict[str, Any]:
    """The demo's request, pinned to NOMADS: this file checks NOMADS' blockwise answer
    (``detection.detect``) and its refusal of a flat channel (tests/test_blockwise_pairs.py
    checks PAIRS, the default)."""
    return {**demo.demo_request(boss_host, SHAPE, **kwargs), "pipeline": "nomads-unsupervised"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    token = "blockwise-" + secrets.token_urlsafe(16)
    exp = make_experiment(SHAPE, seed=21, profile="sparse")
    lines: list[str] = []
    try:
        with LocalBossServer(tmp_path_factory.mktemp("boss"), token) as boss:
            client = BossClient(boss.host, "http", token)
            demo.seed_synthetic_experiment(client, demo.DEMO_COLLECTION, demo.DEMO_EXPERIMENT, exp)
            # an experiment whose channels exist but hold no data (flat): the blockwise
            # threshold stage must fail with the detector's clear message
            frame = CoordinateFrame(
                extent=Box((0, 0, 0), SHAPE),
                voxel_size=exp.voxel_size,
                voxel_unit=exp.voxel_unit,
                name="flat_frame",
            )
            for name in (exp.presynaptic, exp.postsynaptic):
                client.ensure_channel(
                    demo.DEMO_COLLECTION, FLAT, name, datatype="uint8", type="image", frame=frame
                )
            with lr.LocalRuntime(job_log_sink=lambda n, i, line: lines.append(line)) as rt:
                rt.set_token(token)
                sub = rt.submit(nomads_request(boss.host))
                result = rt.wait(sub.execution_arn, timeout=1500)
                out = tmp_path_factory.mktemp("results")
                files = rt.download_results(sub.results_key, out) if result.succeeded else {}
                s3 = rt.client("s3")
                prefix = blockwise_prefix(sub.results_key)
                listed = s3.list_objects_v2(Bucket=rt.res.bucket, Prefix=prefix + "/")
                keys = [o["Key"] for o in listed.get("Contents", [])]
                while listed.get("IsTruncated"):
                    listed = s3.list_objects_v2(
                        Bucket=rt.res.bucket,
                        Prefix=prefix + "/",
                        ContinuationToken=listed["NextContinuationToken"],
                    )
                    keys += [o["Key"] for o in listed.get("Contents", [])]
                map_results = s3.list_objects_v2(
                    Bucket=rt.res.bucket, Prefix="map-results/_workflow/blockwise/"
                )
                keys += [o["Key"] for o in map_results.get("Contents", [])]
                plan_key = f"{prefix}/plan.json"
                plan = (
                    json.loads(s3.get_object(Bucket=rt.res.bucket, Key=plan_key)["Body"].read())
                    if plan_key in keys
                    else {}
                )
                yield {
                    "result": result,
                    "files": files,
                    "exp": exp,
                    "keys": keys,
                    "plan": plan,
                    "lines": lines,
                    "jobs": rt.batch_jobs(),
                    "rt": rt,
                    "token": token,
                    "results_key": sub.results_key,
                    "boss_host": boss.host,
                }
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_blockwise_run_succeeds_through_the_distributed_maps(run: dict[str, Any]) -> None:
    result = run["result"]
    assert result.succeeded, (result.error, result.cause, run["lines"][-30:])
    entered = result.states_entered()
    flow = ["BlockwisePlan", "BlockwiseCovariance", "BlockwiseThreshold", "BlockwiseLabel"]
    flow += ["BlockwiseStitch", "BlockwiseFinalize", "BlockwiseMerge", "Report"]
    flow += ["PublishToBossPrepare", "PublishToBossBlocks", "PublishToBossFinish"]
    assert [s for s in entered if s in flow] == flow
    assert "Detect" not in entered and "DetectLarge" not in entered
    # the per-step time table (`run --local`) lists every stage that ran, Maps included
    steps = dict(result.steps())
    assert set(flow) <= set(steps) and "ValidateRequest" in steps and "PublishToS3" in steps
    assert steps["BlockwiseCovariance"] > 0 and steps["BlockwiseLabel"] > 0
    assert "ChooseDetectMode" not in steps and "BlockwiseSettings" not in steps  # no work
    assert run["plan"]["n_blocks"] == 64 and run["plan"]["block_shape"] == [4, 32, 32]
    # one Batch job per Map item (8 blocks each) and pass, plus plan, reductions and merge
    names = [j["jobName"] for j in run["jobs"]]
    assert sum(n.startswith("detect-bc-") for n in names) == 8
    assert sum(n.startswith("detect-bl-") for n in names) == 8
    assert sum(n.startswith("detect-bf-") for n in names) == 8
    assert sum(n.startswith("publish-bb-") for n in names) == 8
    assert (
        sum(n.startswith(("detect-bp-", "detect-bt-", "detect-bs-", "detect-bm-")) for n in names)
        == 4
    )
    assert sum(n.startswith("publish-bp-") for n in names) == 1
    assert sum(n.startswith("publish-bd-") for n in names) == 1  # downsample, once
    assert not any(n.startswith("publish-boss-") for n in names)  # no one-job push
    # every block recorded with checksums; the Maps wrote their results (ResultWriter)
    keys = run["keys"]
    assert sum(k.endswith(".done.json") and "/covariance/" in k for k in keys) == 64
    assert sum(k.endswith(".done.json") and "/label/" in k for k in keys) == 64
    assert sum(k.endswith(".done.json") and "/finalize/" in k for k in keys) == 64
    written = [k for k in keys if k.startswith("map-results/_workflow/blockwise/")]
    assert sum(k.endswith("/manifest.json") for k in written) == 4  # one per Map Run


def test_blockwise_results_equal_the_single_job(run: dict[str, Any], tmp_path: Path) -> None:
    assert run["result"].succeeded
    files = run["files"]
    exp = run["exp"]
    folder = Path(files[outputs.MANIFEST]).parent
    single = detection.detect(exp.channels[exp.presynaptic], exp.channels[exp.postsynaptic])
    assert single.n_synapses > 5
    # the volumes: chunked Zarr in BOSS coordinates (the box starts at 0 here)
    ids = zarr.open_array(folder / outputs.SYNAPSE_IDS_ZARR, mode="r")
    mask = zarr.open_array(folder / outputs.PREDICTIONS_ZARR, mode="r")
    assert ids.chunks == (4, 32, 32)
    np.testing.assert_array_equal(ids[:], single.labels)
    np.testing.assert_array_equal(mask[:], single.mask)
    # the synapse table: byte for byte the single job's synapses.csv (channels in the
    # order the run recorded: the experiment's, as BOSS lists them)
    manifest = json.loads(files[outputs.MANIFEST].read_text())
    channels = {name: exp.channels[name] for name in manifest["channels"]["features"]}
    assert set(channels) == set(exp.channels)
    expected = features.synapse_table(
        single.labels, channels, voxel_size=exp.voxel_size, voxel_unit=exp.voxel_unit
    )
    write_synapse_table(expected, tmp_path / outputs.SYNAPSES_CSV)
    assert files[outputs.SYNAPSES_CSV].read_text() == (tmp_path / outputs.SYNAPSES_CSV).read_text()
    # the Report and PublishToS3 steps consumed the merged result unchanged
    artefacts = {outputs.SYNAPSES_CSV, outputs.MANIFEST, outputs.REPORT, outputs.CLUSTERING}
    artefacts |= {outputs.LINKS}
    assert artefacts <= set(files)
    assert outputs.SYNAPSE_IDS not in files  # no whole-volume file anywhere
    assert verify_manifest(folder) == []
    assert manifest["blockwise"]["n_blocks"] == 64
    assert manifest["blockwise"]["chunks_written"] == 128  # ids + mask, one chunk per block
    # PublishToBossFinish asked BOSS to downsample once every block was written: this
    # 128 x 128 frame fits one cuboid, so the output experiment has one level
    report = manifest["boss_downsample"]
    assert report["outcome"] == "not_needed" and report["num_hierarchy_levels"] == 1, report
    assert manifest["counts"]["foreground_voxels"] == int(np.count_nonzero(single.mask))
    assert manifest["arrays"][outputs.SYNAPSE_IDS_ZARR]["s3_uri"].endswith("synapse_ids.zarr/")
    # the OME-Zarr copies and the raw cutout, written block by block (tests/test_ome_zarr.py
    # checks their voxels): the folder is viewable and the report drew the synaptograms
    assert manifest["blockwise"]["ome_zarr_chunks_written"] > 0
    assert set(manifest["ome_zarr"]["raw"]) == set(exp.channels)
    layout = viewer_layout(folder)
    assert [i.name for i in layout.images if i.visible] == [exp.presynaptic, exp.postsynaptic]
    np.testing.assert_array_equal(
        OmeZarrReader.open(folder / SYNAPSE_IDS_OME_ZARR).read((0, 0, 0), SHAPE),
        single.labels,
    )
    assert 'id="synaptograms"' in files[outputs.REPORT].read_text()


def test_blockwise_publish_lands_in_boss_block_by_block(run: dict[str, Any]) -> None:
    assert run["result"].succeeded
    exp = run["exp"]
    key = run["results_key"]
    single = detection.detect(exp.channels[exp.presynaptic], exp.channels[exp.postsynaptic])
    client = BossClient(run["boss_host"], "http", run["token"])
    box = Box((0, 0, 0), SHAPE)
    col, out = demo.DEMO_OUTPUT_COLLECTION, demo.DEMO_OUTPUT_EXPERIMENT
    mask = client.pull(col, out, mask_channel_name(key), box)
    ids = client.pull(col, out, labels_channel_name(key), box)
    np.testing.assert_array_equal(mask, single.mask)
    np.testing.assert_array_equal(ids, single.labels.astype(np.uint64))


def test_one_job_publish_of_a_blockwise_run_pushes_block_by_block(run: dict[str, Any]) -> None:
    """``step publish-boss`` on a blockwise run (a re-publish, say) reads the Zarr chunks
    block after block instead of a whole-volume file, and lands the same values in BOSS."""
    from synapse_pipelines.workflow.publish_boss_step import publish_boss

    assert run["result"].succeeded
    rt, key = run["rt"], run["results_key"]
    client = BossClient(run["boss_host"], "http", run["token"])
    box = Box((0, 0, 0), SHAPE)
    col, out = demo.DEMO_OUTPUT_COLLECTION, demo.DEMO_OUTPUT_EXPERIMENT
    client.push(col, out, mask_channel_name(key), box, np.zeros(SHAPE, np.uint8))  # wipe
    lines: list[str] = []
    info = publish_boss(
        rt.res.bucket,
        key,
        s3=rt.client("s3"),
        environ={"BOSS_TOKEN": run["token"]},
        log=lines.append,
    )
    assert info["mask_channel"] == mask_channel_name(key)
    exp = run["exp"]
    single = detection.detect(exp.channels[exp.presynaptic], exp.channels[exp.postsynaptic])
    np.testing.assert_array_equal(client.pull(col, out, mask_channel_name(key), box), single.mask)
    assert run["token"] not in "\n".join(lines)


def test_rerun_skips_recorded_blocks_and_redoes_a_lost_one(run: dict[str, Any]) -> None:
    """What a retried or re-submitted block job does against the real (emulated) S3: blocks
    whose records hold are skipped; a block whose record was lost is recomputed alone."""
    from synapse_pipelines.workflow.blockwise_job import BlockwiseJob

    assert run["result"].succeeded
    rt = run["rt"]
    s3 = rt.client("s3")
    key = run["results_key"]
    log: list[str] = []
    job = BlockwiseJob(
        rt.res.bucket, key, s3=s3, environ={"BOSS_TOKEN": run["token"]}, log=log.append
    )
    assert job.run_stage("covariance", "0-8") == {"block": "0-8", "computed": 0}
    s3.delete_object(Bucket=rt.res.bucket, Key=f"{blockwise_prefix(key)}/label/5.done.json")
    assert job.run_stage("label", "0-8") == {"block": "0-8", "computed": 1}
    assert "label block 5: computed" in log and "label block 4: already recorded" in log
    # the reductions see the same blocks: same synapses as the run
    assert (
        job.run_stage("stitch")["synapses"]
        == len(run["files"][outputs.SYNAPSES_CSV].read_text().strip().splitlines()) - 1
    )


def test_blockwise_failure_is_retried_then_notified_with_its_cause(run: dict[str, Any]) -> None:
    """A Spot reclaim of a blockwise job is retried by Batch; a flat channel then stops the
    threshold stage with the detector's own message, which the failure notice carries."""
    rt = run["rt"]
    rt.notifications()  # drop the successful run's notice
    moto_batch.inject_batch_host_failure(deployment.STACK_NAME + "-Blockwise", count=1)
    try:
        sub = rt.submit(nomads_request(run["boss_host"], experiment=FLAT))
        result = rt.wait(sub.execution_arn, timeout=600)
    finally:
        moto_batch.clear_batch_host_failures()
    assert result.status == "FAILED"
    entered = result.states_entered()
    assert "BlockwiseThreshold" in entered and "BlockwiseLabel" not in entered
    assert "NotifyFailure" in entered and "Report" not in entered
    jobs = [j for j in rt.batch_jobs() if sub.results_key[:40] in j["jobName"]]
    plan_job = next(j for j in jobs if j["jobName"].startswith("detect-bp-"))
    assert plan_job["attempts"][0].get("statusReason", "").startswith("Host EC2")
    assert plan_job["status"] == "SUCCEEDED"  # the reclaimed attempt was retried
    assert result.error == "DetectionError"
    assert "constant" in (result.cause or "") and "Fix:" in (result.cause or "")
    (notice,) = rt.notifications()
    assert (result.cause or "") in notice["Message"]
