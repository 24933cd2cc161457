"""TransformersEngine: log-probs against a teacher-forced forward, greedy against transformers'
generate, seeding, stop/length handling, prefix-sharing accounting, weight updates."""

from __future__ import annotations

import pytest
import torch
from rollout_models import VOCAB, random_ids, teacher_forced_logprobs, tiny_llama, tiny_qwen2

from fastcomt.rollout import GroupRequest, SamplingParams, TransformersEngine, rollout_totals
from fastcomt.rollout.sampling import sampled_logprobs_and_support


def _ccrl_groups(sampling: SamplingParams) -> list[GroupRequest]:
    """Two problems: the first with three plans (shared prompt), the second with one."""
    prompt_a, prompt_b = random_ids(23, 1), random_ids(9, 2)
    plans = [random_ids(n, 10 + n) for n in (6, 11, 3)]
    groups = [
        GroupRequest.from_parts(
            prompt_a, plan, seeds=[100 * i + j for j in range(3)], sampling=sampling, affinity_key="a"
        )
        for i, plan in enumerate(plans)
    ]
    groups.append(
        GroupRequest.from_parts(prompt_b, random_ids(4, 30), seeds=[7, 8], sampling=sampling, affinity_key="b")
    )
    return groups


@pytest.mark.parametrize("make_model", [tiny_qwen2, tiny_llama], ids=["qwen2", "llama"])
@pytest.mark.parametrize(
    "sampling",
    [
        SamplingParams(temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=10),
        SamplingParams(temperature=1.3, max_new_tokens=10),
        SamplingParams(temperature=0.0, max_new_tokens=10),
    ],
    ids=["t0.7-topk-topp", "t1.3", "greedy"],
)
def test_logprobs_equal_teacher_forced_forward(make_model, sampling):
    model = make_model()
    results = TransformersEngine(model).generate(_ccrl_groups(sampling))
    worst = 0.0
    for result in results:
        for sample in result.samples:
            assert len(sample.token_ids) == sampling.max_new_tokens
            ref = teacher_forced_logprobs(model, result.request.prefix_ids, sample.token_ids, sampling.temperature)
            worst = max(worst, (ref - torch.tensor(sample.logprobs)).abs().max().item())
    assert worst <= 1e-5


def test_greedy_equals_transformers_generate():
    model = tiny_qwen2()
    groups = _ccrl_groups(SamplingParams(temperature=0.0, max_new_tokens=12))
    results = TransformersEngine(model).generate(groups)
    for result in results:
        ids = torch.tensor(result.request.prefix_ids)[None]
        with torch.no_grad():
            out = model.generate(
                ids, do_sample=False, max_new_tokens=12, min_new_tokens=12, pad_token_id=0, eos_token_id=None
            )
        expected = tuple(out[0, ids.shape[1] :].tolist())
        assert all(s.token_ids == expected for s in result.samples)


def test_sampled_tokens_stay_in_the_top_k_top_p_support():
    model = tiny_qwen2()
    sampling = SamplingParams(temperature=0.9, top_p=0.6, top_k=5, max_new_tokens=6)
    results = TransformersEngine(model).generate(_ccrl_groups(sampling))
    for result in results:
        for sample in result.samples:
            ids = torch.tensor(result.request.prefix_ids + sample.token_ids)[None]
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0].double()
            start = len(result.request.prefix_ids) - 1
            for t, tok in enumerate(sample.token_ids):
                # Independent fp64 reference of the support: top-5, then the smallest head of
                # the renormalised distribution reaching mass 0.6.
                probs = torch.softmax(logits[start + t] / 0.9, dim=-1)
                order = sorted(range(VOCAB), key=lambda i: -probs[i].item())[:5]
                mass = sum(probs[i].item() for i in order)
                support, acc = [], 0.0
                for i in order:
                    if acc >= 0.6:
                        break
                    support.append(i)
                    acc += probs[i].item() / mass
                assert tok in support


def test_first_token_distribution_matches_filtered_softmax():
    model = tiny_qwen2()
    prefix = random_ids(15, 5)
    sampling = SamplingParams(temperature=0.8, top_p=0.9, top_k=8, max_new_tokens=1)
    n = 3000
    result = TransformersEngine(model).generate([GroupRequest(prefix, tuple(range(n)), sampling)])[0]
    counts = torch.bincount(torch.tensor([s.token_ids[0] for s in result.samples]), minlength=VOCAB).double() / n
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(prefix)[None]).logits[0, -1].double()
    probs = torch.softmax(logits / 0.8, dim=-1)
    top = probs.argsort(descending=True)[:8]
    kept_probs = probs[top] / probs[top].sum()
    before = torch.cumsum(kept_probs, 0) - kept_probs
    expected = torch.zeros(VOCAB, dtype=torch.float64)
    expected[top[before < 0.9]] = kept_probs[before < 0.9]
    expected /= expected.sum()
    # Total variation of 3000 draws from an 8-way distribution: ~0.02 typical; 0.05 is generous.
    assert 0.5 * (counts - expected).abs().sum().item() < 0.05


def test_samples_depend_only_on_their_seed():
    model = tiny_qwen2()
    groups = _ccrl_groups(SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8))
    together = TransformersEngine(model).generate(groups)
    alone = [TransformersEngine(model).generate([g])[0] for g in groups]
    reversed_small_batches = TransformersEngine(model, max_batch_samples=2).generate(groups[::-1])[::-1]
    for a, b, c in zip(together, alone, reversed_small_batches):
        assert [s.token_ids for s in a.samples] == [s.token_ids for s in b.samples] == [s.token_ids for s in c.samples]
        for sa, sb in zip(a.samples, b.samples):
            assert torch.allclose(torch.tensor(sa.logprobs), torch.tensor(sb.logprobs), atol=1e-5)
    # Different seeds of one group do differ.
    assert len({s.token_ids for s in together[0].samples}) > 1


def test_stop_tokens_and_max_new_tokens():
    model = tiny_qwen2()
    stops = tuple(range(0, VOCAB, 9))  # ~11% of the vocabulary: some samples stop, some run out
    sampling = SamplingParams(temperature=1.0, max_new_tokens=9, stop_token_ids=stops)
    prefix = random_ids(12, 3)
    results = TransformersEngine(model).generate([GroupRequest(prefix, tuple(range(40)), sampling)])
    reasons = set()
    for sample in results[0].samples:
        reasons.add(sample.finish_reason)
        assert not any(t in stops for t in sample.token_ids[:-1])
        if sample.finish_reason == "stop":
            assert sample.token_ids[-1] in stops and len(sample.token_ids) <= 9
        else:
            assert len(sample.token_ids) == 9 and sample.token_ids[-1] not in stops
        ref = teacher_forced_logprobs(model, prefix, sample.token_ids, 1.0)
        assert torch.allclose(ref, torch.tensor(sample.logprobs), atol=1e-5)
    assert reasons == {"stop", "length"}


def test_context_limit_ends_generation_with_length():
    model = tiny_qwen2(max_positions=40)
    prefix = random_ids(35, 4)
    result = TransformersEngine(model).generate([GroupRequest(prefix, (1, 2), SamplingParams(max_new_tokens=20))])[0]
    assert all(len(s.token_ids) == 5 and s.finish_reason == "length" for s in result.samples)
    with pytest.raises(ValueError, match="prefix has 40 tokens"):
        TransformersEngine(model).generate([GroupRequest(random_ids(40, 4), (1,), SamplingParams())])


def test_prefill_computes_each_shared_span_once():
    model = tiny_qwen2()
    engine = TransformersEngine(model)
    computed = []

    def count_real_tokens(module, args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        if ids.shape[1] > 1:  # prefill chunks; decode steps feed one token per row
            computed.append(int(mask[:, -ids.shape[1] :].sum()))

    handle = model.register_forward_pre_hook(count_real_tokens, with_kwargs=True)
    try:
        sampling = SamplingParams(max_new_tokens=3)
        groups = _ccrl_groups(sampling)
        results = engine.generate(groups)
    finally:
        handle.remove()
    # By hand: prompt A (23) once + its three plans (6 + 11 + 3) + problem B's prompt and plan (9 + 4).
    expected = 23 + 6 + 11 + 3 + 9 + 4
    assert sum(computed) == expected
    totals = rollout_totals(results)
    assert totals["prefill_tokens"] == expected
    assert totals["prefix_tokens"] == sum(len(g.prefix_ids) * g.num_samples for g in groups)
    assert totals["cached_tokens"] == totals["prefix_tokens"] - expected
    # The first sample of the first plan computed prompt + plan; its siblings reused all of it;
    # the second plan's first sample reused the prompt.
    first, second = results[0].samples, results[1].samples
    assert first[0].cached_tokens == 0 and all(s.cached_tokens == 29 for s in first[1:])
    assert second[0].cached_tokens == 23 and results[1].prefill_tokens == 11


def test_identical_and_nested_prefixes():
    model = tiny_qwen2()
    base = random_ids(10, 6)
    sampling = SamplingParams(temperature=0.9, max_new_tokens=5)
    groups = [
        GroupRequest(base, (1, 2), sampling),
        GroupRequest(base, (3,), sampling),  # identical prefix
        GroupRequest(base + random_ids(4, 7), (4, 5), sampling),  # extends it
        GroupRequest(base[:1], (6,), sampling),  # a one-token prefix inside it
    ]
    results = TransformersEngine(model).generate(groups)
    assert rollout_totals(results)["prefill_tokens"] == 14
    for result in results:
        for sample in result.samples:
            ref = teacher_forced_logprobs(model, result.request.prefix_ids, sample.token_ids, 0.9)
            assert torch.allclose(ref, torch.tensor(sample.logprobs), atol=1e-5)


def test_update_weights_from_tensors_and_checkpoints(tmp_path):
    old, new = tiny_qwen2(seed=0), tiny_qwen2(seed=1)
    groups = _ccrl_groups(SamplingParams(temperature=0.8, max_new_tokens=6))
    expected = TransformersEngine(new, weight_version=5).generate(groups)

    engine = TransformersEngine(old)
    assert engine.weight_version == 0 and engine.generate(groups)[0].samples[0].weight_version == 0
    engine.update_weights(new.state_dict(), version=5)
    got = engine.generate(groups)
    assert [s.token_ids for r in got for s in r.samples] == [s.token_ids for r in expected for s in r.samples]
    assert {s.weight_version for r in got for s in r.samples} == {5}

    new.save_pretrained(tmp_path / "ckpt")  # safetensors directory
    torch.save(new.state_dict(), tmp_path / "weights.pt")
    for path, version in ((tmp_path / "ckpt", 6), (str(tmp_path / "weights.pt"), 7)):
        engine = TransformersEngine(tiny_qwen2(seed=0))
        engine.update_weights(path, version)
        got = engine.generate(groups)
        assert [s.token_ids for r in got for s in r.samples] == [s.token_ids for r in expected for s in r.samples]
        assert engine.weight_version == version


def test_bad_updates_leave_the_model_untouched():
    model = tiny_qwen2()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = TransformersEngine(model)
    name = "model.embed_tokens.weight"
    with pytest.raises(ValueError, match="does not have"):
        engine.update_weights({name: torch.zeros_like(before[name]), "no.such.weight": torch.zeros(1)}, 1)
    with pytest.raises(ValueError, match="shape"):
        engine.update_weights({name: torch.zeros(3, 3)}, 1)
    with pytest.raises(TypeError, match="version"):
        engine.update_weights({name: before[name]}, "1")
    with pytest.raises(ValueError, match="does not exist"):
        engine.update_weights("/no/such/checkpoint", 1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert engine.weight_version == 0


def test_input_validation():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-0.1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(TypeError, match="top_k"):
        SamplingParams(top_k=2.5)
    with pytest.raises(ValueError, match="prefix_ids"):
        GroupRequest((), (1,))
    with pytest.raises(ValueError, match="seeds"):
        GroupRequest((1, 2), ())
    with pytest.raises(TypeError, match=r"prefix_ids\[1\]"):
        GroupRequest((1, True), (1,))
    with pytest.raises(ValueError, match=r"stop_token_ids\[0\]"):
        SamplingParams(stop_token_ids=(-1,))
    engine = TransformersEngine(tiny_qwen2())
    with pytest.raises(TypeError, match="sequence of GroupRequest"):
        engine.generate(GroupRequest((1, 2), (1,)))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.generate([GroupRequest((1, VOCAB), (1,))])
    with pytest.raises(ValueError, match="request_id 'x' is used by another group"):
        engine.generate([GroupRequest((1, 2), (1,), request_id="x"), GroupRequest((3,), (1,), request_id="x")])
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate([GroupRequest((1, 2), (1,))])


def test_support_helper_keeps_the_most_likely_token_when_top_p_is_tiny():
    logits = torch.tensor([[0.0, 3.0, 1.0, 3.0]])
    _, kept = sampled_logprobs_and_support(logits, torch.tensor([1.0]), torch.tensor([0]), torch.tensor([1e-6]))
    # Ties break by token id: of the two most likely tokens, 1 is kept, 3 is not.
    assert kept[0].tolist() == [False, True, False, False]
