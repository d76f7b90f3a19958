"""Publishing and BOSS's downsample service: the step reports what BOSS answered and never
loses the pushed data; output experiments get the levels to reach one cuboid; the manifest
survives two writers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.boss_server import BOSS_TEST_TOKEN, BossServerInfo, make_synthetic_volumes
from intern.resource.boss.resource import ExperimentResource

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io import boss_downsample as ds, boss_publish
from synapse_pipelines.io.boss_resources import CoordinateFrame, hierarchy_levels_to_fit
from synapse_pipelines.io.s3_objects import get_json, put_json, update_json
from synapse_pipelines.local.boss_api_errors import MISSING_PERMISSION, ApiError
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.workflow import wiring as wf
from synapse_pipelines.workflow.validate_step import validate


def test_levels_to_fit_one_cuboid() -> None:
    assert hierarchy_levels_to_fit(Box((0, 0, 0), (27, 512, 512))) == 1
    assert hierarchy_levels_to_fit(Box((0, 0, 0), (27, 513, 100))) == 2
    assert hierarchy_levels_to_fit(Box((0, 0, 0), (16, 1100, 1100))) == 3
    assert hierarchy_levels_to_fit(Box((0, 0, 0), (27, 4518, 6306))) == 5  # collman15v2


def _levels(info: BossServerInfo, col: str, exp: str) -> int:
    return int(info.remote().get_project(ExperimentResource(exp, col)).num_hierarchy_levels)


def test_output_experiments_get_enough_levels_and_users_are_left_alone(
    boss_server: BossServerInfo,
) -> None:
    client = boss_server.client()
    col = boss_server.unique("lev")
    frame = CoordinateFrame(Box((0, 0, 0), (4, 1100, 600)), (70.0, 100.0, 100.0), "nm", col)
    client.ensure_experiment(col, "ours", frame)
    assert _levels(boss_server, col, "ours") == 3
    # an earlier output experiment of ours with one level is raised ...
    remote = boss_server.remote()
    exp = remote.get_project(ExperimentResource("ours", col))
    exp.num_hierarchy_levels = 1
    remote.update_project("ours", exp)
    client.ensure_experiment(col, "ours", frame)
    assert _levels(boss_server, col, "ours") == 3
    # ... a user's experiment (no output marker) is not
    remote.create_project(ExperimentResource("users", col, exp.coord_frame, "my raw data"))
    client.ensure_experiment(col, "users", frame)
    assert _levels(boss_server, col, "users") == 1


def test_publish_then_downsample_on_a_boss_without_the_service_keeps_the_data(
    tmp_path: Path,
) -> None:
    with LocalBossServer(tmp_path, BOSS_TEST_TOKEN) as srv:
        srv.app.downsampler = None
        info = BossServerInfo(server=srv, data_dir=tmp_path)
        chans, _, _, voxel = make_synthetic_volumes((4, 64, 64))
        frame = info.load(
            "in", "raw", chans, voxel_size=voxel, extent=Box((0, 0, 0), (4, 600, 600))
        )
        request = parse_request(
            {
                "boss_host": srv.host,
                "boss_protocol": "http",
                "collection": "in",
                "experiment": "raw",
                "z_range": [0, 4],
                "y_range": [0, 64],
                "x_range": [0, 64],
                "output_collection": "out",
                "output_experiment": "pred",
            }
        )
        mask = np.zeros((4, 64, 64), np.uint8)
        mask[1:3, 10:20, 10:20] = 1
        labels = (mask > 0).astype(np.uint64) * 5
        client = info.client()
        published = boss_publish.publish_predictions(client, request, mask, labels, frame)
        report = boss_publish.downsample_predictions(client, published)
        assert report["outcome"] == ds.NOT_SUPPORTED
        assert "not supported by this BOSS" in report["channels"][published.mask_channel]["message"]
        box = Box((0, 0, 0), (4, 64, 64))
        pulled = client.pull("out", "pred", published.mask_channel, box)
        np.testing.assert_array_equal(pulled, mask * 255)
        np.testing.assert_array_equal(
            client.pull("out", "pred", published.labels_channel, box), labels
        )


def test_publish_step_reports_a_refused_start_and_keeps_the_data(
    aws: Any,
    boss_server: BossServerInfo,
    boss_token_secret: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The single-job PublishToBoss: BOSS refuses the downsample (a token without that
    permission); the step still succeeds, the data is in BOSS, the manifest says why."""
    pytest.importorskip("synapse_pipelines.science.detection")
    from synapse_pipelines.workflow.detect_step import detect
    from synapse_pipelines.workflow.publish_boss_step import publish_boss

    bucket = "synapse-results-ds"
    aws.client("s3").create_bucket(Bucket=bucket)
    for key, value in {
        wf.ENV_RESULTS_BUCKET: bucket,
        wf.ENV_BOSS_TOKEN_SECRET: boss_token_secret,
        wf.ENV_DETECT_MEMORY_MIB: "30720",
        wf.ENV_LARGE_DETECT_MEMORY_MIB: "245760",
    }.items():
        monkeypatch.setenv(key, value)
    chans, _, _, voxel = make_synthetic_volumes((16, 96, 96), seed=4)
    col = boss_server.unique("dsin")
    boss_server.load(col, "raw", chans, voxel_size=voxel, extent=Box((0, 0, 0), (16, 700, 700)))
    output = boss_server.unique("dsout")
    request = {
        "boss_host": boss_server.host,
        "boss_protocol": "http",
        "collection": col,
        "experiment": "raw",
        "z_range": [0, 16],
        "y_range": [0, 96],
        "x_range": [0, 96],
        "output_collection": output,
        "output_experiment": "pred",
    }
    key = validate({"request": request}, bucket=bucket)["results_key"]
    monkeypatch.setenv(wf.ENV_BOSS_TOKEN, boss_server.token)
    lines: list[str] = []
    assert detect(bucket, key, workdir=tmp_path / "d", log=lines.append)["synapses"] > 0

    def refuse(method: str, path: str) -> None:
        if method == "POST" and path.startswith(f"/v1/downsample/{output}/"):
            raise ApiError(403, MISSING_PERMISSION, "no permission to downsample")

    boss_server.server.app.fault_hook = refuse
    try:
        info = publish_boss(bucket, key, workdir=tmp_path / "p", log=lines.append)
    finally:
        boss_server.server.app.fault_hook = None
    report = info["boss_downsample"]
    assert report["outcome"] == ds.OUTCOME_FAILED and report["num_hierarchy_levels"] == 2
    for entry in report["channels"].values():
        assert "lacks permission" in entry["message"] and "no permission" in entry["message"]
    s3 = aws.client("s3")
    manifest = get_json(s3, bucket, wf.artefact_key(key, wf.MANIFEST))
    assert manifest["boss_downsample"] == report
    assert any("BOSS downsample of" in line and "failed" in line for line in lines)
    pulled = boss_server.client().pull(
        output, "pred", info["mask_channel"], Box((0, 0, 0), (16, 96, 96))
    )
    assert pulled.any() and set(np.unique(pulled).tolist()) <= {0, 255}
    assert boss_server.token not in json.dumps(info) + "\n".join(lines)


def test_update_json_keeps_a_concurrent_writers_fields(aws: Any) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="manifest-race")
    put_json(s3, "manifest-race", "m.json", {"files": {}})

    class Racing:
        """An S3 client whose first put loses to another writer (that writes in between)."""

        raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def put_object(self, **kwargs: Any) -> Any:
            if not Racing.raced:
                Racing.raced = True
                update_json(s3, "manifest-race", "m.json", lambda d: {**d, "links": {"all": "x"}})
            return s3.put_object(**kwargs)

    written = update_json(
        Racing(), "manifest-race", "m.json", lambda d: {**d, "boss_downsample": {"a": 1}}
    )
    assert written == {"files": {}, "links": {"all": "x"}, "boss_downsample": {"a": 1}}
    assert get_json(s3, "manifest-race", "m.json") == written
