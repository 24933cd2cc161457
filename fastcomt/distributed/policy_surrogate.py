"""The clipped policy surrogate on per-token log-probs and entropies (for heads that produce those
themselves, such as the vocabulary-parallel one); the same definition as `linear_policy_loss`:
PPO-clip with clip-higher, truncated importance weights against the behaviour (rollout) log-probs,
k3 KL to a reference, entropy bonus, and the four aggregations (grpo, bnpo, dapo, dr_grpo)."""

from __future__ import annotations

import torch

from fastcomt.kernels.policy_token_loss import token_policy_loss

__all__ = ["policy_loss_from_logprobs"]

_LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")


def policy_loss_from_logprobs(
    logp: torch.Tensor,
    entropy: torch.Tensor,
    active: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    *,
    ref_logprobs: torch.Tensor | None = None,
    behaviour_logprobs: torch.Tensor | None = None,
    loss_type: str = "dapo",
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    beta: float = 0.0,
    tis_cap: float | None = None,
    entropy_coef: float = 0.0,
    temperature: float = 1.0,
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, metrics) from logp, entropy, active [B, T] and advantages [B] or [B, T]."""
    del temperature  # already applied to the logits that gave logp
    if loss_type not in _LOSS_TYPES:
        raise ValueError(f"loss_type: expected one of {list(_LOSS_TYPES)}, got {loss_type!r}")
    if beta > 0 and ref_logprobs is None:
        raise ValueError("ref_logprobs: expected a tensor when beta > 0, got None")
    if logp.dim() != 2:
        raise ValueError(f"logp: expected [B, T], got {list(logp.shape)}")
    b, t = logp.shape
    adv = advantages.float()
    adv = adv[:, None].expand(b, t) if adv.dim() == 1 else adv
    detached = logp.detach()
    old = detached if old_logprobs is None else torch.where(active, old_logprobs.float(), detached)
    adv = torch.where(active, adv, 0.0)
    tis = None
    if behaviour_logprobs is not None:
        behaviour = torch.where(active, behaviour_logprobs.float(), old)
        tis = torch.exp(old - behaviour)
        if tis_cap is not None:
            tis = tis.clamp(max=tis_cap)
    ref = None if ref_logprobs is None else torch.where(active, ref_logprobs.float(), detached)
    # the per-token math is the kernels' plain-torch reference, written once
    per_token = token_policy_loss(
        logp, old, adv, eps_low=eps_low, eps_high=eps_high, is_weights=tis, ref_logp=ref, beta=beta
    )
    if entropy_coef != 0:
        per_token = per_token - entropy_coef * entropy
    m = active.float()
    if loss_type == "grpo":
        loss = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
    elif loss_type in ("bnpo", "dapo"):
        loss = (per_token * m).sum() / m.sum().clamp(min=1)
    else:
        loss = (per_token * m).sum() / (b * (max_tokens if max_tokens is not None else t))
    with torch.no_grad():
        count = m.sum().clamp(min=1)
        ratio = torch.exp(detached - old)
        kl = None if ref is None else torch.exp(ref - detached) - (ref - detached) - 1
        metrics = {
            "clip_frac_low": (((ratio < 1 - eps_low) & (adv < 0)).float() * m).sum() / count,
            "clip_frac_high": (((ratio > 1 + eps_high) & (adv > 0)).float() * m).sum() / count,
            "kl": (kl * m).sum() / count if kl is not None else torch.zeros((), device=logp.device),
            "entropy": (entropy * m).sum() / count,
            "ratio": (ratio * m).sum() / count,
        }
    return loss, metrics
