"""``synapse-pipelines view``: a local Neuroglancer over a ``detect`` results folder, in real
headless Chromium (tests/fixtures/browser.py), offline.

Checks the layout (the presynaptic and postsynaptic channels shown in two colours, the
others hidden, the ids as a segmentation layer, the manifest's voxel size, the view centred
on a synapse), then loads the viewer: not one console error, not one failed request (the
volumes are NGFF 0.5 on Zarr v3, read as ``zarr3://`` sources, so Neuroglancer asks only for
objects that exist: no Zarr v2 ``.zarray`` probes), no request leaves 127.0.0.1, every layer
is listed, and a screenshot shows the two channels drawn on the canvas.
"""

from __future__ import annotations

import io
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from synapse_pipelines.cli import app
from synapse_pipelines.core.artefacts import SYNAPSE_IDS_OME_ZARR
from synapse_pipelines.io import outputs
from synapse_pipelines.io.neuroglancer_state import (
    POSTSYNAPTIC_COLOUR,
    PRESYNAPTIC_COLOUR,
    SYNAPSE_IDS_LAYER,
    neuroglancer_state,
    viewer_layout,
)
from synapse_pipelines.io.ome_tiff import OutputError
from synapse_pipelines.io.synapse_table_files import read_synapse_table
from synapse_pipelines.local.viewer import LocalViewer

runner = CliRunner()
LOAD_TIMEOUT_S = 90
#: After the canvas is drawn, how long late requests (other levels, hidden layers) and their
#: console messages still count.
SETTLE_MS = 2_000


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
    # the table's coordinates; Neuroglancer's voxel centres (+0.5) only inside its state
    assert layout.centre == pytest.approx(tuple(row[f"centroid_{a}"] for a in "zyx"))
    state = neuroglancer_state(layout, "http://127.0.0.1:1/t")
    assert state["position"] == pytest.approx([row[f"centroid_{a}"] + 0.5 for a in "xyz"])
    z, y, x = manifest["volume"]["voxel_size"]
    assert state["dimensions"] == {"x": [x, "nm"], "y": [y, "nm"], "z": [z, "nm"]}
    ids = next(layer for layer in state["layers"] if layer["name"] == SYNAPSE_IDS_LAYER)
    assert ids["type"] == "segmentation"
    assert ids["source"] == "zarr3://http://127.0.0.1:1/t/synapse_ids.ome.zarr"
    assert all(layer["source"].startswith("zarr3://") for layer in state["layers"])


def test_layout_of_ngff_04_results_asks_for_a_new_run(results: Path, tmp_path: Path) -> None:
    """A folder written before NGFF 0.5 (Zarr v2 metadata) is refused with what to do."""
    old = tmp_path / "old"
    shutil.copytree(results, old)
    ids = old / SYNAPSE_IDS_OME_ZARR
    (ids / "zarr.json").unlink()
    (ids / ".zattrs").write_text("{}")
    with pytest.raises(OutputError, match=r"NGFF 0\.5") as caught:
        viewer_layout(old)
    assert "NGFF 0.4" in str(caught.value.hint)


def test_cli_prints_the_url(results: Path) -> None:
    out = _ok(["view", str(results), "--seconds", "0"])
    urls = [line for line in out.splitlines() if line.startswith("http://127.0.0.1:")]
    assert urls, out
    assert "synapse ids" in out
    # the centred synapse at synapses.csv's coordinates (not Neuroglancer's +0.5)
    layout = viewer_layout(results)
    row = read_synapse_table(results / outputs.SYNAPSES_CSV).set_index("id")
    zyx = ",".join(f"{row.loc[layout.centre_synapse, f'centroid_{a}']:.2f}" for a in "zyx")
    assert f"synapse {layout.centre_synapse} at z,y,x {zyx}" in " ".join(out.split())


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
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)

        def route(r: Any) -> None:
            if r.request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
                r.continue_()
            else:
                external.append(r.request.url)
                r.abort()

        # With requests routed, Chromium makes no favicon request of its own: the next test
        # loads the page unrouted, as a user's browser does.
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
            page.wait_for_timeout(SETTLE_MS)
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
    assert missing == [], f"objects Neuroglancer could not load: {missing}"
    assert errors == [], f"console errors: {errors}"
    # read as Zarr v3: group and array zarr.json, c/<z>/<y>/<x> chunks, no v2 probes
    data = [u.removeprefix(viewer.data_url) for u in requested if u.startswith(viewer.data_url)]
    assert f"/{layout.synapse_ids}/zarr.json" in data
    first = f"/{layout.images[0].path}/"
    assert any(u.startswith(first) and "/c/" in u for u in data), data
    assert not [u for u in data if u.rsplit("/", 1)[-1] in (".zarray", ".zattrs", ".zgroup")]


def test_viewer_page_as_a_browser_opens_it_logs_no_error(results: Path, browser: Any) -> None:
    """Unrouted, Chromium also asks the viewer's server for ``/favicon.ico``; Neuroglancer's
    server has no icon, so ``LocalViewer`` answers it (204) instead of a 404 console error."""
    with LocalViewer(results) as viewer:
        root = viewer.url.split("/v/")[0]
        with urllib.request.urlopen(f"{root}/favicon.ico", timeout=10) as answer:
            assert answer.status == 204
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            page.goto(viewer.url)
            page.wait_for_selector(".neuroglancer-layer-item-label", timeout=60_000)
            page.wait_for_timeout(SETTLE_MS)
        finally:
            context.close()
    assert errors == [], f"console errors: {errors}"
