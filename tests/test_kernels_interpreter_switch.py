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
