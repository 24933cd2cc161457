"""From rollouts to the tensors of a CCRL update: grading, rewards, token layout, micro-batches.

    scored = score_rollouts(rollouts, tokenizer, reward)      # grade + ccrl_rewards kernel
    batch = build_policy_batch(scored, pad_id=..., train_plans=False)
    for idx in micro_batches(batch.lengths, budget): ...     # padded-token budget per forward

Layout of one training row b (one execution): ``prefix_ids + execution ids`` where the prefix is
``prompt + plan + marker`` (CoMT) or the prompt (CoT). Position t's hidden state predicts token
t + 1, so `targets[b, t] = ids[b, t + 1]` and the execution's j-th token is target column
``len(prefix) - 1 + j``. By default only those columns are trained (the plan is the shared prefix);
with `train_plans` the plan's columns are trained too, with the plan-level advantage, in the first
execution of each plan only (so a plan shared by G executions counts once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastcomt.formats import ProblemRollout, token_char_offsets
from fastcomt.kernels.rewards import CCRLRewards
from fastcomt.rewards import ccrl_batch_rewards, step_calibration_pairs
from fastcomt.rollout.engine import RolloutEngine, WeightsSource
from fastcomt.rollout.types import GroupRequest, GroupResult, rollout_totals
from fastcomt.tasks import GradedCompletion, gold_step_values, grade_completion

from .rl_config import RewardConfig

__all__ = [
    "CountingEngine",
    "ScoredExecution",
    "ScoredBatch",
    "PolicyBatch",
    "score_rollouts",
    "build_policy_batch",
    "micro_batches",
]


class CountingEngine(RolloutEngine):
    """Wraps an engine and sums `rollout_totals` over its generate calls (prefix-cache accounting)."""

    def __init__(self, engine: RolloutEngine) -> None:
        if not isinstance(engine, RolloutEngine):
            raise TypeError(f"engine: expected a RolloutEngine, got {type(engine).__name__}")
        self.inner = engine
        self.totals = {"prefix_tokens": 0, "prefill_tokens": 0, "cached_tokens": 0, "generated_tokens": 0}

    @property
    def weight_version(self) -> int:
        return self.inner.weight_version

    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        results = self.inner.generate(groups)
        for key, value in rollout_totals(results).items():
            self.totals[key] += value
        return results

    def update_weights(self, weights: WeightsSource, version: int) -> None:
        self.inner.update_weights(weights, version)

    def flush_cache(self) -> None:
        self.inner.flush_cache()

    def close(self) -> None:
        self.inner.close()

    def reset(self) -> dict[str, int]:
        """The totals so far, then zero them."""
        out = dict(self.totals)
        for key in self.totals:
            self.totals[key] = 0
        return out


@dataclass(frozen=True)
class ScoredExecution:
    """One execution with where it came from and its grade.

    problem: index of its problem in the batch; group: index of its plan over the batch.
    prompt_len: tokens of the prompt; prefix_ids: prompt (+ plan + marker for CoMT).
    plan_ids / plan_logprobs: the plan's tokens as they sit in the prefix (empty for CoT).
    first_of_plan: whether it is the plan's first execution (where plan tokens are trained).
    """

    problem: int
    group: int
    prompt_len: int
    prefix_ids: tuple[int, ...]
    plan_ids: tuple[int, ...]
    plan_logprobs: tuple[float, ...]
    first_of_plan: bool
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: str
    graded: GradedCompletion


@dataclass
class ScoredBatch:
    executions: list[ScoredExecution]
    rewards: CCRLRewards  # dense: per-step confidence and reward included
    step_confidence: list[float]  # every step that has tokens, for calibration metrics
    step_correct: list[int]


def score_rollouts(
    rollouts: Sequence[ProblemRollout], tokenizer, reward: RewardConfig, *, device: torch.device | str = "cpu"
) -> ScoredBatch:
    """Grade every execution (answer, numeric steps on tokens) and run the reward kernel.

    Confidence comes from the rollout log-probs (what the policy believed while sampling), so the
    reward never depends on the trainer's recomputation.
    """
    if not isinstance(reward, RewardConfig):
        raise TypeError(f"reward: expected RewardConfig, got {type(reward).__name__}")
    executions: list[ScoredExecution] = []
    group = 0
    for p_index, rollout in enumerate(rollouts):
        if not isinstance(rollout, ProblemRollout):
            raise TypeError(f"rollouts[{p_index}]: expected ProblemRollout, got {type(rollout).__name__}")
        gold = gold_step_values(rollout.problem)
        prompt_len = len(rollout.prompt_ids)
        for plan in rollout.plans:
            plan_lp: tuple[float, ...] = ()
            if plan.plan is not None:
                plan_lp = tuple(plan.plan.logprobs[: len(plan.plan_ids)])
            for j, exe in enumerate(plan.executions):
                text, offsets = token_char_offsets(tokenizer, exe.token_ids)
                graded = grade_completion(text, rollout.problem, offsets, gold=gold)
                executions.append(
                    ScoredExecution(
                        p_index,
                        group,
                        prompt_len,
                        tuple(plan.prefix_ids),
                        tuple(plan.plan_ids),
                        plan_lp,
                        j == 0,
                        tuple(exe.token_ids),
                        tuple(exe.logprobs),
                        text,
                        exe.finish_reason,
                        graded,
                    )
                )
            group += 1
    if not executions:
        raise ValueError("rollouts: expected at least one execution to score")
    width = max(1, max(len(e.token_ids) for e in executions))
    logprobs = torch.zeros(len(executions), width, dtype=torch.float32)
    for b, e in enumerate(executions):
        if e.logprobs:
            logprobs[b, : len(e.logprobs)] = torch.tensor(e.logprobs, dtype=torch.float32)
    group_ids = torch.tensor([e.group for e in executions], dtype=torch.int64)
    problem_ids = torch.tensor([e.problem for e in executions], dtype=torch.int64)
    result = ccrl_batch_rewards(
        logprobs.to(device),
        [e.graded for e in executions],
        group_ids.to(device),
        problem_ids.to(device),
        confidence=reward.confidence,
        step_reward=reward.step_reward,
        lam=reward.lam,
        advantage=reward.advantage,
        eps=reward.eps,
        dense=True,
        backend=reward.backend,
    )
    confidence, correct = step_calibration_pairs(result, [e.graded for e in executions])
    return ScoredBatch(executions, result, confidence, correct)


@dataclass
class PolicyBatch:
    """Right-padded rows; every [B, L-1] tensor is indexed by target column (see module docstring)."""

    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor  # [B, L] long
    targets: torch.Tensor  # [B, L-1] long
    loss_mask: torch.Tensor  # [B, L-1] bool: the trained tokens
    advantages: torch.Tensor  # [B, L-1] float32 (0 outside the mask)
    rollout_logprobs: torch.Tensor  # [B, L-1] float32: the engine's log-probs of the trained tokens
    lengths: list[int]  # real tokens per row

    def rows(self, index: Sequence[int]) -> PolicyBatch:
        """The rows in `index`, cut to their longest real length."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        length = max(self.lengths[i] for i in index)
        return PolicyBatch(
            self.input_ids[idx, :length],
            self.attention_mask[idx, :length],
            self.targets[idx, : length - 1],
            self.loss_mask[idx, : length - 1],
            self.advantages[idx, : length - 1],
            self.rollout_logprobs[idx, : length - 1],
            [self.lengths[i] for i in index],
        )


def build_policy_batch(scored: ScoredBatch, *, pad_id: int, train_plans: bool = False) -> PolicyBatch:
    """Token layout of the update (module docstring); advantages from the reward kernel."""
    execs = scored.executions
    advantages = scored.rewards.advantages.detach().float().cpu().tolist()
    plan_advantages = scored.rewards.plan_advantages.detach().float().cpu().tolist()
    lengths = [len(e.prefix_ids) + len(e.token_ids) for e in execs]
    if min(lengths) < 2:
        raise ValueError("scored: every row needs at least 2 tokens (a prefix and one generated token)")
    B, L = len(execs), max(lengths)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, L), dtype=torch.long)
    loss_mask = torch.zeros((B, L - 1), dtype=torch.bool)
    adv = torch.zeros((B, L - 1), dtype=torch.float32)
    old = torch.zeros((B, L - 1), dtype=torch.float32)
    for b, e in enumerate(execs):
        ids = e.prefix_ids + e.token_ids
        input_ids[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[b, : len(ids)] = 1
        start, n = len(e.prefix_ids) - 1, len(e.token_ids)
        loss_mask[b, start : start + n] = True
        adv[b, start : start + n] = advantages[b]
        if n:
            old[b, start : start + n] = torch.tensor(e.logprobs, dtype=torch.float32)
        if train_plans and e.first_of_plan and e.plan_ids:
            p0, m = e.prompt_len - 1, len(e.plan_ids)
            loss_mask[b, p0 : p0 + m] = True
            adv[b, p0 : p0 + m] = plan_advantages[b]
            old[b, p0 : p0 + m] = torch.tensor(e.plan_logprobs, dtype=torch.float32)
    targets = input_ids[:, 1:].clone()
    return PolicyBatch(input_ids, attention_mask, targets, loss_mask, adv, old, lengths)


def micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Consecutive rows grouped so that rows x longest row stays within `token_budget` (one row
    minimum). Rows are taken longest first so that each micro-batch pads little."""
    if token_budget < 1:
        raise ValueError(f"token_budget: expected a positive int, got {token_budget}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    longest = 0
    for i in order:
        if groups and (len(groups[-1]) + 1) * max(longest, lengths[i]) <= token_budget:
            groups[-1].append(i)
            longest = max(longest, lengths[i])
        else:
            groups.append([i])
            longest = lengths[i]
    return groups
