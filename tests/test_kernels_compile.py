"""Every kernel specialisation the launch code can pick compiles, ahead of time, for sm_90 (H100/H200)
and sm_80 (A100) with the installed triton and the ptxas bundled in its wheel, and none spills
registers. No GPU needed: triton.compile takes the target as an argument.

Compilation runs in a subprocess with TRITON_INTERPRET=0: under the interpreter @triton.jit returns
Python-executed functions, which triton.compile rejects (AttributeError: 'InterpretedFunction' object
has no attribute 'cache_key'). Specialisations compile in parallel processes and land in Triton's
cache, so a rerun takes seconds; a cold run takes about a minute and a half of CPU time (175 specialisations per target)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from fastcomt.kernels.aot_compile import logprob_specialisations, reward_specialisations, row_specialisations
from fastcomt.kernels.config import LMHeadConfig, chunk_dtypes, resolve_launch
from fastcomt.kernels.lm_head_rows import EPILOGUE_POLICY, row_kernel_constants
from fastcomt.kernels.logprob_rows import logprob_backward_constants, logprob_forward_constants

KERNELS = ("lm_head_rows_kernel", "logprob_forward_rows", "logprob_backward_rows", "_ccrl_reward_kernel")


def _compile_env(interpret: str) -> dict[str, str]:
    return {**os.environ, "TRITON_INTERPRET": interpret}


@pytest.fixture(scope="module")
def reports() -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "fastcomt.kernels.aot_compile"],
        capture_output=True,
        text=True,
        timeout=900,
        env=_compile_env("0"),
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-3000:]
    return lines


def test_every_specialisation_compiles_without_spills(reports):
    bad = [r for r in reports if not r["ok"] or r["spill_stores"] or r["spill_loads"]]
    assert not bad, json.dumps(bad[:3], indent=1)
    expected = {(arch, kernel) for arch in (90, 80) for kernel in KERNELS}
    assert {(r["arch"], r["kernel"]) for r in reports} == expected
    specs = row_specialisations() + logprob_specialisations() + reward_specialisations()
    assert len(reports) == 2 * len(specs)


def test_row_kernels_registers_leave_room_for_two_blocks_per_sm(reports):
    # 65536 registers per SM / (256 threads x 2 resident programs) = 128 per thread.
    assert max(r["registers"] for r in reports if r["kernel"] != "_ccrl_reward_kernel") <= 128


def test_the_policy_launch_at_a_real_shape_is_among_the_compiled():
    # The list comes from the launch code's own choice functions: the default launch for a bf16
    # policy-loss step at Qwen2's vocabulary is in it.
    cuda = torch.device("cuda")
    launch = resolve_launch(LMHeadConfig(), 151_936, torch.bfloat16, cuda)
    constants = row_kernel_constants(
        epilogue=EPILOGUE_POLICY,
        write_grad=True,
        has_coef=False,
        has_old=True,
        has_ref=True,
        has_softcap=False,
        block_v=launch.block_v,
        num_warps=launch.num_warps,
    )
    _, logits, grad = chunk_dtypes(torch.bfloat16, cuda, launch.fp32_logits, True)
    assert (logits, grad) == (torch.float32, torch.bfloat16)
    specs = row_specialisations()
    assert any(s["constants"] == constants and s["pointers"]["grad_ptr"] == grad for s in specs)


def test_the_softcapped_logprob_launches_at_a_real_shape_are_among_the_compiled():
    # Gemma 2's head (V = 256000, final-logit softcap 30) through the differentiable log-prob: the
    # forward launch and the backward launch with both upstream gradients.
    cuda = torch.device("cuda")
    launch = resolve_launch(LMHeadConfig(), 256_000, torch.bfloat16, cuda)
    _, logits, grad = chunk_dtypes(torch.bfloat16, cuda, launch.fp32_logits, True)
    forward = logprob_forward_constants(has_softcap=True, block_v=launch.block_v, num_warps=launch.num_warps)
    backward = logprob_backward_constants(
        has_softcap=True,
        has_grad_logp=True,
        has_grad_entropy=True,
        block_v=launch.block_v,
        num_warps=launch.num_warps,
    )
    specs = logprob_specialisations()
    assert any(s["kernel"] == "logprob_forward_rows" and s["constants"] == forward for s in specs)
    assert any(
        s["kernel"] == "logprob_backward_rows" and s["constants"] == backward and s["pointers"]["grad_ptr"] == grad
        for s in specs
    )


def test_compiling_refuses_the_interpreter():
    proc = subprocess.run(
        [sys.executable, "-m", "fastcomt.kernels.aot_compile", "--archs", "90"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_compile_env("1"),
    )
    assert proc.returncode == 2 and "TRITON_INTERPRET" in proc.stderr, proc.stderr
