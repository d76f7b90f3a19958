"""Neuroglancer links to a request's data and predictions in BOSS, and ``links.csv``.

The original's ``ndwt.neurodata.io`` links point to a viewer that no longer exists. Links
here open Neuroglancer (``neuroglancer.bossdb.io`` by default) on ``boss://`` sources, with
the predictions as segmentation layers. They are computed from the request alone (no BOSS
call), so a Lambda can build them. API::

    result_links(request, *, raw_channels=None, frame=None, neuroglancer_url=...) -> dict
    neuroglancer_link(host, protocol, layers, frame, box) -> str
    links_csv_text(links) -> str;  write_links_csv(path, links) -> Path
"""

from __future__ import annotations

import csv
import io
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_publish import labels_channel_name, mask_channel_name
from synapse_pipelines.io.boss_resources import CoordinateFrame

if TYPE_CHECKING:
    from synapse_pipelines.core.request import SynapseRequest

NEUROGLANCER_VIEWER = "https://neuroglancer.bossdb.io/"
_UNIT_TO_METRES = {
    "nanometers": 1e-9,
    "nanometer": 1e-9,
    "nm": 1e-9,
    "micrometers": 1e-6,
    "micrometer": 1e-6,
    "um": 1e-6,
    "millimeters": 1e-3,
    "millimeter": 1e-3,
    "mm": 1e-3,
    "centimeters": 1e-2,
    "meters": 1.0,
}


@dataclass(frozen=True)
class LinkLayer:
    """One Neuroglancer layer: ``kind`` is ``"image"`` or ``"segmentation"``."""

    name: str
    collection: str
    experiment: str
    channel: str
    kind: str = "image"


def boss_source(protocol: str, host: str, collection: str, experiment: str, channel: str) -> str:
    """Neuroglancer's data source for a BOSS channel."""
    return f"boss://{protocol}://{host}/{collection}/{experiment}/{channel}"


def neuroglancer_link(
    host: str,
    protocol: str,
    layers: Sequence[LinkLayer],
    frame: CoordinateFrame | None,
    box: Box,
    *,
    viewer: str = NEUROGLANCER_VIEWER,
) -> str:
    """A Neuroglancer URL showing ``layers``, centred on ``box``.

    With a ``frame`` the state carries the physical voxel size; without one (e.g. in a Lambda
    that does not call BOSS) Neuroglancer takes the dimensions from the BOSS sources, and the
    position is still in voxels.
    """
    center = [(a + b) / 2 for a, b in zip(box.start, box.stop, strict=True)]
    state: dict[str, Any] = {}
    if frame is not None:
        scale = _UNIT_TO_METRES.get(frame.voxel_unit.lower(), 1e-9)
        vz, vy, vx = frame.voxel_size
        # round away binary noise (100 * 1e-9 is 1.0000000000000001e-07)
        state["dimensions"] = {
            axis: [float(f"{size * scale:.12g}"), "m"]
            for axis, size in (("x", vx), ("y", vy), ("z", vz))
        }
    state.update(
        position=[center[2], center[1], center[0]],
        crossSectionScale=1,
        projectionScale=max(box.shape[1:]) or 1,
        layers=[
            {
                "type": layer.kind,
                "source": boss_source(
                    protocol, host, layer.collection, layer.experiment, layer.channel
                ),
                "name": layer.name,
                **({"opacity": 0.5} if layer.kind == "segmentation" else {}),
            }
            for layer in layers
        ],
        layout="4panel",
    )
    text = json.dumps(state, separators=(",", ":"))
    base = viewer if viewer.endswith("/") else viewer + "/"
    return f"{base}#!{urllib.parse.quote(text, safe='')}"


def result_links(
    request: SynapseRequest,
    *,
    raw_channels: Sequence[str] | None = None,
    frame: CoordinateFrame | None = None,
    neuroglancer_url: str = NEUROGLANCER_VIEWER,
    include_labels: bool = True,
) -> dict[str, str]:
    """Links for links.csv, computed from the request alone (no BOSS call needed).

    ``all`` shows the raw channels as image layers and the predictions as segmentation
    layers; then one link per raw channel and per output channel. ``raw_channels`` defaults
    to the request's explicit pre/postsynaptic channels. Output channel names are the ones
    publication writes (:func:`~synapse_pipelines.io.boss_publish.mask_channel_name`,
    :func:`~synapse_pipelines.io.boss_publish.labels_channel_name`).
    """
    host, protocol = request.boss_host, request.boss_protocol
    if raw_channels is None:
        raw_channels = [c for c in (request.presynaptic_channel, request.postsynaptic_channel) if c]
    raw_layers = [
        LinkLayer(ch, request.collection, request.experiment, ch, "image") for ch in raw_channels
    ]
    col, exp, key = request.output_collection, request.output_experiment, request.results_key
    out_layers = [LinkLayer("predictions", col, exp, mask_channel_name(key), "segmentation")]
    if include_labels:
        out_layers.append(
            LinkLayer("synapse_ids", col, exp, labels_channel_name(key), "segmentation")
        )
    box = request.box
    links = {
        "all": neuroglancer_link(
            host, protocol, raw_layers + out_layers, frame, box, viewer=neuroglancer_url
        )
    }
    for layer in raw_layers + out_layers:
        links[layer.name] = neuroglancer_link(
            host, protocol, [layer], frame, box, viewer=neuroglancer_url
        )
    return links


def links_csv_text(links: Mapping[str, str]) -> str:
    """``name,url`` rows with a header, like the original's NDVIS_links.csv (key, link)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "url"])
    for name, url in links.items():
        writer.writerow([name, url])
    return buf.getvalue()


def write_links_csv(path: str | Path, links: Mapping[str, str]) -> Path:
    """Write :func:`links_csv_text` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(links_csv_text(links))
    return path
