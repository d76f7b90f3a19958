"""Resolution levels without BOSS: a frame seen at level r, the Detect job's check that the
pipeline can run at a level (and the level it names when it cannot), and the publication
guard against an output experiment on another grid (over real HTTP, the local BOSS)."""

from __future__ import annotations

import numpy as np
import pytest

from synapse_pipelines.core.errors import BossError, DetectionError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.boss_publish import publish_predictions
from synapse_pipelines.io.boss_resources import CoordinateFrame, level_frame
from synapse_pipelines.local.boss_loading import load_experiment
from synapse_pipelines.workflow.resolution_check import check_detectable

FRAME = CoordinateFrame(Box((0, 3, 5), (27, 4518, 6306)), (70.0, 2.24, 2.24), "nanometers", "f")


def test_a_level_halves_x_and_y_per_step_and_rounds_the_extent_out() -> None:
    five = level_frame(FRAME, 5, 8, "anisotropic", "collman/collman15v2")
    assert five.voxel_size == (70.0, 2.24 * 32, 2.24 * 32)
    assert five.extent == Box((0, 0, 0), (27, 142, 198))  # ceil(4518 / 32), ceil(6306 / 32)
    assert five.name == "f_res5" and five.voxel_unit == "nanometers"
    iso = level_frame(FRAME, 2, 3, "isotropic", "x")
    assert iso.voxel_size == (280.0, 8.96, 8.96) and iso.extent == Box((0, 0, 1), (7, 1130, 1577))
    assert level_frame(FRAME, 0, 1, "anisotropic", "x") is FRAME
    with pytest.raises(BossError, match=r"resolution: .* has 3 resolution level\(s\) \(0..2\)"):
        level_frame(FRAME, 3, 3, "anisotropic", "collman/collman15v2")


def test_detect_names_the_level_at_which_pairs_runs() -> None:
    """collman15v2's 70 x 2.24 x 2.24 nm: PAIRS' exact band-pass would overflow; level 4
    (35.8 nm pixels) is the first at which it runs (the finest: the most detail kept).
    NOMADS works in voxels and is not refused."""
    box = Box((0, 0, 0), (27, 4518, 6306))
    with pytest.raises(DetectionError) as caught:
        check_detectable("paired-puncta", {}, box, (70.0, 2.24, 2.24), 0)
    err = caught.value
    assert err.field == "resolution"
    assert "cannot run on voxels of 70 x 2.24 x 2.24 nm (resolution 0)" in err.message
    assert err.hint is not None and err.hint.startswith("set resolution to 4 (voxels of 70 x 35.84")
    check_detectable("paired-puncta", {}, Box((0, 0, 0), (27, 142, 198)), (70.0, 71.68, 71.68), 5)
    check_detectable("nomads-unsupervised", {}, box, (70.0, 2.24, 2.24), 0)
    # already at a level: the suggestion counts from it
    with pytest.raises(DetectionError, match="set resolution to 4 "):
        check_detectable("paired-puncta", {}, Box((0, 0, 0), (27, 2259, 3153)), (70, 4.48, 4.48), 1)


def test_publication_refuses_an_output_experiment_on_another_grid(boss_server) -> None:
    """Predictions on 70 x 200 x 200 nm voxels are never written into an output experiment
    made for 70 x 100 x 100 nm (they would land misplaced): the error names the field."""
    client = boss_server.client()
    col, exp, out = boss_server.unique("rc"), boss_server.unique("re"), boss_server.unique("ro")
    data = np.zeros((2, 32, 32), np.uint8)
    frame = load_experiment(client, col, exp, {"Synapsin647": data, "PSD95_488": data},
                            voxel_size=(70, 100, 100)).frame  # fmt: skip
    request = parse_request({
        "boss_host": boss_server.host, "boss_protocol": "http", "collection": col,
        "experiment": exp, "z_range": [0, 2], "y_range": [0, 16], "x_range": [0, 16],
        "output_collection": col, "output_experiment": out,
    })  # fmt: skip
    publish_predictions(client, request, data[:, :16, :16], frame=frame)  # makes `out`
    coarser = level_frame(frame, 1, 2, "anisotropic", f"{col}/{exp}")
    with pytest.raises(BossError) as caught:
        publish_predictions(client, request, data[:, :16, :16], frame=coarser)
    assert caught.value.field == "output_experiment"
    assert (
        "has voxels of 70 x 100 x 100 nanometers, these predictions voxels of 70 x 200 x 200"
        in (caught.value.message)
    )


def test_labels_of_a_level_expand_back_over_the_voxels_they_cover() -> None:
    from synapse_pipelines.science.pyramid import downsample_region, expand_labels

    labels = np.arange(1, 1 + 2 * 3 * 2, dtype=np.uint32).reshape(2, 3, 2)
    full = expand_labels(labels, 2, (10, 7))  # 10 rows -> 3 groups of 4, the last cut
    assert full.shape == (2, 10, 7)
    assert (full[:, 8:10, 4:7] == labels[:, 2:3, 1:2]).all()
    back, _ = downsample_region(full, (0, 0), 2, "labels")
    np.testing.assert_array_equal(back, labels)  # the pyramid's own rule gives them back
    assert expand_labels(labels, 0, (3, 2)) is labels
    with pytest.raises(ValueError, match="not level 2"):
        expand_labels(labels, 2, (13, 7))
