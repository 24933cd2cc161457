"""CCRL reward and group advantages in one Triton launch.

For execution b with steps k (token spans from the grader), rollout log-probs l_t:

    c_k = exp(mean_{t in span k} l_t)      (confidence="geomean"; "min": exp(min l_t); "first": exp(l_first))
    r_k = 1 - (c_k - z_k)^2                (step_reward="brier";  "signed": (2 z_k - 1) c_k)
    R_b = answer_b + lam * mean_k r_k      (a sequence with no step tokens gets R_b = answer_b)

Advantages (advantage="grpo": (x - mean) / (std + eps), unbiased std; "dr_grpo": x - mean):
  - execution level: R_b normalised over its plan group (the executions sharing group_ids[b]);
  - plan level: each plan's mean reward normalised over the plans of its problem (problem_ids),
    the same value for every execution of a plan. Without problem_ids every group is its own
    problem, so plan advantages are 0 (plain GRPO: one plan per problem).
A group (or problem) with one member gets advantage 0; equal rewards give exactly 0, never NaN.

One program per problem walks the batch for its members, reduces each member's tokens into
per-step sums in registers (a [BLOCK_T, BLOCK_K] one-hot of span ids per chunk of tokens, steps BLOCK_K at a time), keeps
the members' rewards in a register vector, and computes both advantage levels from pairwise
differences (R_i - R_j), which are exactly zero for equal rewards, so no rounding noise gets
amplified by 1/eps. Everything is fp32 and uses only tl.exp/tl.sqrt, so it runs unchanged under
the CPU interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .triton_mode import check_kernel_mode

__all__ = ["CCRLRewards", "ccrl_rewards", "check_reward_inputs", "CONFIDENCE_MODES", "STEP_REWARDS", "ADVANTAGES"]

CONFIDENCE_MODES = ("geomean", "min", "first")
STEP_REWARDS = ("brier", "signed")
ADVANTAGES = ("grpo", "dr_grpo")

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_CORRECT_DTYPES = _FLOAT_DTYPES + _INT_DTYPES + (torch.bool,)


class CCRLRewards(NamedTuple):
    """rewards, advantages, plan_advantages: [B] fp32 (fp64 from the reference).
    step_confidence, step_rewards: [B, K] with dense=True (0 where a step has no tokens), else None.
    """

    rewards: torch.Tensor
    advantages: torch.Tensor
    plan_advantages: torch.Tensor
    step_confidence: torch.Tensor | None
    step_rewards: torch.Tensor | None


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_reward_inputs(
    logprobs: torch.Tensor,
    span_ids: torch.Tensor,
    step_correct: torch.Tensor,
    answer_correct: torch.Tensor,
    group_ids: torch.Tensor,
    problem_ids: torch.Tensor | None,
    *,
    confidence: str,
    step_reward: str,
    lam: float,
    advantage: str,
    eps: float,
) -> None:
    """Shape/dtype/device/option checks (metadata only: no host sync)."""
    named = [
        ("logprobs", logprobs),
        ("span_ids", span_ids),
        ("step_correct", step_correct),
        ("answer_correct", answer_correct),
        ("group_ids", group_ids),
    ]
    if problem_ids is not None:
        named.append(("problem_ids", problem_ids))
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs: expected shape [B, T], got {_shape(logprobs)}")
    if logprobs.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"logprobs: expected a float dtype, got {logprobs.dtype}")
    B, T = logprobs.shape
    if span_ids.shape != (B, T) or span_ids.dtype not in _INT_DTYPES:
        raise ValueError(
            f"span_ids: expected an integer tensor of shape [{B}, {T}], got {span_ids.dtype} {_shape(span_ids)}"
        )
    if step_correct.dim() != 2 or step_correct.shape[0] != B or step_correct.dtype not in _CORRECT_DTYPES:
        raise ValueError(
            f"step_correct: expected shape [{B}, K] (float, int or bool), got {step_correct.dtype} {_shape(step_correct)}"
        )
    if answer_correct.shape != (B,) or answer_correct.dtype not in _CORRECT_DTYPES:
        raise ValueError(
            f"answer_correct: expected shape [{B}] (float, int or bool), got {answer_correct.dtype} {_shape(answer_correct)}"
        )
    for name, t in named[4:]:
        if t.shape != (B,) or t.dtype not in _INT_DTYPES:
            raise ValueError(f"{name}: expected an integer tensor of shape [{B}], got {t.dtype} {_shape(t)}")
    devices = {t.device for _, t in named}
    if len(devices) != 1:
        raise ValueError(
            f"logprobs, span_ids, step_correct, answer_correct, group_ids, problem_ids: expected one device, got {sorted(str(d) for d in devices)}"
        )
    if confidence not in CONFIDENCE_MODES:
        raise ValueError(f"confidence: expected one of {CONFIDENCE_MODES}, got {confidence!r}")
    if step_reward not in STEP_REWARDS:
        raise ValueError(f"step_reward: expected one of {STEP_REWARDS}, got {step_reward!r}")
    if advantage not in ADVANTAGES:
        raise ValueError(f"advantage: expected one of {ADVANTAGES}, got {advantage!r}")
    if not (isinstance(lam, int | float) and lam >= 0):
        raise ValueError(f"lam: expected a non-negative number, got {lam!r}")
    if not (isinstance(eps, int | float) and eps > 0):
        raise ValueError(f"eps: expected a positive number, got {eps!r}")


# Position sentinel for "no token of this step seen yet" (confidence="first").
_NOT_FOUND = tl.constexpr(2147483647)


# The 0/1 switches stay runtime values even when 1 (Triton would otherwise make a constant of a 1).
@triton.jit(do_not_specialize=["signed", "dr_grpo", "dense"])
def _ccrl_reward_kernel(
    logp_ptr,
    span_ptr,
    step_ok_ptr,
    answer_ptr,
    group_ptr,
    problem_ptr,
    reward_ptr,
    adv_ptr,
    plan_adv_ptr,
    conf_ptr,
    step_r_ptr,
    B,
    T,
    K,
    stride_logp,
    stride_span,
    stride_ok,
    stride_dense,
    lam,
    eps,
    signed,
    dr_grpo,
    dense,  # 0/1 switches: runtime values, so they add no compiled specialisations
    CONF_MODE: tl.constexpr,  # 0 geomean, 1 min, 2 first
    BLOCK_T: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    problem = tl.program_id(0)
    offs_t = tl.arange(0, BLOCK_T)
    offs_m = tl.arange(0, BLOCK_M)

    # The problem's members, in batch order: reward, plan group and batch index per slot.
    member_reward = tl.zeros([BLOCK_M], dtype=tl.float32)
    member_group = tl.zeros([BLOCK_M], dtype=tl.int64)
    member_seq = tl.zeros([BLOCK_M], dtype=tl.int64)
    count = tl.zeros([], dtype=tl.int32)
    for b in range(0, B):
        if tl.load(problem_ptr + b).to(tl.int64) == problem:
            # Steps in blocks of BLOCK_K (registers stay bounded for any K); the tokens are re-read
            # once per block.
            r_sum = tl.zeros([], dtype=tl.float32)
            n_steps = tl.zeros([], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                k_in = offs_k < K
                step_sum = tl.zeros([BLOCK_K], dtype=tl.float32)
                step_cnt = tl.zeros([BLOCK_K], dtype=tl.float32)
                step_min = tl.full([BLOCK_K], float("inf"), dtype=tl.float32)
                first_pos = tl.full([BLOCK_K], _NOT_FOUND, dtype=tl.int32)
                first_lp = tl.zeros([BLOCK_K], dtype=tl.float32)
                for t0 in range(0, T, BLOCK_T):
                    t = t0 + offs_t
                    t_in = t < T
                    sid = tl.load(span_ptr + b * stride_span + t, mask=t_in, other=-1).to(tl.int32)
                    lp = tl.load(logp_ptr + b * stride_logp + t, mask=t_in, other=0.0).to(tl.float32)
                    hit = sid[:, None] == offs_k[None, :]
                    step_sum += tl.sum(tl.where(hit, lp[:, None], 0.0), axis=0)
                    step_cnt += tl.sum(hit.to(tl.float32), axis=0)
                    if CONF_MODE == 1:
                        step_min = tl.minimum(step_min, tl.min(tl.where(hit, lp[:, None], float("inf")), axis=0))
                    if CONF_MODE == 2:
                        pos = tl.min(tl.where(hit, t[:, None], _NOT_FOUND), axis=0)
                        val = tl.sum(tl.where(hit & (t[:, None] == pos[None, :]), lp[:, None], 0.0), axis=0)
                        take = (first_pos == _NOT_FOUND) & (pos != _NOT_FOUND)
                        first_lp = tl.where(take, val, first_lp)
                        first_pos = tl.where(take, pos, first_pos)
                has_tokens = step_cnt > 0.0
                if CONF_MODE == 0:
                    log_conf = step_sum / tl.maximum(step_cnt, 1.0)
                elif CONF_MODE == 1:
                    log_conf = step_min
                else:
                    log_conf = first_lp
                conf = tl.where(has_tokens, tl.exp(tl.where(has_tokens, log_conf, 0.0)), 0.0)
                z = tl.load(step_ok_ptr + b * stride_ok + offs_k, mask=k_in, other=0).to(tl.float32)
                if signed != 0:
                    r = (2.0 * z - 1.0) * conf
                else:
                    r = 1.0 - (conf - z) * (conf - z)
                r = tl.where(has_tokens, r, 0.0)
                n_steps += tl.sum(has_tokens.to(tl.float32), axis=0)
                r_sum += tl.sum(r, axis=0)
                if dense != 0:
                    tl.store(conf_ptr + b * stride_dense + offs_k, conf, mask=k_in)
                    tl.store(step_r_ptr + b * stride_dense + offs_k, r, mask=k_in)
            mean_r = r_sum / tl.maximum(n_steps, 1.0)
            reward = tl.load(answer_ptr + b).to(tl.float32) + lam * mean_r
            tl.store(reward_ptr + b, reward)
            slot = offs_m == count
            member_reward = tl.where(slot, reward, member_reward)
            member_group = tl.where(slot, tl.load(group_ptr + b).to(tl.int64), member_group)
            member_seq = tl.where(slot, b, member_seq)
            count += 1

    is_member = offs_m < count
    # Execution level: statistics over the members of the same plan group, from pairwise differences.
    same = (member_group[:, None] == member_group[None, :]) & is_member[:, None] & is_member[None, :]
    same_f = same.to(tl.float32)
    n_group = tl.sum(same_f, axis=1)
    diff = member_reward[:, None] - member_reward[None, :]
    centred = tl.sum(same_f * diff, axis=1) / tl.maximum(n_group, 1.0)  # R_i - mean of i's group
    var = tl.sum(same_f * (centred * centred)[None, :], axis=1) / tl.maximum(n_group - 1.0, 1.0)
    adv = centred
    if dr_grpo == 0:
        adv = centred / (tl.sqrt(var) + eps)
    adv = tl.where(n_group > 1.5, adv, 0.0)
    tl.store(adv_ptr + member_seq, adv, mask=is_member)

    # Plan level: each plan's mean reward (the same for all its members), each plan weighted once.
    plan_mean = tl.sum(same_f * member_reward[None, :], axis=1) / tl.maximum(n_group, 1.0)
    weight = tl.where(is_member, 1.0 / tl.maximum(n_group, 1.0), 0.0)
    n_plans = tl.sum(weight, axis=0)
    n_plans = tl.floor(n_plans + 0.5)
    plan_diff = plan_mean[:, None] - plan_mean[None, :]
    plan_centred = tl.sum(weight[None, :] * plan_diff, axis=1) / tl.maximum(n_plans, 1.0)
    plan_var = tl.sum(weight * plan_centred * plan_centred, axis=0) / tl.maximum(n_plans - 1.0, 1.0)
    plan_adv = plan_centred
    if dr_grpo == 0:
        plan_adv = plan_centred / (tl.sqrt(plan_var) + eps)
    plan_adv = tl.where(n_plans > 1.5, plan_adv, 0.0)
    tl.store(plan_adv_ptr + member_seq, plan_adv, mask=is_member)


# The largest problem (executions sharing a problem id) one program holds in registers. Its pairwise
# [BLOCK_M, BLOCK_M] statistics spill at 128 (255 registers on sm_90, compiled ahead of time in
# tests/test_kernels_compile.py); 64 compiles without spills.
MAX_PROBLEM_SIZE = 64
# Steps are reduced BLOCK_K at a time (any K works; more steps loop).
REWARD_BLOCK_K = 16


def reward_kernel_constants(*, confidence: str, max_problem_size: int, block_t: int) -> dict[str, object]:
    """The compile-time constants of one reward launch (the launch code's only choice: the AOT compile
    test enumerates its outputs): only the confidence mode and the block sizes are compile-time."""
    if block_t < 1 or block_t & (block_t - 1):
        raise ValueError(f"block_t: expected a power of two, got {block_t}")
    if max_problem_size > MAX_PROBLEM_SIZE:
        raise ValueError(
            f"max_problem_size: expected at most {MAX_PROBLEM_SIZE} executions per problem (one program keeps "
            f"a problem's rewards in registers), got {max_problem_size}"
        )
    return {
        "CONF_MODE": CONFIDENCE_MODES.index(confidence),
        "BLOCK_T": block_t,
        "BLOCK_K": REWARD_BLOCK_K,
        # One problem width: 16 spilled a few bytes on ptxas's whim, and one width is one compile.
        "BLOCK_M": MAX_PROBLEM_SIZE,
        "num_warps": 4,
    }


def ccrl_rewards(
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
    num_problems: int | None = None,
    max_problem_size: int | None = None,
    block_t: int = 128,
) -> CCRLRewards:
    """CCRL rewards and advantages for a batch of executions (no autograd: rewards are constants).

    logprobs: [B, T] rollout log-probs of the completion tokens (any float dtype; read as fp32).
    span_ids: [B, T] step index of each token within its sequence, -1 for none (ids >= K ignored).
    step_correct: [B, K] 1/0 correctness per step (padding beyond a sequence's steps is ignored,
        since those steps have no tokens). answer_correct: [B] 1/0.
    group_ids: [B] plan group of each execution (executions sharing a plan prefix).
    problem_ids: [B] problem of each execution, values in [0, P) (two-level CCRL: M plans x G
        executions per problem); None: every group is its own problem.
    num_problems, max_problem_size: P and the largest number of executions per problem, when the
        caller knows them (e.g. from M and G); otherwise read from the ids. Either way they are
        checked against the ids (a host sync per call): too small raises ValueError.
    """
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
    B, T = logprobs.shape
    K = step_correct.shape[1]
    device = logprobs.device
    rewards = torch.empty(B, dtype=torch.float32, device=device)
    advantages = torch.zeros(B, dtype=torch.float32, device=device)
    plan_advantages = torch.zeros(B, dtype=torch.float32, device=device)
    dense_k = max(K, 1)
    conf = torch.zeros(B if dense else 1, dense_k, dtype=torch.float32, device=device)
    step_r = torch.zeros_like(conf)
    if B == 0:
        return CCRLRewards(
            rewards, advantages, plan_advantages, conf[:, :K] if dense else None, step_r[:, :K] if dense else None
        )

    problems = group_ids if problem_ids is None else problem_ids
    ids_name = "problem_ids" if problem_ids is not None else "group_ids"
    # Checked against the ids even when given: one program per problem id below num_problems and
    # BLOCK_M member slots per program, so an execution outside them would keep an unwritten
    # (uninitialised) reward. Reading min/max and the largest problem costs a host sync, once per batch.
    lo, hi = (int(v) for v in torch.stack([problems.min(), problems.max()]).tolist())
    if lo < 0:
        raise ValueError(f"{ids_name}: expected values >= 0, got {lo}")
    if num_problems is None:
        num_problems = hi + 1
    elif hi >= num_problems:
        raise ValueError(f"num_problems: expected more than the largest {ids_name} value {hi}, got {num_problems}")
    biggest = int(torch.bincount(problems.to(torch.int64), minlength=max(num_problems, 1)).max())
    if max_problem_size is None:
        max_problem_size = biggest
    elif biggest > max_problem_size:
        raise ValueError(
            f"max_problem_size: expected at least {biggest} (the most executions sharing one "
            f"{ids_name[:-4]} id), got {max_problem_size}"
        )
    if num_problems < 1 or max_problem_size < 1:
        raise ValueError(f"num_problems and max_problem_size: expected >= 1, got {num_problems}, {max_problem_size}")
    constants = reward_kernel_constants(confidence=confidence, max_problem_size=max_problem_size, block_t=block_t)

    # One dtype per operand, so the launches share a handful of compiled specialisations; these
    # casts are [B, T]-sized and cheap next to a rollout.
    logprobs = logprobs.to(torch.float32).contiguous()
    span_ids = span_ids.to(torch.int32).contiguous()
    step_correct = step_correct.to(torch.float32).contiguous()
    if K == 0:  # keep a valid pointer for the (fully masked) step loads
        step_correct = torch.zeros(B, 1, dtype=torch.float32, device=device)

    check_kernel_mode(_ccrl_reward_kernel, device)
    _ccrl_reward_kernel[(num_problems,)](
        logp_ptr=logprobs,
        span_ptr=span_ids,
        step_ok_ptr=step_correct,
        answer_ptr=answer_correct.to(torch.float32).contiguous(),
        group_ptr=group_ids.to(torch.int64).contiguous(),
        problem_ptr=problems.to(torch.int64).contiguous(),
        reward_ptr=rewards,
        adv_ptr=advantages,
        plan_adv_ptr=plan_advantages,
        conf_ptr=conf,
        step_r_ptr=step_r,
        B=B,
        T=T,
        K=K,
        stride_logp=logprobs.stride(0),
        stride_span=span_ids.stride(0),
        stride_ok=step_correct.stride(0),
        stride_dense=conf.stride(0),
        lam=float(lam),
        eps=float(eps),
        signed=int(step_reward == "signed"),
        dr_grpo=int(advantage == "dr_grpo"),
        dense=int(dense),
        **constants,
    )
    return CCRLRewards(
        rewards,
        advantages,
        plan_advantages,
        conf[:, :K] if dense else None,
        step_r[:, :K] if dense else None,
    )
