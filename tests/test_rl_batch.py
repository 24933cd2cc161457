"""CCRL batch assembly: loss mask, rewards (lam = 0 is GRPO), micro-batching, the update's gradient."""

import math

import pytest
import torch

from fastcomt.formats import Completion, PlanRollout, ProblemRollout, marker_ids, prompt_ids, text_ids
from fastcomt.kernels.rewards_reference import ccrl_rewards_reference
from fastcomt.rewards import reward_inputs
from fastcomt.tasks import synthetic_problems
from fastcomt.tokenizer import train_tokenizer
from fastcomt.train.models import build_tiny_model
from fastcomt.train.rl import policy_update
from fastcomt.train.rl_batch import build_policy_batch, micro_batches, score_rollouts
from fastcomt.train.rl_config import PolicyLossConfig, RewardConfig
from fastcomt_recipes.pretrain import execution_document, tokenizer_texts

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}
HALF = math.log(0.5)


@pytest.fixture(scope="module")
def setup():
    problems = synthetic_problems(6, seed=3, families=["shopping_change"])
    tokenizer = train_tokenizer(tokenizer_texts(problems), kind="number_word", number_max=120, vocab_size=800)
    return problems, tokenizer


def _completion(tokenizer, text, eot=True, lp=HALF):
    ids = text_ids(tokenizer, text) + ([tokenizer.eos_token_id] if eot else [])
    return Completion(tuple(ids), tuple([lp] * len(ids)), tokenizer.decode(ids, skip_special_tokens=True), "stop")


def _rollout(problem, tokenizer, executions):
    """One plan (the gold one) and the given execution texts, laid out as generate_comt does."""
    doc = execution_document(problem)
    plan_text = doc[: doc.index("\nExecution:\n")]
    prompt = tuple(prompt_ids(tokenizer, problem.question))
    plan = _completion(tokenizer, plan_text, lp=-0.25)
    plan_ids = plan.token_ids[:-1]  # the end-of-turn is cut off, as formats._plan_cut does
    prefix = prompt + plan_ids + tuple(marker_ids(tokenizer))
    execs = tuple(_completion(tokenizer, t) for t in executions)
    return ProblemRollout(problem, "comt", prompt, (PlanRollout(plan, plan_ids, plan_text, prefix, execs),))


def _wrong(problem):
    return problem.solution.replace(f"The answer is {problem.answer}.", f"The answer is {problem.answer + 1}.")


def test_lambda_zero_rewards_are_answer_correctness(setup):
    problems, tok = setup
    rollouts = [
        _rollout(problems[0], tok, [problems[0].solution, _wrong(problems[0])]),
        _rollout(problems[1], tok, [_wrong(problems[1]), _wrong(problems[1]), problems[1].solution]),
    ]
    scored = score_rollouts(rollouts, tok, RewardConfig(lam=0.0))
    assert [e.graded.answer_correct for e in scored.executions] == [True, False, False, False, True]
    torch.testing.assert_close(scored.rewards.rewards, torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0]))
    # GRPO by hand: (R - mean) / (unbiased std + eps) inside each plan group.
    s2 = math.sqrt(0.5)
    s3 = math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2)
    expected = [0.5 / s2, -0.5 / s2, -(1 / 3) / s3, -(1 / 3) / s3, (2 / 3) / s3]
    torch.testing.assert_close(scored.rewards.advantages, torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_calibrated_reward_by_hand_and_against_reference(setup):
    problems, tok = setup
    rollouts = [_rollout(problems[2], tok, [problems[2].solution, _wrong(problems[2])])]
    scored = score_rollouts(rollouts, tok, RewardConfig(lam=0.5))
    # Every token has probability 0.5, so every step's confidence is 0.5 and its Brier step reward
    # is 1 - (0.5 - z)^2 = 0.75 whether it is right or wrong: R = answer + 0.5 * 0.75.
    assert all(len(e.graded.steps) == 3 for e in scored.executions)
    torch.testing.assert_close(scored.rewards.rewards, torch.tensor([1.375, 0.375]))
    assert scored.step_confidence == pytest.approx([0.5] * 6)
    graded = [e.graded for e in scored.executions]
    width = max(len(e.token_ids) for e in scored.executions)
    inputs = reward_inputs(graded, width)
    lp = torch.full((2, width), HALF, dtype=torch.float64)
    ref = ccrl_rewards_reference(
        lp,
        inputs.span_ids,
        inputs.step_correct,
        inputs.answer_correct,
        torch.tensor([0, 0]),
        torch.tensor([0, 0]),
        lam=0.5,
    )
    torch.testing.assert_close(scored.rewards.advantages.double(), ref.advantages, rtol=1e-5, atol=1e-5)


def test_loss_mask_covers_execution_tokens_only(setup):
    problems, tok = setup
    rollouts = [_rollout(problems[3], tok, [problems[3].solution, _wrong(problems[3])])]
    scored = score_rollouts(rollouts, tok, RewardConfig(lam=0.5))
    batch = build_policy_batch(scored, pad_id=tok.pad_token_id)
    r = rollouts[0]
    prefix = r.plans[0].prefix_ids
    for b, exe in enumerate(r.plans[0].executions):
        cols = batch.loss_mask[b].nonzero().flatten().tolist()
        assert cols == list(range(len(prefix) - 1, len(prefix) - 1 + len(exe.token_ids)))
        # the trained targets are exactly the execution's tokens, advantages and old log-probs with them
        assert batch.targets[b, cols].tolist() == list(exe.token_ids)
        assert torch.all(batch.advantages[b, cols] == scored.rewards.advantages[b])
        assert torch.all(batch.advantages[b][~batch.loss_mask[b]] == 0)
        torch.testing.assert_close(batch.rollout_logprobs[b, cols], torch.full((len(cols),), HALF))
    # train_plans: the plan's tokens join the mask once per plan (first execution only).
    with_plans = build_policy_batch(scored, pad_id=tok.pad_token_id, train_plans=True)
    plan_ids = r.plans[0].plan_ids
    p0 = len(r.prompt_ids) - 1
    extra = (with_plans.loss_mask[0] & ~batch.loss_mask[0]).nonzero().flatten().tolist()
    assert extra == list(range(p0, p0 + len(plan_ids)))
    assert with_plans.targets[0, extra].tolist() == list(plan_ids)
    assert torch.equal(with_plans.loss_mask[1], batch.loss_mask[1])


def test_micro_batches_respect_the_token_budget():
    lengths = [5, 9, 3, 9, 7, 1, 4]
    groups = micro_batches(lengths, 18)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 18
    assert micro_batches([30, 2], 10) == [[0], [1]]  # a row longer than the budget goes alone
    with pytest.raises(ValueError, match="token_budget"):
        micro_batches([1], 0)


@pytest.mark.parametrize(
    "lm_head,budget,loss_type", [("fused", 10_000, "dapo"), ("torch", 40, "dapo"), ("torch", 40, "dr_grpo")]
)
def test_update_gradient_matches_full_logits_policy_gradient(setup, lm_head, budget, loss_type):
    """At ratio 1 the dapo surrogate's gradient is -sum(A_t grad log p_t) / tokens (dr_grpo: / rows x
    the run's max completion length, a constant): one SGD step with micro-batches (fused or torch
    head) moves the weights exactly as that full-logits loss."""
    problems, tok = setup
    rollouts = [
        _rollout(problems[4], tok, [problems[4].solution, _wrong(problems[4])]),
        _rollout(problems[5], tok, [_wrong(problems[5]), problems[5].solution, problems[5].solution]),
    ]
    scored = score_rollouts(rollouts, tok, RewardConfig(lam=0.5))
    batch = build_policy_batch(scored, pad_id=tok.pad_token_id)
    model = build_tiny_model(TINY, len(tok), pad_token_id=tok.pad_token_id).double()

    # Reference: full logits from the model's own LM head, fp64.
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, batch.targets[..., None]).squeeze(-1)
    mask = batch.loss_mask
    max_completion = 50  # the rollout budget: larger than any row here, and independent of the prompts
    norm = mask.sum() if loss_type == "dapo" else mask.shape[0] * max_completion
    ref_loss = -(batch.advantages.double() * logp)[mask].sum() / norm
    grads = torch.autograd.grad(ref_loss, list(model.parameters()))
    lr = 0.1
    expected = [p.detach() - lr * g for p, g in zip(model.parameters(), grads)]

    batch.rollout_logprobs = logp.detach().float() * mask  # the engine sampled with these weights
    model = model.float()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    loss_cfg = PolicyLossConfig(
        loss_type=loss_type, old_logprobs="recompute", tis_cap=None, lm_head=lm_head, micro_batch_tokens=budget
    )
    if loss_type == "dr_grpo":
        with pytest.raises(ValueError, match="max_completion_tokens"):
            policy_update(model, batch, loss_cfg, optimizer=opt, scheduler=sched, temperature=1.0, grad_clip=1e9)
    metrics = policy_update(
        model,
        batch,
        loss_cfg,
        optimizer=opt,
        scheduler=sched,
        temperature=1.0,
        grad_clip=1e9,
        max_completion_tokens=max_completion,
    )
    assert metrics["micro_batches"] == (1 if budget > 1000 else 5)
    assert metrics["ratio"] == pytest.approx(1.0, abs=1e-5)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-4, atol=1e-6)


def test_bad_reward_config_type_is_rejected(setup):
    problems, tok = setup
    with pytest.raises(TypeError, match="reward"):
        score_rollouts([_rollout(problems[0], tok, [problems[0].solution])], tok, {"lam": 0.5})
