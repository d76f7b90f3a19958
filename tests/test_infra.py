"""Quality gates of the CDK app: template assertions, cdk-nag, cfn-lint, Batch sizes, image.

One session-scoped synth with cdk.json's context (bundling skipped, built-in CloudFormation
validation off, as docs/aws.md explains); cdk-nag runs in that synth, so an unacknowledged
finding fails the fixture and every test here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
if str(Path(__file__).resolve().parents[1]) not in sys.path:  # infra/ lives at the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aws_cdk as cdk
from aws_cdk import assertions, aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from infra import REPO_ROOT, stack_settings
from infra.batch_compute.batch_compute_construct import IMAGE_CONTEXT_RULES
from infra.cdk_app import build_app, cdk_json_context
from synapse_pipelines.workflow import wiring as wf

REPO = REPO_ROOT


class Synth:
    def __init__(self, context_overrides: dict[str, Any] | None, outdir: Path) -> None:
        context = cdk_json_context()
        context["aws:cdk:bundling-stacks"] = []  # no Lambda layer bundling in tests
        if context_overrides:
            context[stack_settings.CONTEXT_KEY] = {
                **context[stack_settings.CONTEXT_KEY],
                **context_overrides,
            }
        self.app, self.stack = build_app(
            context, builtin_cloud_formation_validation=False, outdir=str(outdir)
        )
        self.assembly = self.app.synth()
        self.outdir = outdir
        artifact = self.assembly.get_stack_artifact(self.stack.artifact_id)
        self.template_path = outdir / artifact.template_file
        self.template_json: dict[str, Any] = json.loads(self.template_path.read_text())
        self.template = assertions.Template.from_json(self.template_json)

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template_json["Resources"].items() if v["Type"] == kind}

    def one(self, kind: str) -> dict[str, Any]:
        found = list(self.resources(kind).values())
        assert len(found) == 1, f"{len(found)} {kind}"
        return found[0]["Properties"]


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return Synth(None, tmp_path_factory.mktemp("cdk.out"))


def _logical_id(synth: Synth, construct: Any) -> str:
    return synth.stack.get_logical_id(construct.node.default_child)


# -- cdk-nag ------------------------------------------------------------------------------------


def test_cdk_nag_has_no_unacknowledged_findings(synth: Synth) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    (nag,) = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success", json.dumps(nag["violations"], indent=1)[:4000]


def test_every_acknowledgement_has_a_reason(synth: Synth) -> None:
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledgements: dict[str, str] = {}
    for node in synth.stack.node.find_all():
        for entry in node.node.metadata:
            if entry.type == key:
                for rule, reason in dict(entry.data).items():
                    if rule.startswith("AwsSolutions::"):
                        acknowledgements[f"{node.node.path} {rule}"] = reason
    assert len(acknowledgements) >= 10
    for where, reason in acknowledgements.items():
        assert len(reason) >= 40, where


def test_cdk_nag_gate_can_fail(tmp_path: Path) -> None:
    """A public-ish bucket without SSL enforcement makes synth fail under the same plugin."""
    app = cdk.App(outdir=str(tmp_path), builtin_cloud_formation_validation=False)
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Sloppy")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()


# -- cfn-lint -----------------------------------------------------------------------------------


def test_cfn_lint_passes(synth: Synth) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--ignore-checks",
            "W3005",
            "--",
            str(synth.template_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- storage ------------------------------------------------------------------------------------


def test_results_bucket_is_private_encrypted_versioned_with_lifecycle(synth: Synth) -> None:
    bucket_id = _logical_id(synth, synth.stack.storage.results)
    props = synth.template_json["Resources"][bucket_id]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert set(rules) == {"old-versions", "infrequent-access", "abort-uploads"}
    assert "LoggingConfiguration" in props
    assert props["OwnershipControls"]["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"
    for bucket in synth.resources("AWS::S3::Bucket").values():
        assert "AccessControl" not in bucket["Properties"]  # never public-read
    # SSL only
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    (statements,) = policies
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_token_secret_reaches_containers_only_as_a_secret(synth: Synth) -> None:
    secret_id = _logical_id(synth, synth.stack.storage.boss_token)
    for name, spec in wf.BATCH_JOBS.items():
        jd_id = _logical_id(synth, synth.stack.batch_compute.job_definitions[name])
        container = synth.template_json["Resources"][jd_id]["Properties"]["ContainerProperties"]
        secrets = {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}
        assert secrets == {n: {"Ref": secret_id} for n in spec.secrets}, name
        assert "BOSS_TOKEN" not in {e["Name"] for e in container.get("Environment", [])}
        assert not any("token" in str(arg).lower() for arg in container["Command"])


# -- Batch --------------------------------------------------------------------------------------


def test_job_definitions_follow_the_workflow(synth: Synth) -> None:
    settings = synth.stack.settings
    sizes = {
        "detect": settings.detect_job,
        "large": settings.large_detect_job,
        "report": settings.report_job,
        "publish": settings.publish_job,
    }
    for name, spec in wf.BATCH_JOBS.items():
        jd_id = _logical_id(synth, synth.stack.batch_compute.job_definitions[name])
        props = synth.template_json["Resources"][jd_id]["Properties"]
        container = props["ContainerProperties"]
        assert container["Command"] == list(spec.command)
        assert container["Command"][0] == "step"  # the image's ENTRYPOINT is the CLI
        assert {f"Ref::{p}" for p in spec.parameters} <= set(container["Command"])
        env = {e["Name"] for e in container["Environment"]}
        assert set(spec.environment) <= env
        resources = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
        assert float(resources["VCPU"]) == sizes[spec.size].vcpu
        assert int(resources["MEMORY"]) == sizes[spec.size].memory_mib
        expected_platform = "EC2" if spec.large else "FARGATE"
        assert props["PlatformCapabilities"] == [expected_platform]
        strategy = wf.batch_retry_strategy(spec.attempts)
        assert props["RetryStrategy"]["Attempts"] == strategy["attempts"]
        rules = [
            {k[0].lower() + k[1:]: v for k, v in rule.items()}
            for rule in props["RetryStrategy"]["EvaluateOnExit"]
        ]
        assert [{**r, "action": r["action"].upper()} for r in rules] == strategy["evaluateOnExit"]
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert container.get("JobRoleArn")


def test_batch_sizes_are_valid_fargate_and_ec2_sizes(synth: Synth) -> None:
    settings = synth.stack.settings
    for key in ("detectJob", "reportJob", "publishJob"):
        stack_settings.check_fargate_size(key, getattr(settings, stack_settings._attr(key)))
    stack_settings.check_ec2_size(
        "largeDetectJob", settings.large_detect_job, settings.large_instance_classes
    )
    envs = {
        p["Properties"]["ComputeResources"]["Type"]: p["Properties"]["ComputeResources"]
        for p in synth.resources("AWS::Batch::ComputeEnvironment").values()
    }
    assert set(envs) == {"FARGATE_SPOT", "SPOT"}
    assert envs["SPOT"]["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert envs["SPOT"]["MinvCpus"] == 0
    assert set(envs["SPOT"]["InstanceTypes"]) == set(settings.large_instance_classes)


@pytest.mark.parametrize(
    ("vcpu", "memory", "ok"),
    [
        (0.25, 512, True),
        (0.25, 1536, False),
        (1, 2048, True),
        (1, 9216, False),
        (4, 30720, True),
        (4, 31744, False),
        (8, 20480, True),
        (8, 18432, False),  # 8 vCPU steps by 4 GiB
        (16, 122880, True),
        (16, 131072, False),
        (3, 8192, False),
    ],
)
def test_fargate_size_validation(vcpu: float, memory: int, ok: bool) -> None:
    size = stack_settings.JobSize(vcpu=vcpu, memory_mib=memory)
    if ok:
        stack_settings.check_fargate_size("detectJob", size)
    else:
        with pytest.raises(stack_settings.ConfigError, match=r"detectJob\.(vcpu|memoryMiB)"):
            stack_settings.check_fargate_size("detectJob", size)


def test_context_validation_names_the_key_and_fix() -> None:
    base = cdk_json_context()[stack_settings.CONTEXT_KEY]
    assert (
        stack_settings.load_settings(base).detect_job.memory_mib == base["detectJob"]["memoryMiB"]
    )
    bad = [
        ({"detectJob": {"vcpu": 4, "memoryMiB": 65536}}, "detectJob.memoryMiB"),
        ({"largeDetectJob": {"vcpu": 32, "memoryMiB": 2_000_000}}, "largeDetectJob"),
        ({"largeInstanceClasses": ["t2"]}, "largeInstanceClasses"),
        ({"notificationEmail": "not-an-email"}, "notificationEmail"),
        ({"logRetentionDays": 100}, "logRetentionDays"),
        ({"natGateways": 0}, "natGateways"),
        ({"existingVpc": {"vpcId": "vpc-1"}}, "existingVpc"),
        ({"largeDetectJob": {"vcpu": 2, "memoryMiB": 8192}}, "largeDetectJob.memoryMiB"),
    ]
    for change, key in bad:
        with pytest.raises(stack_settings.ConfigError) as caught:
            stack_settings.load_settings({**base, **change})
        assert f"{stack_settings.CONTEXT_KEY}.{key}" in str(caught.value)
        assert "Fix:" in str(caught.value)


# -- state machine ------------------------------------------------------------------------------


def test_state_machine_is_the_asl_file_with_its_substitutions(synth: Synth) -> None:
    props = synth.one("AWS::StepFunctions::StateMachine")
    assert props["DefinitionString"] == wf.definition_template()
    substitutions = props["DefinitionSubstitutions"]
    assert set(substitutions) == set(wf.SUBSTITUTION_NAMES)
    assert wf.placeholders() <= set(substitutions)
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert props["TracingConfiguration"] == {"Enabled": True}
    # every function / job definition placeholder points at the right resource
    for logical_id, fn in synth.stack.lambda_functions.functions.items():
        spec = wf.LAMBDA_FUNCTIONS[logical_id]
        if spec.substitution:
            assert substitutions[spec.substitution] == {
                "Fn::GetAtt": [_logical_id(synth, fn), "Arn"]
            }
    for logical_id, jd in synth.stack.batch_compute.job_definitions.items():
        assert substitutions[wf.BATCH_JOBS[logical_id].substitution] == {
            "Ref": _logical_id(synth, jd)
        }


def test_state_machine_role_has_what_the_asl_needs(synth: Synth) -> None:
    role_id = _logical_id(synth, synth.stack.state_machine.role)
    actions: set[str] = set()
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                found = statement["Action"]
                actions |= {found} if isinstance(found, str) else set(found)
    assert {
        "lambda:InvokeFunction",
        "batch:SubmitJob",
        "batch:DescribeJobs",
        "batch:TerminateJob",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
        "sns:Publish",
        "events:PutEvents",
        "xray:PutTraceSegments",
        "logs:CreateLogDelivery",
    } <= actions
    assert not any(a.endswith(":*") for a in actions)


def test_event_rule_starts_runs_through_the_named_starter(synth: Synth) -> None:
    rules = synth.resources("AWS::Events::Rule")
    rule = rules[_logical_id(synth, synth.stack.event_triggers.rule)]["Properties"]
    assert rule["EventPattern"] == wf.REQUESTED_EVENT_PATTERN
    bus_id = _logical_id(synth, synth.stack.notifications.event_bus)
    assert rule["EventBusName"] == {"Ref": bus_id}
    (target,) = rule["Targets"]
    starter = synth.stack.lambda_functions.functions["StartFromEvent"]
    assert target["Arn"] == {"Fn::GetAtt": [_logical_id(synth, starter), "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 4


def test_functions_layer_tracing_and_environment(synth: Synth) -> None:
    for logical_id, fn in synth.stack.lambda_functions.functions.items():
        props = synth.template_json["Resources"][_logical_id(synth, fn)]["Properties"]
        assert props["Runtime"] == "python3.13"
        assert props["Handler"] == wf.LAMBDA_FUNCTIONS[logical_id].handler
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert len(props["Layers"]) == 1
        env = props["Environment"]["Variables"]
        assert set(wf.LAMBDA_FUNCTIONS[logical_id].environment) <= set(env)
        assert "BOSS_TOKEN" not in env
    validate = synth.template_json["Resources"][
        _logical_id(synth, synth.stack.lambda_functions.functions["ValidateRequest"])
    ]["Properties"]["Environment"]["Variables"]
    assert validate[wf.ENV_BOSS_TOKEN_SECRET] == {
        "Ref": _logical_id(synth, synth.stack.storage.boss_token)
    }
    assert validate[wf.ENV_DETECT_MEMORY_MIB] == str(synth.stack.settings.detect_job.memory_mib)


def test_log_groups_have_retention_and_topic_is_encrypted(synth: Synth) -> None:
    groups = synth.resources("AWS::Logs::LogGroup")
    assert len(groups) >= 7
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == synth.stack.settings.log_retention_days
    topic = synth.one("AWS::SNS::Topic")
    assert "alias/aws/sns" in json.dumps(topic["KmsMasterKeyId"])
    assert synth.resources("AWS::SNS::Subscription") == {}  # no email in cdk.json


def test_outputs_name_everything_the_cli_needs(synth: Synth) -> None:
    outputs = synth.template_json["Outputs"]
    for name in (
        wf.OUTPUT_STATE_MACHINE_ARN,
        wf.OUTPUT_RESULTS_BUCKET,
        wf.OUTPUT_TOKEN_SECRET_ARN,
        wf.OUTPUT_TOPIC_ARN,
        wf.OUTPUT_EVENT_BUS_NAME,
        wf.OUTPUT_JOB_QUEUE_ARN,
        wf.OUTPUT_LARGE_JOB_QUEUE_ARN,
    ):
        assert name in outputs, name
        assert outputs[name]["Description"]


def test_synth_is_environment_agnostic_and_offline(synth: Synth) -> None:
    assert synth.stack.account == "${Token[AWS.AccountId.0]}" or "Token" in synth.stack.account
    assert (
        not (REPO / "cdk.context.json").exists()
        or json.loads((REPO / "cdk.context.json").read_text()) == {}
    )
    assert "AWS::EC2::VPC" in {r["Type"] for r in synth.template_json["Resources"].values()}


def test_existing_vpc_and_email_from_context(tmp_path: Path) -> None:
    alt = Synth(
        {
            "notificationEmail": "ops@example.org",
            "existingVpc": {
                "vpcId": "vpc-0123456789abcdef0",
                "availabilityZones": ["us-east-1a", "us-east-1b"],
                "privateSubnetIds": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
            },
        },
        tmp_path,
    )
    kinds = {r["Type"] for r in alt.template_json["Resources"].values()}
    assert "AWS::EC2::VPC" not in kinds and "AWS::EC2::NatGateway" not in kinds
    subscription = alt.one("AWS::SNS::Subscription")
    assert subscription["Protocol"] == "email"
    assert subscription["Endpoint"] == "ops@example.org"
    for env in alt.resources("AWS::Batch::ComputeEnvironment").values():
        subnets = env["Properties"]["ComputeResources"]["Subnets"]
        assert subnets == ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]


# -- the image ----------------------------------------------------------------------------------


def test_image_asset_is_staged_with_only_the_needed_context(synth: Synth) -> None:
    assets = json.loads((synth.outdir / f"{synth.stack.artifact_id}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "batch_image/Dockerfile"
    assert image["source"].get("platform") == "linux/amd64"
    staged = synth.outdir / image["source"]["directory"]
    names = {p.name for p in staged.iterdir()}
    # the package ships the ASL and the handlers (pyproject maps their folders into it)
    assert {"pyproject.toml", "batch_image", "functions", "state_machines"} <= names
    assert not names & {"node_modules", "tests", "infra", ".git", "cdk.out", "benchmarks"}
    assert (staged / "batch_image" / "Dockerfile").is_file()
    assert (staged / "batch_image" / "synapse_pipelines" / "cli" / "__init__.py").is_file()


def test_dockerignore_matches_the_cdk_context_rules() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == IMAGE_CONTEXT_RULES


def test_dockerfile_is_slim_pinned_non_root_and_runs_the_cli() -> None:
    text = (REPO / "batch_image" / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))
    assert "latest" not in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # the entrypoint is the CLI (workflow.IMAGE_ENTRYPOINT); job commands are its arguments
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    assert entrypoint and tuple(json.loads(entrypoint.group(1))) == wf.IMAGE_ENTRYPOINT
    assert "--constraint /src/constraints.txt" in text
    assert "--only-binary=:all:" in text
    # numba kernels: compiled at build time into a baked cache the runtime user owns (numba
    # ignores a cache folder it cannot write), CPU-independent, checked as that user
    final = text.split("\nFROM ")[-1]
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", final)
    assert cache and "NUMBA_CPU_NAME=generic" in final
    warm = final.index("python /opt/warm_numba_cache.py \\")
    owner = users[-1].split(":")[0]
    assert final.index(f"chown -R {owner}:") > warm
    assert final.index(f"USER {users[-1]}") < final.index("python /opt/warm_numba_cache.py --check")
    assert "COPY batch_image/warm_numba_cache.py /opt/warm_numba_cache.py" in final


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = {}
    for line in (REPO / "batch_image" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in batch_image/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_cli_context_is_merged_over_cdk_json() -> None:
    """`cdk deploy -c synapse-pipelines='{...}'` replaces the context value; the app merges it
    over the cdk.json block, so unspecified keys keep their defaults."""
    defaults = cdk_json_context()[stack_settings.CONTEXT_KEY]
    app = cdk.App(context={stack_settings.CONTEXT_KEY: '{"notificationEmail": "me@example.org"}'})
    settings = stack_settings.settings_from_app_context(app.node, defaults)
    assert settings.notification_email == "me@example.org"
    assert settings.detect_job.memory_mib == defaults["detectJob"]["memoryMiB"]
    bad = cdk.App(context={stack_settings.CONTEXT_KEY: "{not json"})
    with pytest.raises(stack_settings.ConfigError, match="JSON object"):
        stack_settings.settings_from_app_context(bad.node, defaults)
