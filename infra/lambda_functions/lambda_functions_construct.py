"""The Lambda functions: one per ``synapse_pipelines.workflow.wiring.LAMBDA_FUNCTIONS`` entry.

Code: ``functions/<name>/app.py`` (tiny, one asset each) plus one shared layer holding the
project package and its Lambda dependencies, bundled without Docker and without network by
:class:`LocalPipBundling`, which runs ``infra.tooling.wheelhouse.bundle_layer`` (the
wheelhouse tooling). Docker is only the fallback CDK requires to be declared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_, aws_logs as logs
from constructs import Construct

from infra import REPO_ROOT
from infra.tooling.wheelhouse import LAMBDA_PYTHON_VERSION, bundle_layer
from synapse_pipelines.workflow import wiring as wf

#: The functions' and the layer's runtime: the Python the wheelhouse is filled for.
RUNTIME: lambda_.Runtime = getattr(
    lambda_.Runtime, f"PYTHON_{LAMBDA_PYTHON_VERSION.replace('.', '_')}"
)


@jsii.implements(cdk.ILocalBundling)
class LocalPipBundling:
    """CDK local bundling of the dependencies layer (no Docker)."""

    def try_bundle(self, output_dir: str, *, image: Any = None, **_options: Any) -> bool:
        bundle_layer(Path(output_dir))
        return True


class LambdaFunctions(Construct):
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
                str(REPO_ROOT / "batch_image" / "synapse_pipelines"),
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
