"""The report's spatial figures, beyond PyMEDA: where the synapses are and how big.

Pure: :class:`~synapse_pipelines.report.analysis.ReportData` in, plotly figures out. Owns
the 2-D projections and the 3-D view of the centroids (coloured by final cluster; in µm
when the voxel size is known) and the histogram of synapse volumes. The numbers behind
them are :mod:`synapse_pipelines.report.spatial`'s.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .analysis import ReportData
from .figure_common import (
    Missing,
    cluster_colors,
    cluster_names,
    f32,
    layout,
    need_clusters,
    need_synapses,
)

#: 3-D view: no axis is drawn shorter than this fraction of the longest one.
MIN_ASPECT = 0.3
#: Bins of the synapse volume histogram (at most).
VOLUME_HISTOGRAM_BINS = 40


def _spatial_coordinates(data: ReportData) -> tuple[np.ndarray, str]:
    need_clusters(data)
    geo = data.geometry
    if geo.centroids_voxels is None:
        raise Missing("The table has no centroid columns (centroid_z, centroid_y, centroid_x).")
    pts = geo.centroids_voxels[data.spatial_rows]
    if geo.voxel_size_um is not None:
        return pts * np.asarray(geo.voxel_size_um), "µm"
    return pts, "voxels"


def spatial_projections(data: ReportData) -> go.Figure:
    pts, unit = _spatial_coordinates(data)
    assert data.hierarchy is not None
    labels = data.hierarchy.labels[data.spatial_rows]
    names = cluster_names(data)
    colors = cluster_colors(len(names))
    panels = [(2, 1, "x", "y"), (2, 0, "x", "z"), (1, 0, "y", "z")]  # (h axis, v axis)
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.07,
        subplot_titles=[
            f"{v} against {h} (looking along {a})"
            for (_, _, h, v), a in zip(panels, "zyx", strict=True)
        ],
    )
    for c, name in enumerate(names):
        sel = labels == c
        if not sel.any():
            continue
        for p, (hi, vi, _, _) in enumerate(panels):
            fig.add_trace(
                go.Scatter(
                    x=f32(pts[sel, hi]),
                    y=f32(pts[sel, vi]),
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=p == 0,
                    marker=dict(color=colors[c], size=4, opacity=0.75),
                ),
                row=1,
                col=p + 1,
            )
    for p, (_, _, h, v) in enumerate(panels):
        fig.update_xaxes(title_text=f"{h} ({unit})", row=1, col=p + 1)
        fig.update_yaxes(title_text=f"{v} ({unit})", autorange="reversed", row=1, col=p + 1)
    return layout(fig, height=460)


def spatial_3d(data: ReportData) -> go.Figure:
    pts, unit = _spatial_coordinates(data)
    assert data.hierarchy is not None
    labels = data.hierarchy.labels[data.spatial_rows]
    names = cluster_names(data)
    colors = cluster_colors(len(names))
    fig = go.Figure()
    for c, name in enumerate(names):
        sel = labels == c
        if not sel.any():
            continue
        fig.add_trace(
            go.Scatter3d(
                x=f32(pts[sel, 2]),
                y=f32(pts[sel, 1]),
                z=f32(pts[sel, 0]),
                mode="markers",
                name=name,
                marker=dict(color=colors[c], size=2.5, opacity=0.8),
            )
        )
    # true proportions, except that a thin axis (e.g. 27 slices of a 2048 x 2048 field)
    # is stretched to MIN_ASPECT of the longest one so the cloud stays readable
    finite = pts[np.isfinite(pts).all(axis=1)]
    extent = np.ptp(finite, axis=0)[::-1] if finite.size else np.ones(3)  # x, y, z
    extent = np.where(extent > 0, extent, max(float(extent.max()), 1.0))
    true = extent / extent.max()
    shown = np.maximum(true, MIN_ASPECT)
    titles = []
    for axis, t, s in zip("xyz", true, shown, strict=True):
        stretch = f", stretched {s / t:.0f}x" if s / t >= 1.5 else ""
        titles.append(f"{axis} ({unit}{stretch})")
    return layout(
        fig,
        height=600,
        scene=dict(
            aspectmode="manual",
            aspectratio=dict(x=float(shown[0]), y=float(shown[1]), z=float(shown[2])),
            xaxis=dict(title=titles[0]),
            yaxis=dict(title=titles[1]),
            zaxis=dict(title=titles[2], autorange="reversed"),
            camera=dict(eye=dict(x=1.25, y=1.25, z=0.9)),
        ),
    )


def volume_histogram(data: ReportData) -> go.Figure:
    need_synapses(data)
    vols = data.geometry.volumes_voxels
    if vols is None:
        raise Missing("The table has no volume_voxels column.")
    vols = vols[np.isfinite(vols)]
    if vols.size == 0:
        raise Missing("No synapse has a volume value.")
    lo, hi = float(vols.min()), float(vols.max())
    bins = int(min(VOLUME_HISTOGRAM_BINS, max(1, np.unique(vols).size)))
    counts, edges = np.histogram(vols, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    fig = go.Figure(
        go.Bar(
            x=f32((edges[1:] + edges[:-1]) / 2),
            y=counts,
            width=f32(np.diff(edges)),
            marker=dict(color="#4c78a8"),
            hovertemplate="%{x:.0f} voxels: %{y} synapses<extra></extra>",
        )
    )
    return layout(
        fig,
        height=360,
        xaxis=dict(title="volume (voxels)"),
        yaxis=dict(title="synapses"),
        bargap=0.02,
    )
