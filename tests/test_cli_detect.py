"""The CLI's detect command: every input format (OME-TIFF, .npy, Zarr, OME-Zarr, ImageJ
hyperstacks, NAME=PATH TIFFs) gives the same synapse table, the voxel size is read from the
metadata, explicit channels, parameters and origin reach the results, results are never
overwritten by accident, and every bad input of detect, synth and evaluate names its option
(the console script in one line, exit 2). The synth -> detect -> evaluate round trip and
evaluate's truth formats: test_cli_synth_evaluate.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from fixtures.cli_science import fails as _fails, ok as _ok

from synapse_pipelines.io import ome_tiff, outputs
from synapse_pipelines.io.synapse_table_files import read_synapse_table


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
    np.save(tmp_path / "line.npy", np.zeros(5))
    np.save(tmp_path / "Synapsin647.npy", np.ones((4, 8, 8), np.uint8))
    np.save(tmp_path / "PSD95_488.npy", np.ones((4, 8, 9), np.uint8))
    np.save(tmp_path / "four.npy", np.ones((2, 4, 8, 8), np.uint8))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.tif").write_text("not a tiff")
    (tmp_path / "a_file").write_text("")
    nan = np.random.default_rng(0).random((4, 8, 8))
    nan[1, 2, 3] = np.nan  # floats are read as grey levels; NaN is no grey level
    np.save(tmp_path / "f_Synapsin647.npy", nan)
    np.save(tmp_path / "f_PSD95_488.npy", np.random.default_rng(1).random((4, 8, 8)))
    cases = [
        (["detect", str(tmp_path / "missing.tif")], "INPUT", "no such file"),
        (["detect", str(tmp_path / "notes.txt")], "INPUT", "cannot tell the format"),
        (["detect", str(tmp_path / "broken.tif")], "INPUT", "not a readable TIFF"),
        (["detect", str(tmp_path / "line.npy")], "INPUT", "1-D"),
        (
            ["detect", str(tmp_path / "Synapsin647.npy"), str(tmp_path / "PSD95_488.npy")],
            "INPUT",
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
        (  # NOMADS' size filter is a volume (docs/detection.md), not min_size voxels
            ["detect", chans, "--pipeline", "nomads-unsupervised", "-p", "min_size=30"],
            "--param",
            "accepted: min_volume_um3, window",
        ),
        (["detect", chans, "--pipeline", "nope"], "pipeline", "available pipelines"),
        (["detect", chans, "--postsynaptic-channel", "psd95"], "--postsynaptic-channel", "PSD95"),
        (  # local files are "the input", not a BOSS experiment
            ["detect", chans, "--presynaptic-channel", "vglut"],
            "--presynaptic-channel",
            "'vglut' is not in the input; its channels are: Synapsin647,",
        ),
        (
            ["detect", str(tmp_path / "four.npy"), "--channel-names", "a,b"],
            "--presynaptic-channel",
            "no channel name contains 'synapsin'; the input's channels are: a, b",
        ),
        (
            ["detect", chans, "--postsynaptic-channel", "Synapsin647"],
            "--postsynaptic-channel",
            "both the presynaptic and the postsynaptic",
        ),
        (["detect"], "INPUT", "no input volumes"),
        (["detect", chans, "--out", str(tmp_path / "a_file")], "--out", "is a file"),
        (
            ["detect", str(tmp_path / "f_Synapsin647.npy"), str(tmp_path / "f_PSD95_488.npy")],
            "INPUT",
            "1 NaN or infinite values",
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


def test_two_dimensional_files_are_one_plane(small, tmp_path) -> None:
    """A 2-D TIFF per channel (one plane, as the expert-annotated crops come) is detected in
    2-D like the same plane given as a 1 x Y x X stack: the same table."""
    vol = ome_tiff.read_volume(small / "channels.ome.tif")
    z = vol.data.shape[1] // 2
    for i, name in enumerate(vol.channel_names):
        tifffile.imwrite(tmp_path / f"{name}.tif", vol.data[i, z])
        np.save(tmp_path / f"stack_{name}.npy", vol.data[i, z : z + 1])
    flat, stack = tmp_path / "flat", tmp_path / "stack"
    files = [str(tmp_path / f"{n}.tif") for n in ("Synapsin647", "PSD95_488")]
    _ok(["detect", *files, "--voxel-size", "70,100,100", "--out", str(flat)])
    named = [f"{n}={tmp_path / f'stack_{n}.npy'}" for n in ("Synapsin647", "PSD95_488")]
    args = [a for n in named for a in ("--channel", n)]
    _ok(["detect", *args, "--voxel-size", "70,100,100", "--out", str(stack)])
    table = read_synapse_table(flat / outputs.SYNAPSES_CSV)
    assert len(table) > 0 and (table["bbox_z0"] == 0).all()
    pd.testing.assert_frame_equal(table, read_synapse_table(stack / outputs.SYNAPSES_CSV))
    assert outputs.read_manifest(flat)["volume"]["shape"][0] == 1
    # one plane of several channels in one OME-TIFF (a cutout of one section): TIFF
    # readers drop its singleton z, which must not make the channels a z-stack
    both = tmp_path / "plane.ome.tif"
    ome_tiff.write_volume(
        both,
        vol.data[:, z : z + 1],
        voxel_size=(70.0, 100.0, 100.0),
        channel_names=list(vol.channel_names),
        origin=(z, 0, 0),
    )
    one_file = tmp_path / "one_file"
    _ok(["detect", str(both), "--out", str(one_file)])
    moved = read_synapse_table(one_file / outputs.SYNAPSES_CSV)
    assert (moved["bbox_z0"] == z).all()  # the recorded origin
    same = [c for c in table.columns if c in moved.columns and "z" not in c]
    assert {"centroid_y", "centroid_x", "volume_voxels"} <= set(same)
    pd.testing.assert_frame_equal(moved[same], table[same])


def test_ambiguous_default_channels(tmp_path) -> None:
    a = np.ones((4, 8, 8), np.uint8)
    for n in ("Synapsin647", "PSD95_488", "PSD95_594"):
        np.save(tmp_path / f"{n}.npy", a)
    exc = _fails(["detect", *(str(p) for p in sorted(tmp_path.glob("*.npy")))])
    assert exc.field == "--postsynaptic-channel"  # detect's option, not the request field
    assert "PSD95_488" in str(exc) and "PSD95_594" in str(exc)
    assert "set --postsynaptic-channel to the one to use" in str(exc)


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


@pytest.mark.parametrize("pipeline", ["paired-puncta", "nomads-unsupervised"])
def test_a_missing_voxel_size_says_what_the_detector_assumed(
    small, tmp_path, pipeline: str
) -> None:
    """Plain TIFFs carry no voxel size: the table stays in pixels, and the note and the
    summary say which voxel size the detector's physical sizes assumed."""
    vol = ome_tiff.read_volume(small / "channels.ome.tif")
    for i, name in enumerate(vol.channel_names):
        tifffile.imwrite(tmp_path / f"{name}.tif", vol.data[i])
    out_dir = tmp_path / "o"
    output = _ok(
        [
            "detect",
            str(tmp_path / "Synapsin647.tif"),
            str(tmp_path / "PSD95_488.tif"),
            "--pipeline",
            pipeline,
            "--out",
            str(out_dir),
        ]
    )
    said = " ".join(output.split())
    assert f"note: no voxel size in the files or options: {pipeline} assumed 70,100,100 nm" in said
    assert f"1,1,1 pixel; not in the files: {pipeline} assumed 70,100,100 nm" in said
    m = outputs.read_manifest(out_dir)
    assert m["volume"]["voxel_unit"] == "pixel"
    assert m["pipeline"]["parameters"]["voxel_size_assumed"] is True


def test_an_implausible_voxel_size_is_named_as_the_likely_cause(small, tmp_path) -> None:
    """70,100,100 given in micrometres (meant: nanometres) is 70 um voxels: detect warns
    before the run, marks the voxel size in the summary, and an empty result names the unit
    before anything the data might be blamed for."""
    out_dir = tmp_path / "o"
    args = ["detect", str(small / "channels.ome.tif"), "--voxel-size", "70,100,100"]
    output = " ".join(_ok([*args, "--voxel-unit", "um", "--out", str(out_dir)]).split())
    assert "warning: the voxel size 70000,100000,100000 nm (z,y,x) is outside" in output
    assert "(implausible: check the unit)" in output
    m = outputs.read_manifest(out_dir)
    if m["counts"]["synapses"] == 0:
        assert m["explanation"].startswith("the voxel size 70000,100000,100000 nm")
    plausible = " ".join(_ok([*args, "--out", str(tmp_path / "nm")]).split())
    assert "warning:" not in plausible and "(implausible" not in plausible


def test_rgb_and_channels_last_files_are_refused_with_how_to_give_channels(tmp_path) -> None:
    """An RGB TIFF (y, x, 3) is not a 256 x 256 x 3 volume, nor a channels-last stack
    (z, y, x, c) 8 channels of the wrong axis: both are refused, saying how to give channels."""
    rng = np.random.default_rng(0)
    tifffile.imwrite(
        tmp_path / "rgb.tif", rng.integers(0, 255, (64, 64, 3), np.uint8), photometric="rgb"
    )
    tifffile.imwrite(
        tmp_path / "zyx_rgb.tif", rng.integers(0, 255, (4, 64, 64, 3), np.uint8), photometric="rgb"
    )
    tifffile.imwrite(tmp_path / "zyxc.tif", rng.integers(0, 255, (8, 64, 64, 2), np.uint8))
    np.save(tmp_path / "zyxc.npy", rng.integers(0, 255, (8, 64, 64, 2), np.uint8))
    out = str(tmp_path / "o")
    for args, field, words in [
        (
            ["-c", f"synapsin={tmp_path / 'rgb.tif'}", "-c", f"psd95={tmp_path / 'rgb.tif'}"],
            "--channel",
            "RGB",
        ),
        ([str(tmp_path / "zyx_rgb.tif")], "INPUT", "RGB"),
        ([str(tmp_path / "zyxc.tif")], "INPUT", "channels-last"),
        (
            [str(tmp_path / "zyxc.npy"), "--channel-names", "synapsin,psd95"],
            "INPUT",
            "channels-last",
        ),
    ]:
        exc = _fails(["detect", *args, "--out", out])
        assert exc.field == field, (args, str(exc))
        assert words in str(exc) and "64, 64" in str(exc), (args, str(exc))
        assert "one file per channel" in (exc.hint or "") and "c, z, y, x" in (exc.hint or "")
    assert not (tmp_path / "o").exists()


def test_a_bool_input_is_told_what_the_detectors_accept(tmp_path) -> None:
    """The fix for a bool volume names what detect then accepts."""
    np.save(tmp_path / "synapsin.npy", np.zeros((4, 16, 16), bool))
    exc = _fails(["detect", str(tmp_path / "synapsin.npy"), "--out", str(tmp_path / "o")])
    assert exc.field == "INPUT" and "bool" in str(exc)
    assert "uint8 or uint16" in (exc.hint or "") and "bool" in (exc.hint or "")


def test_a_voxel_size_below_a_nanometre_names_the_unit(small, tmp_path) -> None:
    """0.07,0.1,0.1 without a unit is read as nm: refused before the run with the fix
    --voxel-unit um (it used to fail in smoothing_sigma_nm with an overflow)."""
    chans = str(small / "channels.ome.tif")
    out = tmp_path / "o"
    exc = _fails(["detect", chans, "--voxel-size", "0.07,0.1,0.1", "--out", str(out)])
    assert exc.field == "--voxel-size" and "0.07,0.1,0.1 nanometers" in str(exc)
    assert "--voxel-unit um" in (exc.hint or "")
    assert not out.exists()
    exc = _fails(
        [
            "detect",
            chans,
            "--voxel-size",
            "0.0007,0.001,0.001",
            "--voxel-unit",
            "um",
            "--out",
            str(out),
        ]
    )
    assert exc.field == "--voxel-size" and "--voxel-unit um" not in (exc.hint or "")
    # a file that records such a size: the fix is to override it
    vol = ome_tiff.read_volume(small / "channels.ome.tif")
    ome_tiff.write_volume(
        tmp_path / "tiny.ome.tif",
        vol.data,
        voxel_size=(0.07, 0.1, 0.1),
        channel_names=vol.channel_names,
    )
    exc = _fails(["detect", str(tmp_path / "tiny.ome.tif"), "--out", str(out)])
    assert exc.field == "--voxel-size" and "tiny.ome.tif" in str(exc)
    assert "--voxel-size" in (exc.hint or "") and "--voxel-unit" in (exc.hint or "")
    _ok(["detect", chans, "--voxel-size", "0.07,0.1,0.1", "--voxel-unit", "um", "--out", str(out)])


def test_an_output_that_cannot_be_created_is_refused_before_any_input_is_read(
    small, tmp_path
) -> None:
    """A path under a file (NotADirectoryError) or in a place nothing can be written
    (/proc) is one error naming the option, checked before the inputs (a missing file
    here) are read: not a traceback after the detection has run."""
    (tmp_path / "syn.npy").write_text("")
    missing = str(tmp_path / "missing.tif")
    places = [(tmp_path / "syn.npy" / "sub", "syn.npy is a file")]
    if Path("/proc").is_dir():
        places.append((Path("/proc/nope"), "nothing can be written in /proc"))
    for place, words in places:
        for args, option in [
            (["detect", missing, "--out", str(place)], "--out"),
            (["synth", "--out", str(place), "--shape", "4,32,32"], "--out"),
            (["report", missing, "--out", str(place / "r.html")], "--out"),
            (
                [
                    "evaluate",
                    missing,
                    "--truth",
                    missing,
                    "--max-distance",
                    "1",
                    "--json",
                    str(place / "e.json"),
                ],
                "--json",
            ),
        ]:
            exc = _fails(args)
            assert exc.field == option and words in str(exc), (args, str(exc))


def test_voxels_too_fine_for_the_detector_are_detected_on_a_coarser_grid(tmp_path) -> None:
    """collman15v2 stores its light channels on the electron micrographs' 2.24 nm grid,
    where PAIRS cannot run. Local files have no BOSS levels, so detect averages the two
    channels onto the first in-plane grid (2**k x 2**k pixels) that runs, detects there and
    expands the labels back, and says so. Here a volume given at 70 x 50 x 50 nm, each voxel
    repeated 2 x 2 times (70 x 25 x 25 nm, where PAIRS' band-pass would overflow): the first
    grid that runs is the original's, so the ids are the original volume's, voxel for voxel,
    expanded."""
    from synapse_pipelines.science.paired_puncta import detect_paired_puncta
    from synapse_pipelines.science.pyramid import expand_labels
    from synapse_pipelines.science.synthetic import POSTSYNAPTIC, PRESYNAPTIC, make_experiment

    exp = make_experiment((6, 48, 40), seed=3, channels=[PRESYNAPTIC, POSTSYNAPTIC])
    pre, post = exp.channels[PRESYNAPTIC], exp.channels[POSTSYNAPTIC]
    fine = [np.repeat(np.repeat(c, 2, axis=1), 2, axis=2)[:, :95, :] for c in (pre, post)]
    paths = []
    for name, volume in zip((PRESYNAPTIC, POSTSYNAPTIC), fine, strict=True):
        paths.append(str(tmp_path / f"{name}.npy"))
        np.save(paths[-1], volume)
    out = tmp_path / "fine"
    summary = _ok(["detect", *paths, "--voxel-size", "70,25,25", "--out", str(out)])
    said = " ".join(summary.replace("│", " ").split())
    assert "averaged over 2 x 2 pixels (voxels of 70 x 50 x 50 nm)" in said, said
    manifest = outputs.read_manifest(out)
    assert manifest["warnings"][0].startswith("detected on the channels averaged over 2 x 2")
    assert "paired-puncta cannot run on the input's 70 x 25 x 25 nm" in manifest["warnings"][0]
    assert manifest["pipeline"]["parameters"]["detection_level"] == 1
    assert manifest["pipeline"]["parameters"]["detection_voxel_size_nm"] == [70.0, 50.0, 50.0]
    ids = tifffile.imread(out / outputs.SYNAPSE_IDS)
    assert ids.shape == fine[0].shape
    # the last row of 2 x 2 groups is cut at 95 rows: its mean is still the original's
    direct = detect_paired_puncta(pre, post, voxel_size=(70.0, 50.0, 50.0)).labels
    np.testing.assert_array_equal(ids, expand_labels(direct, 1, (95, 80)))
    assert ids.max() > 0
    table = read_synapse_table(out / outputs.SYNAPSES_CSV)
    assert len(table) == ids.max()


def test_voxels_too_fine_on_every_axis_are_refused_with_the_fix(tmp_path) -> None:
    """In-plane binning cannot help where z is as fine as y and x: the detector's own
    refusal, naming the option, as before."""
    rng = np.random.default_rng(0)
    for name in ("Synapsin647", "PSD95_488"):
        np.save(tmp_path / f"{name}.npy", rng.integers(0, 255, (4, 64, 64), dtype=np.uint8))
    err = _fails(
        [
            "detect",
            str(tmp_path / "Synapsin647.npy"),
            str(tmp_path / "PSD95_488.npy"),
            "--voxel-size",
            "2,2,2",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert err.field == "smoothing_sigma_nm" and "downsample" in (err.hint or "")


def test_other_number_types_are_read_as_grey_levels_and_said(small, tmp_path) -> None:
    """Float data (deconvolution, processing) and wide integers: whole grey levels within
    0..65535 exactly, anything else rescaled linearly to uint16, with a note in the summary
    and the manifest; NaN and booleans are refused with the fix."""
    vol = ome_tiff.read_volume(small / "channels.ome.tif")
    pair = {
        n: vol.data[i] for i, n in enumerate(vol.channel_names) if n in ("Synapsin647", "PSD95_488")
    }
    runs = {}
    for kind, convert in (
        ("uint8", lambda a: a),
        ("float_whole", lambda a: a.astype(np.float64)),
        ("int32", lambda a: a.astype(np.int32)),
        ("float_scaled", lambda a: a.astype(np.float32) / 255 - 0.25),
    ):
        files = []
        for name, data in pair.items():
            files.append(tmp_path / f"{kind}_{name}.npy")
            np.save(files[-1], convert(data))
        out = tmp_path / kind
        shown = _ok(
            [
                "detect",
                *map(str, files),
                "--presynaptic-channel",
                f"{kind}_Synapsin647",
                "--postsynaptic-channel",
                f"{kind}_PSD95_488",
                "--out",
                str(out),
                "--voxel-size",
                "70,100,100",
            ]
        )
        runs[kind] = (read_synapse_table(out / outputs.SYNAPSES_CSV), outputs.read_manifest(out))
        if kind == "uint8":
            assert "rescaled" not in shown and "read as" not in shown
    table = runs["uint8"][0][["centroid_z", "centroid_y", "centroid_x", "volume_voxels"]]
    for kind in ("float_whole", "int32"):  # the same grey levels: the same synapses
        other, manifest = runs[kind]
        pd.testing.assert_frame_equal(other[table.columns], table)
        assert any("whole grey levels read as uint8" in w for w in manifest["warnings"])
    scaled, manifest = runs["float_scaled"]
    assert any("rescaled linearly to 0..65535" in w for w in manifest["warnings"])
    # a linear map leaves the per-section thresholds in place, to within a histogram bin
    assert abs(len(scaled) - len(table)) <= 0.05 * len(table)
    for bad, words in ((np.full((4, 16, 16), np.nan), "NaN"), (np.ones((4, 16, 16), bool), "bool")):
        np.save(tmp_path / "Synapsin647.npy", bad)
        np.save(tmp_path / "PSD95_488.npy", np.ones((4, 16, 16), np.uint8))
        files = [str(tmp_path / "Synapsin647.npy"), str(tmp_path / "PSD95_488.npy")]
        error = _fails(["detect", *files, "--out", str(tmp_path / f"bad_{words}")])
        assert error.field == "INPUT" and words in error.message and error.hint


def test_resolution_detects_on_the_grid_asked_for_or_says_which_runs(tmp_path) -> None:
    """--resolution K averages 2**K x 2**K pixels in-plane, as a BOSS level, detects there
    and expands the labels back; a level the pipeline cannot run at, or one that leaves a
    single pixel, is refused naming the option and the level that runs."""
    from synapse_pipelines.science.paired_puncta import detect_paired_puncta
    from synapse_pipelines.science.pyramid import downsample_region, expand_labels
    from synapse_pipelines.science.synthetic import POSTSYNAPTIC, PRESYNAPTIC, make_experiment

    exp = make_experiment((6, 96, 80), seed=5, channels=[PRESYNAPTIC, POSTSYNAPTIC])
    pre, post = exp.channels[PRESYNAPTIC], exp.channels[POSTSYNAPTIC]
    paths = []
    for name, volume in ((PRESYNAPTIC, pre), (POSTSYNAPTIC, post)):
        paths.append(str(tmp_path / f"{name}.npy"))
        np.save(paths[-1], volume)
    out = tmp_path / "level1"
    said = _ok(
        ["detect", *paths, "--voxel-size", "70,50,50", "--resolution", "1", "--out", str(out)]
    )
    assert "level 1 was asked for" in " ".join(said.replace("│", " ").split())
    manifest = outputs.read_manifest(out)
    assert manifest["pipeline"]["parameters"]["detection_level"] == 1
    assert manifest["pipeline"]["parameters"]["detection_voxel_size_nm"] == [70.0, 100.0, 100.0]
    binned = [downsample_region(c, (0, 0), 1, "image")[0] for c in (pre, post)]
    direct = detect_paired_puncta(*binned, voxel_size=(70.0, 100.0, 100.0)).labels
    ids = tifffile.imread(out / outputs.SYNAPSE_IDS)
    assert ids.max() > 0
    np.testing.assert_array_equal(ids, expand_labels(direct, 1, pre.shape[1:]))
    # level 0 of voxels too fine: refused with the level that runs
    refused = _fails(
        [
            "detect",
            *paths,
            "--voxel-size",
            "70,20,20",
            "--resolution",
            "0",
            "--out",
            str(tmp_path / "fine"),
        ]
    )
    assert refused.field == "--resolution" and "level 1 runs" in (refused.hint or "")
    whole = _fails(
        [
            "detect",
            *paths,
            "--voxel-size",
            "70,100,100",
            "--resolution",
            "7",
            "--out",
            str(tmp_path / "whole"),
        ]
    )
    assert whole.field == "--resolution" and "whole 96 x 80 pixel plane" in whole.message
    assert not (tmp_path / "fine").exists() and not (tmp_path / "whole").exists()
