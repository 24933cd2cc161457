"""Each demo stage checks its own quality before the next one builds on it.

The demo's later numbers mean something only when the stages under them worked:
- stage 0 (base model): CoMT SFT teaches *which* plan a question needs and relies on the base
  model to *carry out* a plan. So the base model is given each held-out problem's gold plan (its
  offline meta-thought) after the question and the execution marker, and its greedy execution is
  graded. A base model that cannot execute gold plans makes every later effect meaningless;
- stage 1 (CoMT SFT): the model must write the gold plan for a good share of new questions, and
  SFT's paired effect on answer accuracy must be above zero;
- stage 2 (CCRL): the policy must still write well-formed responses (RL can collapse a tiny model).

`stage_warnings` turns the measured numbers into plain warnings; the demo prints them next to the
numbers and records them in results.json. The thresholds are `DemoConfig.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastcomt.comt.offline import offline_meta_thought
from fastcomt.formats.token_ids import (
    execution_prefix_ids,
    marker_ids,
    prompt_ids,
    stop_token_ids,
    text_ids,
    token_char_offsets,
)
from fastcomt.rollout.engine import RolloutEngine
from fastcomt.rollout.types import GroupRequest, SamplingParams
from fastcomt.tasks import Problem, grade_completion

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["StageChecks", "gold_plan_execution", "stage_warnings"]


@dataclass
class StageChecks:
    """What a stage must reach for the next one's numbers to mean something (fractions in [0, 1])."""

    # stage 0: answer accuracy of the base model's greedy execution of each held-out problem's gold plan
    base_gold_plan_accuracy: float = 0.15
    # stage 1: share of held-out questions for which CoMT SFT writes exactly the gold plan
    sft_gold_plans: float = 0.3
    # stage 1: the lower end of SFT's paired 95% interval on answer accuracy must be above this
    sft_effect_ci_low: float = 0.0
    # stage 2: CCRL's format-correct rate may fall at most this far below SFT's
    ccrl_format_drop: float = 0.1
    # problems of the held-out set the base model executes gold plans for (0: skip the check)
    gold_plan_problems: int = 200


def gold_plan_execution(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Greedy executions of each problem's gold plan: [prompt + gold plan + marker], the prefix a
    CoMT evaluation's execution continues, with the plan replaced by the offline meta-thought.

    Returns n, accuracy (answers right), step_accuracy (numeric steps right, pooled) and the
    accuracy per family.
    """
    if not isinstance(engine, RolloutEngine):
        raise TypeError(f"engine: expected a RolloutEngine, got {type(engine).__name__}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    problems = list(problems)
    if not problems:
        raise ValueError("problems: expected at least one problem, got none")
    marker = marker_ids(tokenizer)
    sampling = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, stop_token_ids=stop_token_ids(tokenizer))
    right, steps_right, steps, per_family = 0, 0, 0, {}
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        groups = [
            GroupRequest(
                execution_prefix_ids(
                    prompt_ids(tokenizer, p.question),
                    text_ids(tokenizer, offline_meta_thought(p).render().strip()),
                    marker,
                ),
                (0,),
                sampling,
                request_id=f"{p.id}/gold-plan",
                affinity_key=p.id,
            )
            for p in batch
        ]
        for p, result in zip(batch, engine.generate(groups)):
            text, _ = token_char_offsets(tokenizer, result.samples[0].token_ids)  # decoded as evaluation decodes
            graded = grade_completion(text, p)
            right += bool(graded.answer_correct)
            steps_right += sum(bool(z) for z in graded.step_correct)
            steps += len(graded.step_correct)
            fam = per_family.setdefault(p.family, [0, 0])
            fam[0] += bool(graded.answer_correct)
            fam[1] += 1
    return {
        "n": len(problems),
        "accuracy": right / len(problems),
        "step_accuracy": steps_right / steps if steps else None,
        "accuracy_by_family": {f: r / n for f, (r, n) in sorted(per_family.items())},
    }


def _below(value: float | None, floor: float) -> bool:
    return value is None or value < floor


def stage_warnings(
    checks: StageChecks,
    *,
    base_gold_plan: Mapping[str, Any] | None = None,
    sft_gold_plans: float | None = None,
    sft_effect: Mapping[str, Any] | None = None,
    sft_format: float | None = None,
    ccrl_format: float | None = None,
) -> list[str]:
    """Plain warnings for every stage below its bar (empty: every measured stage passed).

    base_gold_plan: `gold_plan_execution`'s result for the base model (None: not measured).
    sft_gold_plans: the share of held-out questions with exactly the gold plan after SFT.
    sft_effect: SFT's paired accuracy effect (`metrics.paired.paired_accuracy`: diff, ci_low, ci_high).
    sft_format / ccrl_format: ID format-correct rates after SFT and after CCRL.
    """
    warnings = []
    if base_gold_plan is not None and _below(base_gold_plan.get("accuracy"), checks.base_gold_plan_accuracy):
        warnings.append(
            f"stage 0 FAILED its check: given the gold plan, the base model executes {100 * base_gold_plan['accuracy']:.1f}% "
            f"of {base_gold_plan['n']} held-out problems right (the bar is {100 * checks.base_gold_plan_accuracy:.0f}%). "
            "SFT and CCRL build on a model that cannot carry out a plan: their effects below do not measure the method."
        )
    if sft_gold_plans is not None and sft_gold_plans < checks.sft_gold_plans:
        warnings.append(
            f"stage 1 FAILED its check: CoMT SFT writes the gold plan for {100 * sft_gold_plans:.1f}% of held-out questions "
            f"(the bar is {100 * checks.sft_gold_plans:.0f}%): it did not learn to plan, so CCRL's effects below start from a "
            "broken SFT stage."
        )
    if sft_effect is not None and not sft_effect.get("ci_low", float("-inf")) > checks.sft_effect_ci_low:
        warnings.append(
            f"stage 1 FAILED its check: CoMT SFT's paired effect on answer accuracy is {100 * sft_effect['diff']:+.1f} points, "
            f"95% CI [{100 * sft_effect['ci_low']:+.1f}, {100 * sft_effect['ci_high']:+.1f}], not above "
            f"{100 * checks.sft_effect_ci_low:+.1f}: the plans it writes are not executed better than the base model's."
        )
    if sft_format is not None and ccrl_format is not None and sft_format - ccrl_format > checks.ccrl_format_drop:
        warnings.append(
            f"stage 2 FAILED its check: CCRL's format-correct rate fell from {100 * sft_format:.1f}% to "
            f"{100 * ccrl_format:.1f}% (more than {100 * checks.ccrl_format_drop:.0f} points): the policy degraded."
        )
    return warnings
