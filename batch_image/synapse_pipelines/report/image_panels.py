"""The report's pictures of the data: synaptograms and the detection overlay.

Owns :class:`ResultVolumes` (where a run's OME-Zarr volumes are: a results folder, or any
``path -> bytes`` getter such as an S3 prefix; only the chunks a crop touches are read) and
:func:`make_image_panels` (crops around the chosen synapses, drawn by
:mod:`synapse_pipelines.science.synaptograms`, encoded as PNG for the page). The page
stays offline: every image is a ``data:`` URL. The panels do not grow with the number of
synapses (a fixed sample, a fixed overlay field), and :data:`MAX_PANEL_BYTES` caps them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from synapse_pipelines.core.artefacts import MANIFEST
from synapse_pipelines.io.ome_zarr import Getter, OmeZarrReader, folder_getter
from synapse_pipelines.io.outputs import read_manifest
from synapse_pipelines.science.synaptograms import (
    choose_samples,
    composite_overlay,
    detection_strength,
    intensity_window,
    synaptogram,
)

#: Synaptogram crop half-size (z, y, x voxels): 5 sections of 21 x 21 pixels.
HALF_WINDOW = (2, 10, 10)
#: Overlay field of view (y, x voxels at full resolution) and the sections shown.
OVERLAY_FIELD = (384, 384)
OVERLAY_SECTIONS = 3
#: All pictures of one report together stay under this many bytes of PNG.
MAX_PANEL_BYTES = 4_000_000


@dataclass(frozen=True)
class Picture:
    """One PNG of the page."""

    title: str
    caption: str
    data_url: str
    width: int
    height: int
    zoom: int  # display magnification (pixelated)


@dataclass(frozen=True)
class ImagePanels:
    synaptograms: list[Picture] = field(default_factory=list)
    overlays: list[Picture] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)  # synaptogram rows (channels)
    notes: list[str] = field(default_factory=list)
    png_bytes: int = 0


@dataclass(frozen=True)
class ResultVolumes:
    """A run's OME-Zarr volumes: ``get(root)`` gives the getter of one volume's objects."""

    get: Callable[[str], Getter]
    raw: Mapping[str, str]  # channel -> volume root
    synapse_ids: str
    presynaptic: str | None
    postsynaptic: str | None

    @classmethod
    def from_manifest(
        cls, manifest: Mapping[str, Any], get: Callable[[str], Getter]
    ) -> ResultVolumes | None:
        """None when the run wrote no OME-Zarr volumes (older results)."""
        section = manifest.get("ome_zarr")
        if not section or not section.get("raw"):
            return None
        channels = manifest.get("channels", {})
        return cls(
            get=get,
            raw=dict(section["raw"]),
            synapse_ids=str(section["synapse_ids"]),
            presynaptic=channels.get("presynaptic"),
            postsynaptic=channels.get("postsynaptic"),
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> ResultVolumes | None:
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            return None
        return cls.from_manifest(read_manifest(folder), lambda root: folder_getter(folder / root))


def _png(rgb: np.ndarray) -> tuple[str, int]:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=True)
    data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), len(data)


def _ordered_channels(volumes: ResultVolumes) -> list[str]:
    first = [c for c in (volumes.presynaptic, volumes.postsynaptic) if c in volumes.raw]
    return first + [c for c in volumes.raw if c not in first]


def make_image_panels(
    table: pd.DataFrame,
    volumes: ResultVolumes,
    *,
    clusters: np.ndarray | None = None,
) -> ImagePanels:
    """Synaptograms of the chosen synapses and the overlay around the strongest one.

    ``clusters``: the leaf cluster of each row of ``table`` (same order), when clustered.
    """
    if not len(table):
        return ImagePanels(notes=["no synapses: nothing to draw"])
    readers = {name: OmeZarrReader(volumes.get(root)) for name, root in volumes.raw.items()}
    ids_reader = OmeZarrReader(volumes.get(volumes.synapse_ids))
    channels = _ordered_channels(volumes)
    windows = {}
    for name in channels:  # from the coarsest level: a few reads, whatever the volume size
        reader = readers[name]
        level = len(reader.paths) - 1
        windows[name] = intensity_window(reader.read((0, 0, 0), reader.shape(level), level))
    pre = volumes.presynaptic or channels[0]
    post = volumes.postsynaptic or channels[min(1, len(channels) - 1)]
    strength = detection_strength(table, pre, post).to_numpy()
    ids = table["id"].to_numpy()
    samples = choose_samples(ids, strength, clusters)
    rows = table.set_index("id")
    by_id = dict(zip(ids.tolist(), strength.tolist(), strict=True))
    budget = MAX_PANEL_BYTES
    notes: list[str] = []
    synaptograms: list[Picture] = []
    for sample in samples:
        row = rows.loc[sample.synapse_id]
        centre = [int(np.floor(row[f"centroid_{a}"])) for a in "zyx"]
        start = [c - h for c, h in zip(centre, HALF_WINDOW, strict=True)]
        stop = [c + h + 1 for c, h in zip(centre, HALF_WINDOW, strict=True)]
        crops = {name: readers[name].read_absolute(start, stop) for name in channels}
        own = ids_reader.read_absolute(start, stop) == sample.synapse_id
        image = synaptogram(crops, windows, own)
        url, size = _png(image)
        if size > budget:
            notes.append(f"synaptograms after synapse {sample.synapse_id} left out (size)")
            break
        budget -= size
        synaptograms.append(
            Picture(
                title=f"synapse {sample.synapse_id}: {sample.reason}",
                caption=(
                    f"centroid z,y,x {centre[0]},{centre[1]},{centre[2]}; "
                    f"{int(row['volume_voxels'])} voxels; "
                    f"strength {by_id[sample.synapse_id]:.4g}"
                ),
                data_url=url,
                width=image.shape[1],
                height=image.shape[0],
                zoom=3,
            )
        )
    overlays = _overlays(rows, samples[0].synapse_id, readers, ids_reader, pre, post, windows)
    kept = []
    for picture, size in overlays:
        if size > budget:
            notes.append("overlay sections left out (size)")
            break
        budget -= size
        kept.append(picture)
    return ImagePanels(
        synaptograms=synaptograms,
        overlays=kept,
        rows=channels,
        notes=notes,
        png_bytes=MAX_PANEL_BYTES - budget,
    )


def _overlays(
    rows: pd.DataFrame,
    synapse_id: int,
    readers: Mapping[str, OmeZarrReader],
    ids_reader: OmeZarrReader,
    pre: str,
    post: str,
    windows: Mapping[str, tuple[float, float]],
) -> list[tuple[Picture, int]]:
    """A few sections of the composite around the strongest synapse, full resolution."""
    row = rows.loc[synapse_id]
    offset = ids_reader.offset
    shape = ids_reader.shape(0)
    lo = list(offset)
    hi = [o + s for o, s in zip(offset, shape, strict=True)]
    cz, cy, cx = (int(np.floor(row[f"centroid_{a}"])) for a in "zyx")
    box = []
    for c, half, a, b in zip((cy, cx), OVERLAY_FIELD, lo[1:], hi[1:], strict=True):
        start = max(a, min(c - half // 2, b - half))
        box.append((start, min(b, start + half)))
    sections = sorted(
        {min(max(z, lo[0]), hi[0] - 1) for z in np.linspace(cz - 2, cz + 2, OVERLAY_SECTIONS)}
    )
    out = []
    for z in sections:
        z = int(z)
        start = (z, box[0][0], box[1][0])
        stop = (z + 1, box[0][1], box[1][1])
        image = composite_overlay(
            readers[pre].read_absolute(start, stop)[0],
            readers[post].read_absolute(start, stop)[0],
            ids_reader.read_absolute(start, stop)[0],
            (windows[pre], windows[post]),
        )
        url, size = _png(image)
        caption = f"section z={z}, y {box[0][0]}-{box[0][1]}, x {box[1][0]}-{box[1][1]}"
        picture = Picture(
            title=f"{pre} (magenta) / {post} (green), detections outlined",
            caption=caption,
            data_url=url,
            width=image.shape[1],
            height=image.shape[0],
            zoom=2,
        )
        out.append((picture, size))
    return out
