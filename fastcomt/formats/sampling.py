"""The formats' generation procedures.

CoMT generation is two-stage, exactly as CCRL samples it: per problem, M plans continue the prompt
(greedy by default; the plan stops at the end-of-turn token or at the marker), then per plan, G
executions continue ``[prompt + plan + marker]`` (one rollout group per plan, sharing that prefix).
CoT generation is one stage: G executions continue the prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastcomt.rollout.engine import RolloutEngine
from fastcomt.rollout.types import GroupRequest, Sample, SamplingParams
from fastcomt.tasks import Problem

from .text import EXECUTION_MARKER, MARKER_START, check_format_name, render_response
from .token_ids import (
    DECODE_OPTIONS,
    execution_prefix_ids,
    marker_ids,
    marker_stop_token_id,
    prompt_ids,
    stop_token_ids,
    token_char_offsets,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["Completion", "PlanRollout", "ProblemRollout", "sample_seed", "generate_comt", "generate_cot", "generate"]

# --- generation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: ids and log-probs as sampled (stop token included), decoded text."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: str


@dataclass(frozen=True)
class PlanRollout:
    """One plan and the executions sampled from it.

    plan: the sampled plan (comt) or None (cot).
    plan_ids: the plan's ids as they enter the execution prefix: the sampled ids up to where the
        plan text ends (end-of-turn token, marker and trailing whitespace cut off); empty for cot.
    plan_text: their text.
    prefix_ids: what the executions continued: prompt + plan_ids + marker ids (comt), prompt (cot).
    executions: G executions in seed order.
    """

    plan: Completion | None
    plan_ids: tuple[int, ...]
    plan_text: str
    prefix_ids: tuple[int, ...]
    executions: tuple[Completion, ...]


@dataclass(frozen=True)
class ProblemRollout:
    """Everything sampled for one problem in one format."""

    problem: Problem
    fmt: str
    prompt_ids: tuple[int, ...]
    plans: tuple[PlanRollout, ...]

    def response_text(self, plan: int = 0, execution: int = 0) -> str:
        """The assistant text of one (plan, execution) pair in the format's layout."""
        p = self.plans[plan]
        exe = p.executions[execution].text
        if self.fmt == "cot":
            return render_response("cot", exe)
        return p.plan_text.strip() + EXECUTION_MARKER + exe.strip()

    def response_ids(self, plan: int = 0, execution: int = 0) -> tuple[int, ...]:
        """The response as one training sequence (everything after the prompt)."""
        p = self.plans[plan]
        return p.prefix_ids[len(self.prompt_ids) :] + p.executions[execution].token_ids


def sample_seed(seed: int, problem_id: str, stage: str, index: int) -> int:
    """A sample's seed from the run seed, the problem, the stage and the sample's index.

    Hash-derived so that a problem's samples do not depend on which batch or run it lands in
    (a resumed evaluation draws the same samples as an uninterrupted one).
    """
    digest = hashlib.blake2b(f"{seed}\x00{problem_id}\x00{stage}\x00{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # [0, 2**63)


def _with_stops(sampling: SamplingParams, stops: Sequence[int]) -> SamplingParams:
    merged = tuple(dict.fromkeys(tuple(sampling.stop_token_ids) + tuple(stops)))
    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_new_tokens=sampling.max_new_tokens,
        stop_token_ids=merged,
    )


def _completion(tokenizer: PreTrainedTokenizerBase, sample: Sample) -> Completion:
    text = tokenizer.decode(list(sample.token_ids), **DECODE_OPTIONS)
    return Completion(tuple(sample.token_ids), tuple(sample.logprobs), text, sample.finish_reason)


def _plan_cut(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> tuple[int, str]:
    """How many sampled plan ids enter the prefix, and their text.

    The plan ends before the first special token and before the marker (written whole, or cut
    short by the stop on its word token); trailing whitespace tokens go too, since the marker
    starts with its own newline. A token that straddles the cut is dropped with what follows.
    """
    text, offsets = token_char_offsets(tokenizer, ids)
    m = MARKER_START.search(text)
    cut = len(text) if m is None else m.start()
    special = set(tokenizer.all_special_ids)
    n = 0
    while n < len(ids) and ids[n] not in special and offsets[n][1] <= cut:
        n += 1
    while n > 0 and text[offsets[n - 1][0] : offsets[n - 1][1]].strip() == "":
        n -= 1
    return n, text[: offsets[n - 1][1]] if n else ""


def _check_problems(problems: Sequence[Problem]) -> list[Problem]:
    if isinstance(problems, Problem):
        raise TypeError("problems: expected a sequence of Problem; wrap a single problem in a list")
    problems = list(problems)
    for i, p in enumerate(problems):
        if not isinstance(p, Problem):
            raise TypeError(f"problems[{i}]: expected Problem, got {type(p).__name__}")
    return problems


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return value


def _check_engine_inputs(engine: RolloutEngine, sampling: SamplingParams) -> None:
    if not isinstance(engine, RolloutEngine):
        raise TypeError(f"engine: expected a RolloutEngine, got {type(engine).__name__}")
    if not isinstance(sampling, SamplingParams):
        raise TypeError(f"sampling: expected SamplingParams, got {type(sampling).__name__}")


def generate_comt(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    sampling: SamplingParams,
    plans_per_problem: int = 1,
    executions_per_plan: int = 1,
    *,
    plan_sampling: SamplingParams | None = None,
    seed: int = 0,
    system: str | None = None,
) -> list[ProblemRollout]:
    """Two-stage CoMT sampling: M plans per problem, then G executions per plan.

    sampling: the executions' sampling (temperature 0 = greedy).
    plan_sampling: the plans' sampling; default greedy with `sampling.max_new_tokens` when M == 1,
        and `sampling` itself when M > 1 (M greedy plans would be M copies).
    The tokenizer's end-of-turn ids are added to both stages' stop ids, the marker's word token to
    the plan stage's. Two `engine.generate` calls in all: one group per problem (M plan samples
    sharing the prompt), then one group per plan (G executions sharing [prompt + plan + marker]).
    """
    _check_engine_inputs(engine, sampling)
    problems = _check_problems(problems)
    m_plans = _check_count(plans_per_problem, "plans_per_problem")
    g_execs = _check_count(executions_per_plan, "executions_per_plan")
    if plan_sampling is None:
        plan_sampling = (
            sampling if m_plans > 1 else SamplingParams(temperature=0.0, max_new_tokens=sampling.max_new_tokens)
        )
    elif not isinstance(plan_sampling, SamplingParams):
        raise TypeError(f"plan_sampling: expected SamplingParams or None, got {type(plan_sampling).__name__}")
    if not problems:
        return []
    eot = stop_token_ids(tokenizer)
    marker = tuple(marker_ids(tokenizer))
    marker_stop = marker_stop_token_id(tokenizer)
    plan_params = _with_stops(plan_sampling, eot + (() if marker_stop is None else (marker_stop,)))
    exec_params = _with_stops(sampling, eot)

    prompts = [tuple(prompt_ids(tokenizer, p.question, system=system)) for p in problems]
    plan_groups = [
        GroupRequest(
            prompt,
            tuple(sample_seed(seed, p.id, "plan", j) for j in range(m_plans)),
            plan_params,
            request_id=f"{p.id}/plans",
            affinity_key=p.id,
        )
        for p, prompt in zip(problems, prompts)
    ]
    plan_results = engine.generate(plan_groups)

    cuts: list[list[tuple[Completion, tuple[int, ...], str, tuple[int, ...]]]] = []
    exec_groups = []
    for p, prompt, result in zip(problems, prompts, plan_results):
        per_problem = []
        for j, sample in enumerate(result.samples):
            n, text = _plan_cut(tokenizer, sample.token_ids)
            plan = tuple(sample.token_ids[:n])
            prefix = execution_prefix_ids(prompt, plan, marker)
            per_problem.append((_completion(tokenizer, sample), plan, text, prefix))
            seeds = tuple(sample_seed(seed, p.id, f"exec{j}", k) for k in range(g_execs))
            exec_groups.append(
                GroupRequest(prefix, seeds, exec_params, request_id=f"{p.id}/plan{j}", affinity_key=p.id)
            )
        cuts.append(per_problem)
    exec_results = iter(engine.generate(exec_groups))

    rollouts = []
    for p, prompt, per_problem in zip(problems, prompts, cuts):
        plans = []
        for completion, plan, text, prefix in per_problem:
            executions = tuple(_completion(tokenizer, s) for s in next(exec_results).samples)
            plans.append(PlanRollout(completion, plan, text, prefix, executions))
        rollouts.append(ProblemRollout(p, "comt", prompt, tuple(plans)))
    return rollouts


def generate_cot(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    sampling: SamplingParams,
    samples_per_problem: int = 1,
    *,
    seed: int = 0,
    system: str | None = None,
) -> list[ProblemRollout]:
    """One-stage CoT sampling: G executions continue each prompt (one `engine.generate` call)."""
    _check_engine_inputs(engine, sampling)
    problems = _check_problems(problems)
    g = _check_count(samples_per_problem, "samples_per_problem")
    if not problems:
        return []
    params = _with_stops(sampling, stop_token_ids(tokenizer))
    prompts = [tuple(prompt_ids(tokenizer, p.question, system=system)) for p in problems]
    groups = [
        GroupRequest(
            prompt,
            tuple(sample_seed(seed, p.id, "exec0", k) for k in range(g)),
            params,
            request_id=f"{p.id}/cot",
            affinity_key=p.id,
        )
        for p, prompt in zip(problems, prompts)
    ]
    rollouts = []
    for p, prompt, result in zip(problems, prompts, engine.generate(groups)):
        executions = tuple(_completion(tokenizer, s) for s in result.samples)
        rollouts.append(ProblemRollout(p, "cot", prompt, (PlanRollout(None, (), "", prompt, executions),)))
    return rollouts


def generate(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    sampling: SamplingParams,
    fmt: str,
    *,
    seed: int = 0,
    system: str | None = None,
    plan_sampling: SamplingParams | None = None,
) -> list[ProblemRollout]:
    """One response per problem in format `fmt` (one plan and one execution for comt)."""
    if check_format_name(fmt) == "cot":
        if plan_sampling is not None:
            raise ValueError("plan_sampling: the cot format has no plan stage; pass None")
        return generate_cot(engine, tokenizer, problems, sampling, seed=seed, system=system)
    return generate_comt(engine, tokenizer, problems, sampling, plan_sampling=plan_sampling, seed=seed, system=system)
