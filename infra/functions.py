"""The Lambda functions: one per ``synapse_pipelines.workflow.wiring.LAMBDA_FUNCTIONS`` entry.

Code: ``functions/<name>/app.py`` (tiny, one asset each) plus one shared layer holding the
project package and its Lambda dependencies. The layer is bundled **without Docker and without
network**: ``./install.sh`` fills a local wheelhouse (:data:`WHEELHOUSE`, git-ignored) once with
:func:`fill_wheelhouse` (``python -m infra.functions --fill-wheelhouse``: ``pip download
--only-binary=:all: --platform ...`` of :data:`LAMBDA_REQUIREMENTS` for the manylinux platforms
and Python of the Lambda runtime, and for this interpreter (the bundling test); source-only
requirements (intern) built into wheels with ``pip wheel --no-deps``; the project's build
backend). :class:`LocalPipBundling` (``cdk synth``) then runs :func:`bundle_layer`, which installs
with ``--no-index --find-links <wheelhouse>`` into the layer's ``python/`` folder and the project
itself (pure Python, with its entry points) with ``--no-deps``. A missing or incomplete
wheelhouse is a :class:`WheelhouseError` saying to run ``./install.sh``, never a silent download.
Docker is only the fallback CDK requires to be declared.

The science stack (scipy, pandas, the report) is not in the layer: the handlers import only
the request model, the BOSS client (intern, numpy) and boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam, aws_lambda as lambda_, aws_logs as logs
from constructs import Construct

from infra import REPO_ROOT
from synapse_pipelines.workflow import wiring as wf

#: Lambda runtime: the newest Python the project supports (pyproject: <3.14).
RUNTIME = lambda_.Runtime.PYTHON_3_13
RUNTIME_PYTHON_VERSION = "3.13"
#: Wheel platforms the Lambda runtime (Amazon Linux 2023, glibc 2.34, x86_64) can load; recent
#: numpy releases ship manylinux_2_28 wheels only.
PLATFORMS: tuple[str, ...] = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")

_PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
#: What the handlers import: pyproject's ``lambda`` extra (boto3 comes with the runtime).
LAMBDA_REQUIREMENTS: tuple[str, ...] = tuple(
    _PYPROJECT["project"]["optional-dependencies"]["lambda"]
)

#: Pure-Python requirements published only as source distributions: built into wheels first
#: (platform-independent), because the cross-platform install accepts wheels only.
SDIST_ONLY: tuple[str, ...] = ("intern==1.4.2",)

#: Packages the Lambda Python runtime provides; removed from the layer.
RUNTIME_PROVIDED: tuple[str, ...] = ("boto3", "botocore", "s3transfer")

#: Largest unzipped size of a function plus its layers that Lambda accepts.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


#: The local wheelhouse ``./install.sh`` fills and the bundling installs from (git-ignored).
WHEELHOUSE = REPO_ROOT / ".cache" / "lambda-wheels"
#: What the wheelhouse was filled for (requirements, targets); bundling refuses a mismatch.
STAMP_NAME = "wheelhouse.json"
#: A wheel target: (Python "major.minor", manylinux platforms or None for this machine).
Target = tuple[str, tuple[str, ...] | None]
#: ``pip`` without network: only the wheelhouse is searched.
_PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check")


class WheelhouseError(RuntimeError):
    """The local wheelhouse cannot provide the layer; the message says to run ./install.sh."""


def local_target() -> Target:
    """This interpreter (the bundling test installs for it, to import the result)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}", None


def wheel_targets() -> tuple[Target, ...]:
    """Every target the wheelhouse serves: the Lambda runtime (synth) and this interpreter."""
    return (RUNTIME_PYTHON_VERSION, PLATFORMS), local_target()


def build_requirements() -> tuple[str, ...]:
    """The project's build backend (pyproject ``[build-system]``): installed offline too."""
    return tuple(_PYPROJECT["build-system"]["requires"])


def _target_key(target: Target) -> str:
    """The target's folder in the wheelhouse, e.g. ``cp3.13-manylinux2014_x86_64``."""
    python_version, platforms = target
    return f"cp{python_version}-" + ("+".join(platforms) if platforms else "native")


def _cross_flags(target: Target) -> list[str]:
    python_version, platforms = target
    if not platforms:  # this machine: pip's own tags (the stamp checks the version)
        return ["--only-binary=:all:"]
    flags = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for platform in platforms:
        flags += ["--platform", platform]
    return flags


def fill_wheelhouse(
    wheelhouse: Path = WHEELHOUSE,
    *,
    requirements: tuple[str, ...] = LAMBDA_REQUIREMENTS,
    targets: tuple[Target, ...] | None = None,
) -> Path:
    """Download every wheel the layer needs into ``wheelhouse`` (network: PyPI); return it.

    One folder per target, each resolved by pip for that Python and platform (so the offline
    install of a target sees exactly its own set); ``build/`` holds the project's build
    backend for this interpreter. Called by ``./install.sh``; re-running it reuses what is there.
    """
    wheelhouse = Path(wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    (wheelhouse / STAMP_NAME).unlink(missing_ok=True)  # incomplete until the end
    sdist_wheels = wheelhouse / "sdist"
    quiet = ["--quiet", "--find-links", str(sdist_wheels)]
    sdists = [r for r in requirements if r in SDIST_ONLY]
    if sdists:  # pure Python, built once: `pip download` copies it into every target folder
        subprocess.run(
            [*_PIP, "wheel", *quiet, "--no-deps", "--wheel-dir", str(sdist_wheels), *sdists],
            check=True,
        )
    targets = wheel_targets() if targets is None else targets
    for target in targets:
        dest = wheelhouse / _target_key(target)
        subprocess.run(
            [*_PIP, "download", *quiet, *_cross_flags(target), "--dest", str(dest),
             *requirements],
            check=True,
        )  # fmt: skip
    # the project's build backend, for this interpreter (pip builds the project offline)
    build = build_requirements()
    subprocess.run(
        [*_PIP, "download", "--quiet", "--only-binary=:all:", "--dest",
         str(wheelhouse / "build"), *build],
        check=True,
    )  # fmt: skip
    stamp = {
        "requirements": list(requirements),
        "build_requirements": list(build),
        "targets": [_target_key(t) for t in targets],
    }
    (wheelhouse / STAMP_NAME).write_text(json.dumps(stamp, indent=1) + "\n")
    return wheelhouse


def check_wheelhouse(wheelhouse: Path, requirements: tuple[str, ...], target: Target) -> None:
    """Raise :class:`WheelhouseError` unless ``wheelhouse`` was filled for this request."""
    fix = "run ./install.sh (it runs `python -m infra.functions --fill-wheelhouse`)"
    stamp_path = Path(wheelhouse) / STAMP_NAME
    if not stamp_path.is_file():
        raise WheelhouseError(
            f"The Lambda layer's wheelhouse {wheelhouse} is missing or was not completely "
            f"filled; bundling the layer works offline from it: {fix}."
        )
    stamp = json.loads(stamp_path.read_text())
    problems = []
    if stamp.get("requirements") != list(requirements):
        problems.append(
            f"it holds {stamp.get('requirements')}, the layer needs {list(requirements)}"
        )
    if _target_key(target) not in stamp.get("targets", []):
        problems.append(f"it has no wheels for {_target_key(target)} (only {stamp.get('targets')})")
    if stamp.get("build_requirements") != list(build_requirements()):
        problems.append("the project's build requirements changed")
    if problems:
        raise WheelhouseError(
            f"The Lambda layer's wheelhouse {wheelhouse} is out of date: "
            + "; ".join(problems)
            + f". Fix: {fix}."
        )


def _pip_offline(args: list[str], find_links: Path) -> None:
    command = [*_PIP, "install", "--quiet", "--no-warn-conflicts", "--no-index",
               "--find-links", str(find_links), *args]  # fmt: skip
    # pip settings from the environment or a pip.conf (find-links, index mirrors) would add
    # other sources: only the wheelhouse counts
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise WheelhouseError(
            f"Installing the Lambda layer from the wheelhouse {find_links} failed (no network "
            f"is used); it is probably incomplete. Fix: run ./install.sh. pip said:\n"
            + result.stderr[-2000:]
        )


def bundle_layer(
    output_dir: Path,
    *,
    python_version: str = RUNTIME_PYTHON_VERSION,
    platforms: tuple[str, ...] | None = PLATFORMS,
    requirements: tuple[str, ...] = LAMBDA_REQUIREMENTS,
    wheelhouse: Path = WHEELHOUSE,
) -> Path:
    """Build the layer content into ``output_dir/python`` from the wheelhouse; return that folder.

    ``platforms=None`` installs for this machine (the test that imports the bundle does that).
    Offline: raises :class:`WheelhouseError` when the wheelhouse lacks something.
    """
    target_spec: Target = (python_version, platforms)
    check_wheelhouse(wheelhouse, requirements, target_spec)
    target = Path(output_dir) / "python"
    target.mkdir(parents=True, exist_ok=True)
    flags = _cross_flags(target_spec)
    if platforms:
        # pip checks a local wheel's Requires-Python against *this* interpreter, not the
        # target's; the folder was resolved by pip for the target's Python, so skip that
        flags.append("--ignore-requires-python")
    target_wheels = Path(wheelhouse) / _target_key(target_spec)
    _pip_offline([*flags, "--target", str(target), *requirements], target_wheels)
    # the project itself: pure Python, installed with its metadata (pipeline entry points);
    # its build backend comes from the wheelhouse too
    build_wheels = Path(wheelhouse) / "build"
    _pip_offline(["--no-deps", "--target", str(target), str(REPO_ROOT)], build_wheels)
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

    def grant(self, logical_id: str, *statements: iam.PolicyStatement) -> None:
        for statement in statements:
            self.functions[logical_id].add_to_role_policy(statement)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.functions")
    parser.add_argument(
        "--fill-wheelhouse",
        action="store_true",
        help=f"download the Lambda layer's wheels into {WHEELHOUSE} (needs PyPI, synth not)",
    )
    args = parser.parse_args(argv)
    if not args.fill_wheelhouse:
        parser.error("nothing to do: pass --fill-wheelhouse")
    start = time.perf_counter()
    wheelhouse = fill_wheelhouse()
    wheels = list(wheelhouse.rglob("*.whl"))
    size = sum(p.stat().st_size for p in wheels)
    print(
        f"Lambda layer wheelhouse: {len(wheels)} wheels, {size / 2**20:.0f} MiB in {wheelhouse} "
        f"({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
