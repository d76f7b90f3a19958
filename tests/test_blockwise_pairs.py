"""Blockwise PAIRS equals ``detect_paired_puncta``: the same labels voxel for voxel (same
ids), the same mask and count, and the same explanation of an empty result."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from fixtures.paired_puncta_scenes import bright_few_dim_many

from synapse_pipelines.blockwise.pairs import PairsKernel, blockwise_paired_puncta
from synapse_pipelines.blockwise.sources import ArraySource
from synapse_pipelines.core.errors import DetectionError, RequestValidationError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import DetectionResult
from synapse_pipelines.science import synthetic
from synapse_pipelines.science.paired_puncta import detect_paired_puncta, geometry
from synapse_pipelines.workflow.blockwise_job import kernel_for

VOX = (70.0, 100.0, 100.0)


def assert_same(one: DetectionResult, blocks: DetectionResult) -> None:
    np.testing.assert_array_equal(blocks.labels, one.labels)
    np.testing.assert_array_equal(blocks.mask, one.mask)
    assert blocks.n_synapses == one.n_synapses
    assert blocks.explanation == one.explanation
    assert blocks.threshold == one.threshold
    for channel in ("presynaptic", "postsynaptic"):  # the thresholds, section by section
        assert blocks.parameters[channel] == one.parameters[channel]


@pytest.fixture(scope="module")
def realistic() -> tuple[np.ndarray, np.ndarray]:
    exp = synthetic.make_experiment(
        (10, 96, 96), seed=3, channels=[synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC]
    )
    assert exp.voxel_size == VOX
    return exp.channels[synthetic.PRESYNAPTIC], exp.channels[synthetic.POSTSYNAPTIC]


@pytest.fixture(scope="module")
def one_job(realistic: tuple[np.ndarray, np.ndarray]) -> DetectionResult:
    return detect_paired_puncta(*realistic, voxel_size=VOX)


@pytest.mark.parametrize(
    "block_shape",
    [
        (10, 96, 96),  # one block
        (4, 32, 40),  # uneven border blocks
        (3, 17, 23),  # most synapses cross faces, edges and corners
        (2, 7, 9),  # blocks smaller than the halo (6, 9, 9) and than a synapse
    ],
)
def test_blockwise_equals_one_job(
    realistic: tuple[np.ndarray, np.ndarray],
    one_job: DetectionResult,
    block_shape: tuple[int, int, int],
) -> None:
    assert one_job.n_synapses >= 40
    kernel = PairsKernel.make((10, 96, 96), VOX)
    assert any(b < h for b, h in zip((2, 7, 9), kernel.halo, strict=True))
    assert_same(
        one_job, blockwise_paired_puncta(*realistic, voxel_size=VOX, block_shape=block_shape)
    )


@pytest.mark.parametrize("block_shape", [(1, 32, 40), (1, 7, 9)])
def test_one_plane_and_its_log_split_equal_one_job(block_shape: tuple[int, int, int]) -> None:
    """One plane also splits log D (docs/detection.md, "The split of one plane"), from the
    same histograms summed over the blocks: the same thresholds and labels."""
    pre, post, *_ = bright_few_dim_many((1, 128, 128), 0)
    one = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert one.parameters["otsu_split_scale"].startswith("linear, or log")
    assert_same(one, blockwise_paired_puncta(pre, post, voxel_size=VOX, block_shape=block_shape))


def test_synapses_cross_the_small_blocks(one_job: DetectionResult) -> None:
    """The small tilings above do cut synapses: their ids meet in several blocks."""
    labels = one_job.labels
    crossing = 0
    for sid in range(1, one_job.n_synapses + 1):
        z, y, x = np.nonzero(labels == sid)
        spans = [np.unique(c // b).size for c, b in zip((z, y, x), (3, 17, 23), strict=True)]
        crossing += max(spans) > 1
    assert crossing >= 10


def test_a_request_box_away_from_the_origin(
    realistic: tuple[np.ndarray, np.ndarray], one_job: DetectionResult
) -> None:
    """Coordinates handed to the primitives are relative to the request box: BOSS-aligned
    blocks of a box at (5, 100, 37) give the one job's answer too."""
    source = ArraySource(*realistic, origin=(5, 100, 37))
    result = blockwise_paired_puncta(
        None, None, voxel_size=VOX, source=source, block_shape=(4, 32, 32), alignment=(4, 32, 32)
    )
    assert_same(one_job, result)


def test_the_size_filter_renumbers_like_one_job(realistic: tuple[np.ndarray, np.ndarray]) -> None:
    one = detect_paired_puncta(*realistic, voxel_size=VOX, min_volume_um3=0.02)
    unfiltered = detect_paired_puncta(*realistic, voxel_size=VOX)
    assert 0 < one.n_synapses < unfiltered.n_synapses
    result = blockwise_paired_puncta(
        *realistic, voxel_size=VOX, block_shape=(3, 17, 23), min_volume_um3=0.02
    )
    assert_same(one, result)


def test_a_rerun_skips_every_recorded_block(
    realistic: tuple[np.ndarray, np.ndarray], one_job: DetectionResult, tmp_path: Path
) -> None:
    first = blockwise_paired_puncta(
        *realistic, voxel_size=VOX, block_shape=(5, 48, 48), workdir=tmp_path
    )
    again = blockwise_paired_puncta(
        *realistic, voxel_size=VOX, block_shape=(5, 48, 48), workdir=tmp_path
    )
    assert_same(one_job, first)
    assert_same(one_job, again)


# --------------------------------------------------------------------------- empty results


def _puncta(
    shape: tuple[int, int, int], centres: Sequence[Sequence[float]], seed: int
) -> np.ndarray:
    """Gaussian puncta (300 nm FWHM in-plane) at ``centres`` (nm) over read noise."""
    grid = np.meshgrid(*(np.arange(n) * v for n, v in zip(shape, VOX, strict=True)), indexing="ij")
    out = 20.0 + np.random.default_rng(seed).normal(0, 3, shape)
    for c in centres:
        r2 = sum(((g - p) / s) ** 2 for g, p, s in zip(grid, c, (110.0, 127.0, 127.0), strict=True))
        out += 120.0 * np.exp(-r2 / 2)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _misregistered() -> tuple[np.ndarray, np.ndarray]:
    """Puncta on a 1.6 um grid in both channels, the postsynaptic grid shifted by half a
    cell: no pair ever overlaps."""
    rng = np.random.default_rng(7)
    grid = [
        (rng.uniform(1.5, 5.5) * VOX[0], (i + 0.5) * 1600.0, (j + 0.5) * 1600.0)
        for i in range(5)
        for j in range(5)
    ]
    shifted = [(z, y + 800.0, x + 800.0) for z, y, x in grid]
    return _puncta((8, 96, 96), grid, 7), _puncta((8, 96, 96), shifted, 8)


@pytest.mark.parametrize("block_shape", [(3, 20, 30), (2, 7, 9)])
def test_an_unregistered_pair_of_channels_is_explained_like_one_job(
    block_shape: tuple[int, int, int],
) -> None:
    pre, post = _misregistered()
    one = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert one.n_synapses == 0 and one.explanation is not None
    assert "none within 250 nm of each other" in one.explanation
    assert_same(one, blockwise_paired_puncta(pre, post, voxel_size=VOX, block_shape=block_shape))


def test_a_flat_channel_is_explained_like_one_job() -> None:
    pre, _ = _misregistered()
    flat = np.full_like(pre, 37)
    one = detect_paired_puncta(pre, flat, voxel_size=VOX)
    assert (one.explanation or "").startswith("the postsynaptic channel is flat")
    assert_same(one, blockwise_paired_puncta(pre, flat, voxel_size=VOX, block_shape=(3, 40, 50)))


def test_a_size_filter_that_removes_everything_is_explained_like_one_job(
    realistic: tuple[np.ndarray, np.ndarray],
) -> None:
    one = detect_paired_puncta(*realistic, voxel_size=VOX, min_volume_um3=5.0)
    assert one.n_synapses == 0 and "smaller than min_volume_um3" in (one.explanation or "")
    result = blockwise_paired_puncta(
        *realistic, voxel_size=VOX, block_shape=(4, 32, 40), min_volume_um3=5.0
    )
    assert_same(one, result)


# --------------------------------------------------------------------------- wiring


def test_kernel_for_paired_puncta_uses_the_request_geometry() -> None:
    kernel = kernel_for("paired-puncta", {"seed_level": 1.5}, VOX, (12, 300, 400))
    assert isinstance(kernel, PairsKernel)
    assert kernel.g == geometry((12, 300, 400), VOX, seed_level=1.5)
    assert kernel.parameters()["pipeline"] == "paired-puncta"
    kernel.check_volume(Box((3, 0, 0), (15, 300, 400)))
    with pytest.raises(DetectionError, match="geometry is for a volume"):
        kernel.check_volume(Box.from_shape((12, 300, 401)))
    with pytest.raises(RequestValidationError, match="unknown parameter"):
        kernel_for("paired-puncta", {"window": 3}, VOX, (12, 300, 400))
