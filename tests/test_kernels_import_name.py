"""Regression: with the repo root on sys.path, transformers' probe for PyPI's `kernels` package imports
our kernels/ folder as a top-level `kernels`. That import must stay inert: registering the custom ops
a second time used to corrupt the live ones (segfaults, bad_alloc) in the next fused call."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import torch
from fastcomt.kernels import linear_cross_entropy, reference_linear_cross_entropy
h = torch.randn(6, 8, dtype=torch.float64)
w = torch.randn(50, 8, dtype=torch.float64)
t = torch.randint(0, 50, (6,))
first = linear_cross_entropy(h.float(), w.float(), t, reduction="sum")
import transformers.modeling_utils  # probes (and imports) the top-level name `kernels`
import kernels
assert kernels.__version__ == "0.0.0" and not hasattr(kernels, "linear_cross_entropy"), "top-level kernels not inert"
second = linear_cross_entropy(h.float(), w.float(), t, reduction="sum")
expected = reference_linear_cross_entropy(h, w, t, reduction="sum")
assert abs(float(first) - float(expected)) < 1e-4 and abs(float(second) - float(expected)) < 1e-4, (first, second, expected)
print("ok")
"""


def test_top_level_kernels_import_is_inert():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(repo=str(REPO))],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TRITON_INTERPRET": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
