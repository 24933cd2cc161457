"""Preflight of the GPU check: before any timed minute is spent, prove the machine can do the job.

    python bench/preflight.py [--device cpu] [--site-dir DIR ...]

Checks, printing one JSON object and exiting 1 if any required check fails:
- imports: torch, triton, numpy, packaging (required); liger_kernel, cut_cross_entropy, trl and verl's
  kernel files (reported: a missing peer only costs its own rows);
- the Triton mode fits the device: on CUDA the kernels are compiled (TRITON_INTERPRET off), on CPU
  (dry runs) they are interpreted;
- one real launch of fastcomt's row kernel (linear_logprobs on a small problem, compiled on CUDA),
  checked against torch's log_softmax.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bootstrap  # noqa: E402  (stdlib only: safe before the Triton switch)

REQUIRED = ("torch", "triton", "numpy", "packaging")
PEERS = ("liger_kernel", "cut_cross_entropy")


def _import(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        return f"missing: {type(exc).__name__}: {exc}"[:200]
    return f"ok {getattr(module, '__version__', '')}".strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Preflight of bench/gpu_check.sh.")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--site-dir", action="append", default=[])
    args = parser.parse_args(argv)
    bootstrap.ensure_repo_on_path()
    bootstrap.add_site_dirs(args.site_dir)
    bootstrap.use_triton_interpreter(args.device)

    report: dict = {"device": args.device, "imports": {name: _import(name) for name in REQUIRED}}
    failures = [name for name, status in report["imports"].items() if not status.startswith("ok")]
    report["peers"] = {name: _import(name) for name in PEERS}
    from bench.peers import load_trl_chunked_logprob, load_verl_linear_cross_entropy

    for name, load in (("trl", load_trl_chunked_logprob), ("verl", load_verl_linear_cross_entropy)):
        try:
            load()
            report["peers"][name] = "ok"
        except Exception as exc:
            report["peers"][name] = f"missing: {type(exc).__name__}: {exc}"[:200]

    if not failures:
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            failures.append("cuda: torch sees no CUDA device")
        else:
            try:
                kernels, source = bootstrap.import_kernels()
                from fastcomt.kernels.lm_head_rows import lm_head_rows_kernel
                from fastcomt.kernels.triton_mode import kernel_is_interpreted

                interpreted = kernel_is_interpreted(lm_head_rows_kernel)
                report.update(
                    kernels_source=source,
                    triton_interpret_env=os.environ.get("TRITON_INTERPRET"),
                    kernel_interpreted=interpreted,
                )
                if interpreted != (args.device == "cpu"):
                    failures.append(
                        f"triton mode: expected {'interpreted' if args.device == 'cpu' else 'compiled'} "
                        f"kernels on {args.device}, got {'interpreted' if interpreted else 'compiled'}"
                    )
                g = torch.Generator().manual_seed(0)
                h = torch.randn(64, 128, generator=g).to(args.device, torch.bfloat16)
                w = (torch.randn(1000, 128, generator=g) / 128**0.5).to(args.device, torch.bfloat16)
                t = torch.randint(0, 1000, (64,), generator=g).to(args.device)
                start = time.perf_counter()
                logp = kernels.linear_logprobs(h, w, t)[0]
                if args.device == "cuda":
                    torch.cuda.synchronize()
                report["launch_s"] = round(time.perf_counter() - start, 3)  # includes the compilation
                want = torch.log_softmax(h.float() @ w.float().T, dim=-1).gather(1, t[:, None])[:, 0]
                report["launch_max_abs_err"] = float((logp - want).abs().max())
                if not report["launch_max_abs_err"] <= 2e-2:
                    failures.append(
                        f"launch: expected log-probs within 2e-2 of torch, got {report['launch_max_abs_err']:.3g}"
                    )
            except Exception as exc:
                failures.append(f"launch: {type(exc).__name__}: {exc}"[:300])
    report["failures"] = failures
    report["ok"] = not failures
    print(json.dumps(report, indent=1))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
