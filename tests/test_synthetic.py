"""The seeded synthetic experiments: the realistic default (determinism, shapes, dtypes,
knobs, calibration to at_example, a well-defined truth) and the pinned sparse profile."""

from __future__ import annotations

import numpy as np
import pytest

from synapse_pipelines.science.synthetic import (
    ALL_CHANNELS,
    AT_EXAMPLE_INTENSITY,
    POSTSYNAPTIC,
    PRESYNAPTIC,
    intensity_statistics,
    make_experiment,
    oracle_f1,
)

PAIR = [PRESYNAPTIC, POSTSYNAPTIC]
SHAPE = (8, 160, 192)


@pytest.fixture(scope="module")
def realistic():
    return make_experiment(SHAPE, seed=11)


# -- the realistic default ----------------------------------------------------------------


def test_default_profile_is_realistic_and_deterministic(realistic) -> None:
    assert realistic.profile == "realistic"
    again = make_experiment(SHAPE, seed=11)
    for name in ALL_CHANNELS:
        np.testing.assert_array_equal(again.channels[name], realistic.channels[name])
    np.testing.assert_array_equal(again.annotation, realistic.annotation)
    np.testing.assert_array_equal(again.synapse_centroids, realistic.synapse_centroids)
    other = make_experiment(SHAPE, seed=12, channels=PAIR)
    assert not np.array_equal(other.channels[PRESYNAPTIC], realistic.channels[PRESYNAPTIC])


def test_channel_subset_renders_identical_arrays(realistic) -> None:
    subset = make_experiment(SHAPE, seed=11, channels=["PSD95_488", "DAPI1st"])
    assert sorted(subset.channels) == ["DAPI1st", "PSD95_488"]
    for name in subset.channels:
        np.testing.assert_array_equal(subset.channels[name], realistic.channels[name])
    np.testing.assert_array_equal(subset.synapse_centroids, realistic.synapse_centroids)


def test_channels_are_read_only_zyx_with_anisotropic_voxels(realistic) -> None:
    assert set(realistic.channels) == set(ALL_CHANNELS)
    for arr in realistic.channels.values():
        assert arr.dtype == np.uint8 and arr.shape == SHAPE
        assert not arr.flags.writeable
    assert realistic.annotation.dtype == np.uint64
    assert realistic.voxel_unit == "nanometers"
    assert realistic.voxel_size == (70.0, 100.0, 100.0)


def test_uint16_is_the_uint8_image_rescaled() -> None:
    a = make_experiment((3, 64, 64), seed=4, channels=PAIR)
    b = make_experiment((3, 64, 64), seed=4, channels=PAIR, dtype="uint16")
    for name in PAIR:
        assert b.channels[name].dtype == np.uint16
        # same image; the uint16 rounding of x257 can differ from 257 x (uint8) by < 1 level
        diff = b.channels[name].astype(np.int64) - 257 * a.channels[name].astype(np.int64)
        assert np.abs(diff).max() <= 257


@pytest.mark.parametrize("shape", [(1, 96, 80), (2, 64, 64), (3, 48, 72)])
def test_single_planes_and_thin_stacks(shape) -> None:
    exp = make_experiment(shape, seed=3, channels=PAIR)
    assert exp.channels[PRESYNAPTIC].shape == shape
    assert exp.annotation.shape == shape
    assert exp.n_synapses > 0
    assert np.all((exp.synapse_centroids[:, 0] >= -0.5) & (exp.synapse_centroids[:, 0] < shape[0]))
    assert exp.channels[PRESYNAPTIC].max() > 100  # puncta are there


def test_annotation_labels_each_synapse_near_its_centroid(realistic) -> None:
    n = realistic.n_synapses
    assert int(realistic.annotation.max()) == n
    assert len(realistic.pre_centroids) == len(realistic.post_centroids) == n
    idx = np.rint(realistic.synapse_centroids).astype(int)
    idx = np.clip(idx, 0, np.array(SHAPE) - 1)
    ids = realistic.annotation[tuple(idx.T)]
    # the midpoint sits between two overlapping puncta: covered by a label (its own, or a
    # touching neighbour's) nearly always
    assert (ids == np.arange(1, n + 1)).mean() >= 0.8


def test_puncta_are_where_the_truth_says(realistic) -> None:
    syn = realistic.channels[PRESYNAPTIC].astype(float)
    psd = realistic.channels[POSTSYNAPTIC].astype(float)

    def at(points: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.clip(np.rint(points).astype(int), 0, np.array(SHAPE) - 1).T)

    assert np.median(syn[at(realistic.pre_centroids)]) > np.percentile(syn, 90)
    assert np.median(psd[at(realistic.post_centroids)]) > np.percentile(psd, 90)
    # unpaired puncta are bright in their own channel only
    d = at(realistic.decoys["synapsin_only"])
    assert np.median(syn[d]) > np.percentile(syn, 90)
    assert np.median(psd[d]) < np.percentile(psd, 75)
    p = at(realistic.decoys["psd_only"])
    assert np.median(psd[p]) > np.percentile(psd, 90)
    assert np.median(syn[p]) < np.percentile(syn, 75)


def test_most_puncta_are_unpaired_in_each_channel(realistic) -> None:
    n = realistic.n_synapses
    for name in PAIR:
        assert len(realistic.puncta[name]) > 2 * n  # > 50 % unpaired


def test_truth_rules_hold(realistic) -> None:
    v = np.asarray(realistic.voxel_size)
    off = np.linalg.norm((realistic.post_centroids - realistic.pre_centroids) * v, axis=1)
    assert off.max() <= 250.0 + 1e-6
    c = realistic.synapse_centroids * v
    d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(c)) * 1e9
    assert d.min() >= 450.0 - 1e-6
    psd_only = realistic.decoys["psd_only"] * v
    dd = np.linalg.norm(psd_only[:, None] - realistic.puncta[PRESYNAPTIC][None] * v, axis=-1)
    assert dd.min() >= 350.0 - 1e-6


def test_default_profile_matches_at_example_intensity_statistics() -> None:
    """Nobody quietly makes the default easy again: at_example's intensity profile (dark
    background, bright dense puncta) within the calibrated ranges, on two seeds."""
    for seed in (0, 1):
        exp = make_experiment((8, 384, 384), seed=seed, channels=PAIR)
        for name in PAIR:
            got = intensity_statistics(exp.channels[name])
            real = AT_EXAMPLE_INTENSITY[name]
            for key, want in real.items():
                # 30 %, and one grey level for the median (an integer of 4 or 5)
                tol = 0.3 * want + (1.0 if key == "p50" else 0.0)
                assert abs(got[key] - want) <= tol, (seed, name, key, got[key], want)
        # dense puncta: about one synapse per cubic micrometre, most puncta unpaired
        assert 0.7 <= exp.params["synapse_density_um3"] <= 1.3
        assert exp.params["post_unpaired_um3"] > 1.5 * exp.params["synapse_density_um3"]
        assert exp.params["pre_unpaired_um3"] > 1.0 * exp.params["synapse_density_um3"]


def test_truth_is_well_defined_at_the_default() -> None:
    """A perfect pairing of the true puncta centres reaches F1 >= 0.95 on the default, and
    stays there when density doubles (the spacing rules, not sparsity, define the truth)."""
    for density in (1.0, 2.0):
        exp = make_experiment((8, 256, 256), seed=5, density=density, channels=PAIR)
        score = oracle_f1(exp)
        assert score["f1"] >= 0.95, (density, score)


def test_knobs_move_what_they_name() -> None:
    base = make_experiment((6, 128, 128), seed=2, channels=PAIR)
    bright = make_experiment((6, 128, 128), seed=2, snr=2.0, channels=PAIR)
    assert np.percentile(bright.channels[PRESYNAPTIC], 99.5) > np.percentile(
        base.channels[PRESYNAPTIC], 99.5
    )
    dense = make_experiment((6, 128, 128), seed=2, density=2.0, channels=PAIR)
    assert dense.n_synapses > 1.3 * base.n_synapses
    lonely = make_experiment((6, 128, 128), seed=2, unpaired=3.0, channels=PAIR)
    assert len(lonely.decoys["psd_only"]) > 1.5 * len(base.decoys["psd_only"])
    assert lonely.n_synapses == base.n_synapses
    flat = make_experiment((6, 128, 128), seed=2, drift=0.0, channels=PAIR)
    means = base.channels[POSTSYNAPTIC].reshape(6, -1).mean(axis=1)
    flat_means = flat.channels[POSTSYNAPTIC].reshape(6, -1).mean(axis=1)
    assert flat_means.std() / flat_means.mean() < means.std() / means.mean()


def test_registration_shift_and_misregistration() -> None:
    exp = make_experiment((4, 96, 96), seed=1, channels=PAIR)
    shift, rot = exp.registration[POSTSYNAPTIC]
    # default: a constant 50 nm in-plane shift of PSD-95, no rotation
    np.testing.assert_allclose(np.hypot(shift[:, 0], shift[:, 1]) * 100.0, 50.0)
    assert rot == 0.0
    assert not np.any(exp.registration[PRESYNAPTIC][0])
    none = make_experiment((4, 96, 96), seed=1, shift_nm=0.0, channels=PAIR)
    assert not np.any(none.registration[POSTSYNAPTIC][0])
    z_shift = make_experiment((4, 96, 96), seed=1, shift_nm=(70.0, 0.0, 100.0), channels=PAIR)
    np.testing.assert_allclose(z_shift.registration[POSTSYNAPTIC][0], [[0.0, 1.0]] * 4)
    bad = make_experiment((4, 96, 96), seed=1, misregistration=1.0, channels=PAIR)
    shifts, rot = bad.registration[POSTSYNAPTIC]
    assert abs(rot) == pytest.approx(0.7)
    assert np.sqrt((shifts**2).sum(axis=1).mean()) * 100.0 > 300.0  # ~0.9 um RMS


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown synthetic channel"):
        make_experiment(SHAPE, seed=1, channels=["Nope"])
    with pytest.raises(ValueError, match="unknown profile"):
        make_experiment(SHAPE, seed=1, profile="easy")
    with pytest.raises(ValueError, match="n_synapses applies to profile='sparse'"):
        make_experiment(SHAPE, seed=1, n_synapses=10)
    with pytest.raises(ValueError, match="snr must be"):
        make_experiment(SHAPE, seed=1, snr=-1.0)
    with pytest.raises(ValueError, match="unknown profile override"):
        make_experiment(SHAPE, seed=1, brightness=3)
    with pytest.raises(ValueError, match="shape must be"):
        make_experiment((0, 16, 16), seed=1)
    with pytest.raises(ValueError, match="dtype"):
        make_experiment(SHAPE, seed=1, dtype="float32")  # type: ignore[arg-type]


def test_overrides_reach_the_profile() -> None:
    near = make_experiment((4, 96, 96), seed=6, offset_nm=100.0, offset_sd_nm=0.0, channels=PAIR)
    v = np.asarray(near.voxel_size)
    off = np.linalg.norm((near.post_centroids - near.pre_centroids) * v, axis=1)
    np.testing.assert_allclose(off, 100.0)


# -- the sparse profile (the first build's generator, pinned by older tests) ---------------


@pytest.fixture(scope="module")
def sparse():
    return make_experiment((12, 128, 160), seed=11, profile="sparse", n_synapses=40)


def test_sparse_profile_is_deterministic_and_subsettable(sparse) -> None:
    again = make_experiment((12, 128, 160), seed=11, profile="sparse", n_synapses=40)
    for name in ALL_CHANNELS:
        np.testing.assert_array_equal(again.channels[name], sparse.channels[name])
    subset = make_experiment(
        (12, 128, 160), seed=11, profile="sparse", n_synapses=40, channels=["DAPI1st"]
    )
    np.testing.assert_array_equal(subset.channels["DAPI1st"], sparse.channels["DAPI1st"])
    assert sparse.profile == "sparse"


def test_sparse_puncta_are_where_the_truth_says(sparse) -> None:
    cents = sparse.synapse_centroids
    assert cents.shape == (40, 3)
    assert int(sparse.annotation.max()) == 40
    ids = sparse.annotation[tuple(np.rint(cents).astype(int).T)]
    assert (ids == np.arange(1, 41)).mean() >= 0.9
    syn = sparse.channels["Synapsin647"].astype(float)
    psd = sparse.channels["PSD95_488"].astype(float)
    at = tuple(np.rint(cents).astype(int).T)
    assert syn[at].mean() > syn.mean() + 3 * syn.std()
    assert psd[at].mean() > psd.mean() + 3 * psd.std()
    d = tuple(np.rint(sparse.decoys["synapsin_only"]).astype(int).T)
    assert syn[d].mean() > syn.mean() + 3 * syn.std()
    assert psd[d].mean() < psd.mean() + psd.std()
    gad = sparse.channels["GAD647"].astype(float)
    inh = tuple(np.rint(sparse.decoys["inhibitory"]).astype(int).T)
    assert gad[inh].mean() > gad[at].mean() + 2 * gad.std()


def test_sparse_profile_refuses_realistic_knobs() -> None:
    with pytest.raises(ValueError, match="apply to the realistic profile"):
        make_experiment((4, 32, 32), seed=1, profile="sparse", snr=2.0)
    with pytest.raises(ValueError, match="do not fit"):
        make_experiment((4, 16, 16), seed=1, profile="sparse", n_synapses=500)
    u16 = make_experiment((4, 32, 32), seed=1, profile="sparse", dtype="uint16", channels=PAIR)
    u8 = make_experiment((4, 32, 32), seed=1, profile="sparse", channels=PAIR)
    np.testing.assert_array_equal(
        u16.channels[PRESYNAPTIC], 257 * u8.channels[PRESYNAPTIC].astype(np.uint16)
    )
