"""The chunked driver of the fused LM head and its registration as torch custom ops.

Per chunk of active token rows: ``logits = h_c @ W.T`` (cuBLAS on GPU, fp32 output by default), one
launch of the row kernel (statistics, per-token loss, and dloss/dlogits written in the GEMM dtype,
over the logits when the dtypes agree), then
``dh_c = dlogits @ W`` and ``dW += dlogits.T @ h_c``. Masked or ignored rows are dropped before the
first GEMM. The gradient is thus finished in the forward call; the autograd backward only scales the
saved ``dh``/``dW`` by the incoming scalar.

The ops are registered with ``torch.library.custom_op`` (fake + autograd) so a ``torch.compile``'d
training step sees them as single opaque nodes. They are called by keyword: every argument after the
tensors and the launch settings has a default. Argument checks live in the public wrappers, except
the target-range check, which needs a host sync and so runs inside the op.
"""

import inspect
import math
from types import SimpleNamespace

import torch

from .config import chunk_dtypes, compute_dtype
from .deferred_checks import mask_rows_on_device
from .gemm import gemm_into
from .lm_head_rows import EPILOGUE_CE, EPILOGUE_SCORE, NUM_STATS, STAT_LOSS, lm_head_rows_kernel, row_kernel_constants
from .triton_mode import check_kernel_mode
from .validation import check_targets_in_range

# tl.minimum(x, cap) with this cap leaves every finite weight untouched ("no truncation").
NO_TIS_CAP = 3.0e38


def _gather(t: torch.Tensor | None, index: torch.Tensor | None) -> torch.Tensor | None:
    if t is None:
        return None
    t = t if index is None else t.index_select(0, index)
    return t.to(torch.float32).contiguous()


def run_lm_head_chunks(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    active: torch.Tensor,
    # launch settings (config.Launch's fields; callers pass **launch._asdict())
    chunk_rows: int,
    block_v: int,
    num_warps: int,
    fp32_logits: bool,
    dw_in_weight_dtype: bool = False,
    sync_free: bool = False,
    # what to compute
    epilogue: int = EPILOGUE_SCORE,
    need_dh: bool = False,
    need_dw: bool = False,
    # per-token inputs of the training epilogues (None: absent)
    coef: torch.Tensor | None = None,
    advantages: torch.Tensor | None = None,
    old_logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    behaviour_logprobs: torch.Tensor | None = None,
    # scalar settings
    temperature: float = 1.0,
    eps_low: float = 0.0,
    eps_high: float = 0.0,
    beta: float = 0.0,
    entropy_coef: float = 0.0,
    tis_cap: float = NO_TIS_CAP,
    # peers' policy-loss semantics (lm_head_rows._policy_token); 0 / None / False: off
    is_weights: torch.Tensor | None = None,
    delta: float = 0.0,
    clip_ratio_c: float = 0.0,
    bias_corrected_kl: bool = False,
    # LM-head variant: logits = softcap * tanh(logit_scale * (h @ W.T) / softcap); softcap 0: none
    logit_scale: float = 1.0,
    softcap: float = 0.0,
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
    write_grad = epilogue != EPILOGUE_SCORE and (need_dh or need_dw)
    cdtype, ldtype, gdtype = chunk_dtypes(hidden.dtype, device, fp32_logits, write_grad)

    check_kernel_mode(lm_head_rows_kernel, device)
    stats = torch.zeros(NUM_STATS, num_rows, dtype=torch.float32, device=device)
    dw_dtype = weight.dtype if dw_in_weight_dtype else torch.float32
    dh_shape = (num_rows, hidden_size) if need_dh and write_grad else (0,)
    dw_shape = (vocab_size, hidden_size) if need_dw and write_grad else (0,)
    # dW is written whole by the first chunk's GEMM (no zero fill); dh too when every row is computed.
    dw = torch.empty(dw_shape, dtype=dw_dtype, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)

    if sync_free:
        # No host sync: every row goes through the GEMMs; inactive rows (and out-of-range targets,
        # counted on the device for raise_deferred_errors) get coefficient 0 and statistics 0.
        active, coef = mask_rows_on_device(targets, active, coef, vocab_size)
        targets = torch.where(active, targets, 0)
        # Padding may hold -inf log-probs; zero them so a dropped row cannot turn 0 * inf into NaN.
        advantages, old_logprobs, ref_logprobs, behaviour_logprobs, is_weights = (
            None if t is None else torch.where(active, t, 0.0)
            for t in (advantages, old_logprobs, ref_logprobs, behaviour_logprobs, is_weights)
        )
        index = None
    else:
        check_targets_in_range(targets, active, vocab_size)
        index = None if bool(active.all()) else active.nonzero().squeeze(1)
    num_active = num_rows if index is None else index.numel()
    dh = (torch.empty if index is None else torch.zeros)(dh_shape, dtype=cdtype, device=device)
    if num_active == 0:
        return loss_sum, stats, dh, dw.zero_()

    w_c = weight.to(cdtype)
    # int64 targets whatever the caller's integer dtype: one specialisation of the row kernel fewer per dtype.
    tgt = (targets if index is None else targets.index_select(0, index)).to(torch.int64).contiguous()
    coef_a = _gather(coef, index)
    adv_a = _gather(advantages, index)
    old_a = _gather(old_logprobs, index)
    ref_a = _gather(ref_logprobs, index)
    beh_a = _gather(behaviour_logprobs, index)
    isw_a = _gather(is_weights, index)
    act_stats = stats if index is None else torch.empty(NUM_STATS, num_active, dtype=torch.float32, device=device)
    dummy = act_stats  # stands in for absent optional pointers; never read (constexpr flags, masked loads)

    rows = max(1, min(chunk_rows, num_active))
    logits_buf = torch.empty(rows, vocab_size, dtype=ldtype, device=device)
    # dh/dW GEMMs take operands in cdtype: with fp32 logits and bf16/fp16 GEMMs the row kernel writes
    # the gradient into its own buffer; otherwise over the logits, in place.
    grad_buf = logits_buf
    if gdtype != ldtype:
        grad_buf = torch.empty(rows, vocab_size, dtype=gdtype, device=device)
    inv_temperature = 1.0 / temperature
    for start in range(0, num_active, rows):
        end = min(start + rows, num_active)
        rows_c = end - start
        h_c = hidden[start:end] if index is None else hidden.index_select(0, index[start:end])
        h_c = h_c.to(cdtype)
        logits = logits_buf[:rows_c]
        grad = grad_buf[:rows_c]
        gemm_into(logits, h_c, w_c.T, accumulate=False)
        lm_head_rows_kernel[(rows_c,)](
            logits_ptr=logits,
            logits_row_stride=logits.stride(0),
            grad_ptr=grad,
            grad_row_stride=grad.stride(0),
            targets_ptr=tgt[start:end],
            stats_ptr=act_stats,
            stats_stride=act_stats.stride(0),
            stats_offset=start,
            coef_ptr=coef_a[start:end] if coef_a is not None else dummy,
            adv_ptr=adv_a[start:end] if adv_a is not None else dummy,
            old_ptr=old_a[start:end] if old_a is not None else dummy,
            ref_ptr=ref_a[start:end] if ref_a is not None else dummy,
            behaviour_ptr=beh_a[start:end] if beh_a is not None else dummy,
            is_weight_ptr=isw_a[start:end] if isw_a is not None else dummy,
            vocab_size=vocab_size,
            inv_temperature=inv_temperature,
            eps_low=eps_low,
            eps_high=eps_high,
            beta=beta,
            entropy_coef=entropy_coef,
            tis_cap=tis_cap,
            # The policy's weights and the peers' options are run-time scalars (one compiled kernel for
            # all of them; see row_kernel_constants): +inf turns the delta cap and the dual clip off.
            delta=delta if delta > 0 else math.inf,
            clip_ratio_c=clip_ratio_c if clip_ratio_c > 0 else math.inf,
            bias_corrected_kl=int(bias_corrected_kl),
            has_tis=int(beh_a is not None),
            has_is_weight=int(isw_a is not None),
            logit_scale=logit_scale,
            softcap=softcap if softcap > 0 else 1.0,
            **row_kernel_constants(
                epilogue=epilogue,
                write_grad=write_grad,
                has_coef=coef_a is not None,
                has_old=old_a is not None,
                has_ref=ref_a is not None,
                has_softcap=softcap > 0,
                block_v=block_v,
                num_warps=num_warps,
            ),
        )
        if not write_grad:
            continue
        if need_dh:
            if index is None:
                torch.matmul(grad, w_c, out=dh[start:end])
            else:
                dh.index_copy_(0, index[start:end], grad @ w_c)
        if need_dw:
            gemm_into(dw, grad.T, h_c, accumulate=start > 0)

    if index is not None:
        stats[:, index] = act_stats
    elif sync_free:
        stats.copy_(torch.where(active, stats, 0.0))
    if epilogue != EPILOGUE_SCORE:
        losses = act_stats[STAT_LOSS]
        loss_sum = (losses * coef_a).sum() if coef_a is not None else losses.sum()
    return loss_sum, stats, dh, dw


# ---- custom op: loss_sum + stats with the gradient finished in forward -------------------------
#
# The op is run_lm_head_chunks itself: its Python signature (names, types, defaults) is the one place
# the argument list is written; the schema is inferred from it, and the fake and autograd functions
# below read the arguments back by name through the same signature.

fused_lm_head_op = torch.library.custom_op("fastcomt::fused_lm_head", run_lm_head_chunks, mutates_args=())


def _bind(fn, args: tuple, kwargs: dict | None = None) -> SimpleNamespace:
    """``fn``'s arguments by name, defaults filled in, from a call's args/kwargs (the fake) or from
    autograd's ``inputs`` tuple (setup_context), which lists every argument in signature order."""
    bound = inspect.signature(fn).bind(*args, **(kwargs or {}))
    bound.apply_defaults()
    return SimpleNamespace(**bound.arguments)


def _gradients_by_name(fn, **grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """What autograd's backward returns: one entry per argument of ``fn``, in signature order, the
    given gradients by name and None elsewhere."""
    return tuple(grads.get(name) for name in inspect.signature(fn).parameters)


def _output_shapes(a: SimpleNamespace) -> tuple[tuple[int, ...], tuple[int, ...], torch.dtype, torch.dtype]:
    """Shapes and dtypes of (dh, dw): empty when that gradient is not requested."""
    num_rows, hidden_size = a.hidden.shape
    vocab_size = a.weight.shape[0]
    write_grad = a.epilogue != EPILOGUE_SCORE
    dh_shape = (num_rows, hidden_size) if a.need_dh and write_grad else (0,)
    dw_shape = (vocab_size, hidden_size) if a.need_dw and write_grad else (0,)
    dw_dtype = a.weight.dtype if a.dw_in_weight_dtype else torch.float32
    return dh_shape, dw_shape, compute_dtype(a.hidden.dtype, a.hidden.device), dw_dtype


@fused_lm_head_op.register_fake
def _fused_lm_head_fake(*args, **kwargs):
    a = _bind(run_lm_head_chunks, args, kwargs)
    dh_shape, dw_shape, dh_dtype, dw_dtype = _output_shapes(a)
    loss_sum = a.hidden.new_empty((), dtype=torch.float32)
    stats = a.hidden.new_empty(NUM_STATS, a.hidden.shape[0], dtype=torch.float32)
    return loss_sum, stats, a.hidden.new_empty(dh_shape, dtype=dh_dtype), a.weight.new_empty(dw_shape, dtype=dw_dtype)


def _fused_lm_head_setup(ctx, inputs, output) -> None:
    a = _bind(run_lm_head_chunks, inputs)
    _, _, dh, dw = output
    ctx.save_for_backward(dh, dw)
    ctx.hidden_dtype = a.hidden.dtype
    ctx.weight_dtype = a.weight.dtype
    write_grad = a.epilogue != EPILOGUE_SCORE
    ctx.has_dh = write_grad and a.need_dh
    ctx.has_dw = write_grad and a.need_dw


def _scaled(grad: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # One pass that scales and casts (an fp32 dW of V x H is large); not in place, so that a
    # retain_graph second backward still sees the unscaled gradient.
    out = torch.empty(grad.shape, dtype=dtype, device=grad.device)
    return torch.mul(grad, scale.to(grad.dtype), out=out)


def _fused_lm_head_backward(ctx, grad_loss, grad_stats, grad_dh, grad_dw):
    # Only loss_sum is differentiable; the stats (log-probs, entropy) are reported, not trained on.
    dh, dw = ctx.saved_tensors
    return _gradients_by_name(
        run_lm_head_chunks,
        hidden=_scaled(dh, grad_loss, ctx.hidden_dtype) if ctx.has_dh else None,
        weight=_scaled(dw, grad_loss, ctx.weight_dtype) if ctx.has_dw else None,
    )


fused_lm_head_op.register_autograd(_fused_lm_head_backward, setup_context=_fused_lm_head_setup)


# ---- custom op: per-token cross-entropy (reduction="none"), gradient recomputed in backward ------


def ce_token_losses(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    active: torch.Tensor,
    chunk_rows: int,
    block_v: int,
    num_warps: int,
    fp32_logits: bool,
    dw_in_weight_dtype: bool = False,
    sync_free: bool = False,
    temperature: float = 1.0,
    need_dh: bool = False,
    need_dw: bool = False,
    logit_scale: float = 1.0,
    softcap: float = 0.0,
) -> torch.Tensor:
    """Per-token cross-entropy ``[N]`` fp32 (0 on inactive rows); the op's signature, like
    run_lm_head_chunks's, is written only here."""
    # A per-token upstream gradient is only known in backward, so forward computes the losses
    # alone (one GEMM) and backward reruns the chunks with that gradient as the row coefficient.
    _, stats, _, _ = run_lm_head_chunks(
        hidden=hidden,
        weight=weight,
        targets=targets,
        active=active,
        chunk_rows=chunk_rows,
        block_v=block_v,
        num_warps=num_warps,
        fp32_logits=fp32_logits,
        sync_free=sync_free,
        epilogue=EPILOGUE_CE,
        temperature=temperature,
        logit_scale=logit_scale,
        softcap=softcap,
    )
    return stats[STAT_LOSS].clone()


linear_ce_tokens_op = torch.library.custom_op("fastcomt::linear_ce_tokens", ce_token_losses, mutates_args=())


@linear_ce_tokens_op.register_fake
def _ce_token_losses_fake(*args, **kwargs):
    hidden = _bind(ce_token_losses, args, kwargs).hidden
    return hidden.new_empty(hidden.shape[0], dtype=torch.float32)


def _ce_token_losses_setup(ctx, inputs, output) -> None:
    options = vars(_bind(ce_token_losses, inputs))
    tensors = [options.pop(name) for name in ("hidden", "weight", "targets", "active")]
    ctx.save_for_backward(*tensors)
    ctx.options = options  # the launch and scalar settings, by name


def _ce_token_losses_backward(ctx, grad_tokens):
    hidden, weight, targets, active = ctx.saved_tensors
    options = ctx.options
    _, _, dh, dw = fused_lm_head_op(
        hidden, weight, targets, active, epilogue=EPILOGUE_CE, coef=grad_tokens.to(torch.float32), **options
    )
    return _gradients_by_name(
        ce_token_losses,
        hidden=dh.to(hidden.dtype) if options["need_dh"] else None,
        weight=dw.to(weight.dtype) if options["need_dw"] else None,
    )


linear_ce_tokens_op.register_autograd(_ce_token_losses_backward, setup_context=_ce_token_losses_setup)
