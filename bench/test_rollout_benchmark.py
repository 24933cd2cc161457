"""Prefix-shared rollout (TransformersEngine) against ``model.generate(num_return_sequences=G)``.

Shapes: one group, G = 8 samples, prefix 256 tokens, 64 new tokens each (no stop token, so both
sides generate exactly 64), temperature 1, on a small randomly initialised Qwen2. Both sides
return per-token log-probs (``generate`` via ``output_logits``), so they do the same job. The
1-new-token case isolates the prefill (time to first token). One intra-op thread on both sides,
so timings on a shared CPU are less noisy.

Prefill tokens are counted by a forward hook on the model (real tokens of every multi-token
forward), not taken from the engine's own accounting. Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_rollout_benchmark.py --benchmark-only``.
"""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastcomt.rollout import GroupRequest, SamplingParams, TransformersEngine

G, PREFIX = 8, 256
NEW_TOKENS = [64, 1]


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.2,
    )
    yield Qwen2ForCausalLM(cfg).eval()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prefix():
    return tuple(torch.randint(0, 512, (PREFIX,), generator=torch.Generator().manual_seed(1)).tolist())


class PrefillCounter:
    """Real tokens of every forward that feeds more than one position per row (prefill)."""

    def __init__(self, model):
        self.tokens = 0
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:
            mask = kwargs.get("attention_mask")
            self.tokens += int(mask[:, -ids.shape[1] :].sum()) if mask is not None else ids.numel()

    def remove(self):
        self._handle.remove()


def run_engine(engine, prefix, new):
    group = GroupRequest(prefix, tuple(range(G)), SamplingParams(temperature=1.0, max_new_tokens=new))
    return engine.generate([group])


def run_generate(model, prefix, new):
    ids = torch.tensor(prefix)[None]
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            num_return_sequences=G,
            max_new_tokens=new,
            min_new_tokens=new,
            eos_token_id=None,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_logits=True,
        )
        logits = torch.stack(out.logits, dim=1).float()
        tokens = out.sequences[:, ids.shape[1] :]
        return tokens, torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


@pytest.mark.parametrize("new", NEW_TOKENS)
def test_prefix_shared_engine(benchmark, model, prefix, new):
    engine = TransformersEngine(model)
    counter = PrefillCounter(model)
    try:
        results = run_engine(engine, prefix, new)
    finally:
        counter.remove()
    assert all(len(s.token_ids) == new for s in results[0].samples)
    assert counter.tokens == PREFIX
    benchmark.extra_info["prefill_tokens"] = counter.tokens
    benchmark.pedantic(run_engine, args=(engine, prefix, new), rounds=7, warmup_rounds=1)


@pytest.mark.parametrize("new", NEW_TOKENS)
def test_generate_num_return_sequences(benchmark, model, prefix, new):
    counter = PrefillCounter(model)
    try:
        tokens, _ = run_generate(model, prefix, new)
    finally:
        counter.remove()
    assert tokens.shape == (G, new)
    assert counter.tokens == G * PREFIX  # generate expands the prompt before prefilling it
    benchmark.extra_info["prefill_tokens"] = counter.tokens
    benchmark.pedantic(run_generate, args=(model, prefix, new), rounds=7, warmup_rounds=1)
