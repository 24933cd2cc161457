"""Triton row kernels of the differentiable fused log-prob: one program per token row of a logits chunk.

The raw row ``x = h @ W.T (+ bias)`` becomes the distribution's logits through the LM-head variants
real models use, in the order transformers applies them:

    y = logit_scale * x;   y = softcap * tanh(y / softcap)  (when HAS_SOFTCAP);   z = y / temperature

``logprob_forward_rows`` streams the row once (online max / sum-exp / sum p*(z - m)) and writes the
target log-prob, the entropy and the log-sum-exp. ``logprob_backward_rows`` walks it again with the
saved log-sum-exp and entropy and the two upstream gradients, and writes

    dL/dx_j = dz_j/dx_j * (g_logp * (1[j = target] - p_j) - g_entropy * p_j * (log p_j + H))

with ``dz/dx = logit_scale / temperature * (1 - tanh^2)`` under softcapping. All arithmetic is fp32
on loaded values, cast only at the store, and tanh is written with ``tl.exp`` (the CPU interpreter
mishandles bf16 arithmetic and has no libdevice).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh(y):
    # tanh(y) = sign(y) * (1 - e^{-2|y|}) / (1 + e^{-2|y|}): e^{-2|y|} never overflows.
    e = tl.exp(-2.0 * tl.abs(y))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(y < 0.0, -t, t)


@triton.jit
def _transform(x, logit_scale, softcap, inv_temperature, HAS_SOFTCAP: tl.constexpr):
    """Raw logits -> tempered logits, and tanh(scaled / softcap) for the chain rule (0 without softcap)."""
    y = x * logit_scale
    if HAS_SOFTCAP:
        t = _tanh(y / softcap)
        y = softcap * t
    else:
        t = tl.zeros_like(y)
    return y * inv_temperature, t


@triton.jit
def logprob_forward_rows(
    logits_ptr,  # [rows, V] raw logits of this chunk (bias already added)
    logits_row_stride,
    targets_ptr,  # [rows] int
    logp_ptr,  # [rows] fp32 out
    entropy_ptr,  # [rows] fp32 out
    lse_ptr,  # [rows] fp32 out: log-sum-exp of the tempered logits, saved for the backward
    vocab_size,
    logit_scale,
    softcap,
    inv_temperature,
    HAS_SOFTCAP: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * logits_row_stride
    offsets = tl.arange(0, BLOCK_V)
    # A finite start keeps s * (m_old - m_new) at 0 instead of 0 * inf on the first block.
    m = tl.full((), -1.0e30, tl.float32)
    s = tl.full((), 0.0, tl.float32)
    u = tl.full((), 0.0, tl.float32)
    for start in range(0, vocab_size, BLOCK_V):
        cols = start + offsets
        in_vocab = cols < vocab_size
        x = tl.load(row_ptr + cols, mask=in_vocab, other=0.0).to(tl.float32)
        z, _ = _transform(x, logit_scale, softcap, inv_temperature, HAS_SOFTCAP)
        z = tl.where(in_vocab, z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, axis=0))
        shift = m - m_new
        scale = tl.exp(shift)
        zc = tl.where(in_vocab, z - m_new, 0.0)
        e = tl.where(in_vocab, tl.exp(zc), 0.0)
        # u is kept relative to the running max, so the entropy has no cancellation against a large mean.
        u = scale * (u + s * shift) + tl.sum(e * zc, axis=0)
        s = s * scale + tl.sum(e, axis=0)
        m = m_new
    log_s = tl.log(s)
    lse = m + log_s
    target = tl.load(targets_ptr + row).to(tl.int64)
    x_target = tl.load(row_ptr + target).to(tl.float32)
    z_target, _ = _transform(x_target, logit_scale, softcap, inv_temperature, HAS_SOFTCAP)
    tl.store(logp_ptr + row, z_target - lse)
    tl.store(entropy_ptr + row, log_s - u / s)
    tl.store(lse_ptr + row, lse)


@triton.jit
def logprob_backward_rows(
    logits_ptr,  # [rows, V] raw logits of this chunk, recomputed by the backward's GEMM
    logits_row_stride,
    grad_ptr,  # [rows, V] dL/dx out (may be logits_ptr itself: each slice is read before it is written)
    grad_row_stride,
    targets_ptr,  # [rows] int
    lse_ptr,  # [rows] fp32 saved by the forward
    entropy_ptr,  # [rows] fp32 saved by the forward
    grad_logp_ptr,  # [rows] fp32 upstream gradient of the log-probs (HAS_GRAD_LOGP)
    grad_entropy_ptr,  # [rows] fp32 upstream gradient of the entropies (HAS_GRAD_ENTROPY)
    vocab_size,
    logit_scale,
    softcap,
    inv_temperature,
    HAS_SOFTCAP: tl.constexpr,
    HAS_GRAD_LOGP: tl.constexpr,
    HAS_GRAD_ENTROPY: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * logits_row_stride
    grad_row_ptr = grad_ptr + row * grad_row_stride
    offsets = tl.arange(0, BLOCK_V)
    target = tl.load(targets_ptr + row).to(tl.int64)
    lse = tl.load(lse_ptr + row)
    entropy = tl.load(entropy_ptr + row)
    if HAS_GRAD_LOGP:
        g = tl.load(grad_logp_ptr + row).to(tl.float32)
    else:
        g = 0.0
    if HAS_GRAD_ENTROPY:
        g_h = tl.load(grad_entropy_ptr + row).to(tl.float32)
    else:
        g_h = 0.0
    for start in range(0, vocab_size, BLOCK_V):
        cols = start + offsets
        in_vocab = cols < vocab_size
        x = tl.load(row_ptr + cols, mask=in_vocab, other=0.0).to(tl.float32)
        z, t = _transform(x, logit_scale, softcap, inv_temperature, HAS_SOFTCAP)
        log_p = z - lse
        p = tl.exp(log_p)
        dz = -g * p - g_h * p * (log_p + entropy)
        dz = tl.where(cols == target, dz + g, dz)
        dzdx = logit_scale * inv_temperature
        if HAS_SOFTCAP:
            dzdx = dzdx * (1.0 - t * t)
        tl.store(grad_row_ptr + cols, (dz * dzdx).to(grad_ptr.dtype.element_ty), mask=in_vocab)


def logprob_forward_constants(*, has_softcap: bool, block_v: int, num_warps: int) -> dict[str, object]:
    """The compile-time constants of one launch of ``logprob_forward_rows`` (the launch code's only
    choice: the ahead-of-time compile test enumerates its outputs)."""
    return {"HAS_SOFTCAP": has_softcap, "BLOCK_V": block_v, "num_warps": num_warps}


def logprob_backward_constants(
    *, has_softcap: bool, has_grad_logp: bool, has_grad_entropy: bool, block_v: int, num_warps: int
) -> dict[str, object]:
    """The compile-time constants of one launch of ``logprob_backward_rows``. The driver launches it
    only with at least one upstream gradient, so (False, False) is never a launch."""
    if not (has_grad_logp or has_grad_entropy):
        raise ValueError("has_grad_logp, has_grad_entropy: expected at least one True, got both False")
    return {
        "HAS_SOFTCAP": has_softcap,
        "HAS_GRAD_LOGP": has_grad_logp,
        "HAS_GRAD_ENTROPY": has_grad_entropy,
        "BLOCK_V": block_v,
        "num_warps": num_warps,
    }
