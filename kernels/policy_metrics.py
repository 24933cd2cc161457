"""Monitoring metrics of the clipped policy loss, from per-token tensors the fused pass already has.

They are cheap ``[N]`` torch ops on the log-probs and entropies the row kernel wrote, so they are
not part of the kernel; the reference computes the same numbers its own way from full logits.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def policy_metrics(
    logp: torch.Tensor,
    entropy: torch.Tensor,
    active: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    ref_logprobs: torch.Tensor | None,
    eps_low: float,
    eps_high: float,
) -> dict[str, torch.Tensor]:
    """Means over active tokens (0 when there are none) of: the clip being active on the low side
    (ratio < 1 - eps_low with a negative advantage) and on the high side (ratio > 1 + eps_high with a
    positive advantage), the k3 KL to the reference (0 without one), the entropy and the ratio."""
    weights = active.to(torch.float32)
    count = weights.sum().clamp(min=1)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(active, x, 0.0).to(torch.float32).sum() / count

    ratio = torch.ones_like(logp) if old_logprobs is None else torch.exp(logp - old_logprobs.to(torch.float32))
    low = (ratio < 1 - eps_low) & (advantages < 0)
    high = (ratio > 1 + eps_high) & (advantages > 0)
    if ref_logprobs is None:
        kl = torch.zeros((), dtype=torch.float32, device=logp.device)
    else:
        d = ref_logprobs.to(torch.float32) - logp
        kl = mean(torch.exp(d) - d - 1)
    return {
        "clip_frac_low": mean(low.to(torch.float32)),
        "clip_frac_high": mean(high.to(torch.float32)),
        "kl": kl,
        "entropy": mean(entropy),
        "ratio": mean(ratio),
    }
