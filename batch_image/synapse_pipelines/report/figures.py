"""Plotly figures of the report, built from :class:`ReportData` (pure: no I/O).

One builder per section. A builder returns a figure, or raises :class:`Missing` with a
sentence saying why the plot cannot be drawn for this table (no synapses, one cluster,
one feature, ...); the page then shows that sentence in place of the plot. Arrays are
handed to plotly as float32 numpy arrays, which plotly serialises as compact typed arrays.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.figure_factory as ff
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .analysis import (
    PAIR_PLOT_FEATURES,
    PAIR_PLOT_SAMPLES,
    SPATIAL_SAMPLES,
    VOLUME_HISTOGRAM_BINS,
    ReportData,
)

#: PyMEDA's colour scales: "BuRd" (RdBu reversed: negative blue, positive red) and "Reds".
DIVERGING = "RdBu_r"
SEQUENTIAL = "Reds"
#: Ridge lines: vertical distance between two features (PyMEDA: 0.5).
RIDGE_SPACING = 0.5
#: 3-D view: no axis is drawn shorter than this fraction of the longest one.
MIN_ASPECT = 0.3
#: Cluster mean lines: line widths are sqrt of the cluster's share of this many (PyMEDA: 300).
LINE_WIDTH_TOTAL = 300


class Missing(Exception):
    """A plot that cannot be drawn for this table; the message says why, for the reader."""


@dataclass(frozen=True)
class Section:
    """One plot of the report, or the reason it is missing."""

    key: str  # stable HTML id
    title: str
    description: str  # what the plot shows, for the reader
    figure: go.Figure | None
    missing: str | None
    group: str  # "pymeda" (the original report's plots) or "beyond"
    webgl: bool = False  # needs WebGL (3-D): the page falls back to a message without it


# --------------------------------------------------------------------------- helpers


def _f32(a: np.ndarray) -> np.ndarray:
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


def _layout(fig: go.Figure, *, height: int, **kwargs: object) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=70, r=30, t=30, b=60), **kwargs)
    return fig


def _feature_height(d: int, per: int = 22, base: int = 160, minimum: int = 380) -> int:
    return max(minimum, base + per * d)


def _need_synapses(data: ReportData, k: int = 1) -> None:
    if data.n == 0:
        raise Missing("No synapses were detected, so there is nothing to plot.")
    if data.n < k:
        raise Missing(f"Needs at least {k} synapses; this table has {data.n}.")


def _need_features(data: ReportData, k: int = 2) -> None:
    if data.d < k:
        raise Missing(f"Needs at least {k} features; this table has {data.d} ({data.features[0]}).")


def _need_clusters(data: ReportData) -> None:
    _need_synapses(data)
    if data.hierarchy is None or data.hierarchy.depth == 0:
        raise Missing(
            "Clustering was not run (GMM levels = 0, or as many clusters as synapses already)."
        )


def _cluster_names(data: ReportData) -> list[str]:
    assert data.hierarchy is not None
    return [f"cluster {c.index} (n={c.size})" for c in data.hierarchy.leaves]


# --------------------------------------------------------------------------- PyMEDA plots


def representative_heatmap(data: ReportData) -> go.Figure:
    _need_synapses(data)
    rows = data.representative
    zmax = float(np.max(np.abs(rows))) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=_f32(rows.T),
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
    return _layout(
        fig,
        height=_feature_height(data.d),
        xaxis=dict(title=f"{label} ({rows.shape[0]})", showticklabels=False),
        yaxis=dict(title="features", autorange="reversed"),
    )


def ridge_line(data: ReportData) -> go.Figure:
    _need_synapses(data, 2)
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
                x=_f32(np.r_[x, x[::-1]]),
                y=_f32(np.r_[y, np.full_like(y, offset)]),
                fill="toself",
                fillcolor=colors[j],
                opacity=0.6,
                line=dict(color="black", width=1.2),
                name=data.features[j],
                hoveron="points",
            )
        )
    ticks = [(data.d - 1 - j) * RIDGE_SPACING for j in range(data.d)]
    return _layout(
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
    _need_synapses(data)
    z = np.vstack([data.location_mean, data.location_median])
    fig = go.Figure(
        go.Heatmap(
            z=_f32(z),
            x=data.features,
            y=["mean", "median"],
            colorscale=SEQUENTIAL,
            colorbar=dict(title="raw value"),
            hovertemplate="%{x}<br>%{y}=%{z:.4g}<extra></extra>",
        )
    )
    return _layout(fig, height=320, xaxis=dict(title="features"), yaxis=dict(autorange="reversed"))


def location_lines(data: ReportData) -> go.Figure:
    _need_synapses(data)
    fig = go.Figure(
        [
            go.Scatter(
                x=data.features, y=_f32(data.location_mean), name="means", mode="lines+markers"
            ),
            go.Scatter(
                x=data.features, y=_f32(data.location_median), name="medians", mode="lines+markers"
            ),
        ]
    )
    return _layout(
        fig, height=400, xaxis=dict(title="features"), yaxis=dict(title="mean or median value")
    )


def correlation_matrix(data: ReportData) -> go.Figure:
    _need_synapses(data, 2)
    _need_features(data)
    assert data.correlation is not None
    fig = go.Figure(
        go.Heatmap(
            z=_f32(data.correlation),
            x=data.features,
            y=data.features,
            zmin=-1,
            zmax=1,
            colorscale=DIVERGING,
            colorbar=dict(title="r"),
            hovertemplate="%{x}<br>%{y}<br>r=%{z:.3f}<extra></extra>",
        )
    )
    side = _feature_height(data.d, per=28, minimum=460) + 80
    return _layout(
        fig,
        height=side,
        xaxis=dict(showgrid=False, zeroline=False, constrain="domain"),
        yaxis=dict(showgrid=False, zeroline=False, scaleanchor="x", autorange="reversed"),
    )


def scree_plot(data: ReportData) -> go.Figure:
    _need_synapses(data, 2)
    _need_features(data)
    assert data.scree is not None
    if not np.any(data.scree > 0):
        raise Missing("Every feature is constant: there is no variance to decompose.")
    x = np.arange(1, data.scree.size + 1)
    fig = go.Figure(
        [
            go.Scatter(x=x, y=_f32(data.scree), mode="lines+markers", name="variance"),
            go.Scatter(
                x=x, y=_f32(np.cumsum(data.scree)), mode="lines+markers", name="cumulative variance"
            ),
        ]
    )
    return _layout(
        fig,
        height=400,
        xaxis=dict(title="principal component", dtick=1),
        yaxis=dict(title="proportion of total variance", range=[0, 1.05]),
    )


def gmm_dendrogram(data: ReportData) -> go.Figure:
    _need_clusters(data)
    assert data.hierarchy is not None
    leaves = data.hierarchy.leaves
    if len(leaves) < 2:
        raise Missing(
            "Only one cluster found: the hierarchical GMM did not split the synapses "
            "(BIC preferred one component, or too few synapses to split)."
        )
    means = np.vstack([c.mean_z for c in leaves])
    fig = ff.create_dendrogram(means, labels=_cluster_names(data))
    fig.layout.width = None  # the factory fixes a width; let the page size it
    fig.layout.autosize = True
    return _layout(
        fig,
        height=440,
        xaxis=dict(title="clusters (leaves of the hierarchical GMM)"),
        yaxis=dict(title="distance between cluster means"),
        showlegend=False,
    )


def pair_plot(data: ReportData) -> go.Figure:
    _need_clusters(data)
    _need_synapses(data, 2)
    _need_features(data)
    assert data.hierarchy is not None
    rows = data.pair_rows
    feats = data.pair_features
    k = len(feats)
    labels = data.hierarchy.labels[rows]
    names = _cluster_names(data)
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
                        y=_f32(values[sel, fi]), showlegend=False, boxpoints=False, **common
                    )
                else:
                    trace = go.Scatter(
                        x=_f32(values[sel, fj]),
                        y=_f32(values[sel, fi]),
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
    return _layout(fig, height=240 * k + 100)


def _means_matrix(data: ReportData, level: int) -> tuple[np.ndarray, np.ndarray]:
    assert data.hierarchy is not None
    nodes = data.hierarchy.levels[level]
    sizes = np.array([c.size for c in nodes], dtype=np.float64)
    edges = np.r_[0.0, np.cumsum(sizes) / max(sizes.sum(), 1.0)]
    return np.column_stack([c.mean_z for c in nodes]), edges


def cluster_stacked_means(data: ReportData) -> go.Figure:
    _need_clusters(data)
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
                z=_f32(means),
                x=_f32(edges),
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
    return _layout(
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
    _need_clusters(data)
    assert data.hierarchy is not None
    means, edges = _means_matrix(data, data.hierarchy.depth)
    zmax = float(np.max(np.abs(means))) or 1.0
    centres = (edges[1:] + edges[:-1]) / 2
    fig = go.Figure(
        go.Heatmap(
            z=_f32(means),
            x=_f32(edges),
            y=data.features,
            zmin=-zmax,
            zmax=zmax,
            colorscale=DIVERGING,
            colorbar=dict(title="mean z"),
            hovertemplate="%{y}<br>mean z=%{z:.2f}<extra></extra>",
        )
    )
    return _layout(
        fig,
        height=_feature_height(data.d),
        xaxis=dict(
            title="clusters, width proportional to size",
            tickmode="array",
            tickvals=_f32(centres),
            ticktext=[str(i) for i in range(len(centres))],
            range=[0, 1],
        ),
        yaxis=dict(autorange="reversed"),
    )


def cluster_mean_lines(data: ReportData) -> go.Figure:
    _need_clusters(data)
    assert data.hierarchy is not None
    leaves = data.hierarchy.leaves
    colors = cluster_colors(len(leaves))
    names = _cluster_names(data)
    fig = go.Figure()
    for c, node in enumerate(leaves):
        width = float(np.clip(np.sqrt(node.size / data.n * LINE_WIDTH_TOTAL), 1.0, 18.0))
        fig.add_trace(
            go.Scatter(
                x=_f32(node.mean_z),
                y=data.features,
                mode="lines",
                name=names[c],
                line=dict(width=width, color=colors[c]),
            )
        )
    return _layout(
        fig,
        height=_feature_height(data.d),
        xaxis=dict(title="mean z-score"),
        yaxis=dict(autorange="reversed"),
    )


# --------------------------------------------------------------------------- beyond PyMEDA


def _spatial_coordinates(data: ReportData) -> tuple[np.ndarray, str]:
    _need_clusters(data)
    geo = data.geometry
    if geo.centroids_voxels is None:
        raise Missing("The table has no centroid columns (centroid_z, centroid_y, centroid_x).")
    pts = geo.centroids_voxels[data.spatial_rows]
    if geo.voxel_size_um is not None:
        return pts * np.asarray(geo.voxel_size_um), "µm"
    return pts, "voxels"


def _spatial_title(data: ReportData) -> str:
    shown = data.spatial_rows.size
    return "" if shown == data.n else f"a seeded sample of {shown} of {data.n} synapses; "


def spatial_projections(data: ReportData) -> go.Figure:
    pts, unit = _spatial_coordinates(data)
    assert data.hierarchy is not None
    labels = data.hierarchy.labels[data.spatial_rows]
    names = _cluster_names(data)
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
                    x=_f32(pts[sel, hi]),
                    y=_f32(pts[sel, vi]),
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
    return _layout(fig, height=460)


def spatial_3d(data: ReportData) -> go.Figure:
    pts, unit = _spatial_coordinates(data)
    assert data.hierarchy is not None
    labels = data.hierarchy.labels[data.spatial_rows]
    names = _cluster_names(data)
    colors = cluster_colors(len(names))
    fig = go.Figure()
    for c, name in enumerate(names):
        sel = labels == c
        if not sel.any():
            continue
        fig.add_trace(
            go.Scatter3d(
                x=_f32(pts[sel, 2]),
                y=_f32(pts[sel, 1]),
                z=_f32(pts[sel, 0]),
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
    return _layout(
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
    _need_synapses(data)
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
            x=_f32((edges[1:] + edges[:-1]) / 2),
            y=counts,
            width=_f32(np.diff(edges)),
            marker=dict(color="#4c78a8"),
            hovertemplate="%{x:.0f} voxels: %{y} synapses<extra></extra>",
        )
    )
    return _layout(
        fig,
        height=360,
        xaxis=dict(title="volume (voxels)"),
        yaxis=dict(title="synapses"),
        bargap=0.02,
    )


# --------------------------------------------------------------------------- the list

Builder = Callable[[ReportData], go.Figure]

#: (key, title, group, webgl, builder, description). The first eleven are PyMEDA's report.
SECTIONS: tuple[tuple[str, str, str, bool, Builder, str], ...] = (
    (
        "representative-heatmap",
        "Representative Heatmap",
        "pymeda",
        False,
        representative_heatmap,
        "z-scored features (rows) of every synapse (columns); above "
        "1000 synapses, of 1000 k-means++ seeds chosen from them, as PyMEDA did.",
    ),
    (
        "ridge-line",
        "Ridge Line",
        "pymeda",
        False,
        ridge_line,
        "Gaussian kernel density of each z-scored feature (missing values left out), on "
        "[floor(min), ceil(max)] clipped to ±5 standard deviations.",
    ),
    (
        "location-heatmap",
        "Location Heatmap",
        "pymeda",
        False,
        location_heatmap,
        "Mean and median of each feature, in raw (not z-scored) units.",
    ),
    (
        "location-lines",
        "Location Lines",
        "pymeda",
        False,
        location_lines,
        "The same means and medians as lines across the features.",
    ),
    (
        "correlation-matrix",
        "Correlation Matrix",
        "pymeda",
        False,
        correlation_matrix,
        "Pearson correlation between features (0 where undefined, e.g. a constant feature).",
    ),
    (
        "scree-plot",
        "Scree Plot",
        "pymeda",
        False,
        scree_plot,
        "Share of the total variance of the z-scored features carried by each principal "
        "component, and the cumulative share.",
    ),
    (
        "gmm-dendrogram",
        "Hierarchical GMM Dendrogram",
        "pymeda",
        False,
        gmm_dendrogram,
        "Agglomerative (complete-linkage, Euclidean) dendrogram of the mean z-scored features "
        "of the hierarchical GMM's final clusters.",
    ),
    (
        "pair-plot",
        "Pair Plot",
        "pymeda",
        False,
        pair_plot,
        f"The first {PAIR_PLOT_FEATURES} z-scored features against each other, coloured by "
        "cluster, with a box plot per cluster on the diagonal; at most "
        f"{PAIR_PLOT_SAMPLES} synapses (a seeded sample) are drawn.",
    ),
    (
        "cluster-stacked-means",
        "Cluster Stacked Means",
        "pymeda",
        False,
        cluster_stacked_means,
        "Mean z-scored features of the clusters at every level of the hierarchical GMM "
        "(a block of rows per level), each cluster as wide as its share of the synapses.",
    ),
    (
        "cluster-mean-heatmap",
        "Cluster Mean Heatmap",
        "pymeda",
        False,
        cluster_mean_heatmap,
        "Mean z-scored features of the final clusters, each as wide as its share of synapses.",
    ),
    (
        "cluster-mean-lines",
        "Cluster Mean Lines",
        "pymeda",
        False,
        cluster_mean_lines,
        "Mean z-scored features of each final cluster as a line; thicker lines are bigger "
        "clusters.",
    ),
    (
        "spatial-projections",
        "Synapse Positions (2-D projections)",
        "beyond",
        False,
        spatial_projections,
        "Synapse centroids projected on the y-x, z-x and z-y planes, coloured by final cluster; "
        f"at most {SPATIAL_SAMPLES} synapses (a seeded sample) are drawn.",
    ),
    (
        "spatial-3d",
        "Synapse Positions (3-D)",
        "beyond",
        True,
        spatial_3d,
        "Synapse centroids in 3-D, coloured by final cluster; drag to rotate. Proportions are "
        "true unless an axis title says it is stretched (thin volumes).",
    ),
    (
        "volume-distribution",
        "Synapse Volumes",
        "beyond",
        False,
        volume_histogram,
        "Distribution of synapse volumes in voxels (summary statistics in the table above).",
    ),
)


def make_sections(data: ReportData) -> list[Section]:
    """Every section of the report: its figure, or why it is missing."""
    out = []
    for key, title, group, webgl, builder, description in SECTIONS:
        try:
            fig, missing = builder(data), None
        except Missing as why:
            fig, missing = None, str(why)
        out.append(Section(key, title, description, fig, missing, group, webgl))
    return out
