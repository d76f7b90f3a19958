"""PAIRS (paired puncta) from the outside: on synthetic scenes it finds every synapse once
and no unpaired punctum, is unmoved by section gain drift, offsets, dtype and anisotropic
voxels, explains every empty result (noise, a flat channel, misregistration, the size
filter), names the field of every bad input, and runs as the registered plug-in. The
compiled kernels and the block primitives against the reference: test_paired_puncta_exactness.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures.paired_puncta_scenes import (
    CASES,
    VOX,
    Points,
    bright_few_dim_many,
    layout as _layout,
    scene as _scene,
    tiles as _tiles,
)

from synapse_pipelines.core.errors import DetectionError, RequestValidationError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.pipelines import Pipeline, get_pipeline
from synapse_pipelines.science import paired_puncta as pp
from synapse_pipelines.science.evaluation import centroids_from_labels, evaluate_points
from synapse_pipelines.science.histogram_bins import N_BINS, bin_index
from synapse_pipelines.science.paired_puncta import (
    PairedPuncta,
    SectionHistograms,
    SectionThresholds,
    block_histograms,
    detect_paired_puncta,
    explain_empty,
    geometry,
    section_thresholds,
)
from synapse_pipelines.science.paired_puncta_thresholds import (
    LOG_SPLIT_BOUND,
    section_stats,
    strong_seed_levels,
)
from synapse_pipelines.science.synthetic import make_experiment


def _labels_near(result, nm: tuple[float, float, float], voxel=VOX) -> set[int]:  # type: ignore[no-untyped-def]
    """Labels within one voxel of a point (nm)."""
    z, y, x = (round(c / v) for c, v in zip(nm, voxel, strict=True))
    near = result.labels[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
    return {int(v) for v in np.unique(near)} - {0}


def _midpoint(pre: tuple[float, float, float]) -> tuple[float, float, float]:
    return (pre[0], pre[1], pre[2] + 75.0)  # half the default 150 nm offset along x


def _check_population(result, pairs: Points, *unpaired: Points, voxel=VOX) -> None:  # type: ignore[no-untyped-def]
    """Every synapse found once, no unpaired punctum found, nothing else found."""
    found = [_labels_near(result, _midpoint(p), voxel) for p in pairs]
    assert all(len(f) == 1 for f in found), found
    assert len(set().union(*found)) == len(pairs) == result.n_synapses
    for points in unpaired:
        assert not any(_labels_near(result, p, voxel) for p in points)


# --------------------------------------------------------------------------- the science


def test_pairs_are_found_and_unpaired_puncta_are_not() -> None:
    pairs, pre_only, post_only = _layout(seed=0)
    pre, post = _scene(pairs=pairs, pre_only=pre_only, post_only=post_only)
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    _check_population(res, pairs, pre_only, post_only)
    assert res.explanation is None and res.threshold == 1.0
    assert res.labels.dtype == np.uint32 and res.mask.dtype == np.uint8
    assert set(np.unique(res.mask)) == {0, 255}
    np.testing.assert_array_equal(res.mask > 0, res.labels > 0)
    json.dumps(res.parameters)  # the manifest stores them
    for ch in ("presynaptic", "postsynaptic"):
        assert len(res.parameters[ch]["threshold"]) == pre.shape[0]
        assert set(res.parameters[ch]) == {
            "median", "noise_sigma", "otsu_split", "threshold", "pixel_noise_sigma",
            "section_continuity",
        }  # fmt: skip


def _linear_splits(pre: np.ndarray, post: np.ndarray) -> list[list[float]]:
    """Each channel's and section's Otsu split of the positive D alone (the stack's rule)."""
    g = geometry(pre.shape, VOX)
    whole = Box.from_shape(pre.shape)
    hist = block_histograms(pre, post, whole, whole, g)
    floor = g.params["noise_floor_sigma"]
    return [
        [section_stats(hist.counts[z, c, :2], g.k, floor)[2] for z in range(pre.shape[0])]
        for c in (0, 1)
    ]


@pytest.mark.parametrize("seed", [0, 2])
def test_on_one_plane_a_few_bright_pairs_do_not_lift_the_split_above_the_rest(seed: int) -> None:
    """On a linear scale the three bright pairs take Otsu's upper class, and its split sits
    above the fifteen dim ones (measured: 3-6 of the 18 pairs found). One plane also splits
    log D above the noise floor, where the bright three weigh no more than their share:
    every pair is found once, no unpaired punctum."""
    pre, post, pairs, pre_only, post_only = bright_few_dim_many((1, 128, 128), seed)
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    _check_population(res, pairs, pre_only, post_only)
    assert res.parameters["otsu_split_scale"] == "linear, or log above the noise floor if lower"
    for channel, linear in zip(
        ("presynaptic", "postsynaptic"), _linear_splits(pre, post), strict=True
    ):
        split = res.parameters[channel]["otsu_split"][0]
        assert LOG_SPLIT_BOUND * linear[0] <= split < 0.75 * linear[0], channel


def test_a_stack_keeps_the_linear_split() -> None:
    """In a stack the z smoothing carries a neighbouring section's background (its gain
    drift) into a section's D and so into its noise floor, where the log split starts: a
    stack splits on the linear scale alone, section by section."""
    pre, post, *_ = bright_few_dim_many((6, 128, 128), 0)
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert res.parameters["otsu_split_scale"] == "linear"
    for channel, linear in zip(
        ("presynaptic", "postsynaptic"), _linear_splits(pre, post), strict=True
    ):
        assert res.parameters[channel]["otsu_split"] == pytest.approx(linear, rel=0, abs=0)


def test_the_log_split_stops_at_half_the_linear_one_without_noise() -> None:
    """A section without noise (its lower half all zero: sigma 0) and puncta whose tails
    fall smoothly: the log scale reaches down to the faintest tail and its split would
    collapse; it is bounded at LOG_SPLIT_BOUND of the linear split."""
    counts = np.zeros((2, N_BINS), np.int64)
    counts[0, 0] = 20_000  # D = 0: the background, no noise
    tail = np.rint(np.geomspace(1, 200_000, 4_000)).astype(np.int64)  # Gaussian tails
    np.add.at(counts[0], bin_index(tail), 1)
    np.add.at(counts[0], bin_index(np.full(40, 190_000)), 1)  # the puncta's cores
    _, sigma, linear, _ = section_stats(counts, 0.69, 2.5)
    assert sigma == 0.0
    _, _, split, threshold = section_stats(counts, 0.69, 2.5, log_split=True)
    assert split == LOG_SPLIT_BOUND * linear and threshold == 0.69 * split


def test_dim_synapses_are_found_as_weak_seeds() -> None:
    """Pairs at a quarter of the brightness fall below seed_level (the bright puncta set
    the Otsu split) but are punctum-sized patches of evidence: weak seeds find them, and
    with weak seeds off (weak_seed_level = seed_level) some are missed."""
    shape = (8, 64, 64)
    pairs, pre_only, post_only = _layout(shape, cells=4, seed=16)
    pre, post = _scene(
        shape, pairs=pairs[::2], dim_pairs=pairs[1::2], pre_only=pre_only,
        post_only=post_only, seed=16, dim=0.25,
    )  # fmt: skip
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    _check_population(res, pairs, pre_only, post_only)
    strong_only = detect_paired_puncta(pre, post, voxel_size=VOX, weak_seed_level=1.0)
    assert strong_only.n_synapses < res.n_synapses
    assert res.parameters["weak_seed_support_voxels"] == 12  # 0.0084 um^3 of 70x100x100 nm


@pytest.mark.parametrize("seed", [0, 1])
def test_one_noisy_plane_asks_for_a_planes_share_of_the_support(seed: int) -> None:
    """One plane of the sparse profile with its read noise x8: the thresholds sit a few
    pixel-noise sigmas up, so the noise guard asks seeds for the weak seeds' support. On a
    plane that is the stack's 12 voxels over the z smoothing's width (1.67 sections): 8
    pixels. Asking the plane for the stack's 12 (12 of the 21 pixels within 250 nm, the
    support before) loses a third of the synapses (measured F1 0.85-0.88 against
    0.62-0.69)."""
    exp = make_experiment((1, 256, 256), seed=seed, profile="sparse", noise_scale=8.0,
                          n_synapses=40)  # fmt: skip
    pre, post = exp.channels[exp.presynaptic], exp.channels[exp.postsynaptic]
    scores = []
    for support_um3 in (0.0084, 0.0134):  # the default; 12 pixels on this plane
        res = detect_paired_puncta(pre, post, voxel_size=exp.voxel_size,
                                   weak_seed_support_um3=support_um3)  # fmt: skip
        points = centroids_from_labels(res.labels)[1]
        scores.append((res.parameters["weak_seed_support_voxels"],
                       evaluate_points(points, exp.synapse_centroids, max_distance=300.0,
                                       voxel_size=exp.voxel_size)))  # fmt: skip
    (support, plane), (twelve, stack_count) = scores
    assert (support, twelve) == (8, 12)
    assert plane.f1 >= 0.84 and plane.f1 >= stack_count.f1 + 0.15
    assert plane.precision >= 0.95


def test_the_noise_guard_keeps_the_pairs_and_drops_chance_pairs_of_noise() -> None:
    """Pixel noise at a fifth of the puncta's brightness: each section's threshold is a few
    pixel-noise sigmas (through the band-pass), so a coincidence of noise in both channels
    can reach it. With the guard a seed there also needs a punctum's extent: every pair is
    still found once, and the detections away from any pair fall (4 -> 1 here)."""
    shape = (6, 64, 64)
    pairs, pre_only, post_only = _layout(shape, cells=4, seed=18)
    pre, post = _scene(
        shape, pairs=pairs, pre_only=pre_only, post_only=post_only, amplitude=60.0,
        noise=12.0, background=40.0, seed=18,
    )  # fmt: skip
    g = geometry(shape, VOX)
    guarded = detect_paired_puncta(pre, post, voxel_size=VOX)
    thr = SectionThresholds.from_dict(
        {ch: guarded.parameters[ch] for ch in ("presynaptic", "postsynaptic")}
    )
    assert (strong_seed_levels(thr, g, 0, shape[0]) > 1.2).all()
    unguarded = detect_paired_puncta(pre, post, voxel_size=VOX, noise_guard_sigma=0.0)

    def away_from_pairs(result) -> int:  # type: ignore[no-untyped-def]
        found = [_labels_near(result, _midpoint(p)) for p in pairs]
        assert all(len(f) == 1 for f in found), found
        return result.n_synapses - len(set().union(*found))

    assert away_from_pairs(guarded) == 1 < away_from_pairs(unguarded) == 4
    for ch in ("presynaptic", "postsynaptic"):  # 1.4826 median |dv| / sqrt 2 of noise 12
        assert np.asarray(guarded.parameters[ch]["pixel_noise_sigma"]) == pytest.approx(
            12, rel=0.15
        )
    assert guarded.parameters["band_pass_white_noise_gain"] == pytest.approx(1778.33, abs=0.01)


@pytest.mark.parametrize(("seed", "noise"), [(0, 5.0), (0, 8.0), (1, 5.0), (1, 8.0)])
def test_the_noise_guard_lifts_precision_on_noisy_sparse_volumes(seed: int, noise: float) -> None:
    """The first build's sparse profile with its read noise x5 and x8: every synapse is
    bright enough to be found (recall ~0.99 either way) but chance pairs of noise pass the
    thresholds; the guard drops most of them (measured F1 0.72-0.82 -> 0.85-0.89)."""
    exp = make_experiment((12, 192, 192), seed=seed, profile="sparse", noise_scale=noise,
                          n_synapses=90)  # fmt: skip
    pre, post = exp.channels[exp.presynaptic], exp.channels[exp.postsynaptic]
    scores = []
    for guard in (4.0, 0.0):
        res = detect_paired_puncta(pre, post, voxel_size=exp.voxel_size, noise_guard_sigma=guard)
        points = centroids_from_labels(res.labels)[1]
        scores.append(evaluate_points(points, exp.synapse_centroids, max_distance=300.0,
                                      voxel_size=exp.voxel_size))  # fmt: skip
    guarded, unguarded = scores
    assert guarded.recall >= 0.95 and unguarded.recall >= 0.95
    assert guarded.f1 >= 0.84 and guarded.f1 >= unguarded.f1 + 0.05


def test_touching_synapses_give_two_detections() -> None:
    pairs, pre_only, post_only = _layout(seed=1)
    z, y, x = pairs.pop()
    touching = [(z, y - 225.0, x), (z, y + 225.0, x)]  # 450 nm apart: the puncta touch
    pre, post = _scene(pairs=[*pairs, *touching], pre_only=pre_only, post_only=post_only, seed=1)
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    _check_population(res, [*pairs, *touching], pre_only, post_only)


def test_section_gain_drift_does_not_change_the_detections() -> None:
    pairs, pre_only, post_only = _layout(seed=2)
    pre, post = _scene(
        pairs=pairs,
        pre_only=pre_only,
        post_only=post_only,
        dtype=np.uint16,
        background=10.0,
        amplitude=400.0,
        noise=5.0,
        seed=2,
    )
    ref = detect_paired_puncta(pre, post, voxel_size=VOX)
    _check_population(ref, pairs, pre_only, post_only)
    # Thresholds are statistics of one section and channel, so each section's gain cancels
    # in D / T. Only the [1, 2, 1] smoothing across sections mixes neighbouring gains (into
    # D, not into the background box), so drift moves voxels at the edges of synapses but
    # not which synapses are found: here log-sd 0.15 per section and channel, about twice
    # the section-to-section variation measured on real AT data.
    rng = np.random.default_rng(102)
    drifted = [
        np.rint(v * np.exp(rng.normal(0.0, 0.15, (v.shape[0], 1, 1)))).astype(np.uint16)
        for v in (pre, post)
    ]
    res = detect_paired_puncta(*drifted, voxel_size=VOX)
    _check_population(res, pairs, pre_only, post_only)
    assert np.mean((res.labels > 0) == (ref.labels > 0)) > 0.99


def test_a_constant_offset_changes_nothing() -> None:
    pairs, pre_only, post_only = _layout(seed=2)
    pre, post = _scene(pairs=pairs, pre_only=pre_only, post_only=post_only, dtype=np.uint16, seed=2)
    ref = detect_paired_puncta(pre, post, voxel_size=VOX)
    # the smoothing and the background box weigh a constant the same: D is unchanged
    moved = detect_paired_puncta(pre + np.uint16(700), post + np.uint16(41), voxel_size=VOX)
    np.testing.assert_array_equal(moved.labels, ref.labels)


def test_uint8_and_uint16_times_16_give_the_same_result() -> None:
    pairs, pre_only, post_only = _layout(seed=3)
    pre, post = _scene(pairs=pairs, pre_only=pre_only, post_only=post_only, seed=3)
    a = detect_paired_puncta(pre, post, voxel_size=VOX)
    b = detect_paired_puncta(
        pre.astype(np.uint16) * 16, post.astype(np.uint16) * 16, voxel_size=VOX
    )
    assert a.n_synapses == len(pairs)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("n_z", [1, 2])
def test_a_single_plane_and_a_thin_stack_are_detected(n_z: int) -> None:
    pairs, pre_only, post_only = _layout((n_z, 96, 96), seed=4)
    pre, post = _scene((n_z, 96, 96), pairs=pairs, pre_only=pre_only, post_only=post_only, seed=4)
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert res.parameters["smoothing_orders"][0] == (0 if n_z == 1 else 2)
    _check_population(res, pairs, pre_only, post_only)


def test_anisotropic_pixels_are_handled() -> None:
    vox = (70.0, 100.0, 50.0)  # x pixels half the size of y pixels
    pairs, pre_only, post_only = _layout(seed=5)  # laid out in nm on a 96 x 96 grid of VOX
    pre, post = _scene(
        (8, 96, 192), pairs=pairs, pre_only=pre_only, post_only=post_only, voxel=vox, seed=5
    )
    res = detect_paired_puncta(pre, post, voxel_size=vox)
    assert res.parameters["background_width_voxels"] == [11, 21]
    assert res.parameters["smoothing_orders"][1:] == [2, 6]
    _check_population(res, pairs, pre_only, post_only, voxel=vox)


def test_noise_only_gives_no_synapse_and_says_why() -> None:
    rng = np.random.default_rng(7)
    pre, post = (np.rint(1000 + rng.normal(0, 30, (8, 64, 64))).astype(np.uint16) for _ in "ab")
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert res.n_synapses == 0 and not res.labels.any() and not res.mask.any()
    assert res.explanation is not None
    assert "noise floor" in res.explanation and "SNR too low" in res.explanation
    assert "presynaptic and the postsynaptic channels" in res.explanation


def test_noise_the_guard_removed_is_explained_as_such() -> None:
    """One voxel of this noise passes both thresholds (a detection with the guard off); the
    guard drops it, and the explanation says so instead of "no voxel passes both"."""
    rng = np.random.default_rng(3)
    pre, post = (
        np.clip(np.rint(rng.normal(100, 8, (4, 48, 48))), 0, 255).astype(np.uint8) for _ in "ab"
    )
    assert detect_paired_puncta(pre, post, voxel_size=VOX, noise_guard_sigma=0.0).n_synapses
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert res.n_synapses == 0 and res.parameters["voxels_above_threshold"]["both"] == 1
    assert res.explanation is not None
    assert "1 voxel(s) pass both thresholds, but in 4 of 4 section(s)" in res.explanation
    assert "noise_guard_sigma" in res.explanation and "no voxel where" not in res.explanation


def test_a_flat_channel_is_explained() -> None:
    pairs, pre_only, _ = _layout(seed=6)
    pre, _ = _scene(pairs=pairs, pre_only=pre_only)
    res = detect_paired_puncta(pre, np.full_like(pre, 37), voxel_size=VOX)
    assert res.n_synapses == 0
    assert res.explanation is not None
    assert res.explanation.startswith("the postsynaptic channel is flat")
    assert json.loads(json.dumps(res.parameters))["postsynaptic"]["threshold"][0] is None


def test_puncta_that_never_meet_are_explained_as_registration() -> None:
    # bright puncta on a 1.6 um grid in both channels, but the postsynaptic grid is shifted
    # by half a cell diagonally: every pre/post pair of puncta is 1131 nm apart
    rng = np.random.default_rng(7)
    grid = [
        (rng.uniform(1.5, 5.5) * VOX[0], (i + 0.5) * 1600.0, (j + 0.5) * 1600.0)
        for i in range(5)
        for j in range(5)
    ]
    pre, post = _scene(pairs=grid, offset_nm=(0.0, 800.0, 800.0), seed=7)
    res = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert res.n_synapses == 0
    n = res.parameters["puncta"]
    assert n["presynaptic"] >= 25 and n["postsynaptic"] >= 25
    assert res.explanation == (
        "no voxel where both channels exceed their thresholds: the presynaptic channel has "
        f"{n['presynaptic']} candidate puncta, the postsynaptic {n['postsynaptic']}, none within "
        "250 nm of each other (the nearest pair is 1131 nm apart); check the channel choice "
        "and the channels' registration"
    )
    # a blockwise run explains it the same way, from block_puncta gathered over its blocks
    g = geometry(pre.shape, VOX)
    volume = Box.from_shape(pre.shape)
    thr = section_thresholds(block_histograms(pre, post, volume, volume, g), g)
    found: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for box in _tiles(pre.shape, [(3,), (40,), (17, 60)]):
        r = box.grow(g.halo["seeds"], within=volume)
        for part, points in zip(
            found, pp.block_puncta(pre[r.slices()], post[r.slices()], box, r, thr, g), strict=True
        ):
            part.append(points)
    text = explain_empty(
        g,
        thr,
        presynaptic_puncta=np.concatenate(found[0]),
        postsynaptic_puncta=np.concatenate(found[1]),
    )
    assert text == res.explanation


def test_a_size_filter_that_removes_everything_is_explained() -> None:
    pairs, pre_only, post_only = _layout(seed=8)
    pre, post = _scene(pairs=pairs, pre_only=pre_only, post_only=post_only, seed=8)
    res = detect_paired_puncta(pre, post, voxel_size=VOX, min_volume_um3=5.0)
    assert res.n_synapses == 0
    assert f"{len(pairs)} synapse(s) were detected" in (res.explanation or "")
    assert "smaller than min_volume_um3 = 5 um^3" in (res.explanation or "")


def test_a_channel_without_puncta_is_explained() -> None:
    g = geometry((4, 32, 32), VOX)
    stats = {
        "median": np.zeros(4),
        "noise_sigma": np.full(4, 10.0),
        "otsu_split": np.full(4, 5.0),
        "threshold": np.full(4, 25.0),
    }
    thr = SectionThresholds({"presynaptic": stats, "postsynaptic": stats})
    text = explain_empty(
        g, thr, presynaptic_puncta=np.zeros((0, 3)), postsynaptic_puncta=np.zeros((4, 3))
    )
    assert text.startswith("every section's threshold sits at the noise floor")
    assert "the presynaptic channel has no punctum above its threshold (2.5 sigma" in text


def test_the_size_filter_keeps_large_synapses_renumbered() -> None:
    pairs, pre_only, post_only = _layout(seed=9)
    pre, post = _scene(pairs=pairs, pre_only=pre_only, post_only=post_only, seed=9)
    full = detect_paired_puncta(pre, post, voxel_size=VOX)
    voxels = np.bincount(full.labels.ravel())
    cut_voxels = int(np.median(voxels[1:]))
    cut = cut_voxels * float(np.prod(VOX)) / 1e9
    kept = detect_paired_puncta(pre, post, voxel_size=VOX, min_volume_um3=cut)
    keep = voxels >= cut_voxels
    keep[0] = False
    lut = np.where(keep, np.cumsum(keep), 0)
    assert 0 < kept.n_synapses == keep.sum() < full.n_synapses
    np.testing.assert_array_equal(kept.labels, lut[full.labels])
    np.testing.assert_array_equal(kept.mask > 0, kept.labels > 0)


# --------------------------------------------------------------------------- errors


def _error(exc: pytest.ExceptionInfo[DetectionError], field: str) -> str:
    assert exc.value.field == field, exc.value
    assert exc.value.hint, "every error names the fix"
    return str(exc.value)


U8 = np.zeros((2, 16, 16), np.uint8)


@pytest.mark.parametrize(
    ("pre", "post", "field", "words"),
    [
        (U8.astype(np.float32), U8, "presynaptic", "float32 is not supported"),
        (U8, U8.astype(np.int16), "postsynaptic", "int16 is not supported"),
        (U8[0], U8[0], "presynaptic", "3-D"),
        (U8, U8[:, :8], "postsynaptic", "shapes differ"),
        (U8[:0], U8[:0], "volume", "empty"),
        ([[[1]]], U8, "presynaptic", "numpy array"),
    ],
)
def test_bad_channels_name_their_field(pre, post, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DetectionError) as exc:
        detect_paired_puncta(pre, post)
    assert words in _error(exc, field)


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"voxel_size": (70.0, 100.0)}, "voxel_size", "three finite positive"),
        ({"voxel_size": (70.0, -1.0, 100.0)}, "voxel_size", "three finite positive"),
        ({"voxel_size": (70.0, float("nan"), 100.0)}, "voxel_size", "three finite positive"),
        ({"voxel_size": "70,100,100"}, "voxel_size", "three finite positive"),
        ({"voxel_size": 70.0}, "voxel_size", "three numbers"),
        ({"voxel_size": (5.0, 5.0, 5.0)}, "smoothing_sigma_nm", "would overflow"),
        ({"seed_radius_nm": -1.0}, "seed_radius_nm", ">= 0.0"),
        ({"noise_floor_sigma": "high"}, "noise_floor_sigma", "must be a number"),
        ({"smoothing_sigma_nm": float("inf")}, "smoothing_sigma_nm", "finite"),
        ({"assignment_level": 2.0}, "assignment_level", "above seed_level"),
        ({"weak_seed_level": 0.3}, "weak_seed_level", "below assignment_level"),
        ({"weak_seed_support_um3": -0.1}, "weak_seed_support_um3", ">= 0.0"),
        ({"window": 3}, "window", "unknown parameter"),
    ],
)
def test_bad_parameters_name_their_field(kwargs, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DetectionError) as exc:
        detect_paired_puncta(U8, U8, **kwargs)
    assert words in _error(exc, field)


def test_bad_block_hand_offs_name_their_field() -> None:
    pre, post = CASES["one plane"]()
    g = geometry(pre.shape, VOX)
    box = Box((0, 10, 10), (1, 20, 20))
    short = box.grow((0, 2, 2))  # less than the 5-voxel halo, inside the volume
    with pytest.raises(DetectionError) as exc:
        block_histograms(pre[short.slices()], post[short.slices()], box, short, g)
    assert "does not cover" in _error(exc, "read_box")
    with pytest.raises(DetectionError) as exc:
        block_histograms(pre, post, Box((0, 60, 0), (1, 70, 10)), Box.from_shape(pre.shape), g)
    assert "not inside the volume" in _error(exc, "box")
    right = box.grow(g.halo["histograms"])
    with pytest.raises(DetectionError) as exc:
        block_histograms(pre, post, box, right, g)
    assert "expected (1, 20, 20)" in _error(exc, "read_box")
    with pytest.raises(DetectionError) as exc:
        section_thresholds(SectionHistograms.empty(), g)
    _error(exc, "histograms")


# --------------------------------------------------------------------------- plug-in


def test_the_plugin_is_registered_and_runs_with_a_voxel_size() -> None:
    pipe = get_pipeline("paired-puncta")
    assert isinstance(pipe, PairedPuncta) and isinstance(pipe, Pipeline)
    pre, post = CASES["uint8"]()
    channels = {"Synapsin647": pre, "PSD95_488": post}
    res = pipe.run(channels, "Synapsin647", "PSD95_488", voxel_size=VOX)
    assert res.n_synapses == 8 and res.parameters["voxel_size_assumed"] is False
    default = pipe.run(channels, "Synapsin647", "PSD95_488")
    assert default.parameters["voxel_size_assumed"] is True
    assert default.parameters["voxel_size_nm"] == list(VOX)
    with pytest.raises(RequestValidationError, match=r"pipeline_parameters\.seed_level"):
        pipe.run(channels, "Synapsin647", "PSD95_488", seed_level=0.0)
    with pytest.raises(DetectionError) as exc:
        pipe.run(channels, "Synapsin647", "GAD647")
    assert "'GAD647' is not among" in _error(exc, "postsynaptic")
