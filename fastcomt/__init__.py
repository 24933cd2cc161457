"""fastcomt: CoMT supervised fine-tuning and CCRL reinforcement learning on fused LM-head kernels."""

import os as _os

__version__ = "0.1.0"

# Triton reads TRITON_INTERPRET when triton.language is first imported (its own tl.max/tl.sum are
# jit functions defined then), so on a machine without a GPU it must be set before anything imports
# triton, e.g. transformers. The check is stdlib-only (device nodes of the NVIDIA and AMD drivers) so
# `import fastcomt.tasks` stays free of torch.
if not any(_os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/kfd", "/proc/driver/nvidia")):
    _os.environ.setdefault("TRITON_INTERPRET", "1")

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
