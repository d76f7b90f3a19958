"""End to end: a local run (the real ASL in moto, the real step processes, the local BOSS over
real HTTP) publishes its outputs, BOSS's downsample service builds their pyramid, and the
manifest reports it; the levels come back through intern's get_cutout at resolution 1 and 2.

The input experiment's coordinate frame (16 x 1100 x 1100) is larger than the request's box,
so the output experiment (made on that frame) needs three levels to fit one 512 x 512 cuboid.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fixtures.pyramid_reference import reference_level
from intern.remote.boss import BossRemote

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io import boss_downsample as ds
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_publish import labels_channel_name, mask_channel_name
from synapse_pipelines.local import demo, runtime as lr
from synapse_pipelines.local.boss_loading import load_experiment
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.science.synthetic import make_experiment
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.run_record import ENV_DOWNSAMPLE_WAIT

pytestmark = pytest.mark.slow

SHAPE = (16, 192, 192)
FRAME = Box((0, 0, 0), (16, 1100, 1100))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    saved = os.environ.get(ENV_DOWNSAMPLE_WAIT)
    os.environ[ENV_DOWNSAMPLE_WAIT] = "120"  # the step waits, so the manifest says "downsampled"
    token = "downsample-" + secrets.token_urlsafe(16)
    exp = make_experiment(SHAPE, seed=3)
    try:
        with LocalBossServer(tmp_path_factory.mktemp("boss"), token) as boss:
            client = BossClient(boss.host, "http", token)
            load_experiment(
                client,
                demo.DEMO_COLLECTION,
                demo.DEMO_EXPERIMENT,
                exp.channels,
                voxel_size=exp.voxel_size,
                voxel_unit=str(exp.voxel_unit),
                extent=FRAME,
            )
            with lr.LocalRuntime() as rt:
                rt.set_token(token)
                sub = rt.submit(demo.demo_request(boss.host, SHAPE))
                result = rt.wait(sub.execution_arn, timeout=300)
                files = rt.download_results(sub.results_key, tmp_path_factory.mktemp("out"))
                publish = json.loads(
                    rt.client("s3")
                    .get_object(
                        Bucket=rt.res.bucket,
                        Key=f"{sub.results_key}/{wf.WORKFLOW_PREFIX}/publish_boss.json",
                    )["Body"]
                    .read()
                )
                yield {
                    "result": result,
                    "files": files,
                    "publish": publish,
                    "key": sub.results_key,
                    "boss": boss,
                    "token": token,
                }
    finally:
        if saved is None:
            os.environ.pop(ENV_DOWNSAMPLE_WAIT, None)
        else:
            os.environ[ENV_DOWNSAMPLE_WAIT] = saved


def test_run_publishes_downsamples_and_the_manifest_reports_it(run: dict[str, Any]) -> None:
    result = run["result"]
    assert result.succeeded, (result.error, result.cause)
    assert "PublishToBoss" in result.states_entered()
    key = run["key"]
    manifest = json.loads(run["files"][wf.MANIFEST].read_text())
    report = manifest["boss_downsample"]
    names = [mask_channel_name(key), labels_channel_name(key)]
    assert report["outcome"] == ds.FINISHED, report
    assert report["num_hierarchy_levels"] == 3
    assert set(report["channels"]) == set(names)
    assert all(e["status"] == ds.DOWNSAMPLED for e in report["channels"].values())
    # PublishToS3 completed the same manifest at the same time: both writers' fields are there
    assert manifest["links"] and manifest["s3"]["bucket"]
    assert run["publish"]["boss_downsample"] == report
    assert run["token"] not in json.dumps(manifest)


def test_levels_1_and_2_come_back_through_intern(run: dict[str, Any]) -> None:
    assert run["result"].succeeded
    key, boss = run["key"], run["boss"]
    remote = BossRemote({"protocol": "http", "host": boss.host, "token": run["token"]})
    col, out = demo.DEMO_OUTPUT_COLLECTION, demo.DEMO_OUTPUT_EXPERIMENT
    z = [0, SHAPE[0]]
    for name, annotation in ((mask_channel_name(key), False), (labels_channel_name(key), True)):
        chan = remote.get_channel(name, col, out)
        level = remote.get_cutout(chan, 0, [0, SHAPE[2]], [0, SHAPE[1]], z)
        assert level.any()
        for r in (1, 2):
            level, _, _ = reference_level(level, 0, 0, annotation)
            ny, nx = level.shape[1:]
            got = remote.get_cutout(chan, r, [0, nx], [0, ny], z)
            np.testing.assert_array_equal(got, level, err_msg=f"{name} resolution {r}")
        # the rest of the level's frame holds nothing (only the box was published)
        edge = remote.get_cutout(chan, 2, [48, 275], [0, 275], z)
        assert not edge.any()
