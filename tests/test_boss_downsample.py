"""BOSS's downsample service over real HTTP: the client (io/boss_downsample.py) against the
local server's endpoint (local/boss_pyramid.py), read back through intern's get_cutout at
resolution r, and compared with a plain-Python reference of the pooling rules."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fixtures.boss_server import BOSS_TEST_TOKEN, BossServerInfo
from fixtures.pyramid_reference import reference_level
from intern.resource.boss.resource import ExperimentResource

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io import boss_downsample as ds
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_resources import hierarchy_levels_to_fit
from synapse_pipelines.local.boss_api_errors import METHOD_NOT_ALLOWED, ApiError
from synapse_pipelines.local.boss_process import LocalBossServer


def set_levels(info: BossServerInfo, collection: str, experiment: str, levels: int) -> None:
    remote = info.remote()
    exp = remote.get_project(ExperimentResource(experiment, collection))
    exp.num_hierarchy_levels = levels
    remote.update_project(experiment, exp)


@pytest.fixture
def hold(boss_server: BossServerInfo) -> Iterator[dict[str, Any]]:
    """Blocks the local server's downsample worker before each level of one channel until
    ``release`` is set (or raises ``error`` there), so IN_PROGRESS can be watched."""
    state: dict[str, Any] = {"channel": None, "release": threading.Event(), "error": None}
    state["at_level"] = threading.Event()
    downsampler = boss_server.server.app.downsampler

    def hook(name: str, level: int) -> None:
        if name != state["channel"]:
            return
        state["at_level"].set()
        if state["error"] is not None:
            raise state["error"]
        assert state["release"].wait(60), "test never released the downsample"

    downsampler.level_hook = hook
    try:
        yield state
    finally:
        state["release"].set()
        downsampler.level_hook = None


def _load(info: BossServerInfo, data: dict[str, np.ndarray], **kwargs: Any) -> tuple[str, str]:
    col, exp = info.unique("dsc"), info.unique("dse")
    images = {k: v for k, v in data.items() if v.dtype != np.uint64}
    annotations = {k: v for k, v in data.items() if v.dtype == np.uint64}
    info.load(col, exp, images, annotations=annotations, voxel_size=(70, 100, 100), **kwargs)
    return col, exp


# -- the pyramid --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_image_and_annotation_pyramids_equal_the_reference(
    boss_server: BossServerInfo, dtype: type
) -> None:
    rng = np.random.default_rng(5)
    shape = (3, 37, 51)  # odd extents: the last row/column of a level averages fewer voxels
    image = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    # few ids, many zeros: ties and all-zero blocks are common
    ids = rng.choice(np.array([0, 0, 0, 3, 7, 9, 12], dtype=np.uint64), size=shape)
    origin = (1, 5, 3)  # a frame starting at odd y, x: level r starts at start // 2**r
    frame = Box(origin, (origin[0] + 3, origin[1] + 37, origin[2] + 51))
    col, exp = _load(boss_server, {"img": image, "ids": ids}, origin=origin, extent=frame)
    set_levels(boss_server, col, exp, 4)
    client = boss_server.client()
    for name in ("img", "ids"):
        assert ds.downsample_status(client, col, exp, name).status == ds.NOT_DOWNSAMPLED
        ds.start_downsample(client, col, exp, name)
        done = ds.wait_for_downsample(client, col, exp, name, timeout=60, poll=0.05)
        assert done.status == ds.DOWNSAMPLED
        assert done.num_hierarchy_levels == 4

    remote = boss_server.remote()
    for name, data, annotation in (("img", image, False), ("ids", ids, True)):
        chan = remote.get_channel(name, col, exp)
        level, y0, x0 = data, origin[1], origin[2]
        for r in (1, 2, 3):
            level, y0, x0 = reference_level(level, y0, x0, annotation)
            z0, z1 = origin[0], origin[0] + shape[0]
            got = remote.get_cutout(
                chan, r, [x0, x0 + level.shape[2]], [y0, y0 + level.shape[1]], [z0, z1]
            )
            np.testing.assert_array_equal(got, level, err_msg=f"{name} resolution {r}")
        # the whole of level 3's frame: [start // 8, ceil(stop / 8)) in y and x
        assert (y0, x0) == (0, 0) and level.shape[1:] == (6, 7)


def test_status_json_matches_boss(boss_server: BossServerInfo) -> None:
    """voxel_size / extent / cuboid_size per level as BOSS's view computes them."""
    col, exp = _load(
        boss_server, {"img": np.ones((2, 8, 8), np.uint8)}, extent=Box((0, 0, 0), (200, 5000, 2000))
    )
    client = boss_server.client()
    assert hierarchy_levels_to_fit(Box((0, 0, 0), (200, 5000, 2000))) == 5
    st = ds.downsample_status(client, col, exp, "img")
    assert st.num_hierarchy_levels == 5  # made by ensure_experiment to reach one cuboid
    assert st.voxel_size[0] == (100.0, 100.0, 70.0) and st.voxel_size[3] == (800.0, 800.0, 70.0)
    assert st.extent[0] == (2000, 5000, 200) and st.extent[3] == (250, 625, 200)
    assert st.extent[4] == (125, 313, 200)  # ceil, level by level (fits 512 x 512)
    assert st.cuboid_size[4] == (512, 512, 16)
    # iso=true: above the level nearest to isotropic (0 here: 70 nm vs 100 nm), z halves too
    iso = ds.downsample_status(client, col, exp, "img", iso=True)
    assert iso.voxel_size[1] == (200.0, 200.0, 140.0) and iso.extent[1] == (1000, 2500, 100)


# -- status transitions and refusals -------------------------------------------------------------
def test_status_transitions_refusals_and_cancel(
    boss_server: BossServerInfo, hold: dict[str, Any]
) -> None:
    data = np.arange(2 * 20 * 20, dtype=np.uint8).reshape(2, 20, 20)
    col, exp = _load(boss_server, {"img": data})
    set_levels(boss_server, col, exp, 3)
    client = boss_server.client()
    hold["channel"] = f"{col}/{exp}/img"

    ds.start_downsample(client, col, exp, "img")
    assert hold["at_level"].wait(30)
    assert ds.downsample_status(client, col, exp, "img").status == ds.IN_PROGRESS
    # a second start while it runs is refused with BOSS's 409 and message
    with pytest.raises(ds.DownsampleRefused, match="currently being downsampled") as refused:
        ds.start_downsample(client, col, exp, "img")
    assert refused.value.status == 409
    report = ds.request_downsampling(client, col, exp, ["img"])
    assert report["channels"]["img"]["outcome"] == ds.ALREADY_RUNNING
    # cancel: NOT_DOWNSAMPLED at once; cancelling again is refused
    ds.cancel_downsample(client, col, exp, "img")
    assert ds.downsample_status(client, col, exp, "img").status == ds.NOT_DOWNSAMPLED
    with pytest.raises(ds.DownsampleRefused, match="only cancel"):
        ds.cancel_downsample(client, col, exp, "img")

    hold["release"].set()
    report = ds.request_downsampling(client, col, exp, ["img"], wait_seconds=60, poll=0.05)
    assert report["outcome"] == ds.FINISHED, report
    assert report["num_hierarchy_levels"] == 3
    with pytest.raises(ds.DownsampleRefused, match="already downsampled"):
        ds.start_downsample(client, col, exp, "img")
    again = ds.request_downsampling(client, col, exp, ["img"])
    assert again["outcome"] == ds.ALREADY_DOWNSAMPLED
    # new data makes the channel NOT_DOWNSAMPLED again, as BOSS does
    client.push(col, exp, "img", Box((0, 0, 0), (1, 4, 4)), np.full((1, 4, 4), 7, np.uint8))
    assert ds.downsample_status(client, col, exp, "img").status == ds.NOT_DOWNSAMPLED


def test_failed_downsample_is_reported_with_the_status(
    boss_server: BossServerInfo, hold: dict[str, Any]
) -> None:
    col, exp = _load(boss_server, {"img": np.ones((1, 8, 8), np.uint8)})
    set_levels(boss_server, col, exp, 2)
    hold["channel"], hold["error"] = f"{col}/{exp}/img", RuntimeError("disk on fire")
    client = boss_server.client()
    report = ds.request_downsampling(client, col, exp, ["img"], wait_seconds=30, poll=0.05)
    assert report["outcome"] == ds.OUTCOME_FAILED
    assert report["channels"]["img"]["status"] == ds.FAILED
    assert "FAILED" in report["channels"]["img"]["message"]
    # FAILED may be started again (BOSS refuses only QUEUED, IN_PROGRESS, DOWNSAMPLED)
    hold["error"] = None
    hold["release"].set()
    ds.start_downsample(client, col, exp, "img")
    assert ds.wait_for_downsample(client, col, exp, "img", timeout=30, poll=0.05).status == (
        ds.DOWNSAMPLED
    )


def test_one_level_experiment_needs_no_downsample(boss_server: BossServerInfo) -> None:
    col, exp = _load(boss_server, {"img": np.ones((1, 8, 8), np.uint8)})
    report = ds.request_downsampling(boss_server.client(), col, exp, ["img"])
    assert report["outcome"] == ds.NOT_NEEDED
    assert report["num_hierarchy_levels"] == 1


def test_resolution_outside_the_hierarchy_is_refused_as_boss_does(
    boss_server: BossServerInfo,
) -> None:
    col, exp = _load(boss_server, {"img": np.ones((1, 8, 8), np.uint8)})
    remote = boss_server.remote()
    chan = remote.get_channel("img", col, exp)
    with pytest.raises(Exception, match="400"):
        remote.get_cutout(chan, 1, [0, 4], [0, 4], [0, 1])


# -- a BOSS without the service, missing channels -----------------------------------------------
def test_server_without_the_endpoint_is_not_supported(tmp_path: Any) -> None:
    with LocalBossServer(tmp_path, BOSS_TEST_TOKEN) as srv:
        srv.app.downsampler = None  # answers /v1/downsample/ like a BOSS without it: 404
        info = BossServerInfo(server=srv, data_dir=tmp_path)
        col, exp = _load(info, {"img": np.ones((1, 8, 8), np.uint8)})
        client = info.client()
        with pytest.raises(ds.DownsampleNotSupported, match="not supported by this BOSS"):
            ds.downsample_status(client, col, exp, "img")
        report = ds.request_downsampling(client, col, exp, ["img", "img2"])
        assert report["outcome"] == ds.NOT_SUPPORTED
        assert {e["outcome"] for e in report["channels"].values()} == {ds.NOT_SUPPORTED}
        # the data is untouched
        assert client.pull(col, exp, "img", Box((0, 0, 0), (1, 8, 8))).sum() == 64


def test_method_not_allowed_is_not_supported(boss_server: BossServerInfo) -> None:
    col, exp = _load(boss_server, {"img": np.ones((1, 8, 8), np.uint8)})

    def refuse(method: str, path: str) -> None:
        if path.startswith("/v1/downsample/"):
            raise ApiError(405, METHOD_NOT_ALLOWED, "no")

    boss_server.server.app.fault_hook = refuse
    try:
        with pytest.raises(ds.DownsampleNotSupported):
            ds.start_downsample(boss_server.client(), col, exp, "img")
    finally:
        boss_server.server.app.fault_hook = None


def test_missing_channel_is_named_not_reported_as_unsupported(boss_server: BossServerInfo) -> None:
    col, exp = _load(boss_server, {"img": np.ones((1, 8, 8), np.uint8)})
    with pytest.raises(BossError, match="channel 'nope'") as err:
        ds.downsample_status(boss_server.client(), col, exp, "nope")
    assert not isinstance(err.value, ds.DownsampleNotSupported)
    report = ds.request_downsampling(boss_server.client(), col, exp, ["nope"])
    assert report["outcome"] == ds.OUTCOME_FAILED
    assert "does not exist" in report["channels"]["nope"]["message"]


def test_read_only_token_may_read_the_status_but_not_start(boss_server: BossServerInfo) -> None:
    col, exp = _load(boss_server, {"img": np.ones((1, 8, 8), np.uint8)})
    set_levels(boss_server, col, exp, 2)
    reader = boss_server.client(token=boss_server.read_only_token)
    assert ds.downsample_status(reader, col, exp, "img").status == ds.NOT_DOWNSAMPLED
    report = ds.request_downsampling(reader, col, exp, ["img"])
    assert report["outcome"] == ds.OUTCOME_FAILED
    assert "lacks permission" in report["channels"]["img"]["message"]
    assert boss_server.read_only_token not in str(report)


def test_a_page_that_is_not_json_is_a_clear_error(tmp_path: Any) -> None:
    """A host that answers 200 with a web page (a proxy, a web app) is not BOSS's service:
    a BossError quoting the body, and the report says so without raising."""
    page = b"<html><body>Sign in</body></html>"

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            host = f"127.0.0.1:{srv.server_address[1]}"
            client = BossClient(host, "http", BOSS_TEST_TOKEN, max_retries=0)
            with pytest.raises(BossError, match="not JSON") as err:
                ds.downsample_status(client, "col", "exp", "img")
            assert "text/html" in str(err.value) and "Sign in" in str(err.value)
            assert "/v1/downsample/col/exp/img/" in str(err.value)
            assert not isinstance(err.value, ds.DownsampleNotSupported)
            report = ds.request_downsampling(client, "col", "exp", ["img"])
            assert report["outcome"] == ds.OUTCOME_FAILED
            assert "not JSON" in report["channels"]["img"]["message"]
            assert BOSS_TEST_TOKEN not in str(report)
        finally:
            srv.shutdown()
