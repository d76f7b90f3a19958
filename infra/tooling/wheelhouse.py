"""The Lambda layer's local wheelhouse: filling it, checking it, and bundling the layer from it.

The layer (deployed by ``infra/lambda_functions/``) holds the project package and its Lambda
dependencies, and is bundled **without Docker and without network**:

- ``./install.sh`` fills the wheelhouse (:data:`WHEELHOUSE`, git-ignored) once with
  :func:`fill_wheelhouse` (``python -m infra.tooling.wheelhouse --fill-wheelhouse``):
  ``pip download --only-binary=:all: --platform ...`` of :data:`LAMBDA_REQUIREMENTS` for the
  manylinux platforms and Python of the Lambda runtime, and for this interpreter (the
  bundling test); requirements published only as source (intern) built into wheels with
  ``pip wheel --no-deps``; the project's build backend.
- ``cdk synth`` runs :func:`bundle_layer` (through the layer's local bundler), which installs
  with ``--no-index --find-links <wheelhouse>`` into the layer's ``python/`` folder, and the
  project itself (pure Python, with its entry points) with ``--no-deps``.

A missing or incomplete wheelhouse is a :class:`WheelhouseError` saying to run
``./install.sh``, never a silent download. This module is tooling: it imports no CDK, so
filling the wheelhouse needs neither Node nor the CDK libraries.

The science stack (scipy, pandas, the report) is not in the layer: the handlers import only
the request model, the BOSS client (intern, numpy) and boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from infra import REPO_ROOT

#: Python of the Lambda runtime: the newest the project supports (pyproject: <3.14). The
#: functions' CDK runtime is derived from it.
LAMBDA_PYTHON_VERSION = "3.13"
#: Wheel platforms the Lambda runtime (Amazon Linux 2023, glibc 2.34, x86_64) can load; recent
#: numpy releases ship manylinux_2_28 wheels only.
PLATFORMS: tuple[str, ...] = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")

_PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
#: What the handlers import: pyproject's ``lambda`` extra (boto3 comes with the runtime).
LAMBDA_REQUIREMENTS: tuple[str, ...] = tuple(
    _PYPROJECT["project"]["optional-dependencies"]["lambda"]
)

#: Pure-Python distributions published only as source: built into wheels first
#: (platform-independent), because the cross-platform install accepts wheels only. Their
#: versions come from the requirements (pyproject).
SDIST_ONLY_NAMES: frozenset[str] = frozenset({"intern"})
#: The distribution name at the start of a PEP 508 requirement (``packaging`` is not among
#: the CDK app's dependencies, and the layer's construct imports this module).
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: Packages the Lambda Python runtime provides; removed from the layer.
RUNTIME_PROVIDED: tuple[str, ...] = ("boto3", "botocore", "s3transfer")

#: Largest unzipped size of a function plus its layers that Lambda accepts.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024

#: The local wheelhouse ``./install.sh`` fills and the bundling installs from (git-ignored).
WHEELHOUSE = REPO_ROOT / ".cache" / "lambda-wheels"
#: What the wheelhouse was filled for (requirements, targets); bundling refuses a mismatch.
STAMP_NAME = "wheelhouse.json"
#: The command ``./install.sh`` runs to fill the wheelhouse (named in every error's fix).
FILL_COMMAND = "python -m infra.tooling.wheelhouse --fill-wheelhouse"
#: A wheel target: (Python "major.minor", manylinux platforms or None for this machine).
Target = tuple[str, tuple[str, ...] | None]
#: pip of this interpreter, quiet about its own version.
_PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check")


class WheelhouseError(RuntimeError):
    """The local wheelhouse cannot provide the layer; the message says to run ./install.sh."""


def local_target() -> Target:
    """This interpreter (the bundling test installs for it, to import the result)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}", None


def wheel_targets() -> tuple[Target, ...]:
    """Every target the wheelhouse serves: the Lambda runtime (synth) and this interpreter."""
    return (LAMBDA_PYTHON_VERSION, PLATFORMS), local_target()


def build_requirements() -> tuple[str, ...]:
    """The project's build backend (pyproject ``[build-system]``): installed offline too."""
    return tuple(_PYPROJECT["build-system"]["requires"])


def _distribution_name(requirement: str) -> str:
    match = _REQUIREMENT_NAME.match(requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(0).lower()


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
    sdists = [r for r in requirements if _distribution_name(r) in SDIST_ONLY_NAMES]
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
    fix = f"run ./install.sh (it runs `{FILL_COMMAND}`)"
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
    python_version: str = LAMBDA_PYTHON_VERSION,
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


def main(argv: list[str] | None = None) -> None:
    """``--fill-wheelhouse``: fill :data:`WHEELHOUSE` and report what it holds."""
    parser = argparse.ArgumentParser(prog="python -m infra.tooling.wheelhouse")
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
