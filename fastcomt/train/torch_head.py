"""The plain-torch LM-head loss in bounded memory: what `auto` runs on a CPU.

The fused Triton kernels run on a CPU only in Triton's interpreter (about 10x slower); the model's
own head (`loss: torch`) materialises the logits of a whole packed row and keeps them, with their
softmax, for the backward. Here the logits exist one chunk of tokens at a time: each chunk's
`[rows, vocab]` logits are computed, reduced to the loss and dropped, and recomputed in the backward
(activation checkpointing), so the peak is one chunk (`LOGITS_BUDGET_BYTES` of fp32 logits) whatever
the row length or the vocabulary. Rows without a target (prompt tokens, padding) are dropped before
the GEMM, as in the fused kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["LOGITS_BUDGET_BYTES", "chunk_rows_for", "chunked_cross_entropy_sum"]

LOGITS_BUDGET_BYTES = 256 << 20  # fp32 logits of one chunk: 256 MiB, e.g. 440 tokens of a 151k vocabulary


def chunk_rows_for(vocab_size: int, budget_bytes: int | None = None) -> int:
    """Tokens per chunk so that one chunk's fp32 logits fit `budget_bytes` (default LOGITS_BUDGET_BYTES)."""
    budget = LOGITS_BUDGET_BYTES if budget_bytes is None else budget_bytes
    return max(1, budget // (4 * max(int(vocab_size), 1)))


def _chunk_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = hidden @ weight.T
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least fp32 for the softmax
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of `hidden [N, H] @ weight[V, H].T` against `targets [N]` (entries equal to
    `ignore_index` count nothing), one chunk of `chunk_rows` active tokens at a time; autograd to both."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden, weight: expected [N, H] and [V, H], got {list(hidden.shape)} and {list(weight.shape)}"
        )
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets: expected shape [{hidden.shape[0]}], got {list(targets.shape)}")
    active = targets != ignore_index
    h, t = hidden[active], targets[active]
    rows = chunk_rows if chunk_rows is not None else chunk_rows_for(weight.shape[0])
    if rows < 1:
        raise ValueError(f"chunk_rows: expected a positive int, got {rows}")
    total = hidden[:0].sum() + weight[:0].sum()  # 0, attached to both inputs' graphs (no active token: zero grads)
    for start in range(0, h.shape[0], rows):
        total = total + checkpoint(
            _chunk_loss_sum, h[start : start + rows], weight, t[start : start + rows], use_reentrant=False
        )
    return total
