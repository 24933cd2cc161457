"""fastcomt: CoMT supervised fine-tuning and CCRL reinforcement learning on fused LM-head kernels."""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _choose_triton_mode() -> None:
    """Triton's interpreter only where torch sees no CUDA device, never on a GPU.

    Triton reads TRITON_INTERPRET when triton.language is first imported (its own tl.max/tl.sum are
    jit functions defined then), so the choice is made just before the first `import triton` (by us,
    transformers or anyone), from torch's own CUDA check: no device-node guess. An explicit
    TRITON_INTERPRET in the environment wins; the kernels check at each launch that the mode fits the
    tensors (fastcomt/kernels/triton_mode.py)."""
    if "TRITON_INTERPRET" in _os.environ:
        return
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # no torch (or torch mid-import): nothing can launch a kernel yet
        return
    if not cuda:
        _os.environ["TRITON_INTERPRET"] = "1"


class _BeforeTritonImport:
    """A meta-path finder that makes the choice at the first `import triton`, then steps aside; it
    finds nothing itself, so the import proceeds as usual. `import fastcomt` stays stdlib-only."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "triton":
            if self in _sys.meta_path:
                _sys.meta_path.remove(self)
            _choose_triton_mode()
        return None


if "triton" not in _sys.modules and not any(isinstance(f, _BeforeTritonImport) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _BeforeTritonImport())

# The loss modules pull in torch and Triton; resolving them lazily keeps `import fastcomt.tasks`
# (stdlib only) free of both.
_LAZY_EXPORTS = {
    "FusedPolicyLoss": "fastcomt.losses",
    "FusedLinearCrossEntropy": "fastcomt.losses",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> object:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fastcomt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
