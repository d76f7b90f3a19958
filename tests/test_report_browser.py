"""The report in real headless Chromium (Debian's package, via tests/fixtures/browser.py).

Loads each report from file:// with every non-file request blocked, waits until the page
says every plot is drawn, then checks: no JavaScript console errors, no network requests,
every plot container holds an SVG or canvas of non-zero size, and saves a screenshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synapse_pipelines.report import build_report
from synapse_pipelines.report.sample_data import clustered_table
from synapse_pipelines.report.sections import SECTIONS

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 120_000

_MEASURE = """() => Array.from(document.querySelectorAll('div.plot[data-figure]')).map(div => {
  const boxes = Array.from(div.querySelectorAll('svg.main-svg, canvas'))
    .map(el => el.getBoundingClientRect())
    .filter(r => r.width > 0 && r.height > 0);
  const traces = div.querySelectorAll('g.trace, g.hm, g.imagelayer image, canvas').length;
  return {id: div.id, state: div.dataset.rendered, drawn: boxes.length, traces: traces};
})"""


def _open(page: Any, html: Path) -> list[dict[str, Any]]:
    page.goto(html.resolve().as_uri())
    page.wait_for_function("document.body.dataset.rendered === 'all'", timeout=RENDER_TIMEOUT_MS)
    return page.evaluate(_MEASURE)


def _check_clean(page: Any) -> None:
    assert page.report_errors == [], f"JavaScript console errors: {page.report_errors}"
    assert page.external_requests == [], f"requests left file://: {page.external_requests}"


@pytest.mark.slow
def test_full_report_renders_every_plot_in_chromium(page: Any, tmp_path: Path) -> None:
    table, _ = clustered_table(1500, seed=11)  # > 1000: k-means++ heatmap rows
    summary = build_report(
        table,
        title="collman15v2-like synthetic",
        out_html=tmp_path / "report.html",
        request_info={
            "collection": "collman",
            "experiment": "collman15v2",
            "z_range": [0, 27],
            "y_range": [0, 2048],
            "x_range": [0, 2048],
        },
        results_key="nomads-unsupervised_collman_collman15v2_z_0_27_y_0_2048_x_0_2048",
    )
    assert summary.missing == {}
    plots = _open(page, tmp_path / "report.html")
    _check_clean(page)
    assert [p["id"] for p in plots] == [f"plot-{s[0]}" for s in SECTIONS]
    for p in plots:
        assert p["state"] == "true", p
        assert p["drawn"] > 0 and p["traces"] > 0, f"{p['id']} has nothing drawn: {p}"
    # the 3-D view really drew on a WebGL canvas with non-zero size
    gl = page.evaluate(
        "() => Array.from(document.querySelectorAll('#plot-spatial-3d canvas'))"
        ".some(c => c.width > 0 && c.height > 0)"
    )
    assert gl
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000


@pytest.mark.parametrize("case", ["empty", "one", "two", "constant-nan", "one-feature"])
def test_degenerate_reports_load_cleanly(page: Any, tmp_path: Path, case: str) -> None:
    kwargs: dict[str, Any] = {}
    if case == "empty":
        table, _ = clustered_table(0)
    elif case == "one":
        table, _ = clustered_table(1)
        kwargs["warnings"] = ["the sections do not line up: <b>check</b> the registration"]
    elif case == "two":
        table, _ = clustered_table(2)
    elif case == "constant-nan":
        table, _ = clustered_table(120, seed=2)
        table["Synapsin647_mean"] = 3.0
        table["GAD647_mean"] = np.nan
        # markup in a column name must stay inert inside the figure JSON islands
        table = table.rename(columns={"NR1594_mean": "NR1594</script><b>_mean"})
    else:
        table, _ = clustered_table(80, channels=["PSD95_488"])
        kwargs["features"] = ["PSD95_488_mean"]
    summary = build_report(table, title=f"case {case}", out_html=tmp_path / "r.html", **kwargs)
    plots = _open(page, tmp_path / "r.html")
    _check_clean(page)
    assert len(plots) == len(summary.plots)
    for p in plots:
        assert p["state"] == "true" and p["drawn"] > 0, p
    missing = page.evaluate("() => document.querySelectorAll('div.missing').length")
    assert missing == len(summary.missing)
    if case == "empty":
        assert page.is_visible("#no-synapses")
    if kwargs.get("warnings"):  # shown above the plots, as text (markup stays inert)
        notice = page.inner_text("div.notice.warning")
        assert page.is_visible("div.notice.warning") and "<b>check</b>" in notice
    page.screenshot(path=str(tmp_path / f"{case}.png"), full_page=True)


def test_without_webgl_the_3d_view_explains_itself(
    browser: Any, chromium_path: Path, tmp_path: Path
) -> None:
    from fixtures.browser import CHROMIUM_ARGS

    table, _ = clustered_table(200, seed=3)
    build_report(table, title="no webgl", out_html=tmp_path / "r.html")
    errors: list[str] = []
    # a second Chromium from the same playwright driver, with WebGL switched off
    b = browser.browser_type.launch(
        executable_path=str(chromium_path),
        args=[*CHROMIUM_ARGS, "--disable-webgl", "--disable-3d-apis"],
    )
    try:
        pg = b.new_page()
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto((tmp_path / "r.html").resolve().as_uri())
        pg.wait_for_function("document.body.dataset.rendered === 'all'", timeout=RENDER_TIMEOUT_MS)
        state = pg.get_attribute("#plot-spatial-3d", "data-rendered")
        text = pg.text_content("#plot-spatial-3d") or ""
        others = pg.evaluate(
            "() => Array.from(document.querySelectorAll('div.plot[data-figure]'))"
            ".filter(d => d.id !== 'plot-spatial-3d').every(d => d.dataset.rendered === 'true')"
        )
    finally:
        b.close()
    assert errors == []
    assert state == "fallback" and "no WebGL" in text
    assert others
