"""The report's pictures of the data: synaptograms (strongest, median, weakest, one per
cluster) and the composite overlay, from a results folder's OME-Zarr volumes; offline,
clean in headless Chromium, and the page stays under 15 MB at 100,000 synapses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synapse_pipelines.io import outputs
from synapse_pipelines.io.synapse_table_files import read_synapse_table
from synapse_pipelines.report import ResultVolumes, build_report
from synapse_pipelines.report.image_panels import HALF_WINDOW, make_image_panels
from synapse_pipelines.report.sample_data import clustered_table
from synapse_pipelines.science import detection, features, synthetic
from synapse_pipelines.science.synaptograms import (
    OUTLINE_RGB,
    choose_samples,
    composite_overlay,
    outline,
    synaptogram,
)

MAX_REPORT_BYTES = 15_000_000
ORIGIN = (0, 40, 60)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A single job's results folder (OME-Zarr volumes with the raw cutout)."""
    folder = tmp_path_factory.mktemp("report-images")
    exp = synthetic.make_experiment((12, 256, 256), seed=4, n_synapses=150, profile="sparse")
    ch = exp.channels
    found = detection.detect(ch[exp.presynaptic], ch[exp.postsynaptic])
    table = features.synapse_table(found.labels, ch, voxel_size=exp.voxel_size, origin=ORIGIN)
    outputs.write_results(
        folder,
        mask=found.mask,
        labels=found.labels,
        table=table,
        voxel_size=exp.voxel_size,
        origin=ORIGIN,
        raw=ch,
        channels={"presynaptic": exp.presynaptic, "postsynaptic": exp.postsynaptic},
    )
    return folder


def test_samples_are_extremes_median_and_one_per_cluster() -> None:
    ids = np.arange(1, 11)
    strength = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 0], dtype=float)
    clusters = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
    picks = choose_samples(ids, strength, clusters)
    assert [p.synapse_id for p in picks[:3]] == [3, 8, 10]  # strongest, median, weakest
    assert [p.reason for p in picks[:3]] == ["strongest", "median strength", "weakest"]
    assert len({p.synapse_id for p in picks}) == len(picks)
    assert {p.reason for p in picks[3:]} == {"cluster 1, median member", "cluster 2, median member"}


def test_synaptogram_grid_and_outlines() -> None:
    crops = {"a": np.full((5, 21, 21), 100, np.uint8), "b": np.zeros((5, 21, 21), np.uint8)}
    own = np.zeros((5, 21, 21), bool)
    own[2, 8:13, 8:13] = True
    grid = synaptogram(crops, {"a": (0, 100), "b": (0, 100)}, own)
    assert grid.shape == (2 * 22 - 1, 5 * 22 - 1, 3)
    assert (grid[0, 0] == 255).all()  # channel a, saturated
    centre = grid[0:21, 2 * 22 : 2 * 22 + 21]
    assert (centre == OUTLINE_RGB).all(axis=-1).sum() == 16  # the 5x5 square's border
    labels = np.zeros((6, 6), int)
    labels[1:5, 1:5] = 3
    assert outline(labels).sum() == 12
    rgb = composite_overlay(np.full((6, 6), 50), np.zeros((6, 6)), labels, [(0, 50), (0, 50)])
    assert tuple(rgb[0, 0]) == (255, 0, 255) and tuple(rgb[1, 1]) == OUTLINE_RGB


def test_panels_from_a_results_folder(results: Path) -> None:
    volumes = ResultVolumes.from_folder(results)
    assert volumes is not None and volumes.presynaptic == "Synapsin647"
    assert outputs.read_manifest(results)["ome_zarr"]["raw"]
    synapses = read_synapse_table(results / outputs.SYNAPSES_CSV)
    clusters = np.arange(len(synapses)) % 3
    panels = make_image_panels(synapses, volumes, clusters=clusters)
    assert len(panels.synaptograms) >= 5  # 3 by strength + up to 3 clusters (deduplicated)
    assert panels.rows[:2] == ["Synapsin647", "PSD95_488"]
    first = panels.synaptograms[0]
    assert first.title.endswith("strongest") and first.data_url.startswith("data:image/png")
    assert first.width == (2 * HALF_WINDOW[0] + 1) * (2 * HALF_WINDOW[2] + 2) - 1
    assert 1 <= len(panels.overlays) <= 3
    assert panels.png_bytes < 4_000_000 and panels.notes == []


def test_report_with_images_loads_in_chromium(results: Path, page: Any, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    summary = build_report(
        results / outputs.SYNAPSES_CSV,
        title="with pictures",
        out_html=out,
        volumes=ResultVolumes.from_folder(results),
    )
    assert summary.synaptograms >= 3 and summary.overlays >= 1
    page.goto(out.resolve().as_uri())
    page.wait_for_function("document.body.dataset.rendered === 'all'", timeout=120_000)
    images = page.evaluate(
        "() => Array.from(document.querySelectorAll('#synapses-on-the-data img'))"
        ".map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) == summary.synaptograms + summary.overlays
    assert all(done and w > 0 and h > 0 for done, w, h in images), images
    assert page.report_errors == [], page.report_errors
    assert page.external_requests == [], page.external_requests
    page.locator("#synapses-on-the-data").screenshot(path=str(tmp_path / "images.png"))


@pytest.mark.slow
def test_report_with_images_stays_small_at_100k_synapses(results: Path, tmp_path: Path) -> None:
    table, _ = clustered_table(100_000, seed=3)
    shape = outputs.read_manifest(results)["volume"]["shape"]
    # put every centroid inside the volume: every crop is full of data (the largest PNGs)
    for axis, size, origin in zip("zyx", shape, ORIGIN, strict=True):
        table[f"centroid_{axis}"] = origin + table[f"centroid_{axis}"] % size
    summary = build_report(
        table,
        title="100k",
        out_html=tmp_path / "report.html",
        volumes=ResultVolumes.from_folder(results),
    )
    assert summary.synaptograms >= 3 and summary.overlays >= 1
    assert summary.html_bytes <= MAX_REPORT_BYTES, summary.html_bytes
