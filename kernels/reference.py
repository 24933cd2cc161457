"""Plain-torch references for the fused LM-head functions: ``[N, V]`` logits, autograd by torch.

Logits are computed for the active tokens only (the mask, or the targets that are not ignored): the
others contribute nothing to any output, and in an RL batch most positions (prompt, plan, padding)
are inactive, so this is several times less work for the same values.

These are the ground truth the kernels are tested against and the "eager" method of the benchmark.
They compute in float32, or in the inputs' dtype when that is wider (float64 in the tests), and share
nothing with the fused path but argument checking: the policy surrogate, KL, importance weights and
loss-type normalisation are written out here again in the straightforward TRL/PPO form, so a bug in
the kernels' hand-derived gradients cannot hide behind the same bug here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .lm_head_variants import LMHeadVariant, apply_lm_head_variant, check_lm_head_variant
from .policy_semantics import check_peer_semantics
from .policy_token_loss import token_policy_loss
from .validation import (
    check_linear_inputs,
    check_loss_normalizer,
    check_mask,
    check_policy_inputs,
    check_positive,
    check_reduction,
    check_targets_in_range,
)


def _log_softmax_rows(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    temperature: float,
    variant: LMHeadVariant | None,
    active: torch.Tensor,
) -> torch.Tensor:
    """[n, V] log-softmax of the tempered logits (of the LM-head variant) in at least float32, for
    the rows of the flat bool mask `active` only."""
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    h = hidden.reshape(-1, hidden.shape[-1])[active]
    logits = h.to(dtype) @ weight.to(dtype).T
    if variant is not None:
        return F.log_softmax(apply_lm_head_variant(logits, variant, temperature), dim=-1)
    return F.log_softmax(logits / temperature, dim=-1)


def _gather_targets(log_probs: torch.Tensor, targets: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """[n] log-prob of each active token's target, from the active rows' log-softmax."""
    return log_probs.gather(1, targets.reshape(-1)[active].long()[:, None])[:, 0]


def _spread(values: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """[N] from the active tokens' [n] values, 0 elsewhere (differentiable in `values`)."""
    out = torch.zeros(active.shape[0], dtype=values.dtype, device=values.device)
    return out.masked_scatter(active, values)


def reference_linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target log-prob, entropy and max-prob of ``softmax(hidden @ weight.T / temperature)`` (with the
    LM-head variant), shaped like targets; masked-out tokens get 0."""
    layout = check_linear_inputs(hidden, weight, targets)
    temperature = check_positive(temperature, "temperature")
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)
    active = check_mask(mask, layout, hidden.device)
    check_targets_in_range(targets.reshape(-1), active, layout.vocab_size)
    log_probs = _log_softmax_rows(hidden, weight, temperature, variant, active)
    probs = log_probs.exp()
    logp = _gather_targets(log_probs, targets, active)
    entropy = -(probs * log_probs).sum(-1)
    maxprob = probs.amax(-1)
    outs = tuple(_spread(x, active).reshape(layout.batch_shape) for x in (logp, entropy, maxprob))
    return outs  # type: ignore[return-value]


def reference_linear_cross_entropy(
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
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T / temperature`` (with the LM-head variant) against targets;
    the mean is over non-ignored tokens and is 0 (with zero gradients) when every token is ignored."""
    layout = check_linear_inputs(hidden, weight, targets)
    check_reduction(reduction)
    temperature = check_positive(temperature, "temperature")
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)
    active = targets.reshape(-1) != ignore_index
    check_targets_in_range(targets.reshape(-1), active, layout.vocab_size)
    log_probs = _log_softmax_rows(hidden, weight, temperature, variant, active)
    nll = _spread(-_gather_targets(log_probs, targets, active), active)
    if reduction == "none":
        return nll.reshape(layout.batch_shape)
    if reduction == "sum":
        return nll.sum()
    return nll.sum() / active.sum().clamp(min=1)


def reference_linear_policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
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
    loss_normalizer: float | torch.Tensor | None = None,
    is_weights: torch.Tensor | None = None,
    delta: float | None = None,
    clip_ratio_c: float | None = None,
    bias_corrected_kl: bool = False,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    check_finite: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level clipped surrogate with full logits (see ``fastcomt.kernels.linear_policy_loss``).
    The peers' options (delta, dual clip, importance weights, bias-corrected KL) go through
    ``token_policy_loss``, the LM-head variants through ``apply_lm_head_variant``."""
    checked = check_policy_inputs(
        hidden,
        weight,
        targets,
        mask,
        advantages,
        old_logprobs,
        ref_logprobs,
        behaviour_logprobs,
        loss_type=loss_type,
        eps_low=eps_low,
        eps_high=eps_high,
        beta=beta,
        tis_cap=tis_cap,
        entropy_coef=entropy_coef,
        temperature=temperature,
        max_tokens=max_tokens,
        check_finite=check_finite,
    )
    normalizer = check_loss_normalizer(loss_normalizer, hidden.device)
    layout, active, adv, opts = checked.layout, checked.active, checked.advantages, checked.options
    old, ref, behaviour = checked.old, checked.ref, checked.behaviour
    check_targets_in_range(targets.reshape(-1), active, layout.vocab_size)
    peer = check_peer_semantics(
        layout,
        hidden.device,
        is_weights=is_weights,
        delta=delta,
        clip_ratio_c=clip_ratio_c,
        bias_corrected_kl=bias_corrected_kl,
    )
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)

    log_probs = _log_softmax_rows(hidden, weight, opts.temperature, variant, active)
    dtype = log_probs.dtype
    logp = _spread(_gather_targets(log_probs, targets, active), active)
    entropy = _spread(-(log_probs.exp() * log_probs).sum(-1), active)

    # Inactive tokens get inputs that make every term finite (padding may carry -inf or garbage),
    # so that masking by multiplication below cannot turn 0 * inf into NaN gradients.
    detached = logp.detach()
    old = detached if old is None else torch.where(active, old.to(dtype), detached)
    adv = torch.where(active, adv.to(dtype), 0.0)

    ratio = torch.exp(logp - old)
    weights = None
    if behaviour is not None:
        behaviour = torch.where(active, behaviour.to(dtype), old)
        tis = torch.exp(old - behaviour)
        if opts.tis_cap is not None:
            tis = tis.clamp(max=opts.tis_cap)
        weights = tis.detach()
    if peer.is_weights is not None:
        caller = torch.where(active, peer.is_weights.to(dtype), 0.0)
        weights = caller if weights is None else weights * caller
    kl = None
    if ref is not None:
        ref = torch.where(active, ref.to(dtype), detached)
        kl = torch.exp(ref - logp) - (ref - logp) - 1
    per_token = token_policy_loss(
        logp,
        old,
        adv,
        eps_low=opts.eps_low,
        eps_high=opts.eps_high,
        delta=peer.delta,
        clip_ratio_c=peer.clip_ratio_c,
        is_weights=weights,
        ref_logp=ref,
        beta=opts.beta if ref is not None else 0.0,
        bias_corrected_kl=peer.bias_corrected_kl,
    )
    if opts.entropy_coef != 0:
        per_token = per_token - opts.entropy_coef * entropy

    m = active.to(dtype)
    seq_shape = (layout.num_sequences, layout.seq_len)
    if opts.loss_type == "grpo":
        per_seq = (per_token * m).reshape(seq_shape).sum(-1) / m.reshape(seq_shape).sum(-1).clamp(min=1)
        loss = per_seq.mean() if normalizer is None else per_seq.sum() / normalizer.to(dtype)
    elif normalizer is not None:
        loss = (per_token * m).sum() / normalizer.to(dtype)
    elif opts.loss_type in ("bnpo", "dapo"):
        loss = (per_token * m).sum() / m.sum().clamp(min=1)
    else:  # dr_grpo: check_policy_options requires max_tokens for it
        assert opts.max_tokens is not None
        loss = (per_token * m).sum() / (layout.num_sequences * opts.max_tokens)

    with torch.no_grad():
        count = m.sum().clamp(min=1)
        metrics = {
            "clip_frac_low": (((ratio < 1 - opts.eps_low) & (adv < 0)).to(dtype) * m).sum() / count,
            "clip_frac_high": (((ratio > 1 + opts.eps_high) & (adv > 0)).to(dtype) * m).sum() / count,
            "kl": (kl * m).sum() / count if kl is not None else torch.zeros((), dtype=dtype, device=hidden.device),
            "entropy": (entropy * m).sum() / count,
            "ratio": (ratio * m).sum() / count,
        }
    return loss, metrics
