"""Plain-torch reference of ``linear_logprobs_autograd``: full ``[N, V]`` logits, autograd by torch.

Computes in float32, or in the inputs' dtype when wider (float64 in the tests); shares only the
argument checks with the fused path.
"""

from __future__ import annotations

import torch

from .lm_head_variants import apply_lm_head_variant, check_lm_head_variant
from .validation import check_linear_inputs, check_mask, check_positive, check_targets_in_range


def reference_linear_logprobs_autograd(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    logit_scale: float = 1.0,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target log-prob and entropy, shaped like targets, 0 (and no gradient) on masked-out tokens."""
    layout = check_linear_inputs(hidden, weight, targets)
    temperature = check_positive(temperature, "temperature")
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)
    active = check_mask(mask, layout, hidden.device)
    check_targets_in_range(targets.reshape(-1), active, layout.vocab_size)
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    raw = hidden.reshape(-1, layout.hidden_size).to(dtype) @ weight.to(dtype).T
    log_probs = torch.log_softmax(apply_lm_head_variant(raw, variant, temperature), dim=-1)
    safe = torch.where(active, targets.reshape(-1).long(), 0)
    logp = log_probs.gather(1, safe[:, None])[:, 0]
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    zero = torch.zeros((), dtype=dtype, device=hidden.device)
    logp = torch.where(active, logp, zero).reshape(layout.batch_shape)
    entropy = torch.where(active, entropy, zero).reshape(layout.batch_shape)
    return logp, entropy
