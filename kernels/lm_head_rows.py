"""The Triton row kernel of the fused LM head: one program per token row of a logits chunk.

Pass 1 streams the row in ``BLOCK_V`` slices and keeps, in fp32, the running max ``m``, the
rescaled sum ``s = sum exp(z - m)`` and ``u = sum exp(z - m) * (z - m)``; from them come the
log-sum-exp, the entropy ``log s - u / s`` (measured from the running max, so no cancellation
against a large mean logit) and the max-prob ``1 / s``. The target logit is one scalar load.

Training epilogues (``ce``, ``policy``) then compute the per-token loss and the two scalar
coefficients of its gradient, ``g = dloss/dlogp`` and ``g_h = dloss/dentropy``, and pass 2 walks
the row again and writes, for each logit,

    dloss/dlogit_j = (g * (1[j = target] - p_j) - g_h * p_j * (log p_j + H)) / temperature,

into the gradient buffer: the logits buffer itself when both share a dtype (no extra allocation), or a
buffer in the GEMM dtype when the logits are kept in fp32 for accuracy. The LM-head variants (logit
scale, Gemma's softcap; see logprob_rows._transform) are applied to each loaded logit, and the
gradient is multiplied by their derivative (``1 / temperature`` for the plain head). Everything is loaded,
converted to fp32, computed and cast back only at the store (the CPU interpreter mishandles bf16
arithmetic), and only ``tl.exp``/``tl.log`` are used (no libdevice).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .logprob_rows import _transform

# Host values: plain ints, since they index tensors and pass through the custom op's int schema.
EPILOGUE_SCORE = 0  # forward only: log-prob, entropy, max-prob
EPILOGUE_CE = 1  # loss = -log p(target)
EPILOGUE_POLICY = 2  # clipped surrogate (+ k3 KL, TIS weight, entropy bonus)

# Row statistics written per token, in this order, into a [NUM_STATS, n] fp32 buffer.
STAT_LOGP, STAT_ENTROPY, STAT_MAXPROB, STAT_LOSS = 0, 1, 2, 3
NUM_STATS = 4

# The same values as tl.constexpr, the only kind of global a @triton.jit function may read.
_SCORE = tl.constexpr(EPILOGUE_SCORE)
_CE = tl.constexpr(EPILOGUE_CE)
_LOGP_ROW = tl.constexpr(STAT_LOGP)
_ENTROPY_ROW = tl.constexpr(STAT_ENTROPY)
_MAXPROB_ROW = tl.constexpr(STAT_MAXPROB)
_LOSS_ROW = tl.constexpr(STAT_LOSS)


@triton.jit
def _policy_token(
    logp,
    entropy,
    old,
    adv,
    ref,
    weight,
    eps_low,
    eps_high,
    delta,
    clip_ratio_c,
    beta,
    bias_corrected_kl,
    entropy_coef,
    HAS_REF: tl.constexpr,
):
    """Per-token clipped-surrogate loss and its derivatives w.r.t. log p(target) and entropy.

    ``max(-A min(r, delta), -A clip(r, 1 - eps_low, 1 + eps_high))``, for A < 0 capped at ``-A c``
    (dual clip), times the detached per-token ``weight``; plus ``beta`` times the k3 KL (times r
    when ``bias_corrected_kl`` is 1); minus ``entropy_coef`` times the entropy. Where two branches
    of a max/min tie, the derivative is their mean, as torch.maximum/minimum's
    (kernels/policy_token_loss.py).

    The peers' options are run-time values, not compile-time flags: ``delta = +inf`` and
    ``clip_ratio_c = +inf`` leave every value as without them (no ratio exceeds +inf, no loss reaches
    the +inf cap), and the KL factor is selected with tl.where, so one compiled kernel serves every
    combination of them.
    """
    ratio = tl.exp(logp - old)
    clipped = tl.minimum(tl.maximum(ratio, 1.0 - eps_low), 1.0 + eps_high)
    d_clipped = tl.where((ratio < 1.0 - eps_low) | (ratio > 1.0 + eps_high), 0.0, -adv * ratio)
    above_delta = ratio > delta
    unclipped = tl.where(above_delta, delta, ratio)
    d_unclipped = tl.where(above_delta, 0.0, -adv * ratio)
    first = -adv * unclipped
    second = -adv * clipped
    surrogate = tl.maximum(first, second)
    g = tl.where(first > second, d_unclipped, tl.where(second > first, d_clipped, 0.5 * (d_unclipped + d_clipped)))
    # Dual clip, for negative advantages only (there the cap -A c is positive; +inf when off). The
    # factor is 1 elsewhere so that A = 0 never computes 0 * inf.
    negative = adv < 0.0
    cap = -adv * tl.where(negative, clip_ratio_c, 1.0)
    g = tl.where(negative & (surrogate > cap), 0.0, tl.where(negative & (surrogate == cap), 0.5 * g, g))
    surrogate = tl.where(negative & (surrogate > cap), cap, surrogate)
    loss = weight * surrogate
    g = weight * g
    if HAS_REF:
        # k3 estimator of KL(pi || ref): exp(d) - d - 1 with d = ref - logp.
        d = ref - logp
        ed = tl.exp(d)
        kl = ed - d - 1.0
        # TRL's importance-sampling correction of the KL (bias_corrected_kl = 1): k3 * r,
        # differentiated through r too; 0 gives the plain k3 term.
        corrected = bias_corrected_kl != 0
        kl_factor = tl.where(corrected, ratio, 1.0)
        loss += beta * kl * kl_factor
        g += beta * ((1.0 - ed) * kl_factor + tl.where(corrected, kl * ratio, 0.0))
    loss -= entropy_coef * entropy
    return loss, g, -entropy_coef


# Run-time 0/1 switches: without do_not_specialize Triton would compile a separate kernel for the value 1.
@triton.jit(do_not_specialize=["has_tis", "has_is_weight", "bias_corrected_kl"])
def lm_head_rows_kernel(
    logits_ptr,  # [rows, V] chunk of logits (fp32 by default)
    logits_row_stride,
    grad_ptr,  # [rows, V] dloss/dlogits when WRITE_GRAD; may be logits_ptr itself (in place)
    grad_row_stride,
    targets_ptr,  # [rows] int
    stats_ptr,  # [NUM_STATS, stats_stride] fp32, this chunk's rows start at stats_offset
    stats_stride,
    stats_offset,
    coef_ptr,  # [rows] fp32 per-token gradient coefficient (HAS_COEF)
    adv_ptr,  # [rows] fp32 advantages (policy)
    old_ptr,  # [rows] fp32 old log-probs (HAS_OLD; else the ratio is exactly 1)
    ref_ptr,  # [rows] fp32 reference log-probs (HAS_REF)
    behaviour_ptr,  # [rows] fp32 rollout-engine log-probs (read when has_tis)
    is_weight_ptr,  # [rows] fp32 caller's importance weights on the surrogate (read when has_is_weight)
    vocab_size,
    inv_temperature,
    eps_low,
    eps_high,
    beta,
    entropy_coef,
    tis_cap,
    delta,  # cap on the unclipped ratio; +inf: none
    clip_ratio_c,  # dual-clip bound for negative advantages; +inf: none
    bias_corrected_kl,  # 1: the k3 KL term times the ratio (TRL); 0: plain k3
    has_tis,  # 1: truncated importance weight min(exp(old - behaviour), tis_cap) on the surrogate
    has_is_weight,  # 1: the caller's per-token weight on the surrogate
    logit_scale,  # LM-head variant: logits = softcap * tanh(logit_scale * x / softcap) / temperature
    softcap,
    EPILOGUE: tl.constexpr,  # _SCORE, _CE or the policy epilogue
    WRITE_GRAD: tl.constexpr,
    HAS_COEF: tl.constexpr,
    HAS_OLD: tl.constexpr,
    HAS_REF: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # rows * V can exceed 2**31 on large chunks
    row_ptr = logits_ptr + row * logits_row_stride
    grad_row_ptr = grad_ptr + row * grad_row_stride
    offsets = tl.arange(0, BLOCK_V)

    # Pass 1: online max / sum-exp / sum p*(z - m) over the vocabulary.
    # The finite start value keeps s * (m_old - m_new) at 0 instead of 0 * inf on the first block.
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
        # u is kept relative to the running max: sum e*(z - m_old) becomes sum e*(z - m_new) + s*shift.
        u = scale * (u + s * shift) + tl.sum(e * zc, axis=0)
        s = s * scale + tl.sum(e, axis=0)
        m = m_new
    log_s = tl.log(s)
    lse = m + log_s
    entropy = log_s - u / s
    maxprob = 1.0 / s

    target = tl.load(targets_ptr + row).to(tl.int64)
    z_target, _ = _transform(
        tl.load(row_ptr + target).to(tl.float32), logit_scale, softcap, inv_temperature, HAS_SOFTCAP
    )
    logp = z_target - lse

    tl.store(stats_ptr + _LOGP_ROW * stats_stride + stats_offset + row, logp)
    tl.store(stats_ptr + _ENTROPY_ROW * stats_stride + stats_offset + row, entropy)
    tl.store(stats_ptr + _MAXPROB_ROW * stats_stride + stats_offset + row, maxprob)

    if EPILOGUE != _SCORE:
        if EPILOGUE == _CE:
            loss = -logp
            g = -1.0
            g_h = 0.0
        else:
            adv = tl.load(adv_ptr + row).to(tl.float32)
            if HAS_OLD:
                old = tl.load(old_ptr + row).to(tl.float32)
            else:
                old = logp
            if HAS_REF:
                ref = tl.load(ref_ptr + row).to(tl.float32)
            else:
                ref = logp
            # The surrogate's two optional per-token weights (constants per token: no gradient flows
            # through them). Run-time switches with masked loads rather than constexpr flags: a
            # switched-off weight costs no memory access and is exactly 1, and the compiled variants
            # do not multiply by 4. The truncated importance weight between the trainer's old policy
            # and the engine that sampled the token:
            tis_on = has_tis != 0
            behaviour = tl.load(behaviour_ptr + row, mask=tis_on, other=0.0).to(tl.float32)
            weight = tl.where(tis_on, tl.minimum(tl.exp(old - behaviour), tis_cap), 1.0)
            # and a weight the caller computed (TRL's/verl's truncated or masked rollout ratio).
            is_weight_on = has_is_weight != 0
            weight = weight * tl.where(
                is_weight_on, tl.load(is_weight_ptr + row, mask=is_weight_on, other=1.0).to(tl.float32), 1.0
            )
            loss, g, g_h = _policy_token(
                logp,
                entropy,
                old,
                adv,
                ref,
                weight,
                eps_low,
                eps_high,
                delta,
                clip_ratio_c,
                beta,
                bias_corrected_kl,
                entropy_coef,
                HAS_REF,
            )
        tl.store(stats_ptr + _LOSS_ROW * stats_stride + stats_offset + row, loss)

        if WRITE_GRAD:
            if HAS_COEF:
                coef = tl.load(coef_ptr + row).to(tl.float32)
                g = g * coef
                g_h = g_h * coef
            # Pass 2: write the gradient (in place is safe: each slice is read before it is written).
            for start in range(0, vocab_size, BLOCK_V):
                cols = start + offsets
                in_vocab = cols < vocab_size
                x = tl.load(row_ptr + cols, mask=in_vocab, other=0.0).to(tl.float32)
                z, t = _transform(x, logit_scale, softcap, inv_temperature, HAS_SOFTCAP)
                log_p = z - lse
                p = tl.exp(log_p)
                grad = -g * p - g_h * p * (log_p + entropy)
                # Chain rule through the temperature, the logit scale and the softcap's tanh.
                dz_dx = logit_scale * inv_temperature
                if HAS_SOFTCAP:
                    dz_dx = dz_dx * (1.0 - t * t)
                grad = tl.where(cols == target, grad + g, grad) * dz_dx
                tl.store(grad_row_ptr + cols, grad.to(grad_ptr.dtype.element_ty), mask=in_vocab)


def row_kernel_constants(
    *,
    epilogue: int,
    write_grad: bool,
    has_coef: bool,
    has_old: bool,
    has_ref: bool,
    has_softcap: bool,
    block_v: int,
    num_warps: int,
) -> dict[str, object]:
    """The compile-time constants of one launch of ``lm_head_rows_kernel`` (the launch code's only
    choice: the ahead-of-time compile test enumerates its outputs). Flags an epilogue never reads are
    set False, so equivalent calls share one compiled specialisation.

    The policy epilogue's per-token weights (truncated IS from behaviour log-probs, the caller's IS
    weights) and the peers' options (delta, dual clip, bias-corrected KL) are run-time scalars of the
    kernel, not constants: as constants they would multiply the compiled variants by up to 32."""
    training = epilogue != EPILOGUE_SCORE
    policy = epilogue == EPILOGUE_POLICY
    write_grad = training and write_grad
    return {
        "EPILOGUE": epilogue,
        "WRITE_GRAD": write_grad,
        "HAS_COEF": write_grad and has_coef,  # the coefficient only scales the written gradient
        "HAS_OLD": policy and has_old,
        "HAS_REF": policy and has_ref,
        "HAS_SOFTCAP": has_softcap,
        "BLOCK_V": block_v,
        "num_warps": num_warps,
    }
