"""NOMADS as a blockwise :class:`~synapse_pipelines.blockwise.kernel_protocol.Kernel`.

Every number comes from :mod:`synapse_pipelines.science.detection`'s public primitives, used the way
its ``detect()`` composes them, so the blockwise answer is the single-job answer bit for
bit: exact integer channel sums (``channel_stats`` / ``ChannelStats.__add__``), integer
covariance numerators from edge-padded extended blocks (``pad_to_extended`` +
``covariance_numerator``: integer window sums, independent of where a block starts), the
fixed-bin histogram summed over blocks (``covariance_histogram`` / ``+``), the threshold
``threshold_from_histogram``, foreground ``numerator >= T``, and components kept when larger
than ``min_size``, numbered in raster order (what ``label_components`` +
``filter_components`` give on the whole volume).

:func:`blockwise_detect` runs the whole thing on in-memory or lazy arrays and returns the
same :class:`~synapse_pipelines.science.detection.DetectionResult` as ``detect()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synapse_pipelines.blockwise.plan import BlockPlan
from synapse_pipelines.blockwise.runner import run_into_array
from synapse_pipelines.blockwise.sources import ArraySource, VolumeSource
from synapse_pipelines.blockwise.store import Store
from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import detection
from synapse_pipelines.science.histogram_bins import bin_lower_edges

#: Share of a block's voxels the covariance pass records as foreground candidates (their
#: numerators, 8 B each with the index): 0.3 B/voxel at most, instead of 4 B/voxel for every
#: numerator. NOMADS foreground is well under 1 % of the voxels.
CANDIDATE_FRACTION = 0.04

#: Peak working set of the blockwise passes per voxel of a block, measured by
#: ``benchmarks/bench_blockwise.py`` and rounded up (docs/scale.md): at most ~22 B, in the
#: finalize pass (uint32 ids, their Zarr encoding and zstd buffer, the mask, two channels);
#: the covariance pass peaks at ~15 B (int32 numerators, window sums, channel reads).
BYTES_PER_VOXEL = 24


def _relative(box: Box, volume: Box) -> Box:
    return Box(
        tuple(a - o for a, o in zip(box.start, volume.start, strict=True)),  # type: ignore[arg-type]
        tuple(b - o for b, o in zip(box.stop, volume.start, strict=True)),  # type: ignore[arg-type]
    )


class NomadsKernel:
    """NOMADS primitives for the blockwise passes (see the module docstring)."""

    def __init__(
        self,
        *,
        window: int = detection.DEFAULT_WINDOW,
        min_size: int = detection.DEFAULT_MIN_SIZE,
        sections: int | None = None,
    ):
        """``sections``: the volume's extent along z, when known: a volume thinner than the
        window is detected plane by plane, as ``detect()`` does (``effective_window``)."""
        # the same validation, and the same messages, as detect()
        detection.check_window(window)
        detection.check_min_size(min_size)
        self.window = int(window)
        self.min_size = int(min_size)
        self.window_shape = detection.effective_window(
            self.window, (self.window if sections is None else sections,)
        )
        self.halo = detection.halo_shape(self.window_shape)

    def parameters(self) -> dict[str, Any]:
        return {
            "pipeline": "nomads-unsupervised",
            "window": self.window,
            "window_shape": list(self.window_shape),
            "min_size": self.min_size,
        }

    def check_volume(self, volume: Box) -> None:
        """The volume-level checks ``detect()`` makes before looking at any voxel."""
        if min(volume.shape[1:]) < self.window:
            raise DetectionError(
                f"volume {volume.shape} is narrower than the {self.window}x{self.window} "
                "in-plane window",
                field="volume",
                hint=f"request at least {self.window} voxels along y and x",
            )
        if detection.effective_window(self.window, volume.shape) != self.window_shape:
            raise DetectionError(
                f"this kernel's window {self.window_shape} is not the one detect() uses on "
                f"a volume of shape {volume.shape}",
                field="volume",
                hint="make the kernel with sections=the volume's extent along z",
            )

    # -- stats ---------------------------------------------------------------------------
    def block_stats(self, pre: np.ndarray, post: np.ndarray) -> dict[str, Any]:
        return {
            "pre": dataclasses.asdict(detection.channel_stats(pre)),
            "post": dataclasses.asdict(detection.channel_stats(post)),
        }

    def reduce_stats(self, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
        pre = detection.ChannelStats.empty()
        post = detection.ChannelStats.empty()
        for part in parts:
            pre = pre + detection.ChannelStats(**part["pre"])
            post = post + detection.ChannelStats(**part["post"])
        detection.check_channels(pre, post)
        return {"pre": dataclasses.asdict(pre), "post": dataclasses.asdict(post)}

    @staticmethod
    def channel_stats(stats: dict[str, Any]) -> tuple[detection.ChannelStats, ...]:
        return (
            detection.ChannelStats(**stats["pre"]),
            detection.ChannelStats(**stats["post"]),
        )

    # -- covariance ----------------------------------------------------------------------
    def covariance(
        self, pre: np.ndarray, post: np.ndarray, box: Box, read_box: Box, volume: Box
    ) -> np.ndarray:
        rel = _relative(box, volume)
        if _relative(read_box, volume) != rel.grow(self.halo, within=Box.from_shape(volume.shape)):
            raise ValueError(f"read box {read_box} is not {box} grown by the halo")
        # the detector's border rule (edge replication) where the block touches the border
        pre_ext = detection.pad_to_extended(pre, rel, volume.shape, self.window_shape)
        post_ext = detection.pad_to_extended(post, rel, volume.shape, self.window_shape)
        return detection.covariance_numerator(pre_ext, post_ext, window=self.window_shape)

    def histogram(self, cov: np.ndarray) -> np.ndarray:
        hist = detection.covariance_histogram(cov)
        return np.stack([hist.positive, hist.negative])

    def threshold(self, histogram: np.ndarray, stats: dict[str, Any]) -> dict[str, Any]:
        hist = detection.CovarianceHistogram(
            np.asarray(histogram[0], np.int64), np.asarray(histogram[1], np.int64)
        )
        t_num = detection.threshold_from_histogram(hist)
        pre, post = self.channel_stats(stats)
        scale = detection.numerator_scale(pre, post, self.window_shape)
        return {
            "numerator": int(t_num),
            "threshold": float(t_num) / scale if t_num != detection.NO_THRESHOLD else None,
        }

    def mask(self, cov: np.ndarray, threshold: dict[str, Any]) -> np.ndarray:
        t_num = int(threshold["numerator"])
        if t_num > np.iinfo(cov.dtype).max:
            return np.zeros(cov.shape, dtype=bool)
        return cov >= t_num

    def candidate_cutoff(self, histogram: np.ndarray, n_voxels: int) -> int:
        """Lowest fixed-bin edge whose upper tail holds at most
        :data:`CANDIDATE_FRACTION` of the block's voxels (positive numerators only)."""
        positive = np.asarray(histogram[0], dtype=np.int64)
        tail = np.cumsum(positive[::-1])[::-1]  # voxels at or above each bin's lower edge
        ok = np.flatnonzero(tail <= CANDIDATE_FRACTION * n_voxels)
        if ok.size == 0:  # every bin holds more: keep only what lies above the last one
            return int(np.iinfo(np.int64).max)
        return max(int(bin_lower_edges()[ok[0]]), 1)

    @staticmethod
    def threshold_covers(threshold: dict[str, Any], cutoff: int) -> bool:
        """Every foreground voxel (numerator >= T) is a candidate (numerator >= cutoff)."""
        return int(threshold["numerator"]) >= int(cutoff)

    def label(self, mask: np.ndarray) -> tuple[np.ndarray, int]:
        labels, sizes = detection.label_components(mask)
        return labels, int(sizes.size - 1)

    def result_parameters(self, threshold: dict[str, Any]) -> dict[str, Any]:
        return self.parameters()

    def explain_empty(self, summary: dict[str, Any], threshold: dict[str, Any]) -> str | None:
        """``detect()``'s explanation of an empty result, from the stitch's summary."""
        thr = threshold["threshold"]
        return detection.explain_empty(
            int(summary["n_objects"]),
            int(summary.get("n_components", 0)),
            int(summary.get("largest_component", 0)),
            self.min_size,
            float("nan") if thr is None else float(thr),
        )


def detection_result(
    labels: np.ndarray,
    n_objects: int,
    kernel: NomadsKernel,
    stats: dict[str, Any],
    threshold: dict[str, Any],
    timings: dict[str, float] | None = None,
    explanation: str | None = None,
) -> detection.DetectionResult:
    """The blockwise answer in ``detect()``'s own result type (same fields, same values)."""
    pre, post = kernel.channel_stats(stats)
    mask = (labels != 0).view(np.uint8)
    mask *= 255
    thr = threshold["threshold"]
    return detection.DetectionResult(
        labels=labels,
        mask=mask,
        threshold=float("nan") if thr is None else float(thr),
        n_synapses=int(n_objects),
        parameters={
            "window": kernel.window,
            "window_shape": list(kernel.window_shape),
            "min_size": kernel.min_size,
            "threshold_numerator": int(threshold["numerator"]),
            "presynaptic_mean": pre.mean,
            "presynaptic_std": pre.std,
            "postsynaptic_mean": post.mean,
            "postsynaptic_std": post.std,
        },
        timings=dict(timings or {}),
        explanation=explanation,
    )


def blockwise_detect(
    presynaptic: Any,
    postsynaptic: Any,
    *,
    window: int = detection.DEFAULT_WINDOW,
    min_size: int = detection.DEFAULT_MIN_SIZE,
    plan: BlockPlan | None = None,
    block_shape: tuple[int, int, int] | None = None,
    alignment: tuple[int, int, int] = (1, 1, 1),
    workdir: str | Path | Store | None = None,
    source: VolumeSource | None = None,
) -> detection.DetectionResult:
    """``detect()`` computed block by block (same result, bounded working set per block).

    Without ``workdir`` the per-block outputs stay in memory (tests, small volumes). The
    ids are written into one in-memory uint32 array; use
    :func:`~synapse_pipelines.blockwise.runner.run_blockwise` with a sink to write them
    elsewhere (a memmap, Zarr, BOSS) for volumes that do not fit in memory.
    """
    if source is None:
        source = ArraySource(presynaptic, postsynaptic)
    kernel = NomadsKernel(window=window, min_size=min_size, sections=source.box.shape[0])
    labels, res = run_into_array(
        source,
        kernel,
        plan=plan,
        block_shape=block_shape,
        alignment=alignment,
        bytes_per_voxel=BYTES_PER_VOXEL,
        workdir=workdir,
    )
    return detection_result(
        labels, res.n_objects, kernel, res.stats, res.threshold, res.seconds, res.explanation
    )
