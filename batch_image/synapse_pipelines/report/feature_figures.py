"""The report's per-feature figures: PyMEDA's heatmaps and lines of the z-scored features.

Pure: :class:`~synapse_pipelines.report.analysis.ReportData` in, plotly figures out. Owns
the representative heatmap, the ridge lines, the location heatmap and lines, the
correlation matrix and the scree plot (the first six of PyMEDA's eleven plots).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .analysis import ReportData
from .figure_common import (
    DIVERGING,
    SEQUENTIAL,
    Missing,
    cluster_colors,
    f32,
    feature_height,
    layout,
    need_features,
    need_synapses,
)

#: Ridge lines: vertical distance between two features (PyMEDA: 0.5).
RIDGE_SPACING = 0.5


def representative_heatmap(data: ReportData) -> go.Figure:
    need_synapses(data)
    rows = data.representative
    zmax = float(np.max(np.abs(rows))) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=f32(rows.T),
            x=np.arange(rows.shape[0]),
            y=data.features,
            zmin=-zmax,
            zmax=zmax,
            colorscale=DIVERGING,
            colorbar=dict(title="z-score"),
            hovertemplate="row %{x}<br>%{y}<br>z=%{z:.2f}<extra></extra>",
        )
    )
    label = "k-means++ seeds" if data.representative_is_kmeanspp else "synapses"
    return layout(
        fig,
        height=feature_height(data.d),
        xaxis=dict(title=f"{label} ({rows.shape[0]})", showticklabels=False),
        yaxis=dict(title="features", autorange="reversed"),
    )


def ridge_line(data: ReportData) -> go.Figure:
    need_synapses(data, 2)
    ridges = data.ridges
    assert ridges is not None
    if not ridges.densities:
        raise Missing(
            "No feature has a spread to estimate a density from: "
            + "; ".join(f"{data.features[j]}: {why}" for j, why in ridges.skipped.items())
        )
    peak = max(float(v.max()) for v in ridges.densities.values())
    scale = min(1.0, 3 * RIDGE_SPACING / peak) if peak > 0 else 1.0
    # rainbow hues, first feature on top as in PyMEDA
    colors = cluster_colors(max(data.d, 11))[: data.d]
    fig = go.Figure()
    x = ridges.x
    for j in reversed(range(data.d)):
        offset = (data.d - 1 - j) * RIDGE_SPACING
        if j not in ridges.densities:
            fig.add_annotation(
                x=float(x[0]),
                y=offset,
                text=f"{ridges.skipped[j]}",
                showarrow=False,
                xanchor="left",
                yanchor="bottom",
                font=dict(size=10, color="#666"),
            )
            continue
        y = ridges.densities[j] * scale + offset
        fig.add_trace(
            go.Scatter(
                x=f32(np.r_[x, x[::-1]]),
                y=f32(np.r_[y, np.full_like(y, offset)]),
                fill="toself",
                fillcolor=colors[j],
                opacity=0.6,
                line=dict(color="black", width=1.2),
                name=data.features[j],
                hoveron="points",
            )
        )
    ticks = [(data.d - 1 - j) * RIDGE_SPACING for j in range(data.d)]
    return layout(
        fig,
        height=max(420, 42 * data.d + 120),
        showlegend=False,
        xaxis=dict(title="z-score", showgrid=False),
        yaxis=dict(
            tickmode="array",
            tickvals=ticks,
            ticktext=data.features,
            showgrid=False,
            zeroline=False,
            rangemode="nonnegative",
        ),
    )


def location_heatmap(data: ReportData) -> go.Figure:
    need_synapses(data)
    z = np.vstack([data.location_mean, data.location_median])
    fig = go.Figure(
        go.Heatmap(
            z=f32(z),
            x=data.features,
            y=["mean", "median"],
            colorscale=SEQUENTIAL,
            colorbar=dict(title="raw value"),
            hovertemplate="%{x}<br>%{y}=%{z:.4g}<extra></extra>",
        )
    )
    return layout(fig, height=320, xaxis=dict(title="features"), yaxis=dict(autorange="reversed"))


def location_lines(data: ReportData) -> go.Figure:
    need_synapses(data)
    fig = go.Figure(
        [
            go.Scatter(
                x=data.features, y=f32(data.location_mean), name="means", mode="lines+markers"
            ),
            go.Scatter(
                x=data.features, y=f32(data.location_median), name="medians", mode="lines+markers"
            ),
        ]
    )
    return layout(
        fig, height=400, xaxis=dict(title="features"), yaxis=dict(title="mean or median value")
    )


def correlation_matrix(data: ReportData) -> go.Figure:
    need_synapses(data, 2)
    need_features(data)
    assert data.correlation is not None
    fig = go.Figure(
        go.Heatmap(
            z=f32(data.correlation),
            x=data.features,
            y=data.features,
            zmin=-1,
            zmax=1,
            colorscale=DIVERGING,
            colorbar=dict(title="r"),
            hovertemplate="%{x}<br>%{y}<br>r=%{z:.3f}<extra></extra>",
        )
    )
    side = feature_height(data.d, per=28, minimum=460) + 80
    return layout(
        fig,
        height=side,
        xaxis=dict(showgrid=False, zeroline=False, constrain="domain"),
        yaxis=dict(showgrid=False, zeroline=False, scaleanchor="x", autorange="reversed"),
    )


def scree_plot(data: ReportData) -> go.Figure:
    need_synapses(data, 2)
    need_features(data)
    assert data.scree is not None
    if not np.any(data.scree > 0):
        raise Missing("Every feature is constant: there is no variance to decompose.")
    x = np.arange(1, data.scree.size + 1)
    fig = go.Figure(
        [
            go.Scatter(x=x, y=f32(data.scree), mode="lines+markers", name="variance"),
            go.Scatter(
                x=x, y=f32(np.cumsum(data.scree)), mode="lines+markers", name="cumulative variance"
            ),
        ]
    )
    return layout(
        fig,
        height=400,
        xaxis=dict(title="principal component", dtick=1),
        yaxis=dict(title="proportion of total variance", range=[0, 1.05]),
    )
