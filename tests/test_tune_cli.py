"""``tune``: the operating point chosen from a user's annotation.

The sweep's figures are checked against the commands a user would run by hand (``detect``
with the printed -p options, then ``evaluate``), the held-out choice against counts whose
answer is known, and every bad option gets an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.cli_science import fails, ok
from fixtures.paired_puncta_scenes import VOX, layout, scene

from synapse_pipelines.core.errors import DetectionError
from synapse_pipelines.core.pipelines import get_pipeline, operating_point_parameters
from synapse_pipelines.science.evaluation import evaluate_points
from synapse_pipelines.workflow.operating_point_sweep import (
    held_out,
    level_parameters,
    strip_counts,
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """The realistic profile (the default), small: dim pairs the default level misses."""
    folder = tmp_path_factory.mktemp("tune")
    ok(["synth", "--out", str(folder), "--shape", "8,160,160", "--seed", "4"])
    return folder


def _evaluate_f1(results: Path, truth: Path, tmp: Path) -> float:
    scores = tmp / f"{results.name}.json"
    ok(
        [
            "evaluate",
            str(results),
            "--truth",
            str(truth),
            "--max-distance",
            "300",
            "--unit",
            "nm",
            "--json",
            str(scores),
        ]
    )
    return float(json.loads(scores.read_text())["f1"])


def test_tune_reports_what_detect_and_evaluate_give_at_each_level(experiment, tmp_path) -> None:
    sweep_json = tmp_path / "sweep.json"
    channels, truth = experiment / "channels.ome.tif", experiment / "truth.csv"
    out = ok(
        [
            "tune",
            str(channels),
            "--truth",
            str(truth),
            "--max-distance",
            "300",
            "--unit",
            "nm",
            "--levels",
            "0.6,0.8,1.3",
            "--json",
            str(sweep_json),
        ]
    )
    sweep = json.loads(sweep_json.read_text())
    assert [s["level"] for s in sweep["levels"]] == [0.6, 0.8, 1.0, 1.3]  # the default added
    assert sweep["default"]["level"] == 1.0 and "held out" in out and "-p seed_level=" in out
    # the best level is the highest F1 (ties: nearest the default), and the default's row
    # and the best's are what detect -p ... and evaluate give
    f1 = {s["level"]: s["f1"] for s in sweep["levels"]}
    assert sweep["best"]["f1"] == max(f1.values())
    checked = {1.0: [], sweep["best"]["level"]: []}
    for level in checked:
        params = sweep["levels"][[s["level"] for s in sweep["levels"]].index(level)]["parameters"]
        flags = [x for k, v in params.items() for x in ("-p", f"{k}={v:g}")]
        results = tmp_path / f"level{level:g}"
        ok(["detect", str(channels), "--out", str(results), *flags])
        checked[level] = [_evaluate_f1(results, truth, tmp_path)]
        assert checked[level][0] == pytest.approx(f1[level], abs=1e-12), level
    # the levels move the detector: more detections at lower levels
    counts = [s["detections"] for s in sweep["levels"]]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    # the strips cover the volume along x and hold every annotated point
    strips = sweep["strips"]
    assert [s["x_range"] for s in strips] == [[0, 80], [80, 160]]
    assert sum(s["truth_points"] for s in strips) == sweep["truth_points"]
    # the strips share out one matching of the whole volume, so pooled over the strips the
    # default scores exactly what it scores on the whole: no pair is lost at a border, even
    # with 16 strips of 10 px against a matching distance of 3 px
    assert sweep["held_out_default_f1"] == pytest.approx(sweep["default"]["f1"], abs=1e-12)
    narrow_json = tmp_path / "narrow.json"
    ok(["tune", str(channels), "--truth", str(truth), "--max-distance", "300", "--unit", "nm",
        "--levels", "0.8", "--strips", "16", "--json", str(narrow_json)])  # fmt: skip
    narrow = json.loads(narrow_json.read_text())
    assert len(narrow["strips"]) == 16
    assert narrow["held_out_default_f1"] == pytest.approx(sweep["default"]["f1"], abs=1e-12)
    # this profile's annotation counts dim pairs, so a lower level wins, held out too
    # (measured: best 0.6, F1 0.730 against 0.653; held out 0.713 against 0.653)
    assert sweep["best"]["level"] < 1.0
    assert sweep["held_out_f1"] > sweep["held_out_default_f1"]


def test_held_out_scores_each_strip_at_the_level_the_other_strips_choose() -> None:
    levels = [0.5, 1.0, 2.0]
    edges = np.array([0, 50, 100])
    # counts[level, strip] = (tp, fp, fn): strip 0 is best at 0.5, strip 1 at 2.0
    counts = np.array(
        [
            [[10, 0, 0], [5, 10, 5]],  # 0.5: perfect on strip 0, poor on strip 1
            [[8, 2, 2], [8, 2, 2]],  # 1.0
            [[5, 0, 5], [10, 0, 0]],  # 2.0: perfect on strip 1
        ]
    )
    strips, f1, f1_default = held_out(counts, levels, edges, np.array([0] * 10 + [1] * 10))
    # each strip is scored at the other's best: the disagreement shows as a loss
    assert [s.chosen_level for s in strips] == [2.0, 0.5]
    assert [s.truth_points for s in strips] == [10, 10]
    tp, fp, fn = 5 + 5, 0 + 10, 5 + 5
    assert f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert f1_default == pytest.approx(32 / (32 + 8))
    assert f1 < f1_default
    # strips that agree: the shared best level, and the held-out F1 is its F1
    agree = counts.copy()
    agree[2, 0] = (10, 0, 0)
    agree[0, 0] = (9, 1, 1)
    strips, f1, _ = held_out(agree, levels, edges, np.zeros(20, int))
    assert [s.chosen_level for s in strips] == [2.0, 2.0] and f1 == 1.0
    # ties go to the level nearest the default
    tie = np.array([[[4, 1, 1]] * 2] * 3)
    strips, _, _ = held_out(tie, levels, edges, np.zeros(0, int))
    assert [s.chosen_level for s in strips] == [1.0, 1.0]
    assert held_out(counts[:, :1], levels, edges[:2], np.zeros(0, int)) == ([], None, None)


def test_strips_share_out_one_matching_so_a_pair_across_a_border_still_matches() -> None:
    # strips [0, 50) and [50, 100) along x; points and detections as (z, y, x)
    truth = np.array([[0, 10, 50.5], [0, 20, 10], [0, 30, 90], [0, 40, 60]])
    detections = np.array([[0, 10, 49.5], [0, 20, 11], [0, 70, 20], [0, 40, 98]])
    whole = evaluate_points(detections, truth, max_distance=3.0)
    edges = np.array([0, 50, 100])
    d_strip = np.searchsorted(edges, detections[:, 2], side="right") - 1
    t_strip = np.searchsorted(edges, truth[:, 2], side="right") - 1
    counts = strip_counts(whole.matches, d_strip, t_strip, 2)
    # the pair across the border at x = 50 matches (in its point's strip, 1); the pair at
    # x = 10 matches in strip 0; the detection at x = 20 and at x = 98, the points at x = 90
    # and x = 60 are unmatched in their own strips
    assert counts.tolist() == [[1, 1, 0], [1, 1, 2]]
    assert counts.sum(axis=0).tolist() == [whole.tp, whole.fp, whole.fn]
    # scoring each strip on its own (before) lost the pair across the border
    alone = [
        evaluate_points(detections[d_strip == s], truth[t_strip == s], max_distance=3.0)
        for s in (0, 1)
    ]
    assert sum(a.tp for a in alone) == whole.tp - 1


def test_levels_scale_the_operating_point_and_refuse_what_the_pipeline_refuses() -> None:
    pairs = get_pipeline("paired-puncta")
    assert operating_point_parameters(pairs, 0.7) == {
        "seed_level": 0.7,
        "weak_seed_level": 0.35,
        "assignment_level": 0.35,
    }
    # level 1 is the pipeline's defaults: tune's "default" row is detect without -p
    defaults = {k: pairs.parameters[k].default for k in operating_point_parameters(pairs, 1)}
    assert operating_point_parameters(pairs, 1.0) == defaults
    levels, params = level_parameters(pairs, {"seed_radius_nm": 200}, [2.0, 0.5])
    assert levels == [0.5, 1.0, 2.0]
    assert [p["seed_level"] for p in params] == levels
    assert all(p["seed_radius_nm"] == 200 for p in params)
    with pytest.raises(DetectionError) as refused:
        level_parameters(pairs, {}, [0.01])
    assert refused.value.field == "levels" and "assignment_level" in refused.value.message
    with pytest.raises(DetectionError) as none:
        level_parameters(get_pipeline("nomads-unsupervised"), {}, [1.0])
    assert none.value.field == "pipeline"


def test_bad_options_name_the_option_and_the_fix(experiment, tmp_path) -> None:
    base = [
        "tune",
        str(experiment / "channels.ome.tif"),
        "--truth",
        str(experiment / "truth.csv"),
        "--max-distance",
        "300",
        "--unit",
        "nm",
    ]
    for extra, field, words in [
        (["--pipeline", "nomads-unsupervised"], "--pipeline", "no operating point"),
        (["-p", "seed_level=2"], "--param", "tune sets seed_level"),
        (["--levels", "0,1"], "--levels", "positive"),
        (["--levels", "0.01"], "--levels", "assignment_level"),
        (["--strips", "0"], "--strips", "at least 1"),
    ]:
        error = fails(base + extra)
        assert error.field == field and words in error.message, (extra, error)
        assert error.hint
    missing = fails(
        [
            "tune",
            str(experiment / "channels.ome.tif"),
            "--truth",
            str(tmp_path / "none.csv"),
            "--max-distance",
            "3",
            "--unit",
            "px",
        ]
    )
    assert missing.field == "--truth"
    # a distance in nm needs a voxel size: a volume without one is refused with the fix
    plane = tmp_path / "plane"
    plane.mkdir()
    rng = np.random.default_rng(0)
    for name in ("synapsin", "psd95"):
        np.save(plane / f"{name}.npy", rng.integers(0, 255, (1, 40, 40), dtype=np.uint8))
    (plane / "truth.csv").write_text("10,10\n30,30\n")
    no_size = fails(
        [
            "tune",
            str(plane / "synapsin.npy"),
            str(plane / "psd95.npy"),
            "--truth",
            str(plane / "truth.csv"),
            "--max-distance",
            "300",
            "--unit",
            "nm",
        ]
    )
    assert no_size.field == "--voxel-size" and "volume files" in no_size.message
    (tmp_path / "taken.json").write_text("{}")
    taken = fails([*base, "--json", str(tmp_path / "taken.json")])
    assert taken.field == "--json" and "--overwrite" in taken.hint


def test_a_plane_annotated_in_pixels_with_few_points_is_said_to_be_uncertain(tmp_path) -> None:
    shape = (1, 96, 96)
    pairs, pre_only, post_only = layout(shape, seed=3)
    pre, post = scene(shape, pairs=pairs, pre_only=pre_only, post_only=post_only, seed=3)
    folder = tmp_path / "scene"
    folder.mkdir()
    np.save(folder / "synapsin.npy", pre)
    np.save(folder / "psd95.npy", post)
    # each pair's midpoint (the postsynaptic punctum is 150 nm along x), in pixels
    points = (np.asarray(pairs)[:, 1:] + (0.0, 75.0)) / np.asarray(VOX[1:])
    np.savetxt(folder / "truth.csv", points, delimiter=",", fmt="%g")
    out = ok(
        [
            "tune",
            str(folder / "synapsin.npy"),
            str(folder / "psd95.npy"),
            "--truth",
            str(folder / "truth.csv"),
            "--max-distance",
            "3",
            "--unit",
            "px",
            "--voxel-size",
            "70,100,100",
        ]
    )
    assert len(points) < 40 and "annotated synapses" in out and "firm choice" in out
    assert "F1 1.000" in out  # a clean scene: the default finds every pair


def test_the_benchmark_scores_each_crop_at_the_level_the_other_crop_chooses(tmp_path) -> None:
    from fixtures.benchmark_modules import load_benchmark
    from scipy.io import savemat

    bench = load_benchmark("bench_operating_point")
    shape = (1, 96, 96)
    for crop, seed in (("400500", 1), ("800900", 2)):
        pairs, pre_only, post_only = layout(shape, seed=seed)
        pre, post = scene(shape, pairs=pairs, pre_only=pre_only, post_only=post_only, seed=seed)
        points = (np.asarray(pairs)[:, 1:] + (0.0, 75.0)) / np.asarray(VOX[1:])
        # DoGNet's layout: channels synapsin, vGluT1, PSD-95; 1-based X (row), Y (column)
        # after a (0, 0) placeholder
        data = np.stack([pre[0], pre[0], post[0]]).astype(float) / 255
        rows, cols = np.r_[0.0, points[:, 0] + 1], np.r_[0.0, points[:, 1] + 1]
        savemat(
            tmp_path / f"weiler300400_{crop}.mat", {"data": data, "X": rows[None], "Y": cols[None]}
        )
    first, second = bench.crop_rows(tmp_path)
    assert first["data"].startswith("DoGNet weiler14 400500")
    for row in (first, second):
        assert 0 <= row["default"] <= row["best"] <= 1 and row["held_out"] is not None
        assert row["transfer"] <= row["best"]
    # each crop's transfer is its own F1 at the other crop's best level
    assert first["best_levels"][::-1] == second["best_levels"]


def test_tune_detects_on_the_resolution_asked_for(experiment, tmp_path) -> None:
    """--resolution reaches every level's run: the default row is detect --resolution 1."""
    channels, truth = experiment / "channels.ome.tif", experiment / "truth.csv"
    sweep_json = tmp_path / "sweep.json"
    ok(
        [
            "tune",
            str(channels),
            "--truth",
            str(truth),
            "--max-distance",
            "300",
            "--unit",
            "nm",
            "--levels",
            "1",
            "--strips",
            "1",
            "--resolution",
            "1",
            "--json",
            str(sweep_json),
        ]
    )
    f1 = json.loads(sweep_json.read_text())["default"]["f1"]
    results = tmp_path / "binned"
    ok(["detect", str(channels), "--resolution", "1", "--out", str(results)])
    assert f1 == pytest.approx(_evaluate_f1(results, truth, tmp_path), abs=1e-12)
    unbinned = tmp_path / "unbinned"
    ok(["detect", str(channels), "--out", str(unbinned)])
    assert f1 != _evaluate_f1(unbinned, truth, tmp_path)  # the option changed the run
    error = fails(
        [
            "tune",
            str(channels),
            "--truth",
            str(truth),
            "--max-distance",
            "300",
            "--unit",
            "nm",
            "--resolution",
            "9",
        ]
    )
    assert error.field == "--resolution"
