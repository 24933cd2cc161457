"""`fastcomt demo`: until the end-to-end CoMT + CCRL demo lands, the demo runs every fused LM-head
kernel on a small CPU problem (Triton interpreter) against its plain-torch reference and prints
what it computed."""

from __future__ import annotations

import os


def main(config: str | None = None, overrides: list[str] | None = None) -> int:
    if config or overrides:
        raise ValueError("demo: the kernel smoke takes no --config or overrides yet")
    import torch

    if not torch.cuda.is_available():
        # Must be set before the first @triton.jit function is defined.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from fastcomt.kernels.smoke import run_smoke

    rows = run_smoke()
    print("fastcomt kernel smoke (fused vs plain-torch reference)")
    header = list(rows[0].keys())
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(_fmt(row[k]) for k in header) + " |")
    return 0


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
