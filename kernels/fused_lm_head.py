"""The chunked driver of the fused LM head and its registration as torch custom ops.

Per chunk of active token rows: ``logits = h_c @ W.T`` (cuBLAS on GPU, fp32 output by default), one
launch of the row kernel (statistics, per-token loss, and dloss/dlogits written in the GEMM dtype,
over the logits when the dtypes agree), then
``dh_c = dlogits @ W`` and ``dW += dlogits.T @ h_c``. Masked or ignored rows are dropped before the
first GEMM. The gradient is thus finished in the forward call; the autograd backward only scales the
saved ``dh``/``dW`` by the incoming scalar.

The ops are registered with ``torch.library.custom_op`` (fake + autograd) so a ``torch.compile``'d
training step sees them as single opaque nodes. Argument checks live in the public wrappers, except
the target-range check, which needs a host sync and so runs inside the op.
"""

from typing import Optional

import torch

from .config import compute_dtype
from .lm_head_rows import EPILOGUE_CE, EPILOGUE_SCORE, NUM_STATS, STAT_LOSS, lm_head_rows_kernel
from .validation import check_targets_in_range

# tl.minimum(x, cap) with this cap leaves every finite weight untouched ("no truncation").
NO_TIS_CAP = 3.0e38


def _accumulate_dw(dw: torch.Tensor, dlogits: torch.Tensor, h_c: torch.Tensor) -> None:
    """dW += dlogits.T @ h_c, accumulating in dW's dtype."""
    if dw.dtype == dlogits.dtype:
        dw.addmm_(dlogits.T, h_c)
    elif dw.device.type == "cuda":
        # bf16/fp16 operands, fp32 accumulator: cuBLAS adds into fp32 without a V x H temporary.
        torch.addmm(dw, dlogits.T, h_c, out_dtype=dw.dtype, out=dw)
    else:
        # CPU computes in fp32 and may accumulate into a bf16/fp16 dW: one rounding per chunk,
        # the same as a low-precision accumulator on GPU.
        dw.add_(dlogits.T @ h_c)


def _logits_gemm(h_c: torch.Tensor, w_c: torch.Tensor, out: torch.Tensor) -> None:
    """out = h_c @ w_c.T; bf16/fp16 operands with an fp32 ``out`` use cuBLAS's fp32 output (the
    accumulator is fp32 anyway), so no rounding to bf16 happens between the GEMM and the softmax."""
    if out.dtype == h_c.dtype:
        torch.matmul(h_c, w_c.T, out=out)
    else:
        torch.mm(h_c, w_c.T, out_dtype=out.dtype, out=out)


def _gather(t: Optional[torch.Tensor], index: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if t is None:
        return None
    t = t if index is None else t.index_select(0, index)
    return t.to(torch.float32).contiguous()


def run_lm_head_chunks(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    active: torch.Tensor,
    coef: Optional[torch.Tensor],
    advantages: Optional[torch.Tensor],
    old_logprobs: Optional[torch.Tensor],
    ref_logprobs: Optional[torch.Tensor],
    behaviour_logprobs: Optional[torch.Tensor],
    epilogue: int,
    need_dh: bool,
    need_dw: bool,
    temperature: float,
    eps_low: float,
    eps_high: float,
    beta: float,
    entropy_coef: float,
    tis_cap: float,
    dw_in_weight_dtype: bool,
    chunk_rows: int,
    block_v: int,
    num_warps: int,
    fp32_logits: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs the fused LM head over the active rows of ``hidden [N, H]``.

    Returns ``(loss_sum, stats, dh, dw)``: ``loss_sum = sum_t coef_t * loss_t`` over active rows
    (0 for the score epilogue), ``stats [4, N]`` fp32 (log-prob, entropy, max-prob, per-token loss;
    0 on inactive rows), ``dh [N, H]`` and ``dw [V, H]`` gradients of ``loss_sum`` (empty when not
    requested).
    """
    device = hidden.device
    num_rows = hidden.shape[0]
    vocab_size, hidden_size = weight.shape
    cdtype = compute_dtype(hidden.dtype, device)
    write_grad = epilogue != EPILOGUE_SCORE and (need_dh or need_dw)

    stats = torch.zeros(NUM_STATS, num_rows, dtype=torch.float32, device=device)
    dw_dtype = weight.dtype if dw_in_weight_dtype else torch.float32
    dh_shape = (num_rows, hidden_size) if need_dh and write_grad else (0,)
    dw_shape = (vocab_size, hidden_size) if need_dw and write_grad else (0,)
    dh = torch.zeros(dh_shape, dtype=cdtype, device=device)
    dw = torch.zeros(dw_shape, dtype=dw_dtype, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)

    check_targets_in_range(targets, active, vocab_size)
    all_active = bool(active.all())
    index = None if all_active else active.nonzero().squeeze(1)
    num_active = num_rows if index is None else index.numel()
    if num_active == 0:
        return loss_sum, stats, dh, dw

    w_c = weight.to(cdtype)
    tgt = (targets if index is None else targets.index_select(0, index)).contiguous()
    coef_a = _gather(coef, index)
    adv_a = _gather(advantages, index)
    old_a = _gather(old_logprobs, index)
    ref_a = _gather(ref_logprobs, index)
    beh_a = _gather(behaviour_logprobs, index)
    act_stats = stats if index is None else torch.empty(NUM_STATS, num_active, dtype=torch.float32, device=device)
    dummy = act_stats  # stands in for absent optional pointers; never read (constexpr flags)

    rows = max(1, min(chunk_rows, num_active))
    ldtype = torch.float32 if fp32_logits else cdtype
    logits_buf = torch.empty(rows, vocab_size, dtype=ldtype, device=device)
    # dh/dW GEMMs take operands in cdtype: with fp32 logits and bf16/fp16 GEMMs the row kernel writes
    # the gradient into its own buffer; otherwise over the logits, in place.
    grad_buf = logits_buf
    if write_grad and ldtype != cdtype:
        grad_buf = torch.empty(rows, vocab_size, dtype=cdtype, device=device)
    inv_temperature = 1.0 / temperature
    for start in range(0, num_active, rows):
        end = min(start + rows, num_active)
        rows_c = end - start
        h_c = hidden[start:end] if index is None else hidden.index_select(0, index[start:end])
        h_c = h_c.to(cdtype)
        logits = logits_buf[:rows_c]
        grad = grad_buf[:rows_c]
        _logits_gemm(h_c, w_c, logits)
        lm_head_rows_kernel[(rows_c,)](
            logits,
            logits.stride(0),
            grad,
            grad.stride(0),
            tgt[start:end],
            act_stats,
            act_stats.stride(0),
            start,
            coef_a[start:end] if coef_a is not None else dummy,
            adv_a[start:end] if adv_a is not None else dummy,
            old_a[start:end] if old_a is not None else dummy,
            ref_a[start:end] if ref_a is not None else dummy,
            beh_a[start:end] if beh_a is not None else dummy,
            vocab_size,
            inv_temperature,
            eps_low,
            eps_high,
            beta,
            entropy_coef,
            tis_cap,
            EPILOGUE=epilogue,
            WRITE_GRAD=write_grad,
            HAS_COEF=coef_a is not None,
            HAS_OLD=old_a is not None,
            HAS_REF=ref_a is not None,
            HAS_TIS=beh_a is not None,
            BLOCK_V=block_v,
            num_warps=num_warps,
        )
        if not write_grad:
            continue
        if need_dh:
            if index is None:
                torch.matmul(grad, w_c, out=dh[start:end])
            else:
                dh.index_copy_(0, index[start:end], grad @ w_c)
        if need_dw:
            _accumulate_dw(dw, grad, h_c)

    if index is not None:
        stats[:, index] = act_stats
    if epilogue != EPILOGUE_SCORE:
        losses = act_stats[STAT_LOSS]
        loss_sum = (losses * coef_a).sum() if coef_a is not None else losses.sum()
    return loss_sum, stats, dh, dw


# ---- custom op: loss_sum + stats with the gradient finished in forward -------------------------


@torch.library.custom_op("fastcomt::fused_lm_head", mutates_args=())
def fused_lm_head_op(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    active: torch.Tensor,
    coef: Optional[torch.Tensor],
    advantages: Optional[torch.Tensor],
    old_logprobs: Optional[torch.Tensor],
    ref_logprobs: Optional[torch.Tensor],
    behaviour_logprobs: Optional[torch.Tensor],
    epilogue: int,
    need_dh: bool,
    need_dw: bool,
    temperature: float,
    eps_low: float,
    eps_high: float,
    beta: float,
    entropy_coef: float,
    tis_cap: float,
    dw_in_weight_dtype: bool,
    chunk_rows: int,
    block_v: int,
    num_warps: int,
    fp32_logits: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return run_lm_head_chunks(
        hidden, weight, targets, active, coef, advantages, old_logprobs, ref_logprobs, behaviour_logprobs,
        epilogue, need_dh, need_dw, temperature, eps_low, eps_high, beta, entropy_coef, tis_cap,
        dw_in_weight_dtype, chunk_rows, block_v, num_warps, fp32_logits,
    )  # fmt: skip


@fused_lm_head_op.register_fake
def _fused_lm_head_fake(hidden, weight, targets, active, coef, advantages, old_logprobs, ref_logprobs,
                        behaviour_logprobs, epilogue, need_dh, need_dw, temperature, eps_low, eps_high, beta,
                        entropy_coef, tis_cap, dw_in_weight_dtype, chunk_rows, block_v, num_warps,
                        fp32_logits):  # fmt: skip
    num_rows, hidden_size = hidden.shape
    vocab_size = weight.shape[0]
    cdtype = compute_dtype(hidden.dtype, hidden.device)
    write_grad = epilogue != EPILOGUE_SCORE and (need_dh or need_dw)
    dw_dtype = weight.dtype if dw_in_weight_dtype else torch.float32
    loss_sum = hidden.new_empty((), dtype=torch.float32)
    stats = hidden.new_empty(NUM_STATS, num_rows, dtype=torch.float32)
    dh = hidden.new_empty((num_rows, hidden_size) if need_dh and write_grad else (0,), dtype=cdtype)
    dw = weight.new_empty((vocab_size, hidden_size) if need_dw and write_grad else (0,), dtype=dw_dtype)
    return loss_sum, stats, dh, dw


def _fused_lm_head_setup(ctx, inputs, output) -> None:
    hidden, weight = inputs[0], inputs[1]
    epilogue, need_dh, need_dw = inputs[9], inputs[10], inputs[11]
    _, _, dh, dw = output
    ctx.save_for_backward(dh, dw)
    ctx.hidden_dtype = hidden.dtype
    ctx.weight_dtype = weight.dtype
    write_grad = epilogue != EPILOGUE_SCORE
    ctx.has_dh = write_grad and need_dh
    ctx.has_dw = write_grad and need_dw


def _scaled(grad: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # One pass that scales and casts (an fp32 dW of V x H is large); not in place, so that a
    # retain_graph second backward still sees the unscaled gradient.
    out = torch.empty(grad.shape, dtype=dtype, device=grad.device)
    return torch.mul(grad, scale.to(grad.dtype), out=out)


def _fused_lm_head_backward(ctx, grad_loss, grad_stats, grad_dh, grad_dw):
    # Only loss_sum is differentiable; the stats (log-probs, entropy) are reported, not trained on.
    dh, dw = ctx.saved_tensors
    grad_hidden = _scaled(dh, grad_loss, ctx.hidden_dtype) if ctx.has_dh else None
    grad_weight = _scaled(dw, grad_loss, ctx.weight_dtype) if ctx.has_dw else None
    return (grad_hidden, grad_weight) + (None,) * 21


fused_lm_head_op.register_autograd(_fused_lm_head_backward, setup_context=_fused_lm_head_setup)


# ---- custom op: per-token cross-entropy (reduction="none"), gradient recomputed in backward ------


@torch.library.custom_op("fastcomt::linear_ce_tokens", mutates_args=())
def linear_ce_tokens_op(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    active: torch.Tensor,
    temperature: float,
    need_dh: bool,
    need_dw: bool,
    dw_in_weight_dtype: bool,
    chunk_rows: int,
    block_v: int,
    num_warps: int,
    fp32_logits: bool,
) -> torch.Tensor:
    # A per-token upstream gradient is only known in backward, so forward computes the losses
    # alone (one GEMM) and backward reruns the chunks with that gradient as the row coefficient.
    _, stats, _, _ = run_lm_head_chunks(
        hidden, weight, targets, active, None, None, None, None, None, EPILOGUE_CE, False, False,
        temperature, 0.0, 0.0, 0.0, 0.0, NO_TIS_CAP, dw_in_weight_dtype, chunk_rows, block_v, num_warps,
        fp32_logits,
    )  # fmt: skip
    return stats[STAT_LOSS].clone()


@linear_ce_tokens_op.register_fake
def _linear_ce_tokens_fake(hidden, weight, targets, active, temperature, need_dh, need_dw, dw_in_weight_dtype,
                           chunk_rows, block_v, num_warps, fp32_logits):  # fmt: skip
    return hidden.new_empty(hidden.shape[0], dtype=torch.float32)


def _linear_ce_tokens_setup(ctx, inputs, output) -> None:
    hidden, weight, targets, active = inputs[:4]
    ctx.save_for_backward(hidden, weight, targets, active)
    ctx.options = inputs[4:]


def _linear_ce_tokens_backward(ctx, grad_tokens):
    hidden, weight, targets, active = ctx.saved_tensors
    temperature, need_dh, need_dw, dw_in_weight_dtype, chunk_rows, block_v, num_warps, fp32_logits = ctx.options
    _, _, dh, dw = fused_lm_head_op(
        hidden, weight, targets, active, grad_tokens.to(torch.float32), None, None, None, None, EPILOGUE_CE,
        need_dh, need_dw, temperature, 0.0, 0.0, 0.0, 0.0, NO_TIS_CAP, dw_in_weight_dtype, chunk_rows,
        block_v, num_warps, fp32_logits,
    )  # fmt: skip
    grad_hidden = dh.to(hidden.dtype) if need_dh else None
    grad_weight = dw.to(weight.dtype) if need_dw else None
    return (grad_hidden, grad_weight) + (None,) * 10


linear_ce_tokens_op.register_autograd(_linear_ce_tokens_backward, setup_context=_linear_ce_tokens_setup)
