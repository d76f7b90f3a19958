"""The report's cluster figures: PyMEDA's plots of the hierarchical GMM's clusters.

Pure: :class:`~synapse_pipelines.report.analysis.ReportData` in, plotly figures out. Owns
the dendrogram of the final clusters, the pair plot coloured by cluster, the stacked
cluster means of every level, the cluster mean heatmap and the cluster mean lines (the
last five of PyMEDA's eleven plots).
"""

from __future__ import annotations

import numpy as np
import plotly.figure_factory as ff
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .analysis import ReportData
from .figure_common import (
    DIVERGING,
    Missing,
    cluster_colors,
    cluster_names,
    f32,
    feature_height,
    layout,
    need_clusters,
    need_features,
    need_synapses,
)

#: Cluster mean lines: line widths are sqrt of the cluster's share of this many (PyMEDA: 300).
LINE_WIDTH_TOTAL = 300


def gmm_dendrogram(data: ReportData) -> go.Figure:
    need_clusters(data)
    assert data.hierarchy is not None
    leaves = data.hierarchy.leaves
    if len(leaves) < 2:
        raise Missing(
            "Only one cluster found: the hierarchical GMM did not split the synapses "
            "(BIC preferred one component, or too few synapses to split)."
        )
    means = np.vstack([c.mean_z for c in leaves])
    fig = ff.create_dendrogram(means, labels=cluster_names(data))
    fig.layout.width = None  # the factory fixes a width; let the page size it
    fig.layout.autosize = True
    return layout(
        fig,
        height=440,
        xaxis=dict(title="clusters (leaves of the hierarchical GMM)"),
        yaxis=dict(title="distance between cluster means"),
        showlegend=False,
    )


def pair_plot(data: ReportData) -> go.Figure:
    need_clusters(data)
    need_synapses(data, 2)
    need_features(data)
    assert data.hierarchy is not None
    rows = data.pair_rows
    feats = data.pair_features
    k = len(feats)
    labels = data.hierarchy.labels[rows]
    names = cluster_names(data)
    colors = cluster_colors(len(names))
    fig = make_subplots(rows=k, cols=k, horizontal_spacing=0.04, vertical_spacing=0.04)
    values = data.z.values[rows]
    for c, name in enumerate(names):
        sel = labels == c
        if not sel.any():
            continue
        for i, fi in enumerate(feats):
            for j, fj in enumerate(feats):
                common = dict(legendgroup=name, name=name, marker=dict(color=colors[c]))
                if i == j:
                    trace = go.Box(
                        y=f32(values[sel, fi]), showlegend=False, boxpoints=False, **common
                    )
                else:
                    trace = go.Scatter(
                        x=f32(values[sel, fj]),
                        y=f32(values[sel, fi]),
                        mode="markers",
                        marker=dict(color=colors[c], size=4, opacity=0.7),
                        showlegend=(i, j) == (0, 1),
                        legendgroup=name,
                        name=name,
                    )
                fig.add_trace(trace, row=i + 1, col=j + 1)
    for i, fi in enumerate(feats):
        fig.update_yaxes(title_text=data.features[fi], row=i + 1, col=1)
        fig.update_xaxes(title_text=data.features[fi], row=k, col=i + 1)
    for j in range(k):  # box columns carry cluster names as categories: hide them
        fig.update_xaxes(showticklabels=False, row=j + 1, col=j + 1)
    return layout(fig, height=240 * k + 100)


def _means_matrix(data: ReportData, level: int) -> tuple[np.ndarray, np.ndarray]:
    assert data.hierarchy is not None
    nodes = data.hierarchy.levels[level]
    sizes = np.array([c.size for c in nodes], dtype=np.float64)
    edges = np.r_[0.0, np.cumsum(sizes) / max(sizes.sum(), 1.0)]
    return np.column_stack([c.mean_z for c in nodes]), edges


def cluster_stacked_means(data: ReportData) -> go.Figure:
    need_clusters(data)
    assert data.hierarchy is not None
    d = data.d
    depth = data.hierarchy.depth
    mats = [_means_matrix(data, level) for level in range(1, depth + 1)]
    zmax = max(float(np.max(np.abs(m))) for m, _ in mats) or 1.0
    fig = go.Figure()
    ticktext: list[str] = []
    for level, (means, edges) in enumerate(mats, start=1):
        rows = np.arange(d) + (level - 1) * d
        fig.add_trace(
            go.Heatmap(
                z=f32(means),
                x=f32(edges),
                y=rows,
                coloraxis="coloraxis",
                name=f"level {level}",
                hovertemplate=f"level {level}<br>%{{z:.2f}}<extra></extra>",
            )
        )
        ticktext += [f"L{level} {f}" for f in data.features]
    shapes = [
        dict(
            type="line",
            x0=0,
            x1=1,
            y0=level * d - 0.5,
            y1=level * d - 0.5,
            line=dict(color="black", width=2),
        )
        for level in range(1, depth)
    ]
    return layout(
        fig,
        height=max(420, 18 * d * depth + 160),
        coloraxis=dict(colorscale=DIVERGING, cmin=-zmax, cmax=zmax, colorbar=dict(title="mean z")),
        xaxis=dict(
            title="clusters, width proportional to size", showticklabels=False, range=[0, 1]
        ),
        yaxis=dict(
            tickmode="array",
            tickvals=list(range(d * depth)),
            ticktext=ticktext,
            autorange="reversed",
        ),
        shapes=shapes,
    )


def cluster_mean_heatmap(data: ReportData) -> go.Figure:
    need_clusters(data)
    assert data.hierarchy is not None
    means, edges = _means_matrix(data, data.hierarchy.depth)
    zmax = float(np.max(np.abs(means))) or 1.0
    centres = (edges[1:] + edges[:-1]) / 2
    fig = go.Figure(
        go.Heatmap(
            z=f32(means),
            x=f32(edges),
            y=data.features,
            zmin=-zmax,
            zmax=zmax,
            colorscale=DIVERGING,
            colorbar=dict(title="mean z"),
            hovertemplate="%{y}<br>mean z=%{z:.2f}<extra></extra>",
        )
    )
    return layout(
        fig,
        height=feature_height(data.d),
        xaxis=dict(
            title="clusters, width proportional to size",
            tickmode="array",
            tickvals=f32(centres),
            ticktext=[str(i) for i in range(len(centres))],
            range=[0, 1],
        ),
        yaxis=dict(autorange="reversed"),
    )


def cluster_mean_lines(data: ReportData) -> go.Figure:
    need_clusters(data)
    assert data.hierarchy is not None
    leaves = data.hierarchy.leaves
    colors = cluster_colors(len(leaves))
    names = cluster_names(data)
    fig = go.Figure()
    for c, node in enumerate(leaves):
        width = float(np.clip(np.sqrt(node.size / data.n * LINE_WIDTH_TOTAL), 1.0, 18.0))
        fig.add_trace(
            go.Scatter(
                x=f32(node.mean_z),
                y=data.features,
                mode="lines",
                name=names[c],
                line=dict(width=width, color=colors[c]),
            )
        )
    return layout(
        fig,
        height=feature_height(data.d),
        xaxis=dict(title="mean z-score"),
        yaxis=dict(autorange="reversed"),
    )
