"""The Lambda functions: one per ``synapse_pipelines.workflow.LAMBDA_FUNCTIONS`` entry.

Code: ``functions/<name>/app.py`` (tiny, one asset each) plus one shared layer holding the
project package and its Lambda dependencies. The layer is bundled **without Docker**:
:class:`LocalPipBundling` runs ``pip install --only-binary=:all: --platform ...`` (the
manylinux platforms the Lambda runtime loads) for the runtime's Python into the layer's
``python/`` folder; source-only requirements (intern) are built into wheels first; the project
itself (pure Python, with its entry points) is installed with ``--no-deps``. Docker is only
the fallback CDK requires to be declared.

The science stack (scipy, pandas, the report) is not in the layer: the handlers import only
the request model, the BOSS client (intern, numpy) and boto3.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from synapse_pipelines import workflow as wf

#: Lambda runtime: the newest Python the project supports (pyproject: <3.14).
RUNTIME = lambda_.Runtime.PYTHON_3_13
RUNTIME_PYTHON_VERSION = "3.13"
#: Wheel platforms the Lambda runtime (Amazon Linux 2023, glibc 2.34, x86_64) can load; recent
#: numpy releases ship manylinux_2_28 wheels only.
PLATFORMS: tuple[str, ...] = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")

#: What the handlers import, pinned like pyproject.toml (boto3 comes with the runtime).
LAMBDA_REQUIREMENTS: tuple[str, ...] = (
    "pydantic>=2.7,<3",
    "aws-lambda-powertools[tracer]>=3.0,<4",
    "intern==1.4.2",
    "numpy>=2.0,<3",
    "blosc>=1.11,<2",
    "requests>=2.31,<3",
)

#: Pure-Python requirements published only as source distributions: built into wheels first
#: (platform-independent), because the cross-platform install accepts wheels only.
SDIST_ONLY: tuple[str, ...] = ("intern==1.4.2",)

#: Packages the Lambda Python runtime provides; removed from the layer.
RUNTIME_PROVIDED: tuple[str, ...] = ("boto3", "botocore", "s3transfer")

#: Largest unzipped size of a function plus its layers that Lambda accepts.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


def bundle_layer(
    output_dir: Path,
    *,
    python_version: str = RUNTIME_PYTHON_VERSION,
    platforms: tuple[str, ...] | None = PLATFORMS,
    requirements: tuple[str, ...] = LAMBDA_REQUIREMENTS,
) -> Path:
    """Build the layer content into ``output_dir/python``; return that folder.

    ``platforms=None`` installs for this machine (the test that imports the bundle does that).
    """
    target = Path(output_dir) / "python"
    target.mkdir(parents=True, exist_ok=True)
    pip = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        "--no-warn-conflicts",  # the target folder is checked against this environment: noise
    ]
    cross = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for platform in platforms or ():
        cross += ["--platform", platform]
    wheelhouse = Path(output_dir) / "wheelhouse"
    sdists = [r for r in requirements if r in SDIST_ONLY]
    if sdists:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--wheel-dir", str(wheelhouse), *sdists],
            check=True,
        )  # fmt: skip
        cross += ["--find-links", str(wheelhouse)]
    subprocess.run([*pip, *cross, "--target", str(target), *requirements], check=True)
    shutil.rmtree(wheelhouse, ignore_errors=True)
    # the project itself: pure Python, installed with its metadata (pipeline entry points)
    subprocess.run([*pip, "--no-deps", "--target", str(target), str(wf.REPO_ROOT)], check=True)
    # the runtime already has boto3/botocore (pulled in by the X-Ray SDK): ~80 MB saved;
    # byte code, scripts and build leftovers only cost space
    junk = [target / name for name in RUNTIME_PROVIDED] + [target / "bin"]
    junk += [*target.glob("*.egg-info"), *target.rglob("__pycache__")]
    junk += [p for name in RUNTIME_PROVIDED for p in target.glob(f"{name}-*.dist-info")]
    for path in junk:
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(Path(output_dir) / "build", ignore_errors=True)
    return target


@jsii.implements(cdk.ILocalBundling)
class LocalPipBundling:
    """CDK local bundling of the dependencies layer (no Docker)."""

    def try_bundle(self, output_dir: str, *, image: Any = None, **_options: Any) -> bool:
        bundle_layer(Path(output_dir))
        return True


class Functions(Construct):
    """The Lambda handlers, their dependencies layer and their log groups."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention: logs.RetentionDays,
        environment: dict[str, dict[str, str]],
    ) -> None:
        super().__init__(scope, construct_id)
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            description="synapse-pipelines package + Lambda dependencies (pip, manylinux)",
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            code=lambda_.Code.from_asset(
                str(wf.REPO_ROOT / "batch_image" / "synapse_pipelines"),
                # the bundle is built from the whole project; hash what comes out
                asset_hash_type=cdk.AssetHashType.OUTPUT,
                bundling=cdk.BundlingOptions(
                    image=RUNTIME.bundling_image,
                    local=LocalPipBundling(),
                    command=[
                        "bash",
                        "-c",
                        "echo 'Docker bundling is not supported: install Python and pip' && exit 1",
                    ],
                ),
            ),
        )
        self.functions: dict[str, lambda_.Function] = {}
        for logical_id, spec in wf.LAMBDA_FUNCTIONS.items():
            log_group = logs.LogGroup(
                self,
                f"{logical_id}Logs",
                retention=log_retention,
                removal_policy=cdk.RemovalPolicy.DESTROY,
            )
            env = {
                "POWERTOOLS_SERVICE_NAME": wf.POWERTOOLS_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": wf.METRICS_NAMESPACE,
                **environment.get(logical_id, {}),
            }
            missing = [name for name in spec.environment if name not in env]
            if missing:
                raise ValueError(f"{logical_id}: no value for environment {missing}")
            fn = lambda_.Function(
                self,
                logical_id,
                description=spec.description,
                runtime=RUNTIME,
                architecture=lambda_.Architecture.X86_64,
                handler=spec.handler,
                code=lambda_.Code.from_asset(str(spec.source_dir)),
                layers=[self.layer],
                timeout=cdk.Duration.seconds(spec.timeout_seconds),
                memory_size=spec.memory_mib,
                environment=env,
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
            )
            self.functions[logical_id] = fn

    def grant(self, logical_id: str, *statements: iam.PolicyStatement) -> None:
        for statement in statements:
            self.functions[logical_id].add_to_role_policy(statement)
