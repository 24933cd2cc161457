"""The layer table of DESIGN.md, executable: every import goes down it (import-linter contracts in
pyproject.toml), the library never imports its recipes, and fastcomt.kernels imports only torch,
triton and the standard library."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    if LINT_IMPORTS is None:
        pytest.fail("lint-imports not found next to the interpreter: install the dev extra (import-linter)")
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_every_import_goes_down_the_layer_table():
    proc = _lint(ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_the_checker_catches_a_wrong_way_import(tmp_path):
    """Control: the same graph against the table turned upside down (eval below tasks) must fail,
    naming an import that goes the wrong way; so a passing check above means something."""
    config = tmp_path / "upside_down.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["fastcomt"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "upside down"\ntype = "layers"\n'
        'layers = ["fastcomt.tasks", "fastcomt.eval"]\n'
    )
    proc = _lint(config)
    assert proc.returncode != 0
    assert "fastcomt.eval" in proc.stdout and "BROKEN" in proc.stdout


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_kernels_import_only_torch_triton_and_the_stdlib():
    # kernels/ is installed as fastcomt.kernels from its own folder, outside the graph import-linter reads.
    allowed = {"torch", "triton"} | set(sys.stdlib_module_names)
    files = sorted((ROOT / "kernels").glob("*.py"))
    assert files
    wrong = {f.name: sorted(_imported_roots(f) - allowed) for f in files}
    assert not {name: roots for name, roots in wrong.items() if roots}
