"""The two local commands as a person runs them (subprocesses, real terminal output).

``synapse-pipelines demo`` at a small size, and ``synapse-pipelines run request.json --local``
against a BOSS the command knows only by host (the project's local BOSS server here).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_pipelines.core.artefacts import PREDICTIONS_ZARR, SYNAPSE_IDS_ZARR
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.neuroglancer_state import viewer_layout
from synapse_pipelines.local import demo
from synapse_pipelines.local.boss_process import LocalBossServer
from synapse_pipelines.science.synthetic import make_experiment
from synapse_pipelines.workflow import wiring as wf

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from synapse_pipelines.cli import main; main()"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BOSS_TOKEN"}
    env.update(COLUMNS="200", **extra)
    return env


def test_demo_command(tmp_path: Path) -> None:
    # an earlier demo's results (one stale file of a blockwise run among them): the demo
    # says it replaces them and leaves none of the earlier files
    key = parse_request(demo.demo_request("h", (16, 128, 128))).results_key
    (tmp_path / key / PREDICTIONS_ZARR).mkdir(parents=True)
    (tmp_path / key / PREDICTIONS_ZARR / "zarr.json").write_text("{}")
    (tmp_path / key / wf.MANIFEST).write_text("{}")
    proc = subprocess.run(
        [*CLI, "demo", "--size", "16,128,128", "--seed", "5", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for step in ("ValidateRequest", "Detect", "Report", "PublishToBoss", "PublishToS3"):
        assert step in out
    assert "F1 vs synthetic truth" in out and "synapses found" in out
    assert "open the report" in out
    # the command to paste is a line of its own, outside the table
    lines = out.splitlines()
    (command,) = [line for line in lines if line.startswith("python -m webbrowser file://")]
    assert command.endswith("/report.html")
    # the workflow's time once; the stopped local BOSS said so, with how to keep it
    assert sum(line.lstrip("│ ").startswith("workflow ") for line in lines) == 1, out
    assert "local BOSS stopped with the demo" in out and "--keep-server" in out
    assert "holds an earlier demo's results" in out and "replaced the earlier demo" in out
    assert not (tmp_path / key / PREDICTIONS_ZARR).exists()
    assert (tmp_path / key / wf.MANIFEST).read_text() != "{}"
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert folder.name == parse_request(demo.demo_request("h", (16, 128, 128))).results_key
    assert set(wf.ARTEFACTS) <= {p.name for p in folder.iterdir()}
    assert "Traceback" not in proc.stderr
    _viewable(folder)


def test_run_local_against_a_boss_by_host(tmp_path: Path) -> None:
    token = "cli-" + secrets.token_urlsafe(20)
    shape = (16, 128, 128)
    with LocalBossServer(tmp_path / "boss", token) as boss:
        demo.seed_synthetic_experiment(
            BossClient(boss.host, "http", token),
            "lab",
            "exp1",
            make_experiment(shape, seed=9),
        )
        request = demo.demo_request(boss.host, shape, collection="lab", experiment="exp1")
        path = tmp_path / "request.json"
        path.write_text(json.dumps(request))
        out = tmp_path / "results"
        key = parse_request(request).results_key
        # an earlier blockwise run's results in the folder: --overwrite replaces them all
        (out / key / SYNAPSE_IDS_ZARR).mkdir(parents=True)
        (out / key / SYNAPSE_IDS_ZARR / "zarr.json").write_text("{}")
        (out / key / wf.MANIFEST).write_text("{}")
        proc = subprocess.run(
            [*CLI, "run", str(path), "--local", "--out", str(out), "--overwrite"],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(BOSS_TOKEN=token),
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCEEDED" in proc.stdout
    assert "replaced the earlier results" in proc.stdout
    assert not (out / key / SYNAPSE_IDS_ZARR).exists()
    assert set(wf.ARTEFACTS) <= {p.name for p in (out / key).iterdir()}
    assert token not in proc.stdout + proc.stderr
    for p in (out / key).rglob("*"):
        assert p.is_dir() or token.encode() not in p.read_bytes()
    _viewable(out / key)


def _viewable(folder: Path) -> None:
    """The results hold what `view` and the report's pictures need (the raw cutout too)."""
    layout = viewer_layout(folder)
    assert [i.name for i in layout.images if i.visible] == ["Synapsin647", "PSD95_488"]
    assert layout.centre_synapse is not None
    html = (folder / wf.REPORT).read_text()
    assert 'id="synaptograms"' in html and html.count("data:image/png;base64,") >= 4


def test_run_local_without_a_token_says_how_to_give_one(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(demo.demo_request("127.0.0.1:9", (16, 16, 16))))
    proc = subprocess.run(
        [*CLI, "run", str(path), "--local"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "BOSS_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
