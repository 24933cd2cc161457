"""Checks of the peers' policy-loss options (TRL's ``delta``, bias-corrected KL and importance-sampling
ratio; verl's dual clip ``clip_ratio_c``), shared by the fused policy loss and its reference."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .validation import TokenLayout, check_token_values


class PeerSemantics(NamedTuple):
    is_weights: torch.Tensor | None  # flat [N] float, detached weights on the surrogate
    delta: float | None
    clip_ratio_c: float | None
    bias_corrected_kl: bool


def check_peer_semantics(
    layout: TokenLayout,
    device: torch.device,
    *,
    is_weights: torch.Tensor | None,
    delta: float | None,
    clip_ratio_c: float | None,
    bias_corrected_kl: bool,
) -> PeerSemantics:
    weights = check_token_values(is_weights, "is_weights", layout, device, allow_per_sequence=True)
    if weights is not None:
        weights = weights.detach()
    for name, value, lower in (("delta", delta, 1.0), ("clip_ratio_c", clip_ratio_c, 1.0)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= lower:
            raise ValueError(f"{name}: expected None or a finite number > {lower:g}, got {value!r}")
    if not isinstance(bias_corrected_kl, bool):
        raise TypeError(f"bias_corrected_kl: expected a bool, got {type(bias_corrected_kl).__name__}")
    return PeerSemantics(
        weights,
        None if delta is None else float(delta),
        None if clip_ratio_c is None else float(clip_ratio_c),
        bias_corrected_kl,
    )
