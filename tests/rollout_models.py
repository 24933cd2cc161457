"""Tiny randomly initialised causal LMs and a teacher-forced reference, for the rollout tests."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

VOCAB = 256


def _common(max_positions: int) -> dict:
    # initializer_range 0.2 makes next-token distributions peaked enough for top-p/top-k to bite.
    return dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        initializer_range=0.2,
    )


def tiny_qwen2(seed: int = 0, max_positions: int = 512) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(**_common(max_positions))).eval()


def tiny_llama(seed: int = 0, max_positions: int = 512) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**_common(max_positions))).eval()


def random_ids(n: int, seed: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, VOCAB, (n,), generator=g).tolist())


@torch.no_grad()
def teacher_forced_logprobs(
    model: torch.nn.Module, prefix: tuple[int, ...], completion: tuple[int, ...], temperature: float
) -> torch.Tensor:
    """log_softmax(logits / T)[token] of each completion token, from one full forward (no cache)."""
    ids = torch.tensor(prefix + completion)[None]
    logits = model(input_ids=ids).logits[0].float()
    scale = temperature if temperature > 0 else 1.0
    logp = torch.log_softmax(logits / scale, dim=-1)
    start = len(prefix) - 1
    return logp[start : start + len(completion)].gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)
