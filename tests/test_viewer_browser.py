"""``synapse-pipelines view``: a local Neuroglancer over a ``detect`` results folder, in real
headless Chromium (tests/fixtures/browser.py), offline.

Checks the layout (the presynaptic and postsynaptic channels shown in two colours, the
others hidden, the ids as a segmentation layer, the manifest's voxel size, the view centred
on a synapse), then loads the viewer: no console errors, no request leaves 127.0.0.1, every
layer is listed, and a screenshot shows the two channels drawn on the canvas.

One console message is expected and allowed: Neuroglancer asks for ``.zarray`` at the root
of each ``zarr2://`` source to tell an array from a group; an OME-Zarr root is a group, so
the answer is 404, which Chromium logs as "Failed to load resource". Any other 404 (a
missing chunk or metadata object) fails the test.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from synapse_pipelines.cli import app
from synapse_pipelines.io import outputs
from synapse_pipelines.io.neuroglancer_state import (
    POSTSYNAPTIC_COLOUR,
    PRESYNAPTIC_COLOUR,
    SYNAPSE_IDS_LAYER,
    neuroglancer_state,
    viewer_layout,
)
from synapse_pipelines.io.synapse_table_files import read_synapse_table
from synapse_pipelines.local.viewer import LocalViewer

runner = CliRunner()
LOAD_TIMEOUT_S = 90


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth`` + ``detect`` through the CLI: a results folder as a person gets it."""
    folder = tmp_path_factory.mktemp("view")
    args = ["--shape", "8,256,256", "--seed", "2", "--profile", "sparse"]
    _ok(["synth", "--out", str(folder), *args])
    out = folder / "results"
    _ok(["detect", str(folder / "channels.ome.tif"), "--out", str(out)])
    return out


def test_layout_follows_the_manifest(results: Path) -> None:
    manifest = outputs.read_manifest(results)
    layout = viewer_layout(results)
    pre, post = manifest["channels"]["presynaptic"], manifest["channels"]["postsynaptic"]
    assert [i.name for i in layout.images[:2]] == [pre, post]
    assert [i.colour for i in layout.images[:2]] == [PRESYNAPTIC_COLOUR, POSTSYNAPTIC_COLOUR]
    assert all(i.visible for i in layout.images[:2])
    assert len(layout.images) == len(manifest["channels"]["all"]) > 2
    assert not any(i.visible for i in layout.images[2:])
    assert list(layout.voxel_size) == manifest["volume"]["voxel_size"]
    table = read_synapse_table(results / outputs.SYNAPSES_CSV)
    row = table.set_index("id").loc[layout.centre_synapse]
    assert layout.centre == pytest.approx(tuple(row[f"centroid_{a}"] + 0.5 for a in "zyx"))
    state = neuroglancer_state(layout, "http://127.0.0.1:1/t")
    z, y, x = manifest["volume"]["voxel_size"]
    assert state["dimensions"] == {"x": [x, "nm"], "y": [y, "nm"], "z": [z, "nm"]}
    ids = next(layer for layer in state["layers"] if layer["name"] == SYNAPSE_IDS_LAYER)
    assert ids["type"] == "segmentation"
    assert ids["source"] == "zarr3://http://127.0.0.1:1/t/synapse_ids.ome.zarr"


def test_cli_prints_the_url(results: Path) -> None:
    out = _ok(["view", str(results), "--seconds", "0"])
    urls = [line for line in out.splitlines() if line.startswith("http://127.0.0.1:")]
    assert urls, out
    assert "synapse ids" in out


def _coloured_pixels(png: bytes) -> tuple[int, int]:
    """Pixels drawn in the presynaptic (magenta) and postsynaptic (green) colours."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    magenta = (r > 60) & (b > 60) & (g < np.minimum(r, b) - 30)
    green = (g > 60) & (r < g - 30) & (b < g - 30)
    return int(magenta.sum()), int(green.sum())


@pytest.mark.browser
def test_viewer_loads_in_chromium(results: Path, browser: Any, tmp_path: Path) -> None:
    with LocalViewer(results) as viewer:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        missing: list[str] = []
        external: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)

        def route(r: Any) -> None:
            if r.request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
                r.continue_()
            else:
                external.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        try:
            page.goto(viewer.url)
            page.wait_for_selector(".neuroglancer-layer-item-label", timeout=60_000)
            deadline = time.monotonic() + LOAD_TIMEOUT_S
            while True:
                shot = page.screenshot()
                magenta, green = _coloured_pixels(shot)
                if (magenta > 200 and green > 200) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            (tmp_path / "viewer.png").write_bytes(shot)
            labels = page.evaluate(
                "() => Array.from(document.querySelectorAll('.neuroglancer-layer-item-label'))"
                ".map(e => e.textContent)"
            )
        finally:
            context.close()
    assert magenta > 200 and green > 200, f"canvas not drawn: {magenta=} {green=}"
    layout = viewer.layout
    assert labels[: len(layout.images)] == [i.name for i in layout.images]
    assert SYNAPSE_IDS_LAYER in labels
    assert external == [], f"requests left the machine: {external}"
    probes = [u for u in missing if u.endswith(".ome.zarr/.zarray")]
    assert missing == probes, f"objects Neuroglancer could not load: {missing}"
    unexpected = [e for e in errors if not e.startswith("Failed to load resource")]
    assert unexpected == [], f"console errors: {unexpected}"
    assert len(errors) == len(probes), (errors, probes)
