"""Float32 ground truth for the error columns, computed once per shape with ``fastcomt.kernels``'
plain-torch references on the bf16 inputs upcast to float32 (TF32 off).

At N=32768, V=152064 the references' full float32 logits and their softmax would need ~100 GB, so
the truth is computed over chunks of whole sequences. The losses are sums of per-chunk terms once each
chunk's reference loss is reweighted (active-token share for dapo/bnpo, sequence share for
grpo/dr_grpo, token-count share for cross-entropy), so each chunk's backward adds its exact share of
dh and dW; no formula is re-derived here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch

from bench.eager import PolicyConfig
from bench.inputs import IGNORE_INDEX, BenchInputs
from bench.precision import exact_fp32_matmul

# Elements of one [rows, V] float32 buffer per chunk; the references hold a few such buffers at once.
DEFAULT_CHUNK_ELEMS = 1 << 28


@dataclass
class Truth:
    """Float32 results one op is judged against (None where the op does not produce that output)."""

    loss: float | None = None
    dh: torch.Tensor | None = None  # [N, H]
    dw: torch.Tensor | None = None  # [V, H]
    logp: torch.Tensor | None = None  # [N]
    entropy: torch.Tensor | None = None  # [N]
    maxprob: torch.Tensor | None = None  # [N]


def _leaves(inputs: BenchInputs) -> tuple[torch.Tensor, torch.Tensor]:
    w32 = inputs.weight.detach().float().requires_grad_(True)
    dh = torch.zeros(inputs.shape.n, inputs.shape.h, dtype=torch.float32, device=w32.device)
    return w32, dh


def _as_sequences(t: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[rows, ...] of whole sequences as [rows / seq_len, seq_len, ...]."""
    return t.view(-1, seq_len, *t.shape[1:])


def policy_truth(
    inputs: BenchInputs, kernels: ModuleType, cfg: PolicyConfig, chunk_elems: int = DEFAULT_CHUNK_ELEMS
) -> Truth:
    """Loss, dh and dW of ``reference_linear_policy_loss`` in float32."""
    seqs, seq_len, v = inputs.num_sequences, inputs.seq_len, inputs.shape.v
    per_chunk = max(1, chunk_elems // (seq_len * v))
    mask_bt = inputs.bt(inputs.mask)
    total_active = max(1, int(inputs.mask.sum()))
    w32, dh = _leaves(inputs)
    loss = 0.0
    with exact_fp32_matmul(), torch.enable_grad():
        for s0 in range(0, seqs, per_chunk):
            s1 = min(seqs, s0 + per_chunk)
            rows = slice(s0 * seq_len, s1 * seq_len)
            h32 = _as_sequences(inputs.hidden.detach()[rows].float(), seq_len).requires_grad_(True)
            chunk_loss, _ = kernels.reference_linear_policy_loss(
                h32,
                w32,
                _as_sequences(inputs.targets[rows], seq_len),
                mask_bt[s0:s1],
                inputs.advantages[s0:s1],
                _as_sequences(inputs.old_logprobs[rows], seq_len),
                loss_type=cfg.loss_type,
                eps_low=cfg.eps_low,
                eps_high=cfg.eps_high,
            )
            if cfg.loss_type in ("dapo", "bnpo"):
                share = int(mask_bt[s0:s1].sum()) / total_active
            else:  # grpo and dr_grpo average over sequences
                share = (s1 - s0) / seqs
            (chunk_loss * share).backward()
            loss += chunk_loss.item() * share
            dh[rows] = h32.grad.reshape(-1, inputs.shape.h)
    return Truth(loss=loss, dh=dh, dw=w32.grad)


def ce_truth(inputs: BenchInputs, kernels: ModuleType, chunk_elems: int = DEFAULT_CHUNK_ELEMS) -> Truth:
    """Mean cross-entropy over non-ignored tokens, dh and dW, from ``reference_linear_cross_entropy``."""
    n, v = inputs.shape.n, inputs.shape.v
    rows_per = max(1, chunk_elems // v)
    count = max(1, int((inputs.targets_ce != IGNORE_INDEX).sum()))
    w32, dh = _leaves(inputs)
    loss = 0.0
    with exact_fp32_matmul(), torch.enable_grad():
        for r0 in range(0, n, rows_per):
            rows = slice(r0, min(n, r0 + rows_per))
            h32 = inputs.hidden.detach()[rows].float().requires_grad_(True)
            chunk_sum = kernels.reference_linear_cross_entropy(h32, w32, inputs.targets_ce[rows], reduction="sum")
            (chunk_sum / count).backward()
            loss += chunk_sum.item() / count
            dh[rows] = h32.grad
    return Truth(loss=loss, dh=dh, dw=w32.grad)


def logprobs_truth(inputs: BenchInputs, kernels: ModuleType, chunk_elems: int = DEFAULT_CHUNK_ELEMS) -> Truth:
    """Per-token log-prob, entropy and max-prob from ``reference_linear_logprobs`` (0 on padding)."""
    n, v = inputs.shape.n, inputs.shape.v
    rows_per = max(1, chunk_elems // v)
    w32 = inputs.weight.detach().float()
    outs = [torch.empty(n, dtype=torch.float32, device=w32.device) for _ in range(3)]
    with exact_fp32_matmul(), torch.no_grad():
        for r0 in range(0, n, rows_per):
            rows = slice(r0, min(n, r0 + rows_per))
            chunk = kernels.reference_linear_logprobs(
                inputs.hidden.detach()[rows].float(), w32, inputs.targets[rows], mask=inputs.mask[rows]
            )
            for out, part in zip(outs, chunk):
                out[rows] = part
    return Truth(logp=outs[0], entropy=outs[1], maxprob=outs[2])
