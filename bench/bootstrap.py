"""Makes the harness run from a bare source tree: the GPU machines have no package registry, so
fastcomt may not be installed there. Nothing here imports torch or triton: the Triton interpreter
switch must be set before any ``@triton.jit`` function is defined, which happens when the kernels
(or Liger, or cut-cross-entropy) are first imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
KERNELS_DIR = REPO_ROOT / "kernels"
KERNELS_MODULE = "fastcomt.kernels"


def ensure_repo_on_path() -> None:
    """Puts the repository root first on sys.path so ``fastcomt`` and ``bench`` import from this tree."""
    root = str(REPO_ROOT)
    bench_dir = str(REPO_ROOT / "bench")
    # `python bench/run.py` puts bench/ itself first; drop it so no module here shadows a top-level name.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != bench_dir]
    if root not in sys.path:
        sys.path.insert(0, root)


def add_site_dirs(dirs: list[str]) -> None:
    """Appends extra site folders (e.g. peers installed with ``pip --target``) *after* site-packages,
    so a torch that slipped into such a folder can never shadow the machine's own torch."""
    for d in dirs:
        if not os.path.isdir(d):
            raise ValueError(f"--site-dir: expected an existing folder, got {d!r}")
        if d not in sys.path:
            sys.path.append(d)


def use_triton_interpreter(device: str) -> None:
    """On CPU the kernels (and peers' Triton kernels) can only run under Triton's interpreter."""
    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"


def import_kernels() -> tuple[ModuleType, str]:
    """Returns ``fastcomt.kernels`` and where it came from ("installed package" or "source folder").

    When fastcomt is not installed, ``fastcomt`` still imports from the repository root, but its
    ``kernels`` subpackage lives in the top-level ``kernels/`` folder (the install maps it there), so
    the folder is registered under that name by hand; its relative imports then resolve normally.
    """
    ensure_repo_on_path()
    try:
        return importlib.import_module(KERNELS_MODULE), "installed package"
    except ImportError:
        pass
    sys.modules.pop(KERNELS_MODULE, None)
    import fastcomt  # noqa: F401  (the parent package must exist before a child is registered)

    spec = importlib.util.spec_from_file_location(
        KERNELS_MODULE, KERNELS_DIR / "__init__.py", submodule_search_locations=[str(KERNELS_DIR)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {KERNELS_MODULE} from {KERNELS_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[KERNELS_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(KERNELS_MODULE, None)
        raise
    sys.modules["fastcomt"].kernels = module  # type: ignore[attr-defined]
    return module, "source folder"
