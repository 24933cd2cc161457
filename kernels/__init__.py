"""Fused LM-head Triton kernels (installed as fastcomt.kernels).

Hidden states times the LM head, then a row-wise function of the logits, chunk by chunk over the
tokens so that ``[N, V]`` logits never exist:

- ``linear_logprobs``: target log-prob, entropy, max-prob (forward only);
- ``linear_logprobs_autograd``: target log-prob and entropy with autograd (logits recomputed in the
  backward), with an optional head bias, logit scale and final-logit softcapping;
- ``linear_cross_entropy``: the SFT loss, gradients computed in the forward pass;
- ``linear_policy_loss``: the clipped policy loss of PPO/GRPO-style RL (grpo, bnpo, dapo, dr_grpo),
  with k3 KL, truncated importance weights and an entropy bonus.

``reference_*`` are the plain-torch full-logits versions of the same functions; ``ccrl_rewards``
(the calibrated reward and group advantages) is loaded on first use. Tuning (chunk size,
vocabulary block, dW accumulation dtype, the sync-free path) goes through ``LMHeadConfig`` /
``lm_head_config``; ``raise_deferred_errors`` reports what the sync-free path found.
"""

if __name__ == "fastcomt.kernels":
    import os

    import torch

    if not torch.cuda.is_available():
        # Without a GPU, Triton can only run these kernels in its interpreter. The switch is read when
        # triton.language is first imported (fastcomt/__init__.py chooses it at the first `import triton`) and
        # when each kernel is defined, i.e. at import of lm_head_rows below.
        os.environ.setdefault("TRITON_INTERPRET", "1")
        import triton.language.standard as _tl_standard
        from triton.runtime.jit import JITFunction as _JITFunction

        if os.environ["TRITON_INTERPRET"] == "1" and isinstance(getattr(_tl_standard, "max", None), _JITFunction):
            raise ImportError(
                "fastcomt.kernels: this machine has no CUDA device, so the kernels need Triton's interpreter, "
                "but triton.language was imported before TRITON_INTERPRET=1 was set (by transformers, say); "
                "set TRITON_INTERPRET=1 in the environment, or import fastcomt before triton and transformers"
            )

    from .config import LMHeadConfig, get_lm_head_config, lm_head_config, set_lm_head_config  # noqa: E402
    from .deferred_checks import raise_deferred_errors  # noqa: E402
    from .linear_cross_entropy import linear_cross_entropy  # noqa: E402
    from .linear_logprobs import linear_logprobs  # noqa: E402
    from .linear_logprobs_autograd import linear_logprobs_autograd  # noqa: E402
    from .linear_policy_loss import linear_policy_loss  # noqa: E402
    from .logprobs_autograd_reference import reference_linear_logprobs_autograd  # noqa: E402
    from .reference import (  # noqa: E402
        reference_linear_cross_entropy,
        reference_linear_logprobs,
        reference_linear_policy_loss,
    )

    __all__ = [
        "LMHeadConfig",
        "get_lm_head_config",
        "linear_cross_entropy",
        "linear_logprobs",
        "linear_logprobs_autograd",
        "linear_policy_loss",
        "lm_head_config",
        "reference_linear_cross_entropy",
        "reference_linear_logprobs",
        "reference_linear_logprobs_autograd",
        "reference_linear_policy_loss",
        "set_lm_head_config",
        "raise_deferred_errors",
        "CCRLRewards",
        "ccrl_rewards",
        "ccrl_rewards_reference",
    ]

    # name -> submodule of the CCRL reward kernel and its reference
    _REWARD_EXPORTS = {
        "CCRLRewards": "rewards",
        "ccrl_rewards": "rewards",
        "ccrl_rewards_reference": "rewards_reference",
    }

    def __getattr__(name: str) -> object:
        # The reward kernel is resolved on first use, so the LM-head functions import on their own.
        module_name = _REWARD_EXPORTS.get(name)
        if module_name is None:
            raise AttributeError(f"module 'fastcomt.kernels' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
        globals()[name] = value
        return value
else:
    # Imported as a top-level ``kernels`` (the repo root is on sys.path, as under ``python -m pytest``
    # or ``bench/run.py``). That name belongs to PyPI's ``kernels`` package, which transformers probes
    # by importing it; registering our custom ops a second time under that name would corrupt the
    # ones ``fastcomt.kernels`` already registered. So stay inert, with a version transformers rejects.
    __version__ = "0.0.0"
