"""26-connected components of a 3-D mask, numbered in raster order, and the size filter.

``label_components`` runs union-find over the foreground voxels only (compiled, in
:mod:`~synapse_pipelines.science.nomads_kernels`); ``label_reference`` is scipy's labelling
with the same numbering, for tests and when numba is missing. ``filter_components`` keeps the
components larger than a voxel count (the original: more than 30) and renumbers them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synapse_pipelines.science.nomads_kernels import components_kernel

__all__ = [
    "DEFAULT_MIN_SIZE",
    "STRUCTURE_26",
    "filter_components",
    "label_components",
    "label_foreground",
    "label_reference",
]

DEFAULT_MIN_SIZE = 30  # the original kept components with more than 30 voxels
#: 26-connectivity: every voxel touching a face, an edge or a corner.
STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def label_reference(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation of label_components (scipy)."""
    labels = np.empty(mask.shape, dtype=np.int32)
    ndimage.label(mask, structure=STRUCTURE_26, output=labels)
    return labels, np.bincount(labels.ravel()).astype(np.int64)


def label_foreground(shape: tuple[int, ...], fg: np.ndarray, labels_flat: np.ndarray) -> np.ndarray:
    """Union-find over the foreground voxels ``fg`` (sorted linear indices) only.

    Writes component numbers (raster order) into ``labels_flat[fg]``; returns sizes with
    ``sizes[0]`` = background voxels.
    """
    sizes = np.zeros(fg.size + 1, dtype=np.int64)
    m = components_kernel(shape[0], shape[1], shape[2], fg, labels_flat, sizes)
    sizes = sizes[: m + 1]
    sizes[0] = int(np.prod(shape)) - fg.size
    return sizes


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected components numbered in raster order; ``sizes[k]`` = voxels of ``k``.

    Compiled: union-find over the foreground voxels only (they are a small fraction), so
    the cost is one scan of the mask plus work proportional to the foreground.
    """
    if components_kernel is None or mask.ndim != 3:  # pragma: no cover
        return label_reference(mask)
    fg = np.flatnonzero(mask)
    labels = np.zeros(mask.shape, dtype=np.uint32)  # the dtype detect() uses: one compile
    sizes = label_foreground(mask.shape, fg, labels.reshape(-1))
    return labels.view(np.int32), sizes


def filter_components(
    labels: np.ndarray, sizes: np.ndarray, min_size: int = DEFAULT_MIN_SIZE
) -> tuple[np.ndarray, int]:
    """Keep components with more than ``min_size`` voxels, renumbered ``1..n`` in order.

    Vectorised: one lookup table indexed by label (the original compared the whole volume
    with every label in turn, which is quadratic). Works in place on ``labels``.
    """
    keep = sizes > min_size
    keep[0] = False
    lut = np.cumsum(keep, dtype=np.int64)
    lut[~keep] = 0
    n = int(keep.sum())
    out_dtype = np.uint32 if n < 2**32 else np.uint64
    if labels.dtype.itemsize == np.dtype(out_dtype).itemsize:
        np.take(lut.astype(labels.dtype), labels, out=labels)
        return labels.view(out_dtype), n
    return lut.astype(out_dtype)[labels], n
