"""The CCRL reward as a verl compute_score and a TRL reward_funcs callable, against the reward
definition computed by hand (DESIGN.md: R = 1[answer] + lam * mean_k (1 - (c_k - z_k)^2))."""

import math

import pytest
import torch
from trl_helpers import save_tiny_policy

from fastcomt.integrations.rewards import CCRLRewardFunction, compute_score, problem_from_fields
from fastcomt.tasks.grade import grade_completion

QUESTION = "Tom has 3 apples and buys 4 more. He eats 2. How many are left?"
TEXT = "3 + 4 = 7 apples. 7 - 2 = 5. The answer is 5."


def _word_offsets(text):
    offsets, i = [], 0
    for word in text.split(" "):
        offsets.append((i, i + len(word)))
        i += len(word) + 1
    return offsets


def test_compute_score_matches_the_hand_computed_reward():
    offsets = _word_offsets(TEXT)
    logprobs = [-0.1 * k for k in range(len(offsets))]
    out = compute_score(
        "gsm8k",
        TEXT,
        {"answer": 5, "steps": [7]},
        {"question": QUESTION, "token_logprobs": logprobs, "token_offsets": offsets},
    )
    # Steps: "7" (word 4, gold -> z=1) and "5" of "7 - 2 = 5" (word 10, not a gold step -> z=0).
    c7, c5 = math.exp(-0.4), math.exp(-1.0)
    want = 1.0 + 0.5 * ((1 - (c7 - 1) ** 2) + (1 - c5**2)) / 2
    assert abs(out["score"] - want) < 1e-6
    assert out["answer_correct"] == 1.0 and out["num_steps"] == 2.0


def test_compute_score_signed_step_reward_and_wrong_answer():
    text = "3 + 4 = 7 apples. 7 - 2 = 6. The answer is 6."
    offsets = _word_offsets(text)
    logprobs = [-0.2] * len(offsets)
    out = compute_score(
        "gsm8k",
        text,
        5,
        {"question": QUESTION, "token_logprobs": logprobs, "token_offsets": offsets},
        lam=0.3,
        step_reward="signed",
    )
    # No gold steps: local arithmetic decides (3 + 4 = 7 right, 7 - 2 = 6 wrong); signed r = (2z - 1) c.
    c = math.exp(-0.2)
    assert abs(out["score"] - (0.0 + 0.3 * (c - c) / 2)) < 1e-6
    assert out["answer_correct"] == 0.0


def test_compute_score_needs_logprobs_for_the_calibration_term():
    assert compute_score("gsm8k", TEXT, 5, {"question": QUESTION}, lam=0.0)["score"] == 1.0
    with pytest.raises(ValueError, match="extra_info: expected token_logprobs and token_offsets"):
        compute_score("gsm8k", TEXT, 5, {"question": QUESTION})


def test_trl_reward_function_scores_with_the_policy(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_tiny_policy(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    # Two prompts and completions of different lengths: scored in one padded batch.
    prompts = ["compute 3 plus 4 then minus 2", "what is 9 plus 9"]
    completions = [" 3 + 4 = 7 then 7 - 2 = 5 the answer is 5", " 9 + 9 = 18 the answer is 18"]
    answers, steps = [5, 18], [[7], []]
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
    reward = CCRLRewardFunction(tokenizer, model=model, temperature=0.7, lam=0.5)
    got = reward(
        prompts=prompts, completions=[tokenizer.decode(i) for i in ids], completion_ids=ids, answer=answers, steps=steps
    )

    for prompt, completion, completion_ids, answer, gold, value in zip(prompts, completions, ids, answers, steps, got):
        # Independent route: the fast tokenizer's offset mapping and one unpadded full-logits forward.
        encoded = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + completion_ids])).logits[0, len(prompt_ids) - 1 : -1].double()
        logp = torch.log_softmax(logits / 0.7, -1).gather(1, torch.tensor(completion_ids)[:, None])[:, 0]
        graded = grade_completion(completion, problem_from_fields(prompt, answer, gold), encoded["offset_mapping"])
        assert graded.answer_correct and graded.steps
        step_rewards = []
        for (a, b), z in zip(graded.token_spans, graded.step_correct):
            c = float(logp[a:b].mean().exp())
            step_rewards.append(1 - (c - z) ** 2)
        want = 1.0 + 0.5 * sum(step_rewards) / len(step_rewards)
        assert abs(value - want) < 1e-5


def test_trl_reward_function_needs_the_policy_and_the_answer_column():
    with pytest.raises(ValueError, match="model: expected the policy"):
        CCRLRewardFunction(tokenizer=None, lam=0.5)
    reward = CCRLRewardFunction(tokenizer=None, lam=0.0)
    with pytest.raises(ValueError, match="answer: expected a dataset column"):
        reward(prompts=["q"], completions=["a"], completion_ids=[[1]])
