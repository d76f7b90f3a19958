"""Results folder: OME-TIFF volumes with voxel sizes, manifest checksums, no secrets."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from typer.testing import CliRunner

from synapse_pipelines.cli import app
from synapse_pipelines.core.artefacts import PREDICTIONS_OME_ZARR, SYNAPSE_IDS_OME_ZARR
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.io import ome_tiff, outputs
from synapse_pipelines.io.synapse_table_files import read_synapse_table
from synapse_pipelines.science.features import synapse_table

TOKEN = "tok-3f9a1c7e5b2d4f60a8e1-SECRET"


def _detection(seed: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((6, 40, 50)) > 0.6).astype(np.uint8) * 255
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    chans = {"Synapsin647": rng.integers(0, 255, mask.shape, dtype=np.uint8)}
    return mask, labels, chans


def _request():
    from synapse_pipelines.core.request import parse_request

    return parse_request(
        {
            "collection": "collman",
            "experiment": "collman15v2",
            "z_range": "0,6",
            "y_range": [100, 140],
            "x_range": [200, 250],
            "token": TOKEN,
            "notification_email": "someone@example.org",
        }
    )


def test_volume_round_trip_keeps_voxel_size_and_origin(tmp_path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    p = ome_tiff.write_volume(
        tmp_path / "v.ome.tif", data, voxel_size=(70.0, 2.24, 2.24), origin=(5, 6, 7)
    )
    back = ome_tiff.read_volume(p)
    np.testing.assert_array_equal(back.data, data)
    assert back.voxel_size == (70.0, 2.24, 2.24)
    assert back.voxel_unit == "nanometers"
    assert back.origin == (5, 6, 7)
    # the voxel size is in the standard OME fields any viewer reads, compressed with zlib
    with tifffile.TiffFile(p) as tif:
        assert 'PhysicalSizeZ="70.0"' in tif.ome_metadata
        assert 'PhysicalSizeXUnit="nm"' in tif.ome_metadata
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE


def test_multichannel_volume_and_uint64(tmp_path) -> None:
    data = np.zeros((2, 3, 4, 5), np.uint8)
    data[1] = 9
    p = ome_tiff.write_volume(
        tmp_path / "c.ome.tif", data, voxel_size=(1, 1, 1), channel_names=["DAPI1st", "GAD647"]
    )
    back = ome_tiff.read_volume(p)
    assert back.channel_names == ("DAPI1st", "GAD647")
    np.testing.assert_array_equal(back.data, data)
    ids = np.zeros((2, 3, 4), np.uint64)
    ids[0, 0, 0] = 7
    back = ome_tiff.read_volume(
        ome_tiff.write_volume(tmp_path / "i.ome.tif", ids, voxel_size=(1, 1, 1))
    )
    assert back.data.dtype == np.uint32 and back.data[0, 0, 0] == 7
    ids[0, 0, 0] = 2**40
    with pytest.raises(SynapsePipelinesError, match="uint64"):
        ome_tiff.write_volume(tmp_path / "j.ome.tif", ids, voxel_size=(1, 1, 1))


def test_write_results_manifest_and_no_token(tmp_path) -> None:
    mask, labels, chans = _detection()
    table = synapse_table(labels, chans, voxel_size=(70, 2.24, 2.24), origin=(0, 100, 200))
    req = _request()
    folder = tmp_path / req.results_key
    manifest = outputs.write_results(
        folder,
        mask=mask,
        labels=labels,
        table=table,
        voxel_size=(70, 2.24, 2.24),
        origin=(0, 100, 200),
        request=req,
        pipeline="nomads-unsupervised",
        parameters={"window": 3, "min_size": 30},
        timings={"detect": 0.5, "table": 0.1},
        counts={"components_before_size_filter": 99},
    )
    assert manifest["results_key"] == req.results_key
    assert manifest["request"]["collection"] == "collman"
    assert "token" not in manifest["request"]
    assert manifest["counts"]["synapses"] == labels.max() == len(table)
    assert manifest["counts"]["foreground_voxels"] == int((mask > 0).sum())
    assert manifest["software"]["numpy"] == np.__version__
    assert manifest["pipeline"]["parameters"] == {"window": 3, "min_size": 30}
    assert {name.split("/")[0] for name in manifest["files"]} == {
        outputs.PREDICTIONS,
        outputs.SYNAPSE_IDS,
        outputs.SYNAPSES_CSV,
        outputs.SYNAPSES_META,
        PREDICTIONS_OME_ZARR,  # the viewable copies (tests/test_ome_zarr.py)
        SYNAPSE_IDS_OME_ZARR,
    }
    for name, entry in manifest["files"].items():
        raw = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    assert outputs.verify_manifest(folder) == []

    pred = ome_tiff.read_volume(folder / outputs.PREDICTIONS)
    assert pred.data.dtype == np.uint8 and set(np.unique(pred.data)) <= {0, 255}
    np.testing.assert_array_equal(pred.data > 0, mask > 0)
    assert pred.origin == (0, 100, 200)
    ids = ome_tiff.read_volume(folder / outputs.SYNAPSE_IDS)
    assert labels.dtype == np.int32 and ids.data.dtype == np.uint32  # the contract's type
    np.testing.assert_array_equal(ids.data, labels)
    assert len(read_synapse_table(folder / outputs.SYNAPSES_CSV)) == len(table)

    # the report and publish steps add their files later: manifest re-hashed
    m2 = outputs.add_files(
        folder,
        {outputs.REPORT: "<html></html>", outputs.LINKS: b"a,b\n"},
        timings_seconds={"report": 1.5},
    )
    assert outputs.REPORT in m2["files"] and outputs.LINKS in m2["files"]
    assert m2["timings_seconds"] == {"detect": 0.5, "table": 0.1, "report": 1.5}
    with pytest.raises(SynapsePipelinesError, match="already exists"):
        outputs.add_files(folder, {outputs.REPORT: "again"})

    # tamper: verification notices
    (folder / outputs.LINKS).write_bytes(b"changed\n")
    assert outputs.verify_manifest(folder) == [f"{outputs.LINKS}: checksum or size differs"]

    # the token appears in no byte of any written file (compressed files: scan raw bytes
    # and the decoded OME XML / CSV text)
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    with tifffile.TiffFile(folder / outputs.PREDICTIONS) as tif:
        assert TOKEN not in tif.ome_metadata


def test_scrub_drops_secret_keys_even_if_passed(tmp_path) -> None:
    mask, labels, chans = _detection(2)
    table = synapse_table(labels, chans, voxel_size=(1, 1, 1))
    manifest = outputs.write_results(
        tmp_path / "r",
        mask=mask,
        labels=labels,
        table=table,
        voxel_size=(1, 1, 1),
        request={"collection": "c", "token": TOKEN, "nested": [{"password": TOKEN}]},
    )
    text = (tmp_path / "r" / outputs.MANIFEST).read_text()
    assert TOKEN not in text
    assert manifest["request"] == {"collection": "c", "nested": [{}]}


def test_refuses_to_overwrite_results(tmp_path) -> None:
    mask, labels, chans = _detection(3)
    table = synapse_table(labels, chans, voxel_size=(1, 1, 1))
    kwargs = dict(mask=mask, labels=labels, table=table, voxel_size=(1, 1, 1))
    outputs.write_results(tmp_path, **kwargs)
    before = (tmp_path / outputs.PREDICTIONS).read_bytes()
    with pytest.raises(SynapsePipelinesError, match="--overwrite"):
        outputs.write_results(tmp_path, **{**kwargs, "mask": np.zeros_like(mask)})
    assert (tmp_path / outputs.PREDICTIONS).read_bytes() == before
    m = outputs.write_results(tmp_path, **{**kwargs, "mask": np.zeros_like(mask)}, overwrite=True)
    assert m["counts"]["foreground_voxels"] == 0
    assert json.loads((tmp_path / outputs.MANIFEST).read_text())["files"]


def test_overwrite_replaces_every_earlier_artefact(tmp_path) -> None:
    """Replacing a blockwise run's results (Zarr stores, a report, a raw channel of another
    name) with a single job's leaves nothing of the run before; other files stay. A refused
    replacement (bad ids) removes nothing."""
    mask, labels, chans = _detection(3)
    table = synapse_table(labels, chans, voxel_size=(1, 1, 1))
    kwargs = dict(mask=mask, labels=labels, table=table, voxel_size=(1, 1, 1))
    for stale in (outputs.PREDICTIONS_ZARR, outputs.SYNAPSE_IDS_ZARR, "raw/Old.ome.zarr"):
        (tmp_path / stale).mkdir(parents=True)
        (tmp_path / stale / "zarr.json").write_text("{}")
    for stale in (outputs.MANIFEST, outputs.REPORT, outputs.CLUSTERING, "notes.txt"):
        (tmp_path / stale).write_text("earlier")
    with pytest.raises(SynapsePipelinesError, match="labels"):
        outputs.write_results(tmp_path, **{**kwargs, "labels": -labels.astype(int)}, overwrite=True)
    assert (tmp_path / outputs.REPORT).exists() and (tmp_path / outputs.PREDICTIONS_ZARR).exists()
    outputs.write_results(tmp_path, **kwargs, overwrite=True)
    for stale in (outputs.PREDICTIONS_ZARR, outputs.SYNAPSE_IDS_ZARR, "raw/Old.ome.zarr",
                  outputs.REPORT, outputs.CLUSTERING):  # fmt: skip
        assert not (tmp_path / stale).exists(), stale
    assert (tmp_path / "notes.txt").read_text() == "earlier"
    assert json.loads((tmp_path / outputs.MANIFEST).read_text())["files"]


def test_read_errors(tmp_path) -> None:
    with pytest.raises(SynapsePipelinesError, match="no file"):
        ome_tiff.read_volume(tmp_path / "missing.ome.tif")
    bad = tmp_path / "bad.ome.tif"
    bad.write_text("not a tiff")
    with pytest.raises(SynapsePipelinesError, match="not a readable TIFF"):
        ome_tiff.read_volume(bad)
    with pytest.raises(SynapsePipelinesError, match=outputs.MANIFEST):
        outputs.add_files(tmp_path, {"x.txt": "x"})


def test_partial_download_keeps_entries_of_absent_files(tmp_path) -> None:
    # the report step downloads only synapses.csv + manifest.json, adds report.html and
    # re-writes the manifest: the volumes' checksums must survive
    mask, labels, chans = _detection(4)
    table = synapse_table(labels, chans, voxel_size=(1, 1, 1))
    full = tmp_path / "full"
    first = outputs.write_results(full, mask=mask, labels=labels, table=table, voxel_size=(1, 1, 1))
    part = tmp_path / "part"
    part.mkdir()
    for name in (outputs.SYNAPSES_CSV, outputs.MANIFEST):
        (part / name).write_bytes((full / name).read_bytes())
    m = outputs.add_files(part, {outputs.REPORT: "<html>report</html>"})
    assert m["files"][outputs.PREDICTIONS] == first["files"][outputs.PREDICTIONS]
    assert m["files"][outputs.SYNAPSE_IDS] == first["files"][outputs.SYNAPSE_IDS]
    assert outputs.REPORT in m["files"]
    # copying the new files next to the volumes gives a folder that verifies completely
    for name in (outputs.REPORT, outputs.MANIFEST):
        (full / name).write_bytes((part / name).read_bytes())
    assert outputs.verify_manifest(full) == []


def _kwargs(seed: int = 5) -> dict:
    mask, labels, chans = _detection(seed)
    table = synapse_table(labels, chans, voxel_size=(1, 1, 1))
    return dict(mask=mask, labels=labels, table=table, voxel_size=(1, 1, 1), raw=chans)


def test_an_interrupted_write_leaves_no_results_folder(tmp_path, monkeypatch) -> None:
    """Ctrl-C after the volumes but before synapses.csv and the manifest: no half folder
    (nothing that blocks the next run or looks like results), and with --overwrite the
    earlier results stay untouched until the new ones are complete."""
    kwargs = _kwargs()
    real = outputs.write_table_results

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_table_results", interrupted)
    with pytest.raises(KeyboardInterrupt):
        outputs.write_results(tmp_path / "r", **kwargs)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(outputs, "write_table_results", real)
    first = outputs.write_results(tmp_path / "r", **kwargs)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    monkeypatch.setattr(outputs, "write_table_results", interrupted)
    with pytest.raises(KeyboardInterrupt):
        outputs.write_results(tmp_path / "r", **{**kwargs, "mask": np.zeros_like(kwargs["mask"])},
                              overwrite=True)  # fmt: skip
    after = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    assert after == before and [p.name for p in tmp_path.iterdir()] == ["r"]
    assert outputs.verify_manifest(tmp_path / "r") == []
    assert first["files"] == outputs.read_manifest(tmp_path / "r")["files"]


def test_a_killed_runs_leftover_blocks_nothing_and_is_not_listed(tmp_path) -> None:
    """kill -9 leaves the hidden staging folder: the next run writes (and removes it), and
    it is never listed as a result, beside the folder or inside an existing one."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    beside = tmp_path / f".r.partial-{pid}-x"
    inside = tmp_path / "kept" / f".partial-{pid}-x"
    for leftover in (beside, inside):
        leftover.mkdir(parents=True)
        (leftover / outputs.PREDICTIONS).write_bytes(b"half")
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    m = outputs.write_results(tmp_path / "r", **_kwargs())
    assert not beside.exists() and outputs.PREDICTIONS in m["files"]
    m = outputs.write_results(tmp_path / "kept", **_kwargs())
    assert not inside.exists() and (tmp_path / "kept" / "notes.txt").read_text() == "mine"
    assert not any(name.startswith(".") for name in m["files"])
    assert outputs.verify_manifest(tmp_path / "kept") == []


def test_a_folder_without_its_manifest_is_called_incomplete(tmp_path) -> None:
    """A results folder cut off before manifest.json (an older, interrupted run): evaluate,
    view and report say so, not "cannot tell the format"."""
    outputs.write_results(tmp_path / "r", **_kwargs())
    (tmp_path / "r" / outputs.MANIFEST).unlink()
    (tmp_path / "r" / outputs.SYNAPSES_CSV).unlink()
    said = "not a complete results folder (an interrupted run?)"
    with pytest.raises(SynapsePipelinesError, match=re.escape(said)):
        outputs.read_manifest(tmp_path / "r")  # what view (and the report step) read
    runner = CliRunner()
    for args in (["evaluate", str(tmp_path / "r"), "--truth", str(tmp_path / "t.csv"),
                  "--max-distance", "1", "--unit", "px"],
                 ["report", str(tmp_path / "r"), "--out", str(tmp_path / "x.html")]):  # fmt: skip
        result = runner.invoke(app, args)
        assert isinstance(result.exception, SynapsePipelinesError), result.output
        assert said in str(result.exception) and "cannot tell" not in str(result.exception)
