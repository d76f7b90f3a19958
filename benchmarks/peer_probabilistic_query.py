"""The peer method of at_example, re-expressed for the benchmarks: Simhal et al. 2017's
probabilistic synapse query (PLoS Comput Biol 13:e1005493), synapsin x PSD-95.

Why it is here: at_example's "peer found" figure scores our detectors against this
method's published detections, and that only means something once we know how the peer
itself scores on data with truth. This module lets ``bench_real_data.py`` put it in the
same tables (weiler14_dev, the DoGNet crops, at_example) and lets a research script run it
on the synthetic grid. It is a benchmark reference, not a pipeline: it is not exactly
reducible (per-section statistics in floating point, 26-connected components over the
whole volume) and it scores below ``paired-puncta`` on every data set with truth
(docs/real_data.md, "The peer method on data with truth").

The steps, as the paper and its authors' code (github.com/aksimhal/SynapseAnalysis,
``SynapseDetection.py``) define them; this is our own vectorised expression, checked
against the published at_example detections (2,494 objects for their 2,477, every one of
theirs within 400 nm of one of ours):

1. Per section and channel, the foreground probability ``P = Phi((v - mean) / std)`` with
   the section's own mean and (population) standard deviation.
2. The geometric mean of ``P`` over a ``kernel x kernel`` box (pixels ``r..r+1``,
   ``c..c+1`` at the paper's 2; outside the image counts as probability 1, as the authors'
   zero padding of ``log P`` does).
3. For a channel that must span ``span`` sections (2 in the query at_example was run
   with), ``P`` is multiplied by ``exp(-(P_z - P_z+1)**2)`` (the last section: its
   predecessor; 3 sections: both neighbours). One plane has no neighbour: no factor.
4. Where PSD-95's ``P >= 0.5``, the synapse probability is its ``P`` times synapsin's mean
   ``P`` over the ``search x search`` block, among the 3 x 3 such blocks around the voxel
   (rows ``r - 1.5 search + 1 .. r + 1.5 search``) and the sections ``z - 1 .. z + 1``,
   where synapsin's mean is largest.
5. Voxels above ``threshold`` (0.9), 26-connected: one detection per component.

Lengths are in pixels, as the paper's are (at ~100 nm pixels); no voxel size enters.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

#: The paper's defaults (``getSynapseDetections``: kernelLength 2, search_win 2; the
#: at_example query: 2 sections per channel; detections at probability > 0.9).
KERNEL_PX = 2
SEARCH_PX = 2
SPAN_SECTIONS = 2
THRESHOLD = 0.9


def foreground_probability(channel: np.ndarray) -> np.ndarray:
    """Step 1: ``Phi`` of each voxel's z-score within its own section (float64)."""
    v = channel.astype(np.float64)
    out = np.full(v.shape, 0.5)
    for z in range(v.shape[0]):
        sd = v[z].std()
        if sd > 0:  # a flat section has no foreground: every voxel at even odds
            out[z] = ndtr((v[z] - v[z].mean()) / sd)
    return out


def geometric_box_mean(p: np.ndarray, kernel: int = KERNEL_PX) -> np.ndarray:
    """Step 2: the geometric mean of ``p`` over a ``kernel x kernel`` in-plane box starting at
    the voxel (outside the image: probability 1, i.e. log 0)."""
    logp = np.log(np.clip(p, np.finfo(np.float64).tiny, None))
    origin = -1 if kernel % 2 == 0 else 0  # even boxes cover r .. r + kernel - 1
    box = ndimage.uniform_filter(
        logp, size=(1, kernel, kernel), mode="constant", cval=0.0, origin=(0, origin, origin)
    )
    return np.exp(box)


def section_span_factor(p: np.ndarray, span: int = SPAN_SECTIONS) -> np.ndarray:
    """Step 3: how alike each section's ``p`` is to its neighbour's (1: identical)."""
    factor = np.ones_like(p)
    last = p.shape[0] - 1
    if span <= 1 or last == 0:
        return factor
    for z in range(last + 1):
        if z == last:
            d = (p[z] - p[z - 1]) ** 2
        elif span >= 3 and z > 0:
            d = (p[z] - p[z + 1]) ** 2 + (p[z] - p[z - 1]) ** 2
        else:
            d = (p[z] - p[z + 1]) ** 2
        factor[z] = np.exp(-d)
    return factor


def best_block_mean(p: np.ndarray, search: int = SEARCH_PX) -> np.ndarray:
    """Step 4's synapsin term: the largest mean of ``p`` over the 3 x 3 ``search``-pixel
    blocks around each voxel, in its own and both neighbouring sections (a block that
    leaves the image counts as 0)."""
    z_len, y_len, x_len = p.shape
    table = np.zeros((z_len, y_len + 1, x_len + 1))
    table[:, 1:, 1:] = p.cumsum(axis=1).cumsum(axis=2)
    rows, cols = np.arange(y_len)[:, None], np.arange(x_len)[None, :]
    first = 1 - (3 * search) // 2
    best = np.zeros_like(p)
    for dr in range(3):
        for dc in range(3):
            r0, c0 = rows + first + dr * search, cols + first + dc * search
            inside = (r0 >= 0) & (r0 + search <= y_len) & (c0 >= 0) & (c0 + search <= x_len)
            r0c, c0c = np.clip(r0, 0, y_len - search), np.clip(c0, 0, x_len - search)
            r1c, c1c = r0c + search, c0c + search
            block = (
                table[:, r1c, c1c] - table[:, r0c, c1c] - table[:, r1c, c0c] + table[:, r0c, c0c]
            )
            best = np.maximum(best, np.where(inside, block / search**2, 0.0))
    out = best.copy()
    out[1:] = np.maximum(out[1:], best[:-1])
    out[:-1] = np.maximum(out[:-1], best[1:])
    return out


def synapse_probability(
    pre: np.ndarray,
    post: np.ndarray,
    *,
    kernel: int = KERNEL_PX,
    search: int = SEARCH_PX,
    span: int = SPAN_SECTIONS,
) -> np.ndarray:
    """Steps 1-4: the query's probability map (float64, the shape of the channels)."""
    pre_p, post_p = (geometric_box_mean(foreground_probability(c), kernel) for c in (pre, post))
    pre_p = pre_p * section_span_factor(pre_p, span)
    post_p = post_p * section_span_factor(post_p, span)
    return np.where(post_p >= 0.5, post_p * best_block_mean(pre_p, search), 0.0)


def peer_detections(
    pre: np.ndarray, post: np.ndarray, *, threshold: float = THRESHOLD, **query: int
) -> np.ndarray:
    """Step 5: the centroids (z, y, x voxels, float64, ``(n, 3)``) of the 26-connected
    components of :func:`synapse_probability` (``query``: its ``kernel``, ``search`` and
    ``span``) above ``threshold``."""
    if pre.shape != post.shape or pre.ndim != 3:
        raise ValueError(
            f"pre and post must be 3-D volumes of one shape: {pre.shape}, {post.shape}"
        )
    above = synapse_probability(pre, post, **query) > threshold
    labels, n = ndimage.label(above, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros((0, 3))
    return np.asarray(ndimage.center_of_mass(above, labels, np.arange(1, n + 1)), dtype=np.float64)
