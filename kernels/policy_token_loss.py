"""The per-token clipped policy loss on log-probs, in plain torch (autograd by torch).

This is the token-level math of the ``policy`` epilogue written out once for callers that already
hold per-token log-probs (verl's policy-loss hook, custom loops) and as the reference the fused
kernel's options are tested against. Every option is one of the peers' semantics:

- clip-higher (``eps_low``, ``eps_high``): ``max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))``;
- ``delta`` (TRL's two-sided clip): the unclipped ratio is capped at ``delta`` first;
- ``clip_ratio_c`` (verl's dual clip, Ye et al. 2020): for ``A < 0`` the loss is capped at ``-A c``;
- ``is_weights``: a detached per-token weight on the surrogate (TRL's/verl's rollout importance
  sampling ratio, already truncated or masked by the caller);
- ``beta`` k3 KL to the reference, ``exp(ref - logp) - (ref - logp) - 1``; with
  ``bias_corrected_kl`` (TRL's default) multiplied by the ratio ``r`` (with its gradient);
- ``log_ratio_bound``: verl clamps ``logp - old`` to ``[-20, 20]`` before the exponential.
"""

from __future__ import annotations

import torch


def token_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    delta: float | None = None,
    clip_ratio_c: float | None = None,
    is_weights: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    bias_corrected_kl: bool = False,
    log_ratio_bound: float | None = None,
) -> torch.Tensor:
    """Per-token loss, broadcast shape of the inputs (e.g. [B, T]); no masking or aggregation."""
    log_ratio = logp - old_logp
    if log_ratio_bound is not None:
        log_ratio = torch.clamp(log_ratio, min=-log_ratio_bound, max=log_ratio_bound)
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    unclipped = ratio if delta is None else torch.clamp(ratio, max=delta)
    loss = torch.maximum(-advantages * unclipped, -advantages * clipped)
    if clip_ratio_c is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * clip_ratio_c), loss)
    if is_weights is not None:
        loss = loss * is_weights.detach()
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("ref_logp: expected the reference log-probs when beta != 0, got None")
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1
        if bias_corrected_kl:
            kl = kl * ratio
        loss = loss + beta * kl
    return loss
