"""Pushing and publishing through the real local server: pieces, zeros, idempotency, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_publish import (
    labels_channel_name,
    mask_channel_name,
    publish_predictions,
)
from synapse_pipelines.io.boss_resources import OUTPUT_MARKER, CoordinateFrame


def _frame(shape: tuple[int, int, int]) -> CoordinateFrame:
    return CoordinateFrame(Box((0, 0, 0), shape), (70.0, 100.0, 100.0), "nanometers", "unused")


def test_push_then_pull_roundtrip_across_many_pieces(boss_server) -> None:
    # a small piece shape forces many concurrent cuboid-aligned pieces on a small volume
    client = boss_server.client(piece_shape=(16, 512, 512), max_workers=4)
    col, exp = boss_server.unique("push"), "e"
    shape = (40, 1100, 600)
    client.ensure_experiment(col, exp, _frame(shape))
    client.ensure_channel(col, exp, "img16", datatype="uint16", type="image")
    rng = np.random.default_rng(0)
    box = Box((5, 100, 30), (37, 1090, 599))  # crosses cuboid faces on every axis
    data = rng.integers(0, 60000, box.shape, dtype=np.uint16)
    client.push(col, exp, "img16", box, data)
    np.testing.assert_array_equal(client.pull(col, exp, "img16", box), data)
    # outside the pushed box the channel is still zero
    assert not client.pull(col, exp, "img16", Box((0, 0, 0), (5, 100, 30))).any()


def test_all_zero_push_overwrites_earlier_data(boss_server) -> None:
    client = boss_server.client()
    col, exp = boss_server.unique("zero"), "e"
    client.ensure_experiment(col, exp, _frame((32, 512, 512)))
    client.ensure_channel(col, exp, "m", datatype="uint8", type="image")
    box = Box((0, 0, 0), (20, 300, 300))
    client.push(col, exp, "m", box, np.full(box.shape, 255, np.uint8))
    assert client.pull(col, exp, "m", box).min() == 255
    client.push(col, exp, "m", box, np.zeros(box.shape, np.uint8))
    assert not client.pull(col, exp, "m", box).any()


def test_push_rejects_values_that_do_not_fit_and_wrong_shapes(boss_server) -> None:
    client = boss_server.client()
    col, exp = boss_server.unique("fit"), "e"
    client.ensure_experiment(col, exp, _frame((16, 64, 64)))
    client.ensure_channel(col, exp, "m", datatype="uint8", type="image")
    box = Box((0, 0, 0), (2, 4, 4))
    with pytest.raises(BossError, match="do not fit"):
        client.push(col, exp, "m", box, np.full(box.shape, 300, np.int32))
    with pytest.raises(ValueError, match="does not match"):
        client.push(col, exp, "m", box, np.zeros((2, 4, 5), np.uint8))


def _request(boss_server, **overrides):
    data = {
        "boss_host": boss_server.host,
        "boss_protocol": "http",
        "collection": "synthetic",
        "experiment": "synth16",
        "z_range": [2, 14],
        "y_range": [0, 256],
        "x_range": [100, 256],
        "output_collection": boss_server.unique("out"),
        "output_experiment": "preds",
    }
    data.update(overrides)
    return parse_request(data)


def test_publish_creates_output_and_is_idempotent(boss_server, boss_synthetic) -> None:
    client = boss_server.client()
    request = _request(boss_server)
    box = request.box
    rng = np.random.default_rng(1)
    labels = np.zeros(box.shape, np.uint64)
    labels[3:5, 10:20, 10:20] = 7
    labels[0:2, 100:110, 50:60] = 2**40 + 3  # beyond uint32
    mask = (labels > 0).astype(np.uint8) * rng.integers(1, 3, box.shape, dtype=np.uint8)
    frame = client.validate_box("synthetic", "synth16", box)

    published = publish_predictions(client, request, mask, labels, frame)
    assert published.mask_channel == mask_channel_name(request.results_key)
    assert published.mask_channel == f"{request.results_key}_{request.results_key}"
    assert published.labels_channel == labels_channel_name(request.results_key)
    col, exp = request.output_collection, request.output_experiment
    out_frame = client.coordinate_frame(col, exp)
    assert out_frame.extent == frame.extent and out_frame.voxel_size == frame.voxel_size
    mask_info = client.channel(col, exp, published.mask_channel)
    labels_info = client.channel(col, exp, published.labels_channel)
    assert (mask_info.datatype, mask_info.type) == ("uint8", "image")
    assert (labels_info.datatype, labels_info.type) == ("uint64", "annotation")
    got_mask = client.pull(col, exp, published.mask_channel, box)
    np.testing.assert_array_equal(got_mask, np.where(mask > 0, 255, 0).astype(np.uint8))
    np.testing.assert_array_equal(client.pull(col, exp, published.labels_channel, box), labels)

    # a re-run with fewer detections leaves exactly the new result (zeros overwrite)
    labels2 = np.zeros_like(labels)
    labels2[3:5, 10:20, 10:20] = 7
    publish_predictions(client, request, (labels2 > 0).astype(np.uint8), labels2, frame)
    np.testing.assert_array_equal(client.pull(col, exp, published.labels_channel, box), labels2)
    assert client.pull(col, exp, published.mask_channel, box).sum() == 255 * (labels2 > 0).sum()
    assert published.to_dict()["mask_channel"] == published.mask_channel


def test_publish_refuses_existing_output_channel_of_other_type(boss_server, boss_synthetic):
    client = boss_server.client()
    request = _request(boss_server)
    col, exp = request.output_collection, request.output_experiment
    frame = client.coordinate_frame("synthetic", "synth16")
    client.ensure_experiment(col, exp, frame)
    client.ensure_channel(
        col, exp, mask_channel_name(request.results_key), datatype="uint16", type="image"
    )
    shape = request.box.shape
    with pytest.raises(BossError, match="already exists as a uint16 image channel"):
        publish_predictions(client, request, np.zeros(shape, np.uint8), None, frame)


def test_publish_refuses_to_write_into_input_channels(boss_server, boss_synthetic) -> None:
    client = boss_server.client()
    col, exp = boss_server.unique("inp"), "e"
    boss_server.load(col, exp, {"Synapsin647": np.ones((16, 64, 64), np.uint8)})
    request = parse_request(
        {
            "boss_host": boss_server.host,
            "boss_protocol": "http",
            "collection": col,
            "experiment": exp,
            "z_range": [0, 16],
            "y_range": [0, 64],
            "x_range": [0, 64],
            "output_collection": col,
            "output_experiment": exp,
        }
    )
    # a user channel that happens to carry the output's name is input data: refuse
    client.ensure_channel(
        col, exp, mask_channel_name(request.results_key), datatype="uint8", type="image"
    )
    zeros = np.zeros(request.box.shape, np.uint8)
    with pytest.raises(BossError, match="input channel") as err:
        publish_predictions(client, request, zeros, None)
    assert err.value.field == "output_experiment"
    assert client.pull(col, exp, mask_channel_name(request.results_key), request.box).sum() == 0
    assert client.pull(col, exp, "Synapsin647", request.box).min() == 1


def test_publish_into_the_input_experiment_is_fine_for_its_own_outputs(boss_server) -> None:
    client = boss_server.client()
    col, exp = boss_server.unique("same"), "e"
    boss_server.load(col, exp, {"Synapsin647": np.ones((16, 64, 64), np.uint8)})
    request = parse_request(
        {
            "boss_host": boss_server.host,
            "boss_protocol": "http",
            "collection": col,
            "experiment": exp,
            "z_range": [0, 16],
            "y_range": [0, 64],
            "x_range": [0, 64],
            "output_collection": col,
            "output_experiment": exp,
        }
    )
    mask = np.zeros(request.box.shape, np.uint8)
    mask[1, 1, 1] = 1
    for _ in range(2):  # the second run overwrites its own earlier output
        published = publish_predictions(client, request, mask, mask.astype(np.uint64))
    assert client.channel_description(col, exp, published.mask_channel).startswith(OUTPUT_MARKER)
    assert client.pull(col, exp, published.mask_channel, request.box).sum() == 255


def test_publish_rejects_mask_of_wrong_shape(boss_server, boss_synthetic) -> None:
    client: BossClient = boss_server.client()
    request = _request(boss_server)
    with pytest.raises(BossError, match="request's shape"):
        publish_predictions(client, request, np.zeros((1, 2, 3), np.uint8))


def test_output_experiment_gets_an_equivalent_frame_when_the_name_is_taken(boss_server):
    client = boss_server.client()
    name = boss_server.unique("frame")
    taken = CoordinateFrame(Box((0, 0, 0), (8, 8, 8)), (1.0, 1.0, 1.0), "nanometers", name)
    client.ensure_experiment(boss_server.unique("a"), "e", taken)
    wanted = CoordinateFrame(
        Box((0, 0, 0), (32, 600, 600)), (70.0, 100.0, 100.0), "nanometers", name
    )
    col = boss_server.unique("b")
    got = client.ensure_experiment(col, "e", wanted)
    assert got.name == f"{name}_synapse_pipelines"
    assert (got.extent, got.voxel_size, got.voxel_unit) == (
        wanted.extent, wanted.voxel_size, wanted.voxel_unit,
    )  # fmt: skip


def test_concurrent_publishers_share_created_resources(boss_server) -> None:
    import threading

    col = boss_server.unique("race")
    frame = CoordinateFrame(Box((0, 0, 0), (16, 64, 64)), (1.0, 1.0, 1.0), "nanometers", col)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            boss_server.client().ensure_channel(
                col, "e", "m", datatype="uint8", type="image", frame=frame
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert boss_server.client().list_channels(col, "e") == ["m"]
