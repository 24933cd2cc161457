"""``linear_policy_loss``: the fused LM-head clipped policy loss (PPO / GRPO family) for RL updates."""

from __future__ import annotations

import torch

from .config import LMHeadConfig, resolve_launch
from .fused_lm_head import NO_TIS_CAP, fused_lm_head_op
from .lm_head_rows import EPILOGUE_POLICY, STAT_ENTROPY, STAT_LOGP
from .lm_head_variants import check_lm_head_variant, with_bias_column
from .policy_metrics import policy_metrics
from .policy_semantics import check_peer_semantics
from .validation import check_loss_normalizer, check_policy_inputs


def linear_policy_loss(
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
    config: LMHeadConfig | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level clipped surrogate over the tokens where ``mask`` is nonzero.

    Per token: ``r = exp(logp - old)``, ``loss_t = -min(r*A, clip(r, 1-eps_low, 1+eps_high)*A)``,
    times the detached truncated importance weight ``min(exp(old - behaviour), tis_cap)`` when
    ``behaviour_logprobs`` is given (``tis_cap=None``: no truncation); plus ``beta * k3`` with
    ``k3 = exp(ref - logp) - (ref - logp) - 1`` (needs ``ref_logprobs``); minus
    ``entropy_coef * entropy_t``. ``old_logprobs=None`` means on-policy (old = current, detached).

    Aggregation (``loss_type``): "grpo" mean over each sequence's tokens then over the B sequences;
    "bnpo"/"dapo" mean over all masked tokens; "dr_grpo" sum / (B * max_tokens), max_tokens
    defaulting to T. A flat [N] layout is one sequence. Advantages are [B] or [B, T] (flat: [N]).
    ``loss_normalizer`` (a positive number or a 0-dim tensor) replaces the loss type's denominator:
    the token sum (bnpo/dapo/dr_grpo) or the sum of per-sequence means (grpo) is divided by it
    instead. TRL's dapo passes its token count of the whole generation batch across micro-batches and
    processes; verl passes its global token or sequence count over the data-parallel size.

    The peers' options (kernels/policy_token_loss.py spells out the math): ``is_weights`` ([B] or
    [B, T], detached) multiply the surrogate (TRL's ``importance_sampling_ratio``, verl's
    ``rollout_is_weights``, already truncated or masked); ``delta`` caps the unclipped ratio (TRL);
    ``clip_ratio_c`` caps the loss of negative-advantage tokens at ``-A c`` (verl's dual clip);
    ``bias_corrected_kl`` multiplies the k3 term by the ratio (TRL's default). The LM head may carry
    a ``bias`` [V] (costs one copy of the head with a bias column), a ``logit_scale`` and a final-logit
    ``softcap``: ``logits = softcap * tanh(logit_scale * (h @ W.T + bias) / softcap)``.

    Returns the scalar loss (autograd to hidden and weight; weight gradients only when it requires
    grad) and detached fp32 metrics: clip_frac_low, clip_frac_high, kl, entropy, ratio.

    ``check_finite=True`` raises ValueError naming the input when hidden, weight, advantages or a
    log-prob input holds NaN or inf (per-token inputs on the masked-in tokens only). It costs one host
    sync, so it is opt-in; the RL recipe turns it on (it reads the loss back per micro-batch anyway).
    """
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
    peer = check_peer_semantics(
        layout,
        hidden.device,
        is_weights=is_weights,
        delta=delta,
        clip_ratio_c=clip_ratio_c,
        bias_corrected_kl=bias_corrected_kl,
    )
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)
    flat_hidden, weight = with_bias_column(hidden.reshape(layout.num_rows, layout.hidden_size), weight, variant.bias)
    old, ref, behaviour = checked.old, checked.ref, checked.behaviour
    grad_on = torch.is_grad_enabled()
    need_dh = grad_on and hidden.requires_grad
    need_dw = grad_on and weight.requires_grad
    launch = resolve_launch(config, layout.vocab_size, hidden.dtype, hidden.device)

    num_seqs = layout.num_sequences
    coef = None
    if opts.loss_type == "grpo":
        # Each token weighs 1/len(its sequence); the 1/B is applied outside the op, below.
        per_seq = active.reshape(num_seqs, layout.seq_len)
        inv_len = 1.0 / per_seq.sum(-1).clamp(min=1).to(torch.float32)
        coef = inv_len[:, None].expand(num_seqs, layout.seq_len).reshape(-1)

    loss_sum, stats, _, _ = fused_lm_head_op(
        hidden=flat_hidden,
        weight=weight,
        targets=targets.reshape(-1),
        active=active,
        **launch._asdict(),
        epilogue=EPILOGUE_POLICY,
        need_dh=need_dh,
        need_dw=need_dw,
        coef=coef,
        advantages=adv,
        old_logprobs=old,
        ref_logprobs=ref if opts.beta > 0 else None,
        behaviour_logprobs=behaviour,
        temperature=opts.temperature,
        eps_low=opts.eps_low,
        eps_high=opts.eps_high,
        beta=opts.beta,
        entropy_coef=opts.entropy_coef,
        tis_cap=opts.tis_cap if opts.tis_cap is not None else NO_TIS_CAP,
        is_weights=peer.is_weights,
        delta=peer.delta or 0.0,
        clip_ratio_c=peer.clip_ratio_c or 0.0,
        bias_corrected_kl=peer.bias_corrected_kl,
        logit_scale=variant.logit_scale,
        softcap=variant.softcap or 0.0,
    )
    if normalizer is not None:
        loss = loss_sum / normalizer
    elif opts.loss_type == "grpo":
        loss = loss_sum / num_seqs
    elif opts.loss_type in ("bnpo", "dapo"):
        loss = loss_sum / active.sum().clamp(min=1)
    else:  # dr_grpo: check_policy_options requires max_tokens for it
        assert opts.max_tokens is not None
        loss = loss_sum / (num_seqs * opts.max_tokens)

    metrics = policy_metrics(stats[STAT_LOGP], stats[STAT_ENTROPY], active, adv, old, ref, opts.eps_low, opts.eps_high)
    return loss, metrics
