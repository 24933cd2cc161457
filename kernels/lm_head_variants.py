"""The LM-head variants real models use, and their argument checks.

``logits = softcap * tanh(logit_scale * (h @ W.T + bias) / softcap) / temperature``: a bias on the
head (rare, but e.g. some Phi / GPT-J style heads carry one), a logit scale (Cohere's
``logit_scale``, Granite's ``1 / logits_scaling``, Falcon-H1's ``lm_head_multiplier``) and
Gemma's final-logit softcapping. The defaults (no bias, scale 1, no softcap) are the plain head.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class LMHeadVariant(NamedTuple):
    bias: torch.Tensor | None  # [V], the weight's dtype and device
    logit_scale: float
    softcap: float | None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_lm_head_variant(
    weight: torch.Tensor, bias: torch.Tensor | None, logit_scale: float, softcap: float | None
) -> LMHeadVariant:
    """Checks the bias against ``weight [V, H]`` and the two scalars; returns them normalised."""
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias: expected a torch.Tensor of shape [V] or None, got {type(bias).__name__}")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias: expected shape [{weight.shape[0]}] (weight's V), got {list(bias.shape)}")
        if bias.dtype != weight.dtype:
            raise ValueError(f"bias: expected weight's dtype {weight.dtype}, got {bias.dtype}")
        if bias.device != weight.device:
            raise ValueError(f"bias: expected weight's device {weight.device}, got {bias.device}")
    if not _is_number(logit_scale) or not math.isfinite(logit_scale) or logit_scale <= 0:
        raise ValueError(f"logit_scale: expected a positive finite number, got {logit_scale!r}")
    if softcap is not None and (not _is_number(softcap) or not math.isfinite(softcap) or softcap <= 0):
        raise ValueError(f"softcap: expected None or a positive finite number, got {softcap!r}")
    return LMHeadVariant(bias, float(logit_scale), None if softcap is None else float(softcap))


def apply_lm_head_variant(raw_logits: torch.Tensor, variant: LMHeadVariant, temperature: float) -> torch.Tensor:
    """Plain-torch ``raw logits (+ bias) -> tempered logits``, for the references."""
    x = raw_logits if variant.bias is None else raw_logits + variant.bias.to(raw_logits.dtype)
    y = x * variant.logit_scale
    if variant.softcap is not None:
        y = variant.softcap * torch.tanh(y / variant.softcap)
    return y / temperature


def with_bias_column(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """``h @ W.T + b`` as ``[h, 1] @ [W, b].T``: the bias becomes one more hidden column, so the fused
    kernels (and their dW) handle it without a bias path of their own; autograd splits the gradient
    of ``[W, b]`` back into dW and dbias. Costs one copy of the head and of ``hidden`` per call (LM-head
    biases are rare). Returns ``(hidden, weight)`` unchanged without a bias."""
    if bias is None:
        return hidden, weight
    ones = torch.ones(*hidden.shape[:-1], 1, dtype=hidden.dtype, device=hidden.device)
    return torch.cat([hidden, ones], dim=-1), torch.cat([weight, bias.to(weight.dtype)[:, None]], dim=1)
