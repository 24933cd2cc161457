"""``linear_logprobs``: per-token log-prob, entropy and max-prob from hidden states, no ``[N, V]`` logits.

Forward only (rollout scoring, old/reference log-probs, confidence for the calibrated reward).
"""

from __future__ import annotations

import torch

from .config import LMHeadConfig, resolve_launch
from .fused_lm_head import fused_lm_head_op
from .lm_head_rows import EPILOGUE_SCORE, STAT_ENTROPY, STAT_LOGP, STAT_MAXPROB
from .lm_head_variants import check_lm_head_variant, with_bias_column
from .validation import check_linear_inputs, check_mask, check_positive


@torch.no_grad()
def linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    config: LMHeadConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log p(target), entropy and max-prob of ``softmax(hidden @ weight.T / temperature)``; with an
    LM-head ``bias`` [V], ``logit_scale`` and final-logit ``softcap`` the logits are
    ``softcap * tanh(logit_scale * (hidden @ weight.T + bias) / softcap) / temperature``.

    hidden [B, T, H] or [N, H]; weight [V, H]; targets (and mask) [B, T] or [N]. Returns three fp32
    tensors shaped like targets; tokens where ``mask`` is 0 skip the GEMM and read 0. No autograd.
    """
    layout = check_linear_inputs(hidden, weight, targets)
    temperature = check_positive(temperature, "temperature")
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)
    active = check_mask(mask, layout, hidden.device)
    launch = resolve_launch(config, layout.vocab_size, hidden.dtype, hidden.device)
    flat_hidden, weight = with_bias_column(
        hidden.detach().reshape(layout.num_rows, layout.hidden_size), weight.detach(), variant.bias
    )
    _, stats, _, _ = fused_lm_head_op(
        hidden=flat_hidden,
        weight=weight,
        targets=targets.reshape(-1),
        active=active,
        **launch._asdict(),
        epilogue=EPILOGUE_SCORE,
        temperature=temperature,
        logit_scale=variant.logit_scale,
        softcap=variant.softcap or 0.0,
    )
    shape = layout.batch_shape
    return stats[STAT_LOGP].reshape(shape), stats[STAT_ENTROPY].reshape(shape), stats[STAT_MAXPROB].reshape(shape)
