"""Seeded next-token sampling with per-row temperature, top-k and top-p, and the sampled log-probs.

Reproducibility without per-row generator objects: the uniform a sample uses at decoding step
``t`` is the ``t``-th output of a SplitMix64 stream seeded with the sample's seed (a counter-based
generator). It depends only on ``(seed, t)``, so a sample's tokens do not depend on which other
samples share its batch, on batch order, or on the device. Each row draws its token by inverse
CDF over its kept probabilities in vocabulary order: one canonical procedure per row, whatever
the other rows ask for.

Log-probs follow the convention of ``types``: ``log_softmax(logits / T)`` over the full vocabulary,
before filtering; greedy rows (``T == 0``) use ``T = 1``.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def splitmix64_uniform(seed: int, step: int) -> float:
    """Uniform in [0, 1) for ``(seed, step)``: output ``step`` of SplitMix64 seeded with ``seed``."""
    z = (seed + (step + 1) * _GOLDEN_GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    # Top 53 bits fill a double's mantissa exactly.
    return (z >> 11) * (1.0 / (1 << 53))


def sample_uniforms(seeds: list[int], steps: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor([splitmix64_uniform(s, t) for s, t in zip(seeds, steps)], dtype=torch.float64, device=device)


def sampled_logprobs_and_support(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row log-probs over the vocabulary and the sampling support.

    logits: [N, V]; temperature, top_p: [N] float; top_k: [N] long with 0 meaning "no top-k".
    Returns (logprobs [N, V], kept [N, V] bool), both in vocabulary order. ``kept`` is the top-k
    set (ties broken by token id) intersected with the smallest head of the top-k-renormalised
    distribution whose mass reaches ``top_p``; the most likely token is always kept.
    """
    logits = logits.float()
    vocab = logits.shape[-1]
    scale = torch.where(temperature > 0, temperature, torch.ones_like(temperature)).to(logits.dtype)
    logprobs = torch.log_softmax(logits / scale[:, None], dim=-1)
    filtered = (top_k > 0) | (top_p < 1.0)
    if not bool(filtered.any()):
        # No row filters: skip the sort (the common RL setting, T = 1 and no top-k/top-p).
        return logprobs, torch.ones_like(logprobs, dtype=torch.bool)
    sorted_lp, sorted_ids = torch.sort(logprobs, dim=-1, descending=True, stable=True)
    rank = torch.arange(vocab, device=logits.device)[None, :]
    k = torch.where(top_k > 0, top_k, torch.full_like(top_k, vocab))
    kept_sorted = rank < k[:, None]
    probs = sorted_lp.double().exp() * kept_sorted
    probs = probs / probs.sum(dim=-1, keepdim=True)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    kept_sorted &= mass_before < top_p.double()[:, None]
    kept = torch.zeros_like(kept_sorted).scatter_(-1, sorted_ids, kept_sorted)
    return logprobs, kept


def sample_next_tokens(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    uniforms: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row; return (token ids [N] long, their log-probs [N] float32).

    uniforms: [N] in [0, 1), one per row (``sample_uniforms``). Each row inverts the CDF of its
    kept probabilities in vocabulary order, the same procedure whatever the other rows ask for.
    Greedy rows (temperature 0) take the most likely token (lowest id on ties) and ignore their
    uniform.
    """
    logprobs, kept = sampled_logprobs_and_support(logits, temperature, top_k, top_p)
    cdf = torch.cumsum(logprobs.double().exp() * kept, dim=-1)
    target = uniforms.to(cdf.dtype) * cdf[:, -1]
    # right=True returns the first index whose cdf exceeds the target, which always has positive
    # weight, so a token outside the support can never be drawn.
    drawn = torch.searchsorted(cdf, target[:, None], right=True).squeeze(-1).clamp_(max=logits.shape[-1] - 1)
    tokens = torch.where(temperature > 0, drawn, logprobs.argmax(dim=-1))
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)
