"""Neuroglancer links and links.csv."""

from __future__ import annotations

import csv
import json
import urllib.parse

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.boss_links import links_csv_text, result_links, write_links_csv
from synapse_pipelines.io.boss_publish import labels_channel_name, mask_channel_name
from synapse_pipelines.io.boss_resources import CoordinateFrame


def _state(url: str) -> dict:
    prefix = "https://neuroglancer.bossdb.io/#!"
    assert url.startswith(prefix)
    return json.loads(urllib.parse.unquote(url[len(prefix) :]))


def _request():
    return parse_request(
        {
            "collection": "collman",
            "experiment": "collman15v2",
            "z_range": [0, 27],
            "y_range": [1000, 2024],
            "x_range": [2000, 3024],
            "presynaptic_channel": "Synapsin647",
            "postsynaptic_channel": "PSD95_488",
        }
    )


def test_all_link_has_raw_images_and_prediction_segmentations() -> None:
    request = _request()
    frame = CoordinateFrame(
        Box((0, 0, 0), (27, 4518, 6306)), (70.0, 100.0, 100.0), "nanometers", "cf"
    )
    links = result_links(request, raw_channels=["Synapsin647", "PSD95_488", "EM25k"], frame=frame)
    assert list(links) == [
        "all", "Synapsin647", "PSD95_488", "EM25k", "predictions", "synapse_ids",
    ]  # fmt: skip
    state = _state(links["all"])
    layers = {layer["name"]: layer for layer in state["layers"]}
    assert layers["Synapsin647"]["type"] == "image"
    assert layers["Synapsin647"]["source"] == (
        "boss://https://api.bossdb.io/collman/collman15v2/Synapsin647"
    )
    key = request.results_key
    assert layers["predictions"]["type"] == "segmentation"
    assert layers["predictions"]["source"] == (
        f"boss://https://api.bossdb.io/collman_nomads/nomads_predictions/{mask_channel_name(key)}"
    )
    assert layers["synapse_ids"]["source"].endswith(labels_channel_name(key))
    # centred on the request, physical voxel size from the frame (x, y, z in metres)
    assert state["position"] == [2512.0, 1512.0, 13.5]
    assert state["dimensions"]["z"] == [70e-9, "m"]
    assert state["dimensions"]["x"] == [100e-9, "m"]


def test_links_without_a_frame_default_to_the_explicit_channels() -> None:
    links = result_links(_request())
    state = _state(links["all"])
    assert "dimensions" not in state
    assert [layer["name"] for layer in state["layers"]] == [
        "Synapsin647", "PSD95_488", "predictions", "synapse_ids",
    ]  # fmt: skip


def test_links_csv_round_trip(tmp_path) -> None:
    links = result_links(_request(), include_labels=False)
    path = write_links_csv(tmp_path / "links.csv", links)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["name", "url"]
    assert dict(rows[1:]) == links
    assert links_csv_text(links) == path.read_text()
