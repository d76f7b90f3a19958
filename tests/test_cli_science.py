"""CLI: synth -> detect -> evaluate round trip, input formats, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from synapse_pipelines.cli import app
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.io import ome_tiff, outputs
from synapse_pipelines.io.synapse_table_files import read_synapse_table

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})

# measured (detector of commit 1f19035): seeds 0-5 of a 16x256x256 experiment give F1
# 0.94-0.99 at 200 nm, seed 1: 0.944 (67 TP / 2 FP / 6 FN); the first detector gave 0.904
ROUND_TRIP_MIN_F1 = 0.90


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _fails(args: list[str]) -> SynapsePipelinesError:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SynapsePipelinesError), result.exception
    return result.exception


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A small synthetic experiment written by the CLI (16 x 128 x 128, seed 2).

    The sparse profile: these tests are about input formats and options of ``detect``
    with the NOMADS default, which finds nothing on the realistic profile (issue 12)."""
    folder = tmp_path_factory.mktemp("synth")
    _ok(
        [
            "synth",
            "--out",
            str(folder),
            "--shape",
            "16,128,128",
            "--seed",
            "2",
            "--profile",
            "sparse",
        ]
    )
    return folder


def test_help_everywhere() -> None:
    for cmd, words in [
        ("detect", ["--channel", "--voxel-size", "--out", "--param", "--presynaptic-channel"]),
        ("evaluate", ["--truth", "--max-distance", "--unit", "--json", "synapses_yx"]),
        ("synth", ["--shape", "--seed", "--out", "--profile", "--snr", "--density"]),
    ]:
        out = _ok([cmd, "--help"])
        for w in words:
            assert w in out, (cmd, w)


def test_round_trip_synth_detect_evaluate(tmp_path) -> None:
    # the sparse profile with the default pipeline, PAIRS (ROUND_TRIP_MIN_F1 was first
    # measured there with NOMADS)
    args = ["--shape", "16,256,256", "--seed", "1", "--profile", "sparse"]
    out = _ok(["synth", "--out", str(tmp_path), *args])
    assert "true synapses" in out
    truth = pd.read_csv(tmp_path / "truth.csv")
    results = tmp_path / "results"
    out = _ok(["detect", str(tmp_path / "channels.ome.tif"), "--out", str(results)])
    assert "Synapsin647 (pre), PSD95_488 (post)" in out
    manifest = outputs.read_manifest(results)
    assert manifest["volume"]["voxel_size"] == [70.0, 100.0, 100.0]  # from the OME metadata
    assert manifest["channels"]["presynaptic"] == "Synapsin647"
    assert manifest["pipeline"]["name"] == "paired-puncta"  # the default
    assert manifest["pipeline"]["parameters"]["seed_level"] == 1.0
    assert set(manifest["timings_seconds"]) == {
        "read",
        "detect",
        "table",
    }  # written before "write" ends
    assert outputs.verify_manifest(results) == []
    table = read_synapse_table(results / outputs.SYNAPSES_CSV)
    assert len(table) == manifest["counts"]["synapses"] > 0
    assert "GAD647_window_zsum" in table.columns  # every channel of the experiment

    report = tmp_path / "eval.json"
    out = _ok(
        [
            "evaluate",
            str(results),
            "--truth",
            str(tmp_path / "truth.csv"),
            "--max-distance",
            "200",
            "--json",
            str(report),
        ]
    )
    scores = json.loads(report.read_text())
    assert scores["n_truth"] == len(truth)
    assert scores["n_predicted"] == len(table)
    assert scores["f1"] >= ROUND_TRIP_MIN_F1, scores
    assert f"{scores['f1']:.4f}" in out

    # the same predictions as a label volume, against the annotation volume
    _ok(
        [
            "evaluate",
            str(results / outputs.SYNAPSE_IDS),
            "--truth",
            str(tmp_path / "annotation.ome.tif"),
            "--max-distance",
            "200",
            "--json",
            str(report),
        ]
    )
    by_labels = json.loads(report.read_text())
    assert by_labels["n_predicted"] == scores["n_predicted"]
    assert by_labels["n_truth"] == scores["n_truth"]
    assert abs(by_labels["f1"] - scores["f1"]) < 0.05


def test_input_formats_give_the_same_table(small, tmp_path) -> None:
    vol = ome_tiff.read_volume(small / "channels.ome.tif")
    names = list(vol.channel_names)
    stacked = vol.data
    ref_dir = tmp_path / "ref"
    _ok(["detect", str(small / "channels.ome.tif"), "--out", str(ref_dir)])
    ref = read_synapse_table(ref_dir / outputs.SYNAPSES_CSV)
    assert len(ref) > 0
    vs = ["--voxel-size", "70,100,100"]

    # one .npy per channel, named after the files
    for n, a in zip(names, stacked, strict=True):
        np.save(tmp_path / f"{n}.npy", a)
    # a multi-channel .npy with --channel-names
    np.save(tmp_path / "all.npy", stacked)
    # a Zarr group with one array per channel
    group = zarr.open_group(str(tmp_path / "exp.zarr"), mode="w")
    for n, a in zip(names, stacked, strict=True):
        group.create_array(n, data=np.ascontiguousarray(a))
    group.attrs["voxel_size"] = [70, 100, 100]
    # an OME-Zarr image (c, z, y, x) with channel labels and a physical scale
    ome = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    ome.create_array("0", data=np.ascontiguousarray(stacked))
    ome.attrs["multiscales"] = [
        {
            "axes": [
                {"name": "c", "type": "channel"},
                *({"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"),
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 70, 100, 100]}],
                }
            ],
        }
    ]
    ome.attrs["omero"] = {"channels": [{"label": n} for n in names]}
    # an ImageJ hyperstack (Z, C, Y, X) as Fiji saves it
    tifffile.imwrite(
        tmp_path / "fiji.tif", np.ascontiguousarray(stacked.transpose(1, 0, 2, 3)), imagej=True
    )
    # plain 3-D TIFFs given as NAME=PATH
    for n in ("Synapsin647", "PSD95_488"):
        tifffile.imwrite(tmp_path / f"plain_{n}.tif", stacked[names.index(n)])

    variants = {
        "npy": [*(str(tmp_path / f"{n}.npy") for n in names), *vs],
        "npy4": [str(tmp_path / "all.npy"), "--channel-names", ",".join(names), *vs],
        "zarr": [str(tmp_path / "exp.zarr")],
        "ome-zarr": [str(tmp_path / "ome.zarr")],
        "imagej": [str(tmp_path / "fiji.tif"), "--channel-names", ",".join(names), *vs],
        "named": [
            "--channel",
            f"Synapsin647={tmp_path / 'plain_Synapsin647.tif'}",
            "-c",
            f"PSD95_488={tmp_path / 'plain_PSD95_488.tif'}",
            *vs,
        ],
    }
    geometry = ["id", "centroid_z", "centroid_y", "centroid_x", "volume_voxels"]
    for label, args in variants.items():
        out_dir = tmp_path / f"out_{label}"
        _ok(["detect", *args, "--out", str(out_dir)])
        got = read_synapse_table(out_dir / outputs.SYNAPSES_CSV)
        pd.testing.assert_frame_equal(got[geometry], ref[geometry], obj=label)
        common = [c for c in got.columns if c in ref.columns]
        pd.testing.assert_frame_equal(got[common], ref[common], obj=label)
        assert outputs.read_manifest(out_dir)["volume"]["voxel_size"] == [70.0, 100.0, 100.0]


def test_explicit_channels_and_parameters(small, tmp_path) -> None:
    out_dir = tmp_path / "o"
    _ok(
        [
            "detect",
            str(small / "channels.ome.tif"),
            "--presynaptic-channel",
            "VGluT1_647",
            "--param",
            "min_volume_um3=0.035",  # 50 voxels of 70 x 100 x 100 nm
            "--out",
            str(out_dir),
            "--origin",
            "100,2000,3000",
        ]
    )
    m = outputs.read_manifest(out_dir)
    assert m["channels"]["presynaptic"] == "VGluT1_647"
    assert m["pipeline"]["parameters"]["min_volume_um3"] == 0.035
    assert m["pipeline"]["parameters"]["min_voxels"] == 50  # PAIRS keeps >= 50 voxels
    assert m["volume"]["origin"] == [100, 2000, 3000]
    t = read_synapse_table(out_dir / outputs.SYNAPSES_CSV)
    assert len(t) and (t["volume_voxels"] >= 50).all()
    assert (t["bbox_z0"] >= 100).all() and (t["bbox_y0"] >= 2000).all()
    ids = ome_tiff.read_volume(out_dir / outputs.SYNAPSE_IDS)
    assert ids.origin == (100, 2000, 3000)


def test_bad_inputs_name_the_option(small, tmp_path) -> None:
    chans = str(small / "channels.ome.tif")
    np.save(tmp_path / "flat.npy", np.zeros((4, 5)))
    np.save(tmp_path / "Synapsin647.npy", np.ones((4, 8, 8), np.uint8))
    np.save(tmp_path / "PSD95_488.npy", np.ones((4, 8, 9), np.uint8))
    np.save(tmp_path / "four.npy", np.ones((2, 4, 8, 8), np.uint8))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.tif").write_text("not a tiff")
    (tmp_path / "a_file").write_text("")
    np.save(tmp_path / "f_Synapsin647.npy", np.random.default_rng(0).random((4, 8, 8)))
    np.save(tmp_path / "f_PSD95_488.npy", np.random.default_rng(1).random((4, 8, 8)))
    cases = [
        (["detect", str(tmp_path / "missing.tif")], "INPUT", "no such file"),
        (["detect", str(tmp_path / "notes.txt")], "INPUT", "cannot tell the format"),
        (["detect", str(tmp_path / "broken.tif")], "INPUT", "not a readable TIFF"),
        (["detect", str(tmp_path / "flat.npy")], "INPUT", "2-D"),
        (
            ["detect", str(tmp_path / "Synapsin647.npy"), str(tmp_path / "PSD95_488.npy")],
            "--channel",
            "differ in shape",
        ),
        (["detect", str(tmp_path / "four.npy")], "--channel-names", "no channel names"),
        (
            ["detect", str(tmp_path / "four.npy"), "--channel-names", "a,b,c"],
            "--channel-names",
            "3 names",
        ),
        (["detect", "--channel", "Synapsin647"], "--channel", "NAME=PATH"),
        (["detect", chans, "--voxel-size", "70,100"], "--voxel-size", "three"),
        (["detect", chans, "--voxel-unit", "parsecs"], "--voxel-unit", "unknown unit"),
        (["detect", chans, "--param", "window"], "--param", "KEY=NUMBER"),
        (["detect", chans, "--param", "window=4"], "--param", "unknown parameter"),  # PAIRS
        (
            ["detect", chans, "--pipeline", "nomads-unsupervised", "--param", "window=4"],
            "--param",
            "odd",
        ),
        (["detect", chans, "--pipeline", "nope"], "pipeline", "available pipelines"),
        (["detect", chans, "--postsynaptic-channel", "psd95"], "postsynaptic_channel", "PSD95"),
        (["detect"], "INPUT", "no input volumes"),
        (["detect", chans, "--out", str(tmp_path / "a_file")], "--out", "is a file"),
        (
            ["detect", str(tmp_path / "f_Synapsin647.npy"), str(tmp_path / "f_PSD95_488.npy")],
            "presynaptic",
            "f_Synapsin647.npy",
        ),
        (["synth", "--out", str(small)], "--out", "--overwrite"),
        (["synth", "--shape", "16,0,3"], "--shape", "positive integers"),
        (
            ["evaluate", str(small / "nothing.csv"), "--truth", chans, "--max-distance", "1"],
            "PREDICTED",
            "no such file",
        ),
        (
            [
                "evaluate",
                str(small / "truth.csv"),
                "--truth",
                chans,
                "--max-distance",
                "100",
            ],
            "--truth",
            "7 channels",
        ),
        (
            [
                "evaluate",
                str(small / "truth.csv"),
                "--truth",
                str(small / "truth.csv"),
                "--max-distance",
                "-1",
            ],
            "--voxel-size",
            "voxel size",
        ),
    ]
    for args, field, words in cases:
        exc = _fails(args)
        assert exc.field == field, (args, str(exc))
        assert words in str(exc), (args, str(exc))


def test_ambiguous_default_channels(tmp_path) -> None:
    a = np.ones((4, 8, 8), np.uint8)
    for n in ("Synapsin647", "PSD95_488", "PSD95_594"):
        np.save(tmp_path / f"{n}.npy", a)
    exc = _fails(["detect", *(str(p) for p in sorted(tmp_path.glob("*.npy")))])
    assert exc.field == "postsynaptic_channel"
    assert "PSD95_488" in str(exc) and "PSD95_594" in str(exc)


def test_refuses_to_overwrite_results(small, tmp_path) -> None:
    args = ["detect", str(small / "channels.ome.tif"), "--out", str(tmp_path)]
    _ok(args)
    before = (tmp_path / outputs.PREDICTIONS).read_bytes()
    exc = _fails([*args, "--param", "min_volume_um3=0.14"])
    assert exc.field == "--out" and "--overwrite" in str(exc)
    assert (tmp_path / outputs.PREDICTIONS).read_bytes() == before
    _ok([*args, "--param", "min_volume_um3=0.14", "--overwrite"])


def test_console_script_exits_2_with_one_clear_line(tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from synapse_pipelines.cli import main; main()",
            "detect",
            "--channel",
            f"Synapsin647={tmp_path / 'nope.tif'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "40"},  # a narrow terminal: the path is longer
    )
    assert proc.returncode == 2
    # one line, the whole path in it, however long the path and narrow the terminal
    (line,) = [t for t in proc.stderr.splitlines() if t.startswith("error:")]
    assert "--channel" in line and str(tmp_path / "nope.tif") in line
    assert "Traceback" not in proc.stderr


def test_imagej_voxel_size_is_read(small, tmp_path) -> None:
    vol = ome_tiff.read_volume(small / "channels.ome.tif")
    hyper = np.ascontiguousarray(vol.data.transpose(1, 0, 2, 3))  # Z, C, Y, X
    tifffile.imwrite(
        tmp_path / "fiji.tif",
        hyper,
        imagej=True,
        resolution=(1 / 0.1, 1 / 0.1),
        metadata={"spacing": 0.07, "unit": "um", "axes": "ZCYX"},
    )
    out_dir = tmp_path / "o"
    _ok(
        [
            "detect",
            str(tmp_path / "fiji.tif"),
            "--channel-names",
            ",".join(vol.channel_names),
            "--out",
            str(out_dir),
        ]
    )
    m = outputs.read_manifest(out_dir)
    assert m["volume"]["voxel_unit"] == "micrometers"
    assert m["volume"]["voxel_size"] == pytest.approx([0.07, 0.1, 0.1])
    ids = ome_tiff.read_volume(out_dir / outputs.SYNAPSE_IDS)
    assert ids.voxel_unit == "micrometers" and ids.voxel_size == pytest.approx((0.07, 0.1, 0.1))


def test_evaluate_per_slice_and_truth_origin(small, tmp_path) -> None:
    results = tmp_path / "r"
    _ok(["detect", str(small / "channels.ome.tif"), "--out", str(results)])
    report = tmp_path / "e.json"
    base = ["evaluate", str(results), "--max-distance", "200", "--json", str(report)]
    _ok([*base, "--truth", str(small / "annotation.ome.tif"), "--per-slice"])
    slices = json.loads(report.read_text())
    assert slices["mode"] == "2-D per slice"
    # 2-D pieces outnumber 3-D objects: each synapse spans several slices
    n_ids = int(ome_tiff.read_volume(results / outputs.SYNAPSE_IDS).data.max())
    assert slices["n_predicted"] > n_ids
    assert 0.5 < slices["f1"] <= 1.0
    # a truth volume declared one slice further down no longer lines up in 3-D either
    _ok([*base, "--truth", str(small / "annotation.ome.tif")])
    aligned = json.loads(report.read_text())
    _ok([*base, "--truth", str(small / "annotation.ome.tif"), "--truth-origin", "3,0,0"])
    shifted = json.loads(report.read_text())
    assert shifted["tp"] < aligned["tp"]
    csv = str(small / "truth.csv")
    exc = _fails([*base, "--truth", csv, "--per-slice"])
    assert exc.field == "--truth" and "label volumes" in str(exc)
    exc = _fails([*base, "--truth", csv, "--truth-origin", "1,0,0"])
    assert exc.field == "--truth-origin"
    exc = _fails(
        [
            *base,
            "--truth",
            str(small / "annotation.ome.tif"),
            "--truth-origin",
            "1,0,0",
            "--per-slice",
        ]
    )
    assert exc.field == "--truth" and "one box" in str(exc)


# -- synth profiles and evaluate's point annotations -------------------------------------


def test_synth_realistic_profile_and_knobs(tmp_path) -> None:
    out = _ok(["synth", "--out", str(tmp_path), "--shape", "4,96,96", "--seed", "3",
               "--snr", "2", "--density", "0.5", "--dtype", "uint16"])  # fmt: skip
    assert "realistic" in out and "--unit nm" in out
    vol = ome_tiff.read_volume(tmp_path / "channels.ome.tif")
    assert vol.data.dtype == np.uint16
    truth = pd.read_csv(tmp_path / "truth.csv")
    assert len(truth) > 0
    for args, field in [
        (["--profile", "easy"], "--profile"),
        (["--n-synapses", "5"], "--n-synapses"),
        (["--profile", "sparse", "--snr", "2"], "--snr"),
        (["--density", "-1"], "--density"),
        (["--dtype", "float32"], "--dtype"),
    ]:
        exc = _fails(["synth", "--out", str(tmp_path / "x"), "--shape", "2,32,32", *args])
        assert exc.field == field, (args, str(exc))


def _results_with_points(folder: Path, zyx: np.ndarray, voxel_size=(70.0, 100.0, 100.0),
                         unit: str = "nanometers") -> Path:  # fmt: skip
    """A results-like synapses.csv (+ its metadata) with the given centroids."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"id": np.arange(1, len(zyx) + 1), "centroid_z": zyx[:, 0],
                          "centroid_y": zyx[:, 1], "centroid_x": zyx[:, 2]})  # fmt: skip
    table.to_csv(folder / outputs.SYNAPSES_CSV, index=False)
    meta = {"voxel_size": list(voxel_size), "voxel_unit": unit}
    (folder / (outputs.SYNAPSES_CSV + ".json")).write_text(json.dumps(meta))
    return folder


def test_evaluate_point_annotations_in_physical_units(tmp_path) -> None:
    pred = np.array([[0, 10, 10], [0, 20, 22], [0, 50, 50]], float)
    results = _results_with_points(tmp_path / "r", pred)
    report = tmp_path / "e.json"
    # y,x truth of one plane, the weiler14 npz layout, matched within 3 pixels
    np.savez(tmp_path / "crop.npz", synapsin=np.zeros((1, 64, 64), np.uint16),
             synapses_yx=np.array([[10, 12], [20, 20], [40, 40]]))  # fmt: skip
    out = _ok(["evaluate", str(results), "--truth", str(tmp_path / "crop.npz"),
               "--max-distance", "3", "--unit", "px", "--json", str(report)])  # fmt: skip
    scores = json.loads(report.read_text())
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 1, 1)
    assert scores["mode"] == "2-D (y,x)"
    assert "one-to-one" in out and "within 3 px" in out and "any plane" in out
    assert scores["rule"].startswith("one-to-one")
    # the same in nm or um, through the results' voxel size (100 nm pixels)
    _ok(["evaluate", str(results), "--truth", str(tmp_path / "crop.npz"),
         "--max-distance", "300", "--unit", "nm", "--json", str(report)])  # fmt: skip
    assert json.loads(report.read_text())["tp"] == 2
    _ok(["evaluate", str(results), "--truth", str(tmp_path / "crop.npz"),
         "--max-distance", "0.15", "--unit", "um", "--json", str(report)])  # fmt: skip
    assert json.loads(report.read_text())["tp"] == 0  # both pairs are 2 px = 200 nm apart
    # a z,y,x CSV without a header, and a y,x CSV with one
    (tmp_path / "zyx.csv").write_text("0,10,10\n3,20,22\n")
    _ok(["evaluate", str(results), "--truth", str(tmp_path / "zyx.csv"),
         "--max-distance", "150", "--unit", "nm", "--json", str(report)])  # fmt: skip
    zyx = json.loads(report.read_text())
    assert zyx["mode"] == "3-D" and zyx["tp"] == 1  # plane 3 is 210 nm from plane 0
    (tmp_path / "yx.csv").write_text("y,x\n10,10\n20,22\n")
    _ok(["evaluate", str(results), "--truth", str(tmp_path / "yx.csv"),
         "--max-distance", "150", "--unit", "nm", "--json", str(report)])  # fmt: skip
    assert json.loads(report.read_text())["tp"] == 2


def test_evaluate_micrometre_results_and_bad_annotations(tmp_path) -> None:
    pred = np.array([[1, 10, 10]], float)
    results = _results_with_points(tmp_path / "r", pred, (0.07, 0.1, 0.1), "micrometers")
    (tmp_path / "t.csv").write_text("1,12,10\n")
    report = tmp_path / "e.json"
    _ok(["evaluate", str(results), "--truth", str(tmp_path / "t.csv"),
         "--max-distance", "250", "--unit", "nm", "--json", str(report)])  # fmt: skip
    scores = json.loads(report.read_text())
    assert scores["tp"] == 1 and scores["max_distance"] == pytest.approx(0.25)
    (tmp_path / "bad.csv").write_text("z,y,x\n1,2\n")
    exc = _fails(["evaluate", str(results), "--truth", str(tmp_path / "bad.csv"),
                  "--max-distance", "1"])  # fmt: skip
    assert exc.field == "--truth" and "bad.csv" in str(exc) and "line 2" in str(exc)
    assert "Fix:" in str(exc)
    np.savez(tmp_path / "nothing.npz", image=np.zeros(3))
    exc = _fails(["evaluate", str(results), "--truth", str(tmp_path / "nothing.npz"),
                  "--max-distance", "1"])  # fmt: skip
    assert exc.field == "--truth" and "synapses_yx" in str(exc)
    exc = _fails(["evaluate", str(results), "--truth", str(tmp_path / "t.csv"),
                  "--max-distance", "1", "--unit", "furlongs"])  # fmt: skip
    assert exc.field == "--unit"
    # no voxel size anywhere: a physical distance is refused, pixels are fine
    (tmp_path / "p.csv").write_text("1,10,10\n")
    exc = _fails(["evaluate", str(tmp_path / "p.csv"), "--truth", str(tmp_path / "t.csv"),
                  "--max-distance", "250", "--unit", "nm"])  # fmt: skip
    assert exc.field == "--voxel-size"
    _ok(["evaluate", str(tmp_path / "p.csv"), "--truth", str(tmp_path / "t.csv"),
         "--max-distance", "2", "--unit", "px", "--json", str(report)])  # fmt: skip
    assert json.loads(report.read_text())["tp"] == 1


def test_evaluate_against_a_published_0_1_detection_mask(tmp_path) -> None:
    """A 0/1 uint8 volume (like at_example's peer detections) is a mask: its objects are
    the 26-connected components, not one label 1."""
    peer = np.zeros((3, 20, 20), np.uint8)
    peer[1, 2:4, 2:4] = 1
    peer[1, 12:14, 12:14] = 1
    tifffile.imwrite(tmp_path / "peer.tif", peer, photometric="minisblack")
    results = _results_with_points(tmp_path / "r", np.array([[1, 2.5, 2.5]]))
    report = tmp_path / "e.json"
    _ok(["evaluate", str(results), "--truth", str(tmp_path / "peer.tif"),
         "--max-distance", "400", "--unit", "nm", "--json", str(report)])  # fmt: skip
    scores = json.loads(report.read_text())
    assert (scores["n_truth"], scores["tp"]) == (2, 1)
