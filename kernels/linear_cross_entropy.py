"""``linear_cross_entropy``: the SFT loss of an LM head without materialising ``[N, V]`` logits."""

from __future__ import annotations

import torch

from .config import LMHeadConfig, resolve_launch
from .fused_lm_head import fused_lm_head_op, linear_ce_tokens_op
from .lm_head_rows import EPILOGUE_CE
from .lm_head_variants import check_lm_head_variant, with_bias_column
from .validation import check_linear_inputs, check_positive, check_reduction


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    temperature: float = 1.0,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    config: LMHeadConfig | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T / temperature`` against ``targets``, with autograd to hidden
    and weight.

    reduction: "mean" over non-ignored tokens (0 with zero gradients when all are ignored), "sum",
    or "none" (fp32, shaped like targets, 0 at ignored tokens). For "mean"/"sum" the gradients are
    computed during forward (3 GEMMs in all); "none" computes losses in forward and the gradient in
    backward, where the per-token upstream gradient is known (4 GEMMs). An LM-head ``bias`` [V],
    ``logit_scale`` and final-logit ``softcap`` give the logits
    ``softcap * tanh(logit_scale * (hidden @ weight.T + bias) / softcap) / temperature``.
    """
    layout = check_linear_inputs(hidden, weight, targets)
    check_reduction(reduction)
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise ValueError(f"ignore_index: expected an int, got {ignore_index!r}")
    temperature = check_positive(temperature, "temperature")
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)
    grad_on = torch.is_grad_enabled()
    need_dh = grad_on and hidden.requires_grad
    flat_hidden, weight = with_bias_column(hidden.reshape(layout.num_rows, layout.hidden_size), weight, variant.bias)
    need_dw = grad_on and weight.requires_grad
    launch = resolve_launch(config, layout.vocab_size, hidden.dtype, hidden.device)
    head = {"logit_scale": variant.logit_scale, "softcap": variant.softcap or 0.0}
    flat_targets = targets.reshape(-1)
    active = flat_targets != ignore_index

    if reduction == "none":
        losses = linear_ce_tokens_op(
            hidden=flat_hidden,
            weight=weight,
            targets=flat_targets,
            active=active,
            **launch._asdict(),
            temperature=temperature,
            need_dh=need_dh,
            need_dw=need_dw,
            **head,
        )
        return losses.reshape(layout.batch_shape)

    loss_sum, _, _, _ = fused_lm_head_op(
        hidden=flat_hidden,
        weight=weight,
        targets=flat_targets,
        active=active,
        **launch._asdict(),
        epilogue=EPILOGUE_CE,
        need_dh=need_dh,
        need_dw=need_dw,
        temperature=temperature,
        **head,
    )
    if reduction == "sum":
        return loss_sum
    # Dividing outside the op lets autograd carry the 1/n into the saved gradients' scale.
    return loss_sum / active.sum().clamp(min=1)
