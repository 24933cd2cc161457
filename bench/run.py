"""fastcomt's LM-head benchmark: fused kernels against eager PyTorch, torch.compile, Liger-Kernel,
cut-cross-entropy and the GEMM floor, in one process, on the same inputs.

    python bench/run.py                              # GPU: default shapes, all ops and methods
    python bench/run.py --device cpu                 # tiny shapes: a smoke check, not kernel speed
    python bench/run.py --shapes 16384:3584:152064 --ops policy --out r.jsonl --plot r.png

Runs from a bare source tree (no install needed). Progress goes to stderr; stdout ends with the
markdown table. See bench/RESULTS.md for what the columns mean and the targets.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bootstrap  # noqa: E402  (stdlib only: safe before the Triton switch)

# Qwen2.5-7B, Llama-3-8B, Qwen2.5-1.5B heads: the most-asked first, so a --budget-s cut drops the smallest.
GPU_HEADS = ((3584, 152064), (4096, 128256), (1536, 151936))
GPU_TOKENS = (4096, 8192, 16384, 32768)
DEFAULT_GPU_SHAPES = ",".join(f"{n}:{h}:{v}" for h, v in GPU_HEADS for n in GPU_TOKENS)
DEFAULT_CPU_SHAPES = "32:32:500,64:32:500"
OPS = ("policy", "logprobs", "ce")
EXIT_DEVICE_LOST = 75  # the CUDA context broke (sticky error): rerun with --resume


def _csv(choices: tuple[str, ...], what: str):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{what}: expected a comma list of {', '.join(choices)}, got {text!r}")
        return items

    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    method_names = ("fastcomt", "eager", "compile", "liger", "cce", "cce-nofilter", "trl", "verl", "floor")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available, else cpu")
    p.add_argument("--shapes", help=f"N:H:V,... (GPU default: {DEFAULT_GPU_SHAPES}; CPU: {DEFAULT_CPU_SHAPES})")
    p.add_argument("--ops", type=_csv(OPS, "--ops"), default=OPS, help="policy,logprobs,ce")
    p.add_argument(
        "--methods",
        type=_csv(method_names, "--methods"),
        help=f"subset of {','.join(method_names)}; the floor always runs, the ratios need it",
    )
    p.add_argument("--reps", type=_positive_int, default=10, help="timed repetitions (>= 10 on GPU)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (compilation happens here)")
    p.add_argument("--entropy", type=float, default=2.0, help="target mean next-token entropy, nats")
    p.add_argument("--seq-len", type=_positive_int, help="tokens per sequence (default 1024 GPU, 16 CPU)")
    p.add_argument("--pad-fraction", type=float, default=0.1, help="mean fraction of padded tokens")
    p.add_argument("--logprob-noise", type=float, default=0.1, help="std of old log-probs around current ones")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tf32", action="store_true", help="allow TF32 for float32 matmuls (default off)")
    p.add_argument("--loss-type", default="dapo", choices=("grpo", "bnpo", "dapo", "dr_grpo"))
    p.add_argument("--compile-backend", help="torch.compile backend (default inductor on GPU, aot_eager on CPU)")
    p.add_argument("--tol-grad", type=float, default=1e-2, help="max relative L2 of dh and dW vs float32")
    p.add_argument("--tol-logp", type=float, default=2e-2, help="max abs error of log-probs vs float32")
    p.add_argument("--out", type=Path, help="JSON lines file, one object per row")
    p.add_argument("--table", type=Path, help="also write the header and markdown table here")
    p.add_argument("--plot", type=Path, help="PNG of time and memory against N")
    p.add_argument("--resume", action="store_true", help="keep --out and skip rows already in it")
    p.add_argument("--budget-s", type=float, help="start no new measurement after this many seconds")
    p.add_argument("--strict", action="store_true", help="exit 1 unless every fastcomt row has status ok")
    p.add_argument("--method-timeout-s", type=float, help="give up one measurement after this many seconds")
    p.add_argument(
        "--simulate-failure",
        choices=("error", "hang"),
        help="dry runs: fastcomt's rows fail this way, to check the other rows survive",
    )
    p.add_argument("--site-dir", action="append", default=[], help="extra package folder appended to sys.path")
    return p


def _resolve_device(requested: str | None) -> str:
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    return requested


def _raise_recompile_limit() -> None:
    # Each new shape may recompile the torch.compile baseline; past dynamo's limit it would silently
    # fall back to eager and the "compile" row would lie.
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(64, getattr(dynamo_config, name)))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bootstrap.ensure_repo_on_path()
    bootstrap.add_site_dirs(args.site_dir)
    device = _resolve_device(args.device)
    bootstrap.use_triton_interpreter(device)  # before any kernel module is imported
    kernels, kernels_source = bootstrap.import_kernels()

    from bench.eager import PolicyConfig
    from bench.inputs import parse_shapes
    from bench.measure import Tolerances
    from bench.precision import set_tf32
    from bench.report import CPU_WARNING, append_jsonl, machine_info, read_jsonl, row_key, settings_id
    from bench.sweep import StickyDeviceError, Sweep, SweepConfig

    if device == "cuda" and args.reps < 10:
        raise SystemExit(f"--reps: expected >= 10 on GPU (median and min need enough samples), got {args.reps}")
    if args.resume and args.out is None:
        raise SystemExit("--resume needs --out (the file to resume)")
    try:
        shapes = parse_shapes(args.shapes or (DEFAULT_GPU_SHAPES if device == "cuda" else DEFAULT_CPU_SHAPES))
        policy = PolicyConfig(loss_type=args.loss_type)
    except ValueError as exc:
        raise SystemExit(f"bad argument: {exc}") from None
    if not 0 < args.entropy < math.log(min(s.v for s in shapes)):
        raise SystemExit(f"--entropy: expected a value in (0, log V) nats for every shape, got {args.entropy}")
    if not 0 <= args.pad_fraction < 0.5 or args.logprob_noise < 0:
        raise SystemExit(
            f"--pad-fraction, --logprob-noise: expected [0, 0.5) and >= 0, got {args.pad_fraction}, {args.logprob_noise}"
        )
    seq_len = args.seq_len or (1024 if device == "cuda" else 16)
    for s in shapes:
        if s.n % seq_len:
            raise SystemExit(f"--seq-len: expected a divisor of every N, got {seq_len} (shape {s.label} does not fit)")
    cfg = SweepConfig(
        device=device,
        ops=args.ops,
        method_names=None if args.methods is None else (*args.methods, "floor"),
        seq_len=seq_len,
        entropy=args.entropy,
        pad_fraction=args.pad_fraction,
        logprob_noise=args.logprob_noise,
        seed=args.seed,
        warmup=args.warmup,
        reps=args.reps,
        compile_backend=args.compile_backend or ("inductor" if device == "cuda" else "aot_eager"),
        policy=policy,
        tol=Tolerances(grad_rel_l2=args.tol_grad, logprob_max_abs=args.tol_logp),
        budget_s=args.budget_s,
        method_timeout_s=args.method_timeout_s,
        simulate_failure=args.simulate_failure,
    )
    set_tf32(args.tf32)
    _raise_recompile_limit()

    settings = {
        "device": device,
        "dtype": "bfloat16",
        "tf32": args.tf32,
        "reps": cfg.reps,
        "warmup": cfg.warmup,
        "seed": cfg.seed,
        "entropy": cfg.entropy,
        "seq_len": seq_len,
        "pad_fraction": cfg.pad_fraction,
        "logprob_noise": cfg.logprob_noise,
        "policy": policy.as_dict(),
        "compile_backend": cfg.compile_backend,
        "tolerances": {"grad_rel_l2": cfg.tol.grad_rel_l2, "logprob_max_abs": cfg.tol.logprob_max_abs},
    }
    settings["settings_id"] = settings_id(settings)
    machine = machine_info(device, kernels_source)
    if device == "cpu":
        _log(CPU_WARNING)
    _log(f"TF32 {'ON' if args.tf32 else 'off'}; fastcomt.kernels from the {kernels_source}; device {device}")

    # Resume only rows taken with the same settings; rows cut by the time budget are measured again.
    previous = read_jsonl(args.out) if args.resume else []
    done = {
        row_key(r)[:5]: r
        for r in previous
        if r.get("settings_id") == settings["settings_id"] and not r["status"].startswith("skipped: time")
    }
    if args.out is not None and not args.resume:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("")

    # Every row is on disk the moment it exists (read_jsonl keeps the last row of a key).
    on_row = (lambda row: append_jsonl(args.out, [row])) if args.out is not None else (lambda row: None)
    sweep = Sweep(cfg, kernels, {**settings, "machine": machine}, done, _log, on_row)
    all_rows: list[dict] = []
    try:
        for shape in shapes:
            for group, _ in sweep.run_shape(shape):
                all_rows.extend(group)
    except StickyDeviceError as exc:
        _log(f"{exc}; exiting with {EXIT_DEVICE_LOST} so a rerun with --resume continues in a fresh process")
        return EXIT_DEVICE_LOST

    _write_outputs(args, all_rows, machine, settings)
    if args.strict:
        bad = [r for r in all_rows if r["method"] == "fastcomt" and r.get("status") != "ok"]
        for r in bad:
            _log(f"STRICT: {r['shape']} {r['op']} fastcomt: {r.get('status')}")
        return 1 if bad else 0
    return 0


def _write_outputs(args: argparse.Namespace, rows: list[dict], machine: dict, settings: dict) -> None:
    """Plot and table files, then the text on stdout, table last."""
    from bench.report import (
        format_header,
        format_inputs,
        format_legend,
        format_table,
        format_targets,
        write_text_atomic,
    )

    text = (
        "\n\n".join(
            [
                format_header(machine, settings),
                format_inputs(rows),
                format_legend(rows),
                format_targets(rows, machine["device"]),
                format_table(rows),
            ]
        )
        + "\n"
    )
    if args.plot is not None:
        try:
            from bench.plot import plot_results
        except ImportError as exc:  # the GPU machines may lack matplotlib: keep the rows and the table
            _log(f"plot skipped: {exc}")
        else:
            title = (
                f"{machine['gpu'] or 'CPU (not kernel speed)'}; torch {machine['torch']}; "
                f"TF32 {'on' if settings['tf32'] else 'off'}"
            )
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            plot_results(rows, args.plot, title)
            _log(f"plot: {args.plot}")
    if args.table is not None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.table, text)
    if args.out is not None:
        _log(f"rows: {args.out}")
    print(text, end="", flush=True)


if __name__ == "__main__":
    sys.exit(main())
