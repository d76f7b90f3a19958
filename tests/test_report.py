"""The PyMEDA-style report: computation, HTML/JSON output, robustness, CLI (no browser here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import zscore as scipy_zscore
from sklearn.metrics import adjusted_rand_score

from synapse_pipelines.cli.report_commands import default_title
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.io.synapse_table_files import write_synapse_table
from synapse_pipelines.report import build_report
from synapse_pipelines.report.analysis import analyse_table
from synapse_pipelines.report.clustering import (
    REPRESENTATIVE_ROWS,
    hierarchical_gmm,
    representative_rows,
)
from synapse_pipelines.report.feature_statistics import (
    ReportInputError,
    select_feature_columns,
    zscore,
)
from synapse_pipelines.report.render import X
from synapse_pipelines.report.sample_data import clustered_table
from synapse_pipelines.report.sections import SECTIONS
from synapse_pipelines.science.features import synapse_table

ALL_KEYS = [s[0] for s in SECTIONS]
PYMEDA_TITLES = {
    "Representative Heatmap",
    "Ridge Line",
    "Location Heatmap",
    "Location Lines",
    "Correlation Matrix",
    "Scree Plot",
    "Hierarchical GMM Dendrogram",
    "Pair Plot",
    "Cluster Stacked Means",
    "Cluster Mean Heatmap",
    "Cluster Mean Lines",
}


def _build(table: pd.DataFrame, tmp_path: Path, name: str = "r", **kw: object):
    kw.setdefault("title", "test report")
    summary = build_report(
        table,
        out_html=tmp_path / f"{name}.html",
        out_clustering_json=tmp_path / f"{name}.json",
        **kw,  # type: ignore[arg-type]
    )
    html = (tmp_path / f"{name}.html").read_text()
    payload = json.loads((tmp_path / f"{name}.json").read_text())
    return summary, html, payload


# --------------------------------------------------------------------------- features


def test_default_feature_rule_takes_window_sums_then_means_in_table_order() -> None:
    table, _ = clustered_table(10, channels=["B", "A"])
    assert select_feature_columns(table) == [
        "B_window_zsum",
        "A_window_zsum",
        "B_mean",
        "A_mean",
    ]
    assert select_feature_columns(table, ["A_mean", "centroid_z"]) == ["A_mean", "centroid_z"]


@pytest.mark.parametrize(
    ("features", "fragment"),
    [(["nope"], "not in the table"), ([], "empty"), (["A_mean", "A_mean"], "repeat")],
)
def test_bad_explicit_features_name_the_field(features: list[str], fragment: str) -> None:
    table, _ = clustered_table(10, channels=["A"])
    with pytest.raises(ReportInputError, match=fragment) as err:
        select_feature_columns(table, features)
    assert err.value.field == "features"


def test_table_without_feature_columns_is_a_clear_error() -> None:
    with pytest.raises(ReportInputError, match="no feature columns") as err:
        select_feature_columns(pd.DataFrame({"id": [1], "centroid_z": [1.0]}))
    assert "--features" in str(err.value)


def test_zscore_is_scipys_and_handles_constant_and_missing() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(5, 3, size=(50, 3))
    np.testing.assert_allclose(zscore(raw).values, scipy_zscore(raw, axis=0))
    raw[:, 1] = 7.0
    raw[3, 2] = np.nan
    z = zscore(raw)
    assert z.constant.tolist() == [False, True, False]
    assert np.all(z.values[:, 1] == 0) and z.values[3, 2] == 0
    assert z.missing.tolist() == [0, 0, 1]
    assert np.isfinite(z.values).all()


# --------------------------------------------------------------------------- clustering


def test_hierarchical_gmm_recovers_a_two_level_hierarchy() -> None:
    # two far-apart groups, each made of two nearer clusters: level 1 must find the groups,
    # level 2 the clusters (the binary BIC splits PyMEDA made)
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, size=2000)
    group = [[-10, -10, -10], [10, 10, 10]]
    centres = np.array(
        [[*group[0], -4, 0], [*group[0], 4, 0], [*group[1], 0, -4], [*group[1], 0, 4]], dtype=float
    )
    x = centres[truth] + rng.normal(size=(2000, 5))
    h = hierarchical_gmm(zscore(x).values, levels=2, seed=0)
    assert h.depth == 2
    assert adjusted_rand_score(truth // 2, h.labels_by_level[1]) == 1.0
    assert len(h.leaves) == 4
    assert adjusted_rand_score(truth, h.labels) > 0.99
    for node in h.levels[2]:  # each level-2 cluster lies inside its parent
        assert set(h.labels_by_level[1][node.members]) == {node.parent}
    assert sum(c.size for c in h.leaves) == 2000


def test_report_clusters_separated_synapse_types() -> None:
    table, truth = clustered_table(2000, n_clusters=4, separation=10.0, seed=3)
    data = analyse_table(table, title="t", seed=0, gmm_levels=3)
    assert data.hierarchy is not None
    assert adjusted_rand_score(truth, data.hierarchy.labels) > 0.95


def test_hierarchical_gmm_levels_and_unimodal_data() -> None:
    rng = np.random.default_rng(0)
    blob = rng.normal(size=(3000, 4))
    h = hierarchical_gmm(blob, levels=3, seed=0)
    assert len(h.leaves) == 1, "BIC must keep one Gaussian blob whole"
    assert not h.levels[0][0].split
    two = np.r_[rng.normal(-8, 1, size=(500, 2)), rng.normal(8, 1, size=(500, 2))]
    assert len(hierarchical_gmm(two, levels=1, seed=0).leaves) == 2
    assert len(hierarchical_gmm(two, levels=0, seed=0).leaves) == 1


def test_representative_rows_are_kmeanspp_seeds_above_1000() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(REPRESENTATIVE_ROWS + 500, 3))
    rows = representative_rows(z, seed=0)
    assert rows.shape == (REPRESENTATIVE_ROWS, 3)
    # k-means++ seeds are data points, all distinct
    as_set = {tuple(r) for r in z}
    assert all(tuple(r) in as_set for r in rows)
    assert len({tuple(r) for r in rows}) == REPRESENTATIVE_ROWS
    small = z[:200]
    assert representative_rows(small, seed=0) is small


# --------------------------------------------------------------------------- outputs


def test_report_has_every_plot_plotly_once_offline_and_json_matches(tmp_path: Path) -> None:
    table, _ = clustered_table(600, seed=2)
    summary, html, payload = _build(
        table,
        tmp_path,
        request_info={
            "collection": "collman",
            "experiment": "collman15v2",
            "z_range": [0, 27],
            "y_range": [0, 2048],
            "x_range": [0, 2048],
            "token": "SECRET-TOKEN-VALUE",
        },
        results_key="nomads-unsupervised_collman_collman15v2_z_0_27_y_0_2048_x_0_2048",
    )
    assert summary.missing == {}
    assert summary.plots == ALL_KEYS
    titles = set(re.findall(r"<h2>\d+\. ([^<]+)</h2>", html))
    assert titles >= PYMEDA_TITLES
    for key in ALL_KEYS:
        assert f'id="plot-{key}"' in html and f'id="figure-{key}"' in html
    # plotly.js inlined exactly once, nothing fetched from elsewhere
    assert html.count("plotly.js v") == 1
    assert not re.search(r"<script[^>]+src=", html)
    assert "cdn.plot.ly/plotly" not in html.split("<script>", 1)[0]
    # header: results key and request, never the token
    assert "nomads-unsupervised_collman_collman15v2_z_0_27_y_0_2048_x_0_2048" in html
    assert "collman15v2" in html and "SECRET-TOKEN-VALUE" not in html
    # clustering JSON: a label per synapse, means per cluster that are the members' means
    assert payload["ids"] == table["id"].astype(int).tolist()
    labels = np.asarray(payload["labels"])
    assert labels.shape == (600,)
    assert sum(c["size"] for c in payload["clusters"]) == 600
    feats = payload["features"]
    for c in payload["clusters"]:
        members = table[feats].to_numpy()[labels == c["label"]]
        np.testing.assert_allclose(c["mean"], members.mean(axis=0), rtol=1e-5)
        assert c["size"] == len(members)
    assert summary.n_clusters == len(payload["clusters"])


def test_density_and_summary_from_voxel_size_and_box(tmp_path: Path) -> None:
    table, _ = clustered_table(300, shape=(10, 100, 200), voxel_size=(100.0, 10.0, 10.0), seed=1)
    summary, html, _ = _build(table, tmp_path)
    box_um3 = (10 * 0.1) * (100 * 0.01) * (200 * 0.01)  # 2 µm³
    assert summary.density_per_um3 == pytest.approx(300 / box_um3)
    assert "150 synapses per µm³" in html
    # the summary says which unit the µm were converted from, and the table's columns' unit
    assert f"converted from 100 {X} 10 {X} 10 nanometers (table metadata)" in html
    assert "*_physical columns are in nanometers, volume_physical in nanometers³" in html
    # explicit voxel size (µm) and request ranges override the metadata
    summary2, html2, _ = _build(
        table,
        tmp_path,
        name="r2",
        voxel_size="1,1,1",
        voxel_unit="micrometers",
        request_info={"z_range": [0, 5], "y_range": [0, 10], "x_range": [0, 6]},
    )
    assert summary2.density_per_um3 == pytest.approx(300 / 300)
    assert "request z/y/x ranges" in html2
    assert f"converted from 1 {X} 1 {X} 1 micrometers (given)" in html2


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    table, _ = clustered_table(1500, seed=4)  # > 1000: the k-means++ seeds depend on the seed
    _, html_a, _ = _build(table, tmp_path, name="a", seed=7)
    _, html_b, _ = _build(table, tmp_path, name="b", seed=7)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert html_a == html_b
    _, html_c, _ = _build(table, tmp_path, name="c", seed=8)
    assert html_c != html_a


def test_table_built_by_features_module_round_trips_through_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((12, 64, 64), dtype=np.uint32)
    for i in range(30):
        z, y, x = rng.integers(2, 10), rng.integers(4, 58), rng.integers(4, 58)
        labels[z - 1 : z + 2, y - 2 : y + 2, x - 2 : x + 2] = i + 1
    chans = {
        "Synapsin647": rng.integers(0, 255, labels.shape, dtype=np.uint8),
        "PSD95_488": rng.integers(0, 255, labels.shape, dtype=np.uint8),
    }
    table = synapse_table(labels, chans, voxel_size=(50.0, 3.72, 3.72))
    csv = write_synapse_table(table, tmp_path / "synapses.csv")
    summary = build_report(csv, title="from csv", out_html=tmp_path / "report.html")
    assert summary.n_synapses == len(table) > 10
    assert summary.features == [
        "Synapsin647_window_zsum",
        "PSD95_488_window_zsum",
        "Synapsin647_mean",
        "PSD95_488_mean",
    ]
    assert summary.density_per_um3 is not None  # voxel size + shape from the metadata JSON
    html = (tmp_path / "report.html").read_text()
    clipped = int(table["window_clipped"].sum())
    assert f"{clipped:,} synapse(s) near the volume border" in html


def test_markup_in_titles_and_column_names_is_escaped(tmp_path: Path) -> None:
    table, _ = clustered_table(50, channels=["A"])
    evil = "x</script><script>alert(1)</script>"
    table = table.rename(columns={"A_mean": evil + "_mean"})
    _, html, payload = _build(table, tmp_path, title="<b>bold</b> & co")
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert evil not in html  # neither in the summary table nor inside a JSON island
    assert evil + "_mean" in payload["features"]


# --------------------------------------------------------------------------- robustness


def test_the_detectors_warnings_are_shown_under_the_header(tmp_path: Path) -> None:
    table, _ = clustered_table(50)
    warning = "the sections do not line up: neighbouring sections correlate <0.1>"
    build_report(table, title="t", out_html=tmp_path / "w.html", warnings=[warning])
    html = (tmp_path / "w.html").read_text()
    assert 'class="notice warning"' in html
    assert "Warning: the sections do not line up" in html and "&lt;0.1&gt;" in html
    build_report(table, title="t", out_html=tmp_path / "none.html")
    assert 'class="notice warning"' not in (tmp_path / "none.html").read_text()


def test_zero_synapses_gives_a_report_that_says_so(tmp_path: Path) -> None:
    table, _ = clustered_table(0)
    summary, html, payload = _build(table, tmp_path)
    assert summary.n_synapses == 0 and summary.plots == []
    assert set(summary.missing) == set(ALL_KEYS)
    assert 'id="no-synapses"' in html and "No synapses were detected" in html
    assert payload["labels"] == [] and payload["clusters"] == [] and payload["ids"] == []


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_synapses(tmp_path: Path, n: int) -> None:
    table, _ = clustered_table(n)
    summary, html, payload = _build(table, tmp_path)
    assert summary.n_synapses == n and len(payload["labels"]) == n
    drawn = set(summary.plots)
    assert {
        "representative-heatmap",
        "location-heatmap",
        "location-lines",
        "cluster-mean-heatmap",
        "spatial-projections",
        "spatial-3d",
    } <= drawn
    assert "gmm-dendrogram" in summary.missing  # too few synapses to split
    assert "Only one cluster found" in summary.missing["gmm-dendrogram"]
    if n == 1:
        for key in ("ridge-line", "correlation-matrix", "scree-plot", "pair-plot"):
            assert "at least 2 synapses" in summary.missing[key]
            assert f'id="missing-{key}"' in html
    else:
        assert {"correlation-matrix", "scree-plot", "ridge-line"} <= drawn


def test_constant_and_nan_features(tmp_path: Path) -> None:
    table, _ = clustered_table(400, seed=5)
    table["Synapsin647_mean"] = 42.0
    table.loc[::7, "PSD95_488_window_zsum"] = np.nan
    table.loc[3, "VGluT1_647_mean"] = np.inf
    table["GAD647_mean"] = np.nan
    summary, html, payload = _build(table, tmp_path)
    assert summary.missing == {}
    assert "is constant" in html and "no values (all missing)" in html
    assert "missing value(s) imputed" in html
    assert len(payload["labels"]) == 400
    i = payload["features"].index("GAD647_mean")
    assert all(c["mean"][i] is None for c in payload["clusters"])  # NaN -> null, valid JSON


def test_all_features_constant(tmp_path: Path) -> None:
    table, _ = clustered_table(50)
    for f in select_feature_columns(table):
        table[f] = 1.0
    summary, _, payload = _build(table, tmp_path)
    assert summary.n_clusters == 1
    assert "ridge-line" in summary.missing and "scree-plot" in summary.missing
    assert len(payload["labels"]) == 50


def test_single_channel_and_single_feature(tmp_path: Path) -> None:
    table, _ = clustered_table(300, channels=["PSD95_488"], n_clusters=2, separation=10)
    summary, _, _ = _build(table, tmp_path)
    assert len(summary.features) == 2 and summary.missing == {}
    one, _, _ = _build(table, tmp_path, name="one", features=["PSD95_488_window_zsum"])
    for key in ("correlation-matrix", "scree-plot", "pair-plot"):
        assert "at least 2 features" in one.missing[key]
    assert {"ridge-line", "cluster-mean-lines", "gmm-dendrogram"} <= set(one.plots)


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    table, _ = clustered_table(5)
    with pytest.raises(ReportInputError, match="gmm levels"):
        build_report(table, title="t", out_html=tmp_path / "x.html", gmm_levels=-1)
    with pytest.raises(ReportInputError, match="voxel size") as err:
        build_report(table, title="t", out_html=tmp_path / "x.html", voxel_size="1,2")
    assert err.value.field == "voxel_size"
    bad = table.astype({"GAD647_mean": object})
    bad.loc[2, "GAD647_mean"] = "oops"
    with pytest.raises(ReportInputError, match="non-numeric value 'oops'"):
        build_report(bad, title="t", out_html=tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "from synapse_pipelines.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_writes_report_and_refuses_to_overwrite(tmp_path: Path) -> None:
    table, _ = clustered_table(200, seed=6)
    write_synapse_table(table, tmp_path / "synapses.csv")
    done = _cli(
        "report",
        "synapses.csv",
        "--out",
        "out/report.html",
        "--seed",
        "3",
        "--gmm-levels",
        "1",
        "--voxel-size",
        "50,4,4",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "200 synapses" in done.stdout
    payload = json.loads((tmp_path / "out" / "clustering.json").read_text())
    assert payload["seed"] == 3 and payload["gmm_levels"] == 1 and payload["levels_run"] == 1
    again = _cli("report", "synapses.csv", "--out", "out/report.html", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "--overwrite" in again.stderr and "--force" not in again.stderr


def test_cli_report_overwrite_flag_and_its_deprecated_force_alias(tmp_path: Path) -> None:
    table, _ = clustered_table(60, seed=7)
    write_synapse_table(table, tmp_path / "synapses.csv")
    args = ("report", "synapses.csv", "--out", "report.html", "--gmm-levels", "0")
    (tmp_path / "report.html").write_text("old")
    done = _cli(*args, "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").read_text() != "old"
    assert "deprecated" not in done.stderr
    (tmp_path / "report.html").write_text("old")
    done = _cli(*args, "--force", cwd=tmp_path)  # old scripts keep working
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").read_text() != "old"
    assert "--force is deprecated; use --overwrite" in done.stderr
    shown = _cli("report", "--help", cwd=tmp_path).stdout
    assert "--overwrite" in shown and "--force" not in shown


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no synapse table"), ("", "not a readable CSV"), ("id,a_mean\n1,2\n3", None)],
)
def test_cli_missing_or_malformed_csv(
    tmp_path: Path, content: str | None, fragment: str | None
) -> None:
    path = tmp_path / "synapses.csv"
    if content is not None:
        path.write_text(content)
    done = _cli("report", "synapses.csv", "--out", "r.html", cwd=tmp_path)
    if fragment is None:  # ragged last row is padded with NaN: still a report
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2
    assert fragment in done.stderr and "Traceback" not in done.stderr


def test_cli_csv_without_features_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "synapses.csv").write_text("id,centroid_z\n1,2\n")
    done = _cli("report", "synapses.csv", "--out", "r.html", cwd=tmp_path)
    assert done.returncode == 2 and "no feature columns" in done.stderr
    assert "Traceback" not in done.stderr


def test_errors_are_synapse_pipelines_errors() -> None:
    assert issubclass(ReportInputError, SynapsePipelinesError)


def test_cli_request_file_sets_header_title_and_box(tmp_path: Path) -> None:
    table, _ = clustered_table(150, seed=8)
    write_synapse_table(table, tmp_path / "synapses.csv")
    (tmp_path / "request.json").write_text(
        json.dumps(
            {
                "collection": "collman",
                "experiment": "collman15v2",
                "z_range": "0,27",
                "y_range": [0, 1024],
                "x_range": [0, 1024],
                "token": "SECRET-TOKEN-VALUE",
            }
        )
    )
    done = _cli(
        "report", "synapses.csv", "--out", "mine.html", "--request", "request.json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "mine.html").read_text()
    key = "paired-puncta_collman_collman15v2_z_0_27_y_0_1024_x_0_1024"  # the default pipeline
    assert f"<title>{key}</title>" in html and f"results key: {key}" in html
    assert "request z/y/x ranges" in html  # the density uses the request's box
    assert "SECRET-TOKEN-VALUE" not in html
    assert (tmp_path / "mine.clustering.json").is_file()  # not clustering.json: not report.html


def _manifest(folder: Path, request: dict[str, object]) -> None:
    manifest = {"request": request, "pipeline": {"name": "paired-puncta"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_default_title_names_the_input_and_the_pipeline(tmp_path: Path) -> None:
    table = tmp_path / "synapses.csv"
    assert default_title(table) == "synapses"  # a table on its own: its file name
    _manifest(
        tmp_path, {"source": "local", "inputs": {"a": "d/ch.ome.tif[0]", "b": "d/ch.ome.tif[1]"}}
    )
    assert default_title(table) == "Synapses in ch.ome.tif (paired-puncta)"
    files = {f"c{i}": f"/data/c{i}.tif" for i in range(5)}
    _manifest(tmp_path, {"source": "local", "inputs": files})
    assert default_title(table) == (
        "Synapses in c0.tif, c1.tif, c2.tif and 2 more file(s) (paired-puncta)"
    )
    _manifest(tmp_path, {"collection": "collman", "experiment": "collman15v2"})
    assert default_title(table) == "Synapses in collman/collman15v2 (paired-puncta)"
    (tmp_path / "manifest.json").write_text("{damaged")
    assert default_title(table) == "synapses"


def test_cli_title_of_a_detect_folder(tmp_path: Path) -> None:
    table, _ = clustered_table(60, seed=9)
    write_synapse_table(table, tmp_path / "synapses.csv")
    _manifest(tmp_path, {"source": "local", "inputs": {"Synapsin647": "syn.tif"}})
    done = _cli("report", "synapses.csv", "--out", "r.html", "--gmm-levels", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "r.html").read_text()
    assert "<title>Synapses in syn.tif (paired-puncta)</title>" in html
