"""The deployment side of costs: the ``budgetUsd`` CDK setting (validated, passed to
ValidateRequest as ``SYNAPSE_PIPELINES_BUDGET_USD``) and PublishToS3's read-only Batch
permissions (the run's job costs), with cdk-nag still satisfied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import stack_settings
from infra.cdk_app import build_app, cdk_json_context
from synapse_pipelines.workflow import wiring as wf


def _settings(**overrides: Any) -> stack_settings.Settings:
    context = cdk_json_context()[stack_settings.CONTEXT_KEY]
    return stack_settings.load_settings({**context, **overrides})


def test_budget_setting() -> None:
    assert _settings().budget_usd is None
    assert _settings(budgetUsd=None).budget_usd is None
    assert _settings(budgetUsd=25).budget_usd == 25.0
    assert _settings(budgetUsd=0.5).budget_usd == 0.5


@pytest.mark.parametrize("value", [-5, 0, "25", True, [25]])
def test_bad_budget_setting_names_the_key_and_the_fix(value: Any) -> None:
    with pytest.raises(stack_settings.ConfigError) as info:
        _settings(budgetUsd=value)
    text = str(info.value)
    assert "synapse-pipelines.budgetUsd" in text and "positive number of US dollars" in text
    assert "null for no cap" in text


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    context = cdk_json_context()
    context["aws:cdk:bundling-stacks"] = []  # no Lambda layer bundling in tests
    context[stack_settings.CONTEXT_KEY] = {**context[stack_settings.CONTEXT_KEY], "budgetUsd": 25}
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(context, builtin_cloud_formation_validation=False, outdir=str(outdir))
    assembly = app.synth()
    report = json.loads((Path(outdir) / "validation-report.json").read_text())
    (nag,) = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success", json.dumps(nag["violations"], indent=1)[:4000]
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    return json.loads((Path(outdir) / artifact.template_file).read_text())


def _function(template: dict[str, Any], logical_id: str) -> tuple[str, dict[str, Any]]:
    description = wf.LAMBDA_FUNCTIONS[logical_id].description
    (found,) = [
        (key, r["Properties"])
        for key, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Description") == description
    ]
    return found


def test_budget_reaches_validate_request(template: dict[str, Any]) -> None:
    _, validate = _function(template, "ValidateRequest")
    assert validate["Environment"]["Variables"][wf.ENV_BUDGET_USD] == "25"
    _, publish = _function(template, "PublishToS3")
    assert wf.ENV_BUDGET_USD not in publish["Environment"]["Variables"]


def test_publish_to_s3_may_read_the_batch_jobs(template: dict[str, Any]) -> None:
    _, publish = _function(template, "PublishToS3")
    role = publish["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"].get("Roles", [])
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    (reading,) = [s for s in statements if s.get("Sid") == "ReadJobCosts"]
    assert reading["Action"] == ["batch:DescribeJobQueues", "batch:DescribeJobs", "batch:ListJobs"]
    assert reading["Effect"] == "Allow" and reading["Resource"] == "*"
    everything = json.dumps(statements)
    assert "batch:SubmitJob" not in everything and "batch:TerminateJob" not in everything
