"""detect() is a composition of block primitives: any tiling gives the same answer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import (
    connected_components,
    detection,
    nomads_primitives,
    nomads_threshold,
)
from synapse_pipelines.science.detection import (
    ChannelStats,
    CovarianceHistogram,
    channel_stats,
    covariance_histogram,
    covariance_numerator,
    detect,
    extended_block,
    filter_components,
    halo,
    label_components,
    pad_to_extended,
    threshold_from_histogram,
)
from synapse_pipelines.science.histogram_bins import N_BINS, bin_index, bin_lower_edges
from synapse_pipelines.science.synthetic import make_experiment


@pytest.fixture(scope="module")
def channels():
    exp = make_experiment((11, 70, 90), seed=5, n_synapses=12, profile="sparse")
    return exp.channels["Synapsin647"], exp.channels["PSD95_488"]


def _blocks(shape, cuts):
    edges = [list(itertools.pairwise([0, *c, s])) for s, c in zip(shape, cuts, strict=True)]
    for (z0, z1), (y0, y1), (x0, x1) in itertools.product(*edges):
        yield Box((z0, y0, x0), (z1, y1, x1))


def _reference_numerator(pre, post, window):
    """Float64 local covariance with explicit loops over window offsets (independent)."""
    h = window // 2
    x = np.pad(pre.astype(np.float64), h, mode="edge")
    y = np.pad(post.astype(np.float64), h, mode="edge")
    n = window**3
    sx = np.zeros(pre.shape)
    sy = np.zeros(pre.shape)
    sxy = np.zeros(pre.shape)
    for dz, dy, dx in itertools.product(range(window), repeat=3):
        sl = (
            slice(dz, dz + pre.shape[0]),
            slice(dy, dy + pre.shape[1]),
            slice(dx, dx + pre.shape[2]),
        )
        sx += x[sl]
        sy += y[sl]
        sxy += x[sl] * y[sl]
    return n * sxy - sx * sy


@pytest.mark.parametrize("window", [3, 5])
def test_numerator_matches_an_independent_reference(channels, window) -> None:
    pre, post = channels
    whole = Box.from_shape(pre.shape)
    num = covariance_numerator(
        extended_block(pre, whole, window), extended_block(post, whole, window), window=window
    )
    np.testing.assert_array_equal(num, _reference_numerator(pre, post, window))


def test_any_tiling_reproduces_detect_voxel_for_voxel(channels) -> None:
    pre, post = channels
    window, min_size = 3, 30
    expected = detect(pre, post, window=window, min_size=min_size)
    cuts = ([3, 4, 9], [1, 33, 64], [45])  # uneven blocks, one a single plane thick
    stats_pre, stats_post = ChannelStats.empty(), ChannelStats.empty()
    hist = CovarianceHistogram.empty()
    numerator = np.zeros(pre.shape, dtype=np.int64)
    for box in _blocks(pre.shape, cuts):
        stats_pre = stats_pre + channel_stats(pre[box.slices()])
        stats_post = stats_post + channel_stats(post[box.slices()])
        # read with the halo clipped to the volume, then apply the border rule
        h = halo(window)
        grown = box.grow((h, h, h), within=Box.from_shape(pre.shape))
        ext_pre = pad_to_extended(pre[grown.slices()], box, pre.shape, window)
        ext_post = pad_to_extended(post[grown.slices()], box, pre.shape, window)
        num = covariance_numerator(ext_pre, ext_post, window=window)
        numerator[box.slices()] = num
        hist = hist + covariance_histogram(num)
    assert stats_pre == channel_stats(pre)
    assert stats_post == channel_stats(post)
    t = threshold_from_histogram(hist)
    assert t == expected.parameters["threshold_numerator"]
    labels, sizes = label_components(numerator >= t)
    labels, n = filter_components(labels, sizes, min_size)
    assert n == expected.n_synapses > 0
    np.testing.assert_array_equal(labels, expected.labels)


def test_histogram_round_trips_and_bins_are_exact() -> None:
    values = np.array(
        [0, 1, 31, 32, 33, 63, 64, 65, 1000, 2**40 + 5, 2**53 - 1, 2**53, 2**53 + 1, 2**62 + 7]
    )
    idx = bin_index(values)
    edges = bin_lower_edges()
    assert len(edges) == N_BINS and np.all(np.diff(edges) > 0)
    upper = np.append(edges[1:], np.iinfo(np.int64).max)
    assert np.all(edges[idx] <= values) and np.all(values < upper[idx])
    # every edge falls in its own bin, and the integer just below it in the previous one
    np.testing.assert_array_equal(bin_index(edges), np.arange(N_BINS))
    np.testing.assert_array_equal(bin_index(edges[1:] - 1), np.arange(N_BINS - 1))
    h = covariance_histogram(np.array([[[-5, 0, 5, 7, 40]]]))
    assert h.positive.sum() == 3 and h.negative.sum() == 1
    assert CovarianceHistogram.from_dict(h.to_dict()).positive.tolist() == h.positive.tolist()


def test_threshold_is_otsu_of_the_positive_part_clipped_at_its_quantile() -> None:
    assert threshold_from_histogram(CovarianceHistogram.empty()) == 1  # nothing co-varies
    negative_only = covariance_histogram(np.array([[[-9, -50, -900]]]))
    assert threshold_from_histogram(negative_only) == 1  # numerator >= 1: no voxel
    rng = np.random.default_rng(0)
    background = rng.integers(1, 200, 20_000)  # weak positive covariance
    synapses = rng.integers(5_000, 9_000, 500)  # strongly co-varying voxels
    negatives = -rng.integers(1, 50_000, 40_000)  # many one-channel puncta: ignored
    values = np.concatenate([background, synapses, negatives]).reshape(1, 1, -1)
    t = threshold_from_histogram(covariance_histogram(values))
    assert 200 <= t <= 5_000
    # a few saturated specks above the 99.5th percentile do not pull the split
    specks = np.full(100, 10**9)
    with_specks = np.concatenate([values.ravel(), specks]).reshape(1, 1, -1)
    assert 200 <= threshold_from_histogram(covariance_histogram(with_specks)) <= 5_000
    # one filled bin: every co-varying voxel is foreground
    single = covariance_histogram(np.full((1, 1, 10), 40))
    assert threshold_from_histogram(single) <= 40


def test_thin_volumes_use_a_per_plane_window() -> None:
    assert detection.effective_window(3, (1, 50, 50)) == (1, 3, 3)
    assert detection.effective_window(3, (2, 50, 50)) == (1, 3, 3)
    assert detection.effective_window(3, (3, 50, 50)) == (3, 3, 3)
    rng = np.random.default_rng(1)
    pre = rng.integers(0, 255, (2, 20, 30), dtype=np.uint8)
    post = rng.integers(0, 255, (2, 20, 30), dtype=np.uint8)
    whole = Box.from_shape(pre.shape)
    num = covariance_numerator(
        extended_block(pre, whole, (1, 3, 3)), extended_block(post, whole, (1, 3, 3)),
        window=(1, 3, 3),
    )  # fmt: skip
    for z in range(2):  # each plane alone: the 3x3 covariance of that plane
        plane = covariance_numerator(
            extended_block(pre[z : z + 1], Box.from_shape((1, 20, 30)), (1, 3, 3)),
            extended_block(post[z : z + 1], Box.from_shape((1, 20, 30)), (1, 3, 3)),
            window=(1, 3, 3),
        )
        np.testing.assert_array_equal(num[z : z + 1], plane)
    ref = nomads_primitives.numerator_reference(
        extended_block(pre, whole, (1, 3, 3)), extended_block(post, whole, (1, 3, 3)), (1, 3, 3)
    )
    np.testing.assert_array_equal(num, ref)


# --- the compiled kernels agree with the numpy/scipy reference implementations ---------


@pytest.mark.parametrize(
    ("dtype", "window"), [(np.uint8, 3), (np.uint8, 5), (np.uint8, 7), (np.uint16, 3)]
)
def test_compiled_numerator_equals_numpy_reference(dtype, window) -> None:
    rng = np.random.default_rng(window)
    top = np.iinfo(dtype).max
    shape = (window + 4, 23, 37)
    x = rng.integers(0, top, size=shape, endpoint=True, dtype=dtype)
    y = rng.integers(0, top, size=shape, endpoint=True, dtype=dtype)
    # extremes: saturated blocks and a checkerboard give the largest |numerators|
    x[:, :8, :8] = top
    y[:, :8, :8] = (np.indices((shape[0], 8, 8)).sum(axis=0) % 2 * top).astype(dtype)
    got = covariance_numerator(x, y, window=window)
    want = nomads_primitives.numerator_reference(x, y, window)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_compiled_histogram_equals_numpy_reference() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.integers(-70_000, 70_000, size=5000),
            rng.integers(-(2**40), 2**40, size=500),
            np.array([0, 1, -1, 65535, 65536, -65536, -65535, 2**62, -(2**62)]),
        ]
    ).reshape(1, 1, -1)
    got = covariance_histogram(values)
    want = nomads_threshold.histogram_reference(values)
    np.testing.assert_array_equal(got.positive, want.positive)
    np.testing.assert_array_equal(got.negative, want.negative)


@pytest.mark.parametrize("density", [0.05, 0.3, 0.6])
def test_compiled_labels_equal_scipy(density: float) -> None:
    rng = np.random.default_rng(int(density * 100))
    mask = rng.random((9, 31, 29)) < density
    labels, sizes = label_components(mask)
    want_labels, want_sizes = connected_components.label_reference(mask)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(sizes, want_sizes)


def test_compiled_detect_equals_numpy_detect(channels) -> None:
    pre, post = channels
    res = detect(pre, post)
    t_num, labels, mask, n, _ = detection._detect_numpy(pre, post, (3, 3, 3), 30, {})
    assert t_num == res.parameters["threshold_numerator"]
    assert n == res.n_synapses > 0
    np.testing.assert_array_equal(labels, res.labels)
    np.testing.assert_array_equal(mask, res.mask)
