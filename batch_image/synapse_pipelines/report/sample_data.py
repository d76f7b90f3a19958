"""Seeded synthetic synapse tables with known cluster structure (tests, benchmark, docs).

The detector's synthetic volumes (:mod:`synapse_pipelines.science.synthetic`) exercise detection;
the report needs tables of any size with clusters whose truth is known, fast, so this
builds the table directly with the same columns as :func:`features.synapse_table`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from synapse_pipelines.science.features import (
    BBOX_COLUMNS,
    CENTROID_COLUMNS,
    PHYSICAL_COLUMNS,
    mean_column,
    window_column,
)

COLLMAN_LIKE_CHANNELS: tuple[str, ...] = (
    "Synapsin647",
    "PSD95_488",
    "VGluT1_647",
    "GAD647",
    "gephyrin594",
    "NR1594",
)


def clustered_table(
    n: int,
    *,
    channels: Sequence[str] = COLLMAN_LIKE_CHANNELS,
    n_clusters: int = 4,
    separation: float = 6.0,
    shape: tuple[int, int, int] = (27, 2048, 2048),
    voxel_size: tuple[float, float, float] = (50.0, 3.72, 3.72),
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """A synapse table of ``n`` rows and its true cluster of each row.

    Features (``<channel>_window_zsum`` and ``<channel>_mean`` per channel, so
    ``2 * len(channels)`` of them) are Gaussian blobs around ``n_clusters`` centres drawn
    ``separation`` standard deviations apart on average; centroids are uniform in
    ``shape``; ``table.attrs`` carries the voxel size (nanometers) and the box shape like a
    table read back with its metadata JSON.
    """
    rng = np.random.default_rng(seed)
    d = 2 * len(channels)
    centres = rng.normal(scale=separation / np.sqrt(2), size=(n_clusters, d))
    truth = rng.integers(0, n_clusters, size=n)
    feats = centres[truth] + rng.normal(size=(n, d))
    cols: dict[str, np.ndarray] = {"id": np.arange(1, n + 1, dtype=np.uint64)}
    centroids = rng.uniform(0, 1, size=(n, 3)) * np.asarray(shape, dtype=np.float64)
    for axis, name in enumerate(CENTROID_COLUMNS):
        cols[name] = centroids[:, axis]
    for axis, name in enumerate(PHYSICAL_COLUMNS):
        cols[name] = centroids[:, axis] * voxel_size[axis]
    volume = rng.integers(31, 600, size=n)
    cols["volume_voxels"] = volume
    cols["volume_physical"] = volume * float(np.prod(voxel_size))
    low = np.floor(centroids).astype(np.int64)
    for axis, name in enumerate(BBOX_COLUMNS):
        cols[name] = low[:, axis % 3] + (axis // 3)
    cols["window_voxels"] = np.full(n, 400, dtype=np.int64)
    cols["window_clipped"] = np.zeros(n, dtype=bool)
    for j, ch in enumerate(channels):
        cols[window_column(ch)] = feats[:, j] * 40.0
    for j, ch in enumerate(channels):
        cols[mean_column(ch)] = 100.0 + 12.0 * feats[:, len(channels) + j]
    table = pd.DataFrame(cols)
    table.attrs.update(
        voxel_size=list(voxel_size),
        voxel_unit="nanometers",
        shape=list(shape),
        origin=[0, 0, 0],
        channels=list(channels),
    )
    return table, truth
