"""What the blockwise passes need of a detector: the :class:`Kernel` protocol (a
detector's exactly reducible primitives) and :class:`SeededKernel` (a kernel that runs the
label stage its own way, as PAIRS does).

The passes in :mod:`.passes` only move blocks around and delegate the science to one of
these; :mod:`.nomads` and :mod:`.pairs` implement them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from synapse_pipelines.core.geometry import Box

__all__ = ["Kernel", "SeededKernel"]


class Kernel(Protocol):
    """The detector's decomposable primitives, as the passes need them.

    Global values (``stats``, ``threshold``) are JSON-serialisable so they can be recorded,
    fingerprinted and passed between jobs.
    """

    #: context voxels the covariance window needs on each side (z, y, x)
    halo: tuple[int, int, int]
    #: objects keep voxels when their global size is larger than this
    min_size: int

    def parameters(self) -> dict[str, Any]:
        """Everything that changes the answer (for fingerprints)."""
        ...

    def check_volume(self, volume: Box) -> None:
        """Volume-level checks made before any voxel is read."""
        ...

    def block_stats(self, pre: np.ndarray, post: np.ndarray) -> dict[str, Any]:
        """Exactly reducible (integer) per-channel sums of one block."""
        ...

    def reduce_stats(self, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Global statistics from the per-block sums."""
        ...

    def covariance(
        self, pre: np.ndarray, post: np.ndarray, box: Box, read_box: Box, volume: Box
    ) -> np.ndarray:
        """Covariance (numerator) of ``box`` from channels read over ``read_box`` (``box``
        grown by the halo, clipped to ``volume``); the kernel pads at the volume border."""
        ...

    def histogram(self, cov: np.ndarray) -> np.ndarray:
        """Exactly reducible (integer counts, fixed edges) histogram of covariance values."""
        ...

    def threshold(self, histogram: np.ndarray, stats: dict[str, Any]) -> dict[str, Any]:
        """The global threshold from the summed histogram."""
        ...

    def mask(self, cov: np.ndarray, threshold: dict[str, Any]) -> np.ndarray:
        """Foreground voxels."""
        ...

    def label(self, mask: np.ndarray) -> tuple[np.ndarray, int]:
        """26-connected labels numbered in raster order of their first voxel, and count."""
        ...

    def explain_empty(self, summary: dict[str, Any], threshold: dict[str, Any]) -> str | None:
        """Why nothing was found, in plain words, from the stitch's summary (``n_objects``,
        ``n_components`` before the size filter, ``largest_component``) and the
        threshold; None when something was."""
        ...

    def result_parameters(self, threshold: dict[str, Any]) -> dict[str, Any]:
        """The parameters a result records once the threshold is known: :meth:`parameters`
        and what the threshold pass measured (PAIRS: per-section statistics, section
        continuity and its ``warnings``)."""
        ...


class SeededKernel(Kernel, Protocol):
    """A kernel that runs the passes its own way (PAIRS: per-section histograms, seeds).

    The passes use these methods when a kernel has them (``covariance``, ``histogram``,
    ``mask`` and ``label`` are then not called):

    - ``covariance`` stage: ``owned_histogram`` of each block's owned voxels (any array;
      ``add_histogram(total or None, part)`` sums them for ``threshold``);
    - ``label`` stage: ``label_extended`` gives the extended block's labels, each with the
      key of its seed (:func:`~synapse_pipelines.blockwise.stitch.label_block`), and extra
      small arrays the stitch hands to ``summarize``;
    - ``stitch`` stage: ``summarize(blocks, result, threshold)`` adds JSON values to the
      stitch summary (e.g. the explanation of an empty result).
    """

    def owned_histogram(
        self, pre: np.ndarray, post: np.ndarray, block: Box, read_box: Box, volume: Box
    ) -> np.ndarray: ...

    def add_histogram(self, total: Any, part: np.ndarray) -> Any: ...

    def label_extended(
        self,
        pre: np.ndarray,
        post: np.ndarray,
        block: Box,
        ext: Box,
        read_box: Box,
        volume: Box,
        threshold: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]: ...

    def summarize(
        self, blocks: Sequence[dict[str, np.ndarray]], result: Any, threshold: dict[str, Any]
    ) -> dict[str, Any]: ...
