"""Object-level evaluation: optimal one-to-one centroid matching, edge cases, labels input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.science.evaluation import (
    centroids_from_labels,
    evaluate_centroids,
    evaluate_labels,
    evaluate_per_slice,
    slice_centroids,
)


def _x(*xs: float) -> np.ndarray:
    return np.array([[0.0, 0.0, x] for x in xs])


def test_optimal_not_greedy() -> None:
    # P0 at x=1 is nearest T0 (x=0) but also reaches T1 (x=4); P1 at x=-2 only reaches T0.
    # Greedy nearest-first pairs P0-T0 and loses a match; the optimum is P1-T0, P0-T1.
    r = evaluate_centroids(_x(1, -2), _x(0, 4), max_distance=3.5)
    assert (r.tp, r.fp, r.fn) == (2, 0, 0)
    assert r.matches.tolist() == [[0, 1], [1, 0]]
    np.testing.assert_allclose(r.distances, [3.0, 2.0])
    assert r.f1 == 1.0


def test_min_total_distance_among_maximum_matchings() -> None:
    r = evaluate_centroids(_x(0, 5), _x(1, 4), max_distance=10)
    assert r.matches.tolist() == [[0, 0], [1, 1]]
    assert r.distances.sum() == pytest.approx(2.0)


def test_hand_computed_scores_and_distance_bound_inclusive() -> None:
    pred = _x(0, 10, 20, 30.5, 100)
    truth = _x(0.5, 10, 23, 50)
    r = evaluate_centroids(pred, truth, max_distance=3)  # 20-23 is exactly 3: a match
    assert (r.tp, r.fp, r.fn) == (3, 2, 1)
    assert r.precision == pytest.approx(3 / 5)
    assert r.recall == pytest.approx(3 / 4)
    assert r.f1 == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    d = r.to_dict(include_matches=True)
    assert d["matches"][0] == {"predicted": 0, "truth": 0, "distance": 0.5}
    # a prediction exactly on its truth (distance 0) still counts
    assert evaluate_centroids(_x(7), _x(7), max_distance=0).tp == 1


def test_physical_units_use_the_voxel_size() -> None:
    vs = (70.0, 5.0, 5.0)
    one_z = evaluate_centroids([[0, 0, 0]], [[1, 0, 0]], max_distance=50, voxel_size=vs)
    assert one_z.tp == 0  # one z step is 70 nm
    eight_y = evaluate_centroids([[0, 0, 0]], [[0, 8, 0]], max_distance=50, voxel_size=vs)
    assert eight_y.tp == 1 and eight_y.distances[0] == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        ([], [], (0, 0, 0, 1.0, 1.0, 1.0)),
        ([], [[1, 1, 1]], (0, 0, 1, 1.0, 0.0, 0.0)),
        ([[1, 1, 1], [5, 5, 5]], np.zeros((0, 3)), (0, 2, 0, 0.0, 1.0, 0.0)),
        ([[1, 1, 1]], [[9, 9, 9]], (0, 1, 1, 0.0, 0.0, 0.0)),
    ],
)
def test_empty_sides_are_defined(pred, truth, expected) -> None:
    r = evaluate_centroids(pred, truth, max_distance=2)
    got = (r.tp, r.fp, r.fn, r.precision, r.recall, r.f1)
    assert got == expected
    assert all(np.isfinite(v) for v in got)


def test_random_sets_match_brute_force_optimum() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        pred = rng.uniform(0, 12, (6, 3))
        truth = rng.uniform(0, 12, (5, 3))
        r = evaluate_centroids(pred, truth, max_distance=4.0)
        d = np.linalg.norm(pred[:, None] - truth[None], axis=2)
        best = (0, 0.0)
        # every injective map of truths to predictions or to "unmatched"
        for assign in itertools.product(range(-1, 6), repeat=5):
            used = [a for a in assign if a >= 0]
            if len(used) != len(set(used)):
                continue
            pairs = [(a, t) for t, a in enumerate(assign) if a >= 0]
            if any(d[a, t] > 4.0 for a, t in pairs):
                continue
            total = sum(d[a, t] for a, t in pairs)
            if len(pairs) > best[0] or (len(pairs) == best[0] and total < best[1]):
                best = (len(pairs), total)
        assert r.tp == best[0]
        assert r.distances.sum() == pytest.approx(best[1])
        assert len(set(r.matches[:, 0])) == r.tp == len(set(r.matches[:, 1]))


def test_labels_volume_input() -> None:
    truth = np.zeros((5, 20, 20), np.uint64)
    truth[1:3, 2:4, 2:4] = 10**12  # annotation ids can be huge
    truth[3, 15, 15] = 4
    pred = np.zeros((5, 20, 20), np.int32)
    pred[1:3, 3:5, 2:4] = 1  # centroid one voxel off in y
    pred[0, 10, 10] = 2  # false positive
    ids, cents = centroids_from_labels(truth)
    assert ids.tolist() == [4, 10**12]
    np.testing.assert_allclose(cents, [[3, 15, 15], [1.5, 2.5, 2.5]])
    r = evaluate_labels(pred, truth, max_distance=1.0)
    assert (r.tp, r.fp, r.fn) == (1, 1, 1)
    r2 = evaluate_labels(pred, cents, max_distance=1.0)  # mixed: labels vs centroid list
    assert (r2.tp, r2.fp, r2.fn) == (1, 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"predicted": [[1, 2]], "truth": []}, "predicted"),
        ({"predicted": [], "truth": [[np.nan, 1, 1]]}, "truth"),
        ({"predicted": [], "truth": [], "max_distance": -1}, "max_distance"),
        ({"predicted": [], "truth": [], "voxel_size": (1, 0, 1)}, "voxel_size"),
    ],
)
def test_bad_inputs(kwargs, field) -> None:
    kwargs = {"max_distance": 1.0, **kwargs}
    with pytest.raises(SynapsePipelinesError) as info:
        evaluate_centroids(**kwargs)
    assert info.value.field == field


def test_a_distance_spanning_everything_is_refused_not_oom(monkeypatch) -> None:
    from synapse_pipelines.science import evaluation as ev

    monkeypatch.setattr(ev, "MAX_CLUSTER_CELLS", 100)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 10, (20, 3))
    with pytest.raises(SynapsePipelinesError) as info:
        evaluate_centroids(pts, pts + 0.1, max_distance=100)
    assert info.value.field == "max_distance"
    assert evaluate_centroids(pts, pts + 0.01, max_distance=0.05).tp == 20  # small: fine


def test_per_slice_evaluation_counts_2d_pieces() -> None:
    truth = np.zeros((3, 20, 20), np.uint16)
    truth[0:2, 5:7, 5:7] = 1  # two 2-D pieces (z=0, z=1)
    truth[2, 15, 15] = 2  # one piece
    pred = np.zeros_like(truth)
    pred[0, 5:7, 6:8] = 4  # matches truth 1 at z=0 (0.5 voxel off in x)
    pred[2, 5, 5] = 5  # in slice 2, far from truth 2; same (y, x) as truth 1's z=1 piece
    ids, cents = slice_centroids(truth)
    assert ids.tolist() == [1, 1, 2]
    np.testing.assert_allclose(cents, [[0, 5.5, 5.5], [1, 5.5, 5.5], [2, 15, 15]])
    r = evaluate_per_slice(pred, truth, max_distance=1.0, voxel_size=(70, 1, 1))
    # the z=2 prediction must not match the z=1 truth piece even though the 3-D distance
    # would be small with a tiny z voxel size: matches stay within a slice
    assert (r.tp, r.fp, r.fn) == (1, 1, 2)
    r_tiny_z = evaluate_per_slice(pred, truth, max_distance=1.0, voxel_size=(0.01, 1, 1))
    assert (r_tiny_z.tp, r_tiny_z.fp, r_tiny_z.fn) == (1, 1, 2)
    assert r.voxel_size == (70.0, 1.0, 1.0)
