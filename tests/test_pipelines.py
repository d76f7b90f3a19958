"""Pipeline registry: entry-point lookup, a second plug-in, parameter validation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from synapse_pipelines.core.errors import PipelineNotFoundError, RequestValidationError
from synapse_pipelines.core.pipelines import (
    ENTRY_POINT_GROUP,
    Pipeline,
    available_pipelines,
    get_pipeline,
    validate_parameters,
)
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.science.nomads_plugin import NomadsUnsupervised
from synapse_pipelines.science.paired_puncta import PairedPuncta


def test_nomads_is_registered_and_loads() -> None:
    assert "nomads-unsupervised" in available_pipelines()
    pipe = get_pipeline("nomads-unsupervised")
    assert isinstance(pipe, NomadsUnsupervised)
    assert isinstance(pipe, Pipeline)
    defaults = validate_parameters(pipe)
    assert defaults["window"] == 3
    # the original's "more than 30 voxels", as a volume: 30 collman15v2 voxels
    assert defaults["min_volume_um3"] == pytest.approx(30 * 70 * 2.24 * 2.24 * 1e-9)


def test_paired_puncta_is_registered_with_physical_defaults() -> None:
    assert {"nomads-unsupervised", "paired-puncta"} <= set(available_pipelines())
    pipe = get_pipeline("paired-puncta")
    assert isinstance(pipe, PairedPuncta) and isinstance(pipe, Pipeline)
    assert validate_parameters(pipe) == {
        "smoothing_sigma_nm": 60.0,
        "background_radius_nm": 500.0,
        "pair_offset_nm": 250.0,
        "punctum_fwhm_nm": 300.0,
        "noise_floor_sigma": 2.5,
        "noise_guard_sigma": 4.0,
        "seed_radius_nm": 150.0,
        "assignment_radius_nm": 250.0,
        "assignment_level": 0.5,
        "seed_level": 1.0,
        "min_volume_um3": 0.0,
        "weak_seed_level": 0.5,
        "weak_seed_support_um3": 0.0084,
    }


def test_every_pipeline_takes_the_voxel_size() -> None:
    """The protocol's ``voxel_size`` keyword (nm): each detector records the size it used,
    under the same key."""
    pre = np.zeros((4, 16, 16), dtype=np.uint8)
    pre[1:3, 5:9, 5:9] = 200
    post = np.roll(pre, 1, axis=2)
    channels = {"syn": pre, "psd": post}
    nomads = get_pipeline("nomads-unsupervised")
    with_size = nomads.run(channels, "syn", "psd", voxel_size=(70.0, 50.0, 50.0))
    without = nomads.run(channels, "syn", "psd")
    np.testing.assert_array_equal(with_size.labels, without.labels)
    assert with_size.parameters["voxel_size_nm"] == [70.0, 50.0, 50.0]
    assert without.parameters["voxel_size_assumed"] is True
    assert with_size.n_synapses and with_size.explanation is None
    pairs = get_pipeline("paired-puncta").run(channels, "syn", "psd", voxel_size=(70.0, 50.0, 50.0))
    assert pairs.parameters["voxel_size_nm"] == [70.0, 50.0, 50.0]


def test_unknown_pipeline_lists_available_names() -> None:
    with pytest.raises(PipelineNotFoundError) as err:
        get_pipeline("nomads-supervised")
    assert "nomads-unsupervised" in str(err.value)
    assert err.value.field == "pipeline"


def test_listing_names_imports_no_pipeline_code_nor_numpy() -> None:
    code = (
        "import sys; from synapse_pipelines.core.pipelines import available_pipelines; "
        "names = available_pipelines(); "
        "assert {'nomads-unsupervised', 'paired-puncta'} <= set(names), names; "
        "heavy = [m for m in ('numpy', 'scipy', 'synapse_pipelines.science.detection', "
        "'synapse_pipelines.science.paired_puncta') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_parameters_are_validated_with_named_errors() -> None:
    pipe = get_pipeline("nomads-unsupervised")
    assert validate_parameters(pipe, {"window": 5.0})["window"] == 5
    with pytest.raises(RequestValidationError) as err:
        validate_parameters(
            pipe, {"window": 2, "min_volume_um3": "big", "threshold": 1, "flag": True}
        )
    fields = {f for f, _ in err.value.problems}
    assert fields == {
        "pipeline_parameters.window",
        "pipeline_parameters.min_volume_um3",
        "pipeline_parameters.threshold",
    } | {"pipeline_parameters.flag"}
    text = str(err.value)
    assert "accepted: min_volume_um3, window" in text
    with pytest.raises(RequestValidationError, match="odd"):
        validate_parameters(pipe, {"window": 4})
    with pytest.raises(RequestValidationError, match="integer"):
        validate_parameters(pipe, {"window": 2.5})
    with pytest.raises(RequestValidationError, match=">= 0"):
        validate_parameters(pipe, {"min_volume_um3": -1})


PLUGIN = '''
"""A second detector: bright voxels of the presynaptic channel."""
import numpy as np
from synapse_pipelines.science.detection import DetectionResult, filter_components, label_components
from synapse_pipelines.core.pipelines import ParameterSpec, validate_parameters


class BrightPre:
    name = "bright-pre"
    description = "presynaptic voxels above a level"
    parameters = {"level": ParameterSpec(int, 200, "grey level", 0, 255)}

    def run(self, channels, presynaptic, postsynaptic, **params):
        p = validate_parameters(self, params)
        mask = channels[presynaptic] >= p["level"]
        labels, sizes = label_components(mask)
        labels, n = filter_components(labels, sizes, 0)
        return DetectionResult(labels, (labels > 0).astype(np.uint8) * 255, float(p["level"]),
                               n, dict(p))
'''


@pytest.fixture
def second_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed-looking distribution (dist-info + entry point) on sys.path."""
    (tmp_path / "bright_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "bright_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bright-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbright-pre = bright_plugin:BrightPre\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bright_plugin", raising=False)
    return "bright-pre"


def test_second_detector_registers_and_runs(second_detector: str) -> None:
    assert second_detector in available_pipelines()
    assert "nomads-unsupervised" in available_pipelines()
    pipe = get_pipeline(second_detector)
    pre = np.zeros((4, 16, 16), dtype=np.uint8)
    pre[1:3, 2:5, 2:5] = 250
    pre[1, 10, 10] = 220
    res = pipe.run({"syn": pre, "psd": pre}, "syn", "psd", level=210)
    assert res.n_synapses == 2
    assert res.labels[1, 2, 2] == 1 and res.labels[1, 10, 10] == 2
    with pytest.raises(RequestValidationError, match=r"pipeline_parameters\.level"):
        pipe.run({"syn": pre, "psd": pre}, "syn", "psd", level=999)


def test_one_job_limit_applies_to_a_pipeline_without_blockwise(second_detector: str) -> None:
    request = {
        "boss_host": "api.bossdb.io",
        "collection": "c",
        "experiment": "e",
        "z_range": "0,16",
        "y_range": "0,512",
        "x_range": "0,512",
    }
    env = {"SYNAPSE_PIPELINES_MAX_VOXELS": "1000"}
    assert parse_request(request, environ=env).voxel_count == 16 * 512 * 512  # blockwise
    with pytest.raises(RequestValidationError, match="does not run blockwise") as err:
        parse_request({**request, "pipeline": second_detector}, environ=env)
    assert "SYNAPSE_PIPELINES_MAX_VOXELS" in str(err.value)


def test_conflicting_registrations_are_an_error(
    second_detector: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    info = other / "other_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbright-pre = somewhere_else:Thing\n"
    )
    monkeypatch.syspath_prepend(str(other))
    with pytest.raises(PipelineNotFoundError, match="registered twice"):
        available_pipelines()


def test_target_without_the_protocol_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin.py").write_text("class Broken:\n    name = 'broken'\n")
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbroken = broken_plugin:Broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PipelineNotFoundError, match="does not provide"):
        get_pipeline("broken")


def test_plugin_that_fails_to_import_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "gone_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gone-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ngone = module_that_does_not_exist:Thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PipelineNotFoundError, match="failed to load: ModuleNotFoundError"):
        get_pipeline("gone")
