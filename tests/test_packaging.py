"""Packaging: every package is shipped, and a built wheel runs the local workflow on its own.

The wheel test builds the project, installs it (no dependencies: those come from this test
environment, minus the editable install of the project itself) into a new virtual environment
and runs ``synapse-pipelines demo`` and ``run --local`` from a folder outside the checkout, so
nothing can be read from the source tree: the ASL and the Lambda handlers must come from the
installed package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _package_dirs() -> dict[str, Path]:
    """Every package the project has on disk, by its installed name."""
    tool = PYPROJECT["tool"]["setuptools"]
    found: dict[str, Path] = {}
    for name, folder in tool["package-dir"].items():
        root = REPO / folder
        if name == "":
            for init in sorted(root.rglob("__init__.py")):
                rel = init.parent.relative_to(root)
                found[".".join(rel.parts)] = init.parent
        else:
            for init in sorted(root.rglob("__init__.py")):
                rel = init.parent.relative_to(root)
                found[".".join((name, *rel.parts))] = init.parent
    return found


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = set(_package_dirs())
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - on_disk == set(), "listed packages with no folder"


def test_the_batch_image_installs_only_the_core_dependencies() -> None:
    """The image installs ``[project] dependencies``: nothing of the local runtime (moto,
    flask, waitress), the Lambda layer (powertools) or the CDK app."""
    core = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    for name in ("moto", "flask", "waitress", "aws-lambda-powertools", "aws-cdk", "pytest"):
        assert name not in core, name
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "moto[server" in " ".join(extras["local"]), "the local runtime needs moto's server"
    assert "aws-lambda-powertools[tracer]" in " ".join(extras["lambda"])
    dev = " ".join(extras["dev"])
    assert "synapse-pipelines[local,infra]" in dev


def _dependency_dirs(venv: Path) -> Path:
    """A folder of links to this environment's site-packages, without the project itself.

    The new venv reads its dependencies from there (through a ``.pth`` that makes it a site
    directory); leaving the editable install's finder and metadata out means the only
    ``synapse_pipelines`` the new venv can import is the wheel's.
    """
    links = venv / "deps"
    links.mkdir()
    sources = {
        Path(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
    }
    for source in sorted(sources):
        for entry in source.iterdir():
            name = entry.name.lower()
            if "synapse_pipelines" in name or name.startswith("__editable__"):
                continue
            target = links / entry.name
            if not target.exists():
                target.symlink_to(entry)
    return links


def _make_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", where], check=True, capture_output=True, text=True
    ).stdout.strip()
    deps = _dependency_dirs(venv)
    (Path(purelib) / "_test_dependencies.pth").write_text(
        f"import site; site.addsitedir({str(deps)!r})\n"
    )
    # pip --python: installs into the new venv (pip --prefix would first uninstall the
    # project from the running environment)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python",
         str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # build from a copy of what the wheel is made of (setuptools writes build/ and egg-info
    # next to the sources): pyproject.toml maps these folders into the package
    source = tmp / "source"
    for name in ("pyproject.toml", "README.md", "functions", "state_machines"):
        _copy(REPO / name, source / name)
    _copy(REPO / "batch_image" / "synapse_pipelines", source / "batch_image" / "synapse_pipelines")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps",
         "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("synapse_pipelines-*.whl")
    return _make_venv(tmp, wheel)


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("BOSS_TOKEN", None)
    return env


@pytest.mark.slow
def test_the_wheel_ships_the_asl_and_the_handlers(wheel_venv: Path, tmp_path: Path) -> None:
    probe = (
        "import json, synapse_pipelines, synapse_pipelines.workflow.wiring as wf\n"
        "h = wf.load_handler('ValidateRequest')\n"
        "print(json.dumps({'package': synapse_pipelines.__file__, 'asl': str(wf.ASL_PATH),\n"
        "  'states': len(json.loads(wf.ASL_PATH.read_text())['States']),\n"
        "  'handler': h.__module__}))\n"
    )
    out = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", probe],
        capture_output=True, text=True, cwd=tmp_path, env=_env(wheel_venv), timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("package", "asl"):
        assert str(wheel_venv) in found[key] and str(REPO) not in found[key], found
    assert found["states"] > 10
    assert found["handler"] == "synapse_pipelines.functions.validate_request.validate_request"


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_and_run_local(wheel_venv: Path, tmp_path: Path) -> None:
    env = _env(wheel_venv)
    cli = str(wheel_venv / "bin" / "synapse-pipelines")
    demo = subprocess.run(
        [cli, "demo", "--shape", "6,128,128", "--out", str(tmp_path / "demo")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "SUCCEEDED" in demo.stdout
    assert list((tmp_path / "demo").glob("*/manifest.json"))

    # run --local against a local BOSS served and loaded by the installed CLI
    data = tmp_path / "boss"
    server = subprocess.Popen(
        [cli, "boss", "serve", "--data-dir", str(data), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = server.stderr.readline() if server.stderr else ""
            match = re.search(r"at (http://\S+)", line)
            url = match.group(1) if match else None
            assert server.poll() is None, "the local BOSS exited"
        assert url, "the local BOSS never said where it serves"
        host = url.split("://", 1)[1].rstrip("/")
        env["BOSS_TOKEN"] = (data / "token").read_text().strip()
        load = subprocess.run(
            [cli, "boss", "load", "--collection", "c", "--experiment", "e",
             "--synthetic", "6,128,128", "--host", host, "--protocol", "http"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
        )  # fmt: skip
        assert load.returncode == 0, load.stderr[-3000:]
        request = tmp_path / "request.json"
        request.write_text(
            json.dumps(
                {"boss_host": host, "boss_protocol": "http", "collection": "c",
                 "experiment": "e", "z_range": "0,6", "y_range": "0,128", "x_range": "0,128"}
            )
        )  # fmt: skip
        run = subprocess.run(
            [cli, "run", str(request), "--local", "--out", str(tmp_path / "run")],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "SUCCEEDED" in run.stdout
        assert list((tmp_path / "run").glob("*/manifest.json"))
        assert env["BOSS_TOKEN"] not in run.stdout + run.stderr
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_a_command_whose_extra_is_missing_says_which_to_install(tmp_path: Path) -> None:
    """The Batch image has no [local] extra: `demo` there says so instead of a traceback."""
    code = (
        "import sys\n"
        "sys.modules['moto'] = None  # as if the [local] extra were not installed\n"
        "sys.argv = ['synapse-pipelines', 'demo', '--shape', '2,16,16']\n"
        "from synapse_pipelines.cli import main\n"
        "main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert "pip install 'synapse-pipelines[local]'" in " ".join(out.stderr.split())
