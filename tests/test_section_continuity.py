"""Section continuity: PAIRS measures whether neighbouring sections line up and warns when
they do not (science/section_continuity.py; docs/detection.md, "Section continuity").

The figures are measured on the realistic synthetic profile: aligned, with at_example's
misregistration, with sections shifted in-plane, on noise alone and on one plane; the
sums are exact and the same for any tiling, and the warning reaches the CLI summary and
the manifest.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fixtures.cli_science import ok as _ok

from synapse_pipelines.blockwise.pairs import blockwise_paired_puncta
from synapse_pipelines.io import ome_tiff, outputs
from synapse_pipelines.science.paired_puncta import detect_paired_puncta
from synapse_pipelines.science.paired_puncta_reference import bandpass
from synapse_pipelines.science.section_continuity import (
    CONTINUITY_WARNING_FRACTION,
    band_pass_at,
    continuity_sums,
    continuity_warnings,
    expected_continuity,
    pair_continuity,
    sum_shift,
)
from synapse_pipelines.science.synthetic import POSTSYNAPTIC, PRESYNAPTIC, make_experiment

SHAPE = (8, 192, 192)


def _channels(**kw: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    exp = make_experiment(SHAPE, seed=5, channels=[PRESYNAPTIC, POSTSYNAPTIC], **kw)
    return exp.channels[PRESYNAPTIC], exp.channels[POSTSYNAPTIC], exp.voxel_size


@pytest.mark.parametrize(
    ("shape", "orders", "widths", "dtype"),
    [((64, 80), (2, 2), (11, 11), np.uint8), ((50, 37), (4, 2), (7, 15), np.uint16),
     ((9, 12), (0, 0), (1, 3), np.uint16)],
)  # fmt: skip
def test_the_sampled_band_pass_is_the_reference_band_pass(shape, orders, widths, dtype) -> None:
    rng = np.random.default_rng(0)
    plane = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    ys, xs = np.arange(0, shape[0], 3), np.arange(1, shape[1], 4)  # the border included
    want = bandpass(plane[None], (0, *orders), widths)[0][np.ix_(ys, xs)]
    np.testing.assert_array_equal(band_pass_at(plane, ys, xs, orders, widths), want)  # numba


def test_uint16_sums_cannot_overflow() -> None:
    # the largest |band-pass| after the shift, squared and summed over 2**14 pixels
    shift = sum_shift((2, 2), (11, 11), 0xFFFF)
    largest = (0xFFFF * 16 * 121) >> shift
    assert shift > 0 and largest**2 * (1 << 14) < np.iinfo(np.int64).max
    assert sum_shift((2, 2), (11, 11), 0xFF) == 0


def test_aligned_sections_are_continuous_and_give_no_warning() -> None:
    pre, post, vs = _channels()
    res = detect_paired_puncta(pre, post, voxel_size=vs)
    summary = res.parameters["section_continuity"]
    assert summary["presynaptic"] > 0.75 and summary["postsynaptic"] > 0.6, summary
    assert res.parameters["warnings"] == []
    per = res.parameters["presynaptic"]["section_continuity"]
    assert len(per) == SHAPE[0] and per[-1] is None  # the last section has no next one
    json.dumps(res.parameters)


def test_misregistered_sections_are_named_in_a_warning() -> None:
    # at_example's misregistration: the PSD-95 channel's sections are translated
    # independently, and the tissue jitters between sections
    pre, post, vs = _channels(misregistration=1.0)
    res = detect_paired_puncta(pre, post, voxel_size=vs)
    summary = res.parameters["section_continuity"]
    assert summary["postsynaptic"] < 0.2, summary
    (warning,) = res.parameters["warnings"]
    assert "do not line up" in warning and "postsynaptic channel" in warning
    assert "register the sections" in warning


def test_sections_shifted_by_a_few_pixels_are_flagged_and_one_pixel_is_not() -> None:
    pre, post, vs = _channels()
    rng = np.random.default_rng(1)
    found = {}
    for sd in (1.0, 3.0):
        shifts = np.rint(rng.normal(0, sd, (SHAPE[0], 2))).astype(int)
        moved = [
            np.stack([np.roll(v[z], tuple(shifts[z]), axis=(0, 1)) for z in range(SHAPE[0])])
            for v in (pre, post)
        ]
        res = detect_paired_puncta(*moved, voxel_size=vs)
        found[sd] = res.parameters["section_continuity"], res.parameters["warnings"]
    level = CONTINUITY_WARNING_FRACTION * expected_continuity(vs[0], 300.0)
    assert min(found[1.0][0].values()) > level and found[1.0][1] == []
    assert max(found[3.0][0].values()) < 0.3 and len(found[3.0][1]) == 1


def test_noise_and_one_plane_cannot_tell_and_do_not_warn() -> None:
    rng = np.random.default_rng(2)
    noise = [np.clip(rng.normal(20, 8, SHAPE), 0, 255).astype(np.uint8) for _ in range(2)]
    res = detect_paired_puncta(*noise, voxel_size=(70, 100, 100))
    assert res.parameters["section_continuity"] == {"presynaptic": None, "postsynaptic": None}
    assert res.parameters["warnings"] == []
    pre, post, vs = _channels()
    one = detect_paired_puncta(pre[:1], post[:1], voxel_size=vs)
    assert one.parameters["section_continuity"] == {"presynaptic": None, "postsynaptic": None}
    assert one.parameters["warnings"] == []


def test_the_noise_correction() -> None:
    # identical structure, independent noise: the raw correlation is 0.5, the corrected 1
    n, var_s, sigma, gain = 1000, 4.0, 2.0, 1.0
    sums = np.array([n * var_s, n * (var_s + sigma**2), n * (var_s + sigma**2), n])
    assert pair_continuity(sums, sigma, sigma, gain, 0) == pytest.approx(1.0)
    # a noise estimate a little too high would give more than 1: it stays a correlation
    strong = np.array([n * 40.0, n * (40.0 + sigma**2), n * (40.0 + sigma**2), n])
    assert pair_continuity(strong, 1.1 * sigma, 1.1 * sigma, gain, 0) == 1.0
    # structure below the noise's own variance: cannot tell
    weak = np.array([n * 1.0, n * (1.0 + sigma**2), n * (1.0 + sigma**2), n])
    assert math.isnan(pair_continuity(weak, sigma, sigma, gain, 0))
    assert math.isnan(pair_continuity(np.zeros(4), sigma, sigma, gain, 0))
    assert continuity_warnings({"presynaptic": 0.9, "postsynaptic": None}, 70, 300) == []
    # the level follows the section thickness: what aligned sections would show
    assert expected_continuity(70, 300) == pytest.approx(0.93, abs=0.005)
    assert expected_continuity(200, 300) == pytest.approx(0.54, abs=0.005)
    assert continuity_warnings({"postsynaptic": 0.4}, 140, 300) == []
    (warning,) = continuity_warnings({"postsynaptic": 0.4}, 70, 300)
    assert "0.40 in the postsynaptic channel, below 0.46" in warning


def test_any_tiling_gives_the_same_continuity() -> None:
    pre, post, vs = _channels(misregistration=0.5)
    one = detect_paired_puncta(pre, post, voxel_size=vs)
    # blocks one section thick: every pair of sections crosses a block boundary
    blocks = blockwise_paired_puncta(pre, post, voxel_size=vs, block_shape=(1, 70, 50))
    for ch in ("presynaptic", "postsynaptic"):
        assert (
            blocks.parameters[ch]["section_continuity"] == one.parameters[ch]["section_continuity"]
        )
    assert blocks.parameters["warnings"] == one.parameters["warnings"]
    # and the sums of two halves in y are the whole's
    whole = continuity_sums(pre, ((0, 8), (0, 192), (0, 192)), (0, 0, 0, 6, 8), (2, 2), (11, 11), 0)
    top = continuity_sums(
        pre[:, :101], ((0, 8), (0, 96), (0, 192)), (0, 0, 0, 6, 8), (2, 2), (11, 11), 0
    )
    bottom = continuity_sums(
        pre[:, 91:], ((0, 8), (5, 101), (0, 192)), (0, 91, 0, 6, 8), (2, 2), (11, 11), 0
    )
    np.testing.assert_array_equal(top + bottom, whole)
    assert (whole[-1] == 0).all() and (whole[:-1, 3] > 0).all()


def test_the_cli_summary_the_manifest_and_the_report_carry_the_warning(tmp_path) -> None:
    pre, post, vs = _channels(misregistration=1.0)
    path = tmp_path / "misregistered.ome.tif"
    ome_tiff.write_volume(
        path, np.stack([pre, post]), channel_names=[PRESYNAPTIC, POSTSYNAPTIC], voxel_size=vs
    )
    out = _ok(["detect", str(path), "--out", str(tmp_path / "res")])
    assert "warning" in out and "do not line up" in out
    manifest = json.loads((tmp_path / "res" / outputs.MANIFEST).read_text())
    (warning,) = manifest["warnings"]
    assert "postsynaptic channel" in warning
    assert manifest["pipeline"]["parameters"]["section_continuity"]["postsynaptic"] < 0.2
    # the report of those results shows it under its header
    html = tmp_path / "report.html"
    _ok(["report", str(tmp_path / "res" / outputs.SYNAPSES_CSV), "--out", str(html)])
    assert 'class="notice warning"' in html.read_text() and "do not line up" in html.read_text()


def test_evaluate_repeats_the_warning_of_the_results_it_scores(tmp_path) -> None:
    """Scores of a run whose sections do not line up come with the detection's warning, on
    the terminal and in --json: the warning bears on the scores."""
    exp = make_experiment(SHAPE, seed=5, channels=[PRESYNAPTIC, POSTSYNAPTIC], misregistration=1.0)
    path = tmp_path / "misregistered.ome.tif"
    ome_tiff.write_volume(
        path,
        np.stack([exp.channels[PRESYNAPTIC], exp.channels[POSTSYNAPTIC]]),
        channel_names=[PRESYNAPTIC, POSTSYNAPTIC],
        voxel_size=exp.voxel_size,
    )
    truth = tmp_path / "truth.csv"
    np.savetxt(truth, exp.synapse_centroids, delimiter=",", header="z,y,x", comments="")
    _ok(["detect", str(path), "--out", str(tmp_path / "res")])
    (warning,) = json.loads((tmp_path / "res" / outputs.MANIFEST).read_text())["warnings"]
    scores = tmp_path / "scores.json"
    out = _ok(["evaluate", str(tmp_path / "res"), "--truth", str(truth), "--max-distance",
               "300", "--unit", "nm", "--json", str(scores)])  # fmt: skip
    assert "the detection warned:" in out and "do not line up" in out
    assert json.loads(scores.read_text())["warnings"] == [f"the detection warned: {warning}"]
