"""The Lambda layer every function shares: the project package and pyproject's ``lambda``
extra, bundled without Docker and without network.

CDK's local bundling calls :class:`LocalPipBundling`, which runs the wheelhouse tooling's
``bundle_layer`` (``infra/tooling/wheelhouse.py``: ``pip --no-index`` from the wheelhouse
``./install.sh`` fills). Docker is only the fallback CDK requires to be declared; it refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import REPO_ROOT
from infra.tooling.wheelhouse import LAMBDA_PYTHON_VERSION, bundle_layer

#: The functions' and the layer's runtime: the Python the wheelhouse is filled for.
RUNTIME: lambda_.Runtime = getattr(
    lambda_.Runtime, f"PYTHON_{LAMBDA_PYTHON_VERSION.replace('.', '_')}"
)
#: The wheelhouse holds x86_64 manylinux wheels (``wheelhouse.PLATFORMS``).
ARCHITECTURE = lambda_.Architecture.X86_64


@jsii.implements(cdk.ILocalBundling)
class LocalPipBundling:
    """CDK local bundling of the dependencies layer (no Docker)."""

    def try_bundle(self, output_dir: str, *, image: Any = None, **_options: Any) -> bool:
        bundle_layer(Path(output_dir))
        return True


def dependencies_layer(scope: Construct) -> lambda_.LayerVersion:
    """The layer, as ``scope``'s child ``Dependencies``."""
    return lambda_.LayerVersion(
        scope,
        "Dependencies",
        description="synapse-pipelines package + Lambda dependencies (pip, manylinux)",
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
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
