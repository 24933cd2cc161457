"""Loads the fused LM heads of TRL and verl by their kernel files alone.

Importing ``trl`` or ``verl`` whole pulls in accelerate, datasets, ray, omegaconf, ...; the GPU machine
has torch, triton and the wheels' files. So each loader finds the installed package's folder without
importing it (``importlib.util.find_spec`` of a top-level name runs no code) and executes only the
kernel modules, giving them the few names they import from elsewhere in their package:

- TRL 1.16 ``trl/kernels/chunked_logprob.py`` (``ChunkedLogProbFunction``): imports ``packaging`` and
  ``transformers.utils.is_triton_available`` (when transformers is absent, a stand-in for that one
  function, "is triton importable", is visible during the load only), and in its backward
  ``trl.trainer.utils.maybe_gather_lm_head_ctx`` (DeepSpeed ZeRO-3 only: a null context here).
- verl 0.9.1 ``verl/utils/kernel/{kernels,linear_cross_entropy}.py`` (``linear_cross_entropy``):
  imports four device helpers from ``verl.utils.device``, given here in CUDA terms.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TRL_VERSION = "1.16.0"
VERL_VERSION = "0.9.1"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{name}: expected an installed package (pip install --no-deps {name}), got none")
    return Path(next(iter(spec.submodule_search_locations)))


def _load_file(module_name: str, path: Path, package_path: Path | None = None) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(package_path)] if package_path else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"{module_name}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _package(name: str, path: list[str]) -> ModuleType:
    module = sys.modules.get(name)
    if module is None:
        module = ModuleType(name)
        module.__path__ = path  # type: ignore[attr-defined]
        sys.modules[name] = module
    return module


def load_trl_chunked_logprob() -> ModuleType:
    """TRL's ``trl.kernels.chunked_logprob`` module (``ChunkedLogProbFunction``), loaded by file path."""
    name = "trl.kernels.chunked_logprob"
    if name in sys.modules:
        return sys.modules[name]
    trl_dir = _package_dir("trl")
    stand_ins: list[str] = []
    if importlib.util.find_spec("transformers") is None:

        def is_triton_available() -> bool:
            return importlib.util.find_spec("triton") is not None

        utils = ModuleType("transformers.utils")
        utils.is_triton_available = is_triton_available  # type: ignore[attr-defined]
        sys.modules["transformers"] = _package("transformers", [])
        sys.modules["transformers.utils"] = utils
        stand_ins = ["transformers.utils", "transformers"]
    # The backward imports maybe_gather_lm_head_ctx from trl.trainer.utils (DeepSpeed ZeRO-3 gathering):
    # one GPU, no ZeRO-3, so it is a null context here.
    _package("trl", [str(trl_dir)])
    _package("trl.kernels", [str(trl_dir / "kernels")])
    _package("trl.trainer", [])
    trainer_utils = ModuleType("trl.trainer.utils")
    trainer_utils.maybe_gather_lm_head_ctx = lambda *params: contextlib.nullcontext()  # type: ignore[attr-defined]
    sys.modules.setdefault("trl.trainer.utils", trainer_utils)
    try:
        return _load_file(name, trl_dir / "kernels" / "chunked_logprob.py")
    finally:
        for stand_in in stand_ins:  # visible to the load only
            sys.modules.pop(stand_in, None)


def load_verl_linear_cross_entropy() -> ModuleType:
    """verl's ``verl.utils.kernel.linear_cross_entropy`` module, loaded with its ``kernels`` sibling."""
    name = "verl.utils.kernel.linear_cross_entropy"
    if name in sys.modules:
        return sys.modules[name]
    kernel_dir = _package_dir("verl") / "utils" / "kernel"
    import torch

    device = ModuleType("verl.utils.device")
    device.is_cuda_available = torch.cuda.is_available()  # type: ignore[attr-defined]
    device.get_device_name = lambda: "cuda"  # type: ignore[attr-defined]
    device.get_torch_device = lambda: torch.cuda  # type: ignore[attr-defined]
    device.get_device_capability = lambda device_id=0: (  # type: ignore[attr-defined]
        torch.cuda.get_device_capability(device_id) if torch.cuda.is_available() else (None, None)
    )
    _package("verl", [])
    _package("verl.utils", [])
    sys.modules.setdefault("verl.utils.device", device)
    _package("verl.utils.kernel", [str(kernel_dir)])
    _load_file("verl.utils.kernel.kernels", kernel_dir / "kernels.py")
    return _load_file(name, kernel_dir / "linear_cross_entropy.py")
