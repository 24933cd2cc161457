"""Glue between the grader (fastcomt.tasks) and the CCRL reward kernel (fastcomt.kernels.rewards).

A CCRL step grades each execution (`grade_completion`, with the completion's token offsets), then
`reward_inputs` packs the grades into the kernel's tensors (per-token step ids aligned with the
rollout's log-prob rows, per-step and per-answer correctness) and `ccrl_batch_rewards` runs the
kernel, or its plain-torch definition (`backend`: "auto" runs the kernel on CUDA tensors and the
definition on CPU ones, where the kernel would run in Triton's interpreter, about 0.6 s for the
demo's 64 executions against milliseconds). `step_calibration_pairs` returns (confidence, correct)
per step for calibration metrics.

`step_confidences` is the one definition of a step's confidence: the kernel's, which CCRL rewards
and evaluation reports alike (modes `CONFIDENCE_MODES`: geomean, min, first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from fastcomt.kernels.rewards import CONFIDENCE_MODES, CCRLRewards, ccrl_rewards
from fastcomt.kernels.rewards_reference import ccrl_rewards_reference
from fastcomt.tasks.grade import GradedCompletion

__all__ = [
    "CONFIDENCE_MODES",
    "REWARD_BACKENDS",
    "resolve_reward_backend",
    "RewardInputs",
    "reward_inputs",
    "ccrl_batch_rewards",
    "step_calibration_pairs",
    "step_confidences",
]


class RewardInputs(NamedTuple):
    span_ids: torch.Tensor  # [B, T] int32, -1 outside steps
    step_correct: torch.Tensor  # [B, K] float32
    answer_correct: torch.Tensor  # [B] float32


def reward_inputs(
    graded: Sequence[GradedCompletion],
    seq_len: int,
    *,
    starts: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> RewardInputs:
    """Kernel inputs for a batch of graded completions.

    seq_len: T, the width of the log-prob rows. starts: the column where each completion's first
    token sits in its row (0 when rows hold the completion only; the prompt length when they hold
    prompt + completion). Completion tokens past T are dropped (their steps then have fewer tokens).
    """
    if seq_len < 0:
        raise ValueError(f"seq_len: expected >= 0, got {seq_len}")
    B = len(graded)
    if starts is not None and len(starts) != B:
        raise ValueError(f"starts: expected {B} entries (one per completion), got {len(starts)}")
    K = max((len(g.steps) for g in graded), default=0)
    span_ids = torch.full((B, seq_len), -1, dtype=torch.int32)
    step_correct = torch.zeros(B, K, dtype=torch.float32)
    answer_correct = torch.zeros(B, dtype=torch.float32)
    for b, g in enumerate(graded):
        if not isinstance(g, GradedCompletion):
            raise TypeError(f"graded[{b}]: expected GradedCompletion, got {type(g).__name__}")
        if g.steps and not g.token_step_ids:
            raise ValueError(f"graded[{b}]: has steps but no token ids (grade it with the completion's offsets)")
        start = 0 if starts is None else int(starts[b])
        if start < 0:
            raise ValueError(f"starts[{b}]: expected >= 0, got {start}")
        ids = g.token_step_ids[: max(0, seq_len - start)]
        if ids:
            span_ids[b, start : start + len(ids)] = torch.tensor(ids, dtype=torch.int32)
        if g.step_correct:
            step_correct[b, : len(g.step_correct)] = torch.tensor(g.step_correct, dtype=torch.float32)
        answer_correct[b] = 1.0 if g.answer_correct else 0.0
    if device is not None:
        span_ids, step_correct, answer_correct = (t.to(device) for t in (span_ids, step_correct, answer_correct))
    return RewardInputs(span_ids, step_correct, answer_correct)


REWARD_BACKENDS = ("auto", "triton", "torch")

# ccrl_rewards' launch options, which the plain-torch definition has no use for
_KERNEL_ONLY_OPTIONS = ("num_problems", "max_problem_size", "block_t")


def resolve_reward_backend(backend: str, device: torch.device) -> str:
    """The backend that runs for tensors on `device`, "triton" or "torch": auto picks the kernel on
    CUDA only."""
    if backend not in REWARD_BACKENDS:
        raise ValueError(f"backend: expected one of {REWARD_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" else "torch"
    return backend


def ccrl_batch_rewards(
    logprobs: torch.Tensor,
    graded: Sequence[GradedCompletion],
    group_ids: torch.Tensor,
    problem_ids: torch.Tensor | None = None,
    *,
    starts: Sequence[int] | None = None,
    backend: str = "auto",
    **options,
) -> CCRLRewards:
    """Grades + rollout log-probs [B, T] -> rewards and advantages (options as in ccrl_rewards).

    backend: "triton" (the kernel; on CPU tensors it runs in Triton's interpreter), "torch" (its
    plain-torch definition, kernels/rewards_reference.py, in fp32) or "auto" (triton for CUDA
    tensors, torch otherwise). Both give the same rewards up to fp32 rounding (tests/test_rewards.py).
    """
    inputs = reward_inputs(graded, logprobs.shape[-1], starts=starts, device=logprobs.device)
    args = (logprobs, inputs.span_ids, inputs.step_correct, inputs.answer_correct, group_ids, problem_ids)
    if resolve_reward_backend(backend, logprobs.device) == "triton":
        return ccrl_rewards(*args, **options)
    result = ccrl_rewards_reference(
        *args, **{k: v for k, v in options.items() if k not in _KERNEL_ONLY_OPTIONS}, dtype=torch.float32
    )
    on_device = lambda t: None if t is None else t.to(logprobs.device)  # noqa: E731
    return CCRLRewards(*(on_device(t) for t in result))


def step_calibration_pairs(result: CCRLRewards, graded: Sequence[GradedCompletion]) -> tuple[list[float], list[int]]:
    """(confidence, correct) of every step that has tokens, from a dense=True result."""
    if result.step_confidence is None:
        raise ValueError("result: expected a dense=True result (step_confidence is None)")
    conf = result.step_confidence.detach().float().cpu()
    confidences: list[float] = []
    correct: list[int] = []
    for b, g in enumerate(graded):
        present = set(g.token_step_ids) - {-1}
        for k, z in enumerate(g.step_correct):
            if k in present:
                confidences.append(float(conf[b, k]))
                correct.append(int(z))
    return confidences, correct


def step_confidences(
    logprobs: Sequence[Sequence[float]],
    graded: Sequence[GradedCompletion],
    *,
    confidence: str = "geomean",
    backend: str = "auto",
) -> list[list[float | None]]:
    """Per completion, per step: its confidence from the completion's sampled log-probs, as the CCRL
    reward kernel computes it (one launch for the batch); None for a step that has no token of its own
    (a token shared by two steps counts for the first, `tasks.token_step_ids`).

    logprobs: one row per completion, aligned with the token ids it was graded with.
    """
    if confidence not in CONFIDENCE_MODES:
        raise ValueError(f"confidence: expected one of {CONFIDENCE_MODES}, got {confidence!r}")
    if len(logprobs) != len(graded):
        raise ValueError(f"logprobs: expected one row per graded completion ({len(graded)}), got {len(logprobs)}")
    if not graded:
        return []
    width = max(1, max(len(row) for row in logprobs))
    rows = torch.zeros(len(graded), width, dtype=torch.float32)
    for b, row in enumerate(logprobs):
        if row:
            rows[b, : len(row)] = torch.tensor(list(row), dtype=torch.float32)
    # Each completion its own group: a confidence depends on its own row only and the advantages are
    # not used here, while one group of the whole batch would exceed the kernel's 64 executions per
    # problem at an evaluation batch of 65 completions or more.
    groups = torch.arange(len(graded), dtype=torch.int64)
    result = ccrl_batch_rewards(rows, graded, groups, confidence=confidence, dense=True, backend=backend)
    conf = result.step_confidence.detach().float().cpu()
    out: list[list[float | None]] = []
    for b, g in enumerate(graded):
        present = set(g.token_step_ids) - {-1}
        # min(1, c): an engine's log-probs can sit a rounding error above 0 (calibration metrics check [0, 1])
        out.append([min(1.0, float(conf[b, k])) if k in present else None for k in range(len(g.steps))])
    return out
