"""Object-level evaluation: optimal one-to-one centroid matching, edge cases, labels input,
point annotations (CSV, npz), 2-D truth and units."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.io.point_annotations import (
    read_point_annotations,
    read_points_csv,
    read_points_npz,
)
from synapse_pipelines.science.evaluation import (
    centroids_from_labels,
    distance_in_voxel_unit,
    evaluate_centroids,
    evaluate_labels,
    evaluate_per_slice,
    evaluate_points,
    length_unit,
    matching_rule,
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


# -- point annotations ------------------------------------------------------------------


def _write(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "axes", "first"),
    [
        ("1,2,3\n4,5,6\n", "zyx", [1, 2, 3]),
        ("2.5,3\n4,5\n", "yx", [2.5, 3]),
        ("z,y,x\n1,2,3\n", "zyx", [1, 2, 3]),
        ("X, Y\n3, 2\n", "yx", [2, 3]),  # named columns in any order and case
        ("row,col\n7,8\n", "yx", [7, 8]),
        ("# made by hand\n\nz,y,x\n\n1,2,3\n# end\n", "zyx", [1, 2, 3]),
        ("id,centroid_z,centroid_y,centroid_x,volume\n1,1,2,3,40\n", "zyx", [1, 2, 3]),
    ],
)
def test_point_csv_layouts(tmp_path, text, axes, first) -> None:
    pts = read_points_csv(_write(tmp_path / "p.csv", text))
    assert pts.axes == axes
    np.testing.assert_allclose(pts.points[0], first)
    assert str(tmp_path / "p.csv") in pts.description


@pytest.mark.parametrize(
    ("text", "words", "fix"),
    [
        ("1,2,3,4\n", "line 1 has 4 numbers", "header"),
        ("1,2,3\n4,five,6\n", "line 2", "z,y,x"),
        ("1,2,3\n4,5\n", "line 2", "z,y,x"),
        ("a,b,c\n1,2,3\n", "names no y and x columns", "name the columns"),
        ("\n# nothing\n", "holds no points", "z,y,x"),
        ("1,2,nan\n", "NaN", "finite"),
    ],
)
def test_malformed_point_csv_names_the_file_and_the_fix(tmp_path, text, words, fix) -> None:
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(SynapsePipelinesError) as info:
        read_points_csv(path, option="--truth")
    err = info.value
    assert err.field == "--truth"
    assert str(path) in err.message and words in err.message, err.message
    assert err.hint and fix in err.hint, err.hint


def test_point_npz_weiler_layout(tmp_path) -> None:
    yx = np.array([[10, 20], [30, 40]], np.int64)
    np.savez(tmp_path / "crop.npz", synapsin=np.zeros((1, 4, 4)), synapses_yx=yx)
    pts = read_point_annotations(tmp_path / "crop.npz")
    assert pts.axes == "yx" and pts.points.tolist() == [[10, 20], [30, 40]]
    np.savez(tmp_path / "z.npz", synapses_zyx=np.ones((3, 3)))
    assert read_point_annotations(tmp_path / "z.npz").axes == "zyx"
    np.savez(tmp_path / "none.npz", synapsin=np.zeros(3))
    with pytest.raises(SynapsePipelinesError, match="no point array") as info:
        read_points_npz(tmp_path / "none.npz")
    assert "synapses_zyx" in info.value.hint
    np.savez(tmp_path / "flat.npz", synapses_yx=np.ones(4))
    with pytest.raises(SynapsePipelinesError, match=r"expected \(N, 2\)"):
        read_points_npz(tmp_path / "flat.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(SynapsePipelinesError, match=r"not a readable \.npz"):
        read_points_npz(tmp_path / "junk.npz")


def test_yx_truth_matches_predictions_in_any_plane() -> None:
    pred = np.array([[0, 10, 10], [5, 20, 20], [2, 50, 50]], float)
    truth_yx = np.array([[10, 11], [20, 20], [80, 80]], float)
    r = evaluate_points(pred, truth_yx, max_distance=150, voxel_size=(70, 100, 100))
    assert (r.tp, r.fp, r.fn) == (2, 1, 1)
    assert r.voxel_size == (70.0, 100.0, 100.0)
    # a z,y,x truth is plain 3-D matching: plane 5 is 350 nm away from plane 0
    r3 = evaluate_points(pred, [[0, 20, 20]], max_distance=150, voxel_size=(70, 100, 100))
    assert r3.tp == 0


def test_units_convert_to_the_voxel_unit() -> None:
    assert distance_in_voxel_unit(300, "nm", "micrometers") == pytest.approx(0.3)
    assert distance_in_voxel_unit(0.3, "um", "nanometers") == pytest.approx(300)
    assert distance_in_voxel_unit(300, "nanometers", "nanometers") == 300
    with pytest.raises(SynapsePipelinesError) as info:
        distance_in_voxel_unit(300, "nm", "pixel")
    assert info.value.field == "--unit" and "--unit px" in info.value.hint
    with pytest.raises(SynapsePipelinesError, match="unknown unit"):
        length_unit("parsecs")
    rule = matching_rule(
        mode="2-D (y,x)",
        max_distance=3,
        unit="px",
        voxel_size=(1, 1, 1),
        voxel_unit=None,
    )
    assert rule.startswith("one-to-one") and "within 3 px" in rule and "any plane" in rule
