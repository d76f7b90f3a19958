"""The fixed names of a request's result files, under ``<results_key>/`` locally and in S3.

Defined once here, with no imports, so the light modules (``workflow.py`` in a Lambda) and the
heavy ones (``outputs.py`` in the container) share them.
"""

from __future__ import annotations

PREDICTIONS = "predictions.ome.tif"
SYNAPSE_IDS = "synapse_ids.ome.tif"
SYNAPSES_CSV = "synapses.csv"
SYNAPSES_META = "synapses.csv.json"
MANIFEST = "manifest.json"
REPORT = "report.html"
CLUSTERING = "clustering.json"
LINKS = "links.csv"
#: A blockwise run's chunked volumes (Zarr v3, one chunk per block, absolute BOSS voxel
#: coordinates) in place of the two OME-TIFFs, which one job could not hold at scale.
PREDICTIONS_ZARR = "predictions.zarr"
SYNAPSE_IDS_ZARR = "synapse_ids.zarr"
#: The same two volumes as OME-Zarr (NGFF 0.5 on Zarr v3, multiscale), for Neuroglancer
#: (zarr3://), napari and webKnossos; written by single and blockwise runs alike
#: (docs/viewer.md).
PREDICTIONS_OME_ZARR = "predictions.ome.zarr"
SYNAPSE_IDS_OME_ZARR = "synapse_ids.ome.zarr"
#: The raw cutout the run read, one OME-Zarr per channel: ``raw/<channel>.ome.zarr``.
RAW_FOLDER = "raw"


def raw_channel_path(channel: str) -> str:
    """Where the raw cutout of one channel lies in the results folder."""
    return f"{RAW_FOLDER}/{channel}.ome.zarr"


#: Every fixed artefact name, in the order a person would look at them.
ARTEFACTS: tuple[str, ...] = (
    PREDICTIONS,
    SYNAPSE_IDS,
    SYNAPSES_CSV,
    MANIFEST,
    REPORT,
    CLUSTERING,
    LINKS,
)
