"""Turn :class:`ReportData` and its sections into the HTML page and the clustering JSON.

Pure: returns strings and dicts; :func:`synapse_pipelines.report.build_report` writes them.

The page is one self-contained file: plotly.js is inlined once (no CDN, works offline),
every figure is a JSON island (``<script type="application/json">``) drawn by one small
script, and the shared plotly template is stored once instead of once per figure. Element
ids are fixed strings derived from section keys, and nothing time-dependent is written,
so the same table and seed give byte-identical files.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import plotly
import plotly.io as pio
from jinja2 import Environment, PackageLoader, StrictUndefined
from plotly.offline import get_plotlyjs

from synapse_pipelines import __version__

from .analysis import ReportData
from .image_panels import HALF_WINDOW, ImagePanels
from .sections import Section

CLUSTERING_SCHEMA = "synapse-pipelines/clustering/1"
#: Significant digits kept in the clustering JSON.
JSON_DIGITS = 6
TEMPLATE_NAME = "report.html.j2"
X = "\u00d7"  # multiplication sign in the summary table
PLOTLY_TEMPLATE = "plotly_white"


def _json_island(obj: Any) -> str:
    """JSON safe inside a <script> element: '<' only occurs in strings, so escape it there."""
    text = pio.json.to_json_plotly(obj)
    return text.replace("<", "\\u003c")


def figure_json(section: Section) -> str:
    assert section.figure is not None
    fig = section.figure.to_plotly_json()
    fig["layout"].pop("template", None)  # stored once for the page (see module docstring)
    return _json_island(fig)


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("synapse_pipelines", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _num(x: float | int | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    return f"{x:.{digits}g}"


def summary_rows(data: ReportData) -> list[tuple[str, str]]:
    """The summary table: (label, value) pairs, plain text."""
    geo = data.geometry
    rows: list[tuple[str, str]] = [("Synapses", _num(data.n))]
    rows.append(("Features analysed", f"{data.d}: " + ", ".join(data.features)))
    if data.hierarchy is not None:
        h = data.hierarchy
        sizes = ", ".join(_num(c.size) for c in h.leaves)
        rows.append(
            (
                "Clusters (hierarchical GMM)",
                f"{len(h.leaves)} after {h.depth} of {data.gmm_levels} level(s); sizes {sizes}",
            )
        )
    if geo.voxel_size_um is not None:
        vz, vy, vx = geo.voxel_size_um
        text = f"{vz:.4g} {X} {vy:.4g} {X} {vx:.4g} µm"
        if geo.voxel_size_given is not None and geo.voxel_unit_given is not None:
            gz, gy, gx = geo.voxel_size_given
            unit = geo.voxel_unit_given
            text += (
                f", converted from {gz:g} {X} {gy:g} {X} {gx:g} {unit} ({geo.voxel_size_from}); "
                f"the table's *_physical columns are in {unit}, volume_physical in {unit}³"
            )
        rows.append((f"Voxel size (z {X} y {X} x)", text))
    else:
        rows.append(("Voxel size", "unknown"))
    if geo.box_shape is not None:
        bz, by, bx = geo.box_shape
        text = f"{bz:,} {X} {by:,} {X} {bx:,} voxels ({geo.box_source})"
        if geo.box_volume_um3 is not None:
            text += f" = {geo.box_volume_um3:,.4g} µm³"
        rows.append((f"Analysed box (z {X} y {X} x)", text))
    else:
        rows.append(("Analysed box", "unknown (no request ranges or table metadata)"))
    if geo.box_volume_um3:
        density = data.n / geo.box_volume_um3
        rows.append(
            ("Density", f"{density:.4g} synapses per µm³ ({density * 1e3:.4g} per 1000 µm³)")
        )
    else:
        rows.append(("Density", "n/a: needs the voxel size and the analysed box"))
    vols = geo.volumes_voxels
    if vols is not None and np.isfinite(vols).any():
        v = vols[np.isfinite(vols)]
        q = np.percentile(v, [0, 25, 50, 75, 100])
        text = (
            f"min {q[0]:.4g}, quartiles {q[1]:.4g} / {q[2]:.4g} / {q[3]:.4g}, max {q[4]:.4g}, "
            f"mean {v.mean():.4g} voxels"
        )
        if geo.voxel_volume_um3 is not None:
            text += f"; median {q[2] * geo.voxel_volume_um3:.4g} µm³"
        rows.append(("Synapse volume", text))
    if geo.clipped_windows is not None:
        rows.append(
            (
                "Feature window clipped",
                f"{geo.clipped_windows:,} synapse(s) near the volume border: their windowed "
                "sums cover fewer voxels (the original dropped them)",
            )
        )
    return rows


def cluster_rows(data: ReportData) -> list[dict[str, str]]:
    if data.hierarchy is None:
        return []
    return [
        {
            "label": str(c.index),
            "path": c.path,
            "size": _num(c.size),
            "share": f"{100 * c.size / max(data.n, 1):.1f}%",
        }
        for c in data.hierarchy.leaves
    ]


def _request_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in info.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        rows.append((key, text))
    return rows


def render_html(
    data: ReportData,
    sections: Sequence[Section],
    *,
    explanation: str | None = None,
    warnings: Sequence[str] = (),
    images: ImagePanels | None = None,
) -> str:
    """The whole page as one string (``explanation``: why nothing was found, if so;
    ``warnings``: the detector's, shown under the header; ``images``: the synaptograms
    and overlay, when the run's volumes were at hand)."""
    template = _environment().get_template(TEMPLATE_NAME)
    plotly_template = pio.templates[PLOTLY_TEMPLATE].to_plotly_json()
    return template.render(
        title=data.title,
        n=data.n,
        explanation=explanation,
        warnings=list(warnings),
        results_key=data.results_key,
        request_rows=_request_rows(data.request_info),
        parameters=[
            ("seed", str(data.seed)),
            ("GMM levels", str(data.gmm_levels)),
            ("synapse-pipelines", __version__),
            ("plotly", plotly.__version__),
        ],
        summary=summary_rows(data),
        clusters=cluster_rows(data),
        notes=list(data.notes) + list(data.geometry.notes),
        sections=[
            {
                "key": s.key,
                "title": s.title,
                "description": s.description,
                "missing": s.missing,
                "group": s.group,
                "webgl": s.webgl,
                "figure_json": figure_json(s) if s.figure is not None else None,
            }
            for s in sections
        ],
        plotly_template_json=_json_island(plotly_template),
        plotlyjs=get_plotlyjs(),
        images=images,
        half_window=HALF_WINDOW,
    )


# --------------------------------------------------------------------------- clustering JSON


def _round(x: float) -> float | None:
    if not math.isfinite(x):
        return None
    return float(f"{x:.{JSON_DIGITS}g}")


def _vec(a: np.ndarray) -> list[float | None]:
    return [_round(float(v)) for v in np.asarray(a, dtype=np.float64)]


def _ids(ids: np.ndarray) -> list[Any]:
    if np.issubdtype(ids.dtype, np.integer):
        return [int(i) for i in ids]
    return [i.item() if hasattr(i, "item") else i for i in ids]


def clustering_payload(data: ReportData) -> dict[str, Any]:
    """Labels per synapse and means per cluster, JSON-ready (numbers rounded)."""
    raw = data.raw
    out: dict[str, Any] = {
        "schema": CLUSTERING_SCHEMA,
        "title": data.title,
        "results_key": data.results_key,
        "method": "hierarchical GMM (PyMEDA): per level, split each cluster in two when a "
        "2-component full-covariance Gaussian mixture has a lower BIC than 1 component",
        "seed": data.seed,
        "gmm_levels": data.gmm_levels,
        "n_synapses": data.n,
        "features": list(data.features),
        "zscore": {"mean": _vec(data.z.mean), "std": _vec(data.z.std)},
        "ids": _ids(data.ids),
    }
    h = data.hierarchy
    if h is None:
        out.update(levels_run=0, labels=[], labels_by_level={}, clusters=[], hierarchy=[])
        return out

    def cluster_mean(members: np.ndarray) -> list[float | None]:
        if members.size == 0:
            return [None] * data.d
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN feature in a cluster
            return _vec(np.nanmean(raw[members], axis=0))

    out["levels_run"] = h.depth
    out["labels"] = [int(v) for v in h.labels]
    out["labels_by_level"] = {
        str(level): [int(v) for v in h.labels_by_level[level]] for level in range(1, h.depth + 1)
    }
    out["clusters"] = [
        {
            "label": c.index,
            "path": c.path,
            "size": c.size,
            "mean_zscored": _vec(c.mean_z),
            "mean": cluster_mean(c.members),
        }
        for c in h.leaves
    ]
    out["hierarchy"] = [
        {
            "level": level,
            "clusters": [
                {
                    "label": c.index,
                    "parent": c.parent,
                    "path": c.path,
                    "size": c.size,
                    "split": c.split,
                    "mean_zscored": _vec(c.mean_z),
                }
                for c in nodes
            ],
        }
        for level, nodes in enumerate(h.levels)
    ]
    return out


def clustering_json(data: ReportData) -> str:
    return json.dumps(clustering_payload(data), separators=(",", ":"), allow_nan=False) + "\n"
