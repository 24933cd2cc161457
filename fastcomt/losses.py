"""``nn.Module`` wrappers of the fused LM-head losses, to drop into TRL, verl or a hand-written loop.

Both take the hidden states before the LM head and the head's weight instead of logits, so the
model's forward must stop before ``lm_head`` (e.g. ``model.model(...)`` on a Hugging Face causal LM)
and pass ``model.lm_head.weight``.
"""

from __future__ import annotations

import torch
from torch import nn

from fastcomt.kernels import LMHeadConfig, linear_cross_entropy, linear_policy_loss
from fastcomt.kernels.validation import check_policy_settings, check_positive, check_reduction


class FusedPolicyLoss(nn.Module):
    """Clipped policy loss (grpo / bnpo / dapo / dr_grpo) on the fused LM head.

    ``forward(hidden, lm_head_weight, targets, mask, advantages, old_logprobs, ref_logprobs=None,
    behaviour_logprobs=None) -> (loss, metrics)``; see ``fastcomt.kernels.linear_policy_loss``.
    """

    def __init__(
        self,
        loss_type: str = "dapo",
        eps_low: float = 0.2,
        eps_high: float = 0.28,
        beta: float = 0.0,
        tis_cap: float | None = None,
        entropy_coef: float = 0.0,
        temperature: float = 1.0,
        max_tokens: int | None = None,
        config: LMHeadConfig | None = None,
    ) -> None:
        super().__init__()
        # The same checks as every call's, made once here so a bad setting fails at construction.
        check_policy_settings(
            loss_type=loss_type,
            eps_low=eps_low,
            eps_high=eps_high,
            beta=beta,
            tis_cap=tis_cap,
            entropy_coef=entropy_coef,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        self.loss_type = loss_type
        self.eps_low = eps_low
        self.eps_high = eps_high
        self.beta = beta
        self.tis_cap = tis_cap
        self.entropy_coef = entropy_coef
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.config = config

    def forward(
        self,
        hidden: torch.Tensor,
        lm_head_weight: torch.Tensor,
        targets: torch.Tensor,
        mask: torch.Tensor,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None = None,
        behaviour_logprobs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return linear_policy_loss(
            hidden,
            lm_head_weight,
            targets,
            mask,
            advantages,
            old_logprobs,
            ref_logprobs=ref_logprobs,
            behaviour_logprobs=behaviour_logprobs,
            loss_type=self.loss_type,
            eps_low=self.eps_low,
            eps_high=self.eps_high,
            beta=self.beta,
            tis_cap=self.tis_cap,
            entropy_coef=self.entropy_coef,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            config=self.config,
        )

    def extra_repr(self) -> str:
        return (
            f"loss_type={self.loss_type!r}, eps_low={self.eps_low}, eps_high={self.eps_high}, beta={self.beta}, "
            f"tis_cap={self.tis_cap}, entropy_coef={self.entropy_coef}, temperature={self.temperature}"
        )


class FusedLinearCrossEntropy(nn.Module):
    """SFT cross-entropy on the fused LM head: ``forward(hidden, lm_head_weight, targets) -> loss``."""

    def __init__(
        self,
        ignore_index: int = -100,
        reduction: str = "mean",
        temperature: float = 1.0,
        config: LMHeadConfig | None = None,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        check_positive(temperature, "temperature")
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.temperature = temperature
        self.config = config

    def forward(self, hidden: torch.Tensor, lm_head_weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(
            hidden,
            lm_head_weight,
            targets,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            temperature=self.temperature,
            config=self.config,
        )

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, temperature={self.temperature}"
