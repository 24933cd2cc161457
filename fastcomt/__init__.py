"""fastcomt: CoMT supervised fine-tuning and CCRL reinforcement learning on fused LM-head kernels."""

__version__ = "0.1.0"

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
