"""NOMADS detector: science (vs the original formula), robustness, errors, parameters."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synapse_pipelines.core.errors import DetectionError, RequestValidationError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science.detection import (
    DetectionResult,
    covariance_numerator,
    detect,
    extended_block,
    filter_components,
    label_components,
)
from synapse_pipelines.science.evaluation import evaluate_labels
from synapse_pipelines.science.nomads_original import _otsu_256, original_nomads
from synapse_pipelines.science.nomads_plugin import (
    COLLMAN15V2_VOXEL_NM,
    DEFAULT_MIN_VOLUME_UM3,
    NomadsUnsupervised,
)
from synapse_pipelines.science.synthetic import MATCH_NM, make_experiment
from synapse_pipelines.science.voxel_units import min_size_voxels


@pytest.fixture(scope="module")
def experiment():
    return make_experiment((12, 192, 192), seed=3, profile="sparse")


@pytest.fixture(scope="module")
def result(experiment) -> DetectionResult:
    return detect(experiment.channels["Synapsin647"], experiment.channels["PSD95_488"])


def _score(labels: np.ndarray, points: np.ndarray, experiment):
    return evaluate_labels(labels, points, max_distance=MATCH_NM, voxel_size=experiment.voxel_size)


def test_finds_synapses_not_decoys(experiment, result) -> None:
    assert experiment.n_synapses >= 25
    score = _score(result.labels, experiment.synapse_centroids, experiment)
    assert score.precision >= 0.95, score
    assert score.recall >= 0.9, score
    for kind in ("psd_only", "synapsin_only", "inhibitory"):
        decoys = experiment.decoys[kind]
        assert len(decoys) > 0
        assert _score(result.labels, decoys, experiment).tp == 0, kind


def test_original_formula_flags_psd_only_decoys_where_ours_does_not(experiment, result) -> None:
    pre, post = experiment.channels["Synapsin647"], experiment.channels["PSD95_488"]
    original, _ = ndimage.label(original_nomads(pre, post) > 0, structure=np.ones((3, 3, 3)))
    psd_only = experiment.decoys["psd_only"]
    orig_decoys = _score(original, psd_only, experiment)
    ours_decoys = _score(result.labels, psd_only, experiment)
    # the original's statistic is 2 * smoothed PSD95: it finds most PSD-only puncta ...
    assert orig_decoys.recall >= 0.7, orig_decoys
    assert ours_decoys.tp == 0
    # ... so its precision against the true synapses is poor, ours is not
    orig = _score(original, experiment.synapse_centroids, experiment)
    ours = _score(result.labels, experiment.synapse_centroids, experiment)
    assert orig.precision <= 0.8, orig
    assert ours.precision - orig.precision >= 0.2
    assert ours.f1 > orig.f1


def test_original_formula_is_twice_the_smoothed_postsynaptic_channel() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 6, 7, 8))
    k = np.full((3, 3, 3), 1 / 27)
    line = ndimage.convolve(x + y, k) - ndimage.convolve(x, k) + ndimage.convolve(y, k)
    np.testing.assert_allclose(line, 2 * ndimage.convolve(y, k), atol=1e-12)


def test_a_few_saturated_specks_do_not_collapse_the_threshold() -> None:
    """Plain Otsu over the whole map (the original) puts the split between a saturated,
    autofluorescent speck and everything else; the clipped Otsu still finds the synapses."""
    exp = make_experiment((8, 128, 128), seed=11, profile="sparse")
    pre = exp.channels["Synapsin647"].copy()
    post = exp.channels["PSD95_488"].copy()
    for z0, y0, x0 in ((2, 20, 20), (5, 100, 40)):  # two bright specks in both channels
        pre[z0 : z0 + 2, y0 : y0 + 2, x0 : x0 + 2] = 255
        post[z0 : z0 + 2, y0 : y0 + 2, x0 : x0 + 2] = 255
    res = detect(pre, post)
    score = _score(res.labels, exp.synapse_centroids, exp)
    assert score.recall >= 0.8, score
    whole = Box.from_shape(pre.shape)
    num = covariance_numerator(extended_block(pre, whole), extended_block(post, whole))
    plain = num > _otsu_256(num.astype(np.float64))
    labels, sizes = label_components(plain)
    labels, _ = filter_components(labels, sizes, 30)
    assert _score(labels, exp.synapse_centroids, exp).recall < 0.2


def test_a_single_plane_is_detected_in_2d() -> None:
    exp = make_experiment((1, 160, 160), seed=12, profile="sparse")
    res = detect(exp.channels["Synapsin647"], exp.channels["PSD95_488"], min_size=0)
    assert res.parameters["window_shape"] == [1, 3, 3]
    assert res.n_synapses > 0
    score = _score(res.labels, exp.synapse_centroids, exp)
    assert score.recall >= 0.6, score


def test_result_contract(experiment, result) -> None:
    assert result.labels.shape == experiment.shape
    assert result.labels.dtype in (np.uint32, np.uint64)
    assert result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 255}
    np.testing.assert_array_equal(result.mask == 255, result.labels > 0)
    ids = np.unique(result.labels)
    np.testing.assert_array_equal(ids, np.arange(result.n_synapses + 1))
    # numbered in raster order of each component's first voxel
    flat = result.labels.ravel()
    first = np.unique(flat[flat > 0], return_index=True)[1]
    assert np.all(np.diff(first) > 0)
    assert np.isfinite(result.threshold) and result.threshold > 0
    assert result.parameters["window"] == 3 and result.parameters["min_size"] == 30
    # every component is larger than min_size
    assert np.bincount(flat)[1:].min() > 30


def test_deterministic_and_inputs_untouched(experiment) -> None:
    pre = np.array(experiment.channels["Synapsin647"])  # writable copies
    post = np.array(experiment.channels["PSD95_488"])
    before = (pre.copy(), post.copy())
    a = detect(pre, post)
    b = detect(pre, post)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(pre, before[0])
    np.testing.assert_array_equal(post, before[1])


def test_uint16_is_used_at_full_precision(experiment, result) -> None:
    # 12-bit data (0..4095): the original's rescale by 65535 would leave 0..15
    pre = experiment.channels["Synapsin647"].astype(np.uint16) * 16
    post = experiment.channels["PSD95_488"].astype(np.uint16) * 16
    res16 = detect(pre, post)
    assert res16.n_synapses == result.n_synapses
    same = np.count_nonzero((res16.labels > 0) == (result.labels > 0)) / result.labels.size
    assert same > 0.999
    assert res16.threshold == pytest.approx(result.threshold, rel=0.05)


def test_big_endian_uint16_is_accepted(experiment, result) -> None:
    pre = (experiment.channels["Synapsin647"].astype(np.uint16) * 16).astype(">u2")
    post = (experiment.channels["PSD95_488"].astype(np.uint16) * 16).astype(">u2")
    res = detect(pre, post)
    assert res.n_synapses == result.n_synapses


def test_size_filter_is_strictly_larger_than_min_size() -> None:
    mask = np.zeros((5, 20, 40), dtype=bool)
    mask[1, 2, 0:30] = True  # exactly 30 voxels: dropped
    mask[3, 10, 0:31] = True  # 31 voxels: kept
    labels, sizes = label_components(mask)
    out, n = filter_components(labels, sizes, 30)
    assert n == 1
    assert np.count_nonzero(out) == 31 and out[3, 10, 0] == 1


def test_size_limit_is_physical_the_originals_30_collman15v2_voxels() -> None:
    assert min_size_voxels(DEFAULT_MIN_VOLUME_UM3, COLLMAN15V2_VOXEL_NM) == 30
    assert min_size_voxels(DEFAULT_MIN_VOLUME_UM3, (70.0, 100.0, 100.0)) == 0  # < 1 AT voxel
    assert min_size_voxels(0.021, (70.0, 100.0, 100.0)) == 30
    assert min_size_voxels(0.021, (140.0, 100.0, 50.0)) == 30  # anisotropic, same volume
    assert min_size_voxels(0.0, (70.0, 100.0, 100.0)) == 0


def test_components_are_26_connected() -> None:
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 1] = mask[2, 2, 2] = True  # corner-to-corner only
    mask[0, 3, 3] = True
    labels, sizes = label_components(mask)
    assert labels.max() == 2
    assert list(sizes[1:]) == [3, 1]


def test_parameters_are_configurable(experiment) -> None:
    pre, post = experiment.channels["Synapsin647"], experiment.channels["PSD95_488"]
    big = detect(pre, post, min_size=200)
    assert big.parameters["min_size"] == 200
    assert big.n_synapses < detect(pre, post).n_synapses
    w5 = detect(pre, post, window=5)
    assert w5.parameters["window"] == 5 and w5.n_synapses > 0


@pytest.mark.parametrize(
    ("pre", "post", "kwargs", "field"),
    [
        (np.zeros((4, 8, 8), np.uint8), np.zeros((4, 8, 9), np.uint8), {}, "postsynaptic"),
        (np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.uint8), {}, "presynaptic"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros((4, 8, 8), np.int16), {}, "postsynaptic"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {}, "presynaptic"),
        (np.zeros((4, 2, 8), np.uint8), np.zeros((4, 2, 8), np.uint8), {}, "volume"),
        (np.ones((4, 8, 8), np.uint8), np.ones((4, 8, 8), np.uint8), {"window": 4}, "window"),
        (np.ones((4, 8, 8), np.uint8), np.ones((4, 8, 8), np.uint8), {"min_size": -1}, "min_size"),
    ],
)
def test_bad_input_raises_detection_error_naming_the_field(pre, post, kwargs, field) -> None:
    with pytest.raises(DetectionError) as err:
        detect(pre, post, **kwargs)
    assert err.value.field == field
    assert "Fix:" in str(err.value)


def test_flat_or_all_zero_channels_give_a_clear_error_not_nans() -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, size=(6, 32, 32), dtype=np.uint8)
    zeros = np.zeros_like(noise)
    with pytest.raises(DetectionError, match="constant") as err:
        detect(noise, zeros)
    assert err.value.field == "postsynaptic"
    with pytest.raises(DetectionError, match="every voxel is 7"):
        detect(np.full_like(noise, 7), noise)


def test_anti_correlated_channels_give_an_empty_result_with_a_finite_threshold() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 255, size=(8, 64, 64), dtype=np.uint8)
    res = detect(a, 255 - a)  # every local covariance is <= 0
    assert res.n_synapses == 0
    assert not res.mask.any()
    assert np.isfinite(res.threshold)
    assert res.explanation and "do not rise together" in res.explanation


def test_components_at_or_below_the_size_limit_are_explained() -> None:
    exp = make_experiment((6, 96, 96), seed=13, profile="sparse")
    res = detect(exp.channels["Synapsin647"], exp.channels["PSD95_488"], min_size=10**6)
    assert res.n_synapses == 0
    assert res.explanation and "size limit of 1000000 voxels" in res.explanation


def test_plugin_run_validates_parameters_and_channels(experiment) -> None:
    pipe = NomadsUnsupervised()
    res = pipe.run(
        experiment.channels, "Synapsin647", "PSD95_488", voxel_size=(70, 100, 100),
        min_volume_um3=0.028,
    )  # fmt: skip
    assert res.parameters["min_volume_um3"] == 0.028
    assert res.parameters["min_size"] == 40  # 0.028 um^3 / 0.0007 um^3 per voxel
    with pytest.raises(RequestValidationError, match=r"pipeline_parameters\.min_size"):
        pipe.run(experiment.channels, "Synapsin647", "PSD95_488", min_size=40)
    with pytest.raises(DetectionError) as err:
        pipe.run(experiment.channels, "Synapsin647", "PSD95_488", voxel_size=(0, 1, 1))
    assert err.value.field == "voxel_size"
    with pytest.raises(RequestValidationError, match=r"pipeline_parameters\.windw"):
        pipe.run(experiment.channels, "Synapsin647", "PSD95_488", windw=3)
    with pytest.raises(RequestValidationError, match=r"pipeline_parameters\.window.*odd"):
        pipe.run(experiment.channels, "Synapsin647", "PSD95_488", window=4)
    with pytest.raises(DetectionError, match="not among the channels"):
        pipe.run(experiment.channels, "Synapsin", "PSD95_488")
