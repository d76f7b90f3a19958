"""PAIRS (``paired-puncta``) as a blockwise kernel: the one-job labels, voxel for voxel.

Owns :class:`PairsKernel` (a :class:`~synapse_pipelines.blockwise.kernel_protocol.SeededKernel`)
and :func:`blockwise_paired_puncta` (``detect_paired_puncta`` block by block). Every number
comes from the exactly reducible primitives of
:mod:`synapse_pipelines.science.paired_puncta_blocks`, composed as that module's docstring
prescribes; the stages of :data:`~synapse_pipelines.blockwise.stages.STAGES` run:

- ``covariance``: ``block_histograms`` of the block's owned voxels (sparse counts);
- ``threshold``: the counts summed over blocks, ``section_thresholds`` (JSON);
- ``label``: the seeds of the extended block grown by the assignment radius
  (``block_seeds``: every seed that can reach the block), then ``block_labels`` of the
  extended block, each label keyed by its seed's raster index. A block without a seed of
  its own also records its per-channel puncta (``block_puncta``), so that an empty result
  is explained exactly as the one job explains it;
- ``stitch``: labels of one seed are one synapse (``stitch`` joins them by key, connected
  or not); synapses are numbered in raster order of their seeds, as PAIRS numbers them; the
  size filter keeps regions of at least ``min_voxels`` and renumbers them in order.

Coordinates handed to the primitives are relative to the request box (the volume the
one-job detection sees), so the histogram lattice and the seed order are the one job's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synapse_pipelines.blockwise.plan import BlockPlan
from synapse_pipelines.blockwise.runner import run_into_array
from synapse_pipelines.blockwise.sources import ArraySource, VolumeSource
from synapse_pipelines.blockwise.store import Store
from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import DetectionResult
from synapse_pipelines.science.histogram_bins import N_BINS
from synapse_pipelines.science.paired_puncta_blocks import (
    HIST_ROWS,
    SectionHistograms,
    SectionThresholds,
    block_histograms,
    block_labels,
    block_puncta,
    block_seeds,
    section_thresholds,
)
from synapse_pipelines.science.paired_puncta_explain import explain_empty
from synapse_pipelines.science.paired_puncta_geometry import (
    DEFAULT_VOXEL_SIZE,
    PairsGeometry,
    geometry,
)
from synapse_pipelines.science.paired_puncta_thresholds import result_parameters

#: Peak working set of PAIRS' blockwise passes per voxel of a block (estimated, rounded
#: up): the label pass holds the channels, ``E`` (float32) of the block grown by the seed
#: and assignment radii, the mark, two uint32 label arrays and the labelling's indices.
BYTES_PER_VOXEL = 32
#: The block's extra arrays the stitch reads when a block has no seed of its own.
PUNCTA = ("puncta_pre", "puncta_post")


def _rel(box: Box, volume: Box) -> Box:
    """``box`` in the coordinates of ``volume`` (the request box)."""
    o = volume.start
    return Box(
        tuple(a - b for a, b in zip(box.start, o, strict=True)),  # type: ignore[arg-type]
        tuple(a - b for a, b in zip(box.stop, o, strict=True)),  # type: ignore[arg-type]
    )


class PairsKernel:
    """PAIRS' primitives for the blockwise passes (see the module docstring).

    ``g`` is the geometry of the *whole* request box (:func:`geometry`), which fixes the
    parameters, the halo and the histogram lattice.
    """

    bytes_per_voxel = BYTES_PER_VOXEL

    def __init__(self, g: PairsGeometry):
        self.g = g
        # one read serves a block's labels: the extended block grown by the assignment
        # radius (its seeds), the seed radius (their maxima) and the band-pass's context
        self.halo: tuple[int, int, int] = tuple(  # type: ignore[assignment]
            a + s for a, s in zip(g.assignment_radii, g.halo["seeds"], strict=True)
        )
        self.min_size = max(g.min_voxels, 1) - 1  # kept: at least min_voxels

    @classmethod
    def make(
        cls,
        volume_shape: Sequence[int],
        voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
        **params: float,
    ) -> PairsKernel:
        return cls(geometry(volume_shape, voxel_size, **params))

    def parameters(self) -> dict[str, Any]:
        return {"pipeline": "paired-puncta", **self.g.to_dict()}

    def check_volume(self, volume: Box) -> None:
        if tuple(volume.shape) != self.g.volume_shape:
            raise DetectionError(
                f"this kernel's geometry is for a volume of shape {self.g.volume_shape}, "
                f"not {volume.shape}",
                field="volume",
                hint="make the kernel with the request box's shape",
            )

    # -- the SeededKernel passes -----------------------------------------------------------
    def block_stats(self, pre: np.ndarray, post: np.ndarray) -> dict[str, Any]:
        return {}  # the channels are checked where they are read (block_histograms)

    def reduce_stats(self, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {}

    def owned_histogram(
        self, pre: np.ndarray, post: np.ndarray, block: Box, read_box: Box, volume: Box
    ) -> np.ndarray:
        """Sparse ``(k, 2)`` (flat index into ``[Z, 2, HIST_ROWS, N_BINS]``, count) of the owned
        voxels' lattice histogram."""
        box, read = _rel(block, volume), _rel(read_box, volume)
        hist = block_histograms(pre, post, box, read, self.g)
        flat = hist.counts.reshape(-1)
        index = np.flatnonzero(flat)
        offset = hist.z0 * 2 * HIST_ROWS * N_BINS
        return np.stack([index + offset, flat[index]], axis=1).astype(np.int64)

    def add_histogram(self, total: np.ndarray | None, part: np.ndarray) -> np.ndarray:
        if total is None:
            total = np.zeros((self.g.volume_shape[0], 2, HIST_ROWS, N_BINS), np.int64)
        np.add.at(total.reshape(-1), part[:, 0], part[:, 1])
        return total

    def threshold(self, histogram: np.ndarray, stats: dict[str, Any]) -> dict[str, Any]:
        thr = section_thresholds(SectionHistograms(0, np.asarray(histogram)), self.g)
        return thr.to_dict()

    def label_extended(
        self,
        pre: np.ndarray,
        post: np.ndarray,
        block: Box,
        ext: Box,
        read_box: Box,
        volume: Box,
        threshold: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Labels of the extended block (1..n: the seeds within reach, raster order), the
        seeds' raster indices in the request box, and the puncta of a seedless block."""
        g, thr = self.g, SectionThresholds.from_dict(threshold)
        whole = Box.from_shape(g.volume_shape)
        box, e_box, read = _rel(block, volume), _rel(ext, volume), _rel(read_box, volume)
        reach = e_box.grow(g.assignment_radii, within=whole)
        seeds = block_seeds(pre, post, reach, read, thr, g)  # raster order
        ids = np.arange(1, len(seeds) + 1, dtype=np.int64)  # same order as the global ids
        labels = block_labels(pre, post, e_box, read, thr, g, seeds, ids)
        keys = np.ravel_multi_index(tuple(seeds.T), g.volume_shape).astype(np.int64)
        own = np.all((seeds >= np.array(box.start)) & (seeds < np.array(box.stop)), axis=1)
        extras: dict[str, np.ndarray] = {}
        if not own.any():  # only seedless blocks: all of them when the result is empty
            found = block_puncta(pre, post, box, read, thr, g)
            extras = dict(zip(PUNCTA, found, strict=True))
        return labels, keys, extras

    def summarize(
        self,
        blocks: Sequence[Mapping[str, np.ndarray]],
        result: Any,
        threshold: dict[str, Any],
    ) -> dict[str, Any]:
        """The explanation of an empty result (``detect_paired_puncta``'s sentence)."""
        if result.n_objects:
            return {}
        seeds = int(result.n_components)
        puncta = [np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64)]
        if not seeds:
            puncta = [
                np.concatenate([np.asarray(b[name]).reshape(-1, 3) for b in blocks])
                for name in PUNCTA
            ]
        text = explain_empty(
            self.g,
            SectionThresholds.from_dict(threshold),
            presynaptic_puncta=puncta[0],
            postsynaptic_puncta=puncta[1],
            seeds=seeds,
            largest_region_voxels=int(result.largest),
        )
        return {
            "explanation": text,
            "puncta": {"presynaptic": len(puncta[0]), "postsynaptic": len(puncta[1])},
        }

    def explain_empty(self, summary: dict[str, Any], threshold: dict[str, Any]) -> str | None:
        return summary.get("explanation")

    def result_parameters(self, threshold: dict[str, Any]) -> dict[str, Any]:
        thr = SectionThresholds.from_dict(threshold)
        return {"pipeline": "paired-puncta", **result_parameters(self.g, thr)}

    # -- the NOMADS-shaped methods are not used by a SeededKernel's passes ------------------
    def covariance(self, *args: Any) -> np.ndarray:
        raise NotImplementedError("PAIRS histograms its blocks with owned_histogram")

    def histogram(self, cov: np.ndarray) -> np.ndarray:
        raise NotImplementedError("PAIRS histograms its blocks with owned_histogram")

    def mask(self, cov: np.ndarray, threshold: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError("PAIRS labels its blocks with label_extended")

    def label(self, mask: np.ndarray) -> tuple[np.ndarray, int]:
        raise NotImplementedError("PAIRS labels its blocks with label_extended")


def blockwise_paired_puncta(
    presynaptic: Any,
    postsynaptic: Any,
    *,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    plan: BlockPlan | None = None,
    block_shape: tuple[int, int, int] | None = None,
    alignment: tuple[int, int, int] = (1, 1, 1),
    workdir: str | Path | Store | None = None,
    source: VolumeSource | None = None,
    **params: float,
) -> DetectionResult:
    """``detect_paired_puncta`` computed block by block: the same labels, ids, mask and
    explanation (the parameters hold the geometry and thresholds, not the tallies)."""
    if source is None:
        source = ArraySource(presynaptic, postsynaptic)
    kernel = PairsKernel.make(source.box.shape, voxel_size, **params)
    labels, res = run_into_array(
        source,
        kernel,  # type: ignore[arg-type]
        plan=plan,
        block_shape=block_shape,
        alignment=alignment,
        bytes_per_voxel=BYTES_PER_VOXEL,
        workdir=workdir,
    )
    mask = (labels != 0).view(np.uint8)
    mask *= 255
    thr = SectionThresholds.from_dict(res.threshold)
    return DetectionResult(
        labels=labels,
        mask=mask,
        threshold=float(kernel.g.params["seed_level"]),
        n_synapses=int(res.n_objects),
        parameters=result_parameters(kernel.g, thr),
        timings=dict(res.seconds),
        explanation=res.explanation,
    )
