"""The Lambda layer's local (Docker-free, offline) bundling really produces a working package.

The synth in test_infra.py skips bundling for speed; this builds the layer once with the
same function CDK's local bundler calls, from the wheelhouse ``./install.sh`` fills (for this
machine's Python, so the result can be imported here; pip runs with ``--no-index``), checks
the size budget, and imports and runs every handler in a fresh interpreter that sees only the
standard library, the layer, and boto3/botocore (which the Lambda runtime provides). A missing,
stale or incomplete wheelhouse fails with the ./install.sh hint, without touching the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.tooling.wheelhouse import (  # noqa: E402
    LAMBDA_REQUIREMENTS,
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    RUNTIME_PROVIDED,
    STAMP_NAME,
    WHEELHOUSE,
    WheelhouseError,
    build_requirements,
    bundle_layer,
)

PROBE = r"""
import json, sys, types
sys.path[:0] = [LAYER, RUNTIME]
from synapse_pipelines.workflow import wiring as wf
assert wf.__file__.startswith(LAYER), wf.__file__
for forbidden in ("scipy", "pandas", "moto", "sklearn"):
    try:
        __import__(forbidden)
    except ImportError:
        pass
    else:
        raise SystemExit(forbidden + " must not be in the layer")
ctx = types.SimpleNamespace(function_name="f", memory_limit_in_mb=512, aws_request_id="r",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
    get_remaining_time_in_millis=lambda: 1000)
import importlib.util
def load(name):
    # as Lambda does: /var/task/<module>.py imported as module "<module>", handler
    # "<module>.handler"; what it imports comes from the layer
    function = wf.LAMBDA_FUNCTIONS[name]
    module_name = function.handler.rpartition(".")[0]
    path = f"{FUNCTIONS}/{function.name}/{module_name}.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler
out = {name: load(name).__name__ for name in wf.LAMBDA_FUNCTIONS}
# DescribeFailure runs without AWS; ValidateRequest rejects a bad request before any call
out["describe"] = load("DescribeFailure")({"state": {}}, ctx)["error"]
try:
    load("ValidateRequest")({"request": {"collection": "c"}}, ctx)
except Exception as exc:
    out["validate_error"] = type(exc).__name__
print(json.dumps(out))
"""


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_missing_wheelhouse_fails_with_the_install_hint(tmp_path: Path) -> None:
    with pytest.raises(WheelhouseError, match=r"missing.*run \./install\.sh"):
        bundle_layer(tmp_path / "layer", wheelhouse=tmp_path / "nowhere")
    assert not (tmp_path / "layer").exists()


def test_stale_wheelhouse_fails_with_the_install_hint(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    stamp = {
        "requirements": ["numpy"],
        "build_requirements": list(build_requirements()),
        "targets": ["cp3.13-manylinux2014_x86_64+manylinux_2_28_x86_64"],
    }
    (wheelhouse / STAMP_NAME).write_text(json.dumps(stamp))
    with pytest.raises(WheelhouseError, match=r"out of date.*the layer needs.*run \./install\.sh"):
        bundle_layer(tmp_path / "layer", wheelhouse=wheelhouse)
    with pytest.raises(WheelhouseError, match=r"no wheels for cp3\.11-native"):
        bundle_layer(
            tmp_path / "layer", python_version="3.11", platforms=None, wheelhouse=wheelhouse
        )


def test_incomplete_wheelhouse_fails_offline_with_the_install_hint(tmp_path: Path) -> None:
    """The stamp agrees but wheels are gone: pip (``--no-index``) fails, no download."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheelhouse = tmp_path / "wheels"
    (wheelhouse / f"cp{version}-native").mkdir(parents=True)
    stamp = {
        "requirements": list(LAMBDA_REQUIREMENTS),
        "build_requirements": list(build_requirements()),
        "targets": [f"cp{version}-native"],
    }
    (wheelhouse / STAMP_NAME).write_text(json.dumps(stamp))
    with pytest.raises(WheelhouseError, match=r"probably incomplete.*run \./install\.sh") as err:
        bundle_layer(
            tmp_path / "layer", python_version=version, platforms=None, wheelhouse=wheelhouse
        )
    assert "No matching distribution" in str(err.value)


@pytest.mark.slow
def test_layer_bundles_offline_without_docker_and_every_handler_imports(tmp_path: Path) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:  # from the wheelhouse only (pip --no-index): no network
        layer = bundle_layer(
            tmp_path / "layer", python_version=version, platforms=None, wheelhouse=WHEELHOUSE
        )
    except WheelhouseError as exc:
        pytest.fail(str(exc))
    assert (layer / "synapse_pipelines" / "workflow" / "wiring.py").is_file()
    assert list(layer.glob("synapse_pipelines-*.dist-info/entry_points.txt"))
    assert not any((layer / name).exists() for name in RUNTIME_PROVIDED)
    size = _folder_bytes(layer)
    assert size < LAMBDA_UNZIPPED_LIMIT_BYTES * 0.8, f"layer is {size / 2**20:.0f} MiB"

    # what the Lambda runtime brings: boto3 and friends, nothing else from this environment
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in (*RUNTIME_PROVIDED, "jmespath", "dateutil", "urllib3", "six"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "Test",
        "RESULTS_BUCKET": "unused-bucket",
    }
    code = (
        f"LAYER = {str(layer)!r}\nRUNTIME = {str(runtime)!r}\n"
        f"FUNCTIONS = {str(REPO / 'functions')!r}\n" + PROBE
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["describe"] == "States.Unknown"
    assert probe["validate_error"] == "RequestValidationError"


@pytest.mark.slow
def test_image_dependencies_resolve_with_the_dockerfiles_pip_flags(tmp_path: Path) -> None:
    """No Docker here: resolve the image's pinned dependency set with the Dockerfile's own
    pip flags (wheels only, intern from source) for this interpreter, without installing."""
    text = (REPO / "batch_image" / "Dockerfile").read_text()
    line = next(x for x in text.splitlines() if "pip install --only-binary" in x)
    flags = [f for f in line.split() if f.startswith("--") and f != "--no-build-isolation"]
    assert "--only-binary=:all:" in flags and "--no-binary=intern" in flags
    assert re.search(r"--constraint /src/constraints.txt --requirement /src/requirements.txt", text)
    requirements = tmp_path / "requirements.txt"
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements.write_text("\n".join(deps) + "\n")
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--disable-pip-version-check", "--target", str(tmp_path / "target"), *flags,
            "--constraint", str(REPO / "batch_image" / "constraints.txt"),
            "--requirement", str(requirements),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    would = result.stdout.strip().splitlines()[-1]
    assert would.startswith("Would install") and "intern-1.4.2" in would


def _warm(cache: Path, *args: str, cpu: str | None = "generic") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(cache)
    if cpu:
        env["NUMBA_CPU_NAME"] = cpu
    script = REPO / "batch_image" / "warm_numba_cache.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_image_numba_cache_warm_up_is_reused_by_a_fresh_process(tmp_path: Path) -> None:
    """The Dockerfile's warm-up and its --check, as separate processes (no Docker here)."""
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    warm = _warm(cache)
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert re.search(r" 0 kernels loaded, [1-9]\d* compiled", warm.stdout), warm.stdout
    check = _warm(cache, "--check")
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]
    assert re.search(r" [1-9]\d* kernels loaded, 0 compiled", check.stdout), check.stdout
    assert str(cache) in check.stdout
    # the index is keyed by CPU: host-tuned code would miss a cache built elsewhere, which is
    # why the image sets NUMBA_CPU_NAME=generic; the check catches it
    host = _warm(cache, "--check", cpu=None)
    assert host.returncode == 1 and "was not used" in host.stderr, host.stdout
