"""The 2018 NOMADS code as it ran, re-implemented for tests and benchmarks only.

It keeps the original's typo (``convolve(x + y) - convolve(x) + convolve(y)``, which is
``2 * convolve(y)``: the presynaptic channel is ignored), its 256-bin Otsu between min and
max, and its quadratic small-object filter. The benchmarks time it beside the detectors, and
the real-data benchmark scores it. Do not use it for detection: see
:mod:`~synapse_pipelines.science.detection`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synapse_pipelines.science.connected_components import DEFAULT_MIN_SIZE, STRUCTURE_26

__all__ = ["original_nomads"]


def _otsu_256(values: np.ndarray) -> float:
    """skimage.filters.threshold_otsu as the original called it: 256 bins, min to max."""
    counts, edges = np.histogram(values, bins=256, range=(values.min(), values.max()))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts).astype(np.float64)
    w1 = np.cumsum(counts[::-1])[::-1].astype(np.float64)
    m0 = np.cumsum(counts * centres) / np.where(w0 > 0, w0, 1)
    m1 = (np.cumsum((counts * centres)[::-1]) / np.where(w1[::-1] > 0, w1[::-1], 1))[::-1]
    between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def original_nomads(presynaptic: np.ndarray, postsynaptic: np.ndarray) -> np.ndarray:
    """Faithful re-implementation of the 2018 NOMADS code, for tests and benchmarks only.

    Float64 z-score per channel, its covariance line ``convolve(x + y) - convolve(x) +
    convolve(y)`` with a 3x3x3 mean kernel (scipy's default ``reflect`` border), Otsu on
    256 bins between min and max, 26-connected labels, and the quadratic small-object
    filter (one full-volume comparison per label, dropping components of <= 30 voxels).
    Returns the 0/255 uint8 mask. Do not use it for detection: see the module docstring.
    """
    x = presynaptic.astype(np.float64)
    y = postsynaptic.astype(np.float64)
    x = (x - x.mean()) / x.std()
    y = (y - y.mean()) / y.std()
    kernel = np.full((3, 3, 3), 1.0 / 27.0)
    cov = (
        ndimage.convolve(x + y, kernel) - ndimage.convolve(x, kernel) + ndimage.convolve(y, kernel)
    )
    binary = cov > _otsu_256(cov)
    labels, n = ndimage.label(binary, structure=STRUCTURE_26)
    for label in range(1, n + 1):  # the original's quadratic loop, kept on purpose
        component = labels == label
        if component.sum() <= DEFAULT_MIN_SIZE:
            binary[component] = False
    return binary.astype(np.uint8) * 255
