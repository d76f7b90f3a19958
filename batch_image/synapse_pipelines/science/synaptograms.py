"""Synaptograms and detection overlays as RGB images: arrays in, arrays out.

Owns the choice of synapses to show (:func:`detection_strength`, :func:`choose_samples`:
the strongest, the median and the weakest by detection strength, and the most typical
member of each cluster), :func:`synaptogram` (the array-tomography view of one synapse: a
grid of small crops, one row per channel and one column per section around the centroid,
with the synapse's own voxels outlined) and :func:`composite_overlay` (one section of the
presynaptic / postsynaptic composite, magenta / green, with every detection outlined).

Intensities are mapped to 0..255 through a per-channel window (:func:`intensity_window`:
0 to a high percentile, so the dark background of array tomography stays dark and the
puncta visible).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

OUTLINE_RGB = (255, 220, 0)  # the detection outlines: yellow, apart from magenta and green
GAP = 1  # pixels between the tiles of a synaptogram


@dataclass(frozen=True)
class Sample:
    """One synapse to draw and why it was chosen."""

    synapse_id: int
    reason: str


def detection_strength(table: pd.DataFrame, presynaptic: str, postsynaptic: str) -> pd.Series:
    """Per synapse: the product of its mean presynaptic and postsynaptic intensities (what
    the covariance detectors respond to), else its volume when those columns are missing."""
    pre, post = f"{presynaptic}_mean", f"{postsynaptic}_mean"
    if pre in table and post in table:
        return table[pre].astype(float) * table[post].astype(float)
    return table["volume_voxels"].astype(float)


def choose_samples(
    ids: np.ndarray,
    strength: np.ndarray,
    clusters: np.ndarray | None = None,
    *,
    max_clusters: int = 12,
) -> list[Sample]:
    """Top, median and bottom by strength, then per cluster the member of median strength
    (largest clusters first, at most ``max_clusters``); each synapse at most once."""
    ids = np.asarray(ids)
    strength = np.nan_to_num(np.asarray(strength, dtype=float), nan=-np.inf)
    if ids.size == 0:
        return []
    order = np.argsort(-strength, kind="stable")
    picks: list[Sample] = []
    seen: set[int] = set()

    def add(row: int, reason: str) -> None:
        sid = int(ids[row])
        if sid not in seen:
            seen.add(sid)
            picks.append(Sample(sid, reason))

    add(order[0], "strongest")
    add(order[len(order) // 2], "median strength")
    add(order[-1], "weakest")
    if clusters is not None and len(clusters) == len(ids):
        labels, counts = np.unique(np.asarray(clusters), return_counts=True)
        for label in labels[np.argsort(-counts, kind="stable")][:max_clusters]:
            members = order[np.asarray(clusters)[order] == label]
            add(members[len(members) // 2], f"cluster {int(label) + 1}, median member")
    return picks


def intensity_window(volume: np.ndarray, percentile: float = 99.5) -> tuple[float, float]:
    """0 .. the ``percentile`` of ``volume`` (at least 1 above 0)."""
    data = np.asarray(volume, dtype=float)
    top = float(np.percentile(data, percentile)) if data.size else 1.0
    return 0.0, max(top, 1.0)


def to_grey(data: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    scaled = (np.asarray(data, dtype=float) - lo) / max(hi - lo, 1e-12)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def outline(labels: np.ndarray) -> np.ndarray:
    """2-D: True on the labelled pixels that touch another label or the background."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    if labels.ndim != 2 or labels.size == 0:
        return edge
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        neighbour = padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]]
        edge |= neighbour != centre
    return edge & (labels != 0)


def synaptogram(
    crops: Mapping[str, np.ndarray],
    windows: Mapping[str, tuple[float, float]],
    own: np.ndarray | None = None,
) -> np.ndarray:
    """A (rows = channels) x (columns = sections) grid of grey tiles as RGB uint8.

    ``crops``: channel -> (z, h, w) crop around the centroid (all the same shape);
    ``own``: (z, h, w) bool, the synapse's own voxels, outlined on every tile.
    """
    names = list(crops)
    if not names:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    depth, h, w = np.shape(crops[names[0]])
    grid = np.full((len(names) * (h + GAP) - GAP, depth * (w + GAP) - GAP, 3), 40, dtype=np.uint8)
    for r, name in enumerate(names):
        grey = to_grey(crops[name], windows[name])
        for c in range(depth):
            tile = np.repeat(grey[c][..., None], 3, axis=2)
            if own is not None:
                tile[outline(own[c].astype(np.uint8))] = OUTLINE_RGB
            y0, x0 = r * (h + GAP), c * (w + GAP)
            grid[y0 : y0 + h, x0 : x0 + w] = tile
    return grid


def composite_overlay(
    presynaptic: np.ndarray,
    postsynaptic: np.ndarray,
    ids: np.ndarray,
    windows: Sequence[tuple[float, float]],
) -> np.ndarray:
    """One 2-D section: presynaptic in magenta, postsynaptic in green, detections outlined."""
    pre = to_grey(presynaptic, windows[0]).astype(np.uint16)
    post = to_grey(postsynaptic, windows[1]).astype(np.uint16)
    rgb = np.stack([pre, post, pre], axis=-1)
    image = np.clip(rgb, 0, 255).astype(np.uint8)
    image[outline(ids)] = OUTLINE_RGB
    return image
