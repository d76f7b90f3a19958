"""Blockwise NOMADS equals ``detection.detect()``: voxel for voxel, synapse for synapse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from synapse_pipelines.blockwise.nomads import NomadsKernel, blockwise_detect
from synapse_pipelines.blockwise.plan import plan_request
from synapse_pipelines.blockwise.sources import ArraySource
from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import detection, synthetic


def assert_same_result(a: detection.DetectionResult, b: detection.DetectionResult) -> None:
    """Same synapses: identical masks, and ids equal up to a consistent renumbering."""
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.n_synapses == b.n_synapses
    fg = a.labels > 0
    np.testing.assert_array_equal(fg, b.labels > 0)
    pairs = np.unique(np.stack([a.labels[fg], b.labels[fg]]), axis=1)
    # a bijection: every id on one side meets exactly one id on the other
    assert pairs.shape[1] == a.n_synapses
    assert np.unique(pairs[0]).size == np.unique(pairs[1]).size == a.n_synapses
    # our numbering is the same raster order, so the ids are even equal
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.parameters == b.parameters
    assert a.explanation == b.explanation
    assert a.threshold == b.threshold or (np.isnan(a.threshold) and np.isnan(b.threshold))


def straddle_kinds(labels: np.ndarray, block_shape: tuple[int, int, int]) -> dict[str, int]:
    """How many objects cross block faces only, block edges, block corners."""
    kinds = {"inside": 0, "face": 0, "edge": 0, "corner": 0}
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        axes = sum(
            (s.start // b) != ((s.stop - 1) // b) for s, b in zip(sl, block_shape, strict=True)
        )
        kinds[["inside", "face", "edge", "corner"][axes]] += 1
    return kinds


@pytest.fixture(scope="module")
def experiment() -> tuple[np.ndarray, np.ndarray]:
    exp = synthetic.make_experiment(
        (24, 120, 120),
        seed=11,
        profile="sparse",
        channels=[synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC],
    )
    return exp.channels[synthetic.PRESYNAPTIC], exp.channels[synthetic.POSTSYNAPTIC]


@pytest.fixture(scope="module")
def single(experiment: tuple[np.ndarray, np.ndarray]) -> detection.DetectionResult:
    return detection.detect(*experiment)


@pytest.mark.parametrize(
    "block_shape",
    [
        (8, 32, 32),  # even grid
        (7, 33, 40),  # uneven: the border blocks are smaller
        (5, 13, 17),  # small uneven blocks: most synapses straddle faces, edges, corners
        (24, 120, 120),  # one block
    ],
)
def test_synthetic_experiment_equals_single_job(
    experiment: tuple[np.ndarray, np.ndarray],
    single: detection.DetectionResult,
    block_shape: tuple[int, int, int],
) -> None:
    assert single.n_synapses >= 10
    result = blockwise_detect(*experiment, block_shape=block_shape)
    assert_same_result(single, result)


def test_synapses_do_straddle_faces_edges_and_corners(single: detection.DetectionResult) -> None:
    # the (5, 13, 17) grid above really exercises every kind of crossing
    kinds = straddle_kinds(single.labels, (5, 13, 17))
    assert kinds["face"] > 0 and kinds["edge"] > 0 and kinds["corner"] > 0, kinds


def _blob(
    shape: tuple[int, int, int], centre: tuple[float, float, float], amp: float
) -> np.ndarray:
    z, y, x = np.indices(shape, dtype=np.float64)
    cz, cy, cx = centre
    return amp * np.exp(
        -(((z - cz) / 1.3) ** 2 + ((y - cy) / 1.8) ** 2 + ((x - cx) / 1.8) ** 2) / 2
    )


def test_synapse_centred_on_a_block_corner(tmp_path) -> None:
    """One synapse whose voxels lie in all 8 blocks around a grid corner, plus others on a
    face and an edge; the blocks at the far border are uneven."""
    shape = (21, 45, 45)
    block = (8, 16, 16)
    rng = np.random.default_rng(5)
    pre = 20 + rng.normal(0, 3, shape)
    post = 20 + rng.normal(0, 3, shape)
    for centre in [(8, 16, 16), (8, 10, 32), (4, 32, 32), (16, 40, 5)]:  # corner, edges, face
        pre += _blob(shape, (centre[0] - 0.3, centre[1] - 0.5, centre[2] - 0.4), 120)
        post += _blob(shape, (centre[0] + 0.3, centre[1] + 0.5, centre[2] + 0.4), 110)
    pre8 = np.clip(pre, 0, 255).astype(np.uint8)
    post8 = np.clip(post, 0, 255).astype(np.uint8)
    single = detection.detect(pre8, post8, min_size=10)
    assert single.n_synapses == 4
    # the covariance peaks on the flanks of the puncta: find the object around the corner
    boxes = ndimage.find_objects(single.labels)
    corner_id = next(
        i + 1
        for i, sl in enumerate(boxes)
        if all(s.start <= c < s.stop for s, c in zip(sl, (8, 16, 16), strict=True))
    )
    blocks_hit = {
        tuple(int(c) // b for c, b in zip(v, block, strict=True))
        for v in np.argwhere(single.labels == corner_id)
    }
    assert len(blocks_hit) == 8
    result = blockwise_detect(pre8, post8, min_size=10, block_shape=block, workdir=tmp_path)
    assert_same_result(single, result)


@pytest.mark.parametrize("seed", range(12))
def test_random_volumes_equal_single_job(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(3, 26, 3))
    dtype = np.uint16 if seed % 4 == 3 else np.uint8
    top = 4000 if dtype is np.uint16 else 255
    # correlated smooth structure + independent noise: a covariance with real tails
    common = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 1.5))
    pre = np.clip(common * top * 2 + rng.normal(0, top / 20, shape), 0, top).astype(dtype)
    post = np.clip(common * top * 2 + rng.normal(0, top / 20, shape), 0, top).astype(dtype)
    min_size = int(rng.integers(0, 6))
    single = detection.detect(pre, post, min_size=min_size)
    block = tuple(int(v) for v in rng.integers(1, 9, 3))
    result = blockwise_detect(pre, post, min_size=min_size, block_shape=block)
    assert_same_result(single, result)


def test_window_5_and_absolute_coordinates() -> None:
    exp = synthetic.make_experiment(
        (12, 64, 64),
        seed=3,
        profile="sparse",
        channels=[synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC],
    )
    pre, post = exp.channels[synthetic.PRESYNAPTIC], exp.channels[synthetic.POSTSYNAPTIC]
    single = detection.detect(pre, post, window=5, min_size=20)
    # the same volume placed at a BOSS offset: blocks cut on the absolute grid
    source = ArraySource(pre, post, origin=(100, 1000, 2000))
    kernel = NomadsKernel(window=5, min_size=20)
    plan = plan_request(source.box, block_shape=(8, 24, 24), alignment=(8, 8, 8), halo=kernel.halo)
    # the grid is anchored at voxel 0, not at the request: the first blocks are partial
    assert plan.grid_shape == (2, 4, 3)
    assert plan.block(0) == Box((100, 1000, 2000), (104, 1008, 2016))
    result = blockwise_detect(None, None, window=5, min_size=20, plan=plan, source=source)
    assert_same_result(single, result)


def test_errors_are_the_single_job_errors() -> None:
    flat = np.zeros((6, 8, 8), np.uint8)
    ok = np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8)
    with pytest.raises(DetectionError) as single_err:
        detection.detect(flat, ok)
    with pytest.raises(DetectionError) as block_err:
        blockwise_detect(flat, ok, block_shape=(3, 4, 4))
    assert str(block_err.value) == str(single_err.value)
    with pytest.raises(DetectionError, match="narrower"):
        blockwise_detect(ok[:, :2], ok[:, :2], block_shape=(3, 2, 4))
    with pytest.raises(DetectionError, match="dtype"):
        blockwise_detect(ok.astype(np.float32), ok.astype(np.float32), block_shape=(3, 4, 4))
    with pytest.raises(DetectionError, match="window"):
        NomadsKernel(window=4)


def test_a_thin_stack_is_detected_plane_by_plane_as_in_one_job(
    experiment: tuple[np.ndarray, np.ndarray],
) -> None:
    pre, post = (np.ascontiguousarray(a[3:5]) for a in experiment)
    single = detection.detect(pre, post, min_size=2)
    assert single.parameters["window_shape"] == [1, 3, 3] and single.n_synapses > 0
    result = blockwise_detect(pre, post, min_size=2, block_shape=(1, 32, 48))
    assert_same_result(single, result)


def test_nothing_covaries_gives_an_empty_result() -> None:
    rng = np.random.default_rng(0)
    pre = rng.integers(0, 255, (6, 10, 10), dtype=np.uint8)
    post = rng.integers(0, 255, (6, 10, 10), dtype=np.uint8)
    single = detection.detect(pre, post)
    result = blockwise_detect(pre, post, block_shape=(3, 4, 5))
    assert_same_result(single, result)
    assert Box.from_shape(pre.shape).size == result.mask.size


class CountingSource(ArraySource):
    def __init__(self, pre: np.ndarray, post: np.ndarray):
        super().__init__(pre, post)
        self.reads = 0

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        self.reads += 1
        return super().read(box)


@pytest.mark.parametrize("fraction", [0.04, 1e-9])
def test_candidates_or_recompute_give_the_same_answer(
    experiment: tuple[np.ndarray, np.ndarray],
    single: detection.DetectionResult,
    fraction: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The label pass builds the mask from the recorded candidates when the threshold is at
    or above a block's cutoff (one read per block), else re-reads and recomputes."""
    from synapse_pipelines.blockwise import nomads

    monkeypatch.setattr(nomads, "CANDIDATE_FRACTION", fraction)
    source = CountingSource(*experiment)
    result = blockwise_detect(None, None, block_shape=(8, 40, 40), source=source)
    assert_same_result(single, result)
    n_blocks = 3 * 3 * 3
    if fraction > 0.01:
        assert source.reads == n_blocks  # candidates covered every block
    else:
        # blocks whose candidates stop short of the threshold are re-read (a block whose
        # maximum is below the threshold is still covered: it has no foreground)
        assert n_blocks < source.reads <= 2 * n_blocks


@pytest.mark.parametrize("suffix", [".npy", ".tif", ".zarr"])
def test_file_sources_read_block_by_block(tmp_path: Path, suffix: str) -> None:
    """Channels on disk (NumPy, TIFF, Zarr) are read one block at a time and give the
    in-memory answer."""
    import tifffile
    import zarr

    from synapse_pipelines.blockwise.sources import open_file_source

    exp = synthetic.make_experiment(
        (10, 48, 40),
        seed=8,
        profile="sparse",
        channels=[synthetic.PRESYNAPTIC, synthetic.POSTSYNAPTIC],
    )
    arrays = [exp.channels[synthetic.PRESYNAPTIC], exp.channels[synthetic.POSTSYNAPTIC]]
    paths = [tmp_path / f"pre{suffix}", tmp_path / f"post{suffix}"]
    for path, array in zip(paths, arrays, strict=True):
        if suffix == ".npy":
            np.save(path, array)
        elif suffix == ".tif":
            tifffile.imwrite(path, array)
        else:
            z = zarr.create_array(
                store=str(path), shape=array.shape, chunks=(5, 16, 16), dtype=array.dtype
            )
            z[...] = array
    source = open_file_source(*paths)
    result = blockwise_detect(None, None, min_size=5, block_shape=(4, 16, 16), source=source)
    assert_same_result(detection.detect(*arrays, min_size=5), result)
