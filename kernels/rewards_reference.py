"""Plain-torch CCRL reward and advantages: the readable definition the Triton kernel is tested against.

Same inputs and outputs as `rewards.ccrl_rewards` (see there for the argument contract); computed in
the dtype of `dtype` (fp64 by default) with ordinary mean/std formulas and Python loops over groups.
"""

from __future__ import annotations

import torch

from .rewards import CCRLRewards, check_reward_inputs

__all__ = ["ccrl_rewards_reference"]


def _step_confidence(
    logprobs: torch.Tensor, span_ids: torch.Tensor, num_steps: int, confidence: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (sequence, step): the span's confidence and whether the step has any token."""
    B, T = logprobs.shape
    conf = torch.zeros(B, num_steps, dtype=logprobs.dtype)
    valid = torch.zeros(B, num_steps, dtype=torch.bool)
    for b in range(B):
        for k in range(num_steps):
            positions = (span_ids[b] == k).nonzero().flatten()
            if positions.numel() == 0:
                continue
            lp = logprobs[b, positions]
            if confidence == "geomean":
                conf[b, k] = lp.mean().exp()
            elif confidence == "min":
                conf[b, k] = lp.min().exp()
            else:  # first: the span's first token in sequence order
                conf[b, k] = lp[0].exp()
            valid[b, k] = True
    return conf, valid


def _normalise(values: torch.Tensor, mode: str, eps: float) -> torch.Tensor:
    """GRPO: (x - mean) / (std + eps) with the unbiased std; Dr.GRPO: x - mean. One value -> 0."""
    if values.numel() < 2:
        return torch.zeros_like(values)
    centred = values - values.mean()
    if mode == "dr_grpo":
        return centred
    return centred / (values.std(unbiased=True) + eps)


def ccrl_rewards_reference(
    logprobs: torch.Tensor,
    span_ids: torch.Tensor,
    step_correct: torch.Tensor,
    answer_correct: torch.Tensor,
    group_ids: torch.Tensor,
    problem_ids: torch.Tensor | None = None,
    *,
    confidence: str = "geomean",
    step_reward: str = "brier",
    lam: float = 0.5,
    advantage: str = "grpo",
    eps: float = 1e-6,
    dense: bool = False,
    dtype: torch.dtype = torch.float64,
) -> CCRLRewards:
    """Reference CCRL rewards and advantages (see rewards.ccrl_rewards for the contract)."""
    check_reward_inputs(
        logprobs,
        span_ids,
        step_correct,
        answer_correct,
        group_ids,
        problem_ids,
        confidence=confidence,
        step_reward=step_reward,
        lam=lam,
        advantage=advantage,
        eps=eps,
    )
    lp = logprobs.detach().to("cpu", dtype)
    sid = span_ids.detach().to("cpu", torch.int64)
    z = step_correct.detach().to("cpu", dtype)
    ans = answer_correct.detach().to("cpu", dtype)
    groups = group_ids.detach().to("cpu", torch.int64)
    problems = groups if problem_ids is None else problem_ids.detach().to("cpu", torch.int64)
    B = lp.shape[0]
    K = z.shape[1]

    conf, valid = _step_confidence(lp, sid, K, confidence)
    if step_reward == "brier":
        r = 1.0 - (conf - z) ** 2
    else:
        r = (2.0 * z - 1.0) * conf
    r = torch.where(valid, r, torch.zeros_like(r))
    n_valid = valid.sum(dim=1)
    mean_r = torch.where(n_valid > 0, r.sum(dim=1) / n_valid.clamp(min=1), torch.zeros_like(ans))
    rewards = ans + lam * mean_r

    advantages = torch.zeros(B, dtype=dtype)
    plan_advantages = torch.zeros(B, dtype=dtype)
    for p in problems.unique():
        in_problem = (problems == p).nonzero().flatten()
        plan_keys = groups[in_problem].unique()
        plan_means = []
        for g in plan_keys:
            members = in_problem[groups[in_problem] == g]
            advantages[members] = _normalise(rewards[members], advantage, eps)
            plan_means.append(rewards[members].mean())
        plan_adv = _normalise(torch.stack(plan_means), advantage, eps)
        for g, a in zip(plan_keys, plan_adv):
            plan_advantages[in_problem[groups[in_problem] == g]] = a

    return CCRLRewards(
        rewards=rewards,
        advantages=advantages,
        plan_advantages=plan_advantages,
        step_confidence=torch.where(valid, conf, torch.zeros_like(conf)) if dense else None,
        step_rewards=r if dense else None,
    )
