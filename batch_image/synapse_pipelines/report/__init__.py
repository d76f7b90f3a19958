"""The PyMEDA-style exploratory report of a synapse table, on maintained libraries.

``build_report(table, title=..., out_html=...)`` is the one entry point: the CLI
(``synapse-pipelines report``) and the pipeline's report step both call it. This module
owns it, :class:`ReportSummary` (what it made) and the atomic writes. It runs three pure
stages and then writes the files:

1. :func:`analysis.analyse_table` — numbers only: the feature rule, z-scores, KDEs,
   correlation and scree (``feature_statistics``), the hierarchical GMM and k-means++
   seeds (``clustering``), centroids, voxel size and the analysed box (``spatial``);
2. :func:`sections.make_sections` — one plotly figure per plot (``feature_figures``,
   ``cluster_figures``, ``spatial_figures``, sharing ``figure_common``), or the reason
   it is missing;
3. :func:`render.render_html` / :func:`render.clustering_json` — the page and the JSON,
   with the synaptograms and overlay of :func:`image_panels.make_image_panels` when the
   run's OME-Zarr volumes are given (:class:`image_panels.ResultVolumes`).

``sample_data`` makes seeded tables with known clusters (tests, benchmark).

See ``docs/report.md`` for the plots, the feature rule and the benchmark.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from synapse_pipelines.io.outputs import check_complete_results
from synapse_pipelines.io.synapse_table_files import read_synapse_table

from .analysis import analyse_table
from .feature_statistics import KDE_SAMPLES, ReportInputError
from .image_panels import ImagePanels, ResultVolumes, make_image_panels
from .render import clustering_json, render_html
from .sections import make_sections
from .spatial import parse_voxel_size

__all__ = ["ReportSummary", "ResultVolumes", "build_report", "load_table"]


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`build_report` made (JSON-safe via :meth:`to_dict`, for step outputs)."""

    title: str
    n_synapses: int
    features: list[str]
    n_clusters: int
    cluster_sizes: list[int]
    levels_run: int
    plots: list[str]  # keys of the sections drawn
    missing: dict[str, str]  # key -> why it is not drawn
    out_html: str
    out_clustering_json: str | None
    html_bytes: int
    density_per_um3: float | None
    seconds: float
    synaptograms: int = 0
    overlays: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_table(path: str | Path) -> pd.DataFrame:
    """Read ``synapses.csv`` (and its metadata JSON when present) with clear errors."""
    p = Path(path)
    check_complete_results(p, option="synapses.csv")  # a results folder cut off: say so
    if p.is_dir():
        raise ReportInputError(
            f"{p} is a folder, not a CSV file",
            field="synapses.csv",
            hint=f"pass the table inside it, e.g. {p / 'synapses.csv'}",
        )
    return read_synapse_table(p)


def _write_atomic(path: Path, text: str) -> int:
    """Write via a temporary file and rename: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = text.encode("utf-8")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


def build_report(
    table: pd.DataFrame | str | Path,
    *,
    title: str,
    out_html: str | Path,
    out_clustering_json: str | Path | None = None,
    seed: int = 0,
    gmm_levels: int = 2,
    features: Sequence[str] | None = None,
    voxel_size: Sequence[float] | str | None = None,
    voxel_unit: str | None = None,
    box_shape: Sequence[int] | None = None,
    request_info: Mapping[str, Any] | None = None,
    results_key: str | None = None,
    explanation: str | None = None,
    warnings: Sequence[str] = (),
    max_fit_samples: int = 20_000,
    kde_samples: int = KDE_SAMPLES,
    volumes: ResultVolumes | None = None,
) -> ReportSummary:
    """Analyse a synapse table and write the HTML report (and the clustering JSON).

    ``table``: the synapse table (DataFrame) or the path of ``synapses.csv``.
    ``features``: explicit feature columns; default rule in
    :func:`feature_statistics.select_feature_columns`. ``voxel_size`` (z, y, x, or ``"z,y,x"``) and
    ``voxel_unit`` (default ``table.attrs`` or nanometers) give physical units and the
    density; ``box_shape`` (z, y, x voxels) is the analysed box, by default the request's
    ranges or the table metadata. ``request_info`` (e.g. ``SynapseRequest.public_dict()``)
    and ``results_key`` go in the header; keys that look like secrets are never shown.
    ``explanation``: the detector's reason for an empty result, shown at the top, and so
    are ``warnings`` (the manifest's: what the detector measured that puts the result in
    doubt).
    ``max_fit_samples`` / ``kde_samples`` cap the rows each GMM node / each ridge-line KDE
    is fitted on (speed; see ``docs/report.md``). ``volumes``: the run's OME-Zarr volumes
    (:meth:`ResultVolumes.from_folder`), for the synaptograms and the overlay. Same inputs
    and seed give byte-identical files.
    """
    t0 = time.perf_counter()
    if isinstance(table, str | Path):
        table = load_table(table)
    if not str(title).strip():
        raise ReportInputError("the report title is empty", field="title", hint="give a title")
    timings: dict[str, float] = {}
    data = analyse_table(
        table,
        title=str(title),
        features=features,
        seed=seed,
        gmm_levels=gmm_levels,
        voxel_size=parse_voxel_size(voxel_size),
        voxel_unit=voxel_unit,
        box_shape=box_shape,
        request_info=request_info,
        results_key=results_key,
        max_fit_samples=max_fit_samples,
        kde_samples=kde_samples,
    )
    t1 = time.perf_counter()
    timings["analysis"] = t1 - t0
    sections = make_sections(data)
    images = _image_panels(table, data.hierarchy, volumes)
    t2 = time.perf_counter()
    timings["figures"] = t2 - t1
    html = render_html(data, sections, explanation=explanation, warnings=warnings, images=images)
    out_html = Path(out_html)
    html_bytes = _write_atomic(out_html, html)
    json_path = None
    if out_clustering_json is not None:
        json_path = Path(out_clustering_json)
        _write_atomic(json_path, clustering_json(data))
    t3 = time.perf_counter()
    timings["render_and_write"] = t3 - t2
    geo = data.geometry
    h = data.hierarchy
    return ReportSummary(
        title=data.title,
        n_synapses=data.n,
        features=list(data.features),
        n_clusters=len(h.leaves) if h else 0,
        cluster_sizes=[c.size for c in h.leaves] if h else [],
        levels_run=h.depth if h else 0,
        plots=[s.key for s in sections if s.figure is not None],
        missing={s.key: s.missing for s in sections if s.missing is not None},
        out_html=str(out_html),
        out_clustering_json=str(json_path) if json_path else None,
        html_bytes=html_bytes,
        density_per_um3=(data.n / geo.box_volume_um3) if geo.box_volume_um3 else None,
        seconds=t3 - t0,
        timings=timings,
        synaptograms=len(images.synaptograms) if images else 0,
        overlays=len(images.overlays) if images else 0,
    )


def _image_panels(
    table: pd.DataFrame, hierarchy: Any, volumes: ResultVolumes | None
) -> ImagePanels | None:
    """The pictures, or a note saying why they are missing (a report is never lost to them)."""
    if volumes is None:
        return None
    clusters = None
    if hierarchy is not None and len(hierarchy.labels) == len(table):
        clusters = hierarchy.labels
    try:
        return make_image_panels(table, volumes, clusters=clusters)
    except (OSError, KeyError, ValueError) as exc:
        return ImagePanels(notes=[f"pictures of the data not drawn: {exc}"])
