"""What every figure of the report shares: the missing-plot signal, colours, layout, checks.

Pure (no I/O). Owns :class:`Missing` (a builder raises it with a sentence saying why its
plot cannot be drawn for this table: no synapses, one cluster, one feature, ...; the page
then shows that sentence in place of the plot), PyMEDA's colour scales, the cluster
palette, the common layout and the checks a builder starts with. Arrays are handed to
plotly as float32 numpy arrays (:func:`f32`), which plotly serialises as compact typed
arrays. The builders are in :mod:`~synapse_pipelines.report.feature_figures`,
:mod:`~synapse_pipelines.report.cluster_figures` and
:mod:`~synapse_pipelines.report.spatial_figures`; their list is
:mod:`~synapse_pipelines.report.sections`'.
"""

from __future__ import annotations

import colorsys

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from .analysis import ReportData

#: PyMEDA's colour scales: "BuRd" (RdBu reversed: negative blue, positive red) and "Reds".
DIVERGING = "RdBu_r"
SEQUENTIAL = "Reds"


class Missing(Exception):
    """A plot that cannot be drawn for this table; the message says why, for the reader."""


def f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def cluster_colors(k: int) -> list[str]:
    """Distinct colours: plotly's qualitative palette, then evenly spaced hues."""
    if k <= len(qualitative.Plotly):
        return list(qualitative.Plotly[:k])
    out = []
    for i in range(k):
        r, g, b = colorsys.hls_to_rgb(i / k, 0.45, 0.85)
        out.append(f"rgb({round(r * 255)},{round(g * 255)},{round(b * 255)})")
    return out


def layout(fig: go.Figure, *, height: int, **kwargs: object) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=70, r=30, t=30, b=60), **kwargs)
    return fig


def feature_height(d: int, per: int = 22, base: int = 160, minimum: int = 380) -> int:
    return max(minimum, base + per * d)


def need_synapses(data: ReportData, k: int = 1) -> None:
    if data.n == 0:
        raise Missing("No synapses were detected, so there is nothing to plot.")
    if data.n < k:
        raise Missing(f"Needs at least {k} synapses; this table has {data.n}.")


def need_features(data: ReportData, k: int = 2) -> None:
    if data.d < k:
        raise Missing(f"Needs at least {k} features; this table has {data.d} ({data.features[0]}).")


def need_clusters(data: ReportData) -> None:
    need_synapses(data)
    if data.hierarchy is None or data.hierarchy.depth == 0:
        raise Missing(
            "Clustering was not run (GMM levels = 0, or as many clusters as synapses already)."
        )


def cluster_names(data: ReportData) -> list[str]:
    assert data.hierarchy is not None
    return [f"cluster {c.index} (n={c.size})" for c in data.hierarchy.leaves]
