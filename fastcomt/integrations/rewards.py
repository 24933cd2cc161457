"""The CCRL reward (DESIGN.md, "CCRL reward") for other trainers: a TRL ``reward_funcs`` callable and a
verl ``compute_score`` function, both grading with ``fastcomt.tasks`` and scoring with the reward kernel.

``R = 1[answer correct] + lam * mean_k r_k`` over the K numbers the completion computed, with
``r_k = 1 - (c_k - z_k)^2`` (brier) or ``(2 z_k - 1) c_k`` (signed), ``c_k`` the confidence of the
step's tokens (geometric mean of their probabilities by default) and ``z_k`` its correctness (gold
intermediate values where the problem has them, else the line's arithmetic, else the outcome).

The confidences need the policy's per-token log-probs of the completion. TRL does not hand them to
reward functions, so ``CCRLRewardFunction`` scores the completions with the policy itself (one
forward, no logits tensor, under ``torch.no_grad``); verl's reward functions see text only, so
``compute_score`` takes them from ``extra_info`` and refuses ``lam > 0`` without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fastcomt.kernels import linear_logprobs
from fastcomt.kernels.rewards import ccrl_rewards
from fastcomt.tasks.grade import GradedCompletion, grade_completion
from fastcomt.tasks.problem import Problem, Step

__all__ = ["CCRLRewardFunction", "ccrl_reward_from_grade", "compute_score", "problem_from_fields", "token_offsets"]


def problem_from_fields(question: str, answer: Any, steps: Sequence[float] | None = None) -> Problem:
    """A Problem from dataset columns: the question text, the gold answer, the gold intermediate values."""
    if not isinstance(question, str):
        raise TypeError(f"question: expected str, got {type(question).__name__}")
    if isinstance(answer, str):
        try:
            answer = float(answer.replace(",", ""))
        except ValueError:
            pass  # a text answer (TabMWP multiple choice) stays a string
    elif isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = float(answer)
    else:
        raise TypeError(f"answer: expected a number or a str, got {type(answer).__name__}")
    gold = tuple(Step(value=float(v)) for v in (steps or ()))
    return Problem(id="", question=question, answer=answer, steps=gold)


def token_offsets(tokenizer, completion_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The completion text as TRL decodes it (special tokens skipped) and each token's character span
    in it (zero-width for special tokens), found by decoding growing prefixes."""
    offsets: list[tuple[int, int]] = []
    previous = ""
    for i in range(len(completion_ids)):
        text = tokenizer.decode(completion_ids[: i + 1], skip_special_tokens=True)
        start = min(len(previous), len(text))
        offsets.append((start, len(text)))
        previous = text
    return previous, offsets


def ccrl_reward_from_grade(
    graded: GradedCompletion, token_logprobs: Sequence[float] | None, *, lam: float, step_reward: str, confidence: str
) -> float:
    """The CCRL reward of one graded completion (``token_logprobs``: one per completion token)."""
    if lam > 0 and graded.steps and token_logprobs is None:
        raise ValueError("token_logprobs: expected the completion's per-token log-probs when lam > 0, got None")
    n = max(len(graded.token_step_ids), 1)
    logprobs = torch.zeros(1, n, dtype=torch.float32)
    if token_logprobs is not None and len(token_logprobs):
        values = torch.as_tensor(list(token_logprobs)[:n], dtype=torch.float32)
        logprobs[0, : values.numel()] = values
    span_ids = torch.full((1, n), -1, dtype=torch.int32)
    if graded.token_step_ids:
        span_ids[0, : len(graded.token_step_ids)] = torch.tensor(graded.token_step_ids, dtype=torch.int32)
    k = max(len(graded.step_correct), 1)
    step_correct = torch.zeros(1, k, dtype=torch.float32)
    if graded.step_correct:
        step_correct[0, : len(graded.step_correct)] = torch.tensor(graded.step_correct, dtype=torch.float32)
    answer_correct = torch.tensor([1.0 if graded.answer_correct else 0.0])
    out = ccrl_rewards(
        logprobs,
        span_ids,
        step_correct,
        answer_correct,
        torch.zeros(1, dtype=torch.int64),
        confidence=confidence,
        step_reward=step_reward,
        lam=lam,
    )
    return float(out.rewards[0])


class CCRLRewardFunction:
    """CCRL reward for TRL: ``GRPOTrainer(..., reward_funcs=[CCRLRewardFunction(tokenizer, model=model)])``.

    Dataset columns (passed by TRL as keyword lists): ``answer_column`` (gold answer, required),
    ``steps_column`` (gold intermediate values, optional), ``question_column`` (the question text;
    default: the prompt). ``model``: the policy, to score the completions' tokens for the
    confidences (required when ``lam > 0``); ``temperature`` as in GRPOConfig.
    """

    __name__ = "ccrl_reward"  # TRL names the reward's metrics after it

    def __init__(
        self,
        tokenizer,
        *,
        model: torch.nn.Module | None = None,
        temperature: float = 1.0,
        lam: float = 0.5,
        step_reward: str = "brier",
        confidence: str = "geomean",
        answer_column: str = "answer",
        steps_column: str = "steps",
        question_column: str | None = None,
    ) -> None:
        if lam > 0 and model is None:
            raise ValueError(
                "model: expected the policy (to score the step tokens' confidences) when lam > 0, got None"
            )
        self.tokenizer = tokenizer
        self.model = model
        self.temperature = temperature
        self.options = {"lam": lam, "step_reward": step_reward, "confidence": confidence}
        self.answer_column, self.steps_column, self.question_column = answer_column, steps_column, question_column

    @torch.no_grad()
    def completion_logprobs(self, prompts: Sequence[Any], completion_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per completion, the policy's log-prob of each of its tokens after its prompt: one forward over
        the batch (right-padded, so causal attention leaves every real position as it was)."""
        from fastcomt.integrations.fused_head import lm_head_of, next_token_hidden

        head = lm_head_of(self.model)
        device = head.weight.device
        rows = [self._prompt_ids(prompt) + list(ids) for prompt, ids in zip(prompts, completion_ids)]
        width = max(len(r) for r in rows)
        input_ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        attention = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        targets = torch.zeros(len(rows), width - 1, dtype=torch.long, device=device)
        scored = torch.zeros(len(rows), width - 1, dtype=torch.bool, device=device)
        for b, (row, ids) in enumerate(zip(rows, completion_ids)):
            input_ids[b, : len(row)] = torch.tensor(row)
            attention[b, : len(row)] = 1
            start = len(row) - len(ids)  # position start - 1 predicts the first completion token
            targets[b, start - 1 : len(row) - 1] = torch.tensor(list(ids), dtype=torch.long)
            scored[b, start - 1 : len(row) - 1] = True
        hidden = next_token_hidden(self.model, input_ids, attention, width - 1)
        logp, _, _ = linear_logprobs(
            hidden.to(head.weight.dtype),
            head.weight,
            targets,
            mask=scored,
            bias=head.bias,
            temperature=self.temperature,
            logit_scale=head.logit_scale,
            softcap=head.softcap,
        )
        return [logp[b][scored[b]].tolist() for b in range(len(rows))]

    def _prompt_ids(self, prompt: Any) -> list[int]:
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        # conversational: the chat template's generation prompt, as TRL builds it
        ids = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, Mapping) else ids)

    def __call__(self, prompts, completions, completion_ids, **columns) -> list[float]:
        if self.answer_column not in columns:
            raise ValueError(f"{self.answer_column}: expected a dataset column with the gold answers, got none")
        answers = columns[self.answer_column]
        steps = columns.get(self.steps_column) or [None] * len(completions)
        questions = columns.get(self.question_column) if self.question_column else None
        logprobs = self.completion_logprobs(prompts, completion_ids) if self.options["lam"] > 0 else None
        rewards = []
        for i, ids in enumerate(completion_ids):
            question = questions[i] if questions is not None else _prompt_text(prompts[i])
            problem = problem_from_fields(question, answers[i], steps[i])
            text, offsets = token_offsets(self.tokenizer, ids)
            graded = grade_completion(text, problem, offsets)
            rewards.append(ccrl_reward_from_grade(graded, None if logprobs is None else logprobs[i], **self.options))
        return rewards


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(
        m.get("content", "") for m in prompt if isinstance(m, Mapping) and isinstance(m.get("content"), str)
    )


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping | None = None,
    *,
    lam: float = 0.5,
    step_reward: str = "brier",
    confidence: str = "geomean",
) -> dict[str, float]:
    """verl reward function (``custom_reward_function.path`` / ``name: compute_score``).

    ground_truth: the gold answer, or a mapping with ``answer`` and optional ``steps`` (gold
    intermediate values). extra_info: ``question`` (so that numbers copied from it are not steps) and,
    for ``lam > 0``, ``token_logprobs`` and ``token_offsets`` of the solution's tokens (one log-prob
    and one ``(start, end)`` character span of ``solution_str`` per token). Returns verl's dict form:
    ``score`` plus the answer's correctness and the step count, which verl logs.
    """
    info = dict(extra_info or {})
    if isinstance(ground_truth, Mapping):
        answer, steps = ground_truth.get("answer"), ground_truth.get("steps")
    else:
        answer, steps = ground_truth, None
    problem = problem_from_fields(str(info.get("question", "")), answer, steps)
    offsets = info.get("token_offsets")
    graded = grade_completion(solution_str, problem, [tuple(o) for o in offsets] if offsets is not None else None)
    if lam > 0 and graded.steps and offsets is None:
        raise ValueError(
            "extra_info: expected token_logprobs and token_offsets of the solution's tokens when lam > 0 (the "
            "confidence term needs them); pass them, or set lam=0 in custom_reward_function.reward_kwargs"
        )
    score = ccrl_reward_from_grade(
        graded, info.get("token_logprobs"), lam=lam, step_reward=step_reward, confidence=confidence
    )
    return {"score": score, "answer_correct": float(graded.answer_correct), "num_steps": float(len(graded.steps))}
