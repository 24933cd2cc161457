"""A quick end-to-end check of every fused LM-head function on a tiny problem against its reference.

``run_smoke()`` is what ``fastcomt demo --kernels-smoke`` prints; on a CPU-only machine it runs the Triton interpreter, so the shapes are small and several chunks and vocabulary
blocks are forced to exercise the chunk loop and the ragged last block.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from fastcomt.kernels import (
    linear_cross_entropy,
    linear_logprobs,
    linear_policy_loss,
    lm_head_config,
    reference_linear_cross_entropy,
    reference_linear_logprobs,
    reference_linear_policy_loss,
)


def _max_abs(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return max(float((a.double() - b.double()).abs().max()) for a, b in pairs)


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_smoke(
    batch: int = 4, seq_len: int = 8, hidden_size: int = 32, vocab_size: int = 500, seed: int = 0
) -> list[dict[str, object]]:
    """Rows of (function, shape, max_abs_error over outputs and gradients, seconds of the fused call)."""
    gen = torch.Generator().manual_seed(seed)
    b, t, h, v = batch, seq_len, hidden_size, vocab_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hidden = torch.randn(b, t, h, generator=gen).to(device)
    weight = (torch.randn(v, h, generator=gen) / h**0.5).to(device)
    targets = torch.randint(0, v, (b, t), generator=gen).to(device)
    mask = (torch.rand(b, t, generator=gen) > 0.25).to(device)
    advantages = torch.randn(b, generator=gen).to(device)
    shape = f"B={b} T={t} H={h} V={v}"
    rows: list[dict[str, object]] = []

    def leaves(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return hidden.to(dtype).clone().requires_grad_(), weight.to(dtype).clone().requires_grad_()

    with lm_head_config(chunk_rows=max(1, b * t // 3), block_v=128 if device.type == "cpu" else None):
        fused, seconds = _timed(lambda: linear_logprobs(hidden, weight, targets, mask=mask))
        ref = reference_linear_logprobs(hidden.double(), weight.double(), targets, mask=mask)
        err = _max_abs(list(zip(fused, ref)))
        rows.append({"function": "linear_logprobs", "shape": shape, "max_abs_error": err, "seconds": seconds})

        old = (ref[0] + 0.1 * torch.randn(b, t, generator=gen).to(device)).float()
        ref_lp = (ref[0] + 0.1 * torch.randn(b, t, generator=gen).to(device)).float()

        hf, wf = leaves(torch.float32)
        loss, seconds = _timed(lambda: _backward(linear_cross_entropy(hf, wf, targets)))
        hd, wd = leaves(torch.float64)
        ref_loss = _backward(reference_linear_cross_entropy(hd, wd, targets))
        err = _max_abs([(loss, ref_loss), (hf.grad, hd.grad), (wf.grad, wd.grad)])
        rows.append({"function": "linear_cross_entropy", "shape": shape, "max_abs_error": err, "seconds": seconds})

        opts = dict(loss_type="grpo", beta=0.04, entropy_coef=0.01, temperature=0.9)
        hf, wf = leaves(torch.float32)
        loss, seconds = _timed(
            lambda: _backward(
                linear_policy_loss(hf, wf, targets, mask, advantages, old, ref_logprobs=ref_lp, **opts)[0]
            )
        )
        hd, wd = leaves(torch.float64)
        ref_loss = _backward(
            reference_linear_policy_loss(
                hd, wd, targets, mask, advantages.double(), old.double(), ref_logprobs=ref_lp.double(), **opts
            )[0]
        )
        err = _max_abs([(loss, ref_loss), (hf.grad, hd.grad), (wf.grad, wd.grad)])
        rows.append({"function": "linear_policy_loss", "shape": shape, "max_abs_error": err, "seconds": seconds})
    return rows


def _backward(loss: torch.Tensor) -> torch.Tensor:
    loss.backward()
    return loss.detach()
