"""The eager PyTorch baseline: what a trainer writes without a fused head.

One bf16 GEMM gives the full [N, V] logits (tensor cores, as ``lm_head(hidden)`` does), they are cast
to float32 for the log-softmax, the targets' log-probs are gathered, and the clipped surrogate is
applied in plain torch. ``fastcomt.kernels``' references compute the same loss but run the GEMM itself
in float32; that is right for a ground truth and wrong for a speed baseline, so the benchmark times
these functions and keeps the references for the float32 ground truth (``bench/ground_truth.py``).
The same functions, wrapped in ``torch.compile``, are the compiled baseline, and ``policy_surrogate``
is the torch surrogate fed by cut-cross-entropy's per-token log-probs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")


@dataclass(frozen=True)
class PolicyConfig:
    """The policy-loss options every method is run with (token-level importance ratios, no KL)."""

    loss_type: str = "dapo"
    eps_low: float = 0.2
    eps_high: float = 0.28

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type: expected one of {LOSS_TYPES}, got {self.loss_type!r}")
        for name in ("eps_low", "eps_high"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def policy_surrogate(
    logp: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor,
    *,
    loss_type: str = "dapo",
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> torch.Tensor:
    """Clipped PPO surrogate on [B, T] log-probs with [B] advantages, reduced per ``loss_type``:
    grpo = mean over sequences of the per-sequence token mean, bnpo/dapo = mean over active tokens,
    dr_grpo = token sum over B*T (T stands for the maximum completion length)."""
    m = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logprobs.to(logp.dtype))
    adv = advantages.to(logp.dtype)[:, None]
    per_token = -torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv)
    if loss_type == "grpo":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
    if loss_type in ("bnpo", "dapo"):
        return (per_token * m).sum() / m.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        return (per_token * m).sum() / m.numel()
    raise ValueError(f"loss_type: expected one of {LOSS_TYPES}, got {loss_type!r}")


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    # float32, or the inputs' dtype when wider (float64 in the tests).
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _log_softmax(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # The GEMM stays in the inputs' dtype (bf16 tensor cores); only the softmax is float32.
    return F.log_softmax(_upcast(hidden @ weight.T), dim=-1)


def eager_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target log-prob, entropy and max-prob per token of [N, H] hidden; 0 where mask is False."""
    log_probs = _log_softmax(hidden, weight)
    probs = log_probs.exp()
    logp = log_probs.gather(-1, targets[:, None])[:, 0]
    entropy = -(probs * log_probs).sum(-1)
    maxprob = probs.amax(-1)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    return torch.where(mask, logp, zero), torch.where(mask, entropy, zero), torch.where(mask, maxprob, zero)


def eager_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over tokens whose target is not -100."""
    return F.cross_entropy(_upcast(hidden @ weight.T), targets, ignore_index=-100)


def eager_policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor,
    *,
    loss_type: str = "dapo",
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> torch.Tensor:
    """Clipped surrogate of [B, T, H] hidden states through full float32 log-softmax logits."""
    log_probs = _log_softmax(hidden, weight)
    logp = log_probs.gather(-1, targets[..., None])[..., 0]
    return policy_surrogate(
        logp, mask, advantages, old_logprobs, loss_type=loss_type, eps_low=eps_low, eps_high=eps_high
    )
