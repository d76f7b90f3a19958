"""The Neuroglancer view of a results folder, as Neuroglancer's JSON state (no server here).

Owns :func:`viewer_layout` (what the folder holds and how to show it: the raw channels as
image layers, the presynaptic and postsynaptic channels in two colours and the others
hidden, the synapse ids as a segmentation layer, the voxel size of the manifest, the view
centred on the largest synapse) and :func:`neuroglancer_state` (that layout as the JSON
state for data served under a base URL, every layer a ``zarr3://`` source of the folder's
OME-Zarr volumes). The servers are :mod:`synapse_pipelines.local.viewer`'s.

The scheme is ``zarr3://``, not ``zarr://``: the volumes are NGFF 0.5 on Zarr v3, and
Neuroglancer's auto-detecting ``zarr://`` also asks for the Zarr v2 ``.zarray`` and
``.zattrs`` at the root of every source (404s the browser logs as console errors), while
``zarr3://`` reads only ``zarr.json`` (and the chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synapse_pipelines.core.artefacts import (
    PREDICTIONS_OME_ZARR,
    SYNAPSE_IDS_OME_ZARR,
    SYNAPSES_CSV,
)
from synapse_pipelines.io.ome_tiff import OutputError
from synapse_pipelines.io.ome_zarr import ZARR_JSON, OmeZarrReader
from synapse_pipelines.io.outputs import read_manifest
from synapse_pipelines.io.synapse_table_files import read_synapse_table

#: Neuroglancer's data source scheme for the volumes (Zarr v3, OME-Zarr 0.5 groups).
SOURCE_SCHEME = "zarr3://"
#: Neuroglancer's unit of each BOSS voxel unit.
UNITS = {"nanometers": "nm", "micrometers": "um", "millimeters": "mm", "meters": "m"}
PRESYNAPTIC_COLOUR = "#ff00ff"  # magenta: synapsin
POSTSYNAPTIC_COLOUR = "#00ff00"  # green: PSD-95
OTHER_COLOUR = "#ffffff"
SYNAPSE_IDS_LAYER = "synapse ids"
#: Neuroglancer's coordinate of voxel i's centre is i + 0.5 (the table's is i): added only
#: inside the Neuroglancer state.
NEUROGLANCER_VOXEL_CENTRE = 0.5
PREDICTIONS_LAYER = "predictions"


@dataclass(frozen=True)
class ImageLayer:
    name: str
    path: str  # OME-Zarr folder, relative to the results folder
    colour: str
    visible: bool
    window: tuple[float, float]  # intensities mapped to black and full colour


@dataclass(frozen=True)
class ViewerLayout:
    """What the viewer shows of one results folder."""

    folder: Path
    voxel_size: tuple[float, float, float]  # z, y, x
    voxel_unit: str
    images: list[ImageLayer]
    synapse_ids: str
    predictions: str | None
    #: z, y, x, absolute voxels, as synapses.csv has them (voxel i's centre is i); the
    #: Neuroglancer state adds :data:`NEUROGLANCER_VOXEL_CENTRE`
    centre: tuple[float, float, float]
    centre_synapse: int | None
    n_synapses: int
    notes: list[str] = field(default_factory=list)


def _window(folder: Path, path: str) -> tuple[float, float]:
    """0 .. the 99.9th percentile of the coarsest level (dark AT data stays visible)."""
    reader = OmeZarrReader.open(folder / path)
    level = len(reader.paths) - 1
    data = reader.read((0, 0, 0), reader.shape(level), level)
    top = float(np.percentile(data, 99.9)) if data.size else 1.0
    return 0.0, max(top, 1.0)


def _centre(
    folder: Path, manifest: dict[str, Any]
) -> tuple[tuple[float, float, float], int | None]:
    volume = manifest.get("volume", {})
    origin = np.asarray(volume.get("origin", (0, 0, 0)), dtype=float)
    shape = np.asarray(volume.get("shape", (1, 1, 1)), dtype=float)
    table_path = folder / SYNAPSES_CSV
    if table_path.is_file():
        table = read_synapse_table(table_path)
        if len(table):
            row = table.sort_values(["volume_voxels", "id"], ascending=[False, True]).iloc[0]
            z, y, x = (float(row[f"centroid_{a}"]) for a in "zyx")
            return (z, y, x), int(row["id"])
    z, y, x = (origin + shape / 2 - NEUROGLANCER_VOXEL_CENTRE).tolist()
    return (z, y, x), None


def viewer_layout(folder: str | Path) -> ViewerLayout:
    """Read a results folder (``detect``, ``demo``, ``run --local``, a blockwise run) and
    say what to show; a clear error when it has no viewable volumes."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    section = manifest.get("ome_zarr")
    if not section or not (folder / SYNAPSE_IDS_OME_ZARR / ZARR_JSON).is_file():
        old = (folder / SYNAPSE_IDS_OME_ZARR / ".zattrs").is_file()
        raise OutputError(
            f"{folder} has no OME-Zarr (NGFF 0.5) volumes to view",
            field="results folder",
            hint=(
                "results written with OME-Zarr NGFF 0.4 (Zarr v2): run detect again"
                if old
                else "results written before OME-Zarr output existed: run detect again"
            ),
        )
    volume = manifest.get("volume", {})
    channels = manifest.get("channels", {})
    pre, post = channels.get("presynaptic"), channels.get("postsynaptic")
    images, notes = [], []
    for name, path in section.get("raw", {}).items():
        if not (folder / path / ZARR_JSON).is_file():
            notes.append(f"raw channel {name} is missing ({path})")
            continue
        colour = {pre: PRESYNAPTIC_COLOUR, post: POSTSYNAPTIC_COLOUR}.get(name, OTHER_COLOUR)
        images.append(ImageLayer(name, path, colour, name in (pre, post), _window(folder, path)))
    # presynaptic first, postsynaptic second, the others in the manifest's order
    images.sort(key=lambda layer: {pre: 0, post: 1}.get(layer.name, 2))
    if not images:
        notes.append("the results hold no raw cutout: only the detections are shown")
    centre, synapse = _centre(folder, manifest)
    has_predictions = (folder / PREDICTIONS_OME_ZARR / ZARR_JSON).is_file()
    return ViewerLayout(
        folder=folder,
        voxel_size=tuple(float(v) for v in volume.get("voxel_size", (1, 1, 1))),  # type: ignore[arg-type]
        voxel_unit=str(volume.get("voxel_unit", "nanometers")),
        images=images,
        synapse_ids=SYNAPSE_IDS_OME_ZARR,
        predictions=PREDICTIONS_OME_ZARR if has_predictions else None,
        centre=centre,
        centre_synapse=synapse,
        n_synapses=int(manifest.get("counts", {}).get("synapses", 0)),
        notes=notes,
    )


def _shader(colour: str, window: tuple[float, float]) -> str:
    lo, hi = window
    return (
        f"#uicontrol invlerp normalized(range=[{lo:g}, {hi:g}])\n"
        f'#uicontrol vec3 colour color(default="{colour}")\n'
        "void main() {\n  emitRGB(colour * normalized());\n}\n"
    )


def neuroglancer_state(layout: ViewerLayout, base_url: str) -> dict[str, Any]:
    """The JSON state of a viewer whose data is served at ``base_url`` (the folder's root)."""
    unit = UNITS.get(layout.voxel_unit, "nm")
    z, y, x = layout.voxel_size
    base = base_url.rstrip("/")
    layers: list[dict[str, Any]] = [
        {
            "type": "image",
            "name": image.name,
            "source": f"{SOURCE_SCHEME}{base}/{image.path}",
            "shader": _shader(image.colour, image.window),
            "blend": "additive",
            "visible": image.visible,
        }
        for image in layout.images
    ]
    segmentation: dict[str, Any] = {
        "type": "segmentation",
        "name": SYNAPSE_IDS_LAYER,
        "source": f"{SOURCE_SCHEME}{base}/{layout.synapse_ids}",
        "selectedAlpha": 0.3,
        "notSelectedAlpha": 0.15,
    }
    if layout.centre_synapse is not None:
        segmentation["segments"] = [str(layout.centre_synapse)]
        segmentation["notSelectedAlpha"] = 0.15
    layers.append(segmentation)
    if layout.predictions is not None:
        layers.append(
            {
                "type": "segmentation",
                "name": PREDICTIONS_LAYER,
                "source": f"{SOURCE_SCHEME}{base}/{layout.predictions}",
                "visible": False,
            }
        )
    # Neuroglancer's voxel i spans [i, i + 1): the table's coordinate i is its i + 0.5
    cz, cy, cx = (v + NEUROGLANCER_VOXEL_CENTRE for v in layout.centre)
    return {
        "dimensions": {"x": [x, unit], "y": [y, unit], "z": [z, unit]},
        "position": [cx, cy, cz],
        "crossSectionScale": 0.5,
        "projectionScale": 256,
        "layers": layers,
        "selectedLayer": {"layer": SYNAPSE_IDS_LAYER, "visible": False},
        "layout": "xy",
    }
