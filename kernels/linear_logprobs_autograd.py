"""``linear_logprobs_autograd``: per-token log-probs and entropies *with autograd*, no ``[N, V]`` logits.

The general path for trainers that compute their own loss from per-token log-probs (TRL's loss code,
verl's actor, sequence-level ratios, custom loops). Forward: per chunk of active rows, one GEMM and
one row kernel (log-prob, entropy, log-sum-exp). Backward: the logits of each chunk are recomputed
(second GEMM), the row kernel turns them into ``dL/dlogits`` from both upstream gradients (log-probs
and entropies) in place, then ``dh = dlogits @ W`` and ``dW += dlogits.T @ h`` (third and fourth
GEMMs), ``dbias += dlogits.sum(0)``. Only ``[N]`` fp32 vectors are saved between the two passes.

When the loss is a token-level function known in advance, ``linear_policy_loss`` (3 GEMMs, gradient
finished in the forward) is the faster path.

Both passes are ``torch.library`` custom ops, so a ``torch.compile``'d step sees two opaque nodes.
"""

from __future__ import annotations

import torch

from .config import LMHeadConfig, chunk_dtypes, compute_dtype, resolve_launch
from .gemm import gemm_into
from .lm_head_variants import check_lm_head_variant
from .logprob_rows import (
    logprob_backward_constants,
    logprob_backward_rows,
    logprob_forward_constants,
    logprob_forward_rows,
)
from .triton_mode import check_kernel_mode
from .validation import check_linear_inputs, check_mask, check_positive, check_targets_in_range


def _active_index(active: torch.Tensor) -> torch.Tensor | None:
    return None if bool(active.all()) else active.nonzero().squeeze(1)


def _rows(t: torch.Tensor, index: torch.Tensor | None, start: int, end: int) -> torch.Tensor:
    return t[start:end] if index is None else t.index_select(0, index[start:end])


def _int64_targets(targets: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    # int64 whatever the caller's integer dtype, as in the fused LM head: one row-kernel specialisation
    # per logits dtype instead of one per (logits, targets) dtype pair.
    return (targets if index is None else targets.index_select(0, index)).to(torch.int64).contiguous()


def _chunk_logits(h_c, w_c, bias_c, logits_buf):
    logits = logits_buf[: h_c.shape[0]]
    gemm_into(logits, h_c, w_c.T, accumulate=False)
    if bias_c is not None:
        logits.add_(bias_c)
    return logits


@torch.library.custom_op("fastcomt::linear_logprobs_forward", mutates_args=())
def linear_logprobs_forward_op(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    active: torch.Tensor,
    *,
    temperature: float,
    logit_scale: float,
    softcap: float,
    chunk_rows: int,
    block_v: int,
    num_warps: int,
    fp32_logits: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns fp32 ``(logp, entropy, lse)``, each ``[N]``, 0 on inactive rows; ``softcap=0`` means none."""
    num_rows = hidden.shape[0]
    vocab_size = weight.shape[0]
    check_kernel_mode(logprob_forward_rows, hidden.device)
    # Three separate buffers: custom-op outputs may not alias each other.
    out = [torch.zeros(num_rows, dtype=torch.float32, device=hidden.device) for _ in range(3)]
    check_targets_in_range(targets, active, vocab_size)
    index = _active_index(active)
    num_active = num_rows if index is None else index.numel()
    if num_active == 0:
        return out[0], out[1], out[2]
    cdtype, ldtype, _ = chunk_dtypes(hidden.dtype, hidden.device, fp32_logits, write_grad=False)
    w_c = weight.to(cdtype)
    bias_c = None if bias is None else bias.to(ldtype)
    tgt = _int64_targets(targets, index)
    act = out if index is None else [torch.empty(num_active, dtype=torch.float32, device=hidden.device) for _ in out]
    rows = max(1, min(chunk_rows, num_active))
    logits_buf = torch.empty(rows, vocab_size, dtype=ldtype, device=hidden.device)
    for start in range(0, num_active, rows):
        end = min(start + rows, num_active)
        logits = _chunk_logits(_rows(hidden, index, start, end).to(cdtype), w_c, bias_c, logits_buf)
        logprob_forward_rows[(end - start,)](
            logits_ptr=logits,
            logits_row_stride=logits.stride(0),
            targets_ptr=tgt[start:end],
            logp_ptr=act[0][start:end],
            entropy_ptr=act[1][start:end],
            lse_ptr=act[2][start:end],
            vocab_size=vocab_size,
            logit_scale=logit_scale,
            softcap=softcap if softcap > 0 else 1.0,
            inv_temperature=1.0 / temperature,
            **logprob_forward_constants(has_softcap=softcap > 0, block_v=block_v, num_warps=num_warps),
        )
    if index is not None:
        for full, part in zip(out, act):
            full[index] = part
    return out[0], out[1], out[2]


@linear_logprobs_forward_op.register_fake
def _forward_fake(hidden, weight, bias, targets, active, **_options):
    n = hidden.shape[0]
    return tuple(hidden.new_empty(n, dtype=torch.float32) for _ in range(3))


@torch.library.custom_op("fastcomt::linear_logprobs_backward", mutates_args=())
def linear_logprobs_backward_op(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    active: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor,
    grad_logp: torch.Tensor | None,
    grad_entropy: torch.Tensor | None,
    *,
    need_dh: bool,
    need_dw: bool,
    need_dbias: bool,
    temperature: float,
    logit_scale: float,
    softcap: float,
    chunk_rows: int,
    block_v: int,
    num_warps: int,
    fp32_logits: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(dh [N, H], dW [V, H] fp32, dbias [V] fp32)``; a gradient not asked for is empty."""
    num_rows, hidden_size = hidden.shape
    vocab_size = weight.shape[0]
    device = hidden.device
    check_kernel_mode(logprob_backward_rows, device)
    cdtype, ldtype, gdtype = chunk_dtypes(hidden.dtype, device, fp32_logits, write_grad=True)
    dh = torch.zeros((num_rows, hidden_size) if need_dh else (0,), dtype=cdtype, device=device)
    dw = torch.zeros(weight.shape if need_dw else (0,), dtype=torch.float32, device=device)
    dbias = torch.zeros((vocab_size,) if need_dbias else (0,), dtype=torch.float32, device=device)
    index = _active_index(active)
    num_active = num_rows if index is None else index.numel()
    if num_active == 0 or (grad_logp is None and grad_entropy is None) or not (need_dh or need_dw or need_dbias):
        return dh, dw, dbias
    w_c = weight.to(cdtype)
    bias_c = None if bias is None else bias.to(ldtype)

    def gathered(t: torch.Tensor) -> torch.Tensor:
        t = t.to(torch.float32)
        return t.contiguous() if index is None else t.index_select(0, index)

    tgt = _int64_targets(targets, index)
    lse_a, ent_a = gathered(lse), gathered(entropy)
    g_logp = None if grad_logp is None else gathered(grad_logp)
    g_ent = None if grad_entropy is None else gathered(grad_entropy)
    rows = max(1, min(chunk_rows, num_active))
    logits_buf = torch.empty(rows, vocab_size, dtype=ldtype, device=device)
    # The dh/dW GEMMs take operands in the GEMM dtype: fp32 logits with a bf16/fp16 GEMM need their
    # own gradient buffer; otherwise the gradient overwrites the logits in place.
    grad_buf = logits_buf if gdtype == ldtype else torch.empty(rows, vocab_size, dtype=gdtype, device=device)
    for start in range(0, num_active, rows):
        end = min(start + rows, num_active)
        h_c = _rows(hidden, index, start, end).to(cdtype)
        logits = _chunk_logits(h_c, w_c, bias_c, logits_buf)
        grad = grad_buf[: end - start]
        logprob_backward_rows[(end - start,)](
            logits_ptr=logits,
            logits_row_stride=logits.stride(0),
            grad_ptr=grad,
            grad_row_stride=grad.stride(0),
            targets_ptr=tgt[start:end],
            lse_ptr=lse_a[start:end],
            entropy_ptr=ent_a[start:end],
            grad_logp_ptr=g_logp[start:end] if g_logp is not None else lse_a,
            grad_entropy_ptr=g_ent[start:end] if g_ent is not None else lse_a,
            vocab_size=vocab_size,
            logit_scale=logit_scale,
            softcap=softcap if softcap > 0 else 1.0,
            inv_temperature=1.0 / temperature,
            **logprob_backward_constants(
                has_softcap=softcap > 0,
                has_grad_logp=g_logp is not None,
                has_grad_entropy=g_ent is not None,
                block_v=block_v,
                num_warps=num_warps,
            ),
        )
        if need_dh:
            if index is None:
                torch.matmul(grad, w_c, out=dh[start:end])
            else:
                dh.index_copy_(0, index[start:end], grad @ w_c)
        if need_dw:
            gemm_into(dw, grad.T, h_c, accumulate=True)
        if need_dbias:
            dbias += grad.sum(0, dtype=torch.float32)
    return dh, dw, dbias


@linear_logprobs_backward_op.register_fake
def _backward_fake(
    hidden,
    weight,
    bias,
    targets,
    active,
    lse,
    entropy,
    grad_logp,
    grad_entropy,
    *,
    need_dh,
    need_dw,
    need_dbias,
    **_options,
):
    cdtype = compute_dtype(hidden.dtype, hidden.device)
    dh = hidden.new_empty(hidden.shape if need_dh else (0,), dtype=cdtype)
    dw = weight.new_empty(weight.shape if need_dw else (0,), dtype=torch.float32)
    dbias = weight.new_empty((weight.shape[0],) if need_dbias else (0,), dtype=torch.float32)
    return dh, dw, dbias


_OPTION_NAMES = ("temperature", "logit_scale", "softcap", "chunk_rows", "block_v", "num_warps", "fp32_logits")


def _setup(ctx, inputs, keyword_only_inputs, output) -> None:
    hidden, weight, bias, targets, active = inputs
    _, entropy, lse = output
    ctx.save_for_backward(hidden, weight, bias, targets, active, lse, entropy)
    ctx.options = {name: keyword_only_inputs[name] for name in _OPTION_NAMES}
    ctx.has_bias = bias is not None


def _backward(ctx, grad_logp, grad_entropy, _grad_lse):
    hidden, weight, bias, targets, active, lse, entropy = ctx.saved_tensors
    need_dh, need_dw, need_dbias = (
        ctx.needs_input_grad[0],
        ctx.needs_input_grad[1],
        ctx.has_bias and ctx.needs_input_grad[2],
    )
    dh, dw, dbias = linear_logprobs_backward_op(
        hidden,
        weight,
        bias,
        targets,
        active,
        lse,
        entropy,
        grad_logp,
        grad_entropy,
        need_dh=need_dh,
        need_dw=need_dw,
        need_dbias=need_dbias,
        **ctx.options,
    )
    return (
        dh.to(hidden.dtype) if need_dh else None,
        dw.to(weight.dtype) if need_dw else None,
        dbias.to(bias.dtype) if need_dbias else None,
        None,
        None,
    )


linear_logprobs_forward_op.register_autograd(_backward, setup_context=_setup)


def linear_logprobs_autograd(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    config: LMHeadConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log p(target) and entropy of ``softmax(softcap*tanh(logit_scale*(hidden @ weight.T + bias)/softcap)
    / temperature)``, differentiable w.r.t. hidden, weight and bias through both outputs.

    hidden [B, T, H] or [N, H]; weight [V, H]; bias [V] or None; targets (and mask) [B, T] or [N].
    Returns two fp32 tensors shaped like targets; tokens where ``mask`` is 0 skip the GEMMs, read 0
    and get no gradient. ``softcap=None`` means no softcapping.
    """
    layout = check_linear_inputs(hidden, weight, targets)
    temperature = check_positive(temperature, "temperature")
    variant = check_lm_head_variant(weight, bias, logit_scale, softcap)
    active = check_mask(mask, layout, hidden.device)
    launch = resolve_launch(config, layout.vocab_size, hidden.dtype, hidden.device)
    logp, entropy, _ = linear_logprobs_forward_op(
        hidden.reshape(layout.num_rows, layout.hidden_size),
        weight,
        variant.bias,
        targets.reshape(-1),
        active,
        temperature=temperature,
        logit_scale=variant.logit_scale,
        softcap=0.0 if variant.softcap is None else variant.softcap,
        chunk_rows=launch.chunk_rows,
        block_v=launch.block_v,
        num_warps=launch.num_warps,
        fp32_logits=launch.fp32_logits,
    )
    return logp.reshape(layout.batch_shape), entropy.reshape(layout.batch_shape)
