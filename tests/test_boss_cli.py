"""``synapse-pipelines boss load/ls`` against the session server; ``serve`` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from synapse_pipelines.cli import app
from synapse_pipelines.core.errors import BossError, SynapsePipelinesError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.volumes import read_volume_file


def test_load_synthetic_then_ls(boss_server) -> None:
    runner = CliRunner()
    col = boss_server.unique("cli")
    env = {"BOSS_TOKEN": boss_server.token}
    args = ["boss", "load", "--host", boss_server.host, "--collection", col,
            "--experiment", "syn", "--synthetic", "16,64,64", "--seed", "3"]  # fmt: skip
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert f"loaded {col}/syn" in result.output
    listing = runner.invoke(app, ["boss", "ls", col, "syn", "--host", boss_server.host], env=env)
    assert listing.exit_code == 0, listing.output
    assert "PSD95_488\tuint8\timage" in listing.output
    assert "annotation\tuint64\tannotation" in listing.output
    assert boss_server.token not in result.output + listing.output


def test_load_tiff_files(boss_server, tmp_path) -> None:
    vol = np.random.default_rng(0).integers(0, 4000, (16, 40, 50), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "Synapsin647.tif", vol)
    col = boss_server.unique("tif")
    result = CliRunner().invoke(
        app,
        ["boss", "load", "--host", f"http://{boss_server.host}", "--collection", col,
         "--experiment", "e", str(tmp_path / "Synapsin647.tif"), "--voxel-size", "70,100,100"],
        env={"BOSS_TOKEN": boss_server.token},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    client = boss_server.client()
    assert client.coordinate_frame(col, "e").voxel_size == (70.0, 100.0, 100.0)
    np.testing.assert_array_equal(
        client.pull(col, "e", "Synapsin647", Box((0, 0, 0), vol.shape)), vol
    )


def test_load_into_an_existing_experiment_never_overwrites_by_mistake(
    boss_server, tmp_path
) -> None:
    """An audit loaded an 8 x 256 x 256 file over a loaded 8 x 1024 x 1344 channel: it
    replaced a corner of the stored data and printed the whole frame as loaded."""
    rng = np.random.default_rng(1)
    stored = rng.integers(1, 255, (8, 48, 64), dtype=np.uint8)
    same_shape = rng.integers(1, 255, stored.shape, dtype=np.uint8)
    for name, vol in (("stored", stored), ("small", stored[:, :16, :16] // 2 + 1),
                      ("same", same_shape), ("wide", same_shape.astype(np.uint16))):  # fmt: skip
        tifffile.imwrite(tmp_path / f"{name}.tif", vol)
    col = boss_server.unique("over")
    client = boss_server.client()
    box = Box((0, 0, 0), stored.shape)

    def load(*args: str):
        base = ["boss", "load", "--host", boss_server.host, "--collection", col,
                "--experiment", "e"]  # fmt: skip
        return CliRunner().invoke(app, [*base, *args], env={"BOSS_TOKEN": boss_server.token})

    first = load("--channel", f"synapsin={tmp_path / 'stored.tif'}")
    assert first.exit_code == 0, first.output

    for flags in ((), ("--overwrite",)):  # --overwrite replaces channels, never a corner
        smaller = load("--channel", f"synapsin={tmp_path / 'small.tif'}", *flags)
        assert isinstance(smaller.exception, BossError), smaller.output
        message = str(smaller.exception)
        assert message.startswith(f"experiment {col}/e: its frame is z=0:8 y=0:48 x=0:64")
        assert "8 x 48 x 64" in message and "8 x 16 x 16" in message and "Fix:" in message
    taken = load("--channel", f"synapsin={tmp_path / 'same.tif'}")
    assert isinstance(taken.exception, BossError), taken.output
    assert str(taken.exception).startswith(f"channel {col}/e/synapsin: already exists")
    assert "pass --overwrite" in str(taken.exception)
    other_type = load("--channel", f"synapsin={tmp_path / 'wide.tif'}", "--overwrite")
    assert isinstance(other_type.exception, BossError), other_type.output
    assert "is a uint8 image channel" in str(other_type.exception)
    np.testing.assert_array_equal(client.pull(col, "e", "synapsin", box), stored)

    added = load("--channel", f"psd={tmp_path / 'same.tif'}")  # a new channel: nothing replaced
    assert added.exit_code == 0, added.output
    assert "psd" in added.output and "replaced" not in added.output
    replaced = load("--channel", f"synapsin={tmp_path / 'same.tif'}", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "synapsin (replaced)" in replaced.output
    # every load says the region it wrote
    assert "wrote z=0:8 y=0:48 x=0:64 (8 x 48 x 64 voxels)" in first.output
    np.testing.assert_array_equal(client.pull(col, "e", "synapsin", box), same_shape)


def test_ls_without_token_is_a_clear_error(boss_server) -> None:
    result = CliRunner().invoke(
        app, ["boss", "ls", "--host", boss_server.host], env={"BOSS_TOKEN": None}
    )
    assert isinstance(result.exception, SynapsePipelinesError)
    assert "--token: no BOSS token" in str(result.exception)


@pytest.mark.parametrize("with_token", [True, False])
def test_serve_runs_as_a_process(tmp_path, with_token: bool) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "BOSS_TOKEN"}
    if with_token:
        env["BOSS_TOKEN"] = "serve-token"
    data_dir = tmp_path / "d"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from synapse_pipelines.cli import main; main()", "boss",
         "serve", "--data-dir", str(data_dir), "--port", str(port)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        token = "serve-token"
        deadline = time.monotonic() + 30
        while True:
            try:
                if not with_token:
                    token = (data_dir / "token").read_text().strip()
                BossClient(f"127.0.0.1:{port}", "http", token, max_retries=0).list_collections()
                break
            except (BossError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if not with_token:
            assert (data_dir / "token").stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert token not in err
    assert "GET /v1/collection// 200" in err  # the access log (intern lists with //)


def test_ls_shows_the_resolution_levels_a_request_may_read(boss_server) -> None:
    """`boss ls` of an experiment lists each level's extent and voxel size (what `resolution`
    and the ranges of a request mean) and each channel's downsample status."""
    from intern.resource.boss.resource import ExperimentResource

    from synapse_pipelines.io import boss_downsample as ds
    from synapse_pipelines.local.boss_loading import load_experiment

    client = boss_server.client()
    col = boss_server.unique("lv")
    data = np.zeros((2, 40, 60), np.uint8)
    load_experiment(client, col, "e", {"Synapsin647": data, "PSD95_488": data},
                    voxel_size=(70, 25, 25))  # fmt: skip
    remote = boss_server.remote()
    exp = remote.get_project(ExperimentResource("e", col))
    exp.num_hierarchy_levels = 3
    remote.update_project("e", exp)
    ds.start_downsample(client, col, "e", "PSD95_488")
    assert ds.wait_for_downsample(client, col, "e", "PSD95_488", timeout=60, poll=0.05).status == (
        ds.DOWNSAMPLED
    )
    listing = CliRunner().invoke(
        app, ["boss", "ls", col, "e", "--host", boss_server.host],
        env={"BOSS_TOKEN": boss_server.token},
    )  # fmt: skip
    assert listing.exit_code == 0, listing.output
    assert "# resolution 1 (anisotropic): z=0:2 y=0:20 x=0:30, voxel 70 x 50 x 50" in listing.output
    assert "# resolution 2 (anisotropic): z=0:2 y=0:10 x=0:15, voxel 70 x 100 x 100" in (
        listing.output
    )
    assert "PSD95_488\tuint8\timage\tDOWNSAMPLED" in listing.output
    assert "Synapsin647\tuint8\timage\tNOT_DOWNSAMPLED" in listing.output


def test_cutout_writes_a_region_tune_reads_in_the_experiment_s_voxels(
    boss_server, boss_synthetic, tmp_path
) -> None:
    """A region someone annotated, cut out over intern: its channels voxel for voxel, its
    voxel size and global origin recorded, so `tune` matches points given in the
    experiment's voxels; an existing file, a bad range, a range outside the frame and an
    annotation channel are refused."""
    runner = CliRunner(env={"COLUMNS": "200"})
    env = {"BOSS_TOKEN": boss_server.token}
    crop = tmp_path / "crop.ome.tif"
    ranges = ["--z-range", "2:14", "--y-range", "64:192", "--x-range", "32:224"]
    base = ["boss", "cutout", "synthetic", "synth16", "--host", boss_server.host, *ranges]
    done = runner.invoke(app, [*base, "-o", str(crop)], env=env)
    assert done.exit_code == 0, done.output
    assert boss_server.token not in done.output
    vol = read_volume_file(crop)
    names = vol.channel_names  # every image channel, in BOSS's listing order
    assert sorted(names) == sorted(boss_synthetic.channels) and "annotation" not in names
    assert vol.origin == (2, 64, 32) and vol.voxel_size == boss_synthetic.frame.voxel_size
    for i, name in enumerate(names):
        np.testing.assert_array_equal(
            vol.data[i], boss_synthetic.channels[name][2:14, 64:192, 32:224]
        )
    again = runner.invoke(app, [*base, "-o", str(crop)], env=env)
    assert isinstance(again.exception, SynapsePipelinesError) and again.exception.field == "--out"
    for change, field in (
        (["--x-range", "224:32"], "--x-range"),
        (["--channels", "annotation,PSD95_488"], "--channels"),
        (["--channels", "nope"], "--channels"),
    ):
        bad = runner.invoke(app, [*base, *change, "-o", str(tmp_path / "b.tif")], env=env)
        assert isinstance(bad.exception, SynapsePipelinesError), bad.output
        assert bad.exception.field == field and bad.exception.hint
    outside = runner.invoke(
        app, [*base, "--x-range", "200:300", "-o", str(tmp_path / "o.tif")], env=env
    )
    assert isinstance(outside.exception, BossError) and "x_range" in str(outside.exception.field)
    # the synapses inside the region, in the experiment's voxels: tune (and so detect and
    # evaluate) place the crop by its recorded origin
    truth = boss_synthetic.synthetic.synapse_centroids
    lo, hi = np.array([2, 64, 32]), np.array([14, 192, 224])
    inside = truth[np.all((truth >= lo) & (truth < hi - 1), axis=1)]
    np.savetxt(tmp_path / "truth.csv", inside, delimiter=",", fmt="%.3f")
    sweep = tmp_path / "sweep.json"
    tuned = runner.invoke(
        app,
        ["tune", str(crop), "--truth", str(tmp_path / "truth.csv"), "--max-distance", "300",
         "--unit", "nm", "--levels", "1", "--json", str(sweep)],
    )  # fmt: skip
    assert tuned.exit_code == 0, (tuned.output, tuned.exception)
    default = json.loads(sweep.read_text())["default"]
    # every annotated synapse is found (detections of synapses cut by the region's faces,
    # whose centres lie outside it, are the false positives)
    assert len(inside) > 10 and default["recall"] == 1.0, default
    # without the origin the same points miss: the test can tell
    np.savetxt(tmp_path / "local.csv", inside - lo, delimiter=",", fmt="%.3f")
    local = runner.invoke(
        app,
        ["tune", str(crop), "--truth", str(tmp_path / "local.csv"), "--max-distance", "300",
         "--unit", "nm", "--levels", "1", "--json", str(tmp_path / "local.json")],
    )  # fmt: skip
    assert local.exit_code == 0, (local.output, local.exception)
    # the region's labels, cut out alone, are a truth volume evaluate reads in place
    labels = tmp_path / "labels.ome.tif"
    cut = runner.invoke(app, [*base, "--channels", "annotation", "-o", str(labels)], env=env)
    assert cut.exit_code == 0, cut.output
    ann = read_volume_file(labels)
    assert ann.origin == (2, 64, 32) and ann.channel_names is None
    np.testing.assert_array_equal(ann.data, boss_synthetic.annotation[2:14, 64:192, 32:224])
    by_labels = runner.invoke(
        app,
        ["tune", str(crop), "--truth", str(labels), "--max-distance", "300", "--unit", "nm",
         "--levels", "1", "--json", str(tmp_path / "labels.json")],
    )  # fmt: skip
    assert by_labels.exit_code == 0, (by_labels.output, by_labels.exception)
    scored = json.loads((tmp_path / "labels.json").read_text())["default"]
    assert scored["f1"] > 0.9, scored  # the pieces cut by the faces count on both sides
    assert json.loads((tmp_path / "local.json").read_text())["default"]["recall"] < 0.2
