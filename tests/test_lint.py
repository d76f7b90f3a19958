"""The code base stays ruff clean (lint rules and formatting from pyproject.toml), the Python
examples in docs/ included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON_TREES = ["batch_image", "functions", "infra", "tests", "benchmarks", "docs"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_clean(command: list[str]) -> None:
    ruff = shutil.which("ruff")
    assert ruff, "ruff is not installed: run ./install.sh"
    trees = [tree for tree in PYTHON_TREES if (REPO / tree).is_dir()]
    done = subprocess.run(
        [ruff, *command, *trees], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
