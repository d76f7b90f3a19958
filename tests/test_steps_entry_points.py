"""How the workflow steps are entered: the Lambda handlers (loaded as the stack deploys
them, failing with the error type Step Functions shows and a clear message, never raising
in DescribeFailure, starting one named run from an event), the step CLI the Batch jobs run
(a user error is recorded and exits 2), and the Lambda layer's imports (no science stack).
The steps themselves: test_steps_functions.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fixtures.workflow_steps import state_machine as _state_machine, step_request as _request
from typer.testing import CliRunner

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.workflow import run_names, wiring as wf

# -- handlers -----------------------------------------------------------------------------------


def _context(name: str) -> Any:
    return SimpleNamespace(
        function_name=name,
        memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        aws_request_id="req-1",
        get_remaining_time_in_millis=lambda: 60_000,
    )


def test_validate_handler_fails_with_the_error_type_and_clear_message(
    aws: Any, lambda_env: dict[str, str], boss_server: Any, boss_synthetic: Any
) -> None:
    handler = wf.load_handler("ValidateRequest")
    event = {"request": _request(boss_server, boss_synthetic, z_range=[0, 9999])}
    with pytest.raises(SynapsePipelinesError) as caught:
        handler(event, _context("validate"))
    assert type(caught.value).__name__ == "BossError"  # what Step Functions shows as Error
    assert str(caught.value).startswith("z_range: ")
    ok = handler({"request": _request(boss_server, boss_synthetic)}, _context("validate"))
    assert ok["detect_mode"] == "standard"


def test_task_error_uses_error_type_as_class_name() -> None:
    from synapse_pipelines.functions.handler_support import task_error
    from synapse_pipelines.io.ome_tiff import OutputError

    err = task_error(OutputError("bad folder", field="out", hint="fix it"))
    assert type(err).__name__ == OutputError.error_type
    assert str(err) == "out: bad folder. Fix: fix it"


def test_describe_failure_handler_never_raises() -> None:
    handler = wf.load_handler("DescribeFailure")
    out = handler({"state": {}, "execution_id": "e"}, _context("describe"))
    assert out["error"] and out["subject"] and out["message"]


# -- step CLI -----------------------------------------------------------------------------------


def test_step_cli_records_a_user_error_and_exits_2(
    aws: Any, results_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from synapse_pipelines.cli import app

    monkeypatch.setenv(wf.ENV_RESULTS_BUCKET, results_bucket)
    result = CliRunner().invoke(
        app, ["step", "report", "--results-key", "missing_key", "--workdir", str(tmp_path)]
    )
    assert result.exit_code == wf.USER_ERROR_EXIT_CODE, result.output
    assert "no validated request" in result.output
    s3 = aws.client("s3")
    recorded = json.loads(
        s3.get_object(Bucket=results_bucket, Key=wf.step_error_key("missing_key", "report"))[
            "Body"
        ].read()
    )
    assert recorded["error_type"] == "SynapsePipelinesError"


def test_batch_job_commands_are_step_cli_commands() -> None:
    from synapse_pipelines.cli import app

    runner = CliRunner()
    for spec in wf.BATCH_JOBS.values():
        argv = [*wf.IMAGE_ENTRYPOINT, *spec.render_command({p: "1" for p in spec.parameters})]
        assert argv[0] == wf.CLI_PROGRAM
        result = runner.invoke(app, [*argv[1:], "--help"])
        assert result.exit_code == 0, (argv, result.output)
        assert "--results-key" in result.output


def test_validate_handler_refuses_a_non_object_input(aws: Any, lambda_env: dict[str, str]) -> None:
    handler = wf.load_handler("ValidateRequest")
    for bad in ({"request": "collman"}, {"request": [1, 2]}):
        with pytest.raises(SynapsePipelinesError) as caught:
            handler(bad, _context("validate"))
        assert type(caught.value).__name__ == "RequestValidationError"
        assert "JSON object" in str(caught.value)


def test_start_from_event_handler_starts_one_named_run(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = _state_machine(aws)
    monkeypatch.setenv(wf.ENV_STATE_MACHINE_ARN, arn)
    handler = wf.load_handler("StartFromEvent")
    detail = {"collection": "c", "experiment": "e", "z_range": [0, 16], "y_range": [0, 64]}
    event = {"id": "evt-1", "detail-type": wf.DETAIL_TYPE_REQUESTED, "detail": detail}
    with pytest.raises(SynapsePipelinesError) as caught:  # x_range missing: a clear refusal
        handler(event, _context("start"))
    assert type(caught.value).__name__ == "RequestValidationError"
    assert "x_range" in str(caught.value)
    event["detail"] = {**detail, "x_range": [0, 64]}
    started = handler(event, _context("start"))
    from synapse_pipelines.core.request import parse_request

    request = parse_request(event["detail"])
    assert started["name"] == run_names.execution_name(request.public_dict(), request.results_key)
    assert started["name"].startswith("paired-puncta_c_e_z_0_16_y_0_64_x_0_64-")
    sfn = aws.client("stepfunctions")
    names = [e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]]
    assert names == [started["name"]]


def test_the_handlers_import_no_science_stack() -> None:
    """The Lambda layer carries the lambda extra only: importing the four handlers (and the
    steps they call) loads none of the Batch image's science stack."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from synapse_pipelines.workflow import wiring as wf\n"
        "for logical_id in wf.LAMBDA_FUNCTIONS: wf.load_handler(logical_id)\n"
        "heavy = ('scipy', 'numba', 'pandas', 'sklearn', 'zarr', 'tifffile', 'plotly')\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_parameters_are_left_to_detect_where_the_science_stack_is_missing() -> None:
    """In the Lambda layer (no scipy, no numba) loading the pipeline fails on its imports:
    ValidateRequest then passes the parameters on unchecked instead of failing the request."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules.update(scipy=None, numba=None)  # what the layer lacks\n"
        "from synapse_pipelines.core.request import parse_request\n"
        "from synapse_pipelines.workflow.validate_step import checked_parameters\n"
        "request = parse_request({'collection': 'c', 'experiment': 'e', 'z_range': [0, 4],\n"
        "    'y_range': [0, 4], 'x_range': [0, 4], 'pipeline_parameters': {'window': 5}})\n"
        "print(checked_parameters(request))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "{'window': 5}"
