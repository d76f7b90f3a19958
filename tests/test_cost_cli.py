"""``synapse-pipelines estimate`` and ``submit --dry-run``: the plan, hours and each service's
cost for a small and a very large request, and a clear error for every bad input (request
file, region, budget) - through the console entry point, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synapse_pipelines.cli import app
from synapse_pipelines.core import cost_estimate as ce, pricing
from synapse_pipelines.core.errors import SynapsePipelinesError

SMALL = {
    "boss_host": "api.bossdb.io",
    "collection": "collman",
    "experiment": "collman15v2",
    "z_range": "0,27",
    "y_range": [0, 1024],
    "x_range": [0, 1024],
}
LARGE = dict(SMALL, z_range=[0, 1000], y_range=[0, 10_000], x_range=[0, 10_000])


@pytest.fixture(autouse=True)
def _no_boss_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a token the estimate never contacts BOSS (with one it counts the channels)."""
    monkeypatch.delenv("BOSS_TOKEN", raising=False)


def _file(tmp_path: Path, data: Any, name: str = "request.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script's ``main`` (user errors: one message, exit status 2)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    code = "import sys; from synapse_pipelines.cli import main; sys.argv[0] = 'x'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _boss_request(boss_server: Any, collection: str, experiment: str, shape: tuple) -> dict:
    """A request for the whole of ``collection/experiment`` (of ``shape``) on the local BOSS."""
    z, y, x = shape
    return dict(
        SMALL,
        boss_host=boss_server.host,
        boss_protocol="http",
        collection=collection,
        experiment=experiment,
        z_range=[0, z],
        y_range=[0, y],
        x_range=[0, x],
    )


def test_estimate_small_request(tmp_path: Path) -> None:
    result = _run("estimate", str(_file(tmp_path, SMALL)))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "one Detect job on the standard queue: 4 vCPU / 30 GiB (Fargate Spot)" in out
    assert "27 x 1024 x 1024 = 28,311,552 voxels" in out
    assert "us-east-1, price table of 2026-11-30" in out
    for heading in ("vCPU-h", "GiB-h", "Batch on Fargate Spot", "Step Functions", "Lambda"):
        assert heading in out
    assert "\nS3 " in out and "NAT gateway" in out and "\ntotal " in out


def test_estimate_very_large_request_is_blockwise(tmp_path: Path) -> None:
    result = _run("estimate", str(_file(tmp_path, LARGE)), "--region", "us-west-2", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["mode"] == "blockwise" and record["n_blocks"] == 400
    assert "400 blocks of 1008 x 512 x 512" in record["plan"]
    assert record["price_table"] == {"date": pricing.PRICE_TABLE_DATE, "region": "us-west-2"}
    assert record["total_usd"] == pytest.approx(sum(record["services_usd"].values()), abs=1e-5)
    assert {j["step"] for j in record["jobs"]} >= set(ce.MAP_STEPS)
    text = _run("estimate", str(_file(tmp_path, LARGE))).output
    assert "grid 1 x 20 x 20" in text and "detect-bc  covariance" in text


def test_estimate_with_budget(tmp_path: Path) -> None:
    request = str(_file(tmp_path, SMALL))
    fine = _run("estimate", request, "--budget", "5")
    assert fine.exit_code == 0 and "within the budget cap of $5.00" in fine.output
    done = _cli("estimate", str(_file(tmp_path, LARGE)), "--budget", "10")
    assert done.returncode == 2, done.stderr
    assert "total" in done.stdout  # the estimate is printed, then the refusal
    assert "exceeds the budget cap of $10.00" in done.stderr
    assert "smaller box" in done.stderr and "raise the cap" in done.stderr


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--region", "ap-south-1"], ["--region: ", "'ap-south-1'", "us-east-1, us-east-2"]),
        (["--budget=-5"], ["--budget: ", "positive number", "Fix:"]),
        (["--budget", "lots"], ["--budget: ", "'lots'"]),
    ],
)
def test_estimate_bad_options(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    result = _run("estimate", str(_file(tmp_path, SMALL)), *args)
    assert isinstance(result.exception, SynapsePipelinesError), result.output
    for needle in needles:
        assert needle in str(result.exception)


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("{not json", ["request: ", "not valid JSON", "line 1"]),
        ('["a list"]', ["request: ", "JSON list, not an object"]),
        (dict(SMALL, z_range="27,0"), ["z_range"]),
        ({k: v for k, v in SMALL.items() if k != "experiment"}, ["experiment"]),
    ],
)
def test_estimate_bad_request_file(tmp_path: Path, content: Any, needles: list[str]) -> None:
    result = _run("estimate", str(_file(tmp_path, content)))
    assert isinstance(result.exception, SynapsePipelinesError), result.output
    for needle in needles:
        assert needle in str(result.exception)
    missing = _run("estimate", str(tmp_path / "nope.json"))
    assert "no such file" in str(missing.exception)


def test_submit_dry_run_prints_the_plan_and_starts_nothing(tmp_path: Path) -> None:
    # no AWS at all: the environment has no endpoint and the stack does not exist
    done = _cli("submit", str(_file(tmp_path, LARGE)), "--stack", "Nowhere", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "blockwise: 400 blocks" in done.stdout and "Step Functions" in done.stdout
    assert done.stdout.rstrip().endswith("dry run: nothing started")
    request = str(_file(tmp_path, SMALL))
    region = _run("submit", request, "--stack", "S", "--dry-run", "--region", "eu-west-1")
    assert region.exit_code == 0 and "eu-west-1, price table" in region.output
    bad = _run("submit", request, "--stack", "S", "--dry-run", "--region", "mars-1")
    assert "--region: " in str(bad.exception) and "'mars-1'" in str(bad.exception)


@pytest.mark.parametrize(
    ("pipeline", "parameters"),
    [
        ("paired-puncta", {"seed_level": -1}),
        ("paired-puncta", {"no_such_parameter": 3}),
        ("nomads-unsupervised", {"window": 4}),
    ],
)
def test_estimate_and_dry_run_refuse_what_validate_request_refuses(
    tmp_path: Path, pipeline: str, parameters: dict[str, Any]
) -> None:
    """The pipeline parameters are checked by the function ValidateRequest calls: a request
    the workflow would refuse is refused before any estimate, with the same message."""
    from synapse_pipelines.core.errors import RequestValidationError
    from synapse_pipelines.core.request import parse_request
    from synapse_pipelines.workflow.validate_step import checked_parameters

    data = dict(SMALL, pipeline=pipeline, pipeline_parameters=parameters)
    with pytest.raises(RequestValidationError) as lambda_says:
        checked_parameters(parse_request(data))
    request = str(_file(tmp_path, data))
    for args in (["estimate", request], ["submit", request, "--stack", "S", "--dry-run"]):
        result = _run(*args)
        assert isinstance(result.exception, RequestValidationError), (args, result.output)
        assert str(result.exception) == str(lambda_says.value)
        assert "total" not in result.output  # refused before any estimate
    done = _cli("estimate", request)
    assert done.returncode == 2 and str(lambda_says.value) in done.stderr, done.stderr
    if parameters == {"seed_level": -1}:
        assert "pipeline_parameters.seed_level: must be >= 0.01" in done.stderr


def test_estimate_counts_the_channels_pulled_or_says_they_are_assumed(
    tmp_path: Path, boss_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detect pulls every image channel of the experiment: with a BOSS token at hand the
    estimate counts them on BOSS (here 2 uint16 channels; the annotation channel is not
    pulled), as ValidateRequest does; without one it says 13 are assumed and how to fix it."""
    import numpy as np

    collection = boss_server.unique("est")
    volumes = {
        "synapsin": np.ones((4, 16, 16), np.uint16),
        "psd95": np.ones((4, 16, 16), np.uint16),
    }
    labels = {"annotation": np.zeros((4, 16, 16), np.uint64)}
    boss_server.load(
        collection, "two", volumes, annotations=labels, voxel_size=(70.0, 100.0, 100.0)
    )
    data = _boss_request(boss_server, collection, "two", (4, 16, 16))
    request = str(_file(tmp_path, data))
    assumed = _run("estimate", request)
    assert assumed.exit_code == 0, assumed.output
    assert (
        "13 channels x 1 byte pulled (assumed, collman15v2's; give --channels N or set "
        "BOSS_TOKEN to count them)"
    ) in assumed.output
    given = _run("estimate", request, "--channels", "3", "--json")
    record = json.loads(given.output)
    assert record["channels"] == 3 and record["bytes_per_channel"] == 1
    monkeypatch.setenv("BOSS_TOKEN", boss_server.token)
    for args in (["estimate", request], ["submit", request, "--stack", "S", "--dry-run"]):
        counted = _run(*args)
        assert counted.exit_code == 0, counted.output
        assert (
            f"2 channels x 2 byte pulled ({collection}/two's image channels, on BOSS)"
            in counted.output
        ), counted.output
    record = json.loads(_run("estimate", request, "--json").output)
    assert record["channels"] == 2 and record["bytes_per_channel"] == 2
    # a BOSS that does not answer (here: refuses the token) leaves the estimate offline
    monkeypatch.setenv("BOSS_TOKEN", "not-the-token")
    refused = _run("estimate", request)
    assert refused.exit_code == 0, refused.output
    assert "13 channels x 1 byte pulled (assumed, collman15v2's: BOSS could not count" in (
        " ".join(refused.output.split())
    ), refused.output
    assert "not-the-token" not in refused.output  # the reason never carries the token


def test_estimate_and_dry_run_refuse_a_level_the_detector_cannot_run_at(
    tmp_path: Path, boss_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With BOSS at hand, a request whose Detect job would fail on its voxel size (here an
    experiment at 70 x 25 x 25 nm, read at level 0) is refused before it is priced, with
    Detect's own message and the level that runs; at that level it is priced. Offline
    nothing is checked (the estimate still prints)."""
    import numpy as np

    collection = boss_server.unique("estres")
    volumes = {n: np.ones((4, 64, 64), np.uint8) for n in ("synapsin", "psd95")}
    boss_server.load(collection, "fine", volumes, voxel_size=(70.0, 25.0, 25.0))
    data = _boss_request(boss_server, collection, "fine", (4, 64, 64))
    request = str(_file(tmp_path, data))
    assert _run("estimate", request).exit_code == 0  # no token: not checked
    monkeypatch.setenv("BOSS_TOKEN", boss_server.token)
    for args in (["estimate", request], ["submit", request, "--stack", "S", "--dry-run"]):
        refused = _run(*args)
        assert isinstance(refused.exception, SynapsePipelinesError), refused.output
        message = str(refused.exception)
        assert "resolution: paired-puncta cannot run on voxels of 70 x 25 x 25 nm" in message
        assert "set resolution to 1 (voxels of 70 x 50 x 50 nm" in message
        assert "total" not in refused.output
    done = _cli("estimate", request)
    assert done.returncode == 2 and "set resolution to 1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    nomads = str(_file(tmp_path, dict(data, pipeline="nomads-unsupervised"), "nomads.json"))
    assert _run("estimate", nomads).exit_code == 0  # works in voxels: not refused
