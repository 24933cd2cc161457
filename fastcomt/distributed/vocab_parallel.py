"""The LM head split over the vocabulary (tensor-parallel heads): each rank holds rows
[vocab_start, vocab_start + V_r) of the [V, H] weight and the same hidden states.

Per token, every rank reduces its slice of the logits z = h Wᵀ / T to four row statistics: the
log-sum-exp `lse_r`, the expected logit `E_r[z]` under its local softmax, the largest logit, and the
target logit when the target falls in its slice. All-reduces combine them exactly:

    lse = log Σ_r exp(lse_r)                 (max-shifted)
    E[z] = Σ_r exp(lse_r − lse) · E_r[z]     entropy = lse − E[z]
    max z = max_r max_r z                    max-prob = exp(max z − lse)
    z_t = Σ_r [t in slice r] z_t             log p(t) = z_t − lse

as verl's fused kernel does with its `dist_process_group`. The backward needs the *global* softmax,
p = exp(z − lse), per vocabulary slice: dz = g_logp·(onehot − p) − g_H·p·(z − E[z]), then
dh = dz W_r (all-reduced: each rank holds a part of it) and dW_r = dzᵀ h (stays local).

Two passes, built from public pieces:
- pass 1 (forward, statistics) runs the fused `linear_logprobs` kernel on the local slice when
  `use_kernel=True`: it returns log p_r(t'), the local entropy and max-prob for a chosen local token
  t' (the target when owned, else local token 0); with z_t' = h·W_r[t']/T (a row dot product),
  lse_r = z_t' − log p_r(t'), E_r[z] = lse_r − H_r and max z = lse_r + log maxprob_r. Otherwise a
  plain-torch chunked pass computes the same statistics.
- pass 2 (backward) recomputes one chunk of local logits at a time in plain torch with the global
  lse and E[z]: the public kernels compute their gradients against the *local* softmax and cannot
  take a global one.

What would make it fused: the row kernel (kernels/lm_head_rows.py) accepting an optional per-row
`row_lse` and `row_mean_logit` (fp32 [N]) that replace its online max/sum-exp when given, so the same
chunk loop (kernels/fused_lm_head.py) writes dlogits = g·(onehot − exp(z − lse)) − … in place and
does the dh/dW GEMMs; with a "stats only" epilogue returning lse_r and E_r[z] directly (instead of
recovering them from log p_r(t') as above) the two passes would be: stats kernel → all-reduce → the
existing training epilogue with the global statistics. The dh all-reduce stays outside the kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "vocab_parallel_logprobs",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_policy_loss",
    "DEFAULT_CHUNK_ROWS",
]

DEFAULT_CHUNK_ROWS = 1024


def _all_reduce(t: torch.Tensor, op: Any, group: Any) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1:
        dist.all_reduce(t, op=op, group=group)
    return t


def _local_stats_torch(h: torch.Tensor, w: torch.Tensor, local_t: torch.Tensor, temperature: float, chunk_rows: int):
    """lse_r, E_r[z], max z and z at local_t of each row, one chunk of local logits at a time (fp32)."""
    n = h.shape[0]
    lse, mean_z, max_z, z_t = (torch.empty(n, dtype=torch.float32, device=h.device) for _ in range(4))
    for s in range(0, n, chunk_rows):
        z = (h[s : s + chunk_rows].float() @ w.float().T) / temperature
        lse[s : s + chunk_rows] = torch.logsumexp(z, dim=-1)
        p = torch.softmax(z, dim=-1)
        mean_z[s : s + chunk_rows] = (p * z).sum(-1)
        max_z[s : s + chunk_rows] = z.amax(-1)
        z_t[s : s + chunk_rows] = z.gather(1, local_t[s : s + chunk_rows, None])[:, 0]
    return lse, mean_z, max_z, z_t


def _local_stats_kernel(
    h: torch.Tensor, w: torch.Tensor, local_t: torch.Tensor, temperature: float, active: torch.Tensor
):
    """The same statistics from one fused `linear_logprobs` pass over the local slice (see the module docstring)."""
    from fastcomt.kernels import linear_logprobs

    logp, entropy, maxprob = linear_logprobs(h, w, local_t, temperature=temperature, mask=active)
    z_t = (h.float() * w.float()[local_t]).sum(-1) / temperature
    lse = z_t - logp
    return lse, lse - entropy, lse + torch.log(maxprob), z_t


class _VocabParallelLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, active, vocab_start, temperature, group, chunk_rows, use_kernel):
        v_local = weight.shape[0]
        owned = active & (targets >= vocab_start) & (targets < vocab_start + v_local)
        local_t = torch.where(owned, targets - vocab_start, 0).long()
        if use_kernel:
            lse_r, mean_r, max_r, z_sel = _local_stats_kernel(hidden, weight, local_t, temperature, active)
        else:
            lse_r, mean_r, max_r, z_sel = _local_stats_torch(hidden, weight, local_t, temperature, chunk_rows)
        # combine the slices: max-shifted sum of exp for the lse, weighted means, max, owner's target logit
        shift = _all_reduce(lse_r.clone(), dist.ReduceOp.MAX, group)
        lse = torch.log(_all_reduce(torch.exp(lse_r - shift), dist.ReduceOp.SUM, group)) + shift
        mean_z = _all_reduce(torch.exp(lse_r - lse) * mean_r, dist.ReduceOp.SUM, group)
        max_z = _all_reduce(max_r.clone(), dist.ReduceOp.MAX, group)
        z_t = _all_reduce(torch.where(owned, z_sel, 0.0), dist.ReduceOp.SUM, group)
        zero = torch.zeros_like(lse)
        logp = torch.where(active, z_t - lse, zero)
        entropy = torch.where(active, lse - mean_z, zero)
        maxprob = torch.where(active, torch.exp(max_z - lse), zero)
        ctx.save_for_backward(hidden, weight, local_t, owned, active, lse, mean_z)
        ctx.temperature, ctx.group, ctx.chunk_rows = temperature, group, chunk_rows
        ctx.mark_non_differentiable(maxprob)
        return logp, entropy, maxprob

    @staticmethod
    def backward(ctx, g_logp, g_entropy, _g_maxprob):
        hidden, weight, local_t, owned, active, lse, mean_z = ctx.saved_tensors
        t, rows = ctx.temperature, ctx.chunk_rows
        # only active rows: they carry the gradient, and an inactive row's statistics are not defined
        idx = active.nonzero()[:, 0]
        zeros = torch.zeros(idx.shape[0], dtype=torch.float32, device=lse.device)
        g_logp = zeros if g_logp is None else g_logp.float()[idx]
        g_ent = zeros if g_entropy is None else g_entropy.float()[idx]
        lse, mean_z, owned, local_t = lse[idx], mean_z[idx], owned[idx], local_t[idx]
        dh = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
        dw = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        w = weight.float()
        for s in range(0, idx.shape[0], rows):
            e = slice(s, s + rows)
            h = hidden[idx[e]].float()
            z = (h @ w.T) / t
            p = torch.exp(z - lse[e, None])
            # d logp / dz = onehot - p ; d entropy / dz = -p (z - E[z])
            dz = -p * (g_logp[e, None] + g_ent[e, None] * (z - mean_z[e, None]))
            o = owned[e]
            dz[o, local_t[e][o]] += g_logp[e][o]
            dz = dz / t
            dh[idx[e]] = dz @ w
            if dw is not None:
                dw += dz.T @ h
        _all_reduce(dh, dist.ReduceOp.SUM, ctx.group)  # every vocabulary slice contributes to dh
        return (dh.to(hidden.dtype), None if dw is None else dw.to(weight.dtype)) + (None,) * 7


def _flat(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None):
    if hidden.dim() not in (2, 3) or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"hidden, weight: expected [N, H] or [B, T, H] and [V_local, H], got {list(hidden.shape)} "
            f"and {list(weight.shape)}"
        )
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets: expected shape {list(hidden.shape[:-1])}, got {list(targets.shape)}")
    if mask is not None and mask.shape != targets.shape:
        raise ValueError(f"mask: expected shape {list(targets.shape)}, got {list(mask.shape)}")
    h = hidden.reshape(-1, hidden.shape[-1])
    t = targets.reshape(-1).long()
    active = torch.ones_like(t, dtype=torch.bool) if mask is None else mask.reshape(-1).bool()
    return h, t, active


def vocab_parallel_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_start: int,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    group: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    use_kernel: bool = False,
) -> tuple[torch.Tensor, ...]:
    """(log p(target), entropy, max-prob) of the full-vocabulary softmax, from this rank's slice.

    hidden [N, H] or [B, T, H] (the same on every rank of `group`); weight [V_local, H], rows
    vocab_start... of the full head; targets: global token ids. log p and entropy are differentiable
    (to hidden, all-reduced, and to this rank's weight slice); masked tokens read 0. Collective.
    use_kernel: the forward statistics from the fused `linear_logprobs` kernel (module docstring).
    """
    if not isinstance(vocab_start, int) or isinstance(vocab_start, bool) or vocab_start < 0:
        raise ValueError(f"vocab_start: expected a non-negative int, got {vocab_start!r}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature!r}")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows: expected a positive int, got {chunk_rows!r}")
    h, t, active = _flat(hidden, weight, targets, mask)
    outs = _VocabParallelLogprobs.apply(
        h, weight, t, active, vocab_start, float(temperature), group, chunk_rows, use_kernel
    )
    return tuple(o.reshape(targets.shape) for o in outs)


def vocab_parallel_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_start: int,
    ignore_index: int = -100,
    reduction: str = "mean",
    temperature: float = 1.0,
    group: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    use_kernel: bool = False,
) -> torch.Tensor:
    """Cross-entropy of the full-vocabulary softmax from this rank's slice (`linear_cross_entropy`'s
    meaning: "mean" over tokens whose target is not `ignore_index`, "sum", or "none"). Collective."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    mask = targets != ignore_index
    safe = torch.where(mask, targets, 0)
    logp, _, _ = vocab_parallel_logprobs(
        hidden,
        weight,
        safe,
        vocab_start=vocab_start,
        temperature=temperature,
        mask=mask,
        group=group,
        chunk_rows=chunk_rows,
        use_kernel=use_kernel,
    )
    nll = -logp
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return nll.sum() / mask.sum().clamp(min=1)


def vocab_parallel_policy_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    *,
    vocab_start: int,
    group: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    use_kernel: bool = False,
    **options: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`linear_policy_loss` (same options: loss_type, eps_low, eps_high, beta, ref_logprobs,
    behaviour_logprobs, tis_cap, entropy_coef, temperature, max_tokens) from this rank's vocabulary
    slice: the token log-probs and entropies come from `vocab_parallel_logprobs`, the clipped
    surrogate is computed on them (distributed/policy_surrogate.py). Collective."""
    from .policy_surrogate import policy_loss_from_logprobs

    if hidden.dim() != 3:
        raise ValueError(
            f"hidden: expected [B, T, H] (the policy loss aggregates per sequence), got {list(hidden.shape)}"
        )
    temperature = options.get("temperature", 1.0)
    logp, entropy, _ = vocab_parallel_logprobs(
        hidden,
        weight,
        targets,
        vocab_start=vocab_start,
        temperature=temperature,
        mask=mask,
        group=group,
        chunk_rows=chunk_rows,
        use_kernel=use_kernel,
    )
    return policy_loss_from_logprobs(logp, entropy, mask.bool(), advantages, old_logprobs, **options)
