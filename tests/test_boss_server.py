"""The local BOSS server itself: HTTP contract, storage, limits, concurrency, restarts."""

from __future__ import annotations

import json
import threading

import blosc
import numpy as np
import pytest
import requests
import zarr
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_resources import CoordinateFrame
from synapse_pipelines.local.boss_process import BossServerProcess, LocalBossServer

TOKEN = "server-test-token"


def _setup(remote: BossRemote, col: str, *, shape=(64, 1024, 1024), dtype="uint8", t=1):
    z, y, x = shape
    remote.create_project(CollectionResource(col))
    remote.create_project(
        CoordinateFrameResource(f"{col}_cf", "", 0, x, 0, y, 0, z, 4, 4, 40, "nanometers")
    )
    remote.create_project(
        ExperimentResource("e", col, f"{col}_cf", num_time_samples=t, hierarchy_method="isotropic")
    )
    return remote.create_project(ChannelResource("ch", col, "e", "image", datatype=dtype))


def _headers(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


@pytest.fixture
def server(tmp_path):
    with LocalBossServer(tmp_path / "boss", TOKEN, max_cutout_bytes=64 * 1024 * 1024) as srv:
        yield srv


def test_json_shapes_and_status_codes(server) -> None:
    base = f"{server.url}/v1"
    r = requests.post(f"{base}/collection/c1", json={"name": "c1", "description": "d"},
                      headers=_headers())  # fmt: skip
    assert r.status_code == 201
    assert r.json() == {
        "name": "c1", "description": "d", "experiments": [], "creator": "local-boss",
        "public": False,
    }  # fmt: skip
    assert requests.get(f"{base}/collection/", headers=_headers()).json() == {"collections": ["c1"]}
    # duplicate -> 400 with a BOSS-style error body
    r = requests.post(f"{base}/collection/c1", json={"name": "c1"}, headers=_headers())
    assert r.status_code == 400 and set(r.json()) == {"status", "code", "message"}
    r = requests.get(f"{base}/collection/nope", headers=_headers())
    assert r.status_code == 404 and r.json()["code"] == 4000 and "nope" in r.json()["message"]
    assert requests.delete(f"{base}/collection/c1", headers=_headers()).status_code == 204


def test_authentication(server) -> None:
    url = f"{server.url}/v1/collection/"
    assert requests.get(url).status_code == 401
    r = requests.get(url, headers=_headers("bad"))
    assert r.status_code == 401 and "bad" not in r.text


def test_cutout_bounds_resolution_and_dtype_checks(server) -> None:
    remote = BossRemote({"protocol": "http", "host": server.host, "token": TOKEN})
    _setup(remote, "cb", shape=(32, 64, 64), dtype="uint16")
    base = f"{server.url}/v1/cutout/cb/e/ch"
    body = blosc.compress(np.ones((2, 4, 4), np.uint16).tobytes(), typesize=2)
    ok = requests.post(f"{base}/0/0:4/0:4/0:2/", data=body, headers=_headers())
    assert ok.status_code == 201
    past = requests.post(f"{base}/0/0:4/0:4/31:33/", data=body, headers=_headers())
    assert past.status_code == 400 and "z range 31:33 is outside" in past.json()["message"]
    res = requests.get(f"{base}/1/0:4/0:4/0:2/", headers=_headers())
    assert res.status_code == 400 and "resolution 1" in res.json()["message"]
    wrong = blosc.compress(np.ones((2, 4, 4), np.uint8).tobytes(), typesize=1)
    r = requests.post(f"{base}/0/0:4/0:4/0:2/", data=wrong, headers=_headers())
    assert r.status_code == 400 and r.json()["code"] == 2001
    bad = requests.get(f"{base}/0/4:0/0:4/0:2/", headers=_headers())
    assert bad.status_code == 400 and bad.json()["code"] == 1001


def test_request_size_limit(server) -> None:
    remote = BossRemote({"protocol": "http", "host": server.host, "token": TOKEN})
    _setup(remote, "lim", shape=(512, 1024, 1024))
    r = requests.get(f"{server.url}/v1/cutout/lim/e/ch/0/0:1024/0:1024/0:65/", headers=_headers())
    assert r.status_code == 413 and r.json()["code"] == 2000
    # the client's pieces stay under the limit, so the same box pulls fine
    client = BossClient(server.host, "http", TOKEN)
    assert client.pull("lim", "e", "ch", Box((0, 0, 0), (65, 1024, 1024))).shape == (65, 1024, 1024)


def test_time_samples_are_separate(server) -> None:
    remote = BossRemote({"protocol": "http", "host": server.host, "token": TOKEN})
    chan = _setup(remote, "ts", shape=(16, 32, 32), t=4)
    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5) + 1
    remote.create_cutout(chan, 0, [0, 5], [0, 4], [0, 3], data, time_range=[1, 3])
    got = remote.get_cutout(chan, 0, [0, 5], [0, 4], [0, 3], time_range=[0, 4])
    assert not got[0].any() and not got[3].any()
    np.testing.assert_array_equal(got[1:3], data)
    # no time range = the channel's default time sample (0)
    assert not remote.get_cutout(chan, 0, [0, 5], [0, 4], [0, 3]).any()


def test_data_survives_restart_and_is_plain_zarr(tmp_path) -> None:
    data_dir = tmp_path / "persist"
    frame = CoordinateFrame(Box((0, 0, 0), (20, 530, 520)), (40.0, 4.0, 4.0), "nanometers", "pf")
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 2**63, frame.extent.shape, dtype=np.uint64)
    vol[rng.random(frame.extent.shape) < 0.99] = 0  # labels are sparse
    with LocalBossServer(data_dir, TOKEN) as srv:
        client = BossClient(srv.host, "http", TOKEN)
        client.ensure_experiment("p", "e", frame)
        client.ensure_channel("p", "e", "lab", datatype="uint64", type="image")
        client.push("p", "e", "lab", frame.extent, vol)
        uid = srv.store.resolve_volume("p", "e", "lab").uid
    with LocalBossServer(data_dir, TOKEN) as srv:
        client = BossClient(srv.host, "http", TOKEN)
        assert client.coordinate_frame("p", "e") == frame
        np.testing.assert_array_equal(client.pull("p", "e", "lab", frame.extent), vol)
    stored = zarr.open_array(str(data_dir / "volumes" / f"{uid}.zarr"), mode="r")
    assert stored.shape == (1, 20, 530, 520) and stored.chunks == (1, 16, 512, 512)
    np.testing.assert_array_equal(stored[0], vol)
    meta = json.loads((data_dir / "metadata.json").read_text())
    assert TOKEN not in json.dumps(meta)


def test_concurrent_overlapping_writes_do_not_lose_updates(server) -> None:
    """Unaligned writes sharing cuboids are read-modify-writes: they must serialise."""
    remote = BossRemote({"protocol": "http", "host": server.host, "token": TOKEN})
    chan = _setup(remote, "cc", shape=(16, 512, 512))
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            r = BossRemote({"protocol": "http", "host": server.host, "token": TOKEN})
            block = np.full((16, 512, 8), i + 1, np.uint8)  # every write touches the same cuboid
            r.create_cutout(chan, 0, [8 * i, 8 * i + 8], [0, 512], [0, 16], block)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = remote.get_cutout(chan, 0, [0, 192], [0, 512], [0, 16], parallel=False)
    expected = np.repeat(np.arange(1, 25, dtype=np.uint8), 8)
    np.testing.assert_array_equal(got[3, 100], expected)


def test_delete_rules_and_renames(server) -> None:
    remote = BossRemote({"protocol": "http", "host": server.host, "token": TOKEN})
    chan = _setup(remote, "dr", shape=(16, 16, 16))
    remote.create_cutout(chan, 0, [0, 2], [0, 2], [0, 1], np.ones((1, 2, 2), np.uint8))
    with pytest.raises(requests.HTTPError, match="still has experiments"):
        remote.delete_project(CollectionResource("dr"))
    with pytest.raises(requests.HTTPError, match="is used by experiment"):
        remote.delete_project(CoordinateFrameResource("dr_cf"))
    remote.delete_project(ChannelResource("ch", "dr", "e"))
    # a channel re-created under the same name starts empty (no stale voxels)
    chan = remote.create_project(ChannelResource("ch", "dr", "e", "image", datatype="uint8"))
    assert not remote.get_cutout(chan, 0, [0, 2], [0, 2], [0, 1]).any()


def test_server_as_child_process(tmp_path) -> None:
    with BossServerProcess(tmp_path / "child", TOKEN) as srv:
        assert TOKEN not in repr(srv)
        client = BossClient(srv.host, "http", TOKEN)
        frame = CoordinateFrame(Box((0, 0, 0), (16, 32, 32)), (1.0, 1.0, 1.0), "nanometers", "f")
        client.ensure_experiment("k", "e", frame)
        client.ensure_channel("k", "e", "c", datatype="uint8", type="image")
        client.push("k", "e", "c", frame.extent, np.full((16, 32, 32), 9, np.uint8))
        assert client.pull("k", "e", "c", frame.extent).min() == 9


def test_frame_larger_than_memory_costs_only_what_is_written(server) -> None:
    # 10^4 x 10^5 x 10^5 uint64 would be 800 PB if allocated
    client = BossClient(server.host, "http", TOKEN)
    extent = Box((0, 0, 0), (10_000, 100_000, 100_000))
    client.ensure_experiment("huge", "e", CoordinateFrame(extent, (1.0, 1.0, 1.0), "nm", "hf"))
    client.ensure_channel("huge", "e", "lab", datatype="uint64", type="image")
    box = Box((9_990, 99_000, 99_900), (10_000, 99_100, 100_000))  # the far corner
    data = np.arange(box.size, dtype=np.uint64).reshape(box.shape) + 2**40
    client.push("huge", "e", "lab", box, data)
    np.testing.assert_array_equal(client.pull("huge", "e", "lab", box), data)
    uid = server.store.resolve_volume("huge", "e", "lab").uid
    files = [p for p in (server.data_dir / "volumes" / f"{uid}.zarr").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 1024 * 1024
