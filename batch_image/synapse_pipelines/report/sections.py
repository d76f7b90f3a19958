"""The report's list of sections: each plot's key, title, group and builder, in page order.

Owns :class:`Section` (one plot, or the reason it is missing), :data:`SECTIONS` (the
first eleven are PyMEDA's report, in its order; then the plots beyond it) and
:func:`make_sections`, which runs every builder and turns a
:class:`~synapse_pipelines.report.figure_common.Missing` into the sentence the page shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go

from .analysis import PAIR_PLOT_FEATURES, PAIR_PLOT_SAMPLES, SPATIAL_SAMPLES, ReportData
from .cluster_figures import (
    cluster_mean_heatmap,
    cluster_mean_lines,
    cluster_stacked_means,
    gmm_dendrogram,
    pair_plot,
)
from .feature_figures import (
    correlation_matrix,
    location_heatmap,
    location_lines,
    representative_heatmap,
    ridge_line,
    scree_plot,
)
from .figure_common import Missing
from .spatial_figures import spatial_3d, spatial_projections, volume_histogram


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
