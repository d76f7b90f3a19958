"""The default detector (PAIRS) blockwise, end to end in the local runtime: the real ASL's
Distributed Maps in moto, every stage a real ``synapse-pipelines step blocks`` process reading
the local BOSS over HTTP. The ids and the mask must equal the one-job
``detect_paired_puncta`` on the same volume, voxel for voxel, with blocks smaller than PAIRS'
halo along z. The volume is read at BOSS resolution 1 of an experiment stored at twice the
pixel density (every voxel four times, downsampled by the server's own pyramid), so the
blockwise reads at a level are checked too. (tests/test_blockwise_e2e.py runs NOMADS through
the same flow in more depth.)
"""

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
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import ExperimentResource

from synapse_pipelines.core.pipelines import DEFAULT_PIPELINE
from synapse_pipelines.io import boss_downsample as ds, outputs
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.outputs import verify_manifest
from synapse_pipelines.local import demo, runtime as lr
from synapse_pipelines.local.boss_loading import load_experiment
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.science.paired_puncta import detect_paired_puncta
from synapse_pipelines.science.synthetic import make_experiment

pytestmark = pytest.mark.slow  # the whole workflow through both Distributed Maps: ~2 min

SHAPE = (8, 96, 96)
BLOCK = "4,48,48"  # 2 x 2 x 2 = 8 blocks
ENV = {
    "SYNAPSE_BLOCKWISE_MIN_VOXELS": "1",  # every request goes blockwise
    "SYNAPSE_BLOCKWISE_BLOCK_SHAPE": BLOCK,
    "SYNAPSE_BLOCKWISE_ALIGNMENT": BLOCK,
    "SYNAPSE_BLOCKWISE_MAX_CONCURRENCY": "2",
    "SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM": "4",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    token = "pairs-" + secrets.token_urlsafe(16)
    exp = make_experiment(SHAPE, seed=5)  # the realistic profile, the default
    lines: list[str] = []
    try:
        with LocalBossServer(tmp_path_factory.mktemp("boss"), token) as boss:
            client = BossClient(boss.host, "http", token)
            col, name = demo.DEMO_COLLECTION, demo.DEMO_EXPERIMENT
            fine = {
                n: np.repeat(np.repeat(exp.channels[n], 2, axis=1), 2, axis=2)
                for n in (exp.presynaptic, exp.postsynaptic)
            }
            vz, vy, vx = exp.voxel_size
            load_experiment(client, col, name, fine, voxel_size=(vz, vy / 2, vx / 2))
            # 192 x 192 fits one cuboid, so the experiment was made with one level: add one
            remote = BossRemote({"protocol": "http", "host": boss.host, "token": token})
            resource = remote.get_project(ExperimentResource(name, col))
            resource.num_hierarchy_levels = 2
            remote.update_project(name, resource)
            for channel in fine:
                ds.start_downsample(client, col, name, channel)
                status = ds.wait_for_downsample(client, col, name, channel, timeout=120, poll=0.1)
                assert status.status == ds.DOWNSAMPLED
            with lr.LocalRuntime(job_log_sink=lambda n, i, line: lines.append(line)) as rt:
                rt.set_token(token)
                request = {**demo.demo_request(boss.host, SHAPE), "resolution": 1}
                assert "pipeline" not in request or request["pipeline"] == DEFAULT_PIPELINE
                sub = rt.submit(request)
                result = rt.wait(sub.execution_arn, timeout=1500)
                out = tmp_path_factory.mktemp("results")
                files = rt.download_results(sub.results_key, out) if result.succeeded else {}
                yield {"result": result, "files": files, "exp": exp, "lines": lines}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_default_detector_runs_blockwise_and_equals_the_one_job(
    run: dict[str, Any],
) -> None:
    result = run["result"]
    # on failure, the jobs' own output (a traceback) in full, not a truncated repr
    assert result.succeeded, "\n".join([str(result.error), str(result.cause), *run["lines"][-80:]])
    entered = result.states_entered()
    assert "BlockwisePlan" in entered and "BlockwiseStitch" in entered
    assert "Detect" not in entered
    exp = run["exp"]
    single = detect_paired_puncta(
        exp.channels[exp.presynaptic], exp.channels[exp.postsynaptic], voxel_size=exp.voxel_size
    )
    assert single.n_synapses > 10
    folder = Path(run["files"][outputs.MANIFEST]).parent
    ids = zarr.open_array(folder / outputs.SYNAPSE_IDS_ZARR, mode="r")
    mask = zarr.open_array(folder / outputs.PREDICTIONS_ZARR, mode="r")
    np.testing.assert_array_equal(ids[:], single.labels)
    np.testing.assert_array_equal(mask[:], single.mask)
    manifest = json.loads(run["files"][outputs.MANIFEST].read_text())
    assert manifest["blockwise"]["n_blocks"] == 8
    assert manifest["counts"]["synapses"] == single.n_synapses
    # the section continuity measured block by block is the one job's (aligned: no warning)
    recorded = manifest["pipeline"]["parameters"]
    assert recorded["section_continuity"] == single.parameters["section_continuity"]
    assert manifest["warnings"] == single.parameters["warnings"] == []
    assert verify_manifest(folder) == []
