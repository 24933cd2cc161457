"""On a machine without CUDA the kernels need Triton's interpreter, which Triton decides when
triton.language is first imported. Importing fastcomt first sets it; importing triton first (e.g.
through transformers) gives a clear error instead of an obscure one deep inside a kernel."""

import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter switch only applies without CUDA")

LOGPROBS = """
import torch
h = torch.randn(4, 8); w = torch.randn(20, 8); t = torch.randint(0, 20, (4,))
logp = fastcomt.kernels.linear_logprobs(h, w, t)[0]
ref = torch.log_softmax(h @ w.T, dim=-1).gather(1, t[:, None])[:, 0]
assert torch.allclose(logp, ref, atol=1e-5), (logp, ref)
print("ok")
"""


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_importing_fastcomt_first_selects_the_interpreter():
    proc = _run("import fastcomt\nimport transformers.modeling_utils\nimport fastcomt.kernels\n" + LOGPROBS)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_triton_imported_too_early_is_a_clear_error():
    proc = _run("import triton.language\nimport fastcomt.kernels\n")
    assert proc.returncode != 0
    assert "TRITON_INTERPRET=1" in proc.stderr and "ImportError" in proc.stderr, proc.stderr


def test_the_choice_follows_torch_cuda_check_not_device_nodes():
    # With torch reporting a CUDA device, the first `import triton` leaves the interpreter off, whatever
    # device nodes the machine has; without one it turns it on.
    code = (
        "import os, torch\ntorch.cuda.is_available = lambda: {cuda}\nimport fastcomt\nimport triton.language\n"
        "print(os.environ.get('TRITON_INTERPRET'))"
    )
    for cuda, expected in ((True, "None"), (False, "1")):
        proc = _run(code.format(cuda=cuda))
        assert proc.returncode == 0 and proc.stdout.strip() == expected, proc.stdout + proc.stderr


def test_importing_fastcomt_imports_neither_torch_nor_triton():
    proc = _run("import sys, fastcomt\nprint(sorted(m for m in ('torch', 'triton') if m in sys.modules))")
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_cuda_tensors_never_reach_the_interpreter():
    from fastcomt.kernels.lm_head_rows import lm_head_rows_kernel
    from fastcomt.kernels.logprob_rows import logprob_backward_rows, logprob_forward_rows
    from fastcomt.kernels.rewards import _ccrl_reward_kernel
    from fastcomt.kernels.triton_mode import check_kernel_mode, kernel_is_interpreted

    for kernel in (lm_head_rows_kernel, logprob_forward_rows, logprob_backward_rows, _ccrl_reward_kernel):
        assert kernel_is_interpreted(kernel)  # this test process runs under the interpreter (no CUDA)
        check_kernel_mode(kernel, torch.device("cpu"))
        with pytest.raises(RuntimeError, match="expected a compiled Triton kernel for cuda tensors"):
            check_kernel_mode(kernel, torch.device("cuda"))


AUTOGRAD_LOGPROBS = """
import torch
from fastcomt.kernels.linear_logprobs_autograd import linear_logprobs_backward_op
h = torch.randn(4, 8); w = torch.randn(20, 8); t = torch.randint(0, 20, (4,)); on = torch.ones(4, dtype=torch.bool)
for call in (
    lambda: fastcomt.kernels.linear_logprobs_autograd(h, w, t),
    lambda: linear_logprobs_backward_op(h, w, None, t, on, torch.zeros(4), torch.zeros(4), torch.ones(4), None,
        need_dh=True, need_dw=False, need_dbias=False, temperature=1.0, logit_scale=1.0, softcap=0.0,
        chunk_rows=4, block_v=32, num_warps=4, fp32_logits=True),
):
    try:
        call()
    except RuntimeError as exc:
        print(exc)
"""


def _run_without_interpreter(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    return subprocess.run(
        [sys.executable, "-c", "import fastcomt.kernels\n" + code], capture_output=True, text=True, timeout=120, env=env
    )


def test_cpu_tensors_with_the_interpreter_off_are_a_clear_error():
    proc = _run_without_interpreter(LOGPROBS)
    assert proc.returncode != 0 and "expected Triton's interpreter for CPU tensors" in proc.stderr, proc.stderr


def test_the_differentiable_logprob_checks_both_row_kernels_before_launching():
    out = _run_without_interpreter(AUTOGRAD_LOGPROBS).stdout
    assert out.count("expected Triton's interpreter for CPU tensors") == 2, out
    assert "logprob_forward_rows" in out and "logprob_backward_rows" in out, out
