"""The tree shows the architecture: layers, no cycles, unique names, small modules.

The import contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are checked
by import-linter, which builds the import graph with grimp (imports made inside functions
count too). ``lint-imports`` from the repository root prints the same report.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "batch_image" / "synapse_pipelines"
#: Python code of the project that is not tests or benchmarks.
SOURCE_TREES = (PACKAGE, REPO / "functions", REPO / "infra")
#: "Modules stay under about 500 lines": the hard limit leaves room for a docstring.
MAX_MODULE_LINES = 560


def _modules() -> list[Path]:
    return sorted(
        path
        for tree in SOURCE_TREES
        for path in tree.rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_import_contracts_hold() -> None:
    """Layers run one way, no cycles, core numpy-free, the image and the layer stay lean."""
    env = dict(os.environ, PYTHONPATH=str(REPO))  # functions/ is analysed as a root package
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "Contracts: 7 kept, 0 broken." in " ".join(done.stdout.split()), done.stdout


def test_no_two_modules_share_a_name() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        if path.name != "__init__.py":
            by_name[path.name].append(str(path.relative_to(REPO)))
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert shared == {}


def test_modules_stay_small() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these modules (limit {MAX_MODULE_LINES} lines)"


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _function_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements inside a function or class body (not module-level blocks)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking_block(child):
                continue
            inner = nested or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            )
            if inner and isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            visit(child, inner)

    visit(tree, False)
    return found


def test_imports_inside_functions_say_why() -> None:
    """Imports sit at module top; one inside a function carries a comment saying why (on its
    line or the line above, e.g. the Batch image lacks the extra it needs)."""
    undocumented = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for node in _function_level_imports(ast.parse("\n".join(lines))):
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if "#" not in here and not above.startswith("#"):
                undocumented.append(f"{path.relative_to(REPO)}:{node.lineno}: {here.strip()}")
    assert undocumented == []
