"""Response formats: prompt/plan/marker ids, splitting, format checks, token offsets, two-stage generation."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastcomt import formats as F
from fastcomt.comt.chat import sft_messages
from fastcomt.comt.cot import cot_target
from fastcomt.comt.offline import offline_meta_thought
from fastcomt.formats import token_ids as token_ids_module
from fastcomt.rollout import GroupRequest, GroupResult, RolloutEngine, Sample, SamplingParams, TransformersEngine
from fastcomt.tasks import Problem, load_benchmark, synthetic_problems
from fastcomt.tokenizer import encode_chat_examples, train_tokenizer

PLAN = """Variables:
item_count = 3
item_price = 5
Steps:
1. items_cost = item_count * item_price
2. total = items_cost + 4
Answer: total"""
EXECUTION = "items_cost = 3 * 5 = 15\ntotal = 15 + 4 = 19\nThe answer is 19."
QUESTION = "Ana buys 3 pens for 5 dollars each and a pad for 4 dollars. How much does she pay?"


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return synthetic_problems(4, seed=1)


@pytest.fixture(scope="module")
def tokenizer(problems):
    gsm = list(load_benchmark("gsm8k")[:2])
    texts = [p.question for p in problems + gsm] + [cot_target(p) for p in gsm]
    texts += [F.render_response("comt", p.solution, offline_meta_thought(p).render()) for p in problems]
    texts += [QUESTION, PLAN, EXECUTION, "Janet’s café", "Be brief."]
    return train_tokenizer(texts, kind="number_word", number_max=1000, vocab_size=4096)


# --- layout and text checks ------------------------------------------------------------------------


def test_render_and_split_roundtrip():
    text = F.render_response("comt", EXECUTION + "\n", PLAN + "\n\n")
    assert text == PLAN + "\nExecution:\n" + EXECUTION
    parts = F.split_response(text, "comt")
    assert (parts.plan, parts.execution, parts.answer, parts.has_marker) == (PLAN, EXECUTION, "19", True)
    assert F.render_response("cot", EXECUTION) == EXECUTION
    with pytest.raises(ValueError, match="plan"):
        F.render_response("comt", EXECUTION)
    with pytest.raises(ValueError, match="fmt"):
        F.render_response("tot", EXECUTION)


@pytest.mark.parametrize(
    "text, plan, execution, answer, marker",
    [
        # marker line with stray spaces still splits
        (
            "1. a = b + c\n  Execution:  \nx = 1 + 2 = 3\nThe answer is 3.",
            "1. a = b + c",
            "x = 1 + 2 = 3\nThe answer is 3.",
            "3",
            True,
        ),
        # "Execution:" inside a step line is no marker; the marker line after it is
        (
            "1. Execution: add b and c\nExecution:\nThe answer is 7.",
            "1. Execution: add b and c",
            "The answer is 7.",
            "7",
            True,
        ),
        # no marker: all plan, no execution, hence no answer (even with a number in the plan)
        ("Steps:\n1. a = b + 12\nAnswer: a", "Steps:\n1. a = b + 12\nAnswer: a", "", None, False),
        # the first marker splits; a second one stays in the execution
        ("p\nExecution:\nq = 2\nExecution:\nThe answer is 2.", "p", "q = 2\nExecution:\nThe answer is 2.", "2", True),
    ],
)
def test_split_response_hand_cases(text, plan, execution, answer, marker):
    parts = F.split_response(text, "comt")
    assert (parts.plan, parts.execution, parts.answer, parts.has_marker) == (plan, execution, answer, marker)


def test_split_response_cot_is_whole_text():
    parts = F.split_response("  a = 2 + 3 = 5\nThe answer is 5.\n", "cot")
    assert (parts.plan, parts.execution, parts.answer, parts.has_marker) == (
        None,
        "a = 2 + 3 = 5\nThe answer is 5.",
        "5",
        False,
    )


@pytest.mark.parametrize(
    "plan, execution, ok, leaked, steps, reason",
    [
        (PLAN, EXECUTION, True, (), 2, None),
        # 15 is computed (3 * 5), not stated in the question
        (PLAN.replace("items_cost + 4", "15 + 4"), EXECUTION, False, ("15",), 2, "computes numbers: 15"),
        # 100 (percent) and 60 (minutes) are allowed constants; step numbers are not quantities
        (PLAN.replace("items_cost + 4", "items_cost * 100 / 60"), EXECUTION, True, (), 2, None),
        # no numbered steps
        ("Variables:\nitem_count = 3\nAnswer: item_count", EXECUTION, False, (), 0, "no numbered steps"),
        # the execution stops without an answer statement
        (PLAN, "items_cost = 3 * 5 = 15", False, (), 2, "answer statement"),
        # an answer followed by more work does not end the execution
        (PLAN, "The answer is 19.\ntotal = 15 + 4 = 19", False, (), 2, "answer statement"),
    ],
)
def test_check_format_comt_hand_cases(plan, execution, ok, leaked, steps, reason):
    check = F.check_format(plan + "\nExecution:\n" + execution, "comt", QUESTION)
    assert (check.ok, check.leaked_numbers, check.plan_steps) == (ok, leaked, steps)
    if reason is None:
        assert check.reasons == ()
    else:
        assert any(reason in r for r in check.reasons), check.reasons


def test_check_format_without_marker_and_cot():
    missing = F.check_format(PLAN, "comt", QUESTION)
    assert not missing.ok and "no execution marker" in missing.reasons
    assert F.check_format(EXECUTION, "cot", QUESTION).ok
    assert F.check_format("#### 19", "cot", QUESTION).ok
    assert not F.check_format("total = 15 + 4 = 19", "cot", QUESTION).ok


# --- token ids ----------------------------------------------------------------------------------


def test_prompt_ids_are_the_sft_prompt(tokenizer):
    ids = F.prompt_ids(tokenizer, QUESTION)
    # the same ids the SFT data builder puts before the trained response
    sft_ids, trained = encode_chat_examples(tokenizer, [sft_messages(QUESTION, PLAN)])[0]
    assert ids == sft_ids[: trained.index(True)]
    assert tokenizer.decode(ids) == f"<|user|>\n{QUESTION}<|end|>\n<|assistant|>\n"
    with_system = F.prompt_ids(tokenizer, QUESTION, system="Be brief.")
    assert tokenizer.decode(with_system).startswith("<|system|>\nBe brief.<|end|>\n<|user|>")


def test_marker_and_stop_ids(tokenizer):
    marker = F.marker_ids(tokenizer)
    assert tokenizer.decode(marker) == F.EXECUTION_MARKER
    assert tokenizer.decode([F.marker_stop_token_id(tokenizer)]) == "Execution"
    assert F.stop_token_ids(tokenizer) == (tokenizer.convert_tokens_to_ids("<|end|>"),)


def test_marker_needs_a_tokenizer_that_spells_it():
    narrow = train_tokenizer(["one two three"], kind="number_word", number_max=10, vocab_size=300)
    with pytest.raises(ValueError, match="execution marker"):
        F.marker_ids(narrow)


def test_tokenizer_without_chat_template_is_refused(tokenizer):
    bare = train_tokenizer(["hello world"], kind="number_word", number_max=10, vocab_size=300)
    bare.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        F.prompt_ids(bare, QUESTION)


@pytest.mark.parametrize("kind", ["number_word", "bpe"])
def test_token_char_offsets_match_the_tokenizer(tokenizer, kind):
    if kind == "bpe":  # byte-level BPE splits unseen multi-byte characters over byte tokens
        tokenizer = train_tokenizer([EXECUTION, QUESTION], kind="bpe", vocab_size=400)
    text = EXECUTION + "\nJanet’s café" + (" ≥ 12" if kind == "bpe" else "")  # number_word: no unseen words
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"] + [tokenizer.eos_token_id]
    decoded, offsets = F.token_char_offsets(tokenizer, ids)
    assert decoded == text
    # Where a token holds whole characters our offsets equal the tokenizer's own; a byte token in the
    # middle of a character is empty and the one completing it covers the character.
    expected = [tuple(o) for o in enc["offset_mapping"]]
    partial = 0
    for k, (mine, ref) in enumerate(zip(offsets, expected)):
        if "\ufffd" in tokenizer.decode([ids[k]]):
            partial += 1
        else:
            assert mine == ref, (k, tokenizer.decode([ids[k]]))
    assert partial > 0 if kind == "bpe" else partial == 0
    assert offsets[-1] == (len(decoded), len(decoded))  # the EOS is zero-width
    assert "".join(decoded[a:b] for a, b in offsets) == decoded


def _prefix_decoding_offsets(tokenizer, ids):
    """Reference: token k ends where the decoding of ids[:k+1] ends (pending U+FFFD not counted)."""
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    out, prev = [], 0
    for k in range(len(ids)):
        prefix = tokenizer.decode(ids[: k + 1], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        end = len(prefix) if text.startswith(prefix) else len(prefix.rstrip("\ufffd"))
        end = max(end, prev)
        out.append((prev, end))
        prev = end
    return text, out


def test_token_char_offsets_windowed_equal_prefix_decoding(monkeypatch):
    import random

    tokenizer = train_tokenizer([EXECUTION, QUESTION, PLAN], kind="bpe", vocab_size=400)
    text = EXECUTION + " 日本語の café ≥ 12 " + EXECUTION
    ids = F.text_ids(tokenizer, text) + [tokenizer.eos_token_id]
    with monkeypatch.context() as m:  # valid text never needs the quadratic path
        m.setattr(token_ids_module, "_prefix_offsets", lambda *a: pytest.fail("fell back to prefix decoding"))
        assert F.token_char_offsets(tokenizer, ids) == _prefix_decoding_offsets(tokenizer, ids)
    rng = random.Random(0)  # arbitrary ids: stray and invalid bytes, specials anywhere
    for _ in range(40):
        ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 30))]
        assert F.token_char_offsets(tokenizer, ids) == _prefix_decoding_offsets(tokenizer, ids)


# --- generation with a scripted engine ------------------------------------------------------------


class ScriptedEngine(RolloutEngine):
    """Answers each group from a script: prefix -> completion ids; log-probs -0.1 per token."""

    def __init__(self, script: dict[tuple[int, ...], list[int]]):
        self.script = script
        self.calls: list[list[GroupRequest]] = []

    @property
    def weight_version(self) -> int:
        return 0

    def generate(self, groups):
        self.calls.append(list(groups))
        out = []
        for g in groups:
            ids = tuple(self.script[g.prefix_ids])
            samples = tuple(Sample(ids, (-0.1,) * len(ids), "stop", 0, 0, s) for s in g.seeds)
            out.append(GroupResult(g, samples))
        return out

    def update_weights(self, weights, version):
        raise NotImplementedError

    def flush_cache(self):
        pass

    def close(self):
        pass


def _char_ids(tokenizer, text: str) -> list[int]:
    """One id per character: a spelling the tokenizer itself would never choose."""
    return [i for ch in text for i in F.text_ids(tokenizer, ch)]


def test_generate_comt_keeps_sampled_plan_ids(tokenizer, problems):
    p = problems[0]
    prompt = tuple(F.prompt_ids(tokenizer, p.question))
    plan_text = offline_meta_thought(p).render()
    plan = _char_ids(tokenizer, plan_text)
    assert plan != F.text_ids(tokenizer, plan_text)
    marker = F.marker_ids(tokenizer)
    word = F.marker_stop_token_id(tokenizer)
    # the plan stage ran into the marker and stopped on its word token
    sampled_plan = plan + F.text_ids(tokenizer, "\n") + [word]
    execution = F.text_ids(tokenizer, p.solution) + [tokenizer.eos_token_id]
    prefix = prompt + tuple(plan) + tuple(marker)
    engine = ScriptedEngine({prompt: sampled_plan, prefix: execution})

    sampling = SamplingParams(temperature=0.7, max_new_tokens=64)
    [rollout] = F.generate_comt(engine, tokenizer, [p], sampling, plans_per_problem=2, executions_per_plan=3, seed=5)

    plan_call, exec_call = engine.calls
    assert [g.prefix_ids for g in plan_call] == [prompt]
    assert plan_call[0].num_samples == 2 and plan_call[0].sampling.temperature == 0.7
    assert set(plan_call[0].sampling.stop_token_ids) == {tokenizer.eos_token_id, word}
    assert [g.prefix_ids for g in exec_call] == [prefix, prefix]  # [prompt + sampled plan ids + marker]
    assert all(g.num_samples == 3 and g.sampling.stop_token_ids == (tokenizer.eos_token_id,) for g in exec_call)
    seeds = [s for g in plan_call + exec_call for s in g.seeds]
    assert len(set(seeds)) == len(seeds) == 8
    assert seeds[0] == F.sample_seed(5, p.id, "plan", 0)

    assert len(rollout.plans) == 2 and all(len(pl.executions) == 3 for pl in rollout.plans)
    first = rollout.plans[0]
    assert first.plan_ids == tuple(plan) and first.plan_text == plan_text
    assert first.plan.token_ids == tuple(sampled_plan) and first.plan.finish_reason == "stop"
    assert first.executions[0].text == p.solution
    assert rollout.response_text() == F.render_response("comt", p.solution, plan_text)
    assert rollout.response_ids() == tuple(plan) + tuple(marker) + tuple(execution)
    assert F.check_format(rollout.response_text(), "comt", p.question).ok


def test_generate_comt_plan_ending_at_end_of_turn(tokenizer, problems):
    p = problems[1]
    prompt = tuple(F.prompt_ids(tokenizer, p.question))
    plan_text = offline_meta_thought(p).render()
    plan = F.text_ids(tokenizer, plan_text)
    newline = F.text_ids(tokenizer, "\n")
    # trailing newline and end-of-turn are not part of the plan that enters the prefix
    script = {prompt: plan + newline + [tokenizer.eos_token_id]}
    script[prompt + tuple(plan) + tuple(F.marker_ids(tokenizer))] = F.text_ids(tokenizer, p.solution)
    engine = ScriptedEngine(script)
    [rollout] = F.generate_comt(engine, tokenizer, [p], SamplingParams(temperature=0.0, max_new_tokens=32))
    assert rollout.plans[0].plan_ids == tuple(plan)
    assert engine.calls[0][0].sampling.temperature == 0.0  # one plan: greedy by default


def test_generate_cot_one_stage(tokenizer, problems):
    prompts = [tuple(F.prompt_ids(tokenizer, p.question)) for p in problems[:2]]
    engine = ScriptedEngine({pr: F.text_ids(tokenizer, p.solution) for pr, p in zip(prompts, problems)})
    rollouts = F.generate_cot(engine, tokenizer, problems[:2], SamplingParams(temperature=0.0), samples_per_problem=2)
    assert len(engine.calls) == 1 and [g.prefix_ids for g in engine.calls[0]] == prompts
    assert [r.response_text() for r in rollouts] == [p.solution for p in problems[:2]]
    assert rollouts[0].plans[0].plan is None and rollouts[0].plans[0].prefix_ids == prompts[0]


def test_generation_rejects_bad_arguments(tokenizer, problems):
    engine = ScriptedEngine({})
    with pytest.raises(ValueError, match="plans_per_problem"):
        F.generate_comt(engine, tokenizer, problems, SamplingParams(), plans_per_problem=0)
    with pytest.raises(TypeError, match="problems"):
        F.generate_comt(engine, tokenizer, problems[0], SamplingParams())
    with pytest.raises(TypeError, match="engine"):
        F.generate_cot(object(), tokenizer, problems, SamplingParams())
    with pytest.raises(ValueError, match="fmt"):
        F.generate(engine, tokenizer, problems, SamplingParams(), "plan")


# --- generation with a real (tiny) model --------------------------------------------------------


def test_comt_execution_logprobs_condition_on_the_prefix(tokenizer, problems):
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
    )
    model = Qwen2ForCausalLM(config).eval()
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    rollouts = F.generate_comt(TransformersEngine(model), tokenizer, problems[:2], greedy)
    for r in rollouts:
        plan = r.plans[0]
        assert plan.prefix_ids == r.prompt_ids + plan.plan_ids + tuple(F.marker_ids(tokenizer))
        assert plan.plan_ids == plan.plan.token_ids[: len(plan.plan_ids)]
        exe = plan.executions[0]
        # teacher-forced reference: one forward over prefix + execution, no cache
        ids = torch.tensor(plan.prefix_ids + exe.token_ids)[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        start = len(plan.prefix_ids) - 1
        ref = logp[start : start + len(exe.token_ids)].gather(-1, torch.tensor(exe.token_ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(exe.logprobs, dtype=torch.float64), ref, atol=1e-4)
        # greedy: every token is the argmax of the reference
        assert exe.token_ids == tuple(logp[start : start + len(exe.token_ids)].argmax(-1).tolist())
        assert math.isclose(sum(exe.logprobs), float(ref.sum()), abs_tol=1e-3)
