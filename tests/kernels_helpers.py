"""Shared fixtures-as-functions for the fused LM-head tests: tiny random problems, leaf copies in a
given dtype, and error measures. Shapes are small because the CPU runs the Triton interpreter."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Chunk and block sizes that do not divide the problem sizes below, so every test runs several
# chunks, a short last chunk, and a ragged last vocabulary block.
TINY_CHUNK_ROWS = 7
TINY_BLOCK_V = 128


@dataclass
class Problem:
    hidden: torch.Tensor  # [B, T, H] fp32
    weight: torch.Tensor  # [V, H] fp32
    targets: torch.Tensor  # [B, T] int64
    mask: torch.Tensor  # [B, T] bool, ragged lengths, at least one token per sequence
    advantages: torch.Tensor  # [B]
    token_advantages: torch.Tensor  # [B, T]
    old_logprobs: torch.Tensor  # [B, T] near the current policy, some far enough to clip
    ref_logprobs: torch.Tensor  # [B, T]
    behaviour_logprobs: torch.Tensor  # [B, T]


def make_problem(
    batch: int = 4, seq_len: int = 9, hidden_size: int = 24, vocab_size: int = 333, seed: int = 0
) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, seq_len, hidden_size, generator=gen)
    weight = torch.randn(vocab_size, hidden_size, generator=gen) / hidden_size**0.25
    targets = torch.randint(0, vocab_size, (batch, seq_len), generator=gen)
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
    mask = torch.arange(seq_len)[None, :] < lengths[:, None]
    with torch.no_grad():
        logp = torch.log_softmax(hidden.double() @ weight.double().T, -1).gather(-1, targets[..., None])[..., 0]
    noise = lambda scale: scale * torch.randn(batch, seq_len, generator=gen, dtype=torch.float64)  # noqa: E731
    old = (logp + noise(0.5)).float()
    return Problem(
        hidden=hidden,
        weight=weight,
        targets=targets,
        mask=mask,
        advantages=torch.randn(batch, generator=gen),
        token_advantages=torch.randn(batch, seq_len, generator=gen),
        old_logprobs=old,
        ref_logprobs=(logp + noise(0.3)).float(),
        behaviour_logprobs=(old.double() + noise(0.5)).float(),
    )


def leaves(*tensors: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """Independent leaf copies that require grad, so each run collects its own .grad."""
    return [t.detach().to(dtype).clone().requires_grad_() for t in tensors]


def rel_l2(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return float((actual.double() - expected).norm() / expected.norm().clamp(min=1e-30))


def max_abs(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).abs().max())
